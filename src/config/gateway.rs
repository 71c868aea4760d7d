//! Gateways as configured (`[gateways.NAME]`, `kind = …`): one variant per provider kind, each
//! with an `endpoint` defaulting to the provider's public one, the names of the environment
//! variables holding its credentials (never the credentials), and its limits. Reading only:
//! what a gateway does with them is `channel/`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Gateway {
    Loopback {
        #[serde(default)]
        limits: Limits,
    },
    Generic {
        url: String,
        secret_env: Option<String>,
        secret_file: Option<String>,
        #[serde(default = "default_timeout", deserialize_with = "duration")]
        timeout: Duration,
        #[serde(default)]
        limits: Limits,
    },
    Smtp {
        host: String,
        port: u16,
        #[serde(default)]
        tls: SmtpTls,
        from: String,
        username: Option<String>,
        password_env: Option<String>,
        password_file: Option<String>,
        #[serde(default = "default_timeout", deserialize_with = "duration")]
        timeout: Duration,
        #[serde(default)]
        limits: Limits,
    },
    AliyunSms(AliyunSms),
    AliyunVoice(AliyunVoice),
    TencentSms(TencentSms),
    TwilioSms(Twilio),
    TwilioVoice(Twilio),
    Webhook(Webhook),
}

pub(super) fn default_concurrency() -> usize {
    32
}

pub(super) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    #[default]
    Starttls,
    Tls,
}

/// Limits of one gateway (`[gateways.NAME.limits]`), as the provider enforces them: a rate, a
/// concurrency, per-recipient caps kept in the database, and a circuit breaker.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Requests per second (none: unlimited).
    pub rate: Option<f64>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Per-recipient caps, `"COUNT/WINDOW"` (`"50/24h"`, `"1/1m"`); none: the kind's default
    /// (Aliyun SMS 50/24h; Aliyun voice 1/1m, 5/1h, 20/24h; Tencent SMS 2/24h).
    pub caps: Option<Vec<String>>,
    /// Failures among the last 200 results before the circuit may open (the gateway is then
    /// skipped, and probed after the cool-down).
    pub breaker_failures: u32,
    /// The share of those results that must have failed for it to open (0.75: three in four).
    pub breaker_rate: f64,
    /// How long an open circuit waits before one probe.
    #[serde(deserialize_with = "duration")]
    pub breaker_cooldown: Duration,
    /// How often the provider's query API is asked for the receipts that never came (kinds
    /// with one: `aliyun-sms`, `tencent-sms`); ignored by the others.
    #[serde(deserialize_with = "duration")]
    pub reconcile_every: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate: None,
            concurrency: default_concurrency(),
            caps: None,
            breaker_failures: 5,
            breaker_rate: 0.75,
            breaker_cooldown: Duration::from_secs(30),
            reconcile_every: Duration::from_secs(300),
        }
    }
}

/// Aliyun SMS (dysmsapi SendSms, V3 signature).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunSms {
    #[serde(default = "aliyun_sms_endpoint")]
    pub endpoint: String,
    pub access_key_id_env: String,
    pub access_key_secret_env: String,
    pub sign_name: String,
    pub template_code: String,
    /// Template variable → minijinja expression over the message facts (`place`, `event`,
    /// `code`, `link` …); each rendered value is cut to the provider's variable limit.
    #[serde(default)]
    pub template_params: BTreeMap<String, String>,
    /// The environment variable holding the hooks' URL token (`/hooks/NAME/TOKEN/…`): the
    /// provider signs no callback.
    pub hook_token_env: Option<String>,
    /// Source addresses or CIDR blocks allowed to call the hooks (empty: any).
    #[serde(default)]
    pub allow_from: Vec<String>,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub limits: Limits,
}

/// Aliyun voice (dyvmsapi): IvrCall where pressing 1 answers, SingleCallByTts otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunVoice {
    #[serde(default = "aliyun_voice_endpoint")]
    pub endpoint: String,
    pub access_key_id_env: String,
    pub access_key_secret_env: String,
    pub called_show_number: String,
    pub tts_code: String,
    #[serde(default)]
    pub template_params: BTreeMap<String, String>,
    /// The TTS template played after a key press of 1 (IvrCall's MenuKeyMap); none: the
    /// call is a SingleCallByTts and no key is asked for.
    pub ack_tts_code: Option<String>,
    #[serde(default = "play_times")]
    pub play_times: u8,
    /// How long IvrCall waits for a key after the prompt (its `Timeout`).
    #[serde(default = "key_timeout", deserialize_with = "duration")]
    pub key_timeout: Duration,
    /// The environment variable holding the hooks' URL token (`/hooks/NAME/TOKEN/…`): the
    /// provider signs no callback.
    pub hook_token_env: Option<String>,
    /// Source addresses or CIDR blocks allowed to call the hooks (empty: any).
    #[serde(default)]
    pub allow_from: Vec<String>,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub limits: Limits,
}

/// Tencent Cloud SMS (SendSms 2021-01-11, TC3-HMAC-SHA256).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentSms {
    #[serde(default = "tencent_sms_endpoint")]
    pub endpoint: String,
    pub region: String,
    pub secret_id_env: String,
    pub secret_key_env: String,
    pub sdk_app_id: String,
    pub sign_name: String,
    pub template_id: String,
    /// The template's variables in order, each a minijinja expression over the message facts.
    #[serde(default)]
    pub template_params: Vec<String>,
    /// Characters each rendered variable is cut to (Tencent's per-variable limit is
    /// unconfirmed; the whole message must stay within 500).
    #[serde(default = "tencent_param_limit")]
    pub param_limit: usize,
    /// The environment variable holding the hooks' URL token (`/hooks/NAME/TOKEN/…`): the
    /// provider signs no callback.
    pub hook_token_env: Option<String>,
    /// Source addresses or CIDR blocks allowed to call the hooks (empty: any).
    #[serde(default)]
    pub allow_from: Vec<String>,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub limits: Limits,
}

/// Twilio Messages (`twilio-sms`) or Calls with TwiML `<Gather>` (`twilio-voice`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Twilio {
    #[serde(default = "twilio_endpoint")]
    pub endpoint: String,
    pub account_sid: String,
    pub auth_token_env: String,
    /// The sending number (E.164), unless a messaging service sends.
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// `<Say language=…>` for voice.
    #[serde(default = "twilio_language")]
    pub language: String,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub limits: Limits,
}

/// A bot webhook: the call-out as JSON, or a WeCom / DingTalk group robot's message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The robot's URL (`endpoint` like every kind).
    #[serde(default)]
    pub endpoint: String,
    /// The environment variable holding the URL instead, for robots whose URL is their only
    /// secret (WeCom's `?key=`, DingTalk's `access_token`): it wins over `endpoint`.
    pub endpoint_env: Option<String>,
    #[serde(default)]
    pub preset: WebhookPreset,
    /// DingTalk's signing secret (加签), from the environment; with the `json` preset, the
    /// secret of the generic protocol's `X-Jiaoying-Signature`.
    pub secret_env: Option<String>,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookPreset {
    /// The call-out as JSON.
    #[default]
    Json,
    Wecom,
    Dingtalk,
}

/// A per-recipient cap: at most `max` sends to one address within any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub max: u32,
    pub window: Duration,
}

impl Cap {
    /// `"COUNT/WINDOW"`: `"50/24h"`, `"1/1m"`.
    pub fn parse(s: &str) -> Option<Cap> {
        let (n, w) = s.split_once('/')?;
        Some(Cap {
            max: n.trim().parse().ok()?,
            window: humantime::parse_duration(w.trim()).ok()?,
        })
    }
}

impl Gateway {
    /// The per-recipient caps in force: the configured ones, or the kind's default. Windows
    /// are rolling, which never lets through more than a provider's clock-aligned window.
    pub fn caps(&self, name: &str) -> anyhow::Result<Vec<Cap>> {
        let given = self.limits().caps;
        let list: Vec<String> = match given {
            Some(c) => c,
            None => self.default_caps().iter().map(|s| s.to_string()).collect(),
        };
        list.iter()
            .enumerate()
            .map(|(i, c)| {
                Cap::parse(c).ok_or_else(|| {
                    anyhow::anyhow!(
                        "gateways.{name}.limits.caps[{i}]: {c:?} is not COUNT/WINDOW (e.g. \"50/24h\")"
                    )
                })
            })
            .collect()
    }

    /// The gateway's limits.
    pub fn limits(&self) -> Limits {
        match self {
            Gateway::AliyunSms(g) => g.limits.clone(),
            Gateway::AliyunVoice(g) => g.limits.clone(),
            Gateway::TencentSms(g) => g.limits.clone(),
            Gateway::TwilioSms(g) | Gateway::TwilioVoice(g) => g.limits.clone(),
            Gateway::Webhook(g) => g.limits.clone(),
            Gateway::Generic { limits, .. } | Gateway::Loopback { limits } | Gateway::Smtp { limits, .. } => {
                limits.clone()
            }
        }
    }

    /// Whether the kind's adapter can ask its provider for receipts (`Channel::reconcile`):
    /// those gateways get a reconciliation job.
    pub fn reconciles(&self) -> bool {
        matches!(self, Gateway::AliyunSms(_) | Gateway::TencentSms(_))
    }

    /// The per-recipient caps as the provider enforces them by default.
    pub fn default_caps(&self) -> &'static [&'static str] {
        match self {
            Gateway::AliyunSms(_) => &["50/24h"],
            Gateway::AliyunVoice(_) => &["1/1m", "5/1h", "20/24h"],
            Gateway::TencentSms(_) => &["2/24h"],
            _ => &[],
        }
    }
}

fn aliyun_sms_endpoint() -> String {
    "https://dysmsapi.aliyuncs.com/".into()
}

fn aliyun_voice_endpoint() -> String {
    "https://dyvmsapi.aliyuncs.com/".into()
}

fn tencent_sms_endpoint() -> String {
    "https://sms.tencentcloudapi.com/".into()
}

fn tencent_param_limit() -> usize {
    20
}

fn twilio_endpoint() -> String {
    "https://api.twilio.com".into()
}

fn twilio_language() -> String {
    "zh-CN".into()
}

fn play_times() -> u8 {
    2
}

fn key_timeout() -> Duration {
    Duration::from_secs(10)
}
