//! What a chunk of deadlines shares (`escalate`): what it reads once ([`Seen`], [`Reads`]) and
//! what its deadlines write, held and made together ([`Held`]). Deciding what a deadline does
//! is `escalate` (and `callout::on_deadline`); this module must not decide, only read and write.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use sqlx::AnyConnection;

use crate::config::Rung;
use crate::domain::callout::State;
use crate::domain::RegionCode;
use crate::store::callouts::{self, Callout};
use crate::store::incidents::Incident;
use crate::store::jobs::{self, NewJob};
use crate::store::ledger::Record;
use crate::store::roster;
use crate::store::Tx;
use crate::target::roster::{Contact, DutyShift};

/// What a chunk reads once and every deadline in it shares.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) incidents: HashMap<i64, std::result::Result<Option<Incident>, String>>,
    pub(super) reads: Reads,
    pub(super) shifts: Option<Vec<DutyShift>>,
    /// Call-outs written in this chunk: read again if another deadline of the chunk names them.
    pub(super) touched: HashSet<i64>,
}

/// Contacts read for a chunk: by key (backups, superiors, people on shift), by role and
/// region (duty holders), and who of them has an open call-out in which incident.
#[derive(Default)]
pub(super) struct Reads {
    pub(super) contacts: HashMap<String, Option<Contact>>,
    pub(super) holders: HashMap<(String, RegionCode), Vec<Contact>>,
    /// `(incident, contact)` pairs with an open call-out (read up front, or made by this
    /// chunk), of the pairs in `checked`.
    pub(super) open: HashSet<(i64, i64)>,
    pub(super) checked: HashSet<(i64, i64)>,
}

impl Reads {
    pub(super) async fn contact(
        &mut self,
        conn: &mut AnyConnection,
        key: &Option<String>,
    ) -> Result<Option<Contact>> {
        let Some(key) = key else { return Ok(None) };
        if let Some(c) = self.contacts.get(key) {
            return Ok(c.clone());
        }
        let c = roster::contact_by_key(conn, key).await?;
        self.contacts.insert(key.clone(), c.clone());
        Ok(c)
    }

    pub(super) async fn holders(
        &mut self,
        conn: &mut AnyConnection,
        role: &str,
        code: &RegionCode,
    ) -> Result<&[Contact]> {
        let k = (role.to_string(), code.clone());
        if !self.holders.contains_key(&k) {
            let hs = roster::contacts_with_role(conn, role, code).await?;
            self.holders.insert(k.clone(), hs);
        }
        Ok(&self.holders[&k])
    }

    /// The backups and superiors of these call-outs, and which of them are called already in
    /// these call-outs' incidents: three queries for a piece of a chunk, not two per deadline.
    pub(super) async fn ahead(&mut self, conn: &mut AnyConnection, piece: &[Callout]) -> Result<()> {
        let mut keys: Vec<&str> = piece
            .iter()
            .flat_map(|c| [c.backup_key.as_deref(), c.superior_key.as_deref()])
            .flatten()
            .filter(|k| !self.contacts.contains_key(*k))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for k in &keys {
            self.contacts.insert(k.to_string(), None);
        }
        let found = roster::contacts_by_keys(conn, &keys).await?;
        let ids: Vec<i64> = found.iter().map(|c| c.id).collect();
        for c in found {
            self.contacts.insert(c.key.clone(), Some(c));
        }
        let mut incidents: Vec<i64> = piece.iter().map(|c| c.incident_id).collect();
        incidents.sort_unstable();
        incidents.dedup();
        self.open
            .extend(callouts::open_pairs(conn, &incidents, &ids).await?);
        // Asked for every pair of these incidents and contacts (a contact read by an earlier
        // piece is not asked again, and is read one by one if a deadline calls them).
        self.checked
            .extend(incidents.iter().flat_map(|i| ids.iter().map(move |c| (*i, *c))));
        Ok(())
    }

    /// Whether this person may have an open call-out in this incident (then it is read, to
    /// join it); false only when the chunk knows they have none.
    pub(super) fn may_be_open(&self, incident: i64, contact: i64) -> bool {
        !self.checked.contains(&(incident, contact)) || self.open.contains(&(incident, contact))
    }
}

/// Writes of a chunk's deadlines held back and made together (a few statements for the
/// chunk, not ten for each deadline): state changes, rungs, jobs, new call-outs, and the
/// ledger records in the order the deadlines were decided. [`Held::flush`] makes them before
/// anything that must read what they wrote (a join, a call-out touched twice) and at the end.
#[derive(Default)]
pub(super) struct Held {
    /// (call-out, the state it was decided in, the state it goes to)
    pub(super) moves: Vec<(i64, State, State)>,
    pub(super) rungs: Vec<(i64, i64, Option<i64>)>,
    pub(super) jobs: Vec<NewJob>,
    pub(super) children: Vec<callouts::NewChild>,
    /// With the state change, if any, whose `callout.state` entry follows the record (one
    /// per deadline, as if each were applied alone: the ledger does not depend on how the
    /// deadlines were chunked).
    pub(super) records: Vec<(Pending, Option<(i64, State)>)>,
}

/// A ledger record of a held write: an escalation's names the call-outs it made, whose ids
/// are known only once they are inserted.
pub(super) enum Pending {
    Ready(Record),
    Escalated {
        callout: i64,
        incident: i64,
        to: Rung,
        contacts: Vec<String>,
        joined: Vec<i64>,
        rung: i64,
        /// Its children: `Held::children[from..to]`.
        children: std::ops::Range<usize>,
    },
}

impl Held {
    pub(super) async fn flush(&mut self, tx: &mut Tx, records: &mut Vec<Record>, now: i64) -> Result<()> {
        let held = std::mem::take(self);
        let backend = tx.backend();
        let conn: &mut AnyConnection = tx;
        // Rows in id order first (PostgreSQL): the store's lock order.
        let mut ids: Vec<i64> = held
            .moves
            .iter()
            .map(|m| m.0)
            .chain(held.rungs.iter().map(|r| r.0))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        callouts::lock(conn, backend, &ids).await?;
        let mut changed: HashSet<(i64, State)> = HashSet::new();
        let mut groups: Vec<((State, State), Vec<i64>)> = Vec::new();
        for (id, from, to) in &held.moves {
            match groups.iter_mut().find(|g| g.0 == (*from, *to)) {
                Some(g) => g.1.push(*id),
                None => groups.push(((*from, *to), vec![*id])),
            }
        }
        for ((from, to), ids) in groups {
            let moved = callouts::transition(conn, &ids, &[from], to, None, now).await?;
            changed.extend(moved.into_iter().map(|id| (id, to)));
        }
        callouts::set_rungs(conn, &held.rungs, now).await?;
        let children = callouts::add_children(conn, backend, &held.children, now).await?;
        jobs::insert(conn, held.jobs, now).await?;
        for (r, state) in held.records {
            records.push(match r {
                Pending::Ready(r) => r,
                Pending::Escalated {
                    callout,
                    incident,
                    to,
                    contacts,
                    joined,
                    rung,
                    children: range,
                } => {
                    let made = &children[range];
                    Record::new(
                        "callout.escalated",
                        format!("callout:{callout}"),
                        serde_json::json!({"to": to, "contact": contacts.first(), "contacts": contacts,
                            "new_callout": made.first(), "new_callouts": made, "joined": joined, "rung": rung,
                            "incident": incident}),
                    )
                }
            });
            if let Some((id, to)) = state.filter(|s| changed.contains(s)) {
                records.extend(callouts::state_record(&[id], to));
            }
        }
        Ok(())
    }
}
