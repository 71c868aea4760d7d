//! Console passwords: argon2id hashes (PHC strings) and the rule for a new password. Pure
//! computation, run off the async runtime because a hash takes tens of milliseconds; the
//! store keeps the hashes, `http::session` checks logins, `tools::users` sets them.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password `jiaoying user` accepts.
pub const MIN_PASSWORD: usize = 10;

/// What is wrong with a new password, if anything (Chinese first).
pub fn password_problem(pw: &str) -> Option<String> {
    if pw.trim().is_empty() {
        Some("密码不能为空 the password is empty".into())
    } else if pw.chars().count() < MIN_PASSWORD {
        Some(format!(
            "密码太短，至少 {MIN_PASSWORD} 个字符 the password is too short: at least {MIN_PASSWORD} characters"
        ))
    } else {
        None
    }
}

/// An argon2id PHC string for `pw` (default parameters), computed off the async runtime.
pub async fn hash_password(pw: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
    })
    .await
    .context("the hashing task")?
}

/// Whether `pw` matches `hash`. With no hash (unknown user) a dummy hash is checked anyway, so
/// the answer takes as long either way and does not tell which names exist.
pub async fn verify_password(hash: Option<String>, pw: String) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let dummy = DUMMY.get_or_init(|| {
            Argon2::default()
                .hash_password(b"not a password", &SaltString::generate(&mut OsRng))
                .map(|h| h.to_string())
                .unwrap_or_default()
        });
        let known = hash.is_some();
        let h = hash.unwrap_or_else(|| dummy.clone());
        let ok = PasswordHash::new(&h)
            .map(|p| Argon2::default().verify_password(pw.as_bytes(), &p).is_ok())
            .unwrap_or(false);
        known && ok
    })
    .await
    .unwrap_or(false)
}
