//! Small database chores that many sockets ask for at once (a user's row
//! at the handshake, `last_seen` at a presence change), done together:
//! everything that arrived while the previous batch ran is the next batch.
//! Like the message writer, but without its ordering and retry rules.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::ChatError;

type Waiter<R> = oneshot::Sender<Result<R, ChatError>>;

/// The sending side of a batching task; cheap to clone.
pub(crate) struct Coalescer<T, R> {
    queue: mpsc::Sender<(T, Waiter<R>)>,
}

impl<T, R> Clone for Coalescer<T, R> {
    fn clone(&self) -> Self {
        Coalescer {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Coalescer<T, R> {
    /// Spawns the task: `work` gets up to `max_batch` items and returns one
    /// outcome per item, in order. At most `capacity` items wait; beyond
    /// that [`submit`](Self::submit) waits for room. The task ends when
    /// every sender is gone.
    pub fn start<F, Fut>(capacity: usize, max_batch: usize, mut work: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Result<R, ChatError>>> + Send,
    {
        let (queue, mut pending) = mpsc::channel::<(T, Waiter<R>)>(capacity);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            while pending.recv_many(&mut batch, max_batch).await > 0 {
                let (items, waiters): (Vec<T>, Vec<Waiter<R>>) = batch.drain(..).unzip();
                let outcomes = work(items).await;
                debug_assert_eq!(outcomes.len(), waiters.len());
                for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                    let _ = waiter.send(outcome);
                }
            }
        });
        Coalescer { queue }
    }

    /// Queues `item` and waits for its outcome.
    pub async fn submit(&self, item: T) -> Result<R, ChatError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || ChatError::Unavailable("the server is stopping; retry".into());
        self.queue.send((item, tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_that_wait_together_are_one_batch_and_each_gets_its_outcome() {
        let (sizes_tx, mut sizes) = mpsc::unbounded_channel();
        let (gate_tx, gate) = tokio::sync::watch::channel(false);
        let doubler = Coalescer::start(64, 8, move |items: Vec<i64>| {
            let sizes_tx = sizes_tx.clone();
            let mut gate = gate.clone();
            async move {
                let _ = sizes_tx.send(items.len());
                // The first batch holds until released, so the rest queue up.
                let _ = gate.wait_for(|open| *open).await;
                items
                    .into_iter()
                    .map(|i| {
                        if i < 0 {
                            Err(ChatError::InvalidPayload("negative".into()))
                        } else {
                            Ok(i * 2)
                        }
                    })
                    .collect()
            }
        });
        let first = tokio::spawn({
            let d = doubler.clone();
            async move { d.submit(1).await }
        });
        assert_eq!(sizes.recv().await, Some(1));
        let rest: Vec<_> = (2..=11)
            .chain([-1])
            .map(|i| {
                let d = doubler.clone();
                tokio::spawn(async move { (i, d.submit(i).await) })
            })
            .collect();
        // Let all eleven queue behind the first batch.
        while doubler.queue.capacity() > 64 - 11 {
            tokio::task::yield_now().await;
        }
        gate_tx.send(true).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 2);
        for r in rest {
            let (i, outcome) = r.await.unwrap();
            match outcome {
                Ok(v) => assert_eq!(v, i * 2),
                Err(e) => assert!(i < 0, "{i}: {e}"),
            }
        }
        // Eleven waiting items in batches of at most eight.
        assert_eq!(sizes.recv().await, Some(8));
        assert_eq!(sizes.recv().await, Some(3));
    }
}
