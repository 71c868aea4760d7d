//! Answers coming back: SMS replies read with the reply grammar, receipts and key presses,
//! the answer page's signed tokens, operators recording a phone call. Every path ends in the
//! same functions of `inbound`, which record an acknowledgement or an evacuation count with
//! its ledger entry; `reconcile` asks the providers that sign no push for the receipts that
//! never came. It must not send anything.

pub mod inbound;
pub mod reconcile;
pub mod reply;
mod together;
pub mod token;
