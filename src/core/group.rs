//! Group commit: callers that arrive while a unit of work is being committed wait for the
//! next one and share it. Each caller queues its item and waits for its result or the
//! leader's lock, whichever comes first; whoever holds the lock takes every item queued (its own and those of the callers waiting behind
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
        // A caller whose item a leader took returns with its result and never takes the lead
        // itself: otherwise every caller of a group would lead one in turn, each taking only
        // what arrived since the one before (groups of one or two, measured: 1.4 replies per
        // commit from 64 clients), instead of the next leader taking all of it.
        let lead = tokio::select! {
            biased;
            r = &mut rx => return r.ok(),
            lead = self.leader.lock() => lead,
        };
        if let Ok(r) = rx.try_recv() {
            return Some(r);
        }
        // The items queued meanwhile are this caller's to apply, its own among them or not.
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

    /// 64 clients, each sending its next item as soon as the last is answered, and a commit
    /// that takes a millisecond: each group takes what arrived during the commit before it.
    /// (Before, every caller of a group took the lead in turn and applied the one or two
    /// items that had come since: 1.4 items per commit in `bench/replies`.) On a paused
    /// clock and one thread, so the interleaving is the same at every run.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn under_steady_load_a_group_takes_what_arrived_during_the_commit_before() {
        let g: Arc<Group<u32, u32>> = Arc::default();
        let groups = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        for c in 0..64u32 {
            let (g, groups) = (g.clone(), groups.clone());
            clients.push(tokio::spawn(async move {
                for round in 0..20u32 {
                    let item = c * 100 + round;
                    let groups = groups.clone();
                    let r = g
                        .join(item, |items| async move {
                            groups.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                            for (item, tx) in items {
                                let _ = tx.send(item + 1);
                            }
                        })
                        .await;
                    assert_eq!(r, Some(item + 1));
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        let n = groups.load(Ordering::SeqCst);
        assert!(
            n <= 64 * 20 / 16,
            "{n} groups for {} items: groups did not form",
            64 * 20
        );
    }

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
