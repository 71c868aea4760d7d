//! The report as an XLSX workbook: one sheet per table [`super::tables`] describes, with its
//! column widths, and the time-to-answer chart as a native Excel chart. Like every other
//! format it must not add a column of its own.

use anyhow::Result;

use super::{tables, Cell, Options};
use crate::record::report::Report;

pub(super) fn xlsx<P>(r: &Report<P>, o: &Options) -> Result<Vec<u8>> {
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
