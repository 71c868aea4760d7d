//! Wiring: [`Core`] holds what every stage shares (settings, store, gateways, templates, keys);
//! [`App`] binds the HTTP listener and runs the server and the job workers until told to stop.
//! Tests build an `App` on port 0 in-process, exactly as `jiaoying serve` does.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::channel::Gateways;
use crate::config::{self, Role, Settings};
use crate::message::Templates;
use crate::store::Store;
use crate::token::TokenKey;

pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub token: String,
}

pub struct Core {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub gateways: Gateways,
    pub templates: Templates,
    pub token_key: TokenKey,
    pub tokens: Vec<ApiToken>,
    /// Poked when jobs are written, so an idle worker starts at once.
    pub wake: Notify,
    /// Polled sources and their status (`[[feed]]`).
    pub feeds: crate::feed::Feeds,
}

/// Secrets given directly instead of through the environment (the demo and tests).
#[derive(Default)]
pub struct Overrides {
    pub answer_secret: Option<String>,
    pub tokens: Vec<ApiToken>,
}

impl Core {
    /// Connects, migrates, and reads the secrets the settings name.
    pub async fn open(settings: Settings, o: Overrides) -> Result<Arc<Core>> {
        let store = Store::connect(&settings.database.url, settings.database.max_connections).await?;
        store.migrate().await?;
        let answer_secret = match o.answer_secret {
            Some(s) => s,
            None => config::secret("answer.secret", settings.answer.secret_env.as_deref(), settings.answer.secret_file.as_deref())?
                .with_context(|| {
                    format!(
                        "answer.secret: set {} (answer links are signed with it), e.g. `export {}=$(openssl rand -hex 32)`",
                        settings.answer.secret_env.as_deref().unwrap_or("answer.secret_file"),
                        settings.answer.secret_env.as_deref().unwrap_or("JIAOYING_ANSWER_SECRET"),
                    )
                })?,
        };
        let mut tokens = o.tokens;
        for t in &settings.auth.tokens {
            let key = format!("auth.tokens[{}]", t.name);
            match config::secret(&key, t.token_env.as_deref(), t.token_file.as_deref())? {
                Some(token) if token.len() >= 8 => tokens.push(ApiToken {
                    name: t.name.clone(),
                    role: t.role,
                    token,
                }),
                Some(_) => anyhow::bail!("{key}: the token must be at least 8 characters"),
                None => {
                    tracing::warn!(token = %t.name, "{key}: token not set; this client cannot log in")
                }
            }
        }
        Ok(Arc::new(Core {
            feeds: crate::feed::Feeds::new(&settings.feeds)?,
            gateways: Gateways::build(&settings)?,
            settings: Arc::new(settings),
            store,
            templates: Templates::default(),
            token_key: TokenKey::new(answer_secret.as_bytes()),
            tokens,
            wake: Notify::new(),
        }))
    }
}

pub struct App {
    pub core: Arc<Core>,
    listener: TcpListener,
}

impl App {
    pub async fn bind(core: Arc<Core>) -> Result<App> {
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
        for i in 0..self.core.settings.dispatch.workers {
            let name = format!("{}-{}-w{i}", hostname(), std::process::id());
            workers.spawn(crate::jobs::worker(self.core.clone(), name, stop.clone()));
        }
        if !self.core.settings.feeds.is_empty() {
            crate::feed::spawn_all(self.core.clone(), stop.clone(), &mut workers);
        }
        workers.spawn(crate::respond::expiry_loop(self.core.clone(), stop.clone()));
        let router = crate::http::router(self.core.clone());
        let s = stop.clone();
        let server =
            axum::serve(self.listener, router).with_graceful_shutdown(async move { s.cancelled().await });
        let result = server.await.context("HTTP server");
        stop.cancel();
        while workers.join_next().await.is_some() {}
        self.core.store.pool.close().await;
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
