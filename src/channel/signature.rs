//! Signatures of the generic gateway protocol (SPEC §5): `X-Jiaoying-Timestamp` and
//! `X-Jiaoying-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
//!
//! Owns signing and checking only, both ways (outbound requests and inbound hooks).
//! It must not read headers from a request type, hold secrets, or keep a replay cache:
//! the caller passes header values, the secret and `now`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-jiaoying-timestamp";
pub const SIGNATURE_HEADER: &str = "x-jiaoying-signature";
/// "a timestamp more than 5 minutes off" is refused, either way (clock skew).
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Jiaoying-Timestamp or X-Jiaoying-Signature header")]
    Missing,
    #[error("X-Jiaoying-Timestamp is not a whole number of unix seconds")]
    BadTimestamp,
    #[error("X-Jiaoying-Timestamp is more than 5 minutes away from now")]
    Stale,
    #[error("no v1 signature matches the body")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC-SHA256 takes any key");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `X-Jiaoying-Signature` value for a request: `v1=<lowercase hex>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body).finalize().into_bytes();
    format!("v1={}", hex::encode(tag))
}

/// Checks a signed request. Several `v1=` values (comma- or space-separated) are
/// accepted so that a secret can be rotated; one match is enough.
pub fn verify(
    secret: &[u8],
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    let (Some(ts), Some(sig)) = (
        timestamp_header.map(str::trim).filter(|s| !s.is_empty()),
        signature_header.map(str::trim).filter(|s| !s.is_empty()),
    ) else {
        return Err(SignatureError::Missing);
    };
    // Digits only: the MAC covers the header text, so "+17…" or " 17…" must not pass.
    if ts.len() > 18 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadTimestamp);
    }
    let t: i64 = ts.parse().map_err(|_| SignatureError::BadTimestamp)?;
    // Checked before the MAC: a replay outside the window costs no hashing.
    if now_unix.abs_diff(t) > MAX_SKEW_SECS as u64 {
        return Err(SignatureError::Stale);
    }
    let m = mac(secret, ts, body);
    let ok = sig
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|v| v.strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        // verify_slice compares in constant time and rejects wrong lengths.
        .any(|tag| m.clone().verify_slice(&tag).is_ok());
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const TS: i64 = 1_750_000_000;
    const BODY: &[u8] = br#"{"from": "+8613800000000", "text": "1", "at": "2025-06-15T22:13:20+08:00"}"#;
    /// Computed independently with python3 `hmac.new(SECRET, b"1750000000." + BODY, sha256)`.
    const VECTOR: &str = "v1=6211145be77417b65b9bbb86499c32fbd7c89f8c762a6cf2aad5ad2a7daff909";

    fn check(ts: Option<&str>, sig: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
        verify(SECRET, ts, sig, body, now)
    }

    #[test]
    fn known_vector() {
        assert_eq!(sign(SECRET, TS, BODY), VECTOR);
        assert_eq!(
            sign(b"key", 0, b""),
            "v1=85841b4efc3cd7776c3c8f9b7cca9e281c550e5d19889d78e9e669c6337f000d"
        );
        assert_eq!(check(Some("1750000000"), Some(VECTOR), BODY, TS), Ok(()));
    }

    #[test]
    fn skew_window() {
        let ts = Some("1750000000");
        assert_eq!(check(ts, Some(VECTOR), BODY, TS + 300), Ok(()));
        assert_eq!(check(ts, Some(VECTOR), BODY, TS - 300), Ok(()));
        assert_eq!(
            check(ts, Some(VECTOR), BODY, TS + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            check(ts, Some(VECTOR), BODY, TS - 301),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn missing_and_bad_timestamp() {
        use SignatureError::*;
        assert_eq!(check(None, Some(VECTOR), BODY, TS), Err(Missing));
        assert_eq!(check(Some("1750000000"), None, BODY, TS), Err(Missing));
        assert_eq!(check(Some("  "), Some(VECTOR), BODY, TS), Err(Missing));
        assert_eq!(check(Some("1750000000"), Some(""), BODY, TS), Err(Missing));
        for bad in [
            "abc",
            "+1750000000",
            "-1",
            "1.5e9",
            "1750000000x",
            "99999999999999999999",
            "１７５",
        ] {
            assert_eq!(
                check(Some(bad), Some(VECTOR), BODY, TS),
                Err(BadTimestamp),
                "{bad}"
            );
        }
    }

    #[test]
    fn mismatch() {
        use SignatureError::Mismatch;
        let ts = Some("1750000000");
        let mut body = BODY.to_vec();
        body[20] ^= 1;
        assert_eq!(check(ts, Some(VECTOR), &body, TS), Err(Mismatch));
        assert_eq!(verify(b"other", ts, Some(VECTOR), BODY, TS), Err(Mismatch));
        // signature made for another timestamp
        let other = sign(SECRET, TS + 1, BODY);
        assert_eq!(check(ts, Some(&other), BODY, TS), Err(Mismatch));
        for junk in [
            "v1=",
            "v1=zz",
            &VECTOR[..VECTOR.len() - 2],
            "v0=abc",
            &VECTOR[3..],
            "v2=6211",
        ] {
            assert_eq!(check(ts, Some(junk), BODY, TS), Err(Mismatch), "{junk}");
        }
    }

    #[test]
    fn rotation_lists() {
        let ts = Some("1750000000");
        let old = sign(b"old secret", TS, BODY);
        for header in [
            format!("{old},{VECTOR}"),
            format!("{old} {VECTOR}"),
            format!("{VECTOR}, {old}"),
            format!("t=1, {VECTOR}"),
            VECTOR.to_uppercase().replace("V1=", "v1="),
        ] {
            assert_eq!(check(ts, Some(&header), BODY, TS), Ok(()), "{header}");
        }
        assert_eq!(check(ts, Some(&old), BODY, TS), Err(SignatureError::Mismatch));
    }
}
