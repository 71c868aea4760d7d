//! `/api/v1`: warnings in, incidents and reports out, operator actions.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{authorize, ApiError};
use crate::answer::inbound::{self, Answered};
use crate::config::Role;
use crate::core::Core;
use crate::deliver::standdown;
use crate::domain::{AckMethod, RegionCode};
use crate::ingest::{self, IngestError, MessageResult};
use crate::record::export;
use crate::respond::{self, RespondError};
use crate::store::answers::Evacuation;
use crate::store::{callouts, incidents, reports, responses, warnings};

pub async fn post_warning(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = authorize(&core, &headers, Role::Feed)?;
    let body = body?;
    let mut messages = match ingest::ingest_document(&core, &body, &format!("http:{who}")).await {
        Ok(m) => m,
        Err(IngestError::Invalid(e)) => return Err(ApiError::unprocessable(&e.to_string())),
        Err(IngestError::Internal(e)) => return Err(e.into()),
    };
    // One message (the usual case): its outcome, as before. Several: each with its location;
    // 202 when any was taken, 200 when all were known already, 422 when none could be read.
    if messages.len() == 1 {
        return match messages.remove(0).result {
            MessageResult::Ingested(o) if o.duplicate => Ok((StatusCode::OK, Json(o)).into_response()),
            MessageResult::Ingested(o) => Ok((StatusCode::ACCEPTED, Json(o)).into_response()),
            MessageResult::Refused(e) => Err(ApiError::unprocessable(&e)),
        };
    }
    let taken = |m: &&ingest::Message| matches!(&m.result, MessageResult::Ingested(o) if !o.duplicate);
    let known = |m: &&ingest::Message| matches!(&m.result, MessageResult::Ingested(_));
    let status = if messages.iter().any(|m| taken(&m)) {
        StatusCode::ACCEPTED
    } else if messages.iter().any(|m| known(&m)) {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(serde_json::json!({ "messages": messages }))).into_response())
}

#[derive(Deserialize)]
pub struct Limit {
    limit: Option<i64>,
}

pub async fn list_warnings(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&core, &headers, Role::Viewer)?;
    Ok(Json(
        warnings::list(&core.store, q.limit.unwrap_or(100).clamp(1, 1000)).await?,
    ))
}

pub async fn get_warning(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&core, &headers, Role::Viewer)?;
    warnings::get(&core.store, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such warning"))
}

pub async fn list_incidents(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&core, &headers, Role::Viewer)?;
    Ok(Json(
        incidents::list(&core.store, q.limit.unwrap_or(100).clamp(1, 1000)).await?,
    ))
}

/// One incident with every call-out, grouped per township, and the totals.
pub async fn get_incident(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&core, &headers, Role::Viewer)?;
    let r = reports::load(&core.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such incident"))?;
    // A code above township level is its own group.
    let mut by_township: BTreeMap<RegionCode, Vec<&callouts::Callout>> = BTreeMap::new();
    for c in &r.callouts {
        let township = c.region_code.township().unwrap_or_else(|| c.region_code.clone());
        by_township.entry(township).or_default().push(c);
    }
    Ok(Json(serde_json::json!({
        "incident": r.incident, "totals": r.totals, "townships": r.townships, "callouts_by_township": by_township,
        "evacuated": r.totals.evacuated,
    })))
}

/// `?format=html|csv|xlsx|json|text` (json by default), `&table=` (which table a CSV holds),
/// `&lang=zh|en` (which language leads).
#[derive(Deserialize)]
pub struct ReportQuery {
    format: Option<String>,
    table: Option<String>,
    lang: Option<String>,
}

pub async fn report(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    authorize(&core, &headers, Role::Viewer)?;
    let format: export::Format = q
        .format
        .as_deref()
        .unwrap_or("json")
        .parse()
        .map_err(|e: anyhow::Error| ApiError::bad_request(&e.to_string()))?;
    let lang: export::Lang = match q.lang.as_deref() {
        Some(l) => l
            .parse()
            .map_err(|e: anyhow::Error| ApiError::bad_request(&e.to_string()))?,
        None => export::Lang::Zh,
    };
    if let Some(t) = q.table.as_deref().filter(|t| !export::TABLES.contains(t)) {
        return Err(ApiError::bad_request(&format!(
            "table {t:?}: one of {}",
            export::TABLES.join(", ")
        )));
    }
    let mut r = reports::load(&core.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such incident"))?;
    r.checkpoint = crate::audit::latest(&core.settings);
    let options = export::Options {
        lang,
        generated_at: core.clock.now_ms(),
        table: q.table,
    };
    let out = export::render(&r, format, &options)?;
    // Inline for what a browser shows, attachment for what it should save.
    let disposition = match format {
        export::Format::Html | export::Format::Json | export::Format::Text => "inline",
        export::Format::Csv | export::Format::Xlsx => "attachment",
    };
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, out.content_type.to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("{disposition}; filename=\"{}\"", out.filename),
            ),
        ],
        out.bytes,
    )
        .into_response())
}

pub async fn close_incident(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let who = authorize(&core, &headers, Role::Operator)?;
    // Closed already: 200 again, and nobody hears 解除 twice.
    let done = standdown::stand_down(&core, id, &who)
        .await?
        .ok_or_else(|| ApiError::not_found("no such incident"))?;
    Ok(Json(
        serde_json::json!({"incident": id, "state": "closed", "cancelled": done.cancelled()}),
    ))
}

#[derive(Deserialize)]
pub struct AckBody {
    note: Option<String>,
}

/// An answer obtained by hand (the duty officer phoned the person).
pub async fn ack_callout(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<AckBody>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let who = authorize(&core, &headers, Role::Operator)?;
    let Json(body) = body?;
    match inbound::answer(&core, id, AckMethod::Operator, body.note.as_deref(), Some(&who)).await? {
        Answered::NoSuchCallout => Err(ApiError::not_found("no such call-out")),
        a => Ok(Json(serde_json::json!({"callout": id, "result": a}))),
    }
}

#[derive(Deserialize)]
pub struct EvacuationBody {
    callout_id: Option<i64>,
    incident_id: Option<i64>,
    region: Option<String>,
    moved: i64,
    threatened: Option<i64>,
}

pub async fn post_evacuation(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    body: Result<Json<EvacuationBody>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let who = authorize(&core, &headers, Role::Operator)?;
    let Json(b) = body?;
    if !(0..=10_000_000).contains(&b.moved) || b.threatened.is_some_and(|t| !(0..=10_000_000).contains(&t)) {
        return Err(ApiError::unprocessable(
            "moved/threatened must be between 0 and 10,000,000",
        ));
    }
    let mut tx = core.store.begin().await?;
    let (incident_id, region, callout_id) = match (b.callout_id, b.incident_id, b.region) {
        (Some(cid), _, _) => {
            let c = tx
                .callout(cid)
                .await?
                .ok_or_else(|| ApiError::not_found("no such call-out"))?;
            (c.incident_id, c.region_code, Some(cid))
        }
        (None, Some(iid), Some(region)) => {
            tx.incident(iid)
                .await?
                .ok_or_else(|| ApiError::not_found("no such incident"))?;
            let region = RegionCode::parse(&region).map_err(|e| ApiError::unprocessable(&e))?;
            (iid, region, None)
        }
        _ => {
            return Err(ApiError::unprocessable(
                "give callout_id, or incident_id and region",
            ))
        }
    };
    let reporter = format!("operator:{who}:{region}");
    let e = Evacuation {
        incident_id,
        callout_id,
        reporter: &reporter,
        region_code: &region,
        moved: b.moved,
        threatened: b.threatened,
        method: AckMethod::Operator.as_str(),
    };
    let id = tx.record_evacuation(&e, core.now()).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"id": id, "incident": incident_id, "region": region})),
    ))
}

/// Activates a response level, or ends one with `{"end": ID}` (SPEC §4).
pub async fn post_response(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    body: Result<Json<respond::Request>, JsonRejection>,
) -> Result<Response, ApiError> {
    let who = authorize(&core, &headers, Role::Operator)?;
    let Json(req) = body?;
    match respond::submit(&core, &req, &format!("http:{who}")).await {
        Ok(o @ respond::Outcome::Activated { .. }) => Ok((StatusCode::CREATED, Json(o)).into_response()),
        Ok(o) => Ok(Json(o).into_response()),
        Err(RespondError::Invalid(e)) => Err(ApiError::unprocessable(&e.to_string())),
        Err(RespondError::NotFound(id)) => Err(ApiError::not_found(&format!("no response {id}"))),
        Err(RespondError::Internal(e)) => Err(e.into()),
    }
}

pub async fn list_responses(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&core, &headers, Role::Viewer)?;
    let now = core.now();
    let list = responses::list(&core.store, q.limit.unwrap_or(100).clamp(1, 1000)).await?;
    Ok(Json(
        list.into_iter()
            .map(|r| {
                let active = r.is_active(now);
                let title = respond::title(&r.hazard, r.level);
                serde_json::json!({"response": r, "active": active, "title": title})
            })
            .collect::<Vec<_>>(),
    ))
}
