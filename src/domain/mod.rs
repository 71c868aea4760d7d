//! Domain words of SPEC §2 as types: colours, hazards, division codes, phones, call-out states.
//! Plain data with parsing and display; no IO here.

pub mod callout;
mod facts;
mod incident;
mod knock;
mod ladder;
pub mod password;

pub use callout::State;
pub use facts::Facts;
pub use incident::{Callout, EvacuationRow, Incident, IncidentState};
pub use knock::Knock;
pub use ladder::Rung;

use std::fmt;

use serde::{Deserialize, Serialize};

/// Warning colour, ordered blue < yellow < orange < red (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Yellow,
    Orange,
    Red,
}

impl Colour {
    pub const ALL: [Colour; 4] = [Colour::Blue, Colour::Yellow, Colour::Orange, Colour::Red];

    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Orange => "orange",
            Colour::Red => "red",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Colour::Blue => "蓝色",
            Colour::Yellow => "黄色",
            Colour::Orange => "橙色",
            Colour::Red => "红色",
        }
    }

    pub fn parse(s: &str) -> Option<Colour> {
        Colour::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim().to_ascii_lowercase())
    }

    /// The CAP severity convention (SPEC §2): Minor→blue … Extreme→red.
    pub fn from_severity(severity: &str) -> Option<Colour> {
        match severity.trim() {
            "Minor" => Some(Colour::Blue),
            "Moderate" => Some(Colour::Yellow),
            "Severe" => Some(Colour::Orange),
            "Extreme" => Some(Colour::Red),
            _ => None,
        }
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Emergency response level (应急响应等级), Ⅰ (highest) to Ⅳ (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    I,
    II,
    III,
    IV,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::I, Level::II, Level::III, Level::IV];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::I => "I",
            Level::II => "II",
            Level::III => "III",
            Level::IV => "IV",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Level::I => "Ⅰ级",
            Level::II => "Ⅱ级",
            Level::III => "Ⅲ级",
            Level::IV => "Ⅳ级",
        }
    }

    /// `II`, `ii`, `2`, `Ⅱ`, `Ⅱ级`, `II级`, `二级`.
    pub fn parse(s: &str) -> Option<Level> {
        let s = s.trim();
        let s = s.strip_suffix('级').unwrap_or(s).trim();
        Some(match s.to_ascii_uppercase().as_str() {
            "I" | "1" | "Ⅰ" | "一" => Level::I,
            "II" | "2" | "Ⅱ" | "二" => Level::II,
            "III" | "3" | "Ⅲ" | "三" => Level::III,
            "IV" | "4" | "Ⅳ" | "四" => Level::IV,
            _ => return None,
        })
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        Level::parse(s).ok_or_else(|| format!("response level {s:?} is not I, II, III or IV"))
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 12-digit statistical division code, stored without trailing zero groups so that a prefix
/// test is a containment test: `4509` (Yulin) contains `450921104` (六王镇).
///
/// Held inline (its digits and their count, no heap): a roster holds a code for every region,
/// parent, contact and call-out, and matching a province copies tens of thousands of them, so
/// a clone is a copy of 13 bytes, not an allocation.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionCode {
    len: u8,
    digits: [u8; 12],
}

impl RegionCode {
    /// Accepts 2 to 12 digits; trailing zero groups of a full code are dropped
    /// (`450921000000` → `450921`).
    pub fn parse(s: &str) -> Result<RegionCode, String> {
        let s = s.trim();
        if s.len() < 2 || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("division code {s:?} must be 2 to 12 digits"));
        }
        // Group boundaries: province 2, city 4, county 6, township 9, village 12.
        let mut code = s;
        for cut in [9usize, 6, 4, 2] {
            if code.len() > cut && code[cut..].bytes().all(|b| b == b'0') {
                code = &code[..cut];
            }
        }
        Ok(RegionCode::of_digits(code))
    }

    /// `s` is 12 ASCII digits or fewer (checked by the callers).
    fn of_digits(s: &str) -> RegionCode {
        let mut digits = [0u8; 12];
        digits[..s.len()].copy_from_slice(s.as_bytes());
        RegionCode {
            len: s.len() as u8,
            digits,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored (`parse`, `of_digits`).
        std::str::from_utf8(self.bytes()).expect("ASCII digits")
    }

    /// The digits; comparing them is comparing the codes as strings (ASCII), without
    /// `as_str`'s check (codes are compared millions of times in matching a province).
    fn bytes(&self) -> &[u8] {
        &self.digits[..self.len as usize]
    }

    /// True when `self` is `other` or one of its ancestors.
    pub fn contains(&self, other: &RegionCode) -> bool {
        other.bytes().starts_with(self.bytes())
    }

    pub fn level(&self) -> RegionLevel {
        match self.len {
            0..=2 => RegionLevel::Province,
            3..=4 => RegionLevel::City,
            5..=6 => RegionLevel::County,
            7..=9 => RegionLevel::Township,
            _ => RegionLevel::Village,
        }
    }

    /// The first `len` digits of a code at least that long (a county at 6, a township at 9).
    pub fn prefix(code: &RegionCode, len: usize) -> RegionCode {
        RegionCode::of_digits(&code.as_str()[..len])
    }

    /// The county-level prefix (6 digits) when the code is at least that deep.
    pub fn county(&self) -> Option<RegionCode> {
        (self.len >= 6).then(|| RegionCode::prefix(self, 6))
    }

    /// The township-level prefix (9 digits) when the code is at least that deep.
    pub fn township(&self) -> Option<RegionCode> {
        (self.len >= 9).then(|| RegionCode::prefix(self, 9))
    }
}

/// A code compares, orders and hashes as its digits (maps keyed by codes are looked up by a
/// prefix's `&str`, which `Borrow` requires to hash alike).
impl PartialEq for RegionCode {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for RegionCode {}

impl PartialOrd for RegionCode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RegionCode {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl std::hash::Hash for RegionCode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl std::borrow::Borrow<str> for RegionCode {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl TryFrom<String> for RegionCode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RegionCode::parse(&s)
    }
}

impl From<RegionCode> for String {
    fn from(c: RegionCode) -> String {
        c.as_str().to_string()
    }
}

impl fmt::Debug for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegionCode({})", self.as_str())
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionLevel {
    Province,
    City,
    County,
    Township,
    Village,
}

impl RegionLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RegionLevel::Province => "province",
            RegionLevel::City => "city",
            RegionLevel::County => "county",
            RegionLevel::Township => "township",
            RegionLevel::Village => "village",
        }
    }
}

/// A phone number in E.164 form. `Debug` and `masked()` hide the middle digits so that logs
/// never carry a whole number (SPEC §9).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    /// Normalises a number to E.164 with the `phonenumber` metadata, +86 when it carries no
    /// country code: mobiles (`138 0013 8000`), landlines with their area code
    /// (`0912-1234567` → `+869121234567`), `+86…` and `0086…`. Numbers the metadata does not
    /// know as valid are refused.
    pub fn parse(s: &str) -> Result<Phone, String> {
        let t = s.trim();
        // 0086… is the international prefix dialled from China; the crate wants `+`.
        let t = match t.strip_prefix("00") {
            Some(rest) if !rest.starts_with('0') => format!("+{rest}"),
            _ => t.to_string(),
        };
        let bad = || format!("phone number {s:?} is not a valid mobile or landline number (手机号/固话无效)");
        let n = phonenumber::parse(Some(phonenumber::country::Id::CN), &t).map_err(|_| bad())?;
        if !n.is_valid() {
            return Err(bad());
        }
        // E.164 is "+", country code, national number; the crate's formatter gets there
        // through its format regexes, which costs more than the validity check.
        Ok(Phone(format!("+{}{}", n.code().value(), n.national())))
    }

    /// Several numbers in one cell, separated by `;`, `、`, `,` (full-width too) or `/`; the
    /// first is the primary one. Empty cell: no numbers.
    pub fn parse_list(s: &str) -> Result<Vec<Phone>, String> {
        let mut out: Vec<Phone> = Vec::new();
        for part in s.split([';', '；', '、', ',', '，', '/']).map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let p = Phone::parse(part)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// A number read back from the database, where only normalised numbers are written:
    /// skips the metadata look-up, which costs tens of microseconds per number.
    pub fn stored(s: String) -> Option<Phone> {
        let ok = s.len() > 4 && s.starts_with('+') && s[1..].bytes().all(|b| b.is_ascii_digit());
        ok.then_some(Phone(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+86138****5678`: enough to tell numbers apart in a log, not enough to dial.
    pub fn masked(&self) -> String {
        let n = self.0.len();
        if n <= 8 {
            return "*".repeat(n);
        }
        format!("{}****{}", &self.0[..n - 8], &self.0[n - 4..])
    }
}

impl TryFrom<String> for Phone {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Phone::parse(&s)
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// The channel kinds of SPEC §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Sms,
    Voice,
    Email,
    Webhook,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Sms => "sms",
            ChannelKind::Voice => "voice",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelKind> {
        [
            ChannelKind::Sms,
            ChannelKind::Voice,
            ChannelKind::Email,
            ChannelKind::Webhook,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// How an answer came (SPEC §2, acknowledgement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMethod {
    Sms,
    Link,
    Voice,
    Operator,
    /// Reached at the door by a door-knock task (上门叫应).
    Door,
}

impl AckMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMethod::Sms => "sms",
            AckMethod::Link => "link",
            AckMethod::Voice => "voice",
            AckMethod::Operator => "operator",
            AckMethod::Door => "door",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_ordered_and_read_from_severity() {
        assert!(Colour::Red > Colour::Orange && Colour::Yellow > Colour::Blue);
        assert_eq!(Colour::from_severity("Extreme"), Some(Colour::Red));
        assert_eq!(Colour::from_severity("Unknown"), None);
        assert_eq!(Colour::parse(" RED"), Some(Colour::Red));
    }

    #[test]
    fn levels_parse_in_every_spelling() {
        for (s, l) in [
            ("II", Level::II),
            ("ii", Level::II),
            ("2", Level::II),
            ("Ⅱ级", Level::II),
            ("二级", Level::II),
        ] {
            assert_eq!(Level::parse(s), Some(l), "{s}");
        }
        assert_eq!(Level::parse("Ⅳ"), Some(Level::IV));
        assert_eq!(Level::parse("V"), None);
        assert!(Level::I < Level::IV, "I is the highest and sorts first");
        assert_eq!(Level::III.zh(), "Ⅲ级");
    }

    /// Held inline, a code must still order, compare and hash as its digits: maps keyed by
    /// codes are looked up by `&str`, and plans are sorted by code.
    #[test]
    fn region_codes_order_and_hash_as_their_digits() {
        use std::collections::{BTreeMap, HashMap};
        let codes = [
            "45",
            "4509",
            "450921",
            "450921104",
            "450921104201",
            "450922",
            "46",
        ];
        let parsed: Vec<RegionCode> = codes.iter().map(|c| RegionCode::parse(c).unwrap()).collect();
        let mut shuffled = parsed.clone();
        shuffled.reverse();
        shuffled.sort();
        assert_eq!(shuffled, parsed, "sorted as strings sort");
        let hashed: HashMap<RegionCode, usize> = parsed.iter().cloned().zip(0..).collect();
        let ordered: BTreeMap<RegionCode, usize> = parsed.iter().cloned().zip(0..).collect();
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(hashed.get(*c), Some(&i), "{c} found by &str in a HashMap");
            assert_eq!(ordered.get(*c), Some(&i), "{c} found by &str in a BTreeMap");
        }
        assert_ne!(parsed[1], parsed[2]);
        assert_eq!(RegionCode::prefix(&parsed[4], 9), parsed[3]);
        assert_eq!(String::from(parsed[4].clone()), "450921104201");
        let json = serde_json::to_string(&parsed[2]).unwrap();
        assert_eq!(json, "\"450921\"");
        assert_eq!(
            serde_json::from_str::<RegionCode>("\"450921000000\"").unwrap(),
            parsed[2]
        );
        assert!(serde_json::from_str::<RegionCode>("\"4509211042011\"").is_err());
    }

    #[test]
    fn region_codes_drop_zero_groups_and_nest() {
        let county = RegionCode::parse("450921000000").unwrap();
        assert_eq!(county.as_str(), "450921");
        let town = RegionCode::parse("450921104").unwrap();
        assert!(county.contains(&town));
        assert!(!town.contains(&county));
        assert_eq!(town.level(), RegionLevel::Township);
        assert_eq!(town.county(), Some(county));
        assert!(RegionCode::parse("45x9").is_err());
        assert_eq!(RegionCode::parse("450900").unwrap().as_str(), "4509");
    }

    #[test]
    fn phones_normalise_and_mask() {
        let p = Phone::parse("138 0013 8000").unwrap();
        assert_eq!(p.as_str(), "+8613800138000");
        assert_eq!(p.masked(), "+86138****8000");
        assert_eq!(format!("{p:?}"), "Phone(+86138****8000)");
        assert_eq!(Phone::parse("0775-2831234").unwrap().as_str(), "+867752831234");
        assert_eq!(Phone::parse("0912-1234567").unwrap().as_str(), "+869121234567");
        assert_eq!(
            Phone::parse("+86 138-0013-8000").unwrap().as_str(),
            "+8613800138000"
        );
        assert_eq!(
            Phone::parse("008613800138000").unwrap().as_str(),
            "+8613800138000"
        );
        assert_eq!(Phone::parse("(010) 6552 9988").unwrap().as_str(), "+861065529988");
        // The demo roster's synthetic range must stay valid.
        assert_eq!(Phone::parse("17000012345").unwrap().as_str(), "+8617000012345");
        for bad in ["12345", "abc", "1380013800", "138001380001", "11111111111", ""] {
            assert!(Phone::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn several_phones_per_cell_first_is_primary() {
        let ps = Phone::parse_list("13800138000；0775-2831234、 13800138000,+8613900139000").unwrap();
        let s: Vec<&str> = ps.iter().map(|p| p.as_str()).collect();
        assert_eq!(s, ["+8613800138000", "+867752831234", "+8613900139000"]);
        assert!(Phone::parse_list("").unwrap().is_empty());
        let e = Phone::parse_list("13800138000;12345").unwrap_err();
        assert!(e.contains("12345"), "{e}");
        assert_eq!(
            Phone::stored("+8613800138000".into()).unwrap().as_str(),
            "+8613800138000"
        );
        assert!(Phone::stored("13800138000".into()).is_none());
    }
}
