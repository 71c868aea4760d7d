//! Commands built on the stages: the demo, roster import and preview. They call the stages'
//! functions and never write SQL themselves.

pub mod demo;
pub mod import;
pub mod preview;
pub mod tamper;
