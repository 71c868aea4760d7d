//! A call-out as its row reads: the columns it is selected by (row by row, or as one JSON
//! array made by the database), and their parse into [`Callout`], where a row that does not
//! read is an error naming it (read as JSON, naming the first call-out of its batch).
//! `callouts.rs` owns the statements; this file must not query.

use anyhow::{anyhow, Result};
use sqlx::Row;

use crate::domain::callout::State;
use crate::domain::{Callout, ChannelKind, RegionCode};

/// The columns a [`Callout`] is read from, in [`CalloutRow`]'s order.
macro_rules! callout_columns {
    () => {
        "c.id, c.incident_id, c.contact_id, c.parent_id, c.rung, c.region_code, c.place,
    c.role, c.reason, c.state, c.deadline_at, c.created_at, c.sent_at, c.delivered_at, c.acked_at, c.ack_late,
    k.key, k.name, k.phone, k.email, k.channels, k.backup_key, k.superior_key, a.method, c.upgrade, c.task"
    };
}
macro_rules! callout_from {
    () => {
        " FROM callouts c JOIN contacts k ON k.id = c.contact_id LEFT JOIN acks a ON a.callout_id = c.id"
    };
}

pub(super) const CALLOUT_SELECT: &str = concat!("SELECT ", callout_columns!(), callout_from!());

/// The same rows as one JSON array of arrays, made by the database (see
/// [`super::callouts::callouts_by_id`]).
pub(super) const CALLOUTS_JSON_SQLITE: &str = concat!(
    "SELECT json_group_array(json_array(",
    callout_columns!(),
    "))",
    callout_from!()
);
pub(super) const CALLOUTS_JSON_POSTGRES: &str = concat!(
    "SELECT json_agg(json_build_array(",
    callout_columns!(),
    "))::text",
    callout_from!()
);

/// One call-out's columns as they come, in `callout_columns!`'s order (a JSON array of 26).
#[derive(serde::Deserialize)]
pub(super) struct CalloutRow(
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(super) fn callout_of(r: &sqlx::any::AnyRow) -> Result<Callout> {
    callout_of_row(CalloutRow(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
        r.try_get(6)?,
        r.try_get(7)?,
        r.try_get(8)?,
        r.try_get(9)?,
        r.try_get(10)?,
        r.try_get(11)?,
        r.try_get(12)?,
        r.try_get(13)?,
        r.try_get(14)?,
        r.try_get(15)?,
        r.try_get(16)?,
        r.try_get(17)?,
        r.try_get(18)?,
        r.try_get(19)?,
        r.try_get(20)?,
        r.try_get(21)?,
        r.try_get(22)?,
        r.try_get(23)?,
        r.try_get(24)?,
        r.try_get(25)?,
    ))
}

pub(super) fn callout_of_row(row: CalloutRow) -> Result<Callout> {
    let CalloutRow(
        id,
        incident_id,
        contact_id,
        parent_id,
        rung,
        region,
        place,
        role,
        reason,
        state,
        deadline_at,
        created_at,
        sent_at,
        delivered_at,
        acked_at,
        ack_late,
        contact_key,
        contact_name,
        phone,
        email,
        channels,
        backup_key,
        superior_key,
        ack_method,
        upgrade,
        task,
    ) = row;
    let bad = |what: String| anyhow!("callout {id}: {what}");
    Ok(Callout {
        id,
        incident_id,
        contact_id,
        parent_id,
        rung,
        region_code: RegionCode::parse(&region).map_err(bad)?,
        place,
        role,
        reason,
        state: State::parse(&state).ok_or_else(|| bad(format!("unknown state {state:?}")))?,
        deadline_at,
        created_at,
        sent_at,
        delivered_at,
        acked_at,
        ack_late: ack_late != 0,
        channels: channel_list(&channels).map_err(|e| bad(format!("contact {contact_key}: {e}")))?,
        contact_key,
        contact_name,
        phone,
        email,
        backup_key,
        superior_key,
        ack_method,
        upgrade,
        knock: task.as_deref() == Some("knock"),
        round: task
            .as_deref()
            .and_then(|t| t.strip_prefix("round:"))
            .and_then(|n| n.parse().ok()),
    })
}

/// A contact's `channels` column, `sms;voice` (empty: the policy's order).
pub(super) fn channel_list(s: &str) -> Result<Vec<ChannelKind>, String> {
    s.split(';')
        .filter(|c| !c.is_empty())
        .map(|c| ChannelKind::parse(c).ok_or_else(|| format!("unknown channel {c:?}")))
        .collect()
}
