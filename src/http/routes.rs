//! The one table of every HTTP route: method, path, who may call it, and its handler.
//! `http::router` is built from this table and nothing else, so a route cannot exist without
//! an entry here, and the tests that must cover every route (the security matrix, the OpenAPI
//! document) iterate over [`table`] instead of a list kept by hand.
//!
//! This module owns the route list only; handlers live in their own modules and still check
//! their caller themselves (`authorize`): the `access` column is what the tests hold them to.

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{get, post, MethodRouter};

use super::{answer, api, console, hooks, login, metrics, openapi, readyz};
use crate::config::Role;
use crate::core::Core;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health and readiness probes.
    Public,
    /// A bearer API token whose role allows this one (`[[api.tokens]]`).
    Token(Role),
    /// A gateway callback, checked by the gateway's own adapter (signature or URL token).
    Gateway,
    /// Whoever holds a signed answer token in the path (`/a/{token}`).
    AnswerToken,
    /// A console session whose user's role allows this one.
    Session(Role),
}

/// One method on one path.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<Arc<Core>>,
}

fn route(method: Method, path: &'static str, access: Access, handler: MethodRouter<Arc<Core>>) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

/// Every route the daemon serves.
pub fn table() -> Vec<Route> {
    use Access::*;
    use Method as M;
    vec![
        route(M::GET, "/healthz", Public, get(|| async { "ok" })),
        route(M::GET, "/readyz", Public, get(readyz)),
        route(M::GET, "/metrics", Public, get(metrics)),
        route(
            M::POST,
            "/api/v1/warnings",
            Token(Role::Feed),
            post(api::post_warning),
        ),
        route(
            M::GET,
            "/api/v1/warnings",
            Token(Role::Viewer),
            get(api::list_warnings),
        ),
        route(
            M::GET,
            "/api/v1/warnings/{id}",
            Token(Role::Viewer),
            get(api::get_warning),
        ),
        route(
            M::GET,
            "/api/v1/incidents",
            Token(Role::Viewer),
            get(api::list_incidents),
        ),
        route(
            M::GET,
            "/api/v1/incidents/{id}",
            Token(Role::Viewer),
            get(api::get_incident),
        ),
        route(
            M::POST,
            "/api/v1/incidents/{id}/close",
            Token(Role::Operator),
            post(api::close_incident),
        ),
        route(
            M::GET,
            "/api/v1/incidents/{id}/report",
            Token(Role::Viewer),
            get(api::report),
        ),
        route(
            M::POST,
            "/api/v1/callouts/{id}/ack",
            Token(Role::Operator),
            post(api::ack_callout),
        ),
        route(
            M::POST,
            "/api/v1/evacuations",
            Token(Role::Operator),
            post(api::post_evacuation),
        ),
        route(
            M::POST,
            "/api/v1/responses",
            Token(Role::Operator),
            post(api::post_response),
        ),
        route(
            M::GET,
            "/api/v1/responses",
            Token(Role::Viewer),
            get(api::list_responses),
        ),
        route(M::GET, "/api/v1/openapi.json", Public, get(openapi::document)),
        route(M::POST, "/hooks/{gateway}/{*rest}", Gateway, post(hooks::hook)),
        route(M::GET, "/a/{token}", AnswerToken, get(answer::show)),
        route(M::POST, "/a/{token}", AnswerToken, post(answer::submit)),
        route(M::GET, "/login", Public, get(login::form)),
        route(M::POST, "/login", Public, post(login::submit)),
        route(M::POST, "/logout", Session(Role::Viewer), post(login::logout)),
    ]
    .into_iter()
    .chain(console_routes())
    .collect()
}

/// The duty officer's console (`http::console`): pages for viewers, actions for operators.
fn console_routes() -> Vec<Route> {
    use Access::*;
    use Method as M;
    let (viewer, operator) = (Session(Role::Viewer), Session(Role::Operator));
    vec![
        route(M::GET, "/console/static/console.css", Public, get(console::css)),
        route(M::GET, "/console/static/console.js", Public, get(console::js)),
        route(M::GET, "/", viewer, get(console::board)),
        route(M::GET, "/board/events", viewer, get(console::board_events)),
        route(M::GET, "/incidents/{id}", viewer, get(console::incident)),
        route(
            M::POST,
            "/incidents/{id}/calls",
            operator,
            post(console::record_call),
        ),
        route(
            M::GET,
            "/incidents/{id}/standdown",
            operator,
            get(console::standdown_confirm),
        ),
        route(
            M::POST,
            "/incidents/{id}/standdown",
            operator,
            post(console::standdown),
        ),
        route(
            M::GET,
            "/incidents/{id}/report",
            viewer,
            get(console::report_download),
        ),
        route(M::GET, "/levels", viewer, get(console::levels)),
        route(M::POST, "/levels/preview", operator, post(console::preview_level)),
        route(M::POST, "/levels", operator, post(console::activate)),
        route(M::POST, "/levels/{id}/end", operator, post(console::end_level)),
        route(M::GET, "/roster", viewer, get(console::roster)),
        route(M::POST, "/roster/import", operator, post(console::import_upload)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_method_and_path_twice() {
        let t = table();
        let mut seen = std::collections::HashSet::new();
        for r in &t {
            assert!(
                seen.insert((r.method.clone(), r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }
}
