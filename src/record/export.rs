//! The after-action report rendered for people: HTML (printable on A4, with the time-to-answer
//! chart as inline SVG), CSV (UTF-8 with a BOM so Excel opens it), XLSX (one sheet per table),
//! JSON and plain text. The console, the API and `jiaoying report` all call [`render`].
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

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "@page { size: A4; margin: 15mm 12mm; }
body { font-family: 'Noto Sans CJK SC', 'Source Han Sans SC', 'Microsoft YaHei', SimSun, sans-serif; font-size: 10pt; color: #000; margin: 0; }
h1 { font-size: 16pt; margin: 0 0 4mm; }
h2 { font-size: 12pt; margin: 6mm 0 2mm; border-bottom: 1px solid #444; }
h2 .en, th .en { font-weight: normal; color: #444; }
table { border-collapse: collapse; width: 100%; margin-bottom: 3mm; }
th, td { border: 1px solid #888; padding: 1mm 1.5mm; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
thead { display: table-header-group; }
tr { page-break-inside: avoid; break-inside: avoid; }
section { page-break-inside: auto; }
section.wide { page-break-before: always; break-before: page; }
.mark { border: 2px solid #c00; color: #c00; padding: 2mm; font-weight: bold; }
.hash { font-family: monospace; word-break: break-all; }
svg text { font-size: 9px; }
@media screen { body { max-width: 190mm; margin: 8mm auto; } }";

fn html<P>(r: &Report<P>, o: &Options) -> String {
    let lead = |zh: &str, en: &str| match o.lang {
        Lang::Zh => format!("{} <span class=\"en\">{}</span>", esc(zh), esc(en)),
        Lang::En => format!("{} <span class=\"en\">{}</span>", esc(en), esc(zh)),
    };
    let i = &r.incident;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>复盘报告 / After-action report — {}</title><style>{CSS}</style></head><body>\n",
        if o.lang == Lang::Zh { "zh-CN" } else { "en" },
        esc(&i.title)
    );
    if let Some(m) = r.mark {
        let _ = writeln!(
            s,
            "<p class=\"mark\">【{}】本次为演练，不是真实预警 / an exercise, not a real warning</p>",
            esc(m)
        );
    }
    let _ = writeln!(
        s,
        "<h1>{}：{}</h1>",
        lead("叫应复盘报告", "After-action report"),
        esc(&i.title)
    );
    for t in tables(r, o) {
        // The call-out list is long: it starts on a fresh page so the summary tables print together.
        let class = if t.key == "callouts" {
            " class=\"wide\""
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "<section id=\"{}\"{class}><h2>{}</h2>",
            t.key,
            lead(t.zh, t.en)
        );
        if t.key == "answer_times" {
            s.push_str(&chart(&r.answer_histogram));
        }
        if t.rows.is_empty() {
            let _ = writeln!(s, "<p>{}</p></section>", lead("无", "none"));
            continue;
        }
        s.push_str("<table><thead><tr>");
        for c in &t.columns {
            let _ = write!(s, "<th>{}</th>", lead(c.zh, c.en));
        }
        s.push_str("</tr></thead><tbody>\n");
        for row in &t.rows {
            s.push_str("<tr>");
            for (k, cell) in row.iter().enumerate() {
                let numeric = matches!(cell, Cell::Int(_) | Cell::Ratio(_) | Cell::Seconds(_));
                let hash = t.key == "summary" && k == 1 && matches!(cell, Cell::Text(v) if v.len() == 64);
                let class = if numeric {
                    " class=\"n\""
                } else if hash {
                    " class=\"hash\""
                } else {
                    ""
                };
                let _ = write!(s, "<td{class}>{}</td>", esc(&cell.plain()));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody></table></section>\n");
    }
    let _ = writeln!(
        s,
        "<p>{}: {} (北京时间 / Beijing time)</p></body></html>",
        lead("生成时间", "generated at"),
        esc(&beijing(o.generated_at))
    );
    s
}

/// The time-to-answer histogram as an inline SVG bar chart: no script, no external asset, so
/// it prints and opens offline.
pub fn chart(buckets: &[report::Bucket]) -> String {
    let (w, h, left, bottom, top) = (640.0, 220.0, 36.0, 46.0, 16.0);
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let n = buckets.len().max(1) as f64;
    let slot = (w - left - 8.0) / n;
    let plot = h - bottom - top;
    let mut s = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"应答用时分布 / time-to-answer distribution\">\n"
    );
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#000\"/><line x1=\"{left}\" y1=\"{0}\" x2=\"{}\" y2=\"{0}\" stroke=\"#000\"/>",
        h - bottom,
        w - 8.0
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        left - 3.0,
        top + 4.0,
        max as usize,
        left - 3.0,
        h - bottom
    );
    for (k, b) in buckets.iter().enumerate() {
        let bh = plot * b.count as f64 / max;
        let x = left + slot * k as f64 + slot * 0.15;
        let y = h - bottom - bh;
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#36c\"><title>{}: {}</title></rect>",
            slot * 0.7,
            esc(b.label),
            b.count
        );
        if b.count > 0 {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.35,
                y - 2.0,
                b.count
            );
        }
        let (zh, en) = b.label.split_once(" / ").unwrap_or((b.label, ""));
        let cx = x + slot * 0.35;
        let _ = writeln!(
            s,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            h - bottom + 13.0,
            esc(zh),
            h - bottom + 25.0,
            esc(en)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xlsx<P>(r: &Report<P>, o: &Options) -> Result<Vec<u8>> {
    use rust_xlsxwriter::{Chart, ChartType, ExcelDateTime, Format as X, Workbook};
    let mut wb = Workbook::new();
    let head = X::new()
        .set_bold()
        .set_text_wrap()
        .set_background_color("#DDEBF7");
    let when = X::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let pct = X::new().set_num_format("0.0%");
    let secs = X::new().set_num_format("0.0");
    for t in tables(r, o) {
        let ws = wb.add_worksheet();
        ws.set_name(t.zh)?;
        for (c, column) in t.columns.iter().enumerate() {
            let c = c as u16;
            ws.write_string_with_format(0, c, format!("{}\n{}", column.zh, column.en), &head)?;
            ws.set_column_width(c, column.width)?;
        }
        ws.set_row_height(0, 30)?;
        ws.set_freeze_panes(1, 0)?;
        for (k, row) in t.rows.iter().enumerate() {
            let y = k as u32 + 1;
            for (c, cell) in row.iter().enumerate() {
                let c = c as u16;
                match cell {
                    Cell::Text(v) => {
                        ws.write_string(y, c, v)?;
                    }
                    Cell::Int(n) => {
                        ws.write_number(y, c, *n as f64)?;
                    }
                    Cell::Ratio(x) => {
                        ws.write_number_with_format(y, c, *x, &pct)?;
                    }
                    Cell::Seconds(x) => {
                        ws.write_number_with_format(y, c, *x, &secs)?;
                    }
                    // Excel has no time zones: the cell holds Beijing wall-clock time.
                    Cell::Time(ms) => {
                        let dt = ExcelDateTime::from_timestamp(ms.div_euclid(1000) + 8 * 3600)?;
                        ws.write_datetime_with_format(y, c, &dt, &when)?;
                    }
                    Cell::Empty => {}
                }
            }
        }
        if t.key == "answer_times" && !t.rows.is_empty() {
            let last = t.rows.len() as u32;
            let mut chart = Chart::new(ChartType::Column);
            chart
                .add_series()
                .set_name("应答人次 / answers")
                .set_categories((t.zh, 1, 0, last, 0))
                .set_values((t.zh, 1, 1, last, 1));
            chart.title().set_name("应答用时分布 / Time to answer");
            chart.legend().set_hidden();
            ws.insert_chart(1, 4, &chart)?;
        }
    }
    Ok(wb.save_to_buffer()?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Cursor;

    use calamine::{Data, Reader, Xlsx};

    use super::*;
    use crate::domain::callout::State;
    use crate::domain::{Callout, EvacuationRow, Incident, RegionCode};
    use crate::record::report::{summarise, with_timeline, LedgerHead, ResponseSpan, WarningSeen};

    // 2026-07-01 08:00:00 Beijing, a fixed instant.
    const T0: i64 = 1_782_864_000_000;

    fn callout(id: i64, code: &str, state: State, answer_after_s: Option<i64>) -> Callout {
        Callout {
            id,
            incident_id: 1,
            contact_id: id,
            parent_id: None,
            rung: 0,
            region_code: RegionCode::parse(code).unwrap(),
            place: format!("地点{id}"),
            role: "村干部".into(),
            reason: String::new(),
            state,
            deadline_at: T0 + 600_000,
            created_at: T0,
            sent_at: Some(T0 + 1_000),
            delivered_at: None,
            acked_at: answer_after_s.map(|s| T0 + s * 1000),
            ack_late: false,
            contact_key: format!("k{id}"),
            contact_name: format!("张{id}"),
            phone: Some(format!("+86138000000{id:02}")),
            email: None,
            channels: Vec::new(),
            backup_key: None,
            superior_key: None,
            ack_method: answer_after_s.map(|_| "sms".into()),
            upgrade: None,
            knock: false,
            round: None,
        }
    }

    fn sample() -> Report<()> {
        let incident = Incident {
            id: 7,
            code: "A7".into(),
            warning_id: Some(1),
            title: "容县暴雨红色预警".into(),
            event: "暴雨红色预警".into(),
            description: String::new(),
            instruction: String::new(),
            colour: Some(crate::domain::Colour::Red),
            hazard: "rainstorm".into(),
            policy: (),
            drill: false,
            state: crate::domain::IncidentState::Active,
            created_at: T0,
            expires_at: None,
            closed_at: Some(T0 + 7_200_000),
        };
        let mut escalated = callout(4, "450921104201", State::Acknowledged, Some(900));
        escalated.rung = 1;
        escalated.parent_id = Some(3);
        escalated.created_at = T0 + 600_000;
        let callouts = vec![
            callout(1, "450921104201", State::Acknowledged, Some(20)),
            callout(2, "450921104202", State::Acknowledged, Some(150)),
            callout(3, "450921104203", State::Escalated, None),
            escalated,
            callout(5, "450922101201", State::Unreached, None),
        ];
        let evacuations = [
            EvacuationRow {
                reporter: "a".into(),
                region_code: RegionCode::parse("450921104201").unwrap(),
                moved: 30,
                threatened: Some(40),
                at: T0 + 1_000_000,
            },
            EvacuationRow {
                reporter: "b".into(),
                region_code: RegionCode::parse("450921104").unwrap(),
                moved: 5,
                threatened: None,
                at: T0 + 1_100_000,
            },
            EvacuationRow {
                reporter: "c".into(),
                region_code: RegionCode::parse("450922101201").unwrap(),
                moved: 12,
                threatened: None,
                at: T0 + 1_200_000,
            },
        ];
        let names: BTreeMap<RegionCode, String> = [
            ("450921", "容县"),
            ("450921104", "六王镇"),
            ("450922", "陆川县"),
            ("4509", "玉林市"),
        ]
        .into_iter()
        .map(|(c, n)| (RegionCode::parse(c).unwrap(), n.to_string()))
        .collect();
        let mut r = summarise(incident, callouts, &evacuations, &[], &names);
        with_timeline(
            &mut r,
            &[WarningSeen {
                id: 1,
                received_at: T0 - 5_000,
                msg_type: "Alert".into(),
                event: "暴雨红色预警".into(),
            }],
            &[ResponseSpan {
                id: 2,
                hazard: "flood".into(),
                level: "Ⅳ级".into(),
                regions: vec!["450921".into()],
                actor: "operator:duty".into(),
                started_at: T0 + 300_000,
                ended_at: Some(T0 + 3_600_000),
                ended_by: Some("operator:duty".into()),
            }],
        );
        r.ledger = Some(LedgerHead {
            seq: 42,
            hash: "ab".repeat(32),
        });
        r
    }

    fn opts() -> Options {
        Options::new(T0 + 86_400_000)
    }

    #[test]
    fn formats_parse_from_their_names_and_nothing_else() {
        for name in Format::NAMES {
            assert!(name.parse::<Format>().is_ok(), "{name}");
        }
        assert!("pdf".parse::<Format>().is_err());
        assert!("Xlsx".parse::<Format>().is_err());
    }

    #[test]
    fn the_report_rolls_evacuation_up_and_orders_its_timeline() {
        let r = sample();
        let total = |level: &str, code: &str| {
            r.evacuation
                .iter()
                .find(|e| e.level == level && e.code == code)
                .map(|e| (e.moved, e.threatened))
        };
        assert_eq!(total("village", "450921104201"), Some((30, Some(40))));
        assert_eq!(total("township", "450921104"), Some((35, Some(40))));
        assert_eq!(total("county", "450921"), Some((35, Some(40))));
        assert_eq!(total("county", "450922"), Some((12, None)));
        assert_eq!(total("city", "4509"), Some((47, Some(40))));
        assert_eq!(
            total("village", "450921104"),
            None,
            "a township report is no village"
        );
        let kinds: Vec<&str> = r.timeline.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "warning",
                "opened",
                "first_send",
                "first_answer",
                "response",
                "escalation",
                "response_end",
                "stand_down"
            ]
        );
        let counts: Vec<usize> = r.answer_histogram.iter().map(|b| b.count).collect();
        // 20 s, 150 s (2–5 min) and 300 s (5–10 min: the bound is exclusive).
        assert_eq!(counts, [1, 0, 0, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn csv_starts_with_a_bom_and_holds_the_township_table() {
        let out = render(&sample(), Format::Csv, &opts()).unwrap();
        assert!(out.bytes.starts_with("\u{feff}".as_bytes()));
        assert_eq!(out.filename, "jiaoying-report-7-townships.csv");
        let text = String::from_utf8(out.bytes).unwrap();
        let mut lines = text.trim_start_matches('\u{feff}').lines();
        assert!(lines
            .next()
            .unwrap()
            .starts_with("区划代码 code,名称 name,叫应 called"));
        assert_eq!(lines.next().unwrap(), "450921104,六王镇,4,3,75.0%,0,1,0,35");
        let o = Options {
            table: Some("unreached".into()),
            ..opts()
        };
        let text = String::from_utf8(render(&sample(), Format::Csv, &o).unwrap().bytes).unwrap();
        assert!(
            text.contains("张5,村干部,地点5,+8613800000005,未叫应,5"),
            "{text}"
        );
        let o = Options {
            table: Some("nope".into()),
            ..opts()
        };
        assert!(render(&sample(), Format::Csv, &o).is_err());
    }

    #[test]
    fn html_is_self_contained_printable_on_a4_and_draws_the_chart() {
        let out = render(&sample(), Format::Html, &opts()).unwrap();
        assert_eq!(out.content_type, "text/html; charset=utf-8");
        let html = String::from_utf8(out.bytes).unwrap();
        assert!(html.contains("@page { size: A4"), "the A4 rule");
        assert!(html.contains("<svg class=\"chart\""), "the chart");
        assert_eq!(html.matches("<rect ").count(), 8, "one bar per bucket");
        assert!(html.contains("乡镇应答率 <span class=\"en\">Answer rate per township</span>"));
        assert!(html.contains(&"ab".repeat(32)), "the ledger head");
        assert!(html.contains("2026-07-02 08:00:00"), "generated at, Beijing time");
        assert!(
            !html.contains("http://") || !html.contains("src=\"http"),
            "no external asset"
        );
        assert!(!html.contains("<script"), "no script");
        assert!(!html.contains("<link"), "no external stylesheet");
    }

    #[test]
    fn the_workbook_reads_back_with_one_sheet_per_table_and_typed_cells() {
        let out = render(&sample(), Format::Xlsx, &opts()).unwrap();
        assert_eq!(out.filename, "jiaoying-report-7.xlsx");
        let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(out.bytes)).unwrap();
        let names = wb.sheet_names();
        assert_eq!(
            names,
            [
                "概况",
                "时间线",
                "乡镇应答率",
                "县区汇总",
                "应答用时分布",
                "未叫应人员",
                "上门叫应",
                "转移人数",
                "调度轮次",
                "叫应明细"
            ]
        );
        let towns = wb.worksheet_range("乡镇应答率").unwrap();
        assert_eq!(
            towns.get_value((0, 0)),
            Some(&Data::String("区划代码\ncode".into()))
        );
        assert_eq!(towns.get_value((1, 1)), Some(&Data::String("六王镇".into())));
        assert_eq!(
            towns.get_value((1, 2)),
            Some(&Data::Float(4.0)),
            "numbers as numbers"
        );
        assert_eq!(towns.get_value((1, 4)), Some(&Data::Float(0.75)));
        let timeline = wb.worksheet_range("时间线").unwrap();
        match timeline.get_value((2, 0)) {
            Some(Data::DateTime(d)) => {
                // Incident opened at T0: 2026-07-01 08:00 Beijing.
                // Excel's serial day number from 1899-12-30; 25569 is 1970-01-01.
                let wall = ((d.as_f64() - 25569.0) * 86400.0).round() as i64;
                assert_eq!(wall, T0 / 1000 + 8 * 3600, "Beijing wall-clock time");
            }
            other => panic!("a date-time cell, got {other:?}"),
        }
        let evac = wb.worksheet_range("转移人数").unwrap();
        let city = (1..evac.height() as u32)
            .find(|&y| evac.get_value((y, 1)) == Some(&Data::String("4509".into())))
            .expect("the city row");
        assert_eq!(evac.get_value((city, 3)), Some(&Data::Float(47.0)));
    }

    #[test]
    fn text_and_json_name_the_ledger_head() {
        let text = String::from_utf8(render(&sample(), Format::Text, &opts()).unwrap().bytes).unwrap();
        assert!(text.contains("seq 42"), "{text}");
        let json: serde_json::Value =
            serde_json::from_slice(&render(&sample(), Format::Json, &opts()).unwrap().bytes).unwrap();
        assert_eq!(json["ledger"]["seq"], 42);
        assert_eq!(json["generated_at"], T0 + 86_400_000);
        assert_eq!(json["timeline"][0]["kind"], "warning");
    }
}
