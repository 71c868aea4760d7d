//! E-mail through lettre's async SMTP transport (plain, STARTTLS or TLS, with auth), sent as
//! multipart text + HTML with the answer link.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::{Channel, Outgoing, SendError};
use crate::config::SmtpTls;

pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Smtp {
    pub fn new(
        host: &str,
        port: u16,
        tls: SmtpTls,
        from: &str,
        username: Option<String>,
        password: Option<SecretString>,
        timeout: Duration,
    ) -> Result<Smtp> {
        let mut b = match tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
        }
        .port(port)
        .timeout(Some(timeout));
        if let Some(user) = username {
            let password = password.as_ref().map(|p| p.expose_secret().to_string());
            b = b.credentials(Credentials::new(user, password.unwrap_or_default()));
        }
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("gateway from address {from:?}"))?;
        Ok(Smtp {
            transport: b.build(),
            from,
        })
    }
}

impl Channel for Smtp {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let to: Mailbox = msg.to.parse().map_err(|e| SendError::Permanent {
                reason: format!("address: {e}"),
            })?;
            let text = SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(msg.text.clone());
            let body = match &msg.html {
                Some(html) => MultiPart::alternative().singlepart(text).singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html.clone()),
                ),
                None => MultiPart::mixed().singlepart(text),
            };
            let email = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(msg.subject.clone())
                .message_id(Some(format!("<jiaoying-{}@jiaoying>", msg.attempt_id)))
                .multipart(body)
                .map_err(|e| SendError::Permanent {
                    reason: e.to_string(),
                })?;
            match self.transport.send(email).await {
                Ok(resp) => Ok(resp.message().collect::<Vec<_>>().join(" ")),
                Err(e) if e.is_permanent() => Err(SendError::Permanent {
                    reason: e.to_string(),
                }),
                Err(e) => Err(SendError::Transient {
                    reason: e.to_string(),
                    retry_after: None,
                }),
            }
        })
    }
}
