//! The message writer: one task that commits sends in batches (group
//! commit) and then answers and fans out each one, in order.
//!
//! Why one task: every message a socket sends enters one FIFO queue in the
//! order the socket sent it (the Socket.IO layer enqueues synchronously), and
//! this task takes them out in that order, commits a batch in one
//! transaction, and only then hands each outcome to its [`Respond`](super::Respond) — so acks
//! come after commit and deliveries leave in commit order. Batches form by
//! themselves: whatever queued up while the previous transaction was
//! committing goes into the next (at most the store's [`MAX_BATCH`]).
//! Under load a batch also waits until `--batch-interval-ms` has passed
//! since the previous one started ([`gather`]), so that more messages share
//! each commit; a send on a quiet server does not wait.
//!
//! The task runs on a thread and runtime of its own (see `Chat::start`),
//! with its own database connection where the database is networked, so
//! that each round trip of a commit is not queued behind the sockets' work.
//!
//! On one node a delivery is done as soon as it is handed to the sockets,
//! and the writer awaits each in turn. In a cluster each is first a Redis
//! publish that completes after a round trip; awaiting them one by one held
//! a node to one round trip per message. There a batch's deliveries run in
//! [`Waves`]: deliveries that share no user run together, and one that
//! shares a user with an earlier one waits for it, so every socket still
//! gets them in commit order.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::{timeout_at, Instant};

use futures_util::future::BoxFuture;
use palaver_protocol::ReplyTo;
use tokio::sync::mpsc;

use super::changes;
use super::core::{now_ms, Core};
use super::groups;
use super::queue::{ChangeJob, Job, Queued, Sent, SEND_DEADLINE};
use super::retry::Retry;
use super::{ChatError, SendRequest, Target};
use crate::ids::UserId;
use crate::store::{NewMessage, SeqCache, Store, StoreError, MAX_BATCH};

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
    let mut items: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    let interval = core.settings.batch_interval;
    let mut last_start: Option<Instant> = None;
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        if let Some(last) = last_start {
            gather(&mut rx, &mut items, last + interval).await;
        }
        last_start = Some(Instant::now());
        let mut jobs = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            match item {
                Queued::Send(job) => jobs.push(job),
                Queued::Barrier(done) => {
                    commit_batch(&core, store, &mut seqs, std::mem::take(&mut jobs)).await;
                    let _ = done.send(());
                }
                Queued::Change(change) => {
                    commit_batch(&core, store, &mut seqs, std::mem::take(&mut jobs)).await;
                    apply_change(&core, change).await;
                }
                Queued::Group(job) => {
                    commit_batch(&core, store, &mut seqs, std::mem::take(&mut jobs)).await;
                    groups::run_job(&core, store, &mut seqs, job).await;
                }
            }
        }
        commit_batch(&core, store, &mut seqs, jobs).await;
    }
}

/// Adds to `items` what arrives until `until` (not waiting at all when it
/// has passed) or until they make a full batch. Each commit costs the
/// database a fixed amount of work whatever its size (about 250 µs of
/// MariaDB's CPU on the benchmark machine, against 5.5 µs per message), so
/// under load a batch waits for the rest of the interval since the last
/// one started instead of going with whatever came during that commit.
async fn gather(rx: &mut mpsc::Receiver<Queued>, items: &mut Vec<Queued>, until: Instant) {
    if until <= Instant::now() {
        return;
    }
    while items.len() < MAX_BATCH {
        match timeout_at(until, rx.recv_many(items, MAX_BATCH - items.len())).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn commit_batch(core: &Core, store: &dyn Store, seqs: &mut SeqCache, jobs: Vec<Job>) {
    let Some(oldest) = jobs.iter().map(|j| j.queued).min() else {
        return;
    };
    let deadline = oldest + SEND_DEADLINE;

    // Each user's sends also draw on the cluster-wide buckets, when the
    // limits module says one applies (each node's own bucket was checked
    // when the send arrived).
    let mut grants = core
        .settings
        .limits
        .messages_everywhere(jobs.iter().map(|j| j.req.sender))
        .await;

    // The block sets of the batch's private senders and the rosters of its
    // groups, each in one query where any expired, through the writer's
    // own connection: the request pool's answers wait for the sockets'
    // runtime. If either fails, each send's own check reports it.
    let (mut senders, mut groups) = (Vec::new(), Vec::new());
    for job in &jobs {
        match job.req.target {
            Target::Private(_) => senders.push(job.req.sender),
            Target::Group(g) => groups.push(g),
        }
    }
    let _ = timeout_at(deadline, async {
        let _ = core.load_blocks(store, &senders).await;
        let _ = core.load_rosters(store, &groups).await;
    })
    .await;

    // Authorize each send; refused ones are answered at once.
    let mut accepted = Vec::with_capacity(jobs.len());
    let mut rows = Vec::with_capacity(jobs.len());
    let now = now_ms();
    for Job { req, respond, .. } in jobs {
        if let Err(e) = grants.take(req.sender) {
            respond.respond(Err(e.into())).await;
            continue;
        }
        match timeout_at(deadline, authorize(core, &req)).await {
            Ok(Ok((recipients, reply_to))) => {
                // The request moves into the row: its content is not copied.
                rows.push(NewMessage {
                    sender_id: req.sender,
                    conversation: req.target.conversation(req.sender),
                    receiver_id: req.target.receiver(),
                    content: req.content,
                    client_msg_id: req.client_msg_id,
                    created_at_ms: now,
                    reply_to,
                    mentions: req.mentions,
                    system: None,
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

    let commit_took = commit_started.elapsed();
    tracing::trace!(
        batch = rows.len(),
        wait_us = (commit_started - oldest).as_micros() as u64,
        commit_us = commit_took.as_micros() as u64,
        "batch committed"
    );
    match result {
        Ok(outcomes) => {
            let metrics = &core.settings.metrics;
            metrics.batch_size.observe(rows.len() as f64);
            metrics.commit_seconds.observe(commit_took.as_secs_f64());
            let fresh = outcomes
                .iter()
                .filter(|o| o.as_ref().is_ok_and(|ins| ins.fresh))
                .count();
            metrics.messages_committed.inc_by(fresh as u64);
            let mut waves = core.settings.cluster.is_some().then(Waves::default);
            for ((respond, recipients), outcome) in accepted.into_iter().zip(outcomes) {
                let wave = waves.as_mut().map(|w| w.wave_of(&recipients));
                let outcome = outcome
                    .map(|ins| Sent {
                        message: Arc::new(ins.message),
                        recipients,
                        fresh: ins.fresh,
                        reaction: None,
                    })
                    .map_err(ChatError::from);
                let delivery = respond.respond(outcome);
                match (waves.as_mut(), wave) {
                    (Some(waves), Some(wave)) => waves.push(wave, delivery),
                    _ => delivery.await,
                }
            }
            if let Some(waves) = waves {
                waves.run().await;
            }
        }
        Err(e) => {
            for (respond, _) in accepted {
                respond.respond(Err(e.clone())).await;
            }
        }
    }
}

/// Who a send goes to (its mentions must be among them), and what its
/// reply shows of the message it answers (which must be in the same
/// conversation).
async fn authorize(
    core: &Core,
    req: &SendRequest,
) -> Result<(Vec<UserId>, Option<ReplyTo>), ChatError> {
    let recipients = core.participants(req.sender, req.target).await?;
    core.check_not_blocked(req.sender, req.target).await?;
    if let Some(outsider) = req.mentions.iter().find(|u| !recipients.contains(u)) {
        return Err(ChatError::invalid(format!(
            "mentions: user {outsider} is not a member of this group"
        )));
    }
    let Some(seq) = req.reply_to_seq else {
        return Ok((recipients, None));
    };
    let answered = core
        .store
        .message_at(req.target.conversation(req.sender), seq, None)
        .await?
        .ok_or_else(|| {
            ChatError::NotFound(format!(
                "replyToSeq: no message with seq {seq} in this conversation"
            ))
        })?;
    Ok((recipients, Some(ReplyTo::of(&answered))))
}

/// Applies an edit or delete and answers it; it counts against the
/// sender's cluster-wide message rate as a send does.
async fn apply_change(core: &Core, job: ChangeJob) {
    let ChangeJob {
        req,
        respond,
        queued,
    } = job;
    let mut grants = core
        .settings
        .limits
        .messages_everywhere(std::iter::once(req.user))
        .await;
    let outcome = match grants.take(req.user) {
        Err(e) => Err(e.into()),
        Ok(()) => match timeout_at(queued + SEND_DEADLINE, changes::apply(core, req)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(unavailable()),
        },
    };
    respond.respond(outcome).await;
}

/// A batch's deliveries in a cluster, in waves: a delivery goes into the
/// wave after the last one holding any of its recipients (the sender is
/// one of them, for their other sockets), and the waves run one after
/// another, the deliveries within one together. Every user's deliveries
/// are thus in different waves, in commit order, and each finishes (its
/// Redis publish answered, this node's sockets served) before the next
/// starts: a conversation's, and a sender's, messages reach every socket in
/// commit order, while deliveries to different users share round trips.
#[derive(Default)]
struct Waves {
    waves: Vec<Vec<BoxFuture<'static, ()>>>,
    last_wave: HashMap<UserId, usize>,
}

impl Waves {
    /// The wave for a delivery to `recipients` (all of them: the sender
    /// included), after every earlier delivery to any of them.
    fn wave_of(&mut self, recipients: &[UserId]) -> usize {
        let wave = recipients
            .iter()
            .filter_map(|u| self.last_wave.get(u))
            .max()
            .map_or(0, |&w| w + 1);
        for &u in recipients {
            self.last_wave.insert(u, wave);
        }
        wave
    }

    fn push(&mut self, wave: usize, delivery: BoxFuture<'static, ()>) {
        if self.waves.len() <= wave {
            self.waves.resize_with(wave + 1, Vec::new);
        }
        self.waves[wave].push(delivery);
    }

    async fn run(self) {
        for wave in self.waves {
            futures_util::future::join_all(wave).await;
        }
    }
}

/// Inserts a batch, retrying deadlocks, serialization failures and lost
/// seq races.
async fn insert_with_retries(
    store: &dyn Store,
    seqs: &mut SeqCache,
    rows: &[NewMessage],
) -> Result<Vec<Result<crate::store::Inserted, StoreError>>, StoreError> {
    let mut retry = Retry::new("message batch");
    loop {
        let outcome = store.insert_messages(rows, seqs).await;
        match retry.after(&outcome) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    type Log = Arc<Mutex<Vec<String>>>;

    fn users<const N: usize>(ids: [i64; N]) -> Vec<UserId> {
        ids.map(|n| UserId::parse(n).unwrap()).to_vec()
    }

    /// A delivery that logs its start, waits for `answer`, and logs its end.
    fn delivery(
        log: &Log,
        name: &'static str,
        answer: tokio::sync::oneshot::Receiver<()>,
    ) -> BoxFuture<'static, ()> {
        let log = log.clone();
        Box::pin(async move {
            log.lock().unwrap().push(format!("start {name}"));
            let _ = answer.await;
            log.lock().unwrap().push(format!("end {name}"));
        })
    }

    fn barrier() -> Queued {
        Queued::Barrier(tokio::sync::oneshot::channel().0)
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_gathers_what_arrives_until_the_interval_is_over() {
        let (tx, mut rx) = mpsc::channel(16);
        let start = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(500)).await;
            tx.send(barrier()).await.ok();
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(barrier()).await.ok();
        });
        let mut items = vec![barrier()];
        gather(&mut rx, &mut items, start + Duration::from_millis(2)).await;
        assert_eq!(
            items.len(),
            2,
            "the send within the interval joins, the later one not"
        );
        assert_eq!(start.elapsed(), Duration::from_millis(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_gathered_batch_never_exceeds_the_batch_limit() {
        let (tx, mut rx) = mpsc::channel(2 * MAX_BATCH);
        for _ in 0..MAX_BATCH {
            tx.send(barrier()).await.ok();
        }
        let mut items: Vec<Queued> = (0..MAX_BATCH - 3).map(|_| barrier()).collect();
        gather(
            &mut rx,
            &mut items,
            Instant::now() + Duration::from_millis(2),
        )
        .await;
        assert_eq!(items.len(), MAX_BATCH);
        assert_eq!(rx.len(), MAX_BATCH - 3, "the rest waits for the next batch");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_nothing_once_the_interval_is_over() {
        let (_tx, mut rx) = mpsc::channel::<Queued>(16);
        let start = Instant::now();
        tokio::time::advance(Duration::from_millis(3)).await;
        let mut items = vec![barrier()];
        gather(&mut rx, &mut items, start + Duration::from_millis(2)).await;
        assert_eq!(items.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_millis(3), "no wait");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once() {
        let (tx, mut rx) = mpsc::channel(MAX_BATCH * 2);
        for _ in 0..MAX_BATCH + 10 {
            tx.send(barrier()).await.ok();
        }
        let start = Instant::now();
        let mut items = vec![];
        gather(&mut rx, &mut items, start + Duration::from_secs(1)).await;
        assert_eq!(items.len(), MAX_BATCH);
        assert_eq!(start.elapsed(), Duration::ZERO, "no wait");
    }

    #[test]
    fn a_delivery_waits_for_every_earlier_one_to_any_of_its_recipients() {
        let mut waves = Waves::default();
        assert_eq!(waves.wave_of(&users([1, 2])), 0); // alice → bob
        assert_eq!(waves.wave_of(&users([3, 4])), 0); // carol → dave: no one shared
        assert_eq!(waves.wave_of(&users([2, 1])), 1); // bob → alice: after the first
        assert_eq!(waves.wave_of(&users([1, 3])), 2); // alice → carol: after both
        assert_eq!(waves.wave_of(&users([4, 5, 6])), 1); // dave's group
        assert_eq!(waves.wave_of(&users([7, 8])), 0);
    }

    #[tokio::test]
    async fn waves_run_one_after_another_and_together_within() {
        let log = Log::default();
        let (first_answered, first) = tokio::sync::oneshot::channel();
        let (second_answered, second) = tokio::sync::oneshot::channel();
        let (third_answered, third) = tokio::sync::oneshot::channel();
        // Answers come in reverse order: bob → alice's is there long before
        // alice → bob's, and still goes out after it.
        tokio::spawn(async move {
            for answered in [third_answered, second_answered, first_answered] {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = answered.send(());
            }
        });
        let mut waves = Waves::default();
        let w = waves.wave_of(&users([1, 2]));
        waves.push(w, delivery(&log, "1→2", first));
        let w = waves.wave_of(&users([3, 4]));
        waves.push(w, delivery(&log, "3→4", second));
        let w = waves.wave_of(&users([2, 1]));
        waves.push(w, delivery(&log, "2→1", third));
        waves.run().await;
        let mut log = log.lock().unwrap().clone();
        // The first wave: both start before either ends (in any order).
        log[0..2].sort();
        log[2..4].sort();
        assert_eq!(
            log,
            [
                "start 1→2",
                "start 3→4",
                "end 1→2",
                "end 3→4",
                "start 2→1",
                "end 2→1"
            ]
        );
    }
}
