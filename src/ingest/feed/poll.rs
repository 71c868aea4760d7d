//! The poller: each source's next poll is a job in the one queue (`feed_poll`, due at its cron
//! schedule's next time), so several instances poll each source once per tick between them.
//! A poll is a conditional GET
//! (validators kept in the database), then for an index the CAP files of entries not seen
//! before; transport errors and 5xx are retried with the source's backoff. An entry whose CAP
//! could not be fetched stays unseen and the index validators are not saved, so the next
//! poll tries it again.

use reqwest::header::{
    HeaderName, HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION,
};
use reqwest::{StatusCode, Url};
use secrecy::ExposeSecret;

use super::index;
use crate::cap;
use crate::config::{self, Feed, FeedKind};
use crate::core::Core;
use crate::ingest::{self, IngestError};
use crate::store::feeds::{self as store, Validators};
use crate::store::jobs::{self, NewJob};
use crate::store::warnings;

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Polled {
    pub not_modified: bool,
    /// CAP messages fetched or cut out of the index.
    pub fetched: u64,
    pub ingested: u64,
    pub refused: u64,
}

/// Makes sure every configured source has its poll job (the first due at the schedule's
/// next time). Every instance does this at start; the job's key makes it one row.
pub async fn ensure_jobs(core: &Core) -> anyhow::Result<()> {
    let now = core.now();
    let mut conn = core.store.pool().acquire().await?;
    for (i, feed) in core.settings.feeds.iter().enumerate() {
        let Some(next) = next_poll(feed, core.clock.now()) else {
            tracing::error!(feed = %feed.name, "feed[{i}].schedule: no next time; this source is never polled");
            continue;
        };
        jobs::insert_once(&mut conn, NewJob::feed_poll(&feed.name, next), now).await?;
    }
    Ok(())
}

/// The schedule's next time after `now` (Unix ms).
fn next_poll(feed: &Feed, now: chrono::DateTime<chrono::Utc>) -> Option<i64> {
    feed.cron().ok()?.after(&now).next().map(|t| t.timestamp_millis())
}

/// A `feed_poll` job has come: polls the source and says when its job is due next (the
/// schedule's next time after this poll, so a poll longer than the interval skips the times
/// it overran instead of catching up with a burst). `None`: no `[[feed]]` has that name any
/// more (the configuration changed), and the job ends.
pub async fn run_job(core: &Core, name: &str) -> Option<i64> {
    let i = core.settings.feeds.iter().position(|f| f.name == name)?;
    // The outcome is in the source's status and the log; the schedule goes on either way.
    let _ = poll_source(core, i).await;
    next_poll(&core.settings.feeds[i], core.clock.now())
}

/// One poll of the source named `name`, now (tests, and a future "poll now" action).
pub async fn poll_once(core: &Core, name: &str) -> Result<Polled, String> {
    let i = core
        .settings
        .feeds
        .iter()
        .position(|f| f.name == name)
        .ok_or_else(|| format!("no [[feed]] named {name:?}"))?;
    poll_source(core, i).await
}

/// Polls source `i` and records the outcome in its status.
async fn poll_source(core: &Core, i: usize) -> Result<Polled, String> {
    let feed = &core.settings.feeds[i];
    let started = core.now();
    core.feeds.update(i, |s| s.last_attempt = Some(started));
    let mut polled = Polled::default();
    let result = poll(core, i, &mut polled).await;
    let now = core.now();
    // Counted when done, so `polls - not_modified - errors` never includes one in flight.
    core.feeds.update(i, |s| {
        s.polls += 1;
        s.entries_fetched += polled.fetched;
        s.ingested += polled.ingested;
        s.refused += polled.refused;
        s.ok = Some(result.is_ok());
        match &result {
            Ok(()) if polled.not_modified => s.not_modified += 1,
            Ok(()) => {}
            Err(e) => {
                s.errors += 1;
                s.last_error = Some(e.clone());
                s.last_error_at = Some(now);
            }
        }
        if result.is_ok() {
            s.last_success = Some(now);
        }
    });
    match &result {
        Ok(()) => tracing::debug!(feed = %feed.name, ?polled, "feed polled"),
        Err(e) => tracing::warn!(feed = %feed.name, error = %e, "feed poll failed"),
    }
    result.map(|()| polled)
}

async fn poll(core: &Core, i: usize, polled: &mut Polled) -> Result<(), String> {
    let feed = &core.settings.feeds[i];
    let auth = auth(i, feed)?;
    let client = &core.feeds.sources[i].client;
    let db = |e: anyhow::Error| format!("database: {e:#}");
    let known = store::validators(&core.store, &feed.name, &feed.url)
        .await
        .map_err(db)?;
    let fetched = fetch(client, feed, &feed.url, Some(&known), auth.as_ref()).await;
    if let Err(Fetch::Refused(why)) = &fetched {
        core.feeds.update(i, |s| {
            s.links_refused += 1;
            s.last_link_refused = Some(why.clone());
        });
    }
    let (body, validators) = match fetched.map_err(Fetch::into_message)? {
        None => {
            polled.not_modified = true;
            return Ok(());
        }
        Some(got) => got,
    };
    let source = format!("feed:{}", feed.name);
    let mut first_error = None;
    match feed.kind {
        FeedKind::Cap => {
            polled.fetched += 1;
            take(core, feed, &body, &source, polled).await?;
        }
        FeedKind::Index => {
            let entries =
                index::parse_with_alerts(&body, &feed.url).map_err(|e| format!("{}: {e}", feed.url))?;
            let keys: Vec<String> = entries.iter().map(|(e, _)| e.key()).collect();
            // Also holds the keys taken in this poll: an index may list an entry twice.
            let mut seen: std::collections::HashSet<String> = store::seen(&core.store, &feed.name, &keys)
                .await
                .map_err(db)?
                .into_iter()
                .collect();
            let mut taken = Vec::new();
            for (item, key) in entries.iter().zip(keys) {
                if !seen.insert(key.clone()) {
                    continue;
                }
                match take_entry(core, i, client, feed, item, auth.as_ref(), &source, polled).await {
                    Ok(()) => taken.push(key),
                    Err(e) => {
                        tracing::warn!(feed = %feed.name, entry = %item.0.id, error = %e, "feed entry not taken");
                        first_error.get_or_insert(e);
                    }
                }
            }
            store::mark_seen(&core.store, &feed.name, &taken, core.now())
                .await
                .map_err(db)?;
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    store::save_validators(&core.store, &feed.name, &feed.url, &validators, core.now())
        .await
        .map_err(db)
}

#[allow(clippy::too_many_arguments)]
async fn take_entry(
    core: &Core,
    i: usize,
    client: &reqwest::Client,
    feed: &Feed,
    (entry, alerts): &index::WithAlerts,
    auth: Option<&(HeaderName, HeaderValue)>,
    source: &str,
    polled: &mut Polled,
) -> Result<(), String> {
    for alert in alerts {
        polled.fetched += 1;
        take(core, feed, alert, source, polled).await?;
    }
    for link in &entry.links {
        let got = match fetch(client, feed, link, None, auth).await {
            Err(Fetch::Refused(why)) => {
                // Final, like a refused CAP: the entry is not tried again, and the operator
                // sees where it pointed in the feed's status.
                tracing::warn!(feed = %feed.name, entry = %entry.id, link = %link, reason = %why, "feed link refused");
                core.feeds.update(i, |s| {
                    s.links_refused += 1;
                    s.last_link_refused = Some(why.clone());
                });
                continue;
            }
            Err(Fetch::Failed(e)) => return Err(e),
            Ok(got) => got,
        };
        let (body, _) = got.ok_or_else(|| format!("GET {link}: 304 to an unconditional request"))?;
        polled.fetched += 1;
        take(core, feed, &body, source, polled).await?;
    }
    Ok(())
}

/// One CAP message: the sender allow-list, then ingest. Refusals are final (kept as rejects);
/// only a database failure is an error, so the entry is tried again.
async fn take(
    core: &Core,
    feed: &Feed,
    bytes: &[u8],
    source: &str,
    polled: &mut Polled,
) -> Result<(), String> {
    if !feed.senders.is_empty() {
        // A message that does not parse goes on to ingest, which keeps it with the reason.
        if let Ok(alert) = cap::parse(bytes) {
            if !feed.senders.contains(&alert.sender) {
                let reason = format!(
                    "sender {:?} is not on the allow-list of feed {} (发送方不在白名单)",
                    alert.sender, feed.name
                );
                warnings::reject(&core.store, bytes, source, &reason, core.now())
                    .await
                    .map_err(|e| format!("database: {e:#}"))?;
                tracing::warn!(feed = %feed.name, sender = %alert.sender, "CAP message refused: sender not allowed");
                polled.refused += 1;
                return Ok(());
            }
        }
    }
    match ingest::ingest(core, bytes, source).await {
        Ok(o) => {
            if !o.duplicate {
                polled.ingested += 1;
            }
            Ok(())
        }
        Err(IngestError::Invalid(_)) => {
            polled.refused += 1;
            Ok(())
        }
        Err(IngestError::Internal(e)) => Err(format!("ingest: {e:#}")),
    }
}

/// The auth header, its value read now so a rotated file is picked up.
fn auth(i: usize, feed: &Feed) -> Result<Option<(HeaderName, HeaderValue)>, String> {
    let Some(name) = &feed.auth_header else {
        return Ok(None);
    };
    let key = format!("feed[{i}].auth_env");
    let value = config::secret(&key, feed.auth_env.as_deref(), feed.auth_file.as_deref())
        .map_err(|e| format!("{e:#}"))?
        .ok_or_else(|| format!("{key}: {} is not set", feed.auth_env.as_deref().unwrap_or("?")))?;
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("feed[{i}].auth_header: {e}"))?;
    let mut value = HeaderValue::from_str(value.expose_secret())
        .map_err(|_| format!("{key}: not a valid header value"))?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

enum Failure {
    /// Transport errors, 5xx and 429: worth another try.
    Transient(String),
    Permanent(String),
    /// The URL or a redirect leads off the feed's origin and its `allow_hosts`.
    Refused(String),
}

/// Why a fetch gave nothing.
enum Fetch {
    Failed(String),
    Refused(String),
}

impl Fetch {
    fn into_message(self) -> String {
        match self {
            Fetch::Failed(e) | Fetch::Refused(e) => e,
        }
    }
}

/// Redirects followed per fetch: enough for http→https and a moved file, not a chain that
/// walks the poller around the network.
pub const MAX_REDIRECTS: usize = 3;

/// Whether the poller may fetch `url` for this feed: the feed URL's own origin (scheme, host
/// and port), or a host in its `allow_hosts` (`host` any port, `host:port` that port), over
/// http or https. Anything else an index or a redirect names is refused: the poller must not
/// be a way into the hosts around it (SSRF).
pub fn allowed(feed: &Feed, url: &Url) -> bool {
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let Ok(own) = Url::parse(&feed.url) else {
        return false;
    };
    if own.origin() == url.origin() {
        return true;
    }
    feed.allow_hosts.iter().any(|a| {
        // "host" or "host:port", read as the authority of a URL so IPv6 and case are
        // handled the way the link's own host is.
        let Ok(allow) = Url::parse(&format!("http://{}", a.trim())) else {
            return false;
        };
        allow.host() == url.host() && (allow.port().is_none() || allow.port() == url.port_or_known_default())
    })
}

/// The auth header goes only to the feed URL's own origin, never to an allowed host or
/// wherever a redirect leads.
fn same_origin(feed: &Feed, url: &Url) -> bool {
    Url::parse(&feed.url).is_ok_and(|own| own.origin() == url.origin())
}

/// GET with retries. `None` is a 304 to a conditional request.
async fn fetch(
    client: &reqwest::Client,
    feed: &Feed,
    url: &str,
    known: Option<&Validators>,
    auth: Option<&(HeaderName, HeaderValue)>,
) -> Result<Option<(Vec<u8>, Validators)>, Fetch> {
    let mut attempt = 0usize;
    loop {
        match get(client, feed, url, known, auth).await {
            Ok(got) => return Ok(got),
            Err(Failure::Refused(why)) => return Err(Fetch::Refused(why)),
            Err(Failure::Transient(e)) if attempt < feed.retries as usize => {
                let wait = feed.backoff[attempt.min(feed.backoff.len() - 1)];
                tracing::debug!(feed = %feed.name, error = %e, ?wait, "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(Failure::Transient(e)) if attempt > 0 => {
                return Err(Fetch::Failed(format!("{e} (after {} attempts)", attempt + 1)))
            }
            Err(Failure::Transient(e) | Failure::Permanent(e)) => return Err(Fetch::Failed(e)),
        }
    }
}

async fn get(
    client: &reqwest::Client,
    feed: &Feed,
    url: &str,
    known: Option<&Validators>,
    auth: Option<&(HeaderName, HeaderValue)>,
) -> Result<Option<(Vec<u8>, Validators)>, Failure> {
    let mut at = Url::parse(url).map_err(|e| Failure::Permanent(format!("GET {url}: {e}")))?;
    if !allowed(feed, &at) {
        return Err(Failure::Refused(format!(
            "link {at} is off the feed's origin and allow_hosts (链接不在本源或允许的主机内)"
        )));
    }
    let mut hops = 0;
    let mut resp = loop {
        let mut req = client.get(at.clone());
        if let Some((name, value)) = auth.filter(|_| same_origin(feed, &at)) {
            req = req.header(name, value);
        }
        if let Some(v) = known {
            if let Some(etag) = &v.etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &v.last_modified {
                req = req.header(IF_MODIFIED_SINCE, lm);
            }
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("GET {at}: {}", chain(&e))))?;
        let status = resp.status();
        if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
            break resp;
        }
        let next = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| at.join(l.trim()).ok())
            .ok_or_else(|| {
                Failure::Permanent(format!("GET {at}: HTTP {status} without a usable Location"))
            })?;
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(Failure::Permanent(format!(
                "GET {url}: more than {MAX_REDIRECTS} redirects"
            )));
        }
        if !allowed(feed, &next) {
            return Err(Failure::Refused(format!(
                "redirect from {at} to {next} is off the feed's origin and allow_hosts (重定向不在本源或允许的主机内)"
            )));
        }
        at = next;
    };
    let transport = |e: reqwest::Error| Failure::Transient(format!("GET {url}: {}", chain(&e)));
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED && known.is_some() {
        return Ok(None);
    }
    if !status.is_success() {
        let e = format!("GET {url}: HTTP {status}");
        return Err(
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                Failure::Transient(e)
            } else {
                Failure::Permanent(e)
            },
        );
    }
    let header = |h| {
        resp.headers()
            .get(h)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let validators = Validators {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    // Read in chunks so a hostile server cannot make us buffer more than a CAP may hold.
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > cap::MAX_BYTES {
            return Err(Failure::Permanent(format!(
                "GET {url}: body over the {} byte limit",
                cap::MAX_BYTES
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some((body, validators)))
}

/// reqwest's message plus its causes ("connection refused", "operation timed out").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
