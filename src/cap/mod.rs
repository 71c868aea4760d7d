//! CAP (Common Alerting Protocol 1.0/1.1/1.2) parsing: bytes in, a validated `Alert` or a
//! `CapError` naming the offending element out. Pure: no IO, no clock. Owns decoding,
//! XML safety limits (no DTD/entities, node and depth caps), CAP validation with lenient
//! fixes recorded as deviations, and colour/hazard classification.
//!
//! Not here yet: Atom/RSS/EDXL extraction and GBK decoding (refused with a clear reason).

mod classify;
mod decode;
mod model;
mod parse;
mod values;

#[cfg(test)]
mod tests;

pub use classify::{classify, Classification};
/// The depth pre-scan, shared with the feed index reader.
pub(crate) use decode::nests_deeper_than;
pub use decode::MAX_BYTES;
pub use model::{Alert, Area, CapError, CapVersion, Circle, Info, MsgType, Reference, Status};
pub use parse::{MAX_DEPTH, NODES_LIMIT};

/// Parse one CAP message. The caller keeps `bytes` verbatim (signatures, audit).
pub fn parse(bytes: &[u8]) -> Result<Alert, CapError> {
    parse::parse(bytes)
}
