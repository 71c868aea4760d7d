//! The roster: upserts by natural key (re-importing a sheet is safe) and loading. Regions,
//! contacts with all their phones, risk points with their monitors, duty shifts.
//! Only rows the import checked are written, so a stored row that does not read (an unknown
//! channel, a phone not in E.164, a bad boundary) is an error naming it, never skipped. This
//! file must not check a sheet (that is `target::roster`) nor decide who is called.

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;
use sqlx::{AnyConnection, Row};

use super::{Backend, Store, Tx, Val};
use crate::domain::{Phone, RegionCode, RegionLevel};
use crate::target::plan::Snapshot;
use crate::target::roster::{
    geometry_shape, Contact, ContactRow, DutyShift, Known, Region, RiskPoint, Shift,
};
use crate::target::targeting::Index;

impl Tx {
    pub async fn upsert_regions(&mut self, regions: &[Region], now: i64) -> Result<()> {
        upsert_regions(self.conn(), regions, now).await?;
        bump_version(self.conn()).await
    }

    /// A region's boundary (GeoJSON geometry); false when no such region.
    pub async fn set_boundary(&mut self, code: &RegionCode, geojson: &str, now: i64) -> Result<bool> {
        let r = sqlx::query("UPDATE regions SET boundary = $1, updated_at = $2 WHERE code = $3")
            .bind(geojson)
            .bind(now)
            .bind(code.as_str())
            .execute(self.conn())
            .await?;
        bump_version(self.conn()).await?;
        Ok(r.rows_affected() > 0)
    }

    /// Contacts (primary phone in `contacts.phone`), every phone in order, and the risk point
    /// a row names as monitored. A contact's phone list is replaced by the sheet's.
    pub async fn upsert_contact_rows(&mut self, rows: &[ContactRow], now: i64) -> Result<()> {
        upsert_contact_rows(self.conn(), rows, now).await?;
        bump_version(self.conn()).await
    }

    /// Risk points by key. A point whose row lists monitors gets exactly those (the sheet is
    /// the authority); a row with none keeps the monitors it had (e.g. from the contacts sheet).
    pub async fn upsert_risk_points(&mut self, points: &[RiskPoint], now: i64) -> Result<()> {
        upsert_risk_points(self.conn(), points, now).await?;
        bump_version(self.conn()).await
    }

    /// Duty lines by (role, region, contact, start): an updated sheet changes lengths, ends
    /// and time zones in place.
    pub async fn upsert_duty(&mut self, shifts: &[DutyShift], now: i64) -> Result<()> {
        upsert_duty(self.conn(), shifts, now).await?;
        bump_version(self.conn()).await
    }

    /// Everyone who has this number, as primary or any other of their phones.
    /// Everyone who has one of these numbers, as primary or any other of their phones: the
    /// number with each (a group of replies asks once).
    pub async fn contacts_by_phones(&mut self, phones: &[&str]) -> Result<Vec<(String, Contact)>> {
        let mut out = Vec::new();
        let cols: String = CONTACT_COLUMNS
            .split(", ")
            .map(|c| format!("c.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        for chunk in phones.chunks(1000) {
            let list = super::placeholders(1, chunk.len());
            for sql in [
                format!("SELECT c.phone, {cols} FROM contacts c WHERE c.phone IN ({list})"),
                format!(
                    "SELECT p.phone, {cols} FROM contact_phones p JOIN contacts c ON c.key = p.contact_key \
                     WHERE p.phone IN ({list})"
                ),
            ] {
                let mut q = sqlx::query(&sql);
                for p in chunk {
                    q = q.bind(*p);
                }
                for r in q.fetch_all(self.conn()).await? {
                    let phone: String = r.try_get(0)?;
                    out.push((phone, contact_at(&r, 1)?));
                }
            }
        }
        Ok(out)
    }

    pub async fn contacts_by_phone(&mut self, phone: &Phone) -> Result<Vec<Contact>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE phone = $1 \
             OR key IN (SELECT contact_key FROM contact_phones WHERE phone = $1) ORDER BY id"
        ))
        .bind(phone.as_str())
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(contact_of).collect()
    }
}

async fn upsert_regions(conn: &mut AnyConnection, regions: &[Region], now: i64) -> Result<()> {
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

async fn upsert_contacts(conn: &mut AnyConnection, contacts: &[Contact], now: i64) -> Result<()> {
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

/// Upsert on a unique key (`key`, or `a, b, c` for a composite one).
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

pub async fn contact_keys(store: &Store) -> Result<HashSet<String>> {
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM contacts")
        .fetch_all(&mut *store.conn().await?)
        .await?;
    Ok(keys.into_iter().collect())
}

pub async fn load_regions(store: &Store) -> Result<Vec<Region>> {
    let mut conn = store.conn().await?;
    // Row by row, not all rows first: a province's rows as read would hold more memory than
    // the regions made of them, and the daemon's peak is at start.
    let mut rows =
        sqlx::query("SELECT code, name, level, parent, lat, lon, boundary FROM regions ORDER BY code")
            .fetch(&mut *conn);
    let mut out = Vec::new();
    while let Some(r) = rows.try_next().await.context("loading regions")? {
        let code: String = r.try_get(0)?;
        let bad = |what: String| anyhow!("region {code}: {what}");
        let level: String = r.try_get(2)?;
        let parent: Option<String> = r.try_get(3)?;
        let lat: Option<f64> = r.try_get(4)?;
        let lon: Option<f64> = r.try_get(5)?;
        let boundary: Option<String> = r.try_get(6)?;
        let boundary = match boundary {
            None => None,
            Some(b) => {
                let v = serde_json::from_str::<serde_json::Value>(&b)
                    .map_err(|e| bad(format!("boundary: {e}")))?;
                Some(geometry_shape(&v).map_err(|e| bad(format!("boundary: {e}")))?)
            }
        };
        out.push(Region {
            level: level_of(&level).ok_or_else(|| bad(format!("unknown level {level:?}")))?,
            name: r.try_get(1)?,
            parent: parent
                .map(|p| RegionCode::parse(&p).map_err(|e| bad(format!("parent: {e}"))))
                .transpose()?,
            centroid: lat.zip(lon),
            boundary,
            code: RegionCode::parse(&code).map_err(bad)?,
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

// TODO(issue 8): deliver/escalate.rs reads contacts with SQL of its own and this.
pub fn contact_of(r: &sqlx::any::AnyRow) -> Result<Contact> {
    contact_at(r, 0)
}

/// A contact read from [`CONTACT_COLUMNS`] starting at column `at`.
fn contact_at(r: &sqlx::any::AnyRow, at: usize) -> Result<Contact> {
    let key: String = r.try_get(at + 1)?;
    let bad = |what: String| anyhow!("contact {key}: {what}");
    let phone: Option<String> = r.try_get(at + 3)?;
    let region: String = r.try_get(at + 6)?;
    let channels: String = r.try_get(at + 9)?;
    Ok(Contact {
        id: r.try_get(at)?,
        name: r.try_get(at + 2)?,
        phone: phone
            .map(|p| Phone::stored(p.clone()).ok_or_else(|| bad(format!("phone {p:?} is not in E.164 form"))))
            .transpose()?,
        email: r.try_get(at + 4)?,
        role: r.try_get(at + 5)?,
        region: RegionCode::parse(&region).map_err(bad)?,
        backup: r.try_get(at + 7)?,
        superior: r.try_get(at + 8)?,
        channels: super::callout_row::channel_list(&channels).map_err(bad)?,
        key,
    })
}

pub async fn load_contacts(store: &Store) -> Result<Vec<Contact>> {
    let mut conn = store.conn().await?;
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts ORDER BY id");
    // Row by row, as `load_regions`.
    let mut rows = sqlx::query(&sql).fetch(&mut *conn);
    let mut out = Vec::new();
    while let Some(r) = rows.try_next().await.context("loading contacts")? {
        out.push(contact_of(&r)?);
    }
    Ok(out)
}

// TODO(issue 8): deliver/escalate.rs calls this with its transaction as a bare connection.
pub async fn contact_by_key(conn: &mut AnyConnection, key: &str) -> Result<Option<Contact>> {
    let row = sqlx::query(&format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE key = $1"))
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(contact_of).transpose()
}

/// The contacts with these keys, those that exist (a chunk of deadlines reads the backups and
/// superiors it may call in one query).
pub async fn contacts_by_keys(conn: &mut AnyConnection, keys: &[&str]) -> Result<Vec<Contact>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        let sql = format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE key IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for k in chunk {
            q = q.bind(*k);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.push(contact_of(&r)?);
        }
    }
    Ok(out)
}

/// The contacts holding `role` in exactly `region`.
pub async fn contacts_with_role(
    conn: &mut AnyConnection,
    role: &str,
    region: &RegionCode,
) -> Result<Vec<Contact>> {
    let rows = sqlx::query(&format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts WHERE role = $1 AND region_code = $2 ORDER BY id"
    ))
    .bind(role)
    .bind(region.as_str())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(contact_of).collect()
}

/// Everyone who has this number, as primary or any other of their phones.
pub async fn contacts_by_phone(conn: &mut AnyConnection, phone: &Phone) -> Result<Vec<Contact>> {
    let rows = sqlx::query(&format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts WHERE phone = $1 \
         OR key IN (SELECT contact_key FROM contact_phones WHERE phone = $1) ORDER BY id"
    ))
    .bind(phone.as_str())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(contact_of).collect()
}

/// Contacts (primary phone in `contacts.phone`), every phone in order, and the risk point a
/// row names as monitored. A contact's phone list is replaced by the sheet's.
async fn upsert_contact_rows(conn: &mut AnyConnection, rows: &[ContactRow], now: i64) -> Result<()> {
    for chunk in rows.chunks(1000) {
        let contacts: Vec<Contact> = chunk.iter().map(|r| r.contact.clone()).collect();
        upsert_contacts(conn, &contacts, now).await?;
        let keys: Vec<&str> = chunk.iter().map(|r| r.contact.key.as_str()).collect();
        delete_in(conn, "contact_phones", "contact_key", &keys).await?;
        let phones = chunk
            .iter()
            .flat_map(|r| {
                r.phones.iter().enumerate().map(|(i, p)| {
                    vec![
                        Val::from(r.contact.key.as_str()),
                        Val::from(p.as_str()),
                        Val::I(i as i64),
                    ]
                })
            })
            .collect();
        super::insert_rows(
            conn,
            "contact_phones",
            &["contact_key", "phone", "position"],
            phones,
        )
        .await?;
        let monitors = chunk
            .iter()
            .filter_map(|r| {
                let k = r.risk_point.as_deref()?;
                Some(vec![Val::from(k), Val::from(r.contact.key.as_str())])
            })
            .collect();
        super::insert_rows_with_suffix(
            conn,
            "risk_point_monitors",
            &["risk_point_key", "contact_key"],
            monitors,
            " ON CONFLICT DO NOTHING",
        )
        .await?;
    }
    Ok(())
}

async fn upsert_risk_points(conn: &mut AnyConnection, points: &[RiskPoint], now: i64) -> Result<()> {
    for chunk in points.chunks(1000) {
        let rows = chunk
            .iter()
            .map(|p| {
                vec![
                    Val::from(p.key.as_str()),
                    Val::from(p.kind.as_str()),
                    Val::from(p.name.as_str()),
                    Val::F(p.lat),
                    Val::F(p.lon),
                    Val::from(p.region.as_str()),
                    Val::I(p.people),
                    Val::I(now),
                ]
            })
            .collect();
        let cols = [
            "key",
            "kind",
            "name",
            "lat",
            "lon",
            "region_code",
            "people",
            "updated_at",
        ];
        insert_rows_upsert(conn, "risk_points", &cols, "key", &cols[1..], rows).await?;
        let listed: Vec<&RiskPoint> = chunk.iter().filter(|p| !p.monitors.is_empty()).collect();
        let keys: Vec<&str> = listed.iter().map(|p| p.key.as_str()).collect();
        delete_in(conn, "risk_point_monitors", "risk_point_key", &keys).await?;
        let monitors = listed
            .iter()
            .flat_map(|p| {
                p.monitors
                    .iter()
                    .map(|m| vec![Val::from(p.key.as_str()), Val::from(m.as_str())])
            })
            .collect();
        super::insert_rows(
            conn,
            "risk_point_monitors",
            &["risk_point_key", "contact_key"],
            monitors,
        )
        .await?;
    }
    Ok(())
}

async fn upsert_duty(conn: &mut AnyConnection, shifts: &[DutyShift], now: i64) -> Result<()> {
    for chunk in shifts.chunks(1000) {
        let rows = chunk
            .iter()
            .map(|d| {
                let (kind, cron, minutes, tz, from, to) = match &d.shift {
                    Shift::Cron { expr, minutes, tz } => {
                        ("cron", expr.as_str(), *minutes as i64, tz.as_str(), 0, 0)
                    }
                    Shift::Dates { from, to } => {
                        ("dates", "", 0, crate::target::roster::DEFAULT_TZ, *from, *to)
                    }
                };
                vec![
                    Val::from(d.role.as_str()),
                    Val::from(d.region.as_str()),
                    Val::from(d.contact_key.as_str()),
                    Val::from(kind),
                    Val::from(cron),
                    Val::I(minutes),
                    Val::from(tz),
                    Val::I(from),
                    Val::I(to),
                    Val::I(now),
                ]
            })
            .collect();
        insert_rows_upsert(
            conn,
            "duty_shifts",
            &[
                "role",
                "region_code",
                "contact_key",
                "kind",
                "cron",
                "minutes",
                "tz",
                "from_at",
                "to_at",
                "updated_at",
            ],
            "role, region_code, contact_key, cron, from_at",
            &["kind", "minutes", "tz", "to_at", "updated_at"],
            rows,
        )
        .await?;
    }
    Ok(())
}

/// `DELETE … WHERE column IN (…)`, at most 1000 values per statement.
async fn delete_in(conn: &mut AnyConnection, table: &str, column: &str, values: &[&str]) -> Result<()> {
    for chunk in values.chunks(1000) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("DELETE FROM {table} WHERE {column} IN ({})", marks.join(", "));
        let mut q = sqlx::query(&sql);
        for v in chunk {
            q = q.bind(*v);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// What is stored, for checking a sheet's references.
pub async fn known(store: &Store) -> Result<Known> {
    let mut conn = store.conn().await?;
    let regions: Vec<String> = sqlx::query_scalar("SELECT code FROM regions")
        .fetch_all(&mut *conn)
        .await?;
    let points = sqlx::query("SELECT key, region_code FROM risk_points")
        .fetch_all(&mut *conn)
        .await?;
    drop(conn);
    let mut risk_points = HashMap::new();
    for r in points {
        let key: String = r.try_get(0)?;
        let region: String = r.try_get(1)?;
        let region = RegionCode::parse(&region).map_err(|e| anyhow!("risk point {key}: {e}"))?;
        risk_points.insert(key, region);
    }
    Ok(Known {
        regions: regions.into_iter().collect(),
        contacts: contact_keys(store).await?,
        risk_points,
    })
}

/// Risk points with their monitors' contact keys.
pub async fn load_risk_points(store: &Store) -> Result<Vec<RiskPoint>> {
    let mut conn = store.conn().await?;
    let mut monitors: HashMap<String, Vec<String>> = HashMap::new();
    for r in sqlx::query(
        "SELECT risk_point_key, contact_key FROM risk_point_monitors ORDER BY risk_point_key, contact_key",
    )
    .fetch_all(&mut *conn)
    .await
    .context("loading risk point monitors")?
    {
        monitors.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
    }
    let rows =
        sqlx::query("SELECT id, key, kind, name, lat, lon, region_code, people FROM risk_points ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .context("loading risk points")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let region: String = r.try_get(6)?;
        let key: String = r.try_get(1)?;
        let region = RegionCode::parse(&region).map_err(|e| anyhow!("risk point {key}: {e}"))?;
        out.push(RiskPoint {
            id: r.try_get(0)?,
            monitors: monitors.remove(&key).unwrap_or_default(),
            key,
            kind: r.try_get(2)?,
            name: r.try_get(3)?,
            lat: r.try_get(4)?,
            lon: r.try_get(5)?,
            region,
            people: r.try_get(7)?,
        });
    }
    Ok(out)
}

/// Every duty line, in import order.
pub async fn load_duty(store: &Store) -> Result<Vec<DutyShift>> {
    load_duty_in(&mut *store.conn().await?).await
}

/// The duty shifts, read inside a unit of work.
pub async fn load_duty_in(conn: &mut AnyConnection) -> Result<Vec<DutyShift>> {
    let rows = sqlx::query(
        "SELECT role, region_code, contact_key, kind, cron, minutes, tz, from_at, to_at, id FROM duty_shifts ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .context("loading duty shifts")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get(9)?;
        let bad = |what: String| anyhow!("duty shift {id}: {what}");
        let region: String = r.try_get(1)?;
        let kind: String = r.try_get(3)?;
        let minutes: i64 = r.try_get(5)?;
        out.push(DutyShift {
            role: r.try_get(0)?,
            region: RegionCode::parse(&region).map_err(bad)?,
            contact_key: r.try_get(2)?,
            shift: match kind.as_str() {
                "cron" => Shift::Cron {
                    expr: r.try_get(4)?,
                    minutes: u32::try_from(minutes).map_err(|_| bad(format!("{minutes} minutes")))?,
                    tz: r.try_get(6)?,
                },
                "dates" => Shift::Dates {
                    from: r.try_get(7)?,
                    to: r.try_get(8)?,
                },
                other => return Err(bad(format!("unknown kind {other:?}"))),
            },
        });
    }
    Ok(out)
}

/// Regions, risk points, contacts and duty shifts as stored, with the matching index built.
/// Every change to the roster moves its version on, in the change's own transaction, so a
/// daemon holding the roster index in memory sees that another instance imported (issue 11 §6).
async fn bump_version(conn: &mut AnyConnection) -> Result<()> {
    sqlx::query("UPDATE roster_version SET version = version + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await
        .context("moving the roster version on")?;
    Ok(())
}

/// Refreshes PostgreSQL's planner statistics of the roster's tables after an import (SQLite's
/// planner keeps to its indexes without them). Autovacuum would analyze them within a minute
/// or so; until then a freshly imported roster looks empty to the planner, which then reads
/// all 10,000 contacts to find the 33 numbers of a group of replies (7.6 ms a group instead of
/// well under one: a reply flood right after an import ran at a quarter of its rate).
pub async fn refresh_statistics(store: &Store) -> Result<()> {
    if store.backend() != Backend::Postgres {
        return Ok(());
    }
    sqlx::query("ANALYZE regions, contacts, contact_phones, risk_points, risk_point_monitors, duty_shifts")
        .execute(&mut *store.conn().await?)
        .await
        .context("refreshing the roster's planner statistics")?;
    Ok(())
}

/// The roster's version now (one indexed row: cheap enough to read for every warning).
pub async fn version(store: &Store) -> Result<i64> {
    sqlx::query_scalar("SELECT version FROM roster_version WHERE id = 1")
        .fetch_one(&mut *store.conn().await?)
        .await
        .context("reading the roster version")
}

/// The snapshot with the version it was read at. The loads are several reads (on SQLite the
/// pool's one connection is taken by each in turn), so the version is read before and after:
/// equal means no import committed in between, and the snapshot is that version's.
pub async fn load_versioned(store: &Store) -> Result<(i64, Snapshot)> {
    loop {
        let before = version(store).await?;
        let snapshot = load_snapshot(store).await?;
        if version(store).await? == before {
            return Ok((before, snapshot));
        }
    }
}

pub async fn load_snapshot(store: &Store) -> Result<Snapshot> {
    let regions = load_regions(store).await?;
    let points = load_risk_points(store).await?;
    let contacts = load_contacts(store).await?;
    let shifts = load_duty(store).await?;
    Ok(Snapshot::new(Index::build(regions, points), contacts, shifts))
}

/// How many rows of each roster table are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub regions: i64,
    pub contacts: i64,
    pub risk_points: i64,
    pub duty_shifts: i64,
}

pub async fn sizes(store: &Store) -> Result<Sizes> {
    let mut conn = store.conn().await?;
    let mut n = [0i64; 4];
    for (i, table) in ["regions", "contacts", "risk_points", "duty_shifts"]
        .iter()
        .enumerate()
    {
        n[i] = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await?;
    }
    Ok(Sizes {
        regions: n[0],
        contacts: n[1],
        risk_points: n[2],
        duty_shifts: n[3],
    })
}
