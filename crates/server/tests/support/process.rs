//! Real `palaver serve` processes for the tests that need one: to kill it,
//! restart it on the same port and database, read its logs or measure it
//! in `/proc`. A [`Node`] is started from a [`Spawn`] (flags, environment,
//! `RUST_LOG`, log file) on a free port and is healthy when `start`
//! returns; a few typed HTTP/Socket.IO calls follow.
//!
//! Tests that need no process use `spawn_app()` (`api/helpers.rs`), which
//! runs the server in the test's own runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use palaver_client::Client;
use palaver_protocol::{Message, MessagePage};
use serde_json::{json, Value};

/// How long a process may take to answer `/healthz` with 200.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The `palaver` binary, with the `PALAVER_*` variables that would point
/// it at this machine's services removed, so that a test sees only the
/// settings it gives.
pub fn palaver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palaver"));
    cmd.env_remove("PALAVER_DATABASE_URL")
        .env_remove("PALAVER_LISTEN")
        .env_remove("PALAVER_REDIS_URL")
        .env_remove("PALAVER_CONFIG");
    cmd
}

/// A port nothing listens on (bound, read and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A field of `/proc/<pid>/status` (`"VmRSS:"`, `"VmHWM:"`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// A child process killed and reaped when dropped, for tests that build
/// their own command line.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How to start a `palaver serve` process: its database and secret, extra
/// flags and environment, `RUST_LOG`, and where its output goes.
pub struct Spawn {
    db_url: String,
    secret: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    rust_log: String,
    log: Option<PathBuf>,
    http_timeout: Option<Duration>,
}

impl Spawn {
    /// A process on `db_url` signing tokens with `secret`, warnings
    /// logged to the test's stderr.
    pub fn new(db_url: &str, secret: &str) -> Spawn {
        Spawn {
            db_url: db_url.to_string(),
            secret: secret.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            rust_log: "warn".to_string(),
            log: None,
            http_timeout: None,
        }
    }

    /// Flags after the basics (`--listen`, `--database-url`, `--jwt-secret`).
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Spawn {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// An environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Spawn {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The process's `RUST_LOG` filter.
    pub fn rust_log(mut self, filter: &str) -> Spawn {
        self.rust_log = filter.to_string();
        self
    }

    /// Appends the process's stdout and stderr (every incarnation's) to
    /// `path`, for [`Node::log`]; without it stderr is the test's.
    pub fn log(mut self, path: &Path) -> Spawn {
        self.log = Some(path.to_path_buf());
        self
    }

    /// A timeout on every HTTP request the [`Node`] makes.
    pub fn http_timeout(mut self, timeout: Duration) -> Spawn {
        self.http_timeout = Some(timeout);
        self
    }

    /// Starts the process on a free port; returns once it is healthy.
    pub async fn start(self) -> Node {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut http = reqwest::Client::builder();
        if let Some(timeout) = self.http_timeout {
            http = http.timeout(timeout);
        }
        let mut node = Node {
            child: None,
            addr,
            http: http.build().unwrap(),
            spawn: self,
        };
        node.restart().await;
        node
    }
}

/// A `palaver serve` process, killed when dropped.
pub struct Node {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    spawn: Spawn,
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
        let mut spawn = Spawn::new(db_url, secret).args(args).rust_log(rust_log);
        if let Some(path) = log {
            spawn = spawn.log(path);
        }
        spawn.start().await
    }

    fn spawn(&mut self) {
        let spec = &self.spawn;
        let mut command = palaver();
        command
            .args(["serve", "--listen", &self.addr.to_string()])
            .args(["--database-url", &spec.db_url])
            .args(["--jwt-secret", &spec.secret])
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", &spec.rust_log)
            .stdout(Stdio::null());
        if let Some(path) = &spec.log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open log file");
            command.stdout(file.try_clone().unwrap()).stderr(file);
        }
        self.child = Some(command.spawn().expect("start palaver"));
    }

    /// Starts the process again on the same port and database (after
    /// [`Node::kill`] or [`Node::terminate`]) and waits until it answers
    /// `/healthz` with 200. A process that exits meanwhile (the port not
    /// yet free) is started again.
    pub async fn restart(&mut self) {
        let started = Instant::now();
        self.spawn();
        loop {
            if self.health_within(Duration::from_secs(1)).await == 200 {
                return;
            }
            let child = self.child.as_mut().expect("a process");
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    started.elapsed() < START_TIMEOUT,
                    "palaver keeps exiting ({status}); log:\n{}",
                    self.log_tail(30)
                );
                self.spawn();
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "palaver did not become healthy; log:\n{}",
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id, for `/proc` figures and signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running process").id()
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGTERM, then waits (at most [`STOP_TIMEOUT`]) for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let started = Instant::now();
        loop {
            if let Some(exit) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return exit;
            }
            assert!(started.elapsed() < STOP_TIMEOUT, "still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and reap the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// A field of the process's `/proc/<pid>/status`, in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.pid(), field)
    }

    /// Everything the process wrote to its log file so far.
    pub fn log(&self) -> String {
        let path = self.spawn.log.as_ref().expect("started with a log file");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The last `n` lines of the log file (empty without one).
    pub fn log_tail(&self, n: usize) -> String {
        let Some(path) = &self.spawn.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    async fn health_within(&self, timeout: Duration) -> u16 {
        match self
            .http
            .get(format!("http://{}/healthz", self.addr))
            .timeout(timeout)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
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
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A conversation's whole history, paged with `afterSeq` (200 at a time).
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
        let n = page.messages.len();
        all.extend(page.messages);
        after = all.last().map_or(0, |m| m.seq);
        if !page.has_more || n == 0 {
            return all;
        }
    }
}
