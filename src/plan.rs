//! Planning (pure): threatened regions × contacts × the policy → the call-outs to make.
//! One call-out per person per incident, whatever the number of regions they answer for.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::config::Policy;
use crate::domain::RegionCode;
use crate::roster::Contact;
use crate::targeting::{place_name, Threatened};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    pub contact_id: i64,
    pub contact_key: String,
    pub region: RegionCode,
    pub role: String,
    pub place: String,
    pub reason: String,
}

pub fn plan(
    threatened: &Threatened,
    contacts: &[Contact],
    policy: &Policy,
    names: &BTreeMap<RegionCode, String>,
) -> Vec<Planned> {
    let roles: HashSet<&str> = policy.roles.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    let mut out: Vec<Planned> = contacts
        .iter()
        .filter(|c| roles.contains(c.role.as_str()))
        .filter_map(|c| {
            let via = threatened.get(&c.region)?;
            seen.insert(c.id).then(|| Planned {
                contact_id: c.id,
                contact_key: c.key.clone(),
                region: c.region.clone(),
                role: c.role.clone(),
                place: place_name(&c.region, names),
                reason: format!("{}；规则 {}；职责 {}", via.describe(), policy.name, c.role),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.region, &a.role, a.contact_id).cmp(&(&b.region, &b.role, b.contact_id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::domain::Colour;
    use crate::targeting::Via;

    fn contact(id: i64, role: &str, region: &str) -> Contact {
        Contact {
            id,
            key: format!("k{id}"),
            name: format!("n{id}"),
            phone: None,
            email: Some("x@y.z".into()),
            role: role.into(),
            region: RegionCode::parse(region).unwrap(),
            backup: None,
            superior: None,
            channels: vec![],
        }
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
}
