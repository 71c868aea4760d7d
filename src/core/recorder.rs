//! `/metrics` through the `metrics` crate and its Prometheus exporter. Each [`Core`] has a
//! recorder of its own, never the process-global one: the integration tests run many daemons
//! in one process, and each must report only its own numbers. The values are taken at scrape
//! time (the database counts and the feed records) and written with
//! [`metrics::with_local_recorder`]; the exporter only renders them, it has no listener.
//!
//! [`Core`]: super::Core

use std::collections::BTreeSet;
use std::sync::Mutex;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::store::stats::Counts;

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The database gauges' label values seen at earlier scrapes: one whose rows are all gone
    /// reads 0 rather than keeping its last count.
    seen: Mutex<BTreeSet<(&'static str, String)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        Metrics {
            recorder,
            handle,
            seen: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Runs `f` with this recorder as the current one: what `f` records lands here.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// `jiaoying_callouts{state}` and `jiaoying_jobs{kind}` from the database's counts.
    pub fn record_counts(&self, counts: &Counts) {
        let mut seen = self.seen.lock().expect("metrics label lock");
        self.record(|| {
            for (metric, label, rows) in [
                ("jiaoying_callouts", "state", &counts.callouts),
                ("jiaoying_jobs", "kind", &counts.jobs),
            ] {
                let now: BTreeSet<&str> = rows.iter().map(|(v, _)| v.as_str()).collect();
                for (m, v) in seen
                    .iter()
                    .filter(|(m, v)| *m == metric && !now.contains(v.as_str()))
                {
                    metrics::gauge!(*m, label => v.clone()).set(0.0);
                }
                for (v, n) in rows {
                    metrics::gauge!(metric, label => v.clone()).set(*n as f64);
                    seen.insert((metric, v.clone()));
                }
            }
        });
    }

    /// Prometheus text of everything recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(callouts: &[(&str, i64)]) -> Counts {
        Counts {
            callouts: callouts.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            jobs: vec![("send".into(), 4)],
        }
    }

    #[test]
    fn database_gauges_keep_their_names_and_go_to_zero_when_emptied() {
        let m = Metrics::default();
        m.record_counts(&counts(&[("sent", 3), ("planned", 2)]));
        let text = m.render();
        assert!(text.contains("# TYPE jiaoying_callouts gauge\n"), "{text}");
        assert!(text.contains("jiaoying_callouts{state=\"sent\"} 3\n"), "{text}");
        assert!(
            text.contains("jiaoying_callouts{state=\"planned\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("jiaoying_jobs{kind=\"send\"} 4\n"), "{text}");
        m.record_counts(&counts(&[("sent", 5)]));
        let text = m.render();
        assert!(text.contains("jiaoying_callouts{state=\"sent\"} 5\n"), "{text}");
        assert!(
            text.contains("jiaoying_callouts{state=\"planned\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn each_core_has_its_own_recorder() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.record_counts(&counts(&[("sent", 1)]));
        assert!(a.render().contains("jiaoying_callouts{state=\"sent\"} 1\n"));
        assert!(!b.render().contains("jiaoying_callouts"), "{}", b.render());
        // Recording outside `record` never reaches a core's recorder.
        metrics::gauge!("jiaoying_callouts", "state" => "sent").set(9.0);
        assert!(a.render().contains("jiaoying_callouts{state=\"sent\"} 1\n"));
    }
}
