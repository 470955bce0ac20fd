//! A `palaver serve` child process and a few HTTP/Socket.IO calls on it,
//! for tests that need a real process (kill it, read its logs, measure it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palaver_client::Client;
use palaver_protocol::{Message, MessagePage};
use serde_json::{json, Value};

/// A `palaver serve` process.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

impl Node {
    /// Starts a node with the message rate limit off (these tests send
    /// hundreds of messages a second as one user) and warnings logged to
    /// the test's stderr.
    pub async fn start(db_url: &str, secret: &str) -> Node {
        Node::start_with(db_url, secret, &["--message-rate", "0"], "warn", None).await
    }

    /// Starts a node with extra flags, a `RUST_LOG` filter and, if given,
    /// its stdout and stderr written to `log`.
    pub async fn start_with(
        db_url: &str,
        secret: &str,
        args: &[&str],
        rust_log: &str,
        log: Option<&Path>,
    ) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_palaver"));
        command
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--database-url",
                db_url,
            ])
            .args(["--jwt-secret", secret])
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null());
        if let Some(path) = log {
            let file = std::fs::File::create(path).expect("create log file");
            command.stdout(file.try_clone().unwrap()).stderr(file);
        }
        let child = command.spawn().expect("start palaver");
        let node = Node {
            child,
            addr,
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        while node.health().await != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "node did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node
    }

    pub async fn health(&self) -> u16 {
        match self
            .http
            .get(format!("http://{}/healthz", self.addr))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("http://{}{path}", self.addr))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str, token: &str) -> u16 {
        self.http
            .delete(format!("http://{}{path}", self.addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Opens an Engine.IO long-polling session; returns its URL (with `sid`).
    pub async fn polling_session(&self) -> String {
        let base = format!("http://{}/socket.io/?EIO=4&transport=polling", self.addr);
        let open = self.http.get(&base).send().await.unwrap();
        assert_eq!(open.status(), 200);
        let open = open.text().await.unwrap();
        let handshake: Value =
            serde_json::from_str(open.strip_prefix('0').expect("an open packet")).unwrap();
        format!("{base}&sid={}", handshake["sid"].as_str().unwrap())
    }

    pub async fn register(&self, name: &str) -> (i64, String) {
        let (s, body) = self
            .post(
                "/api/auth/register",
                None,
                json!({"username": name, "password": "correct horse"}),
            )
            .await;
        assert_eq!(s, 201, "{body}");
        (
            body["user"]["id"].as_i64().unwrap(),
            body["token"].as_str().unwrap().to_string(),
        )
    }

    /// Creates a group owned by the token's user; returns its id.
    pub async fn create_group(&self, token: &str, name: &str, members: &[i64]) -> i64 {
        let (s, g) = self
            .post(
                "/api/groups",
                Some(token),
                json!({"name": name, "memberIds": members}),
            )
            .await;
        assert_eq!(s, 201, "{g}");
        g["id"].as_i64().unwrap()
    }

    /// Adds `user` to `group` as the token's user.
    pub async fn add_member(&self, token: &str, group: i64, user: i64) {
        let (s, body) = self
            .post(
                &format!("/api/groups/{group}/members"),
                Some(token),
                json!({"userId": user}),
            )
            .await;
        assert_eq!(s, 201, "{body}");
    }

    pub async fn connect(&self, token: &str) -> Client {
        Client::connect(self.addr, Some(json!({ "token": token })))
            .await
            .expect("connect")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn history(node: &Node, token: &str, kind: &str, receiver: i64) -> Vec<Message> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (s, body) = node
            .get(
                &format!("/api/messages?conversationType={kind}&receiverId={receiver}&afterSeq={after}&limit=200"),
                token,
            )
            .await;
        assert_eq!(s, 200, "{body}");
        let page: MessagePage = serde_json::from_value(body).unwrap();
        all.extend(page.messages);
        after = all.last().map_or(0, |m| m.seq);
        if !page.has_more {
            return all;
        }
    }
}
