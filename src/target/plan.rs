//! Planning (pure): threatened regions and risk points × contacts × duty rosters × the policy →
//! the call-outs to make, each with its reason (which area, which rule, which shift).
//! One call-out per person per incident, whatever the number of regions they answer for.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::cap::{Classification, Info};
use crate::config::{Level, Policy, Settings, Subject};
use crate::domain::{RegionCode, RegionLevel};
use crate::target::duty::Duty;
use crate::target::roster::{role_label, Contact, DutyShift, RiskPoint};
use crate::target::targeting::{direct_levels, place_name, Index, Names, Threatened, Via};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    pub contact_id: i64,
    pub contact_key: String,
    pub region: RegionCode,
    pub role: String,
    pub place: String,
    pub reason: String,
}

/// One person to call, with the parts of the reason apart (preview shows them).
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub planned: Planned,
    /// Which area of the warning (or which risk point in it) brings them.
    pub area: String,
    /// The policy's name.
    pub rule: String,
    /// The duty shift that puts them on call, or why all holders are called.
    pub shift: Option<String>,
    /// The risk point that brings them, when one does.
    pub risk_point: Option<String>,
}

/// The roster as loaded for planning: the matching index, contacts and duty shifts, and the
/// contacts looked up by (role, region) and by key. Built once per roster version and held
/// by the daemon (`Core::roster`), so a warning pays only for the regions it threatens.
/// The lookups are indexes into `contacts` sorted by what is looked up, not maps of copied
/// keys: at 50,000 contacts the maps held as much as the contacts themselves.
pub struct Snapshot {
    pub index: Index,
    pub contacts: Vec<Contact>,
    pub shifts: Vec<DutyShift>,
    /// Into `contacts`, by (role, region), each pair's holders in roster order.
    holders: Vec<u32>,
    /// Into `contacts`, by key.
    by_key: Vec<u32>,
}

impl Snapshot {
    pub fn new(index: Index, contacts: Vec<Contact>, shifts: Vec<DutyShift>) -> Snapshot {
        assert!(
            contacts.len() <= u32::MAX as usize,
            "a roster of fewer than 4 billion contacts"
        );
        let mut holders: Vec<u32> = (0..contacts.len() as u32).collect();
        let at = |i: &u32| &contacts[*i as usize];
        holders.sort_by(|a, b| {
            let (x, y) = (at(a), at(b));
            (x.role.as_str(), &x.region, a).cmp(&(y.role.as_str(), &y.region, b))
        });
        let mut by_key = holders.clone();
        by_key.sort_by(|a, b| at(a).key.cmp(&at(b).key));
        Snapshot {
            index,
            contacts,
            shifts,
            holders,
            by_key,
        }
    }

    /// The contacts holding `role` in `region`, in roster order.
    pub fn holders(&self, role: &str, region: &RegionCode) -> Vec<&Contact> {
        let key = |i: &u32| {
            let c = &self.contacts[*i as usize];
            (c.role.as_str(), &c.region)
        };
        let want = (role, region);
        let from = self.holders.partition_point(|i| key(i) < want);
        self.holders[from..]
            .iter()
            .take_while(|i| key(i) == want)
            .map(|i| &self.contacts[*i as usize])
            .collect()
    }

    /// The contact with this key.
    pub fn contact(&self, key: &str) -> Option<&Contact> {
        let i = self
            .by_key
            .partition_point(|i| self.contacts[*i as usize].key.as_str() < key);
        let c = &self.contacts[*self.by_key.get(i)? as usize];
        (c.key == key).then_some(c)
    }

    /// The name of a region of the roster.
    pub fn name(&self, code: &RegionCode) -> Option<&str> {
        self.index.name(code)
    }
}

/// What a warning leads to: the policy that applies (as it applies now: quiet hours), what it
/// threatens, and whom to call.
#[derive(Debug)]
pub struct Decision {
    pub policy: Option<Policy>,
    pub threatened: Threatened,
    pub risk_points: usize,
    pub calls: Vec<Call>,
    /// False when [`decide_up_to`] stopped at its limit: more people are to be called.
    pub complete: bool,
    /// Why nothing is planned, when nothing is.
    pub note: Option<String>,
}

/// Matches the warning against the roster, picks the first policy for its colour, hazard,
/// event, the active response `level` and the levels of the regions it names, and plans.
pub fn decide(
    settings: &Settings,
    info: &Info,
    class: &Classification,
    level: Option<Level>,
    roster: &Snapshot,
    now_ms: i64,
) -> Decision {
    decide_up_to(settings, info, class, level, roster, now_ms, usize::MAX)
}

/// [`decide`], stopping once `limit` people are found: the first of a large plan, in the
/// plan's own order (regions by code, then risk points), so that a warning for 50,000 people
/// can call its first few hundred before the rest is decided (`ingest::slices`). Deciding the
/// whole plan afterwards finds the same people first, for the same reasons.
/// `Decision::complete` says whether it stopped short.
pub fn decide_up_to(
    settings: &Settings,
    info: &Info,
    class: &Classification,
    level: Option<Level>,
    roster: &Snapshot,
    now_ms: i64,
    limit: usize,
) -> Decision {
    let decide_with = |threatened, levels: &[RegionLevel], points: &[(&RiskPoint, Via)]| {
        decide_in(
            settings, info, class, level, roster, now_ms, limit, threatened, levels, points,
        )
    };
    let whole = |threatened: Threatened| {
        let levels = direct_levels(&threatened);
        let points = roster.index.threatened_points(info, &class.hazard);
        decide_with(threatened, &levels, &points)
    };
    // A warning given by division codes: the first people come from its first regions, so a
    // province-wide warning's first slice looks at a few hundred of its regions, not at all of
    // them (more when those few hold fewer people than the slice). Risk points come after
    // every region in the plan's order, so a slice filled from regions needs none.
    let mut regions = (limit < usize::MAX).then_some(limit.max(64));
    while let Some(n) = regions {
        let Some(first) = roster.index.threatened_first(info, n) else {
            break;
        };
        if first.whole {
            return whole(first.threatened);
        }
        let d = decide_with(first.threatened, &first.levels, &[]);
        if d.calls.len() >= limit || d.policy.is_none() {
            return d;
        }
        regions = Some(n.saturating_mul(8));
    }
    whole(roster.index.threatened(info))
}

/// The policy for a warning as it applies at `now_ms` (quiet hours) and its quiet-hours note,
/// or why there is none.
fn policy_for(
    settings: &Settings,
    info: &Info,
    class: &Classification,
    level: Option<Level>,
    levels: &[RegionLevel],
    now_ms: i64,
) -> Result<(Policy, Option<String>), String> {
    let subject = Subject {
        colour: class.colour,
        hazard: &class.hazard,
        event: &info.event,
        level,
        region_levels: levels,
    };
    match settings.policy_matching(&subject) {
        Some(base) => Ok(base.at(class.colour, now_ms)),
        None => Err(format!(
            "no policy for colour {:?} and hazard {}",
            class.colour, class.hazard
        )),
    }
}

const NOBODY: &str = "no region of the roster is in the warning's area";

/// [`decide_up_to`] over a threatened set (whole, or its first regions with the whole set's
/// `levels` and no risk points).
#[allow(clippy::too_many_arguments)]
fn decide_in(
    settings: &Settings,
    info: &Info,
    class: &Classification,
    level: Option<Level>,
    roster: &Snapshot,
    now_ms: i64,
    limit: usize,
    threatened: Threatened,
    levels: &[RegionLevel],
    points: &[(&RiskPoint, Via)],
) -> Decision {
    let (policy, quiet) = match policy_for(settings, info, class, level, levels, now_ms) {
        Ok(p) => p,
        Err(note) => {
            return Decision {
                policy: None,
                threatened,
                risk_points: 0,
                calls: Vec::new(),
                complete: true,
                note: Some(note),
            }
        }
    };
    let calls = plan_calls(
        &threatened,
        points,
        roster,
        &roster.index,
        &policy,
        quiet.as_deref(),
        now_ms,
        limit,
    );
    let complete = calls.len() < limit;
    let note = calls.is_empty().then(|| NOBODY.to_string());
    Decision {
        policy: Some(policy),
        threatened,
        risk_points: points.len(),
        calls,
        complete,
        note,
    }
}

/// A warning matched whole against the roster and its policy chosen, for a plan too large to
/// hold at once (issue 11 §3): [`Matched::count`]ed first, then handed over a slice at a time
/// ([`Matched::each`]). It calls whom [`decide`] calls, for the same reasons.
pub struct Matched<'r> {
    roster: &'r Snapshot,
    threatened: Threatened,
    points: Vec<(&'r RiskPoint, Via)>,
    policy: Option<(Policy, Option<String>)>,
    now_ms: i64,
}

/// [`decide`]'s matching and policy, without deciding whom to call yet.
pub fn matched<'r>(
    settings: &Settings,
    info: &Info,
    class: &Classification,
    level: Option<Level>,
    roster: &'r Snapshot,
    now_ms: i64,
) -> Matched<'r> {
    let threatened = roster.index.threatened(info);
    let levels = direct_levels(&threatened);
    let policy = policy_for(settings, info, class, level, &levels, now_ms).ok();
    Matched {
        roster,
        points: roster.index.threatened_points(info, &class.hazard),
        threatened,
        policy,
        now_ms,
    }
}

impl Matched<'_> {
    /// How many people the plan calls, without writing out anyone's call.
    pub fn count(&self) -> usize {
        let mut n = 0;
        self.walk(|_, _| {
            n += 1;
            true
        });
        n
    }

    /// [`walk`] under the chosen policy (nobody without one), handing `found` the policy's
    /// quiet-hours note with each person.
    fn walk<'m>(&'m self, mut found: impl FnMut(Found<'m>, (&'m Policy, Option<&'m str>)) -> bool) {
        if let Some((policy, quiet)) = &self.policy {
            let with = (policy, quiet.as_deref());
            walk(
                &self.threatened,
                &self.points,
                self.roster,
                policy,
                self.now_ms,
                |f| found(f, with),
            );
        }
    }

    /// The plan handed to `each` in slices of at most `size` people, in the order they are
    /// found (each slice in plan order), so that only a slice is ever held; `each` returns
    /// false to stop. True when every slice was handed over.
    pub fn each(&self, size: usize, mut each: impl FnMut(Vec<Planned>) -> bool) -> bool {
        let size = size.max(1);
        let mut slice = Vec::with_capacity(size);
        let mut go = true;
        let names = &self.roster.index;
        self.walk(|f, (policy, quiet)| {
            slice.push(f.call(policy, names, quiet).planned);
            if slice.len() == size {
                slice.sort_by(plan_order);
                go = each(std::mem::replace(&mut slice, Vec::with_capacity(size)));
            }
            go
        });
        if go && !slice.is_empty() {
            slice.sort_by(plan_order);
            go = each(slice);
        }
        go
    }
}

/// Regions and risk points without duty rosters (kept for callers that have only regions).
pub fn plan(
    threatened: &Threatened,
    contacts: &[Contact],
    policy: &Policy,
    names: &BTreeMap<RegionCode, String>,
) -> Vec<Planned> {
    let snapshot = Snapshot::new(
        Index::build(Vec::new(), Vec::new()),
        contacts.to_vec(),
        Vec::new(),
    );
    plan_calls(threatened, &[], &snapshot, names, policy, None, 0, usize::MAX)
        .into_iter()
        .map(|c| c.planned)
        .collect()
}

/// Every threatened region calls the policy's `roles` held there; every threatened risk point
/// calls its `risk_point_roles` (`monitor`, and roles of its village and township). Roles with
/// a duty roster call whoever is on shift at `now_ms`. The first reason found for a person wins.
/// At most `limit` people (the first found), in plan order; `quiet` is the policy's
/// quiet-hours note, added to each reason when it applies.
#[allow(clippy::too_many_arguments)]
pub fn plan_calls(
    threatened: &Threatened,
    points: &[(&RiskPoint, Via)],
    roster: &Snapshot,
    names: &dyn Names,
    policy: &Policy,
    quiet: Option<&str>,
    now_ms: i64,
    limit: usize,
) -> Vec<Call> {
    let mut out = Vec::new();
    if limit == 0 {
        return out;
    }
    walk(threatened, points, roster, policy, now_ms, |f| {
        out.push(f.call(policy, names, quiet));
        out.len() < limit
    });
    in_plan_order(&mut out);
    out
}

/// The plan's order: region, role, person (`plan_calls`, and each slice of `Matched::each`).
fn in_plan_order(calls: &mut [Call]) {
    calls.sort_by(|a, b| plan_order(&a.planned, &b.planned));
}

fn plan_order(a: &Planned, b: &Planned) -> std::cmp::Ordering {
    (&a.region, &a.role, a.contact_id).cmp(&(&b.region, &b.role, b.contact_id))
}

/// A person the plan's walk finds, before their call is written out: what `Call` says of
/// them, borrowed, so that counting a plan formats no reason.
struct Found<'a> {
    contact: &'a Contact,
    role: &'a str,
    region: RegionCode,
    shift: Option<String>,
    from: From<'a>,
}

/// What brings a person into the plan.
enum From<'a> {
    Region(&'a Via),
    Point(&'a RiskPoint, &'a Via),
}

impl Found<'_> {
    /// The call, its reason in the words the message and the preview use; `quiet` is the
    /// policy's quiet-hours note, when it applies.
    fn call(self, policy: &Policy, names: &dyn Names, quiet: Option<&str>) -> Call {
        let (area, risk_point) = match self.from {
            From::Region(via) => (via.describe(), None),
            From::Point(p, via) => (
                format!(
                    "风险点 {}（{}，威胁{}人）{}",
                    p.name,
                    kind_label(&p.kind),
                    p.people,
                    via.describe()
                ),
                Some(format!("{} {}", p.key, p.name)),
            ),
        };
        let mut reason = format!("{area}；规则 {}；职责 {}", policy.name, role_label(self.role));
        if let Some(s) = &self.shift {
            reason = format!("{reason}；{s}");
        }
        if let Some(q) = quiet {
            reason = format!("{reason}；{q}");
        }
        Call {
            planned: Planned {
                contact_id: self.contact.id,
                contact_key: self.contact.key.clone(),
                place: place_name(&self.region, names),
                region: self.region,
                role: self.role.to_string(),
                reason,
            },
            area,
            rule: policy.name.clone(),
            shift: self.shift,
            risk_point,
        }
    }
}

/// Walks the plan in the order people are found (regions by code, each region's roles in the
/// policy's order, then risk points), handing each person to `found` once, for the first
/// reason found; `found` returns false to stop the walk.
fn walk<'a>(
    threatened: &'a Threatened,
    points: &'a [(&'a RiskPoint, Via)],
    roster: &'a Snapshot,
    policy: &'a Policy,
    now_ms: i64,
    mut found: impl FnMut(Found<'a>) -> bool,
) {
    let by_key = |k: &str| roster.contact(k);
    let duty = Duty::new(&roster.shifts);
    let mut seen = HashSet::new();
    let mut go = true;
    let mut call = |f: Found<'a>| {
        if go && seen.insert(f.contact.id) {
            go = found(f);
        }
        go
    };
    for (code, via) in threatened {
        for role in &policy.roles {
            let hs = roster.holders(role, code);
            for h in duty.resolve(role, code, now_ms, &hs, &by_key) {
                let f = Found {
                    contact: h.contact,
                    role,
                    region: code.clone(),
                    shift: h.shift,
                    from: From::Region(via),
                };
                if !call(f) {
                    return;
                }
            }
        }
    }
    for (p, via) in points {
        for role in &policy.risk_point_roles {
            if role == "monitor" {
                for c in p.monitors.iter().filter_map(|k| roster.contact(k)) {
                    let f = Found {
                        contact: c,
                        role: "risk_monitor",
                        region: p.region.clone(),
                        shift: None,
                        from: From::Point(p, via),
                    };
                    if !call(f) {
                        return;
                    }
                }
                continue;
            }
            let township = p.region.township().filter(|t| *t != p.region);
            for code in std::iter::once(&p.region).chain(township.as_ref()) {
                let hs = roster.holders(role, code);
                for h in duty.resolve(role, code, now_ms, &hs, &by_key) {
                    let f = Found {
                        contact: h.contact,
                        role,
                        region: code.clone(),
                        shift: h.shift,
                        from: From::Point(p, via),
                    };
                    if !call(f) {
                        return;
                    }
                }
            }
        }
    }
}

/// The Chinese name of a risk-point kind.
pub fn kind_label(kind: &str) -> &str {
    match kind {
        "reservoir" => "水库",
        "flash_flood" => "山洪危险区",
        "geohazard" => "地质灾害隐患点",
        "waterlogging" => "易涝点",
        "other" => "其他风险点",
        other => other,
    }
}

#[cfg(test)]
mod tests {
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
}
