//! The statements of the tamper trial (`jiaoying ledger tamper`, bench/tamper) and nothing
//! else: copying a database, and the one change an attacker with write access to it would
//! make. Never called by the daemon. Each change is a plain write outside any ledger entry,
//! which is the point: `ledger verify` must find it.

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::Rng;
use sqlx::{AnyConnection, Row};

use super::{Backend, Store};
use crate::record::ledger;

/// The kinds of change, as named in the trial's output.
pub const KINDS: [&str; 8] = [
    "edit_state",
    "edit_entry_body",
    "delete_entry",
    "swap_entries",
    "truncate_tail",
    "rewrite_and_rehash",
    "delete_state_row",
    "insert_state_row",
];

/// Flushes SQLite's WAL into the main file, so that a file copy is the whole database.
pub async fn flush(store: &Store) -> Result<()> {
    if store.backend() == Backend::Sqlite {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *store.conn().await?)
            .await?;
    }
    Ok(())
}

/// PostgreSQL: `name` becomes a copy of `template` (which nobody may be connected to).
pub async fn pg_copy(admin: &Store, name: &str, template: &str) -> Result<()> {
    let mut c = admin.conn().await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut *c)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .execute(&mut *c)
        .await
        .with_context(|| format!("CREATE DATABASE {name} TEMPLATE {template}"))?;
    Ok(())
}

pub async fn pg_drop(admin: &Store, name: &str) -> Result<()> {
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut *admin.conn().await?)
        .await?;
    Ok(())
}

async fn ids(c: &mut AnyConnection, sql: &str) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(sql).fetch_all(&mut *c).await?)
}

async fn exec(c: &mut AnyConnection, sql: &str, binds: &[i64]) -> Result<u64> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    Ok(q.execute(&mut *c).await?.rows_affected())
}

/// Makes one change of `kind` at random; returns what was changed (for the log).
pub async fn tamper(store: &Store, kind: &str, rng: &mut impl Rng) -> Result<String> {
    let mut c = store.conn().await?;
    let c = &mut *c;
    let head: i64 = sqlx::query_scalar("SELECT seq FROM ledger_head WHERE id = 1")
        .fetch_one(&mut *c)
        .await?;
    let seq = |rng: &mut dyn rand::RngCore| rng.gen_range(1..=head);
    Ok(match kind {
        "edit_state" => edit_state(c, rng).await?,
        "edit_entry_body" => {
            let s = seq(rng);
            // The smallest edit: one character of the body (a digit turned into another).
            let body: String = sqlx::query_scalar("SELECT body FROM ledger WHERE seq = $1")
                .bind(s)
                .fetch_one(&mut *c)
                .await?;
            let edited = match body.find(|ch: char| ch.is_ascii_digit()) {
                Some(i) => {
                    let d = body.as_bytes()[i];
                    let nd = if d == b'9' { '0' } else { (d + 1) as char };
                    format!("{}{nd}{}", &body[..i], &body[i + 1..])
                }
                None => format!("{body} "),
            };
            sqlx::query("UPDATE ledger SET body = $1 WHERE seq = $2")
                .bind(edited)
                .bind(s)
                .execute(&mut *c)
                .await?;
            format!("ledger {s}: body edited")
        }
        "delete_entry" => {
            let s = seq(rng);
            exec(c, "DELETE FROM ledger WHERE seq = $1", &[s]).await?;
            format!("ledger {s}: deleted")
        }
        "swap_entries" => {
            let a = seq(rng);
            let mut b = seq(rng);
            while b == a && head > 1 {
                b = seq(rng);
            }
            // Rows keep their seq; everything else changes places.
            let big = head + 1_000_000;
            exec(c, "UPDATE ledger SET seq = $1 WHERE seq = $2", &[big, a]).await?;
            exec(c, "UPDATE ledger SET seq = $1 WHERE seq = $2", &[a, b]).await?;
            exec(c, "UPDATE ledger SET seq = $1 WHERE seq = $2", &[b, big]).await?;
            format!("ledger {a} and {b}: swapped")
        }
        "truncate_tail" => {
            let n = rng.gen_range(1..=50.min(head - 1).max(1));
            let keep = head - n;
            let hash: String = sqlx::query_scalar("SELECT hash FROM ledger WHERE seq = $1")
                .bind(keep)
                .fetch_optional(&mut *c)
                .await?
                .unwrap_or_else(|| ledger::GENESIS.to_string());
            exec(c, "DELETE FROM ledger WHERE seq > $1", &[keep]).await?;
            sqlx::query("UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(keep)
                .bind(hash)
                .execute(&mut *c)
                .await?;
            format!("ledger: last {n} entries cut, head moved back to {keep}")
        }
        "rewrite_and_rehash" => {
            // An attacker who knows the hashing: one entry of the last 200 edited, and every
            // hash after it recomputed, head included. Only a checkpoint (or the state) tells.
            let from = rng.gen_range((head - 199).max(1)..=head);
            let rows = sqlx::query(
                "SELECT seq, at, kind, subject, body, prev_hash FROM ledger WHERE seq >= $1 ORDER BY seq",
            )
            .bind(from)
            .fetch_all(&mut *c)
            .await?;
            let prev: String = rows[0].try_get(5)?;
            let mut items = Vec::new();
            for (i, r) in rows.iter().enumerate() {
                let mut body: String = r.try_get(4)?;
                if i == 0 {
                    body = body.replacen('}', ",\"x\":1}", 1);
                }
                items.push((
                    r.try_get::<i64, _>(1)?,
                    r.try_get::<String, _>(2)?,
                    r.try_get::<String, _>(3)?,
                    body,
                ));
            }
            let chained = ledger::chain(&prev, from, items);
            for e in &chained {
                sqlx::query("UPDATE ledger SET body = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
                    .bind(&e.body)
                    .bind(&e.prev_hash)
                    .bind(&e.hash)
                    .bind(e.seq)
                    .execute(&mut *c)
                    .await?;
            }
            let last = chained.last().expect("at least one entry");
            sqlx::query("UPDATE ledger_head SET hash = $1 WHERE id = 1")
                .bind(&last.hash)
                .execute(&mut *c)
                .await?;
            format!(
                "ledger {from}: body edited and {} hashes recomputed",
                chained.len()
            )
        }
        "delete_state_row" => {
            let (table, key) = *[
                ("callouts", "id"),
                ("acks", "callout_id"),
                ("evacuations", "id"),
                ("knocks", "id"),
            ]
            .choose(rng)
            .expect("a table");
            let all = ids(c, &format!("SELECT {key} FROM {table}")).await?;
            let Some(id) = all.choose(rng).copied() else {
                return Ok(format!("{table}: empty, nothing deleted"));
            };
            // Rows referring to it go first (foreign keys), as an attacker would have to.
            if table == "callouts" {
                for (t, col) in [
                    ("acks", "callout_id"),
                    ("attempts", "callout_id"),
                    ("jobs", "callout_id"),
                    ("callout_joins", "host_id"),
                    ("callout_joins", "joined_id"),
                    ("knocks", "callout_id"),
                    ("knocks", "task_id"),
                ] {
                    exec(c, &format!("DELETE FROM {t} WHERE {col} = $1"), &[id]).await?;
                }
                exec(
                    c,
                    "UPDATE callouts SET parent_id = NULL WHERE parent_id = $1",
                    &[id],
                )
                .await?;
                exec(
                    c,
                    "UPDATE evacuations SET callout_id = NULL WHERE callout_id = $1",
                    &[id],
                )
                .await?;
            }
            exec(c, &format!("DELETE FROM {table} WHERE {key} = $1"), &[id]).await?;
            format!("{table} {id}: deleted")
        }
        "insert_state_row" => {
            if rng.gen_bool(0.5) {
                let src = ids(c, "SELECT id FROM evacuations").await?;
                let n = exec(
                    c,
                    "INSERT INTO evacuations (incident_id, callout_id, reporter, region_code, moved, threatened, method, at)
                     SELECT incident_id, callout_id, reporter, region_code, moved + 10, threatened, method, at + 1
                     FROM evacuations WHERE id = $1",
                    &[src.choose(rng).copied().unwrap_or(0)],
                )
                .await?;
                format!("evacuations: {n} row inserted")
            } else {
                let src = ids(c, "SELECT id FROM callouts WHERE state <> 'acknowledged'").await?;
                let id = src.choose(rng).copied().unwrap_or(0);
                let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1000 FROM callouts")
                    .fetch_one(&mut *c)
                    .await?;
                exec(
                    c,
                    "INSERT INTO callouts (id, incident_id, contact_id, parent_id, rung, region_code, place, role, reason,
                        state, deadline_at, created_at, sent_at, delivered_at, acked_at, ack_late, updated_at, upgrade, task)
                     SELECT $1, incident_id, contact_id, parent_id, rung, region_code, place, role, reason,
                        'acknowledged', deadline_at, created_at, sent_at, delivered_at, created_at + 60000, 0, updated_at, upgrade, task
                     FROM callouts WHERE id = $2",
                    &[next, id],
                )
                .await?;
                format!("callouts {next}: inserted as acknowledged")
            }
        }
        other => anyhow::bail!("unknown tamper kind {other}"),
    })
}

/// One covered column of one random row, set to a value it does not have.
async fn edit_state(c: &mut AnyConnection, rng: &mut impl Rng) -> Result<String> {
    let edits: [(&str, &str, &str); 11] = [
        // table, key, SET clause
        (
            "callouts",
            "id",
            "state = CASE WHEN state = 'acknowledged' THEN 'unreached' ELSE 'acknowledged' END",
        ),
        (
            "callouts",
            "id",
            "acked_at = COALESCE(acked_at, created_at) + 1000",
        ),
        ("callouts", "id", "ack_late = 1 - ack_late"),
        (
            "acks",
            "callout_id",
            "method = CASE WHEN method = 'sms' THEN 'link' ELSE 'sms' END",
        ),
        ("acks", "callout_id", "at = at - 60000"),
        ("evacuations", "id", "moved = moved + 1"),
        ("evacuations", "id", "reporter = reporter || 'x'"),
        (
            "incidents",
            "id",
            "state = CASE WHEN state = 'closed' THEN 'active' ELSE 'closed' END",
        ),
        (
            "incidents",
            "id",
            "colour = CASE WHEN colour = 'red' THEN 'orange' ELSE 'red' END",
        ),
        ("incidents", "id", "closed_at = COALESCE(closed_at, 0) + 1"),
        ("warnings", "id", "raw"),
    ];
    let (table, key, set) = *edits.choose(rng).expect("an edit");
    let all = ids(c, &format!("SELECT {key} FROM {table}")).await?;
    let Some(id) = all.choose(rng).copied() else {
        return Ok(format!("{table}: empty, nothing edited"));
    };
    if set == "raw" {
        // One byte of the warning's raw message changed (bytes are bound, not concatenated:
        // SQLite's || would turn the blob into text).
        let mut raw: Vec<u8> = sqlx::query_scalar("SELECT raw FROM warnings WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await?;
        let i = rng.gen_range(0..raw.len().max(1));
        match raw.get_mut(i) {
            Some(b) => *b ^= 0x01,
            None => raw.push(b' '),
        }
        sqlx::query("UPDATE warnings SET raw = $1 WHERE id = $2")
            .bind(raw)
            .bind(id)
            .execute(&mut *c)
            .await?;
        return Ok(format!("warnings {id}: byte {i} of raw changed"));
    }
    let n = exec(c, &format!("UPDATE {table} SET {set} WHERE {key} = $1"), &[id]).await?;
    Ok(format!("{table} {id}: {set} ({n} row)"))
}
