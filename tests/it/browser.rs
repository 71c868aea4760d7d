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
        eprintln!("SKIPPED browser test: chromedriver is not installed (apt-get install chromium chromium-driver)");
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
            Ok(false) | Err(_) if Instant::now() < until => tokio::time::sleep(Duration::from_millis(150)).await,
            Ok(false) => anyhow::bail!("waited {secs} s for {what}"),
            Err(e) => anyhow::bail!("waited {secs} s for {what}: {e}"),
        }
    }
}

pub async fn text_of(c: &Client, css: &str) -> anyhow::Result<String> {
    Ok(c.find(Locator::Css(css)).await?.text().await?)
}
