//! The pure part of the hash-chained ledger: how an entry is hashed, how a run of new
//! entries is chained, and how a stored run is checked.
//!
//! It must not read or write storage, pick `seq` or `at` itself, or decide what goes in
//! `body`. Note: a chain alone cannot show that its newest entries were cut off; the
//! caller must compare the last hash/seq with its own record of the head.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the very first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Bumped if the encoding ever changes, so old and new hashes can never collide.
const DOMAIN: &[u8] = b"jiaoying-ledger-v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    /// unix milliseconds
    pub at: i64,
    pub kind: String,
    pub subject: String,
    /// JSON text, hashed byte for byte as stored
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger broken at seq {seq}: {reason}")]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
}

/// Lowercase hex SHA-256 over the previous hash and the entry's own fields. Strings are
/// length-prefixed so ("ab","c") and ("a","bc") never hash alike.
pub fn entry_hash(prev_hash: &str, seq: i64, at: i64, kind: &str, subject: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(&at.to_be_bytes());
    field(kind.as_bytes());
    field(subject.as_bytes());
    field(body.as_bytes());
    hex::encode(h.finalize())
}

/// Builds consecutive entries `first_seq, first_seq + 1, …`, the first linked to `prev_hash`.
pub fn chain(
    prev_hash: &str,
    first_seq: i64,
    items: impl IntoIterator<Item = (i64, String, String, String)>,
) -> Vec<Entry> {
    let mut prev = prev_hash.to_string();
    let mut seq = first_seq;
    let mut out = Vec::new();
    for (at, kind, subject, body) in items {
        let hash = entry_hash(&prev, seq, at, &kind, &subject, &body);
        let e = Entry {
            seq,
            at,
            kind,
            subject,
            body,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        };
        out.push(e);
        seq = seq.saturating_add(1);
    }
    out
}

/// Checks entries given in `seq` order, the first linked to `expected_prev`. Returns
/// how many were checked, or the first entry that breaks the chain.
pub fn verify(entries: impl IntoIterator<Item = Entry>, expected_prev: &str) -> Result<usize, Broken> {
    let mut prev_hash = expected_prev.to_string();
    let mut prev_seq: Option<i64> = None;
    let mut count = 0;
    for e in entries {
        let broken = |reason: String| Broken { seq: e.seq, reason };
        if let Some(p) = prev_seq {
            if e.seq <= p {
                return Err(broken(format!("sequence out of order after {p}")));
            }
            if p.checked_add(1) != Some(e.seq) {
                return Err(broken(format!("sequence gap after {p}")));
            }
        }
        if e.prev_hash != prev_hash {
            return Err(broken("prev_hash does not match previous entry".into()));
        }
        let h = entry_hash(&e.prev_hash, e.seq, e.at, &e.kind, &e.subject, &e.body);
        if e.hash != h {
            return Err(broken("hash mismatch".into()));
        }
        prev_seq = Some(e.seq);
        prev_hash = e.hash;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn five() -> Vec<Entry> {
        chain(
            GENESIS,
            1,
            (1..=5).map(|i| {
                (
                    1_750_000_000_000 + i,
                    "callout.sent".to_string(),
                    format!("callout:{i}"),
                    format!(r#"{{"n":{i}}}"#),
                )
            }),
        )
    }

    fn broken_at(entries: Vec<Entry>) -> (i64, String) {
        let b = verify(entries, GENESIS).expect_err("chain should be broken");
        (b.seq, b.reason)
    }

    #[test]
    fn five_verify_and_continue() {
        let c = five();
        assert_eq!(c.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(c[0].prev_hash, GENESIS);
        assert!(c[4].hash.len() == 64 && c[4].hash.bytes().all(|b| b"0123456789abcdef".contains(&b)));
        assert_eq!(verify(c.clone(), GENESIS), Ok(5));
        assert_eq!(verify(Vec::new(), GENESIS), Ok(0));
        // a later batch appended to the head, and a check that starts mid-chain
        let more = chain(&c[4].hash, 6, [(1, "k".into(), "s".into(), "{}".into())]);
        assert_eq!(verify(c.iter().cloned().chain(more.clone()), GENESIS), Ok(6));
        assert_eq!(verify(c[2..].to_vec(), &c[1].hash), Ok(3));
        assert_eq!(verify(c.clone(), &"1".repeat(64)).unwrap_err().seq, 1);
    }

    #[test]
    fn any_edit_is_found() {
        let mismatch = "hash mismatch".to_string();
        for i in 0..5 {
            let seq = i as i64 + 1;
            let edits: [fn(&mut Entry); 5] = [
                |e| e.at += 1,
                |e| e.kind.push('x'),
                |e| e.subject = "callout:99".into(),
                |e| e.body = r#"{"n":0}"#.into(),
                |e| e.hash = e.hash.replace(|c: char| c.is_ascii_digit(), "f"),
            ];
            for edit in edits {
                let mut c = five();
                edit(&mut c[i]);
                assert_eq!(broken_at(c), (seq, mismatch.clone()));
            }
            let mut c = five();
            c[i].prev_hash = "f".repeat(64);
            assert_eq!(
                broken_at(c),
                (seq, "prev_hash does not match previous entry".into())
            );
        }
    }

    #[test]
    fn rehashing_an_edit_breaks_the_next_link() {
        let mut c = five();
        let e = &mut c[2];
        e.body = r#"{"n":300}"#.into();
        e.hash = entry_hash(&e.prev_hash, e.seq, e.at, &e.kind, &e.subject, &e.body);
        assert_eq!(
            broken_at(c),
            (4, "prev_hash does not match previous entry".into())
        );
    }

    #[test]
    fn delete_reorder_insert() {
        let mut c = five();
        c.remove(2);
        assert_eq!(broken_at(c), (4, "sequence gap after 2".into()));

        let mut c = five();
        c.remove(0);
        assert_eq!(
            broken_at(c),
            (2, "prev_hash does not match previous entry".into())
        );

        let mut c = five();
        c.swap(2, 3);
        assert_eq!(broken_at(c), (4, "sequence gap after 2".into()));

        let mut c = five();
        c.swap(3, 4);
        assert_eq!(broken_at(c), (5, "sequence gap after 3".into()));

        // a well-formed entry slipped in after seq 2: the old seq 3 no longer fits
        let mut c = five();
        let fake = chain(
            &c[1].hash,
            3,
            [(0, "ack".into(), "callout:1".into(), "{}".into())],
        );
        c.insert(2, fake[0].clone());
        assert_eq!(broken_at(c.clone()), (3, "sequence out of order after 3".into()));
        // ... and renumbering the rest without rehashing is caught too
        for e in &mut c[3..] {
            e.seq += 1;
        }
        assert_eq!(
            broken_at(c),
            (4, "prev_hash does not match previous entry".into())
        );

        let mut c = five();
        c[2].seq = 7;
        assert_eq!(broken_at(c), (7, "sequence gap after 2".into()));
    }

    #[test]
    fn fields_are_length_prefixed() {
        let h = |k: &str, s: &str| entry_hash(GENESIS, 1, 0, k, s, "{}");
        assert_ne!(h("ab", "c"), h("a", "bc"));
        assert_ne!(h("", "abc"), h("abc", ""));
        assert_ne!(
            entry_hash(GENESIS, 1, 0, "k", "s", "b"),
            entry_hash(GENESIS, 2, 0, "k", "s", "b")
        );
        assert_ne!(
            entry_hash(GENESIS, 1, 0, "k", "s", "b"),
            entry_hash(&"1".repeat(64), 1, 0, "k", "s", "b")
        );
        assert_eq!(h("ab", "c"), h("ab", "c"));
    }

    #[test]
    fn serde_round_trip() {
        let c = five();
        let json = serde_json::to_string(&c).unwrap();
        let back: Vec<Entry> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
