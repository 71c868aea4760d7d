//! Getting call-outs to people: sending a batch through the gateways (`dispatch`) within their
//! per-recipient caps (`caps`) while its claims are kept (`lease`), by routes and retries
//! decided without IO (`route`), the words sent (`message`) and what an unanswered deadline does
//! (`escalate`). The job table is `store::jobs`; the workers that route each kind of job to
//! its stage are `app::worker`. It must not decide who is called (that is `target`) nor read
//! answers (that is `answer`).

pub mod caps;
pub mod dispatch;
pub mod escalate;
pub mod lease;
pub mod message;
pub mod route;
pub mod standdown;
