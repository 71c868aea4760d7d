//! `jiaoying import KIND FILE`: check every row first, then write them all in one
//! transaction, or nothing (SPEC §3). Re-importing an updated sheet upserts by natural key.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::roster::{self, RowError};
use crate::store::{now_ms, roster as db, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Regions,
    Contacts,
    Boundaries,
}

#[derive(Debug)]
pub struct Imported {
    pub rows: usize,
    pub errors: Vec<RowError>,
    pub written: bool,
}

pub async fn import(
    store: &Store,
    kind: Kind,
    path: &Path,
    dry_run: bool,
    skip_invalid: bool,
) -> Result<Imported> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let now = now_ms();
    // Read before the transaction: SQLite has a single connection.
    let known = match kind {
        Kind::Contacts => db::contact_keys(&store.pool).await?,
        _ => Default::default(),
    };
    let mut tx = store.begin().await?;
    let (rows, errors) = match kind {
        Kind::Regions => {
            let p = roster::parse_regions(&data);
            let n = p.rows.len();
            if write(&p.errors, dry_run, skip_invalid) {
                db::upsert_regions(&mut tx, &p.rows, now).await?;
            }
            (n, p.errors)
        }
        Kind::Contacts => {
            let p = roster::parse_contacts(&data, &known);
            let n = p.rows.len();
            if write(&p.errors, dry_run, skip_invalid) {
                db::upsert_contacts(&mut tx, &p.rows, now).await?;
            }
            (n, p.errors)
        }
        Kind::Boundaries => {
            let mut p = roster::parse_boundaries(&data);
            let n = p.rows.len();
            if write(&p.errors, dry_run, skip_invalid) {
                for (i, (code, geojson, _)) in p.rows.iter().enumerate() {
                    if !db::set_boundary(&mut tx, code, geojson, now).await? {
                        p.errors.push(RowError {
                            line: i as u64 + 1,
                            column: "properties.code".into(),
                            reason: format!("region {code} is not in the roster: import regions first"),
                        });
                    }
                }
            }
            (n, p.errors)
        }
    };
    let written = write(&errors, dry_run, skip_invalid);
    if written {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(Imported {
        rows,
        errors,
        written,
    })
}

fn write(errors: &[RowError], dry_run: bool, skip_invalid: bool) -> bool {
    !dry_run && (errors.is_empty() || skip_invalid)
}

/// Imports the three demo files, failing on any bad row.
pub async fn import_all(store: &Store, dir: &Path) -> Result<()> {
    for (kind, file) in [
        (Kind::Regions, "regions.csv"),
        (Kind::Boundaries, "boundaries.geojson"),
        (Kind::Contacts, "contacts.csv"),
    ] {
        let r = import(store, kind, &dir.join(file), false, false).await?;
        if !r.errors.is_empty() {
            bail!("{}: {}", dir.join(file).display(), r.errors[0]);
        }
    }
    Ok(())
}
