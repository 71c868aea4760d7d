//! What a job does ([`Task`]) and its row's `kind` and `payload` columns: the codec between
//! the two, one typed payload per kind. `jobs` stores and claims the rows; this module must
//! not touch the database, and must not decide what a task does (that is `deliver`).

use serde::{Deserialize, Serialize};

use crate::domain::ChannelKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Send,
    Deadline,
    Notice,
    ResponseExpiry,
    FeedPoll,
    Round,
    Reconcile,
    Plan,
    Checkpoint,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Send,
        Kind::Deadline,
        Kind::Notice,
        Kind::ResponseExpiry,
        Kind::FeedPoll,
        Kind::Round,
        Kind::Reconcile,
        Kind::Plan,
        Kind::Checkpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Send => "send",
            Kind::Deadline => "deadline",
            Kind::Notice => "notice",
            Kind::ResponseExpiry => "response_expiry",
            Kind::FeedPoll => "feed_poll",
            Kind::Round => "round",
            Kind::Reconcile => "reconcile",
            Kind::Plan => "plan",
            Kind::Checkpoint => "checkpoint",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Which information message a notice job sends (no answer expected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// 解除: the incident is stood down.
    Standdown,
    /// 降级: the colour was lowered (`change` reads "暴雨红色→橙色预警").
    Downgrade { change: String },
}

/// Send (or resend) a call-out through its `hop`-th route; `channel` first when the ladder
/// step that made this send names one (`repeat:voice`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Send {
    #[serde(default)]
    pub hop: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelKind>,
    /// The last try's answer was lost (a time-out): ask the gateway whether it arrived
    /// before sending again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check: bool,
}

/// What one job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    Send(Send),
    /// The answer deadline of ladder rung `rung`: stale once the call-out has moved past it.
    Deadline {
        rung: i64,
    },
    Notice {
        hop: usize,
        notice: Notice,
    },
    /// A response level whose `until` has come.
    ResponseExpiry {
        response: i64,
    },
    /// The next poll of a `[[feed]]`.
    FeedPoll {
        feed: String,
    },
    /// Round `round` of an active response's scheduled rounds (三调度).
    Round {
        response: i64,
        round: i64,
    },
    /// The next time a gateway's query API is asked for receipts that never came.
    Reconcile {
        gateway: String,
    },
    /// The rest of an incident's plan, written slice by slice (`ingest::slices`).
    Plan {
        incident: i64,
    },
    /// A signed checkpoint of the ledger's head (`audit`): `schedule` (every period, one job
    /// across instances) or `standdown:INCIDENT`.
    Checkpoint {
        why: String,
    },
}

#[derive(Serialize, Deserialize)]
struct NoticePayload {
    #[serde(default)]
    hop: usize,
    #[serde(flatten)]
    notice: Notice,
}
#[derive(Serialize, Deserialize)]
struct DeadlinePayload {
    rung: i64,
}
#[derive(Serialize, Deserialize)]
struct ExpiryPayload {
    response: i64,
}
#[derive(Serialize, Deserialize)]
struct FeedPayload {
    feed: String,
}
#[derive(Serialize, Deserialize)]
struct RoundPayload {
    response: i64,
    round: i64,
}
#[derive(Serialize, Deserialize)]
struct PlanPayload {
    incident: i64,
}
#[derive(Serialize, Deserialize)]
struct CheckpointPayload {
    why: String,
}
#[derive(Serialize, Deserialize)]
struct ReconcilePayload {
    gateway: String,
}

impl Task {
    pub fn kind(&self) -> Kind {
        match self {
            Task::Send(_) => Kind::Send,
            Task::Deadline { .. } => Kind::Deadline,
            Task::Notice { .. } => Kind::Notice,
            Task::ResponseExpiry { .. } => Kind::ResponseExpiry,
            Task::FeedPoll { .. } => Kind::FeedPoll,
            Task::Round { .. } => Kind::Round,
            Task::Reconcile { .. } => Kind::Reconcile,
            Task::Plan { .. } => Kind::Plan,
            Task::Checkpoint { .. } => Kind::Checkpoint,
        }
    }

    pub(super) fn payload(&self) -> String {
        let v = match self {
            Task::Send(s) => serde_json::to_value(s),
            Task::Deadline { rung } => serde_json::to_value(DeadlinePayload { rung: *rung }),
            Task::Notice { hop, notice } => serde_json::to_value(NoticePayload {
                hop: *hop,
                notice: notice.clone(),
            }),
            Task::ResponseExpiry { response } => serde_json::to_value(ExpiryPayload { response: *response }),
            Task::FeedPoll { feed } => serde_json::to_value(FeedPayload { feed: feed.clone() }),
            Task::Round { response, round } => serde_json::to_value(RoundPayload {
                response: *response,
                round: *round,
            }),
            Task::Reconcile { gateway } => serde_json::to_value(ReconcilePayload {
                gateway: gateway.clone(),
            }),
            Task::Plan { incident } => serde_json::to_value(PlanPayload { incident: *incident }),
            Task::Checkpoint { why } => serde_json::to_value(CheckpointPayload { why: why.clone() }),
        };
        v.expect("job payloads are plain data").to_string()
    }

    /// Reads a row's kind and payload; the error says what does not read.
    pub(super) fn read(kind: Kind, payload: &str) -> Result<Task, String> {
        let bad = |e: serde_json::Error| format!("{} payload {payload:?}: {e}", kind.as_str());
        Ok(match kind {
            Kind::Send => Task::Send(serde_json::from_str(payload).map_err(bad)?),
            Kind::Deadline => {
                let p: DeadlinePayload = serde_json::from_str(payload).map_err(bad)?;
                Task::Deadline { rung: p.rung }
            }
            Kind::Notice => {
                let p: NoticePayload = serde_json::from_str(payload).map_err(bad)?;
                Task::Notice {
                    hop: p.hop,
                    notice: p.notice,
                }
            }
            Kind::ResponseExpiry => {
                let p: ExpiryPayload = serde_json::from_str(payload).map_err(bad)?;
                Task::ResponseExpiry { response: p.response }
            }
            Kind::FeedPoll => {
                let p: FeedPayload = serde_json::from_str(payload).map_err(bad)?;
                Task::FeedPoll { feed: p.feed }
            }
            Kind::Round => {
                let p: RoundPayload = serde_json::from_str(payload).map_err(bad)?;
                Task::Round {
                    response: p.response,
                    round: p.round,
                }
            }
            Kind::Reconcile => {
                let p: ReconcilePayload = serde_json::from_str(payload).map_err(bad)?;
                Task::Reconcile { gateway: p.gateway }
            }
            Kind::Plan => {
                let p: PlanPayload = serde_json::from_str(payload).map_err(bad)?;
                Task::Plan { incident: p.incident }
            }
            Kind::Checkpoint => {
                let p: CheckpointPayload = serde_json::from_str(payload).map_err(bad)?;
                Task::Checkpoint { why: p.why }
            }
        })
    }

    /// The route index of a send or notice.
    pub fn hop(&self) -> usize {
        match self {
            Task::Send(s) => s.hop,
            Task::Notice { hop, .. } => *hop,
            _ => 0,
        }
    }

    /// The same task, to be asked about at the gateway before it is sent again.
    pub fn checked(&self) -> Task {
        match self {
            Task::Send(s) => Task::Send(Send {
                check: true,
                ..s.clone()
            }),
            other => other.clone(),
        }
    }

    /// The same task on route `hop` (failover).
    pub fn at_hop(&self, hop: usize) -> Task {
        match self {
            Task::Send(s) => Task::Send(Send {
                hop,
                channel: s.channel,
                check: false,
            }),
            Task::Notice { notice, .. } => Task::Notice {
                hop,
                notice: notice.clone(),
            },
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_round_trip_through_their_rows() {
        let tasks = [
            Task::Send(Send {
                hop: 2,
                channel: Some(ChannelKind::Voice),
                check: true,
            }),
            Task::Send(Send::default()),
            Task::Deadline { rung: 3 },
            Task::Notice {
                hop: 1,
                notice: Notice::Downgrade {
                    change: "暴雨红色→橙色预警".into(),
                },
            },
            Task::Notice {
                hop: 0,
                notice: Notice::Standdown,
            },
            Task::ResponseExpiry { response: 7 },
            Task::FeedPoll { feed: "cma".into() },
            Task::Round {
                response: 4,
                round: 2,
            },
            Task::Reconcile {
                gateway: "ali".into(),
            },
        ];
        for t in tasks {
            assert_eq!(Task::read(t.kind(), &t.payload()).unwrap(), t);
        }
    }

    #[test]
    fn rows_written_before_typed_jobs_still_read() {
        // What 0001–0005 wrote: `{"hop": n}`, `{"hop": 0, "channel": "voice"}`, a notice.
        assert_eq!(Task::read(Kind::Send, r#"{"hop": 1}"#).unwrap().hop(), 1);
        assert_eq!(
            Task::read(Kind::Send, r#"{"hop": 0, "channel": "voice"}"#).unwrap(),
            Task::Send(Send {
                hop: 0,
                channel: Some(ChannelKind::Voice),
                check: false,
            })
        );
        assert_eq!(
            Task::read(Kind::Notice, r#"{"notice": "standdown", "hop": 0}"#).unwrap(),
            Task::Notice {
                hop: 0,
                notice: Notice::Standdown
            }
        );
    }

    #[test]
    fn a_payload_that_does_not_read_is_an_error_not_a_default() {
        // No `hop: 0` for a deadline that lost its rung, no standdown for a garbled notice.
        let e = Task::read(Kind::Deadline, "{}").unwrap_err();
        assert!(e.contains("deadline payload") && e.contains("rung"), "{e}");
        assert!(Task::read(Kind::Notice, r#"{"notice": "evacuate"}"#).is_err());
        assert!(Task::read(Kind::FeedPoll, "not json").is_err());
        assert!(Task::read(Kind::Reconcile, "{}").is_err());
    }
}
