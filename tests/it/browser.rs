//! The console in a real browser (issue 10 §5): headless Chromium driven through chromedriver
//! (started here on a free port) with fantoccini, against the daemon in-process on SQLite and
//! PostgreSQL. Log in; post a warning and watch the board fill in; record a phone call for an
//! unreached person and see the database change; activate and end a response level; download
//! the XLSX report; and the refusals: a wrong password, a form without its CSRF token, a
//! viewer trying an operator action. On failure a screenshot is written under
//! `target/browser-screenshots/`.
//!
//! Without chromedriver the tests say so and pass, unless `CI=true`: then they fail.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// A chromedriver of this test's own, ended when dropped.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver, or None (with the reason printed) when it is not installed outside CI.
pub fn chromedriver() -> Option<Driver> {
    let found = Command::new("chromedriver")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true and chromedriver is not installed (apt-get install chromium chromium-driver)");
        }
        eprintln!(
            "SKIPPED browser test: chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Bounded wait for it to listen.
    let until = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "chromedriver did not listen within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(driver)
}

/// A headless Chromium session (as root in CI: no sandbox; a laptop-sized window).
pub async fn browser(driver: &Driver, width: u32, height: u32) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            format!("--window-size={width},{height}"), "--lang=zh-CN"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

/// Saves what the browser shows now as `DIR/NAME.png`.
pub async fn screenshot(c: &Client, dir: &std::path::Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    match c.screenshot().await {
        Ok(png) => std::fs::write(&path, png).unwrap(),
        Err(e) => eprintln!("no screenshot {name}: {e}"),
    }
    path
}

/// Waits (bounded) until `check` holds on the page, polling; the error names what it waited for.
pub async fn wait_until<F, Fut>(what: &str, secs: u64, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) | Err(_) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(150)).await
            }
            Ok(false) => anyhow::bail!("waited {secs} s for {what}"),
            Err(e) => anyhow::bail!("waited {secs} s for {what}: {e}"),
        }
    }
}

pub async fn text_of(c: &Client, css: &str) -> anyhow::Result<String> {
    Ok(c.find(Locator::Css(css)).await?.text().await?)
}

use jiaoying::config::Role;

use crate::helpers::{self, Db, TestApp, FEED, OPERATOR};

/// The session cookie (or stand-in) of a browser, for the downloads and the forged posts the
/// browser cannot make by itself.
async fn cookie_header(c: &Client) -> anyhow::Result<String> {
    Ok(c.get_all_cookies()
        .await?
        .iter()
        .map(|k| format!("{}={}", k.name(), k.value()))
        .collect::<Vec<_>>()
        .join("; "))
}

const PASSWORD: &str = "correct horse battery";

/// Types a name and password into the login page and submits it.
async fn submit_login(c: &Client, app: &TestApp, name: &str, password: &str) -> anyhow::Result<()> {
    c.goto(&format!("{}/login", app.base)).await?;
    c.find(Locator::Css("input[name=name]"))
        .await?
        .send_keys(name)
        .await?;
    c.find(Locator::Css("input[name=password]"))
        .await?
        .send_keys(password)
        .await?;
    c.find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    Ok(())
}

/// Logs in through the login page as `name` (an operator or a viewer made by the test).
async fn login(c: &Client, app: &TestApp, name: &str) -> anyhow::Result<()> {
    submit_login(c, app, name, PASSWORD).await?;
    wait_until("the board after login", 10, || async {
        Ok(c.find(Locator::Css("#board")).await.is_ok())
    })
    .await
}

async fn count_cells(c: &Client, css: &str) -> anyhow::Result<i64> {
    Ok(text_of(c, css).await?.trim().parse().unwrap_or(-1))
}

/// The whole operator's night, step by step; an Err names the step that failed.
async fn night(c: &Client, app: &TestApp, shots: Option<&std::path::Path>) -> anyhow::Result<()> {
    for (name, role) in [("duty", Role::Operator), ("watch", Role::Viewer)] {
        jiaoying::tools::users::add(
            &app.core.store,
            name,
            role,
            PASSWORD.into(),
            "test",
            app.core.now(),
        )
        .await?;
    }
    // A wrong password opens nothing.
    submit_login(c, app, "duty", "not the password").await?;
    wait_until("the login refused", 10, || async {
        Ok(c.find(Locator::Css("p.error")).await.is_ok())
    })
    .await?;
    c.goto(&format!("{}/", app.base)).await?;
    anyhow::ensure!(
        c.current_url().await?.path() == "/login",
        "no session after a wrong password: {}",
        c.current_url().await?
    );
    login(c, app, "duty").await?;
    anyhow::ensure!(
        c.find(Locator::Css("#no-incident")).await.is_ok(),
        "the board starts empty"
    );

    // A warning arrives through the API; the open board fills in by itself (events).
    let (status, v) = app.post_cap(&helpers::demo_cap(), FEED).await;
    anyhow::ensure!(status == 202, "warning accepted: {status} {v}");
    let incident = v["incidents"][0]["id"]
        .as_i64()
        .or_else(|| v["incident"].as_i64())
        .unwrap_or(1);
    wait_until("the board to show the incident and its call-outs", 30, || async {
        Ok(c.find(Locator::Css("#board[data-updated] section.incident"))
            .await
            .is_ok()
            && count_cells(c, "tr.total td:nth-child(2)").await? > 0)
    })
    .await?;
    let called_db = app.scalar("SELECT COUNT(*) FROM callouts").await;
    wait_until("the board's total to match the database", 30, || async {
        Ok(count_cells(c, "tr.total td:nth-child(2)").await? == called_db)
    })
    .await?;
    anyhow::ensure!(
        c.find(Locator::Css("tr.town .bar")).await.is_ok(),
        "a bar per township"
    );
    if let Some(dir) = shots {
        // For the README's picture: two in three answer (through the API), and the board
        // shows it by itself.
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM callouts ORDER BY id")
            .fetch_all(app.db())
            .await?;
        for id in ids.iter().filter(|i| *i % 3 != 0) {
            app.http
                .post(format!("{}/api/v1/callouts/{id}/ack", app.base))
                .bearer_auth(OPERATOR)
                .json(&serde_json::json!({}))
                .send()
                .await?;
        }
        let answered = app
            .scalar("SELECT COUNT(*) FROM callouts WHERE state = 'acknowledged'")
            .await;
        wait_until("the answers on the board", 30, || async {
            Ok(count_cells(c, "tr.total td:nth-child(4)").await? == answered)
        })
        .await?;
        screenshot(c, dir, "board").await;
    }

    // One person is out of reach; the operator phones them and records it.
    // (One the README's screenshot run leaves unanswered: see above.)
    let cid = app.scalar("SELECT MIN(id) FROM callouts WHERE id % 3 = 0").await;
    app.execute(&format!(
        "UPDATE callouts SET state = 'unreached' WHERE id = {cid}"
    ))
    .await;
    c.goto(&format!("{}/incidents/{incident}", app.base)).await?;
    let row = format!("#unreached tr[data-callout='{cid}']");
    let phone = text_of(c, &format!("{row} a[href^='tel:']")).await?;
    anyhow::ensure!(
        phone.starts_with('+') && !phone.contains('*'),
        "a full number to dial: {phone}"
    );
    anyhow::ensure!(
        c.find(Locator::Css("svg.map path.county")).await.is_ok(),
        "the map"
    );
    anyhow::ensure!(
        c.find(Locator::Css("svg.map .area")).await.is_ok(),
        "the warning's area"
    );
    if let Some(dir) = shots {
        // Tall enough for the warning, the map and the first people not reached.
        c.set_window_size(1280, 1700).await?;
        screenshot(c, dir, "incident").await;
        c.set_window_size(1280, 900).await?;
    }
    c.find(Locator::Css(&format!(
        "{row} select[name=result] option[value=moved]"
    )))
    .await?
    .click()
    .await?;
    c.find(Locator::Css(&format!("{row} input[name=moved]")))
        .await?
        .send_keys("12")
        .await?;
    c.find(Locator::Css(&format!("{row} button[type=submit]")))
        .await?
        .click()
        .await?;
    wait_until("the recorded message", 10, || async {
        Ok(c.find(Locator::Css("#msg")).await.is_ok())
    })
    .await?;
    let state: String = sqlx::query_scalar(&format!("SELECT state FROM callouts WHERE id = {cid}"))
        .fetch_one(app.db())
        .await?;
    anyhow::ensure!(state == "acknowledged", "the call-out is answered: {state}");
    let moved = app
        .scalar(&format!(
            "SELECT CAST(COALESCE(SUM(moved), 0) AS BIGINT) FROM evacuations WHERE callout_id = {cid}"
        ))
        .await;
    anyhow::ensure!(moved == 12, "12 people moved: {moved}");
    let ledger = app
        .scalar(
            "SELECT COUNT(*) FROM ledger WHERE kind = 'ack.recorded' AND body LIKE '%\"actor\":\"duty\"%'",
        )
        .await;
    anyhow::ensure!(ledger > 0, "the ledger names the operator");

    // The XLSX report: the page's own link, fetched with the browser's session.
    let href = c
        .find(Locator::Css("#downloads a[href$='format=xlsx']"))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    let href = if href.starts_with("http") {
        href
    } else {
        format!("{}{href}", app.base)
    };
    let r = app
        .http
        .get(&href)
        .header("cookie", cookie_header(c).await?)
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "report download: {}", r.status());
    let ct = r.headers()["content-type"].to_str()?.to_string();
    anyhow::ensure!(
        ct == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "{ct}"
    );
    let bytes = r.bytes().await?;
    anyhow::ensure!(bytes.starts_with(b"PK"), "a zip");
    use calamine::Reader;
    let wb: calamine::Xlsx<_> = calamine::Xlsx::new(std::io::Cursor::new(bytes.to_vec()))?;
    let names = wb.sheet_names();
    for want in ["概况", "乡镇应答率", "未叫应人员", "转移人数"] {
        anyhow::ensure!(names.iter().any(|n| n == want), "sheet {want} in {names:?}");
    }

    // A response level: preview who it calls, confirm, then end it.
    let before = app.scalar("SELECT COUNT(*) FROM responses").await;
    c.goto(&format!("{}/levels", app.base)).await?;
    c.find(Locator::Css("#level-form input[name=regions]"))
        .await?
        .send_keys("450921")
        .await?;
    c.find(Locator::Css("#preview")).await?.click().await?;
    wait_until("the preview", 10, || async {
        Ok(c.find(Locator::Css("#level-preview")).await.is_ok())
    })
    .await?;
    anyhow::ensure!(
        app.scalar("SELECT COUNT(*) FROM responses").await == before,
        "the preview writes nothing"
    );
    c.find(Locator::Css("#confirm")).await?.click().await?;
    wait_until("the active level", 10, || async {
        Ok(c.find(Locator::Css("#active-levels tr[data-response]"))
            .await
            .is_ok())
    })
    .await?;
    anyhow::ensure!(
        app.scalar("SELECT COUNT(*) FROM responses").await == before + 1,
        "activated"
    );
    c.find(Locator::Css("#active-levels tr[data-response] button.danger"))
        .await?
        .click()
        .await?;
    wait_until("no active level", 10, || async {
        Ok(c.find(Locator::Css("#no-level")).await.is_ok())
    })
    .await?;
    anyhow::ensure!(
        app.scalar("SELECT COUNT(*) FROM responses WHERE ended_at IS NULL")
            .await
            == 0,
        "ended"
    );

    // A form without its CSRF token is refused, and changes nothing.
    c.goto(&format!("{}/levels", app.base)).await?;
    c.execute(
        "document.querySelector('#level-form input[name=_csrf]').remove()",
        vec![],
    )
    .await?;
    c.find(Locator::Css("#level-form input[name=regions]"))
        .await?
        .send_keys("450921")
        .await?;
    c.find(Locator::Css("#preview")).await?.click().await?;
    wait_until("the refusal", 10, || async {
        Ok(c.source().await?.contains("表单已失效") && c.find(Locator::Css("#level-preview")).await.is_err())
    })
    .await?;

    // A viewer sees the pages but may not act.
    c.delete_all_cookies().await?;
    login(c, app, "watch").await?;
    c.goto(&format!("{}/levels", app.base)).await?;
    anyhow::ensure!(
        c.find(Locator::Css("#level-form")).await.is_err(),
        "no form for a viewer"
    );
    let cookies = cookie_header(c).await?;
    let page = c.source().await?;
    let token = page
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string();
    let r = app
        .http
        .post(format!("{}/levels", app.base))
        .header("cookie", &cookies)
        .form(&[
            ("_csrf", token.as_str()),
            ("hazard", "flood"),
            ("level", "IV"),
            ("regions", "450921"),
        ])
        .send()
        .await?;
    anyhow::ensure!(r.status() == 403, "a viewer activating a level: {}", r.status());
    anyhow::ensure!(
        app.scalar("SELECT COUNT(*) FROM responses").await == before + 1,
        "nothing activated"
    );
    Ok(())
}

async fn run(db: Db) {
    let Some(driver) = chromedriver() else { return };
    let Some(app) = helpers::spawn(db, "").await else {
        return;
    };
    let c = browser(&driver, 1280, 900).await;
    // JIAOYING_SCREENSHOTS=DIR: also keep the board and incident pages (the README's).
    let shots = std::env::var("JIAOYING_SCREENSHOTS").ok().map(PathBuf::from);
    let result = night(&c, &app, shots.as_deref()).await;
    if let Err(e) = &result {
        let path = screenshot(&c, &screenshot_dir(), &format!("night-{db:?}")).await;
        let _ = c.close().await;
        panic!("{e:#} (screenshot: {})", path.display());
    }
    c.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_night_sqlite() {
    run(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_night_postgres() {
    run(Db::Postgres).await;
}
