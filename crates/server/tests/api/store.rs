//! The storage trait directly, on every backend: batch insertion rules that
//! the server-level tests cannot force deterministically.

use palaver::store::{self, ConversationKey, NewMessage, Page, PoolOptions, Store, StoreError};

use crate::backend_tests;
use crate::helpers::*;

async fn open(b: Backend) -> (TestDb, Box<dyn Store>) {
    let db = TestDb::new(b).await;
    let pool = PoolOptions {
        max_connections: 4,
        acquire_timeout: std::time::Duration::from_secs(5),
    };
    let store = store::connect(&db.url, &pool).await.expect("store opens");
    (db, store)
}

fn msg(sender: i64, peer: i64, content: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        sender_id: sender,
        conversation: ConversationKey::private(sender, peer),
        receiver_id: peer,
        content: content.into(),
        client_msg_id: key.map(str::to_string),
        created_at_ms: 1_795_665_600_000,
    }
}

async fn users(store: &dyn Store, n: i64) {
    for id in 1..=n {
        store.ensure_user(id, 0).await.unwrap();
    }
}

async fn a_batch_allocates_consecutive_seqs_per_conversation(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 3).await;
    let batch = vec![
        msg(1, 2, "a", None),
        msg(1, 3, "b", None),
        msg(2, 1, "c", None),
        msg(3, 1, "d", None),
    ];
    let out = store.insert_messages(&batch).await.unwrap();
    let seqs: Vec<i64> = out
        .iter()
        .map(|r| r.as_ref().unwrap().message.seq)
        .collect();
    assert_eq!(seqs, [1, 1, 2, 2]);
    let ids: Vec<i64> = out.iter().map(|r| r.as_ref().unwrap().message.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids follow batch order: {ids:?}"
    );
    let next = store
        .insert_messages(&[msg(2, 1, "e", None)])
        .await
        .unwrap();
    assert_eq!(next[0].as_ref().unwrap().message.seq, 3);
}

async fn a_key_repeated_within_a_batch_is_stored_once(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 2).await;
    let batch = vec![
        msg(1, 2, "same", Some("k")),
        msg(1, 2, "same", Some("k")),
        msg(1, 2, "different", Some("k")),
        msg(2, 1, "other sender, same key", Some("k")),
    ];
    let out = store.insert_messages(&batch).await.unwrap();
    let first = out[0].as_ref().unwrap();
    let repeat = out[1].as_ref().unwrap();
    assert!(first.fresh && !repeat.fresh);
    assert_eq!(first.message, repeat.message);
    assert!(matches!(out[2], Err(StoreError::Conflict(_))));
    assert_eq!(out[3].as_ref().unwrap().message.seq, 2);
    let page = Page {
        after_seq: Some(0),
        before_seq: None,
        limit: 10,
    };
    let (stored, _) = store
        .messages(ConversationKey::private(1, 2), page)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
}

async fn a_key_from_an_earlier_batch_returns_the_stored_message(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 2).await;
    let first = store
        .insert_messages(&[msg(1, 2, "x", Some("k"))])
        .await
        .unwrap();
    let again = store
        .insert_messages(&[msg(1, 2, "x", Some("k")), msg(1, 2, "y", None)])
        .await
        .unwrap();
    assert_eq!(
        again[0].as_ref().unwrap().message,
        first[0].as_ref().unwrap().message
    );
    assert!(!again[0].as_ref().unwrap().fresh);
    assert_eq!(
        again[1].as_ref().unwrap().message.seq,
        2,
        "no seq was spent on the retry"
    );
}

async fn missing_users_and_minted_ids_do_not_collide_with_registration(b: Backend) {
    let (_db, store) = open(b).await;
    store.ensure_user(5, 0).await.unwrap();
    assert_eq!(store.missing_users(&[1, 5, 9]).await.unwrap(), [1, 9]);
    // Registration after a minted id must not reuse it.
    let registered = store.create_user("alice", "hash", 0).await.unwrap();
    assert_ne!(registered.id, 5);
    assert!(matches!(
        store.create_user("ALICE", "hash", 0).await,
        Err(StoreError::Conflict(_))
    ));
}

backend_tests!(
    a_batch_allocates_consecutive_seqs_per_conversation,
    a_key_repeated_within_a_batch_is_stored_once,
    a_key_from_an_earlier_batch_returns_the_stored_message,
    missing_users_and_minted_ids_do_not_collide_with_registration,
);
