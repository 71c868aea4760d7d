//! Planning (pure): threatened regions and risk points × contacts × duty rosters × the policy →
//! the call-outs to make, each with its reason (which area, which rule, which shift).
//! One call-out per person per incident, whatever the number of regions they answer for.

#[cfg(test)]
mod tests;
mod walk;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cap::{Classification, Info};
use crate::config::{Level, Policy, Settings, Subject};
use crate::domain::{RegionCode, RegionLevel};
use crate::target::roster::{Contact, DutyShift, RiskPoint};
use crate::target::targeting::{direct_levels, Index, Threatened, Via};

pub use walk::plan_calls;
use walk::{plan_order, walk, Found};

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
