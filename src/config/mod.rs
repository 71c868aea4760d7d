//! Settings: the commented defaults in `config/jiaoying.toml` (embedded in the binary), then
//! the file given by `--config`, then `JIAOYING_SECTION__KEY` environment variables (SPEC §9).
//! Secrets are read here from the environment or files the config names, and nowhere else.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

mod feed;
mod gateway;
mod policy;
#[cfg(test)]
mod tests;

pub use crate::domain::Level;
pub use crate::domain::Rung;
use crate::domain::{ChannelKind, Colour};
pub use feed::{Feed, FeedKind};
pub use gateway::*;
use policy::check_raw_policies;
pub use policy::{parse_quiet_hours, Policy, Subject};

const DEFAULTS: &str = include_str!("../../config/jiaoying.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: Database,
    pub http: Http,
    pub answer: Answer,
    #[serde(default)]
    pub auth: Auth,
    pub console: Console,
    pub dispatch: Dispatch,
    pub escalation: Escalation,
    pub messages: Messages,
    pub channels: Channels,
    pub gateways: BTreeMap<String, Gateway>,
    #[serde(rename = "policy")]
    pub policies: Vec<Policy>,
    /// Polled warning sources (`[[feed]]`); none by default.
    #[serde(default, rename = "feed")]
    pub feeds: Vec<Feed>,
    /// Signed checkpoints of the ledger's head (`[ledger]`).
    #[serde(default)]
    pub ledger: Ledger,
}

/// `[ledger]`: where signed checkpoints of the chain head go and the key that signs them,
/// which the database never holds (the key itself: env `JIAOYING_LEDGER_KEY`, else the file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    /// A file holding the ed25519 signing key (hex, 32 bytes), made by `jiaoying ledger keygen`.
    pub signing_key_file: Option<String>,
    /// The public key (hex) `verify` checks checkpoints with when the signing key is not here.
    pub public_key: Option<String>,
    /// One JSON line per checkpoint, appended.
    pub checkpoints: String,
    /// A checkpoint is taken this often (one per period across instances), and at each stand-down.
    #[serde(deserialize_with = "duration")]
    pub checkpoint_every: Duration,
}

impl Default for Ledger {
    fn default() -> Ledger {
        Ledger {
            signing_key_file: None,
            public_key: None,
            checkpoints: "data/checkpoints.jsonl".into(),
            checkpoint_every: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub bind: String,
    pub public_url: String,
    pub max_body_bytes: usize,
    /// Longest a request may take, body and handler together (answered 503).
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Longest wait for the next piece of a request body (answered 408).
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// Longest wait for a request's headers, from the connection's start or its previous
    /// answer; past it the connection is closed.
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one closes, so a
    /// flood of sockets cannot exhaust file descriptors or memory.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub link_ttl: Duration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
}

/// The console's logins (`[console]`): cookies, session lifetimes, lockout after failures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    /// Mark the session cookie `Secure` (only sent over HTTPS).
    pub secure_cookies: bool,
    /// A session unused this long is over.
    #[serde(deserialize_with = "duration")]
    pub session_idle: Duration,
    /// A session is over this long after its login, used or not.
    #[serde(deserialize_with = "duration")]
    pub session_max: Duration,
    /// Failed logins in a row for one name before it is locked for `lockout`.
    pub login_attempts: u32,
    #[serde(deserialize_with = "duration")]
    pub lockout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
}

/// API roles (SPEC §4). `admin` may do everything, `operator` everything a `viewer` may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Feed,
    Gateway,
}

impl Role {
    /// The name as the config and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Feed => "feed",
            Role::Gateway => "gateway",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::Admin,
            Role::Operator,
            Role::Viewer,
            Role::Feed,
            Role::Gateway,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Admin, _) => true,
            (Role::Operator, Role::Operator | Role::Viewer) => true,
            (have, need) => have == need,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    pub batch: u32,
    /// Jobs the first round after an idle spell claims; each full round doubles it up to
    /// `batch` (the daemon's workers, `app::worker`), so that the first people of a warning
    /// are sent while the next are still being loaded.
    #[serde(default = "first_batch")]
    pub first_batch: u32,
    pub workers: u32,
    #[serde(deserialize_with = "duration")]
    pub poll: Duration,
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    #[serde(deserialize_with = "durations")]
    pub retry_backoff: Vec<Duration>,
    /// Tries of one message on a person's last route before its call-out is given up: the
    /// backoff's last step repeats until then. (Waits for an open circuit are not tries.)
    #[serde(default = "max_tries")]
    pub max_tries: u32,
    /// Call-outs committed with a warning's incident; a larger plan is written after it in
    /// slices of `plan_slice` (`ingest::slices`), while the first are already being sent.
    #[serde(default = "plan_first")]
    pub plan_first: u32,
    #[serde(default = "plan_slice")]
    pub plan_slice: u32,
}

fn first_batch() -> u32 {
    16
}

fn max_tries() -> u32 {
    30
}

fn plan_first() -> u32 {
    64
}

fn plan_slice() -> u32 {
    4096
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub ladder: Vec<Rung>,
    /// How long a person already called waits before one message names every place that
    /// escalated to them meanwhile (one call per step, not one per silent village).
    #[serde(default = "bundle_window", deserialize_with = "duration")]
    pub bundle_window: Duration,
}

fn bundle_window() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Messages {
    pub signature: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    #[serde(default)]
    pub sms: Vec<String>,
    #[serde(default)]
    pub voice: Vec<String>,
    #[serde(default)]
    pub email: Vec<String>,
    #[serde(default)]
    pub webhook: Vec<String>,
}

impl Channels {
    pub fn gateways(&self, kind: ChannelKind) -> &[String] {
        match kind {
            ChannelKind::Sms => &self.sms,
            ChannelKind::Voice => &self.voice,
            ChannelKind::Email => &self.email,
            ChannelKind::Webhook => &self.webhook,
        }
    }
}

impl Settings {
    /// Defaults, then `path` (which must exist when `required`), then the environment.
    pub fn load(path: &Path, required: bool) -> Result<Settings> {
        let mut fig = Figment::from(Toml::string(DEFAULTS));
        if path.exists() {
            fig = fig.merge(Toml::file(path));
        } else if required {
            bail!("configuration file {} not found", path.display());
        }
        Self::from_figment(fig.merge(env_provider()))
    }

    /// Defaults plus the given TOML text (tests build their settings this way).
    pub fn from_toml(overrides: &str) -> Result<Settings> {
        Self::from_toml_layers(&[overrides])
    }

    /// Defaults, then each TOML text in turn.
    pub fn from_toml_layers(layers: &[&str]) -> Result<Settings> {
        let fig = layers.iter().fold(Figment::from(Toml::string(DEFAULTS)), |f, l| {
            f.merge(Toml::string(l))
        });
        Self::from_figment(fig)
    }

    fn from_figment(fig: Figment) -> Result<Settings> {
        // Policies first, one by one, so that an error names the policy and the step.
        if let Ok(raw) = fig.extract_inner::<Vec<serde_json::Value>>("policy") {
            check_raw_policies(&raw)?;
        }
        let s: Settings = fig.extract().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        s.check()?;
        Ok(s)
    }

    /// Cross-field checks; errors name the key.
    pub fn check(&self) -> Result<()> {
        for kind in [
            ChannelKind::Sms,
            ChannelKind::Voice,
            ChannelKind::Email,
            ChannelKind::Webhook,
        ] {
            for g in self.channels.gateways(kind) {
                if !self.gateways.contains_key(g) {
                    bail!(
                        "channels.{}: gateway {g:?} is not defined under [gateways]",
                        kind.as_str()
                    );
                }
            }
        }
        if self.policies.is_empty() {
            bail!("policy: at least one [[policy]] is needed");
        }
        for (i, p) in self.policies.iter().enumerate() {
            if p.roles.is_empty() && p.risk_point_roles.is_empty() {
                bail!("policy[{i}] ({}).roles: empty (and no risk_point_roles)", p.name);
            }
            if let Some(q) = &p.quiet_hours {
                parse_quiet_hours(q)
                    .map_err(|e| anyhow::anyhow!("policy[{i}] ({}).quiet_hours: {e}", p.name))?;
            }
            for (lang, src) in &p.templates {
                let mut env = minijinja::Environment::new();
                env.add_template("t", src)
                    .map_err(|e| anyhow::anyhow!("policy[{i}] ({}).templates.{lang}: {e}", p.name))?;
            }
            if p.channels.is_empty() {
                bail!("policy[{i}] ({}).channels: empty", p.name);
            }
            if p.deadline.is_zero() {
                bail!("policy[{i}] ({}).deadline: must be positive", p.name);
            }
            if let Some(Err(e)) = p.round_schedule() {
                bail!("policy[{i}] ({}).rounds: {e}", p.name);
            }
        }
        for (key, d) in [
            ("request_timeout", self.http.request_timeout),
            ("body_timeout", self.http.body_timeout),
            ("header_timeout", self.http.header_timeout),
        ] {
            if d.is_zero() {
                bail!("http.{key}: must be positive (e.g. \"10s\")");
            }
        }
        if self.http.max_connections == 0 {
            bail!("http.max_connections: must be at least 1");
        }
        for (key, d) in [
            ("session_idle", self.console.session_idle),
            ("session_max", self.console.session_max),
        ] {
            if d.is_zero() {
                bail!("console.{key}: must be positive (e.g. \"12h\")");
            }
        }
        if self.console.login_attempts == 0 {
            bail!("console.login_attempts: must be at least 1");
        }
        if self.dispatch.batch == 0 || self.dispatch.workers == 0 {
            bail!("dispatch.batch and dispatch.workers must be at least 1");
        }
        for (i, f) in self.feeds.iter().enumerate() {
            if let Some(p) = f.problems() {
                bail!("feed[{i}].{p}");
            }
            if self.feeds[..i].iter().any(|g| g.name == f.name) {
                bail!("feed[{i}].name: {:?} is used twice", f.name);
            }
        }
        Ok(())
    }

    /// The first policy for a colour and hazard (no event, level or region levels).
    pub fn policy_for(&self, colour: Colour, hazard: &str) -> Option<&Policy> {
        self.policy_matching(&Subject {
            colour: Some(colour),
            hazard,
            ..Subject::default()
        })
    }

    /// First match wins.
    pub fn policy_matching(&self, s: &Subject) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches(s))
    }

    /// The policy a response activation of `level` for `hazard` calls by (first match).
    pub fn policy_for_level(&self, level: Level, hazard: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches_level(level, hazard))
    }

    pub fn ladder<'a>(&'a self, policy: &'a Policy) -> &'a [Rung] {
        policy.ladder.as_deref().unwrap_or(&self.escalation.ladder)
    }
}

/// Reads a secret from the environment variable or file a config key names. It comes back
/// wrapped: its `Debug` prints `[REDACTED]`, and reading it takes an explicit `expose_secret`.
pub fn secret(key: &str, env: Option<&str>, file: Option<&str>) -> Result<Option<SecretString>> {
    if let Some(var) = env {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return Ok(Some(v.into()));
            }
        }
    }
    if let Some(path) = file {
        let v = std::fs::read_to_string(path).with_context(|| format!("{key}: reading {path}"))?;
        // An empty file is a mistake (a key of no bytes signs nothing worth checking), not a key.
        if v.trim().is_empty() {
            bail!("{key}: {path} is empty; put the secret in it (e.g. `openssl rand -hex 32 > {path}`)");
        }
        return Ok(Some(v.trim().into()));
    }
    Ok(None)
}

/// Only `JIAOYING_SECTION__KEY` variables are configuration; others (`JIAOYING_ANSWER_SECRET`,
/// tokens) are secrets read by name.
fn env_provider() -> Env {
    Env::prefixed("JIAOYING_")
        .filter(|k| k.as_str().contains("__"))
        .split("__")
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("duration {s:?}: {e}"))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    v.iter()
        .map(|s| parse_duration(s).map_err(serde::de::Error::custom))
        .collect()
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}
