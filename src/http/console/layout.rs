//! The frame of every console page: header with navigation, the officer, the language switch
//! and logout; the embedded stylesheet and script. It owns no data and no route logic.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::i18n::{Code, Lang, COOKIE};
use super::Officer;

pub const CSS: &str = include_str!("static/console.css");
pub const JS: &str = include_str!("static/console.js");

/// A whole page. `refresh`: seconds for the no-script reload (the board), none elsewhere.
pub fn page(lang: &Lang, officer: &Officer, title: &str, refresh: Option<u32>, body: Markup) -> Response {
    let other = match lang.code {
        Code::Zh => "en",
        Code::En => "zh",
    };
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t("app")) }
                @if let Some(s) = refresh {
                    noscript { meta http-equiv="refresh" content=(s); }
                }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                header {
                    a.app href="/" { (lang.t("app")) }
                    nav {
                        a href="/" { (lang.t("nav.board")) }
                        a href="/levels" { (lang.t("nav.levels")) }
                        a href="/roster" { (lang.t("nav.roster")) }
                    }
                    span.who { (officer.name) " (" (format!("{:?}", officer.role).to_lowercase()) ")" }
                    a #lang href={ (lang.path) "?lang=" (other) } { (lang.t("switch")) }
                    form method="post" action="/logout" {
                        (csrf(officer))
                        button type="submit" { (lang.t("nav.logout")) }
                    }
                }
                main { (body) }
                script src="/console/static/console.js" {}
            }
        }
    };
    respond(lang, markup.into_string())
}

/// The CSRF field every form carries.
pub fn csrf(officer: &Officer) -> Markup {
    PreEscaped(officer.csrf_field().to_string())
}

/// HTML with the language cookie set when `?lang=` chose it on this request.
pub fn respond(lang: &Lang, html: String) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    if lang.chosen {
        let v = format!(
            "{COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
            match lang.code {
                Code::Zh => "zh",
                Code::En => "en",
            }
        );
        if let Ok(v) = v.parse() {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    r
}

pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
}

pub async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        JS,
    )
}

/// Beijing wall time of a Unix-millisecond instant, for tables (`07-15 10:02:05`).
pub fn at(ms: i64) -> String {
    use chrono::TimeZone;
    let tz = chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    tz.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

pub fn at_opt(ms: Option<i64>) -> String {
    ms.map(at).unwrap_or_default()
}

/// The colour tag class of a warning colour.
pub fn colour_class(c: Option<crate::domain::Colour>) -> &'static str {
    match c.map(|c| c.as_str()) {
        Some("red") => "tag red",
        Some("orange") => "tag orange",
        Some("yellow") => "tag yellow",
        Some("blue") => "tag blue",
        _ => "tag",
    }
}
