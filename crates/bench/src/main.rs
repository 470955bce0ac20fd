//! `palaver-bench`: a load generator for Palaver and for the reference Node
//! server (`bench/reference`), so both are measured by one tool in one run.
//!
//! It opens one Socket.IO connection per user over WebSocket (spread over
//! 127.0.0.x source addresses), then either holds them idle (memory per
//! connection) or sends `message` open-loop at a fixed rate: private pairs
//! or groups of N. Every message carries its send time and number; the
//! receivers measure send→deliver latency and count losses and duplicates.
//! `--search` finds the highest rate held at p99 ≤ 50 ms with nothing lost
//! (a climb phase failed by latency alone is run once more first).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use palaver_client::{Client, Options};
use serde_json::json;

mod args;
mod report;
mod search;

use args::{Args, Scenario, Target};
use report::{print_phase, rss_kib, PhaseReport, Report};

/// Counters of one phase.
struct Phase {
    started: Instant,
    expected_per_msg: u16,
    received: Vec<AtomicU16>,
    delivered: AtomicU64,
    acked_ok: AtomicU64,
    ack_errors: AtomicU64,
    /// Delivery latencies: the whole phase's, and those since the last
    /// progress line (one lock for both, taken once per delivery).
    deliver_us: Mutex<[Histogram<u64>; 2]>,
    ack_us: Mutex<Histogram<u64>>,
    /// Deliveries whose `seq` was not above the last one that connection saw.
    out_of_order: AtomicU64,
}

impl Phase {
    fn new(capacity: usize, expected_per_msg: u16) -> Phase {
        Phase {
            started: Instant::now(),
            expected_per_msg,
            received: (0..capacity).map(|_| AtomicU16::new(0)).collect(),
            delivered: AtomicU64::new(0),
            acked_ok: AtomicU64::new(0),
            ack_errors: AtomicU64::new(0),
            deliver_us: Mutex::new(std::array::from_fn(|_| {
                Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()
            })),
            ack_us: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()),
            out_of_order: AtomicU64::new(0),
        }
    }

    fn micros(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

/// Shared by every connection's receive handler.
struct Shared {
    phase: RwLock<Arc<Phase>>,
    /// The highest `seq` each connection has received (Palaver only). Every
    /// connection receives one conversation (its partner's, or its group's),
    /// so seqs must arrive in increasing order.
    last_seq: Vec<AtomicI64>,
}

/// Parses `…"content":"<k>:<t_us>:<sender>"…` out of a delivery frame.
fn on_delivery(shared: &Shared, me: usize, frame: &str) {
    let Some(start) = frame.find("\"content\":\"") else {
        return;
    };
    let rest = &frame[start + 11..];
    let Some(end) = rest.find('"') else { return };
    let mut parts = rest[..end].split(':');
    let (Some(k), Some(t), Some(sender)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(k), Ok(t), Ok(sender)) = (
        k.parse::<usize>(),
        t.parse::<u64>(),
        sender.parse::<usize>(),
    ) else {
        return;
    };
    if sender == me {
        return; // the reference server echoes group messages to their sender
    }
    let phase = shared.phase.read().unwrap().clone();
    let Some(slot) = phase.received.get(k) else {
        return;
    };
    if let (Some(seq), Some(last)) = (seq_of(frame), shared.last_seq.get(me)) {
        if last.fetch_max(seq, Ordering::Relaxed) >= seq {
            phase.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }
    slot.fetch_add(1, Ordering::Relaxed);
    phase.delivered.fetch_add(1, Ordering::Relaxed);
    let latency = phase.micros().saturating_sub(t).max(1);
    for h in phase.deliver_us.lock().unwrap().iter_mut() {
        let _ = h.record(latency);
    }
}

/// The `"seq":<n>` of a Palaver delivery frame.
fn seq_of(frame: &str) -> Option<i64> {
    let rest = &frame[frame.find("\"seq\":")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn mint(secret: &str, user: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user.to_string(), "iat": now, "exp": now + 86_400}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode token")
}

struct Bench {
    args: Args,
    shared: Arc<Shared>,
    clients: Vec<Client>,
    /// For each user, where its messages go (the partner or the group id).
    targets: Vec<i64>,
    /// Unique to this run, so that `clientMsgId`s never repeat across runs
    /// against one database.
    run_id: String,
    /// Phases started, so that `clientMsgId`s never repeat across phases.
    phases_started: std::sync::atomic::AtomicU32,
}

impl Bench {
    fn user_id(&self, i: usize) -> i64 {
        self.args.user_offset + i as i64 + 1
    }

    async fn connect_all(args: &Args, shared: &Arc<Shared>) -> anyhow::Result<Vec<Client>> {
        let secret = args.jwt_secret.clone();
        if args.target == Target::Palaver && secret.is_none() {
            bail!("--jwt-secret (or PALAVER_JWT_SECRET) is needed to mint tokens for Palaver");
        }
        let mut clients = Vec::with_capacity(args.users);
        let started = Instant::now();
        // Connect in waves to keep the accept queue reasonable.
        for wave in (0..args.users).collect::<Vec<_>>().chunks(200) {
            let mut pending = Vec::new();
            for &i in wave {
                let user = args.user_offset + i as i64 + 1;
                let auth = match args.target {
                    Target::Palaver => json!({"token": mint(secret.as_deref().unwrap(), user)}),
                    Target::Reference => json!({ "userId": user }),
                };
                let ip = IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    0,
                    1 + (i % args.source_ips.max(1) as usize) as u8,
                ));
                let server = args.servers[i % args.servers.len()];
                let shared = shared.clone();
                let opts = Options {
                    auth: Some(auth),
                    local_ip: Some(ip),
                    query: None,
                    raw_events: Some(Arc::new(move |frame: &str| on_delivery(&shared, i, frame))),
                };
                pending.push(tokio::spawn(async move {
                    Client::connect_with(server, opts).await
                }));
            }
            for p in pending {
                clients.push(p.await?.context("connect")?);
            }
            eprint!("\rconnected {}/{}", clients.len(), args.users);
        }
        eprintln!(" in {:.1}s", started.elapsed().as_secs_f64());
        Ok(clients)
    }

    /// Sets up groups (consecutive users) and each user's target.
    async fn setup_targets(&mut self) -> anyhow::Result<()> {
        let n = self.args.users;
        match self.args.scenario {
            Scenario::Idle => {}
            Scenario::Private => {
                self.targets = (0..n)
                    .map(|i| self.user_id(i ^ 1).min(self.user_id(n - 1)))
                    .collect();
            }
            Scenario::Group => {
                let size = self.args.group_size;
                if !n.is_multiple_of(size) {
                    bail!("--users must be a multiple of --group-size");
                }
                let mut group_ids = Vec::new();
                match self.args.target {
                    Target::Palaver => {
                        let http = reqwest::Client::new();
                        let secret = self.args.jwt_secret.clone().unwrap();
                        for g in 0..n / size {
                            let owner = self.user_id(g * size);
                            let members: Vec<i64> =
                                (1..size).map(|j| self.user_id(g * size + j)).collect();
                            let resp = http
                                .post(format!("http://{}/api/groups", self.args.servers[0]))
                                .bearer_auth(mint(&secret, owner))
                                .json(&json!({"name": format!("bench {g}"), "memberIds": members}))
                                .send()
                                .await?;
                            let status = resp.status();
                            let body: serde_json::Value = resp.json().await?;
                            if status.as_u16() != 201 {
                                bail!("creating a group failed: {status} {body}");
                            }
                            group_ids.push(body["id"].as_i64().unwrap());
                        }
                    }
                    Target::Reference => {
                        use sqlx::Connection;
                        let mut db = sqlx::MySqlConnection::connect(&self.args.reference_mysql_url)
                            .await
                            .context("reference MySQL")?;
                        sqlx::query("DELETE FROM group_membership")
                            .execute(&mut db)
                            .await?;
                        for g in 0..n / size {
                            let gid = g as i64 + 1;
                            for j in 0..size {
                                sqlx::query("INSERT INTO group_membership (group_id, user_id) VALUES (?, ?)")
                                    .bind(gid)
                                    .bind(self.user_id(g * size + j))
                                    .execute(&mut db)
                                    .await?;
                            }
                            group_ids.push(gid);
                        }
                    }
                }
                self.targets = (0..n).map(|i| group_ids[i / size]).collect();
            }
        }
        Ok(())
    }

    fn expected_per_msg(&self) -> u16 {
        match self.args.scenario {
            Scenario::Group => (self.args.group_size - 1) as u16,
            _ => 1,
        }
    }

    /// One open-loop phase at `rate` messages/s for `--duration` seconds.
    async fn phase(&self, rate: f64) -> PhaseReport {
        self.phase_of(rate, (rate * self.args.duration).ceil() as usize)
            .await
    }

    /// One open-loop phase of `total` messages at `rate` messages/s.
    async fn phase_of(&self, rate: f64, total: usize) -> PhaseReport {
        let phase = Arc::new(Phase::new(total, self.expected_per_msg()));
        *self.shared.phase.write().unwrap() = phase.clone();
        let kind = match self.args.scenario {
            Scenario::Group => "group",
            _ => "private",
        };
        let n = self.clients.len();
        let phase_no = self.phases_started.fetch_add(1, Ordering::Relaxed);
        let keyed = self.args.client_msg_ids && self.args.target == Target::Palaver;
        let mut sent = 0usize;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_progress = Instant::now();
        while sent < total {
            tick.tick().await;
            let due = ((phase.started.elapsed().as_secs_f64() * rate) as usize).min(total);
            while sent < due {
                let k = sent;
                let sender = k % n;
                let t = phase.micros();
                let key = if keyed {
                    format!(r#","clientMsgId":"{}-{phase_no}-{k}""#, self.run_id)
                } else {
                    String::new()
                };
                let encoded = format!(
                    r#"["message",{{"conversationType":"{kind}","senderId":{},"receiverId":{},"content":"{k}:{t}:{sender}"{key}}}]"#,
                    self.user_id(sender),
                    self.targets[sender],
                );
                let client = &self.clients[sender];
                match self.args.target {
                    Target::Palaver => {
                        let phase = phase.clone();
                        let _ = client.emit_raw_with_ack(&encoded, move |ack| {
                            if ack["ok"] == true {
                                phase.acked_ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                phase.ack_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            let latency = phase.micros().saturating_sub(t).max(1);
                            let _ = phase.ack_us.lock().unwrap().record(latency);
                        });
                    }
                    Target::Reference => {
                        let _ = client.send_raw(format!("42{encoded}"));
                    }
                }
                sent += 1;
            }
            if last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                let (p99, recent) = {
                    let mut h = phase.deliver_us.lock().unwrap();
                    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
                    let both = (p99(&h[0]), p99(&h[1]));
                    h[1].reset();
                    both
                };
                eprintln!(
                    "  {:>5.1}s sent {sent:>8} delivered {:>9} p99 {p99:>8.1} ms (last second {recent:>8.1} ms)",
                    phase.started.elapsed().as_secs_f64(),
                    phase.delivered.load(Ordering::Relaxed)
                );
            }
        }
        let send_done = phase.started.elapsed().as_secs_f64();
        // Drain: until everything arrived, or nothing moved for 2 s.
        let expected = total as u64 * u64::from(phase.expected_per_msg);
        let mut last = (phase.delivered.load(Ordering::Relaxed), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let d = phase.delivered.load(Ordering::Relaxed);
            let acks_done = self.args.target == Target::Reference
                || phase.acked_ok.load(Ordering::Relaxed)
                    + phase.ack_errors.load(Ordering::Relaxed)
                    >= total as u64;
            if d >= expected && acks_done {
                break;
            }
            if d != last.0 {
                last = (d, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        let mut lost = 0;
        let mut duplicates = 0;
        for slot in &phase.received {
            let got = u64::from(slot.load(Ordering::Relaxed));
            let want = u64::from(phase.expected_per_msg);
            lost += want.saturating_sub(got);
            duplicates += got.saturating_sub(want);
        }
        let deliver = phase.deliver_us.lock().unwrap()[0].clone();
        let ack = phase.ack_us.lock().unwrap().clone();
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let delivered = phase.delivered.load(Ordering::Relaxed);
        let ack_errors = phase.ack_errors.load(Ordering::Relaxed);
        let ack_ok = phase.acked_ok.load(Ordering::Relaxed);
        let ack_missing = match self.args.target {
            Target::Palaver => (total as u64).saturating_sub(ack_ok + ack_errors),
            Target::Reference => 0,
        };
        let p99 = ms(&deliver, 0.99);
        PhaseReport {
            offered_rate: rate,
            seconds: send_done,
            sent: total as u64,
            messages_per_s: total as f64 / send_done,
            deliveries_per_s: delivered as f64 / send_done,
            expected_deliveries: expected,
            delivered,
            lost,
            duplicates,
            out_of_order: phase.out_of_order.load(Ordering::Relaxed),
            ack_ok,
            ack_errors,
            ack_missing,
            deliver_p50_ms: ms(&deliver, 0.5),
            deliver_p99_ms: p99,
            deliver_p999_ms: ms(&deliver, 0.999),
            ack_p50_ms: ms(&ack, 0.5),
            ack_p99_ms: ms(&ack, 0.99),
            held: lost == 0
                && duplicates == 0
                && phase.out_of_order.load(Ordering::Relaxed) == 0
                && ack_errors == 0
                && ack_missing == 0
                && p99 <= self.args.p99_limit_ms,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let shared = Arc::new(Shared {
        phase: RwLock::new(Arc::new(Phase::new(0, 1))),
        last_seq: (0..args.users).map(|_| AtomicI64::new(0)).collect(),
    });
    let rss_before = rss_kib(&args.server_pid);
    let connect_started = Instant::now();
    let clients = Bench::connect_all(&args, &shared).await?;
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let mut bench = Bench {
        args: args.clone(),
        shared,
        clients,
        targets: Vec::new(),
        run_id: format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros()
        ),
        phases_started: Default::default(),
    };
    let mut report = Report {
        label: args.label.clone(),
        target: args.target,
        scenario: args.scenario,
        users: args.users,
        group_size: args.group_size,
        servers: args.servers.clone(),
        client_msg_ids: args.client_msg_ids,
        connect_seconds,
        rss_before_kib: rss_before,
        rss_connected_kib: None,
        rss_per_connection_kib: None,
        warm_up: None,
        phases: Vec::new(),
        best: None,
    };
    if args.scenario == Scenario::Idle {
        tokio::time::sleep(Duration::from_secs_f64(args.idle_settle)).await;
        report.rss_connected_kib = rss_kib(&args.server_pid);
        if let (Some(a), Some(b)) = (rss_before, report.rss_connected_kib) {
            let per = (b.saturating_sub(a)) as f64 / args.users as f64;
            report.rss_per_connection_kib = Some(per);
            eprintln!("server RSS {a} KiB → {b} KiB: {per:.2} KiB per idle connection");
        }
    } else {
        bench.setup_targets().await?;
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        if args.warm_up_rate > 0.0 {
            eprint!("warm-up, one message per user: ");
            let p = bench.phase_of(args.warm_up_rate, args.users).await;
            print_phase(&p);
            report.warm_up = Some(p);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if args.search {
            search::run(&bench, &mut report, args.search_start).await;
        } else {
            let p = bench.phase(args.rate.unwrap_or(1000.0)).await;
            print_phase(&p);
            report.best = p.held.then(|| p.clone());
            report.phases.push(p);
        }
        report.rss_connected_kib = rss_kib(&args.server_pid);
    }
    let out = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(path) => std::fs::write(path, &out)?,
        None => println!("{out}"),
    }
    for c in &bench.clients {
        c.close();
    }
    Ok(())
}
