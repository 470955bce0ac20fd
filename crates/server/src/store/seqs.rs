//! What the message writer remembers between batches: each conversation's
//! row id and last `seq`, and whether other writers share the database.
//!
//! A conversation's last `seq` is the highest `seq` among its messages; the
//! unique index on `(conversation_id, seq)` is what guarantees that no two
//! messages get the same one. A writer that is alone on its database knows
//! the last `seq` of every conversation it has written to — it wrote it —
//! so it allocates the next ones without a statement, where it would
//! otherwise have to read (or lock and bump) one row per conversation in
//! every batch. Measured with 10,000 users, that per-conversation statement
//! was half of each commit (BENCHMARKS.md, "Each conversation's last
//! `seq` from memory").
//!
//! Several processes may share one database (with or without Redis). When
//! another writer has added to a conversation, the remembered `seq` is
//! stale and the insert hits the unique index: the batch is rolled back
//! and retried, and from then on, for [`SHARED_HOLD`], every batch locks
//! its conversations' rows in id order and reads their last `seq` under
//! that lock, so writers on different nodes queue instead of racing. While
//! shared, a batch that finds a last `seq` it did not write extends the
//! hold; after a quiet [`SHARED_HOLD`] the writer trusts its memory again.
//!
//! The writer that hit the index must not be the only one to find out: a
//! writer that keeps winning the race (its memory is right, it never hits
//! the index) would otherwise never lock, and the other could lose every
//! retry. So the loser also writes a new value into the `writer_epoch`
//! setting, and the statement that inserts every batch's messages reads
//! that setting too (no statement of its own): a value the writer has not
//! seen means another writer is about, and its next batches lock. (A batch
//! that inserted with a remembered `seq` is right whatever the setting
//! says: the unique index let it in.)
//!
//! A remembered value is only ever one this process committed or read in a
//! committed state: values from a batch are recorded after its commit
//! succeeds, and a failed batch (which may or may not have committed)
//! forgets its conversations' last `seq`s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ids::ConversationKey;

/// Conversations remembered at most; beyond this the memory starts over
/// (each forgotten conversation costs one read on its next message).
pub const CAPACITY: usize = 100_000;

/// How long a writer locks conversations after it last saw another writer.
pub const SHARED_HOLD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Known {
    id: i64,
    last: Option<i64>,
}

/// See the module documentation. One per writer; not shared.
#[derive(Debug, Default)]
pub struct SeqCache {
    known: HashMap<ConversationKey, Known>,
    shared_until: Option<Instant>,
    /// The `writer_epoch` setting as last read or written (`Some(None)`:
    /// not set); `None` before the first read.
    epoch: Option<Option<String>>,
}

/// What a batch learned, recorded once it has committed.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    /// `(conversation, row id, last seq)`.
    pub convs: Vec<(ConversationKey, i64, i64)>,
    /// A last `seq` differed from the remembered one: another writer.
    pub others: bool,
    /// The `writer_epoch` setting as the batch's insert read it.
    pub epoch: Option<Option<String>>,
}

impl SeqCache {
    pub fn new() -> Self {
        SeqCache::default()
    }

    /// The conversation's row id, if known (ids never change).
    pub(crate) fn id(&self, conv: &ConversationKey) -> Option<i64> {
        self.known.get(conv).map(|k| k.id)
    }

    /// The remembered last `seq`, trusted or not.
    pub(crate) fn last(&self, conv: &ConversationKey) -> Option<i64> {
        self.known.get(conv).and_then(|k| k.last)
    }

    /// Whether batches must lock and read their conversations' last `seq`.
    pub(crate) fn shared(&self, now: Instant) -> bool {
        self.shared_until.is_some_and(|until| now < until)
    }

    /// Whether this writer currently locks (it has seen another writer
    /// within [`SHARED_HOLD`]).
    pub fn locking(&self) -> bool {
        self.shared(Instant::now())
    }

    /// Records a committed batch.
    pub(crate) fn commit(&mut self, learned: Learned, now: Instant) {
        let epoch_changed = learned.epoch.is_some_and(|e| self.epoch_read(e));
        if learned.others || epoch_changed {
            self.others_seen(now);
        }
        if self.known.len() + learned.convs.len() > CAPACITY {
            self.known.clear();
        }
        for (conv, id, last) in learned.convs {
            self.known.insert(
                conv,
                Known {
                    id,
                    last: Some(last),
                },
            );
        }
    }

    /// Forgets the last `seq` of `convs` after a batch failed: it may or
    /// may not have committed.
    pub(crate) fn forget(&mut self, convs: impl IntoIterator<Item = ConversationKey>) {
        for conv in convs {
            if let Some(k) = self.known.get_mut(&conv) {
                k.last = None;
            }
        }
    }

    /// Another writer has written to this database: lock for a while.
    pub(crate) fn others_seen(&mut self, now: Instant) {
        self.shared_until = Some(now + SHARED_HOLD);
    }

    /// Records the `writer_epoch` setting as a batch read it; true if it
    /// changed since the last read (another writer met a
    /// conflict). The first read only records.
    pub(crate) fn epoch_read(&mut self, value: Option<String>) -> bool {
        let changed = self.epoch.as_ref().is_some_and(|seen| *seen != value);
        self.epoch = Some(value);
        changed
    }

    /// Records the value this writer itself wrote.
    pub(crate) fn epoch_written(&mut self, value: String) {
        self.epoch = Some(Some(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::GroupId;

    /// Conversation `n`, counted from 0: group `n + 1`.
    fn conv(n: i64) -> ConversationKey {
        ConversationKey::Group(GroupId::parse(n + 1).unwrap())
    }

    #[test]
    fn remembers_only_what_was_committed_and_forgets_on_failure() {
        let mut seqs = SeqCache::new();
        let now = Instant::now();
        assert_eq!(seqs.id(&conv(1)), None);
        seqs.commit(
            Learned {
                convs: vec![(conv(1), 10, 5), (conv(2), 20, 1)],
                others: false,
                epoch: None,
            },
            now,
        );
        assert_eq!(
            (seqs.id(&conv(1)), seqs.last(&conv(1))),
            (Some(10), Some(5))
        );
        seqs.forget([conv(1)]);
        assert_eq!((seqs.id(&conv(1)), seqs.last(&conv(1))), (Some(10), None));
        assert_eq!(seqs.last(&conv(2)), Some(1));
        assert!(!seqs.shared(now));
    }

    #[test]
    fn a_writer_locks_only_once_it_has_seen_another() {
        let mut seqs = SeqCache::new();
        assert!(!seqs.locking());
        seqs.others_seen(Instant::now());
        assert!(seqs.locking());
    }

    #[test]
    fn another_writer_means_locking_for_the_hold_then_trusting_again() {
        let mut seqs = SeqCache::new();
        let now = Instant::now();
        seqs.others_seen(now);
        assert!(seqs.shared(now));
        assert!(seqs.shared(now + SHARED_HOLD - Duration::from_millis(1)));
        assert!(!seqs.shared(now + SHARED_HOLD));
        // A committed batch that saw another writer extends the hold.
        let later = now + SHARED_HOLD / 2;
        seqs.commit(
            Learned {
                convs: vec![],
                others: true,
                epoch: None,
            },
            later,
        );
        assert!(seqs.shared(now + SHARED_HOLD));
    }

    #[test]
    fn a_changed_epoch_is_news_but_the_first_read_and_own_writes_are_not() {
        let mut seqs = SeqCache::new();
        assert!(!seqs.epoch_read(None), "first read");
        assert!(!seqs.epoch_read(None));
        assert!(seqs.epoch_read(Some("b1".into())), "set by another writer");
        assert!(!seqs.epoch_read(Some("b1".into())));
        seqs.epoch_written("a1".into());
        assert!(!seqs.epoch_read(Some("a1".into())), "own write");
        assert!(seqs.epoch_read(Some("b2".into())));
    }

    fn learned(convs: std::ops::Range<i64>) -> Learned {
        Learned {
            convs: convs.map(|n| (conv(n), n, 1)).collect(),
            others: false,
            epoch: None,
        }
    }

    #[test]
    fn earlier_conversations_are_kept_while_under_capacity() {
        let mut seqs = SeqCache::new();
        let now = Instant::now();
        seqs.commit(learned(0..10), now);
        seqs.commit(learned(10..20), now);
        // Filling up to exactly the capacity keeps everything.
        seqs.commit(learned(20..CAPACITY as i64), now);
        assert_eq!(seqs.known.len(), CAPACITY);
        assert_eq!(
            seqs.last(&conv(0)),
            Some(1),
            "the first batch is still known"
        );
        // One more starts over, keeping the newest batch.
        seqs.commit(learned(CAPACITY as i64..CAPACITY as i64 + 3), now);
        assert_eq!(seqs.known.len(), 3);
        assert_eq!(seqs.last(&conv(0)), None);
    }

    #[test]
    fn memory_is_bounded_with_batches_not_aligned_to_capacity() {
        let mut seqs = SeqCache::new();
        let now = Instant::now();
        let mut next = 0;
        while next < 3 * CAPACITY as i64 {
            seqs.commit(learned(next..next + 777), now);
            next += 777;
            assert!(seqs.known.len() <= CAPACITY, "{}", seqs.known.len());
        }
        assert_eq!(
            seqs.last(&conv(next - 1)),
            Some(1),
            "the newest batch is kept"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut seqs = SeqCache::new();
        let now = Instant::now();
        for chunk in 0..(CAPACITY as i64 / 1000 + 2) {
            let convs = (0..1000)
                .map(|i| {
                    let n = chunk * 1000 + i;
                    (conv(n), n, 1)
                })
                .collect();
            seqs.commit(
                Learned {
                    convs,
                    others: false,
                    epoch: None,
                },
                now,
            );
            assert!(seqs.known.len() <= CAPACITY);
        }
        // The newest batch is always kept.
        let newest = (CAPACITY as i64 / 1000 + 1) * 1000;
        assert_eq!(seqs.id(&conv(newest)), Some(newest));
    }
}
