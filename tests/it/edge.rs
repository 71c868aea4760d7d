//! The HTTP edge (issue 8): what reaches the logs, the three time-outs through the real
//! server, and JSON log lines from the real binary. The layers' own cases (a panicking
//! handler, sensitive headers) are unit tests in `src/http/mod.rs`, over routes that exist
//! only there.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;
use tracing::instrument::WithSubscriber;

use crate::helpers::{demo_cap, spawn, token_in, Db, FEED, OPERATOR};

/// Longest any of these tests waits for the server; the time-outs under test are 300 ms.
const DEADLINE: Duration = Duration::from_secs(5);

/// Log output of one test only: a subscriber of its own, not the process's.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Everything, at every level, spans with their fields when they close.
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let w = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_tokens_query_strings_and_bearer_tokens_never_reach_the_logs() {
    let app = spawn(Db::Sqlite, "").await.unwrap();
    let (s, _) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(s, 202);
    let msgs = app
        .gw
        .wait_until(60, "the first messages", |m| !m.is_empty())
        .await;
    let token = token_in(&msgs[0].text);
    let router = jiaoying::http::router(app.core.clone());
    let logs = Logs::default();
    let requests = [
        Request::get(format!("/a/{token}")).body(Body::empty()).unwrap(),
        Request::post(format!("/a/{token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("action=ack"))
            .unwrap(),
        Request::post("/hooks/fake/status?token=QUERY-s3cret-42")
            .body(Body::from("{}"))
            .unwrap(),
        Request::get("/api/v1/incidents")
            .header("authorization", format!("Bearer {OPERATOR}"))
            .body(Body::empty())
            .unwrap(),
    ];
    let statuses = async {
        let mut statuses = Vec::new();
        for req in requests {
            statuses.push(router.clone().oneshot(req).await.unwrap().status().as_u16());
        }
        statuses
    }
    .with_subscriber(logs.subscriber())
    .await;
    // The page, the answer, an unsigned hook refused, the API.
    assert_eq!(statuses, [200, 200, 401, 200]);
    let text = logs.text();
    for route in ["/a/{token}", "/hooks/{gateway}/{*rest}", "/api/v1/incidents"] {
        assert!(text.contains(&format!("route={route} ")), "{route} not in {text}");
    }
    assert!(text.contains("status=200 latency_ms="), "{text}");
    for secret in [token.as_str(), "QUERY-s3cret-42", OPERATOR] {
        assert!(!text.contains(secret), "{secret} reached the logs: {text}");
    }
    app.stop().await;
}

/// Reads until the peer closes the connection (or resets it), for at most [`DEADLINE`].
async fn read_until_closed(s: &mut TcpStream) -> Result<Vec<u8>, &'static str> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .map_err(|_| "still open at the deadline")?;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_line_is_disconnected() {
    let app = spawn(Db::Sqlite, "[http]\nheader_timeout = \"300ms\"")
        .await
        .unwrap();
    let addr = app.base.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HT").await.unwrap();
    read_until_closed(&mut s).await.unwrap();
    // Closed by the time-out, not at once for some other reason.
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // Others are served meanwhile and after.
    assert_eq!(app.text("/healthz").await, "ok");
    app.stop().await;
}

/// One HTTP/1.1 answer off a raw socket: status and body (by Content-Length).
async fn raw_answer(s: &mut TcpStream) -> (u16, serde_json::Value) {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before a whole answer: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("a content-length");
                if body.len() >= len {
                    let status = head[9..12].parse().unwrap();
                    return (status, serde_json::from_str(&body[..len]).unwrap());
                }
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("an answer before the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_coming_is_answered_408_in_json() {
    let app = spawn(Db::Sqlite, "[http]\nbody_timeout = \"300ms\"")
        .await
        .unwrap();
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/warnings HTTP/1.1\r\nHost: jy.test\r\nAuthorization: Bearer {FEED}\r\n\
         Content-Type: application/cap+xml\r\nContent-Length: 1000\r\n\r\n<alert xmlns"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = raw_answer(&mut s).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "body_timeout", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("http.body_timeout"));
    assert_eq!(app.scalar("SELECT COUNT(*) FROM warnings").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_takes_too_long_is_answered_503_in_json() {
    let app = spawn(Db::Sqlite, "[http]\nrequest_timeout = \"300ms\"")
        .await
        .unwrap();
    // The SQLite pool has one connection: held here, /metrics waits for it past its time.
    let held = app.core.store.begin().await.unwrap();
    let started = Instant::now();
    let r = app
        .http
        .get(format!("{}/metrics", app.base))
        .timeout(DEADLINE)
        .send()
        .await
        .expect("an answer before the deadline");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status().as_u16(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("http.request_timeout"));
    drop(held);
    let r = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    app.stop().await;
}

/// `jiaoying --log-format json` (or `JIAOYING_LOG_FORMAT=json`): every line on stderr is a
/// JSON object with a level and a message, the last error too.
#[test]
fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jiaoying.toml");
    // A token whose variable is unset: Core::open warns about it, so there is a log line.
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}/jy.db\"\n[[auth.tokens]]\nname = \"nobody\"\nrole = \"viewer\"\ntoken_env = \"JIAOYING_EDGE_TEST_UNSET\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let missing = dir.path().join("missing.cap.xml");
    let run = |flag: bool, env: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_jiaoying"));
        if flag {
            c.args(["--log-format", "json"]);
        }
        match env {
            Some(v) => c.env("JIAOYING_LOG_FORMAT", v),
            None => c.env_remove("JIAOYING_LOG_FORMAT"),
        };
        let out = c
            .arg("--config")
            .arg(&config)
            .arg("ingest")
            .arg(&missing)
            .env("RUST_LOG", "info")
            .env("JIAOYING_ANSWER_SECRET", "edge-test-answer-secret")
            .env_remove("JIAOYING_EDGE_TEST_UNSET")
            .output()
            .unwrap();
        assert!(!out.status.success(), "the file is missing");
        String::from_utf8(out.stderr).unwrap()
    };
    for stderr in [run(true, None), run(false, Some("json"))] {
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert!(lines.len() >= 2, "{stderr}");
        for l in &lines {
            assert!(l["level"].is_string() && l["message"].is_string(), "{l}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l["level"] == "WARN" && l["message"].as_str().unwrap().contains("token not set")),
            "{stderr}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l["level"] == "ERROR" && l["message"].as_str().unwrap().contains("missing.cap.xml")),
            "{stderr}"
        );
    }
    // Text stays the default.
    let text = run(false, None);
    assert!(text.lines().any(|l| l.starts_with("error: ")), "{text}");
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "{text}"
    );
}
