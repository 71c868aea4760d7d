//! Feed polling over real HTTP: a small server on loopback serves an Atom index and CAP files,
//! counts requests and honours ETag; the daemon polls it (`poll_once` for determinism, the
//! cron loop once) and ingests what is new.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jiaoying::core::{Core, Overrides};
use jiaoying::ingest::feed::poll_once;

use crate::helpers::{demo_cap, spawn, Db, TestApp, VIEWER};

/// Never fires during a test: polls are started by `poll_once`.
const NEVER: &str = "0 0 0 1 1 * 2099";
const KEY_ENV: &str = "JIAOYING_TEST_FEED_KEY";
const KEY: &str = "feed-key-0123";

#[derive(Default)]
struct Served {
    /// Index entries as (id, embedded CAP or link path).
    entries: Vec<(String, Entry)>,
    caps: HashMap<String, Vec<u8>>,
    /// Requests per path, and the X-Api-Key each carried.
    hits: HashMap<String, usize>,
    keys: Vec<Option<String>>,
    /// Index version: the ETag, changed whenever `entries` changes.
    version: usize,
    /// Serve the index without an ETag (servers that keep no validators).
    no_etag: bool,
    /// `/redirect/NAME` answers 302 to this location.
    redirects: HashMap<String, String>,
}

enum Entry {
    Link(String),
    Embedded(Vec<u8>),
}

#[derive(Clone, Default)]
struct Server(Arc<Mutex<Served>>);

impl Server {
    async fn start() -> (Server, String) {
        let s = Server::default();
        let app = Router::new()
            .route("/index.atom", get(index))
            .route("/cap/{name}", get(cap))
            .route("/fail", get(fail))
            .route("/redirect/{name}", get(redirect))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .with_state(s.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (s, base)
    }

    /// Adds an entry linking to a new CAP file (the demo warning with a new identifier).
    fn add_link(&self, id: &str) {
        let mut s = self.0.lock().unwrap();
        s.caps.insert(format!("{id}.xml"), demo_cap());
        s.entries.push((id.into(), Entry::Link(format!("cap/{id}.xml"))));
        s.version += 1;
    }

    fn add_embedded(&self, id: &str) {
        let cap = String::from_utf8(demo_cap()).unwrap();
        let alert = &cap[cap.find("<alert").unwrap()..];
        let mut s = self.0.lock().unwrap();
        s.entries
            .push((id.into(), Entry::Embedded(alert.as_bytes().to_vec())));
        s.version += 1;
    }

    fn hits(&self, path: &str) -> usize {
        self.0.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }
}

fn count(s: &Server, path: &str, headers: &HeaderMap) {
    let mut s = s.0.lock().unwrap();
    *s.hits.entry(path.to_string()).or_default() += 1;
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.keys.push(key);
}

async fn index(State(srv): State<Server>, headers: HeaderMap) -> Response {
    count(&srv, "/index.atom", &headers);
    let s = srv.0.lock().unwrap();
    let etag = format!("\"v{}\"", s.version);
    if !s.no_etag && headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom"><id>t</id>"#,
    );
    for (id, e) in &s.entries {
        match e {
            Entry::Link(href) => xml.push_str(&format!(
                r#"<entry><id>{id}</id><link rel="alternate" type="application/cap+xml" href="{href}"/></entry>"#
            )),
            Entry::Embedded(alert) => xml.push_str(&format!(
                "<entry><id>{id}</id><content type=\"text/xml\">{}</content></entry>",
                String::from_utf8_lossy(alert)
            )),
        }
    }
    xml.push_str("</feed>");
    if s.no_etag {
        return ([("content-type", "application/atom+xml")], xml).into_response();
    }
    (
        [("etag", etag), ("content-type", "application/atom+xml".into())],
        xml,
    )
        .into_response()
}

async fn fail(State(srv): State<Server>, headers: HeaderMap) -> StatusCode {
    count(&srv, "/fail", &headers);
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn cap(State(srv): State<Server>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    count(&srv, &format!("/cap/{name}"), &headers);
    match srv.0.lock().unwrap().caps.get(&name) {
        Some(b) => ([("content-type", "application/cap+xml")], b.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn redirect(State(srv): State<Server>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    count(&srv, &format!("/redirect/{name}"), &headers);
    match srv.0.lock().unwrap().redirects.get(&name) {
        Some(to) => (StatusCode::FOUND, [("location", to.clone())]).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn feed_toml(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[feed]]\nname = \"{name}\"\nurl = \"{url}\"\nkind = \"{}\"\ntimeout = \"500ms\"\nretries = 1\nbackoff = [\"20ms\"]\n{extra}\n",
        if url.contains("/cap/") { "cap" } else { "index" }
    )
}

async fn feed_warnings(app: &TestApp, name: &str) -> i64 {
    app.scalar(&format!(
        "SELECT COUNT(*) FROM warnings WHERE source = 'feed:{name}'"
    ))
    .await
}

async fn poll_index(db: Db) {
    std::env::set_var(KEY_ENV, KEY);
    let (srv, base) = Server::start().await;
    srv.add_link("a1");
    srv.add_link("a2");
    let auth = format!("schedule = \"{NEVER}\"\nauth_header = \"X-Api-Key\"\nauth_env = \"{KEY_ENV}\"");
    let Some(app) = spawn(db, &feed_toml("cma", &format!("{base}/index.atom"), &auth)).await else {
        return;
    };

    let p = poll_once(&app.core, "cma").await.unwrap();
    assert_eq!((p.not_modified, p.fetched, p.ingested), (false, 2, 2));
    assert_eq!(feed_warnings(&app, "cma").await, 2);
    assert_eq!((srv.hits("/cap/a1.xml"), srv.hits("/cap/a2.xml")), (1, 1));
    let callouts = app
        .scalar(
            "SELECT COUNT(*) FROM callouts c JOIN incidents i ON i.id = c.incident_id
             JOIN warnings w ON w.id = i.warning_id WHERE w.source = 'feed:cma'",
        )
        .await;
    assert!(callouts > 0, "the feed's warnings were dispatched");

    // Unchanged index: a 304, nothing fetched.
    let p = poll_once(&app.core, "cma").await.unwrap();
    assert!(p.not_modified);
    assert_eq!(p.fetched, 0);
    assert_eq!(srv.hits("/index.atom"), 2);

    // A new linked entry and a new embedded one: only they are taken.
    srv.add_link("a3");
    srv.add_embedded("e1");
    let p = poll_once(&app.core, "cma").await.unwrap();
    assert_eq!((p.not_modified, p.fetched, p.ingested), (false, 2, 2));
    assert_eq!((srv.hits("/cap/a1.xml"), srv.hits("/cap/a3.xml")), (1, 1));
    assert_eq!(feed_warnings(&app, "cma").await, 4);

    // Every request carried the key.
    let keys = srv.0.lock().unwrap().keys.clone();
    assert_eq!(keys.len(), 6);
    assert!(keys.iter().all(|k| k.as_deref() == Some(KEY)), "{keys:?}");

    let st = app.core.feeds.status("cma").unwrap();
    assert_eq!(
        (
            st.polls,
            st.not_modified,
            st.errors,
            st.ingested,
            st.entries_fetched
        ),
        (3, 1, 0, 4, 4)
    );
    assert!(st.last_success.is_some() && st.last_error.is_none());

    // A restarted daemon (a fresh core on the same database) asks "changed since?" at once.
    let restarted = Core::open(
        (*app.core.settings).clone(),
        Overrides {
            answer_secret: Some("test-answer-secret".into()),
            tokens: Vec::new(),
            clock: None,
        },
    )
    .await
    .unwrap();
    assert!(poll_once(&restarted, "cma").await.unwrap().not_modified);
    assert_eq!(srv.hits("/index.atom"), 4);
    restarted.store.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_taken_once_sqlite() {
    poll_index(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_taken_once_postgres() {
    poll_index(Db::Postgres).await;
}

/// A server without validators: the index comes back whole, the seen entries keep the CAP
/// files from being fetched again; an entry whose CAP fails stays unseen and is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_entries_without_etag_and_retry_of_a_failed_entry() {
    let (srv, base) = Server::start().await;
    srv.add_link("b1");
    // An entry whose CAP is missing (404) for now.
    srv.0
        .lock()
        .unwrap()
        .entries
        .push(("b2".into(), Entry::Link("cap/b2.xml".into())));
    srv.0.lock().unwrap().no_etag = true;
    let app = spawn(
        Db::Sqlite,
        &feed_toml(
            "plain",
            &format!("{base}/index.atom"),
            &format!("schedule = \"{NEVER}\""),
        ),
    )
    .await
    .unwrap();
    let e = poll_once(&app.core, "plain").await.unwrap_err();
    assert!(e.contains("/cap/b2.xml") && e.contains("404"), "{e}");
    assert_eq!(feed_warnings(&app, "plain").await, 1);
    // Not saved: the index had an entry not taken.
    assert_eq!(app.scalar("SELECT COUNT(*) FROM feed_validators").await, 0);

    srv.0.lock().unwrap().caps.insert("b2.xml".into(), demo_cap());
    let p = poll_once(&app.core, "plain").await.unwrap();
    assert_eq!((p.fetched, p.ingested), (1, 1));
    assert_eq!((srv.hits("/cap/b1.xml"), srv.hits("/cap/b2.xml")), (1, 2));

    let p = poll_once(&app.core, "plain").await.unwrap();
    assert_eq!((p.not_modified, p.fetched), (false, 0));
    assert_eq!(srv.hits("/index.atom"), 3);
    let st = app.core.feeds.status("plain").unwrap();
    assert_eq!((st.errors, st.ok), (1, Some(true)));
    assert!(st.last_error.unwrap().contains("404"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_not_allowed_are_refused_and_kept() {
    let (srv, base) = Server::start().await;
    srv.add_link("c1");
    let url = format!("{base}/cap/c1.xml");
    let toml = format!(
        "{}{}",
        feed_toml(
            "strict",
            &url,
            &format!("schedule = \"{NEVER}\"\nsenders = [\"other@cma.gov.cn\"]")
        ),
        feed_toml(
            "open",
            &url,
            &format!("schedule = \"{NEVER}\"\nsenders = [\"450900000000@yulin.weather.demo\"]")
        ),
    );
    let app = spawn(Db::Sqlite, &toml).await.unwrap();
    let p = poll_once(&app.core, "strict").await.unwrap();
    assert_eq!((p.fetched, p.ingested, p.refused), (1, 0, 1));
    assert_eq!(feed_warnings(&app, "strict").await, 0);
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM warning_rejects WHERE source = 'feed:strict'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert!(
        reason.contains("450900000000@yulin.weather.demo") && reason.contains("白名单"),
        "{reason}"
    );
    let p = poll_once(&app.core, "open").await.unwrap();
    assert_eq!((p.ingested, p.refused), (1, 0));
    assert_eq!(app.core.feeds.status("strict").unwrap().refused, 1);
    app.stop().await;
}

/// The cron loop: every second, four sources, three of them broken (500, connection refused,
/// timeout). The good one is ingested all the same, and each failure is in /readyz and
/// /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_sources_do_not_hold_up_the_others() {
    let (srv, base) = Server::start().await;
    srv.add_link("d1");
    let every = "schedule = \"* * * * * *\"";
    let toml = [
        feed_toml("slow", &format!("{base}/slow"), every),
        feed_toml("broken", &format!("{base}/fail"), every),
        feed_toml("gone", "http://127.0.0.1:1/index.atom", every),
        feed_toml("good", &format!("{base}/index.atom"), every),
    ]
    .concat();
    let app = spawn(Db::Sqlite, &toml).await.unwrap();
    let start = Instant::now();
    loop {
        let failed = ["slow", "broken", "gone"]
            .iter()
            .all(|n| app.core.feeds.status(n).unwrap().errors > 0);
        // The good source's status is written when its poll ends, after its warning commits.
        let good = app.core.feeds.status("good").is_some_and(|s| s.ok == Some(true));
        if failed && good && feed_warnings(&app, "good").await == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the good source was held up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One retry after each 500.
    assert!(srv.hits("/fail") >= 2);

    let (status, ready) = app.get("/readyz", VIEWER).await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    let feeds = ready["feeds"].as_array().unwrap();
    let by_name = |n: &str| feeds.iter().find(|f| f["name"] == n).unwrap().clone();
    assert!(by_name("broken")["last_error"].as_str().unwrap().contains("500"));
    assert!(by_name("gone")["last_error"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("connect"));
    assert!(
        by_name("slow")["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{feeds:?}"
    );
    assert_eq!(by_name("good")["ok"], true);
    assert!(by_name("good")["last_success"].as_i64().is_some());

    let metrics = app.text("/metrics").await;
    let value = |line: &str| -> f64 {
        let l = metrics
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("{line} in {metrics}"));
        l.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("jiaoying_feed_polls_total{source=\"broken\",result=\"error\"}") >= 1.0);
    assert!(value("jiaoying_feed_messages_ingested_total{source=\"good\"}") == 1.0);
    assert!(value("jiaoying_feed_last_success_timestamp_seconds{source=\"good\"}") > 1.7e9);
    assert_eq!(value("jiaoying_feed_up{source=\"gone\"}"), 0.0);
    assert!(!metrics.contains("jiaoying_feed_last_success_timestamp_seconds{source=\"broken\"}"));
    app.stop().await;
}

/// Issue 12, feeds: on b78958e the poller fetched whatever host an index entry named, with the
/// feed's auth header, and reqwest followed redirects anywhere carrying it too. Now a link or
/// a redirect off the feed's origin is refused (and shown in the status) unless the host is in
/// `allow_hosts`, an allowed host never sees the key, and redirects stop after three hops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_links_and_redirects_keep_to_the_feed_origin() {
    std::env::set_var(KEY_ENV, KEY);
    let (home, home_base) = Server::start().await;
    let (other, other_base) = Server::start().await;
    other.0.lock().unwrap().caps.insert("x1.xml".into(), demo_cap());
    {
        let mut s = home.0.lock().unwrap();
        // An entry naming another host outright, and one whose CAP redirects there.
        s.entries
            .push(("x1".into(), Entry::Link(format!("{other_base}/cap/x1.xml"))));
        s.entries.push(("x2".into(), Entry::Link("redirect/x2".into())));
        s.redirects
            .insert("x2".into(), format!("{other_base}/cap/x1.xml"));
        // A redirect chain of four hops on the feed's own origin.
        for i in 0..4 {
            s.redirects
                .insert(format!("loop{i}"), format!("{home_base}/redirect/loop{}", i + 1));
        }
        s.redirects
            .insert("loop4".into(), format!("{home_base}/cap/none.xml"));
        s.entries
            .push(("x3".into(), Entry::Link("redirect/loop0".into())));
        s.version += 1;
    }
    let auth = format!("schedule = \"{NEVER}\"\nauth_header = \"X-Api-Key\"\nauth_env = \"{KEY_ENV}\"");
    let Some(app) = spawn(
        Db::Sqlite,
        &feed_toml("strict", &format!("{home_base}/index.atom"), &auth),
    )
    .await
    else {
        return;
    };
    let err = poll_once(&app.core, "strict").await.unwrap_err();
    assert!(err.contains("more than 3 redirects"), "{err}");
    assert_eq!(other.hits("/cap/x1.xml"), 0, "the other host was never asked");
    assert!(other.0.lock().unwrap().keys.is_empty());
    assert_eq!(home.hits("/redirect/loop3"), 1);
    assert_eq!(home.hits("/redirect/loop4"), 0, "the fourth hop is not followed");
    let st = app.core.feeds.status("strict").unwrap();
    assert_eq!(st.links_refused, 2, "{st:?}");
    assert!(
        st.last_link_refused.as_deref().unwrap().contains(&other_base),
        "{st:?}"
    );
    assert_eq!(feed_warnings(&app, "strict").await, 0);
    app.stop().await;

    // With the other host allowed (its port only), both entries are fetched there, without the key.
    let port = other_base.rsplit(':').next().unwrap();
    let allowed = format!("{auth}\nallow_hosts = [\"127.0.0.1:{port}\"]");
    let Some(app) = spawn(
        Db::Sqlite,
        &feed_toml("open", &format!("{home_base}/index.atom"), &allowed),
    )
    .await
    else {
        return;
    };
    let _ = poll_once(&app.core, "open").await;
    assert_eq!(other.hits("/cap/x1.xml"), 2);
    let keys = other.0.lock().unwrap().keys.clone();
    assert!(
        keys.iter().all(Option::is_none),
        "the key went only to the feed's origin: {keys:?}"
    );
    assert!(home
        .0
        .lock()
        .unwrap()
        .keys
        .iter()
        .all(|k| k.as_deref() == Some(KEY)));
    assert_eq!(
        feed_warnings(&app, "open").await,
        1,
        "the same CAP twice is one warning"
    );
    assert_eq!(app.core.feeds.status("open").unwrap().links_refused, 0);
    app.stop().await;
}
