//! `GET /api/conversations` at size, for BENCHMARKS.md ("Conversation list
//! at size"): a user with 2,000 conversations, and users with 10 and with
//! 1,000,000 unread messages in one conversation.
//!
//! It seeds a fresh database through the store (the writer's batch insert,
//! 256 messages a batch), starts the server on it on port 0 and times the
//! requests one at a time over HTTP, after a warm-up.
//!
//! ```text
//! cargo run --release -p palaver --example conversations_at_size
//! cargo run --release -p palaver --example conversations_at_size -- \
//!     mysql://root@127.0.0.1:3306/palaver_conv    # an existing, empty database
//! ```
//!
//! Without an argument it uses a SQLite file in a temporary directory.

use std::time::{Duration, Instant};

use palaver::auth::Tokens;
use palaver::ids::{ConversationKey, UserId};
use palaver::store::{self, NewMessage, PoolOptions, SeqCache, Store};
use palaver::{Config, Server};
use serde_json::Value;

/// The user with many conversations, and how many.
const BUSY: i64 = 1;
const CONVERSATIONS: i64 = 2_000;
/// Users with one conversation of many unread messages, their peers, and
/// how many messages each got.
const READERS: [(i64, i64, i64); 2] = [(5_000, 5_001, 10), (6_000, 6_001, 1_000_000)];
const BATCH: usize = store::MAX_BATCH;
/// Timed requests per case, after as many untimed ones.
const RUNS: usize = 30;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("palaver.db").display()));
    let pool = PoolOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(30),
    };
    let store = store::connect(&url, &pool).await?;
    seed(&*store).await?;
    drop(store);

    let mut config = Config::from_env()?;
    config.database_url = url.clone();
    config.listen = "127.0.0.1:0".parse()?;
    let secret = palaver::auth::random_secret();
    config.jwt_secret = Some(secret.clone());
    let tokens = Tokens::new(secret.as_bytes(), config.token_ttl());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = Server::build(config).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let get = |user: i64, query: String| {
        let req = http
            .get(format!("{base}/api/conversations{query}"))
            .bearer_auth(tokens.issue(uid(user)));
        async move {
            let resp = req.send().await?;
            anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
            Ok::<Value, anyhow::Error>(resp.json().await?)
        }
    };

    println!("backend: {}", url.split(':').next().unwrap_or_default());
    println!("| request | rows | p50 ms | p90 ms | max ms |");
    println!("|---|---|---|---|---|");
    let busy = format!("{CONVERSATIONS} conversations");
    time(&format!("{busy}, no parameters (v1)"), || {
        get(BUSY, String::new())
    })
    .await?;
    time(&format!("{busy}, first page, limit=100"), || {
        get(BUSY, "?limit=100".into())
    })
    .await?;
    // The last page: follow the cursors there once, then time it.
    let mut cursor = String::new();
    loop {
        let page = get(BUSY, format!("?limit=100{cursor}")).await?;
        match page["next_cursor"].as_str() {
            Some(next) if page["has_more"] == true => cursor = format!("&cursor={next}"),
            _ => break,
        }
    }
    time(&format!("{busy}, last page, limit=100"), || {
        get(BUSY, format!("?limit=100{cursor}"))
    })
    .await?;
    for (reader, peer, n) in READERS {
        let row = get(reader, String::new()).await?;
        anyhow::ensure!(row[0]["unread_count"] == n, "unread: {row}");
        time(&format!("1 conversation, {n} unread"), || {
            get(reader, String::new())
        })
        .await?;
        // The other side: every message is their own.
        time(&format!("1 conversation, {n} sent"), || {
            get(peer, String::new())
        })
        .await?;
    }

    let _ = stop.send(());
    serving.await??;
    Ok(())
}

/// Times `RUNS` requests after `RUNS` untimed ones and prints a table row.
async fn time<F, Fut>(what: &str, mut request: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    let mut rows = 0;
    for _ in 0..RUNS {
        request().await?;
    }
    let mut ms = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let body = request().await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        rows = body
            .as_array()
            .or_else(|| body["conversations"].as_array())
            .map_or(0, Vec::len);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "| {what} | {rows} | {:.2} | {:.2} | {:.2} |",
        at(0.5),
        at(0.9),
        at(1.0)
    );
    Ok(())
}

/// The busy user's peers each send one message; each reader's peer sends
/// all of theirs. Through the writer's batch insert, `BATCH` at a time.
async fn seed(store: &dyn Store) -> anyhow::Result<()> {
    let now = now_ms();
    let mut ids: Vec<UserId> = (BUSY..=BUSY + CONVERSATIONS).map(uid).collect();
    ids.extend(READERS.iter().flat_map(|&(r, p, _)| [uid(r), uid(p)]));
    for chunk in ids.chunks(500) {
        store.ensure_users(chunk, now).await?;
    }
    let mut seqs = SeqCache::new();
    let message = |from: i64, to: i64, i: i64| NewMessage {
        sender_id: uid(from),
        conversation: ConversationKey::private(uid(from), uid(to)),
        receiver_id: to,
        content: format!("message {i} from {from}"),
        client_msg_id: None,
        created_at_ms: now,
        reply_to: None,
        mentions: Vec::new(),
        system: None,
    };
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let mut flush = async |batch: &mut Vec<NewMessage>| -> anyhow::Result<()> {
        for r in store.insert_messages(batch, &mut seqs).await? {
            r?;
        }
        batch.clear();
        Ok(())
    };
    for peer in BUSY + 1..=BUSY + CONVERSATIONS {
        batch.push(message(peer, BUSY, 0));
        if batch.len() == BATCH {
            flush(&mut batch).await?;
        }
    }
    for (reader, peer, n) in READERS {
        for i in 0..n {
            batch.push(message(peer, reader, i));
            if batch.len() == BATCH {
                flush(&mut batch).await?;
            }
        }
    }
    flush(&mut batch).await?;
    eprintln!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn uid(n: i64) -> UserId {
    UserId::parse(n).expect("the users here have positive ids")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
