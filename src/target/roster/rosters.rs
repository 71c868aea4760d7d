//! Duty rosters (值班表): role × region × contact × shift, a shift being a cron expression
//! (the `cron` crate's syntax, seconds first) with a length, or a date range.

use std::str::FromStr;

use chrono::TimeZone;

use super::sheet::{check_rows, refuse_duplicates, Row, Sheet};
use super::{DutyShift, Known, Parsed, RowError, Shift};

const COLUMNS: &[(&str, bool)] = &[
    ("role", true),
    ("region", true),
    ("contact", true),
    ("cron", false),
    ("length", false),
    ("from", false),
    ("to", false),
    ("tz", false),
];

pub const DEFAULT_TZ: &str = "Asia/Shanghai";

/// Contacts and regions must already be stored. A row has either `cron` (with `length`,
/// default 24 h) or both `from` and `to` (`2026-07-01 08:00`, local time in `tz`).
pub fn parse_rosters(sheet: &Sheet, known: &Known) -> Parsed<DutyShift> {
    let (mut p, mut lines) = check_rows(sheet, COLUMNS, |r| {
        let role = r.required("role")?.to_string();
        let region = known
            .region(r.required("region")?)
            .map_err(|e| r.err("region", e))?;
        let contact_key = r.required("contact")?.to_string();
        if !known.contacts.contains(&contact_key) {
            return Err(r.err(
                "contact",
                format!("no contact with key {contact_key:?} (查无此人): import contacts first"),
            ));
        }
        let tz_name = r.opt("tz").unwrap_or_else(|| DEFAULT_TZ.to_string());
        let tz = chrono_tz::Tz::from_str(&tz_name).map_err(|_| {
            r.err(
                "tz",
                format!("{tz_name:?} is not an IANA time zone (e.g. Asia/Shanghai)"),
            )
        })?;
        let shift = match (r.get("cron"), r.get("from"), r.get("to")) {
            (expr, "", "") if !expr.is_empty() => {
                cron::Schedule::from_str(expr).map_err(|e| {
                    r.err(
                        "cron",
                        format!(
                            "{expr:?} is not a cron expression (seconds first, e.g. \"0 0 8 * * *\"): {e}"
                        ),
                    )
                })?;
                let minutes = match r.get("length") {
                    "" => 24 * 60,
                    l => minutes(l).ok_or_else(|| {
                        r.err("length", format!("{l:?} is not a length such as 24h, 90m or 1d"))
                    })?,
                };
                Shift::Cron {
                    expr: expr.to_string(),
                    minutes,
                    tz: tz_name,
                }
            }
            ("", from, to) if !from.is_empty() && !to.is_empty() => {
                let (from, to) = (local_ms(r, "from", tz)?, local_ms(r, "to", tz)?);
                if to <= from {
                    return Err(r.err("to", "ends before it starts (结束早于开始)"));
                }
                Shift::Dates { from, to }
            }
            _ => {
                return Err(r.err(
                    "cron",
                    "give either a cron expression or both a start and an end (班次规则或起止时间二选一)",
                ))
            }
        };
        Ok(DutyShift {
            role,
            region,
            contact_key,
            shift,
        })
    });
    refuse_duplicates(sheet, &mut p, &mut lines, "contact", |d| natural_key(d).join("|"));
    p.errors.sort_by_key(|e| e.line);
    p
}

/// What makes a duty line the same line in an updated sheet: who, which role where, and
/// when it starts (cron expression or start time).
pub fn natural_key(d: &DutyShift) -> [String; 5] {
    let (cron, from) = match &d.shift {
        Shift::Cron { expr, .. } => (expr.clone(), 0),
        Shift::Dates { from, .. } => (String::new(), *from),
    };
    [
        d.role.clone(),
        d.region.to_string(),
        d.contact_key.clone(),
        cron,
        from.to_string(),
    ]
}

/// `24h`, `24小时`, `90m`, `90分钟`, `1d`, `1天`; a bare number is hours.
fn minutes(s: &str) -> Option<u32> {
    let s = s.trim().to_ascii_lowercase();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s.as_str(), "h"),
    };
    let n: f64 = num.parse().ok()?;
    let per = match unit {
        "m" | "min" | "分钟" => 1.0,
        "h" | "小时" => 60.0,
        "d" | "天" => 1440.0,
        _ => return None,
    };
    let m = (n * per).round();
    (1.0..=31.0 * 1440.0).contains(&m).then_some(m as u32)
}

fn local_ms(r: &Row, col: &str, tz: chrono_tz::Tz) -> Result<i64, RowError> {
    let s = r.get(col).replace('/', "-").replace('T', " ");
    let t = ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(&s, f).ok())
        .ok_or_else(|| {
            r.err(
                col,
                format!("{:?} is not a time like 2026-07-01 08:00", r.get(col)),
            )
        })?;
    tz.from_local_datetime(&t)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| r.err(col, format!("{s} does not exist in {tz}")))
}

#[cfg(test)]
mod tests {
    use super::super::sheet::read;
    use super::*;

    #[test]
    fn cron_and_date_range_shifts() {
        let mut known = Known::default();
        known.regions.insert("450921104".into());
        known.contacts.extend(["a".to_string(), "b".to_string()]);
        let csv = "职务,区划代码,值班人员,班次规则,时长,开始时间,结束时间,时区\n\
                   township_duty,450921104,a,0 0 8 1/2 * *,24h,,,\n\
                   township_duty,450921104,b,,,2026-07-01 08:00,2026-07-02 08:00,\n\
                   township_duty,450921104,b,0 0 8 * *,,,,\n\
                   township_duty,450921104,c,0 0 8 * * *,,,,\n\
                   township_duty,450921104,b,,,2026-07-02 08:00,2026-07-01 08:00,\n\
                   township_duty,450921104,b,0 0 8 * * *,2h,,,Mars/Olympus\n\
                   township_duty,450921104,a,0 0 8 1/2 * *,12h,,,\n";
        let p = parse_rosters(&read(csv.as_bytes(), "rosters").unwrap(), &known);
        assert_eq!(p.rows.len(), 2, "{:?}", p.errors);
        assert_eq!(
            p.rows[0].shift,
            Shift::Cron {
                expr: "0 0 8 1/2 * *".into(),
                minutes: 1440,
                tz: "Asia/Shanghai".into()
            }
        );
        // 08:00 in Shanghai is 00:00 UTC.
        assert_eq!(
            p.rows[1].shift,
            Shift::Dates {
                from: 1_782_864_000_000,
                to: 1_782_950_400_000
            }
        );
        let at: Vec<(u64, &str)> = p.errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(
            at,
            [
                (4, "班次规则"),
                (5, "值班人员"),
                (6, "结束时间"),
                (7, "时区"),
                (8, "值班人员")
            ]
        );
    }

    #[test]
    fn lengths() {
        assert_eq!(minutes("24h"), Some(1440));
        assert_eq!(minutes("24"), Some(1440));
        assert_eq!(minutes("90分钟"), Some(90));
        assert_eq!(minutes("1天"), Some(1440));
        assert_eq!(minutes("0"), None);
        assert_eq!(minutes("3w"), None);
    }
}
