//! What a message may say about one call-out: the facts the built-in templates render, and the
//! variables a provider's approved template is filled from (`template_params`). Plain data.

use serde::Serialize;

/// Everything a message may say about one call-out.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub signature: String,
    pub event: String,
    pub headline: String,
    pub description: String,
    pub instruction: String,
    pub place: String,
    pub link: String,
    pub code: String,
    pub drill: bool,
    pub evacuation: bool,
    /// A call-out made again because the colour rose, or a downgrade notice: what changed
    /// ("暴雨橙色→红色预警").
    pub change: Option<String>,
    /// A door-knock task: whose door, and why (上门叫应：… 未应答).
    pub knock: Option<String>,
    /// A scheduled round's status request (三调度): its number.
    pub round: Option<i64>,
}
