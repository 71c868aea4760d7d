//! CAP (Common Alerting Protocol 1.0/1.1/1.2) parsing: bytes in, a validated `Alert` or a
//! `CapError` naming the offending element out. Pure: no IO, no clock. Owns decoding,
//! XML safety limits (no DTD/entities, node and depth caps), CAP validation with lenient
//! fixes recorded as deviations, and colour/hazard classification.
//! `extract` finds the alerts inside `<alerts>` lists, EDXL-DE and Atom/RSS feeds.

mod classify;
mod decode;
mod extract;
pub mod limits;
mod model;
mod parse;
mod values;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

pub use classify::{classify, Classification};
/// The depth pre-scan, shared with the feed index reader.
pub(crate) use decode::nests_deeper_than;
pub use decode::MAX_BYTES;
pub use extract::{extract, links, Found};
pub use model::{Alert, Area, CapError, CapVersion, Circle, Info, MsgType, Reference, Resource, Status};
pub use parse::{MAX_DEPTH, MAX_DEREF_BYTES, NODES_LIMIT};
pub use values::MAX_POLYGON_POINTS;

/// Parse one CAP message. The caller keeps `bytes` verbatim (signatures, audit).
pub fn parse(bytes: &[u8]) -> Result<Alert, CapError> {
    parse::parse(bytes)
}

/// The corpus of real CAP messages: `../shared/cap-corpus` beside the checkout when present
/// (the team's current set), else the copy in `tests/fixtures/cap-corpus` (CI's clean clone).
#[cfg(test)]
pub(crate) fn corpus_dir() -> String {
    let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/cap-corpus");
    if std::path::Path::new(shared).is_dir() {
        shared.to_string()
    } else {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cap-corpus").to_string()
    }
}
