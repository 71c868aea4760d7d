//! Which regions and risk points a warning threatens (pure). An area matches regions three ways:
//! - a geocode naming a division code at any level (valueName such as `GB2260`): that region
//!   and everything under it (prefix semantics of `RegionCode`);
//! - a polygon or circle: every leaf region (one without children in the roster) whose boundary
//!   meets the shape (a real intersection, not the centroid), or, lacking a boundary, whose
//!   centroid lies inside it;
//! - then the ancestors of each threatened region, down from county level, are threatened too
//!   (the township leader and county duty officer answer for their villages).
//!
//! Risk points inside a polygon or circle are threatened, or, for an area given only by
//! geocodes, those in the regions it names; either way only the kinds the hazard threatens
//! ([`risk_kinds`]). [`Index`] holds R-trees over leaf boundaries and risk points, built once
//! per roster load and queried per warning.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};

use geo::{BoundingRect, Contains, Coord, Intersects, LineString, Point, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};
use serde::Serialize;

use crate::cap::{Area, Info};
use crate::domain::{RegionCode, RegionLevel};
use crate::target::roster::{Region, RiskPoint};

/// Geocode schemes that carry Chinese division codes; others (SAME, FIPS, UGC…) are ignored
/// so that a US county number is never read as a Chinese county.
const DIVISION_SCHEMES: &[&str] = &[
    "gb2260",
    "gb/t 2260",
    "gb/t2260",
    "adcode",
    "areacode",
    "admincode",
    "行政区划代码",
    "区划代码",
    "statscode",
];

/// Risk-point kinds a hazard threatens (README "Policies"). Hazards not listed threaten none.
pub fn risk_kinds(hazard: &str) -> &'static [&'static str] {
    const FLOOD_FAMILY: &[&str] = &["flash_flood", "geohazard", "reservoir", "waterlogging"];
    match hazard {
        "rainstorm" | "flash_flood" | "flood" => FLOOD_FAMILY,
        "geohazard" => &["geohazard"],
        "waterlogging" => &["waterlogging"],
        "typhoon" => &["flash_flood", "geohazard", "reservoir", "waterlogging", "other"],
        _ => &[],
    }
}

/// Why a region (or risk point) is threatened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Via {
    /// Boxed: a threatened set holds a `Via` per region (50,000 for a county's villages),
    /// nearly all `Within`, and an inline `Geocode` made every one of them 56 bytes, not 16.
    Geocode(Box<Named>),
    Polygon {
        area: usize,
    },
    Circle {
        area: usize,
    },
    /// Under a region named by a geocode.
    Within {
        code: RegionCode,
    },
    /// Above a threatened region.
    Above {
        code: RegionCode,
    },
}

impl Via {
    pub fn describe(&self) -> String {
        match self {
            Via::Geocode(g) => format!("区域{} 区划代码 {} ({})", g.area, g.value, g.scheme),
            Via::Polygon { area } => format!("区域{area} 多边形覆盖"),
            Via::Circle { area } => format!("区域{area} 圆形范围覆盖"),
            Via::Within { code } => format!("属 {code}"),
            Via::Above { code } => format!("下辖 {code} 受威胁"),
        }
    }

    /// Named or covered by the warning itself (not only under or above such a region).
    pub fn direct(&self) -> bool {
        matches!(self, Via::Geocode(_) | Via::Polygon { .. } | Via::Circle { .. })
    }
}

/// A region named by a geocode of area `area` (its index in the warning).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Named {
    pub area: usize,
    pub scheme: String,
    pub value: String,
}

/// Threatened region codes, each with its first reason.
pub type Threatened = BTreeMap<RegionCode, Via>;

/// The first regions of a threatened set ([`Index::threatened_first`]).
#[derive(Debug)]
pub struct First {
    pub threatened: Threatened,
    /// Nothing was left out.
    pub whole: bool,
    /// [`direct_levels`] of the whole set.
    pub levels: Vec<RegionLevel>,
}

/// The levels of the regions a warning names or covers itself (for `policy.region_levels`).
pub fn direct_levels(t: &Threatened) -> Vec<RegionLevel> {
    let mut out: Vec<RegionLevel> = t
        .iter()
        .filter(|(_, v)| v.direct())
        .map(|(c, _)| c.level())
        .collect();
    out.sort();
    out.dedup();
    out
}

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;
type PointEntry = GeomWithData<[f64; 2], usize>;

/// Regions and risk points with R-trees over leaf regions (boundary envelope, or the centroid)
/// and risk points; coordinates are [lon, lat].
pub struct Index {
    /// Sorted by code, so that a geocode's subtree is one range.
    regions: Vec<Region>,
    leaves: RTree<Entry>,
    /// Sorted by region code, like `regions`.
    points: Vec<RiskPoint>,
    point_tree: RTree<PointEntry>,
}

impl Index {
    /// Takes the roster's rows (a daemon's roster is tens of thousands: not copied).
    pub fn build(mut regions: Vec<Region>, mut points: Vec<RiskPoint>) -> Index {
        regions.sort_by(|a, b| a.code.cmp(&b.code));
        // A region has children when it is the parent, or a code prefix, of another (linear:
        // every region names its ancestors).
        let mut inner: HashSet<&str> = regions
            .iter()
            .filter_map(|r| r.parent.as_ref().map(|p| p.as_str()))
            .collect();
        for r in &regions {
            let code = r.code.as_str();
            inner.extend(
                [2, 4, 6, 9]
                    .into_iter()
                    .filter(|&n| n < code.len())
                    .map(|n| &code[..n]),
            );
        }
        let leaves: Vec<Entry> = regions
            .iter()
            .enumerate()
            .filter(|(_, r)| !inner.contains(r.code.as_str()))
            .filter_map(|(i, r)| {
                let rect = match (&r.boundary, r.centroid) {
                    (Some(b), _) => b
                        .bounding_rect()
                        .map(|b| ([b.min().x, b.min().y], [b.max().x, b.max().y]))?,
                    (None, Some((lat, lon))) => ([lon, lat], [lon, lat]),
                    (None, None) => return None,
                };
                Some(GeomWithData::new(Rectangle::from_corners(rect.0, rect.1), i))
            })
            .collect();
        points.sort_by(|a, b| (&a.region, a.id).cmp(&(&b.region, b.id)));
        let point_tree = RTree::bulk_load(
            points
                .iter()
                .enumerate()
                .map(|(i, p)| GeomWithData::new([p.lon, p.lat], i))
                .collect(),
        );
        Index {
            regions,
            leaves: RTree::bulk_load(leaves),
            points,
            point_tree,
        }
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn risk_points(&self) -> &[RiskPoint] {
        &self.points
    }

    /// The name of a region of the index.
    pub fn name(&self, code: &RegionCode) -> Option<&str> {
        let i = self.regions.binary_search_by(|r| r.code.cmp(code)).ok()?;
        Some(&self.regions[i].name)
    }

    /// Regions whose code starts with `code` (the region itself and everything under it).
    fn subtree(&self, code: &RegionCode) -> &[Region] {
        let from = self.regions.partition_point(|r| r.code < *code);
        let n = self.regions[from..]
            .iter()
            .take_while(|r| code.contains(&r.code))
            .count();
        &self.regions[from..from + n]
    }

    pub fn threatened(&self, info: &Info) -> Threatened {
        let mut out = Threatened::new();
        for (i, area) in info.areas.iter().enumerate() {
            self.named(&mut out, i, area, usize::MAX);
            for (shape, via) in shapes(i, area) {
                let Some(env) = envelope(&shape) else { continue };
                let edges: Vec<geo::Rect<f64>> =
                    shape.exterior().lines().map(|l| l.bounding_rect()).collect();
                for e in self.leaves.locate_in_envelope_intersecting(&env) {
                    let r = &self.regions[e.data];
                    let hit = match (&r.boundary, r.centroid) {
                        // A vertex inside the shape settles it cheaply (most leaves of a
                        // large area). Otherwise the outlines can only meet where one of the
                        // shape's edges comes near the boundary; a boundary no edge comes
                        // near lies wholly outside, and only the rest pay the full test.
                        (Some(b), _) => {
                            first_vertex(b).is_some_and(|v| shape.intersects(&v))
                                || (near_an_edge(&edges, b) && b.intersects(&shape))
                        }
                        (None, Some((lat, lon))) => shape.contains(&Point::new(lon, lat)),
                        (None, None) => false,
                    };
                    if hit {
                        out.entry(r.code.clone()).or_insert_with(|| via.clone());
                    }
                }
            }
        }
        add_ancestors(&mut out);
        out
    }

    /// The first `n` entries of [`Index::threatened`] (in code order), for a warning whose
    /// areas are given by division codes only, with whether that is the whole set: the first
    /// people of a province-wide warning are decided from a few hundred regions, not from the
    /// tens of thousands under it. `None` when an area has a polygon or a circle (the tree finds
    /// their regions in no order: the whole set is built).
    ///
    /// Why it is the same: the set is the union of the named codes and their subtrees (each a
    /// sorted range of the index). A code among the union's first `n` is among the first `n`
    /// of every range holding it, so it is taken, and by the same area and code as when the
    /// ranges are taken whole; an ancestor among the first `n` sorts just before the first
    /// code under it, which is then among its range's first `n` too.
    pub fn threatened_first(&self, info: &Info, n: usize) -> Option<First> {
        if (info.areas.iter().enumerate()).any(|(i, a)| !shapes(i, a).is_empty()) {
            return None;
        }
        let mut out = Threatened::new();
        let mut cut = false;
        for (i, area) in info.areas.iter().enumerate() {
            cut |= self.named(&mut out, i, area, n);
        }
        add_ancestors(&mut out);
        let whole = !cut && out.len() <= n;
        while out.len() > n {
            out.pop_last();
        }
        Some(First {
            threatened: out,
            whole,
            levels: self.named_levels(info),
        })
    }

    /// [`direct_levels`] of the whole set, from the named codes alone: a code is named
    /// directly unless an earlier named code holds it and the roster has it (then it is
    /// taken as under that code).
    fn named_levels(&self, info: &Info) -> Vec<RegionLevel> {
        let mut named: Vec<RegionCode> = Vec::new();
        let mut out = Vec::new();
        for area in &info.areas {
            for (code, _, _) in division_codes(area) {
                let under = named.iter().any(|c| *c != code && c.contains(&code));
                if !(under && self.name(&code).is_some()) {
                    out.push(code.level());
                }
                named.push(code);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Adds the regions area `i` names by division code and the first `per_code` regions
    /// under each (in code order); true when a subtree was cut short.
    fn named(&self, out: &mut Threatened, i: usize, area: &Area, per_code: usize) -> bool {
        let mut cut = false;
        for (code, scheme, value) in division_codes(area) {
            out.entry(code.clone()).or_insert_with(|| {
                Via::Geocode(Box::new(Named {
                    area: i,
                    scheme: scheme.to_string(),
                    value: value.to_string(),
                }))
            });
            let mut under = self.subtree(&code).iter().filter(|r| r.code != code);
            for r in under.by_ref().take(per_code) {
                out.entry(r.code.clone())
                    .or_insert_with(|| Via::Within { code: code.clone() });
            }
            cut |= under.next().is_some();
        }
        cut
    }

    /// Risk points of the kinds `hazard` threatens inside the warning's polygons and circles,
    /// or, for an area given only by geocodes, in the regions it names; each with its reason.
    pub fn threatened_points(&self, info: &Info, hazard: &str) -> Vec<(&RiskPoint, Via)> {
        let kinds = risk_kinds(hazard);
        if kinds.is_empty() {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        let mut out: Vec<(usize, Via)> = Vec::new();
        let mut take = |i: usize, via: &Via, out: &mut Vec<(usize, Via)>| {
            if kinds.contains(&self.points[i].kind.as_str()) && seen.insert(i) {
                out.push((i, via.clone()));
            }
        };
        for (a, area) in info.areas.iter().enumerate() {
            let shapes = shapes(a, area);
            if shapes.is_empty() {
                for (code, _, _) in division_codes(area) {
                    let from = self.points.partition_point(|p| p.region < code);
                    let via = Via::Within { code: code.clone() };
                    for i in (from..self.points.len()).take_while(|&i| code.contains(&self.points[i].region))
                    {
                        take(i, &via, &mut out);
                    }
                }
            }
            for (shape, via) in shapes {
                let Some(env) = envelope(&shape) else { continue };
                for e in self.point_tree.locate_in_envelope(&env) {
                    let [lon, lat] = *e.geom();
                    if shape.intersects(&Point::new(lon, lat)) {
                        take(e.data, &via, &mut out);
                    }
                }
            }
        }
        // In roster order whatever the tree's order, so that plans are reproducible.
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(i, via)| (&self.points[i], via)).collect()
    }
}

/// The regions a warning threatens (builds an index for this one call; ingest and preview
/// build one per roster load).
pub fn threatened(info: &Info, regions: &[Region]) -> Threatened {
    Index::build(regions.to_vec(), Vec::new()).threatened(info)
}

/// Ancestors from county level down, each with the first code (in code order) it is above.
/// The codes come in order, so a township's villages follow one another: each county and
/// township prefix is looked at once, not once for each village under it (50,000 villages:
/// two allocations and two lookups each, a third of the matching).
fn add_ancestors(out: &mut Threatened) {
    let mut above: Vec<(RegionCode, RegionCode)> = Vec::new();
    let mut last = ["", ""];
    for code in out.keys() {
        let s = code.as_str();
        for (i, len) in [6usize, 9].into_iter().enumerate() {
            if s.len() <= len || last[i] == &s[..len] {
                continue;
            }
            last[i] = &s[..len];
            if !out.contains_key(&s[..len]) {
                above.push((RegionCode::prefix(code, len), code.clone()));
            }
        }
    }
    for (anc, code) in above {
        out.entry(anc).or_insert(Via::Above { code });
    }
}

/// Does any edge's bounding box overlap the boundary's? (CAP polygons and circles are single
/// rings without holes, so the edges are the whole outline.)
fn near_an_edge(edges: &[geo::Rect<f64>], b: &geo::MultiPolygon<f64>) -> bool {
    let Some(r) = b.bounding_rect() else { return false };
    edges.iter().any(|e| {
        e.min().x <= r.max().x && r.min().x <= e.max().x && e.min().y <= r.max().y && r.min().y <= e.max().y
    })
}

fn first_vertex(b: &geo::MultiPolygon<f64>) -> Option<Point<f64>> {
    b.0.first()
        .and_then(|p| p.exterior().0.first())
        .map(|c| Point::from(*c))
}

/// The area's Chinese division codes: (code, scheme, value).
fn division_codes(area: &Area) -> Vec<(RegionCode, &str, &str)> {
    area.geocodes
        .iter()
        .filter(|(scheme, _)| DIVISION_SCHEMES.contains(&scheme.trim().to_lowercase().as_str()))
        .filter_map(|(scheme, value)| Some((RegionCode::parse(value).ok()?, scheme.as_str(), value.as_str())))
        .collect()
}

fn shapes(i: usize, area: &Area) -> Vec<(Polygon<f64>, Via)> {
    area.polygons
        .iter()
        .map(|p| (polygon(p), Via::Polygon { area: i }))
        .chain(
            area.circles
                .iter()
                .map(|c| (circle(c.lat, c.lon, c.radius_km), Via::Circle { area: i })),
        )
        .collect()
}

fn envelope(shape: &Polygon<f64>) -> Option<AABB<[f64; 2]>> {
    let b = shape.bounding_rect()?;
    Some(AABB::from_corners([b.min().x, b.min().y], [b.max().x, b.max().y]))
}

/// CAP pairs are (lat, lon); geo wants x = lon, y = lat.
pub fn polygon(points: &[(f64, f64)]) -> Polygon<f64> {
    Polygon::new(
        LineString::new(
            points
                .iter()
                .map(|&(lat, lon)| Coord { x: lon, y: lat })
                .collect(),
        ),
        vec![],
    )
}

/// A circle as a 48-gon on the sphere's local tangent plane: good to well under 1% at the
/// radii warnings use.
pub fn circle(lat: f64, lon: f64, radius_km: f64) -> Polygon<f64> {
    const KM_PER_DEG: f64 = 111.32;
    let dlat = radius_km.max(0.001) / KM_PER_DEG;
    let dlon = dlat / lat.to_radians().cos().max(0.01);
    let ring: Vec<Coord<f64>> = (0..=48)
        .map(|k| {
            let a = (k % 48) as f64 * std::f64::consts::TAU / 48.0;
            Coord {
                x: lon + dlon * a.cos(),
                y: lat + dlat * a.sin(),
            }
        })
        .collect();
    Polygon::new(LineString::new(ring), vec![])
}

/// Names of regions by code: the roster's index, or a map of its names (`respond`).
pub trait Names {
    fn name(&self, code: &RegionCode) -> Option<&str>;
}

impl Names for Index {
    fn name(&self, code: &RegionCode) -> Option<&str> {
        Index::name(self, code)
    }
}

impl Names for BTreeMap<RegionCode, String> {
    fn name(&self, code: &RegionCode) -> Option<&str> {
        self.get(code).map(String::as_str)
    }
}

/// "容县六王镇东村": the names from county down, for messages.
pub fn place_name(code: &RegionCode, names: &dyn Names) -> String {
    let mut parts = Vec::new();
    for prefix in [code.county(), code.township(), Some(code.clone())]
        .into_iter()
        .flatten()
    {
        if let Some(n) = names.name(&prefix) {
            if parts.last() != Some(&n) {
                parts.push(n);
            }
        }
    }
    if parts.is_empty() {
        code.to_string()
    } else {
        parts.concat()
    }
}
