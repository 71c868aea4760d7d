//! `jiaoying preview`: who a warning would call, why and on which channel, against the store of
//! a running daemon; nothing is written.

use jiaoying::domain::{ChannelKind, RegionCode};
use jiaoying::store::roster::load_snapshot;
use jiaoying::target::plan::Snapshot;
use jiaoying::target::roster::{DutyShift, RiskPoint, Shift};
use jiaoying::target::targeting::Index;
use jiaoying::tools::preview::{preview, preview_with};

use crate::helpers::{demo_cap, spawn, Db, TestApp};

const TABLES: &[&str] = &[
    "warnings",
    "warning_rejects",
    "incidents",
    "callouts",
    "attempts",
    "jobs",
    "ledger",
];

async fn rows(app: &TestApp) -> Vec<i64> {
    let mut out = Vec::new();
    for t in TABLES {
        out.push(app.scalar(&format!("SELECT COUNT(*) FROM {t}")).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_names_people_reasons_and_channels_and_writes_nothing() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(app) = spawn(db, "").await else { continue };
        let settings = &app.core.settings;
        let store = &app.core.store;
        app.without_duty_rosters().await;
        let before = rows(&app).await;

        let p = preview(settings, store, &demo_cap(), None, app.core.now())
            .await
            .unwrap();
        assert_eq!(p.policy.as_deref(), Some("red"));
        let duty = p
            .calls
            .iter()
            .find(|l| l.contact_key == "c-450921-duty")
            .expect("容县's county duty leader is called");
        let sheet = std::fs::read_to_string(crate::helpers::repo().join("config/demo/contacts.csv")).unwrap();
        let name = sheet
            .lines()
            .find_map(|l| l.strip_prefix("c-450921-duty,"))
            .and_then(|rest| rest.split(',').next())
            .unwrap();
        assert_eq!((duty.name.as_str(), duty.county.as_str()), (name, "容县"));
        assert!(duty.reason.contains("区划代码 450921"), "{}", duty.reason);
        assert!(duty.reason.contains("规则 red") && duty.reason.contains("县防指值班领导"));
        assert_eq!(duty.channels, [ChannelKind::Sms]);
        assert!(duty.shift.is_none());
        // 容县 and its neighbours in the warning, none from elsewhere; one line per person.
        assert!(p
            .calls
            .iter()
            .all(|l| ["容县", "北流市", "陆川县", ""].contains(&l.county.as_str())));
        let mut keys: Vec<&str> = p.calls.iter().map(|l| l.contact_key.as_str()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), p.calls.len());

        // With a duty roster putting the B role on shift now, and a flash-flood point in 容县
        // watched by the city duty officer.
        let snap = load_snapshot(store).await.unwrap();
        let now = app.core.now();
        let shifts = vec![DutyShift {
            role: "county_duty".into(),
            region: RegionCode::parse("450921").unwrap(),
            contact_key: "c-450921-duty-b".into(),
            shift: Shift::Dates {
                from: now - 3_600_000,
                to: now + 3_600_000,
            },
        }];
        let point = RiskPoint {
            id: 1,
            key: "SH-001".into(),
            kind: "flash_flood".into(),
            name: "大坡山洪沟".into(),
            lat: 22.8,
            lon: 110.5,
            region: RegionCode::parse("450921100").unwrap(),
            people: 120,
            monitors: vec!["city-duty".into()],
        };
        let snap = Snapshot::new(
            Index::build(snap.index.regions().to_vec(), vec![point]),
            snap.contacts,
            shifts,
        );
        let p = preview_with(settings, &snap, &demo_cap(), None, now).unwrap();
        assert!(
            p.calls.iter().all(|l| l.contact_key != "c-450921-duty"),
            "off shift"
        );
        let b = p
            .calls
            .iter()
            .find(|l| l.contact_key == "c-450921-duty-b")
            .expect("on shift");
        assert_eq!(b.role, "county_duty");
        assert!(b.shift.as_deref().unwrap().contains("在班"), "{:?}", b.shift);
        assert_eq!(p.risk_points, 1);
        let monitor = p
            .calls
            .iter()
            .find(|l| l.contact_key == "city-duty")
            .expect("the monitor");
        assert_eq!(monitor.risk_point.as_deref(), Some("SH-001 大坡山洪沟"));
        assert!(monitor.area.contains("山洪危险区"), "{}", monitor.area);

        // The text for the office groups by county, Chinese first.
        let text = jiaoying::tools::preview::render(&p);
        assert!(text.starts_with("预览") && text.contains("\n容县\n"), "{text}");

        assert_eq!(rows(&app).await, before, "preview wrote nothing");
        app.stop().await;
    }
}
