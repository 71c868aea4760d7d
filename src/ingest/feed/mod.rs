//! Feed polling (`[[feed]]`): each source, on its own cron schedule (a job in the queue), fetches an Atom/RSS index
//! or a CAP URL with conditional GET, takes only entries it has not seen, and hands each CAP
//! message to `ingest` as `feed:NAME`. Each source's status lives in `core::feeds`.

pub mod index;
pub mod poll;

pub use crate::core::feeds::{Feeds, Source, Status};
pub use poll::{ensure_jobs, poll_once, run_job};
