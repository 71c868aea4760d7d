//! Issue 11 §5: callbacks coming in together on SQLite (group commit) are applied in one unit
//! of work, their plain replies' reads and writes batched (`answer::together`). The same
//! callbacks applied one by one (`inbound::heard`) and in one group (`inbound::heard_in_one`),
//! on two twin databases, must give the same outcomes, the same rows and the same ledger
//! entries, for every kind of reply: answers, a second answer, a replayed report, evacuation
//! counts (applied alone, in the middle of the group), an unread text, an unknown number,
//! someone with no call-out, a receipt for no send of ours.

use jiaoying::answer::inbound::{heard, heard_in_one};
use jiaoying::channel::event::{Event, MessageRef, Outcome, What};

use crate::helpers::{Db, TestApp};

fn reply(id: &str, from: String, text: &str) -> Event {
    Event {
        id: id.to_string(),
        what: What::Reply {
            from,
            text: text.to_string(),
        },
    }
}

/// Village leader `i` of the storm roster, and deputy `i`.
fn leader(i: usize) -> String {
    format!("1720{i:07}")
}

fn deputy(i: usize) -> String {
    format!("1730{i:07}")
}

/// A flood of replies, with every case the grammar and the matching know, interleaved; with
/// `plain`, only those a group applies itself (on PostgreSQL any other fails the group, which
/// is then applied one by one).
fn flood(plain: bool) -> Vec<Event> {
    let mut e = flood_all();
    if plain {
        e.retain(|e| match &e.what {
            What::Reply { text, .. } => !text.contains("转移"),
            _ => false,
        });
    }
    e
}

fn flood_all() -> Vec<Event> {
    let mut e = Vec::new();
    for i in 0..30 {
        e.push(reply(&format!("r{i}"), leader(i), "收到"));
    }
    e.push(reply("again-0", leader(0), "收到，马上落实"));
    e.push(reply("r1", leader(1), "收到"));
    for i in 30..34 {
        e.push(reply(&format!("c{i}"), leader(i), "已转移12人"));
        e.push(reply("", leader(100 + i), "1"));
    }
    e.push(reply("u", leader(34), "你好"));
    e.push(reply("x", "13900000000".into(), "收到"));
    e.push(reply("d", deputy(0), "收到"));
    e.push(Event {
        id: "receipt-1".into(),
        what: What::Receipt {
            message: MessageRef::Key("no-such-send".into()),
            delivered: true,
            detail: "DELIVRD".into(),
        },
    });
    e.push(reply("after", leader(30), "收到"));
    for i in 40..60 {
        e.push(reply("", leader(i), "1"));
    }
    e.push(reply("r40", leader(40), "已转移3人"));
    e.push(reply("r41", leader(41), "好的"));
    e
}

async fn rows(app: &TestApp, sql: &str) -> Vec<String> {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_all(app.db())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// What the replies changed: every table they write, and the ledger after `seq`.
async fn state(app: &TestApp, seq: i64) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for sql in [
        "SELECT id || '|' || gateway || '|' || kind || '|' || COALESCE(sender, '-') || '|' || body || '|' || outcome || '|' || COALESCE(CAST(callout_id AS TEXT), '-') || '|' || COALESCE(event_id, '-') FROM inbound ORDER BY id",
        "SELECT callout_id || '|' || method || '|' || late || '|' || COALESCE(note, '-') || '|' || COALESCE(CAST(inbound_id AS TEXT), '-') FROM acks ORDER BY id",
        // Times are the clock's at each unit of work (one for the group, one per event alone).
        "SELECT id || '|' || state || '|' || (acked_at IS NULL) || '|' || ack_late FROM callouts ORDER BY id",
        "SELECT kind || '|' || COALESCE(CAST(callout_id AS TEXT), '-') FROM jobs ORDER BY kind, callout_id",
        "SELECT COALESCE(CAST(callout_id AS TEXT), '-') || '|' || reporter || '|' || moved FROM evacuations ORDER BY id",
    ] {
        out.push(rows(app, sql).await);
    }
    out.push(
        rows(
            app,
            &format!(
                "SELECT kind || '|' || subject || '|' || body FROM ledger WHERE seq > {seq} ORDER BY seq"
            ),
        )
        .await,
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_applied_together_equal_replies_applied_alone_sqlite() {
    together_equals_alone(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_applied_together_equal_replies_applied_alone_postgres() {
    together_equals_alone(Db::Postgres).await;
}

async fn together_equals_alone(db: Db) {
    let Some((alone, _a)) = crate::storm::planned(db).await else {
        return;
    };
    let (together, _b) = crate::storm::planned(db).await.unwrap();
    let plain = db == Db::Postgres;
    let events = flood(plain);
    let seq = "SELECT COALESCE(MAX(seq), 0) FROM ledger";
    let (seq_a, seq_b) = (alone.scalar(seq).await, together.scalar(seq).await);

    let one_by_one: Vec<Outcome> = heard(&alone.core, "fake", &events).await.unwrap();
    // As requests of one to three events, the way a group gathers them.
    let callbacks: Vec<(String, Vec<Event>)> = events
        .chunks(3)
        .map(|c| ("fake".to_string(), c.to_vec()))
        .collect();
    let grouped: Vec<Outcome> = heard_in_one(&together.core, &callbacks)
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .collect();

    assert_eq!(grouped, one_by_one, "the same outcomes, event by event");
    let mut wanted = vec![
        "ack",
        "duplicate",
        "replayed",
        "unparsed",
        "unknown-number",
        "no-open-callout",
    ];
    if !plain {
        wanted.extend(["evacuation", "unknown-ref"]);
    }
    for want in wanted {
        assert!(
            one_by_one.iter().any(|o| o.outcome == want),
            "the flood has a {want}: {one_by_one:?}"
        );
    }
    // 30 answers, 4 bare "1"s, 20 more, the one after a count (a duplicate once the count
    // answered) and without counts the one whose count would have answered first.
    let acked = one_by_one.iter().filter(|o| o.outcome == "ack").count();
    assert_eq!(acked, 30 + 4 + 20 + usize::from(plain), "{one_by_one:?}");

    let (a, b) = (state(&alone, seq_a).await, state(&together, seq_b).await);
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_eq!(b, a, "table {i}: the same rows together as alone");
    }
    assert!(
        a[5].len() > 100,
        "the replies wrote their ledger entries: {}",
        a[5].len()
    );
    for app in [&alone, &together] {
        let verified = jiaoying::store::ledger::verify(&app.core.store).await.unwrap();
        assert!(verified.is_ok(), "{verified:?}");
    }
}
