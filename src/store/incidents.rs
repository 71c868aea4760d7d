//! Incidents as stored: creating one (inside the caller's unit of work, with its planned
//! call-outs through `callouts.rs`, their first jobs and ledger entries), revising and closing
//! it, and the reads the stages, the API and reports need. Its call-outs are `callouts.rs`.
//!
//! Rows come out as [`Incident`] with every column parsed (state, colour, the policy); a row
//! that does not read is an error naming it (`incident 3: unknown state "opne"`), never a
//! default. This file must not decide: who is cancelled or told at a stand-down is
//! `deliver::standdown`, what an update does is `ingest::revise`.

use anyhow::{anyhow, Context, Result};
use sqlx::{AnyConnection, Row};

use super::callouts::{add_callouts, callout, planned_records, Added};
use super::ledger::Record;
use super::{Backend, Store, Tx};
use crate::config::Policy;
use crate::domain::{Colour, IncidentState};
use crate::target::plan::Planned;

use crate::domain::Callout;

/// An incident as stored, with the policy it was opened with.
pub type Incident = crate::domain::Incident<Policy>;

pub struct NewIncident<'a> {
    pub warning_id: Option<i64>,
    pub title: &'a str,
    pub event: &'a str,
    pub description: &'a str,
    pub instruction: &'a str,
    pub colour: Option<Colour>,
    pub hazard: &'a str,
    pub policy: &'a Policy,
    pub drill: bool,
    pub expires_at: Option<i64>,
    pub deadline_ms: i64,
}

/// `A37`: a letter and a number short enough to type in an SMS reply.
pub fn incident_code(id: i64) -> String {
    let n = (id - 1).max(0);
    format!("{}{}", (b'A' + (n / 100 % 26) as u8) as char, n % 100 + 1)
}

impl Tx {
    /// Creates the incident, its call-outs, their first send and deadline jobs and the ledger
    /// entries. Returns its id and code.
    pub async fn create_incident(
        &mut self,
        inc: &NewIncident<'_>,
        planned: &[Planned],
        now: i64,
    ) -> Result<(i64, String)> {
        let backend = self.backend;
        let (id, code, records) = create(self.conn(), backend, inc, planned, planned.len(), now).await?;
        self.append(records, now).await?;
        Ok((id, code))
    }

    /// As [`Tx::create_incident`] with only the first slice of a plan of `total` call-outs
    /// (the rest is written by later units of work: `store::planning`).
    pub async fn create_incident_sliced(
        &mut self,
        inc: &NewIncident<'_>,
        first: &[Planned],
        total: usize,
        now: i64,
    ) -> Result<(i64, String)> {
        let backend = self.backend;
        let (id, code, records) = create(self.conn(), backend, inc, first, total, now).await?;
        self.append(records, now).await?;
        Ok((id, code))
    }

    pub async fn incident(&mut self, id: i64) -> Result<Option<Incident>> {
        incident(self.conn(), id).await
    }

    /// An Update's words, colour, policy and expiry become the incident's (the latest update
    /// wins; a missing colour or expiry keeps the current one).
    pub async fn revise_incident(&mut self, id: i64, inc: &NewIncident<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE incidents SET title = $1, event = $2, description = $3, instruction = $4,
                colour = COALESCE($5, colour), policy = $6, expires_at = COALESCE($7, expires_at) WHERE id = $8",
        )
        .bind(inc.title)
        .bind(inc.event)
        .bind(inc.description)
        .bind(inc.instruction)
        .bind(inc.colour.map(Colour::as_str))
        .bind(serde_json::to_string(inc.policy)?)
        .bind(inc.expires_at)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// An active incident becomes closed. False when it was not active (closed already, or no
    /// such incident), so that whatever stands it down happens once.
    pub async fn close_incident(&mut self, id: i64, now: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE incidents SET state = $1, closed_at = $2 WHERE id = $3 AND state = $4")
                .bind(IncidentState::Closed.as_str())
                .bind(now)
                .bind(id)
                .bind(IncidentState::Active.as_str())
                .execute(self.conn())
                .await?;
        Ok(done.rows_affected() == 1)
    }
}

async fn create(
    conn: &mut AnyConnection,
    backend: Backend,
    inc: &NewIncident<'_>,
    planned: &[Planned],
    total: usize,
    now: i64,
) -> Result<(i64, String, Vec<Record>)> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO incidents (code, warning_id, title, event, description, instruction, colour, hazard, policy, drill,
            state, created_at, expires_at)
         VALUES ('', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(inc.warning_id)
    .bind(inc.title)
    .bind(inc.event)
    .bind(inc.description)
    .bind(inc.instruction)
    .bind(inc.colour.map(Colour::as_str))
    .bind(inc.hazard)
    .bind(serde_json::to_string(inc.policy)?)
    .bind(inc.drill as i64)
    .bind(IncidentState::Active.as_str())
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
            "hazard": inc.hazard, "policy": inc.policy, "drill": inc.drill, "callouts": total}),
    )];
    records.extend(planned_records(id, planned, &ids, now + inc.deadline_ms));
    Ok((id, code, records))
}

const INCIDENT_SELECT: &str =
    "SELECT id, code, warning_id, title, event, description, instruction, colour, hazard,
    policy, drill, state, created_at, expires_at, closed_at FROM incidents";

fn incident_of(r: &sqlx::any::AnyRow) -> Result<Incident> {
    let id: i64 = r.try_get(0)?;
    let bad = |what: String| anyhow!("incident {id}: {what}");
    let colour: Option<String> = r.try_get(7)?;
    let policy: String = r.try_get(9)?;
    let state: String = r.try_get(11)?;
    Ok(Incident {
        id,
        code: r.try_get(1)?,
        warning_id: r.try_get(2)?,
        title: r.try_get(3)?,
        event: r.try_get(4)?,
        description: r.try_get(5)?,
        instruction: r.try_get(6)?,
        colour: colour
            .map(|c| Colour::parse(&c).ok_or_else(|| bad(format!("unknown colour {c:?}"))))
            .transpose()?,
        hazard: r.try_get(8)?,
        policy: serde_json::from_str(&policy).map_err(|e| bad(format!("its policy does not read: {e}")))?,
        drill: r.try_get::<i64, _>(10)? != 0,
        state: IncidentState::parse(&state).ok_or_else(|| bad(format!("unknown state {state:?}")))?,
        created_at: r.try_get(12)?,
        expires_at: r.try_get(13)?,
        closed_at: r.try_get(14)?,
    })
}

// TODO(issue 8): deliver/escalate.rs calls this with a bare connection.
pub async fn incident(conn: &mut AnyConnection, id: i64) -> Result<Option<Incident>> {
    let r = sqlx::query(&format!("{INCIDENT_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    r.as_ref().map(incident_of).transpose()
}

/// Locks the incidents of these call-outs until the unit of work ends, in ascending id order
/// (PostgreSQL; SQLite has one writer). Whoever decides from what it reads whether a person
/// already has an open call-out in an incident, and writes one if not (a chunk of deadlines,
/// a slice of a plan), takes this first: two instances reading "not yet" for the same
/// township leader at once both called them (`FOR NO KEY UPDATE`, so that the foreign-key
/// checks of other writers' call-outs do not wait on it).
pub async fn lock_of_callouts(conn: &mut AnyConnection, backend: Backend, callout_ids: &[i64]) -> Result<()> {
    if backend != Backend::Postgres || callout_ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT id FROM incidents WHERE id IN (SELECT incident_id FROM callouts WHERE id IN ({}))
         ORDER BY id FOR NO KEY UPDATE",
        super::placeholders(1, callout_ids.len())
    );
    let mut q = sqlx::query_scalar::<_, i64>(&sql);
    for id in callout_ids {
        q = q.bind(*id);
    }
    q.fetch_all(&mut *conn).await?;
    Ok(())
}

// TODO(issue 8): deliver/dispatch.rs calls this with a bare connection.
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

/// The newest incidents first.
pub async fn list(store: &Store, limit: i64) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!("{INCIDENT_SELECT} ORDER BY id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(&mut *store.conn().await?)
        .await?;
    rows.iter().map(incident_of).collect()
}

/// The incident a warning opened, or the one it joined as an Update or Cancel.
pub async fn incidents_of_warning(store: &Store, warning_id: i64) -> Result<Vec<Incident>> {
    let rows = sqlx::query(&format!(
        "{INCIDENT_SELECT} WHERE warning_id = $1 OR id = (SELECT incident_id FROM warnings WHERE id = $1) ORDER BY id"
    ))
    .bind(warning_id)
    .fetch_all(&mut *store.conn().await?)
    .await?;
    rows.iter().map(incident_of).collect()
}

/// What an answer link opens: the call-out it names, or after an upgrade the newest call-out
/// of that person in that incident (a link from the earlier message answers the upgraded
/// call-out, and its page shows the upgraded warning); with its incident. None: no such
/// call-out.
pub async fn answering(store: &Store, callout_id: i64) -> Result<Option<(Callout, Incident)>> {
    let mut conn = store.conn().await?;
    let Some(c) = callout(&mut conn, callout_id).await? else {
        return Ok(None);
    };
    // Only the upgrade chain: the same person's call-out made again because the colour rose.
    // Another call-out of theirs (an escalation about someone else) is not this link's.
    let mut c = c;
    loop {
        let upgraded: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(id) FROM callouts WHERE parent_id = $1 AND contact_id = $2 AND upgrade IS NOT NULL",
        )
        .bind(c.id)
        .bind(c.contact_id)
        .fetch_one(&mut *conn)
        .await?;
        match upgraded {
            Some(n) => {
                c = callout(&mut conn, n)
                    .await?
                    .with_context(|| format!("callout {n} vanished"))?
            }
            None => break,
        }
    }
    let i = incident(&mut conn, c.incident_id)
        .await?
        .with_context(|| format!("callout {}: no incident {}", c.id, c.incident_id))?;
    Ok(Some((c, i)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChannelKind, State};
    use crate::store::callouts::callouts_of_incident;

    const POLICY: &str = r#"{"name":"red","roles":["village_leader"],"channels":["sms"],"deadline":"5m"}"#;

    /// A fresh SQLite store holding one incident with one call-out, as written by hand.
    async fn store_with(
        state: &str,
        colour: &str,
        policy: &str,
        channels: &str,
    ) -> (Store, tempfile::TempDir) {
        let (store, dir) = crate::store::temp_sqlite().await;
        let mut conn = store.conn().await.unwrap();
        for (sql, binds) in [
            (
                "INSERT INTO contacts (id, key, name, role, region_code, channels, updated_at)
                 VALUES (1, 'v1', 'Li', 'village_leader', '450921104201', $1, 0)",
                vec![channels],
            ),
            (
                "INSERT INTO incidents (id, code, title, event, hazard, policy, colour, state, created_at)
                 VALUES (1, 'A1', 't', '暴雨红色预警', 'rainstorm', $1, $2, 'active', 0)",
                vec![policy, colour],
            ),
            (
                "INSERT INTO callouts (id, incident_id, contact_id, region_code, place, role, reason, state,
                    deadline_at, created_at, updated_at)
                 VALUES (17, 1, 1, '450921104201', 'p', 'village_leader', 'r', $1, 0, 0, 0)",
                vec![state],
            ),
        ] {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b);
            }
            q.execute(&mut *conn).await.unwrap();
        }
        drop(conn);
        (store, dir)
    }

    /// An answer link opens its own call-out, or the one that replaced it when the colour rose;
    /// never a newer call-out of the same person about someone else (an escalation).
    #[tokio::test]
    async fn an_answer_link_opens_its_own_call_out_or_its_upgrade() {
        let (store, _dir) = store_with("acknowledged", "red", POLICY, "sms").await;
        let mut conn = store.conn().await.unwrap();
        sqlx::query(
            "INSERT INTO callouts (id, incident_id, contact_id, parent_id, region_code, place, role, reason,
                state, deadline_at, created_at, updated_at, upgrade)
             VALUES (30, 1, 1, NULL, '450921104201', 'q', 'village_leader', '别人未应答', 'sent', 0, 0, 0, NULL)",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        drop(conn);
        assert_eq!(answering(&store, 17).await.unwrap().unwrap().0.id, 17);
        let mut conn = store.conn().await.unwrap();
        sqlx::query(
            "INSERT INTO callouts (id, incident_id, contact_id, parent_id, region_code, place, role, reason,
                state, deadline_at, created_at, updated_at, upgrade)
             VALUES (31, 1, 1, 17, '450921104201', 'p', 'village_leader', 'r', 'sent', 0, 0, 0, '暴雨橙色→红色预警')",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        drop(conn);
        assert_eq!(answering(&store, 17).await.unwrap().unwrap().0.id, 31);
        assert_eq!(answering(&store, 30).await.unwrap().unwrap().0.id, 30);
    }

    #[tokio::test]
    async fn rows_read_as_domain_types() {
        let (store, _dir) = store_with("sent", "red", POLICY, "voice;sms").await;
        let c = &callouts_of_incident(&store, 1).await.unwrap()[0];
        assert_eq!(c.state, State::Sent);
        assert_eq!(c.channels, [ChannelKind::Voice, ChannelKind::Sms]);
        assert_eq!(c.region_code.as_str(), "450921104201");
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(
            (json["state"].as_str(), json["channels"].as_str()),
            (Some("sent"), Some("voice;sms"))
        );
        let i = &list(&store, 10).await.unwrap()[0];
        assert_eq!(
            (i.state, i.colour, i.policy.name.as_str()),
            (IncidentState::Active, Some(Colour::Red), "red")
        );
        let json = serde_json::to_value(i).unwrap();
        assert_eq!(
            (json["state"].as_str(), json["colour"].as_str()),
            (Some("active"), Some("red"))
        );
        assert_eq!(json["policy"]["deadline"], "5m");
    }

    /// A corrupt row is an error that names it, never a default (a call-out read as `planned`
    /// would be sent again).
    #[tokio::test]
    async fn a_row_that_does_not_read_is_an_error_naming_it() {
        let err = |e: anyhow::Error| format!("{e:#}");
        let (store, _dir) = store_with("plannned", "red", POLICY, "sms").await;
        let e = err(callouts_of_incident(&store, 1).await.unwrap_err());
        assert!(e.contains(r#"callout 17: unknown state "plannned""#), "{e}");
        let mut tx = store.begin().await.unwrap();
        let e = err(tx.callout(17).await.unwrap_err());
        assert!(e.contains("callout 17"), "{e}");
        let e = err(tx
            .acknowledge(
                17,
                &super::super::answers::Ack::by(crate::domain::AckMethod::Operator),
                0,
            )
            .await
            .unwrap_err());
        assert!(e.contains(r#"callout 17: unknown state "plannned""#), "{e}");
        tx.rollback().await.unwrap();

        let (store, _dir) = store_with("sent", "red", POLICY, "sms;fax").await;
        let e = err(callouts_of_incident(&store, 1).await.unwrap_err());
        assert!(
            e.contains(r#"callout 17: contact v1: unknown channel "fax""#),
            "{e}"
        );

        let (store, _dir) = store_with("sent", "purple", POLICY, "sms").await;
        let e = err(list(&store, 10).await.unwrap_err());
        assert!(e.contains(r#"incident 1: unknown colour "purple""#), "{e}");

        let (store, _dir) = store_with("sent", "red", r#"{"name":"red"}"#, "sms").await;
        let e = err(list(&store, 10).await.unwrap_err());
        assert!(e.contains("incident 1: its policy does not read"), "{e}");
    }
}
