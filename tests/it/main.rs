//! One integration-test binary: the daemon in-process on a random port against a fresh
//! database (SQLite in a temp dir; PostgreSQL when JIAOYING_PG_URL is set), with fake
//! gateways on loopback and a real SMTP server.

mod bad_input;
mod boundary;
mod browser;
mod crash;
mod defects;
mod edge;
mod email;
mod feed;
mod flow;
mod gateway;
mod helpers;
mod import;
mod instances;
mod ladder;
mod ledger;
mod limits;
mod login;
mod planning;
mod preview;
mod provider_aliyun;
mod provider_tencent;
mod provider_twilio;
mod queue;
mod reconcile;
mod report;
mod respond;
mod season;
mod security;
mod storm;
mod together;
mod updates;
mod validate;
