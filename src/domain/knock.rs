//! The result of a door-knock task (上门叫应), as the knocker reports it: reached, not at home,
//! or already moved away. Reading a reply into one is here (pure); recording it is the store's.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Knock {
    /// Told at the door: the person is reached.
    Reached,
    /// Nobody at home.
    NotHome,
    /// Already moved to safety.
    Moved,
}

impl Knock {
    pub fn as_str(self) -> &'static str {
        match self {
            Knock::Reached => "reached",
            Knock::NotHome => "not-home",
            Knock::Moved => "moved",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Knock::Reached => "已上门叫应",
            Knock::NotHome => "不在家",
            Knock::Moved => "已转移",
        }
    }

    pub fn parse(s: &str) -> Option<Knock> {
        [Knock::Reached, Knock::NotHome, Knock::Moved]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// A knocker's reply: `1`/`已叫应`, `2`/`不在家`, `3`/`已转移` (full-width digits too); the
    /// words win over a stray digit.
    pub fn read(text: &str) -> Option<Knock> {
        let t: String = text
            .chars()
            .map(|c| match c {
                '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
                c => c,
            })
            .filter(|c| !c.is_whitespace())
            .collect();
        if t.contains("不在") || t.contains("无人") || t.contains("没人") {
            return Some(Knock::NotHome);
        }
        if t.contains("转移") || t.contains("撤离") {
            return Some(Knock::Moved);
        }
        if t.contains("叫应") || t.contains("见到") || t.contains("通知到") {
            return Some(Knock::Reached);
        }
        match t.trim_matches(|c: char| !c.is_ascii_digit()).chars().next() {
            Some('1') => Some(Knock::Reached),
            Some('2') => Some(Knock::NotHome),
            Some('3') => Some(Knock::Moved),
            _ => None,
        }
    }

    /// Whether the person counts as reached (叫应) by this knock.
    pub fn reaches(self) -> bool {
        !matches!(self, Knock::NotHome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_knockers_reply() {
        for (text, want) in [
            ("1", Some(Knock::Reached)),
            ("１", Some(Knock::Reached)),
            ("已叫应", Some(Knock::Reached)),
            ("2", Some(Knock::NotHome)),
            ("家里没人", Some(Knock::NotHome)),
            ("3 已转移", Some(Knock::Moved)),
            ("人已撤离到安置点", Some(Knock::Moved)),
            ("明天再说", None),
        ] {
            assert_eq!(Knock::read(text), want, "{text}");
        }
        assert!(Knock::Moved.reaches() && !Knock::NotHome.reaches());
    }
}
