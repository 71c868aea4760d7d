//! XML text → `Alert`: roxmltree with DTDs off and a node limit, then a walk over the CAP
//! elements matched by namespace + local name (prefixes mean nothing). Elements of other
//! namespaces are extensions and skipped, except an XML-DSig `<Signature>`, kept raw (never
//! trusted). Unknown elements in the CAP namespace are skipped with a deviation.

use chrono::{DateTime, FixedOffset};
use roxmltree::{Document, Node, ParsingOptions};

use super::decode::{decode, nests_deeper_than};
use sha2::{Digest, Sha256};

use super::model::{Alert, Area, CapError, CapVersion, Circle, Info, MsgType, Resource, Status};
use super::{limits, values};

/// Well above any real message (the 600 KB corpus files have a few thousand nodes).
pub const NODES_LIMIT: u32 = 200_000;
/// CAP nests five levels deep; anything near this is hostile.
pub const MAX_DEPTH: usize = 64;

/// Embedded resources above this (decoded) size are not decoded or hashed, only noted.
pub const MAX_DEREF_BYTES: usize = 4 * 1024 * 1024;

const ALERT_ELEMENTS: &[&str] = &[
    "identifier",
    "sender",
    "password", // CAP 1.0 only
    "sent",
    "status",
    "msgType",
    "source",
    "scope",
    "restriction",
    "addresses",
    "code",
    "note",
    "references",
    "incidents",
    "info",
];
const INFO_ELEMENTS: &[&str] = &[
    "language",
    "category",
    "event",
    "responseType",
    "urgency",
    "severity",
    "certainty",
    "audience",
    "eventCode",
    "effective",
    "onset",
    "expires",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "contact",
    "parameter",
    "resource",
    "area",
];
const RESOURCE_ELEMENTS: &[&str] = &["resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"];
const AREA_ELEMENTS: &[&str] = &["areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"];
const RESPONSE_TYPES: &[&str] = &[
    "Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None",
];
const XMLDSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

const SCOPES: &[&str] = &["Public", "Restricted", "Private"];
const URGENCIES: &[&str] = &["Immediate", "Expected", "Future", "Past", "Unknown"];
const SEVERITIES: &[&str] = &["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
const CERTAINTIES: &[&str] = &["Observed", "Likely", "Possible", "Unlikely", "Unknown"];
const CATEGORIES: &[&str] = &[
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
];

pub fn parse(bytes: &[u8]) -> Result<Alert, CapError> {
    let text = decode(bytes)?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
    };
    if nests_deeper_than(&text, MAX_DEPTH) {
        return Err(CapError::new(
            "xml",
            format!("elements nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    if text.trim().is_empty() {
        return Err(CapError::new("xml", "empty document: no CAP alert"));
    }
    let doc = Document::parse_with_options(&text, options).map_err(xml_error)?;
    let root = doc.root_element();
    let name = root.tag_name();
    let ns = name.namespace().unwrap_or("(none)");
    if name.name() != "alert" {
        return Err(CapError::new(
            "alert",
            format!("root element {} (namespace {ns}) is not a CAP alert", name.name()),
        ));
    }
    let version = CapVersion::from_namespace(ns)
        .ok_or_else(|| CapError::new("alert", format!("namespace {ns} is not CAP 1.0, 1.1 or 1.2")))?;
    let mut walk = Walk {
        version,
        deviations: Vec::new(),
        too_long: None,
    };
    walk.alert(root)
}

pub(crate) fn xml_error(e: roxmltree::Error) -> CapError {
    use roxmltree::Error as E;
    let reason = match e {
        E::DtdDetected => "DTD/entity declarations are refused (XXE)".to_string(),
        E::NodesLimitReached => format!("more than {NODES_LIMIT} XML nodes"),
        E::UnknownEntityReference(name, pos) => {
            format!("unknown entity &{name}; at {pos} (entity expansion is refused)")
        }
        other => format!("malformed XML: {other}"),
    };
    CapError::new("xml", reason)
}

struct Walk {
    version: CapVersion,
    deviations: Vec<String>,
    /// The first text found over its cap (`check_length`).
    too_long: Option<CapError>,
}

type Pairs = Vec<(String, String)>;

impl Walk {
    fn alert(&mut self, el: Node) -> Result<Alert, CapError> {
        let p = "alert";
        let identifier = self.required(el, p, "identifier")?;
        let sender = self.required(el, p, "sender")?;
        for (field, v) in [("identifier", &identifier), ("sender", &sender)] {
            // These go into reference triples, which split on commas and whitespace.
            if v.contains(|c: char| c == ',' || c.is_whitespace()) {
                return Err(CapError::new(
                    format!("{p}/{field}"),
                    format!("{v:?} contains a space or comma"),
                ));
            }
        }
        let sent = self.required(el, p, "sent")?;
        let sent_at = self.time_value(&format!("{p}/sent"), &sent)?;
        let status = self.required(el, p, "status")?;
        let status = Status::parse(&status).ok_or_else(|| unknown(p, "status", &status))?;
        let msg_type = self.required(el, p, "msgType")?;
        let msg_type = MsgType::parse(&msg_type).ok_or_else(|| unknown(p, "msgType", &msg_type))?;
        let scope = self.enumerated(el, p, "scope", SCOPES)?;
        let source = self.optional(el, p, "source");
        let note = self.optional(el, p, "note");
        let incidents = self.optional(el, p, "incidents");
        let restriction = self.optional(el, p, "restriction");
        let addresses = self.optional(el, p, "addresses");
        if scope == "Restricted" && restriction.is_none() {
            self.deviate(
                &format!("{p}/restriction"),
                "missing although scope is Restricted",
            );
        }
        if scope == "Private" && addresses.is_none() {
            self.deviate(&format!("{p}/addresses"), "missing although scope is Private");
        }
        let codes = self.all(el, "code");
        let signature = el
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == "Signature")
            .map(|sig| {
                if sig.tag_name().namespace() != Some(XMLDSIG_NS) {
                    self.deviate(&format!("{p}/Signature"), "not in the XML-DSig namespace");
                }
                sig.document().input_text()[sig.range()].to_string()
            });
        self.unknown_elements(el, p, ALERT_ELEMENTS);

        let refs_path = format!("{p}/references");
        let refs = self.optional(el, p, "references");
        let references = match refs {
            Some(text) => {
                let (r, note) = values::references(&text, self.version == CapVersion::V1_0)
                    .map_err(|e| CapError::new(&refs_path, e))?;
                if let Some(note) = note {
                    self.deviate(&refs_path, &note);
                }
                r
            }
            None => Vec::new(),
        };
        // Without references an Update/Cancel cannot be tied to what it changes.
        if references.is_empty() && matches!(msg_type, MsgType::Update | MsgType::Cancel) {
            let what = if kids(el, self.ns(), "references").next().is_some() {
                "empty"
            } else {
                "missing"
            };
            return Err(CapError::new(
                refs_path,
                format!(
                    "{what}; {} must reference the messages it changes",
                    msg_type.as_str()
                ),
            ));
        }

        self.count(el, p, "info", limits::MAX_INFOS)?;
        let infos = kids(el, self.ns(), "info")
            .enumerate()
            .map(|(i, info)| self.info(info, &format!("{p}/info[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(e) = self.too_long.take() {
            return Err(e);
        }

        Ok(Alert {
            version: self.version,
            identifier,
            sender,
            sent,
            sent_at,
            status,
            msg_type,
            scope,
            source,
            note,
            references,
            incidents,
            restriction,
            addresses,
            codes,
            signature,
            infos,
            deviations: std::mem::take(&mut self.deviations),
        })
    }

    fn info(&mut self, el: Node, p: &str) -> Result<Info, CapError> {
        let language = self
            .optional(el, p, "language")
            .unwrap_or_else(|| "en-US".to_string());
        let categories = self.enumerated_all(el, p, "category", CATEGORIES)?;
        if categories.is_empty() {
            return Err(CapError::new(format!("{p}/category"), "missing"));
        }
        let event = self.required(el, p, "event")?;
        let response_types = self.enumerated_all(el, p, "responseType", RESPONSE_TYPES)?;
        let urgency = self.enumerated(el, p, "urgency", URGENCIES)?;
        let severity = self.enumerated(el, p, "severity", SEVERITIES)?;
        let certainty = match self.required(el, p, "certainty")?.as_str() {
            // CAP 1.0's "Very Likely" became "Likely" in 1.1.
            "Very Likely" => {
                self.deviate(
                    &format!("{p}/certainty"),
                    "read CAP 1.0 \"Very Likely\" as Likely",
                );
                "Likely".to_string()
            }
            v if CERTAINTIES.contains(&v) => v.to_string(),
            v => return Err(unknown(p, "certainty", v)),
        };
        let event_codes = self.pairs(el, p, "eventCode")?;
        let effective = self.optional_time(el, p, "effective")?;
        let onset = self.optional_time(el, p, "onset")?;
        let expires = self.optional_time(el, p, "expires")?;
        if expires.is_none() {
            self.deviate(
                &format!("{p}/expires"),
                "missing; the receiving policy's default applies",
            );
        }
        let parameters = self.pairs(el, p, "parameter")?;
        self.count(el, p, "resource", limits::MAX_RESOURCES)?;
        self.count(el, p, "area", limits::MAX_AREAS)?;
        let resources = kids(el, self.ns(), "resource")
            .enumerate()
            .map(|(i, r)| self.resource(r, &format!("{p}/resource[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        self.unknown_elements(el, p, INFO_ELEMENTS);
        let areas = kids(el, self.ns(), "area")
            .enumerate()
            .map(|(i, a)| self.area(a, &format!("{p}/area[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Info {
            language,
            categories,
            event,
            urgency,
            severity,
            certainty,
            event_codes,
            effective,
            onset,
            expires,
            sender_name: self.optional(el, p, "senderName"),
            headline: self.optional(el, p, "headline"),
            description: self.optional(el, p, "description"),
            instruction: self.optional(el, p, "instruction"),
            web: self.optional(el, p, "web"),
            contact: self.optional(el, p, "contact"),
            parameters,
            response_types,
            audience: self.optional(el, p, "audience"),
            resources,
            areas,
        })
    }

    fn area(&mut self, el: Node, p: &str) -> Result<Area, CapError> {
        let desc = self.required(el, p, "areaDesc")?;
        self.count(el, p, "polygon", limits::MAX_SHAPES)?;
        self.count(el, p, "circle", limits::MAX_SHAPES)?;
        self.count(el, p, "geocode", limits::MAX_GEOCODES)?;
        let mut polygons = Vec::new();
        for (i, poly) in kids(el, self.ns(), "polygon").enumerate() {
            let path = format!("{p}/polygon[{i}]");
            let t = text(poly);
            if t.is_empty() {
                continue; // An empty <polygon/> means "no polygon" in real feeds.
            }
            let (ring, note) = values::polygon(&t).map_err(|e| CapError::new(&path, e))?;
            if let Some(note) = note {
                self.deviate(&path, &note);
            }
            polygons.push(ring);
        }
        let mut circles = Vec::new();
        for (i, c) in kids(el, self.ns(), "circle").enumerate() {
            let t = text(c);
            if t.is_empty() {
                continue;
            }
            let (lat, lon, radius_km) =
                values::circle(&t).map_err(|e| CapError::new(format!("{p}/circle[{i}]"), e))?;
            circles.push(Circle { lat, lon, radius_km });
        }
        let geocodes = self.pairs(el, p, "geocode")?;
        let mut number = |name: &str| -> Result<Option<f64>, CapError> {
            self.optional(el, p, name)
                .map(|v| values::number(&v).map_err(|e| CapError::new(format!("{p}/{name}"), e)))
                .transpose()
        };
        let altitude = number("altitude")?;
        let ceiling = number("ceiling")?;
        if ceiling.is_some() && altitude.is_none() {
            self.deviate(&format!("{p}/ceiling"), "given without altitude");
        }
        self.unknown_elements(el, p, AREA_ELEMENTS);
        Ok(Area {
            desc,
            polygons,
            circles,
            geocodes,
            altitude,
            ceiling,
        })
    }

    fn resource(&mut self, el: Node, p: &str) -> Result<Resource, CapError> {
        let desc = self.required(el, p, "resourceDesc")?;
        let mime_type = self.optional(el, p, "mimeType");
        if mime_type.is_none() && self.version == CapVersion::V1_2 {
            self.deviate(&format!("{p}/mimeType"), "missing (required in CAP 1.2)");
        }
        let size = match self.optional(el, p, "size") {
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| CapError::new(format!("{p}/size"), format!("{s:?} is not a byte count")))?,
            ),
            None => None,
        };
        let (mut deref_len, mut deref_sha256) = (None, None);
        if let Some(encoded) = self.optional(el, p, "derefUri") {
            let path = format!("{p}/derefUri");
            let compact: String = encoded.split_ascii_whitespace().collect();
            if compact.len() / 4 * 3 > MAX_DEREF_BYTES {
                self.deviate(&path, &format!("over {MAX_DEREF_BYTES} bytes; not decoded"));
            } else {
                use base64::Engine as _;
                match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
                    Ok(bytes) => {
                        deref_len = Some(bytes.len());
                        deref_sha256 = Some(hex::encode(Sha256::digest(&bytes)));
                    }
                    // The content is never used for dispatch, so a bad embedding is noted only.
                    Err(e) => self.deviate(&path, &format!("not base64 ({e}); ignored")),
                }
            }
        }
        self.unknown_elements(el, p, RESOURCE_ELEMENTS);
        Ok(Resource {
            desc,
            mime_type,
            size,
            uri: self.optional(el, p, "uri"),
            deref_len,
            deref_sha256,
            digest: self.optional(el, p, "digest"),
        })
    }

    /// CAP-namespace children that are not CAP elements: skipped, each noted once by name.
    fn unknown_elements(&mut self, el: Node, p: &str, known: &[&str]) {
        let ns = self.ns();
        let mut seen: Vec<&str> = Vec::new();
        for c in el.children().filter(|c| c.is_element()) {
            let name = c.tag_name().name();
            if c.tag_name().namespace() == Some(ns) && !known.contains(&name) && !seen.contains(&name) {
                seen.push(name);
                self.deviate(&format!("{p}/{name}"), "not a CAP element; ignored");
            }
        }
    }

    /// Trimmed, non-empty texts of every `name` child.
    fn all(&mut self, el: Node, name: &str) -> Vec<String> {
        let all: Vec<String> = kids(el, self.ns(), name)
            .map(text)
            .filter(|t| !t.is_empty())
            .collect();
        for t in &all {
            self.check_length(name, name, t);
        }
        all
    }

    fn ns(&self) -> &'static str {
        self.version.namespace()
    }

    fn deviate(&mut self, path: &str, what: &str) {
        self.deviations.push(format!("{path}: {what}"));
    }

    /// Trimmed text of the first `name` child; empty counts as absent.
    fn optional(&mut self, el: Node, p: &str, name: &str) -> Option<String> {
        let mut found = kids(el, self.ns(), name);
        let first = found.next().map(text);
        if found.next().is_some() {
            self.deviate(&format!("{p}/{name}"), "repeated; used the first");
        }
        if let Some(t) = &first {
            self.check_length(&format!("{p}/{name}"), name, t);
        }
        first.filter(|t| !t.is_empty())
    }

    /// Remembers the first text over its cap (`limits::max_chars`); the walk ends with it as
    /// the error, so every field read through here is capped without each caller checking.
    fn check_length(&mut self, path: &str, name: &str, t: &str) {
        let max = limits::max_chars(name);
        if self.too_long.is_none() && t.len() > max && t.chars().count() > max {
            self.too_long = Some(CapError::new(
                path,
                format!(
                    "{} characters, over the limit of {max} (字段过长)",
                    t.chars().count()
                ),
            ));
        }
    }

    /// An error when an element repeats more often than its cap (`limits`).
    fn count(&self, el: Node, p: &str, name: &str, max: usize) -> Result<(), CapError> {
        let n = kids(el, self.ns(), name).count();
        if n > max {
            return Err(CapError::new(
                format!("{p}/{name}"),
                format!("{n} elements, over the limit of {max} (数量过多)"),
            ));
        }
        Ok(())
    }

    fn required(&mut self, el: Node, p: &str, name: &str) -> Result<String, CapError> {
        let present = kids(el, self.ns(), name).next().is_some();
        self.optional(el, p, name)
            .ok_or_else(|| CapError::new(format!("{p}/{name}"), if present { "empty" } else { "missing" }))
    }

    fn enumerated(&mut self, el: Node, p: &str, name: &str, allowed: &[&str]) -> Result<String, CapError> {
        let v = self.required(el, p, name)?;
        if allowed.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(unknown(p, name, &v))
        }
    }

    /// Every `name` child, each one of `allowed`.
    fn enumerated_all(
        &self,
        el: Node,
        p: &str,
        name: &str,
        allowed: &[&str],
    ) -> Result<Vec<String>, CapError> {
        kids(el, self.ns(), name)
            .enumerate()
            .map(|(i, c)| {
                let v = text(c);
                match allowed.contains(&v.as_str()) {
                    true => Ok(v),
                    false => Err(unknown(p, &format!("{name}[{i}]"), &v)),
                }
            })
            .collect()
    }

    fn time_value(&mut self, path: &str, s: &str) -> Result<DateTime<FixedOffset>, CapError> {
        let t = values::time(s).map_err(|e| CapError::new(path, e))?;
        if t.lenient {
            self.deviate(path, &format!("time {s:?} is not strict CAP 1.2 form"));
        }
        Ok(t.at)
    }

    fn optional_time(
        &mut self,
        el: Node,
        p: &str,
        name: &str,
    ) -> Result<Option<DateTime<FixedOffset>>, CapError> {
        match self.optional(el, p, name) {
            Some(s) => self.time_value(&format!("{p}/{name}"), &s).map(Some),
            None => Ok(None),
        }
    }

    /// `valueName`/`value` children (1.1, 1.2) or CAP 1.0's `name=value` text.
    fn pairs(&mut self, el: Node, p: &str, name: &str) -> Result<Pairs, CapError> {
        let mut out = Vec::new();
        for (i, pair) in kids(el, self.ns(), name).enumerate() {
            let path = format!("{p}/{name}[{i}]");
            let value_name = self.optional(pair, &path, "valueName");
            let value = self.optional(pair, &path, "value").unwrap_or_default();
            match value_name {
                Some(n) => out.push((n, value)),
                None if self.version == CapVersion::V1_0 => match text(pair).split_once('=') {
                    Some((n, v)) => out.push((n.trim().to_string(), v.trim().to_string())),
                    None => return Err(CapError::new(path, "not a name=value pair")),
                },
                None => return Err(CapError::new(format!("{path}/valueName"), "missing")),
            }
        }
        Ok(out)
    }
}

fn unknown(p: &str, name: &str, value: &str) -> CapError {
    CapError::new(format!("{p}/{name}"), format!("unknown value {value:?}"))
}

/// Child elements with this CAP namespace and local name.
fn kids<'a, 'i, 's>(
    el: Node<'a, 'i>,
    ns: &'static str,
    name: &'s str,
) -> impl Iterator<Item = Node<'a, 'i>> + use<'a, 'i, 's> {
    el.children().filter(move |c| {
        c.is_element() && c.tag_name().namespace() == Some(ns) && c.tag_name().name() == name
    })
}

/// All text below the element (comments and CDATA boundaries may split it), trimmed.
fn text(el: Node) -> String {
    let s: String = el
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    s.trim().to_string()
}
