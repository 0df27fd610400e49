//! TXT record data: a logical value is stored as one or more character-strings of at most 255
//! bytes each (RFC 1035 §3.3). Receivers concatenate them with nothing in between
//! (RFC 7208 §3.3, RFC 6376 §3.6.2.2), so we split anywhere and compare joined values only.

/// The longest character-string a TXT record can hold.
pub const MAX_STRING_BYTES: usize = 255;

/// Splits a logical value into character-strings of at most 255 bytes.
/// An empty value is one empty string, so the record still exists.
pub fn split(value: &str) -> Vec<&[u8]> {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(MAX_STRING_BYTES).collect()
}

/// Joins character-strings back into the logical value. Bytes that are not UTF-8 (other
/// people's data can hold anything) are replaced, which keeps them from matching our values.
pub fn join<S: AsRef<[u8]>>(strings: &[S]) -> String {
    let bytes: Vec<u8> = strings
        .iter()
        .flat_map(|s| s.as_ref().iter().copied())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Zone-file presentation of a logical value: quoted character-strings separated by a space,
/// with `"` and `\` escaped and bytes outside printable ASCII written as `\DDD`.
pub fn to_presentation(value: &str) -> String {
    let parts: Vec<String> = split(value).into_iter().map(quote).collect();
    parts.join(" ")
}

fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// Why zone-file TXT data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresentationError {
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("escape at byte {0} is not `\\X` or `\\DDD` with DDD <= 255")]
    BadEscape(usize),
    #[error("character-string {0} is longer than 255 bytes")]
    TooLong(usize),
    #[error("no character-string found")]
    Empty,
}

/// Parses zone-file TXT data (quoted or bare character-strings) into raw character-strings.
pub fn parse_presentation(text: &str) -> Result<Vec<Vec<u8>>, PresentationError> {
    parse(text, Some(MAX_STRING_BYTES))
}

/// Like [`parse_presentation`], but a string may be longer than 255 bytes: DNS APIs accept
/// one long quoted string and split it on the wire themselves (PowerDNS, Cloudflare), so
/// that is what they can give back.
pub fn parse_presentation_lenient(text: &str) -> Result<Vec<Vec<u8>>, PresentationError> {
    parse(text, None)
}

fn parse(text: &str, max: Option<usize>) -> Result<Vec<Vec<u8>>, PresentationError> {
    let bytes = text.as_bytes();
    let mut strings = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let quoted = bytes[i] == b'"';
        if quoted {
            i += 1;
        }
        let mut current = Vec::new();
        let mut closed = !quoted;
        while i < bytes.len() {
            let b = bytes[i];
            if quoted && b == b'"' {
                closed = true;
                i += 1;
                break;
            }
            if !quoted && b.is_ascii_whitespace() {
                break;
            }
            if b == b'\\' {
                let (value, used) = unescape(&bytes[i..]).ok_or(PresentationError::BadEscape(i))?;
                current.push(value);
                i += used;
            } else {
                current.push(b);
                i += 1;
            }
        }
        if !closed {
            return Err(PresentationError::Unterminated);
        }
        if max.is_some_and(|m| current.len() > m) {
            return Err(PresentationError::TooLong(strings.len() + 1));
        }
        strings.push(current);
    }
    if strings.is_empty() {
        return Err(PresentationError::Empty);
    }
    Ok(strings)
}

/// Reads one escape at the start of `s` (which begins with `\`): the byte and the length used.
fn unescape(s: &[u8]) -> Option<(u8, usize)> {
    let digits = s.get(1..4).filter(|d| d.iter().all(u8::is_ascii_digit));
    if let Some(d) = digits {
        let n = d
            .iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
        return u8::try_from(n).ok().map(|b| (b, 4));
    }
    match s.get(1) {
        Some(c) if !c.is_ascii_digit() => Some((*c, 2)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_values_are_one_string() {
        assert_eq!(split("v=STSv1; id=1"), vec![b"v=STSv1; id=1".as_slice()]);
        assert_eq!(to_presentation("v=STSv1; id=1"), "\"v=STSv1; id=1\"");
    }

    #[test]
    fn long_values_split_at_255_bytes() {
        let value = "k".repeat(600);
        let parts = split(&value);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![255, 255, 90]
        );
        assert_eq!(join(&parts), value);
    }

    #[test]
    fn empty_value_is_one_empty_string() {
        assert_eq!(split(""), vec![b"".as_slice()]);
        assert_eq!(to_presentation(""), "\"\"");
    }

    #[test]
    fn quotes_backslashes_and_control_bytes_are_escaped() {
        assert_eq!(to_presentation("a\"b\\c\td"), r#""a\"b\\c\009d""#);
        assert_eq!(to_presentation("é"), r#""\195\169""#);
    }

    #[test]
    fn presentation_parses_quoted_and_bare_strings() {
        let parsed = parse_presentation(r#""v=DKIM1; p=AB" "CD" bare\032x"#).unwrap();
        assert_eq!(
            parsed,
            vec![
                b"v=DKIM1; p=AB".to_vec(),
                b"CD".to_vec(),
                b"bare x".to_vec()
            ]
        );
        assert_eq!(join(&parsed), "v=DKIM1; p=ABCDbare x");
    }

    #[test]
    fn presentation_errors_are_precise() {
        assert_eq!(
            parse_presentation("\"abc"),
            Err(PresentationError::Unterminated)
        );
        assert_eq!(
            parse_presentation(r#""a\256""#),
            Err(PresentationError::BadEscape(2))
        );
        assert_eq!(parse_presentation("   "), Err(PresentationError::Empty));
        let long = format!("\"{}\"", "x".repeat(256));
        assert_eq!(
            parse_presentation(&long),
            Err(PresentationError::TooLong(1))
        );
    }

    proptest! {
        #[test]
        fn split_then_join_is_identity(value in ".{0,1200}") {
            let parts = split(&value);
            prop_assert!(parts.iter().all(|p| p.len() <= MAX_STRING_BYTES));
            prop_assert!(!parts.is_empty());
            prop_assert_eq!(join(&parts), value);
        }

        #[test]
        fn presentation_round_trips(value in ".{0,1200}") {
            let text = to_presentation(&value);
            prop_assert!(text.is_ascii());
            let parsed = parse_presentation(&text).unwrap();
            prop_assert_eq!(join(&parsed), value);
        }

        #[test]
        fn only_the_last_string_is_short(value in "[ -~]{256,1000}") {
            let parts = split(&value);
            for p in &parts[..parts.len() - 1] {
                prop_assert_eq!(p.len(), MAX_STRING_BYTES);
            }
        }
    }
}
