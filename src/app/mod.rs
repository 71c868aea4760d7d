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
        let router = crate::http::router(self.core.clone());
        let header_timeout = self.core.settings.http.header_timeout;
        let result = serve::serve(self.listener, router, header_timeout, stop.clone())
            .await
            .context("HTTP server");
        stop.cancel();
        while workers.join_next().await.is_some() {}
        self.core.store.close().await;
        result
    }
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
