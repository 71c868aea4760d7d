//! Who is threatened and who must be called (pure): the office's roster sheets, matching a
//! warning's area against regions and risk points, duty rosters, response-level rules and the
//! plan of call-outs. Nothing here reads a database, a clock or a network: callers pass the
//! roster snapshot and `now` in.

pub mod duty;
pub mod plan;
pub mod response;
pub mod roster;
pub mod targeting;

#[cfg(test)]
mod prop_tests;
