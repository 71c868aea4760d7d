//! Keeping a claim while its work runs: a batch of 512 sends behind a slow gateway can outlive
//! the lease it was claimed with, and another worker would then claim and send it again. The
//! claim is renewed every third of a lease until the work is done. It must not finish or
//! reschedule jobs: the work does that, after checking the claim is still its own.

use std::future::Future;
use std::time::Duration;

use crate::core::Core;
use crate::store::jobs;

/// Runs `work` while renewing `worker`'s claim on `ids`.
pub async fn renewing<T>(core: &Core, worker: &str, ids: &[i64], work: impl Future<Output = T>) -> T {
    let lease = core.settings.dispatch.lease;
    let every = (lease / 3).max(Duration::from_millis(50));
    let renew = async {
        loop {
            tokio::time::sleep(every).await;
            let until = core.now() + lease.as_millis() as i64;
            match jobs::renew(core.store.pool(), worker, ids, until).await {
                Ok(n) if n < ids.len() => {
                    tracing::warn!(
                        worker,
                        claimed = ids.len(),
                        kept = n,
                        "some claims were lost while their work ran"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(worker, error = %format!("{e:#}"), "renewing a lease failed; retrying")
                }
            }
        }
    };
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => out,
        _ = renew => unreachable!("the renewal loop never ends"),
    }
}
