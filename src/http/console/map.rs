//! The warning's area over the region boundaries, as inline SVG (no tiles, nothing fetched).
//! lon/lat are projected simply (equirectangular, x shrunk by cos(latitude)): a county-sized
//! map is not distorted enough for anyone to misread it.
//!
//! Pure: regions and shapes in, markup out.

use std::collections::BTreeSet;

use geo::{Centroid, MultiPolygon};
use maud::{html, Markup};

use crate::cap::Circle;
use crate::domain::{RegionCode, RegionLevel};
use crate::target::roster::Region;

const W: f64 = 720.0;

struct Proj {
    min_lon: f64,
    max_lat: f64,
    kx: f64,
    k: f64,
}

impl Proj {
    fn xy(&self, lon: f64, lat: f64) -> (f64, f64) {
        (
            (lon - self.min_lon) * self.kx * self.k,
            (self.max_lat - lat) * self.k,
        )
    }
}

fn path(p: &Proj, mp: &MultiPolygon<f64>) -> String {
    let mut d = String::new();
    for poly in mp {
        for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
            for (i, c) in ring.coords().enumerate() {
                let (x, y) = p.xy(c.x, c.y);
                d.push_str(&format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" }));
            }
            d.push('Z');
        }
    }
    d
}

/// `hit`: regions with call-outs (their townships are tinted); `polygons`: CAP rings of
/// (lat, lon); the view covers the counties with call-outs and the warning's shapes.
pub fn map(
    regions: &[Region],
    hit: &BTreeSet<RegionCode>,
    polygons: &[Vec<(f64, f64)>],
    circles: &[Circle],
) -> Markup {
    let counties: BTreeSet<RegionCode> = hit.iter().filter_map(|c| c.county()).collect();
    let shown: Vec<&Region> = regions
        .iter()
        .filter(|r| r.boundary.is_some())
        .filter(|r| match r.level {
            RegionLevel::County => true,
            RegionLevel::Township => r.code.county().is_some_and(|c| counties.contains(&c)),
            _ => false,
        })
        .collect();
    // The frame: the counties with call-outs (all counties when none) and every shape.
    let mut pts: Vec<(f64, f64)> = Vec::new();
    for r in shown.iter().filter(|r| r.level == RegionLevel::County) {
        if counties.is_empty() || counties.contains(&r.code) {
            for poly in r.boundary.iter().flatten() {
                pts.extend(poly.exterior().coords().map(|c| (c.x, c.y)));
            }
        }
    }
    for ring in polygons {
        pts.extend(ring.iter().map(|(lat, lon)| (*lon, *lat)));
    }
    for c in circles {
        let dlat = c.radius_km / 111.0;
        pts.push((c.lon - dlat, c.lat - dlat));
        pts.push((c.lon + dlat, c.lat + dlat));
    }
    if pts.is_empty() {
        return html! {};
    }
    let (mut min_lon, mut max_lon, mut min_lat, mut max_lat) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (lon, lat) in &pts {
        min_lon = min_lon.min(*lon);
        max_lon = max_lon.max(*lon);
        min_lat = min_lat.min(*lat);
        max_lat = max_lat.max(*lat);
    }
    let pad = 0.03 * (max_lon - min_lon).max(max_lat - min_lat).max(0.01);
    let (min_lon, max_lon, min_lat, max_lat) = (min_lon - pad, max_lon + pad, min_lat - pad, max_lat + pad);
    let kx = ((min_lat + max_lat) / 2.0).to_radians().cos();
    let k = W / ((max_lon - min_lon) * kx);
    let p = Proj {
        min_lon,
        max_lat,
        kx,
        k,
    };
    let h = (max_lat - min_lat) * k;
    let towns_hit: BTreeSet<RegionCode> = hit.iter().filter_map(|c| c.township()).collect();
    html! {
        svg.map xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (format!("{h:.0}")) } role="img" {
            @for r in shown.iter().filter(|r| r.level == RegionLevel::Township) {
                @if let Some(b) = &r.boundary {
                    path class={ "town" @if towns_hit.contains(&r.code) { " hit" } } d=(path(&p, b)) { title { (r.name) } }
                }
            }
            @for r in shown.iter().filter(|r| r.level == RegionLevel::County) {
                @if let Some(b) = &r.boundary {
                    path.county fill-opacity="0" d=(path(&p, b)) { title { (r.name) } }
                }
            }
            @for ring in polygons {
                polygon.area points=(ring.iter().map(|(lat, lon)| { let (x, y) = p.xy(*lon, *lat); format!("{x:.1},{y:.1}") }).collect::<Vec<_>>().join(" ")) {}
            }
            @for c in circles {
                @let (x, y) = p.xy(c.lon, c.lat);
                circle.area cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r=(format!("{:.1}", c.radius_km / 111.0 * k)) {}
            }
            @for r in shown.iter().filter(|r| r.level == RegionLevel::County) {
                @if let Some(c) = r.boundary.as_ref().and_then(|b| b.centroid()) {
                    @let (x, y) = p.xy(c.x(), c.y());
                    text x=(format!("{x:.0}")) y=(format!("{y:.0}")) text-anchor="middle" { (r.name) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    #[test]
    fn the_area_and_the_counties_are_drawn_in_the_frame() {
        let sq = |lon: f64, lat: f64| {
            MultiPolygon(vec![
                polygon![(x: lon, y: lat), (x: lon + 0.5, y: lat), (x: lon + 0.5, y: lat + 0.5), (x: lon, y: lat + 0.5)],
            ])
        };
        let region = |code: &str, level, b| Region {
            code: RegionCode::parse(code).unwrap(),
            name: format!("R{code}"),
            level,
            parent: None,
            centroid: None,
            boundary: Some(b),
        };
        let regions = vec![
            region("450921", RegionLevel::County, sq(110.0, 22.0)),
            region("450921100", RegionLevel::Township, sq(110.0, 22.0)),
            region("450922", RegionLevel::County, sq(111.0, 22.0)),
        ];
        let hit = BTreeSet::from([RegionCode::parse("450921100201").unwrap()]);
        let svg = map(
            &regions,
            &hit,
            &[vec![(22.1, 110.1), (22.1, 110.3), (22.3, 110.3), (22.1, 110.1)]],
            &[],
        )
        .into_string();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("class=\"county\"").count(), 2);
        assert!(svg.contains("class=\"town hit\""), "{svg}");
        assert!(svg.contains("<polygon class=\"area\""), "{svg}");
        // Every coordinate of the area lands inside the view box.
        let pts = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        for xy in pts.split(' ') {
            let (x, y) = xy.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((0.0..=W).contains(&x) && y >= 0.0, "{xy}");
        }
    }
}
