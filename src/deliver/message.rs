//! The words people receive (pure): SMS, e-mail and stand-down texts rendered with minijinja.
//! Chinese first. The first SMS segment (67 characters when concatenated) carries what a
//! person needs to act and answer: warning, place, instruction, "reply 1" and the incident
//! code; the answer link follows (a reply of "1" needs no link), then the details.

pub use crate::domain::Facts;
use minijinja::{context, Environment};

use crate::store::jobs::Notice;

const SMS: &str = "{{ signature }}{% if drill %}【演练】{% endif %}{% if change %}【升级】{{ change }}{% else %}{{ event }}{% endif %}：{{ place }}{{ action }}，回1确认（码{{ code }}）{{ link }} {% if evacuation %}转移后回“转移+人数”。{% endif %}{{ headline }}";
const KNOCK: &str = "{{ signature }}{% if drill %}【演练】{% endif %}【上门叫应】{{ event }}：{{ place }}{{ knock }}，请立即上门叫应，回1已叫应、2不在家、3已转移（码{{ code }}）{{ link }}";
const ROUND: &str = "{{ signature }}{% if drill %}【演练】{% endif %}【调度】{{ event }}第{{ round }}轮：请报告{{ place }}雨情、已转移人数和险情，回“收到”或“转移+人数”（码{{ code }}）{{ link }}";
const STANDDOWN: &str =
    "{{ signature }}{% if drill %}【演练】{% endif %}{{ event }}解除：{{ place }}警报解除，码{{ code }}。";
const DOWNGRADE: &str = "{{ signature }}{% if drill %}【演练】{% endif %}【降级】{{ change }}：{{ place }}预警已调整为{{ event }}，请按新级别防御，无需回复（码{{ code }}）。";
const EMAIL_SUBJECT: &str =
    "{% if drill %}【演练】{% endif %}{% if change %}【升级】{{ change }}{% else %}{{ event }}{% endif %}：{{ place }} 请确认（码{{ code }}）";
const EMAIL_TEXT: &str = "{% if drill %}【演练】{% endif %}{% if change %}【升级】{{ change }} {% endif %}{{ headline }}\n\n地点：{{ place }}\n要求：{{ instruction }}\n\n请立即确认收到：{{ link }}\n或回复短信“收到”（码{{ code }}）。\n\n{{ description }}\n";
const EMAIL_HTML: &str = r#"<!doctype html><html lang="zh-CN"><meta charset="utf-8"><body style="font-family:sans-serif">
{% if drill %}<p><strong>【演练】</strong></p>{% endif %}{% if change %}<p><strong>【升级】{{ change }}</strong></p>{% endif %}<h2>{{ headline }}</h2>
<p><b>地点：</b>{{ place }}</p><p><b>要求：</b>{{ instruction }}</p>
<p><a href="{{ link }}" style="font-size:1.3em">点此确认收到 / Acknowledge</a>（码 {{ code }}）</p>
<p>{{ description }}</p></body></html>"#;

/// The place of a call-out several places wait on (escalations that joined one person's call-out):
/// 「3处未应答：松岭村、旺坡村、木棉村…」, the list cut so the first SMS segment still carries the
/// instruction and the code.
pub fn waiting_places(places: &[String]) -> String {
    const LIST: usize = 24;
    let mut list = String::new();
    for (i, p) in places.iter().enumerate() {
        let sep = if i == 0 { "" } else { "、" };
        if list.chars().count() + sep.chars().count() + p.chars().count() > LIST {
            list.push('…');
            break;
        }
        list.push_str(sep);
        list.push_str(p);
    }
    format!("{}处未应答：{list}", places.len())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// The built-in templates, compiled once for the process.
pub fn templates() -> &'static Templates {
    static T: std::sync::LazyLock<Templates> = std::sync::LazyLock::new(Templates::default);
    &T
}

pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = Environment::new();
        for (name, src) in [
            ("sms.txt", SMS),
            ("knock.txt", KNOCK),
            ("round.txt", ROUND),
            ("standdown.txt", STANDDOWN),
            ("downgrade.txt", DOWNGRADE),
            ("email_subject.txt", EMAIL_SUBJECT),
            ("email.txt", EMAIL_TEXT),
            ("email.html", EMAIL_HTML),
        ] {
            // The built-in templates are constants checked by the tests below.
            env.add_template(name, src).expect("built-in template");
        }
        Templates { env }
    }
}

impl Templates {
    fn render(&self, name: &str, f: &Facts) -> String {
        let action = if f.evacuation {
            "立即组织转移"
        } else {
            "请做好防御"
        };
        self.env
            .get_template(name)
            .and_then(|t| t.render(context! { action, ..minijinja::Value::from_serialize(f) }))
            .unwrap_or_else(|e| {
                format!(
                    "{}{}：{} {} 码{} ({e})",
                    f.signature, f.event, f.place, f.link, f.code
                )
            })
    }

    /// A call-out: SMS/voice text, or an e-mail with subject and HTML.
    pub fn callout(&self, f: &Facts) -> Rendered {
        Rendered {
            subject: self.render("email_subject.txt", f),
            text: self.render(
                match (&f.knock, f.round) {
                    (Some(_), _) => "knock.txt",
                    (None, Some(_)) => "round.txt",
                    _ => "sms.txt",
                },
                f,
            ),
            html: None,
        }
    }

    pub fn email(&self, f: &Facts) -> Rendered {
        Rendered {
            subject: self.render("email_subject.txt", f),
            text: self.render("email.txt", f),
            html: Some(self.render("email.html", f)),
        }
    }

    /// An information notice (stand-down, or a downgrade saying what changed): one short
    /// text, no answer asked.
    pub fn notice(&self, f: &Facts, notice: &Notice) -> Rendered {
        let (name, change) = match notice {
            Notice::Downgrade { change } => ("downgrade.txt", Some(change.clone())),
            Notice::Standdown => ("standdown.txt", None),
        };
        let text = self.render(
            name,
            &Facts {
                change: change.or_else(|| Some(f.event.clone())),
                knock: None,
                round: None,
                ..f.clone()
            },
        );
        Rendered {
            subject: text.clone(),
            text,
            html: None,
        }
    }

    pub fn standdown(&self, f: &Facts) -> Rendered {
        self.notice(f, &Notice::Standdown)
    }

    /// What one job sends: a notice, an e-mail or an SMS/voice call-out.
    /// `custom` is the policy's own call-out template (`[policy.templates] zh`), used for the
    /// first SMS/voice text of a call-out; upgrades, notices and e-mail keep the built-in ones.
    pub fn for_job(&self, f: &Facts, email: bool, notice: Option<&Notice>, custom: Option<&str>) -> Rendered {
        match notice {
            Some(notice) => self.notice(f, notice),
            None if email => self.email(f),
            None => match custom.filter(|_| f.change.is_none() && f.knock.is_none() && f.round.is_none()) {
                Some(src) => self.custom(src, f),
                None => self.callout(f),
            },
        }
    }

    /// A policy's template; a drill is marked even when the template forgets to.
    fn custom(&self, src: &str, f: &Facts) -> Rendered {
        let mut r = self.callout(f);
        if let Ok(text) = self.env.render_str(src, minijinja::Value::from_serialize(f)) {
            r.text = if f.drill && !text.contains("演练") {
                format!("【演练】{text}")
            } else {
                text
            };
        }
        r
    }
}

/// Chinese SMS is UCS-2: 70 characters in one segment, 67 per part when concatenated.
pub fn sms_segments(text: &str) -> usize {
    let n = text.chars().count();
    if n <= 70 {
        1
    } else {
        n.div_ceil(67)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            signature: "【防汛叫应】".into(),
            event: "暴雨红色预警".into(),
            headline: "玉林市气象台发布暴雨红色预警信号".into(),
            description: "过去3小时降雨100毫米以上".into(),
            instruction: "立即转移危险区域群众".into(),
            place: "容县六王镇大坡村".into(),
            link: "https://jy.gx.cn/a/2s.1x9a7k.AbCdEfGhIjKl".into(),
            code: "A37".into(),
            drill: false,
            evacuation: true,
            change: None,
            knock: None,
            round: None,
        }
    }

    #[test]
    fn places_waiting_on_one_person_are_counted_and_cut() {
        let places: Vec<String> = [
            "松岭村",
            "旺坡村",
            "木棉村",
            "大坡村",
            "新塘村",
            "石头村",
            "六王村",
            "黎村",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(waiting_places(&places[..2]), "2处未应答：松岭村、旺坡村");
        let all = waiting_places(&places);
        assert!(all.starts_with("8处未应答：松岭村、旺坡村、木棉村"), "{all}");
        assert!(all.ends_with('…') && all.chars().count() <= 6 + 25, "{all}");
    }

    #[test]
    fn first_segment_holds_warning_place_link_and_code() {
        let t = Templates::default();
        let text = t.callout(&facts()).text;
        let first: String = text.chars().take(67).collect();
        for needle in [
            "【防汛叫应】",
            "暴雨红色预警",
            "容县六王镇大坡村",
            "立即组织转移",
            "回1确认",
            "A37",
        ] {
            assert!(first.contains(needle), "{needle} not in first segment: {first}");
        }
        assert!(
            text.contains("https://jy.gx.cn/a/2s.1x9a7k.AbCdEfGhIjKl "),
            "{text}"
        );
        assert!(sms_segments(&text) >= 2);
    }

    #[test]
    fn drills_say_so_everywhere() {
        let t = Templates::default();
        let mut f = facts();
        f.drill = true;
        assert!(t.callout(&f).text.contains("【演练】"));
        assert!(t.email(&f).subject.starts_with("【演练】"));
        assert!(t.standdown(&f).text.contains("解除"));
        // minijinja escapes "/" in HTML attributes; browsers read it back.
        let html = t.email(&f).html.unwrap();
        assert!(
            html.contains("https:&#x2f;&#x2f;jy.gx.cn&#x2f;a&#x2f;2s.1x9a7k.AbCdEfGhIjKl"),
            "{html}"
        );
    }

    #[test]
    fn upgrades_say_so_in_the_first_segment_and_downgrades_ask_nothing() {
        let t = Templates::default();
        let mut f = facts();
        f.drill = true;
        f.change = Some("暴雨橙色→红色预警".into());
        let text = t.callout(&f).text;
        let first: String = text.chars().take(67).collect();
        for needle in [
            "【演练】",
            "【升级】暴雨橙色→红色预警",
            "容县六王镇大坡村",
            "回1确认",
            "A37",
        ] {
            assert!(first.contains(needle), "{needle} not in first segment: {first}");
        }
        assert!(t.email(&f).subject.contains("【升级】"));
        let mut f = facts();
        f.event = "暴雨橙色预警".into();
        let down = t.notice(
            &f,
            &Notice::Downgrade {
                change: "暴雨红色→橙色预警".into(),
            },
        );
        assert!(down.text.contains("【降级】暴雨红色→橙色预警"), "{}", down.text);
        assert!(down.text.contains("无需回复") && !down.text.contains("回1确认"));
        assert_eq!(sms_segments(&down.text), 1, "{}", down.text);
        let stand = t.for_job(&f, false, Some(&Notice::Standdown), None);
        assert!(
            stand.text.contains("解除") && !stand.text.contains("【升级】"),
            "{}",
            stand.text
        );
    }

    #[test]
    fn a_policy_template_writes_the_call_out_but_not_upgrades() {
        let t = Templates::default();
        let mut f = facts();
        let own = "{{ place }}：{{ event }}，速回1。{{ link }}";
        let text = t.for_job(&f, false, None, Some(own)).text;
        assert!(
            text.starts_with("容县六王镇大坡村：") && text.contains(&f.link),
            "{text}"
        );
        f.drill = true;
        assert!(t.for_job(&f, false, None, Some(own)).text.starts_with("【演练】"));
        f.change = Some("暴雨橙色→红色预警".into());
        let up = t.for_job(&f, false, None, Some(own)).text;
        assert!(up.contains("【升级】"), "{up}");
        assert_eq!(t.for_job(&f, true, None, Some(own)).text, t.email(&f).text);
    }

    #[test]
    fn segments() {
        assert_eq!(sms_segments(&"字".repeat(70)), 1);
        assert_eq!(sms_segments(&"字".repeat(71)), 2);
        assert_eq!(sms_segments(&"字".repeat(135)), 3);
    }
}
