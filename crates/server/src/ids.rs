//! The names every layer shares: user and group ids, which conversation,
//! and which page of it.
//!
//! An id is a positive integer (PROTOCOL.md). A [`UserId`] or [`GroupId`]
//! is made only by parsing what a client sent ([`UserId::parse`]), once,
//! at the edge, or by the store from its own rows; so the domain and the
//! store never check one again. A history [`Page`] is likewise made only
//! by [`Page::parse`]. On the wire ids stay plain numbers: the protocol
//! crate's types carry `i64`, and the edges convert.
//!
//! This module imports nothing else of the crate, so the store below the
//! domain and the transports above it all take their ids from here, and
//! none of them needs another layer for its vocabulary.

use std::fmt;

use palaver_protocol::ConversationType;
use serde::{Deserialize, Serialize};

/// An id that is not a positive integer, and so names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a positive integer")]
pub struct IdError(pub i64);

/// Defines an id type: a positive `i64` that only [`parse`] (or the
/// store, from its rows) makes, written and (de)serialized as the bare
/// number.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(i64);

        impl $name {
            /// The id `raw` names; refused unless positive.
            pub fn parse(raw: i64) -> Result<Self, IdError> {
                if raw > 0 {
                    Ok($name(raw))
                } else {
                    Err(IdError(raw))
                }
            }

            /// An id the database handed back: every id in it was parsed
            /// before it was stored, or allocated by the database itself.
            pub(crate) fn from_stored(raw: i64) -> Self {
                debug_assert!(raw > 0, "stored id {raw}");
                $name(raw)
            }

            /// The number, for the wire and for SQL.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = IdError;

            fn try_from(raw: i64) -> Result<Self, IdError> {
                $name::parse(raw)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user's id.
    UserId
);
id_type!(
    /// A group's id.
    GroupId
);

/// Which conversation: the private pair or the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConversationKey {
    /// Unordered pair; constructed with [`ConversationKey::private`] so that
    /// `lo <= hi`.
    Private {
        lo: UserId,
        hi: UserId,
    },
    Group(GroupId),
}

impl ConversationKey {
    pub fn private(a: UserId, b: UserId) -> Self {
        ConversationKey::Private {
            lo: a.min(b),
            hi: a.max(b),
        }
    }

    /// Private or group.
    pub fn kind(&self) -> ConversationType {
        match self {
            ConversationKey::Private { .. } => ConversationType::Private,
            ConversationKey::Group(_) => ConversationType::Group,
        }
    }

    /// The unique text key stored in `conversations.conv_key`.
    pub fn db_key(&self) -> String {
        match self {
            ConversationKey::Private { lo, hi } => format!("p:{lo}:{hi}"),
            ConversationKey::Group(g) => format!("g:{g}"),
        }
    }
}

/// Which slice of a conversation's history to read: after a seq, before
/// one, the latest, or (v1.2) the messages changed after a change
/// position; at most `limit` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    after_seq: Option<i64>,
    before_seq: Option<i64>,
    changed_after: Option<i64>,
    limit: u32,
    /// No message after this seq: a departed member's history ends at
    /// their departure (v1.2).
    up_to: Option<i64>,
}

/// Why a history page was refused; the text is the client's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("afterSeq must be ≥ 0 and beforeSeq ≥ 1")]
    Seq,
    #[error("limit must be at least 1")]
    Limit,
    #[error("changedAfter must be ≥ 0 and cannot be combined with afterSeq or beforeSeq")]
    Changed,
}

impl Page {
    /// A page after `after_seq` (≥ 0) or before `before_seq` (≥ 1), of
    /// `limit` (≥ 1) messages.
    pub fn parse(
        after_seq: Option<i64>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Self, PageError> {
        if after_seq.is_some_and(|s| s < 0) || before_seq.is_some_and(|s| s < 1) {
            return Err(PageError::Seq);
        }
        if limit == 0 {
            return Err(PageError::Limit);
        }
        Ok(Page {
            after_seq,
            before_seq,
            changed_after: None,
            limit,
            up_to: None,
        })
    }

    /// The messages whose `change_seq` is above `changed_after` (≥ 0), in
    /// change order, `limit` (≥ 1) of them.
    pub fn changed_after(changed_after: i64, limit: u32) -> Result<Self, PageError> {
        if changed_after < 0 {
            return Err(PageError::Changed);
        }
        let mut page = Page::parse(None, None, limit)?;
        page.changed_after = Some(changed_after);
        Ok(page)
    }

    /// The same page, of at most `max` messages.
    pub fn at_most(self, max: u32) -> Self {
        Page {
            limit: self.limit.min(max),
            ..self
        }
    }

    /// The same page, without messages after `seq`.
    pub fn up_to(self, seq: i64) -> Self {
        Page {
            up_to: Some(seq),
            ..self
        }
    }

    /// The last seq the page may hold.
    pub fn last_seq(&self) -> Option<i64> {
        self.up_to
    }

    /// Read forwards from this seq (exclusive).
    pub fn after_seq(&self) -> Option<i64> {
        self.after_seq
    }

    /// Read back from this seq (exclusive).
    pub fn before_seq(&self) -> Option<i64> {
        self.before_seq
    }

    /// Read the changes after this change position (exclusive).
    pub fn changes_after(&self) -> Option<i64> {
        self.changed_after
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }
}

/// A conversation's place in the conversation list, most recent first:
/// the id of its last message (0 without messages), then its own id.
/// Message ids are unique, so no two conversations share a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActivityKey {
    pub last_message_id: i64,
    pub conversation_id: i64,
}

/// Which slice of a user's conversation list to read.
#[derive(Debug, Clone, Copy)]
pub struct ConversationsPage {
    /// Only conversations after this place (below it in the order).
    pub after: Option<ActivityKey>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_integers() {
        assert_eq!(UserId::parse(1).unwrap().get(), 1);
        assert_eq!(GroupId::parse(i64::MAX).unwrap().get(), i64::MAX);
        for bad in [0, -1, i64::MIN] {
            assert_eq!(UserId::parse(bad), Err(IdError(bad)));
            assert_eq!(GroupId::try_from(bad), Err(IdError(bad)));
        }
        assert_eq!(IdError(0).to_string(), "0 is not a positive integer");
    }

    #[test]
    fn ids_are_plain_numbers_in_json_and_text() {
        let id = UserId::parse(42).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(serde_json::from_str::<UserId>("42").unwrap(), id);
        assert_eq!(id.to_string(), "42");
        let max = GroupId::parse(i64::MAX).unwrap();
        let json = serde_json::to_string(&max).unwrap();
        assert_eq!(json, i64::MAX.to_string());
        assert_eq!(serde_json::from_str::<GroupId>(&json).unwrap(), max);
    }

    #[test]
    fn json_ids_that_are_not_positive_integers_are_refused() {
        for bad in ["0", "-3", "1.5", "\"7\"", "null", "9223372036854775808"] {
            assert!(serde_json::from_str::<UserId>(bad).is_err(), "{bad}");
        }
        let e = serde_json::from_str::<GroupId>("0").unwrap_err();
        assert!(e.to_string().contains("0 is not a positive integer"), "{e}");
    }

    #[test]
    fn private_keys_are_the_same_from_either_side() {
        let (a, b) = (UserId::parse(9).unwrap(), UserId::parse(3).unwrap());
        assert_eq!(
            ConversationKey::private(a, b),
            ConversationKey::private(b, a)
        );
        assert_eq!(ConversationKey::private(a, b).db_key(), "p:3:9");
        let g = GroupId::parse(5).unwrap();
        assert_eq!(ConversationKey::Group(g).db_key(), "g:5");
    }

    #[test]
    fn history_pages_start_at_seq_zero_or_before_one_and_hold_one_or_more() {
        let page = Page::parse(Some(0), None, 1).unwrap();
        assert_eq!(
            (page.after_seq(), page.before_seq(), page.limit()),
            (Some(0), None, 1)
        );
        assert_eq!(
            Page::parse(None, Some(1), 500)
                .unwrap()
                .at_most(200)
                .limit(),
            200
        );
        assert_eq!(Page::parse(Some(-1), None, 10), Err(PageError::Seq));
        assert_eq!(Page::parse(None, Some(0), 10), Err(PageError::Seq));
        assert_eq!(Page::parse(None, None, 0), Err(PageError::Limit));
        assert_eq!(Page::parse(Some(-1), None, 0), Err(PageError::Seq));
    }
}
