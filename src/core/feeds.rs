//! The polled sources (`[[feed]]`) and each one's record since start: last success, last
//! error and counts, for `/readyz` and `/metrics`. Held by `Core`; the poller (`ingest::feed`)
//! updates it. It must not fetch or parse anything.

use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::{Feed, FeedKind};

/// One source's record since start. Times are Unix milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    /// The last failure, kept after later successes so an intermittent fault stays visible;
    /// `ok` says whether the last poll succeeded.
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub ok: Option<bool>,
    pub polls: u64,
    pub not_modified: u64,
    pub errors: u64,
    /// CAP messages fetched or cut out of the index.
    pub entries_fetched: u64,
    /// New warnings stored (repeats of a known warning are not counted).
    pub ingested: u64,
    /// Refused: invalid CAP, or a sender not on the allow-list (kept as rejects).
    pub refused: u64,
    /// Index links and redirects refused because they lead off the feed's origin and its
    /// `allow_hosts`; the last one is kept so the operator can see where it pointed.
    pub links_refused: u64,
    pub last_link_refused: Option<String>,
}

pub struct Source {
    pub name: String,
    pub kind: FeedKind,
    pub url: String,
    /// One client per source: its own timeout, and a slow source's connections are its own.
    pub(crate) client: reqwest::Client,
    status: Mutex<Status>,
}

/// The configured sources in config order, shared through `Core`.
#[derive(Default)]
pub struct Feeds {
    pub sources: Vec<Source>,
}

impl Feeds {
    pub fn new(feeds: &[Feed]) -> Result<Feeds> {
        let sources = feeds
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let client = reqwest::Client::builder()
                    // Redirects are followed by the poller, hop by hop, each checked against
                    // the feed's origin rule (and the auth header kept to its origin).
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(f.timeout)
                    .connect_timeout(f.timeout)
                    .user_agent(concat!("jiaoying/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .with_context(|| format!("feed[{i}]: building the HTTP client"))?;
                Ok(Source {
                    name: f.name.clone(),
                    kind: f.kind,
                    url: f.url.clone(),
                    client,
                    status: Mutex::new(Status::default()),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Feeds { sources })
    }

    pub fn status(&self, name: &str) -> Option<Status> {
        self.sources
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.status.lock().expect("feed status lock").clone())
    }

    pub(crate) fn update(&self, i: usize, f: impl FnOnce(&mut Status)) {
        f(&mut self.sources[i].status.lock().expect("feed status lock"));
    }

    /// For `/readyz`: one object per source.
    pub fn details(&self) -> serde_json::Value {
        let list: Vec<_> = self
            .sources
            .iter()
            .map(|s| {
                let st = s.status.lock().expect("feed status lock").clone();
                let mut v = serde_json::json!({"name": s.name, "kind": s.kind, "url": s.url});
                if let (Some(o), Ok(serde_json::Value::Object(m))) =
                    (v.as_object_mut(), serde_json::to_value(st))
                {
                    o.extend(m);
                }
                v
            })
            .collect();
        serde_json::Value::Array(list)
    }

    /// Records every source's metrics into the current recorder (`Metrics::record` makes it
    /// the core's own): counters set to the totals since start, gauges to the last values.
    pub fn record(&self) {
        use metrics::{counter, gauge};
        for s in &self.sources {
            let st = s.status.lock().expect("feed status lock").clone();
            let source = || s.name.clone();
            let ok = st.polls - st.not_modified - st.errors;
            for (result, v) in [
                ("ok", ok),
                ("not_modified", st.not_modified),
                ("error", st.errors),
            ] {
                counter!("jiaoying_feed_polls_total", "source" => source(), "result" => result).absolute(v);
            }
            counter!("jiaoying_feed_entries_fetched_total", "source" => source())
                .absolute(st.entries_fetched);
            counter!("jiaoying_feed_messages_ingested_total", "source" => source()).absolute(st.ingested);
            counter!("jiaoying_feed_messages_refused_total", "source" => source()).absolute(st.refused);
            // Left out until there is one, as before: a zero would read as 1970.
            if let Some(ms) = st.last_success {
                gauge!("jiaoying_feed_last_success_timestamp_seconds", "source" => source())
                    .set(ms as f64 / 1000.0);
            }
            if let Some(ms) = st.last_attempt {
                gauge!("jiaoying_feed_last_attempt_timestamp_seconds", "source" => source())
                    .set(ms as f64 / 1000.0);
            }
            gauge!("jiaoying_feed_up", "source" => source()).set(f64::from(u8::from(st.ok == Some(true))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn metrics_and_details_per_source() {
        let s = Settings::from_toml(
            "[[feed]]\nname = \"a\"\nurl = \"http://x.test/i\"\nkind = \"index\"\nschedule = \"* * * * * *\"\n\
             [[feed]]\nname = \"b\"\nurl = \"http://x.test/c\"\nkind = \"cap\"\nschedule = \"* * * * * *\"",
        )
        .unwrap();
        let feeds = Feeds::new(&s.feeds).unwrap();
        feeds.update(0, |st| {
            st.polls = 3;
            st.not_modified = 1;
            st.errors = 1;
            st.ingested = 2;
            st.last_success = Some(1_700_000_000_500);
            st.ok = Some(true);
        });
        let metrics = crate::core::Metrics::default();
        metrics.record(|| feeds.record());
        let m = metrics.render();
        assert!(
            m.contains("jiaoying_feed_polls_total{source=\"a\",result=\"ok\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("jiaoying_feed_polls_total{source=\"a\",result=\"error\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("jiaoying_feed_messages_ingested_total{source=\"a\"} 2\n"),
            "{m}"
        );
        // The exporter writes gauges as Rust prints an f64: `.5`, no longer `.500`.
        assert!(m.contains("jiaoying_feed_last_success_timestamp_seconds{source=\"a\"} 1700000000.5\n"));
        assert!(!m.contains("jiaoying_feed_last_success_timestamp_seconds{source=\"b\"}"));
        assert!(m.contains("jiaoying_feed_up{source=\"b\"} 0\n"));
        let d = feeds.details();
        assert_eq!(d[0]["name"], "a");
        assert_eq!(d[0]["polls"], 3);
        assert_eq!(d[1]["kind"], "cap");
        assert!(d[1]["last_error"].is_null());
        let none = crate::core::Metrics::default();
        none.record(|| Feeds::new(&[]).unwrap().record());
        assert!(none.render().is_empty());
    }
}
