//! Answers and evacuation reports as stored: an acknowledgement per call-out, evacuation
//! counts per reporter (a later report supersedes an earlier one), each with its ledger entry.
//!
//! [`Tx::acknowledge`] is the writer of an acknowledgement: every path (SMS reply, answer
//! page, voice receipt, operator) calls it, and [`Tx::acknowledge_together`] writes the same
//! rows for a group of plain replies decided together. It applies `domain::callout::on_answer` and writes
//! only while the call-out is still in the state that decision was made on, so that two
//! answers racing (two instances on PostgreSQL) record one, and the other reads as a
//! duplicate. This file must not decide what an answer means; that is `domain::callout`.

use anyhow::{anyhow, bail, Result};
use sqlx::{AnyConnection, Row};

use super::jobs::{self, Kind};
use super::ledger::Record;
use super::{Store, Tx, Val};
use crate::domain::callout::{on_answer, Answer, Answered, State};
use crate::domain::{AckMethod, Knock, RegionCode};

pub use crate::domain::EvacuationRow;

/// How an answer came, for its record.
#[derive(Debug, Clone, Copy)]
pub struct Ack<'a> {
    pub method: AckMethod,
    /// The reply's text, `key 1` …
    pub note: Option<&'a str>,
    /// The operator who recorded a phone call.
    pub actor: Option<&'a str>,
    /// The inbound message it came in.
    pub inbound_id: Option<i64>,
}

impl Ack<'_> {
    pub fn by(method: AckMethod) -> Ack<'static> {
        Ack {
            method,
            note: None,
            actor: None,
            inbound_id: None,
        }
    }
}

pub struct Evacuation<'a> {
    pub incident_id: i64,
    pub callout_id: Option<i64>,
    pub reporter: &'a str,
    pub region_code: &'a RegionCode,
    pub moved: i64,
    pub threatened: Option<i64>,
    pub method: &'a str,
}

/// The ledger entry of an answer recorded.
pub fn ack_record(callout_id: i64, ack: &Ack<'_>, late: bool) -> Record {
    Record::new(
        "ack.recorded",
        format!("callout:{callout_id}"),
        serde_json::json!({"method": ack.method.as_str(), "late": late, "note": ack.note,
            "actor": ack.actor, "inbound": ack.inbound_id}),
    )
}

/// How many times an answer is decided again when the call-out's state changed between the
/// read and the write (each retry sees a newer committed state).
const RACES: usize = 3;

impl Tx {
    /// Records an answer to a call-out: a second answer changes nothing, a late one is marked
    /// late (`on_answer`); the call-out's pending sends and deadline go with it.
    pub async fn acknowledge(&mut self, callout_id: i64, ack: &Ack<'_>, now: i64) -> Result<Answered> {
        let conn = self.conn();
        for _ in 0..RACES {
            let Some((state, deadline_at)) = state_of(conn, callout_id).await? else {
                return Ok(Answered::NoSuchCallout);
            };
            let late = match on_answer(state, now, deadline_at) {
                Answer::Duplicate => return Ok(Answered::Duplicate),
                Answer::Record { late } => late,
            };
            // The state guard first: a concurrent answer holds the row until it commits, and
            // then this one changes nothing and reads the call-out again.
            let changed = sqlx::query(
                "UPDATE callouts SET state = $1, acked_at = $2, ack_late = $3, updated_at = $2
                 WHERE id = $4 AND state = $5",
            )
            .bind(State::Acknowledged.as_str())
            .bind(now)
            .bind(late as i64)
            .bind(callout_id)
            .bind(state.as_str())
            .execute(&mut *conn)
            .await?;
            if changed.rows_affected() == 0 {
                continue;
            }
            sqlx::query(
                "INSERT INTO acks (callout_id, method, at, late, note, actor, inbound_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(callout_id)
            .bind(ack.method.as_str())
            .bind(now)
            .bind(late as i64)
            .bind(ack.note)
            .bind(ack.actor)
            .bind(ack.inbound_id)
            .execute(&mut *conn)
            .await?;
            // An answered call-out needs no more sends or deadline checks.
            jobs::delete_for_callouts(conn, &[callout_id], &[Kind::Send, Kind::Deadline]).await?;
            self.append(vec![ack_record(callout_id, ack, late)], now).await?;
            return Ok(Answered::Recorded { late });
        }
        bail!("callout {callout_id}: its state kept changing while an answer was recorded")
    }

    /// Answers decided together (a group of replies on SQLite, `answer::inbound`): each
    /// `(call-out, the state on_answer decided on, late, how)` is written as
    /// [`Tx::acknowledge`] writes it, in one statement per state for the group; the caller
    /// has appended each one's [`ack_record`] in its place. A call-out no longer in the state
    /// decided on fails the whole unit of work (its caller applies the answers again one by
    /// one, as [`Tx::acknowledge`] does).
    pub async fn acknowledge_together(
        &mut self,
        acks: &[(i64, State, bool, Ack<'_>)],
        now: i64,
    ) -> Result<()> {
        if acks.is_empty() {
            return Ok(());
        }
        let backend = self.backend;
        let conn = self.conn();
        // Rows in id order first (PostgreSQL): the store's lock order, whatever order the
        // replies came in.
        let ids: Vec<i64> = acks.iter().map(|a| a.0).collect();
        super::callouts::lock(conn, backend, &ids).await?;
        let mut groups: Vec<((State, bool), Vec<i64>)> = Vec::new();
        for (id, state, late, _) in acks {
            match groups.iter_mut().find(|g| g.0 == (*state, *late)) {
                Some(g) => g.1.push(*id),
                None => groups.push(((*state, *late), vec![*id])),
            }
        }
        for ((state, late), ids) in groups {
            for chunk in ids.chunks(1000) {
                let sql = format!(
                    "UPDATE callouts SET state = $1, acked_at = $2, ack_late = $3, updated_at = $2
                     WHERE state = $4 AND id IN ({})",
                    super::placeholders(5, chunk.len())
                );
                let mut q = sqlx::query(&sql)
                    .bind(State::Acknowledged.as_str())
                    .bind(now)
                    .bind(late as i64)
                    .bind(state.as_str());
                for id in chunk {
                    q = q.bind(*id);
                }
                let changed = q.execute(&mut *conn).await?.rows_affected() as usize;
                if changed != chunk.len() {
                    bail!(
                        "{} of {} call-outs answered together were no longer {}",
                        chunk.len() - changed,
                        chunk.len(),
                        state.as_str()
                    );
                }
            }
        }
        let rows = acks
            .iter()
            .map(|(id, _, late, a)| {
                vec![
                    Val::I(*id),
                    Val::from(a.method.as_str()),
                    Val::I(now),
                    Val::I(*late as i64),
                    Val::from(a.note.map(str::to_string)),
                    Val::from(a.actor.map(str::to_string)),
                    Val::from(a.inbound_id),
                ]
            })
            .collect();
        super::insert_rows(
            conn,
            "acks",
            &[
                "callout_id",
                "method",
                "at",
                "late",
                "note",
                "actor",
                "inbound_id",
            ],
            rows,
        )
        .await?;
        jobs::delete_for_callouts(conn, &ids, &[Kind::Send, Kind::Deadline]).await
    }

    /// An evacuation count, with its ledger entry. Returns its id.
    pub async fn record_evacuation(&mut self, e: &Evacuation<'_>, now: i64) -> Result<i64> {
        let conn = self.conn();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO evacuations (incident_id, callout_id, reporter, region_code, moved, threatened, method, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(e.incident_id)
        .bind(e.callout_id)
        .bind(e.reporter)
        .bind(e.region_code.as_str())
        .bind(e.moved)
        .bind(e.threatened)
        .bind(e.method)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        self.record("evacuation.reported", format!("incident:{}", e.incident_id), serde_json::json!({"id": id, "callout": e.callout_id, "reporter": e.reporter, "region": e.region_code,
                    "moved": e.moved, "threatened": e.threatened, "method": e.method}), now).await?;
        Ok(id)
    }

    /// A door-knock task's result, with its ledger entry (`task` is the knock task, `callout`
    /// the call-out of the person at the door). Returns its id.
    pub async fn record_knock(
        &mut self,
        incident_id: i64,
        task: i64,
        callout: i64,
        result: Knock,
        method: &str,
        now: i64,
    ) -> Result<i64> {
        let conn = self.conn();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO knocks (incident_id, task_id, callout_id, result, method, at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(incident_id)
        .bind(task)
        .bind(callout)
        .bind(result.as_str())
        .bind(method)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        self.record(
            "knock.result",
            format!("callout:{callout}"),
            serde_json::json!({"id": id, "task": task, "result": result, "method": method}),
            now,
        )
        .await?;
        Ok(id)
    }
}

/// A call-out's state and answer deadline.
async fn state_of(conn: &mut AnyConnection, id: i64) -> Result<Option<(State, i64)>> {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT state, deadline_at FROM callouts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|(s, deadline)| {
        State::parse(&s)
            .map(|st| (st, deadline))
            .ok_or_else(|| anyhow!("callout {id}: unknown state {s:?}"))
    })
    .transpose()
}

/// The latest report of each reporter (later reports supersede earlier ones, SPEC §2).
pub async fn latest_evacuations(store: &Store, incident_id: i64) -> Result<Vec<EvacuationRow>> {
    let rows = sqlx::query(
        "SELECT e.id, e.reporter, e.region_code, e.moved, e.threatened, e.at FROM evacuations e
         WHERE e.incident_id = $1 AND e.id = (SELECT MAX(id) FROM evacuations x
                                              WHERE x.incident_id = e.incident_id AND x.reporter = e.reporter)
         ORDER BY e.region_code",
    )
    .bind(incident_id)
    .fetch_all(&mut *store.conn().await?)
    .await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get(0)?;
            let region: String = r.try_get(2)?;
            Ok(EvacuationRow {
                reporter: r.try_get(1)?,
                region_code: RegionCode::parse(&region).map_err(|e| anyhow!("evacuation {id}: {e}"))?,
                moved: r.try_get(3)?,
                threatened: r.try_get(4)?,
                at: r.try_get(5)?,
            })
        })
        .collect()
}

/// The latest result of each door-knock task of an incident: (task, result, at).
pub async fn knock_results(store: &Store, incident_id: i64) -> Result<Vec<(i64, Knock, i64)>> {
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT k.task_id, k.result, k.at FROM knocks k
         WHERE k.incident_id = $1 AND k.id = (SELECT MAX(id) FROM knocks x WHERE x.task_id = k.task_id)",
    )
    .bind(incident_id)
    .fetch_all(&mut *store.conn().await?)
    .await?;
    rows.into_iter()
        .map(|(task, result, at)| {
            let k = Knock::parse(&result)
                .ok_or_else(|| anyhow!("knock of task {task}: unknown result {result:?}"))?;
            Ok((task, k, at))
        })
        .collect()
}
