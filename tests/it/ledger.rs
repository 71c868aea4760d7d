//! The ledger proves the record (issue 12 §2), on both backends: after a fan-out with answers,
//! evacuation counts, an escalation and a stand-down, `ledger verify` holds; the report rebuilt
//! from the ledger alone equals the live one; the issue's two attacks (a call-out rewritten to
//! acknowledged; the tail cut and the head moved back) are found, where the old chain check
//! found neither; a checkpoint finds a rewritten chain; a forged checkpoint is refused; no key
//! says so; the scheduled checkpoint runs once per period; a stand-down writes one.

use std::time::Duration;

use jiaoying::audit;
use jiaoying::config::Settings;
use jiaoying::record::ledger::chain;
use jiaoying::store::ledger::{self, Problem};
use jiaoying::store::reports;
use sqlx::Row;

use crate::helpers::{demo_cap, spawn, Db, TestApp, FEED, OPERATOR};

const POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["county_duty", "township_leader", "township_duty"]
channels = ["sms"]
deadline = "1h"
ladder = ["backup", "superior"]
evacuation = true
"#;

/// The settings layer for a key and a checkpoint file in `dir`.
fn with_key(dir: &std::path::Path) -> String {
    let key = dir.join("ledger.key");
    if !key.exists() {
        audit::keygen(&key).unwrap();
    }
    format!(
        "{POLICY}\n[ledger]\nsigning_key_file = \"{}\"\ncheckpoints = \"{}\"\n",
        key.display(),
        dir.join("checkpoints.jsonl").display()
    )
}

/// Waits (bounded) until `f` holds.
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn checkpoints(s: &Settings) -> Vec<jiaoying::record::checkpoint::Checkpoint> {
    audit::read_all(&s.ledger.checkpoints).unwrap()
}

/// The fan-out: everyone called answers but two; township leaders report people moved (one
/// twice: the later report counts); the two silent ones escalate; then the stand-down.
async fn scenario(app: &TestApp) -> i64 {
    app.without_duty_rosters().await;
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let incident = body["incidents"][0]["id"].as_i64().unwrap();
    let n = body["incidents"][0]["callouts"].as_u64().unwrap() as usize;
    assert!(n > 50, "{n} call-outs");
    let msgs = app.gw.wait_until(60, "the call-outs", |m| m.len() >= n).await;
    let mut phones: Vec<String> = msgs.iter().map(|m| m.to.clone()).collect();
    phones.sort();
    phones.dedup();
    for (i, p) in phones.iter().enumerate().skip(2) {
        let text = match i % 5 {
            0 => "已转移12人",
            _ => "收到",
        };
        let (_, out) = app.reply(p, text).await;
        assert!(
            ["ack", "evacuation"].contains(&out["outcome"].as_str().unwrap_or("")),
            "{out}"
        );
    }
    let (_, out) = app.reply(&phones[5], "已转移20人").await;
    assert_eq!(out["outcome"], "evacuation", "{out}");
    app.expire_deadlines().await;
    until("the silent ones escalated", || async {
        app.scalar("SELECT COUNT(*) FROM callouts WHERE state = 'escalated'")
            .await
            >= 2
    })
    .await;
    let url = format!("{}/api/v1/incidents/{incident}/close", app.base);
    let r = app.http.post(&url).bearer_auth(OPERATOR).send().await.unwrap();
    assert_eq!(r.status(), 200);
    until("the queue empty after the stand-down", || async {
        app.scalar(
            "SELECT COUNT(*) FROM jobs WHERE kind <> 'checkpoint' OR dedupe_key <> 'ledger-checkpoint'",
        )
        .await
            == 0
    })
    .await;
    incident
}

async fn verify(app: &TestApp) -> (Option<Problem>, Option<usize>) {
    let o = audit::verify(&app.core.store, &app.core.settings).await.unwrap();
    (o.verified.problem, o.checkpoints)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_proves_the_record_sqlite() {
    proves(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_proves_the_record_postgres() {
    proves(Db::Postgres).await;
}

async fn proves(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let Some(app) = spawn(db, &with_key(dir.path())).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL ledger test skipped");
        return;
    };
    let incident = scenario(&app).await;
    let store = &app.core.store;
    let settings = &app.core.settings;

    // The stand-down wrote a checkpoint, at a head that includes the close.
    until("the stand-down checkpoint", || async {
        checkpoints(settings)
            .iter()
            .any(|c| c.why == format!("standdown:{incident}"))
    })
    .await;
    let cp = checkpoints(settings)
        .into_iter()
        .find(|c| c.why.starts_with("standdown:"))
        .unwrap();
    let closed_at: i64 = app
        .scalar(&format!(
            "SELECT seq FROM ledger WHERE kind = 'incident.closed' AND subject = 'incident:{incident}'"
        ))
        .await;
    assert!(
        cp.seq >= closed_at,
        "checkpoint {} before the close {closed_at}",
        cp.seq
    );

    let (problem, n) = verify(&app).await;
    assert_eq!(problem, None);
    assert_eq!(n, Some(1));
    // Every report names the latest checkpoint.
    let live = reports::load(store, incident).await.unwrap().unwrap();
    assert_eq!(
        live.checkpoint.as_ref().map(|c| c.seq),
        None,
        "the store alone knows no file"
    );
    let (status, body) = app
        .get(&format!("/api/v1/incidents/{incident}/report"), OPERATOR)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checkpoint"]["seq"], cp.seq, "{body}");

    // The report rebuilt from the ledger alone equals the live one.
    let rebuilt = reports::load_from_ledger(store, incident).await.unwrap().unwrap();
    let (l, r) = (
        serde_json::to_value(&live).unwrap(),
        serde_json::to_value(&rebuilt).unwrap(),
    );
    assert_eq!(l, r);
    assert!(live.totals.answered > 0 && live.totals.evacuated > 0 && live.totals.escalated >= 2);

    // Attack 1: an unanswered call-out rewritten to acknowledged. The chain still holds (the
    // old check says ok); the fold names the row.
    let victim = app
        .scalar("SELECT MIN(id) FROM callouts WHERE state IN ('escalated', 'cancelled', 'unreached')")
        .await;
    let old = app
        .scalar(&format!("SELECT updated_at FROM callouts WHERE id = {victim}"))
        .await;
    let state: String = sqlx::query_scalar("SELECT state FROM callouts WHERE id = $1")
        .bind(victim)
        .fetch_one(app.db())
        .await
        .unwrap();
    app.execute(&format!(
        "UPDATE callouts SET state = 'acknowledged', acked_at = {old} WHERE id = {victim}"
    ))
    .await;
    assert!(
        ledger::verify(store).await.unwrap().is_ok(),
        "the old check does not see it"
    );
    let changed = reports::load(store, incident).await.unwrap().unwrap();
    assert_eq!(
        changed.totals.answered,
        live.totals.answered + 1,
        "the report changed"
    );
    match verify(&app).await.0 {
        Some(Problem::Differs(d)) => {
            assert_eq!(
                (d.table.as_str(), d.id, d.column.as_str()),
                ("callouts", victim, "state")
            );
            assert_eq!(d.live, "\"acknowledged\"");
            assert_eq!(d.ledger, format!("\"{state}\""));
        }
        other => panic!("not found: {other:?}"),
    }
    app.execute(&format!(
        "UPDATE callouts SET state = '{state}', acked_at = NULL WHERE id = {victim}"
    ))
    .await;
    // An evacuation count edited, an answer deleted: named too.
    app.execute("UPDATE evacuations SET moved = moved + 100 WHERE id = (SELECT MAX(id) FROM evacuations)")
        .await;
    assert!(
        matches!(verify(&app).await.0, Some(Problem::Differs(d)) if d.table == "evacuations" && d.column == "moved")
    );
    app.execute("UPDATE evacuations SET moved = moved - 100 WHERE id = (SELECT MAX(id) FROM evacuations)")
        .await;
    assert_eq!(verify(&app).await.0, None, "restored");

    // A forged checkpoint (another key) is refused; removing it restores.
    let file = settings.ledger.checkpoints.clone();
    let good = std::fs::read_to_string(&file).unwrap();
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let forged = jiaoying::record::checkpoint::sign(&other, cp.seq + 1000, &"f".repeat(64), cp.at, "manual");
    std::fs::write(
        &file,
        format!("{good}{}\n", serde_json::to_string(&forged).unwrap()),
    )
    .unwrap();
    match verify(&app).await.0 {
        Some(Problem::Checkpoint(s)) => assert!(s.contains("refused"), "{s}"),
        other => panic!("a forged checkpoint was taken: {other:?}"),
    }
    // A real checkpoint with one field changed (a later seq to hide a cut) is refused too.
    let mut bumped = cp.clone();
    bumped.seq -= 1;
    std::fs::write(
        &file,
        format!("{good}{}\n", serde_json::to_string(&bumped).unwrap()),
    )
    .unwrap();
    assert!(matches!(verify(&app).await.0, Some(Problem::Checkpoint(_))));
    std::fs::write(&file, &good).unwrap();

    // No key: the check still runs, and says checkpoints are off.
    let mut keyless = (**settings).clone();
    keyless.ledger.signing_key_file = None;
    let o = audit::verify(store, &keyless).await.unwrap();
    assert_eq!(o.checkpoints, None);
    let (ok, lines) = audit::describe(&o);
    assert!(ok);
    assert!(lines[0].contains("checkpoints off"), "{lines:?}");
    assert!(audit::take(store, &keyless, 0, "manual").await.unwrap().is_none());

    // Rewriting: the checkpointed entry edited and every later hash recomputed, head too. The
    // chain holds; the checkpoint does not.
    let rows = sqlx::query(
        "SELECT seq, at, kind, subject, body, prev_hash FROM ledger WHERE seq >= $1 ORDER BY seq",
    )
    .bind(cp.seq)
    .fetch_all(app.db())
    .await
    .unwrap();
    let prev: String = rows[0].get(5);
    let items = rows.iter().enumerate().map(|(i, r)| {
        let body: String = r.get(4);
        let body = if i == 0 {
            body.replacen('}', ",\"x\":1}", 1)
        } else {
            body
        };
        (
            r.get::<i64, _>(1),
            r.get::<String, _>(2),
            r.get::<String, _>(3),
            body,
        )
    });
    let rewritten = chain(&prev, cp.seq, items.collect::<Vec<_>>());
    let mut saved = Vec::new();
    for e in &rewritten {
        let r = sqlx::query("SELECT body, prev_hash, hash FROM ledger WHERE seq = $1")
            .bind(e.seq)
            .fetch_one(app.db())
            .await
            .unwrap();
        saved.push((
            e.seq,
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2),
        ));
        sqlx::query("UPDATE ledger SET body = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&e.body)
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .bind(e.seq)
            .execute(app.db())
            .await
            .unwrap();
    }
    let head_hash: String = sqlx::query_scalar("SELECT hash FROM ledger_head WHERE id = 1")
        .fetch_one(app.db())
        .await
        .unwrap();
    sqlx::query("UPDATE ledger_head SET hash = $1 WHERE id = 1")
        .bind(&rewritten.last().unwrap().hash)
        .execute(app.db())
        .await
        .unwrap();
    assert!(
        ledger::verify(store).await.unwrap().is_ok(),
        "the chain alone holds"
    );
    match verify(&app).await.0 {
        Some(Problem::Checkpoint(s)) => assert!(s.starts_with("rewritten"), "{s}"),
        other => panic!("rewriting not found: {other:?}"),
    }
    for (seq, body, prev, hash) in saved {
        sqlx::query("UPDATE ledger SET body = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(body)
            .bind(prev)
            .bind(hash)
            .bind(seq)
            .execute(app.db())
            .await
            .unwrap();
    }
    sqlx::query("UPDATE ledger_head SET hash = $1 WHERE id = 1")
        .bind(head_hash)
        .execute(app.db())
        .await
        .unwrap();
    assert_eq!(verify(&app).await.0, None, "restored");

    // Attack 2: the last 50 entries deleted and the head moved back. The old check says ok;
    // the checkpoint says truncated.
    let head = app.scalar("SELECT seq FROM ledger_head").await;
    let keep = head - 50;
    let keep_hash: String = sqlx::query_scalar("SELECT hash FROM ledger WHERE seq = $1")
        .bind(keep)
        .fetch_one(app.db())
        .await
        .unwrap();
    app.execute(&format!("DELETE FROM ledger WHERE seq > {keep}"))
        .await;
    sqlx::query("UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(keep)
        .bind(keep_hash)
        .execute(app.db())
        .await
        .unwrap();
    assert!(
        ledger::verify(store).await.unwrap().is_ok(),
        "the old check does not see it"
    );
    match verify(&app).await.0 {
        Some(Problem::Checkpoint(s)) => assert!(s.starts_with("truncated"), "{s}"),
        other => panic!("truncation not found: {other:?}"),
    }
    // Without a checkpoint this cut is not seen: the last 50 entries here are sends and
    // notices, which change no state row. That is what the checkpoint is for.
    assert_eq!(
        audit::verify(store, &keyless).await.unwrap().verified.problem,
        None
    );
    app.stop().await;
}

/// The scheduled checkpoint: one job whatever the instances, one checkpoint per period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_checkpoint_once_per_period() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(Db::Sqlite, &with_key(dir.path())).await.unwrap();
    let settings = app.core.settings.clone();
    let jobs = "SELECT COUNT(*) FROM jobs WHERE kind = 'checkpoint' AND dedupe_key = 'ledger-checkpoint'";
    assert_eq!(app.scalar(jobs).await, 1);
    // A second instance starting inserts nothing more.
    audit::ensure_job(&app.core.store, &settings, app.core.now())
        .await
        .unwrap();
    let second = app.second_instance().await;
    assert_eq!(app.scalar(jobs).await, 1);
    let due = app
        .scalar("SELECT due_at FROM jobs WHERE kind = 'checkpoint'")
        .await;
    let hour = 3_600_000;
    assert_eq!(due % hour, 0, "due at the period's boundary");
    assert!(due > app.core.now() && due <= app.core.now() + hour);
    assert!(checkpoints(&settings).is_empty());

    app.advance(Duration::from_millis((due - app.core.now()) as u64 + 1));
    until("the scheduled checkpoint", || async {
        !checkpoints(&settings).is_empty()
    })
    .await;
    // Rescheduled to the next boundary: no second checkpoint in this period, however many
    // workers (two instances) are polling.
    until("the job rescheduled", || async {
        app.scalar("SELECT due_at FROM jobs WHERE kind = 'checkpoint'")
            .await
            == due + hour
    })
    .await;
    assert_eq!(app.scalar(jobs).await, 1);
    let cps = checkpoints(&settings);
    assert_eq!(cps.len(), 1, "{cps:?}");
    assert_eq!(cps[0].why, "schedule");
    let key = audit::verifying_key(&settings).unwrap().unwrap();
    jiaoying::record::checkpoint::check_signature(&cps[0], &key).unwrap();

    app.advance(Duration::from_millis(hour as u64));
    until("the next period's checkpoint", || async {
        checkpoints(&settings).len() == 2
    })
    .await;
    second.stop().await;
    app.stop().await;
}

/// keygen: a new file only, readable by its owner alone.
#[test]
fn keygen_writes_an_owner_only_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let public = audit::keygen(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let key = jiaoying::record::checkpoint::signing_key(&text).unwrap();
    assert_eq!(key.verifying_key(), public);
    assert!(
        audit::keygen(&path).is_err(),
        "an existing key is never overwritten"
    );
}
