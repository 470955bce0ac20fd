//! Crash durability: `palaver serve` is killed with SIGKILL at random
//! moments while clients keep sending, and nothing acked is ever lost or
//! stored twice.
//!
//! Each test starts a real server process on a fresh database, registers
//! [`USERS`] users (private pairs plus one group of everyone) and runs one
//! client task per user that sends `message` with an ack and a unique
//! `clientMsgId`, about 2,000 messages/s in total, pipelined with a bounded
//! in-flight window. The controller kills the process with SIGKILL at a
//! random moment of every cycle and restarts it on the same port and
//! database. Like a real client, a task whose connection drops reconnects
//! (retrying until the server is back) and resends every unacked message
//! with the same `clientMsgId` and content. At the end every outstanding
//! message is resent until acked, and the full history of every
//! conversation (`GET /api/messages`, paged with `afterSeq`) must show:
//! every acked message exactly once, with the content sent and the id and
//! seq its ack named; no message stored twice; every conversation's seq
//! `1..=n` without gaps. A sample of acked messages is then resent once
//! more, and each retry's ack must be the original message.
//!
//! The figure line (uncaptured, on stderr) reads e.g.
//! `crash sqlite: cycles=10 sent=N acked=N retried=N acked_missing=0 duplicates=0 gaps=0 ...`;
//! users compose at `rate` in total whatever the server does (while
//! offline, or ahead of the window, messages queue as in a real client);
//! `mean` is what was composed per second of the run, `drain` how long the
//! final resend of everything outstanding took. When the server has a
//! per-user message rate limit (`--message-rate`) or a registration limit
//! (`--registrations-per-ip`), the test switches them off: it measures
//! durability.
//!
//! SIGKILL ends the process, not the machine: what reached the kernel
//! (SQLite's WAL, MariaDB's socket) survives. This test proves the server
//! never acks before commit and that retries are idempotent across
//! restarts; power-loss durability is the database's `fsync` settings.
//!
//! Short by default (CI: 10 cycles of 1–2 s each per backend). Longer on
//! demand with environment variables:
//! - `PALAVER_CRASH_CYCLES` — kill/restart cycles (default 10);
//! - `PALAVER_CRASH_CYCLE_MS` — mean traffic per cycle in ms (default 1500;
//!   each kill comes uniformly at random within ±1/3 of it);
//! - `PALAVER_CRASH_RATE` — total messages/s offered (default 2000; more
//!   users are added above 40 messages/s per user);
//! - `PALAVER_CRASH_SEED` — seed for the kill moments and contents (printed
//!   in the figure line, to replay a run).
//!
//! The MariaDB test needs MySQL/MariaDB, on its default local port or named
//! by `PALAVER_TEST_MYSQL_URL` (skipped otherwise, failed when
//! `PALAVER_REQUIRE_ALL_BACKENDS` is set).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use palaver_client::Client;
use palaver_protocol::{ConversationType, Message};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::db::{Backend, TestDb};
use support::harness;
use support::process::{Node, Spawn};
use tokio::time::{Instant, MissedTickBehavior};

/// The two backend tests each want both cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Users at the default rate (an even number: they form private pairs).
/// 56 users at 2,000 msg/s is about 36 msg/s each, below any sensible
/// per-user rate limit.
const USERS: usize = 56;
/// Most messages/s one user offers; more users are added above it.
const MAX_USER_RATE: f64 = 40.0;
/// Sends one client keeps in flight before waiting for acks.
const WINDOW: usize = 32;
/// An ack not back after this long counts as lost (the server answers
/// every send within 1.8 s; the connection is assumed dead).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a restarted server may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the final resend of everything outstanding may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause before resending after an `unavailable` or `rate_limited` answer.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        _ => default,
    }
}

/// What one run does.
#[derive(Debug, Clone, Copy)]
struct Plan {
    cycles: u64,
    cycle_ms: u64,
    rate: u64,
    users: usize,
    seed: u64,
}

impl Plan {
    fn from_env() -> Plan {
        let rate = env_u64("PALAVER_CRASH_RATE", 2000).max(1);
        let needed = (rate as f64 / MAX_USER_RATE).ceil() as usize;
        let users = USERS.max(needed + needed % 2);
        Plan {
            cycles: env_u64("PALAVER_CRASH_CYCLES", 10),
            cycle_ms: env_u64("PALAVER_CRASH_CYCLE_MS", 1500).max(30),
            rate,
            users,
            seed: env_u64("PALAVER_CRASH_SEED", rand::random()),
        }
    }
}

/// A conversation's full history, paged with `afterSeq`.
async fn history(server: &Node, token: &str, conv: Conv) -> Vec<Message> {
    let (kind, receiver) = conv.addressed_by_first();
    support::process::history(server, token, kind, receiver).await
}

/// `--message-rate 0` and `--registrations-per-ip 0` (unlimited), for
/// those of the two this build has; this test measures durability, not
/// the limiters (it registers dozens of users at once).
fn rate_limit_off() -> Vec<String> {
    let help = Command::new(env!("CARGO_BIN_EXE_palaver"))
        .args(["serve", "--help"])
        .output()
        .expect("palaver serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    ["--message-rate", "--registrations-per-ip"]
        .into_iter()
        .filter(|flag| help.contains(flag))
        .flat_map(|flag| [flag.to_string(), "0".to_string()])
        .collect()
}

/// A conversation: the unordered pair of users, or the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Conv {
    Private(i64, i64),
    Group(i64),
}

impl Conv {
    fn private(a: i64, b: i64) -> Conv {
        Conv::Private(a.min(b), a.max(b))
    }

    fn of(m: &Message) -> Conv {
        match m.conversation_type {
            ConversationType::Private => Conv::private(m.sender_id, m.receiver_id),
            ConversationType::Group => Conv::Group(m.receiver_id),
        }
    }

    /// `(conversationType, receiverId)` as the lower user of a pair (or
    /// any group member) addresses it.
    fn addressed_by_first(self) -> (&'static str, i64) {
        match self {
            Conv::Private(_, hi) => ("private", hi),
            Conv::Group(g) => ("group", g),
        }
    }
}

/// One message a client generated, and its ack once it came.
#[derive(Debug, Clone)]
struct Sent {
    sender: i64,
    cid: String,
    conv: Conv,
    content: String,
    acked: Option<Message>,
}

/// The run's figures; every one from `acked_missing` on must be 0.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Figures {
    sent: u64,
    acked: u64,
    /// Acked, yet absent from the history.
    acked_missing: u64,
    /// Extra rows with a (sender, clientMsgId) already stored.
    duplicates: u64,
    /// Missing or repeated seq numbers, over all conversations.
    gaps: u64,
    /// Stored with other content or in another conversation than sent.
    corrupt: u64,
    /// The stored row differs from the message its ack carried.
    ack_mismatch: u64,
    /// Rows nobody sent.
    unknown: u64,
}

impl Figures {
    fn faults(&self) -> u64 {
        self.acked_missing
            + self.duplicates
            + self.gaps
            + self.corrupt
            + self.ack_mismatch
            + self.unknown
    }
}

/// Compares what was sent and acked with what the history shows; returns
/// the figures and the first few problems in words.
fn check(sent: &[Sent], stored: &BTreeMap<Conv, Vec<Message>>) -> (Figures, Vec<String>) {
    let mut f = Figures::default();
    let mut notes = Vec::new();
    let mut note = |s: String| {
        if notes.len() < 20 {
            notes.push(s);
        }
    };
    let by_key: HashMap<(i64, &str), &Sent> = sent
        .iter()
        .map(|s| ((s.sender, s.cid.as_str()), s))
        .collect();
    let mut found: HashMap<(i64, &str), Vec<&Message>> = HashMap::new();
    for (conv, messages) in stored {
        let seqs: BTreeSet<i64> = messages.iter().map(|m| m.seq).collect();
        let repeated = (messages.len() - seqs.len()) as u64;
        let top = seqs.last().copied().unwrap_or(0).max(0);
        let missing = (1..=top).filter(|s| !seqs.contains(s)).count() as u64;
        let below = seqs.iter().filter(|&&s| s < 1).count() as u64;
        if repeated + missing + below > 0 {
            note(format!(
                "{conv:?}: {} rows, seq up to {top}: {missing} missing, {repeated} repeated, {below} below 1",
                messages.len()
            ));
        }
        f.gaps += repeated + missing + below;
        for m in messages {
            let key = m
                .client_msg_id
                .as_deref()
                .and_then(|cid| by_key.get_key_value(&(m.sender_id, cid)));
            let Some((&key, s)) = key else {
                f.unknown += 1;
                note(format!("stored but never sent: {m:?}"));
                continue;
            };
            if m.content != s.content || Conv::of(m) != s.conv || Conv::of(m) != *conv {
                f.corrupt += 1;
                note(format!("stored {m:?}, sent {s:?}"));
            }
            found.entry(key).or_default().push(m);
        }
    }
    for (key, rows) in &found {
        if rows.len() > 1 {
            f.duplicates += rows.len() as u64 - 1;
            note(format!("{key:?} stored {} times: {rows:?}", rows.len()));
        }
    }
    for s in sent {
        f.sent += 1;
        let Some(acked) = &s.acked else { continue };
        f.acked += 1;
        match found.get(&(s.sender, s.cid.as_str())) {
            None => {
                f.acked_missing += 1;
                note(format!("acked but missing: {acked:?}"));
            }
            Some(rows) if rows.contains(&acked) => {}
            Some(rows) => {
                f.ack_mismatch += 1;
                note(format!("acked {acked:?}, stored {rows:?}"));
            }
        }
    }
    (f, notes)
}

/// Counters the client tasks share with the controller.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Sent and not yet acked, right now.
    outstanding: AtomicI64,
    sent: AtomicU64,
    acked: AtomicU64,
    retried: AtomicU64,
    connects: AtomicU64,
    unavailable: AtomicU64,
    rate_limited: AtomicU64,
}

/// One user's client: who it is and whom it talks to.
struct User {
    index: usize,
    id: i64,
    token: String,
    peer: i64,
    group: i64,
}

/// What a client task hands back.
struct Outcome {
    sent: Vec<Sent>,
    errors: Vec<String>,
}

/// Why an ack did not come.
#[derive(Debug)]
enum AckLost {
    Closed,
    Timeout,
}

type Inflight = FuturesUnordered<BoxFuture<'static, (usize, Result<Value, AckLost>)>>;

fn payload(s: &Sent) -> Value {
    let (kind, receiver) = match s.conv {
        Conv::Private(a, b) => ("private", if a == s.sender { b } else { a }),
        Conv::Group(g) => ("group", g),
    };
    json!({
        "conversationType": kind,
        "receiverId": receiver,
        "content": s.content,
        "clientMsgId": s.cid,
    })
}

/// Emits one send and returns the future of its ack, or `None` when the
/// connection is already gone.
fn emit(
    client: &Client,
    k: usize,
    s: &Sent,
) -> Option<BoxFuture<'static, (usize, Result<Value, AckLost>)>> {
    let rx = client.emit_ack_deferred("message", &payload(s)).ok()?;
    Some(
        async move {
            let r = match tokio::time::timeout(ACK_TIMEOUT, rx).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(_)) => Err(AckLost::Closed),
                Err(_) => Err(AckLost::Timeout),
            };
            (k, r)
        }
        .boxed(),
    )
}

/// Connects, retrying while the server is down; `None` after `within`.
async fn connect_retrying(addr: SocketAddr, token: &str, within: Duration) -> Option<Client> {
    let started = Instant::now();
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            Client::connect(addr, Some(json!({ "token": token }))),
        )
        .await;
        if let Ok(Ok(client)) = attempt {
            return Some(client);
        }
        if started.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What became of one ack.
enum Answer {
    Done,
    RetryLater,
    ConnectionLost,
}

/// One user: sends at `period` intervals with at most [`WINDOW`] in flight,
/// reconnects when the connection drops and resends everything unacked with
/// the same clientMsgId, until stopped and everything is acked.
async fn run_user(
    user: User,
    addr: SocketAddr,
    period: Duration,
    seed: u64,
    shared: Arc<Shared>,
) -> Outcome {
    let mut rng =
        StdRng::seed_from_u64(seed ^ (user.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut sent: Vec<Sent> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut retry: VecDeque<usize> = VecDeque::new();
    let mut retry_at = Instant::now();
    let mut inflight: Inflight = FuturesUnordered::new();
    let mut client: Option<Client> = None;
    let mut drain_deadline: Option<Instant> = None;
    let first = Instant::now() + period.mul_f64(rng.gen_range(0.0..1.0));
    let mut tick = tokio::time::interval_at(first, period);
    // Users type at their pace whatever the server does: a late tick is
    // made up for, and what cannot go out yet waits in `retry`.
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);

    let answer = |k: usize,
                  r: Result<Value, AckLost>,
                  sent: &mut Vec<Sent>,
                  retry: &mut VecDeque<usize>,
                  errors: &mut Vec<String>|
     -> Answer {
        let ack = match r {
            Ok(ack) => ack,
            Err(_) => {
                retry.push_back(k);
                return Answer::ConnectionLost;
            }
        };
        if ack["ok"] == true {
            let m: Message = match serde_json::from_value(ack["message"].clone()) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(format!("unreadable ok ack {ack}: {e}"));
                    return Answer::Done;
                }
            };
            let s = &mut sent[k];
            if m.sender_id != s.sender
                || m.client_msg_id.as_deref() != Some(s.cid.as_str())
                || m.content != s.content
                || Conv::of(&m) != s.conv
            {
                errors.push(format!("ack for {s:?} carries {m:?}"));
            }
            match &s.acked {
                Some(prev) if *prev != m => {
                    errors.push(format!("acked twice, differently: {prev:?} then {m:?}"));
                }
                Some(_) => {}
                None => {
                    s.acked = Some(m);
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                    shared.outstanding.fetch_sub(1, Ordering::Relaxed);
                }
            }
            return Answer::Done;
        }
        match ack["error"]["code"].as_str() {
            Some("unavailable") => {
                shared.unavailable.fetch_add(1, Ordering::Relaxed);
                retry.push_back(k);
                Answer::RetryLater
            }
            Some("rate_limited") => {
                shared.rate_limited.fetch_add(1, Ordering::Relaxed);
                retry.push_back(k);
                Answer::RetryLater
            }
            _ => {
                errors.push(format!("send {:?} answered {ack}", sent[k]));
                Answer::Done
            }
        }
    };

    // `retry` holds every message not in flight and not acked: composed
    // while offline, lost with a connection, or answered `unavailable`.
    let mut emits: Vec<u32> = Vec::new();
    let mut connecting: Option<BoxFuture<'static, Option<Client>>> = None;
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        if stopping {
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
            if Instant::now() > deadline {
                errors.push(format!(
                    "{} sends still unacked {DRAIN_TIMEOUT:?} after the last restart",
                    retry.len() + inflight.len()
                ));
                break;
            }
            if retry.is_empty() && inflight.is_empty() {
                break;
            }
        }
        if client.is_none() && connecting.is_none() {
            // Acks still owed on the lost connection fail by themselves
            // (the client fails them all when its socket closes) and put
            // their message back in `retry`; meanwhile the user keeps typing.
            let (token, within) = (user.token.clone(), START_TIMEOUT * 2);
            connecting = Some(async move { connect_retrying(addr, &token, within).await }.boxed());
        }
        // Resend what was not acked before anything new.
        if let Some(c) = client.as_ref().filter(|_| Instant::now() >= retry_at) {
            while inflight.len() < WINDOW {
                let Some(k) = retry.pop_front() else { break };
                match emit(c, k, &sent[k]) {
                    Some(fut) => {
                        inflight.push(fut);
                        if emits[k] > 0 {
                            shared.retried.fetch_add(1, Ordering::Relaxed);
                        }
                        emits[k] += 1;
                    }
                    None => {
                        retry.push_front(k);
                        client = None;
                        break;
                    }
                }
            }
            if client.is_none() {
                continue;
            }
        }
        tokio::select! {
            connected = async { connecting.as_mut().expect("connecting").await }, if connecting.is_some() => {
                connecting = None;
                match connected {
                    Some(c) => {
                        shared.connects.fetch_add(1, Ordering::Relaxed);
                        client = Some(c);
                    }
                    None => {
                        errors.push(format!("user {} could not reconnect", user.id));
                        break;
                    }
                }
            }
            Some((k, r)) = inflight.next(), if !inflight.is_empty() => {
                match answer(k, r, &mut sent, &mut retry, &mut errors) {
                    Answer::Done => {}
                    Answer::RetryLater => retry_at = Instant::now() + RETRY_PAUSE,
                    Answer::ConnectionLost => client = None,
                }
            }
            _ = tick.tick(), if !stopping => {
                let k = sent.len();
                let (conv, what) = if k % 4 == 3 {
                    (Conv::Group(user.group), "group")
                } else {
                    (Conv::private(user.id, user.peer), "private")
                };
                let filler: String = (0..rng.gen_range(0..48))
                    .map(|_| rng.gen_range(b'a'..=b'z') as char)
                    .collect();
                sent.push(Sent {
                    sender: user.id,
                    cid: format!("crash-{}-{k}", user.id),
                    conv,
                    content: format!("{what} #{k} from {} ünïcødé ✓ {filler}", user.id),
                    acked: None,
                });
                emits.push(0);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                shared.outstanding.fetch_add(1, Ordering::Relaxed);
                // Sent in turn, after older resends, once online.
                retry.push_back(k);
            }
            _ = tokio::time::sleep_until(retry_at), if !retry.is_empty() && Instant::now() < retry_at => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    Outcome { sent, errors }
}

/// The fault test: see the module docs.
async fn acked_messages_survive_sigkill_exactly_once(backend: Backend, label: &str) {
    let plan = Plan::from_env();
    let test_started = Instant::now();
    let db = TestDb::new(backend).await;
    let logdir = tempfile::tempdir().expect("tempdir");
    let mut server = Spawn::new(&db.url, &palaver::auth::random_secret())
        .args(&rate_limit_off())
        .log(&logdir.path().join("palaver.log"))
        .http_timeout(Duration::from_secs(30))
        .start()
        .await;
    let addr = server.addr;

    // Users 2i and 2i+1 talk privately; everyone is in one group.
    let users: Vec<(i64, String)> = futures_util::future::join_all(
        (0..plan.users).map(|i| register_owned(&server, format!("crash_{i}"))),
    )
    .await;
    let ids: Vec<i64> = users.iter().map(|(id, _)| *id).collect();
    let group = server.create_group(&users[0].1, "crash", &ids[1..]).await;

    let shared = Arc::new(Shared::default());
    let period = Duration::from_secs_f64(plan.users as f64 / plan.rate as f64);
    let tasks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, (id, token))| {
            let user = User {
                index: i,
                id: *id,
                token: token.clone(),
                peer: ids[i ^ 1],
                group,
            };
            tokio::spawn(run_user(user, addr, period, plan.seed, shared.clone()))
        })
        .collect();

    // Kill at a random moment of every cycle, restart at once.
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let started = Instant::now();
    let (mut unacked_at_kills, mut restart_max) = (0i64, Duration::ZERO);
    for _ in 0..plan.cycles {
        let lo = plan.cycle_ms * 2 / 3;
        let hi = plan.cycle_ms * 4 / 3;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(lo..=hi))).await;
        unacked_at_kills += shared.outstanding.load(Ordering::Relaxed).max(0);
        server.kill();
        let restarted = Instant::now();
        server.restart().await;
        restart_max = restart_max.max(restarted.elapsed());
    }
    // Some traffic on the last incarnation, then resend until all is acked.
    tokio::time::sleep(Duration::from_millis(plan.cycle_ms / 2)).await;
    let traffic = started.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    let drain_started = Instant::now();
    let mut sent = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let outcome = t.await.expect("client task");
        sent.extend(outcome.sent);
        errors.extend(outcome.errors);
    }

    let drain = drain_started.elapsed();
    // The history of every conversation, read once.
    let mut stored = BTreeMap::new();
    let group_history = history(&server, &users[0].1, Conv::Group(group)).await;
    stored.insert(Conv::Group(group), group_history);
    for pair in users.chunks(2) {
        let conv = Conv::private(pair[0].0, pair[1].0);
        let token = if pair[0].0 < pair[1].0 {
            &pair[0].1
        } else {
            &pair[1].1
        };
        let history = history(&server, token, conv).await;
        stored.insert(conv, history);
    }
    let (figures, notes) = check(&sent, &stored);

    // A retry of an already-stored message returns the original.
    let mut retry_checked = 0;
    let mut retry_mismatch = Vec::new();
    for (i, (id, token)) in users.iter().enumerate().step_by(7) {
        let client = connect_retrying(addr, token, START_TIMEOUT)
            .await
            .expect("connect for the retry check");
        let mine: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.sender == *id && s.acked.is_some())
            .collect();
        for s in [mine.first(), mine.get(mine.len() / 2), mine.last()]
            .into_iter()
            .flatten()
        {
            let ack = client
                .emit_ack("message", &payload(s))
                .await
                .expect("retry ack");
            let again: Option<Message> = serde_json::from_value(ack["message"].clone()).ok();
            retry_checked += 1;
            if again.as_ref() != s.acked.as_ref() {
                retry_mismatch.push(format!("user {i}: retry of {s:?} answered {ack}"));
            }
        }
        client.close();
    }

    let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let _ = writeln!(
        std::io::stderr(),
        "crash {label}: cycles={} sent={} acked={} retried={} acked_missing={} duplicates={} gaps={} \
         corrupt={} ack_mismatch={} unknown={} retry_check={}/{retry_checked} errors={} \
         | users={} rate={}/s mean={:.0}/s traffic={:.1}s drain={:.1}s took={:.1}s unacked_at_kills={unacked_at_kills} reconnects={} \
         unavailable={} rate_limited={} restart_max={}ms seed={}",
        plan.cycles,
        figures.sent,
        figures.acked,
        counter(&shared.retried),
        figures.acked_missing,
        figures.duplicates,
        figures.gaps,
        figures.corrupt,
        figures.ack_mismatch,
        figures.unknown,
        retry_checked - retry_mismatch.len(),
        errors.len(),
        plan.users,
        plan.rate,
        figures.sent as f64 / traffic.as_secs_f64(),
        traffic.as_secs_f64(),
        drain.as_secs_f64(),
        test_started.elapsed().as_secs_f64(),
        counter(&shared.connects).saturating_sub(plan.users as u64),
        counter(&shared.unavailable),
        counter(&shared.rate_limited),
        restart_max.as_millis(),
        plan.seed,
    );
    let problems: Vec<&String> = notes
        .iter()
        .chain(&errors)
        .chain(&retry_mismatch)
        .take(20)
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "crash {label}: first problems:\n{}\nserver log tail:\n{}",
            problems
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            server.log_tail(30)
        );
    }
    assert!(figures.sent > 0, "nothing was sent");
    assert_eq!(figures.faults(), 0, "durability faults: {figures:?}");
    assert_eq!(
        figures.acked, figures.sent,
        "every send is acked in the end"
    );
    assert!(errors.is_empty(), "client errors: {errors:?}");
    assert!(retry_mismatch.is_empty(), "retries: {retry_mismatch:?}");
    assert!(retry_checked > 0);
}

/// [`Node::register`] with an owned name, for `join_all`.
async fn register_owned(server: &Node, name: String) -> (i64, String) {
    server.register(&name).await
}

fn main() {
    let crash = |backend: Backend, label: &'static str| {
        harness::test_if(
            backend.needed(),
            format!("crash_{label}"),
            harness::on_tokio(move || async move {
                let _serial = SERIAL.lock().await;
                acked_messages_survive_sigkill_exactly_once(backend, label).await;
            }),
        )
    };
    harness::run(vec![
        crash(Backend::Sqlite, "sqlite"),
        crash(Backend::MySql, "mariadb"),
        harness::test(
            "checker_counts_missing_duplicate_and_gapped_messages",
            checker_counts_missing_duplicate_and_gapped_messages,
        ),
    ])
}

/// The checker itself: it must see each kind of fault.
fn checker_counts_missing_duplicate_and_gapped_messages() {
    let at = chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let row = |id: i64, seq: i64, cid: &str| Message {
        id,
        conversation_type: ConversationType::Private,
        sender_id: 1,
        receiver_id: 2,
        seq,
        content: format!("c {cid}"),
        client_msg_id: Some(cid.to_string()),
        created_at: at,
        edited_at: None,
        deleted_at: None,
        reply_to: None,
        change_seq: 0,
        reactions: Vec::new(),
        mentions: Vec::new(),
        kind: Default::default(),
        system: None,
    };
    let sent = |cid: &str, acked: Option<Message>| Sent {
        sender: 1,
        cid: cid.to_string(),
        conv: Conv::private(1, 2),
        content: format!("c {cid}"),
        acked,
    };
    let conv = Conv::private(1, 2);

    // All well: three acked, three stored.
    let good = vec![row(10, 1, "a"), row(11, 2, "b"), row(12, 3, "c")];
    let all = vec![
        sent("a", Some(good[0].clone())),
        sent("b", Some(good[1].clone())),
        sent("c", Some(good[2].clone())),
    ];
    let (f, notes) = check(&all, &BTreeMap::from([(conv, good.clone())]));
    assert_eq!(f.faults(), 0, "{notes:?}");
    assert_eq!((f.sent, f.acked), (3, 3));

    // "b" lost after its ack: missing, and a gap at seq 2.
    let lost = vec![good[0].clone(), good[2].clone()];
    let (f, _) = check(&all, &BTreeMap::from([(conv, lost)]));
    assert_eq!((f.acked_missing, f.gaps), (1, 1));

    // "c" stored twice by a retry.
    let mut twice = good.clone();
    twice.push(row(13, 4, "c"));
    let (f, _) = check(&all, &BTreeMap::from([(conv, twice)]));
    assert_eq!(f.duplicates, 1);

    // "c" lost and re-stored by a retry under a new id: the ack lied.
    let mut moved = good.clone();
    moved[2] = row(14, 3, "c");
    let (f, _) = check(&all, &BTreeMap::from([(conv, moved)]));
    assert_eq!(f.ack_mismatch, 1);

    // Wrong content, a row nobody sent, a repeated seq.
    let mut odd = good.clone();
    odd[0].content = "changed".into();
    odd.push(row(15, 3, "zzz"));
    let (f, _) = check(&all, &BTreeMap::from([(conv, odd)]));
    assert_eq!((f.corrupt, f.unknown, f.gaps), (1, 1, 1));
}
