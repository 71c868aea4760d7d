//! The matching bench (`bench/match`): 40,000 synthetic village boundaries and 100,000 risk
//! points, generated deterministically over a Guangxi-sized box; builds the index, then times
//! matching one warning polygon, one circle and one province's division code (regions and risk
//! points). One JSON line per
//! figure on stdout.

use std::time::Instant;

use geo::{Coord, LineString, MultiPolygon, Polygon};
use jiaoying::cap::{Area, Circle, Info};
use jiaoying::domain::RegionCode;
use jiaoying::target::roster::{Region, RiskPoint};
use jiaoying::target::targeting::Index;

const COLS: usize = 200;
const ROWS: usize = 200;
const POINTS: usize = 100_000;
const REPS: usize = 50;
/// The box: 104.5–112.0 E, 21.0–26.4 N.
const LON0: f64 = 104.5;
const LAT0: f64 = 21.0;
const DLON: f64 = 7.5 / COLS as f64;
const DLAT: f64 = 5.4 / ROWS as f64;
/// Vertices per village boundary (real ones have more; the R-tree keeps most out of the test).
const VERTICES: usize = 24;

/// A fixed-seed xorshift: the same roster on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Village (row, col): 10×10 villages a township, 10 townships a county.
fn village_code(r: usize, c: usize) -> RegionCode {
    let township = (r / 10) * (COLS / 10) + c / 10;
    let county = township / 10;
    let code = format!(
        "45{:02}{:02}{:03}{:03}",
        county / 10 + 1,
        county % 10 + 21,
        township % 10 + 100,
        (r % 10) * 10 + c % 10 + 200
    );
    RegionCode::parse(&code).expect("a generated code")
}

fn roster(rng: &mut Rng) -> (Vec<Region>, Vec<RiskPoint>) {
    let mut regions = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in 0..ROWS {
        for c in 0..COLS {
            let code = village_code(r, c);
            for anc in [code.county(), code.township()].into_iter().flatten() {
                if seen.insert(anc.clone()) {
                    regions.push(Region {
                        level: anc.level(),
                        name: anc.to_string(),
                        parent: None,
                        centroid: None,
                        boundary: None,
                        code: anc,
                    });
                }
            }
            let (clon, clat) = (LON0 + (c as f64 + 0.5) * DLON, LAT0 + (r as f64 + 0.5) * DLAT);
            // A jittered ring around the cell centre, slightly overlapping its neighbours.
            let ring: Vec<Coord<f64>> = (0..=VERTICES)
                .map(|k| {
                    let a = (k % VERTICES) as f64 * std::f64::consts::TAU / VERTICES as f64;
                    let f = if k == VERTICES { 1.0 } else { 0.0 };
                    let j = 0.55 + 0.1 * rng.next() * (1.0 - f);
                    Coord {
                        x: clon + DLON * j * a.cos(),
                        y: clat + DLAT * j * a.sin(),
                    }
                })
                .collect();
            let mut ring = ring;
            ring[VERTICES] = ring[0];
            regions.push(Region {
                level: code.level(),
                name: code.to_string(),
                parent: None,
                centroid: Some((clat, clon)),
                boundary: Some(MultiPolygon::new(vec![Polygon::new(
                    LineString::new(ring),
                    vec![],
                )])),
                code,
            });
        }
    }
    let kinds = ["reservoir", "flash_flood", "geohazard", "waterlogging", "other"];
    let points = (0..POINTS)
        .map(|i| {
            let (x, y) = (rng.next(), rng.next());
            let (c, r) = ((x * COLS as f64) as usize, (y * ROWS as f64) as usize);
            RiskPoint {
                id: i as i64 + 1,
                key: format!("RP{i}"),
                kind: kinds[i % kinds.len()].into(),
                name: String::new(),
                lat: LAT0 + y * ROWS as f64 * DLAT,
                lon: LON0 + x * COLS as f64 * DLON,
                region: village_code(r, c),
                people: 10,
                monitors: vec![format!("m{i}")],
            }
        })
        .collect();
    (regions, points)
}

fn info(area: Area) -> Info {
    let mut i: Info = serde_json::from_value(serde_json::json!({
        "language": "zh-CN", "categories": ["Met"], "event": "暴雨红色预警", "urgency": "Immediate",
        "severity": "Extreme", "certainty": "Likely", "event_codes": [], "effective": null, "onset": null,
        "expires": null, "sender_name": null, "headline": null, "description": null, "instruction": null,
        "web": null, "contact": null, "parameters": [], "areas": []
    }))
    .expect("a literal info");
    i.areas = vec![area];
    i
}

/// A 40-vertex irregular polygon about 1.2° × 0.9° (three or four counties), as (lat, lon).
fn warning_polygon() -> Vec<(f64, f64)> {
    let (clat, clon) = (23.7, 108.2);
    let mut pts: Vec<(f64, f64)> = (0..40)
        .map(|k| {
            let a = k as f64 * std::f64::consts::TAU / 40.0;
            let r = 1.0 + 0.25 * (3.0 * a).sin();
            (clat + 0.45 * r * a.sin(), clon + 0.6 * r * a.cos())
        })
        .collect();
    pts.push(pts[0]);
    pts
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(index: &Index, info: &Info) -> (f64, f64, usize, usize) {
    let mut times = Vec::with_capacity(REPS);
    let mut counts = (0, 0);
    for _ in 0..REPS {
        let t = Instant::now();
        let regions = index.threatened(info);
        let points = index.threatened_points(info, "rainstorm");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        counts = (regions.len(), points.len());
    }
    let max = times.iter().cloned().fold(0.0, f64::max);
    (median_ms(times), max, counts.0, counts.1)
}

fn main() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (regions, points) = roster(&mut rng);
    let villages = regions.iter().filter(|r| r.boundary.is_some()).count();
    let (n_regions, n_points) = (regions.len(), points.len());
    let t = Instant::now();
    let index = Index::build(regions, points);
    let build_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({"figure": "match_index_build_ms", "value": (build_ms * 10.0).round() / 10.0,
            "boundaries": villages, "regions": n_regions, "risk_points": n_points})
    );
    let polygon = info(Area {
        desc: "bench polygon".into(),
        polygons: vec![warning_polygon()],
        circles: vec![],
        geocodes: vec![],
        altitude: None,
        ceiling: None,
    });
    let circle = info(Area {
        desc: "bench circle".into(),
        polygons: vec![],
        circles: vec![Circle {
            lat: 23.7,
            lon: 108.2,
            radius_km: 50.0,
        }],
        geocodes: vec![],
        altitude: None,
        ceiling: None,
    });
    // A whole province by its division code (how most Chinese warnings name their area):
    // every region of the roster under 45, no geometry.
    let geocode = info(Area {
        desc: "bench province".into(),
        polygons: vec![],
        circles: vec![],
        geocodes: vec![("GB2260".into(), "450000".into())],
        altitude: None,
        ceiling: None,
    });
    for (name, info) in [
        ("match_polygon_ms", &polygon),
        ("match_circle_ms", &circle),
        ("match_geocode_ms", &geocode),
    ] {
        let (median, max, regions, points) = time(&index, info);
        println!(
            "{}",
            serde_json::json!({"figure": name, "median": (median * 100.0).round() / 100.0,
                "max": (max * 100.0).round() / 100.0, "repetitions": REPS,
                "threatened_regions": regions, "threatened_risk_points": points})
        );
    }
}
