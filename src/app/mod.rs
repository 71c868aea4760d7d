//! Wiring and supervision: [`App`] binds the HTTP listener and runs the server and the job
//! workers over a [`Core`] until told to stop. Tests build an `App` on port 0 in-process,
//! exactly as `jiaoying serve` does. The only module that knows every stage.

mod serve;
pub mod telemetry;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::Core;

pub struct App {
    pub core: Arc<Core>,
    listener: TcpListener,
}

impl App {
    pub async fn bind(core: Arc<Core>) -> Result<App> {
        // Before serving: each feed's poll job and each reconciling gateway's job exists, and
        // jobs this version cannot run are pointed out to the operator.
        crate::ingest::feed::ensure_jobs(&core).await?;
        crate::answer::reconcile::ensure_jobs(&core).await?;
        crate::audit::ensure_job(&core.store, &core.settings, core.now()).await?;
        for (kind, n) in crate::store::jobs::unknown_kinds(core.store.pool()).await? {
            tracing::warn!(job.kind = %kind, jobs = n, "jobs of a kind this version does not know are kept, not run (a newer version wrote them)");
        }
        // The roster index is built once here, not for the first warning (issue 11 §6).
        core.roster().await?;
        core.store.settle().await?;
        let bind = core.settings.http.bind.clone();
        let listener = TcpListener::bind(&bind)
            .await
            .with_context(|| format!("http.bind {bind}"))?;
        Ok(App { core, listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves HTTP and runs the workers until `stop` fires, then stops claiming, finishes
    /// the batches in hand, releases claims and returns.
    pub async fn run(self, stop: CancellationToken) -> Result<()> {
        let mut workers = tokio::task::JoinSet::new();
        // Unique per App, so that two daemons in one process (tests) never share claims.
        let instance = format!(
            "{}-{}-{:04x}",
            hostname(),
            std::process::id(),
            rand::random::<u16>()
        );
        for i in 0..self.core.settings.dispatch.workers {
            workers.spawn(worker::worker(
                self.core.clone(),
                format!("{instance}-w{i}"),
                stop.clone(),
            ));
        }
        workers.spawn(clock_watch(self.core.clone(), stop.clone()));
        workers.spawn(crate::store::wal::checkpoints(
            self.core.store.clone(),
            stop.clone(),
        ));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.core.set_planner(Some(tx));
        workers.spawn(planner(self.core.clone(), rx, stop.clone()));
        let router = crate::http::router(self.core.clone());
        let header_timeout = self.core.settings.http.header_timeout;
        let max_connections = self.core.settings.http.max_connections;
        let result = serve::serve(
            self.listener,
            router,
            header_timeout,
            max_connections,
            stop.clone(),
        )
        .await
        .context("HTTP server");
        stop.cancel();
        while workers.join_next().await.is_some() {}
        self.core.store.close().await;
        result
    }
}

/// The daemon's planner: writes the rest of each large plan a request committed the first
/// slice of (`Core::detach`), one plan at a time, so that the POST returns once its first
/// people are called. A stop lets the plan in hand finish and lets go of the claims of plans
/// still queued, so the next start resumes them at once; after a crash their claimed `plan`
/// jobs are resumed by a worker when the claim runs out.
async fn planner(
    core: Arc<Core>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<crate::store::planning::PlanRest>,
    stop: CancellationToken,
) {
    loop {
        let rest = tokio::select! {
            _ = stop.cancelled() => break,
            rest = rx.recv() => match rest {
                Some(rest) => rest,
                None => break,
            },
        };
        let s = rest.started;
        let name = crate::ingest::slices::planner(s.incident);
        if let Err(e) = crate::ingest::slices::write_rest(&core, &name, s, rest.planned).await {
            tracing::error!(incident.id = s.incident, error = %format!("{e:#}"),
                "writing the rest of a plan failed: a worker resumes it when its claim runs out");
        }
    }
    // From here on an ingest writes its plan itself; plans still queued are let go at once,
    // so that the next start (or another instance) resumes them without waiting a lease.
    core.set_planner(None);
    while let Ok(rest) = rx.try_recv() {
        let name = crate::ingest::slices::planner(rest.started.incident);
        if let Err(e) = crate::store::jobs::release(core.store.pool(), &name).await {
            tracing::warn!(incident.id = rest.started.incident, error = %e, "letting go of a queued plan failed; it is resumed when its claim runs out");
        }
    }
}

/// A step of the machine's clock bigger than this is taken up (clock.rs); smaller ones are
/// the noise of reading two clocks.
const CLOCK_STEP_MS: i64 = 2_000;

/// Once a second: has the machine's clock stepped? Then the jobs planned on the old time move
/// by the step (with a ledger entry, in one unit of work), and only then does the daemon's
/// clock take up the new time, so no deadline fires early or waits an extra hour for it.
async fn clock_watch(core: Arc<Core>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let step = core.clock.step_ms();
        if step.abs() < CLOCK_STEP_MS {
            continue;
        }
        match take_clock_step(&core, step).await {
            Ok(moved) => tracing::warn!(step_ms = step, jobs_moved = moved,
                "系统时钟跳变 the machine's clock stepped: waiting jobs moved by the step, then the clock taken up"),
            Err(e) => tracing::error!(step_ms = step, error = %format!("{e:#}"),
                "the machine's clock stepped and the jobs could not be moved; trying again in 1 s"),
        }
    }
}

async fn take_clock_step(core: &Core, step: i64) -> Result<u64> {
    let old_now = core.now();
    let mut tx = core.store.begin().await?;
    let moved = crate::store::jobs::shift_for_clock_step(&mut tx, step, old_now).await?;
    tx.record(
        "clock.stepped",
        "clock".to_string(),
        serde_json::json!({"step_ms": step, "jobs_moved": moved}),
        old_now,
    )
    .await?;
    tx.commit().await?;
    core.clock.resync();
    Ok(moved)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "jiaoying".into())
}

/// Fires on Ctrl-C or SIGTERM.
pub async fn shutdown_signal(stop: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("stop signal: finishing work in hand");
    stop.cancel();
}
