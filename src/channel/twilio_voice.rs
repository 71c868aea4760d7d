//! Twilio voice (`twilio-voice`, PROVIDERS.md §4.5): a form POST to `Calls.json` with inline
//! TwiML that reads the message and asks for a key (`<Gather>`); the key comes to
//! `/hooks/NAME/gather`, the end of the call to `/hooks/NAME/call-status`, both checked with
//! `X-Twilio-Signature` (the client and the check are `twilio_sms::Api`).
//!
//! Owns the TwiML and Twilio's call parameters only; whether a key answers is
//! `answer::inbound`'s: `answer` says 已确认 only when the outcome it is given was an answer.
//! A call ends with `completed` whether or not a key was pressed; that report is
//! `NotReached("completed")`, which changes nothing for a call-out the key already answered.
//! Lost sends are not looked up: a call carries nothing of ours that `Calls.json` shows back.

use anyhow::{bail, Result};
use futures::future::BoxFuture;

use super::event::{Answer, Callback, Event, MessageRef, Outcome, Refused, Voice, What};
use super::twilio_sms::{form, param, without_links, Api};
use super::{Channel, Outgoing, SendError};
use crate::clock::Clock;
use crate::config;

/// Twilio's limit for inline `Twiml`, in characters.
const TWIML_LIMIT: usize = 4000;
/// Ring time, in seconds: long enough to wake someone, short of a voicemail pick-up.
const RING_SECS: u32 = 30;

const ASK: &str = "确认请按1。";
const NO_KEY: &str = "未收到按键，稍后可能再次呼叫您。再见。";
const CONFIRMED: &str = "已确认收到，谢谢。";
const AGAIN: &str = "按键无效。确认收到请按1。";
const GOODBYE: &str = "未能确认，请回复短信确认收到。再见。";

pub struct TwilioVoice {
    api: Api,
    from: String,
    language: String,
}

impl TwilioVoice {
    pub fn new(name: &str, g: &config::Twilio, public_url: &str, clock: Clock) -> Result<TwilioVoice> {
        // A call needs a number to call from; a messaging service does not place calls.
        let Some(from) = g.from.clone().filter(|f| !f.trim().is_empty()) else {
            bail!("gateways.{name}.from: missing (a call needs a Twilio number)");
        };
        Ok(TwilioVoice {
            api: Api::new(name, g, public_url, clock)?,
            from,
            language: g.language.clone(),
        })
    }

    fn say(&self, text: &str) -> String {
        format!(
            r#"<Say language="{}">{}</Say>"#,
            escape(&self.language),
            escape(text)
        )
    }

    fn gather(&self, action: &str, spoken: &str) -> String {
        format!(
            r#"<Gather input="dtmf" numDigits="1" timeout="8" action="{}" method="POST">{}</Gather>"#,
            escape(action),
            self.say(spoken)
        )
    }

    /// The call's TwiML: the message and the question inside a `<Gather>`, then what is said
    /// when no key comes; the message is cut so that the whole fits Twilio's limit.
    fn twiml(&self, action: &str, text: &str) -> String {
        let build = |t: &str| {
            format!(
                "<Response>{}{}</Response>",
                self.gather(action, &format!("{t} {ASK}")),
                self.say(NO_KEY)
            )
        };
        let spoken = without_links(text);
        let spoken = spoken.trim();
        let full = build(spoken);
        if full.chars().count() <= TWIML_LIMIT {
            return full;
        }
        let room = TWIML_LIMIT.saturating_sub(build("").chars().count());
        let mut used = 0;
        let cut: String = spoken
            .chars()
            .take_while(|c| {
                used += escape(&c.to_string()).chars().count();
                used <= room
            })
            .collect();
        build(&cut)
    }
}

impl Channel for TwilioVoice {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let form = [
                ("To", msg.to.clone()),
                ("From", self.from.clone()),
                ("Twiml", self.twiml(&self.api.hook("gather", &msg.key), &msg.text)),
                ("StatusCallback", self.api.hook("call-status", &msg.key)),
                ("StatusCallbackEvent", "completed".to_string()),
                ("StatusCallbackMethod", "POST".to_string()),
                ("Timeout", RING_SECS.to_string()),
            ];
            self.api.create("Calls.json", &form).await
        })
    }

    fn callback(&self, req: &Callback) -> Result<Vec<Event>, Refused> {
        if !matches!(req.rest.as_str(), "gather" | "call-status") {
            return Err(Refused::NotFound);
        }
        let p = self.api.check(req)?;
        let sid = param(&p, "CallSid")
            .ok_or_else(|| Refused::BadBody("CallSid missing".into()))?
            .to_string();
        let message = match reference(req) {
            Some(k) => MessageRef::Key(k),
            None => MessageRef::Provider(sid.clone()),
        };
        if req.rest == "gather" {
            // Without a key Twilio goes on to the next verb; it calls here with one.
            let Some(digits) = param(&p, "Digits") else {
                return Ok(Vec::new());
            };
            return Ok(vec![Event {
                // The digits too: a key after a re-prompt is another report of the same call.
                id: format!("{sid}:gather:{}", digits.chars().take(8).collect::<String>()),
                what: What::Voice {
                    message,
                    result: Voice::Keys(digits.to_string()),
                },
            }]);
        }
        let status = param(&p, "CallStatus").ok_or_else(|| Refused::BadBody("CallStatus missing".into()))?;
        if !matches!(status, "completed" | "busy" | "no-answer" | "failed" | "canceled") {
            return Ok(Vec::new());
        }
        Ok(vec![Event {
            id: format!("{sid}:{status}"),
            what: What::Voice {
                message,
                result: Voice::NotReached(status.to_string()),
            },
        }])
    }

    fn answer(&self, req: &Callback, outcomes: &[Outcome]) -> Answer {
        let empty = || Answer::xml("<Response/>");
        if req.rest != "gather" {
            return empty();
        }
        if outcomes.iter().any(|o| matches!(o.outcome, "ack" | "duplicate")) {
            return Answer::xml(format!("<Response>{}</Response>", self.say(CONFIRMED)));
        }
        let digits = std::str::from_utf8(&req.body)
            .ok()
            .map(form)
            .and_then(|p| param(&p, "Digits").map(String::from));
        let again = form(&req.query).iter().any(|(k, _)| k == "again");
        let other_key = outcomes.iter().any(|o| o.outcome == "other-key");
        match (digits, reference(req)) {
            // Once more, for a wrong key: a second wrong key ends the call.
            (Some(_), Some(key)) if other_key && !again => {
                let action = format!("{}&again=1", self.api.hook("gather", &key));
                Answer::xml(format!(
                    "<Response>{}{}</Response>",
                    self.gather(&action, AGAIN),
                    self.say(NO_KEY)
                ))
            }
            _ => Answer::xml(format!("<Response>{}</Response>", self.say(GOODBYE))),
        }
    }
}

/// Our message key, from the hook URL we gave Twilio (`?ref=…`).
fn reference(req: &Callback) -> Option<String> {
    form(&req.query)
        .into_iter()
        .find(|(k, _)| k == "ref")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Text and attribute values in XML.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> config::Twilio {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(toml))
            .extract()
            .unwrap()
    }

    fn voice() -> TwilioVoice {
        std::env::set_var("JIAOYING_TEST_TWILIO_VOICE_TOKEN", "unit-token");
        let g = parse(
            r#"
account_sid = "AC123"
auth_token_env = "JIAOYING_TEST_TWILIO_VOICE_TOKEN"
from = "+15005550006"
"#,
        );
        TwilioVoice::new("tv", &g, "https://jy.example/", Clock::system()).unwrap()
    }

    #[test]
    fn twiml_asks_for_one_key_and_escapes() {
        let v = voice();
        let t = v.twiml(
            &v.api.hook("gather", "c1-j2"),
            "暴雨<红色>预警 & 转移 https://jy.example/a/TOKEN 回1确认",
        );
        assert_eq!(
            t,
            "<Response><Gather input=\"dtmf\" numDigits=\"1\" timeout=\"8\" \
             action=\"https://jy.example/hooks/tv/gather?ref=c1-j2\" method=\"POST\">\
             <Say language=\"zh-CN\">暴雨&lt;红色&gt;预警 &amp; 转移  回1确认 确认请按1。</Say></Gather>\
             <Say language=\"zh-CN\">未收到按键，稍后可能再次呼叫您。再见。</Say></Response>"
        );
    }

    #[test]
    fn twiml_fits_the_limit() {
        let v = voice();
        let t = v.twiml(&v.api.hook("gather", "c1-j2"), &"&".repeat(5000));
        assert!(t.chars().count() <= TWIML_LIMIT, "{}", t.chars().count());
        assert!(t.chars().count() > TWIML_LIMIT - 5);
        assert!(t.ends_with("</Say></Response>") && t.contains(ASK));
        let t = v.twiml(&v.api.hook("gather", "c1-j2"), &"雨".repeat(5000));
        assert_eq!(t.chars().count(), TWIML_LIMIT);
    }

    #[test]
    fn missing_from_and_token_name_the_key() {
        let g =
            parse("account_sid = \"AC1\"\nauth_token_env = \"JIAOYING_TEST_TWILIO_UNSET\"\nfrom = \"+1\"");
        let e = TwilioVoice::new("tv", &g, "https://x", Clock::system())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "gateways.tv.auth_token_env: JIAOYING_TEST_TWILIO_UNSET is not set"
        );
        let g = parse("account_sid = \"AC1\"\nauth_token_env = \"JIAOYING_TEST_TWILIO_UNSET\"");
        let e = TwilioVoice::new("tv", &g, "https://x", Clock::system())
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("gateways.tv.from: missing"), "{e}");
    }
}
