//! The reusable pieces of the OpenAPI document: the component schemas (the error body, the
//! report, the request bodies) and the two security schemes. The paths that refer to them are
//! in the parent module; this file must not describe a route.

use serde_json::json;
use utoipa::openapi::schema::{ComponentsBuilder, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Components, Ref, RefOr};

pub(super) fn schema(v: serde_json::Value) -> Schema {
    serde_json::from_value(v).expect("a valid schema literal")
}

pub(super) fn components() -> Components {
    let error = json!({
        "type": "object",
        "description": "每个错误的答复 / every error answer: `{\"error\": {\"code\", \"message\"}}`",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": ["unauthorized", "forbidden", "not_found", "bad_request", "invalid", "unavailable", "internal", "too_large", "bad_body", "bad_json", "timeout"]},
                "message": {"type": "string", "description": "Chinese and/or English, for a person"}
            }
        }}
    });
    let report = json!({
        "type": "object",
        "description": "format=json; the other formats are files (text/html, text/csv, xlsx)",
        "properties": {
            "mark": {"type": "string", "description": "演练 / drill"},
            "incident": {"type": "object"},
            "totals": {"$ref": "#/components/schemas/Counts"},
            "counties": {"type": "array", "items": {"type": "object"}},
            "townships": {"type": "array", "items": {"type": "object"}},
            "answer_seconds": {"type": ["array", "null"], "items": {"type": "number"}, "description": "median, p90, slowest"},
            "answer_histogram": {"type": "array", "items": {"type": "object", "properties": {"label": {"type": "string"}, "below_seconds": {"type": ["integer", "null"]}, "count": {"type": "integer"}}}},
            "timeline": {"type": "array", "items": {"type": "object", "properties": {"at": {"type": "integer", "description": "unix ms"}, "kind": {"type": "string"}, "what": {"type": "string"}, "detail": {"type": "string"}}}},
            "unreached": {"type": "array", "items": {"type": "object"}},
            "door_knocks": {"type": "array", "items": {"type": "object"}},
            "evacuation": {"type": "array", "items": {"type": "object", "properties": {"level": {"type": "string", "enum": ["city", "county", "township", "village"]}, "code": {"type": "string"}, "name": {"type": "string"}, "moved": {"type": "integer"}, "threatened": {"type": ["integer", "null"]}}}},
            "rounds": {"type": "array", "items": {"type": "object"}},
            "callouts": {"type": "array", "items": {"type": "object"}},
            "ledger": {"type": ["object", "null"], "properties": {"seq": {"type": "integer"}, "hash": {"type": "string"}, "checkpoint": {"type": "object"}}},
            "generated_at": {"type": "integer", "description": "unix ms"}
        }
    });
    let counts = json!({"type": "object", "properties": {
        "called": {"type": "integer"}, "answered": {"type": "integer"}, "late": {"type": "integer"},
        "escalated": {"type": "integer"}, "unreached": {"type": "integer"}, "evacuated": {"type": "integer"}}});
    let ack = json!({"type": "object", "properties": {"note": {"type": "string"}}});
    let evacuation = json!({"type": "object", "required": ["moved"], "properties": {
        "callout_id": {"type": "integer"}, "incident_id": {"type": "integer"},
        "region": {"type": "string", "description": "division code (with incident_id)"},
        "moved": {"type": "integer", "minimum": 0, "maximum": 10000000},
        "threatened": {"type": "integer", "minimum": 0, "maximum": 10000000}}});
    let response = json!({"type": "object", "additionalProperties": false, "properties": {
        "hazard": {"type": "string", "description": "flood/防汛, typhoon/防台风, drought/抗旱, geohazard/地质灾害"},
        "level": {"type": "string", "enum": ["I", "II", "III", "IV"]},
        "regions": {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
        "until": {"type": "string", "description": "RFC 3339, `YYYY-MM-DD HH:MM` (Beijing) or a duration (`48h`)"},
        "note": {"type": "string"},
        "end": {"type": "integer", "description": "end this response instead"}}});
    let form = json!({"type": "object", "properties": {
        "action": {"type": "string"}, "moved": {"type": "integer"}, "threatened": {"type": "integer"},
        "knock": {"type": "string", "enum": ["reached", "not_home", "moved"]}}});
    ComponentsBuilder::new()
        .schema("ApiError", schema(error))
        .schema("Report", schema(report))
        .schema("Counts", schema(counts))
        .schema("AckBody", schema(ack))
        .schema("EvacuationBody", schema(evacuation))
        .schema("ResponseRequest", schema(response))
        .schema("AnswerForm", schema(form))
        .schema("Object", schema(json!({"type": "object"})))
        .schema(
            "Array",
            schema(json!({"type": "array", "items": {"type": "object"}})),
        )
        .schema("Text", schema(json!({"type": "string"})))
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "API 令牌 / an `[[auth.tokens]]` token; the scopes listed are the role needed",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "jiaoying_session",
                "控制台会话 / console session cookie",
            ))),
        )
        .build()
}

pub(super) fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}
