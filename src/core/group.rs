//! Group commit: callers that arrive while a unit of work is being committed wait for the
//! next one and share it. Each caller queues its item and takes the leader's lock; whoever
//! holds the lock takes every item queued (its own and those of the callers waiting behind
//! it, up to [`MAX`]) and applies them together; each caller then gets its own result. No
//! task of its own and no timer: a caller alone is applied at once, and under load the group
//! grows by itself to what arrived during the last commit. This module owns the queue and
//! the hand-over only; what a group does (and how a failed one is retried) is the caller's.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Items in one group at most: bounds how long the last of them waits for the commit.
pub const MAX: usize = 128;

/// A queued item with where its result goes.
pub type Queued<T, R> = (T, oneshot::Sender<R>);

pub struct Group<T, R> {
    queue: Mutex<Vec<Queued<T, R>>>,
    leader: tokio::sync::Mutex<()>,
}

impl<T, R> Default for Group<T, R> {
    fn default() -> Self {
        Group {
            queue: Mutex::new(Vec::new()),
            leader: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T, R> Group<T, R> {
    /// Queues `item` and waits for its result. `apply` runs when this caller leads a group:
    /// it gets the items taken and must send each one's result. None when the item's group
    /// ended without a result for it (its `apply` panicked or dropped the sender).
    pub async fn join<F, Fut>(&self, item: T, apply: F) -> Option<R>
    where
        F: FnOnce(Vec<Queued<T, R>>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let (tx, mut rx) = oneshot::channel();
        self.queue.lock().expect("never poisoned").push((item, tx));
        let lead = self.leader.lock().await;
        // The leader before may have taken this item (its result is then sent already); the
        // items queued meanwhile are this caller's to apply, its own among them or not.
        let taken: Vec<Queued<T, R>> = {
            let mut q = self.queue.lock().expect("never poisoned");
            let n = q.len().min(MAX);
            q.drain(..n).collect()
        };
        if !taken.is_empty() {
            apply(taken).await;
        }
        drop(lead);
        match rx.try_recv() {
            Ok(r) => Some(r),
            // Still queued behind a full group: the next leader takes it.
            Err(oneshot::error::TryRecvError::Empty) => rx.await.ok(),
            Err(oneshot::error::TryRecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_caller_gets_its_own_result_and_groups_form_under_load() {
        let g: Arc<Group<u32, u32>> = Arc::default();
        let groups = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..500u32 {
            let (g, groups) = (g.clone(), groups.clone());
            tasks.push(tokio::spawn(async move {
                g.join(i, |items| async move {
                    groups.fetch_add(1, Ordering::SeqCst);
                    assert!(items.len() <= MAX);
                    // A commit takes a while: the callers arriving meanwhile queue up.
                    tokio::task::yield_now().await;
                    for (item, tx) in items {
                        let _ = tx.send(item * 2);
                    }
                })
                .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), Some(i as u32 * 2));
        }
        let n = groups.load(Ordering::SeqCst);
        assert!((1..=500).contains(&n), "{n} groups");
    }

    #[tokio::test]
    async fn a_group_that_drops_a_result_says_so() {
        let g: Group<u32, u32> = Group::default();
        let r = g.join(1, |items| async move { drop(items) }).await;
        assert_eq!(r, None);
    }
}
