//! `aliyun-voice`: Aliyun voice (dyvmsapi 2017-05-25), V3-signed like SMS. With an
//! `ack_tts_code` a call is an IvrCall whose menu maps key 1 to that prompt (the key press is
//! the answer); without one, a SingleCallByTts. The VoiceReport / VoiceCallReport pushes, signed
//! with nothing, behind [`HookGuard`]. A report names the call by `call_id`, the id `send`
//! returns, so reports are matched as [`MessageRef::Provider`]; `OutId` (at most 15 bytes)
//! carries a compact form of our key, from which the key is derived again ([`key_of_out_id`]).
//! Owns the wire format only: what a key press does is `answer::inbound`'s.

use anyhow::Result;
use futures::future::BoxFuture;
use serde_json::Value;

use super::aliyun_sms::{ack, code, failure, items, national, params_of, required, text, Rpc};
use super::event::{Answer, Callback, Event, MessageRef, Outcome, Refused, Voice, What};
use super::hook_guard::HookGuard;
use super::template::Params;
use super::{Channel, Outgoing, SendError};
use crate::clock::Clock;
use crate::config;

const VOICE_VERSION: &str = "2017-05-25";
/// All TTS variables together must stay under 250 characters (PROVIDERS.md §2.1).
const TTS_TOTAL: usize = 249;
/// `OutId` is 1–15 bytes.
const OUT_ID_MAX: usize = 15;

pub struct AliyunVoice {
    rpc: Rpc,
    called_show_number: String,
    tts_code: String,
    ack_tts_code: Option<String>,
    play_times: u8,
    key_timeout_ms: u128,
    params: Params,
    guard: HookGuard,
}

impl AliyunVoice {
    pub fn new(name: &str, c: &config::AliyunVoice, clock: Clock) -> Result<AliyunVoice> {
        required(name, "called_show_number", &c.called_show_number)?;
        required(name, "tts_code", &c.tts_code)?;
        if let Some(a) = &c.ack_tts_code {
            required(name, "ack_tts_code", a)?;
        }
        if !(1..=3).contains(&c.play_times) {
            anyhow::bail!("gateways.{name}.play_times: {} is not 1, 2 or 3", c.play_times);
        }
        let params = Params::compile(
            &format!("gateways.{name}.template_params"),
            params_of(&c.template_params),
        )?;
        let guard = HookGuard::new(
            &format!("gateways.{name}"),
            c.hook_token_env.as_deref(),
            &c.allow_from,
        )?;
        let rpc = Rpc::new(
            name,
            &c.endpoint,
            VOICE_VERSION,
            &c.access_key_id_env,
            &c.access_key_secret_env,
            c.timeout,
            c.limits.concurrency,
            clock,
        )?;
        Ok(AliyunVoice {
            rpc,
            called_show_number: c.called_show_number.clone(),
            tts_code: c.tts_code.clone(),
            ack_tts_code: c.ack_tts_code.clone(),
            play_times: c.play_times,
            key_timeout_ms: c.key_timeout.as_millis(),
            params,
            guard,
        })
    }

    /// The action and its parameters for a message.
    fn call_params(&self, msg: &Outgoing) -> (&'static str, Vec<(String, String)>) {
        let tts = (!self.params.is_empty()).then(|| tts_params(self.params.render(msg, TTS_TOTAL)));
        let mut q = vec![
            ("CalledShowNumber".to_string(), self.called_show_number.clone()),
            ("CalledNumber".to_string(), national(&msg.to)),
            ("PlayTimes".to_string(), self.play_times.to_string()),
            ("OutId".to_string(), out_id(&msg.key)),
        ];
        match &self.ack_tts_code {
            Some(ack) => {
                q.push(("StartCode".into(), self.tts_code.clone()));
                if let Some(p) = tts {
                    q.push(("StartTtsParams".into(), p));
                }
                // MenuKeyMap is an array of objects: RPC flattens it as the SDK does.
                q.push(("MenuKeyMap.1.Key".into(), "1".into()));
                q.push(("MenuKeyMap.1.Code".into(), ack.clone()));
                q.push(("Timeout".into(), self.key_timeout_ms.to_string()));
                ("IvrCall", q)
            }
            None => {
                q.push(("TtsCode".into(), self.tts_code.clone()));
                if let Some(p) = tts {
                    q.push(("TtsParam".into(), p));
                }
                ("SingleCallByTts", q)
            }
        }
    }
}

/// The TTS variables as JSON, their values cut (longest first) until together they stay under
/// the limit.
fn tts_params(mut vars: Vec<(String, String)>) -> String {
    let mut total: usize = vars.iter().map(|(_, v)| v.chars().count()).sum();
    while total > TTS_TOTAL {
        let Some((_, longest)) = vars.iter_mut().max_by_key(|(_, v)| v.chars().count()) else {
            break;
        };
        let n = longest.chars().count();
        let keep = n - (total - TTS_TOTAL).min(n.div_ceil(2).max(1));
        *longest = longest.chars().take(keep).collect();
        total -= n - keep;
    }
    let map: serde_json::Map<String, Value> = vars.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    Value::Object(map).to_string()
}

/// Our key in at most 15 bytes: as it is when it fits, else `c{callout}-j{job}` with both
/// numbers in base 36 (`{c36}.{j36}`), which [`key_of_out_id`] reads back.
pub fn out_id(key: &str) -> String {
    if key.len() <= OUT_ID_MAX {
        return key.to_string();
    }
    let parsed = key
        .strip_prefix('c')
        .and_then(|r| r.split_once("-j"))
        .and_then(|(c, j)| Some((c.parse::<u64>().ok()?, j.parse::<u64>().ok()?)));
    match parsed {
        Some((c, j)) => {
            let s = format!("{}.{}", base36(c), base36(j));
            if s.len() <= OUT_ID_MAX {
                s
            } else {
                s[..OUT_ID_MAX].to_string()
            }
        }
        None => key
            .char_indices()
            .take_while(|(i, c)| i + c.len_utf8() <= OUT_ID_MAX)
            .map(|(_, c)| c)
            .collect(),
    }
}

/// The key an `OutId` stands for (the compact form expanded; a short key as it is).
pub fn key_of_out_id(out_id: &str) -> Option<String> {
    if let Some((c, j)) = out_id.split_once('.') {
        let c = u64::from_str_radix(c, 36).ok()?;
        let j = u64::from_str_radix(j, 36).ok()?;
        return Some(format!("c{c}-j{j}"));
    }
    (!out_id.is_empty()).then(|| out_id.to_string())
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// The result-code table (PROVIDERS.md §2.2), in Chinese first for the operators.
fn result_words(code: &str) -> &'static str {
    match code {
        "200001" => "中途挂断 hung up early",
        "200002" => "忙线 busy",
        "200003" => "无人接听 not answered",
        "200004" => "空号 invalid number",
        "200005" => "无法接通 unreachable",
        "200007" => "不在服务区 out of service area",
        "200008" => "获取按键超时 key-press timeout",
        "200010" => "关机 powered off",
        "200011" => "停机 suspended",
        "200121" => "超过并发 over concurrency",
        _ => "未接通 not reached",
    }
}

impl Channel for AliyunVoice {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let (action, q) = self.call_params(msg);
            let (status, body) = self.rpc.call(action, q).await?;
            if status == 200 && code(&body) == "OK" {
                Ok(body
                    .get("CallId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string())
            } else {
                Err(failure(status, &body))
            }
        })
    }

    fn callback(&self, req: &Callback) -> Result<Vec<Event>, Refused> {
        match self.guard.check(req)? {
            "voice-report" => Ok(items::<VoiceReport>(&req.body)?
                .into_iter()
                .map(VoiceReport::event)
                .collect()),
            "voice-call-report" => Ok(items::<VoiceCallReport>(&req.body)?
                .into_iter()
                .filter_map(VoiceCallReport::event)
                .collect()),
            _ => Err(Refused::NotFound),
        }
    }

    fn answer(&self, _req: &Callback, _outcomes: &[Outcome]) -> Answer {
        ack()
    }
}

/// The call a report is about: its CallId (what `send` returned), else our key from `OutId`.
fn call_ref(call_id: &str, out_id: &str) -> MessageRef {
    match key_of_out_id(out_id.trim()) {
        Some(k) if call_id.trim().is_empty() => MessageRef::Key(k),
        _ => MessageRef::Provider(call_id.trim().to_string()),
    }
}

/// VoiceReport: the call record, sent when the call ends.
#[derive(serde::Deserialize)]
struct VoiceReport {
    #[serde(default, deserialize_with = "text")]
    call_id: String,
    #[serde(default, deserialize_with = "text")]
    status_code: String,
    #[serde(default)]
    status_msg: String,
    /// In the older doc only; a key pressed during the call.
    #[serde(default, deserialize_with = "text")]
    dtmf: String,
    #[serde(default, deserialize_with = "text")]
    out_id: String,
}

impl VoiceReport {
    fn event(self) -> Event {
        let result = if !self.dtmf.trim().is_empty() {
            Voice::Keys(self.dtmf.trim().to_string())
        } else if self.status_code == "200000" {
            Voice::Heard
        } else {
            let words = if self.status_msg.trim().is_empty() {
                result_words(&self.status_code).to_string()
            } else {
                self.status_msg.chars().take(60).collect()
            };
            Voice::NotReached(format!("{} {words}", self.status_code))
        };
        Event {
            id: format!(
                "voice-report:{}",
                if self.call_id.is_empty() {
                    &self.out_id
                } else {
                    &self.call_id
                }
            ),
            what: What::Voice {
                message: call_ref(&self.call_id, &self.out_id),
                result,
            },
        }
    }
}

/// VoiceCallReport: intermediate states; only 300000 (a key) is an event.
#[derive(serde::Deserialize)]
struct VoiceCallReport {
    #[serde(default, deserialize_with = "text")]
    call_id: String,
    #[serde(default, deserialize_with = "text")]
    status_code: String,
    #[serde(default, deserialize_with = "text")]
    dtmf: String,
    #[serde(default, deserialize_with = "text")]
    status_time: String,
    #[serde(default, deserialize_with = "text")]
    out_id: String,
}

impl VoiceCallReport {
    fn event(self) -> Option<Event> {
        match self.status_code.as_str() {
            "300000" if !self.dtmf.trim().is_empty() => Some(Event {
                id: format!(
                    "voice-key:{}:{}:{}",
                    self.call_id,
                    self.status_time,
                    self.dtmf.trim()
                ),
                what: What::Voice {
                    message: call_ref(&self.call_id, &self.out_id),
                    result: Voice::Keys(self.dtmf.trim().to_string()),
                },
            }),
            "200101" | "200201" | "200102" | "200100" | "300000" => None,
            other => {
                tracing::warn!(
                    code = other,
                    "aliyun VoiceCallReport with an unknown status code: ignored"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_id_fits_15_bytes_and_reads_back() {
        assert_eq!(out_id("c12-j34"), "c12-j34");
        assert_eq!(key_of_out_id("c12-j34").unwrap(), "c12-j34");
        let long = "c123456789-j987654321";
        let o = out_id(long);
        assert!(o.len() <= 15, "{o}");
        assert_eq!(key_of_out_id(&o).unwrap(), long);
    }

    #[test]
    fn tts_params_stay_under_250() {
        let p = tts_params(vec![
            ("a".into(), "长".repeat(200)),
            ("b".into(), "短".repeat(100)),
        ]);
        let v: serde_json::Map<String, Value> = serde_json::from_str(&p).unwrap();
        let total: usize = v.values().map(|s| s.as_str().unwrap().chars().count()).sum();
        assert!(total < 250, "{total}");
        assert_eq!(v["b"].as_str().unwrap().chars().count(), 100);
    }

    #[test]
    fn reports_read_into_voice_events() {
        let r: Vec<VoiceReport> = items(
            br#"[{"call_id":"116012354148^1","status_code":"200000","status_msg":"","duration":"20"},
                 {"call_id":"2","status_code":200000,"dtmf":"1"},
                 {"call_id":"3","status_code":"200003","status_msg":""}]"#,
        )
        .unwrap();
        let e: Vec<Event> = r.into_iter().map(VoiceReport::event).collect();
        assert_eq!(e[0].id, "voice-report:116012354148^1");
        assert!(
            matches!(&e[0].what, What::Voice { result: Voice::Heard, message } if *message == MessageRef::Provider("116012354148^1".into()))
        );
        assert!(matches!(&e[1].what, What::Voice { result: Voice::Keys(k), .. } if k == "1"));
        assert!(
            matches!(&e[2].what, What::Voice { result: Voice::NotReached(w), .. } if w.contains("无人接听"))
        );
        let c: Vec<VoiceCallReport> = items(
            br#"[{"call_id":"9","status_code":"200201","status_time":"t1"},
                 {"call_id":"9","status_code":"300000","dtmf":"1","status_time":"t2","out_id":"x"}]"#,
        )
        .unwrap();
        let e: Vec<Event> = c.into_iter().filter_map(VoiceCallReport::event).collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].id, "voice-key:9:t2:1");
    }
}
