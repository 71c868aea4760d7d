//! Risk points (风险点): reservoirs, flash-flood and geohazard points, waterlogging spots.

use super::regions::lat_lon;
use super::sheet::{check_rows, refuse_duplicates, Sheet};
use super::{Known, Parsed, RiskPoint};

const COLUMNS: &[(&str, bool)] = &[
    ("key", true),
    ("kind", true),
    ("name", true),
    ("lat", true),
    ("lon", true),
    ("region", true),
    ("people", false),
    ("monitors", false),
];

/// The kind code of an English or Chinese kind name, as the office writes it.
pub fn parse_kind(s: &str) -> Option<&'static str> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "reservoir" | "山塘水库" | "水库" | "山塘" => "reservoir",
        "flash_flood" | "flash-flood" | "山洪" | "山洪灾害" | "山洪危险区" => "flash_flood",
        "geohazard" | "地质灾害" | "隐患点" | "地质灾害隐患点" | "滑坡" => "geohazard",
        "waterlogging" | "内涝" | "低洼" | "低洼易涝" | "易涝点" => "waterlogging",
        "other" | "其他" => "other",
        _ => return None,
    })
}

/// `monitors` are contact keys (`;`, `、` or `,` between them) that must already be stored.
pub fn parse_risk_points(sheet: &Sheet, known: &Known) -> Parsed<RiskPoint> {
    let (mut p, mut lines) = check_rows(sheet, COLUMNS, |r| {
        let key = r.required("key")?.to_string();
        let k = r.required("kind")?;
        let kind = parse_kind(k).ok_or_else(|| {
            r.err(
                "kind",
                format!(
                    "{k:?} is not 山塘水库/山洪/地质灾害/内涝 (reservoir/flash_flood/geohazard/waterlogging)"
                ),
            )
        })?;
        let name = r.required("name")?.to_string();
        let (lat, lon) = lat_lon(r.required("lat")?, r.required("lon")?).ok_or_else(|| {
            r.err(
                "lat",
                format!(
                    "({}, {}) is not a latitude/longitude pair",
                    r.get("lat"),
                    r.get("lon")
                ),
            )
        })?;
        let region = known
            .region(r.required("region")?)
            .map_err(|e| r.err("region", e))?;
        let people = match r.get("people") {
            "" => 0,
            n => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| r.err("people", format!("{n:?} is not a count of people")))?,
        };
        let mut monitors = Vec::new();
        for m in r
            .get("monitors")
            .split([';', '；', '、', ',', '，'])
            .map(str::trim)
        {
            if m.is_empty() || monitors.iter().any(|x| x == m) {
                continue;
            }
            if !known.contacts.contains(m) {
                return Err(r.err(
                    "monitors",
                    format!("no contact with key {m:?} (查无此人): import contacts first"),
                ));
            }
            monitors.push(m.to_string());
        }
        Ok(RiskPoint {
            id: 0,
            key,
            kind: kind.to_string(),
            name,
            lat,
            lon,
            region,
            people,
            monitors,
        })
    });
    refuse_duplicates(sheet, &mut p, &mut lines, "key", |r| r.key.clone());
    p.errors.sort_by_key(|e| e.line);
    p
}

#[cfg(test)]
mod tests {
    use super::super::sheet::read;
    use super::*;

    #[test]
    fn chinese_kinds_and_bad_rows() {
        let mut known = Known::default();
        known.regions.insert("450921104201".into());
        known.contacts.insert("m1".into());
        let csv = "编号,类型,名称,纬度,经度,区划代码,威胁人数,监测员\n\
                   SK-1,山塘水库,石岭水库,22.7,110.5,450921104201,120,m1\n\
                   SH-1,山洪,石岭冲,22.7,110.5,450921104201,,\n\
                   DZ-1,泥石流,坏,22.7,110.5,450921104201,,\n\
                   DZ-2,隐患点,后山,22.7,110.5,450921104201,-3,\n\
                   DZ-3,地质灾害,后山,22.7,110.5,450921104201,3,m9\n";
        let p = parse_risk_points(&read(csv.as_bytes(), "risk-points").unwrap(), &known);
        let kinds: Vec<&str> = p.rows.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["reservoir", "flash_flood"]);
        assert_eq!(p.rows[0].monitors, ["m1"]);
        assert_eq!(p.rows[0].people, 120);
        let at: Vec<(u64, &str)> = p.errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(at, [(4, "类型"), (5, "威胁人数"), (6, "监测员")]);
        assert_eq!(parse_kind("低洼"), Some("waterlogging"));
    }
}
