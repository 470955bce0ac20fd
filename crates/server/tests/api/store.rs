//! The storage trait directly, on every backend: batch insertion rules that
//! the server-level tests cannot force deterministically.

use palaver::ids::{ActivityKey, ConversationKey, ConversationsPage, GroupId, Page, UserId};
use palaver::store::{
    self, CacheVersions, ChangeOutcome, GroupChange, GroupOutcome, Inserted, MessageChange,
    NewMessage, PoolOptions, SeqCache, Store, StoreError,
};
use palaver_protocol::{Role, SystemChange, SystemEvent};

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

fn uid(n: i64) -> UserId {
    UserId::parse(n).unwrap()
}

fn uids(ns: &[i64]) -> Vec<UserId> {
    ns.iter().map(|&n| uid(n)).collect()
}

/// The numbers of `ids`, to compare with literals.
fn nums(ids: Vec<UserId>) -> Vec<i64> {
    ids.into_iter().map(UserId::get).collect()
}

fn msg(sender: i64, peer: i64, content: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        sender_id: uid(sender),
        conversation: ConversationKey::private(uid(sender), uid(peer)),
        receiver_id: peer,
        content: content.into(),
        client_msg_id: key.map(str::to_string),
        created_at_ms: 1_795_665_600_000,
        reply_to: None,
        mentions: Vec::new(),
        system: None,
    }
}

async fn users(store: &dyn Store, n: i64) {
    for id in 1..=n {
        store.ensure_user(uid(id), 0).await.unwrap();
    }
}

async fn a_batch_allocates_consecutive_seqs_per_conversation(b: Backend) {
    let (_db, store) = open(b).await;
    let mut seqs = SeqCache::new();
    users(&*store, 3).await;
    let batch = vec![
        msg(1, 2, "a", None),
        msg(1, 3, "b", None),
        msg(2, 1, "c", None),
        msg(3, 1, "d", None),
    ];
    let out = store.insert_messages(&batch, &mut seqs).await.unwrap();
    let got: Vec<i64> = out
        .iter()
        .map(|r| r.as_ref().unwrap().message.seq)
        .collect();
    assert_eq!(got, [1, 1, 2, 2]);
    let ids: Vec<i64> = out.iter().map(|r| r.as_ref().unwrap().message.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids follow batch order: {ids:?}"
    );
    let next = store
        .insert_messages(&[msg(2, 1, "e", None)], &mut seqs)
        .await
        .unwrap();
    assert_eq!(next[0].as_ref().unwrap().message.seq, 3);
    // A restarted writer remembers nothing and reads where to go on.
    let after_restart = store
        .insert_messages(&[msg(1, 2, "f", None)], &mut SeqCache::new())
        .await
        .unwrap();
    assert_eq!(after_restart[0].as_ref().unwrap().message.seq, 4);
}

async fn a_key_repeated_within_a_batch_is_stored_once(b: Backend) {
    let (_db, store) = open(b).await;
    let mut seqs = SeqCache::new();
    users(&*store, 2).await;
    let batch = vec![
        msg(1, 2, "same", Some("k")),
        msg(1, 2, "same", Some("k")),
        msg(1, 2, "different", Some("k")),
        msg(2, 1, "other sender, same key", Some("k")),
    ];
    let out = store.insert_messages(&batch, &mut seqs).await.unwrap();
    let first = out[0].as_ref().unwrap();
    let repeat = out[1].as_ref().unwrap();
    assert!(first.fresh && !repeat.fresh);
    assert_eq!(first.message, repeat.message);
    assert!(matches!(out[2], Err(StoreError::Conflict(_))));
    assert_eq!(out[3].as_ref().unwrap().message.seq, 2);
    let page = Page::parse(Some(0), None, 10).unwrap();
    let (stored, _) = store
        .messages(ConversationKey::private(uid(1), uid(2)), page, uid(1))
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
}

/// A send's `clientMsgId` names one send: a repeat that replies to another
/// message is a different send, refused within a batch and across batches;
/// a true repeat is answered with the reply as the writer has just read it.
async fn a_key_reused_for_a_reply_to_another_message_is_refused(b: Backend) {
    let (_db, store) = open(b).await;
    let mut seqs = SeqCache::new();
    users(&*store, 2).await;
    let replying = |key: &str, seq: i64, excerpt: &str| NewMessage {
        reply_to: Some(palaver_protocol::ReplyTo {
            seq,
            sender_id: 1,
            excerpt: Some(excerpt.into()),
        }),
        ..msg(1, 2, "re", Some(key))
    };
    let batch = vec![
        msg(1, 2, "first", None),
        msg(1, 2, "second", None),
        replying("k", 1, "first"),
        replying("k", 2, "second"),
    ];
    let out = store.insert_messages(&batch, &mut seqs).await.unwrap();
    assert!(out[2].as_ref().unwrap().fresh);
    assert!(
        matches!(out[3], Err(StoreError::Conflict(_))),
        "{:?}",
        out[3]
    );

    let again = [
        replying("k", 2, "second"),
        replying("k", 1, "first, edited"),
    ];
    let out = store.insert_messages(&again, &mut seqs).await.unwrap();
    assert!(
        matches!(out[0], Err(StoreError::Conflict(_))),
        "{:?}",
        out[0]
    );
    let repeat = out[1].as_ref().unwrap();
    assert!(!repeat.fresh);
    assert_eq!(repeat.message.seq, 3);
    let reply = repeat.message.reply_to.as_ref().unwrap();
    assert_eq!(
        (reply.seq, reply.excerpt.as_deref()),
        (1, Some("first, edited"))
    );
}

async fn a_key_from_an_earlier_batch_returns_the_stored_message(b: Backend) {
    let (_db, store) = open(b).await;
    let mut seqs = SeqCache::new();
    users(&*store, 2).await;
    let first = store
        .insert_messages(&[msg(1, 2, "x", Some("k"))], &mut seqs)
        .await
        .unwrap();
    let again = store
        .insert_messages(
            &[msg(1, 2, "x", Some("k")), msg(1, 2, "y", None)],
            &mut seqs,
        )
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
    // The insert went first and the unique index caught the repeat; that
    // is a client's retry, not another writer.
    assert!(!seqs.locking(), "a repeated key is not another writer");
    // A stored key with other content is refused; the rest is stored.
    let mixed = store
        .insert_messages(
            &[msg(1, 2, "changed", Some("k")), msg(1, 2, "z", Some("k2"))],
            &mut seqs,
        )
        .await
        .unwrap();
    assert!(matches!(mixed[0], Err(StoreError::Conflict(_))));
    assert!(mixed[1].as_ref().unwrap().fresh);
    assert_eq!(mixed[1].as_ref().unwrap().message.seq, 3);
    assert!(!seqs.locking());
}

/// Inserts, retrying what the store calls retryable (as the writer does);
/// returns the outcomes and how many attempts failed.
async fn insert_retrying(
    store: &dyn Store,
    batch: &[NewMessage],
    seqs: &mut SeqCache,
) -> (Vec<Inserted>, usize) {
    for failed in 0..50 {
        match store.insert_messages(batch, seqs).await {
            Ok(out) => return (out.into_iter().map(Result::unwrap).collect(), failed),
            Err(StoreError::Retryable(_)) => continue,
            Err(e) => panic!("insert failed: {e}"),
        }
    }
    panic!("50 attempts failed");
}

async fn stored_seqs(store: &dyn Store, conv: ConversationKey) -> Vec<(i64, String)> {
    let page = Page::parse(Some(0), None, 1000).unwrap();
    let (stored, more) = store.messages(conv, page, uid(1)).await.unwrap();
    assert!(!more);
    stored.into_iter().map(|m| (m.seq, m.content)).collect()
}

/// Two writers on one database (two nodes): each remembers the seqs it
/// wrote, so the first time the other one has written in between, its
/// insert hits the unique seq and is retried; from then on it locks and
/// reads, and is not refused again.
async fn a_second_writer_is_noticed_once_then_both_lock(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 2).await;
    let (mut a, mut b) = (SeqCache::new(), SeqCache::new());
    let conv = ConversationKey::private(uid(1), uid(2));
    let mut retries = Vec::new();
    for i in 0..7 {
        let seqs = if i % 2 == 0 { &mut a } else { &mut b };
        let (out, failed) =
            insert_retrying(&*store, &[msg(1, 2, &format!("m{i}"), None)], seqs).await;
        assert_eq!(out[0].message.seq, i as i64 + 1);
        retries.push(failed);
    }
    // b's first write read the last seq (it remembered none); a's second
    // and b's second found their memory stale; after that both lock.
    assert_eq!(retries, [0, 0, 1, 1, 0, 0, 0]);
    assert!(a.locking() && b.locking());
    let expected: Vec<(i64, String)> = (0..7).map(|i| (i + 1, format!("m{i}"))).collect();
    assert_eq!(stored_seqs(&*store, conv).await, expected);
}

/// A writer whose memory stays right never hits the unique index, so it
/// learns of another writer from the writer epoch the other one bumps when
/// it is refused; without that it would never lock, and the other could
/// lose every retry while the first keeps inserting.
async fn a_writer_that_keeps_winning_learns_of_the_loser(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 2).await;
    let (mut a, mut b) = (SeqCache::new(), SeqCache::new());
    let send = |i: usize| [msg(1, 2, &format!("m{i}"), None)];
    store.insert_messages(&send(0), &mut a).await.unwrap();
    store.insert_messages(&send(1), &mut b).await.unwrap();
    store.insert_messages(&send(2), &mut b).await.unwrap();
    assert!(!a.locking() && !b.locking());
    // a's memory is stale: refused, and a tells the others. Its retry is
    // not run here, as if it kept losing.
    let refused = store.insert_messages(&send(3), &mut a).await;
    assert!(
        matches!(refused, Err(StoreError::Retryable(_))),
        "{refused:?}"
    );
    assert!(a.locking());
    // b's memory is right, so its insert goes in, and it reads the news.
    let out = store.insert_messages(&send(4), &mut b).await.unwrap();
    assert_eq!(out[0].as_ref().unwrap().message.seq, 4);
    assert!(b.locking(), "the winner locks from now on");
    let (out, failed) = insert_retrying(&*store, &send(3), &mut a).await;
    assert_eq!((out[0].message.seq, failed), (5, 0));
}

/// Two writers racing on the same conversations: every message stored
/// once, and each conversation's seqs are 1..=n without a gap.
async fn racing_writers_leave_no_gaps(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 3).await;
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::from(store);
    const BATCHES: usize = 40;
    let mut tasks = Vec::new();
    for w in 0..2i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = SeqCache::new();
            for n in 0..BATCHES {
                let batch: Vec<NewMessage> = (0..5)
                    .map(|i| {
                        msg(
                            1,
                            2 + i % 2,
                            &format!("w{w}-{n}-{i}"),
                            Some(&format!("w{w}-{n}-{i}")),
                        )
                    })
                    .collect();
                insert_retrying(&*store, &batch, &mut seqs).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut total = 0;
    for peer in [2, 3] {
        let stored = stored_seqs(&*store, ConversationKey::private(uid(1), uid(peer))).await;
        let seqs: Vec<i64> = stored.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=stored.len() as i64).collect::<Vec<_>>());
        total += stored.len();
    }
    assert_eq!(total, 2 * BATCHES * 5);
}

/// Once both writers lock, they take turns on a conversation's row instead
/// of racing for its next seq: however they interleave, neither is refused
/// again.
async fn writers_that_lock_take_turns_and_are_never_refused(b: Backend) {
    let (db, store) = open(b).await;
    users(&*store, 3).await;
    let (mut a, mut c) = (SeqCache::new(), SeqCache::new());
    // As above: a stale memory makes both lock.
    for i in 0..4 {
        let seqs = if i % 2 == 0 { &mut a } else { &mut c };
        insert_retrying(&*store, &[msg(1, 2, &format!("m{i}"), None)], seqs).await;
    }
    insert_retrying(&*store, &[msg(1, 3, "m", None)], &mut a).await;
    insert_retrying(&*store, &[msg(1, 3, "m", None)], &mut c).await;
    assert!(a.locking() && c.locking());
    // Each writer on a connection of its own where the server has them (as
    // on two nodes), which would otherwise send a batch as one statement
    // without taking the lock.
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::from(store);
    let mut tasks = Vec::new();
    for (w, mut seqs) in [a, c].into_iter().enumerate() {
        let store = match store::connect_writer(&db.url, std::time::Duration::from_secs(5))
            .await
            .unwrap()
        {
            Some(own) => std::sync::Arc::from(own),
            None => store.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for n in 0..30 {
                let batch: Vec<NewMessage> = (0..4)
                    .map(|i| msg(1, 2 + i % 2, &format!("w{w}-{n}-{i}"), None))
                    .collect();
                refused += insert_retrying(&*store, &batch, &mut seqs).await.1;
            }
            refused
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 0, "a locking writer was refused");
    }
}

/// The message writer's own store on `db`, whose pool gives up after
/// `acquire_secs`; `None` on SQLite, whose writer shares the main pool.
async fn writer_store(db: &TestDb, b: Backend, acquire_secs: u64) -> Option<Box<dyn Store>> {
    let writer = store::connect_writer(&db.url, std::time::Duration::from_secs(acquire_secs))
        .await
        .unwrap();
    assert_eq!(
        writer.is_none(),
        b == Backend::Sqlite,
        "only SQLite's writer shares the pool"
    );
    writer
}

/// The writer keeps its connection between batches. One the database has
/// closed meanwhile (a restart, `wait_timeout`) is noticed by a ping once
/// it has sat unused for a second, and replaced: the next batch goes in.
async fn a_kept_connection_the_database_closed_is_replaced(b: Backend) {
    let (db, store) = open(b).await;
    users(&*store, 2).await;
    let Some(writer) = writer_store(&db, b, 5).await else {
        return;
    };
    drop(store);
    let mut seqs = SeqCache::new();
    writer
        .insert_messages(&[msg(1, 2, "before", None)], &mut seqs)
        .await
        .unwrap();
    // Close every session on the database, the writer's among them.
    assert!(db.end_sessions().await > 0, "the writer's session is open");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let out = writer
        .insert_messages(&[msg(1, 2, "after", None)], &mut seqs)
        .await
        .expect("the batch after the database closed the kept connection");
    assert_eq!(out[0].as_ref().unwrap().message.seq, 2);
}

/// The writer's store reads a batch's expired block sets and rosters and
/// the cache versions on the one connection it keeps between batches: its
/// pool has no other, so a read from the pool would wait for it in vain.
async fn the_writer_reads_on_the_connection_it_keeps(b: Backend) {
    let (db, store) = open(b).await;
    users(&*store, 2).await;
    let group = store
        .create_group("g", uid(1), &uids(&[2]), 1_795_665_600_000)
        .await
        .unwrap();
    let gid = GroupId::parse(group.id).unwrap();
    store
        .set_block(uid(2), uid(1), true, 1_795_665_600_000)
        .await
        .unwrap();
    let versions = store.cache_versions().await.unwrap();
    let Some(writer) = writer_store(&db, b, 2).await else {
        return;
    };
    let mut seqs = SeqCache::new();
    writer
        .insert_messages(&[msg(1, 2, "kept", None)], &mut seqs)
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            writer.blocks_involving(&uids(&[1])).await.unwrap(),
            [(uid(2), uid(1))]
        );
        assert_eq!(writer.rosters(&[gid]).await.unwrap().len(), 2);
        assert_eq!(writer.cache_versions().await.unwrap(), versions);
    }
    let out = writer
        .insert_messages(&[msg(1, 2, "still kept", None)], &mut seqs)
        .await
        .unwrap();
    assert_eq!(out[0].as_ref().unwrap().message.seq, 2);
}

async fn ping_fails_once_the_database_is_gone(b: Backend) {
    let (db, store) = open(b).await;
    store.ping().await.expect("a live database answers");
    if b == Backend::Sqlite {
        return; // an open SQLite file outlives its name: nothing to take away
    }
    db.vanish().await;
    let err = tokio::time::timeout(std::time::Duration::from_secs(20), store.ping())
        .await
        .expect("ping answers within the pool's acquire timeout")
        .expect_err("ping over a database that is gone");
    assert!(
        matches!(err, StoreError::Unavailable(_) | StoreError::Other(_)),
        "{err:?}"
    );
}

async fn a_batch_whose_mentions_fail_stores_none_of_it(b: Backend) {
    let (db, store) = open(b).await;
    users(&*store, 2).await;
    // The writer's own store: its kept connection lets a batch whose
    // conversation it knows go as one statement, unless it has mentions.
    let writer = store::connect_writer(&db.url, std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap_or(store);
    let mut seqs = SeqCache::new();
    writer
        .insert_messages(&[msg(1, 2, "first", None)], &mut seqs)
        .await
        .unwrap();
    // A user mentioned twice: the second mention row repeats the first's
    // key, so the mentions' insert fails after the message's.
    let mut twice = msg(1, 2, "second", None);
    twice.mentions = uids(&[2, 2]);
    let refused = writer.insert_messages(&[twice], &mut seqs).await;
    assert!(refused.is_err(), "{refused:?}");
    let conv = ConversationKey::private(uid(1), uid(2));
    assert!(
        writer.message_at(conv, 2, None).await.unwrap().is_none(),
        "the message of a batch that failed was stored"
    );
    let out = writer
        .insert_messages(&[msg(1, 2, "third", None)], &mut seqs)
        .await
        .unwrap();
    assert_eq!(
        out[0].as_ref().unwrap().message.seq,
        2,
        "no seq was used up"
    );
}

async fn the_change_log_ends_where_it_says_and_pruning_keeps_what_is_current(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 1).await;
    let u = uid(1);
    assert_eq!(store.last_logged_change().await.unwrap(), 0, "an empty log");
    // Two logouts: each revokes a token until it expires and logs a change.
    store.revoke_token(u, 1, 1_000, 100).await.unwrap();
    store.revoke_token(u, 2, 3_000, 300).await.unwrap();
    let logged = store.logged_changes(0, 10).await.unwrap();
    assert_eq!(logged.len(), 2);
    let last = store.last_logged_change().await.unwrap();
    assert_eq!(
        last, logged[1].0,
        "the last position is the newest change's"
    );
    assert!(store.logged_changes(last, 10).await.unwrap().is_empty());

    // Changes from before 200 and revocations expired by 2,000 go.
    store.prune_credentials(200, 2_000).await.unwrap();
    let kept: Vec<i64> = store
        .logged_changes(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(position, _)| position)
        .collect();
    assert_eq!(kept, [last]);
    assert_eq!(store.last_logged_change().await.unwrap(), last);
    let state = store.token_state(u, 0).await.unwrap().unwrap();
    assert_eq!(state.revoked, [2], "the expired revocation is forgotten");
}

async fn missing_users_and_minted_ids_do_not_collide_with_registration(b: Backend) {
    let (_db, store) = open(b).await;
    store.ensure_user(uid(5), 0).await.unwrap();
    assert_eq!(
        nums(store.missing_users(&uids(&[1, 5, 9])).await.unwrap()),
        [1, 9]
    );
    // Registration after a minted id must not reuse it.
    let registered = store.create_user("alice", "hash", 0).await.unwrap();
    assert_ne!(registered.id, 5);
    assert!(matches!(
        store.create_user("ALICE", "hash", 0).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn ensure_users_creates_the_missing_and_leaves_taken_names_to_ensure_user(b: Backend) {
    let (_db, store) = open(b).await;
    let registered = store.create_user("user7", "hash", 0).await.unwrap();
    assert_ne!(registered.id, 7);
    store.ensure_user(uid(3), 0).await.unwrap();
    let unnamed = nums(store.ensure_users(&uids(&[3, 7, 20, 21]), 0).await.unwrap());
    assert_eq!(unnamed, [7], "user7 is taken");
    assert!(store
        .missing_users(&uids(&[3, 20, 21]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.user(uid(20)).await.unwrap().unwrap().username,
        "user20"
    );
    assert_eq!(nums(store.missing_users(&uids(&[7])).await.unwrap()), [7]);
    store.ensure_user(uid(7), 0).await.unwrap();
    assert_eq!(
        store.user(uid(7)).await.unwrap().unwrap().username,
        "user7-1"
    );
    // All there already: nothing to do.
    assert!(store
        .ensure_users(&uids(&[3, 7, 20]), 0)
        .await
        .unwrap()
        .is_empty());
    // Registration afterwards does not reuse a minted id.
    let later = store.create_user("bob", "hash", 0).await.unwrap();
    assert!(later.id > 21, "{}", later.id);
}

async fn last_seen_is_recorded_for_every_user_named(b: Backend) {
    let (_db, store) = open(b).await;
    assert!(store
        .ensure_users(&uids(&[1, 2, 3]), 0)
        .await
        .unwrap()
        .is_empty());
    store
        .set_last_seen(&uids(&[1, 3]), 1_795_665_600_000)
        .await
        .unwrap();
    for (id, seen) in [(1, true), (2, false), (3, true)] {
        let user = store.user(uid(id)).await.unwrap().unwrap();
        assert_eq!(user.last_seen.is_some(), seen, "user {id}: {user:?}");
    }
    let user = store.user(uid(3)).await.unwrap().unwrap();
    assert_eq!(user.last_seen, Some(store::from_ms(1_795_665_600_000)));
}

/// Rows as the store writes them, with no read position ever stored (as
/// data written before read positions counted own messages): the unread
/// count comes from the messages alone.
async fn unread_counts_derive_from_stored_messages_alone(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 3).await;
    let mut seqs = SeqCache::new();
    let batch = vec![
        msg(2, 1, "a", None),
        msg(2, 1, "b", None),
        msg(1, 2, "reply", None),
        msg(2, 1, "c", None),
        msg(3, 1, "x", None),
        msg(3, 1, "y", None),
    ];
    store.insert_messages(&batch, &mut seqs).await.unwrap();
    let page = |after, limit| ConversationsPage { after, limit };
    let (rows, next) = store.conversations(uid(1), page(None, 10)).await.unwrap();
    assert_eq!(next, None);
    let got: Vec<(i64, i64, i64, i64)> = rows
        .iter()
        .map(|c| (c.receiver_id, c.last_seq, c.read_seq, c.unread_count))
        .collect();
    assert_eq!(got, [(3, 2, 0, 2), (2, 4, 3, 1)]);
    assert_eq!(rows[0].username.as_deref(), Some("user3"));

    // One row a page: the key of the last row names where the next starts.
    let (first, next) = store.conversations(uid(1), page(None, 1)).await.unwrap();
    assert_eq!(first[0].receiver_id, 3);
    let key: ActivityKey = next.expect("a second row follows");
    assert_eq!(
        key.last_message_id,
        first[0].last_message.as_ref().unwrap().id
    );
    let (second, next) = store
        .conversations(uid(1), page(Some(key), 1))
        .await
        .unwrap();
    assert_eq!((second[0].receiver_id, next), (2, None));
}

/// Edits of messages in many conversations at once, more than the pool has
/// connections: each waits its turn for the write lock and succeeds. (On
/// SQLite a transaction that read before it writes would otherwise be
/// refused, `SQLITE_BUSY_SNAPSHOT`, instead of waiting, whenever another
/// connection committed in between; the store takes the lock up front.)
async fn concurrent_changes_wait_for_each_other_instead_of_failing(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 21).await;
    let batch: Vec<NewMessage> = (2..=21).map(|peer| msg(1, peer, "m", None)).collect();
    store
        .insert_messages(&batch, &mut SeqCache::new())
        .await
        .unwrap();
    for round in 0..3 {
        let edits = (2..=21).map(|peer| {
            let store = &*store;
            async move {
                let change = MessageChange::Edit(format!("edit {round}"));
                let conversation = ConversationKey::private(uid(1), uid(peer));
                store
                    .change_message(conversation, 1, &change, 1_795_665_600_000 + round)
                    .await
            }
        });
        for (i, outcome) in futures_util::future::join_all(edits)
            .await
            .into_iter()
            .enumerate()
        {
            match outcome {
                Ok(ChangeOutcome::Changed(m)) => assert_eq!(m.content, format!("edit {round}")),
                Ok(other) => panic!("edit {i} of round {round}: {other:?}"),
                Err(e) => panic!("edit {i} of round {round} failed: {e}"),
            }
        }
    }
}

/// Real errors from each driver, classified by their code: a lock conflict
/// is `Retryable` (the writer retries the batch), a duplicate key a
/// `Conflict`, any other database error `Other`.
async fn driver_errors_are_classified_by_their_code(b: Backend) {
    use sqlx::{Connection, Executor};

    // The store creates the database (and installs the drivers `Any` uses).
    let (db, _store) = open(b).await;
    let retryable = match b {
        Backend::Sqlite => {
            // SQLITE_BUSY: the write lock is held by another connection
            // and this one does not wait.
            let mut holder = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            holder
                .execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, v INTEGER)")
                .await
                .unwrap();
            holder.execute("BEGIN IMMEDIATE").await.unwrap();
            let mut other = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            other.execute("PRAGMA busy_timeout = 0").await.unwrap();
            other.execute("BEGIN IMMEDIATE").await.unwrap_err()
        }
        Backend::MySql => {
            // ER_LOCK_WAIT_TIMEOUT: a row locked by another transaction.
            let mut holder = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
            holder
                .execute("CREATE TABLE probe (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
                .await
                .unwrap();
            holder
                .execute("INSERT INTO probe VALUES (1, 0)")
                .await
                .unwrap();
            holder.execute("BEGIN").await.unwrap();
            holder
                .execute("SELECT v FROM probe WHERE id = 1 FOR UPDATE")
                .await
                .unwrap();
            let mut other = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
            other
                .execute("SET SESSION innodb_lock_wait_timeout = 1")
                .await
                .unwrap();
            other
                .execute("UPDATE probe SET v = 2 WHERE id = 1")
                .await
                .unwrap_err()
        }
        Backend::Postgres => {
            // 40001: a row changed since this REPEATABLE READ snapshot.
            let mut first = sqlx::PgConnection::connect(&db.url).await.unwrap();
            first
                .execute("CREATE TABLE probe (id INT PRIMARY KEY, v INT)")
                .await
                .unwrap();
            first
                .execute("INSERT INTO probe VALUES (1, 0)")
                .await
                .unwrap();
            first
                .execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                .await
                .unwrap();
            first.execute("SELECT v FROM probe").await.unwrap();
            let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
            other
                .execute("UPDATE probe SET v = 2 WHERE id = 1")
                .await
                .unwrap();
            first
                .execute("UPDATE probe SET v = 3 WHERE id = 1")
                .await
                .unwrap_err()
        }
    };
    let retryable = StoreError::from(retryable);
    assert!(
        matches!(retryable, StoreError::Retryable(_)),
        "{retryable:?}"
    );

    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    conn.execute("CREATE TABLE probe_unique (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.execute("INSERT INTO probe_unique VALUES (1)")
        .await
        .unwrap();
    let duplicate = StoreError::from(
        conn.execute("INSERT INTO probe_unique VALUES (1)")
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(duplicate, StoreError::Conflict(_)),
        "{duplicate:?}"
    );
    let unknown = StoreError::from(
        conn.execute("SELECT * FROM no_such_table")
            .await
            .unwrap_err(),
    );
    assert!(matches!(unknown, StoreError::Other(_)), "{unknown:?}");
}

/// A page says whether more messages lie beyond it: not when it ends
/// exactly at the last one, in either direction.
async fn a_page_ending_at_the_last_message_says_there_is_no_more(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 2).await;
    let batch: Vec<NewMessage> = ["a", "b", "c"]
        .into_iter()
        .map(|c| msg(1, 2, c, None))
        .collect();
    store
        .insert_messages(&batch, &mut SeqCache::new())
        .await
        .unwrap();
    let conv = ConversationKey::private(uid(1), uid(2));
    let page = |after, limit| Page::parse(after, None, limit).unwrap();
    for (p, more, seqs) in [
        (page(Some(0), 3), false, vec![1, 2, 3]),
        (page(Some(0), 2), true, vec![1, 2]),
        (page(Some(1), 2), false, vec![2, 3]),
        (page(None, 3), false, vec![1, 2, 3]),
        (page(None, 2), true, vec![2, 3]),
    ] {
        let (got, has_more) = store.messages(conv, p, uid(1)).await.unwrap();
        let got: Vec<i64> = got.iter().map(|m| m.seq).collect();
        assert_eq!((got, has_more), (seqs, more), "{p:?}");
    }
}

/// The system message of a change to `group` about `user`, made by user 1.
fn system_message(group: GroupId, event: SystemEvent, user: i64) -> NewMessage {
    NewMessage {
        sender_id: uid(1),
        conversation: ConversationKey::Group(group),
        receiver_id: group.get(),
        content: format!("{event:?} {user}"),
        client_msg_id: None,
        created_at_ms: 1_795_665_600_000,
        reply_to: None,
        mentions: Vec::new(),
        system: Some(SystemChange {
            event,
            actor_id: 1,
            user_id: Some(user),
            name: None,
            role: None,
        }),
    }
}

/// Applies `change` to `group` with its system message (`event` about
/// `user`).
async fn change(
    store: &dyn Store,
    seqs: &mut SeqCache,
    group: GroupId,
    change: &GroupChange,
    event: SystemEvent,
    user: i64,
) -> GroupOutcome {
    store
        .change_group(group, change, &system_message(group, event, user), seqs)
        .await
        .unwrap()
}

/// Every change to blocks, and every change to a group that changed
/// something, writes a new version of it, which other nodes' caches are
/// checked against; a change that changed nothing, or a new group (no node
/// has it cached), writes none.
async fn block_and_group_changes_write_new_cache_versions(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 3).await;
    let v0 = store.cache_versions().await.unwrap();
    assert_eq!(v0, CacheVersions::default(), "none before the first change");
    let now = 1_795_665_600_000;
    store.set_block(uid(1), uid(2), true, now).await.unwrap();
    let v1 = store.cache_versions().await.unwrap();
    assert!(v1.blocks.is_some() && v1.groups.is_none(), "{v1:?}");
    store.set_block(uid(1), uid(2), false, now).await.unwrap();
    let v2 = store.cache_versions().await.unwrap();
    assert_ne!(v2.blocks, v1.blocks, "lifting a block is a change too");

    let group = store
        .create_group("g", uid(1), &uids(&[2]), now)
        .await
        .unwrap();
    let gid = GroupId::parse(group.id).unwrap();
    assert_eq!(store.cache_versions().await.unwrap(), v2);
    let mut seqs = SeqCache::new();
    let add = GroupChange::Add {
        user: uid(3),
        role: Role::Member,
    };
    let outcome = change(&*store, &mut seqs, gid, &add, SystemEvent::MemberAdded, 3).await;
    assert!(matches!(outcome, GroupOutcome::Changed(_)), "{outcome:?}");
    let v3 = store.cache_versions().await.unwrap();
    assert!(v3.groups.is_some() && v3.blocks == v2.blocks, "{v3:?}");
    let again = change(&*store, &mut seqs, gid, &add, SystemEvent::MemberAdded, 3).await;
    assert_eq!(again, GroupOutcome::AlreadyMember);
    assert_eq!(store.cache_versions().await.unwrap(), v3, "nothing changed");
}

/// The rosters the writer reads in one query: each live group's current
/// members, by group and join time; a group deleted, unknown, or left by a
/// member is answered as `members` answers it.
async fn rosters_read_in_one_query_match_each_groups_members(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 4).await;
    let now = 1_795_665_600_000;
    let mut seqs = SeqCache::new();
    let mut ids = Vec::new();
    for members in [&[2, 3][..], &[4], &[2]] {
        let group = store
            .create_group("g", uid(1), &uids(members), now)
            .await
            .unwrap();
        ids.push(GroupId::parse(group.id).unwrap());
    }
    let (left, deleted) = (ids[0], ids[2]);
    let remove = GroupChange::Remove { user: uid(2) };
    let outcome = change(
        &*store,
        &mut seqs,
        left,
        &remove,
        SystemEvent::MemberRemoved,
        2,
    )
    .await;
    assert!(matches!(outcome, GroupOutcome::Changed(_)), "{outcome:?}");
    let outcome = change(
        &*store,
        &mut seqs,
        deleted,
        &GroupChange::Delete,
        SystemEvent::GroupDeleted,
        1,
    )
    .await;
    assert!(matches!(outcome, GroupOutcome::Changed(_)), "{outcome:?}");
    let unknown = GroupId::parse(999_999).unwrap();
    let mut asked = ids.clone();
    asked.push(unknown);
    let rosters = store.rosters(&asked).await.unwrap();
    let got: Vec<(i64, i64, Role)> = rosters
        .iter()
        .map(|(g, m)| (g.get(), m.user_id, m.role))
        .collect();
    let mut want = Vec::new();
    for &g in &asked {
        for m in store.members(g).await.unwrap() {
            want.push((g.get(), m.user_id, m.role));
        }
    }
    assert_eq!(got, want);
    assert_eq!(
        got.iter().map(|&(g, u, _)| (g, u)).collect::<Vec<_>>(),
        [
            (ids[0].get(), 1),
            (ids[0].get(), 3),
            (ids[1].get(), 1),
            (ids[1].get(), 4)
        ],
        "user 2 left the first group; the third is deleted"
    );
}

/// The store's own check that the user a change names is a member: the
/// domain checks roles before queuing a change, and this one, inside the
/// change's transaction, decides when the membership changed meanwhile.
/// A change naming a non-member (never one, or departed) is refused and
/// writes nothing: no system message, no membership.
async fn a_change_naming_a_non_member_is_refused_and_writes_nothing(b: Backend) {
    let (_db, store) = open(b).await;
    users(&*store, 4).await;
    let group = store
        .create_group("g", uid(1), &uids(&[2, 3]), 1_795_665_600_000)
        .await
        .unwrap();
    let gid = GroupId::parse(group.id).unwrap();
    let conv = ConversationKey::Group(gid);
    let mut seqs = SeqCache::new();
    let system = |event, user: i64| system_message(gid, event, user);
    // User 3 departs: a member until then.
    let left = store
        .change_group(
            gid,
            &GroupChange::Remove { user: uid(3) },
            &system(SystemEvent::MemberRemoved, 3),
            &mut seqs,
        )
        .await
        .unwrap();
    assert!(matches!(left, GroupOutcome::Changed(_)), "{left:?}");
    // User 4 never was a member, user 3 no longer is.
    for user in [4, 3] {
        let changes = [
            (
                GroupChange::Remove { user: uid(user) },
                SystemEvent::MemberRemoved,
            ),
            (
                GroupChange::SetRole {
                    user: uid(user),
                    role: Role::Admin,
                },
                SystemEvent::RoleChanged,
            ),
            (
                GroupChange::Owner { user: uid(user) },
                SystemEvent::OwnerChanged,
            ),
        ];
        for (change, event) in changes {
            let outcome = store
                .change_group(gid, &change, &system(event, user), &mut seqs)
                .await
                .unwrap();
            assert_eq!(
                outcome,
                GroupOutcome::NotMember,
                "{change:?} of user {user}"
            );
        }
    }
    assert_eq!(
        stored_seqs(&*store, conv).await,
        [(1, "MemberRemoved 3".to_string())],
        "only the one change that applied wrote a message"
    );
    let members = store.members(gid).await.unwrap();
    let roles: Vec<(i64, Role)> = members.iter().map(|m| (m.user_id, m.role)).collect();
    assert_eq!(roles, [(1, Role::Owner), (2, Role::Member)]);
}

backend_tests!(
    a_page_ending_at_the_last_message_says_there_is_no_more,
    a_change_naming_a_non_member_is_refused_and_writes_nothing,
    concurrent_changes_wait_for_each_other_instead_of_failing,
    driver_errors_are_classified_by_their_code,
    unread_counts_derive_from_stored_messages_alone,
    last_seen_is_recorded_for_every_user_named,
    ensure_users_creates_the_missing_and_leaves_taken_names_to_ensure_user,
    a_batch_allocates_consecutive_seqs_per_conversation,
    a_key_repeated_within_a_batch_is_stored_once,
    a_key_from_an_earlier_batch_returns_the_stored_message,
    missing_users_and_minted_ids_do_not_collide_with_registration,
    a_second_writer_is_noticed_once_then_both_lock,
    a_writer_that_keeps_winning_learns_of_the_loser,
    racing_writers_leave_no_gaps,
    a_key_reused_for_a_reply_to_another_message_is_refused,
    a_kept_connection_the_database_closed_is_replaced,
    writers_that_lock_take_turns_and_are_never_refused,
    ping_fails_once_the_database_is_gone,
    a_batch_whose_mentions_fail_stores_none_of_it,
    the_change_log_ends_where_it_says_and_pruning_keeps_what_is_current,
    block_and_group_changes_write_new_cache_versions,
    rosters_read_in_one_query_match_each_groups_members,
    the_writer_reads_on_the_connection_it_keeps,
);
