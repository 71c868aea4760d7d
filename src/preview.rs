//! `jiaoying preview FILE`: who a CAP message would call, why (area, rule, shift) and on which
//! channel, grouped by county and township; nothing is sent or stored. Also loads the roster
//! snapshot that ingest plans against.

use anyhow::Result;
use sqlx::AnyPool;

use crate::plan::Snapshot;
use crate::store::roster;
use crate::targeting::Index;

/// Regions, risk points, contacts and duty shifts as stored, with the matching index built.
pub async fn load_snapshot(pool: &AnyPool) -> Result<Snapshot> {
    let regions = roster::load_regions(pool).await?;
    let points = roster::load_risk_points(pool).await?;
    let contacts = roster::load_contacts(pool).await?;
    let shifts = roster::load_duty(pool).await?;
    Ok(Snapshot::new(Index::build(&regions, &points), contacts, shifts))
}
