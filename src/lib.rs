//! jiaoying (叫应): weather warnings in, answered call-outs out.
//!
//! One folder per stage of the flow, listed here from the bottom layer up; a module imports
//! only those above it in this list (`.ci/layers.py` fails CI on an import cycle):
//!
//! - `domain`: the types every stage speaks (codes, phones, colours, call-out states, ladder).
//! - `config`: settings and policies, read and checked once.
//! - `clock`: the one clock.
//! - `cap`: CAP 1.0–1.2 read, checked, classified (pure).
//! - `target`: roster sheets, area matching, duty, response-level rules, planning (pure).
//! - `record`: the ledger's hash chain and the after-action summary (pure).
//! - `store`: every SQL statement; rows come out as domain types; units of work (`store::Tx`).
//! - `channel`: the gateways a message leaves by (`Channel` and one file per kind).
//! - `core`: [`core::Core`], what the stages share.
//! - `answer`: replies, receipts, key presses, the answer page's tokens → acknowledgements.
//! - `deliver`: sending, messages, escalation, stand-down (the job table is `store::jobs`).
//! - `respond`: response levels (应急响应) declared by the office.
//! - `ingest`: a warning in → stored, planned, one transaction (feeds poll into it).
//! - `http`: the API, hooks and answer page.
//! - `app`: wiring and supervision, and the workers that run each kind of job.
//! - `tools`: demo, import, preview.

pub mod answer;
pub mod app;
pub mod audit;
pub mod cap;
pub mod channel;
pub mod clock;
pub mod config;
pub mod core;
pub mod deliver;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod record;
pub mod respond;
pub mod store;
pub mod target;
pub mod tools;
