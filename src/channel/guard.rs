//! What stands in front of every gateway, whatever its kind: a rate limit (the provider's QPS),
//! a concurrency limit, and a circuit breaker that stops sending to a gateway that keeps
//! failing, so that its call-outs fail over at once instead of waiting out time-outs, and probes
//! it with one send after a cool-down. Per-recipient caps are not here: they must hold across
//! instances and restarts, so dispatch counts them in the database.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::event::{Answer, Callback, Event, Lookup, Outcome, Refused, Unconfirmed};
use super::{Channel, Outgoing, SendError};
use crate::clock::Clock;
use crate::config::Limits;

pub struct Guarded {
    inner: Arc<dyn Channel>,
    rate: Option<DefaultDirectRateLimiter>,
    permits: Semaphore,
    breaker: Mutex<Breaker>,
    clock: Clock,
}

impl Guarded {
    pub fn new(inner: Arc<dyn Channel>, limits: &Limits, clock: Clock) -> Guarded {
        let rate = limits.rate.filter(|r| *r > 0.0).map(|r| {
            // A fractional rate (0.5/s) is one request per 1/r seconds.
            let quota = if r >= 1.0 {
                Quota::per_second(NonZeroU32::new(r as u32).unwrap_or(NonZeroU32::MIN))
            } else {
                Quota::with_period(std::time::Duration::from_secs_f64(1.0 / r))
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            };
            RateLimiter::direct(quota)
        });
        Guarded {
            inner,
            rate,
            permits: Semaphore::new(limits.concurrency.max(1)),
            breaker: Mutex::new(Breaker::new(
                limits.breaker_failures,
                limits.breaker_cooldown.as_millis() as i64,
            )),
            clock,
        }
    }
}

impl Channel for Guarded {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let _permit = self.permits.acquire().await.map_err(|_| SendError::Transient {
                reason: "gateway shutting down".into(),
                retry_after: None,
            })?;
            if let Some(rate) = &self.rate {
                rate.until_ready().await;
            }
            // Asked once a permit is held: the sends queued behind a failing one see its result.
            // Read, then let go of the lock (an `if let` would hold it through its block).
            let admitted = self.lock().admit(self.clock.now_ms());
            if let Err(until) = admitted {
                let threshold = self.lock().threshold;
                return Err(SendError::CircuitOpen {
                    reason: format!(
                        "the gateway failed {threshold} times in a row; one probe after {} ms",
                        until - self.clock.now_ms()
                    ),
                });
            }
            let result = self.inner.send(msg).await;
            let now = self.clock.now_ms();
            let opened = self.lock().record(result_kind(&result), now);
            if opened {
                tracing::error!(
                    error = %result.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
                    "a gateway keeps failing: its circuit is open, its call-outs fail over"
                );
            }
            result
        })
    }

    fn lookup<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Lookup> {
        self.inner.lookup(msg)
    }

    fn callback(&self, req: &Callback) -> Result<Vec<Event>, Refused> {
        self.inner.callback(req)
    }

    fn answer(&self, req: &Callback, outcomes: &[Outcome]) -> Answer {
        self.inner.answer(req, outcomes)
    }

    fn reconcile<'a>(&'a self, sends: &'a [Unconfirmed]) -> BoxFuture<'a, Vec<Event>> {
        self.inner.reconcile(sends)
    }
}

impl Guarded {
    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // A panic while holding this lock leaves plain counters: still usable.
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a send's result says about the gateway's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It answered (a success, or a refusal that is about the message, not the gateway).
    Answered,
    /// It did not answer or failed in itself (5xx, time-out, connection refused).
    Failed,
}

fn result_kind(r: &Result<String, SendError>) -> Health {
    match r {
        Ok(_) | Err(SendError::Permanent { .. }) | Err(SendError::Capped { .. }) => Health::Answered,
        Err(SendError::CircuitOpen { .. }) => Health::Failed,
        Err(SendError::Transient { .. }) | Err(SendError::Unanswered { .. }) => Health::Failed,
    }
}

/// A circuit breaker, pure: closed until `threshold` failures in a row, then open for
/// `cooldown_ms`, then half-open: one probe is let through; its success closes the circuit,
/// its failure opens it again.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown_ms: i64,
    failures: u32,
    open_until: Option<i64>,
    probing: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown_ms: i64) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown_ms,
            failures: 0,
            open_until: None,
            probing: false,
        }
    }

    /// May a send go now? `Err(until)` while the circuit is open (or a probe is out).
    pub fn admit(&mut self, now: i64) -> Result<(), i64> {
        match self.open_until {
            None => Ok(()),
            Some(until) if now < until || self.probing => Err(until.max(now)),
            Some(_) => {
                self.probing = true;
                Ok(())
            }
        }
    }

    /// Records a send's result; returns true when this result opened the circuit.
    pub fn record(&mut self, h: Health, now: i64) -> bool {
        match h {
            Health::Answered => {
                *self = Breaker::new(self.threshold, self.cooldown_ms);
                false
            }
            Health::Failed => {
                self.failures += 1;
                let was_open = self.open_until.is_some();
                if self.probing || self.failures >= self.threshold {
                    self.open_until = Some(now + self.cooldown_ms);
                    self.probing = false;
                    return !was_open;
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_probes_once_after_the_cooldown() {
        let mut b = Breaker::new(3, 1000);
        for t in 0..2 {
            assert_eq!(b.admit(t), Ok(()));
            assert!(!b.record(Health::Failed, t));
        }
        // A success in between resets the count.
        assert!(!b.record(Health::Answered, 2));
        for t in 3..5 {
            assert!(!b.record(Health::Failed, t));
        }
        assert!(b.record(Health::Failed, 5), "the third failure in a row opens it");
        assert_eq!(b.admit(6), Err(1005));
        assert_eq!(b.admit(1004), Err(1005));
        // After the cool-down one probe goes; the next waits for its result.
        assert_eq!(b.admit(1005), Ok(()));
        assert_eq!(b.admit(1006), Err(1006));
        assert!(!b.record(Health::Failed, 1010), "a failed probe keeps it open");
        assert_eq!(b.admit(1500), Err(2010));
        assert_eq!(b.admit(2010), Ok(()));
        b.record(Health::Answered, 2011);
        assert_eq!(b.admit(2012), Ok(()));
        assert_eq!(b.admit(2013), Ok(()), "closed: everything goes");
    }
}
