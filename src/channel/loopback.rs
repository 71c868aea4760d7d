//! The loopback gateway: sends nothing. The attempt row jiaoying writes for every send holds
//! the full message, so the message is recorded in the database; the demo and tests use it.

use futures::future::BoxFuture;

use super::{Channel, Outgoing, SendError};

pub struct Loopback;

impl Channel for Loopback {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move { Ok(format!("loopback-{}", msg.attempt_id)) })
    }
}
