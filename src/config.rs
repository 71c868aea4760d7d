//! Settings: the commented defaults in `config/jiaoying.toml` (embedded in the binary), then
//! the file given by `--config`, then `JIAOYING_SECTION__KEY` environment variables (SPEC §9).
//! Secrets are read here from the environment or files the config names, and nowhere else.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer};

use crate::domain::{ChannelKind, Colour, Level};

const DEFAULTS: &str = include_str!("../config/jiaoying.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: Database,
    pub http: Http,
    pub answer: Answer,
    #[serde(default)]
    pub auth: Auth,
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
    pub workers: u32,
    #[serde(deserialize_with = "duration")]
    pub poll: Duration,
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    #[serde(deserialize_with = "durations")]
    pub retry_backoff: Vec<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub ladder: Vec<Rung>,
}

/// One step of an escalation ladder (SPEC §2 policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rung {
    /// Call the same person again.
    Repeat,
    /// The person's AB角.
    Backup,
    /// The person's superior.
    Superior,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Gateway {
    Loopback,
    Generic {
        url: String,
        secret_env: Option<String>,
        secret_file: Option<String>,
        #[serde(default = "default_concurrency")]
        concurrency: usize,
        #[serde(default = "default_timeout", deserialize_with = "duration")]
        timeout: Duration,
    },
    Smtp {
        host: String,
        port: u16,
        #[serde(default)]
        tls: SmtpTls,
        from: String,
        username: Option<String>,
        password_env: Option<String>,
        password_file: Option<String>,
        #[serde(default = "default_timeout", deserialize_with = "duration")]
        timeout: Duration,
    },
}

fn default_concurrency() -> usize {
    32
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    #[default]
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    pub colours: Vec<Colour>,
    pub hazards: Vec<String>,
    pub roles: Vec<String>,
    pub channels: Vec<ChannelKind>,
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub deadline: Duration,
    #[serde(default)]
    pub ladder: Option<Vec<Rung>>,
    #[serde(default)]
    pub evacuation: bool,
    /// Response levels (应急响应) this policy answers for activations; empty: none.
    #[serde(default)]
    pub levels: Vec<Level>,
}

impl Policy {
    pub fn matches(&self, colour: Colour, hazard: &str) -> bool {
        self.colours.contains(&colour) && self.hazards.iter().any(|h| h == "*" || h == hazard)
    }

    pub fn matches_level(&self, level: Level, hazard: &str) -> bool {
        self.levels.contains(&level) && self.hazards.iter().any(|h| h == "*" || h == hazard)
    }
}

/// A polled warning source (`[[feed]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    /// Names the source in logs, metrics and the warning's `source` (`feed:NAME`).
    pub name: String,
    pub url: String,
    pub kind: FeedKind,
    /// A `cron` expression with seconds first: `"0 */2 * * * *"` is every two minutes.
    pub schedule: String,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Extra attempts after a transport error or 5xx, waiting `backoff[i]` (the last repeats).
    #[serde(default = "default_feed_retries")]
    pub retries: u32,
    #[serde(default = "default_feed_backoff", deserialize_with = "durations")]
    pub backoff: Vec<Duration>,
    /// A header sent with every request (`Authorization`, `X-Api-Key` …), its value read from
    /// `auth_env` or `auth_file`.
    pub auth_header: Option<String>,
    pub auth_env: Option<String>,
    pub auth_file: Option<String>,
    /// When not empty, only messages whose `sender` is listed are taken; others are kept as
    /// rejects.
    #[serde(default)]
    pub senders: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// An Atom or RSS index whose entries link to CAP files or embed them.
    Index,
    /// One CAP message at a fixed URL.
    Cap,
}

fn default_feed_retries() -> u32 {
    2
}

fn default_feed_backoff() -> Vec<Duration> {
    vec![Duration::from_secs(1), Duration::from_secs(5)]
}

impl Feed {
    pub fn cron(&self) -> Result<cron::Schedule, String> {
        self.schedule
            .parse()
            .map_err(|e| format!("{:?}: {e}", self.schedule))
    }

    /// Field errors, as `key: reason` (the caller prefixes `feed[i].`).
    fn problems(&self) -> Option<String> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !name_ok {
            return Some(format!(
                "name: {:?} must be letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        match reqwest::Url::parse(&self.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(u) => return Some(format!("url: scheme {} is not http or https", u.scheme())),
            Err(e) => return Some(format!("url: {:?}: {e}", self.url)),
        }
        if let Err(e) = self.cron() {
            return Some(format!(
                "schedule: {e} (six fields, seconds first: \"0 */2 * * * *\")"
            ));
        }
        if self.timeout.is_zero() {
            return Some("timeout: must be positive".into());
        }
        if self.retries > 10 {
            return Some(format!("retries: {} is more than 10", self.retries));
        }
        if self.retries > 0 && self.backoff.is_empty() {
            return Some("backoff: empty while retries > 0".into());
        }
        let secret = self.auth_env.is_some() || self.auth_file.is_some();
        match (&self.auth_header, secret) {
            (Some(h), _) if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() => {
                Some(format!("auth_header: {h:?} is not a valid header name"))
            }
            (Some(_), false) => Some("auth_header: needs auth_env or auth_file for its value".into()),
            (None, true) => Some("auth_env/auth_file: set auth_header to say which header carries it".into()),
            _ => None,
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
            if p.roles.is_empty() {
                bail!("policy[{i}] ({}).roles: empty", p.name);
            }
            if p.channels.is_empty() {
                bail!("policy[{i}] ({}).channels: empty", p.name);
            }
            if p.colours.is_empty() && p.levels.is_empty() {
                bail!(
                    "policy[{i}] ({}): colours and levels are both empty, so it never applies",
                    p.name
                );
            }
            if p.deadline.is_zero() {
                bail!("policy[{i}] ({}).deadline: must be positive", p.name);
            }
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

    pub fn policy_for(&self, colour: Colour, hazard: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches(colour, hazard))
    }

    /// The policy a response activation of `level` for `hazard` calls by (first match).
    pub fn policy_for_level(&self, level: Level, hazard: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches_level(level, hazard))
    }

    pub fn ladder<'a>(&'a self, policy: &'a Policy) -> &'a [Rung] {
        policy.ladder.as_deref().unwrap_or(&self.escalation.ladder)
    }
}

/// Reads a secret from the environment variable or file a config key names.
pub fn secret(key: &str, env: Option<&str>, file: Option<&str>) -> Result<Option<String>> {
    if let Some(var) = env {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return Ok(Some(v));
            }
        }
    }
    if let Some(path) = file {
        let v = std::fs::read_to_string(path).with_context(|| format!("{key}: reading {path}"))?;
        return Ok(Some(v.trim().to_string()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_pick_policies() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.database.url, "sqlite://data/jiaoying.db");
        let red = s.policy_for(Colour::Red, "rainstorm").unwrap();
        assert_eq!(red.deadline, Duration::from_secs(300));
        assert_eq!(s.ladder(red), &[Rung::Repeat, Rung::Backup, Rung::Superior]);
        assert_eq!(s.policy_for(Colour::Blue, "x").unwrap().name, "yellow-blue");
    }

    #[test]
    fn errors_name_the_key() {
        let e = Settings::from_toml("[channels]\nsms = [\"nope\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("channels.sms") && e.contains("nope"), "{e}");
        let e = Settings::from_toml("[http]\nbindd = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bindd"), "{e}");
    }

    #[test]
    fn feeds_are_checked_by_key() {
        let feed = |extra: &str| {
            format!("[[feed]]\nname = \"cma\"\nurl = \"https://x.test/a.atom\"\nkind = \"index\"\n{extra}")
        };
        let s = Settings::from_toml(&feed("schedule = \"0 */2 * * * *\"")).unwrap();
        assert_eq!(s.feeds[0].kind, FeedKind::Index);
        assert_eq!(s.feeds[0].retries, 2);
        assert!(s.feeds[0].senders.is_empty());
        assert!(Settings::from_toml("").unwrap().feeds.is_empty());
        for (extra, want) in [
            ("schedule = \"*/2 * * *\"", "feed[0].schedule"),
            ("schedule = \"* * * * * *\"\ntimeout = \"0s\"", "feed[0].timeout"),
            (
                "schedule = \"* * * * * *\"\nauth_header = \"Authorization\"",
                "feed[0].auth_header",
            ),
            ("schedule = \"* * * * * *\"\nauth_env = \"X\"", "feed[0].auth_env"),
            ("schedule = \"* * * * * *\"\nkind2 = 1", "kind2"),
        ] {
            let e = Settings::from_toml(&feed(extra)).unwrap_err().to_string();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let bad_url = feed("schedule = \"* * * * * *\"").replace("https://x.test/a.atom", "ftp://x");
        let e = Settings::from_toml(&bad_url).unwrap_err().to_string();
        assert!(e.contains("feed[0].url"), "{e}");
        let twice = format!(
            "{}\n{}",
            feed("schedule = \"* * * * * *\""),
            feed("schedule = \"* * * * * *\"")
        );
        let e = Settings::from_toml(&twice).unwrap_err().to_string();
        assert!(e.contains("feed[1].name"), "{e}");
    }

    #[test]
    fn response_levels_pick_their_policy() {
        let s = Settings::from_toml("").unwrap();
        let p = s.policy_for_level(Level::II, "flood").unwrap();
        assert_eq!(p.name, "response");
        assert!(s
            .policies
            .iter()
            .all(|p| p.levels.is_empty() || p.colours.is_empty()));
        let only_flood = "[[policy]]\nname = \"r\"\ncolours = []\nlevels = [\"I\"]\nhazards = [\"flood\"]\nroles = [\"x\"]\nchannels = [\"sms\"]\ndeadline = \"1m\"";
        let s = Settings::from_toml(only_flood).unwrap();
        assert!(s.policy_for_level(Level::I, "flood").is_some());
        assert!(s.policy_for_level(Level::II, "flood").is_none());
        assert!(s.policy_for_level(Level::I, "typhoon").is_none());
        let dead = only_flood.replace("levels = [\"I\"]", "levels = []");
        let e = Settings::from_toml(&dead).unwrap_err().to_string();
        assert!(e.contains("policy[0] (r)") && e.contains("never applies"), "{e}");
    }

    #[test]
    fn roles_nest() {
        assert!(Role::Admin.allows(Role::Feed));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Feed.allows(Role::Viewer));
    }
}
