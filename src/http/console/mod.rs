//! The duty officer's console (SPEC §6): server-rendered pages (maud) behind a login, Chinese
//! by default with an English switch, usable without JavaScript; the board alone updates
//! itself over server-sent events. Every page reads through `store` functions and every
//! action calls the same core function the API or the command line uses, with the officer as
//! the actor: the console adds no rule of its own and holds no SQL.
//!
//! One file per page (`board`, `incident`, `levels`, `roster`), the frame in `layout`, the
//! words in `i18n`, the region map in `map`.

// A refusal is a whole page (a `Response`) handed back as it is (`officer.may(..)?`), as
// `http::session` does; boxing it would only move the allocation.
#![allow(clippy::result_large_err)]

mod board;
mod i18n;
mod incident;
mod layout;
mod levels;
mod map;
mod roster;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

pub use board::{board, board_events};
pub use incident::{incident, record_call, report_download, standdown, standdown_confirm};
pub use layout::{css, js};
pub use levels::{activate, end_level, levels, preview_level};
pub use roster::{import_upload, roster};

pub(crate) use super::session::Officer;
pub use i18n::Lang;

/// A page that could not be shown: its answer, already made (an error page, a redirect to the
/// login, a 403).
pub struct Fail(pub Response);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Fail {
        tracing::error!(error = %format!("{e:#}"), "console page failed");
        Fail(error_page(
            &Lang::zh(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "err.internal",
            "",
        ))
    }
}

impl From<super::ApiError> for Fail {
    fn from(e: super::ApiError) -> Fail {
        Fail(e.into_response())
    }
}

pub type Page = Result<Response, Fail>;

/// A bare page for a refusal or a failure: the status, the sentence, a way back.
pub fn error_page(lang: &Lang, status: StatusCode, key: &'static str, detail: &str) -> Response {
    let body = html! {
        (maud::DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (lang.t("err.title")) }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body { main {
                h1 { (lang.t("err.title")) " (" (status.as_u16()) ")" }
                p.msg.err { (lang.t(key)) @if !detail.is_empty() { " " (detail) } }
                p { a href="/" { (lang.t("back")) } }
            } }
        }
    };
    (status, layout::respond(lang, body.into_string())).into_response()
}

/// After a form post: back to a page (303, so a reload does not post again).
pub fn see(to: String) -> Response {
    Redirect::to(&to).into_response()
}

impl From<Response> for Fail {
    fn from(r: Response) -> Fail {
        Fail(r)
    }
}
