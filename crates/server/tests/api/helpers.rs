//! `spawn_app()` and typed client helpers: a real server on port 0 with a
//! fresh database, real HTTP and Socket.IO clients.

use std::net::SocketAddr;
use std::time::Duration;

use palaver::auth::Tokens;
use palaver::ids::UserId;
use palaver::{Config, Server};
use palaver_client::Client;
use palaver_protocol::{AuthResponse, Message, User};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub use crate::support::db::{Backend, TestDb};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a test waits to conclude that something did not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The metrics listener's address (`spawn_metered`).
    pub metrics_addr: Option<SocketAddr>,
    pub http: reqwest::Client,
    pub secret: String,
    /// The server's state: for what no route does (disabling an account).
    pub app: palaver::App,
    db: Option<TestDb>,
    tokens: Tokens,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

pub fn test_config(db_url: &str) -> Config {
    let mut config = Config::from_env().expect("default config");
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = db_url.to_string();
    config
}

/// Starts a server on a fresh database.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_configured(backend, |_| {}).await
}

/// Starts a server on a fresh database, with settings changed by `change`.
pub async fn spawn_configured(backend: Backend, change: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new(backend).await;
    let mut config = test_config(&db.url);
    config.jwt_secret = Some(palaver::auth::random_secret());
    change(&mut config);
    spawn_with(db, config).await
}

/// Switches the per-user message rate limit off (for tests that pipeline
/// hundreds of sends from one user).
pub fn unlimited(config: &mut Config) {
    config.message_rate = 0;
}

/// Starts a server on a fresh database that also serves its metrics on a
/// listener of its own (`--metrics-listen`), on port 0, with settings
/// changed by `change`.
pub async fn spawn_metered(backend: Backend, change: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new(backend).await;
    let mut config = test_config(&db.url);
    config.jwt_secret = Some(palaver::auth::random_secret());
    change(&mut config);
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(db, config, Some(metrics)).await
}

/// Starts a server with a given database and configuration.
pub async fn spawn_with(db: TestDb, config: Config) -> TestApp {
    start(db, config, None).await
}

async fn start(db: TestDb, config: Config, metrics: Option<tokio::net::TcpListener>) -> TestApp {
    // Server logs in test output when RUST_LOG is set.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ttl = config.token_ttl();
    let secret = config.jwt_secret.clone().unwrap_or_default();
    let mut server = Server::build(config).await.expect("server builds");
    let app = server.app().clone();
    let metrics_addr = metrics.as_ref().map(|l| l.local_addr().unwrap());
    if let Some(metrics) = metrics {
        server = server.with_metrics(metrics);
    }
    let tokens = Tokens::new(secret.as_bytes(), ttl);
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
    });
    TestApp {
        addr,
        metrics_addr,
        http: reqwest::Client::new(),
        secret,
        app,
        db: Some(db),
        tokens,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A token for any user id, signed with the server's secret (what an
    /// application sharing the secret would mint).
    pub fn mint(&self, user: i64) -> String {
        self.tokens.issue(UserId::parse(user).expect("a user id"))
    }

    /// Registers `username` with a fixed password.
    pub async fn register(&self, username: &str) -> TestUser {
        let (status, body) = self
            .post(
                "/api/auth/register",
                None,
                json!({"username": username, "password": "correct horse"}),
            )
            .await;
        assert_eq!(status, 201, "register {username}: {body}");
        let auth: AuthResponse = serde_json::from_value(body).unwrap();
        TestUser {
            user: auth.user,
            token: auth.token,
        }
    }

    /// A Socket.IO connection with a token.
    pub async fn connect(&self, token: &str) -> Client {
        Client::connect(self.addr, Some(json!({ "token": token })))
            .await
            .expect("socket connects")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.patch(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.put(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.delete(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    /// `POST /api/groups/{group}/members` by `actor`, adding `user` as a
    /// plain member; the status and body.
    pub async fn add_member(&self, actor: &TestUser, group: i64, user: i64) -> (u16, Value) {
        let path = format!("/api/groups/{group}/members");
        self.post(&path, Some(&actor.token), json!({"userId": user}))
            .await
    }

    /// Creates a group owned by `owner` with `members`; returns its id.
    pub async fn group(&self, owner: &TestUser, name: &str, members: &[i64]) -> i64 {
        let (status, body) = self
            .post(
                "/api/groups",
                Some(&owner.token),
                json!({"name": name, "memberIds": members}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// A conversation's messages after `after_seq`, as the API returns them.
    pub async fn history(
        &self,
        who: &TestUser,
        kind: &str,
        receiver: i64,
        after: i64,
    ) -> Vec<Message> {
        let (status, body) = self
            .get(
                &format!(
                    "/api/messages?conversationType={kind}&receiverId={receiver}&afterSeq={after}&limit=200"
                ),
                Some(&who.token),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body["messages"].clone()).unwrap()
    }

    /// Stops the server and waits for it to finish.
    /// Opens an Engine.IO long-polling session; its URL (with `sid`).
    pub async fn polling_session(&self) -> String {
        let base = self.url("/socket.io/?EIO=4&transport=polling");
        let open = self.polling_get(&base).await;
        assert!(open.starts_with('0'), "not an open packet: {open}");
        let open: Value = serde_json::from_str(&open[1..]).unwrap();
        format!("{base}&sid={}", open["sid"].as_str().unwrap())
    }

    /// One long-polling GET: its body.
    pub async fn polling_get(&self, url: &str) -> String {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The URL of the server's database.
    pub fn db_url(&self) -> &str {
        &self.db.as_ref().expect("database").url
    }

    /// Sends the shutdown signal without waiting for the server to stop.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(WAIT, h)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
        // Hand the database back so a test can restart on it.
        self.db.take().expect("database")
    }
}

/// Stops the server when a test ends without [`TestApp::stop`]: its sockets
/// are disconnected and its database connections closed before the test's
/// runtime goes. Dropping the runtime with the server still running would
/// leak them until the process exits (a connected socket and socketioxide's
/// namespace hold each other), and the suite's many servers would exhaust
/// MariaDB's 151 connections (the default `max_connections`).
///
/// Blocks the test's worker thread while the other drives the shutdown
/// (`block_in_place`, so the tests run on a multi-threaded runtime). After
/// a failed assertion the server is left as it is: the test has failed.
impl Drop for TestApp {
    fn drop(&mut self) {
        let Some(tx) = self.shutdown.take() else {
            return;
        };
        let _ = tx.send(());
        let Some(handle) = self.handle.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::current();
        if std::thread::panicking()
            || runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread
        {
            return;
        }
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                let _ = tokio::time::timeout(WAIT, handle).await;
            })
        });
    }
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// A registered user.
pub struct TestUser {
    pub user: User,
    pub token: String,
}

impl TestUser {
    pub fn id(&self) -> i64 {
        self.user.id
    }
}

/// A `message` payload in the original clients' camelCase.
pub fn private(to: i64, content: &str) -> Value {
    json!({"conversationType": "private", "receiverId": to, "content": content})
}

pub fn group_msg(group: i64, content: &str) -> Value {
    json!({"conversationType": "group", "receiverId": group, "content": content})
}

/// Sends and expects an ok ack; returns the stored message.
pub async fn send_ok(client: &Client, payload: Value) -> Message {
    let ack = client.emit_ack("message", &payload).await.expect("ack");
    assert_eq!(ack["ok"], true, "expected ok ack, got {ack}");
    serde_json::from_value(ack["message"].clone()).expect("message in ack")
}

/// Sends and expects an error ack; returns its code.
pub async fn send_err(client: &Client, payload: Value) -> String {
    let ack = client.emit_ack("message", &payload).await.expect("ack");
    assert_eq!(ack["ok"], false, "expected error ack, got {ack}");
    ack["error"]["code"].as_str().expect("code").to_string()
}

/// The next `message` event, within [`WAIT`].
pub async fn next_message(client: &mut Client) -> Message {
    loop {
        let (name, data) = client
            .next_event_timeout(WAIT)
            .await
            .expect("a message event arrives");
        if name == "message" {
            return serde_json::from_value(data).expect("message event payload");
        }
    }
}

/// Asserts that no `message` event arrives within [`QUIET`].
pub async fn no_message(client: &mut Client) {
    while let Some((name, data)) = client.next_event_timeout(QUIET).await {
        assert_ne!(name, "message", "unexpected message {data}");
    }
}

/// The next `message` event that is a system message (v1.2), checked to
/// record `event`.
pub async fn next_system(client: &mut Client, event: &str) -> Message {
    let m = next_message(client).await;
    assert_eq!(
        m.system
            .as_ref()
            .map(|s| serde_json::to_value(s.event).unwrap()),
        Some(json!(event)),
        "expected a {event} system message, got {m:?}"
    );
    m
}
