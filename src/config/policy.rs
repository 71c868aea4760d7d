//! Policies (叫应规则): what a warning or a response activation is matched on, whom it calls,
//! how, and the escalation ladder; quiet hours; the step-by-step check of each `[[policy]]`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;

use super::{duration, ser_duration, Level};
use crate::domain::{ChannelKind, Colour, RegionLevel, Rung};

/// A policy (叫应规则). Every `match` field left empty matches anything; all given ones must
/// hold. Stored with its incident (as JSON), so escalation and dispatch follow the rule the
/// incident was opened with.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default)]
    pub colours: Vec<Colour>,
    /// Hazard keys (`rainstorm`, `typhoon` … see cap/classify.rs); `*` = any.
    #[serde(default)]
    pub hazards: Vec<String>,
    /// Substrings of the event name (`暴雨`, `山洪`).
    #[serde(default)]
    pub events: Vec<String>,
    /// Active response levels this policy applies under.
    #[serde(default)]
    pub levels: Vec<Level>,
    /// Levels of the regions the warning itself names or covers (not their ancestors).
    #[serde(default)]
    pub region_levels: Vec<RegionLevel>,
    pub roles: Vec<String>,
    /// Whom a threatened risk point brings: `monitor` (its own monitors) and roles held in its
    /// village or township (`village_leader`, `township_leader`). Empty: risk points call nobody.
    #[serde(default)]
    pub risk_point_roles: Vec<String>,
    pub channels: Vec<ChannelKind>,
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub deadline: Duration,
    #[serde(default)]
    pub ladder: Option<Vec<Rung>>,
    #[serde(default)]
    pub evacuation: bool,
    /// Message templates per language (`zh`, `en`), minijinja over the message facts; the
    /// built-in ones of message.rs when absent.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// `"22:00-07:00"` Asia/Shanghai: yellow and blue call-outs then go SMS first, no voice.
    /// Red and orange ignore quiet hours (waking people is the point).
    #[serde(default)]
    pub quiet_hours: Option<String>,
    /// Whether a voice call heard to the end, with no key pressed, answers (SPEC §2:
    /// configurable). A key press of 1 always answers.
    #[serde(default = "yes")]
    pub heard_answers: bool,
    /// Scheduled rounds during an active response (雨前、雨中、雨后 三调度): a `cron`
    /// expression with seconds first, in Beijing time (`"0 0 8,14,20 * * *"`); each round calls
    /// `round_roles` for a status report (rainfall, people moved, dangers seen) until the
    /// response ends.
    #[serde(default)]
    pub rounds: Option<String>,
    /// Whom a round calls; empty: the policy's `roles`.
    #[serde(default)]
    pub round_roles: Vec<String>,
}

impl Policy {
    /// The rounds' schedule, read in Beijing time.
    pub fn round_schedule(&self) -> Option<Result<cron::Schedule, String>> {
        self.rounds.as_deref().map(|r| {
            r.parse::<cron::Schedule>()
                .map_err(|e| format!("{r:?} is not a cron schedule with seconds first ({e})"))
        })
    }

    /// When the round after `now_ms` is due (Beijing time), if there is one.
    pub fn next_round(&self, now_ms: i64) -> Option<i64> {
        let schedule = self.round_schedule()?.ok()?;
        let tz = chrono::FixedOffset::east_opt(8 * 3600)?;
        let now = chrono::DateTime::from_timestamp_millis(now_ms)?.with_timezone(&tz);
        schedule.after(&now).next().map(|t| t.timestamp_millis())
    }
}

fn yes() -> bool {
    true
}

/// What a policy is matched against: a warning (colour, hazard, event) or a response
/// activation (level, hazard), and the levels of the regions it names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    pub colour: Option<Colour>,
    pub hazard: &'a str,
    pub event: &'a str,
    pub level: Option<Level>,
    pub region_levels: &'a [RegionLevel],
}

impl Policy {
    /// One line for `jiaoying check-config`: Chinese first.
    pub fn summary(&self) -> String {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "任意 any".to_string()
            } else {
                v.join(",")
            }
        };
        let ladder = self
            .ladder
            .as_ref()
            .map(|l| {
                l.iter()
                    .cloned()
                    .map(String::from)
                    .collect::<Vec<_>>()
                    .join(" → ")
            })
            .unwrap_or_else(|| "[escalation].ladder".into());
        format!(
            "{}：颜色 colours {}；灾种 hazards {}；事件 events {}；响应 levels {}；区划级别 region_levels {}；\
             角色 roles {}；风险点 risk_point_roles {}；渠道 channels {}；时限 deadline {}；升级 ladder {}；\
             转移人数 evacuation {}；模板 templates {}；静默 quiet_hours {}",
            self.name,
            list(self.colours.iter().map(|c| c.as_str().to_string()).collect()),
            list(self.hazards.clone()),
            list(self.events.clone()),
            list(self.levels.iter().map(|l| format!("{l:?}")).collect()),
            list(self.region_levels.iter().map(|l| l.as_str().to_string()).collect()),
            list(self.roles.clone()),
            if self.risk_point_roles.is_empty() { "-".into() } else { self.risk_point_roles.join(",") },
            self.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(" → "),
            humantime::format_duration(self.deadline),
            ladder,
            if self.evacuation { "是 yes" } else { "否 no" },
            if self.templates.is_empty() { "内置 built-in".into() } else { self.templates.keys().cloned().collect::<Vec<_>>().join(",") },
            self.quiet_hours.as_deref().unwrap_or("-"),
        )
    }

    pub fn matches(&self, s: &Subject) -> bool {
        let any_or = |empty: bool, hit: bool| empty || hit;
        any_or(
            self.colours.is_empty(),
            s.colour.is_some_and(|c| self.colours.contains(&c)),
        ) && any_or(
            self.hazards.is_empty(),
            self.hazards.iter().any(|h| h == "*" || h == s.hazard),
        ) && any_or(
            self.events.is_empty(),
            self.events.iter().any(|e| s.event.contains(e.as_str())),
        ) && any_or(
            self.levels.is_empty(),
            s.level.is_some_and(|l| self.levels.contains(&l)),
        ) && any_or(
            self.region_levels.is_empty(),
            s.region_levels.iter().any(|l| self.region_levels.contains(l)),
        )
    }

    /// The policy as it applies at `now_ms`: during quiet hours a non-urgent (yellow, blue or
    /// no colour) call-out goes SMS first and never by voice. Returns the note to give as the
    /// reason when quiet hours changed anything.
    pub fn at(&self, colour: Option<Colour>, now_ms: i64) -> (Policy, Option<String>) {
        let urgent = matches!(colour, Some(Colour::Red | Colour::Orange));
        let quiet = self
            .quiet_hours
            .as_deref()
            .and_then(|q| parse_quiet_hours(q).ok())
            .is_some_and(|(from, to)| in_window(from, to, now_ms));
        if urgent || !quiet {
            return (self.clone(), None);
        }
        let mut p = self.clone();
        p.channels
            .retain(|c| *c != ChannelKind::Voice && *c != ChannelKind::Sms);
        p.channels.insert(0, ChannelKind::Sms);
        let note = format!(
            "静默时段 {}：短信优先，不打电话 (quiet hours: SMS first, no voice)",
            self.quiet_hours.as_deref().unwrap_or("")
        );
        (p, Some(note))
    }

    /// For a response activation only policies that name levels apply.
    pub fn matches_level(&self, level: Level, hazard: &str) -> bool {
        !self.levels.is_empty()
            && self.matches(&Subject {
                hazard,
                level: Some(level),
                ..Subject::default()
            })
    }
}

/// `"22:00-07:00"` → minutes after midnight (from, to); the window may wrap past midnight.
pub fn parse_quiet_hours(s: &str) -> Result<(u32, u32), String> {
    let hm = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    s.split_once('-')
        .and_then(|(a, b)| Some((hm(a)?, hm(b)?)))
        .filter(|(a, b)| a != b)
        .ok_or_else(|| format!("{s:?} is not HH:MM-HH:MM"))
}

/// Is `now_ms` inside the window, read on the Asia/Shanghai clock (UTC+8, no summer time)?
pub(super) fn in_window(from: u32, to: u32, now_ms: i64) -> bool {
    let minute = ((now_ms / 60_000 + 8 * 60).rem_euclid(24 * 60)) as u32;
    if from < to {
        (from..to).contains(&minute)
    } else {
        minute >= from || minute < to
    }
}

/// Each `[[policy]]` as written: the ladder step by step, then the whole policy, so that an
/// error reads `policy[2] (red).ladder[1]: unknown step "bakup"`.
pub(super) fn check_raw_policies(raw: &[serde_json::Value]) -> Result<()> {
    for (i, v) in raw.iter().enumerate() {
        let name = v.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        let at = format!("policy[{i}] ({name})");
        if let Some(steps) = v.get("ladder").and_then(|l| l.as_array()) {
            for (j, step) in steps.iter().enumerate() {
                let text = step.as_str().unwrap_or_default();
                if let Err(e) = text.parse::<Rung>() {
                    bail!("{at}.ladder[{j}]: {e}");
                }
            }
        }
        for (key, allowed) in [
            ("colours", "red, orange, yellow, blue"),
            ("channels", "sms, voice, email, webhook"),
            ("levels", "I, II, III, IV"),
            ("region_levels", "province, city, county, township, village"),
        ] {
            for (j, item) in v
                .get(key)
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
                .enumerate()
            {
                let ok = match key {
                    "colours" => serde_json::from_value::<Colour>(item.clone()).is_ok(),
                    "channels" => serde_json::from_value::<ChannelKind>(item.clone()).is_ok(),
                    "levels" => serde_json::from_value::<Level>(item.clone()).is_ok(),
                    _ => serde_json::from_value::<RegionLevel>(item.clone()).is_ok(),
                };
                if !ok {
                    bail!("{at}.{key}[{j}]: unknown value {item} ({allowed})");
                }
            }
        }
        if let Err(e) = serde_json::from_value::<Policy>(v.clone()) {
            bail!("{at}: {e}");
        }
    }
    Ok(())
}
