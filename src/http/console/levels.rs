//! `/levels`: response levels (应急响应). The active ones and the past; a form to activate one
//! (hazard, level I–IV, regions) that first shows who it will call (`respond::plan_activation`,
//! nothing written) and only then offers the confirm button; ending a level.
//!
//! Activation and ending are `respond::submit` / `respond::end`, the same as the API and
//! `jiaoying respond`, with `console:NAME` as the actor.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::i18n::Lang;
use super::layout::{at, at_opt, csrf, page};
use super::{error_page, see, Officer, Page};
use crate::config::Role;
use crate::core::Core;
use crate::respond::{self, RespondError};
use crate::store::{responses, roster};

const HAZARDS: [(&str, &str); 4] = [
    ("flood", "hz.flood"),
    ("typhoon", "hz.typhoon"),
    ("drought", "hz.drought"),
    ("geohazard", "hz.geohazard"),
];

#[derive(Deserialize, Default, Clone)]
pub struct LevelForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    hazard: String,
    #[serde(default)]
    level: String,
    #[serde(default)]
    regions: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    note: String,
}

impl LevelForm {
    fn request(&self) -> respond::Request {
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        respond::Request {
            hazard: opt(&self.hazard),
            level: opt(&self.level),
            regions: self
                .regions
                .split(|c: char| c == ',' || c == '，' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            until: opt(&self.until),
            note: opt(&self.note),
            end: None,
        }
    }
}

fn form(lang: &Lang, officer: &Officer, f: &LevelForm, action: &str, confirm: bool) -> Markup {
    html! {
        form method="post" action=(action) #level-form {
            (csrf(officer))
            @if confirm {
                input type="hidden" name="hazard" value=(f.hazard);
                input type="hidden" name="level" value=(f.level);
                input type="hidden" name="regions" value=(f.regions);
                input type="hidden" name="until" value=(f.until);
                input type="hidden" name="note" value=(f.note);
                button.danger type="submit" #confirm { (lang.t("lvl.confirm")) }
                " " a href="/levels" { (lang.t("inc.cancel")) }
            } @else {
                p {
                    label { (lang.t("col.hazard")) " "
                        select name="hazard" { @for (k, key) in HAZARDS { option value=(k) selected[f.hazard == k] { (lang.t(key)) } } }
                    }
                    label { (lang.t("col.level")) " "
                        select name="level" { @for l in ["I", "II", "III", "IV"] { option value=(l) selected[f.level == l] { (l) } } }
                    }
                }
                p { label { (lang.t("col.regions")) " " input type="text" name="regions" value=(f.regions) required size="40" placeholder=(lang.t("lvl.regions_hint")); } }
                p {
                    label { (lang.t("lvl.until")) " " input type="text" name="until" value=(f.until) size="12"; }
                    label { (lang.t("lvl.note")) " " input type="text" name="note" value=(f.note) size="30"; }
                }
                button.primary type="submit" #preview { (lang.t("lvl.preview")) }
            }
        }
    }
}

pub async fn levels(State(core): State<Arc<Core>>, officer: Officer, lang: Lang) -> Page {
    officer.may(Role::Viewer)?;
    let now = core.now();
    let list = responses::list(&core.store, 200).await?;
    let (active, past): (Vec<_>, Vec<_>) = list.into_iter().partition(|r| r.is_active(now));
    let operator = officer.role.allows(Role::Operator);
    let table = |rows: &[respond::Response], end: bool| {
        html! {
            div.wrap { table.r {
                thead { tr {
                    th { (lang.t("col.id")) } th { (lang.t("col.level")) } th { (lang.t("col.regions")) }
                    th { (lang.t("col.started")) } th { (lang.t("col.until")) } th { (lang.t("col.actor")) }
                    th { (lang.t("col.incident")) } @if end { th {} }
                } }
                tbody { @for r in rows {
                    tr data-response=(r.id) {
                        td data-l=(lang.t("col.id")) { (r.id) }
                        td data-l=(lang.t("col.level")) { (respond::title(&r.hazard, r.level)) }
                        td data-l=(lang.t("col.regions")) { (r.regions.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")) }
                        td data-l=(lang.t("col.started")) { (at(r.started_at)) }
                        td data-l=(lang.t("col.until")) { (at_opt(r.ended_at.or(r.until_at))) }
                        td data-l=(lang.t("col.actor")) { (r.actor) }
                        td data-l=(lang.t("col.incident")) { @if let Some(i) = r.incident_id { a href={ "/incidents/" (i) } { "#" (i) } } }
                        @if end { td { @if operator {
                            form.inline method="post" action={ "/levels/" (r.id) "/end" } {
                                (csrf(&officer))
                                button.danger type="submit" { (lang.t("lvl.end")) }
                            }
                        } } }
                    }
                } }
            } }
        }
    };
    let body = html! {
        h1 { (lang.t("lvl.title")) }
        section.card #active-levels {
            h2 { (lang.t("lvl.active")) }
            @if active.is_empty() { p.muted #no-level { (lang.t("lvl.none")) } } @else { (table(&active, true)) }
        }
        @if operator {
            section.card {
                h2 { (lang.t("lvl.new")) }
                (form(&lang, &officer, &LevelForm { hazard: "flood".into(), level: "IV".into(), ..LevelForm::default() }, "/levels/preview", false))
            }
        }
        @if !past.is_empty() {
            section.card { h2 { (lang.t("lvl.past")) } (table(&past, false)) }
        }
    };
    Ok(page(&lang, &officer, lang.t("lvl.title"), None, body))
}

fn invalid(lang: &Lang, e: RespondError) -> Result<axum::response::Response, super::Fail> {
    match e {
        RespondError::Invalid(e) => Ok(error_page(
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            "err.bad",
            &e.to_string(),
        )),
        RespondError::NotFound(id) => Ok(error_page(
            lang,
            StatusCode::NOT_FOUND,
            "err.bad",
            &id.to_string(),
        )),
        RespondError::Internal(e) => Err(e.into()),
    }
}

/// Who the activation would call, and the confirm button; nothing is written.
pub async fn preview_level(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    Form(f): Form<LevelForm>,
) -> Page {
    officer.may(Role::Operator)?;
    officer.check_csrf(&f._csrf)?;
    let plan = match respond::plan_activation(&core, &f.request()).await {
        Ok(p) => p,
        Err(e) => return invalid(&lang, e),
    };
    let contacts = roster::load_contacts(&core.store).await?;
    let names: HashMap<i64, &str> = contacts.iter().map(|c| (c.id, c.name.as_str())).collect();
    let body = html! {
        h1 { (plan.title) }
        section.card #level-preview {
            @if plan.planned.is_empty() {
                h2 { (lang.t("lvl.nobody")) }
                @if let Some(n) = &plan.note { p.muted { (n) } }
            } @else {
                h2 { (lang.t("lvl.will_call")) " (" span #preview-count { (plan.planned.len()) } ")" }
                @if let Some(p) = &plan.policy { p.muted { (lang.t("lvl.policy")) "：" (p.name) } }
                div.wrap { table.r {
                    thead { tr { th { (lang.t("col.person")) } th { (lang.t("col.role")) } th { (lang.t("col.place")) } } }
                    tbody { @for p in &plan.planned {
                        tr {
                            td data-l=(lang.t("col.person")) { (names.get(&p.contact_id).copied().unwrap_or(&p.contact_key)) }
                            td data-l=(lang.t("col.role")) { (crate::target::roster::role_label(&p.role)) }
                            td data-l=(lang.t("col.place")) { (p.place) }
                        }
                    } }
                } }
            }
            (form(&lang, &officer, &f, "/levels", true))
        }
    };
    Ok(page(&lang, &officer, lang.t("lvl.new"), None, body))
}

pub async fn activate(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    Form(f): Form<LevelForm>,
) -> Page {
    officer.may(Role::Operator)?;
    officer.check_csrf(&f._csrf)?;
    match respond::submit(&core, &f.request(), &format!("console:{}", officer.name)).await {
        Ok(_) => Ok(see("/levels".into())),
        Err(e) => invalid(&lang, e),
    }
}

#[derive(Deserialize)]
pub struct EndForm {
    #[serde(default)]
    _csrf: String,
}

pub async fn end_level(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
    Path(id): Path<i64>,
    Form(f): Form<EndForm>,
) -> Page {
    officer.may(Role::Operator)?;
    officer.check_csrf(&f._csrf)?;
    match respond::end(&core, id, &format!("console:{}", officer.name)).await {
        Ok(_) => Ok(see("/levels".into())),
        Err(e) => invalid(&lang, e),
    }
}
