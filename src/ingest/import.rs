//! `jiaoying import KIND FILE`: check every row first (references against the file and the
//! database), then write them all in one transaction, or nothing (SPEC §3). Re-importing an
//! updated sheet upserts by natural key.

use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::{roster as db, Store, Tx};
use crate::target::roster::{self, sheet, Known, RowError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Regions,
    Boundaries,
    Contacts,
    RiskPoints,
    Rosters,
}

impl Kind {
    /// Also the XLSX sheet looked for before the first one.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Regions => "regions",
            Kind::Boundaries => "boundaries",
            Kind::Contacts => "contacts",
            Kind::RiskPoints => "risk-points",
            Kind::Rosters => "rosters",
        }
    }
}

#[derive(Debug)]
pub struct Imported {
    /// Good rows (written unless `written` is false).
    pub rows: usize,
    pub errors: Vec<RowError>,
    pub written: bool,
}

/// Rows written per statement batch; also the progress bar's step.
const CHUNK: usize = 1000;

pub async fn import(
    store: &Store,
    kind: Kind,
    path: &Path,
    dry_run: bool,
    skip_invalid: bool,
    now: i64,
) -> Result<Imported> {
    import_by(store, kind, path, dry_run, skip_invalid, now, "cli").await
}

/// As [`import`], naming who imports in the ledger entry (`roster.imported`) written with the
/// rows: the OS user for the command line, the officer for the console.
pub async fn import_by(
    store: &Store,
    kind: Kind,
    path: &Path,
    dry_run: bool,
    skip_invalid: bool,
    now: i64,
    who: &str,
) -> Result<Imported> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path.display().to_string();
    import_data(store, kind, &data, &file, dry_run, skip_invalid, now, who).await
}

/// As [`import_by`], with the file's bytes in hand (the console's upload); `file` names it in
/// the ledger entry.
#[allow(clippy::too_many_arguments)]
pub async fn import_data(
    store: &Store,
    kind: Kind,
    data: &[u8],
    file: &str,
    dry_run: bool,
    skip_invalid: bool,
    now: i64,
    who: &str,
) -> Result<Imported> {
    // Read before the transaction: SQLite has a single connection.
    let known = db::known(store).await?;
    let rows = match check(kind, data, &known) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Imported {
                rows: 0,
                errors: vec![e],
                written: false,
            })
        }
    };
    let (n, errors) = (rows.len(), rows.errors().to_vec());
    let written = !dry_run && (errors.is_empty() || skip_invalid);
    if written {
        let bar = progress(n, kind);
        let mut tx = store.begin().await?;
        rows.write(&mut tx, now, &bar).await?;
        tx.record(
            "roster.imported",
            format!("roster:{}", kind.name()),
            serde_json::json!({"by": who, "kind": kind.name(), "file": file,
                "rows": n, "skipped": errors.len()}),
            now,
        )
        .await?;
        tx.commit().await?;
        bar.finish_and_clear();
        // The rows are in: stale statistics only make later reads slower, so a failure warns.
        if let Err(e) = db::refresh_statistics(store).await {
            tracing::warn!(error = %format!("{e:#}"), "the roster is imported; refreshing the planner's statistics failed");
        }
    }
    Ok(Imported {
        rows: n,
        errors,
        written,
    })
}

/// Checked rows of one kind.
enum Rows {
    Regions(roster::Parsed<roster::Region>),
    Boundaries(roster::Parsed<(crate::domain::RegionCode, String, geo::MultiPolygon<f64>)>),
    Contacts(roster::Parsed<roster::ContactRow>),
    RiskPoints(roster::Parsed<roster::RiskPoint>),
    Rosters(roster::Parsed<roster::DutyShift>),
}

/// Pure: the file's rows checked against what is stored. Err: the file as a whole is bad.
fn check(kind: Kind, data: &[u8], known: &Known) -> Result<Rows, RowError> {
    if kind == Kind::Boundaries {
        let mut p = roster::parse_boundaries(data);
        let (rows, mut bad): (Vec<_>, Vec<_>) = std::mem::take(&mut p.rows)
            .into_iter()
            .enumerate()
            .partition(|(_, r)| known.regions.contains(r.0.as_str()));
        p.errors.extend(bad.drain(..).map(|(i, (code, ..))| RowError {
            line: i as u64 + 1,
            column: "properties.code".into(),
            reason: format!("region {code} is not in the roster (区划不存在): import regions first"),
        }));
        p.rows = rows.into_iter().map(|(_, r)| r).collect();
        p.errors.sort_by_key(|e| e.line);
        return Ok(Rows::Boundaries(p));
    }
    let s = sheet::read(data, kind.name())?;
    Ok(match kind {
        Kind::Regions => Rows::Regions(roster::parse_regions(&s)),
        Kind::Contacts => Rows::Contacts(roster::parse_contacts(&s, known)),
        Kind::RiskPoints => Rows::RiskPoints(roster::parse_risk_points(&s, known)),
        Kind::Rosters => Rows::Rosters(roster::parse_rosters(&s, known)),
        Kind::Boundaries => unreachable!("handled above"),
    })
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Regions(p) => p.rows.len(),
            Rows::Boundaries(p) => p.rows.len(),
            Rows::Contacts(p) => p.rows.len(),
            Rows::RiskPoints(p) => p.rows.len(),
            Rows::Rosters(p) => p.rows.len(),
        }
    }

    fn errors(&self) -> &[RowError] {
        match self {
            Rows::Regions(p) => &p.errors,
            Rows::Boundaries(p) => &p.errors,
            Rows::Contacts(p) => &p.errors,
            Rows::RiskPoints(p) => &p.errors,
            Rows::Rosters(p) => &p.errors,
        }
    }

    async fn write(&self, tx: &mut Tx, now: i64, bar: &ProgressBar) -> Result<()> {
        macro_rules! chunked {
            ($rows:expr, $write:ident) => {
                for chunk in $rows.chunks(CHUNK) {
                    tx.$write(chunk, now).await?;
                    bar.inc(chunk.len() as u64);
                }
            };
        }
        match self {
            Rows::Regions(p) => chunked!(p.rows, upsert_regions),
            Rows::Contacts(p) => chunked!(p.rows, upsert_contact_rows),
            Rows::RiskPoints(p) => chunked!(p.rows, upsert_risk_points),
            Rows::Rosters(p) => chunked!(p.rows, upsert_duty),
            Rows::Boundaries(p) => {
                for (code, geojson, _) in &p.rows {
                    tx.set_boundary(code, geojson, now).await?;
                    bar.inc(1);
                }
            }
        }
        Ok(())
    }
}

/// A bar on stderr for long files; indicatif draws nothing when stderr is not a terminal.
fn progress(rows: usize, kind: Kind) -> ProgressBar {
    if rows < 2 * CHUNK {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(rows as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} 行 rows") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("导入 importing {}", kind.name()));
    bar
}

/// The demo roster's files, in reference order; a missing optional file is skipped.
pub const DEMO_FILES: &[(Kind, &str, bool)] = &[
    (Kind::Regions, "regions.csv", true),
    (Kind::Boundaries, "boundaries.geojson", false),
    (Kind::Contacts, "contacts.csv", true),
    (Kind::RiskPoints, "risk_points.csv", false),
    (Kind::Rosters, "rosters.csv", false),
];

/// Imports a roster folder (the demo's layout), failing on any bad row.
pub async fn import_all(store: &Store, dir: &Path, now: i64) -> Result<()> {
    for &(kind, file, required) in DEMO_FILES {
        let path = dir.join(file);
        if !required && !path.exists() {
            continue;
        }
        let r = import(store, kind, &path, false, false, now).await?;
        if let Some(e) = r.errors.first() {
            bail!("{}: {e} ({} bad rows)", path.display(), r.errors.len());
        }
    }
    Ok(())
}
