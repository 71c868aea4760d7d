//! Console logins (issue 10 §1): success, a wrong password and an unknown name answered alike,
//! lockout after repeated failures, logout, an expired session, CSRF refused, no open
//! redirect; against SQLite and PostgreSQL. The helpers here (a browser-like client that keeps
//! no cookies of its own) are shared with `security.rs`.

use std::time::Duration;

use jiaoying::config::Role;

use crate::helpers::{spawn, Db, TestApp};

pub const PASSWORD: &str = "correct horse battery";

/// A client that follows no redirect, so a test sees each 303 and its cookies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn add_user(app: &TestApp, name: &str, role: Role) {
    jiaoying::tools::users::add(
        &app.core.store,
        name,
        role,
        PASSWORD.into(),
        "test",
        app.core.now(),
    )
    .await
    .unwrap();
}

/// `name=value` of cookie `name` among a response's `Set-Cookie` headers.
pub fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_string())
}

/// The login form's pre-session cookie and its hidden `_csrf`.
pub async fn login_form(app: &TestApp) -> (String, String) {
    let r = client().get(format!("{}/login", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = set_cookie(&r, "jy_login").expect("the login form sets its cookie");
    let body = r.text().await.unwrap();
    let csrf = body
        .split(r#"name="_csrf" value=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a _csrf field")
        .to_string();
    (cookie, csrf)
}

/// POSTs the login form; the response as it came (no redirect followed).
pub async fn post_login(app: &TestApp, name: &str, password: &str, next: &str) -> reqwest::Response {
    let (cookie, csrf) = login_form(app).await;
    client()
        .post(format!("{}/login", app.base))
        .header("cookie", cookie)
        .form(&[
            ("name", name),
            ("password", password),
            ("_csrf", &csrf),
            ("next", next),
        ])
        .send()
        .await
        .unwrap()
}

/// Logs in and returns the session cookie (`jy_session=…`) and its CSRF token.
pub async fn login(app: &TestApp, name: &str) -> (String, String) {
    let r = post_login(app, name, PASSWORD, "/").await;
    assert_eq!(r.status(), 303, "login of {name}");
    let cookie = set_cookie(&r, "jy_session").expect("a session cookie");
    let csrf = session_csrf(app, &cookie).await;
    (cookie, csrf)
}

/// The CSRF token of the session a cookie (`jy_session=…`) names, read from the database by
/// the cookie's SHA-256 (a console page would show it in its forms).
pub async fn session_csrf(app: &TestApp, cookie: &str) -> String {
    use sha2::Digest;
    let id = cookie.trim_start_matches("jy_session=");
    let id_hash = hex::encode(sha2::Sha256::digest(id.as_bytes()));
    sqlx::query_scalar::<_, String>("SELECT csrf FROM sessions WHERE id_hash = $1")
        .bind(id_hash)
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn logout(app: &TestApp, cookie: &str, csrf: &str) -> reqwest::Response {
    client()
        .post(format!("{}/logout", app.base))
        .header("cookie", cookie)
        .form(&[("_csrf", csrf)])
        .send()
        .await
        .unwrap()
}

async fn logins(db: Db) {
    let Some(app) = spawn(db, "").await else { return };
    add_user(&app, "zhang", Role::Operator).await;

    // A wrong password and an unknown name read the same.
    let wrong = post_login(&app, "zhang", "not the password", "/").await;
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "jy_session").is_none());
    let wrong = wrong.text().await.unwrap();
    let unknown = post_login(&app, "nobody", PASSWORD, "/").await;
    assert_eq!(unknown.status(), 401);
    let unknown = unknown.text().await.unwrap();
    assert!(wrong.contains("用户名或密码错误") && wrong.contains("Wrong name or password"));
    assert!(unknown.contains("用户名或密码错误"));

    // Success: a session cookie, HttpOnly and SameSite=Strict, and back to `next`.
    let ok = post_login(&app, "zhang", PASSWORD, "/incidents/1?tab=unreached").await;
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/incidents/1?tab=unreached");
    let raw = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("jy_session="))
        .unwrap();
    assert!(
        raw.contains("HttpOnly") && raw.contains("SameSite=Strict"),
        "{raw}"
    );
    assert!(!raw.contains("Secure"), "secure_cookies is off by default: {raw}");
    let cookie = set_cookie(&ok, "jy_session").unwrap();
    // Only the cookie's SHA-256 is stored.
    let id = cookie.trim_start_matches("jy_session=");
    assert_eq!(id.len(), 64);
    let stored = app
        .scalar(&format!("SELECT COUNT(*) FROM sessions WHERE id_hash = '{id}'"))
        .await;
    assert_eq!(stored, 0, "the raw session id is in the database");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM sessions").await, 1);

    // No open redirect: another host, scheme-relative or backslashed, goes to `/`.
    for next in ["https://evil.test/", "//evil.test/x", "/\\evil.test"] {
        let r = post_login(&app, "zhang", PASSWORD, next).await;
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/", "{next}");
    }

    // The login form itself refuses a post without its pre-session token, or with another.
    let (form_cookie, csrf) = login_form(&app).await;
    for (cookie, token) in [
        ("", csrf.as_str()),
        (form_cookie.as_str(), ""),
        (form_cookie.as_str(), "0000"),
    ] {
        let r = client()
            .post(format!("{}/login", app.base))
            .header("cookie", cookie)
            .form(&[("name", "zhang"), ("password", PASSWORD), ("_csrf", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "cookie {cookie:?} token {token:?}");
        assert!(set_cookie(&r, "jy_session").is_none());
    }

    // Logout needs the session's CSRF token.
    let csrf = session_csrf(&app, &cookie).await;
    assert_eq!(logout(&app, &cookie, "").await.status(), 403);
    assert_eq!(logout(&app, &cookie, "wrong").await.status(), 403);
    let before = app.scalar("SELECT COUNT(*) FROM sessions").await;
    let out = logout(&app, &cookie, &csrf).await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "/login");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM sessions").await, before - 1);
    // The cookie is dead now.
    assert_eq!(logout(&app, &cookie, &csrf).await.status(), 401);

    // A disabled user cannot log in, and their sessions end.
    let (cookie, csrf) = login(&app, "zhang").await;
    jiaoying::tools::users::disable(&app.core.store, "zhang", "test", app.core.now())
        .await
        .unwrap();
    assert_eq!(logout(&app, &cookie, &csrf).await.status(), 401);
    assert_eq!(post_login(&app, "zhang", PASSWORD, "/").await.status(), 401);
    let ledger = app
        .scalar("SELECT COUNT(*) FROM ledger WHERE subject = 'user:zhang' AND kind IN ('user.added', 'user.disabled')")
        .await;
    assert_eq!(ledger, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_sqlite() {
    logins(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_postgres() {
    logins(Db::Postgres).await;
}

async fn lockout_and_expiry(db: Db) {
    let Some(app) = spawn(
        db,
        "[console]\nlogin_attempts = 3\nlockout = \"10m\"\nsession_idle = \"1h\"",
    )
    .await
    else {
        return;
    };
    add_user(&app, "li", Role::Viewer).await;
    for _ in 0..2 {
        assert_eq!(post_login(&app, "li", "guess guess", "/").await.status(), 401);
    }
    // The third failure locks the name: even the right password is refused for a while.
    assert_eq!(post_login(&app, "li", "guess guess", "/").await.status(), 429);
    let r = post_login(&app, "li", PASSWORD, "/").await;
    assert_eq!(r.status(), 429);
    assert!(set_cookie(&r, "jy_session").is_none());
    assert!(r.text().await.unwrap().contains("失败次数过多"));
    // Unknown names are counted too, so a lock tells nothing of who exists.
    for _ in 0..3 {
        post_login(&app, "ghost", "guess guess", "/").await;
    }
    assert_eq!(post_login(&app, "ghost", "guess guess", "/").await.status(), 429);
    app.advance(Duration::from_secs(11 * 60));
    let (cookie, csrf) = login(&app, "li").await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM login_failures WHERE name = 'li'")
            .await,
        0
    );

    // Idle past `session_idle`: the session is over, by the daemon's clock.
    app.advance(Duration::from_secs(3600 + 1));
    let r = logout(&app, &cookie, &csrf).await;
    assert_eq!(r.status(), 401);
    let page = r.text().await.unwrap();
    assert!(page.contains("请先登录") && page.contains("log in"), "{page}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM sessions").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_and_expiry_sqlite() {
    lockout_and_expiry(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_and_expiry_postgres() {
    lockout_and_expiry(Db::Postgres).await;
}
