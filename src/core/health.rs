//! What `/readyz` and `/metrics` read the database for, cached: the readiness check and the
//! counts, each refreshed at most once per TTL however many callers ask. SQLite has one
//! connection and a fan-out needs it, so a flood of health probes or scrapes must not queue
//! behind (or in front of) the sends; a burst of callers waits on one refresh, not one each.
//! It must not decide who may see what (the handlers in `http` do) nor hold the connection
//! longer than one query.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// How long a readiness answer stands. Short enough that a load balancer sees a lost
/// database within a couple of its probes; long enough that a probe per second per instance
/// per balancer costs one query every two seconds.
pub const READY_TTL: Duration = Duration::from_secs(2);
/// How long the database counts of `/metrics` stand: below the usual 15 s scrape interval, so
/// every scrape sees fresh counts while a scrape storm costs one query per TTL.
pub const METRICS_TTL: Duration = Duration::from_secs(5);

/// One cached value and when it was read (a monotonic instant: a TTL, not a date).
struct Slot<T> {
    value: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Slot<T> {
    fn new() -> Self {
        Slot {
            value: Mutex::new(None),
        }
    }

    /// The cached value while fresh, else `read`'s; callers arriving during a read wait for it.
    async fn get<F: Future<Output = T>>(
        &self,
        ttl: Duration,
        reads: &AtomicU64,
        read: impl FnOnce() -> F,
    ) -> T {
        let mut slot = self.value.lock().await;
        if let Some((at, v)) = slot.as_ref() {
            if at.elapsed() < ttl {
                return v.clone();
            }
        }
        reads.fetch_add(1, Ordering::Relaxed);
        let v = read().await;
        *slot = Some((Instant::now(), v.clone()));
        v
    }
}

pub struct Health {
    ready: Slot<Result<(), String>>,
    counts: Slot<Result<crate::store::stats::Counts, String>>,
    reads: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            ready: Slot::new(),
            counts: Slot::new(),
            reads: AtomicU64::new(0),
        }
    }
}

impl Health {
    /// The database's readiness, at most [`READY_TTL`] old.
    pub async fn ready(&self, store: &crate::store::Store) -> Result<(), String> {
        self.ready
            .get(READY_TTL, &self.reads, || async {
                store.ready().await.map_err(|e| format!("{e:#}"))
            })
            .await
    }

    /// The database counts of `/metrics`, at most [`METRICS_TTL`] old.
    pub async fn counts(&self, store: &crate::store::Store) -> Result<crate::store::stats::Counts, String> {
        self.counts
            .get(METRICS_TTL, &self.reads, || async {
                crate::store::stats::counts(store.pool())
                    .await
                    .map_err(|e| format!("{e:#}"))
            })
            .await
    }

    /// How many times the store was read for health or metrics since start (tests count it).
    pub fn store_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}
