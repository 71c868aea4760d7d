//! Raw bytes → XML text that is safe to hand to roxmltree: size cap, BOM, the encoding
//! named in the XML declaration, and a nesting-depth pre-scan. Decoded: UTF-8, US-ASCII,
//! ISO-8859-1, the GB family Chinese systems still send (GB2312, GBK, GB18030: one GB18030
//! decoder reads all three) and UTF-16 with a BOM; anything else is refused by name.

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
    for (bom, encoding) in [
        (&[0xFE, 0xFF], encoding_rs::UTF_16BE),
        (&[0xFF, 0xFE], encoding_rs::UTF_16LE),
    ] {
        if let Some(rest) = bytes.strip_prefix(bom) {
            return strict(encoding, rest, "UTF-16");
        }
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
        // GB2312 and GBK are subsets of GB18030, and senders mislabel one as the other.
        "GB2312" | "GBK" | "GB18030" | "CP936" | "X-GBK" | "EUC-CN" => {
            strict(encoding_rs::GB18030, bytes, &name)
        }
        _ => Err(CapError::new(
            PATH,
            format!(
                "encoding {name} is not supported (UTF-8, GB18030/GBK/GB2312, ISO-8859-1, UTF-16 with BOM)"
            ),
        )),
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

/// Decode without replacement characters: a wrong byte must refuse, not garble a place name.
fn strict(
    encoding: &'static encoding_rs::Encoding,
    bytes: &[u8],
    name: &str,
) -> Result<Cow<'static, str>, CapError> {
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|t| Cow::Owned(t.into_owned()))
        .ok_or_else(|| CapError::new(PATH, format!("bytes that are not valid {name}")))
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
        // 暴雨 in GBK is B1 A9 D3 EA.
        let gbk = decode(b"<?xml version=\"1.0\" encoding=\"GBK\"?><a>\xB1\xA9\xD3\xEA</a>").unwrap();
        assert!(gbk.ends_with("<a>暴雨</a>"), "{gbk}");
        let gb2312 = decode(b"<?xml version='1.0' encoding='gb2312'?><a>\xB1\xA9</a>").unwrap();
        assert!(gb2312.ends_with("<a>暴</a>"));
        let broken = decode(b"<?xml version=\"1.0\" encoding=\"GB18030\"?><a>\xB1</a>").unwrap_err();
        assert!(broken.reason.contains("not valid GB18030"), "{broken}");
        let sjis = decode(b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a/>").unwrap_err();
        assert!(
            sjis.reason.starts_with("encoding Shift_JIS is not supported"),
            "{sjis}"
        );
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("<a>雨</a>".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode(&utf16).unwrap(), "<a>雨</a>");
        let bad = decode(b"<?xml version=\"1.0\" encoding=\"utf-8\"?><a>\xE9</a>").unwrap_err();
        assert!(bad.reason.contains("byte offset 41"), "{bad}");
        assert!(decode(b"\xFF\xFE<").unwrap_err().reason.contains("UTF-16"));
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
