//! Runs the end-to-end suite in `e2e/` with the official Socket.IO
//! JavaScript client against a server started here. Skipped when Node.js
//! is not installed, failed then if `PALAVER_REQUIRE_JS` is set (CI).

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::*;
use crate::support::harness::{self, Missing, Trial};

fn have_node() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// This module's tests.
pub fn trials() -> Vec<Trial> {
    let need = if have_node() {
        Ok(())
    } else {
        Err(Missing {
            what: "with Node.js".into(),
            why: "node is not installed".into(),
            required_by: Some("PALAVER_REQUIRE_JS"),
        })
    };
    vec![harness::test_if(
        need,
        "js::official_javascript_client_end_to_end",
        harness::on_tokio(official_javascript_client_end_to_end),
    )]
}

async fn official_javascript_client_end_to_end() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e");
    if !dir.join("node_modules/socket.io-client").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("run npm ci");
        assert!(status.success(), "npm ci failed in e2e/");
    }
    let app = spawn_app(Backend::Sqlite).await;
    let url = app.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-reporter=spec"])
            .current_dir(dir)
            .env("PALAVER_URL", url)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "JavaScript end-to-end suite failed:\n{report}"
    );
    assert!(
        report.contains("pass 7"),
        "expected 7 passing JS tests:\n{report}"
    );
}
