//! `jiaoying preview FILE`: who a CAP message would call, why (area, rule, shift) and on which
//! channel, grouped by county and township; nothing is sent or stored. Also loads the roster
//! snapshot that ingest plans against.

use std::collections::HashMap;
use std::fmt::Write;

use anyhow::Result;
use serde::Serialize;

use crate::cap;
use crate::config::{Level, Settings};
use crate::domain::{ChannelKind, Colour, RegionCode};
use crate::store::{roster, Store};
use crate::target::plan::{decide, Snapshot};
use crate::target::roster::{role_label, Contact};

/// One person the warning would call.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub name: String,
    pub contact_key: String,
    pub role: String,
    pub role_zh: String,
    pub county: String,
    pub township: String,
    pub place: String,
    /// Which area of the warning (or risk point) brings them.
    pub area: String,
    /// The policy.
    pub rule: String,
    /// The duty shift, when the role has a roster.
    pub shift: Option<String>,
    pub risk_point: Option<String>,
    /// The first channel that reaches them, then the rest in order.
    pub channels: Vec<ChannelKind>,
    pub reason: String,
}

/// What a CAP message would do, computed and not acted upon.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub identifier: String,
    pub event: String,
    pub colour: Option<Colour>,
    pub hazard: String,
    pub policy: Option<String>,
    pub deadline: Option<String>,
    pub threatened_regions: usize,
    pub risk_points: usize,
    pub note: Option<String>,
    pub calls: Vec<Line>,
}

/// Parses the CAP message and plans it against `roster` at `now_ms`; reads nothing else and
/// writes nothing.
pub fn preview_with(
    settings: &Settings,
    roster: &Snapshot,
    raw: &[u8],
    level: Option<Level>,
    now_ms: i64,
) -> Result<Preview> {
    let alert = cap::parse(raw).map_err(|e| anyhow::anyhow!("{e}"))?;
    let class = alert.classify();
    let Some(info) = alert.preferred_info() else {
        anyhow::bail!("the CAP message has no <info> block: nothing to target");
    };
    let d = decide(settings, info, &class, level, roster, now_ms);
    let contacts: HashMap<i64, &Contact> = roster.contacts.iter().map(|c| (c.id, c)).collect();
    let name_of = |code: Option<RegionCode>| {
        code.map(|c| roster.name(&c).map_or_else(|| c.to_string(), str::to_string))
            .unwrap_or_default()
    };
    let mut calls: Vec<Line> = d
        .calls
        .iter()
        .filter_map(|c| {
            let contact = contacts.get(&c.planned.contact_id)?;
            let p = &c.planned;
            Some(Line {
                name: contact.name.clone(),
                contact_key: p.contact_key.clone(),
                role: p.role.clone(),
                role_zh: role_label(&p.role).to_string(),
                county: name_of(p.region.county()),
                township: name_of(p.region.township()),
                place: p.place.clone(),
                area: c.area.clone(),
                rule: c.rule.clone(),
                shift: c.shift.clone(),
                risk_point: c.risk_point.clone(),
                channels: d
                    .policy
                    .as_ref()
                    .map(|pol| reachable(settings, &pol.channels, contact))
                    .unwrap_or_default(),
                reason: p.reason.clone(),
            })
        })
        .collect();
    calls.sort_by(|a, b| (&a.county, &a.township, &a.place).cmp(&(&b.county, &b.township, &b.place)));
    Ok(Preview {
        identifier: alert.identifier.clone(),
        event: info.event.clone(),
        colour: class.colour,
        hazard: class.hazard.clone(),
        policy: d.policy.as_ref().map(|p| p.name.clone()),
        deadline: d
            .policy
            .as_ref()
            .map(|p| humantime::format_duration(p.deadline).to_string()),
        threatened_regions: d.threatened.len(),
        risk_points: d.risk_points,
        note: d.note,
        calls,
    })
}

/// Loads the roster from the store (reads only) and previews the message against it now.
pub async fn preview(
    settings: &Settings,
    store: &Store,
    raw: &[u8],
    level: Option<Level>,
    now_ms: i64,
) -> Result<Preview> {
    let roster = roster::load_snapshot(store).await?;
    preview_with(settings, &roster, raw, level, now_ms)
}

/// The channels that reach a person, in the order dispatch tries them: their own preference
/// or the policy's, leaving out those without an address or without a gateway.
fn reachable(settings: &Settings, policy: &[ChannelKind], c: &Contact) -> Vec<ChannelKind> {
    let order = if c.channels.is_empty() {
        policy
    } else {
        &c.channels
    };
    order
        .iter()
        .copied()
        .filter(|ch| match ch {
            ChannelKind::Sms | ChannelKind::Voice => c.phone.is_some(),
            ChannelKind::Email => c.email.is_some(),
            ChannelKind::Webhook => true,
        })
        .filter(|ch| !settings.channels.gateways(*ch).is_empty())
        .collect()
}

fn channel_zh(c: ChannelKind) -> &'static str {
    match c {
        ChannelKind::Sms => "短信",
        ChannelKind::Voice => "语音",
        ChannelKind::Email => "邮件",
        ChannelKind::Webhook => "推送",
    }
}

/// The text for the office: Chinese first, grouped by county and township.
pub fn render(p: &Preview) -> String {
    let mut out = String::new();
    let colour = p.colour.map_or("无颜色".to_string(), |c| c.zh().to_string());
    let _ = writeln!(
        out,
        "预览（不发送、不记录 / preview: nothing sent or stored）\n预警 {}：{}（{} / {}）",
        p.identifier, p.event, colour, p.hazard
    );
    match &p.policy {
        Some(name) => {
            let _ = writeln!(
                out,
                "规则 policy：{name}，应答时限 deadline {}",
                p.deadline.as_deref().unwrap_or("-")
            );
        }
        None => {
            let _ = writeln!(out, "无适用规则 (no policy matches)");
        }
    }
    let _ = writeln!(
        out,
        "受威胁区划 {} 个，风险点 {} 个，将叫应 {} 人 (regions, risk points, people to call)",
        p.threatened_regions,
        p.risk_points,
        p.calls.len()
    );
    if let Some(n) = &p.note {
        let _ = writeln!(out, "说明 note：{n}");
    }
    let mut county = None;
    let mut township = None;
    for l in &p.calls {
        if county != Some(&l.county) {
            let _ = writeln!(
                out,
                "\n{}",
                if l.county.is_empty() {
                    "（县级以上）"
                } else {
                    &l.county
                }
            );
            county = Some(&l.county);
            township = None;
        }
        if township != Some(&l.township) {
            if !l.township.is_empty() {
                let _ = writeln!(out, "  {}", l.township);
            }
            township = Some(&l.township);
        }
        let channels = if l.channels.is_empty() {
            "无可用渠道 (no channel reaches this person)".to_string()
        } else {
            l.channels
                .iter()
                .map(|c| format!("{} {}", channel_zh(*c), c.as_str()))
                .collect::<Vec<_>>()
                .join(" → ")
        };
        let _ = writeln!(
            out,
            "    {} {}（{}）{}：{}",
            l.name, l.role_zh, l.role, l.place, channels
        );
        let _ = writeln!(out, "      原因 why：{}", l.reason);
    }
    out
}
