//! Property tests: hostile bytes never panic, generated alerts round-trip, geometry bounds.

use proptest::prelude::*;

use super::values;
use super::*;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[derive(Debug, Clone)]
struct Gen {
    identifier: String,
    status: Status,
    event: String,
    severity: &'static str,
    offset_min: i32,
    unix: i64,
    areas: Vec<GenArea>,
}

fn lat() -> impl Strategy<Value = f64> {
    (-90_000i32..=90_000).prop_map(|v| f64::from(v) / 1000.0)
}
fn lon() -> impl Strategy<Value = f64> {
    (-180_000i32..=180_000).prop_map(|v| f64::from(v) / 1000.0)
}

/// An area as generated: description, polygon points, circle (lat, lon, radius km).
type GenArea = (String, Vec<(f64, f64)>, Option<(f64, f64, f64)>);

fn area() -> impl Strategy<Value = GenArea> {
    (
        "[a-zA-Z0-9 &<>容县北流市]{1,20}",
        prop::collection::vec((lat(), lon()), 3..12),
        prop::option::of((lat(), lon(), 0u32..500_000).prop_map(|(a, o, r)| (a, o, f64::from(r) / 1000.0))),
    )
        .prop_filter("area text must not be blank", |(d, _, _)| !d.trim().is_empty())
}

fn generated() -> impl Strategy<Value = Gen> {
    (
        "[A-Za-z0-9_.:-]{1,40}",
        prop::sample::select(vec![
            Status::Actual,
            Status::Exercise,
            Status::Test,
            Status::System,
            Status::Draft,
        ]),
        prop::sample::select(vec![
            "暴雨红色预警信号",
            "台风橙色预警",
            "Flood Warning",
            "地质灾害气象风险预警",
        ]),
        prop::sample::select(vec!["Extreme", "Severe", "Moderate", "Minor", "Unknown"]),
        (-12 * 60..=14 * 60i32).prop_map(|m| m - m % 15),
        0i64..4_000_000_000,
        prop::collection::vec(area(), 0..4),
    )
        .prop_map(
            |(identifier, status, event, severity, offset_min, unix, areas)| Gen {
                identifier,
                status,
                event: event.to_string(),
                severity,
                offset_min,
                unix,
                areas,
            },
        )
}

fn xml(g: &Gen) -> (String, String) {
    let offset = chrono::FixedOffset::east_opt(g.offset_min * 60).unwrap();
    let sent = chrono::DateTime::from_timestamp(g.unix, 0)
        .unwrap()
        .with_timezone(&offset)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let areas: String = g
        .areas
        .iter()
        .map(|(desc, ring, circle)| {
            let points: Vec<String> = ring.iter().map(|(a, o)| format!("{a},{o}")).collect();
            let circle = circle.map_or(String::new(), |(a, o, r)| format!("<circle>{a},{o} {r}</circle>"));
            format!(
                "<area><areaDesc>{}</areaDesc><polygon>{}</polygon>{circle}</area>",
                escape(desc),
                points.join(" ")
            )
        })
        .collect();
    let doc = format!(
        r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>{}</identifier>
<sender>s@x</sender><sent>{sent}</sent><status>{}</status><msgType>Alert</msgType><scope>Public</scope>
<info><category>Met</category><event>{}</event><urgency>Immediate</urgency><severity>{}</severity>
<certainty>Likely</certainty>{areas}</info></alert>"#,
        g.identifier,
        g.status.as_str(),
        g.event,
        g.severity
    );
    (doc, sent)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes);
        let _ = extract(&bytes);
    }

    /// Near-XML noise reaches deeper than random bytes.
    #[test]
    fn xml_shaped_noise_never_panics(parts in prop::collection::vec(prop::sample::select(vec![
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">", "</alert>", "<info>", "</info>",
        "<area>", "</area>", "<polygon>", "</polygon>", "1,2 3,4", "<circle>", "</circle>", "91,0 -1",
        "<identifier>x</identifier>", "<feed>", "</feed>", "<entry>", "</entry>", "&amp;", "&x;",
        "<![CDATA[<a>]]>", "<!--", "-->", "<?xml version=\"1.0\" encoding=\"GBK\"?>", "\u{FEFF}", "\"", "'",
    ]), 0..40)) {
        let text = parts.concat();
        let _ = parse(text.as_bytes());
        let _ = extract(text.as_bytes());
    }

    #[test]
    fn generated_alert_round_trips(g in generated()) {
        let (doc, sent) = xml(&g);
        let a = parse(doc.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{doc}")))?;
        prop_assert_eq!(&a.identifier, &g.identifier);
        prop_assert_eq!(&a.sent, &sent);
        prop_assert_eq!(a.sent_at.timestamp(), g.unix);
        prop_assert_eq!(a.status, g.status);
        let info = &a.infos[0];
        prop_assert_eq!(&info.event, &g.event);
        prop_assert_eq!(info.severity.as_str(), g.severity);
        prop_assert_eq!(info.areas.len(), g.areas.len());
        for (area, (desc, ring, circle)) in info.areas.iter().zip(&g.areas) {
            prop_assert_eq!(&area.desc, desc.trim());
            // The ring comes back closed, in CAP (lat, lon) order.
            let mut closed = ring.clone();
            if closed.first() != closed.last() {
                closed.push(closed[0]);
            }
            prop_assert_eq!(&area.polygons[0], &closed);
            prop_assert_eq!(area.circles.first().map(|c| (c.lat, c.lon, c.radius_km)), *circle);
        }
        // Through extract too: a plain alert comes back verbatim.
        let found = extract(doc.as_bytes()).unwrap();
        prop_assert_eq!(&found[0].bytes, &doc.into_bytes());
    }

    #[test]
    fn polygons_and_circles_respect_bounds(a in -200.0f64..200.0, o in -400.0f64..400.0, r in -10.0f64..10.0) {
        let ring = format!("{a},{o} 1,1 1,2 {a},{o}");
        let in_range = (-90.0..=90.0).contains(&a) && (-180.0..=180.0).contains(&o);
        match values::polygon(&ring) {
            Ok((points, _)) => {
                prop_assert!(in_range);
                prop_assert!(points.iter().all(|(x, y)| x.abs() <= 90.0 && y.abs() <= 180.0));
            }
            Err(_) => prop_assert!(!in_range),
        }
        prop_assert_eq!(values::circle(&format!("{a},{o} {r}")).is_ok(), in_range && r >= 0.0);
    }
}
