//! The report as one printable HTML page (A4, the time-to-answer chart as inline SVG: no
//! script, no external asset, so it prints and opens offline). It draws the tables
//! [`super::tables`] describes, like every other format; it must not add a column of its own.

use std::fmt::Write as _;

use super::{beijing, tables, Cell, Lang, Options};
use crate::record::report::{self, Report};

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

pub(super) fn html<P>(r: &Report<P>, o: &Options) -> String {
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
