use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};

use super::*;
use crate::domain::callout::State;
use crate::domain::{Callout, EvacuationRow, Incident, RegionCode};
use crate::record::report::{summarise, with_timeline, LedgerHead, ResponseSpan, WarningSeen};

// 2026-07-01 08:00:00 Beijing, a fixed instant.
const T0: i64 = 1_782_864_000_000;

fn callout(id: i64, code: &str, state: State, answer_after_s: Option<i64>) -> Callout {
    Callout {
        id,
        incident_id: 1,
        contact_id: id,
        parent_id: None,
        rung: 0,
        region_code: RegionCode::parse(code).unwrap(),
        place: format!("地点{id}"),
        role: "村干部".into(),
        reason: String::new(),
        state,
        deadline_at: T0 + 600_000,
        created_at: T0,
        sent_at: Some(T0 + 1_000),
        delivered_at: None,
        acked_at: answer_after_s.map(|s| T0 + s * 1000),
        ack_late: false,
        contact_key: format!("k{id}"),
        contact_name: format!("张{id}"),
        phone: Some(format!("+86138000000{id:02}")),
        email: None,
        channels: Vec::new(),
        backup_key: None,
        superior_key: None,
        ack_method: answer_after_s.map(|_| "sms".into()),
        upgrade: None,
        knock: false,
        round: None,
    }
}

fn sample() -> Report<()> {
    let incident = Incident {
        id: 7,
        code: "A7".into(),
        warning_id: Some(1),
        title: "容县暴雨红色预警".into(),
        event: "暴雨红色预警".into(),
        description: String::new(),
        instruction: String::new(),
        colour: Some(crate::domain::Colour::Red),
        hazard: "rainstorm".into(),
        policy: (),
        drill: false,
        state: crate::domain::IncidentState::Active,
        created_at: T0,
        expires_at: None,
        closed_at: Some(T0 + 7_200_000),
    };
    let mut escalated = callout(4, "450921104201", State::Acknowledged, Some(900));
    escalated.rung = 1;
    escalated.parent_id = Some(3);
    escalated.created_at = T0 + 600_000;
    let callouts = vec![
        callout(1, "450921104201", State::Acknowledged, Some(20)),
        callout(2, "450921104202", State::Acknowledged, Some(150)),
        callout(3, "450921104203", State::Escalated, None),
        escalated,
        callout(5, "450922101201", State::Unreached, None),
    ];
    let evacuations = [
        EvacuationRow {
            reporter: "a".into(),
            region_code: RegionCode::parse("450921104201").unwrap(),
            moved: 30,
            threatened: Some(40),
            at: T0 + 1_000_000,
        },
        EvacuationRow {
            reporter: "b".into(),
            region_code: RegionCode::parse("450921104").unwrap(),
            moved: 5,
            threatened: None,
            at: T0 + 1_100_000,
        },
        EvacuationRow {
            reporter: "c".into(),
            region_code: RegionCode::parse("450922101201").unwrap(),
            moved: 12,
            threatened: None,
            at: T0 + 1_200_000,
        },
    ];
    let names: BTreeMap<RegionCode, String> = [
        ("450921", "容县"),
        ("450921104", "六王镇"),
        ("450922", "陆川县"),
        ("4509", "玉林市"),
    ]
    .into_iter()
    .map(|(c, n)| (RegionCode::parse(c).unwrap(), n.to_string()))
    .collect();
    let mut r = summarise(incident, callouts, &evacuations, &[], &names);
    with_timeline(
        &mut r,
        &[WarningSeen {
            id: 1,
            received_at: T0 - 5_000,
            msg_type: "Alert".into(),
            event: "暴雨红色预警".into(),
        }],
        &[ResponseSpan {
            id: 2,
            hazard: "flood".into(),
            level: "Ⅳ级".into(),
            regions: vec!["450921".into()],
            actor: "operator:duty".into(),
            started_at: T0 + 300_000,
            ended_at: Some(T0 + 3_600_000),
            ended_by: Some("operator:duty".into()),
        }],
    );
    r.ledger = Some(LedgerHead {
        seq: 42,
        hash: "ab".repeat(32),
    });
    r
}

fn opts() -> Options {
    Options::new(T0 + 86_400_000)
}

#[test]
fn formats_parse_from_their_names_and_nothing_else() {
    for name in Format::NAMES {
        assert!(name.parse::<Format>().is_ok(), "{name}");
    }
    assert!("pdf".parse::<Format>().is_err());
    assert!("Xlsx".parse::<Format>().is_err());
}

#[test]
fn the_report_rolls_evacuation_up_and_orders_its_timeline() {
    let r = sample();
    let total = |level: &str, code: &str| {
        r.evacuation
            .iter()
            .find(|e| e.level == level && e.code == code)
            .map(|e| (e.moved, e.threatened))
    };
    assert_eq!(total("village", "450921104201"), Some((30, Some(40))));
    assert_eq!(total("township", "450921104"), Some((35, Some(40))));
    assert_eq!(total("county", "450921"), Some((35, Some(40))));
    assert_eq!(total("county", "450922"), Some((12, None)));
    assert_eq!(total("city", "4509"), Some((47, Some(40))));
    assert_eq!(
        total("village", "450921104"),
        None,
        "a township report is no village"
    );
    let kinds: Vec<&str> = r.timeline.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "warning",
            "opened",
            "first_send",
            "first_answer",
            "response",
            "escalation",
            "response_end",
            "stand_down"
        ]
    );
    let counts: Vec<usize> = r.answer_histogram.iter().map(|b| b.count).collect();
    // 20 s, 150 s (2–5 min) and 300 s (5–10 min: the bound is exclusive).
    assert_eq!(counts, [1, 0, 0, 1, 1, 0, 0, 0]);
}

#[test]
fn csv_starts_with_a_bom_and_holds_the_township_table() {
    let out = render(&sample(), Format::Csv, &opts()).unwrap();
    assert!(out.bytes.starts_with("\u{feff}".as_bytes()));
    assert_eq!(out.filename, "jiaoying-report-7-townships.csv");
    let text = String::from_utf8(out.bytes).unwrap();
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("区划代码 code,名称 name,叫应 called"));
    assert_eq!(lines.next().unwrap(), "450921104,六王镇,4,3,75.0%,0,1,0,35");
    let o = Options {
        table: Some("unreached".into()),
        ..opts()
    };
    let text = String::from_utf8(render(&sample(), Format::Csv, &o).unwrap().bytes).unwrap();
    assert!(
        text.contains("张5,村干部,地点5,+8613800000005,未叫应,5"),
        "{text}"
    );
    let o = Options {
        table: Some("nope".into()),
        ..opts()
    };
    assert!(render(&sample(), Format::Csv, &o).is_err());
}

#[test]
fn html_is_self_contained_printable_on_a4_and_draws_the_chart() {
    let out = render(&sample(), Format::Html, &opts()).unwrap();
    assert_eq!(out.content_type, "text/html; charset=utf-8");
    let html = String::from_utf8(out.bytes).unwrap();
    assert!(html.contains("@page { size: A4"), "the A4 rule");
    assert!(html.contains("<svg class=\"chart\""), "the chart");
    assert_eq!(html.matches("<rect ").count(), 8, "one bar per bucket");
    assert!(html.contains("乡镇应答率 <span class=\"en\">Answer rate per township</span>"));
    assert!(html.contains(&"ab".repeat(32)), "the ledger head");
    assert!(html.contains("2026-07-02 08:00:00"), "generated at, Beijing time");
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no external asset"
    );
    assert!(!html.contains("<script"), "no script");
    assert!(!html.contains("<link"), "no external stylesheet");
}

#[test]
fn the_workbook_reads_back_with_one_sheet_per_table_and_typed_cells() {
    let out = render(&sample(), Format::Xlsx, &opts()).unwrap();
    assert_eq!(out.filename, "jiaoying-report-7.xlsx");
    let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(out.bytes)).unwrap();
    let names = wb.sheet_names();
    assert_eq!(
        names,
        [
            "概况",
            "时间线",
            "乡镇应答率",
            "县区汇总",
            "应答用时分布",
            "未叫应人员",
            "上门叫应",
            "转移人数",
            "调度轮次",
            "叫应明细"
        ]
    );
    let towns = wb.worksheet_range("乡镇应答率").unwrap();
    assert_eq!(
        towns.get_value((0, 0)),
        Some(&Data::String("区划代码\ncode".into()))
    );
    assert_eq!(towns.get_value((1, 1)), Some(&Data::String("六王镇".into())));
    assert_eq!(
        towns.get_value((1, 2)),
        Some(&Data::Float(4.0)),
        "numbers as numbers"
    );
    assert_eq!(towns.get_value((1, 4)), Some(&Data::Float(0.75)));
    let timeline = wb.worksheet_range("时间线").unwrap();
    match timeline.get_value((2, 0)) {
        Some(Data::DateTime(d)) => {
            // Incident opened at T0: 2026-07-01 08:00 Beijing.
            // Excel's serial day number from 1899-12-30; 25569 is 1970-01-01.
            let wall = ((d.as_f64() - 25569.0) * 86400.0).round() as i64;
            assert_eq!(wall, T0 / 1000 + 8 * 3600, "Beijing wall-clock time");
        }
        other => panic!("a date-time cell, got {other:?}"),
    }
    let evac = wb.worksheet_range("转移人数").unwrap();
    let city = (1..evac.height() as u32)
        .find(|&y| evac.get_value((y, 1)) == Some(&Data::String("4509".into())))
        .expect("the city row");
    assert_eq!(evac.get_value((city, 3)), Some(&Data::Float(47.0)));
}

#[test]
fn text_and_json_name_the_ledger_head() {
    let text = String::from_utf8(render(&sample(), Format::Text, &opts()).unwrap().bytes).unwrap();
    assert!(text.contains("seq 42"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&render(&sample(), Format::Json, &opts()).unwrap().bytes).unwrap();
    assert_eq!(json["ledger"]["seq"], 42);
    assert_eq!(json["generated_at"], T0 + 86_400_000);
    assert_eq!(json["timeline"][0]["kind"], "warning");
}
