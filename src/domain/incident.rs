//! The records of an incident as the stages read them: an incident, its call-outs and its
//! evacuation reports. The store fills them; nothing here reads or writes a database.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub code: String,
    pub warning_id: Option<i64>,
    pub title: String,
    pub event: String,
    pub description: String,
    pub instruction: String,
    pub colour: Option<String>,
    pub hazard: String,
    pub policy: serde_json::Value,
    pub drill: bool,
    pub state: String,
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
    pub region_code: String,
    pub place: String,
    pub role: String,
    pub reason: String,
    pub state: String,
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
    pub channels: String,
    pub backup_key: Option<String>,
    pub superior_key: Option<String>,
    pub ack_method: Option<String>,
    /// Set on a call-out made again because the colour rose ("暴雨橙色→红色预警").
    pub upgrade: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvacuationRow {
    pub reporter: String,
    pub region_code: String,
    pub moved: i64,
    pub threatened: Option<i64>,
    pub at: i64,
}
