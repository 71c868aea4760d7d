//! `/login` and `/logout`: the console's front door. The login form carries a pre-session
//! CSRF token (a cookie and a hidden field that must match: double submit), so another site
//! cannot log a browser in as someone else; `next` may only be a path of this site (no open
//! redirect). A wrong password and an unknown name get the same answer; after
//! `console.login_attempts` failures in a row a name is refused for `console.lockout`,
//! counted in the database (so every instance and a restart agree).
//!
//! Logins are logged (name and outcome, never the password); they are not operator actions
//! and are not in the ledger. This module must not write SQL (`store::users`) nor hash by
//! itself (`session`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::constant_eq;
use super::session::{self, esc, page, Officer};
use crate::core::Core;
use crate::store::users;

/// The pre-session cookie of the login form.
const LOGIN_COOKIE: &str = "jy_login";

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// `next` when it is a path of this site, else `/`: an absolute URL, `//host` (scheme-
/// relative) or `/\host` (which browsers read as `//host`) would send the officer elsewhere.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n
        }
        _ => "/",
    }
}

pub async fn form(State(core): State<Arc<Core>>, Query(q): Query<NextQuery>) -> Response {
    login_page(&core, StatusCode::OK, safe_next(q.next.as_deref()), "", None)
}

/// The form with a fresh pre-session token (cookie and field), and an optional message.
fn login_page(core: &Core, status: StatusCode, next: &str, name: &str, message: Option<&str>) -> Response {
    let token = session::random_token();
    let cookie = session::set_cookie(core, LOGIN_COOKIE, &token, "/login", 3600);
    let message = message.map_or(String::new(), |m| {
        format!("<p class=\"error\" role=\"alert\">{m}</p>")
    });
    let html = format!(
        r#"<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>登录 Log in · 叫应</title>
<style>body{{font-family:sans-serif;max-width:22em;margin:3em auto;padding:0 1em}}
label{{display:block;margin:.8em 0 .2em}}input{{width:100%;padding:.4em;box-sizing:border-box}}
button{{margin-top:1em;padding:.5em 1.5em}}.error{{color:#b00}}</style></head>
<body><h1>叫应 登录 <small lang="en">Log in</small></h1>{message}
<form method="post" action="/login">
<input type="hidden" name="_csrf" value="{token}">
<input type="hidden" name="next" value="{next}">
<label for="name">用户名 <span lang="en">Name</span></label>
<input id="name" name="name" autocomplete="username" required value="{name}">
<label for="password">密码 <span lang="en">Password</span></label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">登录 Log in</button>
</form></body></html>"#,
        next = esc(next),
        name = esc(name),
    );
    (status, [(header::SET_COOKIE, cookie)], Html(html)).into_response()
}

pub async fn submit(State(core): State<Arc<Core>>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let pre = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if pre.is_empty() || !constant_eq(pre.as_bytes(), f.csrf.as_bytes()) {
        tracing::warn!("login refused: the form's token does not match its cookie");
        return session::csrf_refused();
    }
    let next = safe_next(f.next.as_deref()).to_string();
    let name = f.name.trim().to_string();
    match attempt(&core, &name, f.password).await {
        Ok(Outcome::In(cookie)) => {
            tracing::info!(user = %name, "console login");
            let clear = session::set_cookie(&core, LOGIN_COOKIE, "", "/login", 0);
            let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
            let h = res.headers_mut();
            for c in [cookie, clear] {
                if let Ok(v) = c.parse() {
                    h.append(header::SET_COOKIE, v);
                }
            }
            res
        }
        Ok(Outcome::Wrong) => {
            tracing::warn!(user = %name, "console login failed: wrong name or password");
            login_page(
                &core,
                StatusCode::UNAUTHORIZED,
                &next,
                &name,
                Some("用户名或密码错误。<br>Wrong name or password."),
            )
        }
        Ok(Outcome::Locked(minutes)) => {
            tracing::warn!(user = %name, "console login refused: locked after repeated failures");
            login_page(
                &core,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                &name,
                Some(&format!(
                    "失败次数过多，请 {minutes} 分钟后再试。<br>Too many failed logins; try again in {minutes} minutes."
                )),
            )
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "console login");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "服务器内部错误",
                "Internal error",
                "已记录日志，请稍后重试。<br>Logged; try again shortly.",
            )
        }
    }
}

enum Outcome {
    /// Logged in: the session cookie.
    In(String),
    Wrong,
    /// Refused for this many more minutes.
    Locked(i64),
}

async fn attempt(core: &Core, name: &str, password: String) -> anyhow::Result<Outcome> {
    let now = core.now();
    let failures = users::failures(&core.store, name).await?;
    if failures.locked_until > now {
        return Ok(Outcome::Locked(
            (failures.locked_until - now).div_euclid(60_000) + 1,
        ));
    }
    let user = users::user(&core.store, name).await?.filter(|u| !u.disabled);
    // Console users are people; a stored feed or gateway role never logs in.
    let user = user.filter(|u| u.role.allows(crate::config::Role::Viewer));
    let hash = user.as_ref().map(|u| u.hash.clone());
    if session::verify_password(hash, password).await {
        users::clear_failures(&core.store, name).await?;
        return Ok(Outcome::In(session::open(core, name).await?));
    }
    let count = users::record_failure(&core.store, name, now).await?;
    let c = &core.settings.console;
    if count >= i64::from(c.login_attempts) {
        users::lock(&core.store, name, now + c.lockout.as_millis() as i64).await?;
        return Ok(Outcome::Locked(
            (c.lockout.as_millis() as i64).div_euclid(60_000).max(1),
        ));
    }
    Ok(Outcome::Wrong)
}

pub async fn logout(
    State(core): State<Arc<Core>>,
    officer: Officer,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = officer.check_csrf(&f.csrf) {
        return r;
    }
    match session::close(&core, &headers).await {
        Ok(cookie) => {
            tracing::info!(user = %officer.name, "console logout");
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/login".to_string()),
                    (header::SET_COOKIE, cookie),
                ],
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "console logout");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "服务器内部错误",
                "Internal error",
                "已记录日志，请稍后重试。<br>Logged; try again shortly.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_path_of_this_site_only() {
        for (given, want) in [
            (Some("/incidents/3?x=1"), "/incidents/3?x=1"),
            (Some("/"), "/"),
            (None, "/"),
            (Some("https://evil.test/"), "/"),
            (Some("//evil.test/"), "/"),
            (Some("/\\evil.test"), "/"),
            (Some("/a\\b"), "/"),
            (Some("/a\nSet-Cookie: x"), "/"),
            (Some("javascript:alert(1)"), "/"),
            (Some(""), "/"),
        ] {
            assert_eq!(safe_next(given), want, "{given:?}");
        }
    }
}
