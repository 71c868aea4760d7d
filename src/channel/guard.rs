//! What stands in front of every gateway, whatever its kind: a rate limit (the provider's QPS),
//! a concurrency limit, and a circuit breaker that stops sending to a gateway that keeps
//! failing, so that its call-outs fail over at once instead of waiting out time-outs, and probes
//! it with one send after a cool-down. A call-out with no other route waits for the probe: an
//! open circuit is never a reason to give up on a person. Per-recipient caps are not here: they must hold across
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
                limits.breaker_rate,
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
            // A send with another route goes there at once; one on a person's last route waits
            // here for the probe (in memory, its batch's claim renewed meanwhile), at most
            // `WAIT_HERE`, and only then goes back to the queue until the circuit's next probe.
            let waiting_since = std::time::Instant::now();
            loop {
                // Read, then let go of the lock (an `if let` would hold it through its block).
                let admitted = self.lock().admit(self.clock.now_ms());
                let Err(retry_at) = admitted else { break };
                if !msg.last_route || waiting_since.elapsed() >= WAIT_HERE {
                    return Err(SendError::CircuitOpen {
                        reason: format!(
                            "the gateway keeps failing; tried again in {} ms",
                            retry_at - self.clock.now_ms()
                        ),
                        retry_at,
                    });
                }
                // Polled, not slept until `retry_at`: a success from a send in flight closes the
                // circuit early, and a test's clock may be moved on.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let result = self.inner.send(msg).await;
            let now = self.clock.now_ms();
            let (opened, (failures, of)) = {
                let mut b = self.lock();
                (b.record(result_kind(&result), now), b.seen())
            };
            if opened {
                tracing::error!(
                    failures, of,
                    error = %result.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
                    "a gateway keeps failing: its circuit is open; its call-outs fail over, or wait for its probe on their last route"
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

/// Results a breaker looks back over: enough that a gateway failing 40 % of its sends does not
/// look dead after an unlucky run, nor when the time-outs of a whole batch come back together
/// (the fault suite saw 38 of 50 results fail at that moment), few enough that a dead one is
/// seen within a second.
const WINDOW: usize = 200;

/// How long a send on a person's last route waits for an open circuit before it is put back
/// in the queue (a stop waits for the batch in hand: not for ever).
const WAIT_HERE: std::time::Duration = std::time::Duration::from_secs(30);

/// A circuit breaker, pure. Closed while the gateway answers: it opens when, over its last
/// `WINDOW` results, at least `min_failures` failed and they are at least `rate` of them (a
/// gateway that fails 40 % of its sends still delivers the other 60 %, and on a person's only
/// route waiting helps nobody; one that fails three in four is as good as down). Open for
/// `cooldown_ms`, then half-open: one probe is let through; its success closes the circuit,
/// its failure opens it again. A success from a send already in flight closes it too.
#[derive(Debug, Clone)]
pub struct Breaker {
    min_failures: u32,
    rate: f64,
    cooldown_ms: i64,
    /// The last results, `true` for a failure; `failures` counts the `true`s.
    recent: std::collections::VecDeque<bool>,
    failures: u32,
    open_until: Option<i64>,
    probing: bool,
}

impl Breaker {
    pub fn new(min_failures: u32, rate: f64, cooldown_ms: i64) -> Breaker {
        Breaker {
            min_failures: min_failures.max(1),
            rate: rate.clamp(0.0, 1.0),
            cooldown_ms,
            recent: std::collections::VecDeque::new(),
            failures: 0,
            open_until: None,
            probing: false,
        }
    }

    /// May a send go now? `Err(when)` while the circuit is open or its probe is out: the
    /// earliest time worth trying again.
    pub fn admit(&mut self, now: i64) -> Result<(), i64> {
        match self.open_until {
            None => Ok(()),
            Some(until) if now < until => Err(until),
            // The probe's answer is not back: ask again in a tenth of the cool-down (at least
            // a second), not in a loop.
            Some(_) if self.probing => Err(now + (self.cooldown_ms / 10).max(1000)),
            Some(_) => {
                self.probing = true;
                Ok(())
            }
        }
    }

    /// Records a send's result; returns true when this result opened the circuit.
    pub fn record(&mut self, h: Health, now: i64) -> bool {
        if self.open_until.is_some() {
            match h {
                Health::Answered => self.close(),
                // The probe failed: another cool-down. (A failure from a send that was already
                // in flight when the circuit opened changes nothing.)
                Health::Failed if self.probing => {
                    self.open_until = Some(now + self.cooldown_ms);
                    self.probing = false;
                }
                Health::Failed => {}
            }
            return false;
        }
        let failed = h == Health::Failed;
        self.recent.push_back(failed);
        self.failures += u32::from(failed);
        if self.recent.len() > WINDOW.max(self.min_failures as usize) {
            let old = self.recent.pop_front() == Some(true);
            self.failures -= u32::from(old);
        }
        let share = f64::from(self.failures) / self.recent.len() as f64;
        if failed && self.failures >= self.min_failures && share >= self.rate {
            self.open_until = Some(now + self.cooldown_ms);
            return true;
        }
        false
    }

    fn close(&mut self) {
        *self = Breaker::new(self.min_failures, self.rate, self.cooldown_ms);
    }

    /// The failures and results it is looking at (for the log line that says why it opened).
    pub fn seen(&self) -> (u32, usize) {
        (self.failures, self.recent.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_gateway_opens_at_once_and_is_probed_once_after_the_cooldown() {
        let mut b = Breaker::new(3, 0.75, 1000);
        for t in 0..2 {
            assert_eq!(b.admit(t), Ok(()));
            assert!(!b.record(Health::Failed, t));
        }
        assert!(b.record(Health::Failed, 2), "three of three failed: open");
        assert_eq!(b.admit(6), Err(1002));
        assert_eq!(b.admit(1001), Err(1002));
        // A failure already in flight when it opened does not extend the cool-down.
        assert!(!b.record(Health::Failed, 500));
        // After the cool-down one probe goes; the others are told to come back later, not now.
        assert_eq!(b.admit(1002), Ok(()));
        assert_eq!(b.admit(1003), Err(2003), "a second later, not in a loop");
        assert!(!b.record(Health::Failed, 1010), "a failed probe keeps it open");
        assert_eq!(b.admit(1500), Err(2010));
        assert_eq!(b.admit(2010), Ok(()));
        b.record(Health::Answered, 2011);
        assert_eq!(b.admit(2012), Ok(()));
        assert_eq!(b.admit(2013), Ok(()), "closed: everything goes");
        assert_eq!(b.seen(), (0, 0), "closing forgets the failures");
    }

    #[test]
    fn a_gateway_failing_four_sends_in_ten_stays_closed() {
        // The fault suite's flaky gateway: 40 % failures, in an unlucky order (four in a row
        // at the start, then the rest spread). It opened after three in a row before.
        let mut b = Breaker::new(5, 0.75, 1000);
        let mut opened = false;
        for i in 0..10_000 {
            let failed = i < 4 || i % 10 < 4;
            opened |= b.record(if failed { Health::Failed } else { Health::Answered }, i);
        }
        assert!(!opened);
        assert_eq!(b.admit(10_000), Ok(()));
        assert_eq!(b.seen(), (80, WINDOW));
    }

    #[test]
    fn a_gateway_failing_three_sends_in_four_opens() {
        let mut b = Breaker::new(5, 0.75, 1000);
        let mut opened_at = None;
        for i in 0..200 {
            let failed = i % 4 != 0;
            if b.record(if failed { Health::Failed } else { Health::Answered }, i) {
                opened_at = Some(i);
                break;
            }
        }
        // 0 answered, 1 2 3 failed, 4 answered, 5 6 7 failed: five failures of seven, then the
        // sixth of eight is 75 %.
        assert_eq!(opened_at, Some(7));
        assert!(b.admit(8).is_err());
    }
}
