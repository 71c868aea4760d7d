//! Stand-in for `http::session` until the `auth` branch lands, replaced by it at the merge:
//! the same shape (`Officer { name, role, csrf }`, an extractor that sends strangers to
//! `/login`, `may`, `check_csrf`, `csrf_field`). Meanwhile an API token in the `jy_token`
//! cookie opens the console, so that the pages can be driven before logins exist.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::Role;
use crate::core::Core;

pub struct Officer {
    pub name: String,
    pub role: Role,
    pub csrf: String,
}

impl Officer {
    pub fn may(&self, needed: Role) -> Result<(), Response> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err((
                StatusCode::FORBIDDEN,
                "您的角色不能执行此操作 your role may not do this",
            )
                .into_response())
        }
    }

    pub fn check_csrf(&self, presented: &str) -> Result<(), Response> {
        if !self.csrf.is_empty() && presented == self.csrf {
            Ok(())
        } else {
            Err((
                StatusCode::FORBIDDEN,
                "表单已失效 the form's CSRF token is missing or wrong",
            )
                .into_response())
        }
    }

    pub fn csrf_field(&self) -> String {
        format!("<input type=\"hidden\" name=\"_csrf\" value=\"{}\">", self.csrf)
    }
}

impl FromRequestParts<Arc<Core>> for Officer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Officer, Response> {
        let presented = parts
            .headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| kv.trim().strip_prefix("jy_token=").map(str::to_string));
        let found =
            presented.and_then(|p| core.tokens.iter().find(|t| t.token.expose_secret() == p.as_str()));
        match found {
            Some(t) => Ok(Officer {
                name: t.name.clone(),
                role: t.role,
                csrf: hex::encode(Sha256::digest(format!("csrf:{}", t.token.expose_secret()))),
            }),
            None => Err(Redirect::to(&format!("/login?next={}", parts.uri.path())).into_response()),
        }
    }
}
