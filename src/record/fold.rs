//! The state the ledger says the database is in (pure): a fold of the entries, in `seq` order,
//! into the rows of the state tables an after-action review trusts (call-outs, answers,
//! evacuation reports, door-knock results, incidents, response levels, warnings' raw bytes),
//! and the comparison of those rows with the live ones, naming the first that differs.
//!
//! It must not read storage (`store::ledger` streams the entries in and reads the live rows
//! into the same [`Tables`] shape) nor decide anything: it only repeats what each entry says.
//! Only the columns listed per table in [`COLUMNS`] are covered; the others (a call-out's
//! rung, its sent_at, an incident's words) are not state the report is built from.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ledger::Entry;
use crate::domain::callout::State;
use crate::domain::{Callout, Colour, EvacuationRow, Incident, IncidentState, Knock, RegionCode};

/// Lowercase hex SHA-256 of a warning's raw bytes, as its ledger entry carries it.
pub fn digest(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// The tables and the columns compared, in the order they are checked.
pub const COLUMNS: [(&str, &[&str]); 7] = [
    ("incidents", &["state", "colour", "closed_at"]),
    ("callouts", &["incident_id", "state", "acked_at", "ack_late"]),
    ("acks", &["method", "at", "late", "actor"]),
    (
        "evacuations",
        &[
            "incident_id",
            "callout_id",
            "reporter",
            "region_code",
            "moved",
            "threatened",
            "method",
            "at",
        ],
    ),
    ("knocks", &["task_id", "callout_id", "result", "method", "at"]),
    (
        "responses",
        &[
            "hazard",
            "level",
            "regions",
            "incident_id",
            "started_at",
            "until_at",
            "ended_at",
            "ended_by",
        ],
    ),
    ("warnings", &["raw_sha256"]),
];

/// One row: column → value (JSON: null, a number, a string, or the parsed JSON of a JSON column).
pub type Row = BTreeMap<&'static str, Value>;

/// table → id → row. Acknowledgements are keyed by call-out id (one per call-out).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tables {
    pub tables: BTreeMap<&'static str, BTreeMap<i64, Row>>,
}

/// The first row where the live tables and the ledger disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table} {id}: {column} is {live} in the table but {ledger} in the ledger")]
pub struct Differs {
    pub table: String,
    pub id: i64,
    pub column: String,
    pub live: String,
    pub ledger: String,
}

fn table_name(t: &str) -> &'static str {
    COLUMNS
        .iter()
        .map(|c| c.0)
        .find(|n| *n == t)
        .expect("a table listed in COLUMNS")
}

fn subject_id(subject: &str, prefix: &str) -> Option<i64> {
    subject.strip_prefix(prefix)?.strip_prefix(':')?.parse().ok()
}

fn get(b: &Value, k: &str) -> Value {
    b.get(k).cloned().unwrap_or(Value::Null)
}

impl Tables {
    pub fn row_mut(&mut self, table: &str, id: i64) -> &mut Row {
        self.tables
            .entry(table_name(table))
            .or_default()
            .entry(id)
            .or_default()
    }

    pub fn row(&self, table: &str, id: i64) -> Option<&Row> {
        self.tables.get(table).and_then(|t| t.get(&id))
    }

    /// Sets one live or folded value.
    pub fn set(&mut self, table: &str, id: i64, column: &'static str, v: Value) {
        self.row_mut(table, id).insert(column, v);
    }

    /// Applies one entry. Entries of kinds that change no covered state are skipped; a body
    /// that does not read as JSON is a broken record and is reported as such.
    pub fn apply(&mut self, e: &Entry) -> Result<(), String> {
        let b: Value =
            serde_json::from_str(&e.body).map_err(|x| format!("seq {}: body is not JSON: {x}", e.seq))?;
        let at = Value::from(e.at);
        let sub = |p: &str| {
            subject_id(&e.subject, p)
                .ok_or_else(|| format!("seq {}: subject {:?} is not {p}:ID", e.seq, e.subject))
        };
        match e.kind.as_str() {
            "warning.received" => {
                let id = sub("warning")?;
                self.set("warnings", id, "raw_sha256", get(&b, "raw_sha256"));
            }
            "incident.opened" => {
                let id = sub("incident")?;
                let r = self.row_mut("incidents", id);
                r.insert("state", "active".into());
                r.insert("colour", get(&b, "colour"));
                r.insert("closed_at", Value::Null);
            }
            "incident.updated" => {
                // A missing colour keeps the incident's (the store's COALESCE).
                let id = sub("incident")?;
                if let Some(c) = b.get("to").filter(|c| !c.is_null()) {
                    self.set("incidents", id, "colour", c.clone());
                }
            }
            "incident.closed" => {
                let id = sub("incident")?;
                let r = self.row_mut("incidents", id);
                r.insert("state", "closed".into());
                r.insert("closed_at", at);
            }
            "callout.planned" => {
                let id = sub("callout")?;
                self.new_callout(id, get(&b, "incident"));
            }
            "callout.escalated" => {
                let parent = sub("callout")?;
                let incident = match b.get("incident") {
                    Some(i) => i.clone(),
                    None => self
                        .row("callouts", parent)
                        .and_then(|r| r.get("incident_id").cloned())
                        .unwrap_or(Value::Null),
                };
                for child in b
                    .get("new_callouts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let child = child
                        .as_i64()
                        .ok_or_else(|| format!("seq {}: new_callouts", e.seq))?;
                    self.new_callout(child, incident.clone());
                }
            }
            "callout.state" => {
                let state = get(&b, "state");
                for id in b.get("ids").and_then(Value::as_array).into_iter().flatten() {
                    let id = id.as_i64().ok_or_else(|| format!("seq {}: ids", e.seq))?;
                    self.set("callouts", id, "state", state.clone());
                }
            }
            "ack.recorded" => {
                let id = sub("callout")?;
                let late = Value::from(b.get("late").and_then(Value::as_bool).unwrap_or(false));
                let r = self.row_mut("callouts", id);
                r.insert("state", "acknowledged".into());
                r.insert("acked_at", at.clone());
                r.insert("ack_late", late.clone());
                let a = self.row_mut("acks", id);
                a.insert("method", get(&b, "method"));
                a.insert("at", at);
                a.insert("late", late);
                a.insert("actor", get(&b, "actor"));
            }
            "evacuation.reported" => {
                let incident = sub("incident")?;
                let id = b
                    .get("id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| format!("seq {}: id", e.seq))?;
                let r = self.row_mut("evacuations", id);
                r.insert("incident_id", incident.into());
                r.insert("callout_id", get(&b, "callout"));
                r.insert("reporter", get(&b, "reporter"));
                r.insert("region_code", get(&b, "region"));
                r.insert("moved", get(&b, "moved"));
                r.insert("threatened", get(&b, "threatened"));
                r.insert("method", get(&b, "method"));
                r.insert("at", at);
            }
            "knock.result" => {
                let callout = sub("callout")?;
                let id = b
                    .get("id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| format!("seq {}: id", e.seq))?;
                let r = self.row_mut("knocks", id);
                r.insert("task_id", get(&b, "task"));
                r.insert("callout_id", callout.into());
                r.insert("result", get(&b, "result"));
                r.insert("method", get(&b, "method"));
                r.insert("at", at);
            }
            "response.activated" => {
                let id = sub("response")?;
                let r = self.row_mut("responses", id);
                r.insert("hazard", get(&b, "hazard"));
                r.insert("level", get(&b, "level"));
                r.insert("regions", get(&b, "regions"));
                r.insert("incident_id", get(&b, "incident"));
                r.insert("started_at", at);
                r.insert("until_at", get(&b, "until_at"));
                r.insert("ended_at", Value::Null);
                r.insert("ended_by", Value::Null);
            }
            "response.ended" => {
                let id = sub("response")?;
                let r = self.row_mut("responses", id);
                r.insert("ended_at", at);
                r.insert("ended_by", get(&b, "actor"));
            }
            _ => {}
        }
        Ok(())
    }

    fn new_callout(&mut self, id: i64, incident: Value) {
        let r = self.row_mut("callouts", id);
        r.insert("incident_id", incident);
        r.insert("state", "planned".into());
        r.insert("acked_at", Value::Null);
        r.insert("ack_late", false.into());
    }
}

/// What an after-action report is built from, as the ledger says it: the report's own rules
/// (`record::report::summarise`) then run on these instead of the live rows. The people
/// (names, phones, roles) are the roster's, which the ledger does not hold: `callouts` are the
/// live rows of the incident, and each one's state and answer are replaced by the ledger's; a
/// live call-out the ledger never made is dropped, one the ledger made but the table lost is
/// missing, and either way the report differs.
pub struct ReportInputs<P> {
    pub incident: Incident<P>,
    pub callouts: Vec<Callout>,
    pub evacuations: Vec<EvacuationRow>,
    pub knocks: Vec<(i64, Knock, i64)>,
}

fn text(r: &Row, c: &str) -> Option<String> {
    r.get(c).and_then(Value::as_str).map(str::to_string)
}

fn int(r: &Row, c: &str) -> Option<i64> {
    r.get(c)
        .and_then(|v| v.as_i64().or_else(|| v.as_bool().map(i64::from)))
}

impl Tables {
    pub fn report_inputs<P>(
        &self,
        mut incident: Incident<P>,
        callouts: Vec<Callout>,
    ) -> Result<ReportInputs<P>, String> {
        let id = incident.id;
        let bad = |what: &str| format!("incident {id}: the ledger's {what} does not read");
        let inc = self
            .row("incidents", id)
            .ok_or_else(|| format!("incident {id} is not in the ledger"))?;
        incident.state = text(inc, "state")
            .and_then(|s| IncidentState::parse(&s))
            .ok_or_else(|| bad("state"))?;
        incident.closed_at = int(inc, "closed_at");
        incident.colour = match text(inc, "colour") {
            Some(c) => Some(Colour::parse(&c).ok_or_else(|| bad("colour"))?),
            None => None,
        };
        let mut out = Vec::with_capacity(callouts.len());
        for mut c in callouts {
            let Some(r) = self
                .row("callouts", c.id)
                .filter(|r| int(r, "incident_id") == Some(id))
            else {
                continue;
            };
            c.state = text(r, "state")
                .and_then(|s| State::parse(&s))
                .ok_or_else(|| bad("call-out state"))?;
            c.acked_at = int(r, "acked_at");
            c.ack_late = int(r, "ack_late") == Some(1);
            c.ack_method = self.row("acks", c.id).and_then(|a| text(a, "method"));
            out.push(c);
        }
        // The latest report of each reporter (SPEC §2), as `store::answers::latest_evacuations`.
        let mut latest: BTreeMap<String, (i64, &Row)> = BTreeMap::new();
        for (eid, r) in self.tables.get("evacuations").into_iter().flatten() {
            if int(r, "incident_id") == Some(id) {
                let reporter = text(r, "reporter").unwrap_or_default();
                if latest.get(&reporter).is_none_or(|(k, _)| *k < *eid) {
                    latest.insert(reporter, (*eid, r));
                }
            }
        }
        let mut evacuations = latest
            .into_iter()
            .map(|(reporter, (_, r))| {
                Ok(EvacuationRow {
                    reporter,
                    region_code: RegionCode::parse(&text(r, "region_code").unwrap_or_default())?,
                    moved: int(r, "moved").unwrap_or(0),
                    threatened: int(r, "threatened"),
                    at: int(r, "at").unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        evacuations.sort_by(|a, b| a.region_code.cmp(&b.region_code));
        let incident_callouts: std::collections::HashSet<i64> = self
            .tables
            .get("callouts")
            .into_iter()
            .flatten()
            .filter(|(_, r)| int(r, "incident_id") == Some(id))
            .map(|(k, _)| *k)
            .collect();
        let mut last_knock: BTreeMap<i64, (i64, Knock, i64)> = BTreeMap::new();
        for (kid, r) in self.tables.get("knocks").into_iter().flatten() {
            let Some(task) = int(r, "task_id").filter(|t| incident_callouts.contains(t)) else {
                continue;
            };
            let k = text(r, "result")
                .and_then(|s| Knock::parse(&s))
                .ok_or_else(|| bad("knock result"))?;
            if last_knock.get(&task).is_none_or(|(prev, _, _)| prev < kid) {
                last_knock.insert(task, (*kid, k, int(r, "at").unwrap_or(0)));
            }
        }
        let knocks = last_knock.into_iter().map(|(t, (_, k, at))| (t, k, at)).collect();
        Ok(ReportInputs {
            incident,
            callouts: out,
            evacuations,
            knocks,
        })
    }
}

/// Numbers, flags and JSON columns read alike from both sides: 0/1 and false/true are one
/// value, and a whole float equals its integer.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Bool(x), Value::Number(n)) | (Value::Number(n), Value::Bool(x)) => {
            n.as_i64() == Some(*x as i64)
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "missing".into(),
        Some(v) => v.to_string(),
    }
}

/// Compares one live table with its folded rows, in id order: the first row or column that
/// differs, a row only one side has included.
pub fn compare_table(
    table: &str,
    live: &BTreeMap<i64, Row>,
    ledger: Option<&BTreeMap<i64, Row>>,
) -> Option<Differs> {
    let empty = BTreeMap::new();
    let ledger = ledger.unwrap_or(&empty);
    let cols = COLUMNS.iter().find(|c| c.0 == table).map(|c| c.1).unwrap_or(&[]);
    let mut ids: Vec<i64> = live.keys().chain(ledger.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let differs = |column: &str, l: Option<&Value>, g: Option<&Value>| Differs {
            table: table.into(),
            id,
            column: column.into(),
            live: show(l),
            ledger: show(g),
        };
        match (live.get(&id), ledger.get(&id)) {
            (Some(_), None) => return Some(differs("row", Some(&"present".into()), None)),
            (None, Some(_)) => return Some(differs("row", None, Some(&"present".into()))),
            (Some(l), Some(g)) => {
                for c in cols {
                    let (lv, gv) = (l.get(c), g.get(c));
                    let null = Value::Null;
                    if !same(lv.unwrap_or(&null), gv.unwrap_or(&null)) {
                        return Some(differs(c, lv, gv));
                    }
                }
            }
            (None, None) => {}
        }
    }
    None
}

/// Compares every covered table, in [`COLUMNS`] order.
pub fn compare(live: &Tables, ledger: &Tables) -> Option<Differs> {
    let empty = BTreeMap::new();
    COLUMNS
        .iter()
        .find_map(|(t, _)| compare_table(t, live.tables.get(t).unwrap_or(&empty), ledger.tables.get(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ledger::{chain, GENESIS};
    use serde_json::json;

    fn entries(items: &[(&str, &str, Value)]) -> Vec<Entry> {
        chain(
            GENESIS,
            1,
            items
                .iter()
                .enumerate()
                .map(|(i, (k, s, b))| (1000 + i as i64, k.to_string(), s.to_string(), b.to_string())),
        )
    }

    fn fold(es: &[Entry]) -> Tables {
        let mut t = Tables::default();
        for e in es {
            t.apply(e).unwrap();
        }
        t
    }

    fn story() -> Tables {
        fold(&entries(&[
            (
                "warning.received",
                "warning:1",
                json!({"raw_sha256": digest(b"<alert/>")}),
            ),
            ("incident.opened", "incident:1", json!({"colour": "orange"})),
            ("callout.planned", "callout:1", json!({"incident": 1})),
            ("callout.planned", "callout:2", json!({"incident": 1})),
            (
                "callout.state",
                "callouts",
                json!({"state": "sent", "ids": [1, 2]}),
            ),
            (
                "ack.recorded",
                "callout:1",
                json!({"method": "sms", "late": false, "actor": null}),
            ),
            ("callout.escalated", "callout:2", json!({"new_callouts": [3]})),
            (
                "callout.state",
                "callouts",
                json!({"state": "escalated", "ids": [2]}),
            ),
            ("incident.updated", "incident:1", json!({"to": "red"})),
            ("incident.updated", "incident:1", json!({"to": null})),
            (
                "evacuation.reported",
                "incident:1",
                json!({"id": 7, "callout": 1, "reporter": "k1",
                "region": "450921", "moved": 50, "threatened": null, "method": "sms"}),
            ),
            ("attempt.sent", "callout:1", json!({})),
            ("incident.closed", "incident:1", json!({"actor": "x"})),
        ]))
    }

    #[test]
    fn the_fold_repeats_what_the_entries_say() {
        let t = story();
        let c = |id| t.row("callouts", id).unwrap();
        assert_eq!(c(1)["state"], "acknowledged");
        assert_eq!(c(1)["acked_at"], 1005);
        assert_eq!(c(2)["state"], "escalated");
        assert_eq!(c(3)["state"], "planned");
        assert_eq!(c(3)["incident_id"], 1, "a child inherits its parent's incident");
        assert_eq!(t.row("acks", 1).unwrap()["method"], "sms");
        let i = t.row("incidents", 1).unwrap();
        assert_eq!(
            (&i["state"], &i["colour"], &i["closed_at"]),
            (&json!("closed"), &json!("red"), &json!(1012))
        );
        assert_eq!(t.row("evacuations", 7).unwrap()["moved"], 50);
        assert_eq!(t.row("warnings", 1).unwrap()["raw_sha256"], digest(b"<alert/>"));
    }

    #[test]
    fn compare_names_the_first_difference() {
        let ledger = story();
        let mut live = ledger.clone();
        // 0/1 flags and true/false are the same value
        live.set("callouts", 1, "ack_late", 0.into());
        assert_eq!(compare(&live, &ledger), None);
        live.set("callouts", 2, "state", "acknowledged".into());
        let d = compare(&live, &ledger).unwrap();
        assert_eq!(
            (d.table.as_str(), d.id, d.column.as_str()),
            ("callouts", 2, "state")
        );
        assert_eq!(
            (d.live.as_str(), d.ledger.as_str()),
            ("\"acknowledged\"", "\"escalated\"")
        );

        let mut live = ledger.clone();
        live.tables.get_mut("evacuations").unwrap().remove(&7);
        assert_eq!(compare(&live, &ledger).unwrap().column, "row");
        let mut live = ledger.clone();
        live.set("acks", 2, "method", "sms".into());
        let d = compare(&live, &ledger).unwrap();
        assert_eq!(
            (d.table.as_str(), d.id, d.ledger.as_str()),
            ("acks", 2, "missing")
        );
        let mut live = ledger.clone();
        live.set("warnings", 1, "raw_sha256", digest(b"<alert>x</alert>").into());
        assert_eq!(compare(&live, &ledger).unwrap().table, "warnings");
    }

    #[test]
    fn a_bad_body_is_an_error() {
        let mut e = entries(&[("ack.recorded", "callout:1", json!({}))]);
        e[0].body = "{".into();
        assert!(Tables::default().apply(&e[0]).is_err());
        let e = entries(&[("ack.recorded", "callout:x", json!({}))]);
        assert!(Tables::default().apply(&e[0]).is_err());
    }
}
