//! The names every layer shares: user and group ids, which conversation,
//! and which page of it.
//!
//! This module imports nothing else of the crate, so the store below the
//! domain and the transports above it all take their ids from here, and
//! none of them needs another layer for its vocabulary.

/// A user id.
pub type UserId = i64;
/// A group id.
pub type GroupId = i64;

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
    pub fn kind(&self) -> palaver_protocol::ConversationType {
        match self {
            ConversationKey::Private { .. } => palaver_protocol::ConversationType::Private,
            ConversationKey::Group(_) => palaver_protocol::ConversationType::Group,
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

/// Which slice of a conversation's history to read.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    pub limit: u32,
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
