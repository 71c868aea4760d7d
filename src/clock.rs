//! The one clock. Everything that asks "what time is it" asks a [`Clock`] (held by `Core`,
//! handed to the gateways); this is the only module that reads the system's time of day.
//!
//! In production it is the system clock. Tests use a manual one set to a fixed instant, so
//! that no test depends on the date or hour it runs at: either frozen (time moves only when
//! the test calls [`Clock::advance`]) or flowing from that instant at the machine's pace (for
//! tests that let real retries and time-outs play out). Measuring how long something took
//! (`std::time::Instant`) is not reading the time and stays where it is.
//!
//! The system clock is read through an anchor: the time of day when it was made (or last
//! re-synchronised) plus the monotonic time since. A step of the machine's clock (an NTP
//! correction, `date -s`) is therefore not seen by the daemon until [`Clock::resync`], which
//! the daemon's clock watch (`app`) calls only after moving the jobs planned on the old time by
//! the step: a deadline stays "30 minutes after the call-out" in real time, so an hour forward
//! does not fire every deadline at once, and an hour back does not hold them for an hour
//! (bench/faults' `clock` case).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

#[derive(Clone)]
pub struct Clock(Arc<Inner>);

enum Inner {
    /// Unix ms = `base_ms` + monotonic time since `started` (see the module doc).
    System { base_ms: AtomicI64, started: Instant },
    /// `base_ms` (plus what real time has passed since `started`, when flowing).
    Manual {
        base_ms: AtomicI64,
        flowing: Option<Instant>,
    },
}

impl Clock {
    pub fn system() -> Clock {
        let started = Instant::now();
        Clock(Arc::new(Inner::System {
            base_ms: AtomicI64::new(Utc::now().timestamp_millis()),
            started,
        }))
    }

    /// How far the machine's clock has stepped away from this one, in ms (positive: forward);
    /// always 0 for a manual clock. Only steps show: both run at the machine's pace.
    pub fn step_ms(&self) -> i64 {
        match &*self.0 {
            Inner::System { .. } => Utc::now().timestamp_millis() - self.now_ms(),
            Inner::Manual { .. } => 0,
        }
    }

    /// Takes up the machine's clock again after a step (and returns the step taken, ms).
    /// The caller moves what was planned on the old time first (`app`'s clock watch).
    pub fn resync(&self) -> i64 {
        match &*self.0 {
            Inner::System { base_ms, started } => {
                let step = self.step_ms();
                base_ms.store(
                    Utc::now().timestamp_millis() - started.elapsed().as_millis() as i64,
                    Ordering::SeqCst,
                );
                step
            }
            Inner::Manual { .. } => 0,
        }
    }

    /// A clock that stands at `at` until advanced.
    pub fn frozen(at: DateTime<Utc>) -> Clock {
        Clock(Arc::new(Inner::Manual {
            base_ms: AtomicI64::new(at.timestamp_millis()),
            flowing: None,
        }))
    }

    /// A clock that reads `at` now and then moves with real time (and jumps when advanced).
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock(Arc::new(Inner::Manual {
            base_ms: AtomicI64::new(at.timestamp_millis()),
            flowing: Some(Instant::now()),
        }))
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &*self.0 {
            Inner::System { base_ms, started } => {
                base_ms.load(Ordering::SeqCst) + started.elapsed().as_millis() as i64
            }
            Inner::Manual { base_ms, flowing } => {
                let passed = flowing.map_or(0, |s| s.elapsed().as_millis() as i64);
                base_ms.load(Ordering::SeqCst) + passed
            }
        }
    }

    /// The machine's time of day this instant, in Unix ms, for what another machine checks
    /// against its own clock (request signatures, a callback's replay window). Unlike
    /// [`Clock::now_ms`] it takes a step of the machine's clock at once: the step usually puts
    /// us right with the world, and in the second before the clock watch takes it up our
    /// signed requests must not carry the old time (a provider refuses one more than 5 or 15
    /// minutes off). A manual clock: the same as `now_ms`.
    pub fn wall_ms(&self) -> i64 {
        match &*self.0 {
            Inner::System { .. } => Utc::now().timestamp_millis(),
            Inner::Manual { .. } => self.now_ms(),
        }
    }

    /// [`Clock::wall_ms`] in Unix seconds.
    pub fn wall_secs(&self) -> i64 {
        self.wall_ms().div_euclid(1000)
    }

    /// [`Clock::wall_ms`] as a date.
    pub fn wall(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.wall_ms())
            .single()
            .expect("the clock reads a representable instant")
    }

    /// Unix seconds.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.now_ms())
            .single()
            .expect("the clock reads a representable instant")
    }

    /// Moves a manual clock forward (or back, for a negative `ms`). The system clock cannot be
    /// moved: asking is a bug in the caller.
    pub fn advance_ms(&self, ms: i64) {
        match &*self.0 {
            Inner::System { .. } => panic!("the system clock cannot be advanced"),
            Inner::Manual { base_ms, .. } => {
                base_ms.fetch_add(ms, Ordering::SeqCst);
            }
        }
    }

    pub fn advance(&self, d: Duration) {
        self.advance_ms(d.as_millis() as i64);
    }

    pub fn is_manual(&self) -> bool {
        matches!(&*self.0, Inner::Manual { .. })
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Inner::System { .. } => f.write_str("Clock::system"),
            Inner::Manual { flowing, .. } => write!(
                f,
                "Clock::manual({}, {})",
                self.now().to_rfc3339(),
                if flowing.is_some() { "flowing" } else { "frozen" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 16, 0, 0).unwrap();
        let c = Clock::frozen(at);
        assert_eq!(c.now(), at);
        assert_eq!(c.now_ms(), c.now_ms());
        c.advance(Duration::from_secs(3600));
        assert_eq!(c.now(), at + chrono::Duration::hours(1));
        c.advance_ms(-7_200_000);
        assert_eq!(c.now(), at - chrono::Duration::hours(1));
        assert!(c.is_manual());
    }

    #[test]
    fn a_flowing_clock_starts_at_its_instant_and_never_goes_back() {
        let at = Utc.with_ymd_and_hms(2026, 7, 15, 2, 0, 0).unwrap();
        let c = Clock::starting_at(at);
        let a = c.now_ms();
        assert!(a >= at.timestamp_millis() && a < at.timestamp_millis() + 60_000);
        assert!(c.now_ms() >= a);
        let shared = c.clone();
        shared.advance(Duration::from_secs(60));
        assert!(c.now_ms() >= a + 60_000, "clones share one clock");
    }

    #[test]
    fn the_system_clock_follows_the_machine_until_it_steps() {
        let c = Clock::system();
        let wall = Utc::now().timestamp_millis();
        assert!((c.now_ms() - wall).abs() < 1000);
        assert!(c.step_ms().abs() < 1000, "no step yet");
        assert!(c.resync().abs() < 1000);
        assert_eq!(Clock::frozen(Utc::now()).step_ms(), 0);
    }

    /// A step of the machine's clock not yet taken up: the daemon's time keeps its pace, the
    /// wall time (what signatures carry) has the step already.
    #[test]
    fn the_wall_time_takes_a_step_at_once() {
        let c = Clock::system();
        if let Inner::System { base_ms, .. } = &*c.0 {
            // As if the machine's clock had stepped an hour forward since the anchor.
            base_ms.fetch_sub(3_600_000, Ordering::SeqCst);
        }
        assert!((c.wall_ms() - Utc::now().timestamp_millis()).abs() < 1000);
        assert!((c.wall_ms() - c.now_ms() - 3_600_000).abs() < 1000);
        assert!((c.step_ms() - 3_600_000).abs() < 1000);
        assert!((c.wall_secs() - c.wall().timestamp()).abs() <= 1);
        let frozen = Clock::frozen(Utc.with_ymd_and_hms(2026, 7, 15, 2, 0, 0).unwrap());
        assert_eq!(
            frozen.wall_ms(),
            frozen.now_ms(),
            "tests sign with their own clock"
        );
    }

    #[test]
    #[should_panic(expected = "cannot be advanced")]
    fn the_system_clock_refuses_to_move() {
        Clock::system().advance(Duration::from_secs(1));
    }
}
