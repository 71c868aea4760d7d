//! Answer-link tokens for `/a/TOKEN`: `{callout id base36}.{expiry base36}.{12-char MAC}`.
//!
//! Owns the token format, its MAC and its expiry rule. Tokens go in a 70-character SMS,
//! so they stay short (~26 chars). It must not know about call-out state: replay and
//! idempotence of a second answer are the caller's job (SPEC §8). No clock: `now` is passed in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Domain separation, so a MAC made for another purpose with the same secret is no token.
const CONTEXT: &[u8] = b"jiaoying/answer-token/v1:";
/// 12 base64url chars = exactly 9 MAC bytes (72 bits): short, and still unguessable
/// online within a token's lifetime.
const MAC_CHARS: usize = 12;
const MAC_BYTES: usize = 9;

pub use crate::core::TokenKey;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed")]
    Malformed,
    #[error("forged")]
    Forged,
    #[error("expired")]
    Expired,
}

fn mac_of(key: &TokenKey, payload: &str) -> Hmac<Sha256> {
    let mut m = key.0.clone();
    m.update(CONTEXT);
    m.update(payload.as_bytes());
    m
}

/// The token for `callout_id`, valid while `now < expires_at_unix`.
pub fn sign(key: &TokenKey, callout_id: i64, expires_at_unix: i64) -> String {
    let payload = format!("{}.{}", base36(callout_id), base36(expires_at_unix));
    let tag = mac_of(key, &payload).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..MAC_BYTES]))
}

/// Checks a token and returns its call-out id. The MAC is checked (in constant time)
/// before expiry, so a forged token never reports "expired".
pub fn verify(key: &TokenKey, token: &str, now_unix: i64) -> Result<i64, TokenError> {
    let mut parts = token.split('.');
    let (Some(id_s), Some(exp_s), Some(mac_s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let id = unbase36(id_s).ok_or(TokenError::Malformed)?;
    let exp = unbase36(exp_s).ok_or(TokenError::Malformed)?;
    if mac_s.len() != MAC_CHARS {
        return Err(TokenError::Malformed);
    }
    let given = URL_SAFE_NO_PAD.decode(mac_s).map_err(|_| TokenError::Malformed)?;
    // MAC over the text as received: any other spelling of the same numbers is forged.
    mac_of(key, &token[..id_s.len() + 1 + exp_s.len()])
        .verify_truncated_left(&given)
        .map_err(|_| TokenError::Forged)?;
    if now_unix >= exp {
        return Err(TokenError::Expired);
    }
    Ok(id)
}

const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn base36(v: i64) -> String {
    let mut n = v.unsigned_abs();
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.reverse();
    out.into_iter().map(char::from).collect()
}

/// Parses canonical base36 only (lowercase, no leading zeros, no "-0").
fn unbase36(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 14 {
        return None;
    }
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let mut n: i128 = 0;
    for b in digits.bytes() {
        let d = DIGITS.iter().position(|&x| x == b)?;
        n = n * 36 + d as i128;
    }
    let v = i64::try_from(if neg { -n } else { n }).ok()?;
    (base36(v) == s).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn key() -> TokenKey {
        TokenKey::new(b"test secret")
    }

    #[test]
    fn round_trip_and_short() {
        for id in [0, 1, 37, 123_456, 999_999_999, i64::MAX, -5] {
            let t = sign(&key(), id, NOW + 86_400);
            assert_eq!(verify(&key(), &t, NOW), Ok(id), "{t}");
            assert!(t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        }
        let t = sign(&key(), 999_999_999, NOW + 7 * 86_400);
        assert!(t.len() < 30, "{t} is {} chars", t.len());
    }

    #[test]
    fn tampering_is_forged() {
        let t = sign(&key(), 4242, NOW + 600);
        let other_id = sign(&key(), 4243, NOW + 600);
        let later = sign(&key(), 4242, NOW + 6000);
        let [id, exp, mac]: [&str; 3] = t.split('.').collect::<Vec<_>>().try_into().unwrap();
        let [oid, _, _]: [&str; 3] = other_id.split('.').collect::<Vec<_>>().try_into().unwrap();
        let [_, lexp, _]: [&str; 3] = later.split('.').collect::<Vec<_>>().try_into().unwrap();
        let forged = |s: String| assert_eq!(verify(&key(), &s, NOW), Err(TokenError::Forged), "{s}");
        forged(format!("{oid}.{exp}.{mac}"));
        forged(format!("{id}.{lexp}.{mac}"));
        let mut m: Vec<u8> = mac.bytes().collect();
        m[0] = if m[0] == b'A' { b'B' } else { b'A' };
        forged(format!("{id}.{exp}.{}", String::from_utf8(m).unwrap()));
        // every single-character change to the MAC is caught
        for i in 0..MAC_CHARS {
            let mut m: Vec<u8> = mac.bytes().collect();
            m[i] = if m[i] == b'x' { b'y' } else { b'x' };
            forged(format!("{id}.{exp}.{}", String::from_utf8(m).unwrap()));
        }
    }

    #[test]
    fn wrong_key_is_forged_even_when_expired() {
        let t = sign(&TokenKey::new(b"other"), 7, NOW - 10);
        assert_eq!(verify(&key(), &t, NOW), Err(TokenError::Forged));
    }

    #[test]
    fn expiry_boundary() {
        let t = sign(&key(), 7, NOW);
        assert_eq!(verify(&key(), &t, NOW - 1), Ok(7));
        assert_eq!(verify(&key(), &t, NOW), Err(TokenError::Expired));
        assert_eq!(verify(&key(), &t, NOW + 1), Err(TokenError::Expired));
    }

    #[test]
    fn malformed() {
        let t = sign(&key(), 1000, NOW + 60); // id "rs": has letters to uppercase
        let [id, exp, mac]: [&str; 3] = t.split('.').collect::<Vec<_>>().try_into().unwrap();
        for s in [
            String::new(),
            ".".into(),
            "..".into(),
            "abc".into(),
            format!("{id}.{exp}"),
            format!("{t}.x"),
            format!("{id}.{exp}.{mac}x"),
            format!("{id}.{exp}.{}", &mac[1..]),
            format!("0{id}.{exp}.{mac}"), // non-canonical number
            format!("{}.{exp}.{mac}", id.to_uppercase()),
            format!("-0.{exp}.{mac}"),
            format!("{id}.{exp}.{}", "!".repeat(12)),
            format!("zzzzzzzzzzzzzz.{exp}.{mac}"), // overflows i64
            format!("收到.{exp}.{mac}"),
            format!("{id}.{exp}.１２３４５６７８９０１２"),
        ] {
            assert_eq!(verify(&key(), &s, NOW), Err(TokenError::Malformed), "{s:?}");
        }
    }

    #[test]
    fn base36_round_trip() {
        for v in [0, 1, 35, 36, -1, i64::MAX, i64::MIN, 1_750_000_000] {
            assert_eq!(unbase36(&base36(v)), Some(v));
        }
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
