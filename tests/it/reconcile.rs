//! Receipts that never came and answers that were lost, end to end: the reconciliation job
//! asks the fake dysmsapi (`provider_aliyun`'s, which checks every V3 signature) with
//! QuerySendDetails after `reconcile_every`, and nothing is pushed; a SendSms answered after the
//! gateway's time-out is found by its OutId before the retry and not sent again; the generic
//! protocol's resend goes under the same `ref` (its gateway drops the repeat, SPEC §5).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use jiaoying::channel::signature;
use jiaoying::clock::Clock;

use crate::gateway::SECRET;
use crate::helpers::{demo_cap, spawn, t0, Db, FEED};
use crate::provider_aliyun::{
    count, env, eventually, expected, hook, national, sms_toml, state_of_key, AliFake, SMS_POLICY,
};

const HOOK: &str = "ali-hook-token-0123456789";
const ROLES: [&str; 2] = ["county_duty", "township_leader"];

/// Pushes switched off (the fake pushes nothing, the test posts nothing): a warning's sends
/// become `delivered` through the reconciliation job alone once the clock has passed
/// `reconcile_every`; a failed receipt is recorded and not asked about again; a receipt pushed
/// after it was reconciled is a replay, recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_that_never_came_are_found_by_the_reconciliation_job() {
    env();
    let (fake, url) = AliFake::start(Clock::starting_at(t0())).await;
    let toml = format!(
        "{}\n[gateways.ali.limits]\nreconcile_every = \"3m\"\n",
        sms_toml(&url)
    );
    let app = spawn(Db::Sqlite, &toml).await.unwrap();
    fake.set_clock(app.core.clock.clone());
    app.without_duty_rosters().await;
    let people = expected(&ROLES);
    assert!(people.len() > 20, "{}", people.len());

    // One job per reconciling gateway (the generic `fake` has no query API), due one interval
    // after start; ensured again (a second instance starting), still one.
    let started = app.core.now();
    let job = "SELECT COUNT(*) FROM jobs WHERE kind = 'reconcile'";
    assert_eq!(count(&app, job).await, 1);
    jiaoying::answer::reconcile::ensure_jobs(&app.core).await.unwrap();
    assert_eq!(count(&app, job).await, 1);
    let due = count(&app, "SELECT due_at FROM jobs WHERE kind = 'reconcile'").await;
    assert!(
        (due - started - 180_000).abs() < 5_000,
        "due {} ms after start",
        due - started
    );
    let payload: String = sqlx::query_scalar("SELECT payload FROM jobs WHERE kind = 'reconcile'")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(payload, r#"{"gateway":"ali"}"#);

    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    eventually(60, "every call-out sent", || async {
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'sent'").await == people.len() as i64
    })
    .await;
    let sends = fake.calls("SendSms");
    assert_eq!(sends.len(), people.len());
    assert!(
        fake.calls("QuerySendDetails").is_empty(),
        "nothing asked before it is due"
    );

    // The carrier's reports, held by Aliyun: all delivered but one failed and one still waiting.
    let key = |i: usize| sends[i].params["OutId"].clone();
    let (failed, waiting) = (key(0), key(1));
    {
        let mut st = fake.status.lock().unwrap();
        for c in &sends {
            st.insert(c.params["OutId"].clone(), 3);
        }
        st.insert(failed.clone(), 2);
        st.insert(waiting.clone(), 1);
    }
    app.advance(Duration::from_secs(181));
    eventually(60, "the reconciled receipts", || async {
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'delivered'").await
            == people.len() as i64 - 2
    })
    .await;
    assert_eq!(state_of_key(&app, &failed).await, "sent");
    assert_eq!(state_of_key(&app, &waiting).await, "sent");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM inbound WHERE outcome = 'not-delivered'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'acknowledged'").await,
        0,
        "delivered is never answered"
    );
    let asked = fake.calls("QuerySendDetails");
    let phones: HashSet<&String> = asked.iter().map(|c| &c.params["PhoneNumber"]).collect();
    assert_eq!(phones.len(), people.len(), "each unconfirmed send asked about");
    // The job is back for the next interval.
    eventually(30, "the job rescheduled", || async {
        count(&app, "SELECT due_at FROM jobs WHERE kind = 'reconcile'").await > due
    })
    .await;
    assert_eq!(count(&app, job).await, 1);

    // Aliyun pushes a report that reconciliation already recorded: a replay, recorded once.
    let second = &sends[2];
    let report = serde_json::json!([{"phone_number": second.params["PhoneNumbers"], "success": true,
        "err_code": "DELIVERED", "biz_id": second.id, "out_id": second.params["OutId"]}]);
    let (status, _) = hook(&app, "ali", &format!("{HOOK}/sms-report"), report).await;
    assert_eq!(status, 200);
    let event = format!(
        "SELECT COUNT(*) FROM inbound WHERE event_id = 'sms-report:{}:delivered'",
        key(2)
    );
    assert_eq!(count(&app, &event).await, 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM inbound WHERE outcome = 'replayed'").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM inbound WHERE outcome = 'delivered'").await,
        people.len() as i64 - 2
    );

    // The next run: the waiting one has arrived; the failed one is not asked about again, the
    // delivered ones neither.
    fake.status.lock().unwrap().insert(waiting.clone(), 3);
    let before = fake.calls("QuerySendDetails").len();
    app.advance(Duration::from_secs(181));
    eventually(60, "the late receipt", || async {
        state_of_key(&app, &waiting).await == "delivered"
    })
    .await;
    let again: Vec<String> = fake.calls("QuerySendDetails")[before..]
        .iter()
        .map(|c| c.params["PhoneNumber"].clone())
        .collect();
    assert_eq!(again, vec![sends[1].params["PhoneNumbers"].clone()]);
    assert_eq!(state_of_key(&app, &failed).await, "sent");
    assert_eq!(
        fake.calls("SendSms").len(),
        people.len(),
        "reconciling sends nothing"
    );
    assert!(fake.bad().is_empty(), "{:?}", fake.bad());
    app.stop().await;
}

/// A SendSms the fake records and answers after the gateway's `timeout`: the attempt is
/// `unanswered`, the retry asks QuerySendDetails first, finds the OutId and records the send
/// as made; the fake received exactly one SendSms per person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_answered_too_late_is_looked_up_not_sent_again() {
    looked_up_not_sent_again(0).await;
}

/// As above, but the first QuerySendDetails of every lost send fails (a system error): a
/// lookup that cannot be made is no licence to send again. The send waits for its backoff and
/// asks again; still one SendSms per person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_fails_is_asked_again_not_sent_again() {
    let n = expected(&ROLES).len() as u64;
    looked_up_not_sent_again(n).await;
}

async fn looked_up_not_sent_again(query_failures: u64) {
    env();
    let (fake, url) = AliFake::start(Clock::starting_at(t0())).await;
    fake.delay_ms.store(1500, Ordering::SeqCst);
    fake.query_failures.store(query_failures, Ordering::SeqCst);
    // Every send times out: the breaker must not open, or the retries would not be tried.
    let toml = format!(
        "{}\n[gateways.ali.limits]\nbreaker_failures = 10000\n",
        sms_toml(&url).replace("hook_token_env = ", "timeout = \"300ms\"\nhook_token_env = ")
    );
    let app = spawn(Db::Sqlite, &toml).await.unwrap();
    fake.set_clock(app.core.clock.clone());
    app.without_duty_rosters().await;
    let people = expected(&ROLES);
    let n = people.len() as i64;
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    eventually(120, "every call-out sent", || async {
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'sent'").await == n
    })
    .await;
    // Each person: the one SendSms that timed out, any lookups that could not be made (on a
    // slow machine a lookup may time out too), then the send found.
    let unanswered = count(&app, "SELECT COUNT(*) FROM attempts WHERE result = 'unanswered'").await;
    assert!(unanswered >= n + query_failures as i64, "{unanswered} unanswered");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM attempts WHERE result = 'unanswered' AND detail LIKE '%not sent again%'"
        )
        .await,
        unanswered - n
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM attempts WHERE result = 'sent' AND detail LIKE 'the gateway had it already%'"
        )
        .await,
        n
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM attempts").await, unanswered + n);
    // The found send keeps the key (QuerySendDetails carries no BizId): receipts by OutId find it.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM attempts WHERE result = 'sent' AND gateway_ref = message_key"
        )
        .await,
        n
    );
    let sent = fake.calls("SendSms");
    let mut per_phone: HashMap<String, usize> = HashMap::new();
    for c in &sent {
        *per_phone.entry(c.params["PhoneNumbers"].clone()).or_default() += 1;
    }
    let want: HashSet<String> = people.iter().map(national).collect();
    assert_eq!(per_phone.keys().cloned().collect::<HashSet<_>>(), want);
    assert!(per_phone.values().all(|k| *k == 1), "{per_phone:?}");
    assert!(fake.calls("QuerySendDetails").len() >= people.len() + query_failures as usize);
    assert!(fake.bad().is_empty(), "{:?}", fake.bad());
    app.stop().await;
}

/// A generic gateway that keeps SPEC §5's idempotency by `ref`: the first request of a `ref` is
/// recorded and answered after `delay_ms`; a repeat of a `ref` is answered at once with the
/// same id and sends nothing.
#[derive(Clone, Default)]
struct Idempotent {
    /// Requests per `ref`.
    requests: Arc<Mutex<HashMap<String, usize>>>,
    /// Messages sent (one per `ref`): `(ref, to, id)`.
    sent: Arc<Mutex<Vec<(String, String, String)>>>,
    delay_ms: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
    clock: Arc<Mutex<Option<Clock>>>,
}

async fn idempotent_send(
    State(g): State<Idempotent>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let now = g
        .clock
        .lock()
        .unwrap()
        .as_ref()
        .map_or_else(|| t0().timestamp(), Clock::now_secs);
    if signature::verify(
        SECRET.as_bytes(),
        h(signature::TIMESTAMP_HEADER),
        h(signature::SIGNATURE_HEADER),
        &body,
        now,
    )
    .is_err()
    {
        g.bad.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "{}".into());
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (reference, to) = (v["ref"].as_str().unwrap(), v["to"].as_str().unwrap());
    *g.requests
        .lock()
        .unwrap()
        .entry(reference.to_string())
        .or_default() += 1;
    let known = {
        let mut sent = g.sent.lock().unwrap();
        match sent.iter().find(|(r, _, _)| r == reference) {
            Some((_, _, id)) => Some(id.clone()),
            None => {
                let id = format!("idem-{}", sent.len() + 1);
                sent.push((reference.to_string(), to.to_string(), id));
                None
            }
        }
    };
    if let Some(id) = known {
        return (StatusCode::OK, serde_json::json!({ "id": id }).to_string());
    }
    let delay = g.delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let id = g
        .sent
        .lock()
        .unwrap()
        .iter()
        .find(|(r, _, _)| r == reference)
        .unwrap()
        .2
        .clone();
    (StatusCode::OK, serde_json::json!({ "id": id }).to_string())
}

/// The generic protocol cannot be asked (its lookup is `Unknown`): after a lost answer the
/// message goes again under the same `ref`, and a gateway keeping SPEC §5 drops the repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_resend_after_a_lost_answer_goes_under_the_same_ref() {
    let g = Idempotent::default();
    g.delay_ms.store(1500, Ordering::SeqCst);
    let router = Router::new()
        .route("/send", post(idempotent_send))
        .with_state(g.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let toml = format!(
        r#"
[gateways.fake]
kind = "generic"
url = "{url}"
secret_env = "JIAOYING_TEST_GW_SECRET"
timeout = "300ms"
[gateways.fake.limits]
breaker_failures = 10000
{SMS_POLICY}
"#
    );
    let app = spawn(Db::Sqlite, &toml).await.unwrap();
    *g.clock.lock().unwrap() = Some(app.core.clock.clone());
    app.without_duty_rosters().await;
    let n = expected(&ROLES).len() as i64;
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    eventually(90, "every call-out sent", || async {
        count(&app, "SELECT COUNT(*) FROM callouts WHERE state = 'sent'").await == n
    })
    .await;
    assert_eq!(g.bad.load(Ordering::SeqCst), 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM attempts WHERE result = 'unanswered'").await,
        n
    );
    // Sent again, not found by asking: no "had it already".
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM attempts WHERE result = 'sent' AND detail IS NULL"
        )
        .await,
        n
    );
    // Both tries of a message carry one key, and the gateway saw that ref twice, sent it once.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM (SELECT callout_id FROM attempts GROUP BY callout_id
             HAVING COUNT(*) = 2 AND COUNT(DISTINCT message_key) = 1) t"
        )
        .await,
        n
    );
    let requests = g.requests.lock().unwrap().clone();
    assert_eq!(requests.len() as i64, n);
    assert!(requests.values().all(|k| *k == 2), "{requests:?}");
    let sent = g.sent.lock().unwrap().clone();
    assert_eq!(sent.len() as i64, n);
    // The id recorded is the one the gateway gave the ref the first time.
    for (reference, _, id) in sent.iter().take(5) {
        let got: String =
            sqlx::query_scalar("SELECT gateway_ref FROM attempts WHERE message_key = $1 AND result = 'sent'")
                .bind(reference)
                .fetch_one(app.db())
                .await
                .unwrap();
        assert_eq!(&got, id);
    }
    app.stop().await;
}
