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

/// Counties 450921 and 450922 with their townships and villages, a township without
/// villages, no province or city rows (a real roster often lacks them).
fn big_roster() -> Vec<Region> {
    let mut out = Vec::new();
    for county in ["450921", "450922"] {
        out.push(region(county, 22.0, 110.0));
        for t in 101..=106 {
            let town = format!("{county}{t}");
            out.push(region(&town, 22.0, 110.0));
            if t == 103 {
                continue;
            }
            for v in 201..=(200 + t % 7 * 9) {
                out.push(region(&format!("{town}{v}"), 22.0, 110.0));
            }
        }
    }
    out
}

fn geocodes(codes: &[&str]) -> Area {
    let mut a = area();
    a.geocodes = codes
        .iter()
        .map(|c| ("GB2260".to_string(), c.to_string()))
        .collect();
    a
}

/// The first regions of a warning by division codes are exactly the whole set's first,
/// with the same reasons and the whole set's levels, however the codes nest and repeat.
#[test]
fn the_first_regions_of_a_warning_by_codes_are_the_whole_sets_first() {
    let index = Index::build(big_roster(), Vec::new());
    let infos = [
        vec![geocodes(&["450921"])],
        vec![geocodes(&["45"]), geocodes(&["450921104"])],
        vec![geocodes(&["450921105202"]), geocodes(&["450921", "450999"])],
        vec![geocodes(&["450922103", "450921102"]), geocodes(&["4509"])],
        vec![
            geocodes(&["450921104", "450921"]),
            geocodes(&["450922106201", "450922"]),
        ],
        // A code under an earlier one but not in the roster is still named directly.
        vec![geocodes(&["450921"]), geocodes(&["450921109"])],
    ];
    for areas in infos {
        let info = info(areas);
        let full = index.threatened(&info);
        assert!(full.len() > 20, "{}", full.len());
        for n in (1..12).chain([17, 40, full.len() - 1, full.len(), full.len() + 5]) {
            let first = index.threatened_first(&info, n).expect("codes only");
            let want: Vec<_> = full.iter().take(n).collect();
            let got: Vec<_> = first.threatened.iter().collect();
            assert_eq!(got, want, "n {n}, {:?}", info.areas);
            assert_eq!(first.whole, n >= full.len(), "n {n}");
            assert_eq!(first.levels, direct_levels(&full), "{:?}", info.areas);
        }
    }
    let mut shaped = geocodes(&["450921"]);
    shaped.circles = vec![Circle {
        lat: 22.0,
        lon: 110.0,
        radius_km: 1.0,
    }];
    assert!(
        index.threatened_first(&info(vec![shaped]), 5).is_none(),
        "a shape: whole set"
    );
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

fn square(lat: f64, lon: f64, half: f64) -> geo::MultiPolygon<f64> {
    geo::MultiPolygon::new(vec![polygon(&[
        (lat - half, lon - half),
        (lat - half, lon + half),
        (lat + half, lon + half),
        (lat + half, lon - half),
        (lat - half, lon - half),
    ])])
}

#[test]
fn boundaries_are_intersected_not_their_centroids() {
    let mut regions = roster();
    // 202's boundary reaches east to 110.5 though its centroid is far west.
    regions[3].boundary = Some(square(22.80, 110.40, 0.1));
    let mut a = area();
    // A thin strip 110.45–110.55 catches 202's edge but not its centroid (110.40).
    a.polygons = vec![vec![
        (22.75, 110.45),
        (22.75, 110.55),
        (22.85, 110.55),
        (22.85, 110.45),
        (22.75, 110.45),
    ]];
    let t = Index::build(regions.clone(), Vec::new()).threatened(&info(vec![a.clone()]));
    assert!(
        t.contains_key(&RegionCode::parse("450921104202").unwrap()),
        "{t:?}"
    );
    regions[3].boundary = Some(square(22.80, 110.40, 0.02));
    let t = Index::build(regions.clone(), Vec::new()).threatened(&info(vec![a]));
    assert!(t.is_empty(), "{t:?}");
    // A small circle wholly inside a large village: no vertex of the village is inside the
    // circle, yet they meet.
    regions[3].boundary = Some(square(22.80, 110.40, 0.3));
    let mut c = area();
    c.polygons.clear();
    c.circles = vec![Circle {
        lat: 22.80,
        lon: 110.40,
        radius_km: 1.0,
    }];
    let t = Index::build(regions.clone(), Vec::new()).threatened(&info(vec![c]));
    assert!(
        t.contains_key(&RegionCode::parse("450921104202").unwrap()),
        "{t:?}"
    );
}

#[test]
fn geocodes_match_at_any_level() {
    for (code, n) in [
        ("45", 6),
        ("4509", 6),
        ("450900000000", 6),
        ("450921104", 4),
        ("450921104202", 3),
    ] {
        let mut a = area();
        a.geocodes = vec![("GB2260".into(), code.into())];
        let t = Index::build(roster(), Vec::new()).threatened(&info(vec![a]));
        // The named code itself counts, plus the roster regions under it and their ancestors.
        let roster_hits = t
            .keys()
            .filter(|c| roster().iter().any(|r| &r.code == *c))
            .count();
        assert_eq!(roster_hits, n, "{code}: {t:?}");
    }
}

#[test]
fn risk_points_by_area_and_hazard() {
    let p = |id: i64, kind: &str, lat: f64, lon: f64, region: &str| RiskPoint {
        id,
        key: format!("P{id}"),
        kind: kind.into(),
        name: String::new(),
        lat,
        lon,
        region: RegionCode::parse(region).unwrap(),
        people: 1,
        monitors: vec![],
    };
    let points = vec![
        p(1, "reservoir", 22.91, 110.61, "450921104201"),
        p(2, "geohazard", 22.915, 110.615, "450921104201"),
        p(3, "flash_flood", 22.32, 110.26, "450922101"),
    ];
    let index = Index::build(roster(), points.clone());
    let mut a = area();
    a.circles = vec![Circle {
        lat: 22.91,
        lon: 110.61,
        radius_km: 2.0,
    }];
    let ids = |hazard: &str, a: &Area| -> Vec<i64> {
        index
            .threatened_points(&info(vec![a.clone()]), hazard)
            .iter()
            .map(|(p, _)| p.id)
            .collect()
    };
    assert_eq!(ids("rainstorm", &a), [1, 2]);
    assert_eq!(ids("geohazard", &a), [2]);
    assert_eq!(ids("typhoon", &a), [1, 2]);
    assert!(ids("heat", &a).is_empty());
    // Only a geocode: the points of the regions it names.
    let mut g = area();
    g.geocodes = vec![("GB2260".into(), "450922".into())];
    assert_eq!(ids("flash_flood", &g), [3]);
    assert_eq!(risk_kinds("fog"), &[] as &[&str]);
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
