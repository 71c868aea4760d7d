//! What an Update does to an incident's call-outs (pure). The store applies the decision in
//! the ingest transaction; ingest.rs documents how references are resolved.
//!
//! - Area grown (people planned who were never called) → new call-outs for them only.
//! - Colour raised → everyone already called (their latest call-out, unless cancelled) is
//!   called again with the upgraded message; the new call-out has its own deadline, the old
//!   one (and any answer to it) stays in the record.
//! - Colour lowered → an information notice to everyone already sent a call-out; no deadline.
//! - Same colour → nothing for those already called.

use std::collections::{BTreeMap, HashSet};

use crate::domain::callout::State;
use crate::domain::Colour;
use crate::target::plan::Planned;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Raised,
    Lowered,
    Same,
}

impl Step {
    pub fn between(old: Option<Colour>, new: Option<Colour>) -> Step {
        match (old, new) {
            (Some(o), Some(n)) if n > o => Step::Raised,
            (Some(o), Some(n)) if n < o => Step::Lowered,
            // An update without a colour keeps the incident's colour.
            _ => Step::Same,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Raised => "raised",
            Step::Lowered => "lowered",
            Step::Same => "same",
        }
    }
}

/// One call-out of the incident as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub callout_id: i64,
    pub contact_id: i64,
    pub state: State,
    pub sent: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Revision {
    /// Newly covered people: ordinary call-outs.
    pub new: Vec<Planned>,
    /// Call-outs whose person is called again with the upgraded message.
    pub upgrade: Vec<i64>,
    /// Call-outs whose person gets an information notice (colour lowered).
    pub inform: Vec<i64>,
}

pub fn revise(existing: &[Existing], planned: Vec<Planned>, step: Step) -> Revision {
    // A person's latest call-out speaks for them (earlier ones were superseded or escalated).
    let mut latest: BTreeMap<i64, &Existing> = BTreeMap::new();
    for e in existing {
        let slot = latest.entry(e.contact_id).or_insert(e);
        if e.callout_id > slot.callout_id {
            *slot = e;
        }
    }
    let called: HashSet<i64> = latest.keys().copied().collect();
    let live = latest.values().filter(|e| e.state != State::Cancelled);
    let (upgrade, inform) = match step {
        Step::Raised => (live.map(|e| e.callout_id).collect(), Vec::new()),
        Step::Lowered => (
            Vec::new(),
            live.filter(|e| e.sent).map(|e| e.callout_id).collect(),
        ),
        Step::Same => (Vec::new(), Vec::new()),
    };
    Revision {
        new: planned
            .into_iter()
            .filter(|p| !called.contains(&p.contact_id))
            .collect(),
        upgrade,
        inform,
    }
}

/// "暴雨橙色→红色预警": the change in as few characters as the first SMS segment needs.
pub fn change_label(from_event: &str, from: Option<Colour>, to_event: &str, to: Option<Colour>) -> String {
    if let (Some(f), Some(t)) = (from, to) {
        if from_event.contains(f.zh()) && from_event.replace(f.zh(), "") == to_event.replace(t.zh(), "") {
            return to_event.replacen(t.zh(), &format!("{}→{}", f.zh(), t.zh()), 1);
        }
    }
    if from_event == to_event {
        return to_event.to_string();
    }
    format!("{from_event}→{to_event}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RegionCode;

    fn planned(contact_id: i64) -> Planned {
        Planned {
            contact_id,
            contact_key: format!("k{contact_id}"),
            region: RegionCode::parse("450921104201").unwrap(),
            role: "village_leader".into(),
            place: "容县".into(),
            reason: "r".into(),
        }
    }

    fn existing(callout_id: i64, contact_id: i64, state: State, sent: bool) -> Existing {
        Existing {
            callout_id,
            contact_id,
            state,
            sent,
        }
    }

    #[test]
    fn steps_follow_the_colour_order() {
        use Colour::*;
        assert_eq!(Step::between(Some(Orange), Some(Red)), Step::Raised);
        assert_eq!(Step::between(Some(Red), Some(Yellow)), Step::Lowered);
        assert_eq!(Step::between(Some(Red), Some(Red)), Step::Same);
        assert_eq!(Step::between(Some(Red), None), Step::Same);
        assert_eq!(Step::between(None, Some(Blue)), Step::Same);
    }

    #[test]
    fn grown_area_calls_only_the_new_people() {
        let ex = [
            existing(10, 1, State::Acknowledged, true),
            existing(11, 2, State::Sent, true),
        ];
        let r = revise(&ex, vec![planned(1), planned(2), planned(3)], Step::Same);
        assert_eq!(r.new.iter().map(|p| p.contact_id).collect::<Vec<_>>(), [3]);
        assert!(r.upgrade.is_empty() && r.inform.is_empty());
    }

    #[test]
    fn raised_calls_everyone_again_by_their_latest_call_out_but_not_the_cancelled() {
        let ex = [
            existing(10, 1, State::Cancelled, true),
            existing(20, 1, State::Acknowledged, true), // an earlier upgrade, answered
            existing(11, 2, State::Escalated, true),
            existing(12, 3, State::Planned, false),
            existing(13, 4, State::Cancelled, true),
        ];
        let mut r = revise(&ex, vec![planned(1), planned(5)], Step::Raised);
        r.upgrade.sort_unstable();
        assert_eq!(r.upgrade, [11, 12, 20]);
        assert_eq!(r.new.len(), 1);
        assert_eq!(r.new[0].contact_id, 5);
        assert!(r.inform.is_empty());
    }

    #[test]
    fn lowered_informs_only_those_already_sent() {
        let ex = [
            existing(10, 1, State::Acknowledged, true),
            existing(11, 2, State::Planned, false),
            existing(12, 3, State::Sent, true),
            existing(13, 4, State::Cancelled, true),
        ];
        let mut r = revise(&ex, vec![], Step::Lowered);
        r.inform.sort_unstable();
        assert_eq!(r.inform, [10, 12]);
        assert!(r.upgrade.is_empty() && r.new.is_empty());
    }

    #[test]
    fn change_labels_stay_short() {
        use Colour::*;
        assert_eq!(
            change_label("暴雨橙色预警", Some(Orange), "暴雨红色预警", Some(Red)),
            "暴雨橙色→红色预警"
        );
        assert_eq!(
            change_label("暴雨红色预警", Some(Red), "暴雨黄色预警", Some(Yellow)),
            "暴雨红色→黄色预警"
        );
        assert_eq!(
            change_label("大风橙色预警", Some(Orange), "暴雨红色预警", Some(Red)),
            "大风橙色预警→暴雨红色预警"
        );
    }
}
