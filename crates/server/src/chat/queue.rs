//! What the writer's queue carries: sends, edits and deletes, and group
//! changes, each with the way it is answered, and the deadline every one of
//! them is answered within. The request paths (`messages`, `groups`) put
//! these in the queue; the writer (`writer`, with `changes` and `groups`
//! for the work itself) takes them out. Kept apart from both so that
//! neither side imports the other.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use palaver_protocol::{Message, Reaction, Role};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{ChangeRequest, ChatError, GroupName, SendRequest};
use crate::ids::{GroupId, UserId};

/// Every send is answered within this long of being queued: when the
/// database is down or hanging, the answer is `unavailable`, never a hang.
pub const SEND_DEADLINE: Duration = Duration::from_millis(1800);

/// What a committed send produced.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Arc<Message>,
    /// Every user whose sockets should get the message (sender included).
    pub recipients: Vec<UserId>,
    /// False for an idempotent retry: answer it, deliver nothing.
    pub fresh: bool,
    /// For a `react`: the reaction, which is what is answered and
    /// delivered instead of the message.
    pub reaction: Option<Reaction>,
}

/// How the transport answers a send once its outcome is known: the answer
/// to the sender goes out before `respond` returns, and the returned future
/// delivers the message. The writer finishes each of those futures before
/// it starts a later one with a recipient in common (the writer's waves), which
/// keeps every socket's deliveries in commit order.
pub trait Respond: Send + 'static {
    fn respond(self: Box<Self>, outcome: Result<Sent, ChatError>) -> BoxFuture<'static, ()>;
}

pub(crate) struct Job {
    pub req: SendRequest,
    pub respond: Box<dyn Respond>,
    pub queued: Instant,
}

/// An edit or delete waiting its turn (v1.2).
pub(crate) struct ChangeJob {
    pub req: ChangeRequest,
    pub respond: Box<dyn Respond>,
    pub queued: Instant,
}

/// What the writer's queue carries.
pub(crate) enum Queued {
    Send(Job),
    /// Applied after the sends queued before it are committed and
    /// delivered, on its own (see `changes.rs`).
    Change(ChangeJob),
    /// A change to a group with its system message (see `groups.rs`),
    /// applied like a `Change`.
    Group(GroupJob),
    /// Signalled once every send queued before it has been answered.
    Barrier(oneshot::Sender<()>),
}

/// What someone asks to do to a group.
#[derive(Debug, Clone)]
pub enum GroupOp {
    /// Add a user as `role` (member or admin).
    Add {
        user: UserId,
        role: Role,
    },
    /// Remove a member; the actor themself: leave.
    Remove {
        user: UserId,
    },
    Rename(GroupName),
    /// Make a member an admin or a plain member.
    SetRole {
        user: UserId,
        role: Role,
    },
    /// Hand ownership to a member.
    Owner {
        user: UserId,
    },
    Delete,
}

/// A group change waiting its turn in the writer's queue.
pub(crate) struct GroupJob {
    pub(super) actor: UserId,
    pub(super) group: GroupId,
    pub(super) op: GroupOp,
    pub(super) queued: Instant,
    /// The system message written, or `None` when nothing changed.
    pub(super) done: oneshot::Sender<Result<Option<Message>, ChatError>>,
}

impl GroupJob {
    /// Answers a job the writer will not run.
    pub(crate) fn refuse(self, e: ChatError) {
        let _ = self.done.send(Err(e));
    }
}
