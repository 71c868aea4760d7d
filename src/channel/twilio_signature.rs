//! `X-Twilio-Signature` (PROVIDERS.md §4.4): Base64(HMAC-SHA1(auth token, URL + the POST
//! parameters sorted by name, each `name + value`)), checked in constant time against the URL
//! as given, without its default port and with the default port added (Twilio signs whichever
//! form it was configured with); a JSON body is signed through `bodySHA256=` in the URL.
//!
//! Pure: owns signing and checking only. It must not read requests, hold the token or log
//! anything; the caller passes the URL, the parameters and the header value.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const HEADER: &str = "x-twilio-signature";

/// The string Twilio signs: the URL, then for each parameter name in byte order its values
/// deduplicated and sorted, each appended as `name + value` with no separator (vector W2).
pub fn string_to_sign(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut s = String::from(url);
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

fn mac(token: &[u8], url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = Hmac::<Sha1>::new_from_slice(token).expect("HMAC-SHA1 takes any key");
    m.update(string_to_sign(url, params).as_bytes());
    m
}

/// The `X-Twilio-Signature` value Twilio sends for a form POST to `url` (no params: a GET or
/// a JSON body, whose URL carries `bodySHA256`).
pub fn sign(token: &[u8], url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(token, url, params).finalize().into_bytes())
}

/// The forms of `url` Twilio may have signed: as given, without its scheme's default port,
/// and with it added. Any other explicit port is kept (it is part of what was configured).
pub fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let port = authority
        .rsplit_once(':')
        .filter(|(host, p)| !host.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        // `[::1]` has colons but no port.
        .filter(|_| !authority.ends_with(']'));
    let other = match port {
        Some((host, p)) if p == default => format!("{scheme}://{host}{tail}"),
        Some(_) => return out,
        None => format!("{scheme}://{authority}:{default}{tail}"),
    };
    out.push(other);
    out
}

/// Checks a form-encoded (or GET) callback: one URL variant matching is enough.
pub fn verify_form(token: &[u8], url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    url_variants(url)
        .iter()
        // verify_slice compares in constant time and rejects wrong lengths.
        .any(|u| mac(token, u, params).verify_slice(&tag).is_ok())
}

/// Checks a JSON callback: the URL (with its `bodySHA256`) signed with no params, and the
/// body's SHA-256 equal to that `bodySHA256`.
pub fn verify_json(token: &[u8], url: &str, body: &[u8], signature: &str) -> bool {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let claimed = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("bodySHA256="))
        .and_then(|h| hex::decode(h).ok());
    let Some(claimed) = claimed else {
        return false;
    };
    let actual = Sha256::digest(body);
    // Not secret, but compared without an early exit anyway.
    let same_hash = claimed.len() == actual.len()
        && claimed
            .iter()
            .zip(actual.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    // Both checks run: which one failed is not told by the time taken.
    let signed = verify_form(token, url, &[], signature);
    same_hash & signed
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors W1–W6 of PROVIDERS.md §0, inputs exactly as published (twilio-python
    // tests/unit/test_request_validator.py, twilio-node spec/validation.spec.js).
    const TOKEN: &[u8] = b"12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn w1_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn w1_form_params() {
        let p = w1_params();
        assert_eq!(sign(TOKEN, URL, &p), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(verify_form(TOKEN, URL, &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
        // The order received does not matter.
        let mut rev = p.clone();
        rev.reverse();
        assert!(verify_form(TOKEN, URL, &rev, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    }

    #[test]
    fn w2_repeated_names() {
        let p: Vec<(String, String)> = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(sign(TOKEN, URL, &p), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
        assert!(verify_form(TOKEN, URL, &p, "IK+Dwps556ElfBT0I3Rgjkr1wJU="));
    }

    #[test]
    fn w3_https_with_443() {
        let with = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let p = w1_params();
        assert_eq!(sign(TOKEN, with, &p), "kvajT1Ptam85bY51eRf/AJRuM3w=");
        // Signed with :443, received without it, and the other way round.
        assert!(verify_form(TOKEN, URL, &p, "kvajT1Ptam85bY51eRf/AJRuM3w="));
        assert!(verify_form(TOKEN, with, &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
        assert!(verify_form(TOKEN, with, &p, "kvajT1Ptam85bY51eRf/AJRuM3w="));
    }

    #[test]
    fn w4_http_with_80_and_other_port() {
        let p = w1_params();
        let with80 = "http://mycompany.com:80/myapp.php?foo=1&bar=2";
        assert_eq!(sign(TOKEN, with80, &p), "0ZXoZLH/DfblKGATFgpif+LLRf4=");
        assert!(verify_form(
            TOKEN,
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &p,
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        ));
        let other = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
        assert_eq!(sign(TOKEN, other, &p), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
        assert!(verify_form(TOKEN, other, &p, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="));
        // A port that is not the default is not dropped: that would be another URL.
        assert!(!verify_form(
            TOKEN,
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &p,
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        ));
    }

    #[test]
    fn w5_json_body() {
        let body = br#"{"property": "value", "boolean": true}"#;
        assert_eq!(
            hex::encode(Sha256::digest(body)),
            "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let url =
            format!("{URL}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
        assert_eq!(sign(TOKEN, &url, &[]), "a9nBmqA0ju/hNViExpshrM61xv4=");
        assert!(verify_json(TOKEN, &url, body, "a9nBmqA0ju/hNViExpshrM61xv4="));
        // Another body under the same signed URL is refused.
        assert!(!verify_json(
            TOKEN,
            &url,
            br#"{"property": "other"}"#,
            "a9nBmqA0ju/hNViExpshrM61xv4="
        ));
    }

    #[test]
    fn w6_json_empty_object_needs_the_port() {
        let url =
            format!("{URL}&bodySHA256=44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
        assert_eq!(sign(TOKEN, &url, &[]), "rw/jVviOgicj2+kHZULvebnA4ag=");
        let with = url.replace("mycompany.com/", "mycompany.com:443/");
        assert_eq!(sign(TOKEN, &with, &[]), "Ldidvp12m26NI7eqEvxnEpkd9Hc=");
        // Received without the port, signed with it: accepted only through the port variant.
        assert!(verify_json(TOKEN, &url, b"{}", "Ldidvp12m26NI7eqEvxnEpkd9Hc="));
    }

    #[test]
    fn a_wrong_token_or_tampering_is_refused() {
        let p = w1_params();
        let sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!verify_form(b"54321", URL, &p, sig));
        let mut changed = p.clone();
        changed[2].1 = "1".into();
        assert!(!verify_form(TOKEN, URL, &changed, sig));
        assert!(!verify_form(
            TOKEN,
            "https://mycompany.com/myapp.php?foo=1",
            &p,
            sig
        ));
        for junk in ["", "not base64!", "RSOYDt4T1cUTdK1PDd93", "AAAA"] {
            assert!(!verify_form(TOKEN, URL, &p, junk), "{junk}");
        }
        let url =
            format!("{URL}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
        let body = br#"{"property": "value", "boolean": true}"#;
        assert!(!verify_json(b"54321", &url, body, "a9nBmqA0ju/hNViExpshrM61xv4="));
        assert!(!verify_json(TOKEN, URL, body, "a9nBmqA0ju/hNViExpshrM61xv4="));
    }

    #[test]
    fn variants() {
        assert_eq!(
            url_variants("https://a.example/x?y=1"),
            ["https://a.example/x?y=1", "https://a.example:443/x?y=1"]
        );
        assert_eq!(
            url_variants("http://a.example:80"),
            ["http://a.example:80", "http://a.example"]
        );
        assert_eq!(
            url_variants("http://a.example:8080/x"),
            ["http://a.example:8080/x"]
        );
        assert_eq!(
            url_variants("http://[::1]/x"),
            ["http://[::1]/x", "http://[::1]:80/x"]
        );
    }
}
