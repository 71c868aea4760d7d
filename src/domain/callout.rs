//! The call-out state machine (pure): states of SPEC §2 and what a deadline or an answer does.
//! The store applies these decisions; nothing here reads a clock or a database.

use serde::Serialize;

use super::{ChannelKind, Rung};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Planned,
    Sending,
    Sent,
    Delivered,
    Acknowledged,
    Failed,
    Escalated,
    Cancelled,
    Unreached,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Planned,
        State::Sending,
        State::Sent,
        State::Delivered,
        State::Acknowledged,
        State::Failed,
        State::Escalated,
        State::Cancelled,
        State::Unreached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Planned => "planned",
            State::Sending => "sending",
            State::Sent => "sent",
            State::Delivered => "delivered",
            State::Acknowledged => "acknowledged",
            State::Failed => "failed",
            State::Escalated => "escalated",
            State::Cancelled => "cancelled",
            State::Unreached => "unreached",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Still waiting for this person's answer within the ladder.
    pub fn awaiting(self) -> bool {
        matches!(
            self,
            State::Planned | State::Sending | State::Sent | State::Delivered | State::Failed
        )
    }
}

/// What to do when a call-out's answer deadline passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deadline {
    /// Answered, cancelled or already escalated: nothing.
    Nothing,
    /// Call the same person again (on `channel` first when given); the ladder moves to
    /// `next_rung`.
    Repeat {
        next_rung: usize,
        channel: Option<ChannelKind>,
    },
    /// Call the backup, the superior or the duty holder (the original becomes `escalated`).
    Escalate { to: Rung, next_rung: usize },
    /// Every step is used up: a person must phone by hand.
    Unreached,
}

/// `rung` is the number of ladder steps already taken. Steps whose target is missing (no
/// backup, no superior, nobody holding the duty role) are skipped: `reachable` says which
/// escalation steps have someone to call.
pub fn on_deadline(
    state: State,
    rung: usize,
    ladder: &[Rung],
    reachable: impl Fn(&Rung) -> bool,
) -> Deadline {
    if !state.awaiting() {
        return Deadline::Nothing;
    }
    for (i, step) in ladder.iter().enumerate().skip(rung) {
        match step {
            Rung::Repeat { channel } => {
                return Deadline::Repeat {
                    next_rung: i + 1,
                    channel: *channel,
                }
            }
            to if reachable(to) => {
                return Deadline::Escalate {
                    to: to.clone(),
                    next_rung: i + 1,
                }
            }
            _ => {}
        }
    }
    Deadline::Unreached
}

/// What an answer does to a call-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Record it; `late` when past the deadline or after escalation.
    Record { late: bool },
    /// Already answered: nothing changes (a second genuine answer is idempotent).
    Duplicate,
}

/// The one rule for an answer, whichever way it came (SMS, answer page, voice, operator): a
/// second answer changes nothing; one after the deadline, after escalation, after the person
/// was given up on or after a stand-down still counts, marked late. The store applies it only
/// while the call-out is still in the state it was decided on (`store::answers`).
pub fn on_answer(state: State, now: i64, deadline_at: i64) -> Answer {
    match state {
        State::Acknowledged => Answer::Duplicate,
        State::Escalated | State::Unreached | State::Cancelled => Answer::Record { late: true },
        _ => Answer::Record {
            late: now > deadline_at,
        },
    }
}

/// What recording an answer did, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answered {
    Recorded { late: bool },
    Duplicate,
    NoSuchCallout,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LADDER: [Rung; 3] = [Rung::REPEAT, Rung::Backup, Rung::Superior];

    fn has(backup: bool, superior: bool) -> impl Fn(&Rung) -> bool {
        move |r| match r {
            Rung::Backup => backup,
            Rung::Superior => superior,
            _ => false,
        }
    }

    #[test]
    fn ladder_walks_repeat_backup_superior_then_unreached() {
        assert_eq!(
            on_deadline(State::Sent, 0, &LADDER, has(true, true)),
            Deadline::Repeat {
                next_rung: 1,
                channel: None
            }
        );
        assert_eq!(
            on_deadline(State::Sent, 1, &LADDER, has(true, true)),
            Deadline::Escalate {
                to: Rung::Backup,
                next_rung: 2
            }
        );
        assert_eq!(
            on_deadline(State::Sent, 2, &LADDER, has(true, true)),
            Deadline::Escalate {
                to: Rung::Superior,
                next_rung: 3
            }
        );
        assert_eq!(
            on_deadline(State::Sent, 3, &LADDER, has(true, true)),
            Deadline::Unreached
        );
    }

    #[test]
    fn missing_targets_are_skipped() {
        assert_eq!(
            on_deadline(State::Sent, 1, &LADDER, has(false, true)),
            Deadline::Escalate {
                to: Rung::Superior,
                next_rung: 3
            }
        );
        assert_eq!(
            on_deadline(State::Delivered, 1, &LADDER, has(false, false)),
            Deadline::Unreached
        );
        assert_eq!(
            on_deadline(State::Failed, 0, &[Rung::Backup], has(true, false)),
            Deadline::Escalate {
                to: Rung::Backup,
                next_rung: 1
            }
        );
    }

    #[test]
    fn duty_steps_and_channel_repeats() {
        let duty = Rung::Duty {
            role: "county_duty".into(),
        };
        let ladder = [
            Rung::Repeat {
                channel: Some(ChannelKind::Voice),
            },
            duty.clone(),
        ];
        assert_eq!(
            on_deadline(State::Sent, 0, &ladder, |_| false),
            Deadline::Repeat {
                next_rung: 1,
                channel: Some(ChannelKind::Voice)
            }
        );
        assert_eq!(
            on_deadline(State::Sent, 1, &ladder, |r| *r == duty),
            Deadline::Escalate {
                to: duty.clone(),
                next_rung: 2
            }
        );
        assert_eq!(
            on_deadline(State::Sent, 1, &ladder, |_| false),
            Deadline::Unreached
        );
    }

    #[test]
    fn answered_or_closed_call_outs_do_not_escalate() {
        for s in [
            State::Acknowledged,
            State::Cancelled,
            State::Escalated,
            State::Unreached,
        ] {
            assert_eq!(
                on_deadline(s, 0, &LADDER, has(true, true)),
                Deadline::Nothing,
                "{s:?}"
            );
        }
    }

    #[test]
    fn answers_after_the_deadline_or_escalation_are_late_and_repeats_idempotent() {
        assert_eq!(on_answer(State::Sent, 100, 200), Answer::Record { late: false });
        assert_eq!(on_answer(State::Sent, 201, 200), Answer::Record { late: true });
        assert_eq!(
            on_answer(State::Escalated, 100, 200),
            Answer::Record { late: true }
        );
        assert_eq!(on_answer(State::Acknowledged, 100, 200), Answer::Duplicate);
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
            // The API shows the stored word.
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
