//! The `name=value; name=value` tag-lists shared by the STSv1, TLSRPTv1, DMARC1, DKIM1 and BIMI1
//! records (RFC 6376 §3.2 gives the general form the others follow).

/// One `name=value` pair as written; the value is trimmed of surrounding white space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// Why a tag-list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag {0} is empty (two `;` in a row)")]
    Empty(usize),
    #[error("`{0}` is not a `name=value` tag")]
    NoEquals(String),
    #[error("`{0}` is not a valid tag name")]
    BadName(String),
    #[error("tag `{0}` appears more than once")]
    Duplicate(String),
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits a tag-list. A trailing `;` is allowed; duplicate names are refused.
pub fn parse(text: &str) -> Result<Vec<Tag<'_>>, TagError> {
    let mut tags: Vec<Tag<'_>> = Vec::new();
    let mut segments: Vec<&str> = text.split(';').collect();
    if segments.len() > 1
        && segments
            .last()
            .is_some_and(|s| s.trim_matches(is_space).is_empty())
    {
        segments.pop();
    }
    for (index, segment) in segments.iter().enumerate() {
        let segment = segment.trim_matches(is_space);
        if segment.is_empty() {
            return Err(TagError::Empty(index + 1));
        }
        let (name, value) = segment
            .split_once('=')
            .ok_or_else(|| TagError::NoEquals(segment.to_owned()))?;
        let name = name.trim_matches(is_space);
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid_name {
            return Err(TagError::BadName(name.to_owned()));
        }
        if tags.iter().any(|t| t.name == name) {
            return Err(TagError::Duplicate(name.to_owned()));
        }
        tags.push(Tag {
            name,
            value: value.trim_matches(is_space),
        });
    }
    Ok(tags)
}

/// Checks that the first tag is `v=<version>` exactly (the version is case-sensitive).
pub fn expect_version(tags: &[Tag<'_>], version: &str) -> Result<(), String> {
    match tags.first() {
        Some(t) if t.name == "v" && t.value == version => Ok(()),
        Some(t) if t.name == "v" => Err(format!("version is `{}`, expected `{version}`", t.value)),
        _ => Err(format!("must start with `v={version}`")),
    }
}

/// The value of tag `name`, if present.
pub fn get<'a>(tags: &[Tag<'a>], name: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.name == name).map(|t| t.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tags_with_spaces_and_trailing_semicolon() {
        let tags = parse(" v=STSv1 ;id = 20260101 ; ").unwrap();
        assert_eq!(
            tags,
            vec![
                Tag {
                    name: "v",
                    value: "STSv1"
                },
                Tag {
                    name: "id",
                    value: "20260101"
                }
            ]
        );
    }

    #[test]
    fn refuses_duplicates_and_garbage() {
        assert_eq!(parse("v=1; p=a; p=b"), Err(TagError::Duplicate("p".into())));
        assert_eq!(parse("v=1;; p=a"), Err(TagError::Empty(2)));
        assert_eq!(parse("v=1; junk"), Err(TagError::NoEquals("junk".into())));
        assert_eq!(parse("v=1; =x"), Err(TagError::BadName("".into())));
    }

    #[test]
    fn version_must_come_first_and_match_exactly() {
        assert!(expect_version(&parse("v=DMARC1; p=none").unwrap(), "DMARC1").is_ok());
        assert!(expect_version(&parse("p=none; v=DMARC1").unwrap(), "DMARC1").is_err());
        assert!(expect_version(&parse("v=dmarc1; p=none").unwrap(), "DMARC1").is_err());
    }
}
