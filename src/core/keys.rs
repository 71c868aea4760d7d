//! The answer-link key. Its token format lives in `answer::token`; the key is here so that
//! `Core` can hold it without importing the stage that uses it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct TokenKey(pub(crate) Hmac<Sha256>);

impl TokenKey {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length; this cannot fail.
        Self(Hmac::new_from_slice(secret).expect("HMAC-SHA256 takes keys of any length"))
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)") // never print key material
    }
}
