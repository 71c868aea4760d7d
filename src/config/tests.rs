use secrecy::ExposeSecret;

use super::policy::in_window;
use super::*;
use crate::domain::RegionLevel;

#[test]
fn an_empty_secret_file_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, " \n").unwrap();
    let e = secret("answer.secret", None, path.to_str())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("answer.secret: ") && e.contains("is empty"), "{e}");
    std::fs::write(&path, "s3cret\n").unwrap();
    let s = secret("answer.secret", None, path.to_str()).unwrap().unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&s), "s3cret");
}

#[test]
fn defaults_parse_and_pick_policies() {
    let s = Settings::from_toml("").unwrap();
    assert_eq!(s.database.url, "sqlite://data/jiaoying.db");
    let red = s.policy_for(Colour::Red, "rainstorm").unwrap();
    assert_eq!(red.deadline, Duration::from_secs(300));
    assert_eq!(
        s.ladder(red),
        &[
            Rung::Repeat {
                channel: Some(ChannelKind::Voice)
            },
            Rung::Backup,
            Rung::Superior,
            Rung::Duty {
                role: "county_duty".into()
            },
            Rung::Knock {
                role: Rung::KNOCKER.into()
            }
        ]
    );
    assert_eq!(s.policy_for(Colour::Blue, "x").unwrap().name, "yellow-blue");
    assert_eq!(s.policy_for(Colour::Red, "heat").unwrap().name, "heat-cold");
}

#[test]
fn policy_errors_name_the_policy_and_step() {
    let bad = |toml: &str| Settings::from_toml(toml).unwrap_err().to_string();
    let base = "[[policy]]\nname = \"a\"\nroles = [\"x\"]\nchannels = [\"sms\"]\ndeadline = \"5m\"\n";
    let e = bad(&format!(
        "{base}[[policy]]\nname = \"b\"\nroles = [\"x\"]\nchannels = [\"sms\"]\ndeadline = \"5m\"\n\
         [[policy]]\nname = \"red\"\nroles = [\"x\"]\nchannels = [\"sms\"]\ndeadline = \"5m\"\nladder = [\"repeat\", \"bakup\"]\n"
    ));
    assert!(
        e.starts_with("policy[2] (red).ladder[1]: unknown step \"bakup\""),
        "{e}"
    );
    let e = bad(&format!("{base}ladder = [\"repeat:fax\"]"));
    assert!(e.contains("policy[0] (a).ladder[0]") && e.contains("fax"), "{e}");
    let e = bad(&format!("{base}colours = [\"purple\"]"));
    assert!(
        e.contains("policy[0] (a).colours[0]") && e.contains("purple"),
        "{e}"
    );
    let e = bad(&format!("{base}quiet_hours = \"22-7\""));
    assert!(e.contains("policy[0] (a).quiet_hours"), "{e}");
    let e = bad(&format!("{base}[policy.templates]\nzh = \"{{{{ event \"\n"));
    assert!(e.contains("policy[0] (a).templates.zh"), "{e}");
    let e = bad(&format!("{base}levels = [\"V\"]"));
    assert!(e.contains("policy[0] (a).levels[0]"), "{e}");
    let ok = Settings::from_toml(&format!(
        "{base}ladder = [\"duty:county_duty\", \"repeat:voice\"]"
    ))
    .unwrap();
    // A deployment's [[policy]] list replaces the default one.
    assert_eq!(ok.policies.len(), 1);
    assert_eq!(
        String::from(ok.policies[0].ladder.clone().unwrap()[1].clone()),
        "repeat:voice"
    );
}

#[test]
fn policies_match_on_every_given_field() {
    let s = Settings::from_toml("").unwrap();
    let subject = |colour, hazard, event, level| Subject {
        colour,
        hazard,
        event,
        level,
        region_levels: &[RegionLevel::Village],
    };
    let p = Policy {
        events: vec!["山洪".into()],
        levels: vec![Level::I, Level::II],
        region_levels: vec![RegionLevel::Village],
        ..s.policy_for(Colour::Red, "flash_flood").unwrap().clone()
    };
    assert!(p.matches(&subject(
        Some(Colour::Red),
        "flash_flood",
        "山洪灾害红色预警",
        Some(Level::I)
    )));
    assert!(!p.matches(&subject(
        Some(Colour::Red),
        "flash_flood",
        "暴雨红色预警",
        Some(Level::I)
    )));
    assert!(!p.matches(&subject(
        Some(Colour::Red),
        "flash_flood",
        "山洪灾害红色预警",
        Some(Level::III)
    )));
    assert!(!p.matches(&subject(
        Some(Colour::Red),
        "flash_flood",
        "山洪灾害红色预警",
        None
    )));
    assert!(!p.matches(&subject(
        Some(Colour::Yellow),
        "flash_flood",
        "山洪灾害红色预警",
        Some(Level::I)
    )));
    let mut s2 = subject(
        Some(Colour::Red),
        "flash_flood",
        "山洪灾害红色预警",
        Some(Level::I),
    );
    s2.region_levels = &[RegionLevel::County];
    assert!(!p.matches(&s2));
}

#[test]
fn quiet_hours_move_non_urgent_call_outs_to_sms_without_voice() {
    let s = Settings::from_toml("").unwrap();
    let p = Policy {
        channels: vec![ChannelKind::Voice, ChannelKind::Email, ChannelKind::Sms],
        quiet_hours: Some("22:00-07:00".into()),
        ..s.policies[0].clone()
    };
    // 2026-06-01 23:30 and 12:00 Beijing time.
    let night = chrono::DateTime::parse_from_rfc3339("2026-06-01T23:30:00+08:00")
        .unwrap()
        .timestamp_millis();
    let noon = chrono::DateTime::parse_from_rfc3339("2026-06-01T12:00:00+08:00")
        .unwrap()
        .timestamp_millis();
    let (q, note) = p.at(Some(Colour::Yellow), night);
    assert_eq!(q.channels, [ChannelKind::Sms, ChannelKind::Email]);
    assert!(note.unwrap().contains("静默时段"));
    let (q, note) = p.at(Some(Colour::Red), night);
    assert_eq!(q.channels, p.channels);
    assert!(note.is_none());
    let (q, note) = p.at(Some(Colour::Blue), noon);
    assert_eq!((q.channels, note), (p.channels.clone(), None));
    assert!(in_window(
        22 * 60,
        7 * 60,
        chrono::DateTime::parse_from_rfc3339("2026-06-01T06:59:00+08:00")
            .unwrap()
            .timestamp_millis()
    ));
    assert!(!in_window(
        22 * 60,
        7 * 60,
        chrono::DateTime::parse_from_rfc3339("2026-06-01T07:00:00+08:00")
            .unwrap()
            .timestamp_millis()
    ));
}

#[test]
fn errors_name_the_key() {
    let e = Settings::from_toml("[channels]\nsms = [\"nope\"]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("channels.sms") && e.contains("nope"), "{e}");
    let e = Settings::from_toml("[http]\nbindd = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bindd"), "{e}");
}

#[test]
fn feeds_are_checked_by_key() {
    let feed = |extra: &str| {
        format!("[[feed]]\nname = \"cma\"\nurl = \"https://x.test/a.atom\"\nkind = \"index\"\n{extra}")
    };
    let s = Settings::from_toml(&feed("schedule = \"0 */2 * * * *\"")).unwrap();
    assert_eq!(s.feeds[0].kind, FeedKind::Index);
    assert_eq!(s.feeds[0].retries, 2);
    assert!(s.feeds[0].senders.is_empty());
    assert!(Settings::from_toml("").unwrap().feeds.is_empty());
    for (extra, want) in [
        ("schedule = \"*/2 * * *\"", "feed[0].schedule"),
        ("schedule = \"* * * * * *\"\ntimeout = \"0s\"", "feed[0].timeout"),
        (
            "schedule = \"* * * * * *\"\nauth_header = \"Authorization\"",
            "feed[0].auth_header",
        ),
        ("schedule = \"* * * * * *\"\nauth_env = \"X\"", "feed[0].auth_env"),
        ("schedule = \"* * * * * *\"\nkind2 = 1", "kind2"),
    ] {
        let e = Settings::from_toml(&feed(extra)).unwrap_err().to_string();
        assert!(e.contains(want), "{extra}: {e}");
    }
    let bad_url = feed("schedule = \"* * * * * *\"").replace("https://x.test/a.atom", "ftp://x");
    let e = Settings::from_toml(&bad_url).unwrap_err().to_string();
    assert!(e.contains("feed[0].url"), "{e}");
    let twice = format!(
        "{}\n{}",
        feed("schedule = \"* * * * * *\""),
        feed("schedule = \"* * * * * *\"")
    );
    let e = Settings::from_toml(&twice).unwrap_err().to_string();
    assert!(e.contains("feed[1].name"), "{e}");
}

#[test]
fn response_levels_pick_their_policy() {
    let s = Settings::from_toml("").unwrap();
    let p = s.policy_for_level(Level::II, "flood").unwrap();
    assert_eq!(p.name, "response");
    assert!(s
        .policies
        .iter()
        .all(|p| p.levels.is_empty() || p.colours.is_empty()));
    let only_flood = "[[policy]]\nname = \"r\"\ncolours = []\nlevels = [\"I\"]\nhazards = [\"flood\"]\nroles = [\"x\"]\nchannels = [\"sms\"]\ndeadline = \"1m\"";
    let s = Settings::from_toml(only_flood).unwrap();
    assert!(s.policy_for_level(Level::I, "flood").is_some());
    assert!(s.policy_for_level(Level::II, "flood").is_none());
    assert!(s.policy_for_level(Level::I, "typhoon").is_none());
}

#[test]
fn secrets_are_read_wrapped_and_settings_never_print_them() {
    const VALUE: &str = "s3cret-config-test-value";
    std::env::set_var("JIAOYING_CONFIG_TEST_SECRET", VALUE);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, format!("{VALUE}\n")).unwrap();
    let s = Settings::from_toml(&format!(
        "[answer]\nsecret_env = \"JIAOYING_CONFIG_TEST_SECRET\"\n\
         [gateways.mail]\nkind = \"smtp\"\nhost = \"x\"\nport = 25\nfrom = \"a@b.c\"\npassword_file = {file:?}\n\
         [[feed]]\nname = \"f\"\nurl = \"https://x.test/\"\nkind = \"cap\"\nschedule = \"* * * * * *\"\n\
         auth_header = \"X-Api-Key\"\nauth_env = \"JIAOYING_CONFIG_TEST_SECRET\"\n"
    ))
    .unwrap();
    let from_env = secret("answer.secret", s.answer.secret_env.as_deref(), None)
        .unwrap()
        .unwrap();
    let from_file = secret("gateways.mail.password", None, Some(file.to_str().unwrap()))
        .unwrap()
        .unwrap();
    assert_eq!(from_env.expose_secret(), VALUE);
    assert_eq!(from_file.expose_secret(), VALUE, "a file's secret is trimmed");
    let shown = format!("{s:?} {from_env:?} {from_file:?}");
    assert!(!shown.contains(VALUE), "{shown}");
    assert!(shown.contains("JIAOYING_CONFIG_TEST_SECRET") && shown.contains("REDACTED"));
}

#[test]
fn roles_nest() {
    assert!(Role::Admin.allows(Role::Feed));
    assert!(Role::Operator.allows(Role::Viewer));
    assert!(!Role::Viewer.allows(Role::Operator));
    assert!(!Role::Feed.allows(Role::Viewer));
}
