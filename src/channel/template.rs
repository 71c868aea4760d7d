//! Template variables for providers that send an approved template, not free text (Aliyun,
//! Tencent): each variable is a minijinja expression over the message facts (and `text`, the
//! whole rendered message), checked when the gateway is built and cut to the provider's
//! per-variable limit when rendered. Pure: no IO.

use anyhow::{bail, Result};
use minijinja::{Environment, UndefinedBehavior};

use super::Outgoing;
use crate::domain::Facts;

/// The variables of one gateway's template, in order.
pub struct Params {
    env: Environment<'static>,
    items: Vec<(String, String)>,
}

impl Params {
    /// `key` names the config key in errors (`gateways.aliyun.template_params`).
    pub fn compile(key: &str, items: Vec<(String, String)>) -> Result<Params> {
        let mut env = Environment::new();
        // An unknown variable is a mistake in the config, not an empty string in an SMS.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let sample = context(&sample_facts(), "");
        for (name, expr) in &items {
            if let Err(e) = env.render_str(&format!("{{{{ {expr} }}}}"), &sample) {
                bail!("{key}.{name}: {expr:?} does not render: {e} (the variables are: {VARIABLES})");
            }
        }
        Ok(Params { env, items })
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each variable rendered for this message, cut to `limit` characters.
    pub fn render(&self, msg: &Outgoing, limit: usize) -> Vec<(String, String)> {
        let ctx = context(&msg.facts, &msg.text);
        self.items
            .iter()
            .map(|(name, expr)| {
                let v = self
                    .env
                    .render_str(&format!("{{{{ {expr} }}}}"), &ctx)
                    .unwrap_or_default();
                (name.clone(), cut(v.trim(), limit))
            })
            .collect()
    }
}

/// The names an expression may use.
pub const VARIABLES: &str =
    "signature, event, headline, description, instruction, place, link, code, drill, evacuation, change, knock, round, text";

fn context(f: &Facts, text: &str) -> minijinja::Value {
    minijinja::context! {
        ..minijinja::Value::from_serialize(f),
        ..minijinja::context! { text => text }
    }
}

/// At most `limit` characters (a provider counts characters, not bytes).
pub fn cut(s: &str, limit: usize) -> String {
    s.chars().take(limit).collect()
}

fn sample_facts() -> Facts {
    Facts {
        signature: "【防汛】".into(),
        event: "暴雨红色预警".into(),
        headline: "暴雨红色预警".into(),
        description: String::new(),
        instruction: String::new(),
        place: "松岭村".into(),
        link: "https://example.invalid/a/x".into(),
        code: "A37".into(),
        drill: false,
        evacuation: true,
        change: None,
        knock: None,
        round: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::ChannelKind;

    fn msg() -> Outgoing {
        Outgoing {
            attempt_id: 1,
            key: "c1-j1".into(),
            kind: ChannelKind::Sms,
            to: "+8613800000000".into(),
            subject: String::new(),
            text: "全文".into(),
            html: None,
            facts: Arc::new(Facts {
                place: "容县松岭镇旺坡村木棉村大坡村松岭村新塘村石头村六王村".into(),
                ..sample_facts()
            }),
            last_route: false,
        }
    }

    #[test]
    fn renders_each_variable_cut_to_the_limit() {
        let p = Params::compile(
            "gateways.a.template_params",
            vec![
                ("place".into(), "place".into()),
                ("what".into(), "event ~ '，码' ~ code".into()),
                ("all".into(), "text".into()),
            ],
        )
        .unwrap();
        let got = p.render(&msg(), 10);
        assert_eq!(got[0], ("place".into(), "容县松岭镇旺坡村木棉".into()));
        assert_eq!(got[1], ("what".into(), "暴雨红色预警，码A3".into()));
        assert_eq!(got[2], ("all".into(), "全文".into()));
    }

    #[test]
    fn an_unknown_variable_is_named_when_built() {
        let e = Params::compile("gateways.a.template_params", vec![("p".into(), "plase".into())])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("gateways.a.template_params.p: \"plase\" does not render"),
            "{e}"
        );
    }
}
