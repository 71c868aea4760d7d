//! `jiaoying-bench-replies`: the load generator of `bench/replies` (issue 11 §5, a reply
//! flood). Sends N signed inbound SMS replies — the generic gateway's inbound callback
//! (SPEC §5: `POST /hooks/GATEWAY/inbound`, body `{"from", "text", "at"}`, signed
//! `X-Jiaoying-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`) — from C
//! concurrent clients, each its own connection, and prints one JSON line: requests, answered
//! 200, failures, seconds, replies/s and latency percentiles (per request, from the write of
//! the request to the end of its answer).
//!
//! Phones are `PREFIX` followed by OFFSET + the index 1..=N on `DIGITS` digits (bench/run's roster:
//! `1700` and 7 digits). Bounded: N requests, each with a 30 s time-out; it never retries.
//!
//! Usage: `jiaoying-bench-replies --url http://127.0.0.1:PORT/hooks/bench/inbound --n 10000
//! --concurrency 64 [--offset 0 --prefix 1700 --digits 7 --text 收到]`, the secret in `BENCH_SINK_SECRET`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn arg(args: &[String], name: &str, default: Option<&str>) -> String {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .cloned()
            .unwrap_or_else(|| panic!("{name} needs a value")),
        None => default
            .unwrap_or_else(|| panic!("{name} is required"))
            .to_string(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url", None);
    let n: usize = arg(&args, "--n", Some("10000")).parse().expect("--n");
    let conc: usize = arg(&args, "--concurrency", Some("64"))
        .parse()
        .expect("--concurrency");
    let prefix = arg(&args, "--prefix", Some("1700"));
    let digits: usize = arg(&args, "--digits", Some("7")).parse().expect("--digits");
    let text = arg(&args, "--text", Some("收到"));
    let offset: usize = arg(&args, "--offset", Some("0")).parse().expect("--offset");
    let secret = std::env::var("BENCH_SINK_SECRET").expect("BENCH_SINK_SECRET");

    let next = Arc::new(AtomicUsize::new(1));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (url, prefix, text, secret, next) = (
            url.clone(),
            prefix.clone(),
            text.clone(),
            secret.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // One connection per client, kept alive: 64 clients are 64 connections.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut lat = Vec::new();
            let (mut ok, mut failed, mut last_error) = (0usize, 0usize, None::<String>);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i > n {
                    break;
                }
                let phone = format!("{prefix}{:0digits$}", offset + i);
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                let at = chrono::DateTime::from_timestamp(now.as_secs() as i64, 0)
                    .unwrap()
                    .to_rfc3339();
                let body = serde_json::json!({"from": phone, "text": text, "at": at}).to_string();
                let ts = now.as_secs() as i64;
                let sig = jiaoying::channel::signature::sign(secret.as_bytes(), ts, body.as_bytes());
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-jiaoying-timestamp", ts.to_string())
                    .header("x-jiaoying-signature", sig)
                    .body(body)
                    .send()
                    .await;
                let r = match r {
                    Ok(r) => {
                        let status = r.status();
                        r.bytes().await.map(|b| (status, b))
                    }
                    Err(e) => Err(e),
                };
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                match r {
                    Ok((s, _)) if s.is_success() => ok += 1,
                    Ok((s, b)) => {
                        failed += 1;
                        last_error = Some(format!("{s}: {}", String::from_utf8_lossy(&b)));
                    }
                    Err(e) => {
                        failed += 1;
                        last_error = Some(e.to_string());
                    }
                }
            }
            (lat, ok, failed, last_error)
        }));
    }
    let (mut lat, mut ok, mut failed, mut last_error) = (Vec::new(), 0, 0, None);
    for t in tasks {
        let (l, o, f, e) = t.await.unwrap();
        lat.extend(l);
        ok += o;
        failed += f;
        last_error = last_error.or(e);
    }
    let seconds = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    println!(
        "{}",
        serde_json::json!({
            "requests": lat.len(),
            "ok": ok,
            "failed": failed,
            "last_error": last_error,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "replies_per_s": r1(lat.len() as f64 / seconds),
            "p50_ms": r1(percentile(&lat, 50.0)),
            "p99_ms": r1(percentile(&lat, 99.0)),
            "max_ms": r1(lat.last().copied().unwrap_or(0.0)),
            "concurrency": conc,
        })
    );
}
