//! Tests of the SQL store against a real MariaDB that need both sides of
//! the store: a backend's pool (`mysql.rs`) and the SQL store's insides
//! (`sql/`). They live here, above both, so that neither imports the other.

use std::time::Duration;

use sqlx::Connection;

use super::mysql::open;
use super::pool::PoolOptions;
use super::prelude::*;
use super::sql::{Dialect, SqlStore};
use super::{NewMessage, SeqCache};
use crate::ids::{ConversationKey, Page, UserId};

fn user_id(n: i64) -> UserId {
    UserId::parse(n).unwrap()
}

/// A fresh database `palaver_unit_<pid>_<tag>` on the machine's MariaDB
/// with the migrations applied: an admin connection, the statement that
/// drops it, and a pool of `connections` on it. `None` when no MariaDB
/// is configured (and not required).
async fn fresh_db(
    tag: &str,
    connections: u32,
) -> Option<(sqlx::MySqlConnection, String, sqlx::AnyPool)> {
    // As the integration suite: the variable, else the machine's own
    // MariaDB on its default port if it answers.
    let base = std::env::var("PALAVER_TEST_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 3306));
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))
                .is_ok()
                .then(|| "mysql://root@127.0.0.1:3306".to_string())
        });
    let Some(base) = base else {
        assert!(
            std::env::var("PALAVER_REQUIRE_ALL_BACKENDS").is_err(),
            "PALAVER_REQUIRE_ALL_BACKENDS is set but no MariaDB answers at 127.0.0.1:3306 \
             (or PALAVER_TEST_MYSQL_URL)"
        );
        eprintln!("note: MariaDB unit tests did nothing: no MariaDB at 127.0.0.1:3306");
        return None;
    };
    let base = base.trim_end_matches('/');
    let name = format!("palaver_unit_{}_{tag}", std::process::id());
    let mut admin = sqlx::MySqlConnection::connect(base).await.unwrap();
    let reset = format!("DROP DATABASE IF EXISTS {name}");
    sqlx::raw_sql(&reset).execute(&mut admin).await.unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let opts = PoolOptions {
        max_connections: connections,
        acquire_timeout: Duration::from_secs(5),
    };
    let pool = open(&format!("{base}/{name}"), &opts).await.unwrap();
    Some((admin, reset, pool))
}

/// MySQL (not MariaDB) has no `INSERT … RETURNING`, so inserted rows are
/// read back with a `SELECT`. The machine's MariaDB would otherwise never
/// run that path: this runs one batch through each path on it and
/// checks both against what was stored.
#[tokio::test]
async fn read_backs_and_returning_agree_with_the_stored_rows() {
    let Some((mut admin, reset, pool)) = fresh_db("readback", 2).await else {
        return;
    };

    for returning in [false, true] {
        let store = SqlStore::new(pool.clone(), Dialect::MySql, returning);
        for user in 1..=3 {
            store.ensure_user(user_id(user), 0).await.unwrap();
        }
        // 40 messages over two conversations, interleaved, one of them
        // an in-batch retry of an earlier clientMsgId.
        let mut batch: Vec<NewMessage> = (0..40)
            .map(|i| NewMessage {
                sender_id: user_id(1),
                conversation: ConversationKey::private(user_id(1), user_id(2 + i % 2)),
                receiver_id: 2 + i % 2,
                content: format!("m{i}"),
                client_msg_id: Some(format!("{returning}-{i}")),
                created_at_ms: i,
                reply_to: None,
                mentions: Vec::new(),
                system: None,
            })
            .collect();
        batch.push(NewMessage {
            created_at_ms: 99,
            ..batch[5].clone()
        });
        let out = store
            .insert_messages(&batch, &mut SeqCache::new())
            .await
            .unwrap();
        let inserted: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert!(inserted[..40].iter().all(|i| i.fresh));
        assert!(!inserted[40].fresh);
        assert_eq!(inserted[40].message.id, inserted[5].message.id);
        for peer in [2, 3] {
            let page = Page::parse(None, None, 100).unwrap();
            let (stored, _) = store
                .messages(
                    ConversationKey::private(user_id(1), user_id(peer)),
                    page,
                    user_id(1),
                )
                .await
                .unwrap();
            let acked: Vec<_> = inserted[..40]
                .iter()
                .map(|i| &i.message)
                .filter(|m| m.receiver_id == peer)
                .collect();
            // Both flavours append 20 messages to each conversation.
            let fresh = &stored[stored.len() - 20..];
            assert_eq!(acked.len(), 20);
            for (a, s) in acked.iter().zip(fresh) {
                assert_eq!((a.id, a.seq, &a.content), (s.id, s.seq, &s.content));
            }
            assert!(fresh.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        }
    }
    pool.close().await;
    sqlx::raw_sql(&reset).execute(&mut admin).await.unwrap();
}

/// The writer runs a batch as a lone insert only on the connection it
/// kept after a batch that went through. A connection from the pool
/// may carry a transaction the client side does not know of (a batch
/// dropped by the writer's deadline while its `BEGIN` was in flight):
/// a lone insert there would be answered but never committed. Here
/// that connection is made by hand, and every answered message must be
/// visible to another session.
#[tokio::test]
async fn a_writer_batch_is_committed_even_on_a_connection_left_in_a_transaction() {
    let Some((mut admin, reset, pool)) = fresh_db("writer", 1).await else {
        return;
    };
    let store = SqlStore::new(pool.clone(), Dialect::MySql, true).for_writer();
    for user in 1..=2 {
        store.ensure_user(user_id(user), 0).await.unwrap();
    }
    let send = |i: i64| NewMessage {
        sender_id: user_id(1),
        conversation: ConversationKey::private(user_id(1), user_id(2)),
        receiver_id: 2,
        content: format!("m{i}"),
        client_msg_id: None,
        created_at_ms: i,
        reply_to: None,
        mentions: Vec::new(),
        system: None,
    };
    let mut seqs = SeqCache::new();
    let database = reset.trim_start_matches("DROP DATABASE IF EXISTS ");
    let count = format!("SELECT COUNT(*) FROM {database}.messages");
    // The first batch learns the conversation (in a transaction), the
    // second runs alone on the kept connection.
    for i in 0..2 {
        let out = store.insert_messages(&[send(i)], &mut seqs).await.unwrap();
        assert!(out[0].as_ref().unwrap().fresh);
    }
    let visible: i64 = sqlx::query_scalar(&count)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(visible, 2);

    // Open a transaction behind sqlx's back on the kept connection and
    // hand it to the pool, as a dropped batch would leave it.
    let mut conn = store.take_held().expect("kept after a batch");
    sqlx::raw_sql("START TRANSACTION")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    // A batch on it may fail (MariaDB refuses to set the isolation level
    // inside a transaction; the connection is then closed), but one
    // that is answered is committed, and service goes on.
    let mut answered = 2;
    for i in 2..6 {
        if let Ok(out) = store.insert_messages(&[send(i)], &mut seqs).await {
            assert!(out[0].as_ref().unwrap().fresh);
            answered += 1;
        }
        let visible: i64 = sqlx::query_scalar(&count)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(visible, answered, "message {i} answered but not committed");
    }
    assert!(answered >= 5, "only {answered} of 6 went through");
    drop(store);
    pool.close().await;
    sqlx::raw_sql(&reset).execute(&mut admin).await.unwrap();
}
