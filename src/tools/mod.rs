//! Commands built on the stages: the demo, roster import, preview and the
//! simulated season. They call the stages'
//! functions and never write SQL themselves.

pub mod demo;
pub mod preview;
pub mod simulate;
pub mod tamper;
pub mod users;
