//! Console sessions: who the officer at the browser is ([`Officer`], an axum extractor), what
//! their role lets them do, and the CSRF token every form of theirs must carry. Also the
//! password hashing the login and `jiaoying user` share (argon2, off the async runtime).
//!
//! A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie (`Secure` when
//! `console.secure_cookies`); the database keeps only its SHA-256, so a copy of the database
//! logs nobody in. It ends after `console.session_idle` unused or `console.session_max` after
//! the login, by `core.clock`. This module must not write SQL (that is `store::users`) nor
//! render console pages beyond the short refusal pages below.

use std::sync::Arc;

use anyhow::Result;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::constant_eq;
use crate::config::Role;
use crate::core::Core;
pub use crate::domain::password::{hash_password, password_problem, verify_password};
use crate::store::users;

/// The session cookie's name.
pub const COOKIE: &str = "jy_session";
/// A session's `last_seen` is written at most this often (ms): each console request would
/// otherwise be a write, and SQLite has one writer.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The officer logged in on this request.
#[derive(Debug, Clone)]
pub struct Officer {
    pub name: String,
    pub role: Role,
    /// This session's CSRF token, which every form posts back as `_csrf`.
    pub csrf: String,
}

// A refusal is a whole page a handler returns as it is (`officer.may(..)?`); boxing it would
// only move the allocation.
#[allow(clippy::result_large_err)]
impl Officer {
    /// Ok when this officer's role allows `needed`; else a 403 page.
    pub fn may(&self, needed: Role) -> Result<(), Response> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(page(
                StatusCode::FORBIDDEN,
                "无权操作",
                "Not allowed",
                &format!(
                    "您的角色（{}）不能执行此操作，需要 {}。<br>Your role ({}) may not do this; it needs {}.",
                    self.role.as_str(),
                    needed.as_str(),
                    self.role.as_str(),
                    needed.as_str()
                ),
            ))
        }
    }

    /// Ok when `presented` (a form's `_csrf`) is this session's token, compared in constant
    /// time; else a 403 page.
    pub fn check_csrf(&self, presented: &str) -> Result<(), Response> {
        if !self.csrf.is_empty() && constant_eq(self.csrf.as_bytes(), presented.as_bytes()) {
            Ok(())
        } else {
            Err(csrf_refused())
        }
    }

    /// The hidden field every form of this officer's carries.
    pub fn csrf_field(&self) -> String {
        format!(
            r#"<input type="hidden" name="_csrf" value="{}">"#,
            esc(&self.csrf)
        )
    }

    /// A logout button (a POST with the token: a link could be followed by another site).
    pub fn logout_form(&self) -> String {
        format!(
            r#"<form method="post" action="/logout" class="logout">{}<button type="submit">退出 Log out</button></form>"#,
            self.csrf_field()
        )
    }
}

impl FromRequestParts<Arc<Core>> for Officer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Self, Self::Rejection> {
        match current(core, &parts.headers).await {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Err(not_logged_in(parts)),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "reading the session");
                Err(page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "服务器内部错误",
                    "Internal error",
                    "已记录日志，请稍后重试。<br>Logged; try again shortly.",
                ))
            }
        }
    }
}

/// The officer of a live session named by the request's cookie, if any.
async fn current(core: &Core, headers: &HeaderMap) -> Result<Option<Officer>> {
    let Some(id) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    let id_hash = digest(&id);
    let Some(s) = users::session(&core.store, &id_hash).await? else {
        return Ok(None);
    };
    let now = core.now();
    let idle = core.settings.console.session_idle.as_millis() as i64;
    let live = !s.user.disabled && now < s.expires_at && now - s.last_seen < idle;
    if !live {
        users::delete_session(&core.store, &id_hash).await?;
        return Ok(None);
    }
    if now - s.last_seen >= TOUCH_EVERY_MS {
        users::touch_session(&core.store, &id_hash, now).await?;
    }
    Ok(Some(Officer {
        name: s.user.name,
        role: s.user.role,
        csrf: s.csrf,
    }))
}

/// No live session: a page load goes to the login and comes back; anything else is refused.
fn not_logged_in(parts: &Parts) -> Response {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |o| &o.0);
        let next = uri.path_and_query().map_or("/", |p| p.as_str());
        let to = format!("/login?next={}", url_encode(next));
        return (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    }
    page(
        StatusCode::UNAUTHORIZED,
        "请先登录",
        "Please log in",
        r#"登录已过期或尚未登录。<a href="/login">登录 Log in</a><br>Your session has ended or you are not logged in."#,
    )
}

pub(crate) fn csrf_refused() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "表单已失效",
        "Form expired",
        "表单校验码不符，请返回并刷新页面后重试。<br>The form's check token did not match; go back, reload the page and try again.",
    )
}

/// Starts a session for `user`: the row is written and the `Set-Cookie` value returned.
pub(crate) async fn open(core: &Core, user: &str) -> Result<String> {
    let id = random_token();
    let now = core.now();
    let max = core.settings.console.session_max;
    users::create_session(
        &core.store,
        &digest(&id),
        user,
        &random_token(),
        now,
        now + max.as_millis() as i64,
    )
    .await?;
    Ok(set_cookie(core, COOKIE, &id, "/", max.as_secs()))
}

/// Ends the session the request's cookie names (if any); returns the cookie that clears it.
pub(crate) async fn close(core: &Core, headers: &HeaderMap) -> Result<String> {
    if let Some(id) = cookie(headers, COOKIE) {
        users::delete_session(&core.store, &digest(&id)).await?;
    }
    Ok(set_cookie(core, COOKIE, "", "/", 0))
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Strict always, Secure when configured.
pub(crate) fn set_cookie(core: &Core, name: &str, value: &str, path: &str, max_age: u64) -> String {
    let secure = if core.settings.console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// The value of cookie `name` in the request, if present and not empty.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// 256 random bits, hex.
pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// A short page, Chinese first with English beside it.
pub(crate) fn page(status: StatusCode, zh: &str, en: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{zh} {en} · 叫应</title></head><body style=\"font-family:sans-serif;max-width:32em;margin:2em auto;padding:0 1em\">\
         <h1>{zh} <small lang=\"en\">{en}</small></h1><p>{body_html}</p></body></html>"
    );
    (status, Html(html)).into_response()
}

/// HTML-escapes text for an element or a quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; jy_session_x=2; jy_session=abc".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
        h.insert(header::COOKIE, "jy_session=".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), None);
    }

    #[test]
    fn csrf_is_compared_whole() {
        let o = Officer {
            name: "a".into(),
            role: Role::Viewer,
            csrf: "abcdef".into(),
        };
        assert!(o.check_csrf("abcdef").is_ok());
        for bad in ["", "abcde", "abcdefg", "ABCDEF"] {
            assert_eq!(o.check_csrf(bad).unwrap_err().status(), StatusCode::FORBIDDEN);
        }
        assert!(o.may(Role::Viewer).is_ok());
        assert_eq!(o.may(Role::Operator).unwrap_err().status(), StatusCode::FORBIDDEN);
        assert!(o.csrf_field().contains(r#"name="_csrf" value="abcdef""#));
    }

    #[test]
    fn passwords_too_short_or_empty_are_refused() {
        assert!(password_problem("   ").unwrap().contains("empty"));
        assert!(password_problem("short").unwrap().contains("too short"));
        assert!(password_problem("long enough pw").is_none());
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(Some(h.clone()), "correct horse".into()).await);
        assert!(!verify_password(Some(h), "wrong horse".into()).await);
        assert!(!verify_password(None, "not a password".into()).await);
    }
}
