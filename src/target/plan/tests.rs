use super::*;
use crate::cap::{Area, Circle};
use crate::domain::Colour;
use crate::target::roster::{Region, Shift};

fn contact(id: i64, role: &str, region: &str) -> Contact {
    crate::target::duty::test_contact(id, &format!("k{id}"), role, region)
}

fn region(code: &str, lat: f64, lon: f64) -> Region {
    let code = RegionCode::parse(code).unwrap();
    Region {
        level: code.level(),
        name: format!("名{code}"),
        parent: None,
        centroid: Some((lat, lon)),
        boundary: None,
        code,
    }
}

fn point(id: i64, kind: &str, lat: f64, lon: f64, region: &str, monitors: &[&str]) -> RiskPoint {
    RiskPoint {
        id,
        key: format!("P{id}"),
        kind: kind.into(),
        name: format!("点{id}"),
        lat,
        lon,
        region: RegionCode::parse(region).unwrap(),
        people: 40,
        monitors: monitors.iter().map(|m| m.to_string()).collect(),
    }
}

fn info(event: &str, circle: Circle) -> Info {
    let mut i: Info = serde_json::from_value(serde_json::json!({
        "language": "zh-CN", "categories": ["Met"], "event": event, "urgency": "Immediate",
        "severity": "Extreme", "certainty": "Likely", "event_codes": [], "effective": null, "onset": null,
        "expires": null, "sender_name": null, "headline": null, "description": null, "instruction": null,
        "web": null, "contact": null, "parameters": [], "areas": []
    }))
    .unwrap();
    i.areas = vec![Area {
        desc: "x".into(),
        polygons: vec![],
        circles: vec![circle],
        geocodes: vec![],
        altitude: None,
        ceiling: None,
    }];
    i
}

#[test]
fn red_calls_the_roles_of_threatened_regions_once_each() {
    let s = Settings::from_toml("").unwrap();
    let red = s.policy_for(Colour::Red, "rainstorm").unwrap();
    let yellow = s.policy_for(Colour::Yellow, "rainstorm").unwrap();
    let mut t = Threatened::new();
    let v = RegionCode::parse("450921104201").unwrap();
    t.insert(v.clone(), Via::Polygon { area: 0 });
    t.insert(
        RegionCode::parse("450921104").unwrap(),
        Via::Above { code: v.clone() },
    );
    t.insert(RegionCode::parse("450921").unwrap(), Via::Above { code: v });
    let contacts = vec![
        contact(1, "village_leader", "450921104201"),
        contact(2, "info_officer", "450921104201"),
        contact(3, "township_leader", "450921104"),
        contact(4, "county_duty", "450921"),
        contact(5, "county_duty_b", "450921"),
        contact(6, "village_leader", "450921104202"),
        contact(7, "township_leader", "450922101"),
    ];
    let names = BTreeMap::new();
    let ids: Vec<i64> = plan(&t, &contacts, red, &names)
        .iter()
        .map(|p| p.contact_id)
        .collect();
    assert_eq!(ids, [4, 3, 2, 1]);
    let ids: Vec<i64> = plan(&t, &contacts, yellow, &names)
        .iter()
        .map(|p| p.contact_id)
        .collect();
    assert_eq!(ids, [4]);
    let p = &plan(&t, &contacts, red, &names)[3];
    assert!(
        p.reason.contains("多边形") && p.reason.contains("red"),
        "{}",
        p.reason
    );
}

fn snapshot(points: Vec<RiskPoint>, contacts: Vec<Contact>, shifts: Vec<DutyShift>) -> Snapshot {
    let regions = vec![
        region("450921", 22.86, 110.56),
        region("450921104", 22.9, 110.6),
        region("450921104201", 22.91, 110.61),
        region("450921104202", 22.70, 110.40),
    ];
    Snapshot::new(Index::build(regions, points), contacts, shifts)
}

#[test]
fn risk_points_bring_monitors_and_leaders_by_hazard_and_duty_picks_who_is_on_shift() {
    let s = Settings::from_toml("").unwrap();
    // Village 202 is outside the circle; its two points are inside it.
    let points = vec![
        point(1, "geohazard", 22.91, 110.61, "450921104202", &["m1"]),
        point(2, "reservoir", 22.912, 110.612, "450921104202", &["m2"]),
    ];
    let mut contacts = vec![
        contact(1, "village_leader", "450921104202"),
        contact(2, "township_leader", "450921104"),
        contact(3, "risk_monitor", "450921104202"),
        contact(4, "risk_monitor", "450921104202"),
        contact(5, "county_duty", "450921"),
        contact(6, "county_duty", "450921"),
        contact(7, "township_duty", "450921104"),
    ];
    contacts[2].key = "m1".into();
    contacts[3].key = "m2".into();
    let shifts = vec![DutyShift {
        role: "county_duty".into(),
        region: RegionCode::parse("450921").unwrap(),
        contact_key: "k6".into(),
        shift: Shift::Dates { from: 0, to: 1000 },
    }];
    let roster = snapshot(points, contacts, shifts);
    let circle = Circle {
        lat: 22.91,
        lon: 110.61,
        radius_km: 1.0,
    };
    let class = |hazard: &str, colour| Classification {
        colour: Some(colour),
        hazard: hazard.into(),
    };
    let ids = |d: &Decision| d.calls.iter().map(|c| c.planned.contact_id).collect::<Vec<_>>();

    let rain = decide(
        &s,
        &info("暴雨红色预警", circle),
        &class("rainstorm", Colour::Red),
        None,
        &roster,
        500,
    );
    assert_eq!(rain.policy.as_ref().unwrap().name, "red");
    assert_eq!(rain.risk_points, 2);
    // County duty 6 is on shift (5 is not); monitors 3 and 4, the village leader of the
    // points' village 1, the township leader 2, the township duty 7.
    assert_eq!(ids(&rain), [6, 7, 2, 3, 4, 1]);
    let leader = rain.calls.iter().find(|c| c.planned.contact_id == 1).unwrap();
    assert!(
        leader.area.contains("风险点 点1") && leader.area.contains("地质灾害隐患点"),
        "{}",
        leader.area
    );
    let duty = rain.calls.iter().find(|c| c.planned.contact_id == 6).unwrap();
    assert!(
        duty.shift.as_deref().unwrap().contains("在班"),
        "{:?}",
        duty.shift
    );

    // Off shift: both county duty holders, saying nobody is on shift.
    let later = decide(
        &s,
        &info("暴雨红色预警", circle),
        &class("rainstorm", Colour::Red),
        None,
        &roster,
        5000,
    );
    let duty: Vec<_> = later
        .calls
        .iter()
        .filter(|c| c.planned.role == "county_duty")
        .collect();
    assert_eq!(duty.len(), 2);
    assert!(
        duty[0].planned.reason.contains("无人在班"),
        "{}",
        duty[0].planned.reason
    );

    // A geohazard warning reaches the geohazard point only: monitor m1, not m2.
    let geo = decide(
        &s,
        &info("地质灾害气象风险红色预警", circle),
        &class("geohazard", Colour::Red),
        None,
        &roster,
        500,
    );
    assert!(
        ids(&geo).contains(&3) && !ids(&geo).contains(&4),
        "{:?}",
        ids(&geo)
    );

    // Heat: no risk points, none of the flood roles.
    let heat = decide(
        &s,
        &info("高温红色预警", circle),
        &class("heat", Colour::Red),
        None,
        &roster,
        500,
    );
    assert_eq!(heat.policy.as_ref().unwrap().name, "heat-cold");
    assert_eq!(heat.risk_points, 0);
    assert_eq!(ids(&heat), [6, 7]);
}

/// A warning by division code over more regions than a first slice looks at: the first
/// people come from its first regions (`threatened_first`), and are the whole plan's
/// first, with the same reasons, whatever the slice (some regions hold nobody, some two).
#[test]
fn the_first_people_of_a_warning_by_code_come_from_its_first_regions() {
    let s = Settings::from_toml("").unwrap();
    let mut regions = vec![region("450921", 22.86, 110.56)];
    let mut contacts = Vec::new();
    let mut id = 0;
    for t in 101..=103 {
        let town = format!("450921{t}");
        regions.push(region(&town, 22.9, 110.6));
        id += 1;
        contacts.push(contact(id, "township_leader", &town));
        for v in 201..=260 {
            let village = format!("{town}{v}");
            regions.push(region(&village, 22.9, 110.6));
            for _ in 0..(v % 3) {
                id += 1;
                contacts.push(contact(id, "village_leader", &village));
            }
        }
    }
    let points = vec![point(1, "geohazard", 22.91, 110.61, "450921102201", &["m1"])];
    id += 1;
    contacts.push(contact(id, "risk_monitor", "450921102201"));
    contacts.last_mut().unwrap().key = "m1".into();
    let roster = Snapshot::new(Index::build(regions, points), contacts, Vec::new());
    let class = Classification {
        colour: Some(Colour::Red),
        hazard: "rainstorm".into(),
    };
    let mut info = info(
        "暴雨红色预警",
        Circle {
            lat: 0.0,
            lon: 0.0,
            radius_km: 1.0,
        },
    );
    info.areas[0].circles.clear();
    info.areas[0].geocodes = vec![("GB2260".into(), "450921".into())];
    let whole = decide(&s, &info, &class, None, &roster, 500);
    assert!(whole.calls.len() > 150, "{}", whole.calls.len());
    assert!(whole.risk_points > 0, "the point is in the plan");
    for limit in [
        1,
        2,
        63,
        64,
        65,
        100,
        180,
        whole.calls.len() - 1,
        whole.calls.len(),
        whole.calls.len() + 1,
    ] {
        let first = decide_up_to(&s, &info, &class, None, &roster, 500, limit);
        assert_eq!(first.calls.len(), limit.min(whole.calls.len()), "limit {limit}");
        assert_eq!(first.complete, limit > whole.calls.len(), "limit {limit}");
        let found: Vec<_> = first.calls.iter().map(|c| &c.planned).collect();
        let mut want: Vec<_> = whole.calls.iter().map(|c| &c.planned).collect();
        // The whole plan in the order people are found: regions by code, then points.
        want.sort_by_key(|p| (p.role == "risk_monitor", p.region.clone(), p.contact_id));
        want.truncate(limit);
        want.sort_by(|a, b| (&a.region, &a.role, a.contact_id).cmp(&(&b.region, &b.role, b.contact_id)));
        assert_eq!(found, want, "limit {limit}");
    }
}

/// A plan handed over slice by slice (`Matched`) calls whom the whole plan calls, for the
/// same reasons, each once, in slices no larger than asked; `count` says how many; a
/// receiver that stops gets no further slice.
#[test]
fn a_plan_in_slices_is_the_whole_plan() {
    let s = Settings::from_toml("").unwrap();
    let points = vec![point(1, "geohazard", 22.91, 110.61, "450921104202", &["m1"])];
    let mut regions = vec![region("450921", 22.86, 110.56), region("450921104", 22.9, 110.6)];
    let mut contacts = vec![contact(2, "township_leader", "450921104")];
    for (i, v) in (201..=240).enumerate() {
        regions.push(region(&format!("450921104{v}"), 22.91, 110.61));
        contacts.push(contact(10 + i as i64, "village_leader", &format!("450921104{v}")));
    }
    contacts.push(contact(3, "risk_monitor", "450921104202"));
    contacts.last_mut().unwrap().key = "m1".into();
    // The monitor also leads a village: one call, for the first reason found.
    contacts.push(contact(3, "village_leader", "450921104239"));
    let roster = Snapshot::new(Index::build(regions, points), contacts, Vec::new());
    let class = Classification {
        colour: Some(Colour::Red),
        hazard: "rainstorm".into(),
    };
    let circle = Circle {
        lat: 22.91,
        lon: 110.61,
        radius_km: 30.0,
    };
    let info = info("暴雨红色预警", circle);
    let whole = decide(&s, &info, &class, None, &roster, 500);
    let mut want: Vec<Planned> = whole.calls.into_iter().map(|c| c.planned).collect();
    want.sort_by_key(|p| p.contact_id);
    assert!(want.len() > 40, "{}", want.len());
    let m = matched(&s, &info, &class, None, &roster, 500);
    assert_eq!(m.count(), want.len());
    for size in [1, 7, 40, want.len(), want.len() + 1] {
        let mut got = Vec::new();
        let mut slices = 0;
        assert!(m.each(size, |slice| {
            assert!(
                !slice.is_empty() && slice.len() <= size,
                "size {size}: {}",
                slice.len()
            );
            slices += 1;
            got.extend(slice);
            true
        }));
        assert_eq!(slices, want.len().div_ceil(size), "size {size}");
        got.sort_by_key(|p| p.contact_id);
        assert_eq!(got, want, "size {size}");
    }
    let mut slices = 0;
    assert!(!m.each(5, |_| {
        slices += 1;
        slices < 2
    }));
    assert_eq!(slices, 2, "no slice after the receiver stopped");
    // No policy for the colour: nothing, and nothing to count.
    let none = Classification {
        colour: None,
        hazard: "nothing-known".into(),
    };
    let m = matched(&s, &info, &none, None, &roster, 500);
    assert_eq!(m.count(), 0);
    assert!(m.each(5, |_| panic!("no slice without a policy")));
}

/// The first slice of a large plan is decided alone (`decide_up_to`), the rest after it is
/// committed; nobody may be in the first slice for another reason than the whole plan
/// gives them, nor be missing from the whole plan.
#[test]
fn the_first_people_of_a_plan_are_decided_as_the_whole_plan_decides_them() {
    let s = Settings::from_toml("").unwrap();
    let points = vec![point(1, "geohazard", 22.91, 110.61, "450921104202", &["m1"])];
    let mut contacts = vec![
        contact(1, "village_leader", "450921104202"),
        contact(2, "township_leader", "450921104"),
        contact(3, "risk_monitor", "450921104202"),
        contact(5, "county_duty", "450921"),
        contact(7, "township_duty", "450921104"),
        contact(8, "village_leader", "450921104201"),
    ];
    contacts[2].key = "m1".into();
    let roster = snapshot(points, contacts, Vec::new());
    let circle = Circle {
        lat: 22.91,
        lon: 110.61,
        radius_km: 30.0,
    };
    let class = Classification {
        colour: Some(Colour::Red),
        hazard: "rainstorm".into(),
    };
    let info = info("暴雨红色预警", circle);
    let whole = decide(&s, &info, &class, None, &roster, 500);
    assert!(whole.complete);
    assert!(whole.calls.len() >= 5, "{}", whole.calls.len());
    for limit in 1..=whole.calls.len() + 1 {
        let first = decide_up_to(&s, &info, &class, None, &roster, 500, limit);
        assert_eq!(first.calls.len(), limit.min(whole.calls.len()));
        assert_eq!(first.complete, limit > whole.calls.len(), "limit {limit}");
        for c in &first.calls {
            let same = whole
                .calls
                .iter()
                .find(|w| w.planned.contact_id == c.planned.contact_id);
            assert_eq!(
                same.map(|w| (&w.planned.reason, &w.planned.region)),
                Some((&c.planned.reason, &c.planned.region)),
                "limit {limit}: contact {}",
                c.planned.contact_id
            );
        }
    }
}
