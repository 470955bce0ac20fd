//! Schemathesis (PyPI, pinned in `e2e/requirements-schemathesis.txt`)
//! against a server started here: requests generated from
//! `/api/openapi.json`, valid and invalid, on every operation, with a
//! token, and every answer checked against the document. Skipped when
//! schemathesis is not installed, failed then if
//! `PALAVER_REQUIRE_SCHEMATHESIS` is set (`.ci/run` installs it into
//! `e2e/.venv-schemathesis`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::support::harness::{self, Missing, Trial};

/// Test cases per operation and phase: the whole run takes about 15 s
/// here (2 cores).
const EXAMPLES: u32 = 50;

/// The checks run on every answer: all of schemathesis's (no 5xx; status,
/// body, headers and content type as documented; 401 without the token;
/// 405 and `Allow` for other methods; …) but three, which ask more than
/// the API promises or report what is not there:
/// - `positive_data_acceptance` wants every request the schema allows to
///   succeed, but some refusals depend on the data (blocking yourself,
///   `changedAfter` with `afterSeq`, a user who is not a member) or on
///   JSON Schema's view that `1.0` is an integer, which serde does not
///   share;
/// - `ensure_resource_availability` takes the 404 for an unknown user
///   named in a request on a group just created as the group missing;
/// - `negative_data_rejection` reports valid requests as invalid ones
///   accepted: in 4.32.5 a case whose invalid part shrinking removed, or
///   that only leaves out an optional parameter (`GET /api/users?q=0`).
///   Invalid requests are still sent, and their answers checked.
const EXCLUDED_CHECKS: &str =
    "positive_data_acceptance,ensure_resource_availability,negative_data_rejection";

/// The program: `PALAVER_SCHEMATHESIS`, else the venv `.ci/run` makes,
/// else `schemathesis` on the `PATH`.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("PALAVER_SCHEMATHESIS") {
        return path.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../e2e/.venv-schemathesis/bin/schemathesis");
    if venv.exists() {
        venv
    } else {
        "schemathesis".into()
    }
}

/// This module's tests.
pub fn trials() -> Vec<Trial> {
    let runs = std::process::Command::new(schemathesis())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let need = if runs {
        Ok(())
    } else {
        Err(Missing {
            what: "with schemathesis".into(),
            why: format!(
                "{} does not run (pip install -r e2e/requirements-schemathesis.txt, \
                 or set PALAVER_SCHEMATHESIS)",
                schemathesis().display()
            ),
            required_by: Some("PALAVER_REQUIRE_SCHEMATHESIS"),
        })
    };
    vec![harness::test_if(
        need,
        "schemathesis::every_answer_matches_the_document",
        harness::on_tokio(every_answer_matches_the_document),
    )]
}

/// No 5xx, and every status, body, header and content type as documented,
/// on every operation but the document's own (schemathesis leaves out the
/// operation that serves the schema) and the two that log the run's token
/// out.
async fn every_answer_matches_the_document() {
    // The limits a run this size trips are off: registrations from one
    // address and group changes per user. Login failures are left on:
    // their 429 is documented and is met.
    let app = spawn_configured(Backend::Sqlite, |c| {
        c.registrations_per_ip = 0;
        c.group_changes_per_minute = 0;
    })
    .await;
    // Something real for the routes with ids to hit: the caller, two other
    // users, a group the caller owns with both in it and one where the
    // caller is a plain member, and messages in two conversations. Half
    // the ids schemathesis sends (in paths, and `receiverId`) are these.
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let owned = app.group(&alice, "owned", &[bob.id(), carol.id()]).await;
    let joined = app.group(&bob, "joined", &[alice.id()]).await;
    talk(&app, &alice, bob.id(), owned).await;
    let ids = [alice.id(), bob.id(), carol.id(), owned, joined];
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[dictionaries]\nids = {{ values = [{}] }}\n\n[parameters]\n\
             \"path.id\" = {{ dictionary = \"ids\", probability = 0.5 }}\n\
             \"path.user_id\" = {{ dictionary = \"ids\", probability = 0.5 }}\n\
             \"query.receiverId\" = {{ dictionary = \"ids\", probability = 0.5 }}\n",
            ids.join(", ")
        ),
    )
    .unwrap();

    let run = tokio::process::Command::new(schemathesis())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(app.url("/api/openapi.json"))
        .args([
            "--header",
            &format!("Authorization: Bearer {}", alice.token),
        ])
        .args(["--checks", "all", "--exclude-checks", EXCLUDED_CHECKS])
        // Logging out would revoke the token the whole run uses: every
        // later operation would only be answered 401 (`tests/api/sessions.rs`
        // covers both; the document test checks their descriptions).
        .args(["--exclude-operation-id", "logout"])
        .args(["--exclude-operation-id", "logoutAll"])
        .args(["--max-examples", &EXAMPLES.to_string()])
        .args([
            "--workers",
            "1",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis finishes within 5 minutes")
        .expect("schemathesis runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis failed:\n{report}");
    // All but the document's own and the two logouts.
    let operations = crate::openapi::ROUTES.len() - 3;
    assert!(
        report.contains(&format!("Tested: {operations}\n")),
        "expected {operations} operations tested:\n{report}"
    );
}

/// Messages for history and the conversation list to answer with, in
/// every shape the document describes: a reply, a mention, a reaction,
/// an edit and a delete, in a private conversation and a group.
async fn talk(app: &TestApp, alice: &TestUser, bob: i64, group: i64) {
    let a = app.connect(&alice.token).await;
    let first = send_ok(&a, private(bob, "hello")).await;
    let mut reply = private(bob, "and again");
    reply["replyToSeq"] = json!(first.seq);
    reply["clientMsgId"] = json!("c-1");
    send_ok(&a, reply).await;
    let mut mention = group_msg(group, "hi all");
    mention["mentions"] = json!([bob]);
    let said = send_ok(&a, mention).await;
    let at = |seq: i64| json!({"conversationType": "group", "receiverId": group, "seq": seq});
    let mut react = at(said.seq);
    react["emoji"] = json!("👍");
    let mut edit = at(said.seq);
    edit["content"] = json!("hi, all");
    let gone = send_ok(&a, group_msg(group, "oops")).await;
    for (event, payload) in [("react", react), ("edit", edit), ("delete", at(gone.seq))] {
        let ack = a.emit_ack(event, &payload).await.expect("ack");
        assert_eq!(ack["ok"], true, "{event}: {ack}");
    }
}
