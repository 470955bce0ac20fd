//! The operator's side of the binary (v1.3): the config file and its
//! precedence, `palaver config check`, `palaver migrate`, and the systemd
//! unit in docs/.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::harness::{self, Missing, Trial};
use crate::support::process::palaver;

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The JSON a successful command printed.
fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// `(value, source)` of a setting in `config check`'s answer.
fn setting<'a>(check: &'a Value, key: &str) -> (&'a str, &'a str) {
    let s = &check["settings"][key];
    (s["value"].as_str().unwrap(), s["source"].as_str().unwrap())
}

/// The example file in docs/ is valid: `config check` takes it, and says
/// which settings came from it.
fn the_example_config_file_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let example = repo_file("docs/palaver.example.toml");
    let out = palaver()
        .args(["config", "check", "--config"])
        .arg(&example)
        .env("PALAVER_DATABASE_URL", &db)
        .output()
        .unwrap();
    let check = json_of(&out);
    assert_eq!(setting(&check, "log-format"), ("json", "file"));
    assert_eq!(setting(&check, "shutdown-delay-secs"), ("5", "file"));
    assert_eq!(setting(&check, "database-url").1, "environment");
    assert_eq!(setting(&check, "header-timeout-secs"), ("30", "default"));
    assert_eq!(check["database"]["ok"], true, "{check}");
    assert_eq!(check["database"]["exists"], false, "nothing created");
    assert!(
        !dir.path().join("p.db").exists(),
        "config check created the database"
    );
}

/// Flags > environment > file > defaults; secrets masked; an unknown key
/// or a bad value is a one-line error naming it.
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("palaver.toml");
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    std::fs::write(
        &file,
        format!(
            "database_url = \"{db}\"\nmessage-rate = 5\nmessage_burst = 6\nmax_message_chars = 7\n\
             jwt_secret = \"hush-hush-0192\"\nredis_url = \"redis://:pw-8812@127.0.0.1:6379\"\n"
        ),
    )
    .unwrap();
    let out = palaver()
        .args(["config", "check", "--message-rate", "9"])
        .env("PALAVER_CONFIG", &file)
        .env("PALAVER_MESSAGE_BURST", "8")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let check: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(setting(&check, "message-rate"), ("9", "flag"));
    assert_eq!(setting(&check, "message-burst"), ("8", "environment"));
    assert_eq!(setting(&check, "max-message-chars"), ("7", "file"));
    assert_eq!(setting(&check, "token-ttl-secs"), ("604800", "default"));
    assert_eq!(setting(&check, "jwt-secret").0, "***");
    assert!(
        !text.contains("hush-hush-0192") && !text.contains("pw-8812"),
        "{text}"
    );
    // `--help` does not print the file's secrets as defaults either.
    let out = palaver()
        .args(["serve", "--help"])
        .env("PALAVER_CONFIG", &file)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !help.contains("hush-hush-0192") && !help.contains("pw-8812"),
        "{help}"
    );
    // A key of one command's arguments is not a setting.
    std::fs::write(&file, "limit = 5\n").unwrap();
    let out = palaver()
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(&file, "message_rate = 5\nbogus_setting = 1\n").unwrap();
    let out = palaver()
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`bogus-setting`"), "{err}");
    std::fs::write(&file, "message_rate = \"lots\"\n").unwrap();
    let out = palaver()
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--message-rate") && err.contains("lots"),
        "{err}"
    );
}

/// `migrate` applies every migration and exits; `config check` then says
/// so; a database that does not answer fails the check, naming it.
fn migrate_then_check_and_an_unreachable_database_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let out = palaver()
        .args(["migrate", "--database-url", &db])
        .output()
        .unwrap();
    let migrated = json_of(&out);
    let known = migrated["migrations_known"].as_u64().unwrap();
    assert!(known >= 10, "{migrated}");
    assert_eq!(migrated["migrations_applied"].as_u64(), Some(known));
    let out = palaver()
        .args(["config", "check", "--database-url", &db])
        .output()
        .unwrap();
    let check = json_of(&out);
    assert_eq!(
        check["database"]["migrations_applied"].as_u64(),
        Some(known)
    );

    let port = crate::support::process::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let out = palaver()
        .args([
            "config",
            "check",
            "--database-url",
            &url,
            "--db-acquire-timeout-ms",
            "500",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check["database"]["ok"], false, "{check}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// docs/palaver.service passes `systemd-analyze verify`, with its binary
/// paths pointed at this build.
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo_file("docs/palaver.service")).unwrap();
    let unit = unit.replace("/usr/local/bin/palaver", env!("CARGO_BIN_EXE_palaver"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palaver.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Anything it says is a problem, but that the user it runs as is not
    // on this machine.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("‘palaver’: no such user"))
        .collect();
    assert!(
        out.status.success() && problems.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

pub fn trials() -> Vec<Trial> {
    let systemd = if Path::new(SYSTEMD_ANALYZE).exists() {
        Ok(())
    } else {
        Err(Missing {
            what: "with systemd-analyze".into(),
            why: "install systemd to check docs/palaver.service".into(),
            required_by: Some("PALAVER_REQUIRE_SYSTEMD"),
        })
    };
    let mut trials = vec![
        crate::tests!(@one fn the_example_config_file_passes_config_check),
        crate::tests!(@one fn flags_beat_the_environment_which_beats_the_file),
        crate::tests!(@one fn migrate_then_check_and_an_unreachable_database_fails_the_check),
    ];
    trials.push(harness::test_if(
        systemd,
        crate::test_name!("the_systemd_unit_passes_systemd_analyze_verify"),
        the_systemd_unit_passes_systemd_analyze_verify,
    ));
    trials
}
