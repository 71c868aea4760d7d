//! The roster importers: the first byte picks the kind (regions, contacts, risk points, duty
//! rosters, boundaries), the rest is the file (CSV, XLSX or GeoJSON) read and checked the way
//! `jiaoying import` does before it writes anything. Regions the file itself defines count as
//! known, so that the other kinds get past the reference checks into their own rows.
use jiaoying::target::roster::{self, sheet, Known};

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        let Some((&pick, file)) = data.split_first() else {
            return;
        };
        if pick % 5 == 4 {
            let _ = roster::parse_boundaries(file);
            return;
        }
        let kind = ["regions", "contacts", "risk-points", "rosters"][pick as usize % 5];
        let Ok(s) = sheet::read(file, kind) else {
            return;
        };
        let mut known = Known::default();
        known.regions.insert("450921".into());
        known.contacts.insert("c-1".into());
        for r in roster::parse_regions(&s).rows {
            known.regions.insert(r.code.as_str().to_string());
        }
        match kind {
            "contacts" => drop(roster::parse_contacts(&s, &known)),
            "risk-points" => drop(roster::parse_risk_points(&s, &known)),
            "rosters" => drop(roster::parse_rosters(&s, &known)),
            _ => {}
        }
    });
}
