//! Raw bytes → XML text that is safe to hand to roxmltree: size cap, BOM, the encoding
//! named in the XML declaration, and a nesting-depth pre-scan. Only UTF-8, US-ASCII and
//! ISO-8859-1 are decoded here; anything else is refused by name so the operator sees why
//! (GBK support is a later issue).

use std::borrow::Cow;

use super::model::CapError;

/// Larger than any real CAP seen (the corpus tops out near 600 KB with embedded audio).
pub const MAX_BYTES: usize = 5 * 1024 * 1024;

const PATH: &str = "xml";

pub(crate) fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, CapError> {
    if bytes.len() > MAX_BYTES {
        return Err(CapError::new(
            PATH,
            format!(
                "message is {} bytes, over the {} byte limit",
                bytes.len(),
                MAX_BYTES
            ),
        ));
    }
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        return Err(CapError::new(PATH, "encoding UTF-16 not supported yet"));
    }
    // A UTF-8 BOM settles the encoding whatever the declaration says.
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8(rest);
    }
    let Some(name) = declared_encoding(bytes) else {
        return utf8(bytes);
    };
    match name.to_ascii_uppercase().replace('_', "-").as_str() {
        "UTF-8" | "UTF8" | "US-ASCII" | "ASCII" => utf8(bytes),
        "ISO-8859-1" | "ISO8859-1" | "LATIN1" | "LATIN-1" | "L1" | "CP819" | "IBM819" => {
            // Every byte is the code point of the same value in ISO-8859-1.
            Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()))
        }
        _ => Err(CapError::new(PATH, format!("encoding {name} not supported yet"))),
    }
}

/// True when start tags nest deeper than `limit`. Runs before roxmltree because its parser
/// recurses per element level (a few thousand levels overflow a thread's stack). Comments,
/// CDATA, PIs and declarations are skipped; quoted attribute values may hold `>`. Up to the
/// first syntax error roxmltree would report, the count equals the real element depth.
pub(crate) fn nests_deeper_than(text: &str, limit: usize) -> bool {
    let b = text.as_bytes();
    let skip_to = |from: usize, end: &[u8]| -> usize {
        b[from..]
            .windows(end.len())
            .position(|w| w == end)
            .map_or(b.len(), |p| from + p + end.len())
    };
    let (mut i, mut depth) = (0, 0usize);
    while let Some(p) = b[i..].iter().position(|&c| c == b'<') {
        i += p;
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            i = skip_to(i + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = skip_to(i + 9, b"]]>");
        } else if rest.starts_with(b"<?") {
            i = skip_to(i + 2, b"?>");
        } else if rest.starts_with(b"<!") || rest.starts_with(b"</") {
            depth = depth.saturating_sub(usize::from(rest[1] == b'/'));
            i = skip_to(i + 2, b">");
        } else {
            depth += 1;
            if depth > limit {
                return true;
            }
            // Find the tag's closing '>' outside quotes; "/>" closes the element again.
            let mut quote = None;
            let mut j = i + 1;
            while j < b.len() {
                match (quote, b[j]) {
                    (None, q @ (b'"' | b'\'')) => quote = Some(q),
                    (Some(q), c) if c == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                j += 1;
            }
            if j < b.len() && b[j - 1] == b'/' {
                depth -= 1;
            }
            i = j + 1;
        }
        if i >= b.len() {
            break;
        }
    }
    false
}

fn utf8(bytes: &[u8]) -> Result<Cow<'_, str>, CapError> {
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .map_err(|e| CapError::new(PATH, format!("invalid UTF-8 at byte offset {}", e.valid_up_to())))
}

/// The `encoding` pseudo-attribute of a leading `<?xml … ?>`, read as ASCII before decoding.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(512)];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = String::from_utf8_lossy(&head[5..end]);
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    let close = value.find(quote)?;
    Some(value[..close].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(decode(b"<a/>").unwrap(), "<a/>");
        assert_eq!(decode(b"\xEF\xBB\xBF<a/>").unwrap(), "<a/>");
        let latin = b"<?xml version='1.0' encoding = 'ISO-8859-1'?><a>caf\xE9</a>";
        assert!(decode(latin).unwrap().ends_with("<a>caf\u{e9}</a>"));
        let gbk = decode(b"<?xml version=\"1.0\" encoding=\"GBK\"?><a/>").unwrap_err();
        assert_eq!(gbk.reason, "encoding GBK not supported yet");
        let bad = decode(b"<?xml version=\"1.0\" encoding=\"utf-8\"?><a>\xE9</a>").unwrap_err();
        assert!(bad.reason.contains("byte offset 41"), "{bad}");
        assert!(decode(b"\xFF\xFE<\0").unwrap_err().reason.contains("UTF-16"));
    }

    #[test]
    fn depth_prescan() {
        let nest = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(!nests_deeper_than(&nest(64), 64));
        assert!(nests_deeper_than(&nest(65), 64));
        // Siblings, self-closing tags, quoted '>' and comments do not add depth.
        let flat = format!(
            "<r>{}</r>",
            "<b x='>'/><!-- <c> --><![CDATA[<d>]]><?p <e>?><f></f>".repeat(100)
        );
        assert!(!nests_deeper_than(&flat, 2));
        assert!(nests_deeper_than("<a><b><c/></b></a>", 2));
        assert!(!nests_deeper_than("<a", 1));
    }

    #[test]
    fn oversized_is_refused_with_size() {
        let big = vec![b' '; MAX_BYTES + 1];
        let e = decode(&big).unwrap_err();
        assert!(e.reason.contains(&(MAX_BYTES + 1).to_string()), "{e}");
    }
}
