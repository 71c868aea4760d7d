//! Bot webhooks (`webhook`): one POST per message to a URL, in one of three shapes (presets):
//! `json`, the call-out as JSON (`ref`, `to`, `kind`, `text` and the facts), signed like the
//! generic protocol when a secret is set; `wecom`, a WeCom (企业微信) group robot's text message
//! that @mentions the phone; `dingtalk`, a DingTalk (钉钉) custom robot's text message with
//! `at.atMobiles`, on the signed URL (加签) when a secret is set. A robot says "ok" with
//! `errcode == 0`; its rate limits are read as capped. Robots push nothing back: no callbacks.
//! Owns the wire format only.

use super::{clip, request_failed};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::signature;
use super::{Channel, Outgoing, SendError};
use crate::clock::Clock;
use crate::config::{self, WebhookPreset};

pub struct Webhook {
    /// May hold the robot's key: never in a log or an error.
    url: SecretString,
    preset: WebhookPreset,
    secret: Option<SecretString>,
    client: reqwest::Client,
    clock: Clock,
}

impl Webhook {
    /// `name` is the gateway's name under `[gateways]`; errors name the key.
    pub fn new(name: &str, c: &config::Webhook, clock: Clock) -> Result<Webhook> {
        let key = format!("gateways.{name}");
        let url = match &c.endpoint_env {
            Some(env) => match std::env::var(env) {
                Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
                _ => bail!("{key}.endpoint_env: the environment variable {env} is not set"),
            },
            None if c.endpoint.trim().is_empty() => bail!("{key}.endpoint: missing"),
            None => c.endpoint.trim().to_string(),
        };
        // The URL itself is not shown: it may carry the robot's key.
        reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("{key}.endpoint: not a URL ({e})"))?;
        let secret = match &c.secret_env {
            Some(env) => match std::env::var(env) {
                Ok(v) if !v.trim().is_empty() => Some(SecretString::from(v.trim().to_string())),
                _ => bail!("{key}.secret_env: the environment variable {env} is not set"),
            },
            None => None,
        };
        if secret.is_some() && c.preset == WebhookPreset::Wecom {
            bail!("{key}.secret_env: a WeCom robot signs nothing (its key is in the URL)");
        }
        let client = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(c.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(c.limits.concurrency.max(1))
            .build()
            .with_context(|| format!("{key}: HTTP client"))?;
        Ok(Webhook {
            url: url.into(),
            preset: c.preset,
            secret,
            client,
            clock,
        })
    }

    /// The URL to post to: DingTalk's gains `timestamp` and `sign` when it is signed.
    fn url(&self, now_ms: i64) -> String {
        let url = self.url.expose_secret();
        match (&self.secret, self.preset) {
            (Some(secret), WebhookPreset::Dingtalk) => format!(
                "{url}{}timestamp={now_ms}&sign={}",
                if url.contains('?') { "&" } else { "?" },
                utf8_percent_encode(&dingtalk_sign(secret.expose_secret(), now_ms), NON_ALPHANUMERIC)
            ),
            _ => url.to_string(),
        }
    }

    fn body(&self, msg: &Outgoing) -> serde_json::Value {
        let mobile = mobile(&msg.to);
        match self.preset {
            WebhookPreset::Json => {
                let mut v = serde_json::to_value(&*msg.facts).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("ref".into(), msg.key.clone().into());
                    o.insert("to".into(), msg.to.clone().into());
                    o.insert("kind".into(), msg.kind.as_str().into());
                    o.insert("text".into(), msg.text.clone().into());
                }
                v
            }
            WebhookPreset::Wecom => serde_json::json!({
                "msgtype": "text",
                "text": {
                    "content": msg.text,
                    "mentioned_mobile_list": mobile.into_iter().collect::<Vec<_>>(),
                },
            }),
            WebhookPreset::Dingtalk => {
                // DingTalk highlights an @ only when the number is also in the text.
                let content = match &mobile {
                    Some(m) => format!("{} @{m}", msg.text),
                    None => msg.text.clone(),
                };
                serde_json::json!({
                    "msgtype": "text",
                    "text": { "content": content },
                    "at": { "atMobiles": mobile.into_iter().collect::<Vec<_>>(), "isAtAll": false },
                })
            }
        }
    }
}

/// DingTalk's 加签: `base64(HMAC-SHA256(key = secret, timestamp + "\n" + secret))`, the
/// timestamp in Unix milliseconds (not yet URL-encoded). Pure.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// The number a robot can @mention: mainland numbers without `+86` (how WeCom and DingTalk
/// directories hold them); None for an address that is not a phone (a webhook channel's
/// address is the contact's key).
fn mobile(to: &str) -> Option<String> {
    let digits = to.strip_prefix('+').unwrap_or(to);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let local = to.strip_prefix("+86").unwrap_or(digits);
    Some(local.to_string())
}

/// What a robot's `errcode` means. Pure.
fn robot_error(preset: WebhookPreset, code: i64, msg: &str) -> SendError {
    let reason = format!("errcode {code}: {}", clip(msg));
    match (preset, code) {
        // -1: system busy (both robots).
        (_, -1) => SendError::Transient {
            reason,
            retry_after: None,
        },
        // DingTalk 130101: sending too fast (20 a minute per robot); 660026: over the day's
        // quota. WeCom 45009: the API frequency limit (20 a minute per robot).
        (WebhookPreset::Dingtalk, 130101 | 660026) | (WebhookPreset::Wecom, 45009) => {
            SendError::Capped { reason }
        }
        // 310000 (DingTalk: sign, keyword or IP refused), 93000 (WeCom: bad key) …
        _ => SendError::Permanent { reason },
    }
}

impl Channel for Webhook {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&self.body(msg)).map_err(|e| SendError::Permanent {
                reason: e.to_string(),
            })?;
            // Signed with the machine's time of day (`Clock::wall_ms`): DingTalk checks it.
            let now_ms = self.clock.wall_ms();
            let mut req = self
                .client
                .post(self.url(now_ms))
                .header("content-type", "application/json; charset=utf-8");
            if let (Some(secret), WebhookPreset::Json) = (&self.secret, self.preset) {
                let ts = now_ms / 1000;
                req = req.header(signature::TIMESTAMP_HEADER, ts.to_string()).header(
                    signature::SIGNATURE_HEADER,
                    signature::sign(secret.expose_secret().as_bytes(), ts, &body),
                );
            }
            let resp = req.body(body).send().await.map_err(request_failed)?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if status.as_u16() == 429 || status.is_server_error() {
                return Err(SendError::Transient {
                    reason: format!("HTTP {status}: {}", clip(&text)),
                    retry_after: None,
                });
            }
            if !status.is_success() {
                return Err(SendError::Permanent {
                    reason: format!("HTTP {status}: {}", clip(&text)),
                });
            }
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            match self.preset {
                WebhookPreset::Json => Ok(v
                    .get("id")
                    .and_then(|i| i.as_str())
                    .unwrap_or_default()
                    .to_string()),
                preset => match v.get("errcode").and_then(|c| c.as_i64()) {
                    Some(0) => Ok(String::new()),
                    Some(code) => Err(robot_error(
                        preset,
                        code,
                        v.get("errmsg").and_then(|m| m.as_str()).unwrap_or_default(),
                    )),
                    None => Err(SendError::Permanent {
                        reason: format!("HTTP {status}: no errcode in {}", clip(&text)),
                    }),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::{ChannelKind, Facts};

    /// Computed, not published: DingTalk's page shows the algorithm with the secret
    /// `this is secret` but no fixed timestamp; this value was computed independently (Python
    /// `hmac` + `base64`, then `urllib.parse.quote_plus`).
    #[test]
    fn dingtalk_sign_computed_vector() {
        let s = dingtalk_sign("this is secret", 1577262236757);
        assert_eq!(s, "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=");
        assert_eq!(
            utf8_percent_encode(&s, NON_ALPHANUMERIC).to_string(),
            "hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
    }

    fn hook(preset: WebhookPreset, secret: Option<&str>) -> Webhook {
        Webhook {
            url: "https://oapi.dingtalk.com/robot/send?access_token=abc"
                .to_string()
                .into(),
            preset,
            secret: secret.map(|s| s.to_string().into()),
            client: reqwest::Client::new(),
            clock: Clock::system(),
        }
    }

    fn msg(to: &str) -> Outgoing {
        Outgoing {
            attempt_id: 1,
            key: "c1-j1".into(),
            kind: ChannelKind::Sms,
            to: to.into(),
            subject: String::new(),
            text: "【防汛】暴雨红色预警，回1确认".into(),
            html: None,
            facts: Arc::new(Facts {
                signature: "【防汛】".into(),
                event: "暴雨红色预警".into(),
                headline: String::new(),
                description: String::new(),
                instruction: String::new(),
                place: "松岭村".into(),
                link: String::new(),
                code: "A37".into(),
                drill: false,
                evacuation: false,
                change: None,
                knock: None,
                round: None,
            }),
            last_route: false,
        }
    }

    #[test]
    fn presets_shape_the_body_and_the_url() {
        let d = hook(WebhookPreset::Dingtalk, Some("this is secret"));
        assert_eq!(
            d.url(1577262236757),
            "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1577262236757&sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
        let b = d.body(&msg("+8613800000000"));
        assert_eq!(b["at"]["atMobiles"], serde_json::json!(["13800000000"]));
        assert!(b["text"]["content"].as_str().unwrap().ends_with("@13800000000"));
        let w = hook(WebhookPreset::Wecom, None).body(&msg("+8613800000000"));
        assert_eq!(w["msgtype"], "text");
        assert_eq!(
            w["text"]["mentioned_mobile_list"],
            serde_json::json!(["13800000000"])
        );
        let j = hook(WebhookPreset::Json, None).body(&msg("p0001"));
        assert_eq!(j["ref"], "c1-j1");
        assert_eq!(j["to"], "p0001");
        assert_eq!(j["place"], "松岭村");
        assert_eq!(
            hook(WebhookPreset::Wecom, None).body(&msg("p0001"))["text"]["mentioned_mobile_list"],
            serde_json::json!([])
        );
    }

    #[test]
    fn robot_rate_limits_are_capped() {
        assert!(matches!(
            robot_error(WebhookPreset::Dingtalk, 130101, "send too fast"),
            SendError::Capped { .. }
        ));
        assert!(matches!(
            robot_error(WebhookPreset::Wecom, 45009, "api freq out of limit"),
            SendError::Capped { .. }
        ));
        assert!(matches!(
            robot_error(WebhookPreset::Dingtalk, 310000, "sign not match"),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            robot_error(WebhookPreset::Wecom, -1, "system busy"),
            SendError::Transient { .. }
        ));
    }
}
