//! The after-action report rendered for people: HTML (printable on A4, with the time-to-answer
//! chart as inline SVG), CSV (UTF-8 with a BOM so Excel opens it), XLSX (one sheet per table),
//! JSON and plain text. The console, the API and `jiaoying report` all call [`render`]. The page
//! is `html.rs`, the workbook `xlsx.rs`; CSV, JSON and text are small enough to live here.
//!
//! Pure: it reads a built [`Report`] and nothing else. It must not touch a database or a clock:
//! the "generated at" instant comes in [`Options`]. Every table is described once
//! ([`tables`]) and each format draws the same tables, so a column cannot exist in the
//! workbook and be missing from the page.

use std::fmt::Write as _;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::report::{self, Report};

mod html;
pub use html::chart;
use html::html;
mod xlsx;
use xlsx::xlsx;

/// What `render` can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Csv,
    Xlsx,
    Json,
    Text,
}

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Format> {
        Ok(match s {
            "html" => Format::Html,
            "csv" => Format::Csv,
            "xlsx" => Format::Xlsx,
            "json" => Format::Json,
            "text" => Format::Text,
            other => bail!("format {other:?}: one of html, csv, xlsx, json, text"),
        })
    }
}

impl Format {
    pub const NAMES: [&'static str; 5] = ["html", "csv", "xlsx", "json", "text"];

    /// Bytes a terminal should not receive.
    pub fn is_binary(self) -> bool {
        matches!(self, Format::Xlsx)
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Json => "json",
            Format::Text => "txt",
        }
    }
}

/// Which language leads. Chinese by default; both are always shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl FromStr for Lang {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Lang> {
        match s {
            "zh" | "zh-CN" => Ok(Lang::Zh),
            "en" => Ok(Lang::En),
            other => bail!("language {other:?}: zh or en"),
        }
    }
}

/// Everything besides the report that decides the output.
#[derive(Debug, Clone)]
pub struct Options {
    pub lang: Lang,
    /// unix milliseconds; printed on the report, never read from a clock here.
    pub generated_at: i64,
    /// The table a CSV holds (a CSV file is one table); `None`: `townships`. See [`TABLES`].
    pub table: Option<String>,
}

impl Options {
    pub fn new(generated_at: i64) -> Options {
        Options {
            lang: Lang::Zh,
            generated_at,
            table: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rendered {
    pub content_type: &'static str,
    pub filename: String,
    pub bytes: Vec<u8>,
}

/// The keys of the tables, in the order of the page and the workbook; `--table` takes one.
pub const TABLES: [&str; 10] = [
    "summary",
    "timeline",
    "townships",
    "counties",
    "answer_times",
    "unreached",
    "door_knocks",
    "evacuation",
    "rounds",
    "callouts",
];

pub fn render<P: Serialize>(r: &Report<P>, format: Format, o: &Options) -> Result<Rendered> {
    let stem = format!("jiaoying-report-{}", r.incident.id);
    let (content_type, bytes) = match format {
        Format::Json => {
            let mut v = serde_json::to_value(r)?;
            v["generated_at"] = o.generated_at.into();
            ("application/json", serde_json::to_vec_pretty(&v)?)
        }
        Format::Text => ("text/plain; charset=utf-8", text(r, o).into_bytes()),
        Format::Html => ("text/html; charset=utf-8", html(r, o).into_bytes()),
        Format::Csv => {
            let key = o.table.as_deref().unwrap_or("townships");
            let t = tables(r, o)
                .into_iter()
                .find(|t| t.key == key)
                .with_context(|| format!("table {key:?}: one of {}", TABLES.join(", ")))?;
            let filename = format!("{stem}-{key}.csv");
            return Ok(Rendered {
                content_type: "text/csv; charset=utf-8",
                filename,
                bytes: csv(&t, o.lang)?,
            });
        }
        Format::Xlsx => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            xlsx(r, o)?,
        ),
    };
    Ok(Rendered {
        content_type,
        filename: format!("{stem}.{}", format.extension()),
        bytes,
    })
}

/// One cell, typed, so the workbook gets numbers as numbers and times as date-times.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    /// 0.0–1.0, shown as a percentage.
    Ratio(f64),
    Seconds(f64),
    /// unix milliseconds, shown in Beijing time.
    Time(i64),
    Empty,
}

impl Cell {
    fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }
    fn time(at: Option<i64>) -> Cell {
        at.map_or(Cell::Empty, Cell::Time)
    }
    fn int(n: usize) -> Cell {
        Cell::Int(n as i64)
    }

    fn plain(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Ratio(x) => format!("{:.1}%", x * 100.0),
            Cell::Seconds(x) => format!("{x:.1}"),
            Cell::Time(ms) => beijing(*ms),
            Cell::Empty => String::new(),
        }
    }
}

/// A column: Chinese, English, width in characters (for the workbook).
pub struct Column {
    pub zh: &'static str,
    pub en: &'static str,
    pub width: f64,
}

pub struct Table {
    pub key: &'static str,
    /// The sheet name (Chinese, at most 31 characters as Excel wants).
    pub zh: &'static str,
    pub en: &'static str,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

fn col(zh: &'static str, en: &'static str, width: f64) -> Column {
    Column { zh, en, width }
}

fn label(lang: Lang, zh: &str, en: &str) -> String {
    match lang {
        Lang::Zh => format!("{zh} {en}"),
        Lang::En => format!("{en} {zh}"),
    }
}

/// Beijing time (UTC+8, no daylight saving), the time every reader of the report lives in.
pub fn beijing(ms: i64) -> String {
    let tz = FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn state_zh(s: crate::domain::callout::State) -> &'static str {
    use crate::domain::callout::State::*;
    match s {
        Planned => "待发送",
        Sending => "发送中",
        Sent => "已发送",
        Delivered => "已送达",
        Acknowledged => "已应答",
        Failed => "发送失败",
        Escalated => "已升级",
        Cancelled => "已取消",
        Unreached => "未叫应",
    }
}

fn knock_zh(k: crate::domain::Knock) -> &'static str {
    use crate::domain::Knock::*;
    match k {
        Reached => "已当面告知",
        NotHome => "无人在家",
        Moved => "已转移",
    }
}

fn ratio(a: usize, b: usize) -> Cell {
    if b == 0 {
        Cell::Empty
    } else {
        Cell::Ratio(a as f64 / b as f64)
    }
}

/// Every table of the report, in [`TABLES`] order.
pub fn tables<P>(r: &Report<P>, o: &Options) -> Vec<Table> {
    let i = &r.incident;
    let t = &r.totals;
    let mut summary = vec![
        ("事件编号", "incident", Cell::Int(i.id)),
        ("事件代码", "code", Cell::text(&i.code)),
        ("标题", "title", Cell::text(&i.title)),
        ("预警", "event", Cell::text(&i.event)),
        (
            "颜色",
            "colour",
            Cell::text(i.colour.map(|c| c.zh()).unwrap_or("—")),
        ),
        ("灾种", "hazard", Cell::text(&i.hazard)),
        ("开启", "opened", Cell::Time(i.created_at)),
        ("结束", "closed", Cell::time(i.closed_at)),
        ("叫应", "called", Cell::int(t.called)),
        ("应答", "answered", Cell::int(t.answered)),
        ("应答率", "answer rate", ratio(t.answered, t.called)),
        ("超时应答", "answered late", Cell::int(t.late)),
        ("升级", "escalated", Cell::int(t.escalated)),
        ("未叫应", "unreached", Cell::int(t.unreached)),
        ("转移人数", "evacuated", Cell::Int(t.evacuated)),
    ];
    if let Some(m) = r.mark {
        summary.insert(0, ("标记", "mark", Cell::text(m)));
    }
    if let Some(s) = r.answer_seconds {
        summary.push(("应答用时中位数（秒）", "median answer (s)", Cell::Seconds(s[0])));
        summary.push(("应答用时90%（秒）", "90th percentile (s)", Cell::Seconds(s[1])));
        summary.push(("最慢应答（秒）", "slowest (s)", Cell::Seconds(s[2])));
    }
    match &r.ledger {
        Some(h) => {
            summary.push(("台账序号", "ledger head seq", Cell::Int(h.seq)));
            summary.push(("台账哈希", "ledger head hash", Cell::text(&h.hash)));
        }
        None => summary.push(("台账", "ledger head", Cell::text("未读取 / not read"))),
    }
    // The signed checkpoint (issue 12): the head as a key the database does not hold vouched
    // for it, so a reader can hold the ledger to this report.
    match &r.checkpoint {
        Some(c) => {
            summary.push(("签名检查点序号", "signed checkpoint seq", Cell::Int(c.seq)));
            summary.push(("签名检查点哈希", "signed checkpoint hash", Cell::text(&c.hash)));
            summary.push(("签名检查点时间", "signed checkpoint at", Cell::Time(c.at)));
            summary.push(("签名公钥", "signing key", Cell::text(&c.key)));
        }
        None => summary.push((
            "签名检查点",
            "signed checkpoint",
            Cell::text("未启用或尚无 / off or none yet"),
        )),
    }
    summary.push(("生成时间", "generated at", Cell::Time(o.generated_at)));
    let summary = Table {
        key: "summary",
        zh: "概况",
        en: "Summary",
        columns: vec![col("项目", "item", 28.0), col("值", "value", 70.0)],
        rows: summary
            .into_iter()
            .map(|(zh, en, v)| vec![Cell::Text(label(o.lang, zh, en)), v])
            .collect(),
    };
    let timeline = Table {
        key: "timeline",
        zh: "时间线",
        en: "Timeline",
        columns: vec![
            col("时间", "time", 20.0),
            col("事项", "event", 36.0),
            col("说明", "detail", 50.0),
        ],
        rows: r
            .timeline
            .iter()
            .map(|e| vec![Cell::Time(e.at), Cell::text(&e.what), Cell::text(&e.detail)])
            .collect(),
    };
    let region_columns = || {
        vec![
            col("区划代码", "code", 14.0),
            col("名称", "name", 16.0),
            col("叫应", "called", 9.0),
            col("应答", "answered", 9.0),
            col("应答率", "answer rate", 10.0),
            col("超时应答", "late", 9.0),
            col("升级", "escalated", 9.0),
            col("未叫应", "unreached", 9.0),
            col("转移人数", "evacuated", 10.0),
        ]
    };
    let region_rows = |rows: &[report::RegionRow]| {
        rows.iter()
            .map(|row| {
                let c = &row.counts;
                vec![
                    Cell::text(&row.code),
                    Cell::text(&row.name),
                    Cell::int(c.called),
                    Cell::int(c.answered),
                    ratio(c.answered, c.called),
                    Cell::int(c.late),
                    Cell::int(c.escalated),
                    Cell::int(c.unreached),
                    Cell::Int(c.evacuated),
                ]
            })
            .collect::<Vec<_>>()
    };
    let townships = Table {
        key: "townships",
        zh: "乡镇应答率",
        en: "Answer rate per township",
        columns: region_columns(),
        rows: region_rows(&r.townships),
    };
    let counties = Table {
        key: "counties",
        zh: "县区汇总",
        en: "Per county",
        columns: region_columns(),
        rows: region_rows(&r.counties),
    };
    let answered: usize = r.answer_histogram.iter().map(|b| b.count).sum();
    let answer_times = Table {
        key: "answer_times",
        zh: "应答用时分布",
        en: "Time to answer",
        columns: vec![
            col("用时", "time to answer", 24.0),
            col("人次", "answers", 10.0),
            col("占比", "share", 10.0),
        ],
        rows: r
            .answer_histogram
            .iter()
            .map(|b| vec![Cell::text(b.label), Cell::int(b.count), ratio(b.count, answered)])
            .collect(),
    };
    let unreached = Table {
        key: "unreached",
        zh: "未叫应人员",
        en: "Unreached",
        columns: vec![
            col("姓名", "name", 12.0),
            col("职责", "role", 16.0),
            col("地点", "place", 40.0),
            col("电话", "phone", 16.0),
            col("状态", "state", 12.0),
            col("叫应编号", "call-out", 10.0),
        ],
        rows: r
            .unreached
            .iter()
            .map(|p| {
                vec![
                    Cell::text(&p.name),
                    Cell::text(&p.role),
                    Cell::text(&p.place),
                    Cell::text(p.phone.clone().unwrap_or_default()),
                    Cell::text(state_zh(p.state)),
                    Cell::Int(p.callout_id),
                ]
            })
            .collect(),
    };
    let door_knocks = Table {
        key: "door_knocks",
        zh: "上门叫应",
        en: "Door knocks",
        columns: vec![
            col("任务", "task", 8.0),
            col("上门人", "knocker", 12.0),
            col("对象", "door", 40.0),
            col("地点", "place", 30.0),
            col("结果", "result", 14.0),
            col("时间", "at", 20.0),
        ],
        rows: r
            .door_knocks
            .iter()
            .map(|k| {
                vec![
                    Cell::Int(k.task_id),
                    Cell::text(&k.knocker),
                    Cell::text(&k.door),
                    Cell::text(&k.place),
                    Cell::text(k.result.map_or("未报告 / not reported".to_string(), |k| {
                        format!("{} / {}", knock_zh(k), k.as_str())
                    })),
                    Cell::time(k.at),
                ]
            })
            .collect(),
    };
    let level_zh = |l: &str| match l {
        "city" => "市",
        "county" => "县区",
        "township" => "乡镇",
        _ => "村（社区）",
    };
    let evacuation = Table {
        key: "evacuation",
        zh: "转移人数",
        en: "Evacuation",
        columns: vec![
            col("层级", "level", 16.0),
            col("区划代码", "code", 14.0),
            col("名称", "name", 18.0),
            col("转移人数", "moved", 10.0),
            col("受威胁人数", "threatened", 12.0),
        ],
        rows: r
            .evacuation
            .iter()
            .map(|e| {
                vec![
                    Cell::text(format!("{} / {}", level_zh(e.level), e.level)),
                    Cell::text(&e.code),
                    Cell::text(&e.name),
                    Cell::Int(e.moved),
                    e.threatened.map_or(Cell::Empty, Cell::Int),
                ]
            })
            .collect(),
    };
    let rounds = Table {
        key: "rounds",
        zh: "调度轮次",
        en: "Rounds",
        columns: vec![
            col("轮次", "round", 8.0),
            col("区划代码", "code", 14.0),
            col("名称", "name", 16.0),
            col("询问", "asked", 9.0),
            col("应答", "answered", 9.0),
        ],
        rows: r
            .rounds
            .iter()
            .map(|x| {
                vec![
                    Cell::Int(x.round),
                    Cell::text(&x.code),
                    Cell::text(&x.name),
                    Cell::int(x.asked),
                    Cell::int(x.answered),
                ]
            })
            .collect(),
    };
    let callouts = Table {
        key: "callouts",
        zh: "叫应明细",
        en: "Call-outs",
        columns: vec![
            col("编号", "id", 8.0),
            col("上级编号", "parent", 8.0),
            col("级", "step", 5.0),
            col("区划代码", "code", 14.0),
            col("地点", "place", 30.0),
            col("姓名", "name", 12.0),
            col("职责", "role", 14.0),
            col("状态", "state", 10.0),
            col("创建", "created", 20.0),
            col("发送", "sent", 20.0),
            col("送达", "delivered", 20.0),
            col("应答", "answered", 20.0),
            col("应答方式", "method", 10.0),
        ],
        rows: r
            .callouts
            .iter()
            .map(|c| {
                vec![
                    Cell::Int(c.id),
                    c.parent_id.map_or(Cell::Empty, Cell::Int),
                    Cell::Int(c.rung),
                    Cell::text(c.region_code.as_str()),
                    Cell::text(&c.place),
                    Cell::text(&c.contact_name),
                    Cell::text(&c.role),
                    Cell::text(state_zh(c.state)),
                    Cell::Time(c.created_at),
                    Cell::time(c.sent_at),
                    Cell::time(c.delivered_at),
                    Cell::time(c.acked_at),
                    Cell::text(c.ack_method.clone().unwrap_or_default()),
                ]
            })
            .collect(),
    };
    vec![
        summary,
        timeline,
        townships,
        counties,
        answer_times,
        unreached,
        door_knocks,
        evacuation,
        rounds,
        callouts,
    ]
}

const BOM: &str = "\u{feff}";

fn csv(t: &Table, lang: Lang) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(BOM.as_bytes().to_vec());
    w.write_record(t.columns.iter().map(|c| label(lang, c.zh, c.en)))?;
    for row in &t.rows {
        w.write_record(row.iter().map(Cell::plain))?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("csv: {}", e.error()))
}

fn text<P>(r: &Report<P>, o: &Options) -> String {
    let mut s = report::table(r);
    match &r.ledger {
        Some(h) => {
            let _ = writeln!(s, "台账 / ledger head: seq {} {}", h.seq, h.hash);
        }
        None => s.push_str("台账 / ledger head: —\n"),
    }
    let _ = writeln!(
        s,
        "生成时间 / generated at: {} (北京时间 / Beijing)",
        beijing(o.generated_at)
    );
    s
}

#[cfg(test)]
mod tests;
