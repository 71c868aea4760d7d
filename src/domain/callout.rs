//! The call-out state machine (pure): states of SPEC §2 and what a deadline or an answer does.
//! The store applies these decisions; nothing here reads a clock or a database.

use serde::Serialize;

use super::{ChannelKind, Rung};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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

#[cfg(test)]
mod prop_tests {
    //! Property tests of the call-out state machine (issue 12 §5): random event sequences,
    //! applied the way the store applies them (each write guarded by the states it may leave,
    //! the decisions from `on_deadline` and `on_answer`), never leave a terminal state, never
    //! record an answer twice, and never escalate an answered call-out.
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Event {
        /// Claimed for sending (dispatch).
        Claim,
        /// The gateway took it (dispatch: from planned, sending or failed).
        Sent,
        /// A delivery receipt.
        Delivered,
        /// No route left (dispatch gives up).
        Failed,
        /// The answer deadline passed at this time (escalate).
        Deadline(i64),
        /// An answer at this time (SMS, page, voice, operator).
        Answer(i64),
        /// Stood down (a Cancel, a close).
        Cancel,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Claim),
            Just(Event::Sent),
            Just(Event::Delivered),
            Just(Event::Failed),
            (0i64..2_000).prop_map(Event::Deadline),
            (0i64..2_000).prop_map(Event::Answer),
            Just(Event::Cancel),
        ]
    }

    fn rung() -> impl Strategy<Value = Rung> {
        prop_oneof![
            Just(Rung::REPEAT),
            Just(Rung::Backup),
            Just(Rung::Superior),
            Just(Rung::Duty {
                role: "county_duty".into()
            }),
            Just(Rung::Knock {
                role: Rung::KNOCKER.into()
            }),
        ]
    }

    /// A call-out as the store keeps it.
    #[derive(Debug, Clone)]
    struct Model {
        state: State,
        rung: usize,
        deadline_at: i64,
        answers: usize,
    }

    /// Moves `m` to `to` when it is in one of `from` (the store's guarded UPDATE).
    fn guarded(m: &mut Model, from: &[State], to: State) {
        if from.contains(&m.state) {
            m.state = to;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn random_events_respect_the_terminal_states(
            events in prop::collection::vec(event(), 0..40),
            ladder in prop::collection::vec(rung(), 0..5),
            reachable in prop::collection::vec(any::<bool>(), 5),
            deadline_at in 0i64..2_000,
        ) {
            let reach = |r: &Rung| match r {
                Rung::Repeat { .. } => true,
                Rung::Backup => reachable[0],
                Rung::Superior => reachable[1],
                Rung::Duty { .. } => reachable[2],
                Rung::Knock { .. } => reachable[3],
            };
            let mut m = Model { state: State::Planned, rung: 0, deadline_at, answers: 0 };
            for e in events {
                let before = m.clone();
                match e {
                    Event::Claim => guarded(&mut m, &[State::Planned, State::Failed], State::Sending),
                    Event::Sent => guarded(&mut m, &[State::Planned, State::Sending, State::Failed], State::Sent),
                    Event::Delivered => guarded(&mut m, &[State::Sent], State::Delivered),
                    Event::Failed => guarded(&mut m, &[State::Planned, State::Sending], State::Failed),
                    Event::Cancel => {
                        if m.state.awaiting() {
                            m.state = State::Cancelled;
                        }
                    }
                    Event::Deadline(now) => {
                        let d = on_deadline(m.state, m.rung, &ladder, reach);
                        if m.state == State::Acknowledged {
                            prop_assert_eq!(&d, &Deadline::Nothing, "an answered call-out escalated");
                        }
                        match d {
                            Deadline::Nothing => prop_assert!(!m.state.awaiting()),
                            Deadline::Repeat { next_rung, .. } => {
                                prop_assert!(next_rung > m.rung && next_rung <= ladder.len());
                                m.rung = next_rung;
                                m.deadline_at = now + 100;
                            }
                            Deadline::Escalate { to, next_rung } => {
                                prop_assert!(next_rung > m.rung && next_rung <= ladder.len());
                                let repeat = matches!(to, Rung::Repeat { .. });
                                prop_assert!(reach(&to) && !repeat, "escalated to {:?}", to);
                                prop_assert_eq!(&ladder[next_rung - 1], &to);
                                m.rung = next_rung;
                                m.state = State::Escalated;
                            }
                            Deadline::Unreached => {
                                // Only when no later step has anyone to call.
                                prop_assert!(ladder[m.rung.min(ladder.len())..].iter().all(|r| !reach(r)));
                                m.state = State::Unreached;
                            }
                        }
                    }
                    Event::Answer(now) => match on_answer(m.state, now, m.deadline_at) {
                        Answer::Duplicate => prop_assert_eq!(m.state, State::Acknowledged),
                        Answer::Record { late } => {
                            prop_assert_ne!(m.state, State::Acknowledged, "answered twice");
                            if matches!(m.state, State::Escalated | State::Unreached | State::Cancelled) {
                                prop_assert!(late, "an answer after {:?} is late", m.state);
                            } else {
                                prop_assert_eq!(late, now > m.deadline_at);
                            }
                            m.state = State::Acknowledged;
                            m.answers += 1;
                        }
                    },
                }
                // Terminal states: answered is for ever; escalated, unreached and cancelled
                // only ever become answered (late).
                match before.state {
                    State::Acknowledged => prop_assert_eq!(m.state, State::Acknowledged),
                    State::Escalated | State::Unreached | State::Cancelled => {
                        prop_assert!(m.state == before.state || m.state == State::Acknowledged,
                            "{:?} left for {:?} on {:?}", before.state, m.state, e)
                    }
                    _ => {}
                }
                prop_assert!(m.answers <= 1);
                prop_assert!(m.rung <= ladder.len());
            }
        }
    }
}
