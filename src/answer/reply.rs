//! SMS reply grammar (SPEC §7): reads an inbound SMS as an answer, an evacuation count
//! and/or a short incident code.
//!
//! Owns only the wording rules. It must not look anything up (which call-out a reply
//! belongs to is the caller's job) and must never fail loudly: text it does not
//! understand yields `None`, and the caller keeps it as an unparsed inbound message.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub ack: bool,
    pub moved: Option<i64>,
    pub threatened: Option<i64>,
    pub code: Option<String>,
}

/// Counts above this are typos or junk, not people.
const MAX_COUNT: i64 = 10_000_000;

/// Words that answer a call-out wherever they stand in the reply.
const ANSWER_CJK: &[&str] = &["收到", "确认", "明白", "知道了"];
/// ASCII answer words; they must be whole words ("book" is not "ok").
const ANSWER_ASCII: &[&str] = &["ok", "okay", "ack", "acked", "acknowledged", "received"];
/// Keywords followed by the number of people moved / threatened. ASCII ones may carry
/// a suffix ("evacuated", "threatened").
const MOVED_WORDS: &[&str] = &["转移", "撤离", "evac", "moved"];
const THREAT_WORDS: &[&str] = &["威胁", "threat"];
/// Allowed between a keyword and its number: "已转移群众共120人", "受威胁人数：300".
const FILLERS: &[&str] = &["了", "群众", "人员", "人数", "人口", "共", "约", "计", ":", "="];
/// A keyword right after one of these is negated: "未收到", "没有转移120人" is no answer.
const NEG_CJK: &[&str] = &["不", "没", "未", "无", "非", "没有"];
const NEG_ASCII: &[&str] = &["not", "no", "never"];

/// Parses one SMS reply. `None` means "not understood"; every `Some` has `ack == true`
/// (an evacuation report is an answer too).
pub fn parse(text: &str) -> Option<Reply> {
    let norm = normalise(text);
    // The code comes out first so its digits are never read as "1" or as a count.
    let (code, rest) = take_code(&norm);
    let moved = find_count(&rest, MOVED_WORDS);
    let threatened = find_count(&rest, THREAT_WORDS);
    let ack = moved.is_some() || is_bare_one(&rest) || has_answer_word(&rest);
    ack.then_some(Reply {
        ack,
        moved,
        threatened,
        code,
    })
}

/// Full-width ASCII → ASCII, ideographic space → space, then lowercase.
fn normalise(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// Finds the first token "letter + 1–4 digits" standing on its own (CJK text and
/// punctuation count as boundaries) and returns it uppercased plus the text without it.
fn take_code(s: &str) -> (Option<String>, String) {
    for (i, c) in s.char_indices() {
        if !c.is_ascii_lowercase() || s[..i].chars().next_back().is_some_and(is_word_char) {
            continue;
        }
        let tail = &s[i + 1..];
        let n = tail.len() - tail.trim_start_matches(|d: char| d.is_ascii_digit()).len();
        let end = i + 1 + n;
        if (1..=4).contains(&n) && !s[end..].starts_with(is_word_char) {
            let code = s[i..end].to_ascii_uppercase();
            return (Some(code), format!("{} {}", &s[..i], &s[end..]));
        }
    }
    (None, s.to_string())
}

/// "1" counts only as the whole reply, so "转移 120" or "12" are not read as answers.
fn is_bare_one(s: &str) -> bool {
    s.trim_matches(|c: char| !c.is_alphanumeric()) == "1"
}

fn negated(before: &str) -> bool {
    let b = before.trim_end();
    NEG_CJK.iter().any(|n| b.ends_with(n))
        || NEG_ASCII
            .iter()
            .any(|n| b.strip_suffix(n).is_some_and(|p| !p.ends_with(is_word_char)))
}

fn has_answer_word(s: &str) -> bool {
    let cjk = ANSWER_CJK
        .iter()
        .any(|w| s.match_indices(w).any(|(i, _)| !negated(&s[..i])));
    let ascii = ANSWER_ASCII
        .iter()
        .any(|w| ascii_word_at(s, w).any(|i| !negated(&s[..i])));
    // 好 is too common inside other words ("好多人被困", "不好") to match anywhere:
    // it counts only as the start of a clause: "好", "好的，马上去".
    let hao = s
        .split(|c: char| !c.is_alphanumeric())
        .any(|seg| seg == "好" || seg == "好了" || seg.starts_with("好的"));
    cjk || ascii || hao
}

/// Byte offsets where the ASCII word `w` occurs as a whole word.
fn ascii_word_at<'a>(s: &'a str, w: &'a str) -> impl Iterator<Item = usize> + 'a {
    s.match_indices(w).filter_map(move |(i, _)| {
        let before_ok = !s[..i].ends_with(is_word_char);
        let after_ok = !s[i + w.len()..].starts_with(is_word_char);
        (before_ok && after_ok).then_some(i)
    })
}

/// The first count following any of `words` (not negated), e.g. "转移120" → 120.
fn find_count(s: &str, words: &[&str]) -> Option<i64> {
    for w in words {
        for (i, _) in s.match_indices(w) {
            if negated(&s[..i]) || (w.is_ascii() && s[..i].ends_with(is_word_char)) {
                continue;
            }
            let mut rest = &s[i + w.len()..];
            if w.is_ascii() {
                rest = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            }
            if let Some(n) = read_count(skip_fillers(rest)) {
                return Some(n);
            }
        }
    }
    None
}

fn skip_fillers(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        match FILLERS.iter().find_map(|f| t.strip_prefix(f)) {
            Some(r) => s = r,
            None => return t,
        }
    }
}

fn read_count(s: &str) -> Option<i64> {
    let n = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if n == 0 {
        return None;
    }
    // "12.5" is not a head count.
    let after = &s[n..];
    if after.starts_with('.') && after[1..].starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let v: i64 = s[..n].parse().ok()?; // overflow → not a count
    (v <= MAX_COUNT).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack() -> Reply {
        Reply {
            ack: true,
            moved: None,
            threatened: None,
            code: None,
        }
    }
    fn moved(m: i64, t: Option<i64>) -> Reply {
        Reply {
            moved: Some(m),
            threatened: t,
            ..ack()
        }
    }
    fn coded(mut r: Reply, c: &str) -> Reply {
        r.code = Some(c.into());
        r
    }

    #[test]
    fn spec_answer_words() {
        for t in [
            "1",
            "收到",
            "已收到",
            "确认",
            "好",
            "OK",
            "ok",
            "ack",
            "received",
            "好的",
            "明白",
            "Received",
            "ACK",
        ] {
            assert_eq!(parse(t), Some(ack()), "{t}");
        }
    }

    #[test]
    fn spec_evacuation() {
        assert_eq!(parse("转移 120"), Some(moved(120, None)));
        assert_eq!(parse("已转移120人"), Some(moved(120, None)));
        assert_eq!(parse("转移120人 受威胁300"), Some(moved(120, Some(300))));
        assert_eq!(parse("evac 120"), Some(moved(120, None)));
        assert_eq!(parse("evacuated 120"), Some(moved(120, None)));
        assert_eq!(parse("EVAC: 7"), Some(moved(7, None)));
        assert_eq!(
            parse("已转移群众共120人，受威胁人数：300"),
            Some(moved(120, Some(300)))
        );
        assert_eq!(parse("转移0人"), Some(moved(0, None)));
    }

    #[test]
    fn full_width() {
        assert_eq!(parse("１"), Some(ack()));
        assert_eq!(parse("ＯＫ"), Some(ack()));
        assert_eq!(parse("ｏｋ！"), Some(ack()));
        assert_eq!(parse("转移　１２０"), Some(moved(120, None)));
        assert_eq!(parse("转移：１２０人"), Some(moved(120, None)));
        assert_eq!(parse("１　Ａ３７"), Some(coded(ack(), "A37")));
    }

    #[test]
    fn surrounding_text() {
        assert_eq!(parse("收到，马上组织"), Some(ack()));
        assert_eq!(parse("好的，马上去"), Some(ack()));
        assert_eq!(parse("  ok, on my way"), Some(ack()));
        assert_eq!(parse("收到！正在转移"), Some(ack()));
        assert_eq!(parse("1。"), Some(ack()));
        assert_eq!(parse("报告：已转移120人，其余在家"), Some(moved(120, None)));
    }

    #[test]
    fn codes() {
        assert_eq!(parse("1 A37"), Some(coded(ack(), "A37")));
        assert_eq!(parse("a37 1"), Some(coded(ack(), "A37")));
        assert_eq!(parse("收到A37"), Some(coded(ack(), "A37")));
        assert_eq!(parse("B2 转移 15"), Some(coded(moved(15, None), "B2")));
        assert_eq!(
            parse("转移120人 受威胁300 c1234"),
            Some(coded(moved(120, Some(300)), "C1234"))
        );
        // first code wins; too many digits or glued to a word is not a code
        assert_eq!(parse("ok x1 y2").and_then(|r| r.code), Some("X1".into()));
        assert_eq!(parse("ok a12345").and_then(|r| r.code), None);
        assert_eq!(parse("ok ab12").and_then(|r| r.code), None);
        assert_eq!(parse("evac120").and_then(|r| r.code), None);
        // a code alone is not an answer, and "1" plus junk is not either
        assert_eq!(parse("A37"), None);
        assert_eq!(parse("1 2"), None);
    }

    #[test]
    fn negatives() {
        for t in [
            "明天再说",
            "",
            "   ",
            "12",
            "转移",
            "转移 abc",
            "转移 -5",
            "book",
            "back",
            "未收到",
            "没有收到",
            "不好",
            "好多人被困",
            "not ok",
            "受威胁300",
            "转移 12.5",
            "转移 99999999",
            "转移 999999999999999999999999",
            "还有120人未转移",
        ] {
            assert_eq!(parse(t), None, "{t:?}");
        }
        // an absurd count does not cancel a genuine answer
        assert_eq!(parse("收到 转移 99999999"), Some(ack()));
        assert_eq!(parse("收到 转移 10000000"), Some(moved(10_000_000, None)));
    }

    #[test]
    fn junk_never_panics() {
        let alphabet: Vec<char> =
            "1aZ.:：。 　转移收到好威胁evac受人0９Ｏｋ-ı\u{130}\u{301}😀\u{FF5E}\u{FF01}"
                .chars()
                .collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = (seed >> 58) as usize;
            let s: String = (0..len)
                .map(|k| {
                    let r = seed.rotate_left(k as u32 * 7) >> 40;
                    alphabet[r as usize % alphabet.len()]
                })
                .collect();
            if let Some(r) = parse(&s) {
                assert!(r.ack);
            }
        }
    }
}

#[cfg(test)]
mod prop_tests {
    //! Property tests of the grammar (issue 12 §5): whatever surrounds an answer word or a
    //! `转移 N`, in whatever width or case, it reads the same; nothing panics; counts out of
    //! range are refused.
    use proptest::prelude::*;

    use super::*;

    /// Full-width forms of the ASCII in `s` (what a Chinese IME sends), ideographic spaces.
    fn full_width(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                ' ' => '\u{3000}',
                '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
                _ => c,
            })
            .collect()
    }

    /// Words around an answer that are none of the grammar's own: no answer word, keyword,
    /// negation, 好, code-like token or digit can be made of these.
    fn filler() -> impl Strategy<Value = String> {
        "[马上组织前往现场请大家注意安全村里已经 bcdfghjm]{0,12}"
    }

    fn answer_word() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "收到",
            "确认",
            "明白",
            "知道了",
            "ok",
            "OK",
            "Ok",
            "ack",
            "received",
            "RECEIVED",
        ])
    }

    fn sep() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["，", ",", "。", " ", "！", "!", "；", "\n"])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_and_every_reading_is_an_answer(s in "\\PC{0,60}") {
            if let Some(r) = parse(&s) {
                prop_assert!(r.ack);
                prop_assert!(r.moved.is_none_or(|m| (0..=MAX_COUNT).contains(&m)));
                prop_assert!(r.threatened.is_none_or(|m| (0..=MAX_COUNT).contains(&m)));
            }
        }

        #[test]
        fn an_answer_word_in_any_surroundings_width_or_case(
            before in filler(), s1 in sep(), w in answer_word(), s2 in sep(), after in filler(),
        ) {
            let text = format!("{before}{s1}{w}{s2}{after}");
            let r = parse(&text);
            prop_assert_eq!(r.clone(), Some(Reply { ack: true, moved: None, threatened: None, code: None }), "{:?}", text);
            prop_assert_eq!(parse(&full_width(&text)), r.clone(), "full width of {:?}", text);
            prop_assert_eq!(parse(&text.to_uppercase()), r.clone(), "upper case of {:?}", text);
            prop_assert_eq!(parse(&text.to_lowercase()), r, "lower case of {:?}", text);
        }

        #[test]
        fn an_evacuation_count_in_any_surroundings_width_or_case(
            before in filler(), s1 in sep(), n in 0i64..=MAX_COUNT, unit in prop::sample::select(vec!["", "人", " 人"]),
            kw in prop::sample::select(vec!["转移", "撤离", "已转移", "转移了", "evac", "EVACUATED", "moved"]),
            gap in prop::sample::select(vec!["", " ", "：", ":", "　", "共"]), s2 in sep(), after in filler(),
        ) {
            let text = format!("{before}{s1}{kw}{gap}{n}{unit}{s2}{after}");
            let r = parse(&text);
            prop_assert_eq!(r.as_ref().and_then(|r| r.moved), Some(n), "{:?}", text);
            prop_assert_eq!(parse(&full_width(&text)), r.clone(), "full width of {:?}", text);
            prop_assert_eq!(parse(&text.to_uppercase()), r, "upper case of {:?}", text);
        }

        #[test]
        fn counts_out_of_range_are_refused(n in (MAX_COUNT + 1)..i64::MAX, big in "[1-9][0-9]{19,30}") {
            prop_assert_eq!(parse(&format!("转移 {n}")), None);
            prop_assert_eq!(parse(&format!("转移 {big}")), None);
            // With an answer word the answer stands; the count does not.
            let r = parse(&format!("收到 转移 {n}")).unwrap();
            prop_assert_eq!(r.moved, None);
            prop_assert_eq!(parse(&full_width(&format!("转移 {n}"))), None);
        }

        #[test]
        fn a_code_reads_the_same_in_any_width_or_case(
            letter in "[a-zA-Z]", digits in "[0-9]{1,4}", w in answer_word(), s in sep(),
        ) {
            let text = format!("{w}{s}{letter}{digits}");
            let code = format!("{}{digits}", letter.to_ascii_uppercase());
            let r = parse(&text).unwrap();
            prop_assert_eq!(r.code.as_deref(), Some(code.as_str()), "{:?}", text);
            prop_assert_eq!(parse(&full_width(&text)).unwrap().code, Some(code));
        }
    }
}
