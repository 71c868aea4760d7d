//! The escalation ladder's steps (SPEC §2 policy): what a policy's `ladder` is made of.

use serde::Deserialize;

use super::ChannelKind;

/// One step of an escalation ladder (SPEC §2 policy), written as a string in the config:
/// `repeat`, `repeat:voice`, `backup`, `superior`, `duty:county_duty`, `knock`, `knock:ROLE`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Rung {
    /// Call the same person again, on `channel` only when one is given.
    Repeat { channel: Option<ChannelKind> },
    /// The person's AB角.
    Backup,
    /// The person's superior.
    Superior,
    /// Whoever holds `role` (e.g. `county_duty`) over the call-out's region on shift when the
    /// step fires (resolved then, not at planning).
    Duty { role: String },
    /// A door-knock task (上门叫应), the last rung: whoever holds `role` (the village disaster
    /// information officer by default) over the region, else the person's superior, is told
    /// to go to the door and answers with the result.
    Knock { role: String },
}

impl Rung {
    pub const REPEAT: Rung = Rung::Repeat { channel: None };
    /// Who knocks when `knock` names no role.
    pub const KNOCKER: &'static str = "info_officer";
}

impl std::str::FromStr for Rung {
    type Err = String;
    fn from_str(s: &str) -> Result<Rung, String> {
        let s = s.trim();
        let (step, arg) = match s.split_once(':') {
            Some((a, b)) => (a, Some(b.trim())),
            None => (s, None),
        };
        match (step, arg) {
            ("repeat", None) => Ok(Rung::REPEAT),
            ("repeat", Some(c)) => ChannelKind::parse(c)
                .map(|k| Rung::Repeat { channel: Some(k) })
                .ok_or_else(|| format!("unknown channel {c:?} in step {s:?} (sms, voice, email, webhook)")),
            ("backup", None) => Ok(Rung::Backup),
            ("superior", None) => Ok(Rung::Superior),
            ("duty", Some(r)) if !r.is_empty() => Ok(Rung::Duty { role: r.to_string() }),
            ("knock", None) => Ok(Rung::Knock {
                role: Rung::KNOCKER.into(),
            }),
            ("knock", Some(r)) if !r.is_empty() => Ok(Rung::Knock { role: r.to_string() }),
            _ => Err(format!(
                "unknown step {s:?} (repeat, repeat:CHANNEL, backup, superior, duty:ROLE, knock, knock:ROLE)"
            )),
        }
    }
}

impl TryFrom<String> for Rung {
    type Error = String;
    fn try_from(s: String) -> Result<Rung, String> {
        s.parse()
    }
}

impl From<Rung> for String {
    fn from(r: Rung) -> String {
        match r {
            Rung::Repeat { channel: None } => "repeat".into(),
            Rung::Repeat { channel: Some(c) } => format!("repeat:{}", c.as_str()),
            Rung::Backup => "backup".into(),
            Rung::Superior => "superior".into(),
            Rung::Duty { role } => format!("duty:{role}"),
            Rung::Knock { role } if role == Rung::KNOCKER => "knock".into(),
            Rung::Knock { role } => format!("knock:{role}"),
        }
    }
}
