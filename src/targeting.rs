//! Which regions a warning threatens (pure). An area matches regions three ways:
//! - a geocode naming a division code (valueName such as `GB2260`): that region and everything
//!   under it;
//! - a polygon or circle: every leaf region (one without children in the roster) whose boundary
//!   meets the shape, or, lacking a boundary, whose centroid lies inside it;
//! - then the ancestors of each threatened region, down from county level, are threatened too
//!   (the township leader and county duty officer answer for their villages).
//!
//! The R-tree index and risk points come with the roster issue; this is a linear scan.

use std::collections::{BTreeMap, HashSet};

use geo::{Contains, Coord, Intersects, LineString, Point, Polygon};
use serde::Serialize;

use crate::cap::{Area, Info};
use crate::domain::RegionCode;
use crate::roster::Region;

/// Geocode schemes that carry Chinese division codes; others (SAME, FIPS, UGC…) are ignored
/// so that a US county number is never read as a Chinese county.
const DIVISION_SCHEMES: &[&str] = &[
    "gb2260",
    "gb/t 2260",
    "gb/t2260",
    "adcode",
    "areacode",
    "admincode",
    "行政区划代码",
    "区划代码",
    "statscode",
];

/// Why a region is threatened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Via {
    Geocode {
        area: usize,
        scheme: String,
        value: String,
    },
    Polygon {
        area: usize,
    },
    Circle {
        area: usize,
    },
    /// Under a region named by a geocode.
    Within {
        code: RegionCode,
    },
    /// Above a threatened region.
    Above {
        code: RegionCode,
    },
}

impl Via {
    pub fn describe(&self) -> String {
        match self {
            Via::Geocode { area, scheme, value } => format!("区域{area} 区划代码 {value} ({scheme})"),
            Via::Polygon { area } => format!("区域{area} 多边形覆盖"),
            Via::Circle { area } => format!("区域{area} 圆形范围覆盖"),
            Via::Within { code } => format!("属 {code}"),
            Via::Above { code } => format!("下辖 {code} 受威胁"),
        }
    }
}

/// Threatened region codes, each with its first reason.
pub type Threatened = BTreeMap<RegionCode, Via>;

pub fn threatened(info: &Info, regions: &[Region]) -> Threatened {
    let mut out = Threatened::new();
    // A region has children when it is the parent, or a code prefix, of another (linear:
    // every region names its ancestors).
    let mut inner: HashSet<String> = regions
        .iter()
        .filter_map(|r| r.parent.as_ref().map(|p| p.to_string()))
        .collect();
    for r in regions {
        let code = r.code.as_str();
        inner.extend(
            [2, 4, 6, 9]
                .into_iter()
                .filter(|&n| n < code.len())
                .map(|n| code[..n].to_string()),
        );
    }
    let has_child = |r: &Region| inner.contains(r.code.as_str());
    let leaves: Vec<&Region> = regions.iter().filter(|r| !has_child(r)).collect();
    for (i, area) in info.areas.iter().enumerate() {
        match_area(i, area, regions, &leaves, &mut out);
    }
    // Ancestors from county level down.
    let direct: Vec<RegionCode> = out.keys().cloned().collect();
    for code in direct {
        for anc in [code.county(), code.township()].into_iter().flatten() {
            if anc != code {
                out.entry(anc)
                    .or_insert_with(|| Via::Above { code: code.clone() });
            }
        }
    }
    out
}

fn match_area(i: usize, area: &Area, regions: &[Region], leaves: &[&Region], out: &mut Threatened) {
    for (scheme, value) in &area.geocodes {
        if !DIVISION_SCHEMES.contains(&scheme.trim().to_lowercase().as_str()) {
            continue;
        }
        let Ok(code) = RegionCode::parse(value) else {
            continue;
        };
        out.entry(code.clone()).or_insert_with(|| Via::Geocode {
            area: i,
            scheme: scheme.clone(),
            value: value.clone(),
        });
        for r in regions
            .iter()
            .filter(|r| code.contains(&r.code) && r.code != code)
        {
            out.entry(r.code.clone())
                .or_insert_with(|| Via::Within { code: code.clone() });
        }
    }
    let shapes: Vec<(Polygon<f64>, Via)> = area
        .polygons
        .iter()
        .map(|p| (polygon(p), Via::Polygon { area: i }))
        .chain(
            area.circles
                .iter()
                .map(|c| (circle(c.lat, c.lon, c.radius_km), Via::Circle { area: i })),
        )
        .collect();
    for (shape, via) in shapes {
        for r in leaves {
            let hit = match (&r.boundary, r.centroid) {
                (Some(b), _) => b.intersects(&shape),
                (None, Some((lat, lon))) => shape.contains(&Point::new(lon, lat)),
                (None, None) => false,
            };
            if hit {
                out.entry(r.code.clone()).or_insert_with(|| via.clone());
            }
        }
    }
}

/// CAP pairs are (lat, lon); geo wants x = lon, y = lat.
fn polygon(points: &[(f64, f64)]) -> Polygon<f64> {
    Polygon::new(
        LineString::new(
            points
                .iter()
                .map(|&(lat, lon)| Coord { x: lon, y: lat })
                .collect(),
        ),
        vec![],
    )
}

/// A circle as a 48-gon on the sphere's local tangent plane: good to well under 1% at the
/// radii warnings use.
fn circle(lat: f64, lon: f64, radius_km: f64) -> Polygon<f64> {
    const KM_PER_DEG: f64 = 111.32;
    let dlat = radius_km.max(0.001) / KM_PER_DEG;
    let dlon = dlat / lat.to_radians().cos().max(0.01);
    let ring: Vec<Coord<f64>> = (0..=48)
        .map(|k| {
            let a = (k % 48) as f64 * std::f64::consts::TAU / 48.0;
            Coord {
                x: lon + dlon * a.cos(),
                y: lat + dlat * a.sin(),
            }
        })
        .collect();
    Polygon::new(LineString::new(ring), vec![])
}

/// "容县六王镇东村": the names from county down, for messages.
pub fn place_name(code: &RegionCode, names: &BTreeMap<RegionCode, String>) -> String {
    let mut parts = Vec::new();
    for prefix in [code.county(), code.township(), Some(code.clone())]
        .into_iter()
        .flatten()
    {
        if let Some(n) = names.get(&prefix) {
            if parts.last() != Some(n) {
                parts.push(n.clone());
            }
        }
    }
    if parts.is_empty() {
        code.to_string()
    } else {
        parts.concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::Circle;
    use crate::domain::RegionLevel;

    fn region(code: &str, lat: f64, lon: f64) -> Region {
        let code = RegionCode::parse(code).unwrap();
        Region {
            level: code.level(),
            name: code.to_string(),
            parent: None,
            centroid: Some((lat, lon)),
            boundary: None,
            code,
        }
    }

    fn info(areas: Vec<Area>) -> Info {
        let mut i: Info = serde_json::from_value(serde_json::json!({
            "language": "zh-CN", "categories": ["Met"], "event": "暴雨红色预警", "urgency": "Immediate",
            "severity": "Extreme", "certainty": "Likely", "event_codes": [], "effective": null, "onset": null,
            "expires": null, "sender_name": null, "headline": null, "description": null, "instruction": null,
            "web": null, "contact": null, "parameters": [], "areas": []
        }))
        .unwrap();
        i.areas = areas;
        i
    }

    fn area() -> Area {
        Area {
            desc: "x".into(),
            polygons: vec![],
            circles: vec![],
            geocodes: vec![],
            altitude: None,
            ceiling: None,
        }
    }

    fn roster() -> Vec<Region> {
        vec![
            region("450921", 22.86, 110.56),
            region("450921104", 22.9, 110.6),
            region("450921104201", 22.91, 110.61),
            region("450921104202", 22.80, 110.40),
            region("450922", 22.32, 110.26),
            region("450922101", 22.3, 110.2),
        ]
    }

    #[test]
    fn geocode_takes_the_region_and_everything_under_it() {
        let mut a = area();
        a.geocodes = vec![
            ("GB2260".into(), "450921".into()),
            ("SAME".into(), "450922".into()),
        ];
        let t = threatened(&info(vec![a]), &roster());
        let codes: Vec<&str> = t.keys().map(|c| c.as_str()).collect();
        assert_eq!(codes, ["450921", "450921104", "450921104201", "450921104202"]);
    }

    #[test]
    fn polygon_matches_leaves_and_brings_their_ancestors() {
        let mut a = area();
        // around 450921104201 only
        a.polygons = vec![vec![
            (22.95, 110.55),
            (22.95, 110.65),
            (22.85, 110.65),
            (22.85, 110.55),
            (22.95, 110.55),
        ]];
        let t = threatened(&info(vec![a]), &roster());
        let codes: Vec<&str> = t.keys().map(|c| c.as_str()).collect();
        assert_eq!(codes, ["450921", "450921104", "450921104201"]);
        assert_eq!(
            t[&RegionCode::parse("450921104201").unwrap()],
            Via::Polygon { area: 0 }
        );
        assert!(matches!(
            t[&RegionCode::parse("450921104").unwrap()],
            Via::Above { .. }
        ));
    }

    #[test]
    fn circle_radius_is_in_km() {
        let mut a = area();
        // 450922101 is ~6.9 km west of this centre: 5 km misses, 8 km hits.
        a.circles = vec![Circle {
            lat: 22.3,
            lon: 110.267,
            radius_km: 5.0,
        }];
        assert!(threatened(&info(vec![a.clone()]), &roster()).is_empty());
        a.circles[0].radius_km = 8.0;
        assert!(threatened(&info(vec![a]), &roster()).contains_key(&RegionCode::parse("450922101").unwrap()));
    }

    #[test]
    fn places_read_from_county_down() {
        let names: BTreeMap<RegionCode, String> = [
            ("450921", "容县"),
            ("450921104", "六王镇"),
            ("450921104201", "东村"),
        ]
        .into_iter()
        .map(|(c, n)| (RegionCode::parse(c).unwrap(), n.to_string()))
        .collect();
        assert_eq!(
            place_name(&RegionCode::parse("450921104201").unwrap(), &names),
            "容县六王镇东村"
        );
        assert_eq!(place_name(&RegionCode::parse("450921").unwrap(), &names), "容县");
        assert_eq!(RegionCode::parse("450921").unwrap().level(), RegionLevel::County);
    }
}
