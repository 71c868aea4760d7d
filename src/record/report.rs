//! After-action reports: who was called, who answered and when, who was never reached, and
//! evacuation totals rolled up township → county → city. `summarise` is pure; `store::reports::load`
//! reads what it needs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::callout::State;
use crate::domain::RegionCode;
use crate::domain::{Callout, EvacuationRow, Incident, Knock};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub called: usize,
    pub answered: usize,
    pub late: usize,
    pub escalated: usize,
    pub unreached: usize,
    pub evacuated: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionRow {
    pub code: String,
    pub name: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct Person {
    pub callout_id: i64,
    pub contact_key: String,
    pub name: String,
    pub role: String,
    pub place: String,
    pub phone: Option<String>,
    pub state: State,
}

/// `P` is the incident's policy as the store reads it (`config::Policy`); a report only shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Report<P> {
    /// "演练 / drill" for an exercise, so that no reader takes it for a real event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<&'static str>,
    pub incident: Incident<P>,
    pub totals: Counts,
    pub counties: Vec<RegionRow>,
    pub townships: Vec<RegionRow>,
    /// Seconds from the call-out to its answer: median, 90th percentile, slowest.
    pub answer_seconds: Option<[f64; 3]>,
    /// Every step of the ladder used up, or failed everywhere: a person must phone them.
    pub unreached: Vec<Person>,
    /// Door-knock tasks (上门叫应) and what the knocker found.
    pub door_knocks: Vec<DoorKnock>,
    /// Scheduled rounds of a response (三调度), per round and township: asked and answered.
    pub rounds: Vec<RoundRow>,
    pub callouts: Vec<Callout>,
    /// What happened when, oldest first: warnings received, incident opened, first send,
    /// escalations per rung, level activations, stand-down (`with_timeline` fills it).
    pub timeline: Vec<Event>,
    /// Time from call-out to answer in fixed buckets, for the chart.
    pub answer_histogram: Vec<Bucket>,
    /// Evacuation totals, village → township → county → city, each level summed from the one
    /// below (latest report per reporter, as `store::answers` reads them).
    pub evacuation: Vec<EvacuationTotal>,
    /// The ledger state this report was read at (`None` until the store fills it).
    pub ledger: Option<LedgerHead>,
    /// The latest signed checkpoint of the ledger when the report was made (None: checkpoints
    /// off, or none yet); the reader can hold the ledger to it. Filled by whoever reads the
    /// checkpoint file (`audit::latest`), not by `summarise`.
    pub checkpoint: Option<super::checkpoint::Checkpoint>,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// unix milliseconds
    pub at: i64,
    /// A stable key (`warning`, `opened`, `first_send`, `escalation`, `response`,
    /// `response_end`, `first_answer`, `stand_down`).
    pub kind: &'static str,
    /// Chinese first, English beside: what the row says to a reader.
    pub what: String,
    pub detail: String,
}

/// A response level (应急响应) as the timeline shows it; plain data so `record` stays a leaf.
#[derive(Debug, Clone)]
pub struct ResponseSpan {
    pub id: i64,
    pub hazard: String,
    /// `Ⅳ级` etc.
    pub level: String,
    pub regions: Vec<String>,
    pub actor: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
}

/// A warning message joined to the incident (Alert, Update, Cancel).
#[derive(Debug, Clone)]
pub struct WarningSeen {
    pub id: i64,
    pub received_at: i64,
    pub msg_type: String,
    pub event: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// `< 30 s`, `1–2 min` …
    pub label: &'static str,
    /// Upper bound in seconds, exclusive; `None` for the last bucket.
    pub below_seconds: Option<u32>,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvacuationTotal {
    /// `village`, `township`, `county`, `city` (a province-level or shorter code counts as city).
    pub level: &'static str,
    pub code: String,
    pub name: String,
    pub moved: i64,
    /// Sum of the reports that gave a threatened count; `None` when none did.
    pub threatened: Option<i64>,
}

/// The ledger head (seq + hash) the report was built from; the signed checkpoint that vouches
/// for the chain is `Report::checkpoint`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerHead {
    pub seq: i64,
    pub hash: String,
}

/// Bucket bounds (seconds, exclusive) and labels, Chinese with English beside.
const BUCKETS: [(Option<u32>, &str); 8] = [
    (Some(30), "<30秒 / <30 s"),
    (Some(60), "30秒–1分 / 30 s–1 min"),
    (Some(120), "1–2分 / 1–2 min"),
    (Some(300), "2–5分 / 2–5 min"),
    (Some(600), "5–10分 / 5–10 min"),
    (Some(1800), "10–30分 / 10–30 min"),
    (Some(3600), "30–60分 / 30–60 min"),
    (None, "≥60分 / ≥60 min"),
];

pub fn histogram(seconds: &[f64]) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = BUCKETS
        .iter()
        .map(|(below, label)| Bucket {
            label,
            below_seconds: *below,
            count: 0,
        })
        .collect();
    for s in seconds {
        let i = out
            .iter()
            .position(|b| b.below_seconds.is_none_or(|u| *s < u as f64))
            .unwrap_or(out.len() - 1);
        out[i].count += 1;
    }
    out
}

/// Village → township → county → city: each evacuation row counts at its own level and every
/// level above it, so a township's total includes what its villages reported and what was
/// reported for the township itself.
pub fn roll_up(evacuations: &[EvacuationRow], names: &BTreeMap<RegionCode, String>) -> Vec<EvacuationTotal> {
    let mut sums: BTreeMap<(u8, String), (i64, Option<i64>)> = BTreeMap::new();
    for e in evacuations {
        let code = e.region_code.as_str();
        // (rank, prefix length): a level is counted only when the code is at least that deep;
        // anything shorter than a city code counts as the city.
        for (rank, len) in [(0u8, 4usize), (1, 6), (2, 9), (3, 12)] {
            if rank > 0 && code.len() < len.min(10) {
                continue;
            }
            let key = code[..code.len().min(len)].to_string();
            let s = sums.entry((rank, key)).or_default();
            s.0 += e.moved;
            if let Some(t) = e.threatened {
                s.1 = Some(s.1.unwrap_or(0) + t);
            }
        }
    }
    sums.into_iter()
        .map(|((rank, code), (moved, threatened))| EvacuationTotal {
            level: ["city", "county", "township", "village"][rank as usize],
            name: RegionCode::parse(&code)
                .ok()
                .and_then(|c| names.get(&c).cloned())
                .unwrap_or_else(|| code.clone()),
            code,
            moved,
            threatened,
        })
        .collect()
}

/// Fills the timeline from the report's own call-outs plus what the store read beside them.
pub fn with_timeline<P>(r: &mut Report<P>, warnings: &[WarningSeen], responses: &[ResponseSpan]) {
    let mut t = Vec::new();
    for w in warnings {
        t.push(Event {
            at: w.received_at,
            kind: "warning",
            what: format!("收到预警 / warning received ({})", w.msg_type),
            detail: format!("{} #{}", w.event, w.id),
        });
    }
    let i = &r.incident;
    t.push(Event {
        at: i.created_at,
        kind: "opened",
        what: "事件开启 / incident opened".into(),
        detail: format!("{} {}", i.code, i.title),
    });
    if let Some((at, n)) = first_and_count(r.callouts.iter().filter_map(|c| c.sent_at)) {
        t.push(Event {
            at,
            kind: "first_send",
            what: "首次发送 / first send".into(),
            detail: format!("{n} 条已发送 / sent"),
        });
    }
    if let Some((at, n)) = first_and_count(r.callouts.iter().filter_map(|c| c.acked_at)) {
        t.push(Event {
            at,
            kind: "first_answer",
            what: "首次应答 / first answer".into(),
            detail: format!("{n} 人应答 / answered"),
        });
    }
    // One line per rung: a thousand escalations are one fact per step of the ladder.
    let mut rungs: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for c in r
        .callouts
        .iter()
        .filter(|c| c.rung > 0 && !c.knock && c.round.is_none())
    {
        rungs.entry(c.rung).or_default().push(c.created_at);
    }
    for (rung, ats) in rungs {
        let (at, n) = first_and_count(ats.into_iter()).expect("a rung has a call-out");
        t.push(Event {
            at,
            kind: "escalation",
            what: format!("升级第{rung}级 / escalation, step {rung}"),
            detail: format!("{n} 次 / call-outs"),
        });
    }
    for s in responses {
        t.push(Event {
            at: s.started_at,
            kind: "response",
            what: format!("启动{}应急响应 / response level {} activated", s.level, s.level),
            detail: format!("{} {} ({})", s.hazard, s.regions.join(","), s.actor),
        });
        if let Some(end) = s.ended_at {
            t.push(Event {
                at: end,
                kind: "response_end",
                what: format!("终止{}应急响应 / response level {} ended", s.level, s.level),
                detail: format!("#{} {}", s.id, s.ended_by.clone().unwrap_or_default()),
            });
        }
    }
    if let Some(at) = i.closed_at {
        t.push(Event {
            at,
            kind: "stand_down",
            what: "解除 / stand-down".into(),
            detail: String::new(),
        });
    }
    t.sort_by_key(|e| e.at);
    r.timeline = t;
}

fn first_and_count(ats: impl Iterator<Item = i64>) -> Option<(i64, usize)> {
    ats.fold(None, |acc, at| match acc {
        None => Some((at, 1)),
        Some((first, n)) => Some((first.min(at), n + 1)),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundRow {
    pub round: i64,
    pub code: String,
    pub name: String,
    pub asked: usize,
    pub answered: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoorKnock {
    pub task_id: i64,
    /// The call-out of the person at the door.
    pub callout_id: Option<i64>,
    pub knocker: String,
    /// Whose door (上门叫应：name (role, phone) 未应答).
    pub door: String,
    pub place: String,
    /// None: no result reported (yet).
    pub result: Option<Knock>,
    pub at: Option<i64>,
}

pub fn summarise<P>(
    incident: Incident<P>,
    callouts: Vec<Callout>,
    evacuations: &[EvacuationRow],
    knocks: &[(i64, Knock, i64)],
    names: &BTreeMap<RegionCode, String>,
) -> Report<P> {
    let mut rounds: BTreeMap<(i64, RegionCode), (usize, usize)> = BTreeMap::new();
    for c in callouts.iter() {
        if let Some(n) = c.round {
            let town = c.region_code.township().unwrap_or_else(|| c.region_code.clone());
            let e = rounds.entry((n, town)).or_default();
            e.0 += 1;
            e.1 += usize::from(c.state == State::Acknowledged);
        }
    }
    let rounds = rounds
        .into_iter()
        .map(|((round, code), (asked, answered))| RoundRow {
            round,
            name: names.get(&code).cloned().unwrap_or_else(|| code.to_string()),
            code: code.to_string(),
            asked,
            answered,
        })
        .collect();
    let results: BTreeMap<i64, (Knock, i64)> = knocks.iter().map(|(t, k, at)| (*t, (*k, *at))).collect();
    let door_knocks = callouts
        .iter()
        .filter(|c| c.knock)
        .map(|c| DoorKnock {
            task_id: c.id,
            callout_id: c.parent_id,
            knocker: c.contact_name.clone(),
            door: c.reason.clone(),
            place: c.place.clone(),
            result: results.get(&c.id).map(|r| r.0),
            at: results.get(&c.id).map(|r| r.1),
        })
        .collect();
    let mut totals = Counts::default();
    let mut counties: BTreeMap<RegionCode, Counts> = BTreeMap::new();
    let mut townships: BTreeMap<RegionCode, Counts> = BTreeMap::new();
    let mut times = Vec::new();
    let mut unreached = Vec::new();
    // Above county level a code counts as its own county, above township as its own township.
    let levels = |code: &RegionCode| -> (RegionCode, RegionCode) {
        let county = code.county().unwrap_or_else(|| code.clone());
        let town = code.township().unwrap_or_else(|| county.clone());
        (county, town)
    };
    for c in &callouts {
        let state = c.state;
        let (county, town) = levels(&c.region_code);
        for counts in [
            &mut totals,
            counties.entry(county).or_default(),
            townships.entry(town).or_default(),
        ] {
            counts.called += 1;
            match state {
                State::Acknowledged => {
                    counts.answered += 1;
                    counts.late += c.ack_late as usize;
                }
                State::Escalated => counts.escalated += 1,
                State::Unreached | State::Failed => counts.unreached += 1,
                _ => {}
            }
        }
        if let Some(at) = c.acked_at {
            times.push((at - c.created_at) as f64 / 1000.0);
        }
        // One row per person: a door-knock task they left unanswered joins their own row.
        if let Some(p) = unreached.iter_mut().find(|p: &&mut Person| {
            matches!(state, State::Unreached | State::Failed) && p.contact_key == c.contact_key
        }) {
            p.place = format!("{}；{}", p.place, c.place);
        } else if matches!(state, State::Unreached | State::Failed) {
            unreached.push(Person {
                contact_key: c.contact_key.clone(),
                callout_id: c.id,
                name: c.contact_name.clone(),
                role: c.role.clone(),
                place: c.place.clone(),
                phone: c.phone.clone(),
                state: c.state,
            });
        }
    }
    for e in evacuations {
        let (county, town) = levels(&e.region_code);
        totals.evacuated += e.moved;
        counties.entry(county).or_default().evacuated += e.moved;
        townships.entry(town).or_default().evacuated += e.moved;
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let answer_seconds = (!times.is_empty()).then(|| [pick(0.5), pick(0.9), pick(1.0)]);
    let rows = |m: BTreeMap<RegionCode, Counts>| {
        m.into_iter()
            .map(|(code, counts)| RegionRow {
                name: names.get(&code).cloned().unwrap_or_else(|| code.to_string()),
                code: code.to_string(),
                counts,
            })
            .collect()
    };
    let answer_histogram = histogram(&times);
    Report {
        timeline: Vec::new(),
        answer_histogram,
        evacuation: roll_up(evacuations, names),
        ledger: None,
        mark: incident.drill.then_some(DRILL),
        incident,
        totals,
        counties: rows(counties),
        townships: rows(townships),
        answer_seconds,
        unreached,
        door_knocks,
        rounds,
        callouts,
        checkpoint: None,
    }
}

const DRILL: &str = "演练 / drill";

/// The per-county table the demo and `jiaoying report` print.
pub fn table<P>(r: &Report<P>) -> String {
    let mut s = match r.mark {
        Some(_) => "【演练】本次为演练，不是真实预警 / DRILL: an exercise, not a real warning\n".to_string(),
        None => String::new(),
    };
    s += &format!(
        "{:<10} {:<8} {:>6} {:>6} {:>6} {:>6} {:>8}\n",
        "code", "county", "called", "answer", "escal", "unrch", "evacuated"
    );
    s.push_str(&format!(
        "{:<10} {:<8} {:>6} {:>6} {:>6} {:>6} {:>8}\n",
        "区划", "县区", "叫应", "应答", "升级", "未叫醒", "转移人数"
    ));
    for row in r.counties.iter().chain(std::iter::once(&RegionRow {
        code: "total".into(),
        name: "合计".into(),
        counts: r.totals.clone(),
    })) {
        let c = &row.counts;
        s.push_str(&format!(
            "{:<10} {:<8} {:>6} {:>6} {:>6} {:>6} {:>8}\n",
            row.code, row.name, c.called, c.answered, c.escalated, c.unreached, c.evacuated
        ));
    }
    if let Some(c) = &r.checkpoint {
        s.push_str(&format!(
            "台账检查点 ledger checkpoint: seq {} hash {} at {} (key {})\n",
            c.seq, c.hash, c.at, c.key
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(drill: bool) -> Incident<()> {
        Incident {
            id: 1,
            code: "A1".into(),
            warning_id: None,
            title: "t".into(),
            event: "暴雨红色预警".into(),
            description: String::new(),
            instruction: String::new(),
            colour: Some(crate::domain::Colour::Red),
            hazard: "rainstorm".into(),
            policy: (),
            drill,
            state: crate::domain::IncidentState::Active,
            created_at: 0,
            expires_at: None,
            closed_at: None,
        }
    }

    #[test]
    fn drills_are_marked_in_the_report_and_its_table() {
        let r = summarise(incident(true), vec![], &[], &[], &BTreeMap::new());
        assert_eq!(r.mark, Some(DRILL));
        assert!(table(&r).starts_with("【演练】"), "{}", table(&r));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["mark"], DRILL);
        let r = summarise(incident(false), vec![], &[], &[], &BTreeMap::new());
        assert!(r.mark.is_none() && !table(&r).contains("演练"));
    }
}
