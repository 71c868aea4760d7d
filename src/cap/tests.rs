//! Whole-message tests: an inline Chinese CAP 1.2 warning, real corpus files, hostile input.
//! The walk over every corpus file is in `corpus_tests`.

use super::*;
use crate::domain::Colour;

fn corpus(rel: &str) -> Vec<u8> {
    let path = format!("{}/{rel}", super::corpus_dir());
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse_ok(rel: &str) -> Alert {
    parse(&corpus(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn refused(xml: &str) -> CapError {
    match parse(xml.as_bytes()) {
        Ok(a) => panic!("accepted: {a:?}"),
        Err(e) => e,
    }
}

/// A CMA-style red rainstorm signal for 容县 (450921); `{polygon}` and `{info2}` vary per test.
fn rainstorm(polygon: &str, info2: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier> 45092141600000_20250701083000 </identifier>
  <sender>450900000000@gx.cma.example</sender>
  <sent>2025-07-01T08:30:00+08:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  {info2}
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨红色预警</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <effective>2025-07-01T08:30:00+08:00</effective>
    <expires>2025-07-01T20:30+08:00</expires>
    <senderName>玉林市气象台</senderName>
    <headline>容县气象台发布暴雨红色预警信号</headline>
    <description>过去3小时容县降雨量已达100毫米以上，且降雨将持续。</description>
    <area>
      <areaDesc>容县</areaDesc>
      <polygon>{polygon}</polygon>
      <geocode><valueName>GB2260</valueName><value>450921</value></geocode>
    </area>
  </info>
</alert>"#
    )
}

const SQUARE: &str = "22.5,110.0 22.5,110.2 22.7,110.2 22.7,110.0 22.5,110.0";

#[test]
fn chinese_rainstorm_red() {
    let a = parse(rainstorm(SQUARE, "").as_bytes()).unwrap();
    assert_eq!(a.version, CapVersion::V1_2);
    assert_eq!(a.identifier, "45092141600000_20250701083000"); // trimmed
    assert_eq!(a.sender, "450900000000@gx.cma.example");
    assert_eq!(a.sent, "2025-07-01T08:30:00+08:00");
    assert_eq!(a.sent_at.offset().local_minus_utc(), 8 * 3600);
    assert_eq!((a.status, a.msg_type), (Status::Actual, MsgType::Alert));
    let info = a.preferred_info().unwrap();
    assert_eq!(info.event, "暴雨红色预警");
    let area = &info.areas[0];
    assert_eq!(area.desc, "容县");
    assert_eq!(area.polygons[0].len(), 5);
    assert_eq!(area.polygons[0][0], (22.5, 110.0));
    assert_eq!(area.geocodes, vec![("GB2260".into(), "450921".into())]);
    let c = a.classify();
    assert_eq!(c.colour, Some(Colour::Red));
    assert_eq!(c.hazard, "rainstorm");
    // Minute-precision expiry is accepted and flagged.
    assert_eq!(a.expires_at().unwrap().to_rfc3339(), "2025-07-01T20:30:00+08:00");
    assert_eq!(a.deviations.len(), 1, "{:?}", a.deviations);
    assert!(a.deviations[0].starts_with("alert/info[0]/expires: "));
    // Serialises and round-trips.
    let json = serde_json::to_string(&a).unwrap();
    let back: Alert = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
}

#[test]
fn two_infos_pick_zh_cn() {
    let en = r#"<info><language>en-US</language><category>Met</category>
        <event>Rainstorm Red Warning</event><urgency>Immediate</urgency>
        <severity>Extreme</severity><certainty>Likely</certainty>
        <expires>2025-07-01T23:00:00+08:00</expires></info>"#;
    let a = parse(rainstorm(SQUARE, en).as_bytes()).unwrap();
    assert_eq!(a.infos.len(), 2);
    assert_eq!(a.infos[0].language, "en-US");
    assert_eq!(a.preferred_info().unwrap().language, "zh-CN");
    // Latest expiry across infos, not the preferred one's.
    assert_eq!(a.expires_at().unwrap().to_rfc3339(), "2025-07-01T23:00:00+08:00");
}

#[test]
fn unclosed_polygon_is_closed_with_deviation() {
    let a = parse(rainstorm("22.5,110.0 22.5,110.2 22.7,110.2 22.7,110.0", "").as_bytes()).unwrap();
    let ring = &a.infos[0].areas[0].polygons[0];
    assert_eq!((ring.len(), ring[4]), (5, (22.5, 110.0)));
    assert!(a
        .deviations
        .contains(&"alert/info[0]/area[0]/polygon[0]: closed an unclosed ring".to_string()));
}

#[test]
fn missing_expires_is_accepted_and_recorded() {
    let doc = rainstorm(SQUARE, "").replace("<expires>2025-07-01T20:30+08:00</expires>", "");
    let a = parse(doc.as_bytes()).unwrap();
    assert_eq!(a.expires_at(), None);
    assert_eq!(
        a.deviations,
        ["alert/info[0]/expires: missing; the receiving policy's default applies"]
    );
}

#[test]
fn resources_signature_and_header_extras() {
    let extras = r#"<resource><resourceDesc>音频</resourceDesc><mimeType>audio/mpeg</mimeType>
        <size>3</size><derefUri>YWJj</derefUri><digest>ff</digest></resource>
        <resource><resourceDesc>page</resourceDesc><uri>http://x/p.html</uri></resource>"#;
    let doc = rainstorm(SQUARE, "")
        .replace("<senderName>", &format!("{extras}<senderName>"))
        .replace(
            "<scope>Public</scope>",
            "<scope>Restricted</scope><restriction>防汛办</restriction><code>IPAWSv1.0</code><code>演练</code>",
        )
        .replace(
            "</alert>",
            r#"<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignatureValue>AAAA</SignatureValue></Signature></alert>"#,
        );
    let a = parse(doc.as_bytes()).unwrap();
    assert_eq!(a.restriction.as_deref(), Some("防汛办"));
    assert_eq!(a.codes, ["IPAWSv1.0", "演练"]);
    assert!(a.signature.as_deref().unwrap().starts_with("<Signature xmlns="));
    let r = &a.infos[0].resources;
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].deref_len, r[0].size), (Some(3), Some(3)));
    // SHA-256 of "abc".
    assert_eq!(
        r[0].deref_sha256.as_deref(),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(r[1].uri.as_deref(), Some("http://x/p.html"));
    assert!(a
        .deviations
        .iter()
        .any(|d| d.starts_with("alert/info[0]/resource[1]/mimeType: missing")));
    let e = refused(&doc.replace("<size>3</size>", "<size>big</size>"));
    assert_eq!(e.path, "alert/info[0]/resource[0]/size");
    let e = refused(&doc.replace("<resourceDesc>page</resourceDesc>", ""));
    assert_eq!(e.to_string(), "alert/info[0]/resource[1]/resourceDesc: missing");
}

#[test]
fn bad_polygons_are_refused_with_path() {
    let e = refused(&rainstorm("22.5,110.0 22.7,110.2 22.5,110.0", ""));
    assert_eq!(e.path, "alert/info[0]/area[0]/polygon[0]");
    assert!(e.reason.contains("at least 4"), "{e}");
    let e = refused(&rainstorm("110.0,22.5 110.2,22.5 110.2,22.7 110.0,22.5", ""));
    assert_eq!(e.path, "alert/info[0]/area[0]/polygon[0]");
    assert!(e.reason.contains("latitude 110"), "{e}");
}

#[test]
fn required_and_enumerated_fields() {
    let ok = rainstorm(SQUARE, "");
    let e = refused(&ok.replace("<scope>Public</scope>", ""));
    assert_eq!(e.to_string(), "alert/scope: missing");
    let e = refused(&ok.replace("Immediate", "Foobar"));
    assert_eq!(e.path, "alert/info[0]/urgency");
    assert!(e.reason.contains("Foobar"));
    let e = refused(&ok.replace("<areaDesc>容县</areaDesc>", ""));
    assert_eq!(e.path, "alert/info[0]/area[0]/areaDesc");
    let e = refused(&ok.replace("<category>Met</category>", ""));
    assert_eq!(e.path, "alert/info[0]/category");
    let e = refused(&ok.replace("2025-07-01T08:30:00+08:00</sent>", "2025-07-01T08:30:00</sent>"));
    assert_eq!(e.path, "alert/sent");
    let e = refused(&ok.replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>"));
    assert_eq!(e.path, "alert/references");
}

#[test]
fn prefix_is_irrelevant_namespace_is_not() {
    let prefixed = rainstorm(SQUARE, "")
        .replace("<alert xmlns=", "<c:alert xmlns:c=")
        .replace("</alert>", "</c:alert>");
    // Only the root is prefixed: children are then in no namespace and are not CAP.
    assert_eq!(refused(&prefixed).path, "alert/identifier");
    let foreign = rainstorm(SQUARE, "").replace("cap:1.2", "cap:9.9");
    let e = refused(&foreign);
    assert_eq!(e.path, "alert");
    assert!(e.reason.contains("urn:oasis:names:tc:emergency:cap:9.9"), "{e}");
}

#[test]
fn corpus_files_that_parse() {
    let w = parse_ok("google-cap-library/weather.cap.xml");
    assert_eq!((w.version, w.msg_type), (CapVersion::V1_1, MsgType::Alert));
    assert_eq!(w.infos[0].event_codes, vec![("SAME".into(), "FFA".into())]);
    assert_eq!(w.infos[0].parameters[0], ("WMOHEADER".into(), String::new()));
    assert_eq!(w.infos[0].areas[0].geocodes.len(), 2);
    assert_eq!(w.classify().hazard, "flash_flood");
    assert_eq!(w.classify().colour, Some(Colour::Orange)); // Severe
    assert!(w.deviations.is_empty(), "{:?}", w.deviations);

    let au = parse_ok("google-cap-library/australia.cap.xml"); // cap: prefix
    assert_eq!(au.version, CapVersion::V1_2);
    assert_eq!(au.infos.len(), 2);
    assert_eq!(au.infos[0].categories, ["Fire", "Met"]);
    let c = au.infos[0].areas[0].circles[0];
    assert_eq!((c.lat, c.lon, c.radius_km), (-35.3888, 147.0598, 25.0));
    assert_eq!(au.classify().hazard, "fire");

    let ca = parse_ok("google-cap-library/canada.cap.xml");
    assert_eq!(ca.msg_type, MsgType::Update);
    assert_eq!(ca.references.len(), 2);
    assert_eq!(ca.references[0].identifier, "2.49.0.1.124.a3f342a4.2012");
    assert_eq!(ca.references[1].sent, "2012-05-02T21:55:21-00:00");
    assert_eq!(ca.infos.len(), 2);
    let areas: usize = ca.infos.iter().map(|i| i.areas.len()).sum();
    assert_eq!(areas, 4);
    assert!(ca
        .infos
        .iter()
        .flat_map(|i| &i.areas)
        .all(|a| a.polygons.len() == 1));
    assert_eq!(ca.note, None); // <note/> is absent
    assert_eq!(ca.preferred_info().unwrap().language, "en-CA");
    assert_eq!(ca.classify().hazard, "thunderstorm");

    let eq = parse_ok("google-cap-library/earthquake_signed.cap.xml"); // ISO-8859-1 + Signature
    assert_eq!(eq.infos[0].language, "en-US"); // default
    assert_eq!(eq.infos[0].areas[0].circles[0].radius_km, 0.0);
    assert_eq!(eq.classify().hazard, "earthquake");
    assert_eq!(eq.classify().colour, None); // severity Unknown

    let min = parse_ok("google-cap-library/no_optional_fields.cap.xml");
    assert!(min.infos.is_empty());
    assert_eq!(
        min.sender,
        "http://earthquake.usgs.gov/research/monitoring/anss/neic/"
    );
    assert_eq!(min.expires_at(), None);
    assert_eq!(min.classify().hazard, "other");

    let v10 = parse_ok("oasiscap/v1dot0_appendix_adot2.xml");
    assert_eq!(v10.version, CapVersion::V1_0);
    assert_eq!(v10.infos[0].event_codes, vec![("same".into(), "SVR".into())]);
}

#[test]
fn corpus_files_that_are_refused() {
    let cases = [
        ("google-cap-library/invalid.cap.xml", "alert/scope", "missing"),
        (
            "google-cap-library/canada_errors.cap.xml",
            "alert/references",
            "empty",
        ),
        (
            "capparselib/invalid_xmlns.cap.xml",
            "alert",
            "urn:oasis:names:tc:emergency:alerts:1.2",
        ),
        ("google-cap-library/xee.atom.xml", "xml", "(XXE)"),
        (
            "google-cap-library/weather.atom.xml",
            "alert",
            "root element feed",
        ),
        (
            "capparselib/pelmorex.atom.xml",
            "xml",
            "invalid UTF-8 at byte offset",
        ),
    ];
    for (file, path, reason) in cases {
        let e = parse(&corpus(file)).expect_err(file);
        assert_eq!(e.path, path, "{file}: {e}");
        assert!(e.reason.contains(reason), "{file}: {e}");
    }
}

#[test]
fn dtd_and_entity_attacks_are_refused() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol3;</identifier></alert>"#;
    assert!(refused(laughs).reason.contains("XXE"));
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><note>&x;</note></alert>"#;
    assert!(refused(xxe).reason.contains("XXE"));
    let undeclared = r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&x;</alert>"#;
    assert!(refused(undeclared).reason.contains("entity"));
}

#[test]
fn absurd_input_is_refused() {
    let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
    assert!(refused(&deep).reason.contains("deeper than 64"));
    let wide = format!("<a>{}</a>", "<b/>".repeat(300_000));
    assert!(refused(&wide).reason.contains("XML nodes"));
    let big = vec![b' '; MAX_BYTES + 1];
    assert!(parse(&big).unwrap_err().reason.contains("5242881 bytes"));
    assert!(refused("").path == "xml");
    assert!(refused("<alert").reason.starts_with("malformed XML"));
    let ebcdic = b"<?xml version=\"1.0\" encoding=\"EBCDIC-CP-US\"?><alert/>";
    assert!(parse(ebcdic)
        .unwrap_err()
        .reason
        .starts_with("encoding EBCDIC-CP-US is not supported"));
    let many = format!(
        "{} 22.5,110.0",
        "22.5,110.0 22.6,110.1 ".repeat(MAX_POLYGON_POINTS / 2 + 1)
    );
    let e = refused(&rainstorm(&many, ""));
    assert_eq!(e.path, "alert/info[0]/area[0]/polygon[0]");
    assert!(e.reason.contains("over the limit of 10000"), "{e}");
}
