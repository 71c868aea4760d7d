//! `jiaoying validate FILE…`: the lines an office reads before subscribing to a feed. Pure:
//! bytes in, lines out; `main` reads the files and prints. Nothing is stored or fetched.

use crate::cap::{self, Alert, CapError};

/// What one file produced: its lines and how many messages in it were refused.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checked {
    pub lines: Vec<String>,
    pub refused: usize,
}

/// Lines for one file. `verbose` adds an indented line per lenient fix under each `ok`.
pub fn check(file: &str, bytes: &[u8], verbose: bool) -> Checked {
    let found = match cap::extract(bytes) {
        Ok(found) => found,
        Err(e) => return refused_file(file, &e),
    };
    if found.is_empty() {
        let links = cap::links(bytes).map_or(0, |l| l.len());
        return Checked {
            lines: vec![format!(
                "index {file} 含 {links} 个 CAP 链接（未抓取）/ {links} CAP links, not fetched"
            )],
            refused: 0,
        };
    }
    let mut out = Checked::default();
    for f in found {
        // A plain alert is the file itself; anything else names where it sat.
        let name = if f.location == "alert" {
            file.to_string()
        } else {
            format!("{file}#{}", f.location)
        };
        match cap::parse(&f.bytes) {
            Ok(alert) => {
                out.lines.push(ok_line(&name, &alert));
                if verbose {
                    out.lines
                        .extend(alert.deviations.iter().map(|d| format!("  偏差 deviation {d}")));
                }
            }
            Err(e) => {
                out.lines.push(refused_line(&name, &e));
                out.refused += 1;
            }
        }
    }
    out
}

/// The file could not be read or is not XML at all.
pub fn refused_file(file: &str, e: &CapError) -> Checked {
    Checked {
        lines: vec![refused_line(file, e)],
        refused: 1,
    }
}

pub fn ok_line(name: &str, a: &Alert) -> String {
    let areas: usize = a.infos.iter().map(|i| i.areas.len()).sum();
    let c = a.classify();
    format!(
        "ok {name} {} {} {} infos={} areas={areas} {} {}",
        a.version.as_str(),
        a.msg_type.as_str(),
        a.status.as_str(),
        a.infos.len(),
        c.colour.map_or("none", |c| c.as_str()),
        c.hazard,
    )
}

pub fn refused_line(name: &str, e: &CapError) -> String {
    format!("refused {name} {}: {}", e.path, e.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: &str = r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>X1</identifier>
<sender>gx@cma</sender><sent>2025-07-01T08:30:00+08:00</sent><status>Exercise</status>
<msgType>Alert</msgType><scope>Public</scope><info><category>Met</category><event>暴雨红色预警信号</event>
<urgency>Immediate</urgency><severity>Extreme</severity><certainty>Likely</certainty>
<area><areaDesc>容县</areaDesc></area><area><areaDesc>北流市</areaDesc><Type>x</Type></area></info></alert>"#;

    #[test]
    fn ok_line_names_version_type_status_counts_colour_hazard() {
        let c = check("red.xml", RED.as_bytes(), false);
        assert_eq!(
            c.lines,
            ["ok red.xml 1.2 Alert Exercise infos=1 areas=2 red rainstorm"]
        );
        assert_eq!(c.refused, 0);
        let v = check("red.xml", RED.as_bytes(), true);
        assert_eq!(
            v.lines[1..],
            [
                "  偏差 deviation alert/info[0]/expires: missing; the receiving policy's default applies",
                "  偏差 deviation alert/info[0]/area[1]/Type: not a CAP element; ignored",
            ]
        );
    }

    #[test]
    fn refused_line_names_path_and_reason() {
        let bad = RED.replace("<scope>Public</scope>", "");
        let c = check("bad.xml", bad.as_bytes(), false);
        assert_eq!(c.lines, ["refused bad.xml alert/scope: missing"]);
        assert_eq!(c.refused, 1);
        let c = check("x.xml", b"<alert", false);
        assert!(
            c.lines[0].starts_with("refused x.xml xml: malformed XML"),
            "{:?}",
            c.lines
        );
    }

    #[test]
    fn containers_name_each_message_and_indexes_count_links() {
        let two = format!("<alerts>{}{}</alerts>", RED, RED.replace("Immediate", "Soon"));
        let c = check("list.xml", two.as_bytes(), false);
        assert_eq!(c.refused, 1);
        assert!(
            c.lines[0].starts_with("ok list.xml#alerts/alert[0] 1.2"),
            "{:?}",
            c.lines
        );
        assert_eq!(
            c.lines[1],
            "refused list.xml#alerts/alert[1] alert/info[0]/urgency: unknown value \"Soon\""
        );
        let index = r#"<feed xmlns="http://www.w3.org/2005/Atom"><entry><link href="a.xml"/></entry>
<entry><link rel="alternate" href="b.xml"/></entry></feed>"#;
        let c = check("index.atom", index.as_bytes(), false);
        assert_eq!(
            c.lines,
            ["index index.atom 含 2 个 CAP 链接（未抓取）/ 2 CAP links, not fetched"]
        );
        assert_eq!(c.refused, 0);
    }
}
