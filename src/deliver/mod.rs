//! Getting call-outs to people: the durable job queue and its workers (`jobs`), sending a
//! batch through the gateways (`dispatch`), the words sent (`message`) and what an unanswered
//! deadline does (`escalate`). It must not decide who is called (that is `target`) nor read
//! answers (that is `answer`).

pub mod dispatch;
pub mod escalate;
pub mod jobs;
pub mod message;
pub mod standdown;
