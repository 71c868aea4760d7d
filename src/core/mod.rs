//! [`Core`]: what every stage shares — settings, the store, the clock, the gateways, the
//! answer-link key, the API tokens and the feed sources. A leaf: it imports the layers below
//! it (config, store, channel, clock) and nothing that uses it, so every stage can take a
//! `&Core` without an import cycle. Wiring the stages together is `app`'s job, not this one's.

pub mod feeds;
pub mod group;
pub mod health;
mod keys;
pub mod recorder;

use std::sync::Arc;

use anyhow::{Context, Result};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;

use crate::channel::event::{Event, Outcome};
use crate::channel::Gateways;
use crate::clock::Clock;
use crate::config::{self, Role, Settings};
use crate::store::planning::PlanRest;
use crate::store::{roster, Store};
use crate::target::plan::Snapshot;

pub use feeds::Feeds;
pub use keys::TokenKey;
pub use recorder::Metrics;

/// An API client's bearer token. Its `Debug` shows the name and role, never the token.
#[derive(Debug)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub token: SecretString,
}

pub struct Core {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub clock: Clock,
    pub gateways: Gateways,
    pub token_key: TokenKey,
    pub tokens: Vec<ApiToken>,
    /// Poked when jobs are written, so an idle worker starts at once.
    pub wake: Notify,
    /// Polled sources and their status (`[[feed]]`).
    pub feeds: Feeds,
    /// This daemon's own metrics recorder (`/metrics`).
    pub metrics: Metrics,
    /// `/readyz` and `/metrics`'s database reads, cached (`health`).
    pub health: health::Health,
    /// The roster index kept between warnings (issue 11 §6) with the roster version it was
    /// built at: rebuilt only when the version in the database has moved on.
    roster: tokio::sync::Mutex<Option<(i64, Arc<Snapshot>)>>,
    /// The rest of a large plan, handed by the request that committed its first slice to
    /// the daemon's planner task (issue 11 §2), while `App::run` runs; without a daemon (the
    /// CLI, tools) the ingest writes it itself.
    planner: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<PlanRest>>>,
    /// Gateway callbacks waiting for the next group commit (`answer::inbound::heard_together`):
    /// the gateway's name and events, and their outcomes or why they failed.
    pub callbacks: group::Group<(String, Vec<Event>), std::result::Result<Vec<Outcome>, String>>,
}

/// What tests and the demo give directly instead of through the environment.
#[derive(Default)]
pub struct Overrides {
    pub answer_secret: Option<SecretString>,
    pub tokens: Vec<ApiToken>,
    /// The clock (a manual one in tests); the system clock when left out.
    pub clock: Option<Clock>,
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
                Some(token) if token.expose_secret().len() >= 8 => tokens.push(ApiToken {
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
        let clock = o.clock.unwrap_or_else(Clock::system);
        Ok(Arc::new(Core {
            feeds: Feeds::new(&settings.feeds)?,
            gateways: Gateways::build(&settings, &clock)?,
            settings: Arc::new(settings),
            store,
            clock,
            token_key: TokenKey::new(answer_secret.expose_secret().as_bytes()),
            tokens,
            wake: Notify::new(),
            metrics: Metrics::default(),
            health: health::Health::default(),
            roster: tokio::sync::Mutex::new(None),
            planner: std::sync::Mutex::new(None),
            callbacks: group::Group::default(),
        }))
    }

    /// The roster index for planning: the one held, when the database's roster version is
    /// still the one it was built at (one indexed read per warning), else rebuilt and held.
    /// The lock makes two warnings arriving together build it once.
    pub async fn roster(&self) -> Result<Arc<Snapshot>> {
        let now = roster::version(&self.store).await?;
        let mut held = self.roster.lock().await;
        if let Some((v, s)) = held.as_ref() {
            if *v == now {
                return Ok(s.clone());
            }
        }
        let started = std::time::Instant::now();
        let (v, s) = roster::load_versioned(&self.store).await?;
        let s = Arc::new(s);
        tracing::info!(
            roster.version = v,
            contacts = s.contacts.len(),
            ms = started.elapsed().as_millis() as u64,
            "roster index built"
        );
        *held = Some((v, s.clone()));
        Ok(s)
    }

    /// Hands the rest of a plan to the daemon's planner task; gives it back when no daemon
    /// takes it (the caller then writes it). Nothing is lost if the daemon dies with it: its
    /// `plan` job is claimed, and resumed by a worker when the claim runs out.
    pub fn detach(&self, rest: PlanRest) -> Result<(), PlanRest> {
        match self.planner.lock().expect("never poisoned").as_ref() {
            Some(tx) => tx.send(rest).map_err(|e| e.0),
            None => Err(rest),
        }
    }

    /// Starts (`Some`) or ends (`None`) the planner task's intake (`App::run`).
    pub fn set_planner(&self, tx: Option<tokio::sync::mpsc::UnboundedSender<PlanRest>>) {
        *self.planner.lock().expect("never poisoned") = tx;
    }

    /// The roster version of the index held, if one is (tests: rebuilt or not).
    pub async fn roster_version(&self) -> Option<i64> {
        self.roster.lock().await.as_ref().map(|(v, _)| *v)
    }

    /// Unix milliseconds by the one clock.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The Prometheus text of `/metrics`: call-outs by state and jobs by kind as the database
    /// has them now (so every instance reports the same truth), then the feeds' records.
    pub async fn metrics_text(&self) -> Result<String> {
        // Cached (`health::METRICS_TTL`): a scrape storm must not take the database from sends.
        let counts = self
            .health
            .counts(&self.store)
            .await
            .map_err(anyhow::Error::msg)?;
        self.metrics.record_counts(&counts);
        self.metrics.record(|| self.feeds.record());
        Ok(self.metrics.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_token() {
        let t = ApiToken {
            name: "provincial-feed".into(),
            role: Role::Feed,
            token: "s3cret-token-value".into(),
        };
        let shown = format!("{t:?}");
        assert!(
            shown.contains("provincial-feed") && shown.contains("Feed"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret-token-value"), "{shown}");
        let o = Overrides {
            answer_secret: Some("s3cret-answer-key".into()),
            tokens: vec![t],
            clock: None,
        };
        let shown = format!("{:?} {:?}", o.answer_secret, o.tokens);
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
