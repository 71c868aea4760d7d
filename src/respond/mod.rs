//! Response levels (应急响应, SPEC §2): the office activates level I–IV for a hazard in some
//! regions. By policy the activation calls the roles that level requires there, with no
//! warning; while it is active, warnings in those regions are handled at least at the level's
//! colour; ending it (or its `until` passing) stands the activation incident down.
//! The rules are pure (`rules.rs`); this file applies them to the store.

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::target::response::*;

use crate::cap::Info;
use crate::core::Core;
use crate::deliver::standdown;
use crate::domain::Colour;
use crate::store::jobs::{self, NewJob};
use crate::store::ledger::Record;
use crate::store::{incidents, responses, roster};
use crate::target::plan::{plan, Planned};

#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no response {0}")]
    NotFound(i64),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What a request did.
#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Activated {
        response: i64,
        title: String,
        /// The incident that calls the level's roles; none when no policy answers for the
        /// level or nobody holds those roles there.
        incident: Option<i64>,
        code: Option<String>,
        callouts: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Ended {
        response: i64,
        /// False when it had already ended.
        now: bool,
        incident: Option<i64>,
        cancelled: usize,
    },
}

impl Outcome {
    /// One line for the office (CLI output).
    pub fn describe(&self) -> String {
        match self {
            Outcome::Activated {
                response,
                title,
                code: Some(code),
                callouts,
                ..
            } => format!("已{title}（响应 {response}）：叫应事件 {code}，叫应 {callouts} 人 / response {response} activated, {callouts} call-outs"),
            Outcome::Activated {
                response, title, note, ..
            } => format!(
                "已{title}（响应 {response}），无人需叫应：{} / response {response} activated, no call-outs",
                note.as_deref().unwrap_or("")
            ),
            Outcome::Ended {
                response,
                now: false,
                ..
            } => format!("响应 {response} 早已结束 / response {response} had already ended"),
            Outcome::Ended {
                response, cancelled, ..
            } => format!(
                "响应 {response} 已结束：取消未完成叫应 {cancelled} 条，已叫到的人收到解除通知 / response {response} ended, {cancelled} pending call-outs cancelled, stand-down to everyone called"
            ),
        }
    }
}

/// Activates, or ends when `req.end` is given (`jiaoying respond`, `POST /api/v1/responses`).
pub async fn submit(core: &Core, req: &Request, actor: &str) -> Result<Outcome, RespondError> {
    match req.end {
        Some(id) => end(core, id, actor).await,
        None => activate(core, req, actor).await,
    }
}

/// What an activation would do, worked out from the roster and not written: the console
/// shows it (who will be called) before the operator confirms, and [`activate`] applies it.
pub struct Plan {
    pub activation: Activation,
    pub policy: Option<crate::config::Policy>,
    pub title: String,
    pub planned: Vec<Planned>,
    /// Why nobody would be called, when nobody would.
    pub note: Option<String>,
}

/// Checks an activation and plans its call-outs; reads only.
pub async fn plan_activation(core: &Core, req: &Request) -> Result<Plan, RespondError> {
    let now = core.now();
    // Read the roster before any write transaction (SQLite has one connection).
    let regions = roster::load_regions(&core.store).await?;
    let a = check(req, &regions, now)?;
    let policy = core.settings.policy_for_level(a.level, a.hazard).cloned();
    let title = title(a.hazard, a.level);
    let mut note = None;
    let planned: Vec<Planned> = match &policy {
        None => {
            note = Some(format!(
                "没有适用于{}的叫应规则 (no policy with this level)",
                event(a.hazard, a.level)
            ));
            Vec::new()
        }
        Some(p) => {
            let contacts = roster::load_contacts(&core.store).await?;
            let names: BTreeMap<_, _> = regions.iter().map(|r| (r.code.clone(), r.name.clone())).collect();
            let planned = plan(&covered(&a.regions, &regions), &contacts, p, &names);
            if planned.is_empty() {
                note = Some(format!(
                    "这些区域无人担任规则 {} 的职责 (nobody holds its roles there)",
                    p.name
                ));
            }
            planned
        }
    };
    Ok(Plan {
        activation: a,
        policy,
        title,
        planned,
        note,
    })
}

async fn activate(core: &Core, req: &Request, actor: &str) -> Result<Outcome, RespondError> {
    let now = core.now();
    let Plan {
        activation: a,
        policy,
        title,
        planned,
        note,
    } = plan_activation(core, req).await?;

    let mut tx = core.store.begin().await?;
    let id = tx.insert_response(&a, actor, now).await?;
    if let Some(until) = a.until_at {
        jobs::insert_once(&mut tx, NewJob::response_expiry(id, until), now).await?;
    }
    let mut incident = None;
    if let (Some(p), false) = (&policy, planned.is_empty()) {
        let event = event(a.hazard, a.level);
        let instruction = if a.note.is_empty() {
            format!("{event}已启动，请立即到岗到位、做好防御")
        } else {
            a.note.clone()
        };
        let new = incidents::NewIncident {
            warning_id: None,
            title: &title,
            event: &event,
            description: &a.note,
            instruction: &instruction,
            colour: Some(colour_of(a.level)),
            hazard: a.hazard,
            policy: p,
            drill: false,
            expires_at: a.until_at,
            deadline_ms: p.deadline.as_millis() as i64,
        };
        let (iid, code) = tx.create_incident(&new, &planned, now).await?;
        tx.set_response_incident(id, iid).await?;
        // The scheduled rounds (三调度), if the policy has them: the first one, then each
        // round schedules the next until the response ends.
        if let Some(due) = p.next_round(now) {
            jobs::insert_once(&mut tx, NewJob::round(id, 1, due), now).await?;
        }
        incident = Some((iid, code));
    }
    tx.record(
        "response.activated",
        format!("response:{id}"),
        serde_json::json!({"hazard": a.hazard, "level": a.level, "regions": a.regions, "until_at": a.until_at,
            "note": a.note, "actor": actor, "policy": policy.as_ref().map(|p| &p.name),
            "incident": incident.as_ref().map(|i| i.0), "callouts": planned.len()}),
        now,
    )
    .await?;
    tx.commit().await?;
    core.wake.notify_waiters();
    tracing::info!(
        response.id = id,
        level = a.level.as_str(),
        hazard = a.hazard,
        callouts = planned.len(),
        "response activated"
    );
    Ok(Outcome::Activated {
        response: id,
        title,
        incident: incident.as_ref().map(|i| i.0),
        code: incident.map(|i| i.1),
        callouts: planned.len(),
        note,
    })
}

/// Ends a response: from then on it raises no warning, and its activation incident stands
/// down (`deliver::standdown`: pending call-outs cancelled, 解除 to everyone already called;
/// nothing when an operator closed it by hand already).
pub async fn end(core: &Core, id: i64, actor: &str) -> Result<Outcome, RespondError> {
    let now = core.now();
    let mut tx = core.store.begin().await?;
    let r = tx.response(id).await?.ok_or(RespondError::NotFound(id))?;
    if !tx.end_response(id, actor, now).await? {
        tx.rollback().await?;
        return Ok(Outcome::Ended {
            response: id,
            now: false,
            incident: r.incident_id,
            cancelled: 0,
        });
    }
    let cancelled = match r.incident_id {
        Some(iid) => standdown::within(&mut tx, iid, actor, now).await?.cancelled(),
        None => 0,
    };
    tx.record(
        "response.ended",
        format!("response:{id}"),
        serde_json::json!({"actor": actor, "incident": r.incident_id, "cancelled": cancelled}),
        now,
    )
    .await?;
    tx.commit().await?;
    core.wake.notify_waiters();
    tracing::info!(response.id = id, actor, cancelled, "response ended");
    Ok(Outcome::Ended {
        response: id,
        now: true,
        incident: r.incident_id,
        cancelled,
    })
}

/// Round `n` of response `id`'s scheduled rounds (三调度, 雨前、雨中、雨后): the round's roles
/// over the response's regions are asked for a status report (rainfall, people moved, dangers
/// seen), answered by SMS or link like any call-out; the next round is scheduled in the same
/// unit of work. A response that has ended (or whose incident was stood down) calls no more
/// rounds. The job queue makes one instance run each round, once.
pub async fn round(core: &Core, id: i64, n: i64) -> Result<(), RespondError> {
    let now = core.now();
    // Read the roster before the write transaction (SQLite has one connection).
    let regions = roster::load_regions(&core.store).await?;
    let contacts = roster::load_contacts(&core.store).await?;
    let mut tx = core.store.begin().await?;
    let r = tx.response(id).await?.ok_or(RespondError::NotFound(id))?;
    let inc = match r.incident_id.filter(|_| r.is_active(now)) {
        Some(iid) => tx.incident(iid).await?,
        None => None,
    };
    let Some(inc) = inc.filter(|i| i.state == crate::domain::IncidentState::Active) else {
        tx.rollback().await?;
        tracing::info!(
            response.id = id,
            round = n,
            "the response has ended: no more rounds"
        );
        return Ok(());
    };
    let mut p = inc.policy.clone();
    if !p.round_roles.is_empty() {
        p.roles = p.round_roles.clone();
        p.risk_point_roles.clear();
    }
    let names: BTreeMap<_, _> = regions.iter().map(|r| (r.code.clone(), r.name.clone())).collect();
    let planned = plan(&covered(&r.regions, &regions), &contacts, &p, &names);
    let deadline = now + p.deadline.as_millis() as i64;
    let task = format!("round:{n}");
    let added = crate::store::callouts::Added {
        parents: &[],
        upgrade: None,
        task: Some(&task),
    };
    let ids = tx.add_callouts(inc.id, &planned, &added, deadline, now).await?;
    let mut records = crate::store::callouts::planned_records(inc.id, &planned, &ids, deadline);
    let next = p.next_round(now);
    records.push(Record::new(
        "response.round",
        format!("response:{id}"),
        serde_json::json!({"round": n, "incident": inc.id, "callouts": ids.len(), "next_at": next}),
    ));
    tx.append(records, now).await?;
    if let Some(due) = next {
        jobs::insert_once(&mut tx, NewJob::round(id, n + 1, due), now).await?;
    }
    tx.commit().await?;
    core.wake.notify_waiters();
    tracing::info!(
        response.id = id,
        round = n,
        callouts = ids.len(),
        "scheduled round called"
    );
    Ok(())
}

/// The expiry job of a response has come (`until`): it ends as if an operator had ended it,
/// unless it was ended by hand already. The job queue makes one instance do it, once.
pub async fn lapse(core: &Core, id: i64) -> Result<(), RespondError> {
    let mut tx = core.store.begin().await?;
    let r = tx.response(id).await?;
    tx.commit().await?;
    match r {
        Some(r) if r.ended_at.is_none() && r.until_at.is_some_and(|u| u <= core.now()) => {
            end(core, id, "until").await.map(|_| ())
        }
        _ => Ok(()),
    }
}

/// For ingest: the colour a warning's policy is chosen by (raised by an active response over
/// its regions) and the response that raised it, if one did.
pub async fn raise(
    core: &Core,
    info: Option<&Info>,
    colour: Option<Colour>,
    hazard: &str,
    now: i64,
) -> anyhow::Result<(Option<Colour>, Option<Response>)> {
    let active = responses::active(&core.store, now).await?;
    let Some(info) = info.filter(|_| !active.is_empty()) else {
        return Ok((colour, None));
    };
    // The daemon's held index, not the regions read and indexed again for every warning
    // while a response is active (a province's roster: a second per warning).
    let threatened = core.roster().await?.index.threatened(info);
    let raised = effective_colour(&active, &threatened, colour, hazard, now);
    if raised == colour {
        return Ok((colour, None));
    }
    Ok((raised, raising(&active, &threatened, hazard, now).cloned()))
}

/// The ledger entry saying an incident's policy was raised by a response.
pub fn raised_record(r: &Response, incident: i64, from: Option<Colour>, to: Option<Colour>) -> Record {
    Record::new(
        "incident.raised",
        format!("incident:{incident}"),
        serde_json::json!({"response": r.id, "level": r.level, "hazard": r.hazard, "colour": from, "raised_to": to,
            "why": format!("{}期间提级 (raised by response {})", event(&r.hazard, r.level), r.id)}),
    )
}
