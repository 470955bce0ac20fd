//! Several `palaver serve` processes on one shared MariaDB or PostgreSQL
//! database, and that database going away and coming back.
//!
//! These tests start real server processes and (for the outage tests) stop
//! and restart the machine's real database servers, so they run one at a
//! time. They need MySQL/MariaDB and PostgreSQL on their default local
//! ports or named by `PALAVER_TEST_MYSQL_URL` / `_POSTGRES_URL` (skipped
//! otherwise, failed when `PALAVER_REQUIRE_ALL_BACKENDS` is set). The outage
//! tests also need `PALAVER_TEST_OUTAGES=1`: they stop that database server
//! (skipped otherwise).

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use palaver_protocol::Message;
use serde_json::json;
use support::db::{Backend, TestDb};
use support::harness::{self, Missing, Trial};
use support::process::{history, Node};

/// These tests share the machine's database servers: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 20 clients over two nodes, all sending at full speed to one group and
/// one private conversation.
async fn two_nodes_share_one_database_without_gaps_or_errors(backend: Backend) {
    let db = TestDb::new(backend).await;
    let secret = palaver::auth::random_secret();
    let n1 = Node::start(&db.url, &secret).await;
    let n2 = Node::start(&db.url, &secret).await;
    let nodes = [&n1, &n2];
    let (alice, alice_token) = n1.register("alice").await;
    let (bob, bob_token) = n2.register("bob").await;
    let group = n1.create_group(&alice_token, "busy", &[bob]).await;

    const CLIENTS: usize = 20;
    const PER_CLIENT: usize = 60;
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (token, peer) = if i % 2 == 0 {
            (&alice_token, bob)
        } else {
            (&bob_token, alice)
        };
        let client = nodes[(i / 2) % 2].connect(token).await;
        tasks.push(tokio::spawn(async move {
            // Fire everything without waiting, then collect the acks.
            let mut pending = Vec::new();
            for k in 0..PER_CLIENT {
                let payload = if k % 2 == 0 {
                    json!({"conversationType": "group", "receiverId": group, "content": format!("{i}/{k}")})
                } else {
                    json!({"conversationType": "private", "receiverId": peer, "content": format!("{i}/{k}")})
                };
                pending.push(client.emit_ack_deferred("message", &payload).unwrap());
            }
            let mut acked = Vec::new();
            for rx in pending {
                let ack = tokio::time::timeout(Duration::from_secs(30), rx).await.unwrap().unwrap();
                assert_eq!(ack["ok"], true, "every send succeeds: {ack}");
                acked.push(serde_json::from_value::<Message>(ack["message"].clone()).unwrap());
            }
            acked
        }));
    }
    let mut by_conversation: BTreeMap<&str, Vec<Message>> = BTreeMap::new();
    for t in tasks {
        let acked = t.await.unwrap();
        // One socket's sends are committed in the order sent.
        for kind in ["group", "private"] {
            let seqs: Vec<i64> = acked
                .iter()
                .filter(|m| m.conversation_type.as_str() == kind)
                .map(|m| m.seq)
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{kind} seqs out of order: {seqs:?}"
            );
        }
        for m in acked {
            let key = if m.conversation_type.as_str() == "group" {
                "group"
            } else {
                "private"
            };
            by_conversation.entry(key).or_default().push(m);
        }
    }
    let total_each = (CLIENTS * PER_CLIENT / 2) as i64;
    for (kind, mut acked) in by_conversation {
        acked.sort_by_key(|m| m.seq);
        let seqs: Vec<i64> = acked.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=total_each).collect::<Vec<_>>(),
            "{kind}: gap-free and unique"
        );
        // Every participant, through either node, reads the same order.
        let receiver = |me: i64| {
            if kind == "group" {
                group
            } else if me == alice {
                bob
            } else {
                alice
            }
        };
        for node in nodes {
            for (me, token) in [(alice, &alice_token), (bob, &bob_token)] {
                let stored = history(node, token, kind, receiver(me)).await;
                assert_eq!(stored, acked, "{kind} history as seen by {me}");
            }
        }
    }
}

/// Stops a database server for the duration of a test and always starts
/// it again.
struct Outage {
    backend: Backend,
    down: bool,
}

impl Outage {
    fn begin(backend: Backend) -> Outage {
        let mut o = Outage {
            backend,
            down: false,
        };
        o.stop();
        o
    }

    fn run(cmd: &str) {
        let status = Command::new("sh").args(["-c", cmd]).status().expect(cmd);
        assert!(status.success(), "{cmd} failed");
    }

    fn stop(&mut self) {
        self.down = true;
        match self.backend {
            Backend::MySql => {
                Self::run("mariadb-admin -uroot shutdown");
                wait_port(3306, false);
            }
            Backend::Postgres => {
                Self::run("pg_ctlcluster $(ls /etc/postgresql | head -1) main stop -m fast");
                wait_port(5432, false);
            }
            Backend::Sqlite => unreachable!(),
        }
    }

    fn start(&mut self) {
        if !self.down {
            return;
        }
        match self.backend {
            Backend::MySql => {
                Self::run(
                    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
                );
                wait_port(3306, true);
            }
            Backend::Postgres => {
                Self::run(
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -1) main start",
                );
                wait_port(5432, true);
            }
            Backend::Sqlite => unreachable!(),
        }
        self.down = false;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.start();
    }
}

fn wait_port(port: u16, open: bool) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() != open {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "port {port} never became {open}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The database stops under a running node and comes back.
async fn database_outage_gives_errors_not_lies_and_service_resumes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let secret = palaver::auth::random_secret();
    let mut node = Node::start(&db.url, &secret).await;
    let (_, alice_token) = node.register("alice").await;
    let (bob, _) = node.register("bob").await;
    let client = node.connect(&alice_token).await;
    let send = |n: usize| json!({"conversationType": "private", "receiverId": bob, "content": format!("m{n}"), "clientMsgId": format!("c{n}")});
    let first = client.emit_ack("message", &send(0)).await.unwrap();
    assert_eq!(first["ok"], true, "{first}");

    let mut outage = Outage::begin(backend);
    // Every send is answered `unavailable` within 2 s; nothing is a false ok.
    let mut slowest = Duration::ZERO;
    for n in 1..=5 {
        let started = Instant::now();
        let ack = client
            .emit_ack_timeout("message", &send(n), Duration::from_secs(5))
            .await
            .expect("an answer, not a hang");
        slowest = slowest.max(started.elapsed());
        assert!(
            started.elapsed() <= Duration::from_secs(2),
            "answered in {:?}",
            started.elapsed()
        );
        assert_eq!(ack["ok"], false, "{ack}");
        assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
    }
    let (s, body) = node.get("/api/conversations", &alice_token).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(node.health().await, 503);
    assert!(node.is_running(), "the process stays up");

    outage.start();
    // Service resumes by itself; retries with the same ids store each once.
    let started = Instant::now();
    while node.health().await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "health never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 1..=5 {
        let ack = loop {
            let ack = client.emit_ack("message", &send(n)).await.unwrap();
            if ack["ok"] == true || started.elapsed() > Duration::from_secs(30) {
                break ack;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let stored = history(&node, &alice_token, "private", bob).await;
    let contents: Vec<&str> = stored.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "outage {backend:?}: 5 sends during the outage answered unavailable (slowest {slowest:?}), \
         recovered in {:?}, retried 5, stored 6 of 6, duplicates 0, process up",
        started.elapsed()
    );
}

/// Two nodes on one database, no Redis: a membership change made through
/// one node holds on the other, which had the group's members cached.
async fn membership_changes_hold_on_a_node_sharing_the_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let secret = palaver::auth::random_secret();
    let n1 = Node::start(&db.url, &secret).await;
    let n2 = Node::start(&db.url, &secret).await;
    let (_, owner_t) = n1.register("owner").await;
    let (member, member_t) = n1.register("member").await;
    let (late, late_t) = n1.register("late").await;
    let group = n1.create_group(&owner_t, "club", &[member]).await;
    let say = |content: &str| json!({"conversationType": "group", "receiverId": group, "content": content});
    // Node 2 caches the group's members while taking this.
    let m2 = n2.connect(&member_t).await;
    let ack = m2.emit_ack("message", &say("before")).await.unwrap();
    assert_eq!(ack["ok"], true, "{ack}");

    // Added through node 1: sends through node 2 at once.
    n1.add_member(&owner_t, group, late).await;
    let l2 = n2.connect(&late_t).await;
    let ack = l2
        .emit_ack("message", &say("hello, I'm new"))
        .await
        .unwrap();
    assert_eq!(
        ack["ok"], true,
        "the new member is refused on node 2: {ack}"
    );

    // Removed through node 1: within 5 s (the roster's age limit without
    // Redis) node 2 refuses them too.
    let started = Instant::now();
    let path = format!("/api/groups/{group}/members/{member}");
    assert_eq!(n1.delete(&path, &owner_t).await, 204);
    tokio::time::sleep(palaver::chat::SHARED_ROSTER_MAX_AGE.saturating_sub(started.elapsed()))
        .await;
    let ack = m2.emit_ack("message", &say("still here?")).await.unwrap();
    assert_eq!(
        ack["error"]["code"], "forbidden",
        "the removed member still sends through node 2: {ack}"
    );
    // Through node 2 they read the history up to their removal (v1.2),
    // not what was said after it.
    let o1 = n1.connect(&owner_t).await;
    let ack = o1.emit_ack("message", &say("after")).await.unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, body) = n2
        .get(
            &format!("/api/messages?conversationType=group&receiverId={group}"),
            &member_t,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let events: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["system"]["event"].as_str().unwrap_or("text"))
        .collect();
    assert_eq!(
        events,
        ["text", "member_added", "text", "member_removed"],
        "the removed member reads past their removal through node 2: {body}"
    );
}

/// Two nodes on one database, no Redis: a block made through one node
/// holds on the other within the max age, though the other has the
/// blocked user's block set cached, and so does lifting it. The other
/// node learns of each from the database's blocks version (one query per
/// max age), not by reading every cached set again.
async fn blocks_hold_on_a_node_sharing_the_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let secret = palaver::auth::random_secret();
    let n1 = Node::start(&db.url, &secret).await;
    let n2 = Node::start(&db.url, &secret).await;
    let (alice, alice_t) = n1.register("alice").await;
    let (bob, bob_t) = n1.register("bob").await;
    let say = |content: &str| json!({"conversationType": "private", "receiverId": alice, "content": content});
    let max_age = palaver::chat::SHARED_ROSTER_MAX_AGE;
    // Node 2 caches bob's (empty) block set while taking this.
    let b2 = n2.connect(&bob_t).await;
    let ack = b2.emit_ack("message", &say("hi")).await.unwrap();
    assert_eq!(ack["ok"], true, "{ack}");

    let started = Instant::now();
    let (status, body) = n1
        .post(&format!("/api/blocks/{bob}"), Some(&alice_t), json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    tokio::time::sleep(max_age.saturating_sub(started.elapsed())).await;
    let ack = b2.emit_ack("message", &say("still there?")).await.unwrap();
    assert_eq!(
        ack["error"]["code"], "forbidden",
        "node 2 let a blocked user's send through: {ack}"
    );

    let started = Instant::now();
    assert_eq!(
        n1.delete(&format!("/api/blocks/{bob}"), &alice_t).await,
        204
    );
    tokio::time::sleep(max_age.saturating_sub(started.elapsed())).await;
    let ack = b2.emit_ack("message", &say("friends again")).await.unwrap();
    assert_eq!(
        ack["ok"], true,
        "node 2 still refuses once the block is lifted: {ack}"
    );
}

/// Logging out everywhere through node 1 ends the socket on node 2 and
/// refuses the token there within a second or so (node 2 reads the log of
/// credential changes every half second; no Redis).
async fn a_revocation_on_one_node_holds_on_the_other(backend: Backend) {
    let db = TestDb::new(backend).await;
    let secret = palaver::auth::random_secret();
    let n1 = Node::start(&db.url, &secret).await;
    let n2 = Node::start(&db.url, &secret).await;
    let (_, token) = n1.register("alice").await;
    // Node 2 has checked (and cached) the token before the revocation.
    assert_eq!(n2.get("/api/me", &token).await.0, 200);
    let mut socket = n2.connect(&token).await;

    let (status, body) = n1
        .post("/api/auth/logout-all", Some(&token), json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    let (name, body) = socket
        .next_event_timeout(Duration::from_secs(3))
        .await
        .expect("node 2 ends the socket");
    assert_eq!(name, "session_ended", "{body}");
    assert_eq!(body["message"], "unauthorized: token revoked");
    let (status, body) = n2.get("/api/me", &token).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["message"], "unauthorized: token revoked");
}

/// Outage tests stop the machine's database server: only when asked.
fn outages_allowed() -> Result<(), Missing> {
    match std::env::var_os("PALAVER_TEST_OUTAGES") {
        Some(_) => Ok(()),
        None => Err(Missing {
            what: "outage tests".into(),
            why: "set PALAVER_TEST_OUTAGES=1 (they stop the database server)".into(),
            required_by: None,
        }),
    }
}

type Body = fn(Backend) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// `<test>::mariadb` and `<test>::postgres`, one at a time.
fn on_both(name: &str, test: Body, also: fn() -> Result<(), Missing>) -> [Trial; 2] {
    [(Backend::MySql, "mariadb"), (Backend::Postgres, "postgres")].map(|(backend, label)| {
        harness::test_if(
            backend.needed().and(also()),
            format!("{name}::{label}"),
            harness::on_tokio(move || async move {
                let _serial = SERIAL.lock().await;
                test(backend).await
            }),
        )
    })
}

fn main() {
    let always = || Ok(());
    let trials = [
        on_both(
            "two_nodes_share_one_database_without_gaps_or_errors",
            |b| Box::pin(two_nodes_share_one_database_without_gaps_or_errors(b)),
            always,
        ),
        on_both(
            "membership_changes_hold_on_a_node_sharing_the_database",
            |b| Box::pin(membership_changes_hold_on_a_node_sharing_the_database(b)),
            always,
        ),
        on_both(
            "blocks_hold_on_a_node_sharing_the_database",
            |b| Box::pin(blocks_hold_on_a_node_sharing_the_database(b)),
            always,
        ),
        on_both(
            "a_revocation_on_one_node_holds_on_the_other",
            |b| Box::pin(a_revocation_on_one_node_holds_on_the_other(b)),
            always,
        ),
        on_both(
            "database_outage_gives_errors_not_lies_and_service_resumes",
            |b| Box::pin(database_outage_gives_errors_not_lies_and_service_resumes(b)),
            outages_allowed,
        ),
    ];
    harness::run(trials.into_iter().flatten().collect())
}
