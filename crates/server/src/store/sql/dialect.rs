//! Where the three databases' SQL differs, and the builders of SQL text.
//!
//! One implementation runs on SQLite, MySQL/MariaDB and PostgreSQL through
//! sqlx's `Any` driver; the [`Dialect`] says how placeholders, upserts,
//! index hints and row locks are written on each. The builders here make
//! the multi-row statements' text (`tuple`, `tuples`) and cut rows into
//! few statement shapes (`shaped_chunks`), so that prepared statements
//! stay cached; the shared subqueries (`LAST_SEQ`, `LAST_ID`,
//! `own_last_seq`) are written once. Nothing here runs a query.

use std::borrow::Cow;

/// Rows per multi-row statement: the store's batch limit
/// ([`MAX_BATCH`](crate::store::MAX_BATCH)), so a writer batch's insert is
/// one or two statements, and bound parameters stay far below every
/// backend's limit.
pub(super) const CHUNK: usize = crate::store::MAX_BATCH;
/// Multi-row statements are cut to a multiple of this many rows plus a
/// remainder (see [`shaped_chunks`]).
pub(super) const SHAPE_STEP: usize = 16;

/// Where the backends' SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    MySql,
    Postgres,
}

impl Dialect {
    pub(super) fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::MySql => "mysql",
            Dialect::Postgres => "postgres",
        }
    }

    /// Rewrites `?` placeholders to `$1, $2, …` for PostgreSQL.
    pub(super) fn q<'a>(self, sql: impl Into<Cow<'a, str>>) -> Cow<'a, str> {
        let sql = sql.into();
        if self != Dialect::Postgres {
            return sql;
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    /// `INSERT` that skips rows hitting a uniqueness rule.
    pub(super) fn insert_ignore(self, rest: &str) -> String {
        match self {
            Dialect::MySql => format!("INSERT IGNORE INTO {rest}"),
            _ => format!("INSERT INTO {rest} ON CONFLICT DO NOTHING"),
        }
    }

    /// Upserts read positions from `source` (`VALUES (?, ?, ?)` or a
    /// `SELECT`); with `forward_only` an existing position never moves back.
    pub(super) fn upsert_read(self, source: &str, forward_only: bool) -> String {
        let cols = "INSERT INTO read_positions (user_id, conversation_id, read_seq)";
        match (self, forward_only) {
            (Dialect::MySql, true) => format!(
                "{cols} {source} ON DUPLICATE KEY UPDATE read_seq = GREATEST(read_seq, VALUES(read_seq))"
            ),
            (Dialect::MySql, false) => {
                format!("{cols} {source} ON DUPLICATE KEY UPDATE read_seq = VALUES(read_seq)")
            }
            (_, forward_only) => {
                let max = if self == Dialect::Sqlite { "MAX" } else { "GREATEST" };
                let value = if forward_only {
                    format!("{max}(read_positions.read_seq, excluded.read_seq)")
                } else {
                    "excluded.read_seq".to_string()
                };
                format!(
                    "{cols} {source} ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = {value}"
                )
            }
        }
    }

    /// Makes a probe use `index` where the planner may choose another.
    /// MariaDB's statistics pick `(sender_id, client_msg_id)` for the own
    /// last seq of a user who has sent little, then sort that user's
    /// messages: a cost that grows with what they sent. The others pick
    /// the index that answers with one entry.
    pub(super) fn force_index(self, index: &str) -> String {
        match self {
            Dialect::MySql => format!("FORCE INDEX ({index})"),
            _ => String::new(),
        }
    }

    /// The row lock a writer sharing the database takes on its batch's
    /// conversations; `None` on SQLite, whose write transaction already
    /// excludes every other writer.
    ///
    /// On PostgreSQL it is `FOR NO KEY UPDATE`: it queues the writers that
    /// lock, as `FOR UPDATE` would, but not the foreign-key check of a writer
    /// that does not lock yet (its `FOR KEY SHARE` on each conversation,
    /// taken at the end of its insert, after its rows). With `FOR UPDATE`
    /// that check waited for the locking writer while the locking writer's
    /// insert waited for the other's rows of the same seqs: a deadlock
    /// PostgreSQL breaks only after `deadlock_timeout` (1 s by default). Now
    /// the other writer commits first and the locking one gets a conflict
    /// and retries at once. (InnoDB reports deadlocks at once.)
    pub(super) fn writer_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::MySql => Some("FOR UPDATE"),
            Dialect::Postgres => Some("FOR NO KEY UPDATE"),
        }
    }
}

/// Splits `items` into chunks of at most [`CHUNK`] rows whose lengths are
/// either a multiple of [`SHAPE_STEP`] or below it: at most two statements
/// for a writer batch, and only 31 statement shapes per query, so that they
/// stay in each connection's prepared-statement cache (100 by default)
/// instead of being prepared anew for every batch size, which costs a
/// round trip on MySQL. (Powers of two had fewer shapes but cut a batch of
/// 86 into four statements; measured, the round trips were most of the
/// commit time.)
pub(super) fn shaped_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = items.len().min(CHUNK);
        let size = if n >= SHAPE_STEP {
            n - n % SHAPE_STEP
        } else {
            n
        };
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// `(?, ?, …)` with `n` placeholders.
pub(super) fn tuple(n: usize) -> String {
    let mut s = String::with_capacity(2 + 3 * n);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s.push(')');
    s
}

/// `rows` tuples of `n` placeholders, comma-separated.
pub(super) fn tuples(rows: usize, n: usize) -> String {
    let one = tuple(n);
    let mut s = String::with_capacity(rows * (one.len() + 2));
    for i in 0..rows {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&one);
    }
    s
}

/// The last `seq` of conversation `c` (0 before its first message): one
/// probe of the unique `(conversation_id, seq)` index.
pub(super) const LAST_SEQ: &str =
    "COALESCE((SELECT m.seq FROM messages m WHERE m.conversation_id = c.id \
     ORDER BY m.seq DESC LIMIT 1), 0)";
/// The id of conversation `c`'s last message (0 before its first): its
/// place in the conversation list, read from the same index probe as
/// [`LAST_SEQ`] (the index holds the row id on SQLite and InnoDB).
pub(super) const LAST_ID: &str =
    "COALESCE((SELECT m.id FROM messages m WHERE m.conversation_id = c.id \
     ORDER BY m.seq DESC LIMIT 1), 0)";
/// The seq of user `?`'s own last message in conversation `conv` (0 if
/// none): one probe of the `(conversation_id, sender_id, seq)` index.
/// Sending reads up to the message sent, so a read position is never below
/// it.
pub(super) fn own_last_seq(d: Dialect, conv: &str) -> String {
    format!(
        "COALESCE((SELECT o.seq FROM messages o {} WHERE o.conversation_id = {conv} \
         AND o.sender_id = ? ORDER BY o.seq DESC LIMIT 1), 0)",
        d.force_index("messages_conversation_sender_seq")
    )
}

/// Escapes `%`, `_` and `!` for a `LIKE ... ESCAPE '!'` prefix pattern
/// (`!` rather than backslash, which MySQL string literals treat specially).
pub(super) fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_come_in_few_shapes_and_cover_everything() {
        let items: Vec<u32> = (0..600).collect();
        let sizes = |n: usize| -> Vec<usize> {
            super::shaped_chunks(&items[..n])
                .map(<[u32]>::len)
                .collect()
        };
        assert_eq!(sizes(600), [256, 256, 80, 8]);
        assert_eq!(sizes(86), [80, 6]);
        assert_eq!(sizes(256), [256]);
        assert_eq!(sizes(15), [15]);
        assert_eq!(sizes(1), [1]);
        assert!(sizes(0).is_empty());
        let mut shapes = std::collections::BTreeSet::new();
        for n in 0..=super::CHUNK {
            let chunks = sizes(n);
            assert_eq!(chunks.iter().sum::<usize>(), n);
            assert!(chunks.len() <= 2, "{n} rows in {chunks:?}");
            shapes.extend(chunks);
        }
        assert_eq!(shapes.len(), 31);
    }
}
