//! Messages: queueing a send for the writer (and draining the queue at
//! shutdown), history, read positions, typing recipients and the
//! conversation list. Sends are committed by [`super::writer`]; the rest
//! is read here, each after checking the caller takes part.

use std::sync::atomic::Ordering;

use palaver_protocol::{ConversationSummary, MessagePage};
use tokio::sync::mpsc;

use super::queue::{ChangeJob, Job, Queued};
use super::{ChangeRequest, Chat, ChatError, ListCursor, ListPage, Respond, SendRequest, Target};
use crate::ids::{ConversationsPage, Page, UserId};
use crate::store::ReadOutcome;

/// Largest history page.
pub const MAX_PAGE: u32 = 200;
/// History page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;
/// Most conversations listed when no page is asked for (the v1 list).
pub const MAX_CONVERSATIONS: u32 = 1000;

impl Chat {
    /// Queues a send for the writer. Sends are committed, answered and
    /// delivered in the order they were queued. When the queue is full the
    /// send is answered `unavailable` at once.
    pub fn send(&self, req: SendRequest, respond: Box<dyn Respond>) {
        let queued = tokio::time::Instant::now();
        self.enqueue(Queued::Send(Job {
            req,
            respond,
            queued,
        }));
    }

    /// Queues an edit or delete (v1.2) for the writer, behind every send
    /// queued before it; refused like a send when the queue is full.
    pub fn change(&self, req: ChangeRequest, respond: Box<dyn Respond>) {
        let queued = tokio::time::Instant::now();
        self.enqueue(Queued::Change(ChangeJob {
            req,
            respond,
            queued,
        }));
    }

    pub(super) fn enqueue(&self, item: Queued) {
        let refused = if self.closing.load(Ordering::Acquire) {
            Some((item, "server is shutting down"))
        } else {
            match self.sends.try_send(item) {
                Ok(()) => None,
                Err(
                    mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item),
                ) => Some((item, "server is busy")),
            }
        };
        let Some((item, why)) = refused else {
            return;
        };
        let e = ChatError::Unavailable(format!("{why}, nothing was stored; retry"));
        let respond = match item {
            Queued::Send(job) => job.respond,
            Queued::Change(job) => job.respond,
            Queued::Group(job) => return job.refuse(e),
            Queued::Barrier(_) => return,
        };
        tokio::spawn(respond.respond(Err(e)));
    }

    /// For shutdown: refuses new sends and returns once every send queued
    /// before has been committed (or refused) and answered.
    pub async fn drain(&self) {
        self.closing.store(true, Ordering::Release);
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.sends.send(Queued::Barrier(done)).await.is_ok() {
            let _ = finished.await;
        }
    }

    /// A page of history (see [`Page`]) of at most [`MAX_PAGE`] messages.
    pub async fn history(
        &self,
        user: UserId,
        target: Target,
        page: Page,
    ) -> Result<MessagePage, ChatError> {
        let page = match (self.core.participants(user, target).await, target) {
            (Ok(_), _) => page,
            // A member who left (or whose group was deleted) reads up to
            // their departure.
            (Err(e @ (ChatError::Forbidden(_) | ChatError::NotFound(_))), Target::Group(g)) => {
                match self.core.store.departed_at(g, user).await? {
                    Some(last) => page.up_to(last),
                    None => return Err(e),
                }
            }
            (Err(e), _) => return Err(e),
        };
        let (messages, has_more) = self
            .core
            .store
            .messages(target.conversation(user), page.at_most(MAX_PAGE), user)
            .await?;
        Ok(MessagePage { messages, has_more })
    }

    /// Moves the user's read position forward to `seq`. Returns the position
    /// and, when it moved, the participants to tell.
    pub async fn mark_read(
        &self,
        user: UserId,
        target: Target,
        seq: i64,
    ) -> Result<(i64, Option<Vec<UserId>>), ChatError> {
        if seq < 0 {
            return Err(ChatError::invalid("seq must be ≥ 0"));
        }
        let participants = self.core.participants(user, target).await?;
        match self
            .core
            .store
            .mark_read(user, target.conversation(user), seq)
            .await?
        {
            ReadOutcome::Moved { read_seq, moved } => Ok((read_seq, moved.then_some(participants))),
            ReadOutcome::BeyondLast { last_seq } => Err(ChatError::invalid(format!(
                "seq {seq} is beyond the conversation's last message ({last_seq})"
            ))),
        }
    }

    /// Who a typing indicator goes to: the other participants.
    pub async fn typing_recipients(
        &self,
        user: UserId,
        target: Target,
    ) -> Result<Vec<UserId>, ChatError> {
        let mut others = self.core.participants(user, target).await?;
        self.core.check_not_blocked(user, target).await?;
        others.retain(|&u| u != user);
        Ok(others)
    }

    /// A page of the user's conversations, most recent first, and the
    /// cursor of the next page when more follow. Without a page: the v1
    /// list, the first [`MAX_CONVERSATIONS`].
    pub async fn conversations(
        &self,
        user: UserId,
        page: Option<ListPage>,
    ) -> Result<(Vec<ConversationSummary>, Option<ListCursor>), ChatError> {
        let page = page.map_or(
            ConversationsPage {
                after: None,
                limit: MAX_CONVERSATIONS,
            },
            ListPage::store_page,
        );
        let (mut list, next) = self.core.store.conversations(user, page).await?;
        let private = |c: &ConversationSummary| {
            c.conversation_type == palaver_protocol::ConversationType::Private
        };
        let peer = |c: &ConversationSummary| UserId::from_stored(c.receiver_id);
        let peers = list.iter().filter(|c| private(c)).map(peer);
        let online = self.online_among(peers.collect()).await;
        let blocks = self.core.blocks_involving(user).await?;
        for c in list.iter_mut().filter(|c| private(c)) {
            if blocks.contains(&peer(c)) {
                // Presence is never shown across a block.
                c.online = None;
                c.last_seen = None;
            } else {
                c.online = Some(online.contains(&peer(c)));
            }
        }
        Ok((list, next.map(ListCursor)))
    }
}
