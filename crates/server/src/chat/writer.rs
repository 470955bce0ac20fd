//! The message writer: one task that commits sends in batches (group
//! commit) and then answers and fans out each one, in order.
//!
//! Why one task: every message a socket sends enters one FIFO queue in the
//! order the socket sent it (the Socket.IO layer enqueues synchronously), and
//! this task takes them out in that order, commits a batch in one
//! transaction, and only then hands each outcome to its [`Respond`] — so acks
//! come after commit and deliveries leave in commit order. Batches form by
//! themselves: whatever queued up while the previous transaction was
//! committing goes into the next (at most [`MAX_BATCH`]); there is no timer.
//!
//! The task runs on a thread and runtime of its own (see `Chat::start`),
//! with its own database connection where the database is networked, so
//! that each round trip of a commit is not queued behind the sockets' work.
//!
//! Deliveries on one node finish as soon as they are handed to the sockets,
//! so the writer awaits each in turn. In a cluster each one is a Redis
//! publish that finishes after a round trip; awaiting those one by one held
//! a node to one round trip per message. There the writer hands them to
//! [`Lanes`]: a conversation always goes to the same lane, and each lane
//! awaits its deliveries in turn, so every conversation's deliveries leave
//! in commit order while different conversations' publishes share round
//! trips.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use futures_util::future::BoxFuture;
use palaver_protocol::Message;
use tokio::sync::{mpsc, oneshot};

use super::{now_ms, ChatError, Core, SendRequest};
use crate::store::{ConversationKey, NewMessage, SeqCache, Store, StoreError, UserId};

/// Most messages committed in one transaction.
pub const MAX_BATCH: usize = 256;
/// Attempts at a batch that hits a deadlock or serialization failure.
const MAX_ATTEMPTS: u32 = 5;
/// Every send is answered within this long of being queued: when the
/// database is down or hanging, the answer is `unavailable`, never a hang.
pub const SEND_DEADLINE: Duration = Duration::from_millis(1800);
/// Deliveries in flight at once in a cluster (one per lane).
const LANES: usize = 64;
/// Deliveries a lane holds before the writer waits for it.
const LANE_QUEUE: usize = 256;

/// What a committed send produced.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Arc<Message>,
    /// Every user whose sockets should get the message (sender included).
    pub recipients: Vec<UserId>,
    /// False for an idempotent retry: answer it, deliver nothing.
    pub fresh: bool,
}

/// How the transport answers a send once its outcome is known: the answer
/// to the sender goes out before `respond` returns, and the returned future
/// delivers the message. The writer awaits each returned future before the
/// next of its conversation, which keeps deliveries in commit order.
pub trait Respond: Send + 'static {
    fn respond(self: Box<Self>, outcome: Result<Sent, ChatError>) -> BoxFuture<'static, ()>;
}

pub(crate) struct Job {
    pub req: SendRequest,
    pub respond: Box<dyn Respond>,
    pub queued: Instant,
}

/// What the writer's queue carries.
pub(crate) enum Queued {
    Send(Job),
    /// Signalled once every send queued before it has been answered.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

fn unavailable() -> ChatError {
    ChatError::Unavailable(
        "storage unavailable; retry (a retry with the same clientMsgId never duplicates)".into(),
    )
}

/// Runs until every sender handle is dropped and the queue is drained.
/// Batches are written through `own` when the writer has a store of its
/// own, else through the main one.
pub(crate) async fn run(
    core: Arc<Core>,
    own: Option<Box<dyn Store>>,
    mut rx: mpsc::Receiver<Queued>,
) {
    let store = own.as_deref().unwrap_or(&*core.store);
    let mut seqs = SeqCache::new();
    let lanes = core.settings.cluster.is_some().then(Lanes::start);
    let out = Out {
        lanes: lanes.as_ref(),
    };
    let mut items: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        let mut jobs = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            match item {
                Queued::Send(job) => jobs.push(job),
                Queued::Barrier(done) => {
                    commit_batch(&core, store, &mut seqs, out, std::mem::take(&mut jobs)).await;
                    if let Some(lanes) = &lanes {
                        lanes.flush().await;
                    }
                    let _ = done.send(());
                }
            }
        }
        commit_batch(&core, store, &mut seqs, out, jobs).await;
    }
    if let Some(lanes) = &lanes {
        lanes.flush().await;
    }
}

/// Where the writer's deliveries go: awaited in place, or into lanes.
#[derive(Clone, Copy)]
struct Out<'a> {
    lanes: Option<&'a Lanes>,
}

impl Out<'_> {
    async fn deliver(self, conversation: ConversationKey, delivery: BoxFuture<'static, ()>) {
        match self.lanes {
            Some(lanes) => lanes.push(conversation, delivery).await,
            None => delivery.await,
        }
    }
}

enum LaneItem {
    Deliver(BoxFuture<'static, ()>),
    /// Answered once every delivery queued before it has finished.
    Flush(oneshot::Sender<()>),
}

/// Ordered delivery lanes: each is a task that awaits its deliveries one
/// after another; a conversation is always in the same lane.
struct Lanes {
    lanes: Vec<mpsc::Sender<LaneItem>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Lanes {
    fn start() -> Self {
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel(LANE_QUEUE);
                tokio::spawn(async move {
                    while let Some(item) = rx.recv().await {
                        match item {
                            LaneItem::Deliver(delivery) => delivery.await,
                            LaneItem::Flush(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                });
                tx
            })
            .collect();
        Lanes {
            lanes,
            hasher: Default::default(),
        }
    }

    fn lane(&self, conversation: ConversationKey) -> &mpsc::Sender<LaneItem> {
        let mut h = self.hasher.build_hasher();
        conversation.hash(&mut h);
        &self.lanes[(std::hash::Hasher::finish(&h) % LANES as u64) as usize]
    }

    /// Queues a delivery behind the earlier ones of its conversation; waits
    /// while its lane is full.
    async fn push(&self, conversation: ConversationKey, delivery: BoxFuture<'static, ()>) {
        // A lane ends only with the writer, so the send cannot fail here.
        let _ = self
            .lane(conversation)
            .send(LaneItem::Deliver(delivery))
            .await;
    }

    /// Returns once every delivery pushed so far has finished.
    async fn flush(&self) {
        let mut waits = Vec::with_capacity(self.lanes.len());
        for lane in &self.lanes {
            let (done, finished) = oneshot::channel();
            if lane.send(LaneItem::Flush(done)).await.is_ok() {
                waits.push(finished);
            }
        }
        for finished in waits {
            let _ = finished.await;
        }
    }
}

async fn commit_batch(
    core: &Core,
    store: &dyn Store,
    seqs: &mut SeqCache,
    out: Out<'_>,
    jobs: Vec<Job>,
) {
    let Some(oldest) = jobs.iter().map(|j| j.queued).min() else {
        return;
    };
    let deadline = oldest + SEND_DEADLINE;

    // In a cluster, each user's sends also draw on a cluster-wide bucket
    // (each node's own bucket was checked when the send arrived).
    let mut granted = match cluster_wants(core, &jobs) {
        Some(wants) => take_grants(core, wants).await,
        None => None,
    };

    // Authorize each send; refused ones are answered at once.
    let mut accepted = Vec::with_capacity(jobs.len());
    let mut rows = Vec::with_capacity(jobs.len());
    let now = now_ms();
    for Job { req, respond, .. } in jobs {
        if let Some(granted) = granted.as_mut() {
            match granted.get_mut(&req.sender) {
                Some(n) if *n > 0 => *n -= 1,
                _ => {
                    let s = &core.settings;
                    respond
                        .respond(Err(ChatError::RateLimited(format!(
                            "at most {} messages a second (bursts of {}) over all nodes; retry shortly",
                            s.message_rate, s.message_burst
                        ))))
                        .await;
                    continue;
                }
            }
        }
        match timeout_at(deadline, core.participants(req.sender, req.target)).await {
            Ok(Ok(recipients)) => {
                // The request moves into the row: its content is not copied.
                rows.push(NewMessage {
                    sender_id: req.sender,
                    conversation: req.target.conversation(req.sender),
                    receiver_id: req.target.receiver(),
                    content: req.content,
                    client_msg_id: req.client_msg_id,
                    created_at_ms: now,
                });
                accepted.push((respond, recipients));
            }
            Ok(Err(e)) => respond.respond(Err(e)).await,
            Err(_) => respond.respond(Err(unavailable())).await,
        }
    }
    if rows.is_empty() {
        return;
    }

    // A batch that times out may or may not have committed; either way the
    // answer is `unavailable` (never a false ok) and a retry with the same
    // clientMsgId returns the stored message if there is one.
    let commit_started = Instant::now();
    let result = match timeout_at(deadline, insert_with_retries(store, seqs, &rows)).await {
        Ok(Ok(outcomes)) => Ok(outcomes),
        Ok(Err(e)) => Err(ChatError::from(e)),
        Err(_) => {
            // Cut off mid-batch: whether it committed is unknown.
            seqs.forget(rows.iter().map(|r| r.conversation));
            tracing::warn!(batch = rows.len(), "message batch timed out");
            Err(unavailable())
        }
    };

    tracing::trace!(
        batch = rows.len(),
        wait_us = (commit_started - oldest).as_micros() as u64,
        commit_us = commit_started.elapsed().as_micros() as u64,
        "batch committed"
    );
    match result {
        Ok(outcomes) => {
            for (((respond, recipients), outcome), row) in
                accepted.into_iter().zip(outcomes).zip(&rows)
            {
                let outcome = outcome
                    .map(|ins| Sent {
                        message: Arc::new(ins.message),
                        recipients,
                        fresh: ins.fresh,
                    })
                    .map_err(ChatError::from);
                out.deliver(row.conversation, respond.respond(outcome))
                    .await;
            }
        }
        Err(e) => {
            for (respond, _) in accepted {
                respond.respond(Err(e.clone())).await;
            }
        }
    }
}

/// Sends per sender in a batch, when a cluster-wide message limit applies
/// (no allocation otherwise: this is the hot path).
fn cluster_wants(core: &Core, jobs: &[Job]) -> Option<HashMap<UserId, u32>> {
    let s = &core.settings;
    if s.cluster.is_none() || s.message_rate == 0 {
        return None;
    }
    let mut wants = HashMap::new();
    for job in jobs {
        *wants.entry(job.req.sender).or_default() += 1;
    }
    Some(wants)
}

/// Takes the sends each user wants from the cluster-wide buckets; `None`
/// when Redis cannot answer.
async fn take_grants(core: &Core, wants: HashMap<UserId, u32>) -> Option<HashMap<UserId, u32>> {
    let s = &core.settings;
    let cluster = s.cluster.as_ref()?;
    let wants: Vec<(UserId, u32)> = wants.into_iter().collect();
    let keyed: Vec<(String, u32)> = wants
        .iter()
        .map(|&(user, n)| (format!("msg:{user}"), n))
        .collect();
    let granted = cluster
        .take_tokens(&keyed, f64::from(s.message_rate), s.message_burst)
        .await?;
    Some(wants.iter().map(|&(u, _)| u).zip(granted).collect())
}

/// Inserts a batch, retrying deadlocks and serialization failures.
async fn insert_with_retries(
    store: &dyn Store,
    seqs: &mut SeqCache,
    rows: &[NewMessage],
) -> Result<Vec<Result<crate::store::Inserted, StoreError>>, StoreError> {
    let mut attempt = 1;
    loop {
        match store.insert_messages(rows, seqs).await {
            Err(StoreError::Retryable(e)) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "retrying message batch");
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A delivery that waits `delay`, then records `name`.
    fn delivery(
        log: &Arc<Mutex<Vec<&'static str>>>,
        name: &'static str,
        delay: Duration,
    ) -> BoxFuture<'static, ()> {
        let log = log.clone();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            log.lock().unwrap().push(name);
        })
    }

    #[tokio::test(start_paused = true)]
    async fn lanes_keep_each_conversations_order_and_overlap_the_others() {
        let lanes = Lanes::start();
        let slow = ConversationKey::private(1, 2);
        // A conversation in another lane than `slow`.
        let other = (1..)
            .map(ConversationKey::Group)
            .find(|&c| !lanes.lane(c).same_channel(lanes.lane(slow)))
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let second = Duration::from_secs(1);
        lanes.push(slow, delivery(&log, "slow 1", second)).await;
        lanes
            .push(slow, delivery(&log, "slow 2", Duration::ZERO))
            .await;
        lanes
            .push(other, delivery(&log, "other", Duration::ZERO))
            .await;
        lanes.flush().await;
        // "other" did not wait for "slow 1"; "slow 2" did.
        assert_eq!(*log.lock().unwrap(), ["other", "slow 1", "slow 2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn flush_waits_for_every_lane() {
        let lanes = Lanes::start();
        let log = Arc::new(Mutex::new(Vec::new()));
        for g in 0..200 {
            let delay = Duration::from_millis(g as u64 % 7);
            lanes
                .push(ConversationKey::Group(g), delivery(&log, "x", delay))
                .await;
        }
        lanes.flush().await;
        assert_eq!(log.lock().unwrap().len(), 200);
    }
}
