//! The roster: regions (with boundaries), contacts and their roles. Reading the office's files
//! into checked rows lives here; every bad row is reported with its line and column and
//! nothing is imported when any row is bad (SPEC §3 import). Storing them is `store::roster`.
//! The full importer (XLSX, duty rosters, risk points, Chinese headers) is a later issue.

use std::collections::HashSet;

use geo::{Coord, LineString, MultiPolygon, Polygon};
use serde::Serialize;

use crate::domain::{ChannelKind, Phone, RegionCode, RegionLevel};

#[derive(Debug, Clone)]
pub struct Region {
    pub code: RegionCode,
    pub name: String,
    pub level: RegionLevel,
    pub parent: Option<RegionCode>,
    /// (lat, lon)
    pub centroid: Option<(f64, f64)>,
    /// In geo's order: x = lon, y = lat.
    pub boundary: Option<MultiPolygon<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub phone: Option<Phone>,
    pub email: Option<String>,
    pub role: String,
    pub region: RegionCode,
    pub backup: Option<String>,
    pub superior: Option<String>,
    /// Empty: the policy's channel order.
    pub channels: Vec<ChannelKind>,
}

/// A risk point (风险点): a reservoir, flash-flood point, geohazard point … at a place.
#[derive(Debug, Clone, Serialize)]
pub struct RiskPoint {
    pub id: i64,
    /// Natural key (the office's own number for the point).
    pub key: String,
    /// `reservoir`, `flash_flood`, `geohazard`, `waterlogging` or `other`.
    pub kind: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// The village (or township) it lies in.
    pub region: RegionCode,
    /// People it threatens.
    pub people: i64,
    /// Contact keys of its monitors (监测员/巡查员).
    pub monitors: Vec<String>,
}

/// One line of a duty roster (值班表): `contact_key` holds `role` in `region` during `shift`.
#[derive(Debug, Clone, Serialize)]
pub struct DutyShift {
    pub role: String,
    pub region: RegionCode,
    pub contact_key: String,
    pub shift: Shift,
}

/// When a duty shift holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Shift {
    /// Starts whenever the `cron` crate expression (seconds first) fires in time zone `tz`
    /// (IANA name, default Asia/Shanghai), and lasts `minutes`.
    Cron { expr: String, minutes: u32, tz: String },
    /// From `from` (inclusive) to `to` (exclusive), Unix milliseconds.
    Dates { from: i64, to: i64 },
}

/// The Chinese name of a known role code, for what officials read; unknown codes as they are.
pub fn role_label(role: &str) -> &str {
    match role {
        "city_duty" => "市防指值班员",
        "county_duty" => "县防指值班领导",
        "county_duty_b" => "县防指值班领导（B角）",
        "township_leader" => "乡镇党政主要领导",
        "township_duty" => "乡镇值班领导",
        "village_leader" => "村（社区）防汛责任人",
        "info_officer" => "灾害信息员",
        "risk_monitor" => "监测员",
        other => other,
    }
}

/// A bad row: where and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub column: String,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.reason)
    }
}

/// What an import will write (contacts carry id 0 until stored).
pub struct Parsed<T> {
    pub rows: Vec<T>,
    pub errors: Vec<RowError>,
}

fn reader(data: &[u8]) -> csv::Reader<&[u8]> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(data)
}

/// Column index by header name; a missing required column is one error for line 1.
fn columns(rdr: &mut csv::Reader<&[u8]>, wanted: &[(&str, bool)]) -> Result<Vec<Option<usize>>, RowError> {
    let headers = rdr
        .headers()
        .map_err(|e| RowError {
            line: 1,
            column: "-".into(),
            reason: e.to_string(),
        })?
        .clone();
    let mut out = Vec::new();
    for (name, required) in wanted {
        let idx = headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        if idx.is_none() && *required {
            return Err(RowError {
                line: 1,
                column: (*name).into(),
                reason: "required column missing".into(),
            });
        }
        out.push(idx);
    }
    Ok(out)
}

fn field<'a>(rec: &'a csv::StringRecord, idx: Option<usize>) -> &'a str {
    idx.and_then(|i| rec.get(i)).unwrap_or("")
}

/// `code,name,level,parent,lat,lon` (level and parent may be left empty: read from the code).
pub fn parse_regions(data: &[u8]) -> Parsed<Region> {
    let mut rdr = reader(data);
    let mut out = Parsed {
        rows: Vec::new(),
        errors: Vec::new(),
    };
    let cols = match columns(
        &mut rdr,
        &[
            ("code", true),
            ("name", true),
            ("level", false),
            ("parent", false),
            ("lat", false),
            ("lon", false),
        ],
    ) {
        Ok(c) => c,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let mut seen = HashSet::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                out.errors.push(RowError {
                    line,
                    column: "-".into(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let err = |column: &str, reason: String| RowError {
            line,
            column: column.into(),
            reason,
        };
        let code = match RegionCode::parse(field(&rec, cols[0])) {
            Ok(c) => c,
            Err(e) => {
                out.errors.push(err("code", e));
                continue;
            }
        };
        if seen.contains(&code) {
            out.errors.push(err("code", format!("{code} appears twice")));
            continue;
        }
        let name = field(&rec, cols[1]).to_string();
        if name.is_empty() {
            out.errors.push(err("name", "empty".into()));
            continue;
        }
        let level = match field(&rec, cols[2]) {
            "" => code.level(),
            l => match parse_level(l) {
                Some(l) => l,
                None => {
                    out.errors.push(err(
                        "level",
                        format!("{l:?} is not province/city/county/township/village"),
                    ));
                    continue;
                }
            },
        };
        let parent = match field(&rec, cols[3]) {
            "" => None,
            p => match RegionCode::parse(p) {
                Ok(p) if p.contains(&code) && p != code => Some(p),
                Ok(p) => {
                    out.errors
                        .push(err("parent", format!("{p} is not an ancestor of {code}")));
                    continue;
                }
                Err(e) => {
                    out.errors.push(err("parent", e));
                    continue;
                }
            },
        };
        let centroid = match (field(&rec, cols[4]), field(&rec, cols[5])) {
            ("", "") => None,
            (lat, lon) => match (lat.parse::<f64>(), lon.parse::<f64>()) {
                (Ok(lat), Ok(lon)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {
                    Some((lat, lon))
                }
                _ => {
                    out.errors.push(err(
                        "lat",
                        format!("({lat}, {lon}) is not a latitude/longitude pair"),
                    ));
                    continue;
                }
            },
        };
        seen.insert(code.clone());
        out.rows.push(Region {
            code,
            name,
            level,
            parent,
            centroid,
            boundary: None,
        });
    }
    out
}

fn parse_level(s: &str) -> Option<RegionLevel> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "province" | "省" => RegionLevel::Province,
        "city" | "市" => RegionLevel::City,
        "county" | "县" | "区" => RegionLevel::County,
        "township" | "town" | "乡镇" | "镇" | "乡" | "街道" => RegionLevel::Township,
        "village" | "村" | "社区" => RegionLevel::Village,
        _ => return None,
    })
}

/// `key,name,phone,email,role,region,backup,superior,channels` (channels: `sms;email`).
/// `backup` and `superior` must name a key in the same file or already stored (`known_keys`).
pub fn parse_contacts(data: &[u8], known_keys: &HashSet<String>) -> Parsed<Contact> {
    let mut rdr = reader(data);
    let mut out = Parsed {
        rows: Vec::new(),
        errors: Vec::new(),
    };
    let wanted = [
        ("key", true),
        ("name", true),
        ("phone", false),
        ("email", false),
        ("role", true),
        ("region", true),
        ("backup", false),
        ("superior", false),
        ("channels", false),
    ];
    let cols = match columns(&mut rdr, &wanted) {
        Ok(c) => c,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let mut lines = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                out.errors.push(RowError {
                    line,
                    column: "-".into(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let err = |column: &str, reason: String| RowError {
            line,
            column: column.into(),
            reason,
        };
        let key = field(&rec, cols[0]).to_string();
        let name = field(&rec, cols[1]).to_string();
        if key.is_empty() || name.is_empty() {
            out.errors
                .push(err(if key.is_empty() { "key" } else { "name" }, "empty".into()));
            continue;
        }
        let phone = match field(&rec, cols[2]) {
            "" => None,
            p => match Phone::parse(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    out.errors.push(err("phone", e));
                    continue;
                }
            },
        };
        let email = match field(&rec, cols[3]) {
            "" => None,
            e if e.contains('@') && !e.contains(' ') => Some(e.to_string()),
            e => {
                out.errors
                    .push(err("email", format!("{e:?} is not an e-mail address")));
                continue;
            }
        };
        if phone.is_none() && email.is_none() {
            out.errors
                .push(err("phone", "a contact needs a phone number or an e-mail".into()));
            continue;
        }
        let role = field(&rec, cols[4]).to_string();
        if role.is_empty() {
            out.errors.push(err("role", "empty".into()));
            continue;
        }
        let region = match RegionCode::parse(field(&rec, cols[5])) {
            Ok(r) => r,
            Err(e) => {
                out.errors.push(err("region", e));
                continue;
            }
        };
        let opt = |i: usize| Some(field(&rec, cols[i]).to_string()).filter(|s| !s.is_empty());
        let mut channels = Vec::new();
        for c in field(&rec, cols[8])
            .split([';', ',', ' '])
            .filter(|s| !s.is_empty())
        {
            match ChannelKind::parse(c) {
                Some(k) => channels.push(k),
                None => out.errors.push(err("channels", format!("unknown channel {c:?}"))),
            }
        }
        lines.push(line);
        out.rows.push(Contact {
            id: 0,
            key,
            name,
            phone,
            email,
            role,
            region,
            backup: opt(6),
            superior: opt(7),
            channels,
        });
    }
    let keys: HashSet<&str> = out.rows.iter().map(|c| c.key.as_str()).collect();
    let mut dup = HashSet::new();
    for (c, line) in out.rows.iter().zip(&lines) {
        if !dup.insert(c.key.as_str()) {
            out.errors.push(RowError {
                line: *line,
                column: "key".into(),
                reason: format!("{} appears twice", c.key),
            });
        }
        for (col, k) in [("backup", &c.backup), ("superior", &c.superior)] {
            if let Some(k) = k {
                if !keys.contains(k.as_str()) && !known_keys.contains(k) {
                    out.errors.push(RowError {
                        line: *line,
                        column: col.into(),
                        reason: format!("no contact with key {k:?}"),
                    });
                }
            }
        }
    }
    out.errors.sort_by_key(|e| e.line);
    out
}

/// A GeoJSON FeatureCollection whose features carry `properties.code` and a Polygon or
/// MultiPolygon geometry. Returns (code, geometry JSON text, shape).
pub fn parse_boundaries(data: &[u8]) -> Parsed<(RegionCode, String, MultiPolygon<f64>)> {
    let mut out = Parsed {
        rows: Vec::new(),
        errors: Vec::new(),
    };
    let doc: serde_json::Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => {
            out.errors.push(RowError {
                line: e.line() as u64,
                column: e.column().to_string(),
                reason: e.to_string(),
            });
            return out;
        }
    };
    let features = doc
        .get("features")
        .and_then(|f| f.as_array())
        .cloned()
        .unwrap_or_default();
    if features.is_empty() {
        out.errors.push(RowError {
            line: 1,
            column: "features".into(),
            reason: "no features".into(),
        });
    }
    for (i, f) in features.iter().enumerate() {
        let at = |column: &str, reason: String| RowError {
            line: i as u64 + 1,
            column: column.into(),
            reason,
        };
        let code = f.pointer("/properties/code").map(|c| match c {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let code = match code.as_deref().map(RegionCode::parse) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                out.errors.push(at("properties.code", e));
                continue;
            }
            None => {
                out.errors.push(at("properties.code", "missing".into()));
                continue;
            }
        };
        let Some(geometry) = f.get("geometry") else {
            out.errors.push(at("geometry", "missing".into()));
            continue;
        };
        match geometry_shape(geometry) {
            Ok(shape) => out.rows.push((code, geometry.to_string(), shape)),
            Err(e) => out.errors.push(at("geometry", e)),
        }
    }
    out
}

/// GeoJSON Polygon/MultiPolygon → geo shape (x = lon, y = lat).
pub fn geometry_shape(g: &serde_json::Value) -> Result<MultiPolygon<f64>, String> {
    let ty = g.get("type").and_then(|t| t.as_str()).unwrap_or("");
    let coords = g.get("coordinates").ok_or("coordinates missing")?;
    let polygons: Vec<&serde_json::Value> = match ty {
        "Polygon" => vec![coords],
        "MultiPolygon" => coords
            .as_array()
            .ok_or("coordinates must be an array")?
            .iter()
            .collect(),
        other => return Err(format!("geometry type {other:?} is not Polygon or MultiPolygon")),
    };
    let mut out = Vec::new();
    for p in polygons {
        let rings = p.as_array().ok_or("a polygon must be an array of rings")?;
        let mut ls = Vec::new();
        for ring in rings {
            let pts = ring.as_array().ok_or("a ring must be an array of positions")?;
            let mut cs = Vec::with_capacity(pts.len());
            for pt in pts {
                let lon = pt
                    .get(0)
                    .and_then(|v| v.as_f64())
                    .ok_or("a position needs [lon, lat]")?;
                let lat = pt
                    .get(1)
                    .and_then(|v| v.as_f64())
                    .ok_or("a position needs [lon, lat]")?;
                if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                    return Err(format!("position [{lon}, {lat}] is out of range"));
                }
                cs.push(Coord { x: lon, y: lat });
            }
            if cs.len() < 4 {
                return Err("a ring needs at least 4 positions".into());
            }
            ls.push(LineString::new(cs));
        }
        let mut it = ls.into_iter();
        let exterior = it.next().ok_or("a polygon needs a ring")?;
        out.push(Polygon::new(exterior, it.collect()));
    }
    Ok(MultiPolygon::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_report_bad_rows_with_line_and_column() {
        let csv = "code,name,level,parent,lat,lon\n450921,容县,county,4509,22.8,110.5\n45092x,坏,,,,\n450921104,六王镇,,450921,95,110\n450921104,六王镇,,450921,,\n";
        let p = parse_regions(csv.as_bytes());
        assert_eq!(p.rows.len(), 2, "{:?}", p.errors);
        assert_eq!(p.errors.len(), 2, "{:?}", p.errors);
        assert_eq!((p.errors[0].line, p.errors[0].column.as_str()), (3, "code"));
        assert_eq!((p.errors[1].line, p.errors[1].column.as_str()), (4, "lat"));
        assert_eq!(p.rows[1].level, RegionLevel::Township);
    }

    #[test]
    fn contacts_check_references_and_phones() {
        let csv = "key,name,phone,email,role,region,backup,superior,channels\n\
                   a,甲,13800138000,,township_leader,450921104,b,,\n\
                   b,乙,138001380,,township_duty,450921104,a,,\n\
                   c,丙,13800138002,,village_leader,450921104201,zz,,sms;fax\n";
        let p = parse_contacts(csv.as_bytes(), &HashSet::new());
        let reasons: Vec<String> = p.errors.iter().map(|e| e.to_string()).collect();
        // b is refused for its phone, so a's backup points at nobody.
        assert_eq!(p.errors.len(), 4, "{reasons:?}");
        assert!(reasons[0].starts_with("line 2, column backup"));
        assert!(reasons[1].starts_with("line 3, column phone"));
        assert!(reasons
            .iter()
            .any(|r| r.contains("column channels") && r.contains("fax")));
        assert!(reasons
            .iter()
            .any(|r| r.contains("column backup") && r.contains("zz")));
    }

    #[test]
    fn boundaries_read_polygons() {
        let gj = r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","properties":{"code":"450921"},"geometry":{"type":"Polygon","coordinates":[[[110,22],[111,22],[111,23],[110,22]]]}},
          {"type":"Feature","properties":{"code":"450922"},"geometry":{"type":"Point","coordinates":[110,22]}}]}"#;
        let p = parse_boundaries(gj.as_bytes());
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].reason.contains("Point"));
    }
}
