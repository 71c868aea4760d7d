//! The plan's walk (pure): who a threatened set and its risk points bring in, in the order
//! they are found, each once, and their calls written out. The whole plan, its first slice,
//! its count and its slices all come from this one walk (`super::Matched`), so they cannot
//! disagree. This file must not choose the policy nor match the warning (that is `super`).

use std::collections::HashSet;

use crate::config::Policy;
use crate::domain::RegionCode;
use crate::target::duty::Duty;
use crate::target::roster::{role_label, Contact, RiskPoint};
use crate::target::targeting::{place_name, Names, Threatened, Via};

use super::{kind_label, Call, Planned, Snapshot};

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

pub(super) fn plan_order(a: &Planned, b: &Planned) -> std::cmp::Ordering {
    (&a.region, &a.role, a.contact_id).cmp(&(&b.region, &b.role, b.contact_id))
}

/// A person the plan's walk finds, before their call is written out: what `Call` says of
/// them, borrowed, so that counting a plan formats no reason.
pub(super) struct Found<'a> {
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
    pub(super) fn call(self, policy: &Policy, names: &dyn Names, quiet: Option<&str>) -> Call {
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
pub(super) fn walk<'a>(
    threatened: &'a Threatened,
    points: &'a [(&'a RiskPoint, Via)],
    roster: &'a Snapshot,
    policy: &'a Policy,
    now_ms: i64,
    mut found: impl FnMut(Found<'a>) -> bool,
) {
    let by_key = |k: &str| roster.contact(k);
    let duty = Duty::new(&roster.shifts);
    // Who holds `role` in `region` and is called for it now (on shift, or every holder).
    let on_duty = |role: &str, region: &RegionCode| {
        duty.resolve(role, region, now_ms, &roster.holders(role, region), &by_key)
    };
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
            for h in on_duty(role, code) {
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
                for h in on_duty(role, code) {
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
