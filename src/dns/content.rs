//! TXT content as the HTTP APIs hold it: zone-file presentation (quoted strings), sometimes one
//! quoted string longer than 255 bytes, sometimes unquoted. Compared by logical value only, and
//! written back exactly as read when the value is someone else's.

use crate::domain::txt;

/// The logical value of one record's content, whatever form it comes in: quoted strings
/// (chunked or one long one) are joined; anything else is taken as it is.
pub fn value_of(content: &str) -> String {
    let trimmed = content.trim();
    if trimmed.starts_with('"')
        && let Ok(strings) = txt::parse_presentation_lenient(trimmed)
    {
        return txt::join(&strings);
    }
    content.to_owned()
}

/// The contents to write for `values` into a record set that holds `existing` now: a value
/// already there keeps its exact content (a foreign value's bytes and string boundaries are
/// not ours to change); a new one is quoted ≤255-byte strings.
pub fn contents_for<'a>(
    existing: impl IntoIterator<Item = &'a str>,
    values: &[String],
) -> Vec<String> {
    let existing: Vec<(String, &str)> = existing.into_iter().map(|c| (value_of(c), c)).collect();
    values
        .iter()
        .map(|v| {
            existing
                .iter()
                .find(|(logical, _)| logical == v)
                .map_or_else(|| txt::to_presentation(v), |(_, raw)| (*raw).to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_reads_back_as_the_same_value_in_every_form() {
        let long = format!("v=DKIM1; k=rsa; p={}", "B".repeat(400));
        let chunked = txt::to_presentation(&long);
        assert!(chunked.contains("\" \""), "split: {chunked}");
        assert_eq!(value_of(&chunked), long);
        assert_eq!(
            value_of(&format!("\"{long}\"")),
            long,
            "one long quoted string"
        );
        assert_eq!(value_of(&long), long, "unquoted, as older records are");
        assert_eq!(value_of(r#""a \"b\"""#), r#"a "b""#);
        assert_eq!(value_of("\"not closed"), "\"not closed", "kept as it is");
    }

    #[test]
    fn existing_values_keep_their_content_and_new_ones_are_split() {
        let foreign = r#""verify" "=abc" "a\"b""#;
        let long = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        let out = contents_for(
            [foreign, "\"v=spf1 -all\""],
            &["verify=abca\"b".into(), long.clone()],
        );
        assert_eq!(out[0], foreign, "byte for byte, strings and all");
        let strings = txt::parse_presentation(&out[1]).unwrap();
        assert!(strings.len() == 2 && strings.iter().all(|s| s.len() <= 255));
        assert_eq!(txt::join(&strings), long);
    }
}
