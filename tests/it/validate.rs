//! `jiaoying validate` as an office runs it: no config, no database, one line per message,
//! exit 1 when any is refused.

use std::path::Path;
use std::process::Command;

fn validate(files: &[&Path]) -> (i32, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    // Run where there is no config file and no database: validate must need neither.
    let out = Command::new(env!("CARGO_BIN_EXE_jiaoying"))
        .arg("validate")
        .args(files)
        .current_dir(dir.path())
        .env_remove("JIAOYING_CONFIG")
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "validate wrote a file"
    );
    (out.status.code().unwrap(), lines)
}

#[test]
fn valid_containers_pass_and_one_refusal_fails_the_run() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cap");
    let gbk = fixtures.join("rainstorm-gbk.cap.xml");
    let list = fixtures.join("alerts-root.gb18030.xml");
    let (code, lines) = validate(&[&gbk, &list]);
    assert_eq!(code, 0, "{lines:?}");
    let g = gbk.display();
    let l = list.display();
    assert_eq!(
        lines,
        [
            format!("ok {g} 1.2 Alert Actual infos=1 areas=2 red rainstorm"),
            format!("ok {l}#alerts/alert[0] 1.2 Alert Actual infos=1 areas=1 red geohazard"),
            format!("ok {l}#alerts/alert[1] 1.2 Alert Actual infos=1 areas=3 orange typhoon"),
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.xml");
    let edxl = std::fs::read_to_string(fixtures.join("edxl-two.xml")).unwrap();
    std::fs::write(&bad, edxl.replacen("<cap:scope>Public</cap:scope>", "", 1)).unwrap();
    let missing = dir.path().join("missing.xml");
    let (code, lines) = validate(&[&gbk, &bad, &missing]);
    assert_eq!(code, 1, "{lines:?}");
    let b = bad.display();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("ok "));
    assert_eq!(
        lines[1],
        format!("refused {b}#EDXLDistribution/contentObject[0]/xmlContent/embeddedXMLContent/alert alert/scope: missing")
    );
    assert_eq!(
        lines[2],
        format!("ok {b}#EDXLDistribution/contentObject[1]/xmlContent/embeddedXMLContent/alert 1.2 Alert Actual infos=1 areas=2 yellow waterlogging")
    );
    assert!(
        lines[3].starts_with(&format!("refused {} file: cannot read:", missing.display())),
        "{lines:?}"
    );
}
