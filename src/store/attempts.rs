//! Attempts: one try of one message through one gateway. An attempt is written as `sending`
//! in a short transaction before its network call and completed (sent, transient, permanent)
//! in the transaction that records the batch; an attempt still `sending` when its job runs
//! again was cut off by a crash (its gateway's answer was lost) and becomes `lost`. This
//! module must not decide what follows an attempt: that is `deliver::dispatch`.

use anyhow::Result;
use sqlx::AnyConnection;

use super::{insert_rows, placeholders, update_rows, Val};

/// An attempt as it is written before its network call, and completed after it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: i64,
    pub callout_id: i64,
    pub job_id: i64,
    /// The message key (SPEC §5 `ref`): the same on every try of one message.
    pub message_key: String,
    pub channel: &'static str,
    pub gateway: String,
    pub address: String,
    pub body: String,
    pub started_at: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `sent`, `transient` or `permanent`.
    pub result: &'static str,
    pub gateway_ref: Option<String>,
    pub detail: Option<String>,
    pub finished_at: i64,
}

const COLUMNS: [&str; 13] = [
    "id",
    "callout_id",
    "job_id",
    "message_key",
    "channel",
    "gateway",
    "address",
    "body",
    "gateway_ref",
    "result",
    "detail",
    "started_at",
    "finished_at",
];

/// An attempt as written before its network call: `sending`, nothing answered yet.
fn row(a: &Attempt) -> Vec<Val> {
    vec![
        Val::I(a.id),
        Val::I(a.callout_id),
        Val::I(a.job_id),
        Val::from(a.message_key.as_str()),
        Val::from(a.channel),
        Val::from(a.gateway.as_str()),
        Val::from(a.address.as_str()),
        Val::from(a.body.as_str()),
        Val::NullT,
        Val::from("sending"),
        Val::NullT,
        Val::I(a.started_at),
        Val::NullI,
    ]
}

/// Writes attempts as `sending` (before their network calls).
pub async fn start(conn: &mut AnyConnection, attempts: &[Attempt]) -> Result<()> {
    insert_rows(conn, "attempts", &COLUMNS, attempts.iter().map(row).collect()).await
}

/// Completes attempts written by [`start`]: the `sending` row is updated in place to the
/// finished one in the caller's transaction, so nobody ever sees both or neither. One that
/// another worker marked `lost` meanwhile (this worker's claim ran out mid-send) is completed
/// too: what the gateway answered is better than "lost", and the row must not block the whole
/// record. Only the four columns that change are sent (an upsert of the whole row sent each
/// message's text again), in one statement per 1,000 or so rows.
pub async fn finish(conn: &mut AnyConnection, done: &[(Attempt, Outcome)]) -> Result<()> {
    update_rows(
        conn,
        "attempts",
        "id",
        &["gateway_ref", "result", "detail", "finished_at"],
        done.iter()
            .map(|(a, o)| {
                vec![
                    Val::I(a.id),
                    Val::from(o.gateway_ref.clone()),
                    Val::from(o.result),
                    Val::from(o.detail.clone()),
                    Val::I(o.finished_at),
                ]
            })
            .collect(),
        "attempts.result IN ('sending', 'lost')",
    )
    .await?;
    Ok(())
}

/// Attempts of these jobs still `sending`: a crash cut them off before their answer was
/// recorded. They become `lost` (the message goes again, under the same key, after asking the
/// gateway); returns the jobs they belonged to.
pub async fn lose_in_flight(conn: &mut AnyConnection, job_ids: &[i64], now: i64) -> Result<Vec<i64>> {
    let mut lost = Vec::new();
    let sqlite = conn.backend_name() == "SQLite";
    for chunk in job_ids.chunks(1000) {
        // On SQLite every parameter anonymous (see `store::anonymous`).
        let list = super::in_list(sqlite, 2, chunk.len());
        let first = if sqlite { "?" } else { "$1" };
        let sql = format!(
            "UPDATE attempts SET result = 'lost', finished_at = {first},
                    detail = 'the gateway''s answer was lost (the daemon stopped mid-send); sent again under the same ref'
             WHERE result = 'sending' AND job_id IN ({list}) RETURNING job_id"
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        lost.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(lost)
}

/// When each of these addresses was sent to through this gateway since `since` (ms): what
/// per-recipient caps count. A send refused by a cap, or that failed before reaching the
/// gateway, does not count; one whose answer was lost does.
pub async fn sends_since(
    conn: &mut AnyConnection,
    gateway: &str,
    addresses: &[&str],
    since: i64,
) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for chunk in addresses.chunks(500) {
        let sql = format!(
            "SELECT address, started_at FROM attempts
             WHERE gateway = $1 AND started_at >= $2 AND address IN ({})
               AND result IN ('sending', 'sent', 'unanswered', 'lost')",
            placeholders(3, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (String, i64)>(&sql).bind(gateway).bind(since);
        for a in chunk {
            q = q.bind(*a);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// The call-out a gateway's receipt is about, by the message key it echoes as `ref`
/// (`c{call-out}-j{job}`; an older attempt id is still understood).
pub async fn callout_of_ref(conn: &mut AnyConnection, gateway: &str, reference: &str) -> Result<Option<i64>> {
    let callout = reference
        .strip_prefix('c')
        .and_then(|r| r.split_once("-j"))
        .and_then(|(c, _)| c.parse::<i64>().ok());
    if let Some(callout) = callout {
        // Through the call-out's index; the key must match one of its attempts.
        return Ok(sqlx::query_scalar(
            "SELECT callout_id FROM attempts WHERE callout_id = $1 AND message_key = $2 AND gateway = $3 LIMIT 1",
        )
        .bind(callout)
        .bind(reference)
        .bind(gateway)
        .fetch_optional(&mut *conn)
        .await?);
    }
    let Ok(id) = reference.parse::<i64>() else {
        return Ok(None);
    };
    Ok(
        sqlx::query_scalar("SELECT callout_id FROM attempts WHERE id = $1 AND gateway = $2")
            .bind(id)
            .bind(gateway)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// A send that has had no receipt yet (for the reconciliation job).
#[derive(Debug, Clone)]
pub struct Unreceipted {
    pub message_key: String,
    pub gateway_ref: Option<String>,
    pub address: String,
    pub started_at: i64,
}

/// The sends through `gateway` since `since` (ms) still without a receipt, oldest first, at
/// most `limit`: attempts `sent` whose call-out is still `sent` (not delivered, answered or
/// ended) and has had no receipt since the attempt began (a receipt saying "not delivered"
/// leaves the call-out `sent`: it is not asked about again).
pub async fn unreceipted(
    conn: &mut AnyConnection,
    gateway: &str,
    since: i64,
    limit: i64,
) -> Result<Vec<Unreceipted>> {
    let rows = sqlx::query_as::<_, (String, Option<String>, String, i64)>(
        "SELECT a.message_key, a.gateway_ref, a.address, a.started_at
         FROM attempts a JOIN callouts c ON c.id = a.callout_id
         WHERE a.gateway = $1 AND a.result = 'sent' AND a.started_at >= $2
           AND a.message_key IS NOT NULL AND c.state = 'sent'
           AND NOT EXISTS (SELECT 1 FROM inbound i
                           WHERE i.callout_id = a.callout_id AND i.kind = 'status'
                             AND i.outcome <> 'replayed' AND i.received_at >= a.started_at)
         ORDER BY a.started_at, a.id
         LIMIT $3",
    )
    .bind(gateway)
    .bind(since)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(message_key, gateway_ref, address, started_at)| Unreceipted {
            message_key,
            gateway_ref,
            address,
            started_at,
        })
        .collect())
}
