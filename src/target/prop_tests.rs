//! Property tests of area matching (issue 12 §5): a region whose point lies inside a polygon
//! or circle matches, one well outside does not; a geocode takes exactly the regions under
//! its code, however it is padded with zeros.

use proptest::prelude::*;

use crate::cap::{Area, Circle, Info};
use crate::domain::RegionCode;
use crate::target::roster::Region;
use crate::target::targeting::threatened;

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

/// A village (a leaf) with a centroid and, when `square`, a small square boundary round it.
fn village(code: &str, lat: f64, lon: f64, square: bool) -> Region {
    let code = RegionCode::parse(code).unwrap();
    let d = 0.001;
    Region {
        level: code.level(),
        name: code.to_string(),
        parent: None,
        centroid: Some((lat, lon)),
        boundary: square.then(|| {
            geo::MultiPolygon(vec![crate::target::targeting::polygon(&[
                (lat - d, lon - d),
                (lat - d, lon + d),
                (lat + d, lon + d),
                (lat + d, lon - d),
                (lat - d, lon - d),
            ])])
        }),
        code,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A rectangle (as a CAP polygon ring) and a point: inside (by a margin) matches, well
    /// outside does not, with or without a boundary.
    #[test]
    fn a_point_inside_a_polygon_matches_its_region(
        lat0 in 18.0f64..50.0, lon0 in 75.0f64..130.0, h in 0.05f64..2.0, w in 0.05f64..2.0,
        fy in 0.05f64..0.95, fx in 0.05f64..0.95, square: bool,
        out_y in 0.1f64..3.0, out_x in 0.1f64..3.0,
    ) {
        let mut a = area();
        a.polygons = vec![vec![
            (lat0, lon0), (lat0, lon0 + w), (lat0 + h, lon0 + w), (lat0 + h, lon0), (lat0, lon0),
        ]];
        let inside = village("450921104201", lat0 + fy * h, lon0 + fx * w, square);
        let outside = village("450921104202", lat0 + h + out_y, lon0 + w + out_x, square);
        let t = threatened(&info(vec![a]), &[inside.clone(), outside.clone()]);
        prop_assert!(t.contains_key(&inside.code), "{:?} not matched", inside.centroid);
        prop_assert!(!t.contains_key(&outside.code), "{:?} matched", outside.centroid);
    }

    /// The same for a circle: a point at less than 90 % of the radius matches, one beyond
    /// twice the radius does not.
    #[test]
    fn a_point_inside_a_circle_matches_its_region(
        lat in 18.0f64..50.0, lon in 75.0f64..130.0, r_km in 1.0f64..100.0, bearing in 0.0f64..std::f64::consts::TAU,
        f in 0.0f64..0.9, square: bool,
    ) {
        let mut a = area();
        a.circles = vec![Circle { lat, lon, radius_km: r_km }];
        // Degrees of latitude are ~111 km; of longitude, ~111 km × cos(lat).
        let at = |k: f64| {
            let d = k * r_km / 111.0;
            (lat + d * bearing.sin(), lon + d * bearing.cos() / lat.to_radians().cos())
        };
        let (ilat, ilon) = at(f);
        let (olat, olon) = at(2.2);
        let inside = village("450921104201", ilat, ilon, square);
        let outside = village("450921104202", olat, olon, square);
        let t = threatened(&info(vec![a]), &[inside.clone(), outside.clone()]);
        prop_assert!(t.contains_key(&inside.code));
        prop_assert!(!t.contains_key(&outside.code));
    }

    /// A geocode names its region and everything under it, and nothing else, whether it is
    /// written short (`450921`) or padded to twelve digits (`450921000000`).
    #[test]
    fn a_geocode_takes_exactly_the_regions_under_it(
        county in 0usize..3, padded: bool,
        villages in prop::collection::vec((0usize..3, 1u32..20, 200u32..220), 1..20),
    ) {
        let counties = ["450921", "450922", "451021"];
        let regions: Vec<Region> = villages
            .iter()
            .map(|(c, t, v)| village(&format!("{}{t:03}{v:03}", counties[*c]), 22.0, 110.0, false))
            .collect();
        let code = counties[county];
        let value = if padded { format!("{code:0<12}") } else { code.to_string() };
        let parsed = RegionCode::parse(&value).unwrap();
        prop_assert_eq!(parsed.as_str(), code);
        let mut a = area();
        a.geocodes = vec![("GB2260".into(), value)];
        let t = threatened(&info(vec![a]), &regions);
        for r in &regions {
            prop_assert_eq!(t.contains_key(&r.code), r.code.as_str().starts_with(code), "{}", r.code.as_str());
        }
    }
}
