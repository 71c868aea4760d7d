//! Where a call-out's message may go and what follows one try, decided without IO: the
//! (channel, gateway, address) routes in order (`route`), and after an attempt whether it is
//! done, tried again later, failed over to the next route or given up (`next_step`).
//! `dispatch` applies these; this module must not send, read or write anything.

use std::time::Duration;

use crate::channel::SendError;
use crate::config::Settings;
use crate::domain::ChannelKind;
use crate::store::callouts::Callout;

/// The (channel, gateway, address) hops a call-out may go through, in order: the contact's
/// own channel preference or the policy's, each channel's gateways in config order.
pub fn route(
    settings: &Settings,
    policy_channels: &[ChannelKind],
    c: &Callout,
) -> Vec<(ChannelKind, String, String)> {
    let order = if c.channels.is_empty() {
        policy_channels.to_vec()
    } else {
        c.channels.clone()
    };
    let mut out = Vec::new();
    for ch in order {
        let address = match ch {
            ChannelKind::Sms | ChannelKind::Voice => c.phone.clone(),
            ChannelKind::Email => c.email.clone(),
            ChannelKind::Webhook => Some(c.contact_key.clone()),
        };
        let Some(address) = address else { continue };
        for g in settings.channels.gateways(ch) {
            out.push((ch, g.clone(), address.clone()));
        }
    }
    out
}

/// What follows one attempt (pure).
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Done,
    /// Same hop again at `due_at`.
    Retry {
        due_at: i64,
        attempts: i64,
    },
    /// The next gateway or channel, now.
    Failover {
        hop: usize,
    },
    /// No hop left: the call-out has failed (its deadline still escalates it).
    GiveUp,
}

/// How often a send is tried on one route (`[dispatch]`).
#[derive(Debug, Clone, Copy)]
pub struct Retries<'a> {
    pub backoff: &'a [Duration],
    /// Tries on a person's last route before the call-out is given up (its deadline still
    /// escalates it); on earlier routes the backoff running out means the next route.
    pub max_tries: i64,
}

pub fn next_step(
    result: &Result<String, SendError>,
    attempts_on_hop: i64,
    hop: usize,
    hops: usize,
    retries: Retries,
    now: i64,
) -> Next {
    let last = hop + 1 >= hops;
    let failover = || match last {
        false => Next::Failover { hop: hop + 1 },
        true => Next::GiveUp,
    };
    match result {
        Ok(_) => Next::Done,
        // A provider's or our own per-recipient cap: another route, never a hammering retry.
        Err(SendError::Permanent { .. } | SendError::Capped { .. }) => failover(),
        // An open circuit: another route now if there is one, else when it is probed. Nothing
        // was sent, so the wait is not a try: a person is never given up for our own breaker.
        Err(SendError::CircuitOpen { .. }) if !last => failover(),
        Err(SendError::CircuitOpen { retry_at, .. }) => Next::Retry {
            due_at: (*retry_at).max(now + 1000),
            attempts: attempts_on_hop,
        },
        Err(e @ (SendError::Transient { .. } | SendError::Unanswered { .. })) => {
            // On the last route the backoff's last step repeats, up to `max_tries`: a gateway
            // that fails 40 % of the time still reaches everyone.
            let wait = match retries.backoff.get(attempts_on_hop as usize) {
                Some(w) => Some(*w),
                None if last && attempts_on_hop + 1 < retries.max_tries => retries.backoff.last().copied(),
                None => None,
            };
            match wait {
                Some(wait) => {
                    let retry_after = match e {
                        SendError::Transient { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    let wait = retry_after
                        .map_or(wait, |r| r.max(wait))
                        .min(Duration::from_secs(3600));
                    Next::Retry {
                        due_at: now + wait.as_millis() as i64,
                        attempts: attempts_on_hop + 1,
                    }
                }
                None => failover(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(20)];
    const R: Retries = Retries {
        backoff: &BACKOFF,
        max_tries: 6,
    };

    fn transient(after: Option<u64>) -> Result<String, SendError> {
        Err(SendError::Transient {
            reason: "503".into(),
            retry_after: after.map(Duration::from_secs),
        })
    }

    #[test]
    fn transient_errors_back_off_then_fail_over_then_keep_trying_on_the_last_route() {
        assert_eq!(next_step(&Ok("id".into()), 0, 0, 2, R, 0), Next::Done);
        assert_eq!(
            next_step(&transient(None), 0, 0, 2, R, 1000),
            Next::Retry {
                due_at: 6000,
                attempts: 1
            }
        );
        assert_eq!(
            next_step(&transient(Some(60)), 1, 0, 2, R, 0),
            Next::Retry {
                due_at: 60_000,
                attempts: 2
            }
        );
        assert_eq!(
            next_step(&transient(None), 2, 0, 2, R, 0),
            Next::Failover { hop: 1 }
        );
        // The last route: the last step repeats until six tries, then the call-out fails.
        for tried in 2..5 {
            assert_eq!(
                next_step(&transient(None), tried, 1, 2, R, 0),
                Next::Retry {
                    due_at: 20_000,
                    attempts: tried + 1
                }
            );
        }
        assert_eq!(next_step(&transient(None), 5, 1, 2, R, 0), Next::GiveUp);
    }

    #[test]
    fn capped_and_unanswered_sends() {
        let capped = Err(SendError::Capped {
            reason: "50/24h".into(),
        });
        assert_eq!(next_step(&capped, 0, 0, 2, R, 0), Next::Failover { hop: 1 });
        assert_eq!(next_step(&capped, 0, 1, 2, R, 0), Next::GiveUp);
        let lost = Err(SendError::Unanswered {
            reason: "timed out".into(),
        });
        assert_eq!(
            next_step(&lost, 0, 0, 2, R, 0),
            Next::Retry {
                due_at: 5000,
                attempts: 1
            }
        );
    }

    #[test]
    fn an_open_circuit_on_the_last_route_waits_for_its_probe_and_never_gives_up() {
        let open = |retry_at| {
            Err(SendError::CircuitOpen {
                reason: "keeps failing".into(),
                retry_at,
            })
        };
        assert_eq!(next_step(&open(30_000), 0, 0, 2, R, 0), Next::Failover { hop: 1 });
        assert_eq!(
            next_step(&open(30_000), 0, 1, 2, R, 0),
            Next::Retry {
                due_at: 30_000,
                attempts: 0
            }
        );
        // However often it met the open circuit, and past the tries: not a try, not given up.
        assert_eq!(
            next_step(&open(30_000), 99, 0, 1, R, 29_999),
            Next::Retry {
                due_at: 30_999,
                attempts: 99
            },
            "at least a second later, never in a loop"
        );
    }

    #[test]
    fn permanent_errors_fail_over_at_once() {
        let e = Err(SendError::Permanent { reason: "400".into() });
        assert_eq!(next_step(&e, 0, 0, 3, R, 0), Next::Failover { hop: 1 });
        assert_eq!(next_step(&e, 0, 2, 3, R, 0), Next::GiveUp);
    }
}
