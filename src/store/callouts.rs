//! Call-outs as stored: adding them with their first jobs, moving them between states only
//! from the states a decision was made on, the reads sending, answering and escalating need,
//! and the notices (解除, 降级) written as jobs. Rows come out as [`Callout`] with every column
//! parsed; a row that does not read is an error naming it. This file must not decide: what a
//! deadline or an answer does is `domain::callout`, who hears a stand-down is
//! `deliver::standdown`.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use sqlx::AnyConnection;

use super::callout_row::{
    callout_of, callout_of_row, CalloutRow, CALLOUTS_JSON_POSTGRES, CALLOUTS_JSON_SQLITE, CALLOUT_SELECT,
};
use super::jobs::{self, Kind, Notice};
use super::ledger::Record;
use super::{alloc_ids, insert_rows, Backend, Store, Tx, Val};
use crate::domain::callout::State;
use crate::domain::IncidentState;
use crate::target::plan::Planned;

pub use crate::domain::Callout;

impl Tx {
    /// Planned call-outs of an incident (an update), with their first send and deadline jobs;
    /// the caller writes the ledger entries (`planned_records`).
    pub async fn add_callouts(
        &mut self,
        incident_id: i64,
        planned: &[Planned],
        added: &Added<'_>,
        deadline: i64,
        now: i64,
    ) -> Result<Vec<i64>> {
        let backend = self.backend;
        add_callouts(self.conn(), backend, incident_id, planned, added, deadline, now).await
    }

    pub async fn callout(&mut self, id: i64) -> Result<Option<Callout>> {
        callout(self.conn(), id).await
    }

    /// Every call-out of an incident, by region.
    pub async fn callouts_of_incident(&mut self, incident_id: i64) -> Result<Vec<Callout>> {
        callouts_of_incident_in(self.conn(), incident_id).await
    }

    /// Call-outs of these contacts in active incidents, newest first, with their incident's
    /// code (reply matching, SPEC §7).
    pub async fn open_callouts_of_contacts(&mut self, contact_ids: &[i64]) -> Result<Vec<(Callout, String)>> {
        open_callouts_of_contacts(self.conn(), contact_ids).await
    }

    /// A delivery receipt: a sent call-out becomes delivered (any other state stays). True
    /// when it changed.
    pub async fn mark_delivered(&mut self, callout_id: i64, now: i64) -> Result<bool> {
        let changed = transition(
            self.conn(),
            &[callout_id],
            &[State::Sent],
            State::Delivered,
            Some("delivered_at"),
            now,
        )
        .await?;
        if let Some(r) = state_record(&changed, State::Delivered) {
            self.append(vec![r], now).await?;
        }
        Ok(!changed.is_empty())
    }

    /// Those of these call-outs still awaiting an answer are cancelled with their pending sends
    /// and deadlines; answered ones keep their answer. Returns those cancelled. (A stand-down,
    /// or call-outs replaced by a newer one when the colour rose.)
    pub async fn cancel_unanswered(&mut self, ids: &[i64], now: i64) -> Result<Vec<i64>> {
        let awaiting: Vec<State> = State::ALL.into_iter().filter(|s| s.awaiting()).collect();
        let backend = self.backend;
        let conn = self.conn();
        lock(conn, backend, ids).await?;
        let cancelled = transition(conn, ids, &awaiting, State::Cancelled, None, now).await?;
        jobs::delete_for_callouts(conn, &cancelled, &[Kind::Send, Kind::Deadline]).await?;
        if let Some(r) = state_record(&cancelled, State::Cancelled) {
            self.append(vec![r], now).await?;
        }
        Ok(cancelled)
    }

    /// Information notices (no answer expected) to these call-outs' people.
    pub async fn notify(&mut self, callout_ids: &[i64], notice: Notice, now: i64) -> Result<()> {
        notify(self.conn(), callout_ids, notice, now).await
    }
}

/// What call-outs made by an update carry beyond their plan.
#[derive(Default)]
pub struct Added<'a> {
    /// The call-out each one re-calls (colour raised), parallel to the planned rows.
    pub parents: &'a [i64],
    /// "暴雨橙色→红色预警": the message says 【升级】.
    pub upgrade: Option<&'a str>,
    /// A task rather than a call-out about a warning: `round:N`, a scheduled round's status
    /// request (三调度).
    pub task: Option<&'a str>,
}

/// Inserts planned call-outs of an incident in batches, with their first send and deadline
/// jobs; the caller writes the ledger entries (`planned_records`).
pub(super) async fn add_callouts(
    conn: &mut AnyConnection,
    backend: Backend,
    incident_id: i64,
    planned: &[Planned],
    added: &Added<'_>,
    deadline: i64,
    now: i64,
) -> Result<Vec<i64>> {
    let ids = alloc_ids(conn, backend, "callouts", planned.len()).await?;
    let rows = planned
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, (p, cid))| {
            vec![
                Val::I(*cid),
                Val::I(incident_id),
                Val::I(p.contact_id),
                Val::from(added.parents.get(i).copied()),
                Val::from(p.region.as_str()),
                Val::from(p.place.as_str()),
                Val::from(p.role.as_str()),
                Val::from(p.reason.as_str()),
                Val::from(State::Planned.as_str()),
                Val::I(deadline),
                Val::I(now),
                Val::I(now),
                Val::from(added.upgrade.map(str::to_string)),
                Val::from(added.task.map(str::to_string)),
            ]
        })
        .collect();
    insert_rows(
        conn,
        "callouts",
        &[
            "id",
            "incident_id",
            "contact_id",
            "parent_id",
            "region_code",
            "place",
            "role",
            "reason",
            "state",
            "deadline_at",
            "created_at",
            "updated_at",
            "upgrade",
            "task",
        ],
        rows,
    )
    .await?;
    let new_jobs = ids
        .iter()
        .flat_map(|cid| jobs::first_jobs(*cid, 0, deadline, now))
        .collect();
    jobs::insert(conn, new_jobs, now).await?;
    Ok(ids)
}

/// The `callout.planned` ledger entries of call-outs `add_callouts` made.
pub fn planned_records(incident_id: i64, planned: &[Planned], ids: &[i64], deadline: i64) -> Vec<Record> {
    planned
        .iter()
        .zip(ids)
        .map(|(p, cid)| {
            Record::new(
                "callout.planned",
                format!("callout:{cid}"),
                serde_json::json!({"incident": incident_id, "contact": p.contact_key, "region": p.region,
                    "role": p.role, "reason": p.reason, "deadline_at": deadline}),
            )
        })
        .collect()
}

/// A call-out an escalation makes: a child of the one not answered, for its backup, superior,
/// duty holder or door-knocker.
pub struct NewChild {
    pub incident_id: i64,
    pub contact_id: i64,
    pub parent_id: i64,
    pub rung: i64,
    pub region: String,
    pub place: String,
    pub role: String,
    pub reason: String,
    /// `knock`: a door-knock task, not a call-out to join.
    pub task: Option<&'static str>,
    pub deadline_at: i64,
}

/// Inserts escalations' call-outs together (a storm of deadlines makes thousands), with their
/// send and deadline jobs and the places waiting on their parents (so that a list is never
/// nested in a list when one joins another). Returns their ids, in order.
pub async fn add_children(
    conn: &mut AnyConnection,
    backend: Backend,
    children: &[NewChild],
    now: i64,
) -> Result<Vec<i64>> {
    let ids = alloc_ids(conn, backend, "callouts", children.len()).await?;
    if ids.is_empty() {
        return Ok(ids);
    }
    let rows = children
        .iter()
        .zip(&ids)
        .map(|(c, id)| {
            vec![
                Val::I(*id),
                Val::I(c.incident_id),
                Val::I(c.contact_id),
                Val::I(c.parent_id),
                Val::I(c.rung),
                Val::from(c.region.as_str()),
                Val::from(c.place.as_str()),
                Val::from(c.role.as_str()),
                Val::from(c.reason.as_str()),
                Val::from(State::Planned.as_str()),
                Val::I(c.deadline_at),
                Val::I(now),
                Val::I(now),
                Val::from(c.task.map(str::to_string)),
            ]
        })
        .collect();
    insert_rows(
        conn,
        "callouts",
        &[
            "id",
            "incident_id",
            "contact_id",
            "parent_id",
            "rung",
            "region_code",
            "place",
            "role",
            "reason",
            "state",
            "deadline_at",
            "created_at",
            "updated_at",
            "task",
        ],
        rows,
    )
    .await?;
    let new_jobs = children
        .iter()
        .zip(&ids)
        .flat_map(|(c, id)| jobs::first_jobs(*id, c.rung, c.deadline_at, now))
        .collect();
    jobs::insert(conn, new_jobs, now).await?;
    // The places waiting on each parent (others that had joined it) wait on its children too.
    let mut parents: Vec<i64> = children.iter().map(|c| c.parent_id).collect();
    parents.sort_unstable();
    parents.dedup();
    let mut waiting: Vec<(i64, Option<i64>, String)> = Vec::new();
    for chunk in parents.chunks(1000) {
        let sql = format!(
            "SELECT host_id, joined_id, place FROM callout_joins WHERE host_id IN ({}) ORDER BY host_id, at, joined_id",
            super::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (i64, Option<i64>, String)>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        waiting.extend(q.fetch_all(&mut *conn).await?);
    }
    if !waiting.is_empty() {
        let rows = children
            .iter()
            .zip(&ids)
            .flat_map(|(c, id)| {
                waiting
                    .iter()
                    .filter(move |w| w.0 == c.parent_id)
                    .map(move |(_, joined, place)| {
                        vec![
                            Val::I(*id),
                            Val::from(*joined),
                            Val::from(place.as_str()),
                            Val::I(now),
                        ]
                    })
            })
            .collect();
        insert_rows(
            conn,
            "callout_joins",
            &["host_id", "joined_id", "place", "at"],
            rows,
        )
        .await?;
    }
    Ok(ids)
}

/// Moves call-outs to ladder rungs: `(id, rung, deadline_at)`; with `deadline_at`, the answer
/// deadline restarts. One statement per distinct rung and deadline.
pub async fn set_rungs(conn: &mut AnyConnection, moves: &[(i64, i64, Option<i64>)], now: i64) -> Result<()> {
    let mut groups: BTreeMap<(i64, Option<i64>), Vec<i64>> = BTreeMap::new();
    for (id, rung, deadline) in moves {
        groups.entry((*rung, *deadline)).or_default().push(*id);
    }
    for ((rung, deadline), ids) in groups {
        for chunk in ids.chunks(1000) {
            let sql = format!(
                "UPDATE callouts SET rung = $1, deadline_at = COALESCE($2, deadline_at), updated_at = $3 WHERE id IN ({})",
                super::placeholders(4, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(rung).bind(deadline).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// The ledger entry saying these call-outs are now in `state` (None: none changed). Every
/// caller of [`transition`] writes it with the ids `transition` returned, in the same unit of
/// work, so that `ledger verify` can rebuild each call-out's state from the ledger alone. It
/// is returned rather than appended so that the caller keeps taking the ledger head last.
pub fn state_record(ids: &[i64], state: State) -> Option<Record> {
    (!ids.is_empty()).then(|| {
        Record::new(
            "callout.state",
            "callouts",
            serde_json::json!({"state": state.as_str(), "ids": ids}),
        )
    })
}

/// Sets `state` on call-outs whose current state is one of `from` (so an answer that came in
/// meanwhile is never overwritten). Returns the ids changed.
// TODO(issue 8): deliver/ calls this with its transaction as a bare connection.
/// Locks these call-outs' rows in ascending id order (PostgreSQL; SQLite has one writer).
/// A multi-row UPDATE locks rows in whatever order its plan visits them, so two of them over
/// overlapping sets (a stand-down cancelling an incident's call-outs, a batch of sends being
/// recorded) could each hold a row the other wants; taking them sorted first makes every
/// such writer queue in one order (the store's lock order).
pub async fn lock(conn: &mut AnyConnection, backend: Backend, ids: &[i64]) -> Result<()> {
    if backend != Backend::Postgres || ids.len() < 2 {
        return Ok(());
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for chunk in sorted.chunks(1000) {
        let sql = format!(
            "SELECT id FROM callouts WHERE id IN ({}) ORDER BY id FOR NO KEY UPDATE",
            super::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        q.fetch_all(&mut *conn).await?;
    }
    Ok(())
}

pub async fn transition(
    conn: &mut AnyConnection,
    ids: &[i64],
    from: &[State],
    to: State,
    stamp_column: Option<&str>,
    now: i64,
) -> Result<Vec<i64>> {
    let mut changed = Vec::new();
    let from_sql = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    // On SQLite every parameter anonymous (see `anonymous`): the stamp binds `now` again.
    let sqlite = conn.backend_name() == "SQLite";
    let (to_p, now_p) = if sqlite { ("?", "?") } else { ("$1", "$2") };
    let stamp = stamp_column
        .map(|c| format!(", {c} = {now_p}"))
        .unwrap_or_default();
    for chunk in ids.chunks(1000) {
        let sql = format!(
            "UPDATE callouts SET state = {to_p}, updated_at = {now_p}{stamp} WHERE state IN ({from_sql}) AND id IN ({}) RETURNING id",
            super::in_list(sqlite, 3, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(to.as_str()).bind(now);
        if sqlite && stamp_column.is_some() {
            q = q.bind(now);
        }
        for id in chunk {
            q = q.bind(*id);
        }
        changed.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(changed)
}

// TODO(issue 8): deliver/dispatch.rs calls this with a bare connection.
/// The call-outs of `ids` that exist, in no particular order. The rows come back as one JSON text made by the database: a batch of 512 call-outs read
/// as 512 rows of 26 columns cost 7-15 ms on SQLite, nearly all of it in converting each
/// value of each row on its way through sqlx (SQLite's row, then `AnyRow`, then ours), with
/// the one connection held meanwhile; as one value it is parsed once, here.
pub async fn callouts_by_id(conn: &mut AnyConnection, ids: &[i64]) -> Result<Vec<Callout>> {
    let sqlite = conn.backend_name() == "SQLite";
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let select = if sqlite {
            CALLOUTS_JSON_SQLITE
        } else {
            CALLOUTS_JSON_POSTGRES
        };
        let sql = format!(
            "{select} WHERE c.id IN ({})",
            super::in_list(sqlite, 1, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, Option<String>>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        // PostgreSQL's json_agg of no rows is NULL; SQLite's json_group_array is `[]`.
        let Some(json) = q.fetch_one(&mut *conn).await? else {
            continue;
        };
        let rows: Vec<CalloutRow> = serde_json::from_str(&json)
            .map_err(|e| anyhow!("call-outs {}…: a row does not read: {e}", chunk[0]))?;
        for row in rows {
            out.push(callout_of_row(row)?);
        }
    }
    Ok(out)
}

// TODO(issue 8): deliver/escalate.rs calls this with a bare connection.
pub async fn callout(conn: &mut AnyConnection, id: i64) -> Result<Option<Callout>> {
    Ok(callouts_by_id(conn, &[id]).await?.into_iter().next())
}

/// Every call-out of an incident, by region (outside a unit of work).
pub async fn callouts_of_incident(store: &Store, incident_id: i64) -> Result<Vec<Callout>> {
    callouts_of_incident_in(&mut *store.conn().await?, incident_id).await
}

async fn callouts_of_incident_in(conn: &mut AnyConnection, incident_id: i64) -> Result<Vec<Callout>> {
    let rows = sqlx::query(&format!(
        "{CALLOUT_SELECT} WHERE c.incident_id = $1 ORDER BY c.region_code, c.id"
    ))
    .bind(incident_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(callout_of).collect()
}

async fn open_callouts_of_contacts(
    conn: &mut AnyConnection,
    contact_ids: &[i64],
) -> Result<Vec<(Callout, String)>> {
    if contact_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT i.code, c.id FROM callouts c JOIN incidents i ON i.id = c.incident_id
         WHERE i.state = $1 AND c.contact_id IN ({}) ORDER BY c.id DESC",
        super::placeholders(2, contact_ids.len())
    );
    let mut q = sqlx::query_as::<_, (String, i64)>(&sql).bind(IncidentState::Active.as_str());
    for id in contact_ids {
        q = q.bind(*id);
    }
    let pairs = q.fetch_all(&mut *conn).await?;
    let ids: Vec<i64> = pairs.iter().map(|p| p.1).collect();
    let mut by_id: std::collections::HashMap<i64, Callout> = callouts_by_id(conn, &ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    Ok(pairs
        .into_iter()
        .filter_map(|(code, id)| by_id.remove(&id).map(|c| (c, code)))
        .collect())
}

/// Information notices to these call-outs' people (see [`Tx::notify`]).
async fn notify(conn: &mut AnyConnection, callout_ids: &[i64], notice: Notice, now: i64) -> Result<()> {
    let jobs = callout_ids
        .iter()
        .map(|c| jobs::NewJob::notice(*c, notice.clone(), now))
        .collect();
    jobs::insert(conn, jobs, now).await
}

/// Call-outs that went out while an answer or a stand-down changed their state (the send was
/// in flight): they still count as sent, and if their incident is closed meanwhile their person
/// hears the stand-down too.
// TODO(issue 8): deliver/dispatch.rs calls this with its transaction as a bare connection.
pub async fn sent_after_cancel(
    conn: &mut AnyConnection,
    sent: &[i64],
    marked: &[i64],
    now: i64,
) -> Result<()> {
    let marked: std::collections::HashSet<i64> = marked.iter().copied().collect();
    let missed: Vec<i64> = sent.iter().copied().filter(|id| !marked.contains(id)).collect();
    for chunk in missed.chunks(1000) {
        let sql = format!(
            "UPDATE callouts SET sent_at = $1 WHERE sent_at IS NULL AND id IN ({})
             RETURNING id, (SELECT state FROM incidents i WHERE i.id = callouts.incident_id)",
            super::placeholders(2, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (i64, String)>(&sql).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        let late: Vec<i64> = q
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .filter(|(_, state)| state == IncidentState::Closed.as_str())
            .map(|(id, _)| id)
            .collect();
        notify(conn, &late, Notice::Standdown, now).await?;
    }
    Ok(())
}

/// The call-out of this person in this incident that is not answered, if any: still waiting,
/// or given up on (unreached): one person, one call-out per incident; an escalation reaching
/// them joins it. (A door-knock task is not a call-out to join: it names one door.)
pub async fn open_callout_of(
    conn: &mut AnyConnection,
    incident_id: i64,
    contact_id: i64,
) -> Result<Option<Callout>> {
    let awaiting = open_states();
    let sql = format!(
        "{CALLOUT_SELECT} WHERE c.incident_id = $1 AND c.contact_id = $2 AND c.task IS NULL AND c.state IN ({awaiting})
         ORDER BY c.id DESC LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(incident_id)
        .bind(contact_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| callout_of(&r)).transpose()
}

/// Which of these people have an open call-out (as [`open_callout_of`] finds) in which of
/// these incidents: `(incident, contact)`. A chunk of deadlines asks once for everyone it may
/// call, and reads the call-out itself only for those who have one (to join it).
pub async fn open_pairs(
    conn: &mut AnyConnection,
    incidents: &[i64],
    contacts: &[i64],
) -> Result<std::collections::HashSet<(i64, i64)>> {
    let mut out = std::collections::HashSet::new();
    if incidents.is_empty() || contacts.is_empty() {
        return Ok(out);
    }
    let open = open_states();
    for chunk in contacts.chunks(1000) {
        let sql = format!(
            "SELECT DISTINCT incident_id, contact_id FROM callouts WHERE task IS NULL AND state IN ({open})
             AND incident_id IN ({}) AND contact_id IN ({})",
            super::placeholders(1, incidents.len()),
            super::placeholders(1 + incidents.len(), chunk.len())
        );
        let mut q = sqlx::query_as::<_, (i64, i64)>(&sql);
        for id in incidents.iter().chain(chunk) {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// The states of a call-out another can join: waiting for an answer, or given up on.
fn open_states() -> String {
    State::ALL
        .into_iter()
        .filter(|s| s.awaiting() || *s == State::Unreached)
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The places waiting on a call-out that others joined, its own first (empty: none joined).
async fn places_waiting(conn: &mut AnyConnection, id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT place FROM callout_joins WHERE host_id = $1 ORDER BY joined_id IS NOT NULL, at",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?)
}

/// `joined` (an escalated call-out) now waits on `host`: its places (its own, or those that
/// had joined it) are kept, and the host's place becomes `summary` of every place waiting on
/// it (its own first). Returns those places.
pub async fn join(
    conn: &mut AnyConnection,
    host: &Callout,
    joined: &Callout,
    summary: impl Fn(&[String]) -> String,
    now: i64,
) -> Result<Vec<String>> {
    let insert = "INSERT INTO callout_joins (host_id, joined_id, place, at) VALUES ($1, $2, $3, $4)";
    let mut places = places_waiting(conn, host.id).await?;
    if places.is_empty() {
        sqlx::query(insert)
            .bind(host.id)
            .bind(None::<i64>)
            .bind(&host.place)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        places.push(host.place.clone());
    }
    let mut theirs = places_waiting(conn, joined.id).await?;
    if theirs.is_empty() {
        theirs.push(joined.place.clone());
    }
    for place in theirs {
        sqlx::query(insert)
            .bind(host.id)
            .bind(joined.id)
            .bind(&place)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        places.push(place);
    }
    sqlx::query("UPDATE callouts SET place = $1, updated_at = $2 WHERE id = $3")
        .bind(summary(&places))
        .bind(now)
        .bind(host.id)
        .execute(&mut *conn)
        .await?;
    Ok(places)
}
