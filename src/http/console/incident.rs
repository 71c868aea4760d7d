//! `/incidents/{id}`: the warning's text and area, every call-out with its ladder steps and
//! times, the people not reached with their full numbers (an operator dials them: the page is
//! behind the login) and a form to record the result of that call, stand-down behind a
//! confirmation, and the report downloads.
//!
//! Actions go to the store functions the API's ack and evacuation use (`Tx::acknowledge` with
//! the operator as actor, `Tx::record_evacuation`) and to `deliver::standdown`, with the
//! officer as the actor; the page computes nothing itself.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::i18n::Lang;
use super::layout::{at, at_opt, colour_class, csrf, page};
use super::{error_page, map, see, Officer, Page};
use crate::cap::{Alert, Circle};
use crate::config::{Policy, Role};
use crate::core::Core;
use crate::deliver::standdown;
use crate::domain::{AckMethod, Callout, IncidentState};
use crate::record::export;
use crate::record::report::Report;
use crate::store::answers::{Ack, Evacuation};
use crate::store::{reports, roster, warnings};

/// The warning's text and shapes, when the incident came from one.
#[derive(Default)]
pub struct WarningView {
    pub headline: String,
    pub description: String,
    pub instruction: String,
    pub polygons: Vec<Vec<(f64, f64)>>,
    pub circles: Vec<Circle>,
}

pub fn state_key(s: crate::domain::State) -> &'static str {
    use crate::domain::State::*;
    match s {
        Planned => "state.planned",
        Sending => "state.sending",
        Sent => "state.sent",
        Delivered => "state.delivered",
        Acknowledged => "state.acknowledged",
        Failed => "state.failed",
        Escalated => "state.escalated",
        Cancelled => "state.cancelled",
        Unreached => "state.unreached",
    }
}

fn warning_view(w: Option<warnings::WarningRow>, r: &Report<Policy>) -> WarningView {
    let alert: Option<Alert> = w
        .and_then(|w| w.parsed)
        .and_then(|p| serde_json::from_value(p).ok());
    let info = alert.as_ref().and_then(|a| a.preferred_info());
    let mut v = WarningView {
        headline: info
            .and_then(|i| i.headline.clone())
            .unwrap_or_else(|| r.incident.title.clone()),
        description: info
            .and_then(|i| i.description.clone())
            .unwrap_or_else(|| r.incident.description.clone()),
        instruction: info
            .and_then(|i| i.instruction.clone())
            .unwrap_or_else(|| r.incident.instruction.clone()),
        ..WarningView::default()
    };
    for a in info.map(|i| i.areas.as_slice()).unwrap_or_default() {
        v.polygons.extend(a.polygons.iter().cloned());
        v.circles.extend(a.circles.iter().copied());
    }
    v
}

/// The ladder of one call-out: its step and, for an escalation, the call-out it followed.
fn ladder(c: &Callout) -> String {
    match c.parent_id {
        Some(p) => format!("{} ← #{p}", c.rung),
        None => c.rung.to_string(),
    }
}

pub fn render(
    lang: &Lang,
    officer: &Officer,
    r: &Report<Policy>,
    w: &WarningView,
    svg: Markup,
    msg: Option<&str>,
) -> Markup {
    let i = &r.incident;
    let operator = officer.role.allows(Role::Operator);
    html! {
        @if let Some(m) = msg { p.msg #msg { (m) } }
        h1 {
            span class=(colour_class(i.colour)) { (i.code) } " "
            @if i.drill { span.tag.drill { (lang.t("inc.drill")) } " " }
            (i.title) " "
            span.tag #incident-state { @if i.state == IncidentState::Closed { (lang.t("inc.closed")) } @else { (lang.t("inc.active")) } }
        }
        section.card {
            h2 { (lang.t("inc.warning")) }
            p { strong { (w.headline) } }
            p { span.muted { (lang.t("inc.description")) "：" } (w.description) }
            p { span.muted { (lang.t("inc.instruction")) "：" } (w.instruction) }
            p.noprint #downloads {
                (lang.t("inc.download")) "："
                @for f in ["html", "csv", "xlsx", "json"] {
                    " " a href={ "/incidents/" (i.id) "/report?format=" (f) } download { (f.to_uppercase()) }
                }
            }
            @if operator && i.state == IncidentState::Active {
                p.noprint { a href={ "/incidents/" (i.id) "/standdown" } { button.danger type="button" { (lang.t("inc.standdown")) } } }
            }
        }
        section.card {
            h2 { (lang.t("inc.map")) }
            (svg)
        }
        section.card #unreached {
            h2 { (lang.t("inc.unreached")) " (" (r.unreached.len()) ")" }
            @if r.unreached.is_empty() { p.muted { (lang.t("inc.none_unreached")) } }
            @else {
                div.wrap { table.r {
                    thead { tr {
                        th { (lang.t("col.person")) } th { (lang.t("col.role")) } th { (lang.t("col.place")) }
                        th { (lang.t("col.phone")) } th { (lang.t("col.state")) }
                        @if operator { th { (lang.t("col.result")) } }
                    } }
                    tbody { @for p in &r.unreached {
                        tr data-callout=(p.callout_id) {
                            td data-l=(lang.t("col.person")) { (p.name) }
                            td data-l=(lang.t("col.role")) { (crate::target::roster::role_label(&p.role)) }
                            td data-l=(lang.t("col.place")) { (p.place) }
                            td data-l=(lang.t("col.phone")) { @if let Some(ph) = &p.phone { a href={ "tel:" (ph) } { (ph) } } }
                            td data-l=(lang.t("col.state")) class={ "st-" (p.state.as_str()) } { (lang.t(state_key(p.state))) }
                            @if operator { td data-l=(lang.t("col.result")) {
                                form.inline method="post" action={ "/incidents/" (i.id) "/calls" } {
                                    (csrf(officer))
                                    input type="hidden" name="callout_id" value=(p.callout_id);
                                    select name="result" {
                                        option value="reached" { (lang.t("inc.reached")) }
                                        option value="not_reached" { (lang.t("inc.not_reached")) }
                                        option value="moved" { (lang.t("inc.moved")) }
                                    }
                                    input type="number" name="moved" min="0" max="10000000" placeholder=(lang.t("inc.moved")) style="width:7rem";
                                    button.primary type="submit" { (lang.t("inc.record")) }
                                }
                            } }
                        }
                    } }
                } }
            }
        }
        section.card #callouts {
            h2 { (lang.t("inc.callouts")) " (" (r.callouts.len()) ")" }
            div.wrap { table.r {
                thead { tr {
                    th { (lang.t("col.id")) } th { (lang.t("col.person")) } th { (lang.t("col.role")) }
                    th { (lang.t("col.place")) } th { (lang.t("col.rung")) } th { (lang.t("col.state")) }
                    th { (lang.t("col.created")) } th { (lang.t("col.sent")) } th { (lang.t("col.delivered_at")) }
                    th { (lang.t("col.acked")) } th { (lang.t("col.deadline")) }
                } }
                tbody { @for c in &r.callouts {
                    tr data-callout=(c.id) {
                        td data-l=(lang.t("col.id")) { (c.id) }
                        td data-l=(lang.t("col.person")) { (c.contact_name) }
                        td data-l=(lang.t("col.role")) { (crate::target::roster::role_label(&c.role)) }
                        td data-l=(lang.t("col.place")) { (c.place) }
                        td data-l=(lang.t("col.rung")) title=(c.reason) { (ladder(c)) }
                        td data-l=(lang.t("col.state")) class={ "st-" (c.state.as_str()) } { (lang.t(state_key(c.state))) }
                        td data-l=(lang.t("col.created")) { (at(c.created_at)) }
                        td data-l=(lang.t("col.sent")) { (at_opt(c.sent_at)) }
                        td data-l=(lang.t("col.delivered_at")) { (at_opt(c.delivered_at)) }
                        td data-l=(lang.t("col.acked")) { (at_opt(c.acked_at)) }
                        td data-l=(lang.t("col.deadline")) { (at(c.deadline_at)) }
                    }
                } }
            } }
        }
    }
}

#[derive(Deserialize)]
pub struct Shown {
    done: Option<String>,
}

async fn load(core: &Core, id: i64) -> anyhow::Result<Option<(Report<Policy>, WarningView, Markup)>> {
    let Some(r) = reports::load(&core.store, id).await? else {
        return Ok(None);
    };
    let w = match r.incident.warning_id {
        Some(wid) => warnings::get(&core.store, wid).await?,
        None => None,
    };
    let view = warning_view(w, &r);
    let regions = roster::load_regions(&core.store).await?;
    let hit: BTreeSet<_> = r.callouts.iter().map(|c| c.region_code.clone()).collect();
    let svg = map::map(&regions, &hit, &view.polygons, &view.circles);
    Ok(Some((r, view, svg)))
}

pub async fn incident(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    Path(id): Path<i64>,
    Query(q): Query<Shown>,
) -> Page {
    officer.may(Role::Viewer)?;
    let Some((r, view, svg)) = load(&core, id).await? else {
        return Ok(error_page(&lang, StatusCode::NOT_FOUND, "inc.no_such", ""));
    };
    let msg = q.done.is_some().then(|| lang.t("inc.recorded"));
    let body = render(&lang, &officer, &r, &view, svg, msg);
    Ok(page(&lang, &officer, &r.incident.code, None, body))
}

#[derive(Deserialize)]
pub struct CallForm {
    // Every field defaults, so that a form missing one still reaches the role and CSRF
    // checks (403) instead of being refused as malformed first (422).
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    callout_id: i64,
    #[serde(default)]
    result: String,
    #[serde(default)]
    moved: String,
}

/// "Record the result of my call": reached (an operator answer), not reached (kept in the
/// ledger: the office must see that somebody tried), or reached and N people moved (the
/// answer and the count in one unit of work, as the answer page does).
pub async fn record_call(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    Path(id): Path<i64>,
    Form(f): Form<CallForm>,
) -> Page {
    officer.may(Role::Operator)?;
    officer.check_csrf(&f._csrf)?;
    let who = officer.name.clone();
    let mut tx = core.store.begin().await?;
    let Some(c) = tx.callout(f.callout_id).await?.filter(|c| c.incident_id == id) else {
        tx.rollback().await?;
        return Ok(error_page(&lang, StatusCode::NOT_FOUND, "inc.no_callout", ""));
    };
    let now = core.now();
    match f.result.as_str() {
        "reached" | "moved" => {
            let moved = if f.result == "moved" {
                match f.moved.trim().parse::<i64>() {
                    Ok(n) if (0..=10_000_000).contains(&n) => Some(n),
                    _ => {
                        tx.rollback().await?;
                        return Ok(error_page(
                            &lang,
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "inc.bad_moved",
                            "",
                        ));
                    }
                }
            } else {
                None
            };
            let ack = Ack {
                method: AckMethod::Operator,
                note: Some("console: phoned"),
                actor: Some(&who),
                inbound_id: None,
            };
            tx.acknowledge(c.id, &ack, now).await?;
            if let Some(moved) = moved {
                let reporter = format!("operator:{who}:{}", c.region_code);
                let e = Evacuation {
                    incident_id: id,
                    callout_id: Some(c.id),
                    reporter: &reporter,
                    region_code: &c.region_code,
                    moved,
                    threatened: None,
                    method: AckMethod::Operator.as_str(),
                };
                tx.record_evacuation(&e, now).await?;
            }
        }
        _ => {
            tx.record(
                "callout.phoned",
                format!("callout:{}", c.id),
                serde_json::json!({"incident": id, "result": "not_reached", "actor": who}),
                now,
            )
            .await?;
        }
    }
    tx.commit().await?;
    // Dispatch may hold a deadline for this call-out: let it look again.
    core.wake.notify_waiters();
    Ok(see(format!("/incidents/{id}?done=1")))
}

pub async fn standdown_confirm(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    Path(id): Path<i64>,
) -> Page {
    officer.may(Role::Operator)?;
    let Some(r) = reports::load(&core.store, id).await? else {
        return Ok(error_page(&lang, StatusCode::NOT_FOUND, "inc.no_such", ""));
    };
    let body = html! {
        h1 { (lang.t("inc.standdown")) " · " (r.incident.code) " " (r.incident.title) }
        section.card {
            p.msg.err { (lang.t("inc.standdown_confirm")) }
            form.inline method="post" action={ "/incidents/" (id) "/standdown" } {
                (csrf(&officer))
                button.danger type="submit" #confirm { (lang.t("inc.confirm")) }
                " " a href={ "/incidents/" (id) } { (lang.t("inc.cancel")) }
            }
        }
    };
    Ok(page(&lang, &officer, lang.t("inc.standdown"), None, body))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    _csrf: String,
}

pub async fn standdown(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Page {
    officer.may(Role::Operator)?;
    officer.check_csrf(&f._csrf)?;
    if standdown::stand_down(&core, id, &format!("console:{}", officer.name))
        .await?
        .is_none()
    {
        return Ok(error_page(&lang, StatusCode::NOT_FOUND, "inc.no_such", ""));
    }
    Ok(see(format!("/incidents/{id}")))
}

#[derive(Deserialize)]
pub struct Format {
    format: Option<String>,
}

/// The after-action report as a download (the console's own, session-authenticated route;
/// the rendering is `record::export`'s, the same as the API's), in the console's language.
pub async fn report_download(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    Path(id): Path<i64>,
    Query(q): Query<Format>,
) -> Page {
    officer.may(Role::Viewer)?;
    let format: export::Format = match q.format.as_deref().unwrap_or("html").parse() {
        Ok(f) => f,
        Err(e) => {
            return Ok(error_page(
                &lang,
                StatusCode::BAD_REQUEST,
                "err.bad",
                &format!("{e}"),
            ))
        }
    };
    let Some(r) = reports::load(&core.store, id).await? else {
        return Ok(error_page(&lang, StatusCode::NOT_FOUND, "inc.no_such", ""));
    };
    let mut options = export::Options::new(core.now());
    if lang.code == super::i18n::Code::En {
        options.lang = export::Lang::En;
    }
    let out = export::render(&r, format, &options)?;
    // A page opens in the browser; a sheet is saved.
    let disposition = if format.is_binary() || matches!(format, export::Format::Csv) {
        "attachment"
    } else {
        "inline"
    };
    use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
    Ok((
        [
            (CONTENT_TYPE, out.content_type.to_string()),
            (
                CONTENT_DISPOSITION,
                format!("{disposition}; filename=\"{}\"", out.filename),
            ),
        ],
        out.bytes,
    )
        .into_response())
}
