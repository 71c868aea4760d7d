//! The answer page a call-out links to (`/a/TOKEN`): the warning, the instruction, a 收到
//! button (for a door-knock task, its three results) and an evacuation-count form. Plain HTML forms, no JavaScript, readable on a phone;
//! Chinese first with English beside it. Forged tokens get 403, expired ones 410.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use minijinja::{context, Environment};
use serde::Deserialize;

use crate::answer::inbound::{self, Answered};
use crate::answer::token::{self, TokenError};
use crate::core::Core;
use crate::domain::{AckMethod, Colour, IncidentState, Knock, State as CalloutState};
use crate::store::callouts::Callout;
use crate::store::incidents::{self, Incident};

const PAGE: &str = r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;padding:1rem;max-width:40rem;line-height:1.5;font-size:1.1rem}
.band{padding:.6rem 1rem;color:#fff;border-radius:.4rem;font-weight:bold}
.red{background:#c62828}.orange{background:#ef6c00}.yellow{background:#f9a825;color:#222}.blue{background:#1565c0}.none{background:#555}
button{font-size:1.3rem;padding:.8rem 1.2rem;width:100%;margin:.4rem 0;border-radius:.4rem;border:0;background:#2e7d32;color:#fff}
input{font-size:1.2rem;padding:.5rem;width:8rem}
.done{background:#e8f5e9;border:1px solid #2e7d32;padding:.8rem;border-radius:.4rem}
.en{color:#666;font-size:.9rem}
.drill{background:repeating-linear-gradient(45deg,#fff59d,#fff59d 10px,#fff 10px,#fff 20px);border:3px dashed #6a1b9a;color:#4a148c;padding:.6rem 1rem;margin-bottom:.6rem;font-weight:bold;font-size:1.2rem}
</style></head><body>
{% if error %}
<h1>{{ error }}</h1><p class="en">{{ error_en }}</p>
{% else %}
{% if drill %}<div class="drill" role="alert">【演练】本次为演练，不是真实预警<br><span class="en">DRILL — this is an exercise, not a real warning.</span></div>{% endif %}
<div class="band {{ colour }}">{% if drill %}【演练 Drill】{% endif %}{{ incident.event }} · 码 {{ incident.code }}</div>
{% if callout.upgrade %}<p><b>【升级】{{ callout.upgrade }}</b>：请重新确认 <span class="en">upgraded: please acknowledge again</span></p>{% endif %}
<h2>{{ incident.title }}</h2>
<p><b>{{ callout.contact_name }}</b>（{{ callout.place }}）</p>
{% if incident.instruction %}<p><b>要求：</b>{{ incident.instruction }}</p>{% endif %}
{% if callout.knock %}
<p><b>【上门叫应】</b>{{ callout.knock }} <span class="en">door-knock task: go to this door</span></p>
{% if not acked and incident.state == "active" %}{% for k in knocks %}<form method="post"><input type="hidden" name="action" value="knock"><input type="hidden" name="result" value="{{ k.0 }}">
<button type="submit">{{ k.1 }}</button></form>{% endfor %}{% endif %}
{% endif %}
{% if acked %}
<p class="done">✔ 已收到{% if callout.acked_at_text %}（{{ callout.acked_at_text }}）{% endif %}。谢谢！<br><span class="en">Acknowledged. Thank you.</span></p>
{% elif not callout.knock and incident.state == "active" %}
<form method="post"><input type="hidden" name="action" value="ack">
<button type="submit">收到 / Received</button></form>
{% endif %}
{% if incident.state == "active" %}
<form method="post"><input type="hidden" name="action" value="evacuation">
<p><label>已转移人数 <span class="en">people moved</span><br><input name="moved" type="number" min="0" max="10000000" required></label></p>
<p><label>受威胁人数（可选） <span class="en">people threatened (optional)</span><br><input name="threatened" type="number" min="0" max="10000000"></label></p>
<button type="submit">报告转移人数 / Report evacuation</button></form>
{% else %}<p>本次叫应已结束。<span class="en">This call-out has been closed.</span></p>{% endif %}
{% if message %}<p class="done">{{ message }}</p>{% endif %}
{% if incident.description %}<details><summary>预警详情 / Details</summary><p>{{ incident.description }}</p></details>{% endif %}
{% endif %}
</body></html>"#;

/// Compiled once; a constant template checked by the end-to-end tests.
fn env() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("answer.html", PAGE)
            .expect("answer page template");
        env
    })
}

fn page(ctx: minijinja::Value, status: StatusCode) -> Response {
    let html = env()
        .get_template("answer.html")
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| format!("<p>页面错误 / page error: {e}</p>"));
    (status, Html(html)).into_response()
}

fn refused(e: TokenError) -> Response {
    let (status, zh, en) = match e {
        TokenError::Expired => (
            StatusCode::GONE,
            "链接已过期，请直接回复短信或致电值班室。",
            "This link has expired.",
        ),
        _ => (StatusCode::FORBIDDEN, "链接无效。", "This link is not valid."),
    };
    page(context! { error => zh, error_en => en, title => "叫应" }, status)
}

/// The call-out a token names (after an upgrade, the person's upgraded one) and its incident.
async fn load(core: &Core, token: &str) -> Result<(Callout, Incident), Response> {
    let id = token::verify(&core.token_key, token, core.clock.now_secs()).map_err(refused)?;
    match incidents::answering(&core.store, id).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(refused(TokenError::Forged)),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "answer page");
            Err(unavailable())
        }
    }
}

fn unavailable() -> Response {
    page(
        context! { error => "系统繁忙，请稍后再试或回复短信。", error_en => "Please try again or reply by SMS.", title => "叫应" },
        StatusCode::SERVICE_UNAVAILABLE,
    )
}

fn render(c: &Callout, i: &Incident, message: Option<&str>, status: StatusCode) -> Response {
    let acked_at_text = c
        .acked_at
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| {
            t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
                .format("%m-%d %H:%M")
                .to_string()
        });
    let knock = c.knock.then_some(c.reason.as_str());
    let callout = context! { contact_name => c.contact_name, place => c.place, acked_at_text, upgrade => c.upgrade, knock };
    let knocks = [Knock::Reached, Knock::NotHome, Knock::Moved]
        .map(|k| (k.as_str(), format!("{} / {}", k.zh(), k.as_str())));
    page(
        context! {
            title => format!("{} · 叫应", i.event), incident => i, callout, drill => i.drill,
            colour => i.colour.map_or("none", Colour::as_str), acked => c.state == CalloutState::Acknowledged, message,
            knocks,
        },
        status,
    )
}

pub async fn show(State(core): State<Arc<Core>>, Path(token): Path<String>) -> Response {
    match load(&core, &token).await {
        Ok((c, i)) => render(&c, &i, None, StatusCode::OK),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct Submit {
    action: String,
    moved: Option<String>,
    threatened: Option<String>,
    /// A door-knock task's result (`reached`, `not-home`, `moved`).
    result: Option<String>,
}

pub async fn submit(
    State(core): State<Arc<Core>>,
    Path(token): Path<String>,
    form: Result<Form<Submit>, FormRejection>,
) -> Response {
    let (c, i) = match load(&core, &token).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // A link of a closed incident records nothing (410, the page saying so). The page offers
    // no answer there and an SMS reply finds no open call-out once it is stood down; without
    // this a link still recorded an acknowledgement, or an evacuation count, on an incident
    // already closed. (A stand-down committing between this read and the answer below still
    // lets that one answer through, marked late, as `domain::callout::on_answer` says.)
    if i.state != IncidentState::Active {
        let msg = "本次叫应已结束，未记录 / this call-out is closed: nothing recorded";
        return render(&c, &i, Some(msg), StatusCode::GONE);
    }
    let Ok(Form(f)) = form else {
        return render(&c, &i, Some("表单有误 / bad form"), StatusCode::BAD_REQUEST);
    };
    let count = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().ok().filter(|n| (0..=10_000_000).contains(n)))
    };
    let result = match f.action.as_str() {
        "ack" => inbound::answer(&core, c.id, AckMethod::Link, None, None)
            .await
            .map(|a| match a {
                Answered::Duplicate => "已经确认过 / already acknowledged",
                _ => "已确认收到 / acknowledged",
            }),
        "evacuation" => match (count(&f.moved), count(&f.threatened)) {
            // moved is required; threatened may be blank, but not garbage. The count and the
            // answer it implies commit together.
            (Some(Some(moved)), threatened @ (None | Some(Some(_)))) => {
                inbound::report_evacuation(&core, c.id, moved, threatened.flatten(), AckMethod::Link)
                    .await
                    .map(|_| "已报告转移人数 / evacuation reported")
            }
            _ => {
                let msg = "人数须为 0 至 10,000,000 的整数 / a whole number please";
                return render(&c, &i, Some(msg), StatusCode::UNPROCESSABLE_ENTITY);
            }
        },
        "knock" if c.knock => match f.result.as_deref().and_then(Knock::parse) {
            Some(k) => inbound::report_knock(&core, c.id, k)
                .await
                .map(|_| "已记录上门叫应结果 / door-knock result recorded"),
            None => {
                return render(
                    &c,
                    &i,
                    Some("请选择结果 / choose a result"),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
            }
        },
        _ => return render(&c, &i, Some("未知操作 / unknown action"), StatusCode::BAD_REQUEST),
    };
    match result {
        Ok(msg) => match load(&core, &token).await {
            Ok((c, i)) => render(&c, &i, Some(msg), StatusCode::OK),
            Err(r) => r,
        },
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "answer page");
            unavailable()
        }
    }
}
