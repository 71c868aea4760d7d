//! A fake generic SMS gateway (SPEC §5) on loopback: checks each request's signature, records
//! what it receives, and can be told to fail the next N sends with 503.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use jiaoying::channel::signature;
use jiaoying::clock::Clock;

pub const SECRET: &str = "test-gateway-secret";

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sent {
    pub to: String,
    pub text: String,
    /// The attempt id (SPEC §5 `ref`).
    #[serde(rename = "ref")]
    pub reference: String,
}

#[derive(Clone)]
pub struct Fake {
    pub received: Arc<Mutex<Vec<Sent>>>,
    pub fail_next: Arc<AtomicUsize>,
    pub bad_signatures: Arc<AtomicUsize>,
    /// Milliseconds to wait before answering each send (a slow carrier).
    pub delay_ms: Arc<AtomicU64>,
    /// A flaky carrier: of every 12 requests (in the order they come), this many first ones
    /// answer 503.
    pub fail_in_12: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    /// How far this gateway's clock is ahead of the test's, in seconds (a machine whose
    /// clock stepped): signatures are checked against it.
    pub ahead_secs: Arc<std::sync::atomic::AtomicI64>,
    /// The test's clock: the fake checks timestamps against the same time jiaoying reads.
    pub clock: Clock,
}

impl Fake {
    /// Starts the gateway; returns it and its send URL.
    pub async fn start(clock: Clock) -> (Fake, String) {
        let fake = Fake {
            received: Arc::default(),
            fail_next: Arc::default(),
            bad_signatures: Arc::default(),
            delay_ms: Arc::default(),
            fail_in_12: Arc::default(),
            requests: Arc::default(),
            ahead_secs: Arc::default(),
            clock,
        };
        let app = Router::new().route("/send", post(send)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/send", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    pub fn messages(&self) -> Vec<Sent> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `pred` holds over the messages received, or panics after `secs`.
    pub async fn wait_until(&self, secs: u64, what: &str, pred: impl Fn(&[Sent]) -> bool) -> Vec<Sent> {
        let start = Instant::now();
        loop {
            let msgs = self.messages();
            if pred(&msgs) {
                return msgs;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; have {} messages",
                msgs.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn send(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let now = fake.clock.now_secs() + fake.ahead_secs.load(Ordering::SeqCst);
    if signature::verify(
        SECRET.as_bytes(),
        h(signature::TIMESTAMP_HEADER),
        h(signature::SIGNATURE_HEADER),
        &body,
        now,
    )
    .is_err()
    {
        fake.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "{}".into());
    }
    let delay = fake.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let nth = fake.requests.fetch_add(1, Ordering::SeqCst);
    if nth % 12 < fake.fail_in_12.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"busy"}"#.into());
    }
    if fake.fail_next.load(Ordering::SeqCst) > 0 {
        fake.fail_next.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"busy"}"#.into());
    }
    let sent: Sent = serde_json::from_slice(&body).unwrap();
    let mut all = fake.received.lock().unwrap();
    all.push(sent);
    (StatusCode::OK, format!(r#"{{"id":"fake-{}"}}"#, all.len()))
}

/// Signs a callback body the way a gateway must, at `ts` (Unix seconds).
pub fn signed(body: &serde_json::Value, ts: i64) -> (Vec<u8>, [(&'static str, String); 2]) {
    let bytes = serde_json::to_vec(body).unwrap();
    let sig = signature::sign(SECRET.as_bytes(), ts, &bytes);
    (
        bytes,
        [
            (signature::TIMESTAMP_HEADER, ts.to_string()),
            (signature::SIGNATURE_HEADER, sig),
        ],
    )
}
