//! `/roster`: regions, contacts, duty shifts and risk points, searchable (`?q=`) and paged;
//! the upload of the office's CSV/XLSX (or GeoJSON boundaries), checked and written by the
//! same importer as `jiaoying import`, with the same row-level errors.
//!
//! The roster is read whole through `store::roster` (thousands of rows, not millions) and
//! filtered here; no SQL of its own.

use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;

use super::i18n::Lang;
use super::layout::{csrf, page};
use super::{error_page, Officer, Page};
use crate::config::Role;
use crate::core::Core;
use crate::ingest::import::{self, Kind};
use crate::store::roster;
use crate::target::roster::{role_label, Shift};

const PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub struct RosterQuery {
    tab: Option<String>,
    q: Option<String>,
    page: Option<usize>,
}

const TABS: [(&str, &str); 4] = [
    ("contacts", "ros.contacts"),
    ("regions", "ros.regions"),
    ("duty", "ros.duty"),
    ("risk", "ros.risk"),
];

/// One table: its headers (keys) and rows of cells.
struct Table {
    heads: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn matches(cells: &[String], q: &str) -> bool {
    q.is_empty() || cells.iter().any(|c| c.to_lowercase().contains(q))
}

async fn table(core: &Core, tab: &str, q: &str) -> anyhow::Result<Table> {
    let q = q.trim().to_lowercase();
    let regions = roster::load_regions(&core.store).await?;
    let name = |code: &str| {
        regions
            .iter()
            .find(|r| r.code.as_str() == code)
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    let (heads, rows): (Vec<&'static str>, Vec<Vec<String>>) = match tab {
        "regions" => (
            vec!["col.code", "col.name", "col.level", "col.parent"],
            regions
                .iter()
                .map(|r| {
                    vec![
                        r.code.to_string(),
                        r.name.clone(),
                        r.level.as_str().to_string(),
                        r.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                    ]
                })
                .collect(),
        ),
        "duty" => (
            vec!["col.role", "col.region", "col.person", "col.shift"],
            roster::load_duty(&core.store)
                .await?
                .into_iter()
                .map(|d| {
                    let shift = match &d.shift {
                        Shift::Cron { expr, minutes, tz } => format!("{expr} +{minutes}min ({tz})"),
                        Shift::Dates { from, to } => {
                            format!("{} – {}", super::layout::at(*from), super::layout::at(*to))
                        }
                    };
                    vec![
                        role_label(&d.role).to_string(),
                        format!("{} {}", d.region, name(d.region.as_str())),
                        d.contact_key.clone(),
                        shift,
                    ]
                })
                .collect(),
        ),
        "risk" => (
            vec!["col.code", "col.name", "col.kind", "col.region", "col.people"],
            roster::load_risk_points(&core.store)
                .await?
                .into_iter()
                .map(|p| {
                    vec![
                        p.key.clone(),
                        p.name.clone(),
                        p.kind.clone(),
                        format!("{} {}", p.region, name(p.region.as_str())),
                        p.people.to_string(),
                    ]
                })
                .collect(),
        ),
        _ => (
            vec![
                "col.code",
                "col.person",
                "col.role",
                "col.region",
                "col.phone",
                "col.backup",
                "col.superior",
            ],
            roster::load_contacts(&core.store)
                .await?
                .into_iter()
                .map(|c| {
                    vec![
                        c.key.clone(),
                        c.name.clone(),
                        role_label(&c.role).to_string(),
                        format!("{} {}", c.region, name(c.region.as_str())),
                        c.phone
                            .as_ref()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default(),
                        c.backup.clone().unwrap_or_default(),
                        c.superior.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        ),
    };
    Ok(Table {
        heads,
        rows: rows.into_iter().filter(|r| matches(r, &q)).collect(),
    })
}

fn upload_form(lang: &Lang, officer: &Officer) -> Markup {
    html! {
        section.card #import {
            h2 { (lang.t("ros.import")) }
            form method="post" action="/roster/import" enctype="multipart/form-data" {
                (csrf(officer))
                label { (lang.t("ros.kind")) " "
                    select name="kind" {
                        option value="contacts" { (lang.t("ros.contacts")) }
                        option value="regions" { (lang.t("ros.regions")) }
                        option value="rosters" { (lang.t("ros.duty")) }
                        option value="risk-points" { (lang.t("ros.risk")) }
                        option value="boundaries" { (lang.t("ros.boundaries")) }
                    }
                }
                label { (lang.t("ros.file")) " " input type="file" name="file" accept=".csv,.xlsx,.geojson,.json" required; }
                label { input type="checkbox" name="dry_run" value="1"; " " (lang.t("ros.dry_run")) }
                button.primary type="submit" { (lang.t("ros.upload")) }
            }
        }
    }
}

pub async fn roster(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    Query(rq): Query<RosterQuery>,
) -> Page {
    officer.may(Role::Viewer)?;
    let tab = rq.tab.as_deref().unwrap_or("contacts");
    let tab = TABS.iter().find(|(t, _)| *t == tab).map_or("contacts", |t| t.0);
    let q = rq.q.clone().unwrap_or_default();
    let t = table(&core, tab, &q).await?;
    let pages = t.rows.len().div_ceil(PAGE).max(1);
    let n = rq.page.unwrap_or(1).clamp(1, pages);
    let link = |p: usize| {
        let q: String =
            percent_encoding::utf8_percent_encode(&q, percent_encoding::NON_ALPHANUMERIC).to_string();
        format!("/roster?tab={tab}&q={q}&page={p}")
    };
    let body = html! {
        h1 { (lang.t("ros.title")) }
        p.noprint { @for (k, key) in TABS {
            @if k == tab { strong { (lang.t(key)) } } @else { a href={ "/roster?tab=" (k) } { (lang.t(key)) } }
            " · "
        } }
        form.inline method="get" action="/roster" {
            input type="hidden" name="tab" value=(tab);
            input type="search" name="q" value=(q) placeholder=(lang.t("ros.search"));
            button type="submit" { (lang.t("ros.search")) }
            span.muted #found { (t.rows.len()) " " (lang.t("ros.found")) }
        }
        div.wrap { table.r #roster {
            thead { tr { @for h in &t.heads { th { (lang.t(h)) } } } }
            tbody { @for row in t.rows.iter().skip((n - 1) * PAGE).take(PAGE) {
                tr { @for (h, c) in t.heads.iter().zip(row) { td data-l=(lang.t(h)) { (c) } } }
            } }
        } }
        div.pager.noprint {
            @if n > 1 { a href=(link(n - 1)) { (lang.t("ros.prev")) } }
            span { (n) " / " (pages) " " (lang.t("ros.page")) }
            @if n < pages { a href=(link(n + 1)) #next { (lang.t("ros.next")) } }
        }
        @if officer.role.allows(Role::Operator) { (upload_form(&lang, &officer)) }
    };
    Ok(page(&lang, &officer, lang.t("ros.title"), None, body))
}

/// The upload: every row checked, then all written or none, as `jiaoying import` does.
pub async fn import_upload(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    form: Result<Multipart, MultipartRejection>,
) -> Page {
    officer.may(Role::Operator)?;
    // A body that is not a multipart form carries no CSRF token: refused as such (403), not
    // as malformed (400), so a forged post learns nothing more.
    let Ok(mut form) = form else {
        officer.check_csrf("")?; // an empty token never matches: this refuses
        return Ok(error_page(&lang, StatusCode::BAD_REQUEST, "err.bad", ""));
    };
    let (mut token, mut kind, mut data, mut dry_run) = (String::new(), None, None, false);
    while let Some(field) = form.next_field().await.map_err(|e| {
        super::Fail(error_page(
            &lang,
            StatusCode::BAD_REQUEST,
            "err.bad",
            &e.body_text(),
        ))
    })? {
        match field.name().unwrap_or_default() {
            "_csrf" => token = field.text().await.unwrap_or_default(),
            "kind" => kind = Some(field.text().await.unwrap_or_default()),
            "dry_run" => dry_run = true,
            "file" => {
                data = Some(field.bytes().await.map_err(|e| {
                    super::Fail(error_page(
                        &lang,
                        StatusCode::BAD_REQUEST,
                        "err.bad",
                        &e.body_text(),
                    ))
                })?)
            }
            _ => {}
        }
    }
    officer.check_csrf(&token)?;
    let kind = match kind.as_deref() {
        Some("regions") => Kind::Regions,
        Some("boundaries") => Kind::Boundaries,
        Some("rosters") => Kind::Rosters,
        Some("risk-points") => Kind::RiskPoints,
        _ => Kind::Contacts,
    };
    let Some(data) = data.filter(|d| !d.is_empty()) else {
        return Ok(error_page(
            &lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ros.no_file",
            "",
        ));
    };
    let done = import::import_data(
        &core.store,
        kind,
        &data,
        "(console upload)",
        dry_run,
        false,
        core.now(),
        &officer.name,
    )
    .await?;
    if done.written {
        tracing::info!(kind = kind.name(), rows = done.rows, actor = %officer.name, "roster imported from the console");
    }
    let status = if done.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let body = html! {
        h1 { (lang.t("ros.import")) }
        section.card #import-result {
            @if done.written { p.msg { (lang.t("ros.imported")) ": " (done.rows) " " (lang.t("ros.rows")) } }
            @else if done.errors.is_empty() { p.msg { (lang.t("ros.checked")) ": " (done.rows) " " (lang.t("ros.rows")) } }
            @else {
                p.msg.err { (lang.t("ros.refused")) " (" (done.errors.len()) ")" }
                div.wrap { table.r #import-errors {
                    thead { tr { th { (lang.t("col.line")) } th { (lang.t("col.column")) } th { (lang.t("col.reason")) } } }
                    tbody { @for e in &done.errors {
                        tr { td data-l=(lang.t("col.line")) { (e.line) } td data-l=(lang.t("col.column")) { (e.column) } td data-l=(lang.t("col.reason")) { (e.reason) } }
                    } }
                } }
            }
            p { a href="/roster" { (lang.t("back")) } }
        }
    };
    let mut r = page(&lang, &officer, lang.t("ros.import"), None, body);
    *r.status_mut() = status;
    Ok(r)
}
