//! Regions and contacts: upserts by natural key (re-importing a sheet is safe) and loading.

use std::collections::HashSet;

use anyhow::{Context, Result};
use sqlx::{AnyConnection, AnyPool, Row};

use super::Val;
use crate::domain::{ChannelKind, Phone, RegionCode, RegionLevel};
use crate::roster::{geometry_shape, Contact, DutyShift, Region, RiskPoint};

pub async fn upsert_regions(conn: &mut AnyConnection, regions: &[Region], now: i64) -> Result<()> {
    for chunk in regions.chunks(2000) {
        let rows = chunk
            .iter()
            .map(|r| {
                vec![
                    Val::from(r.code.as_str()),
                    Val::from(r.name.as_str()),
                    Val::from(r.level.as_str()),
                    Val::from(r.parent.as_ref().map(|p| p.to_string())),
                    Val::from(r.centroid.map(|c| c.0)),
                    Val::from(r.centroid.map(|c| c.1)),
                    Val::I(now),
                ]
            })
            .collect();
        // ON CONFLICT … DO UPDATE reads the same on SQLite and PostgreSQL.
        insert_rows_upsert(
            conn,
            "regions",
            &["code", "name", "level", "parent", "lat", "lon", "updated_at"],
            "code",
            &["name", "level", "parent", "lat", "lon", "updated_at"],
            rows,
        )
        .await?;
    }
    Ok(())
}

pub async fn set_boundary(
    conn: &mut AnyConnection,
    code: &RegionCode,
    geojson: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query("UPDATE regions SET boundary = $1, updated_at = $2 WHERE code = $3")
        .bind(geojson)
        .bind(now)
        .bind(code.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn upsert_contacts(conn: &mut AnyConnection, contacts: &[Contact], now: i64) -> Result<()> {
    for chunk in contacts.chunks(2000) {
        let rows = chunk
            .iter()
            .map(|c| {
                vec![
                    Val::from(c.key.as_str()),
                    Val::from(c.name.as_str()),
                    Val::from(c.phone.as_ref().map(|p| p.as_str().to_string())),
                    Val::from(c.email.clone()),
                    Val::from(c.role.as_str()),
                    Val::from(c.region.as_str()),
                    Val::from(c.backup.clone()),
                    Val::from(c.superior.clone()),
                    Val::T(
                        c.channels
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(";"),
                    ),
                    Val::I(now),
                ]
            })
            .collect();
        insert_rows_upsert(
            conn,
            "contacts",
            &[
                "key",
                "name",
                "phone",
                "email",
                "role",
                "region_code",
                "backup_key",
                "superior_key",
                "channels",
                "updated_at",
            ],
            "key",
            &[
                "name",
                "phone",
                "email",
                "role",
                "region_code",
                "backup_key",
                "superior_key",
                "channels",
                "updated_at",
            ],
            rows,
        )
        .await?;
    }
    Ok(())
}

async fn insert_rows_upsert(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    key: &str,
    update: &[&str],
    rows: Vec<Vec<Val>>,
) -> Result<()> {
    let sets: Vec<String> = update.iter().map(|c| format!("{c} = excluded.{c}")).collect();
    let suffix = format!(" ON CONFLICT ({key}) DO UPDATE SET {}", sets.join(", "));
    super::insert_rows_with_suffix(conn, table, columns, rows, &suffix).await
}

pub async fn contact_keys(pool: &AnyPool) -> Result<HashSet<String>> {
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM contacts")
        .fetch_all(pool)
        .await?;
    Ok(keys.into_iter().collect())
}

pub async fn load_regions(pool: &AnyPool) -> Result<Vec<Region>> {
    let rows = sqlx::query("SELECT code, name, level, parent, lat, lon, boundary FROM regions ORDER BY code")
        .fetch_all(pool)
        .await
        .context("loading regions")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let code: String = r.try_get(0)?;
        let level: String = r.try_get(2)?;
        let parent: Option<String> = r.try_get(3)?;
        let lat: Option<f64> = r.try_get(4)?;
        let lon: Option<f64> = r.try_get(5)?;
        let boundary: Option<String> = r.try_get(6)?;
        let code = RegionCode::parse(&code).map_err(anyhow::Error::msg)?;
        out.push(Region {
            level: level_of(&level).unwrap_or_else(|| code.level()),
            code,
            name: r.try_get(1)?,
            parent: parent.and_then(|p| RegionCode::parse(&p).ok()),
            centroid: lat.zip(lon),
            boundary: boundary
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                .and_then(|v| geometry_shape(&v).ok()),
        });
    }
    Ok(out)
}

fn level_of(s: &str) -> Option<RegionLevel> {
    [
        RegionLevel::Province,
        RegionLevel::City,
        RegionLevel::County,
        RegionLevel::Township,
        RegionLevel::Village,
    ]
    .into_iter()
    .find(|l| l.as_str() == s)
}

const CONTACT_COLUMNS: &str =
    "id, key, name, phone, email, role, region_code, backup_key, superior_key, channels";

pub fn contact_of(r: &sqlx::any::AnyRow) -> Result<Contact> {
    let phone: Option<String> = r.try_get(3)?;
    let region: String = r.try_get(6)?;
    let channels: String = r.try_get(9)?;
    Ok(Contact {
        id: r.try_get(0)?,
        key: r.try_get(1)?,
        name: r.try_get(2)?,
        phone: phone.and_then(|p| Phone::parse(&p).ok()),
        email: r.try_get(4)?,
        role: r.try_get(5)?,
        region: RegionCode::parse(&region).map_err(anyhow::Error::msg)?,
        backup: r.try_get(7)?,
        superior: r.try_get(8)?,
        channels: channels.split(';').filter_map(ChannelKind::parse).collect(),
    })
}

pub async fn load_contacts(pool: &AnyPool) -> Result<Vec<Contact>> {
    let rows = sqlx::query(&format!("SELECT {CONTACT_COLUMNS} FROM contacts ORDER BY id"))
        .fetch_all(pool)
        .await
        .context("loading contacts")?;
    rows.iter().map(contact_of).collect()
}

pub async fn contact_by_key(conn: &mut AnyConnection, key: &str) -> Result<Option<Contact>> {
    let row = sqlx::query(&format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE key = $1"))
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(contact_of).transpose()
}

pub async fn contacts_by_phone(conn: &mut AnyConnection, phone: &Phone) -> Result<Vec<Contact>> {
    let rows = sqlx::query(&format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts WHERE phone = $1"
    ))
    .bind(phone.as_str())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(contact_of).collect()
}

/// Risk points with their monitors (empty until the roster importer stores monitors).
pub async fn load_risk_points(pool: &AnyPool) -> Result<Vec<RiskPoint>> {
    let rows =
        sqlx::query("SELECT id, key, kind, name, lat, lon, region_code, people FROM risk_points ORDER BY id")
            .fetch_all(pool)
            .await
            .context("loading risk points")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let region: String = r.try_get(6)?;
        out.push(RiskPoint {
            id: r.try_get(0)?,
            key: r.try_get(1)?,
            kind: r.try_get(2)?,
            name: r.try_get(3)?,
            lat: r.try_get(4)?,
            lon: r.try_get(5)?,
            region: RegionCode::parse(&region).map_err(anyhow::Error::msg)?,
            people: r.try_get(7)?,
            monitors: Vec::new(),
        });
    }
    Ok(out)
}

/// Duty shifts (none until the roster importer stores them).
pub async fn load_duty(_pool: &AnyPool) -> Result<Vec<DutyShift>> {
    Ok(Vec::new())
}
