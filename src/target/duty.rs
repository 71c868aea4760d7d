//! Duty rosters (pure): who holds a role in a region at a given time. A role that has shifts in
//! a region calls only whoever is on shift; when nobody is, every holder of the role is called
//! and the reason says so. Resolved when an incident is planned and again when a `duty:` step
//! of the ladder fires.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::domain::RegionCode;
use crate::target::roster::{role_label, Contact, DutyShift, Shift};

/// Time zone of a cron shift that names none.
pub const DEFAULT_TZ: &str = "Asia/Shanghai";

/// A shift ready to test against a time.
enum When {
    Cron {
        schedule: Box<cron::Schedule>,
        minutes: i64,
        tz: Tz,
    },
    Dates {
        from: i64,
        to: i64,
    },
}

/// Checks a shift as the importer reads it: the cron expression, the time zone, the range.
pub fn check(shift: &Shift) -> Result<(), String> {
    compile(shift).map(|_| ())
}

fn compile(shift: &Shift) -> Result<When, String> {
    match shift {
        Shift::Cron { expr, minutes, tz } => {
            let schedule = cron::Schedule::from_str(expr)
                .map_err(|e| format!("cron expression {expr:?}: {e} (seconds first: \"0 0 8 * * *\")"))?;
            let tz_name = if tz.is_empty() { DEFAULT_TZ } else { tz };
            let tz = tz_name
                .parse::<Tz>()
                .map_err(|_| format!("time zone {tz_name:?} is not an IANA name such as Asia/Shanghai"))?;
            if *minutes == 0 {
                return Err("a shift lasts at least one minute".into());
            }
            Ok(When::Cron {
                schedule: Box::new(schedule),
                minutes: i64::from(*minutes),
                tz,
            })
        }
        Shift::Dates { from, to } if from < to => Ok(When::Dates { from: *from, to: *to }),
        Shift::Dates { .. } => Err("a date range must end after it starts".into()),
    }
}

impl When {
    fn holds(&self, t_ms: i64) -> bool {
        match self {
            When::Dates { from, to } => (*from..*to).contains(&t_ms),
            // On shift when the schedule fired within the last `minutes`: the first firing
            // after (t - minutes) is at or before t.
            When::Cron {
                schedule,
                minutes,
                tz,
            } => {
                let Some(start) = Utc.timestamp_millis_opt(t_ms - minutes * 60_000).single() else {
                    return false;
                };
                schedule
                    .after(&start.with_timezone(tz))
                    .next()
                    .is_some_and(|fire| fire.timestamp_millis() <= t_ms)
            }
        }
    }
}

/// Does `shift` hold at `t_ms`? A shift that does not compile never holds.
pub fn holds(shift: &Shift, t_ms: i64) -> bool {
    compile(shift).is_ok_and(|w| w.holds(t_ms))
}

/// "每天 08:00 起 24 小时" is for people; this says what the roster says, briefly.
pub fn describe(shift: &Shift) -> String {
    match shift {
        Shift::Cron { expr, minutes, tz } => {
            let tz = if tz.is_empty() { DEFAULT_TZ } else { tz };
            format!("班次 cron \"{expr}\" 起 {minutes} 分钟 ({tz})")
        }
        Shift::Dates { from, to } => {
            let fmt = |ms: i64| {
                DateTime::<Utc>::from_timestamp_millis(ms)
                    .map(|d| {
                        d.with_timezone(&chrono_tz::Asia::Shanghai)
                            .format("%m-%d %H:%M")
                            .to_string()
                    })
                    .unwrap_or_else(|| ms.to_string())
            };
            format!("班次 {}–{}", fmt(*from), fmt(*to))
        }
    }
}

/// The shifts of a roster, by (role, region), compiled once per roster load.
pub struct Duty<'a> {
    shifts: HashMap<(&'a str, &'a RegionCode), Vec<(&'a DutyShift, When)>>,
}

/// Who to call for a role in a region.
#[derive(Debug, Clone)]
pub struct Holder<'c> {
    pub contact: &'c Contact,
    /// The shift that puts them on duty, or why every holder is called; None when the role has
    /// no duty roster in that region.
    pub shift: Option<String>,
}

impl<'a> Duty<'a> {
    /// Shifts that do not compile are left out (the importer refuses them).
    pub fn new(shifts: &'a [DutyShift]) -> Duty<'a> {
        let mut by: HashMap<_, Vec<_>> = HashMap::new();
        for s in shifts {
            if let Ok(w) = compile(&s.shift) {
                by.entry((s.role.as_str(), &s.region)).or_default().push((s, w));
            }
        }
        Duty { shifts: by }
    }

    /// Does `role` have a duty roster in `region`?
    pub fn has_roster(&self, role: &str, region: &RegionCode) -> bool {
        self.shifts.contains_key(&(role, region))
    }

    /// The contact keys on shift for `role` in `region` at `t_ms`, with the shift.
    pub fn on_shift(&self, role: &str, region: &RegionCode, t_ms: i64) -> Vec<(&'a str, &'a Shift)> {
        self.shifts
            .get(&(role, region))
            .into_iter()
            .flatten()
            .filter(|(_, w)| w.holds(t_ms))
            .map(|(s, _)| (s.contact_key.as_str(), &s.shift))
            .collect()
    }

    /// Whom to call for `role` in `region` at `t_ms`: the people on shift when the role has a
    /// roster there and someone is on it; otherwise every holder (`holders`: the contacts whose
    /// role and region these are), saying why.
    pub fn resolve<'c>(
        &self,
        role: &str,
        region: &RegionCode,
        t_ms: i64,
        holders: &[&'c Contact],
        by_key: &impl Fn(&str) -> Option<&'c Contact>,
    ) -> Vec<Holder<'c>> {
        if !self.has_roster(role, region) {
            return holders
                .iter()
                .map(|c| Holder {
                    contact: c,
                    shift: None,
                })
                .collect();
        }
        let mut out: Vec<Holder<'c>> = Vec::new();
        for (key, shift) in self.on_shift(role, region, t_ms) {
            if let Some(c) = by_key(key) {
                if !out.iter().any(|h| h.contact.id == c.id) {
                    out.push(Holder {
                        contact: c,
                        shift: Some(format!("{}在班：{}", role_label(role), describe(shift))),
                    });
                }
            }
        }
        if out.is_empty() {
            let why = format!(
                "{}无人在班，通知全部{}人 (nobody on shift)",
                role_label(role),
                holders.len()
            );
            out = holders
                .iter()
                .map(|c| Holder {
                    contact: c,
                    shift: Some(why.clone()),
                })
                .collect();
        }
        out
    }
}

/// A contact reachable by e-mail only, for tests here and in plan.rs.
#[cfg(test)]
pub(crate) fn test_contact(id: i64, key: &str, role: &str, region: &str) -> Contact {
    Contact {
        id,
        key: key.into(),
        name: key.into(),
        phone: None,
        email: Some("x@y.z".into()),
        role: role.into(),
        region: RegionCode::parse(region).unwrap(),
        backup: None,
        superior: None,
        channels: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn contact(id: i64, key: &str, role: &str, region: &str) -> Contact {
        test_contact(id, key, role, region)
    }

    fn shift(key: &str, s: Shift) -> DutyShift {
        DutyShift {
            role: "township_duty".into(),
            region: RegionCode::parse("450921104").unwrap(),
            contact_key: key.into(),
            shift: s,
        }
    }

    #[test]
    fn cron_shifts_hold_for_their_minutes_in_their_zone() {
        // Day shift 08:00–20:00 Beijing time, weekdays only.
        let day = Shift::Cron {
            expr: "0 0 8 * * Mon-Fri".into(),
            minutes: 720,
            tz: String::new(),
        };
        assert!(holds(&day, at("2026-06-01T08:00:00+08:00")), "Monday 08:00");
        assert!(holds(&day, at("2026-06-01T19:59:00+08:00")));
        assert!(!holds(&day, at("2026-06-01T20:00:00+08:00")));
        assert!(!holds(&day, at("2026-06-01T07:59:00+08:00")));
        assert!(!holds(&day, at("2026-06-06T09:00:00+08:00")), "Saturday");
        // Night shift crossing midnight, in UTC terms 12:00–00:00.
        let night = Shift::Cron {
            expr: "0 0 20 * * *".into(),
            minutes: 720,
            tz: "Asia/Shanghai".into(),
        };
        assert!(holds(&night, at("2026-06-02T02:00:00+08:00")));
        assert!(!holds(&night, at("2026-06-02T08:00:00+08:00")));
        let utc = Shift::Cron {
            expr: "0 0 8 * * *".into(),
            minutes: 60,
            tz: "UTC".into(),
        };
        assert!(holds(&utc, at("2026-06-01T16:30:00+08:00")));
        assert!(!holds(&utc, at("2026-06-01T08:30:00+08:00")));
    }

    #[test]
    fn date_ranges_and_bad_shifts() {
        let d = Shift::Dates {
            from: at("2026-06-01T00:00:00+08:00"),
            to: at("2026-06-08T00:00:00+08:00"),
        };
        assert!(holds(&d, at("2026-06-07T23:59:00+08:00")));
        assert!(!holds(&d, at("2026-06-08T00:00:00+08:00")));
        let bad = Shift::Cron {
            expr: "every day".into(),
            minutes: 60,
            tz: String::new(),
        };
        assert!(check(&bad).unwrap_err().contains("every day"));
        let tz = Shift::Cron {
            expr: "0 0 8 * * *".into(),
            minutes: 60,
            tz: "Beijing".into(),
        };
        assert!(check(&tz).unwrap_err().contains("Beijing"));
        assert!(!holds(&bad, 0));
    }

    #[test]
    fn a_rostered_role_calls_only_who_is_on_shift_else_everyone_with_the_reason() {
        let a = contact(1, "a", "township_duty", "450921104");
        let b = contact(2, "b", "township_duty", "450921104");
        let roster = vec![
            shift(
                "a",
                Shift::Cron {
                    expr: "0 0 8 * * *".into(),
                    minutes: 720,
                    tz: String::new(),
                },
            ),
            shift(
                "b",
                Shift::Dates {
                    from: at("2026-06-03T00:00:00+08:00"),
                    to: at("2026-06-04T00:00:00+08:00"),
                },
            ),
        ];
        let duty = Duty::new(&roster);
        let town = RegionCode::parse("450921104").unwrap();
        let holders = [&a, &b];
        let by_key: HashMap<&str, &Contact> = [("a", &a), ("b", &b)].into_iter().collect();
        let by_key = |k: &str| by_key.get(k).copied();
        let who = |t| duty.resolve("township_duty", &town, at(t), &holders, &by_key);
        let noon = who("2026-06-01T12:00:00+08:00");
        assert_eq!(noon.len(), 1);
        assert_eq!(noon[0].contact.key, "a");
        assert!(noon[0].shift.as_deref().unwrap().contains("在班"));
        let night = who("2026-06-01T23:00:00+08:00");
        assert_eq!(night.len(), 2);
        assert!(night[0].shift.as_deref().unwrap().contains("无人在班"));
        let both = who("2026-06-03T09:00:00+08:00");
        assert_eq!(both.iter().map(|h| h.contact.id).collect::<Vec<_>>(), [1, 2]);
        // A role without a roster calls its holders without a shift note.
        let other = duty.resolve("township_leader", &town, 0, &holders, &by_key);
        assert!(other.iter().all(|h| h.shift.is_none()) && other.len() == 2);
    }
}
