//! `jiaoying import` on both backends, from the small sheets in tests/fixtures/import: CSV
//! and XLSX with Chinese headers, all-or-nothing on a bad row, `--skip-invalid`, `--dry-run`,
//! re-import upserts, and an SMS reply from a person's second phone.

use std::path::PathBuf;

use jiaoying::domain::Phone;
use jiaoying::ingest::import::{import, Kind};
use jiaoying::store::roster as db;
use jiaoying::target::roster::Shift;

use crate::helpers::{demo_cap, repo, spawn_with_roster, Db, FEED};

const POLICY: &str = r#"
[[policy]]
name = "red"
colours = ["red"]
hazards = ["*"]
roles = ["township_leader", "village_leader", "info_officer"]
channels = ["sms"]
deadline = "60s"
ladder = []
evacuation = false
"#;

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/import").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheets_import_sqlite() {
    sheets(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheets_import_postgres() {
    sheets(Db::Postgres).await;
}

async fn sheets(db: Db) {
    // The fixture folder is imported the way the demo's is: regions, contacts, risk points,
    // rosters.
    let Some(app) = spawn_with_roster(db, POLICY, &fixture("")).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL import test skipped");
        return;
    };
    let store = &app.core.store;
    let count = |table: &'static str| {
        let app = &app;
        async move { app.scalar(&format!("SELECT COUNT(*) FROM {table}")).await }
    };
    assert_eq!(count("regions").await, 4);
    assert_eq!(count("contacts").await, 3);
    assert_eq!(count("contact_phones").await, 5);
    let points = db::load_risk_points(store).await.unwrap();
    let dz = points.iter().find(|p| p.key == "DZ-1").unwrap();
    assert_eq!((dz.kind.as_str(), dz.people), ("geohazard", 12));
    assert_eq!(dz.monitors, ["v1-info", "v1-lead"]);
    let duty = db::load_duty(store).await.unwrap();
    assert_eq!(duty.len(), 2);
    assert!(duty.iter().any(|d| d.contact_key == "t-lead"
        && d.shift
            == Shift::Cron {
                expr: "0 0 8 * * *".into(),
                minutes: 1440,
                tz: "Asia/Shanghai".into()
            }));

    // XLSX, Chinese headers, phones typed as numbers, backups across the two new rows.
    let r = import(
        store,
        Kind::Contacts,
        &fixture("contacts.xlsx"),
        false,
        false,
        app.core.now(),
    )
    .await
    .unwrap();
    assert!(r.written && r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(count("contacts").await, 5);
    let mut tx = store.begin().await.unwrap();
    let found = tx
        .contacts_by_phone(&Phone::parse("13800138011").unwrap())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].key.as_str(), found[0].backup.as_deref()),
        ("v2-info", Some("v2-lead"))
    );

    // A bad XLSX row: reported with its spreadsheet row and header; nothing written.
    let r = import(
        store,
        Kind::Contacts,
        &fixture("contacts-bad.xlsx"),
        false,
        false,
        app.core.now(),
    )
    .await
    .unwrap();
    assert!(!r.written);
    let at: Vec<(u64, &str)> = r.errors.iter().map(|e| (e.line, e.column.as_str())).collect();
    assert_eq!(at, [(3, "手机号码")]);
    assert_eq!(count("contacts").await, 5);

    // A CSV with one good and two bad rows: nothing, then with --skip-invalid the good one.
    let r = import(
        store,
        Kind::Contacts,
        &fixture("contacts-bad.csv"),
        false,
        false,
        app.core.now(),
    )
    .await
    .unwrap();
    let at: Vec<(u64, &str)> = r.errors.iter().map(|e| (e.line, e.column.as_str())).collect();
    assert_eq!(at, [(3, "手机号"), (4, "AB角")], "{:?}", r.errors);
    assert!(!r.written);
    assert_eq!(count("contacts").await, 5);
    // v2-lead is already stored (from the XLSX): its name changes from 丁村长 only by upsert.
    let r = import(
        store,
        Kind::Contacts,
        &fixture("contacts-bad.csv"),
        false,
        true,
        app.core.now(),
    )
    .await
    .unwrap();
    assert!(r.written);
    assert_eq!((r.rows, r.errors.len()), (1, 2));
    assert_eq!(count("contacts").await, 5);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM contacts WHERE key IN ('v2-info', 'v2-x') AND name = '戊'")
            .await,
        0
    );

    // Dry run of the updated sheet writes nothing.
    let name_of =
        || app.scalar("SELECT COUNT(*) FROM contacts WHERE key = 'v1-lead' AND name = '乙村长（新）'");
    let r = import(
        store,
        Kind::Contacts,
        &fixture("contacts-updated.csv"),
        true,
        false,
        app.core.now(),
    )
    .await
    .unwrap();
    assert!(!r.written && r.errors.is_empty() && r.rows == 3);
    assert_eq!(name_of().await, 0);

    // Re-import: same count, changed name, the phone list replaced.
    let r = import(
        store,
        Kind::Contacts,
        &fixture("contacts-updated.csv"),
        false,
        false,
        app.core.now(),
    )
    .await
    .unwrap();
    assert!(r.written, "{:?}", r.errors);
    assert_eq!(count("contacts").await, 5);
    assert_eq!(name_of().await, 1);
    let mut tx = store.begin().await.unwrap();
    let old = tx
        .contacts_by_phone(&Phone::parse("0775-2831234").unwrap())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(old.is_empty(), "the replaced landline still finds {old:?}");
    // Re-importing the other kinds is safe too.
    for (kind, file) in [
        (Kind::RiskPoints, "risk_points.csv"),
        (Kind::Rosters, "rosters.csv"),
    ] {
        let r = import(store, kind, &fixture(file), false, false, app.core.now())
            .await
            .unwrap();
        assert!(r.written && r.errors.is_empty(), "{:?}", r.errors);
    }
    assert_eq!(count("risk_points").await, 2);
    assert_eq!(count("risk_point_monitors").await, 3);
    assert_eq!(count("duty_shifts").await, 2);

    // The warning calls v1-lead on the primary number; the answer comes from the second one.
    let (status, body) = app.post_cap(&demo_cap(), FEED).await;
    assert_eq!(status, 202, "{body}");
    app.gw
        .wait_until(30, "the first messages", |m| {
            m.iter().any(|m| m.to == "+8613800138001")
        })
        .await;
    let (status, body) = app.reply("+8613700137001", "收到").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "ack", "{body}");
    let acked = app
        .scalar(
            "SELECT COUNT(*) FROM callouts c JOIN contacts k ON k.id = c.contact_id \
             WHERE k.key = 'v1-lead' AND c.state = 'acknowledged'",
        )
        .await;
    assert_eq!(acked, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_with_and_without_coordinates_sqlite() {
    coordinates_after_none(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_with_and_without_coordinates_postgres() {
    coordinates_after_none(Db::Postgres).await;
}

/// A sheet whose first thousand regions have no coordinates and the rest have: on PostgreSQL
/// the first statement is kept prepared with its coordinates typed by those NULLs, and the next
/// statement of the same shape binds numbers into it. sqlx 0.8 types a NULL `f64` as `float4`
/// and a number as `float8`, so this failed ("incorrect binary data format in bind parameter")
/// until `rows::bind_all` typed the NULL itself; `bench/big postgres` found it.
async fn coordinates_after_none(db: Db) {
    let Some(app) = spawn_with_roster(db, POLICY, &fixture("")).await else {
        eprintln!("JIAOYING_PG_URL not set: PostgreSQL import test skipped");
        return;
    };
    let mut csv = String::from("code,name,level,parent,lat,lon\n");
    let mut rows = Vec::new();
    for t in 101..=103 {
        rows.push(format!("450921{t},镇{t},township,450921"));
        let villages = if t == 103 { 201..=602 } else { 201..=999 };
        for v in villages {
            rows.push(format!("450921{t}{v},村{t}{v},village,450921{t}"));
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let at = if i < 1000 {
            ",".to_string()
        } else {
            format!("22.{i:04},110.{i:04}")
        };
        csv.push_str(&format!("{row},{at}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regions.csv");
    std::fs::write(&path, csv).unwrap();
    let store = &app.core.store;
    let r = import(store, Kind::Regions, &path, false, false, app.core.now())
        .await
        .unwrap();
    assert!(r.written && r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.rows, 2003);
    let new = "substr(code, 1, 9) IN ('450921101', '450921102', '450921103')";
    let placed = format!("SELECT COUNT(*) FROM regions WHERE {new} AND lat IS NOT NULL");
    assert_eq!(app.scalar(&placed).await, 1003);
    let unplaced = format!("SELECT COUNT(*) FROM regions WHERE {new} AND lat IS NULL");
    assert_eq!(app.scalar(&unplaced).await, 1000);
    if db == Db::Postgres {
        // The planner's statistics are refreshed by the import itself, not a minute later by
        // autovacuum (`store::roster::refresh_statistics`): never analyzed, reltuples is -1.
        let analyzed = "SELECT COUNT(*) FROM pg_class WHERE oid = 'regions'::regclass AND reltuples >= 2003";
        assert_eq!(app.scalar(analyzed).await, 1, "regions analyzed after the import");
    }
    app.stop().await;
}
