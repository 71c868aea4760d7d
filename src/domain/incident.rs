//! The records of an incident as the stages read them: an incident, its call-outs and its
//! evacuation reports, with every column in its domain type. The store fills them (and refuses
//! a row that does not read, naming it); nothing here reads or writes a database.

use serde::{Serialize, Serializer};

use super::{ChannelKind, Colour, RegionCode, State};

/// Whether an incident is still calling people (SPEC §2): `active` until it is stood down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    Active,
    Closed,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Active => "active",
            IncidentState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentState> {
        [IncidentState::Active, IncidentState::Closed]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// An incident. `P` is the policy it was opened with: `config::Policy` as the store reads it
/// (the domain sits below `config`, so the type is a parameter here, not an import).
#[derive(Debug, Clone, Serialize)]
pub struct Incident<P> {
    pub id: i64,
    pub code: String,
    pub warning_id: Option<i64>,
    pub title: String,
    pub event: String,
    pub description: String,
    pub instruction: String,
    pub colour: Option<Colour>,
    pub hazard: String,
    pub policy: P,
    pub drill: bool,
    pub state: IncidentState,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub closed_at: Option<i64>,
}

/// One call-out with what sending, escalating and answering need to know.
#[derive(Debug, Clone, Serialize)]
pub struct Callout {
    pub id: i64,
    pub incident_id: i64,
    pub contact_id: i64,
    pub parent_id: Option<i64>,
    pub rung: i64,
    pub region_code: RegionCode,
    pub place: String,
    pub role: String,
    pub reason: String,
    pub state: State,
    pub deadline_at: i64,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub ack_late: bool,
    pub contact_key: String,
    pub contact_name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// The person's own channel order; empty: the policy's. Shown as `sms;voice`, the way
    /// the roster sheet writes it.
    #[serde(serialize_with = "channel_list")]
    pub channels: Vec<ChannelKind>,
    pub backup_key: Option<String>,
    pub superior_key: Option<String>,
    pub ack_method: Option<String>,
    /// Set on a call-out made again because the colour rose ("暴雨橙色→红色预警").
    pub upgrade: Option<String>,
    /// A door-knock task (上门叫应): its person goes to the door of the parent call-out's.
    pub knock: bool,
    /// A scheduled round's status request (三调度): its number.
    pub round: Option<i64>,
}

/// `sms;voice`: the roster's spelling of a channel order.
pub fn channel_list<S: Serializer>(channels: &[ChannelKind], s: S) -> Result<S::Ok, S::Error> {
    let joined: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
    s.serialize_str(&joined.join(";"))
}

#[derive(Debug, Clone, Serialize)]
pub struct EvacuationRow {
    pub reporter: String,
    pub region_code: RegionCode,
    pub moved: i64,
    pub threatened: Option<i64>,
    pub at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_channels_serialise_as_the_stored_words() {
        for s in [IncidentState::Active, IncidentState::Closed] {
            assert_eq!(IncidentState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(IncidentState::parse("Active"), None);
        let mut out = Vec::new();
        channel_list(
            &[ChannelKind::Sms, ChannelKind::Voice],
            &mut serde_json::Serializer::new(&mut out),
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "\"sms;voice\"");
    }
}
