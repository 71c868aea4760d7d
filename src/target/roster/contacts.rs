//! Contacts (责任人): name, phones, e-mail, role, region or risk point, AB角, superior,
//! preferred channels.

use std::collections::HashSet;

use super::sheet::{check_rows, refuse_duplicates, Sheet};
use super::{Contact, Known, Parsed, RowError};
use crate::domain::{ChannelKind, Phone};

const COLUMNS: &[(&str, bool)] = &[
    ("key", true),
    ("name", true),
    ("phone", false),
    ("email", false),
    ("role", true),
    ("region", false),
    ("risk_point", false),
    ("backup", false),
    ("superior", false),
    ("channels", false),
];

/// A checked contact row: the contact (its `phone` is the first of `phones`), every phone,
/// and the risk point it monitors when the row names one.
#[derive(Debug, Clone)]
pub struct ContactRow {
    pub contact: Contact,
    pub phones: Vec<Phone>,
    pub risk_point: Option<String>,
}

/// `backup` and `superior` must name a key in the same file or in `known.contacts`; the
/// region (or the risk point, whose region the contact then takes) must be known.
pub fn parse_contacts(sheet: &Sheet, known: &Known) -> Parsed<ContactRow> {
    let (mut p, mut lines) = check_rows(sheet, COLUMNS, |r| {
        let key = r.required("key")?.to_string();
        let name = r.required("name")?.to_string();
        let phones = Phone::parse_list(r.get("phone")).map_err(|e| r.err("phone", e))?;
        let email = match r.get("email") {
            "" => None,
            e if e.contains('@') && !e.contains(char::is_whitespace) => Some(e.to_string()),
            e => return Err(r.err("email", format!("{e:?} is not an e-mail address"))),
        };
        if phones.is_empty() && email.is_none() {
            return Err(r.err(
                "phone",
                "a contact needs a phone number or an e-mail (手机与邮箱至少填一项)",
            ));
        }
        let role = r.required("role")?.to_string();
        let risk_point = r.opt("risk_point");
        let region = match (r.get("region"), &risk_point) {
            ("", None) => return Err(r.err("region", "empty: give a region code or a risk point (必填)")),
            ("", Some(k)) => known.risk_points.get(k).cloned().ok_or_else(|| {
                r.err(
                    "risk_point",
                    format!("no risk point with key {k:?}: import risk points first"),
                )
            })?,
            (code, _) => known.region(code).map_err(|e| r.err("region", e))?,
        };
        if let Some(k) = &risk_point {
            if !known.risk_points.contains_key(k) {
                return Err(r.err(
                    "risk_point",
                    format!("no risk point with key {k:?}: import risk points first"),
                ));
            }
        }
        let mut channels = Vec::new();
        for c in r
            .get("channels")
            .split([';', ',', ' ', '、', '；'])
            .filter(|s| !s.is_empty())
        {
            channels.push(channel(c).ok_or_else(|| {
                r.err(
                    "channels",
                    format!("unknown channel {c:?} (sms/voice/email/webhook)"),
                )
            })?);
        }
        Ok(ContactRow {
            contact: Contact {
                id: 0,
                key,
                name,
                phone: phones.first().cloned(),
                email,
                role,
                region,
                backup: r.opt("backup"),
                superior: r.opt("superior"),
                channels,
            },
            phones,
            risk_point,
        })
    });
    refuse_duplicates(sheet, &mut p, &mut lines, "key", |c| c.contact.key.clone());
    let keys: HashSet<&str> = p.rows.iter().map(|c| c.contact.key.as_str()).collect();
    let mut bad = Vec::new();
    for (c, line) in p.rows.iter().zip(&lines) {
        for (col, k) in [("backup", &c.contact.backup), ("superior", &c.contact.superior)] {
            if let Some(k) = k {
                if !keys.contains(k.as_str()) && !known.contacts.contains(k) {
                    bad.push(RowError {
                        line: *line,
                        column: sheet.header_of(col),
                        reason: format!("no contact with key {k:?} (查无此人)"),
                    });
                }
            }
        }
    }
    // A row pointing at nobody is not written even with --skip-invalid.
    let bad_lines: HashSet<u64> = bad.iter().map(|e| e.line).collect();
    let mut it = lines.iter();
    p.rows
        .retain(|_| !bad_lines.contains(it.next().expect("one line per row")));
    p.errors.extend(bad);
    p.errors.sort_by_key(|e| e.line);
    p
}

fn channel(s: &str) -> Option<ChannelKind> {
    ChannelKind::parse(&s.to_ascii_lowercase()).or(match s {
        "短信" => Some(ChannelKind::Sms),
        "语音" | "电话" => Some(ChannelKind::Voice),
        "邮件" | "邮箱" => Some(ChannelKind::Email),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::sheet::read;
    use super::*;

    fn known() -> Known {
        let mut k = Known::default();
        k.regions
            .extend(["450921104".to_string(), "450921104201".to_string()]);
        k.risk_points.insert(
            "SK-1".into(),
            crate::domain::RegionCode::parse("450921104201").unwrap(),
        );
        k
    }

    #[test]
    fn contacts_check_references_and_phones() {
        let csv = "key,name,phone,email,role,region,backup,superior,channels\n\
                   a,甲,13800138000,,township_leader,450921104,b,,\n\
                   b,乙,138001380,,township_duty,450921104,a,,\n\
                   c,丙,13800138002,,village_leader,450921104201,zz,,sms;fax\n\
                   d,丁,13800138003,,village_leader,450921999,,,\n";
        let p = parse_contacts(&read(csv.as_bytes(), "contacts").unwrap(), &known());
        let reasons: Vec<String> = p.errors.iter().map(|e| e.to_string()).collect();
        // b is refused for its phone, so a's backup points at nobody.
        assert_eq!(p.errors.len(), 4, "{reasons:?}");
        assert!(p.rows.is_empty(), "rows with bad references are dropped too");
        assert!(reasons[0].starts_with("line 2, column backup"));
        assert!(reasons[1].starts_with("line 3, column phone"));
        assert!(reasons[2].starts_with("line 4, column channels") && reasons[2].contains("fax"));
        assert!(reasons[3].starts_with("line 5, column region") && reasons[3].contains("450921999"));
    }

    #[test]
    fn chinese_headers_several_phones_and_risk_points() {
        let csv = "编号,姓名,手机号,职务,区划代码,风险点,AB角,上级,通知方式\n\
                   m1,甲,13800138000、0775-2831234,risk_monitor,,SK-1,m2,,短信;语音\n\
                   m2,乙,13900139000,risk_monitor,450921104201,,m1,,\n\
                   m3,丙,13900139001,risk_monitor,,SK-9,,,\n";
        let p = parse_contacts(&read(csv.as_bytes(), "contacts").unwrap(), &known());
        assert_eq!(p.rows.len(), 2, "{:?}", p.errors);
        let m1 = &p.rows[0];
        assert_eq!(m1.phones.len(), 2);
        assert_eq!(m1.contact.phone.as_ref().unwrap().as_str(), "+8613800138000");
        assert_eq!(m1.contact.region.as_str(), "450921104201");
        assert_eq!(m1.risk_point.as_deref(), Some("SK-1"));
        assert_eq!(m1.contact.channels, [ChannelKind::Sms, ChannelKind::Voice]);
        assert_eq!((p.errors[0].line, p.errors[0].column.as_str()), (4, "风险点"));
    }
}
