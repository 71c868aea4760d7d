//! Response levels, the pure part: reading an activation request, which regions it covers,
//! and which warnings it raises to what colour.

use std::collections::HashSet;

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{Colour, Level, RegionCode};
use crate::target::roster::Region;
use crate::target::targeting::{Threatened, Via};

/// Response hazards: key, Chinese name, and the warning hazards (cap/classify keys) an active
/// response of that hazard raises.
const HAZARDS: &[(&str, &str, &[&str])] = &[
    (
        "flood",
        "防汛",
        &[
            "flood",
            "rainstorm",
            "flash_flood",
            "geohazard",
            "waterlogging",
            "thunderstorm",
            "typhoon",
        ],
    ),
    (
        "typhoon",
        "防台风",
        &[
            "typhoon",
            "gale",
            "rainstorm",
            "flood",
            "flash_flood",
            "geohazard",
            "waterlogging",
            "thunderstorm",
        ],
    ),
    ("drought", "抗旱", &["drought", "heat"]),
    (
        "geohazard",
        "地质灾害",
        &["geohazard", "rainstorm", "flash_flood"],
    ),
];

/// `flood` or `防汛` → `flood`.
pub fn hazard_key(s: &str) -> Option<&'static str> {
    let s = s.trim();
    HAZARDS
        .iter()
        .find(|(k, zh, _)| k.eq_ignore_ascii_case(s) || *zh == s)
        .map(|(k, _, _)| *k)
}

pub fn hazard_zh(key: &str) -> &str {
    HAZARDS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or(key, |(_, zh, _)| zh)
}

fn covers(response_hazard: &str, warning_hazard: &str) -> bool {
    HAZARDS
        .iter()
        .any(|(k, _, raised)| *k == response_hazard && raised.contains(&warning_hazard))
}

/// I→red, II→orange, III→yellow, IV→blue.
pub fn colour_of(level: Level) -> Colour {
    match level {
        Level::I => Colour::Red,
        Level::II => Colour::Orange,
        Level::III => Colour::Yellow,
        Level::IV => Colour::Blue,
    }
}

/// One declared response, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    pub id: i64,
    pub hazard: String,
    pub level: Level,
    pub regions: Vec<RegionCode>,
    pub note: String,
    pub actor: String,
    /// The incident its activation opened (none when no policy or nobody to call).
    pub incident_id: Option<i64>,
    pub started_at: i64,
    pub until_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
}

impl Response {
    pub fn is_active(&self, now: i64) -> bool {
        self.ended_at.is_none() && self.until_at.is_none_or(|u| u > now)
    }
}

/// `启动防汛Ⅱ级应急响应`.
pub fn title(hazard: &str, level: Level) -> String {
    format!("启动{}", event(hazard, level))
}

/// `防汛Ⅱ级应急响应`: the event name messages carry (the stand-down appends 解除).
pub fn event(hazard: &str, level: Level) -> String {
    format!("{}{}应急响应", hazard_zh(hazard), level.zh())
}

/// What `jiaoying respond` and `POST /api/v1/responses` receive: an activation, or `end`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub hazard: Option<String>,
    pub level: Option<String>,
    /// Division codes: a list, or one string separated by commas or spaces.
    #[serde(default, deserialize_with = "codes")]
    pub regions: Vec<String>,
    /// RFC 3339, `YYYY-MM-DD HH:MM` in Asia/Shanghai, or a duration from now (`48h`).
    pub until: Option<String>,
    pub note: Option<String>,
    /// The id of a response to end.
    pub end: Option<i64>,
}

fn codes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Codes {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Codes::deserialize(d)? {
        Codes::One(s) => vec![s],
        Codes::Many(v) => v,
    })
}

/// A checked activation.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub hazard: &'static str,
    pub level: Level,
    pub regions: Vec<RegionCode>,
    pub until_at: Option<i64>,
    pub note: String,
}

/// Bad input, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks an activation against the roster's regions; every named code must be a region.
pub fn check(req: &Request, regions: &[Region], now: i64) -> Result<Activation, Invalid> {
    let raw = req.hazard.as_deref().ok_or_else(|| {
        invalid(
            "hazard",
            "required (flood/防汛, typhoon/防台风, drought/抗旱, geohazard/地质灾害)",
        )
    })?;
    let hazard = hazard_key(raw).ok_or_else(|| {
        invalid(
            "hazard",
            format!(
                "unknown hazard {raw:?}: use flood/防汛, typhoon/防台风, drought/抗旱 or geohazard/地质灾害"
            ),
        )
    })?;
    let raw = req
        .level
        .as_deref()
        .ok_or_else(|| invalid("level", "required (I, II, III or IV)"))?;
    let level = Level::parse(raw).ok_or_else(|| {
        invalid(
            "level",
            format!("unknown level {raw:?}: use I, II, III or IV (Ⅰ级–Ⅳ级)"),
        )
    })?;
    let known: HashSet<&RegionCode> = regions.iter().map(|r| &r.code).collect();
    let mut codes = Vec::new();
    for s in req
        .regions
        .iter()
        .flat_map(|s| s.split(|c: char| c == ',' || c == '，' || c.is_whitespace()))
        .filter(|s| !s.is_empty())
    {
        let code = RegionCode::parse(s).map_err(|e| invalid("regions", e))?;
        if !known.contains(&code) {
            return Err(invalid("regions", format!("{s} is not a region of the roster")));
        }
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    if codes.is_empty() {
        return Err(invalid("regions", "at least one division code is required"));
    }
    let until_at = req
        .until
        .as_deref()
        .map(|u| parse_until(u, now).map_err(|e| invalid("until", e)))
        .transpose()?;
    Ok(Activation {
        hazard,
        level,
        regions: codes,
        until_at,
        note: req.note.clone().unwrap_or_default().trim().to_string(),
    })
}

/// `until` to Unix ms; it must lie in the future.
pub fn parse_until(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    let at = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        t.timestamp_millis()
    } else if let Some(t) = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
    {
        chrono_tz::Asia::Shanghai
            .from_local_datetime(&t)
            .earliest()
            .ok_or_else(|| format!("{s:?} does not exist in Asia/Shanghai time"))?
            .timestamp_millis()
    } else if let Ok(d) = humantime::parse_duration(s.trim_start_matches('+')) {
        now + d.as_millis() as i64
    } else {
        return Err(format!(
            "{s:?} is neither a time (2026-06-12 18:00, RFC 3339) nor a duration (48h)"
        ));
    };
    if at <= now {
        return Err(format!("{s:?} is already past"));
    }
    Ok(at)
}

/// The regions named and everything under them, as planning wants them.
pub fn covered(named: &[RegionCode], regions: &[Region]) -> Threatened {
    let mut out = Threatened::new();
    for code in named {
        for r in regions.iter().filter(|r| code.contains(&r.code)) {
            out.entry(r.code.clone())
                .or_insert_with(|| Via::Within { code: code.clone() });
        }
    }
    out
}

/// The strongest active response whose hazard covers the warning's and whose regions hold
/// one of the regions the warning threatens.
pub fn raising<'a>(
    active: &'a [Response],
    threatened: &Threatened,
    hazard: &str,
    now: i64,
) -> Option<&'a Response> {
    active
        .iter()
        .filter(|r| r.is_active(now) && covers(&r.hazard, hazard))
        .filter(|r| threatened.keys().any(|t| r.regions.iter().any(|c| c.contains(t))))
        .min_by_key(|r| (r.level, r.id))
}

/// The colour a warning is handled as: its own, or the colour of the strongest active
/// response over its regions, whichever is higher.
pub fn effective_colour(
    active: &[Response],
    threatened: &Threatened,
    colour: Option<Colour>,
    hazard: &str,
    now: i64,
) -> Option<Colour> {
    colour.max(raising(active, threatened, hazard, now).map(|r| colour_of(r.level)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    fn region(s: &str) -> Region {
        let code = code(s);
        Region {
            level: code.level(),
            name: s.into(),
            parent: None,
            centroid: None,
            boundary: None,
            code,
        }
    }

    fn roster() -> Vec<Region> {
        ["450921", "450921104", "450921104201", "450922", "450922101"]
            .into_iter()
            .map(region)
            .collect()
    }

    fn response(id: i64, level: Level, regions: &[&str]) -> Response {
        Response {
            id,
            hazard: "flood".into(),
            level,
            regions: regions.iter().map(|s| code(s)).collect(),
            note: String::new(),
            actor: "t".into(),
            incident_id: None,
            started_at: 0,
            until_at: Some(1_000),
            ended_at: None,
            ended_by: None,
        }
    }

    fn threatened(codes: &[&str]) -> Threatened {
        codes
            .iter()
            .map(|c| (code(c), Via::Polygon { area: 0 }))
            .collect()
    }

    #[test]
    fn check_reads_every_spelling_and_names_the_bad_field() {
        let req = Request {
            hazard: Some("防汛".into()),
            level: Some("Ⅱ级".into()),
            regions: vec!["450921000000, 450922".into(), "450921".into()],
            until: Some("2h".into()),
            note: Some(" 强降雨 ".into()),
            end: None,
        };
        let a = check(&req, &roster(), 0).unwrap();
        assert_eq!(a.hazard, "flood");
        assert_eq!(a.level, Level::II);
        assert_eq!(a.regions, [code("450921"), code("450922")]);
        assert_eq!(a.until_at, Some(7_200_000));
        assert_eq!(a.note, "强降雨");
        for (bad, field) in [
            (
                Request {
                    hazard: Some("snow".into()),
                    ..req.clone()
                },
                "hazard",
            ),
            (
                Request {
                    level: Some("V".into()),
                    ..req.clone()
                },
                "level",
            ),
            (
                Request {
                    regions: vec!["450999".into()],
                    ..req.clone()
                },
                "regions",
            ),
            (
                Request {
                    regions: vec!["45x".into()],
                    ..req.clone()
                },
                "regions",
            ),
            (
                Request {
                    regions: vec![],
                    ..req.clone()
                },
                "regions",
            ),
            (
                Request {
                    until: Some("yesterday".into()),
                    ..req.clone()
                },
                "until",
            ),
            (
                Request {
                    hazard: None,
                    ..req.clone()
                },
                "hazard",
            ),
        ] {
            let e = check(&bad, &roster(), 0).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn until_reads_shanghai_time_and_refuses_the_past() {
        // 2026-06-12 18:00 in Shanghai is 10:00 UTC.
        let t = parse_until("2026-06-12 18:00", 0).unwrap();
        assert_eq!(
            t,
            chrono::DateTime::parse_from_rfc3339("2026-06-12T10:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(parse_until("2026-06-12T10:00:00Z", 0).unwrap(), t);
        assert!(parse_until("2026-06-12 18:00", t).unwrap_err().contains("past"));
        assert_eq!(parse_until("+30m", 5).unwrap(), 5 + 1_800_000);
    }

    #[test]
    fn covered_is_the_named_regions_and_below_only() {
        let t = covered(&[code("450921104")], &roster());
        let codes: Vec<&str> = t.keys().map(|c| c.as_str()).collect();
        assert_eq!(codes, ["450921104", "450921104201"]);
    }

    #[test]
    fn an_active_level_raises_warnings_in_its_regions_only() {
        let active = vec![
            response(1, Level::II, &["450921"]),
            response(2, Level::IV, &["450922"]),
        ];
        let inside = threatened(&["450921", "450921104", "450921104201"]);
        let outside = threatened(&["450923", "450923101"]);
        let blue = Some(Colour::Blue);
        assert_eq!(
            effective_colour(&active, &inside, blue, "rainstorm", 10),
            Some(Colour::Orange)
        );
        assert_eq!(effective_colour(&active, &outside, blue, "rainstorm", 10), blue);
        // Never lowered; a hazard the response does not cover is not raised.
        assert_eq!(
            effective_colour(&active, &inside, Some(Colour::Red), "rainstorm", 10),
            Some(Colour::Red)
        );
        assert_eq!(effective_colour(&active, &inside, blue, "snow", 10), blue);
        // Past `until`, or ended: no longer raised.
        assert_eq!(effective_colour(&active, &inside, blue, "rainstorm", 1_000), blue);
        let mut ended = active.clone();
        ended[0].ended_at = Some(5);
        assert_eq!(effective_colour(&ended, &inside, blue, "rainstorm", 10), blue);
        // The strongest of several wins; no colour at all takes the response's.
        let both = threatened(&["450921104201", "450922101"]);
        assert_eq!(raising(&active, &both, "flood", 10).map(|r| r.id), Some(1));
        assert_eq!(
            effective_colour(&active, &threatened(&["450922101"]), None, "flood", 10),
            blue
        );
    }

    #[test]
    fn titles_are_chinese() {
        assert_eq!(title("flood", Level::II), "启动防汛Ⅱ级应急响应");
        assert_eq!(event("typhoon", Level::I), "防台风Ⅰ级应急响应");
        assert_eq!(colour_of(Level::III), Colour::Yellow);
    }
}
