//! The after-action report from the API in every format on both backends, the OpenAPI
//! document, and `jiaoying report` after `jiaoying demo` (the demo's database found through
//! its marker; a database without the schema refused with advice, not "no such table").

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use jiaoying::tools::demo;

use crate::helpers::{demo_cap, spawn, Db, FEED, VIEWER};

const POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["county_duty", "township_leader"]
channels = ["sms"]
deadline = "1h"
ladder = []
evacuation = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_formats_sqlite() {
    formats(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_formats_postgres() {
    formats(Db::Postgres).await;
}

async fn formats(db: Db) {
    let Some(app) = spawn(db, POLICY).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL report test skipped");
        return;
    };
    app.without_duty_rosters().await;
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    let id = body["incidents"][0]["id"].as_i64().unwrap();
    let n = body["incidents"][0]["callouts"].as_u64().unwrap() as usize;
    let msgs = app.gw.wait_until(60, "every message", |m| m.len() >= n).await;
    // Two answers, one of them with people moved.
    let (s, out) = app.reply(&msgs[0].to, "收到").await;
    assert_eq!((s, out["outcome"].as_str()), (200, Some("ack")), "{out}");
    let (s, out) = app.reply(&msgs[1].to, "已转移7人").await;
    assert_eq!(s, 200, "{out}");

    let get = |q: &str| {
        let url = format!("{}/api/v1/incidents/{id}/report{q}", app.base);
        let http = app.http.clone();
        async move {
            let r = http.get(url).bearer_auth(VIEWER).send().await.unwrap();
            let status = r.status().as_u16();
            let header = |h: &str| {
                r.headers()
                    .get(h)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            let (ct, cd) = (header("content-type"), header("content-disposition"));
            (status, ct, cd, r.bytes().await.unwrap().to_vec())
        }
    };

    let (s, ct, cd, json) = get("?format=json").await;
    assert_eq!(s, 200);
    assert_eq!(ct, "application/json");
    assert!(cd.contains(&format!("jiaoying-report-{id}.json")), "{cd}");
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["totals"]["called"], n);
    assert_eq!(json["totals"]["answered"], 2);
    assert_eq!(json["totals"]["evacuated"], 7);
    let head_seq = app.scalar("SELECT seq FROM ledger_head WHERE id = 1").await;
    assert_eq!(
        json["ledger"]["seq"], head_seq,
        "the ledger head the report was built from"
    );
    assert_eq!(json["ledger"]["hash"].as_str().unwrap().len(), 64);
    let kinds: Vec<&str> = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(&kinds[..2], ["warning", "opened"], "{kinds:?}");
    assert!(
        kinds.contains(&"first_send") && kinds.contains(&"first_answer"),
        "{kinds:?}"
    );
    let city: Vec<&serde_json::Value> = json["evacuation"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] == "city")
        .collect();
    assert_eq!(city.len(), 1);
    assert_eq!(city[0]["moved"], 7);
    let histogram: u64 = json["answer_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(histogram, 2);

    let (s, ct, cd, html) = get("?format=html").await;
    assert_eq!((s, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(cd.starts_with("inline"), "{cd}");
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("@page { size: A4") && html.contains("<svg class=\"chart\""));
    assert!(html.contains(json["ledger"]["hash"].as_str().unwrap()));

    let (s, ct, cd, csv) = get("?format=csv").await;
    assert_eq!((s, ct.as_str()), (200, "text/csv; charset=utf-8"));
    assert!(
        cd.starts_with("attachment") && cd.contains("townships.csv"),
        "{cd}"
    );
    assert!(csv.starts_with("\u{feff}".as_bytes()));
    let (s, _, cd, csv) = get("?format=csv&table=timeline&lang=en").await;
    assert_eq!(s, 200);
    assert!(cd.contains("timeline.csv"), "{cd}");
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("\u{feff}time 时间,event 事项"), "{csv}");

    let (s, ct, cd, xlsx) = get("?format=xlsx").await;
    assert_eq!(s, 200);
    assert_eq!(
        ct,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(cd.contains(&format!("jiaoying-report-{id}.xlsx")), "{cd}");
    let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(xlsx)).unwrap();
    assert_eq!(wb.sheet_names().len(), 10);
    let summary = wb.worksheet_range("概况").unwrap();
    let called = (0..summary.height() as u32)
        .find(|&y| matches!(summary.get_value((y, 0)), Some(Data::String(s)) if s.starts_with("叫应 called")))
        .expect("the called row");
    assert_eq!(summary.get_value((called, 1)), Some(&Data::Float(n as f64)));

    let (s, ct, _, text) = get("?format=text").await;
    assert_eq!((s, ct.as_str()), (200, "text/plain; charset=utf-8"));
    assert!(String::from_utf8(text)
        .unwrap()
        .contains(&format!("seq {head_seq}")));

    for bad in ["?format=pdf", "?format=csv&table=nope", "?lang=fr"] {
        let (s, ct, _, body) = get(bad).await;
        assert_eq!((s, ct.as_str()), (400, "application/json"), "{bad}");
        let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"]["code"], "bad_request", "{bad}");
    }
    let r = app
        .http
        .get(format!("{}/api/v1/incidents/{id}/report?format=html", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a report needs a token");

    // The OpenAPI document is public and names this route with its role.
    let (s, doc) = app.get("/api/v1/openapi.json", "").await;
    assert_eq!(s, 200);
    let op = &doc["paths"]["/api/v1/incidents/{id}/report"]["get"];
    assert_eq!(op["security"][0]["bearer"][0], "viewer", "{op}");
    app.stop().await;
}

/// After the demo, the read-only commands find the demo's database through its marker when
/// the default database does not exist, and never when it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_then_report_one() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("demo.db");
    let marker = dir.path().join(demo::DEMO_MARKER);
    let settings =
        jiaoying::config::Settings::load(&crate::helpers::repo().join("config/jiaoying.toml"), false)
            .unwrap();
    let o = demo::Options {
        dir: crate::helpers::repo().join("config/demo"),
        database: database.clone(),
        bind: "127.0.0.1:0".into(),
        deadline: std::time::Duration::from_secs(1),
        serve: false,
        marker: marker.clone(),
    };
    demo::run(settings, o).await.unwrap();

    let (url, note) = demo::database_to_read_in(demo::DEFAULT_DATABASE, dir.path());
    assert_eq!(url, format!("sqlite://{}", database.display()));
    assert!(note.unwrap().contains("demo"));
    let store = jiaoying::store::schema::open_existing(&url, 1).await.unwrap();
    let r = jiaoying::store::reports::load(&store, 1)
        .await
        .unwrap()
        .expect("incident 1");
    assert!(r.totals.called > 0 && r.totals.answered > 0, "{:?}", r.totals);
    assert!(r.ledger.as_ref().is_some_and(|h| h.seq > 0));
    let html = jiaoying::record::export::render(
        &r,
        jiaoying::record::export::Format::Html,
        &jiaoying::record::export::Options::new(0),
    )
    .unwrap();
    assert!(String::from_utf8(html.bytes).unwrap().contains("叫应复盘报告"));

    // A configured database is never replaced, nor the default once it exists.
    let other = "sqlite://elsewhere.db";
    assert_eq!(
        demo::database_to_read_in(other, dir.path()),
        (other.to_string(), None)
    );
    std::fs::write(dir.path().join("data/jiaoying.db"), b"").unwrap();
    let (url, note) = demo::database_to_read_in(demo::DEFAULT_DATABASE, dir.path());
    assert_eq!((url.as_str(), note), (demo::DEFAULT_DATABASE, None));

    // An empty database: what to do, not "no such table".
    let empty = format!("sqlite://{}", dir.path().join("data/jiaoying.db").display());
    let e = jiaoying::store::schema::open_existing(&empty, 1)
        .await
        .err()
        .expect("refused");
    let e = format!("{e:#}");
    assert!(
        e.contains("jiaoying migrate") && !e.contains("no such table"),
        "{e}"
    );
    // A missing one is not created.
    let missing = dir.path().join("nothing.db");
    let e = jiaoying::store::schema::open_existing(&format!("sqlite://{}", missing.display()), 1)
        .await
        .err()
        .expect("refused");
    assert!(format!("{e:#}").contains("jiaoying migrate"));
    assert!(
        !missing.exists(),
        "a read-only command created {}",
        missing.display()
    );
}
