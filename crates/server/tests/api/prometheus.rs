//! The exposition against the real Prometheus (Debian's `prometheus`
//! package): `promtool check metrics` accepts it, and a `prometheus`
//! process scraping a running server answers a query with the number of
//! messages sent. Skipped when the tools are missing, failed then if
//! `PALAVER_REQUIRE_PROMETHEUS` is set (CI installs them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::metrics::{known_traffic, scrape};
use crate::support::harness::{self, Missing, Trial};

/// How long Prometheus may take to start, scrape and answer.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(30);

fn tool(name: &str) -> PathBuf {
    Path::new("/usr/bin").join(name)
}

fn runs(program: &Path) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// This module's tests.
pub fn trials() -> Vec<Trial> {
    let need = ["promtool", "prometheus"]
        .into_iter()
        .find(|t| !runs(&tool(t)))
        .map_or(Ok(()), |t| {
            Err(Missing {
                what: "with Prometheus".into(),
                why: format!("no {} (apt-get install prometheus)", tool(t).display()),
                required_by: Some("PALAVER_REQUIRE_PROMETHEUS"),
            })
        });
    vec![
        harness::test_if(
            need.clone(),
            "prometheus::promtool_accepts_the_exposition",
            harness::on_tokio(promtool_accepts_the_exposition),
        ),
        harness::test_if(
            need,
            "prometheus::prometheus_scrapes_the_server_and_answers_a_query",
            harness::on_tokio(prometheus_scrapes_the_server_and_answers_a_query),
        ),
    ]
}

async fn promtool_accepts_the_exposition() {
    let app = spawn_metered(Backend::Sqlite, |_| {}).await;
    let _sockets = known_traffic(&app, 3).await;
    let text = scrape(&app).await;
    let mut check = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    // promtool prints lint findings (and fails) on any problem.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// A `prometheus` process, killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus on a free local port, with its own storage in a
    /// temporary directory, scraping `target` every second.
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: palaver\n    scrape_interval: 1s\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A port no one holds now (a system Prometheus may hold 9090).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus { child, addr, dir }
    }

    /// The value of the single series `query` answers now, if any.
    async fn query(&self, query: &str) -> Option<String> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let resp = reqwest::Client::new()
            .get(url)
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = resp.json().await.ok()?;
        let value = &body["data"]["result"][0]["value"][1];
        value.as_str().map(str::to_owned)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

async fn prometheus_scrapes_the_server_and_answers_a_query() {
    let app = spawn_metered(Backend::Sqlite, |_| {}).await;
    let _sockets = known_traffic(&app, 4).await;
    let prometheus = Prometheus::start(app.metrics_addr.unwrap());
    let deadline = Instant::now() + PROMETHEUS_WAIT;
    let mut last = None;
    loop {
        last = prometheus
            .query("palaver_messages_committed_total")
            .await
            .or(last);
        if last.as_deref() == Some("4") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus answered {last:?}, not 4, within {PROMETHEUS_WAIT:?}; its log:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A label selector over a counter family, through the same API.
    let errors = prometheus
        .query(r#"palaver_error_answers_total{transport="socketio",code="invalid_payload"}"#)
        .await;
    assert_eq!(errors.as_deref(), Some("1"));
    assert_eq!(
        prometheus.query(r#"up{job="palaver"}"#).await.as_deref(),
        Some("1")
    );
}
