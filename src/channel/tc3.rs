//! Tencent Cloud API 3.0 request signing (TC3-HMAC-SHA256, PROVIDERS.md §3.2): canonical
//! request, credential scope with the **UTC** date of the timestamp, the derived keys, and the
//! `Authorization` header. Pure: no IO, no clock (the caller passes the timestamp), and the
//! secret key never leaves this module except as a MAC.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// What a TC3 signature covers. Only POST with an empty query is built here (JSON bodies
/// require TC3; nothing we send is a GET).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The `Host` header exactly as sent (with `:port` when not the scheme's default).
    pub host: &'a str,
    /// The `Content-Type` header exactly as sent.
    pub content_type: &'a str,
    /// `Some(action)`: `x-tc-action` is signed too (the newer doc revision, vector T2).
    pub action: Option<&'a str>,
    pub payload: &'a [u8],
    /// `sms`, `cvm` …
    pub service: &'a str,
    /// Unix seconds (`X-TC-Timestamp`).
    pub timestamp: i64,
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

impl Request<'_> {
    /// `content-type;host` or `content-type;host;x-tc-action`.
    pub fn signed_headers(&self) -> &'static str {
        if self.action.is_some() {
            "content-type;host;x-tc-action"
        } else {
            "content-type;host"
        }
    }

    pub fn canonical_request(&self) -> String {
        // Names and values lower-cased and trimmed, sorted by name (the three names above
        // already are).
        let mut headers = format!(
            "content-type:{}\nhost:{}\n",
            self.content_type.trim().to_lowercase(),
            self.host.trim().to_lowercase()
        );
        if let Some(a) = self.action {
            headers.push_str(&format!("x-tc-action:{}\n", a.trim().to_lowercase()));
        }
        format!(
            "POST\n/\n\n{headers}\n{}\n{}",
            self.signed_headers(),
            sha256_hex(self.payload)
        )
    }

    /// `YYYY-MM-DD/service/tc3_request`, the date in UTC: Beijing's date is a day ahead
    /// between 00:00 and 08:00 and Tencent refuses it.
    pub fn credential_scope(&self) -> String {
        format!("{}/{}/tc3_request", utc_date(self.timestamp), self.service)
    }

    pub fn string_to_sign(&self) -> String {
        format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            self.timestamp,
            self.credential_scope(),
            sha256_hex(self.canonical_request().as_bytes())
        )
    }

    /// Lower-case hex of the signature.
    pub fn signature(&self, secret_key: &str) -> String {
        let date = hmac(
            format!("TC3{secret_key}").as_bytes(),
            utc_date(self.timestamp).as_bytes(),
        );
        let service = hmac(&date, self.service.as_bytes());
        let signing = hmac(&service, b"tc3_request");
        hex::encode(hmac(&signing, self.string_to_sign().as_bytes()))
    }

    /// The `Authorization` header (", " between its parts, unlike Aliyun's ",").
    pub fn authorization(&self, secret_id: &str, secret_key: &str) -> String {
        format!(
            "{ALGORITHM} Credential={secret_id}/{}, SignedHeaders={}, Signature={}",
            self.credential_scope(),
            self.signed_headers(),
            self.signature(secret_key)
        )
    }
}

/// The UTC date of a Unix timestamp, `YYYY-MM-DD`.
pub fn utc_date(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1_PAYLOAD: &str =
        r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    const T1_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";

    fn t1(action: Option<&'static str>) -> Request<'static> {
        Request {
            host: "cvm.tencentcloudapi.com",
            content_type: "application/json; charset=utf-8",
            action,
            payload: T1_PAYLOAD.as_bytes(),
            service: "cvm",
            timestamp: 1551113065,
        }
    }

    #[test]
    fn t1_official_vector() {
        let r = t1(None);
        assert_eq!(
            sha256_hex(r.payload),
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            r.canonical_request(),
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            sha256_hex(r.canonical_request().as_bytes()),
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            r.string_to_sign(),
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            r.signature(T1_KEY),
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        assert_eq!(
            r.authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", T1_KEY),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn t2_signs_x_tc_action_with_the_masked_key() {
        let r = t1(Some("DescribeInstances"));
        assert!(r
            .canonical_request()
            .contains("\nx-tc-action:describeinstances\n\ncontent-type;host;x-tc-action\n"));
        assert_eq!(
            sha256_hex(r.canonical_request().as_bytes()),
            "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        assert_eq!(
            r.signature(&"*".repeat(32)),
            "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
        );
    }

    #[test]
    fn d2_sms_regression_vector() {
        let payload = r#"{"PhoneNumberSet":["+8613800000000"],"SmsSdkAppId":"1400006666","SignName":"腾讯云","TemplateId":"1110","TemplateParamSet":["4370"]}"#;
        let r = Request {
            host: "sms.tencentcloudapi.com",
            content_type: "application/json; charset=utf-8",
            action: None,
            payload: payload.as_bytes(),
            service: "sms",
            timestamp: 1551113065,
        };
        assert_eq!(
            sha256_hex(r.payload),
            "0a9983fba553479a82f97f0521d99ba81258f3f517395ea5e2398bf93575543e"
        );
        assert_eq!(
            sha256_hex(r.canonical_request().as_bytes()),
            "3c59eff1f7ede32b3d393def39dd1ec63437480d8e0ae185dfe9f983f0c78064"
        );
        assert_eq!(
            r.signature(T1_KEY),
            "2490501031b8e941c77a80d12c63c2cdffc34b8b4cfd5178c91706a289d76809"
        );
    }

    #[test]
    fn half_past_midnight_in_beijing_is_the_previous_utc_date() {
        use chrono::TimeZone;
        let beijing = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        let ts = beijing
            .with_ymd_and_hms(2026, 7, 16, 0, 30, 0)
            .unwrap()
            .timestamp();
        let r = Request {
            timestamp: ts,
            service: "sms",
            ..t1(None)
        };
        assert_eq!(r.credential_scope(), "2026-07-15/sms/tc3_request");
        assert!(r.string_to_sign().contains("\n2026-07-15/sms/tc3_request\n"));
        // Until 08:00 Beijing time the UTC date is still the day before.
        let at = |h, m| {
            Request {
                timestamp: beijing
                    .with_ymd_and_hms(2026, 7, 16, h, m, 0)
                    .unwrap()
                    .timestamp(),
                ..r.clone()
            }
            .credential_scope()
        };
        assert_eq!(at(7, 59), "2026-07-15/sms/tc3_request");
        assert_eq!(at(8, 0), "2026-07-16/sms/tc3_request");
    }
}
