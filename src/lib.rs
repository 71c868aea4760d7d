//! jiaoying (叫应): weather warnings in, answered call-outs out.
//!
//! The flow, one module per stage (see README "Architecture"):
//! `cap` parses → `ingest` stores and plans (`targeting`, `plan`) → `store` writes the incident,
//! call-outs, jobs and ledger in one transaction → `jobs` workers run `dispatch` (through
//! `channel`) and `escalate` → `inbound` records answers (`reply` grammar, answer `token`s) →
//! `report` aggregates. `http` and `demo` are the edges people use.

pub mod app;
pub mod callout;
pub mod cap;
pub mod channel;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod domain;
pub mod duty;
pub mod escalate;
pub mod feed;
pub mod http;
pub mod import;
pub mod inbound;
pub mod ingest;
pub mod jobs;
pub mod ledger;
pub mod message;
pub mod plan;
pub mod preview;
pub mod reply;
pub mod report;
pub mod respond;
pub mod revise;
pub mod roster;
pub mod signature;
pub mod store;
pub mod targeting;
pub mod telemetry;
pub mod token;
pub mod validate;
