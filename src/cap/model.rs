//! The parsed CAP message as plain data: alert, info, area, the closed enumerations and the
//! parse error. Validation lives in `parse`/`values`; this module only holds and queries.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::classify::{classify, Classification};

/// Why a message was refused, and where: `path` is like `alert/info[1]/area[0]/polygon[2]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CapError {
    pub path: String,
    pub reason: String,
}

impl CapError {
    pub(crate) fn new(path: impl Into<String>, reason: impl Into<String>) -> CapError {
        CapError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Declares a closed CAP enumeration whose variant names are the CAP spellings.
macro_rules! cap_enum {
    ($(#[$m:meta])* $name:ident { $($v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name { $($v),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => stringify!($v)),+ }
            }

            /// Exact CAP spelling only; CAP enumerations are case-sensitive.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $(stringify!($v) => Some($name::$v),)+ _ => None }
            }
        }
    };
}

cap_enum!(
    /// `alert/status`.
    Status { Actual, Exercise, System, Test, Draft }
);
cap_enum!(
    /// `alert/msgType`.
    MsgType { Alert, Update, Cancel, Ack, Error }
);

/// CAP version, known from the root element's namespace (never from a prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapVersion {
    #[serde(rename = "1.0")]
    V1_0,
    #[serde(rename = "1.1")]
    V1_1,
    #[serde(rename = "1.2")]
    V1_2,
}

impl CapVersion {
    pub const NS_1_0: &'static str = "http://www.incident.com/cap/1.0";
    pub const NS_1_1: &'static str = "urn:oasis:names:tc:emergency:cap:1.1";
    pub const NS_1_2: &'static str = "urn:oasis:names:tc:emergency:cap:1.2";

    pub fn as_str(self) -> &'static str {
        match self {
            CapVersion::V1_0 => "1.0",
            CapVersion::V1_1 => "1.1",
            CapVersion::V1_2 => "1.2",
        }
    }

    pub fn namespace(self) -> &'static str {
        match self {
            CapVersion::V1_0 => Self::NS_1_0,
            CapVersion::V1_1 => Self::NS_1_1,
            CapVersion::V1_2 => Self::NS_1_2,
        }
    }

    pub fn from_namespace(ns: &str) -> Option<CapVersion> {
        [CapVersion::V1_0, CapVersion::V1_1, CapVersion::V1_2]
            .into_iter()
            .find(|v| v.namespace() == ns)
    }
}

/// One `sender,identifier,sent` triple of `alert/references`; `sent` kept verbatim because
/// it is part of the referenced message's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub sender: String,
    pub identifier: String,
    pub sent: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub version: CapVersion,
    pub identifier: String,
    pub sender: String,
    /// Verbatim (trimmed) text: `(sender, identifier, sent)` is the dedup key.
    pub sent: String,
    pub sent_at: DateTime<FixedOffset>,
    pub status: Status,
    pub msg_type: MsgType,
    pub scope: String,
    pub source: Option<String>,
    pub note: Option<String>,
    pub references: Vec<Reference>,
    pub incidents: Option<String>,
    /// `restriction` (scope Restricted), `addresses` (scope Private), `code` (handling codes).
    #[serde(default)]
    pub restriction: Option<String>,
    #[serde(default)]
    pub addresses: Option<String>,
    #[serde(default)]
    pub codes: Vec<String>,
    /// An XML-DSig `<Signature>` as it appeared (raw XML). Kept for audit, never verified or
    /// trusted: nothing here checks keys, so it must not change how a message is handled.
    #[serde(default)]
    pub signature: Option<String>,
    pub infos: Vec<Info>,
    /// Lenient fixes applied while parsing, each as `path: what was done`.
    pub deviations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub language: String,
    pub categories: Vec<String>,
    pub event: String,
    pub urgency: String,
    pub severity: String,
    pub certainty: String,
    pub event_codes: Vec<(String, String)>,
    pub effective: Option<DateTime<FixedOffset>>,
    pub onset: Option<DateTime<FixedOffset>>,
    pub expires: Option<DateTime<FixedOffset>>,
    pub sender_name: Option<String>,
    pub headline: Option<String>,
    pub description: Option<String>,
    pub instruction: Option<String>,
    pub web: Option<String>,
    pub contact: Option<String>,
    pub parameters: Vec<(String, String)>,
    #[serde(default)]
    pub response_types: Vec<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub resources: Vec<Resource>,
    pub areas: Vec<Area>,
}

/// `info/resource`. An embedded `derefUri` is not kept: only its decoded length and SHA-256,
/// so a 600 KB audio file does not travel through the store; the content is never trusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub desc: String,
    pub mime_type: Option<String>,
    pub size: Option<u64>,
    pub uri: Option<String>,
    /// Decoded byte length of `derefUri`, when present.
    pub deref_len: Option<usize>,
    /// Hex SHA-256 of the decoded `derefUri` bytes.
    pub deref_sha256: Option<String>,
    /// The `digest` element as sent (SHA-1 hex per CAP); not checked.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Area {
    pub desc: String,
    /// Closed rings of `(lat, lon)` pairs, in CAP order (not GeoJSON's lon,lat).
    pub polygons: Vec<Vec<(f64, f64)>>,
    pub circles: Vec<Circle>,
    pub geocodes: Vec<(String, String)>,
    pub altitude: Option<f64>,
    pub ceiling: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Circle {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

impl Alert {
    /// zh-CN, then any other Chinese, then the first: one call-out per alert, never per info.
    pub fn preferred_info(&self) -> Option<&Info> {
        let lang = |i: &&Info| i.language.trim().to_ascii_lowercase().replace('_', "-");
        self.infos
            .iter()
            .find(|i| lang(i) == "zh-cn")
            .or_else(|| self.infos.iter().find(|i| lang(i).starts_with("zh")))
            .or_else(|| self.infos.first())
    }

    /// Colour and hazard of the preferred info; an info-less message (Cancel/Ack) is "other".
    pub fn classify(&self) -> Classification {
        match self.preferred_info() {
            Some(i) => classify(&i.event, &i.parameters, &i.event_codes, &i.severity),
            None => classify("", &[], &[], ""),
        }
    }

    /// The latest `expires` among the infos; `None` when no info says (receiver's policy then).
    pub fn expires_at(&self) -> Option<DateTime<FixedOffset>> {
        self.infos.iter().filter_map(|i| i.expires).max()
    }
}
