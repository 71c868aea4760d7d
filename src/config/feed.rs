//! Polled warning sources (`[[feed]]`).

use std::time::Duration;

use serde::Deserialize;

use super::{default_timeout, duration, durations};

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
    /// Hosts other than the feed URL's own origin that index links and redirects may lead
    /// to (`"cdn.example.gov.cn"`, or `"host:port"` for one port only). Fetched without the
    /// auth header, which only ever goes to the feed URL's origin; any other link is refused.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
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
    pub(super) fn problems(&self) -> Option<String> {
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
        if let Some(h) = self.allow_hosts.iter().find(|h| h.is_empty() || h.contains('/')) {
            return Some(format!("allow_hosts: {h:?} is not a host or host:port"));
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
