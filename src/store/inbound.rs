//! Inbound messages as received (SPEC §8: kept whether understood or not): SMS replies and
//! gateway receipts, with what became of them, and the attempt a receipt refers to.
//! This file must not read a reply's words (that is `answer::reply`) nor decide what a
//! receipt does (that is `answer::inbound`).

use std::collections::HashSet;

use anyhow::Result;

use super::{Backend, Tx, Val};

/// What kind of callback brought it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundKind {
    /// A reply from a phone.
    Sms,
    /// A delivery receipt or a voice result.
    Status,
}

impl InboundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InboundKind::Sms => "sms",
            InboundKind::Status => "status",
        }
    }
}

/// One inbound message to keep.
pub struct NewInbound<'a> {
    pub gateway: &'a str,
    pub kind: InboundKind,
    /// The phone it came from (SMS); none for a receipt.
    pub sender: Option<&'a str>,
    pub body: &'a str,
    pub outcome: &'a str,
    pub callout_id: Option<i64>,
    /// The provider's id for this report: a second report under it is a replay.
    pub event_id: Option<&'a str>,
}

impl Tx {
    /// Keeps an inbound message. Returns its id.
    pub async fn keep_inbound(&mut self, m: &NewInbound<'_>, now: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO inbound (gateway, kind, sender, body, outcome, callout_id, received_at, event_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(m.gateway)
        .bind(m.kind.as_str())
        .bind(m.sender)
        .bind(m.body)
        .bind(m.outcome)
        .bind(m.callout_id)
        .bind(now)
        .bind(m.event_id)
        .fetch_one(self.conn())
        .await?)
    }

    /// Which of these `(gateway, event id)` pairs were reported before (a group of replies
    /// asks once).
    pub async fn seen_events(&mut self, pairs: &[(&str, &str)]) -> Result<HashSet<(String, String)>> {
        let mut out = HashSet::new();
        let mut gateways: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        gateways.sort_unstable();
        gateways.dedup();
        for gateway in gateways {
            // By gateway and id: the unique index's order, so each id is one seek.
            let ids: Vec<&str> = pairs.iter().filter(|p| p.0 == gateway).map(|p| p.1).collect();
            for chunk in ids.chunks(1000) {
                let sql = format!(
                    "SELECT gateway, event_id FROM inbound WHERE gateway = $1 AND event_id IN ({})",
                    super::placeholders(2, chunk.len())
                );
                let mut q = sqlx::query_as::<_, (String, String)>(&sql).bind(gateway);
                for id in chunk {
                    q = q.bind(*id);
                }
                out.extend(q.fetch_all(self.conn()).await?);
            }
        }
        Ok(out)
    }

    /// Ids for `n` inbound rows a group of replies inserts together
    /// ([`Tx::keep_inbound_rows`]), in order; some may go unused. PostgreSQL takes them from
    /// the table's sequence. SQLite, whose one connection is the only writer, counts on from
    /// the highest id so far: a row written meanwhile by another process makes that insert
    /// fail on the key, and the group is applied again reply by reply.
    pub async fn inbound_ids(&mut self, n: usize) -> Result<Vec<i64>> {
        match self.backend {
            Backend::Postgres => super::alloc_ids(self.conn(), Backend::Postgres, "inbound", n).await,
            Backend::Sqlite => {
                let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM inbound")
                    .fetch_one(self.conn())
                    .await?;
                Ok((last + 1..=last + n as i64).collect())
            }
        }
    }

    /// Inbound messages kept together, under the ids given.
    pub async fn keep_inbound_rows(&mut self, rows: &[(i64, NewInbound<'_>)], now: i64) -> Result<()> {
        let rows = rows
            .iter()
            .map(|(id, m)| {
                vec![
                    Val::I(*id),
                    Val::from(m.gateway),
                    Val::from(m.kind.as_str()),
                    Val::from(m.sender.map(str::to_string)),
                    Val::from(m.body),
                    Val::from(m.outcome),
                    Val::from(m.callout_id),
                    Val::I(now),
                    Val::from(m.event_id.map(str::to_string)),
                ]
            })
            .collect();
        super::insert_rows(
            self.conn(),
            "inbound",
            &[
                "id",
                "gateway",
                "kind",
                "sender",
                "body",
                "outcome",
                "callout_id",
                "received_at",
                "event_id",
            ],
            rows,
        )
        .await
    }

    /// Whether this gateway reported this event before.
    pub async fn seen_event(&mut self, gateway: &str, event_id: &str) -> Result<bool> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT id FROM inbound WHERE gateway = $1 AND event_id = $2")
                .bind(gateway)
                .bind(event_id)
                .fetch_optional(self.conn())
                .await?;
        Ok(n.is_some())
    }

    /// What became of an inbound message, once known.
    pub async fn set_inbound_outcome(&mut self, id: i64, outcome: &str) -> Result<()> {
        sqlx::query("UPDATE inbound SET outcome = $1 WHERE id = $2")
            .bind(outcome)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// The call-out of a send the provider knows by its own id (`BizId`, `CallId`, a SID).
    pub async fn callout_of_provider_id(&mut self, gateway: &str, provider_id: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT callout_id FROM attempts WHERE gateway = $1 AND gateway_ref = $2 LIMIT 1",
        )
        .bind(gateway)
        .bind(provider_id)
        .fetch_optional(self.conn())
        .await?)
    }

    /// The call-out of the attempt a gateway's receipt names (our attempt id is the `ref` we
    /// gave it); none when that gateway made no such attempt.
    pub async fn callout_of_attempt(&mut self, attempt_id: i64, gateway: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT callout_id FROM attempts WHERE id = $1 AND gateway = $2")
                .bind(attempt_id)
                .bind(gateway)
                .fetch_optional(self.conn())
                .await?,
        )
    }
}
