//! The protection of hooks whose provider signs nothing (Aliyun, Tencent): a per-gateway
//! secret token in the URL (`/hooks/NAME/TOKEN/…` or `?token=`), compared in constant time,
//! and an optional allow-list of source addresses. Owns the check only; what the callback says
//! is the adapter's to read.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use secrecy::{ExposeSecret, SecretString};

use super::event::{Callback, Refused};

pub struct HookGuard {
    /// None: the gateway takes no callbacks (no `hook_token_env` configured).
    token: Option<SecretString>,
    allow: Vec<(IpAddr, u8)>,
}

impl HookGuard {
    /// `key` is the gateway's config key (`gateways.aliyun`).
    pub fn new(key: &str, token_env: Option<&str>, allow_from: &[String]) -> Result<HookGuard> {
        let token = match token_env {
            None => None,
            Some(env) => {
                let t = std::env::var(env).with_context(|| {
                    format!("{key}.hook_token_env: the environment variable {env} is not set")
                })?;
                if t.trim().len() < 16 {
                    bail!("{key}.hook_token_env: {env} must hold at least 16 characters (it is the hooks' only secret)");
                }
                Some(SecretString::from(t.trim().to_string()))
            }
        };
        let allow = allow_from
            .iter()
            .enumerate()
            .map(|(i, a)| {
                cidr(a)
                    .with_context(|| format!("{key}.allow_from[{i}]: {a:?} is not an address or CIDR block"))
            })
            .collect::<Result<_>>()?;
        Ok(HookGuard { token, allow })
    }

    /// Checks the source address and the token; returns the hook's name (what follows the
    /// token in the path, e.g. `sms-report`).
    pub fn check<'a>(&self, req: &'a Callback) -> Result<&'a str, Refused> {
        let Some(token) = &self.token else {
            return Err(Refused::NotFound);
        };
        if !self.allow.is_empty() {
            let ok = req
                .peer
                .is_some_and(|p| self.allow.iter().any(|(net, bits)| within(p, *net, *bits)));
            if !ok {
                let peer = req
                    .peer
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "unknown".into());
                return Err(Refused::Forbidden(peer));
            }
        }
        let (given, hook) = match req.rest.split_once('/') {
            Some((t, hook)) => (t, hook),
            None => {
                let q = req
                    .query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("token="))
                    .unwrap_or("");
                (q, req.rest.as_str())
            }
        };
        if !same(given.as_bytes(), token.expose_secret().as_bytes()) {
            return Err(Refused::Unauthenticated("wrong or missing hook token".into()));
        }
        Ok(hook)
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match s.trim().split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
        None => {
            let a = s.trim().parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn within(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(rest: &str, query: &str, peer: &str) -> Callback {
        Callback {
            rest: rest.into(),
            query: query.into(),
            url: String::new(),
            headers: Default::default(),
            body: Default::default(),
            peer: peer.parse().ok(),
            now: 0,
        }
    }

    #[test]
    fn token_in_the_path_or_query_and_source_addresses() {
        std::env::set_var("HOOK_GUARD_TEST_TOKEN", "0123456789abcdef-secret");
        let g = HookGuard::new(
            "gateways.a",
            Some("HOOK_GUARD_TEST_TOKEN"),
            &["10.1.0.0/16".into()],
        )
        .unwrap();
        assert_eq!(
            g.check(&req("0123456789abcdef-secret/sms-up", "", "10.1.2.3")),
            Ok("sms-up")
        );
        assert_eq!(
            g.check(&req("sms-up", "token=0123456789abcdef-secret", "10.1.9.9")),
            Ok("sms-up")
        );
        assert!(matches!(
            g.check(&req("wrong/sms-up", "", "10.1.2.3")),
            Err(Refused::Unauthenticated(_))
        ));
        assert!(matches!(
            g.check(&req("sms-up", "", "10.1.2.3")),
            Err(Refused::Unauthenticated(_))
        ));
        assert!(matches!(
            g.check(&req("0123456789abcdef-secret/sms-up", "", "10.2.0.1")),
            Err(Refused::Forbidden(_))
        ));
        let none = HookGuard::new("gateways.a", None, &[]).unwrap();
        assert_eq!(
            none.check(&req("x/sms-up", "", "10.1.2.3")),
            Err(Refused::NotFound)
        );
        assert!(HookGuard::new("gateways.a", Some("HOOK_GUARD_TEST_UNSET"), &[]).is_err());
        assert!(HookGuard::new("gateways.a", None, &["10.0.0.0/33".into()]).is_err());
    }
}
