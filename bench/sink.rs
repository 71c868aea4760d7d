//! `jiaoying-bench-sink`: a fast loopback receiver for the generic SMS gateway protocol
//! (SPEC §5), the far end of `bench/run`.
//!
//! - `POST /send` — checks `X-Jiaoying-Timestamp` / `X-Jiaoying-Signature: v1=<hex HMAC-SHA256(
//!   secret, timestamp + "." + body)>` with the secret from `BENCH_SINK_SECRET`; a bad or missing
//!   signature, or a timestamp more than 5 minutes off, gets 401 and is counted in
//!   `bad_signature`; a body that is not `{"to": "…", "text": "…", "ref": "…"}` gets 400 and is
//!   counted in `bad_request`. Otherwise the message is *delivered* and answered
//!   200 `{"id": "sink-<n>"}` — unless its `ref` was accepted before: SPEC §5's idempotency key,
//!   so it is answered 200 with the id given the first time, counted in `repeats` and not
//!   delivered again (`ref_conflicts` counts repeats whose `to` differs from the first one's).
//! - `GET /stats` — `{"count", "requests", "repeats", "ref_conflicts", "distinct_refs",
//!   "bad_signature", "bad_request", "distinct_to", "dup_recipients", "duplicates", "max_per_to",
//!   "first_at", "last_at"}`: `count` is messages delivered (accepted, not repeats); `requests`
//!   the well-signed, well-formed sends received (delivered + repeats); `distinct_to` the
//!   recipients with at least one delivered message, `dup_recipients` those with more than one;
//!   `duplicates` the delivered messages beyond each recipient's first (`count - distinct_to`:
//!   what people would see twice); `max_per_to` the most delivered to one recipient; the times
//!   are the first and last deliveries in unix seconds (µs precision), `null` before any.
//!
//! Usage: `jiaoying-bench-sink [--bind ADDR] [--fail-5xx P] [--hang P] [--hang-for SECS]
//! [--seed N]` (default `127.0.0.1:0`, no faults); the first stdout line is `listening ADDR`.
//!
//! **Flaky mode** (`bench/faults`' `flaky` case): of the well-signed sends, a share `--fail-5xx`
//! is answered 503 and not delivered, and a share `--hang` is delivered and then answered only
//! after `--hang-for` seconds (default 3), past the daemon's gateway time-out: the answer is
//! lost though the message went out, the worst kind of time-out. Which request fails is decided
//! by a hash of (seed, ref, how many times this ref was seen), so a run is replayable whatever
//! order the concurrent requests arrive in. A ref already accepted is always a plain repeat.
//! Counted in `failed_5xx` and `hung`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Largest timestamp skew accepted (SPEC §5: five minutes).
const MAX_SKEW_SECS: i64 = 300;

struct Sink {
    secret: Vec<u8>,
    faults: Faults,
    failed_5xx: AtomicU64,
    hung: AtomicU64,
    bad_signature: AtomicU64,
    bad_request: AtomicU64,
    /// Unix microseconds of the first / last delivered message; 0 = none yet.
    first_us: AtomicU64,
    last_us: AtomicU64,
    book: Mutex<Book>,
}

/// The flaky mode's shares (0 = off) and seed.
#[derive(Clone, Copy, Default)]
struct Faults {
    fail_5xx: f64,
    hang: f64,
    hang_for: std::time::Duration,
    seed: u64,
}

impl Faults {
    /// A uniform number in [0, 1) for the `nth` request carrying `reference`.
    fn draw(&self, reference: &str, nth: u64) -> f64 {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(nth.to_le_bytes());
        h.update(reference.as_bytes());
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Fate {
    Deliver,
    Fail,
    Hang,
}

/// What was delivered, under one lock: refs seen and messages per recipient.
#[derive(Default)]
struct Book {
    requests: u64,
    delivered: u64,
    repeats: u64,
    ref_conflicts: u64,
    /// ref → (id answered, recipient)
    refs: HashMap<String, (u64, String)>,
    /// recipient → messages delivered
    per_to: HashMap<String, u64>,
    /// recipients with more than one delivered message
    dup_recipients: u64,
    max_per_to: u64,
    /// ref → requests seen that were refused (flaky mode), to draw the next one's fate
    refused: HashMap<String, u64>,
}

#[derive(Deserialize)]
struct SendRequest {
    to: String,
    #[allow(dead_code)]
    text: String,
    #[serde(rename = "ref")]
    reference: String,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

impl Sink {
    /// Whether the request carries a valid, fresh signature for `body`.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now_secs: i64) -> bool {
        let Some(ts) = headers.get("x-jiaoying-timestamp").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(sig) = headers
            .get("x-jiaoying-signature")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("v1="))
        else {
            return false;
        };
        match ts.trim().parse::<i64>() {
            Ok(t) if (now_secs - t).abs() <= MAX_SKEW_SECS => {}
            _ => return false,
        }
        let Ok(sig) = hex::decode(sig.trim()) else {
            return false;
        };
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => return false,
        };
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }
}

async fn send(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = now_us();
    if !sink.verify(&headers, &body, (now / 1_000_000) as i64) {
        sink.bad_signature.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "bad or missing signature",
        );
    }
    let req: SendRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            sink.bad_request.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string());
        }
    };
    let (id, delivered, fate) = {
        let mut book = sink.book.lock().unwrap_or_else(|p| p.into_inner());
        let fate = if book.refs.contains_key(&req.reference)
            || (sink.faults.fail_5xx <= 0.0 && sink.faults.hang <= 0.0)
        {
            Fate::Deliver
        } else {
            let nth = book.refused.get(&req.reference).copied().unwrap_or(0);
            let x = sink.faults.draw(&req.reference, nth);
            if x < sink.faults.fail_5xx {
                *book.refused.entry(req.reference.clone()).or_insert(0) += 1;
                Fate::Fail
            } else if x < sink.faults.fail_5xx + sink.faults.hang {
                Fate::Hang
            } else {
                Fate::Deliver
            }
        };
        if matches!(fate, Fate::Fail) {
            drop(book);
            sink.failed_5xx.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "flaky",
                "flaky mode: try again later",
            );
        }
        book.requests += 1;
        if let Some((id, to)) = book.refs.get(&req.reference) {
            let (id, conflict) = (*id, *to != req.to);
            book.repeats += 1;
            if conflict {
                book.ref_conflicts += 1;
            }
            (id, false, fate)
        } else {
            book.delivered += 1;
            let id = book.delivered;
            book.refs.insert(req.reference, (id, req.to.clone()));
            let n = book.per_to.entry(req.to).or_insert(0);
            *n += 1;
            let n = *n;
            if n == 2 {
                book.dup_recipients += 1;
            }
            book.max_per_to = book.max_per_to.max(n);
            (id, true, fate)
        }
    };
    if matches!(fate, Fate::Hang) {
        sink.hung.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(sink.faults.hang_for).await;
    }
    if delivered {
        let _ = sink
            .first_us
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        sink.last_us.fetch_max(now, Ordering::Relaxed);
    }
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("{{\"id\":\"sink-{id}\"}}"),
    )
        .into_response()
}

fn secs(us: u64) -> serde_json::Value {
    if us == 0 {
        serde_json::Value::Null
    } else {
        serde_json::json!(us as f64 / 1e6)
    }
}

async fn stats(State(sink): State<Arc<Sink>>) -> Response {
    let book = sink.book.lock().unwrap_or_else(|p| p.into_inner());
    let distinct_to = book.per_to.len() as u64;
    let body = serde_json::json!({
        "count": book.delivered,
        "requests": book.requests,
        "repeats": book.repeats,
        "ref_conflicts": book.ref_conflicts,
        "distinct_refs": book.refs.len(),
        "bad_signature": sink.bad_signature.load(Ordering::Relaxed),
        "bad_request": sink.bad_request.load(Ordering::Relaxed),
        "failed_5xx": sink.failed_5xx.load(Ordering::Relaxed),
        "hung": sink.hung.load(Ordering::Relaxed),
        "distinct_to": distinct_to,
        "dup_recipients": book.dup_recipients,
        "duplicates": book.delivered - distinct_to,
        "max_per_to": book.max_per_to,
        "first_at": secs(sink.first_us.load(Ordering::Relaxed)),
        "last_at": secs(sink.last_us.load(Ordering::Relaxed)),
    });
    drop(book);
    Json(body).into_response()
}

fn usage() -> ! {
    eprintln!(
        "usage: jiaoying-bench-sink [--bind ADDR] [--fail-5xx P] [--hang P] [--hang-for SECS] [--seed N]   (secret from env BENCH_SINK_SECRET)"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let mut bind = String::from("127.0.0.1:0");
    let mut faults = Faults {
        hang_for: std::time::Duration::from_secs(3),
        ..Faults::default()
    };
    let mut args = std::env::args().skip(1);
    let number = |v: Option<String>| -> f64 {
        v.and_then(|v| v.parse::<f64>().ok())
            .filter(|x| x.is_finite() && *x >= 0.0)
            .unwrap_or_else(|| usage())
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => bind = args.next().unwrap_or_else(|| usage()),
            "--fail-5xx" => faults.fail_5xx = number(args.next()),
            "--hang" => faults.hang = number(args.next()),
            "--hang-for" => faults.hang_for = std::time::Duration::from_secs_f64(number(args.next())),
            "--seed" => faults.seed = number(args.next()) as u64,
            a if a.starts_with("--bind=") => bind = a["--bind=".len()..].to_string(),
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("jiaoying-bench-sink: unknown argument {arg:?}");
                usage()
            }
        }
    }
    let secret = match std::env::var("BENCH_SINK_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ => {
            eprintln!("jiaoying-bench-sink: BENCH_SINK_SECRET is not set");
            std::process::exit(2);
        }
    };
    let sink = Arc::new(Sink {
        secret: secret.into_bytes(),
        faults,
        failed_5xx: AtomicU64::new(0),
        hung: AtomicU64::new(0),
        bad_signature: AtomicU64::new(0),
        bad_request: AtomicU64::new(0),
        first_us: AtomicU64::new(0),
        last_us: AtomicU64::new(0),
        book: Mutex::new(Book::default()),
    });
    let app = Router::new()
        .route("/send", post(send))
        .route("/stats", get(stats))
        .with_state(sink);
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("jiaoying-bench-sink: cannot bind {bind}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("local address");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening {addr}");
        let _ = out.flush();
    }
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("jiaoying-bench-sink: {e}");
        std::process::exit(1);
    }
}
