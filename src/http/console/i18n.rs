//! Every string the console shows, in Chinese (the default) and English (`?lang=en`, then a
//! cookie). Pages never write a word of their own: they ask [`Lang::t`] by key, so that a
//! page cannot be half translated, and the test below holds every key used in the console's
//! sources to this table.
//!
//! This module owns the table and the choice of language; it must not know about pages.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Zh,
    En,
}

/// The language of one request, and whether it was chosen by `?lang=` just now (then the
/// answer sets the cookie, so that the choice sticks across links and form posts).
#[derive(Debug, Clone)]
pub struct Lang {
    pub code: Code,
    pub chosen: bool,
    /// The request's path, for the switch link.
    pub path: String,
}

pub const COOKIE: &str = "jy_lang";

impl Lang {
    pub fn zh() -> Lang {
        Lang {
            code: Code::Zh,
            chosen: false,
            path: "/".into(),
        }
    }

    #[cfg(test)]
    pub fn en() -> Lang {
        Lang {
            code: Code::En,
            ..Lang::zh()
        }
    }

    /// From the query (`lang=en|zh`), else the cookie, else Chinese.
    pub fn of(query: Option<&str>, cookie: Option<&str>, path: &str) -> Lang {
        let pick = |v: &str| match v {
            "en" => Some(Code::En),
            "zh" => Some(Code::Zh),
            _ => None,
        };
        let asked = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("lang="))
            .and_then(pick);
        let kept = cookie
            .into_iter()
            .flat_map(|c| c.split(';'))
            .find_map(|kv| kv.trim().strip_prefix("jy_lang="))
            .and_then(pick);
        Lang {
            code: asked.or(kept).unwrap_or(Code::Zh),
            chosen: asked.is_some(),
            path: path.to_string(),
        }
    }

    pub fn tag(&self) -> &'static str {
        match self.code {
            Code::Zh => "zh-CN",
            Code::En => "en",
        }
    }

    /// The string for `key`; the key itself when the table lacks it (the test catches that).
    pub fn t(&self, key: &'static str) -> &'static str {
        match STRINGS.iter().find(|(k, _, _)| *k == key) {
            Some((_, zh, en)) => match self.code {
                Code::Zh => zh,
                Code::En => en,
            },
            None => key,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Lang, Self::Rejection> {
        let cookie = parts
            .headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("jy_lang="));
        Ok(Lang::of(parts.uri.query(), cookie, parts.uri.path()))
    }
}

/// (key, 中文, English).
pub const STRINGS: &[(&str, &str, &str)] = &[
    ("app", "叫应 · 防汛值班台", "jiaoying · duty console"),
    ("nav.board", "叫应态势", "Live board"),
    ("nav.levels", "应急响应", "Response levels"),
    ("nav.roster", "责任人名册", "Roster"),
    ("nav.logout", "退出", "Log out"),
    ("switch", "English", "中文"),
    ("board.title", "正在叫应的事件", "Active incidents"),
    ("board.none", "当前没有正在叫应的事件。", "No active incident."),
    ("board.county_level", "（县级）", "(county level)"),
    ("board.live", "自动更新中", "Updating live"),
    ("col.region", "地区", "Region"),
    ("col.called", "已叫", "Called"),
    ("col.delivered", "已送达", "Delivered"),
    ("col.answered", "已应答", "Answered"),
    ("col.escalated", "已升级", "Escalated"),
    ("col.unreached", "未叫应", "Unreached"),
    ("col.evacuated", "已转移（人）", "Evacuated"),
    ("col.rate", "应答率", "Answer rate"),
    ("col.person", "责任人", "Person"),
    ("col.role", "职责", "Role"),
    ("col.place", "地点", "Place"),
    ("col.phone", "电话", "Phone"),
    ("col.state", "状态", "State"),
    ("col.rung", "梯级", "Step"),
    ("col.created", "发起", "Called at"),
    ("col.sent", "发送", "Sent"),
    ("col.delivered_at", "送达", "Delivered"),
    ("col.acked", "应答", "Answered"),
    ("col.deadline", "时限", "Deadline"),
    ("col.reason", "原因", "Why"),
    ("col.id", "编号", "No."),
    ("col.result", "电话结果", "Result of my call"),
    ("col.hazard", "灾种", "Hazard"),
    ("col.level", "级别", "Level"),
    ("col.regions", "区域", "Regions"),
    ("col.started", "启动", "Started"),
    ("col.until", "截止", "Until"),
    ("col.actor", "操作人", "By"),
    ("col.incident", "叫应事件", "Incident"),
    ("col.name", "名称", "Name"),
    ("col.code", "代码", "Code"),
    ("col.parent", "上级", "Parent"),
    ("col.backup", "AB角", "Backup"),
    ("col.superior", "上级责任人", "Superior"),
    ("col.shift", "班次", "Shift"),
    ("col.kind", "类型", "Kind"),
    ("col.people", "受威胁人数", "People"),
    ("col.line", "行", "Line"),
    ("col.column", "列", "Column"),
    ("col.channels", "渠道", "Channels"),
    ("inc.warning", "预警", "Warning"),
    ("inc.description", "内容", "Description"),
    ("inc.instruction", "防御指引", "Instruction"),
    ("inc.map", "预警区域", "Warning area"),
    ("inc.callouts", "全部叫应记录", "Every call-out"),
    (
        "inc.unreached",
        "未叫应人员（请电话联系）",
        "Not reached (phone them)",
    ),
    ("inc.none_unreached", "没有未叫应人员。", "Everybody was reached."),
    ("inc.reached", "已联系上", "Reached"),
    ("inc.not_reached", "仍未联系上", "Not reached"),
    ("inc.moved", "已转移人数", "Moved, people"),
    ("inc.record", "记录电话结果", "Record the result of my call"),
    ("inc.standdown", "解除叫应", "Stand down"),
    (
        "inc.standdown_confirm",
        "确认解除：取消尚未完成的叫应，并向已叫到的人发送解除通知。",
        "Confirm: pending call-outs are cancelled and everyone already called hears the stand-down.",
    ),
    ("inc.confirm", "确认", "Confirm"),
    ("inc.cancel", "返回", "Back"),
    ("inc.closed", "已解除", "Stood down"),
    ("inc.active", "叫应中", "Active"),
    ("inc.download", "下载复盘报告", "Download the report"),
    ("inc.drill", "演练", "Drill"),
    ("inc.recorded", "已记录。", "Recorded."),
    ("inc.no_such", "没有这个事件。", "No such incident."),
    (
        "inc.no_callout",
        "该叫应不属于此事件。",
        "That call-out is not in this incident.",
    ),
    (
        "inc.bad_moved",
        "转移人数须为 0 至 10,000,000 的整数。",
        "Moved must be a whole number from 0 to 10,000,000.",
    ),
    ("state.planned", "待发", "planned"),
    ("state.sending", "发送中", "sending"),
    ("state.sent", "已发送", "sent"),
    ("state.delivered", "已送达", "delivered"),
    ("state.acknowledged", "已应答", "answered"),
    ("state.failed", "发送失败", "failed"),
    ("state.escalated", "已升级", "escalated"),
    ("state.cancelled", "已取消", "cancelled"),
    ("state.unreached", "未叫应", "unreached"),
    ("lvl.title", "应急响应", "Response levels"),
    ("lvl.active", "正在执行的响应", "Active responses"),
    (
        "lvl.none",
        "当前没有启动的应急响应。",
        "No response level is active.",
    ),
    ("lvl.past", "已结束的响应", "Ended responses"),
    ("lvl.new", "启动应急响应", "Activate a response level"),
    (
        "lvl.regions_hint",
        "区划代码，逗号分隔，如 450921,450981",
        "division codes, comma separated, e.g. 450921,450981",
    ),
    ("lvl.until", "截止（可选，如 48h）", "Until (optional, e.g. 48h)"),
    ("lvl.note", "说明（可选）", "Note (optional)"),
    ("lvl.preview", "预览将叫应的人员", "Preview who it will call"),
    (
        "lvl.will_call",
        "启动后将叫应以下人员",
        "Activating will call these people",
    ),
    ("lvl.nobody", "启动后无人需叫应", "Nobody would be called"),
    ("lvl.confirm", "确认启动", "Confirm and activate"),
    ("lvl.end", "结束响应", "End this response"),
    ("lvl.ended", "已结束", "Ended"),
    ("lvl.policy", "叫应规则", "Policy"),
    ("hz.flood", "防汛", "flood"),
    ("hz.typhoon", "防台风", "typhoon"),
    ("hz.drought", "抗旱", "drought"),
    ("hz.geohazard", "地质灾害", "geohazard"),
    ("ros.title", "责任人名册", "Roster"),
    ("ros.regions", "行政区划", "Regions"),
    ("ros.contacts", "责任人", "Contacts"),
    ("ros.duty", "值班表", "Duty shifts"),
    ("ros.risk", "风险点", "Risk points"),
    ("ros.search", "搜索", "Search"),
    ("ros.found", "条", "rows"),
    ("ros.prev", "上一页", "Previous"),
    ("ros.next", "下一页", "Next"),
    ("ros.page", "页", "page"),
    (
        "ros.import",
        "导入名册（CSV / XLSX）",
        "Import the office's sheet (CSV / XLSX)",
    ),
    ("ros.kind", "类别", "Kind"),
    ("ros.file", "文件", "File"),
    ("ros.dry_run", "只检查，不写入", "Check only, write nothing"),
    ("ros.upload", "上传", "Upload"),
    ("ros.imported", "已导入", "Imported"),
    ("ros.checked", "已检查（未写入）", "Checked (nothing written)"),
    (
        "ros.refused",
        "有错误，未写入任何行",
        "Errors: no row was written",
    ),
    ("ros.rows", "行", "rows"),
    ("ros.no_file", "请选择文件。", "Choose a file."),
    ("ros.boundaries", "边界（GeoJSON）", "Boundaries (GeoJSON)"),
    ("err.title", "出错了", "Something went wrong"),
    (
        "err.forbidden",
        "您的角色不能执行此操作。",
        "Your role may not do this.",
    ),
    (
        "err.internal",
        "服务器内部错误，已记录。",
        "Internal error; it was logged.",
    ),
    ("err.bad", "输入有误", "Bad input"),
    ("back", "返回", "Back"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_used_by_the_console_is_in_the_table_with_both_languages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/console");
        let mut missing = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
            for piece in text.split(".t(\"").skip(1) {
                let key = piece.split('"').next().unwrap();
                if !STRINGS.iter().any(|(k, _, _)| *k == key) {
                    missing.push(key.to_string());
                }
            }
        }
        assert!(missing.is_empty(), "keys not in STRINGS: {missing:?}");
        let mut seen = std::collections::HashSet::new();
        for (k, zh, en) in STRINGS {
            assert!(seen.insert(k), "{k} twice");
            assert!(!zh.is_empty() && !en.is_empty(), "{k}");
        }
    }

    #[test]
    fn the_query_wins_then_the_cookie_then_chinese() {
        assert_eq!(Lang::of(None, None, "/").code, Code::Zh);
        assert_eq!(Lang::of(None, Some("a=b; jy_lang=en"), "/").code, Code::En);
        let l = Lang::of(Some("q=x&lang=zh"), Some("jy_lang=en"), "/");
        assert_eq!((l.code, l.chosen), (Code::Zh, true));
        assert_eq!(Lang::en().t("nav.board"), "Live board");
        assert_eq!(Lang::zh().t("nav.board"), "叫应态势");
    }
}
