//! The office's spreadsheets as rows of text: CSV (UTF-8, or GBK/GB18030 as Excel on a Chinese
//! Windows saves it) and XLSX (the sheet named after the kind, else the first), with header
//! aliases so that `手机号` and `phone` name the same column. Pure: bytes in, rows out.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};

use super::RowError;

/// Header aliases per canonical column (compared after [`normalise`]). Documented in
/// config/demo/README.md; keep the two in step.
pub const ALIASES: &[(&str, &[&str])] = &[
    ("key", &["编号", "人员编号", "风险点编号", "隐患点编号", "id"]),
    ("code", &["区划代码", "行政区划代码", "区划编码", "代码"]),
    ("name", &["姓名", "名称", "区划名称", "风险点名称"]),
    ("level", &["级别", "层级", "行政级别"]),
    ("parent", &["上级区划", "上级代码", "上级区划代码", "parent_code"]),
    ("lat", &["纬度", "latitude"]),
    ("lon", &["经度", "longitude", "lng"]),
    (
        "phone",
        &[
            "phones",
            "mobile",
            "tel",
            "手机",
            "手机号",
            "手机号码",
            "电话",
            "联系电话",
            "电话号码",
        ],
    ),
    ("email", &["e-mail", "mail", "邮箱", "电子邮箱"]),
    ("role", &["职务", "角色", "岗位"]),
    (
        "region",
        &["region_code", "区划代码", "行政区划代码", "所属区划", "所在区划"],
    ),
    (
        "risk_point",
        &["risk_point_key", "风险点", "风险点编号", "隐患点编号"],
    ),
    ("backup", &["ab角", "b角", "备岗", "备份"]),
    ("superior", &["上级", "上级领导", "直接上级"]),
    ("channels", &["渠道", "通知渠道", "通知方式"]),
    ("kind", &["type", "类型", "类别", "风险点类型"]),
    ("people", &["威胁人数", "受威胁人数", "影响人数"]),
    ("monitors", &["监测员", "巡查员", "监测员编号"]),
    (
        "contact",
        &["contact_key", "值班人员", "值班人员编号", "人员编号"],
    ),
    ("cron", &["班次规则", "cron表达式", "轮班规则"]),
    ("length", &["duration", "minutes", "时长", "班次时长"]),
    ("from", &["start", "开始", "开始时间", "起始时间"]),
    ("to", &["end", "结束", "结束时间"]),
    ("tz", &["timezone", "time_zone", "时区"]),
];

/// Lower case, no spaces or `*` (required-column marks), nothing after an opening bracket
/// (`手机号（多个用；分隔）`).
pub fn normalise(header: &str) -> String {
    let h = header.trim_start_matches('\u{feff}');
    let h = h.split(['(', '（']).next().unwrap_or("");
    h.chars()
        .filter(|c| !c.is_whitespace() && *c != '*')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The canonical column a header names, if any.
pub fn canonical(header: &str, wanted: &[(&'static str, bool)]) -> Option<&'static str> {
    let h = normalise(header);
    wanted.iter().map(|w| w.0).find(|name| {
        *name == h
            || ALIASES
                .iter()
                .find(|(n, _)| n == name)
                .is_some_and(|(_, a)| a.contains(&h.as_str()))
    })
}

/// One row: its spreadsheet line (1 = the header) and cells, trimmed.
#[derive(Debug, Clone)]
pub struct SheetRow {
    pub line: u64,
    pub cells: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Sheet {
    pub headers: Vec<String>,
    pub rows: Vec<SheetRow>,
}

impl Sheet {
    /// The header as written for a canonical column (for errors found after the row pass).
    pub fn header_of(&self, col: &'static str) -> String {
        self.headers
            .iter()
            .find(|h| canonical(h, &[(col, false)]).is_some())
            .cloned()
            .unwrap_or_else(|| col.to_string())
    }
}

/// Reads CSV or XLSX (told apart by the ZIP signature). `kind` picks the XLSX sheet.
pub fn read(data: &[u8], kind: &str) -> Result<Sheet, RowError> {
    if data.starts_with(b"PK\x03\x04") {
        read_xlsx(data, kind)
    } else {
        read_csv(data)
    }
}

fn whole_file(reason: String) -> RowError {
    RowError {
        line: 1,
        column: "-".into(),
        reason,
    }
}

fn read_csv(data: &[u8]) -> Result<Sheet, RowError> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let text = match std::str::from_utf8(data) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => {
            let (t, _, bad) = encoding_rs::GB18030.decode(data);
            if bad {
                return Err(whole_file(
                    "the file is neither UTF-8 nor GBK/GB18030 text".into(),
                ));
            }
            t
        }
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut headers = None;
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| RowError {
            line: e.position().map_or(0, |p| p.line()),
            column: "-".into(),
            reason: e.to_string(),
        })?;
        let cells: Vec<String> = rec.iter().map(str::to_string).collect();
        if headers.is_none() {
            headers = Some(cells);
            continue;
        }
        if cells.iter().all(|c| c.is_empty()) {
            continue;
        }
        rows.push(SheetRow {
            line: rec.position().map_or(0, |p| p.line()),
            cells,
        });
    }
    let headers = headers.ok_or_else(|| whole_file("empty file: no header row".into()))?;
    Ok(Sheet { headers, rows })
}

/// Columns a roster sheet may use: the office's sheets have a few dozen. A cell beyond it is
/// refused rather than read, so that a stray cell at XFD1048576 cannot make the reader build a
/// grid of billions of cells.
const MAX_COLUMNS: u32 = 1024;
/// Cells a roster sheet may hold (a 200,000-person roster has about 2 million).
const MAX_CELLS: usize = 5_000_000;

fn read_xlsx(data: &[u8], kind: &str) -> Result<Sheet, RowError> {
    // The XLSX reader is another crate's code reading a file we did not write: a panic in it
    // (the fuzzer found overflows in its cell references) is this file's error, not the
    // daemon's.
    match std::panic::catch_unwind(|| read_xlsx_cells(data, kind)) {
        Ok(r) => r,
        Err(_) => Err(whole_file(
            "the XLSX reader failed on this workbook: open it in Excel or WPS and save it again, or save the sheet as CSV (UTF-8)"
                .into(),
        )),
    }
}

/// Reads the sheet cell by cell (never as one dense grid), rows in order, each row's cells
/// from the sheet's first used column.
fn read_xlsx_cells(data: &[u8], kind: &str) -> Result<Sheet, RowError> {
    let mut book =
        Xlsx::new(Cursor::new(data)).map_err(|e| whole_file(format!("not a readable XLSX workbook: {e}")))?;
    let names = book.sheet_names();
    let name = names
        .iter()
        .find(|n| normalise(n) == normalise(kind))
        .or(names.first())
        .cloned()
        .ok_or_else(|| whole_file("the workbook has no sheet".into()))?;
    let sheet_error = |e: calamine::XlsxError| whole_file(format!("sheet {name:?}: {e}"));
    let mut reader = book.worksheet_cells_reader(&name).map_err(sheet_error)?;
    let mut by_row: std::collections::BTreeMap<u32, Vec<(u32, String)>> = Default::default();
    let (mut first_col, mut count) = (u32::MAX, 0usize);
    while let Some(cell) = reader.next_cell().map_err(sheet_error)? {
        let (row, col) = cell.get_position();
        let text = cell_text(&Data::from(cell.get_value().clone()));
        if text.is_empty() {
            continue;
        }
        if col >= MAX_COLUMNS {
            return Err(RowError {
                line: u64::from(row) + 1,
                column: "-".into(),
                reason: format!(
                    "a cell in column {} of sheet {name:?}: a roster sheet has at most {MAX_COLUMNS} columns; delete the stray cell and save again",
                    col + 1
                ),
            });
        }
        count += 1;
        if count > MAX_CELLS {
            return Err(whole_file(format!(
                "sheet {name:?} has more than {MAX_CELLS} cells: split the roster into several files"
            )));
        }
        first_col = first_col.min(col);
        by_row.entry(row).or_default().push((col, text));
    }
    let mut headers = None;
    let mut rows = Vec::new();
    for (row, cells) in by_row {
        let width = cells.iter().map(|(c, _)| c - first_col + 1).max().unwrap_or(0) as usize;
        let mut line = vec![String::new(); width];
        for (c, text) in cells {
            line[(c - first_col) as usize] = text;
        }
        if headers.is_none() {
            headers = Some(line);
            continue;
        }
        rows.push(SheetRow {
            line: u64::from(row) + 1,
            cells: line,
        });
    }
    let headers = headers.ok_or_else(|| whole_file(format!("sheet {name:?} is empty")))?;
    Ok(Sheet { headers, rows })
}

/// A cell as the office typed it: whole numbers without `.0` (codes and phone numbers are
/// often stored as numbers), dates as `YYYY-MM-DD HH:MM`.
fn cell_text(d: &Data) -> String {
    match d {
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.trim().to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(t) => excel_date(t.as_f64()),
        Data::Error(_) | Data::Empty => String::new(),
    }
}

/// Excel serial date (days since 1899-12-30) → `YYYY-MM-DD HH:MM`.
fn excel_date(serial: f64) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(1899, 12, 30).expect("valid date");
    let minutes = (serial * 1440.0).round() as i64;
    let t = base.and_hms_opt(0, 0, 0).expect("valid time") + chrono::Duration::minutes(minutes);
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// Where each wanted column is, with its header as written (for error messages).
pub struct Cols {
    found: Vec<(&'static str, Option<usize>, String)>,
}

impl Cols {
    /// A missing required column or two headers for one column is one error on line 1.
    pub fn resolve(headers: &[String], wanted: &[(&'static str, bool)]) -> Result<Cols, RowError> {
        let mut found = Vec::new();
        for &(name, required) in wanted {
            let hits: Vec<usize> = headers
                .iter()
                .enumerate()
                .filter(|(_, h)| canonical(h, &[(name, required)]).is_some())
                .map(|(i, _)| i)
                .collect();
            if hits.len() > 1 {
                return Err(RowError {
                    line: 1,
                    column: headers[hits[1]].clone(),
                    reason: format!(
                        "two columns for {name} ({} and {})",
                        headers[hits[0]], headers[hits[1]]
                    ),
                });
            }
            if hits.is_empty() && required {
                let aliases = ALIASES.iter().find(|(n, _)| *n == name).map_or(&[][..], |a| a.1);
                return Err(RowError {
                    line: 1,
                    column: name.into(),
                    reason: format!("required column missing (也可写作 {})", aliases.join("/")),
                });
            }
            let idx = hits.first().copied();
            found.push((
                name,
                idx,
                idx.map_or_else(|| name.to_string(), |i| headers[i].clone()),
            ));
        }
        Ok(Cols { found })
    }

    fn slot(&self, name: &str) -> &(&'static str, Option<usize>, String) {
        self.found
            .iter()
            .find(|f| f.0 == name)
            .unwrap_or_else(|| panic!("column {name} was not asked for"))
    }

    pub fn has(&self, name: &str) -> bool {
        self.slot(name).1.is_some()
    }
}

/// A row seen through its columns.
pub struct Row<'a> {
    pub line: u64,
    cells: &'a [String],
    cols: &'a Cols,
}

impl Row<'_> {
    /// The cell of a column, "" when the column or the cell is absent.
    pub fn get(&self, name: &str) -> &str {
        self.cols
            .slot(name)
            .1
            .and_then(|i| self.cells.get(i))
            .map_or("", |s| s.as_str())
    }

    pub fn opt(&self, name: &str) -> Option<String> {
        Some(self.get(name).to_string()).filter(|s| !s.is_empty())
    }

    /// An error at this row, naming the column by its header as written.
    pub fn err(&self, name: &str, reason: impl Into<String>) -> RowError {
        RowError {
            line: self.line,
            column: self.cols.slot(name).2.clone(),
            reason: reason.into(),
        }
    }

    /// A non-empty cell, or an error.
    pub fn required(&self, name: &str) -> Result<&str, RowError> {
        match self.get(name) {
            "" => Err(self.err(name, "empty (必填)")),
            v => Ok(v),
        }
    }
}

/// Runs `check` over every row; rows it refuses become errors. Also returns each kept row's
/// line, for checks across rows (duplicate keys, references).
pub fn check_rows<T>(
    sheet: &Sheet,
    wanted: &[(&'static str, bool)],
    mut check: impl FnMut(&Row) -> Result<T, RowError>,
) -> (super::Parsed<T>, Vec<u64>) {
    let mut out = super::Parsed {
        rows: Vec::new(),
        errors: Vec::new(),
    };
    let mut lines = Vec::new();
    let cols = match Cols::resolve(&sheet.headers, wanted) {
        Ok(c) => c,
        Err(e) => {
            out.errors.push(e);
            return (out, lines);
        }
    };
    for r in &sheet.rows {
        let row = Row {
            line: r.line,
            cells: &r.cells,
            cols: &cols,
        };
        match check(&row) {
            Ok(t) => {
                out.rows.push(t);
                lines.push(r.line);
            }
            Err(e) => out.errors.push(e),
        }
    }
    (out, lines)
}

/// Refuses the second and later rows with the same natural key.
pub fn refuse_duplicates<T>(
    sheet: &Sheet,
    parsed: &mut super::Parsed<T>,
    lines: &mut Vec<u64>,
    column: &'static str,
    key: impl Fn(&T) -> String,
) {
    let mut seen = std::collections::HashSet::new();
    let mut keep = Vec::new();
    let mut keep_lines = Vec::new();
    for (t, line) in parsed.rows.drain(..).zip(lines.drain(..)) {
        let k = key(&t);
        if seen.insert(k.clone()) {
            keep.push(t);
            keep_lines.push(line);
        } else {
            parsed.errors.push(RowError {
                line,
                column: sheet.header_of(column),
                reason: format!("{k} appears twice (重复)"),
            });
        }
    }
    parsed.rows = keep;
    *lines = keep_lines;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One stray cell at the sheet's last column and row: refused by name, at once, instead of
    /// the reader building a grid of 17 billion cells.
    #[test]
    fn a_stray_cell_far_away_is_refused_not_read_as_a_grid() {
        let mut book = rust_xlsxwriter::Workbook::new();
        let ws = book.add_worksheet();
        ws.write_string(0, 0, "姓名").unwrap();
        ws.write_string(1, 0, "张三").unwrap();
        ws.write_string(1_048_575, 16_383, "x").unwrap();
        let bytes = book.save_to_buffer().unwrap();
        let e = read(&bytes, "contacts").unwrap_err();
        assert_eq!(e.line, 1_048_576, "{e:?}");
        assert!(e.reason.contains("column 16384"), "{e:?}");
        // The same sheet without it reads.
        let mut book = rust_xlsxwriter::Workbook::new();
        let ws = book.add_worksheet();
        ws.write_string(0, 1, "姓名").unwrap();
        ws.write_string(3, 1, "张三").unwrap();
        let s = read(&book.save_to_buffer().unwrap(), "contacts").unwrap();
        assert_eq!(s.headers, vec!["姓名"]);
        assert_eq!((s.rows[0].line, s.rows[0].cells[0].as_str()), (4, "张三"));
    }

    /// Workbooks the fuzzer made (`bench/fuzz`, target `roster`): one on which the XLSX
    /// reader overflows is an error for the file, not a panic of the daemon.
    #[test]
    fn workbooks_the_fuzzer_made_are_errors_or_small_sheets() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/import/fuzz-overflow.xlsx"
        ))
        .unwrap();
        let e = read(&bytes, "contacts").unwrap_err();
        assert_eq!(e.line, 1, "{e:?}");
        assert!(!e.reason.is_empty());
        // One on which it used to fill memory with a sparse sheet's grid for 20 s and more
        // (AFL's "hang"): read cell by cell, it is a small sheet.
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/import/fuzz-huge-grid.xlsx"
        ))
        .unwrap();
        let s = read(&bytes, "contacts").unwrap();
        assert_eq!((s.headers.len(), s.rows.len()), (7, 3));
    }

    #[test]
    fn chinese_and_english_headers_name_the_same_column() {
        let wanted = [
            ("phone", false),
            ("region", true),
            ("backup", false),
            ("name", true),
        ];
        assert_eq!(canonical("手机号", &wanted), Some("phone"));
        assert_eq!(canonical(" 联系电话（多个用；分隔） ", &wanted), Some("phone"));
        assert_eq!(canonical("Phone", &wanted), Some("phone"));
        assert_eq!(canonical("*行政区划代码", &wanted), Some("region"));
        assert_eq!(canonical("AB角", &wanted), Some("backup"));
        assert_eq!(canonical("姓名", &wanted), Some("name"));
        assert_eq!(canonical("备注", &wanted), None);
        // Only the columns a kind asks for are matched.
        assert_eq!(canonical("区划代码", &[("code", true)]), Some("code"));
        assert_eq!(canonical("纬度", &wanted), None);
    }

    #[test]
    fn missing_or_doubled_columns_are_line_one_errors() {
        let s = read("姓名,电话\n甲,1\n".as_bytes(), "contacts").unwrap();
        let e = Cols::resolve(&s.headers, &[("name", true), ("role", true)])
            .err()
            .unwrap();
        assert_eq!((e.line, e.column.as_str()), (1, "role"));
        assert!(e.reason.contains("职务"), "{}", e.reason);
        let s = read("手机,电话\n1,2\n".as_bytes(), "contacts").unwrap();
        let e = Cols::resolve(&s.headers, &[("phone", false)]).err().unwrap();
        assert_eq!(e.column, "电话");
    }

    #[test]
    fn csv_lines_count_from_the_header_and_skip_blank_rows() {
        let s = read("\u{feff}a,b\n1,2\n\n,\n3,\"x\ny\"\n5\n".as_bytes(), "x").unwrap();
        assert_eq!(s.headers, ["a", "b"]);
        let lines: Vec<u64> = s.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 5, 7]);
        assert_eq!(s.rows[1].cells[1], "x\ny");
    }

    #[test]
    fn gbk_csv_is_read() {
        let (bytes, _, _) = encoding_rs::GBK.encode("姓名,手机\n张三,13800138000\n");
        let s = read(&bytes, "contacts").unwrap();
        assert_eq!(s.headers[0], "姓名");
        assert_eq!(s.rows[0].cells[0], "张三");
    }

    #[test]
    fn excel_dates_and_numbers_read_as_typed() {
        assert_eq!(excel_date(46204.333333333), "2026-07-01 08:00");
        assert_eq!(cell_text(&Data::Float(13800138000.0)), "13800138000");
        assert_eq!(cell_text(&Data::Float(22.5)), "22.5");
    }
}
