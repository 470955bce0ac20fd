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
    let app = spawn_app(Backend::Sqlite).await;
    let report = node_suite(
        dir,
        "socket.io-client",
        &[],
        vec![("PALAVER_URL", app.url("").into())],
    )
    .await;
    assert!(
        report.contains("pass 7"),
        "expected 7 passing JS tests:\n{report}"
    );
}

/// Runs `node --test` in `dir` (after `npm ci` if `package` is not
/// installed there) with `args` and `env`, and returns its report; panics
/// with the report if a test failed.
pub async fn node_suite(
    dir: PathBuf,
    package: &str,
    args: &[&str],
    env: Vec<(&'static str, std::ffi::OsString)>,
) -> String {
    if !dir.join("node_modules").join(package).exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("run npm ci");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-reporter=spec"])
            .args(args)
            .current_dir(dir)
            .envs(env)
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
        "the Node.js test suite failed:\n{report}"
    );
    report
}
