//! Two jobs before the crate compiles:
//! - rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//!   them at compile time, and Cargo does not otherwise know to look;
//! - build the web client (`web/`, TypeScript) into `OUT_DIR/web`, which
//!   `src/web.rs` embeds: `npm ci` once (and again when the lock file
//!   changes), then esbuild bundles `web/src/app.ts` with socket.io-client.
//!   Without Node.js the server still builds and `/` says what to install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("web");
    fs::create_dir_all(&out).expect("OUT_DIR is writable");
    for watched in ["src", "package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed={}", web.join(watched).display());
    }
    for file in ["index.html", "app.css"] {
        fs::copy(web.join("src").join(file), out.join(file)).expect("web/src holds the page");
    }
    if let Err(why) = bundle(&web, &out.join("app.js")) {
        println!(
            "cargo:warning=the web client was not built ({why}): install Node.js 20 with npm and build again"
        );
        let page = format!(
            "document.body.textContent = {:?};",
            format!("Palaver's web client was not built ({why}): install Node.js 20 with npm and build the server again. The API and Socket.IO work without it.")
        );
        fs::write(out.join("app.js"), page).expect("OUT_DIR is writable");
    }
}

/// `npm ci` when the installed packages are missing or older than the lock
/// file, then one esbuild run.
fn bundle(web: &Path, to: &Path) -> Result<(), String> {
    let installed = web.join("node_modules/.package-lock.json");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&installed) < modified(&web.join("package-lock.json")) {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(web),
            "npm ci",
        )?;
    }
    run(
        Command::new(web.join("node_modules/.bin/esbuild"))
            .args([
                "src/app.ts",
                "--bundle",
                "--minify",
                "--format=esm",
                "--target=es2020",
                "--log-level=warning",
            ])
            .arg(format!("--outfile={}", to.display()))
            .current_dir(web),
        "esbuild",
    )
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{what} failed: {status}")),
        Err(e) => Err(format!("{what} could not start: {e}")),
    }
}
