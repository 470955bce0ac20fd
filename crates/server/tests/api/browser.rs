//! Runs the web client's browser tests (`web/test/`): headless Chromium
//! driven by playwright-core against a server started here, on a fresh
//! database. They save pictures of the main screens into
//! `target/screenshots/`, or where `PALAVER_SCREENSHOTS` says (the
//! README's come from `PALAVER_SCREENSHOTS=docs/screenshots`, so that a
//! test run does not rewrite tracked files). Skipped when Chromium or
//! Node.js is missing,
//! failed then if `PALAVER_REQUIRE_BROWSER` is set (CI installs Debian's
//! `chromium`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;
use crate::js::node_suite;
use crate::support::harness::{self, Missing, Trial};

/// The browser: `CHROMIUM`, else Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn runs(program: &Path) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// This module's tests.
pub fn trials() -> Vec<Trial> {
    let need = if !runs(Path::new("node")) {
        Err("node is not installed".to_string())
    } else if !runs(&chromium()) {
        Err(format!(
            "no Chromium at {} (apt-get install chromium, or set CHROMIUM)",
            chromium().display()
        ))
    } else {
        Ok(())
    };
    let need = need.map_err(|why| Missing {
        what: "with Chromium".into(),
        why,
        required_by: Some("PALAVER_REQUIRE_BROWSER"),
    });
    vec![
        harness::test(
            "browser::the_client_is_served_at_the_root",
            harness::on_tokio(the_client_is_served_at_the_root),
        ),
        harness::test(
            "browser::web_dir_serves_the_client_from_a_directory",
            harness::on_tokio(web_dir_serves_the_client_from_a_directory),
        ),
        harness::test_if(
            need,
            "browser::web_client_in_chromium",
            harness::on_tokio(web_client_in_chromium),
        ),
    ]
}

async fn web_client_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let app = spawn_app(Backend::Sqlite).await;
    let shots = std::env::var_os("PALAVER_SCREENSHOTS")
        .map_or_else(|| root.join("target/screenshots"), |dir| root.join(dir));
    // The build script installed the packages for the bundle; playwright-core
    // comes from the same lock file.
    let report = node_suite(
        root.join("web"),
        "playwright-core",
        &["--test-concurrency=1", "test/"],
        vec![
            ("PALAVER_URL", app.url("").into()),
            ("CHROMIUM", chromium().into()),
            ("SCREENSHOTS", shots.into()),
        ],
    )
    .await;
    assert!(
        report.contains("pass 6"),
        "expected 6 passing browser tests:\n{report}"
    );
}

/// The client's three files are served at `/` with their types and a
/// Content-Security-Policy; every other path keeps its meaning.
async fn the_client_is_served_at_the_root() {
    let app = spawn_app(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let r = http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(
            header("content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");
        if path == "/" {
            assert!(body.contains("<title>Palaver</title>"), "{body}");
        }
    }
    for path in ["/api/nope", "/nope", "/index.html"] {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
}

/// `--web-dir` serves the client's files from a directory, read at each
/// request (for working on the client); a missing file is a 404.
async fn web_dir_serves_the_client_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<title>dev build</title>").unwrap();
    let path = dir.path().to_path_buf();
    let app = spawn_configured(Backend::Sqlite, move |c| c.web_dir = Some(path)).await;
    let page = reqwest::get(app.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page, "<title>dev build</title>");
    std::fs::write(dir.path().join("index.html"), "<title>edited</title>").unwrap();
    let page = reqwest::get(app.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page, "<title>edited</title>", "read again at each request");
    let missing = reqwest::get(app.url("/app.js")).await.unwrap();
    assert_eq!(missing.status(), 404);
}
