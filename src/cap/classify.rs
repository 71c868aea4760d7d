//! Warning colour and hazard key from an info's event text, parameters and event codes.
//! Table-driven, Chinese first: CMA signal names (暴雨红色预警信号) carry both in the event.
//! Colour order of authority: the event's own colour or level word, a colour parameter, the
//! CAP severity convention (Minor→blue … Extreme→red), then warning/watch/advisory words
//! (NWS VTEC significance, Canada's Alert_Type, NWS event names). The README section
//! "Colour and hazard" mirrors these tables.

use serde::Serialize;

use crate::domain::Colour;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub colour: Option<Colour>,
    pub hazard: String,
}

/// Substring patterns on the raw text, in order: specific before general
/// (山洪 before 洪, 雷雨大风 is a thunderstorm not a gale, 冰雹 before 冰冻).
const ZH_HAZARDS: &[(&str, &str)] = &[
    ("山洪", "flash_flood"),
    ("地质灾害", "geohazard"),
    ("滑坡", "geohazard"),
    ("泥石流", "geohazard"),
    ("崩塌", "geohazard"),
    ("内涝", "waterlogging"),
    ("渍涝", "waterlogging"),
    ("台风", "typhoon"),
    ("热带气旋", "typhoon"),
    ("暴雨", "rainstorm"),
    ("强降雨", "rainstorm"),
    ("雷暴", "thunderstorm"),
    ("雷电", "thunderstorm"),
    ("雷雨", "thunderstorm"),
    ("强对流", "thunderstorm"),
    ("龙卷", "thunderstorm"),
    ("冰雹", "hail"),
    ("风暴潮", "flood"),
    ("洪", "flood"),
    ("汛", "flood"),
    ("大风", "gale"),
    ("高温", "heat"),
    ("寒潮", "cold"),
    ("低温", "cold"),
    ("暴雪", "snow"),
    ("雪", "snow"),
    ("霜冻", "frost"),
    ("结冰", "ice"),
    ("冰冻", "ice"),
    ("积冰", "ice"),
    ("霾", "haze"),
    ("雾", "fog"),
    ("沙尘", "sandstorm"),
    ("干旱", "drought"),
    ("火险", "fire"),
    ("火灾", "fire"),
    ("森林火", "fire"),
    ("地震", "earthquake"),
    ("海啸", "tsunami"),
];

/// Lower-case patterns matched at a word start ("rain" must not hit "terrain"), in order.
const EN_HAZARDS: &[(&str, &str)] = &[
    ("flash flood", "flash_flood"),
    ("landslide", "geohazard"),
    ("mudslide", "geohazard"),
    ("debris flow", "geohazard"),
    ("storm surge", "flood"),
    ("flood", "flood"),
    ("hurricane", "typhoon"),
    ("typhoon", "typhoon"),
    ("tropical storm", "typhoon"),
    ("tropical cyclone", "typhoon"),
    ("cyclone", "typhoon"),
    ("tornado", "thunderstorm"),
    ("thunderstorm", "thunderstorm"),
    ("orage", "thunderstorm"),
    ("lightning", "thunderstorm"),
    ("hail", "hail"),
    ("tsunami", "tsunami"),
    ("earthquake", "earthquake"),
    ("wildfire", "fire"),
    ("bushfire", "fire"),
    ("red flag", "fire"),
    ("fire", "fire"),
    ("excessive heat", "heat"),
    ("heat", "heat"),
    ("wind chill", "cold"),
    ("extreme cold", "cold"),
    ("low temperature", "cold"),
    ("low-temperature", "cold"),
    ("high temperature", "heat"),
    ("cold", "cold"),
    ("frost", "frost"),
    ("freeze", "frost"),
    ("blizzard", "snow"),
    ("winter storm", "snow"),
    ("snow", "snow"),
    ("ice storm", "ice"),
    ("freezing rain", "ice"),
    ("ice", "ice"),
    ("heavy rain", "rainstorm"),
    ("rain", "rainstorm"),
    ("gale", "gale"),
    ("wind", "gale"),
    ("fog", "fog"),
    ("smoke", "haze"),
    ("haze", "haze"),
    ("air quality", "haze"),
    ("dust", "sandstorm"),
    ("sandstorm", "sandstorm"),
    ("drought", "drought"),
];

/// SAME (US/Canada EAS) event codes, used when the event text says nothing we know.
const SAME_HAZARDS: &[(&str, &str)] = &[
    ("FFW", "flash_flood"),
    ("FFA", "flash_flood"),
    ("FFS", "flash_flood"),
    ("FLW", "flood"),
    ("FLA", "flood"),
    ("FLS", "flood"),
    ("SVR", "thunderstorm"),
    ("SVA", "thunderstorm"),
    ("SVS", "thunderstorm"),
    ("TOR", "thunderstorm"),
    ("TOA", "thunderstorm"),
    ("HUW", "typhoon"),
    ("HUA", "typhoon"),
    ("TRW", "typhoon"),
    ("TRA", "typhoon"),
    ("HWW", "gale"),
    ("HWA", "gale"),
    ("BZW", "snow"),
    ("WSW", "snow"),
    ("WSA", "snow"),
    ("FRW", "fire"),
    ("EQW", "earthquake"),
    ("TSW", "tsunami"),
    ("TSA", "tsunami"),
];

/// Colour words, simplified and traditional, plus the 级 levels (Ⅰ = red … Ⅳ = blue).
/// Longer level spellings come first: "III级" contains "II级" and "I级". Chinese numerals
/// are left out: wind force "十二级" would read as level 二.
const ZH_COLOURS: &[(&str, Colour)] = &[
    ("红色", Colour::Red),
    ("紅色", Colour::Red),
    ("橙色", Colour::Orange),
    ("黄色", Colour::Yellow),
    ("黃色", Colour::Yellow),
    ("蓝色", Colour::Blue),
    ("藍色", Colour::Blue),
    ("Ⅳ级", Colour::Blue),
    ("IV级", Colour::Blue),
    ("Ⅲ级", Colour::Yellow),
    ("III级", Colour::Yellow),
    ("Ⅱ级", Colour::Orange),
    ("II级", Colour::Orange),
    ("Ⅰ级", Colour::Red),
    ("I级", Colour::Red),
];

/// Chinese levels (一级 = red … 四级 = blue) and 气象风险 wording. A level only counts when
/// the character before it is not a numeral: wind force 十二级 is not level 二.
const ZH_LEVELS: &[(&str, Colour)] = &[
    ("一级", Colour::Red),
    ("二级", Colour::Orange),
    ("三级", Colour::Yellow),
    ("四级", Colour::Blue),
    ("1级", Colour::Red),
    ("2级", Colour::Orange),
    ("3级", Colour::Yellow),
    ("4级", Colour::Blue),
    ("风险很高", Colour::Red),
    ("风险较高", Colour::Yellow),
    ("风险高", Colour::Orange),
    ("风险一般", Colour::Blue),
];
const NUMERALS: &str = "0123456789一二三四五六七八九十百零两";

/// MeteoAlarm / UK Met Office events start with their colour ("Yellow ice warning").
/// "Red Flag Warning" is an NWS fire-weather name, not a colour.
const EN_EVENT_COLOURS: &[(&str, Colour)] = &[
    ("red ", Colour::Red),
    ("amber ", Colour::Orange),
    ("orange ", Colour::Orange),
    ("yellow ", Colour::Yellow),
];

/// MeteoAlarm `awareness_level` numbers ("3; orange; Severe"); 1 (green) means no warning.
const AWARENESS_LEVELS: &[(&str, Option<Colour>)] = &[
    ("1", None),
    ("2", Some(Colour::Yellow)),
    ("3", Some(Colour::Orange)),
    ("4", Some(Colour::Red)),
];

/// MeteoAlarm `awareness_type` numbers ("10; Rain").
const AWARENESS_TYPES: &[(&str, &str)] = &[
    ("1", "gale"),
    ("2", "snow"),
    ("3", "thunderstorm"),
    ("4", "fog"),
    ("5", "heat"),
    ("6", "cold"),
    ("7", "flood"),
    ("8", "fire"),
    ("9", "snow"),
    ("10", "rainstorm"),
    ("12", "flood"),
    ("13", "flood"),
];

/// NWS P-VTEC phenomena codes (`/O.NEW.KLCH.HU.W.0009…/`).
const VTEC_HAZARDS: &[(&str, &str)] = &[
    ("FF", "flash_flood"),
    ("FA", "flood"),
    ("FL", "flood"),
    ("CF", "flood"),
    ("LS", "flood"),
    ("HU", "typhoon"),
    ("TR", "typhoon"),
    ("TY", "typhoon"),
    ("HI", "typhoon"),
    ("TI", "typhoon"),
    ("SS", "flood"),
    ("SV", "thunderstorm"),
    ("TO", "thunderstorm"),
    ("WS", "snow"),
    ("BZ", "snow"),
    ("WW", "snow"),
    ("LE", "snow"),
    ("IS", "ice"),
    ("ZR", "ice"),
    ("HW", "gale"),
    ("WI", "gale"),
    ("EW", "gale"),
    ("EH", "heat"),
    ("HT", "heat"),
    ("XH", "heat"),
    ("EC", "cold"),
    ("WC", "cold"),
    ("XC", "cold"),
    ("FZ", "frost"),
    ("FR", "frost"),
    ("HZ", "frost"),
    ("FG", "fog"),
    ("DU", "sandstorm"),
    ("DS", "sandstorm"),
    ("SM", "haze"),
    ("FW", "fire"),
    ("TS", "tsunami"),
];

/// P-VTEC significance letters; a statement (S) carries no colour.
const VTEC_SIGNIFICANCE: &[(&str, Colour)] =
    &[("W", Colour::Orange), ("A", Colour::Yellow), ("Y", Colour::Blue)];

/// Warning words, in parameter values (Canada `layer:EC-MSC-SMC:1.0:Alert_Type`, lower-case)
/// and at the end of NWS/Canadian event names; used only when severity says nothing.
const WARNING_WORDS: &[(&str, Colour)] = &[
    ("warning", Colour::Orange),
    ("watch", Colour::Yellow),
    ("advisory", Colour::Blue),
];

/// Parameters whose value is one of `WARNING_WORDS`.
const WARNING_WORD_PARAMS: &[&str] = &["alert_type"];

/// Canada/NAAD: an alert broadcast immediately (intrusive) is the top level.
const IMMEDIATE_PARAMS: &[&str] = &[
    "sorem:1.0:broadcast_immediately",
    "broadcast_intrusive",
    "wirelessimmediate",
];

/// Words in a colour parameter's value (MeteoAlarm: "2; yellow; Moderate"). Green and white
/// mean "no warning", so they decide "no colour" rather than falling back to severity.
const VALUE_COLOURS: &[(&str, Option<Colour>)] = &[
    ("red", Some(Colour::Red)),
    ("orange", Some(Colour::Orange)),
    ("amber", Some(Colour::Orange)),
    ("yellow", Some(Colour::Yellow)),
    ("blue", Some(Colour::Blue)),
    ("green", None),
    ("white", None),
    ("红", Some(Colour::Red)),
    ("紅", Some(Colour::Red)),
    ("橙", Some(Colour::Orange)),
    ("黄", Some(Colour::Yellow)),
    ("黃", Some(Colour::Yellow)),
    ("蓝", Some(Colour::Blue)),
    ("藍", Some(Colour::Blue)),
];

/// Parameter names (lower-cased substrings) that carry a colour.
const COLOUR_PARAMS: &[&str] = &["awareness_level", "colour", "color", "预警级别", "预警颜色"];

/// Parameter names whose value names a hazard (MeteoAlarm: "10; Rain", Canada's alert name).
const HAZARD_PARAMS: &[&str] = &["awareness_type", "alert_name"];

pub fn classify(
    event: &str,
    parameters: &[(String, String)],
    event_codes: &[(String, String)],
    severity: &str,
) -> Classification {
    Classification {
        colour: colour(event, parameters, severity),
        hazard: hazard(event, parameters, event_codes).to_string(),
    }
}

fn colour(event: &str, parameters: &[(String, String)], severity: &str) -> Option<Colour> {
    if let Some(c) = zh_colour(event).or_else(|| en_event_colour(event)) {
        return Some(c);
    }
    for (name, value) in parameters {
        let name = name.to_lowercase();
        if COLOUR_PARAMS.iter().any(|p| name.contains(p)) {
            let level = || {
                name.contains("awareness_level")
                    .then(|| lookup(AWARENESS_LEVELS, first_field(value)))
                    .flatten()
            };
            if let Some(decided) = zh_colour(value)
                .map(Some)
                .or_else(|| value_colour(value))
                .or_else(level)
            {
                return decided;
            }
        }
    }
    Colour::from_severity(severity).or_else(|| warning_word_colour(event, parameters))
}

/// Warning/watch/advisory conventions: VTEC significance, Canada's Alert_Type and SOREM
/// immediacy, then the last word of the event name.
fn warning_word_colour(event: &str, parameters: &[(String, String)]) -> Option<Colour> {
    for (name, value) in parameters {
        let name = name.to_lowercase();
        let value = value.trim().to_lowercase();
        if name == "vtec" {
            if let Some(c) = vtec(&value).and_then(|(_, sig)| lookup(VTEC_SIGNIFICANCE, &sig.to_uppercase()))
            {
                return Some(c);
            }
        } else if WARNING_WORD_PARAMS.iter().any(|p| name.contains(p)) {
            if let Some(c) = lookup(WARNING_WORDS, &value) {
                return Some(c);
            }
        } else if IMMEDIATE_PARAMS.iter().any(|p| name.contains(p)) && value == "yes" {
            return Some(Colour::Red);
        }
    }
    let last = event.trim().rsplit(' ').next().unwrap_or("").to_lowercase();
    lookup(WARNING_WORDS, &last)
}

/// `(phenomena, significance)` of the first P-VTEC string in a parameter value.
fn vtec(value: &str) -> Option<(String, String)> {
    value.split('/').find_map(|segment| {
        let fields: Vec<&str> = segment.trim().split('.').collect();
        match fields.as_slice() {
            [product, _action, _office, phen, sig, ..]
                if product.len() == 1 && phen.len() == 2 && sig.len() == 1 =>
            {
                Some((phen.to_uppercase(), sig.to_uppercase()))
            }
            _ => None,
        }
    })
}

fn lookup<T: Copy>(table: &[(&str, T)], key: &str) -> Option<T> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// "3; orange; Severe" → "3".
fn first_field(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

fn zh_colour(text: &str) -> Option<Colour> {
    if let Some((_, c)) = ZH_COLOURS.iter().find(|(pattern, _)| text.contains(pattern)) {
        return Some(*c);
    }
    ZH_LEVELS
        .iter()
        .find(|(pattern, _)| {
            text.match_indices(pattern).any(|(i, _)| {
                text[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !NUMERALS.contains(c))
            })
        })
        .map(|(_, c)| *c)
}

fn en_event_colour(event: &str) -> Option<Colour> {
    let lower = event.trim_start().to_lowercase();
    if lower.starts_with("red flag") {
        return None;
    }
    EN_EVENT_COLOURS
        .iter()
        .find(|(w, _)| lower.starts_with(w))
        .map(|(_, c)| *c)
}

/// `Some(decision)` when the value names a colour (or explicitly none), else `None`.
fn value_colour(value: &str) -> Option<Option<Colour>> {
    let lower = value.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
    VALUE_COLOURS
        .iter()
        .find(|(w, _)| {
            if w.is_ascii() {
                words.contains(w)
            } else {
                lower.contains(w)
            }
        })
        .map(|(_, c)| *c)
}

fn hazard(event: &str, parameters: &[(String, String)], event_codes: &[(String, String)]) -> &'static str {
    let from_codes = || {
        event_codes.iter().find_map(|(name, value)| {
            if name.trim().eq_ignore_ascii_case("SAME") {
                SAME_HAZARDS
                    .iter()
                    .find(|(code, _)| value.trim().eq_ignore_ascii_case(code))
                    .map(|(_, h)| *h)
            } else {
                text_hazard(value)
            }
        })
    };
    let from_params = || {
        parameters.iter().find_map(|(name, value)| {
            let name = name.to_lowercase();
            if name == "vtec" {
                return vtec(value).and_then(|(phen, _)| lookup(VTEC_HAZARDS, &phen));
            }
            if !HAZARD_PARAMS.iter().any(|p| name.contains(p)) {
                return None;
            }
            let numbered = name
                .contains("awareness_type")
                .then(|| lookup(AWARENESS_TYPES, first_field(value)));
            numbered.flatten().or_else(|| text_hazard(value))
        })
    };
    text_hazard(event)
        .or_else(from_codes)
        .or_else(from_params)
        .unwrap_or("other")
}

fn text_hazard(text: &str) -> Option<&'static str> {
    if let Some((_, h)) = ZH_HAZARDS.iter().find(|(p, _)| text.contains(p)) {
        return Some(h);
    }
    let lower = text.to_lowercase();
    EN_HAZARDS
        .iter()
        .find(|(p, _)| at_word_start(&lower, p))
        .map(|(_, h)| *h)
}

fn at_word_start(text: &str, pattern: &str) -> bool {
    text.match_indices(pattern)
        .any(|(i, _)| text[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(e: &str) -> Classification {
        classify(e, &[], &[], "Unknown")
    }

    #[test]
    fn chinese_signal_names() {
        let cases = [
            ("暴雨红色预警信号", Some(Colour::Red), "rainstorm"),
            ("暴雨红色预警", Some(Colour::Red), "rainstorm"),
            ("台风橙色预警", Some(Colour::Orange), "typhoon"),
            ("暴雨蓝色预警", Some(Colour::Blue), "rainstorm"),
            ("高温黄色预警", Some(Colour::Yellow), "heat"),
            ("地质灾害气象风险预警", None, "geohazard"),
            ("山洪灾害气象预警", None, "flash_flood"),
            ("洪水蓝色预警", Some(Colour::Blue), "flood"),
            ("城市内涝黄色预警", Some(Colour::Yellow), "waterlogging"),
            ("雷雨大风黄色预警信号", Some(Colour::Yellow), "thunderstorm"),
            ("冰雹橙色预警信号", Some(Colour::Orange), "hail"),
            ("道路结冰橙色预警信号", Some(Colour::Orange), "ice"),
            ("霾黄色预警信号", Some(Colour::Yellow), "haze"),
            ("大雾红色预警信号", Some(Colour::Red), "fog"),
            ("防汛Ⅲ级应急响应", Some(Colour::Yellow), "flood"),
            ("水庫洩洪", None, "flood"),
            ("地质灾害气象风险预警 红色", Some(Colour::Red), "geohazard"),
            ("地质灾害气象风险一级预警", Some(Colour::Red), "geohazard"),
            (
                "地质灾害气象风险预警（风险较高）",
                Some(Colour::Yellow),
                "geohazard",
            ),
            ("山洪灾害气象风险预警二级", Some(Colour::Orange), "flash_flood"),
            ("暴雨四级预警", Some(Colour::Blue), "rainstorm"),
            // Wind force is not a level.
            ("大风十二级", None, "gale"),
            ("台风14级", None, "typhoon"),
        ];
        for (e, colour, hazard) in cases {
            assert_eq!(
                event(e),
                Classification {
                    colour,
                    hazard: hazard.into()
                },
                "{e}"
            );
        }
    }

    #[test]
    fn english_events() {
        for (e, h) in [
            ("Flash Flood Watch", "flash_flood"),
            ("Flood Warning", "flood"),
            ("Severe Thunderstorm Warning", "thunderstorm"),
            ("Tornado Warning", "thunderstorm"),
            ("Hurricane Warning", "typhoon"),
            ("Excessive Heat Warning", "heat"),
            ("Earthquake", "earthquake"),
            ("Tsunami Warning", "tsunami"),
            ("Fire", "fire"),
            ("Yellow Low Temperature/Ice", "cold"),
            ("Yellow ice warning", "ice"),
            ("Terrain notice", "other"),
            ("Child Abduction Emergency", "other"),
        ] {
            assert_eq!(event(e).hazard, h, "{e}");
        }
    }

    #[test]
    fn colour_sources_in_order() {
        let p = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        // MeteoAlarm parameter beats severity.
        let c = classify(
            "Rain",
            &p("awareness_level", "2; yellow; Moderate"),
            &[],
            "Severe",
        );
        assert_eq!(c.colour, Some(Colour::Yellow));
        assert_eq!(c.hazard, "rainstorm");
        // The event's own colour beats a parameter.
        let c = classify("暴雨红色预警", &p("预警级别", "蓝色"), &[], "Minor");
        assert_eq!(c.colour, Some(Colour::Red));
        assert_eq!(
            classify("x", &p("预警级别", "橙色"), &[], "").colour,
            Some(Colour::Orange)
        );
        assert_eq!(
            classify("x", &p("alert_color", "紅色"), &[], "").colour,
            Some(Colour::Red)
        );
        assert_eq!(
            classify("x", &p("awareness_level", "1; green; Minor"), &[], "Minor").colour,
            None
        );
        // Severity convention last.
        assert_eq!(event("Storm").colour, None);
        assert_eq!(classify("Storm", &[], &[], "Extreme").colour, Some(Colour::Red));
        assert_eq!(classify("Storm", &[], &[], "Minor").colour, Some(Colour::Blue));
    }

    #[test]
    fn foreign_conventions() {
        const VTEC: &str = "/O.NEW.KLCH.HU.A.0009.200826T0000Z-000000T0000Z/";
        // (event, parameter, severity) → (colour, hazard)
        type Case<'a> = (&'a str, (&'a str, &'a str), &'a str, Option<Colour>, &'a str);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // MeteoAlarm: numbers alone are enough.
            ("Warning", ("awareness_level", "4; ; "), "Unknown", Some(Colour::Red), "other"),
            ("Warning", ("awareness_type", "10; "), "Unknown", Some(Colour::Orange), "rainstorm"),
            // UK/MeteoAlarm names lead with the colour; NWS "Red Flag" is not a colour.
            ("Amber wind warning", ("", ""), "Unknown", Some(Colour::Orange), "gale"),
            ("Red Flag Warning", ("", ""), "Unknown", Some(Colour::Orange), "fire"),
            // NWS VTEC: phenomena → hazard; significance → colour only when severity is Unknown.
            ("Statement", ("VTEC", VTEC), "Unknown", Some(Colour::Yellow), "typhoon"),
            ("Statement", ("VTEC", VTEC), "Extreme", Some(Colour::Red), "typhoon"),
            // Canada.
            ("x", ("layer:EC-MSC-SMC:1.0:Alert_Type", "advisory"), "Unknown", Some(Colour::Blue), "other"),
            ("x", ("layer:SOREM:1.0:Broadcast_Immediately", "Yes"), "Unknown", Some(Colour::Red), "other"),
            ("x", ("layer:SOREM:1.0:Broadcast_Immediately", "No"), "Unknown", None, "other"),
            ("x", ("layer:EC-MSC-SMC:1.0:Alert_Name", "rainfall warning"), "Unknown", None, "rainstorm"),
            // Chinese levels in a parameter.
            ("x", ("预警级别", "Ⅱ级"), "", Some(Colour::Orange), "other"),
            ("x", ("预警级别", "一级"), "", Some(Colour::Red), "other"),
        ];
        for &(event, (name, value), severity, colour, hazard) in cases {
            let params = vec![(name.to_string(), value.to_string())];
            let c = classify(event, &params, &[], severity);
            assert_eq!(
                (c.colour, c.hazard.as_str()),
                (colour, hazard),
                "{event} {name}={value}"
            );
        }
    }

    #[test]
    fn hazard_falls_back_to_codes_and_parameters() {
        let same = vec![("SAME".to_string(), "FFA".to_string())];
        assert_eq!(classify("Watch", &[], &same, "").hazard, "flash_flood");
        let meteo = vec![("awareness_type".to_string(), "1; Wind".to_string())];
        assert_eq!(classify("Warning", &meteo, &[], "").hazard, "gale");
        assert_eq!(classify("", &[], &[], "").hazard, "other");
    }
}
