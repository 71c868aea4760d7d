//! Signed checkpoints of the ledger's head (pure): what is signed, the JSON line kept in the
//! checkpoint file, and checking a line against a public key and against the chain.
//!
//! A checkpoint anchors the chain outside the database: whoever can rewrite the database
//! cannot sign with a key it does not hold, so a chain cut below a checkpoint's seq, or an
//! entry at that seq with another hash, is found. This file must not read files, keys from
//! the environment or the database (the callers do), nor pick the time.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Bumped if what is signed ever changes.
const DOMAIN: &str = "jiaoying-ledger-checkpoint-v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The head's seq and hash when it was taken.
    pub seq: i64,
    pub hash: String,
    /// unix milliseconds
    pub at: i64,
    /// Why it was taken: `manual`, `schedule`, `standdown:INCIDENT`.
    pub why: String,
    /// The signer's public key, hex.
    pub key: String,
    /// ed25519 signature over [`message`], hex.
    pub sig: String,
}

/// The bytes signed: the fields, one per line, after a domain string.
pub fn message(seq: i64, hash: &str, at: i64, why: &str) -> String {
    format!("{DOMAIN}\n{seq}\n{hash}\n{at}\n{why}")
}

/// A key from its hex text (64 hex digits).
pub fn signing_key(hex_text: &str) -> Result<SigningKey, String> {
    let bytes = hex::decode(hex_text.trim()).map_err(|e| format!("the ledger key is not hex: {e}"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "the ledger key must be 32 bytes (64 hex digits)".to_string())?;
    Ok(SigningKey::from_bytes(&arr))
}

pub fn public_key(hex_text: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(hex_text.trim()).map_err(|e| format!("the public key is not hex: {e}"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "the public key must be 32 bytes (64 hex digits)".to_string())?;
    VerifyingKey::from_bytes(&arr).map_err(|e| format!("not an ed25519 public key: {e}"))
}

pub fn key_hex(k: &VerifyingKey) -> String {
    hex::encode(k.as_bytes())
}

/// Signs the head.
pub fn sign(key: &SigningKey, seq: i64, hash: &str, at: i64, why: &str) -> Checkpoint {
    let sig = key.sign(message(seq, hash, at, why).as_bytes());
    Checkpoint {
        seq,
        hash: hash.to_string(),
        at,
        why: why.to_string(),
        key: key_hex(&key.verifying_key()),
        sig: hex::encode(sig.to_bytes()),
    }
}

/// The signature is by `key` over this checkpoint's fields (the key named in the line is not
/// trusted: a forger would name their own).
pub fn check_signature(c: &Checkpoint, key: &VerifyingKey) -> Result<(), String> {
    let bytes = hex::decode(&c.sig).map_err(|_| "signature is not hex".to_string())?;
    let arr: [u8; 64] = bytes
        .try_into()
        .map_err(|_| "signature is not 64 bytes".to_string())?;
    key.verify(
        message(c.seq, &c.hash, c.at, &c.why).as_bytes(),
        &Signature::from_bytes(&arr),
    )
    .map_err(|_| {
        format!(
            "checkpoint at seq {}: the signature does not verify with the ledger's key",
            c.seq
        )
    })
}

/// Reads a checkpoint file's text: every line, in order, or the first line that is not one.
pub fn parse_lines(text: &str) -> Result<Vec<Checkpoint>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("checkpoint line {}: {e}", i + 1)))
        .collect()
}

/// What a chain ending at `head_seq` says about a (signature-checked) checkpoint, given the
/// hash of the entry at the checkpoint's seq (None: no such entry).
pub fn against_chain(c: &Checkpoint, head_seq: i64, hash_at: Option<&str>) -> Result<(), String> {
    if head_seq < c.seq {
        return Err(format!(
            "truncated: the chain ends at seq {head_seq} but a checkpoint of {} signed seq {}",
            c.at, c.seq
        ));
    }
    match hash_at {
        Some(h) if h == c.hash => Ok(()),
        Some(h) => Err(format!(
            "rewritten: entry {} has hash {h} but its checkpoint signed {}",
            c.seq, c.hash
        )),
        None => Err(format!("entry {} (checkpointed) is missing", c.seq)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    #[test]
    fn signed_checks_and_forged_does_not() {
        let k = key(7);
        let c = sign(&k, 42, &"a".repeat(64), 1_000, "manual");
        assert_eq!(check_signature(&c, &k.verifying_key()), Ok(()));
        let line = serde_json::to_string(&c).unwrap();
        assert_eq!(
            parse_lines(&format!("{line}\n\n{line}\n")).unwrap(),
            vec![c.clone(), c.clone()]
        );
        // any field changed, or another key
        for f in [
            |c: &mut Checkpoint| c.seq -= 1,
            |c: &mut Checkpoint| c.hash = "b".repeat(64),
            |c: &mut Checkpoint| c.at += 1,
            |c: &mut Checkpoint| c.why = "schedule".into(),
        ] {
            let mut x = c.clone();
            f(&mut x);
            assert!(check_signature(&x, &k.verifying_key()).is_err());
        }
        let forged = sign(&key(8), 42, &"a".repeat(64), 1_000, "manual");
        assert!(check_signature(&forged, &k.verifying_key()).is_err());
        assert_eq!(
            signing_key(&hex::encode([7u8; 32])).unwrap().verifying_key(),
            k.verifying_key()
        );
        assert!(signing_key("abc").is_err());
    }

    #[test]
    fn truncation_and_rewriting() {
        let c = sign(&key(1), 10, &"a".repeat(64), 5, "manual");
        assert!(against_chain(&c, 10, Some(&"a".repeat(64))).is_ok());
        assert!(against_chain(&c, 9, None).unwrap_err().starts_with("truncated"));
        assert!(against_chain(&c, 12, Some(&"c".repeat(64)))
            .unwrap_err()
            .starts_with("rewritten"));
    }
}
