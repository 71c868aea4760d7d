//! `/`: the live board. Active incidents, and per county → township the counts called,
//! delivered, answered, escalated, unreached and evacuated, with a bar where a glance beats
//! reading. `/board/events` pushes the board's body again whenever its numbers change (the
//! handler polls the store every two seconds: several instances may share one database, so
//! no in-process notification would see every change).
//!
//! Reads only, through `store::reports::load` (the same counts as the after-action report).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use maud::{html, Markup};

use super::i18n::Lang;
use super::layout::{at, colour_class, page};
use super::{Officer, Page};
use crate::config::Role;
use crate::core::Core;
use crate::domain::callout::State as St;
use crate::domain::{Callout, IncidentState, RegionCode};
use crate::record::report::RegionRow;
use crate::store::{incidents, reports};

/// Counts of one region (or one incident).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub called: usize,
    pub delivered: usize,
    pub answered: usize,
    pub escalated: usize,
    pub unreached: usize,
    pub evacuated: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub code: String,
    pub name: String,
    pub tally: Tally,
}

#[derive(Debug, Clone, PartialEq)]
pub struct County {
    pub row: Row,
    pub townships: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BoardIncident {
    pub id: i64,
    pub code: String,
    pub title: String,
    pub colour: Option<crate::domain::Colour>,
    pub drill: bool,
    pub created_at: i64,
    pub total: Tally,
    pub counties: Vec<County>,
}

/// A delivery receipt came, or an answer (which implies the message arrived).
fn delivered(c: &Callout) -> bool {
    c.delivered_at.is_some() || c.state == St::Acknowledged
}

fn tally(row: &RegionRow, delivered: usize) -> Row {
    Row {
        code: row.code.clone(),
        name: row.name.clone(),
        tally: Tally {
            called: row.counts.called,
            delivered,
            answered: row.counts.answered,
            escalated: row.counts.escalated,
            unreached: row.counts.unreached,
            evacuated: row.counts.evacuated,
        },
    }
}

/// Pure: the board's rows from an incident's report.
pub fn summarise<P>(r: &crate::record::report::Report<P>) -> BoardIncident {
    // Same grouping as the report: above county level a code is its own county, above
    // township its own township.
    let levels = |code: &RegionCode| {
        let county = code.county().unwrap_or_else(|| code.clone());
        let town = code.township().unwrap_or_else(|| county.clone());
        (county, town)
    };
    let mut by_county = std::collections::BTreeMap::<String, usize>::new();
    let mut by_town = std::collections::BTreeMap::<String, usize>::new();
    for c in r.callouts.iter().filter(|c| delivered(c)) {
        let (county, town) = levels(&c.region_code);
        *by_county.entry(county.to_string()).or_default() += 1;
        *by_town.entry(town.to_string()).or_default() += 1;
    }
    let county_of = |code: &str| {
        RegionCode::parse(code)
            .ok()
            .map(|c| levels(&c).0.to_string())
            .unwrap_or_default()
    };
    let counties = r
        .counties
        .iter()
        .map(|c| County {
            row: tally(c, by_county.get(&c.code).copied().unwrap_or(0)),
            townships: r
                .townships
                .iter()
                .filter(|t| county_of(&t.code) == c.code)
                .map(|t| tally(t, by_town.get(&t.code).copied().unwrap_or(0)))
                .collect(),
        })
        .collect();
    let t = &r.totals;
    BoardIncident {
        id: r.incident.id,
        code: r.incident.code.clone(),
        title: r.incident.title.clone(),
        colour: r.incident.colour,
        drill: r.incident.drill,
        created_at: r.incident.created_at,
        total: Tally {
            called: t.called,
            delivered: r.callouts.iter().filter(|c| delivered(c)).count(),
            answered: t.answered,
            escalated: t.escalated,
            unreached: t.unreached,
            evacuated: t.evacuated,
        },
        counties,
    }
}

/// Every active incident's board, newest first.
pub async fn load(core: &Core) -> anyhow::Result<Vec<BoardIncident>> {
    let mut out = Vec::new();
    for i in incidents::list(&core.store, 200).await? {
        if i.state != IncidentState::Active {
            continue;
        }
        if let Some(r) = reports::load(&core.store, i.id).await? {
            out.push(summarise(&r));
        }
    }
    Ok(out)
}

fn bar(t: &Tally) -> Markup {
    let pct = (t.answered * 100).checked_div(t.called).unwrap_or(0);
    html! {
        span.bar title={ (t.answered) "/" (t.called) } { span style={ "width:" (pct) "%" } {} }
        " " span.muted { (pct) "%" }
    }
}

fn cells(lang: &Lang, t: &Tally) -> Markup {
    html! {
        td.n data-l=(lang.t("col.called")) { (t.called) }
        td.n data-l=(lang.t("col.delivered")) { (t.delivered) }
        td.n data-l=(lang.t("col.answered")) { (t.answered) }
        td.n data-l=(lang.t("col.escalated")) { (t.escalated) }
        td.n.st-unreached[t.unreached > 0] data-l=(lang.t("col.unreached")) { (t.unreached) }
        td.n data-l=(lang.t("col.evacuated")) { (t.evacuated) }
        td data-l=(lang.t("col.rate")) { (bar(t)) }
    }
}

/// The part of the board the events replace.
pub fn body(lang: &Lang, board: &[BoardIncident]) -> Markup {
    html! {
        @if board.is_empty() {
            p.muted #no-incident { (lang.t("board.none")) }
        }
        @for b in board {
            section.card.incident data-incident=(b.id) {
                h2 {
                    span class=(colour_class(b.colour)) { (b.code) }
                    @if b.drill { " " span.tag.drill { (lang.t("inc.drill")) } }
                    " " a href={ "/incidents/" (b.id) } { (b.title) }
                    " " span.muted { (at(b.created_at)) }
                }
                div.wrap { table.r {
                    thead { tr {
                        th { (lang.t("col.region")) }
                        th.n { (lang.t("col.called")) } th.n { (lang.t("col.delivered")) }
                        th.n { (lang.t("col.answered")) } th.n { (lang.t("col.escalated")) }
                        th.n { (lang.t("col.unreached")) } th.n { (lang.t("col.evacuated")) }
                        th { (lang.t("col.rate")) }
                    } }
                    tbody {
                        @for c in &b.counties {
                            tr.county data-region=(c.row.code) {
                                td { (c.row.name) } (cells(lang, &c.row.tally))
                            }
                            @for t in &c.townships {
                                tr.town data-region=(t.code) {
                                    td {
                                        "　" (t.name)
                                        // The county's own officials, above any township.
                                        @if t.code == c.row.code { " " span.muted { (lang.t("board.county_level")) } }
                                    }
                                    (cells(lang, &t.tally))
                                }
                            }
                        }
                        tr.total data-region="total" {
                            td { strong { "∑" } } (cells(lang, &b.total))
                        }
                    }
                } }
            }
        }
    }
}

pub async fn board(State(core): State<Arc<Core>>, officer: Officer, lang: Lang) -> Page {
    officer.may(Role::Viewer)?;
    let data = load(&core).await?;
    let markup = html! {
        h1 { (lang.t("board.title")) " " span.muted.noprint { "· " (lang.t("board.live")) } }
        div #board { (body(&lang, &data)) }
    };
    Ok(page(&lang, &officer, lang.t("board.title"), Some(15), markup))
}

/// Server-sent events: `board` with the board's body, sent at once and then whenever it
/// changes.
pub async fn board_events(
    State(core): State<Arc<Core>>,
    officer: Officer,
    lang: Lang,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, super::Fail> {
    officer.may(Role::Viewer)?;
    let stream = futures::stream::unfold((core, lang, None::<String>), |(core, lang, last)| async move {
        let mut first = last.is_none();
        loop {
            if !first {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            first = false;
            let html = match load(&core).await {
                Ok(b) => body(&lang, &b).into_string(),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "board events: reading the store failed");
                    continue;
                }
            };
            if last.as_deref() != Some(html.as_str()) {
                let ev = Event::default().event("board").data(html.clone());
                return Some((Ok(ev), (core, lang, Some(html))));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
