//! The roster: regions (with boundaries), contacts and their roles, risk points, duty shifts.
//! Reading the office's files into checked rows lives here (pure); every bad row is reported
//! with its line and column (SPEC §3 import). Storing them is `store::roster`, the
//! all-or-nothing import `crate::ingest::import`.
//!
//! `sheet` reads CSV/XLSX with header aliases; one module per kind checks its rows.

use std::collections::{HashMap, HashSet};

use geo::{Coord, LineString, MultiPolygon, Polygon};
use serde::Serialize;

use crate::domain::{ChannelKind, Phone, RegionCode, RegionLevel};

mod contacts;
mod regions;
mod risk_points;
mod rosters;
pub mod sheet;

pub use contacts::{parse_contacts, ContactRow};
pub use regions::parse_regions;
pub use risk_points::{parse_kind, parse_risk_points};
pub use rosters::{parse_rosters, DEFAULT_TZ};

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
        "township_deputy" => "乡镇分管领导",
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

/// What the database already holds, for checking references (region exists, backup,
/// superior and monitor keys exist) across files.
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// Region codes in their normalised form.
    pub regions: HashSet<String>,
    pub contacts: HashSet<String>,
    /// Risk point key → its region.
    pub risk_points: HashMap<String, RegionCode>,
}

impl Known {
    /// A region code that must exist, in the file being imported or the database.
    fn region(&self, s: &str) -> Result<RegionCode, String> {
        let code = RegionCode::parse(s)?;
        if self.regions.contains(code.as_str()) {
            Ok(code)
        } else {
            Err(format!(
                "region {code} is not in the roster (区划不存在): import regions first"
            ))
        }
    }
}

/// What an import will write (contacts carry id 0 until stored).
#[derive(Debug)]
pub struct Parsed<T> {
    pub rows: Vec<T>,
    pub errors: Vec<RowError>,
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
