//! Documents that carry CAP alerts → each alert as a standalone document. A plain alert is
//! itself; an `<alerts>` list, an EDXL-DE distribution, and Atom/RSS feeds with alerts
//! embedded in their entries yield every alert inside, cut out of the decoded text with the
//! namespace declarations it inherited added to its start tag, so `cap::parse` reads it alone.
//! Feeds whose entries only link to CAP files yield nothing here: `links` lists those links.
//! Same safety as `parse`: size cap, no DTD, depth and node limits.

use roxmltree::{Document, Node, ParsingOptions};

use super::decode::{decode, nests_deeper_than};
use super::model::{CapError, CapVersion};
use super::parse::{MAX_DEPTH, NODES_LIMIT};

/// One alert found in a document: where it sat (`feed/entry[3]/content/alert`) and a
/// standalone CAP document (the input verbatim when the input is a plain alert).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub location: String,
    pub bytes: Vec<u8>,
}

/// What kind of document the root says this is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Alert,
    Alerts,
    Edxl,
    Atom,
    Rss,
}

/// Every CAP alert carried by `bytes`. `Err` only when the document itself is unreadable
/// (encoding, XML, limits) or is none of the kinds above.
pub fn extract(bytes: &[u8]) -> Result<Vec<Found>, CapError> {
    let text = decode(bytes)?;
    let doc = document(&text)?;
    let root = doc.root_element();
    let found = match kind(root)? {
        // Verbatim: the caller keeps these bytes (audit, signatures); parse judges the namespace.
        Kind::Alert => vec![Found {
            location: "alert".to_string(),
            bytes: bytes.to_vec(),
        }],
        Kind::Alerts => {
            let alerts: Vec<_> = root.children().filter(|c| is_cap_alert(*c)).collect();
            alerts.iter().map(|a| found(&text, *a)).collect()
        }
        Kind::Edxl => edxl(&text, root),
        Kind::Atom | Kind::Rss => entries(root)
            .into_iter()
            .flat_map(|entry| embedded(&text, entry))
            .collect(),
    };
    if found.len() > super::limits::MAX_ALERTS {
        return Err(CapError::new(
            "alert",
            format!(
                "{} alerts in one document, over the limit of {} (预警数量过多)",
                found.len(),
                super::limits::MAX_ALERTS
            ),
        ));
    }
    Ok(found)
}

/// The links of an Atom/RSS index's entries (Atom `link@href`, preferring a CAP media type or
/// `rel="alternate"`; RSS `link` text). Empty for anything that is not a feed.
pub fn links(bytes: &[u8]) -> Result<Vec<String>, CapError> {
    let text = decode(bytes)?;
    let doc = document(&text)?;
    let root = doc.root_element();
    if !matches!(kind(root), Ok(Kind::Atom | Kind::Rss)) {
        return Ok(Vec::new());
    }
    Ok(entries(root).into_iter().filter_map(entry_link).collect())
}

fn document(text: &str) -> Result<Document<'_>, CapError> {
    if text.trim().is_empty() {
        return Err(CapError::new("xml", "empty document: no CAP alert"));
    }
    if nests_deeper_than(text, MAX_DEPTH) {
        return Err(CapError::new(
            "xml",
            format!("elements nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
    };
    Document::parse_with_options(text, options).map_err(super::parse::xml_error)
}

fn kind(root: Node) -> Result<Kind, CapError> {
    Ok(match root.tag_name().name() {
        "alert" => Kind::Alert,
        "alerts" => Kind::Alerts,
        "EDXLDistribution" => Kind::Edxl,
        "feed" => Kind::Atom,
        "rss" | "RDF" => Kind::Rss,
        other => {
            let ns = root.tag_name().namespace().unwrap_or("(none)");
            return Err(CapError::new(
                other,
                format!(
                    "root element {other} (namespace {ns}) is not a CAP alert, an <alerts> list, \
                     EDXL-DE or an Atom/RSS feed"
                ),
            ));
        }
    })
}

fn is_cap_alert(n: Node) -> bool {
    n.is_element()
        && n.tag_name().name() == "alert"
        && n.tag_name()
            .namespace()
            .and_then(CapVersion::from_namespace)
            .is_some()
}

/// Atom entries, RSS 2.0 channel items and RSS 1.0 (RDF) items.
fn entries<'a, 'i>(root: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    let named = |n: Node<'a, 'i>, name: &str| -> Vec<Node<'a, 'i>> {
        n.children()
            .filter(|c| c.is_element() && c.tag_name().name() == name)
            .collect()
    };
    match root.tag_name().name() {
        "feed" => named(root, "entry"),
        "RDF" => named(root, "item"),
        _ => named(root, "channel")
            .into_iter()
            .flat_map(|c| named(c, "item"))
            .collect(),
    }
}

/// CAP alerts inside one feed entry: as XML below the entry, or as escaped text in its
/// `content` (some feeds send `type="text"` content holding the alert's markup).
fn embedded(text: &str, entry: Node) -> Vec<Found> {
    let alerts = alerts_below(text, entry);
    if !alerts.is_empty() {
        return alerts;
    }
    entry
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "content")
        .filter_map(|c| {
            let inner: String = c.children().filter_map(|t| t.text()).collect();
            let inner = inner.trim();
            let is_cap = (inner.starts_with("<?xml")
                || inner.starts_with("<alert")
                || inner.starts_with("<cap:alert"))
                && [CapVersion::V1_0, CapVersion::V1_1, CapVersion::V1_2]
                    .iter()
                    .any(|v| inner.contains(v.namespace()));
            is_cap.then(|| Found {
                location: format!("{}/text()", location(c)),
                bytes: inner.as_bytes().to_vec(),
            })
        })
        .collect()
}

/// Every `contentObject`: its embedded alerts, or, when its XML content holds none, an empty
/// document at that location so the gap is reported instead of silently skipped.
fn edxl(text: &str, root: Node) -> Vec<Found> {
    let mut out = Vec::new();
    for object in root
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "contentObject")
    {
        let alerts = alerts_below(text, object);
        if !alerts.is_empty() {
            out.extend(alerts);
            continue;
        }
        // Non-XML content objects (a PDF by URI) carry no alert and are not an error.
        if let Some(xml) = object
            .descendants()
            .find(|d| d.is_element() && d.tag_name().name() == "embeddedXMLContent")
        {
            out.push(Found {
                location: location(xml),
                bytes: Vec::new(),
            });
        }
    }
    out
}

/// The outermost CAP alerts below `node` (an alert quoted inside another is part of it).
fn alerts_below(text: &str, node: Node) -> Vec<Found> {
    node.descendants()
        .filter(|d| is_cap_alert(*d) && !d.ancestors().skip(1).any(is_cap_alert))
        .map(|a| found(text, a))
        .collect()
}

fn found(text: &str, alert: Node) -> Found {
    Found {
        location: location(alert),
        bytes: standalone(text, alert),
    }
}

/// `feed/entry[3]/content/alert`: local names from the root; repeatable containers always
/// carry their index, other elements only when they have same-named siblings.
fn location(node: Node) -> String {
    let mut parts: Vec<String> = node
        .ancestors()
        .filter(|n| n.is_element())
        .map(|n| {
            let name = n.tag_name().name();
            let Some(parent) = n.parent_element() else {
                return name.to_string();
            };
            let same = |c: &Node| c.is_element() && c.tag_name().name() == name;
            let index = n.prev_siblings().skip(1).filter(same).count();
            let repeated = parent.children().filter(same).count() > 1;
            if repeated || matches!(name, "entry" | "item" | "contentObject") {
                format!("{name}[{index}]")
            } else {
                name.to_string()
            }
        })
        .collect();
    parts.reverse();
    parts.join("/")
}

/// The element's source text as a document of its own: an XML declaration (the text is
/// UTF-8 now, whatever the container was) and the in-scope namespace declarations that its
/// start tag does not already carry.
fn standalone(text: &str, el: Node) -> Vec<u8> {
    let fragment = &text[el.range()];
    let name_end = fragment
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(fragment.len());
    let start_tag = &fragment[..start_tag_end(fragment)];
    let mut declarations = String::new();
    for ns in el.namespaces() {
        let attr = match ns.name() {
            Some("xml") => continue,
            Some(prefix) => format!("xmlns:{prefix}"),
            None => "xmlns".to_string(),
        };
        if !declares(start_tag, &attr) {
            let uri = ns
                .uri()
                .replace('&', "&amp;")
                .replace('"', "&quot;")
                .replace('<', "&lt;");
            declarations.push_str(&format!(" {attr}=\"{uri}\""));
        }
    }
    let mut out = String::with_capacity(fragment.len() + declarations.len() + 40);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&fragment[..name_end]);
    out.push_str(&declarations);
    out.push_str(&fragment[name_end..]);
    out.into_bytes()
}

/// Byte index just past the start tag's `>`, skipping `>` inside quoted attribute values.
fn start_tag_end(fragment: &str) -> usize {
    let mut quote = None;
    for (i, c) in fragment.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return i + 1,
            _ => {}
        }
    }
    fragment.len()
}

/// Whether the start tag declares attribute `attr` (`xmlns:cap = "…"` included).
fn declares(start_tag: &str, attr: &str) -> bool {
    start_tag.match_indices(attr).any(|(i, _)| {
        let before = start_tag[..i]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
        let after = start_tag[i + attr.len()..].trim_start().starts_with('=');
        before && after
    })
}

fn entry_link(entry: Node) -> Option<String> {
    let links: Vec<Node> = entry
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "link")
        .collect();
    fn href<'a>(n: &Node<'a, '_>) -> Option<&'a str> {
        n.attribute("href").map(str::trim).filter(|h| !h.is_empty())
    }
    let cap_typed = links
        .iter()
        .find(|l| l.attribute("type").is_some_and(|t| t.contains("cap")));
    let alternate = links
        .iter()
        .find(|l| l.attribute("rel").is_none_or(|r| r == "alternate"));
    if let Some(h) = cap_typed.or(alternate).and_then(href) {
        return Some(h.to_string());
    }
    if let Some(h) = links.iter().find_map(href) {
        return Some(h.to_string());
    }
    // RSS: <link>URL</link>.
    links
        .iter()
        .map(|l| l.text().unwrap_or("").trim())
        .find(|t| !t.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::parse;

    const ALERT: &str = r#"<cap:alert><cap:identifier>A1</cap:identifier><cap:sender>s@x</cap:sender>
<cap:sent>2025-07-01T08:30:00+08:00</cap:sent><cap:status>Actual</cap:status>
<cap:msgType>Alert</cap:msgType><cap:scope>Public</cap:scope></cap:alert>"#;

    #[test]
    fn plain_alert_is_itself_verbatim() {
        let bytes = ALERT.replace(
            "<cap:alert>",
            r#"<cap:alert xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2">"#,
        );
        let found = extract(bytes.as_bytes()).unwrap();
        assert_eq!(
            found,
            vec![Found {
                location: "alert".into(),
                bytes: bytes.into_bytes()
            }]
        );
    }

    #[test]
    fn atom_entries_carry_namespaces_from_the_feed() {
        let feed = format!(
            r#"<feed xmlns="http://www.w3.org/2005/Atom" xmlns:cap="urn:oasis:names:tc:emergency:cap:1.1">
<entry><id>1</id><content type="text/xml">{}</content></entry>
<entry><id>2</id><link href="http://x/2.xml"/></entry>
<entry><id>3</id><content type="text/xml">{}</content></entry></feed>"#,
            ALERT,
            ALERT.replace("A1", "A3")
        );
        let found = extract(feed.as_bytes()).unwrap();
        let locations: Vec<_> = found.iter().map(|f| f.location.as_str()).collect();
        assert_eq!(
            locations,
            ["feed/entry[0]/content/alert", "feed/entry[2]/content/alert"]
        );
        let a = parse(&found[1].bytes).unwrap();
        assert_eq!((a.identifier.as_str(), a.version), ("A3", CapVersion::V1_1));
        assert_eq!(links(feed.as_bytes()).unwrap(), ["http://x/2.xml"]);
    }

    #[test]
    fn alerts_root_and_escaped_rss_content() {
        let list = format!(
            r#"<alerts xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2">{ALERT}{ALERT}<other/></alerts>"#
        );
        let found = extract(list.as_bytes()).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].location, "alerts/alert[1]");
        assert!(found.iter().all(|f| parse(&f.bytes).is_ok()));

        let escaped =
            r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>E</identifier></alert>"#
                .replace('<', "&lt;");
        let rss = format!(
            "<rss><channel><item><link>http://y</link><content>{escaped}</content></item></channel></rss>"
        );
        let found = extract(rss.as_bytes()).unwrap();
        assert_eq!(found[0].location, "rss/channel/item[0]/content/text()");
        // Readable as its own document; refused only for the fields it lacks.
        assert_eq!(parse(&found[0].bytes).unwrap_err().path, "alert/sender");
        assert_eq!(links(rss.as_bytes()).unwrap(), ["http://y"]);
    }

    #[test]
    fn declared_prefix_is_not_repeated() {
        assert!(declares(r#"<a xmlns:cap = "u">"#, "xmlns:cap"));
        assert!(!declares(r#"<a xmlns:capx="u">"#, "xmlns:cap"));
        assert!(!declares(r#"<a xmlns:cap="u">"#, "xmlns"));
        assert_eq!(start_tag_end(r#"<a b=">">x</a>"#), 9);
    }

    #[test]
    fn unknown_roots_and_hostile_input_are_refused() {
        let e = extract(b"<html><body/></html>").unwrap_err();
        assert!(e.reason.contains("root element html"), "{e}");
        let xxe = br#"<!DOCTYPE feed [<!ENTITY x SYSTEM "file:///etc/passwd">]><feed>&x;</feed>"#;
        assert!(extract(xxe).unwrap_err().reason.contains("XXE"));
        assert!(extract(b"  ").unwrap_err().reason.contains("empty"));
    }
}
