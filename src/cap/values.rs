//! Parsers for CAP's textual value types: date-times, polygons, circles, references and
//! numbers. Each returns either a value (plus, where a lenient fix was applied, a note for
//! `Alert::deviations`) or a reason; the caller attaches the element path.

use chrono::{DateTime, FixedOffset, NaiveDateTime};

use super::model::Reference;

/// A parsed CAP date-time; `lenient` says the text was not strict CAP 1.2 form.
pub(crate) struct Time {
    pub at: DateTime<FixedOffset>,
    pub lenient: bool,
}

/// CAP 1.2 wants exactly `YYYY-MM-DDThh:mm:ss±hh:mm`. Feeds also send `Z`, fractions and
/// minute precision (Chinese examples); those are accepted and flagged. A time without an
/// offset is refused: guessing the zone could shift a warning by hours.
pub(crate) fn time(s: &str) -> Result<Time, String> {
    if is_strict_form(s) {
        if let Ok(at) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%:z") {
            return Ok(Time { at, lenient: false });
        }
    }
    let mut t = s.to_string();
    if t.len() > 10 && t.as_bytes()[10] == b' ' {
        t.replace_range(10..11, "T");
    }
    if t.ends_with(['Z', 'z']) {
        t.pop();
        t.push_str("+00:00");
    }
    const FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
    ];
    for f in FORMATS {
        if let Ok(at) = DateTime::parse_from_str(&t, f) {
            return Ok(Time { at, lenient: true });
        }
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(&t, f).is_ok());
    if naive {
        Err(format!(
            "time {s:?} has no UTC offset; refusing to guess the time zone"
        ))
    } else {
        Err(format!(
            "{s:?} is not a CAP date-time (YYYY-MM-DDThh:mm:ss±hh:mm)"
        ))
    }
}

fn is_strict_form(s: &str) -> bool {
    const PATTERN: &[u8] = b"dddd-dd-ddTdd:dd:dd+dd:dd";
    s.len() == PATTERN.len()
        && s.bytes().zip(PATTERN).all(|(b, p)| match p {
            b'd' => b.is_ascii_digit(),
            b'+' => b == b'+' || b == b'-',
            _ => b == *p,
        })
}

/// A finite number (`f64::from_str` also accepts "NaN" and "inf", which no field may hold).
pub(crate) fn number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a number")),
    }
}

/// `lat,lon` with range checks; a swapped pair near Yulin puts "lat" at ~110 and is caught.
fn point(s: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?} is not a lat,lon pair"))?;
    let (lat, lon) = (number(lat)?, number(lon)?);
    if !(-90.0..=90.0).contains(&lat) {
        return Err(format!(
            "latitude {lat} in {s:?} is outside ±90 (lat,lon swapped?)"
        ));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude {lon} in {s:?} is outside ±180"));
    }
    Ok((lat, lon))
}

/// A closed ring of `(lat, lon)` points.
pub(crate) type Ring = Vec<(f64, f64)>;

/// Real polygons have tens to a few hundred points; more is a hostile or broken sender.
pub const MAX_POLYGON_POINTS: usize = 10_000;

/// A polygon ring; the note is `Some` when an unclosed ring was closed.
pub(crate) fn polygon(s: &str) -> Result<(Ring, Option<String>), String> {
    let count = s.split_whitespace().count();
    if count > MAX_POLYGON_POINTS {
        return Err(format!("{count} points, over the limit of {MAX_POLYGON_POINTS}"));
    }
    let mut ring = s.split_whitespace().map(point).collect::<Result<Vec<_>, _>>()?;
    let mut note = None;
    if let (Some(&first), Some(&last)) = (ring.first(), ring.last()) {
        if first != last {
            ring.push(first);
            note = Some("closed an unclosed ring".to_string());
        }
    }
    if ring.len() < 4 {
        return Err(format!(
            "a polygon needs at least 4 points with the first repeated last, found {}",
            ring.len()
        ));
    }
    Ok((ring, note))
}

/// `lat,lon radius` with the radius in km.
pub(crate) fn circle(s: &str) -> Result<(f64, f64, f64), String> {
    let mut parts = s.split_whitespace();
    let (Some(centre), Some(radius), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{s:?} is not \"lat,lon radius\""));
    };
    let (lat, lon) = point(centre)?;
    let radius = number(radius)?;
    if radius < 0.0 {
        return Err(format!("radius {radius} km is negative"));
    }
    Ok((lat, lon, radius))
}

/// Whitespace-separated `sender,identifier,sent` triples. CAP 1.0 had no fixed form, so a
/// bare 1.0 token is kept as an identifier (note returned); later versions must use triples.
pub(crate) fn references(s: &str, bare_allowed: bool) -> Result<(Vec<Reference>, Option<String>), String> {
    let mut out = Vec::new();
    let mut note = None;
    for token in s.split_whitespace() {
        let parts: Vec<&str> = token.split(',').collect();
        match parts.as_slice() {
            [sender, identifier, sent] if ![sender, identifier, sent].iter().any(|p| p.is_empty()) => out
                .push(Reference {
                    sender: sender.to_string(),
                    identifier: identifier.to_string(),
                    sent: sent.to_string(),
                }),
            _ if bare_allowed => {
                out.push(Reference {
                    sender: String::new(),
                    identifier: token.to_string(),
                    sent: String::new(),
                });
                note = Some("kept a CAP 1.0 reference that is not a triple".to_string());
            }
            _ => return Err(format!("{token:?} is not a sender,identifier,sent triple")),
        }
    }
    Ok((out, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_time_is_not_lenient() {
        let t = time("2020-08-13T13:28:51+08:00").unwrap();
        assert!(!t.lenient);
        assert_eq!(t.at.to_rfc3339(), "2020-08-13T13:28:51+08:00");
        assert!(!time("2012-05-02T23:21:04-00:00").unwrap().lenient);
    }

    #[test]
    fn lenient_times_are_flagged() {
        for s in [
            "2020-08-13T13:28+08:00",
            "2020-08-13T05:28:00Z",
            "2020-08-13T13:28:00.123+08:00",
            "2020-08-13 13:28:00+08:00",
        ] {
            let t = time(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(t.lenient, "{s}");
            assert_eq!(t.at.timestamp(), 1597296480, "{s}");
        }
    }

    #[test]
    fn time_without_offset_is_refused() {
        let e = time("2020-08-13T13:28:00").err().unwrap();
        assert!(e.contains("no UTC offset"), "{e}");
        assert!(time("yesterday").is_err());
        assert!(time("2020-02-30T13:28:00+08:00").is_err());
    }

    #[test]
    fn polygon_rules() {
        let (ring, note) = polygon("22.5,110.0 22.7,110.0 22.7,110.2 22.5,110.0").unwrap();
        assert_eq!(ring.len(), 4);
        assert!(note.is_none());
        let (ring, note) = polygon("22.5,110.0 22.7,110.0 22.7,110.2").unwrap();
        assert_eq!(ring.last(), Some(&(22.5, 110.0)));
        assert!(note.is_some());
        assert!(polygon("22.5,110.0 22.7,110.2 22.5,110.0").is_err());
        assert!(polygon("110.0,22.5 110.0,22.7 110.2,22.7 110.0,22.5")
            .err()
            .unwrap()
            .contains("swapped"));
        assert!(polygon("22.5,190 22.7,110 22.7,110.2 22.5,190").is_err());
        assert!(polygon("NaN,1 1,1 1,2 NaN,1").is_err());
        assert!(polygon("22.5;110 1,1 1,2 22.5;110").is_err());
    }

    #[test]
    fn circle_rules() {
        assert_eq!(
            circle("-35.3888,147.0598 25.0").unwrap(),
            (-35.3888, 147.0598, 25.0)
        );
        assert_eq!(circle("38.820,-122.812 0.0").unwrap().2, 0.0);
        assert!(circle("38.8,-122.8 -1").is_err());
        assert!(circle("38.8,-122.8").is_err());
    }

    #[test]
    fn reference_triples() {
        let (r, note) = references("a@b,ID1,2012-05-02T21:45:05-00:00 a@b,ID2,x", false).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].identifier, "ID2");
        assert!(note.is_none());
        assert!(references("ID1", false).is_err());
        assert!(references("ID1", true).unwrap().1.is_some());
    }
}
