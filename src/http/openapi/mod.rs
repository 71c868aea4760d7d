//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the API, the gateway hooks and the
//! answer pages, built with utoipa's builders from the description table [`DOCS`] below.
//!
//! This module owns the descriptions only. It must not decide who may call a route: the
//! security of each operation is read from `routes::table()` (its `access` column), so the
//! document cannot disagree with the router about roles, and a test fails when a route of the
//! table has no description here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use serde_json::json;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Required,
};

mod components;

use self::components::{components, reference, schema};
use super::routes::{self, Access};
use crate::config::Role;
use crate::core::Core;

pub async fn document(State(_core): State<Arc<Core>>) -> Json<OpenApi> {
    Json(build())
}

/// A parameter: name, where, description, JSON schema.
type Param = (&'static str, ParameterIn, &'static str, fn() -> serde_json::Value);

/// A response: status, description, content type and component schema (none: no body).
type Answer = (&'static str, &'static str, Option<(&'static str, &'static str)>);

/// What the document says about one route.
pub struct Doc {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub params: &'static [Param],
    /// Content type and component schema name of the request body.
    pub body: Option<(&'static str, &'static str)>,
    pub responses: &'static [Answer],
}

fn int() -> serde_json::Value {
    json!({"type": "integer", "format": "int64"})
}
fn string() -> serde_json::Value {
    json!({"type": "string"})
}
fn limit() -> serde_json::Value {
    json!({"type": "integer", "minimum": 1, "maximum": 500})
}
fn format_enum() -> serde_json::Value {
    json!({"type": "string", "enum": crate::record::export::Format::NAMES, "default": "json"})
}
fn table_enum() -> serde_json::Value {
    json!({"type": "string", "enum": crate::record::export::TABLES, "default": "townships"})
}
fn lang_enum() -> serde_json::Value {
    json!({"type": "string", "enum": ["zh", "en"], "default": "zh"})
}

const ID: Param = ("id", ParameterIn::Path, "编号 / id", int);
const LIMIT: Param = ("limit", ParameterIn::Query, "最多条数 / at most this many", limit);
const JSON: &str = "application/json";

/// Every described route. Keep in the order of `routes::table()`.
pub const DOCS: &[Doc] = &[
    Doc {
        method: Method::GET,
        path: "/healthz",
        summary: "存活探针 / liveness: `ok`",
        params: &[],
        body: None,
        responses: &[("200", "ok", Some(("text/plain", "Text")))],
    },
    Doc {
        method: Method::GET,
        path: "/readyz",
        summary: "就绪探针 / readiness: the database answers; feeds' last polls",
        params: &[],
        body: None,
        responses: &[
            ("200", "ready", Some((JSON, "Object"))),
            ("503", "not ready", Some((JSON, "Object"))),
        ],
    },
    Doc {
        method: Method::GET,
        path: "/metrics",
        summary: "Prometheus 指标 / metrics in the Prometheus text format",
        params: &[],
        body: None,
        responses: &[("200", "metrics", Some(("text/plain", "Text")))],
    },
    Doc {
        method: Method::POST,
        path: "/api/v1/warnings",
        summary: "推送预警 / push a CAP message (or an `<alerts>` list, EDXL-DE)",
        params: &[],
        body: Some(("application/cap+xml", "Text")),
        responses: &[
            ("202", "taken: incidents opened or joined", Some((JSON, "Object"))),
            ("200", "known already (a repeat)", Some((JSON, "Object"))),
            (
                "422",
                "refused: not a readable CAP message",
                Some((JSON, "ApiError")),
            ),
        ],
    },
    Doc {
        method: Method::GET,
        path: "/api/v1/warnings",
        summary: "预警列表 / warnings received, newest first",
        params: &[LIMIT],
        body: None,
        responses: &[("200", "warnings", Some((JSON, "Array")))],
    },
    Doc {
        method: Method::GET,
        path: "/api/v1/warnings/{id}",
        summary: "一条预警 / one warning, parsed",
        params: &[ID],
        body: None,
        responses: &[
            ("200", "the warning", Some((JSON, "Object"))),
            ("404", "no such warning", Some((JSON, "ApiError"))),
        ],
    },
    Doc {
        method: Method::GET,
        path: "/api/v1/incidents",
        summary: "事件列表 / incidents, newest first",
        params: &[LIMIT],
        body: None,
        responses: &[("200", "incidents", Some((JSON, "Array")))],
    },
    Doc {
        method: Method::GET,
        path: "/api/v1/incidents/{id}",
        summary: "一个事件 / one incident: totals, call-outs per township",
        params: &[ID],
        body: None,
        responses: &[
            ("200", "the incident", Some((JSON, "Object"))),
            ("404", "no such incident", Some((JSON, "ApiError"))),
        ],
    },
    Doc {
        method: Method::POST,
        path: "/api/v1/incidents/{id}/close",
        summary: "解除 / stand down: cancel what waits, tell everyone already called",
        params: &[ID],
        body: None,
        responses: &[
            (
                "200",
                "closed (again: nothing sent twice)",
                Some((JSON, "Object")),
            ),
            ("404", "no such incident", Some((JSON, "ApiError"))),
        ],
    },
    Doc {
        method: Method::GET,
        path: "/api/v1/incidents/{id}/report",
        summary: "复盘报告 / after-action report: json, text, html (A4), csv (one table, BOM), xlsx",
        params: &[
            ID,
            ("format", ParameterIn::Query, "格式 / format", format_enum),
            (
                "table",
                ParameterIn::Query,
                "CSV 的表 / the table a CSV holds",
                table_enum,
            ),
            ("lang", ParameterIn::Query, "主语言 / leading language", lang_enum),
        ],
        body: None,
        responses: &[
            (
                "200",
                "the report (Content-Disposition names the file)",
                Some((JSON, "Report")),
            ),
            (
                "400",
                "unknown format, table or language",
                Some((JSON, "ApiError")),
            ),
            ("404", "no such incident", Some((JSON, "ApiError"))),
        ],
    },
    Doc {
        method: Method::POST,
        path: "/api/v1/callouts/{id}/ack",
        summary: "人工确认应答 / record an answer obtained by hand (the officer phoned)",
        params: &[ID],
        body: Some((JSON, "AckBody")),
        responses: &[
            ("200", "answered (or already answered)", Some((JSON, "Object"))),
            ("404", "no such call-out", Some((JSON, "ApiError"))),
        ],
    },
    Doc {
        method: Method::POST,
        path: "/api/v1/evacuations",
        summary: "转移人数 / report people moved in a region",
        params: &[],
        body: Some((JSON, "EvacuationBody")),
        responses: &[
            ("200", "recorded", Some((JSON, "Object"))),
            ("422", "out of range or unknown region", Some((JSON, "ApiError"))),
        ],
    },
    Doc {
        method: Method::POST,
        path: "/api/v1/responses",
        summary: "启动或终止应急响应 / activate a response level, or end one (`end`)",
        params: &[],
        body: Some((JSON, "ResponseRequest")),
        responses: &[
            ("200", "activated or ended", Some((JSON, "Object"))),
            (
                "422",
                "invalid level, hazard or regions",
                Some((JSON, "ApiError")),
            ),
        ],
    },
    Doc {
        method: Method::GET,
        path: "/api/v1/responses",
        summary: "应急响应列表 / response levels, newest first",
        params: &[LIMIT],
        body: None,
        responses: &[("200", "responses", Some((JSON, "Array")))],
    },
    Doc {
        method: Method::GET,
        path: "/api/v1/openapi.json",
        summary: "本文档 / this document",
        params: &[],
        body: None,
        responses: &[("200", "OpenAPI 3.1", Some((JSON, "Object")))],
    },
    Doc {
        method: Method::POST,
        path: "/hooks/{gateway}/{rest}",
        summary:
            "网关回调 / gateway callbacks: receipts, replies, key presses (see the README's channel table)",
        params: &[
            (
                "gateway",
                ParameterIn::Path,
                "网关名 / the gateway's name in the configuration",
                string,
            ),
            (
                "rest",
                ParameterIn::Path,
                "回调路径 / the hook, e.g. `status`, `TOKEN/sms-up`",
                string,
            ),
        ],
        body: Some(("application/x-www-form-urlencoded", "Text")),
        responses: &[
            ("200", "taken (a replay changes nothing)", None),
            ("401", "bad signature or token", Some((JSON, "ApiError"))),
            ("404", "no such gateway or hook", Some((JSON, "ApiError"))),
        ],
    },
    Doc {
        method: Method::GET,
        path: "/a/{token}",
        summary: "答复页面 / the answer page of a call-out",
        params: &[(
            "token",
            ParameterIn::Path,
            "签名令牌 / signed answer token",
            string,
        )],
        body: None,
        responses: &[
            ("200", "the page", Some(("text/html", "Text"))),
            ("403", "expired or forged token", Some(("text/html", "Text"))),
        ],
    },
    Doc {
        method: Method::POST,
        path: "/a/{token}",
        summary: "提交答复 / answer: received, people moved, door-knock result",
        params: &[(
            "token",
            ParameterIn::Path,
            "签名令牌 / signed answer token",
            string,
        )],
        body: Some(("application/x-www-form-urlencoded", "AnswerForm")),
        responses: &[
            (
                "200",
                "the page, with what was recorded",
                Some(("text/html", "Text")),
            ),
            ("403", "expired or forged token", Some(("text/html", "Text"))),
        ],
    },
];

/// OpenAPI writes `{*rest}` (axum's catch-all) as a plain `{rest}`.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

fn method_of(m: &Method) -> Option<HttpMethod> {
    Some(match *m {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        _ => return None,
    })
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Admin => "admin",
        Role::Operator => "operator",
        Role::Viewer => "viewer",
        Role::Feed => "feed",
        Role::Gateway => "gateway",
    }
}

/// Who may call, in words (Chinese first) for the operation's description.
fn access_text(a: Access) -> String {
    match a {
        Access::Public => "公开 / public: no credentials".into(),
        Access::Token(r) => format!(
            "API 令牌，角色 {0} 或以上 / bearer API token with role `{0}` (admin ⊇ operator ⊇ viewer)",
            role_name(r)
        ),
        Access::Gateway => {
            "网关回调 / gateway callback: checked by the gateway's signature or the URL token".into()
        }
        Access::AnswerToken => "答复令牌 / the signed answer token in the path".into(),
        Access::Session(r) => format!("控制台会话 / console session with role `{}`", role_name(r)),
    }
}

/// The document, with the access of every operation taken from the route table.
pub fn build() -> OpenApi {
    let table = routes::table();
    let mut paths = PathsBuilder::new();
    for d in DOCS {
        let access = table
            .iter()
            .find(|r| r.method == d.method && openapi_path(r.path) == openapi_path(d.path))
            .map(|r| r.access);
        let Some(method) = method_of(&d.method) else {
            continue;
        };
        let mut op = OperationBuilder::new()
            .summary(Some(d.summary))
            .description(access.map(access_text))
            .operation_id(Some(format!("{} {}", d.method, d.path)))
            .tag(
                d.path
                    .split('/')
                    .nth(if d.path.starts_with("/api/v1/") { 3 } else { 1 })
                    .unwrap_or(""),
            );
        for (name, at, text, s) in d.params {
            let required = if matches!(at, ParameterIn::Path) {
                Required::True
            } else {
                Required::False
            };
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(at.clone())
                    .description(Some(*text))
                    .required(required)
                    .schema(Some(schema(s()))),
            );
        }
        if let Some((ct, name)) = d.body {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(ct, ContentBuilder::new().schema(Some(reference(name))).build())
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        for (status, text, content) in d.responses {
            let mut r = ResponseBuilder::new().description(*text);
            if let Some((ct, name)) = content {
                r = r.content(*ct, ContentBuilder::new().schema(Some(reference(name))).build());
            }
            op = op.response(*status, r.build());
        }
        // Every API error has the same body; the access checks answer these two.
        if matches!(access, Some(Access::Token(_)) | Some(Access::Session(_))) {
            for (status, text) in [
                ("401", "no or unknown token"),
                ("403", "the token's role is not enough"),
            ] {
                op = op.response(
                    status,
                    ResponseBuilder::new()
                        .description(text)
                        .content(
                            JSON,
                            ContentBuilder::new().schema(Some(reference("ApiError"))).build(),
                        )
                        .build(),
                );
            }
        }
        match access {
            Some(Access::Token(r)) => op = op.security(SecurityRequirement::new("bearer", [role_name(r)])),
            Some(Access::Session(r)) => op = op.security(SecurityRequirement::new("session", [role_name(r)])),
            _ => {}
        }
        paths = paths.path(openapi_path(d.path), PathItem::new(method, op.build()));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("jiaoying 叫应 API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "预警进，叫应出 / warnings in, call-outs and reports out. Errors: `ApiError`.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the router is described, except the console's HTML pages
    /// (`Access::Session`): they are pages for a browser, not API.
    #[test]
    fn every_route_of_the_table_is_in_the_document() {
        let doc = serde_json::to_value(build()).unwrap();
        let mut missing = Vec::new();
        for r in routes::table() {
            // The console's HTML (its pages, its login form, its static files) is not API.
            let console = r.path == "/login" || r.path.starts_with("/console/");
            if matches!(r.access, Access::Session(_)) || console {
                continue;
            }
            let path = openapi_path(r.path);
            let method = r.method.as_str().to_ascii_lowercase();
            let op = &doc["paths"][&path][&method];
            if !op.is_object() {
                missing.push(format!("{} {}", r.method, r.path));
                continue;
            }
            // A token route says its role, both as a security requirement and in words.
            if let Access::Token(role) = r.access {
                assert_eq!(
                    op["security"][0]["bearer"][0],
                    role_name(role),
                    "{} {}",
                    r.method,
                    r.path
                );
                assert!(op["responses"]["403"].is_object(), "{} {}", r.method, r.path);
            }
        }
        assert!(
            missing.is_empty(),
            "routes missing from the OpenAPI document: {missing:?}"
        );
    }

    #[test]
    fn no_description_without_a_route() {
        let table = routes::table();
        for d in DOCS {
            assert!(
                table
                    .iter()
                    .any(|r| r.method == d.method && openapi_path(r.path) == d.path),
                "{} {} is described but not routed",
                d.method,
                d.path
            );
        }
    }

    #[test]
    fn the_error_body_is_a_component_and_the_version_is_31() {
        let doc = serde_json::to_value(build()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(doc["components"]["schemas"]["ApiError"]["required"][0], "error");
        assert_eq!(
            doc["paths"]["/api/v1/incidents/{id}/report"]["get"]["responses"]["404"]["content"]
                ["application/json"]["schema"]["$ref"],
            "#/components/schemas/ApiError"
        );
    }
}
