//! Runs the end-to-end suite in `e2e/` with the official Socket.IO
//! JavaScript client against a server started here. Skipped (with a note)
//! when Node.js is not installed, unless `PALAVER_REQUIRE_JS=1` (CI).

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::*;

fn have_node() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_javascript_client_end_to_end() {
    if !have_node() {
        assert!(
            std::env::var("PALAVER_REQUIRE_JS").is_err(),
            "PALAVER_REQUIRE_JS is set but node is not installed"
        );
        eprintln!("SKIPPED official_javascript_client_end_to_end: node is not installed");
        return;
    }
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
        report.contains("pass 5"),
        "expected 5 passing JS tests:\n{report}"
    );
}
