//! The callbacks of a group (group commit, `inbound::heard_together`) applied together. The replies' earlier reports, contacts and call-outs are read in four queries for
//! the group, and what plain answers write (the inbound rows, the answers, the sends and
//! deadlines they end) is held and written in a few statements: a reply flood after a typhoon
//! warning is thousands of 收到 a minute, and one transaction of a dozen statements for each
//! held SQLite's one writer for all of them. Anything else (an evacuation count, a door-knock
//! result, a receipt, a voice result) is applied by `inbound::one` exactly as alone, after
//! what is held is written; the group's reads are made again after it. On PostgreSQL such an
//! event fails the group instead, which is then applied one by one: applied in the group it
//! would lock its call-out after the group's, out of the store's lock order. Every reply gets
//! the ledger entries, in the same order, that it would get alone.
//!
//! It must not decide what a reply means (that is `reply` and `inbound::choose`) nor what an
//! answer does (`domain::callout::on_answer`).

use std::collections::{HashMap, HashSet};

use anyhow::Result;

use super::inbound::{self, SmsResult, REPLAYED};
use super::reply;
use crate::channel::event::{Event, Outcome, What};
use crate::domain::callout::{on_answer, Answer, State};
use crate::domain::{AckMethod, Phone};
use crate::store::answers::{ack_record, Ack};
use crate::store::callouts::Callout;
use crate::store::inbound::{InboundKind, NewInbound};
use crate::store::{Backend, Tx};
use crate::target::roster::Contact;

/// Whether a group applies this event itself, as far as the event alone tells: a reply
/// without an evacuation count (one that turns out to answer a door-knock task is applied
/// alone all the same).
pub(super) fn plain(e: &Event) -> bool {
    match &e.what {
        What::Reply { text, .. } => reply::parse(text).is_none_or(|r| r.moved.is_none()),
        What::Receipt { .. } | What::Voice { .. } => false,
    }
}

/// Applies `events` in order in the caller's unit of work: their outcomes, in order.
pub(super) async fn apply(tx: &mut Tx, events: &[(&str, &Event)], now: i64) -> Result<Vec<Outcome>> {
    let mut out = Vec::with_capacity(events.len());
    let mut group: Option<Group> = None;
    for (i, (gateway, e)) in events.iter().enumerate() {
        let held = match (&mut group, &e.what) {
            (_, What::Receipt { .. } | What::Voice { .. }) => None,
            (Some(g), What::Reply { .. }) => g.reply(tx, gateway, e, now).await?,
            (None, What::Reply { .. }) => {
                let g = group.insert(Group::read(tx, &events[i..]).await?);
                g.reply(tx, gateway, e, now).await?
            }
        };
        match held {
            Some(o) => out.push(o),
            // On PostgreSQL an event applied alone would lock its call-outs after the group's
            // and out of the store's lock order (by id): the group is applied one by one.
            None if tx.backend() == Backend::Postgres => {
                anyhow::bail!("a callback that is not a plain reply: the group is applied one by one")
            }
            None => {
                // Alone, on what is written so far; the rest is read again after it.
                if let Some(g) = group.take() {
                    g.write(tx, now).await?;
                }
                out.push(inbound::one(tx, gateway, e, now).await?);
            }
        }
    }
    if let Some(g) = group {
        g.write(tx, now).await?;
    }
    Ok(out)
}

/// What the group read, and what its replies hold to write.
struct Group<'a> {
    /// `(gateway, event id)` reported before, or earlier in the group.
    seen: HashSet<(String, String)>,
    /// The contacts of each number, by id.
    by_phone: HashMap<String, Vec<Contact>>,
    /// Their call-outs in active incidents, newest first, with the incident's code; an answer
    /// held moves its call-out here to `acknowledged`, as it would be read after it.
    open: Vec<(Callout, String)>,
    /// Ids for the inbound rows, one per reply of the group (`Tx::inbound_ids`).
    ids: std::collections::VecDeque<i64>,
    inbound: Vec<Kept<'a>>,
    acks: Vec<(i64, State, bool, Ack<'a>)>,
}

/// An inbound row held.
struct Kept<'a> {
    id: i64,
    gateway: &'a str,
    sender: Option<String>,
    body: &'a str,
    outcome: &'static str,
    callout_id: Option<i64>,
    event_id: Option<&'a str>,
}

impl<'a> Group<'a> {
    async fn read(tx: &mut Tx, events: &[(&'a str, &'a Event)]) -> Result<Group<'a>> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let mut phones: Vec<String> = Vec::new();
        for (gateway, e) in events {
            if let What::Reply { from, .. } = &e.what {
                if !e.id.is_empty() {
                    pairs.push((gateway, e.id.as_str()));
                }
                phones.extend(Phone::parse(from).ok().map(|p| p.as_str().to_string()));
            }
        }
        phones.sort_unstable();
        phones.dedup();
        let seen = tx.seen_events(&pairs).await?;
        let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
        let mut by_phone: HashMap<String, Vec<Contact>> = HashMap::new();
        for (phone, c) in tx.contacts_by_phones(&refs).await? {
            by_phone.entry(phone).or_default().push(c);
        }
        let mut ids: Vec<i64> = Vec::new();
        for cs in by_phone.values_mut() {
            cs.sort_by_key(|c| c.id);
            cs.dedup_by_key(|c| c.id);
            ids.extend(cs.iter().map(|c| c.id));
        }
        ids.sort_unstable();
        ids.dedup();
        let open = tx.open_callouts_of_contacts(&ids).await?;
        let replies = events
            .iter()
            .filter(|(_, e)| matches!(e.what, What::Reply { .. }))
            .count();
        let ids = tx.inbound_ids(replies).await?.into();
        Ok(Group {
            seen,
            by_phone,
            open,
            ids,
            inbound: Vec::new(),
            acks: Vec::new(),
        })
    }

    /// An SMS reply decided on what the group read, its writes held and its ledger entries
    /// appended; None for an event to apply alone.
    async fn reply(
        &mut self,
        tx: &mut Tx,
        gateway: &'a str,
        e: &'a Event,
        now: i64,
    ) -> Result<Option<Outcome>> {
        let What::Reply { from, text } = &e.what else {
            return Ok(None);
        };
        let event_id = (!e.id.is_empty()).then_some(e.id.as_str());
        let key = event_id.map(|id| (gateway.to_string(), id.to_string()));
        if key.as_ref().is_some_and(|k| self.seen.contains(k)) {
            let id = self.next_id()?;
            self.inbound.push(Kept {
                id,
                gateway,
                sender: None,
                body: text,
                outcome: REPLAYED,
                callout_id: None,
                event_id: None,
            });
            tracing::warn!(gateway, "a report seen before came again: kept, nothing changed");
            return Ok(Some(Outcome {
                outcome: REPLAYED,
                callout_id: None,
                incident_code: None,
                late: None,
            }));
        }
        let phone = Phone::parse(from).ok();
        let contacts: &[Contact] = phone
            .as_ref()
            .and_then(|p| self.by_phone.get(p.as_str()))
            .map_or(&[], Vec::as_slice);
        let known = !contacts.is_empty();
        let theirs: Vec<&(Callout, String)> = self
            .open
            .iter()
            .filter(|(c, _)| contacts.iter().any(|k| k.id == c.contact_id))
            .collect();
        let parsed = reply::parse(text);
        let chosen = inbound::choose(&theirs, parsed.as_ref()).map(|(c, code)| (c.clone(), code.clone()));
        // A count and a door-knock result write more than an answer: alone.
        if parsed.as_ref().is_some_and(|r| r.moved.is_some()) || chosen.as_ref().is_some_and(|(c, _)| c.knock)
        {
            return Ok(None);
        }
        if let Some(k) = key {
            self.seen.insert(k);
        }
        let mut result = match (&chosen, &parsed) {
            _ if !known => SmsResult::UnknownNumber,
            (None, _) => SmsResult::NoOpenCallout,
            (Some(_), None) => SmsResult::Unparsed,
            (Some(_), Some(_)) => SmsResult::Ack,
        };
        let mut late = None;
        let id = self.next_id()?;
        if let (Some((c, _)), Some(_)) = (&chosen, &parsed) {
            match on_answer(c.state, now, c.deadline_at) {
                Answer::Duplicate => result = SmsResult::Duplicate,
                Answer::Record { late: l } => {
                    let ack = Ack {
                        method: AckMethod::Sms,
                        note: Some(text),
                        actor: None,
                        inbound_id: Some(id),
                    };
                    tx.append(vec![ack_record(c.id, &ack, l)], now).await?;
                    self.acks.push((c.id, c.state, l, ack));
                    if let Some(held) = self.open.iter_mut().find(|(o, _)| o.id == c.id) {
                        held.0.state = State::Acknowledged;
                    }
                    late = Some(l);
                }
            }
        }
        let callout_id = chosen.as_ref().map(|(c, _)| c.id);
        let sender = phone
            .as_ref()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| from.chars().take(32).collect());
        self.inbound.push(Kept {
            id,
            gateway,
            sender: Some(sender),
            body: text,
            outcome: result.as_str(),
            callout_id,
            event_id,
        });
        inbound::note_reply(tx, id, gateway, phone.as_ref(), result, callout_id, now).await?;
        Ok(Some(Outcome {
            outcome: result.as_str(),
            callout_id,
            incident_code: chosen.map(|c| c.1),
            late,
        }))
    }

    fn next_id(&mut self) -> Result<i64> {
        self.ids
            .pop_front()
            .ok_or_else(|| anyhow::anyhow!("more replies than the group read"))
    }

    /// Writes what is held: the inbound rows first (the answers name them).
    async fn write(self, tx: &mut Tx, now: i64) -> Result<()> {
        let rows: Vec<(i64, NewInbound)> = self
            .inbound
            .iter()
            .map(|k| {
                (
                    k.id,
                    NewInbound {
                        gateway: k.gateway,
                        kind: InboundKind::Sms,
                        sender: k.sender.as_deref(),
                        body: k.body,
                        outcome: k.outcome,
                        callout_id: k.callout_id,
                        event_id: k.event_id,
                    },
                )
            })
            .collect();
        tx.keep_inbound_rows(&rows, now).await?;
        tx.acknowledge_together(&self.acks, now).await
    }
}
