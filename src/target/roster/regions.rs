//! Regions (行政区划): code, name, level, parent, centroid.

use super::sheet::{check_rows, refuse_duplicates, Sheet};
use super::{Parsed, Region};
use crate::domain::{RegionCode, RegionLevel};

const COLUMNS: &[(&str, bool)] = &[
    ("code", true),
    ("name", true),
    ("level", false),
    ("parent", false),
    ("lat", false),
    ("lon", false),
];

/// Level and parent may be left empty: they are read from the code.
pub fn parse_regions(sheet: &Sheet) -> Parsed<Region> {
    let (mut p, mut lines) = check_rows(sheet, COLUMNS, |r| {
        let code = RegionCode::parse(r.required("code")?).map_err(|e| r.err("code", e))?;
        let name = r.required("name")?.to_string();
        let level = match r.get("level") {
            "" => code.level(),
            l => parse_level(l).ok_or_else(|| {
                r.err(
                    "level",
                    format!("{l:?} is not province/city/county/township/village (省/市/县/乡镇/村)"),
                )
            })?,
        };
        let parent = match r.get("parent") {
            "" => None,
            p => match RegionCode::parse(p).map_err(|e| r.err("parent", e))? {
                p if p.contains(&code) && p != code => Some(p),
                p => return Err(r.err("parent", format!("{p} is not an ancestor of {code}"))),
            },
        };
        let centroid =
            match (r.get("lat"), r.get("lon")) {
                ("", "") => None,
                (lat, lon) => Some(lat_lon(lat, lon).ok_or_else(|| {
                    r.err("lat", format!("({lat}, {lon}) is not a latitude/longitude pair"))
                })?),
            };
        Ok(Region {
            code,
            name,
            level,
            parent,
            centroid,
            boundary: None,
        })
    });
    refuse_duplicates(sheet, &mut p, &mut lines, "code", |r| r.code.to_string());
    p.errors.sort_by_key(|e| e.line);
    p
}

/// A WGS 84 (lat, lon) pair in range.
pub(super) fn lat_lon(lat: &str, lon: &str) -> Option<(f64, f64)> {
    let (lat, lon) = (lat.parse::<f64>().ok()?, lon.parse::<f64>().ok()?);
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

fn parse_level(s: &str) -> Option<RegionLevel> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "province" | "省" => RegionLevel::Province,
        "city" | "市" => RegionLevel::City,
        "county" | "县" | "区" | "县级" => RegionLevel::County,
        "township" | "town" | "乡镇" | "镇" | "乡" | "街道" => RegionLevel::Township,
        "village" | "村" | "社区" | "村（社区）" => RegionLevel::Village,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::sheet::read;
    use super::*;

    #[test]
    fn regions_report_bad_rows_with_line_and_column() {
        let csv = "code,name,level,parent,lat,lon\n450921,容县,county,4509,22.8,110.5\n45092x,坏,,,,\n450921104,六王镇,,450921,95,110\n450921104,六王镇,,450921,,\n450921105,黎村镇,,450921,,\n450921105,重复,,450921,,\n";
        let p = parse_regions(&read(csv.as_bytes(), "regions").unwrap());
        assert_eq!(p.rows.len(), 3, "{:?}", p.errors);
        let at: Vec<(u64, &str)> = p.errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(at, [(3, "code"), (4, "lat"), (7, "code")]);
        assert_eq!(p.rows[1].level, RegionLevel::Township);
    }

    #[test]
    fn chinese_headers_and_levels() {
        let csv = "行政区划代码,名称,级别,上级区划,纬度,经度\n450921,容县,县,,22.8,110.5\n450921104,六王镇,乡镇,450921,,\n";
        let p = parse_regions(&read(csv.as_bytes(), "regions").unwrap());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.rows[0].centroid, Some((22.8, 110.5)));
        assert_eq!(p.rows[1].parent.as_ref().unwrap().as_str(), "450921");
    }
}
