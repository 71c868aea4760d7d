//! Caps on what one CAP document may hold: the length of every text field and the number of
//! `<alert>`s, `<info>`s, `<area>`s and geocodes. Config-free on purpose: they guard the parser
//! and everything after it (the planner walks every area of every info; SMS templates, the
//! answer page and the ledger copy the texts), so a hostile or broken sender must meet the same
//! wall on every installation. The values are far above any real warning (the CMA, NWS,
//! MeteoAlarm and Pelmorex messages of the corpus use a small fraction of each) and far below
//! what would hurt: the whole document is already capped at `MAX_BYTES`.

/// `<alert>`s in one document (an `<alerts>` list, EDXL-DE, a feed with embedded alerts): a
/// province's batch is tens.
pub const MAX_ALERTS: usize = 100;
/// `<info>` blocks per alert: one per language and event; CAP's own examples use two or three.
pub const MAX_INFOS: usize = 16;
/// `<area>` blocks per info: a warning names counties or townships, at most a few hundred.
pub const MAX_AREAS: usize = 500;
/// `<geocode>`s per area (GB2260 codes of every township of a prefecture fit).
pub const MAX_GEOCODES: usize = 2_000;
/// `<polygon>`s and `<circle>`s per area (each polygon's points are capped in `values`).
pub const MAX_SHAPES: usize = 100;
/// `<resource>`s per info.
pub const MAX_RESOURCES: usize = 32;

/// The longest text, in characters, the element `name` may carry. Descriptions and
/// instructions are the long ones (a CMA description is a few hundred characters); a headline
/// is meant for a line (CAP suggests 160); identifiers go into references and keys.
pub fn max_chars(name: &str) -> usize {
    match name {
        "identifier" | "sender" | "sent" | "status" | "msgType" | "scope" | "language" | "category"
        | "urgency" | "severity" | "certainty" | "responseType" | "effective" | "onset" | "expires"
        | "valueName" | "mimeType" | "size" | "digest" | "altitude" | "ceiling" => 256,
        "headline" => 1_000,
        "event" | "senderName" | "source" | "code" | "contact" | "audience" | "web" | "uri"
        | "resourceDesc" | "value" => 2_000,
        "areaDesc" | "note" | "restriction" | "incidents" => 10_000,
        "description" | "instruction" => 20_000,
        // Embedded content: capped in bytes by `MAX_DEREF_BYTES` instead.
        "derefUri" => usize::MAX,
        // Lists of recipients or of referenced messages.
        "addresses" | "references" => 100_000,
        _ => 10_000,
    }
}

#[cfg(test)]
mod tests {
    //! Issue 12, CAP caps: on b78958e a description of any length, and any number of infos,
    //! areas or alerts per document, were taken as they came.
    use super::*;

    const DEMO: &str = include_str!("../../config/demo/rainstorm-red.cap.xml");

    fn with(from: &str, to: &str) -> Vec<u8> {
        assert!(DEMO.contains(from), "{from}");
        DEMO.replacen(from, to, 1).into_bytes()
    }

    #[test]
    fn the_demo_is_well_inside_every_cap() {
        crate::cap::parse(DEMO.as_bytes()).unwrap();
    }

    #[test]
    fn a_text_over_its_cap_is_refused_naming_the_field() {
        let long = "暴".repeat(max_chars("description") + 1);
        let e = crate::cap::parse(&with("<description>", &format!("<description>{long}"))).unwrap_err();
        assert_eq!(e.path, "alert/info[0]/description", "{e}");
        assert!(e.to_string().contains("over the limit of 20000"), "{e}");
        // Exactly at the cap is fine: the count is in characters, not bytes.
        let at = "暴".repeat(max_chars("headline"));
        let xml = String::from_utf8(with("<headline>", "<headline>")).unwrap();
        let start = xml.find("<headline>").unwrap() + "<headline>".len();
        let end = xml.find("</headline>").unwrap();
        let ok = format!("{}{at}{}", &xml[..start], &xml[end..]);
        crate::cap::parse(ok.as_bytes()).unwrap();
        let over = format!("{}{at}x{}", &xml[..start], &xml[end..]);
        assert_eq!(
            crate::cap::parse(over.as_bytes()).unwrap_err().path,
            "alert/info[0]/headline"
        );
        let e =
            crate::cap::parse(&with("<areaDesc>", &format!("<areaDesc>{}", "x".repeat(10_001)))).unwrap_err();
        assert_eq!(e.path, "alert/info[0]/area[0]/areaDesc", "{e}");
        let e = crate::cap::parse(&with("<identifier>", &format!("<identifier>{}", "x".repeat(300))))
            .unwrap_err();
        assert_eq!(e.path, "alert/identifier", "{e}");
    }

    #[test]
    fn too_many_infos_areas_or_alerts_are_refused() {
        let start = DEMO.find("<area>").unwrap();
        let end = DEMO.find("</area>").unwrap() + "</area>".len();
        let area = &DEMO[start..end];
        let many = area.repeat(MAX_AREAS + 1);
        let xml = format!("{}{many}{}", &DEMO[..start], &DEMO[end..]);
        let e = crate::cap::parse(xml.as_bytes()).unwrap_err();
        assert_eq!(e.path, "alert/info[0]/area", "{e}");
        assert!(e.to_string().contains("over the limit of 500"), "{e}");

        let start = DEMO.find("<info>").unwrap();
        let end = DEMO.find("</info>").unwrap() + "</info>".len();
        let many = DEMO[start..end].repeat(MAX_INFOS + 1);
        let xml = format!("{}{many}{}", &DEMO[..start], &DEMO[end..]);
        assert_eq!(crate::cap::parse(xml.as_bytes()).unwrap_err().path, "alert/info");

        let body = &DEMO[DEMO.find("<alert").unwrap()..];
        let list = format!("<alerts>{}</alerts>", body.repeat(MAX_ALERTS + 1));
        let e = crate::cap::extract(list.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("over the limit of 100"), "{e}");
        let list = format!("<alerts>{}</alerts>", body.repeat(3));
        assert_eq!(crate::cap::extract(list.as_bytes()).unwrap().len(), 3);
    }
}
