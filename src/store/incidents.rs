//! Incidents and their call-outs: creating them (one transaction with their jobs and ledger
//! entries), changing call-out states, answers and evacuation reports, and the reads the API
//! and reports need.

use anyhow::{Context, Result};
use sqlx::{AnyConnection, AnyPool, Row};

use super::jobs::{self, Kind, Notice};
use super::ledger::{self, Record};
use super::{alloc_ids, insert_rows, Backend, Val};
use crate::domain::callout::State;
pub use crate::domain::{Callout, Incident};
use crate::target::plan::Planned;

pub struct NewIncident<'a> {
    pub warning_id: Option<i64>,
    pub title: &'a str,
    pub event: &'a str,
    pub description: &'a str,
    pub instruction: &'a str,
    pub colour: Option<&'a str>,
    pub hazard: &'a str,
    pub policy: serde_json::Value,
    pub drill: bool,
    pub expires_at: Option<i64>,
    pub deadline_ms: i64,
}

/// `A37`: a letter and a number short enough to type in an SMS reply.
pub fn incident_code(id: i64) -> String {
    let n = (id - 1).max(0);
    format!("{}{}", (b'A' + (n / 100 % 26) as u8) as char, n % 100 + 1)
}

/// Creates the incident, its call-outs, their first send and deadline jobs and the ledger
/// entries, inside the caller's transaction.
pub async fn create(
    conn: &mut AnyConnection,
    backend: Backend,
    inc: &NewIncident<'_>,
    planned: &[Planned],
    now: i64,
) -> Result<(i64, String)> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO incidents (code, warning_id, title, event, description, instruction, colour, hazard, policy, drill,
            state, created_at, expires_at)
         VALUES ('', $1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11) RETURNING id",
    )
    .bind(inc.warning_id)
    .bind(inc.title)
    .bind(inc.event)
    .bind(inc.description)
    .bind(inc.instruction)
    .bind(inc.colour)
    .bind(inc.hazard)
    .bind(inc.policy.to_string())
    .bind(inc.drill as i64)
    .bind(now)
    .bind(inc.expires_at)
    .fetch_one(&mut *conn)
    .await
    .context("creating the incident")?;
    let code = incident_code(id);
    sqlx::query("UPDATE incidents SET code = $1 WHERE id = $2")
        .bind(&code)
        .bind(id)
        .execute(&mut *conn)
        .await?;

    let ids = add_callouts(
        conn,
        backend,
        id,
        planned,
        &Added::default(),
        now + inc.deadline_ms,
        now,
    )
    .await?;
    let mut records = vec![Record::new(
        "incident.opened",
        format!("incident:{id}"),
        serde_json::json!({"code": code, "warning": inc.warning_id, "title": inc.title, "colour": inc.colour,
            "hazard": inc.hazard, "policy": inc.policy, "drill": inc.drill, "callouts": ids.len()}),
    )];
    records.extend(planned_records(id, planned, &ids, now + inc.deadline_ms));
    ledger::append(conn, backend, now, records).await?;
    Ok((id, code))
}

/// What call-outs made by an update carry beyond their plan.
#[derive(Default)]
pub struct Added<'a> {
    /// The call-out each one re-calls (colour raised), parallel to the planned rows.
    pub parents: &'a [i64],
    /// "暴雨橙色→红色预警": the message says 【升级】.
    pub upgrade: Option<&'a str>,
}

/// Inserts planned call-outs of an incident in batches, with their first send and deadline
/// jobs; the caller writes the ledger entries (`planned_records`).
pub async fn add_callouts(
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

/// A call-out made by escalation (to a backup or superior) or by hand, with its jobs.
#[allow(clippy::too_many_arguments)]
pub async fn add_callout(
    conn: &mut AnyConnection,
    backend: Backend,
    incident_id: i64,
    contact_id: i64,
    parent_id: Option<i64>,
    rung: i64,
    (region, place, role, reason): (&str, &str, &str, &str),
    deadline_at: i64,
    now: i64,
) -> Result<i64> {
    let cid = alloc_ids(conn, backend, "callouts", 1).await?[0];
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
        ],
        vec![vec![
            Val::I(cid),
            Val::I(incident_id),
            Val::I(contact_id),
            Val::from(parent_id),
            Val::I(rung),
            Val::from(region),
            Val::from(place),
            Val::from(role),
            Val::from(reason),
            Val::from(State::Planned.as_str()),
            Val::I(deadline_at),
            Val::I(now),
            Val::I(now),
        ]],
    )
    .await?;
    jobs::insert(conn, jobs::first_jobs(cid, rung, deadline_at, now).to_vec(), now).await?;
    Ok(cid)
}

/// Moves a call-out to ladder rung `rung`; with `deadline_at`, its answer deadline restarts.
pub async fn set_rung(
    conn: &mut AnyConnection,
    id: i64,
    rung: i64,
    deadline_at: Option<i64>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE callouts SET rung = $1, deadline_at = COALESCE($2, deadline_at), updated_at = $3 WHERE id = $4",
    )
    .bind(rung)
    .bind(deadline_at)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sets `state` on call-outs whose current state is one of `from` (so an answer that came in
/// meanwhile is never overwritten). Returns the ids changed.
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
    let stamp = stamp_column.map(|c| format!(", {c} = $2")).unwrap_or_default();
    for chunk in ids.chunks(1000) {
        let sql = format!(
            "UPDATE callouts SET state = $1, updated_at = $2{stamp} WHERE state IN ({from_sql}) AND id IN ({}) RETURNING id",
            super::placeholders(3, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(to.as_str()).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        changed.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(changed)
}

const CALLOUT_SELECT: &str =
    "SELECT c.id, c.incident_id, c.contact_id, c.parent_id, c.rung, c.region_code, c.place,
    c.role, c.reason, c.state, c.deadline_at, c.created_at, c.sent_at, c.delivered_at, c.acked_at, c.ack_late,
    k.key, k.name, k.phone, k.email, k.channels, k.backup_key, k.superior_key, a.method, c.upgrade
    FROM callouts c JOIN contacts k ON k.id = c.contact_id LEFT JOIN acks a ON a.callout_id = c.id";

fn callout_of(r: &sqlx::any::AnyRow) -> Result<Callout> {
    Ok(Callout {
        id: r.try_get(0)?,
        incident_id: r.try_get(1)?,
        contact_id: r.try_get(2)?,
        parent_id: r.try_get(3)?,
        rung: r.try_get(4)?,
        region_code: r.try_get(5)?,
        place: r.try_get(6)?,
        role: r.try_get(7)?,
        reason: r.try_get(8)?,
        state: r.try_get(9)?,
        deadline_at: r.try_get(10)?,
        created_at: r.try_get(11)?,
        sent_at: r.try_get(12)?,
        delivered_at: r.try_get(13)?,
        acked_at: r.try_get(14)?,
        ack_late: r.try_get::<i64, _>(15)? != 0,
        contact_key: r.try_get(16)?,
        contact_name: r.try_get(17)?,
        phone: r.try_get(18)?,
        email: r.try_get(19)?,
        channels: r.try_get(20)?,
        backup_key: r.try_get(21)?,
        superior_key: r.try_get(22)?,
        ack_method: r.try_get(23)?,
        upgrade: r.try_get(24)?,
    })
}

pub async fn callouts_by_id(conn: &mut AnyConnection, ids: &[i64]) -> Result<Vec<Callout>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let sql = format!(
            "{CALLOUT_SELECT} WHERE c.id IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.push(callout_of(&r)?);
        }
    }
    Ok(out)
}

pub async fn callout(conn: &mut AnyConnection, id: i64) -> Result<Option<Callout>> {
    Ok(callouts_by_id(conn, &[id]).await?.into_iter().next())
}

pub async fn callouts_of_incident(pool: &AnyPool, incident_id: i64) -> Result<Vec<Callout>> {
    callouts_of_incident_in(&mut *pool.acquire().await?, incident_id).await
}

/// The same inside a transaction (SQLite has one connection: never read through the pool then).
pub async fn callouts_of_incident_in(conn: &mut AnyConnection, incident_id: i64) -> Result<Vec<Callout>> {
    let rows = sqlx::query(&format!(
        "{CALLOUT_SELECT} WHERE c.incident_id = $1 ORDER BY c.region_code, c.id"
    ))
    .bind(incident_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(callout_of).collect()
}

/// Call-outs of a contact in active incidents, newest first (reply matching, SPEC §7).
pub async fn open_callouts_of_contacts(
    conn: &mut AnyConnection,
    contact_ids: &[i64],
) -> Result<Vec<(Callout, String)>> {
    if contact_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT i.code, c.id FROM callouts c JOIN incidents i ON i.id = c.incident_id
         WHERE i.state = 'active' AND c.contact_id IN ({}) ORDER BY c.id DESC",
        super::placeholders(1, contact_ids.len())
    );
    let mut q = sqlx::query_as::<_, (String, i64)>(&sql);
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

const INCIDENT_SELECT: &str =
    "SELECT id, code, warning_id, title, event, description, instruction, colour, hazard,
    policy, drill, state, created_at, expires_at, closed_at FROM incidents";

fn incident_of(r: &sqlx::any::AnyRow) -> Result<Incident> {
    let policy: String = r.try_get(9)?;
    Ok(Incident {
        id: r.try_get(0)?,
        code: r.try_get(1)?,
        warning_id: r.try_get(2)?,
        title: r.try_get(3)?,
        event: r.try_get(4)?,
        description: r.try_get(5)?,
        instruction: r.try_get(6)?,
        colour: r.try_get(7)?,
        hazard: r.try_get(8)?,
        policy: serde_json::from_str(&policy).unwrap_or_default(),
        drill: r.try_get::<i64, _>(10)? != 0,
        state: r.try_get(11)?,
        created_at: r.try_get(12)?,
        expires_at: r.try_get(13)?,
        closed_at: r.try_get(14)?,
    })
}

pub async fn incident(conn: &mut AnyConnection, id: i64) -> Result<Option<Incident>> {
    let r = sqlx::query(&format!("{INCIDENT_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    r.as_ref().map(incident_of).transpose()
}

pub async fn incidents_by_id(conn: &mut AnyConnection, ids: &[i64]) -> Result<Vec<Incident>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{INCIDENT_SELECT} WHERE id IN ({})",
        super::placeholders(1, ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    q.fetch_all(&mut *conn).await?.iter().map(incident_of).collect()
}

pub async fn list(pool: &AnyPool, limit: i64) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!("{INCIDENT_SELECT} ORDER BY id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(incident_of).collect()
}

pub async fn incidents_of_warning(pool: &AnyPool, warning_id: i64) -> Result<Vec<Incident>> {
    // The incident it opened, or the one it joined as an Update or Cancel.
    let rows = sqlx::query(&format!(
        "{INCIDENT_SELECT} WHERE warning_id = $1 OR id = (SELECT incident_id FROM warnings WHERE id = $1) ORDER BY id"
    ))
        .bind(warning_id)
        .fetch_all(pool)
        .await?;
    rows.iter().map(incident_of).collect()
}

pub async fn close(
    conn: &mut AnyConnection,
    backend: Backend,
    id: i64,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    sqlx::query("UPDATE incidents SET state = 'closed', closed_at = $1 WHERE id = $2 AND state = 'active'")
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let open: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM callouts WHERE incident_id = $1 AND state IN ('planned', 'sending', 'sent', 'delivered', 'failed')",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let cancelled = cancel_unanswered(conn, &open, now).await?;
    // Everyone already sent a call-out hears the stand-down, once (a person called again after
    // an upgrade has two call-outs).
    let notified: Vec<i64> = sqlx::query_scalar(
        "SELECT MAX(id) FROM callouts WHERE incident_id = $1 AND sent_at IS NOT NULL GROUP BY contact_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    notify(conn, &notified, Notice::Standdown, now).await?;
    ledger::record(
        conn,
        backend,
        now,
        "incident.closed",
        format!("incident:{id}"),
        serde_json::json!({"actor": actor, "cancelled": cancelled.len(), "notified": notified.len()}),
    )
    .await?;
    Ok(cancelled)
}

/// Information notices (no answer expected) to these call-outs' people.
pub async fn notify(conn: &mut AnyConnection, callout_ids: &[i64], notice: Notice, now: i64) -> Result<()> {
    let jobs = callout_ids
        .iter()
        .map(|c| jobs::NewJob::notice(*c, notice.clone(), now))
        .collect();
    jobs::insert(conn, jobs, now).await
}

/// Stand-down, or call-outs replaced by a newer one (colour raised): the unanswered ones are
/// cancelled with their pending sends and deadlines; answered ones keep their answer. Returns
/// those cancelled.
pub async fn cancel_unanswered(conn: &mut AnyConnection, ids: &[i64], now: i64) -> Result<Vec<i64>> {
    let cancelled = transition(
        conn,
        ids,
        &[
            State::Planned,
            State::Sending,
            State::Sent,
            State::Delivered,
            State::Failed,
        ],
        State::Cancelled,
        None,
        now,
    )
    .await?;
    jobs::delete_for_callouts(conn, &cancelled, &[Kind::Send, Kind::Deadline]).await?;
    Ok(cancelled)
}

/// An Update's words, colour, policy and expiry become the incident's (the latest update
/// wins; a missing colour or expiry keeps the current one).
pub async fn revise(conn: &mut AnyConnection, id: i64, inc: &NewIncident<'_>) -> Result<()> {
    sqlx::query(
        "UPDATE incidents SET title = $1, event = $2, description = $3, instruction = $4,
            colour = COALESCE($5, colour), policy = $6, expires_at = COALESCE($7, expires_at) WHERE id = $8",
    )
    .bind(inc.title)
    .bind(inc.event)
    .bind(inc.description)
    .bind(inc.instruction)
    .bind(inc.colour)
    .bind(inc.policy.to_string())
    .bind(inc.expires_at)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Call-outs that went out while an answer or a stand-down changed their state (the send was
/// in flight): they still count as sent, and if their incident is closed meanwhile their person
/// hears the stand-down too.
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
            .filter(|(_, state)| state == "closed")
            .map(|(id, _)| id)
            .collect();
        notify(conn, &late, Notice::Standdown, now).await?;
    }
    Ok(())
}

/// The newest call-out of this person in this incident: after an upgrade, a link from the
/// earlier message answers the upgraded call-out (its page shows the upgraded warning).
pub async fn newest_of_contact(conn: &mut AnyConnection, c: &Callout) -> Result<i64> {
    let id: Option<i64> =
        sqlx::query_scalar("SELECT MAX(id) FROM callouts WHERE incident_id = $1 AND contact_id = $2")
            .bind(c.incident_id)
            .bind(c.contact_id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(id.unwrap_or(c.id).max(c.id))
}
