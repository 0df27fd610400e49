//! What carries a report (RFC 8460 §5): a body with its content type (an HTTPS POST), gzip
//! data (one member or several), and a whole report e-mail.

use std::io::{ErrorKind, Read};

use flate2::bufread::MultiGzDecoder;
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders};

use super::json::{BOM, parse_json};
use super::limits::Limits;
use super::model::{Report, Warning};
use super::{ReportError, clip};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Inflates gzip data (all its members), reading at most [`Limits::max_uncompressed`] bytes
/// and one more: memory and time stay bounded whatever the data claims.
pub fn inflate(gz: &[u8], limits: &Limits) -> Result<Vec<u8>, ReportError> {
    if gz.len() > limits.max_compressed {
        return Err(ReportError::TooLarge {
            what: "gzip data",
            size: gz.len(),
            limit: limits.max_compressed,
        });
    }
    if !gz.starts_with(GZIP_MAGIC) {
        return Err(ReportError::NotGzip);
    }
    let limit = limits.max_uncompressed;
    // Reports inflate about 2–4 times; start there and grow only as the data does.
    let mut out = Vec::with_capacity(gz.len().saturating_mul(4).min(limit));
    // bufread: the decoder reads the slice itself, no second buffer.
    let read = MultiGzDecoder::new(gz)
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out);
    match read {
        Ok(_) if out.len() > limit => Err(ReportError::InflatedTooLarge { limit }),
        Ok(_) => Ok(out),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(ReportError::TruncatedGzip),
        Err(e) => Err(ReportError::CorruptGzip(clip(&e.to_string(), 200))),
    }
}

/// `application/tlsrpt+gzip`: a gzipped report.
pub fn parse_gzip(gz: &[u8], limits: &Limits) -> Result<Report, ReportError> {
    parse_json(&inflate(gz, limits)?, limits)
}

/// A report of undeclared form: gzip by its magic bytes, else JSON by its opening brace.
pub fn sniff(body: &[u8], limits: &Limits) -> Result<Report, ReportError> {
    if body.starts_with(GZIP_MAGIC) {
        return parse_gzip(body, limits);
    }
    if body.starts_with(ZIP_MAGIC) {
        return Err(ReportError::UnsupportedContentType(
            "application/zip".into(),
        ));
    }
    let text = body.strip_prefix(BOM).unwrap_or(body);
    if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return parse_json(body, limits);
    }
    Err(ReportError::NotAReport("neither gzip nor JSON".into()))
}

/// A report body by its `Content-Type` (parameters ignored), as an HTTPS report endpoint
/// receives it (RFC 8460 §5.4): `application/tlsrpt+json` and `application/tlsrpt+gzip`;
/// also plain `application/json` and `application/gzip`, and the non-standard
/// `application/tlsrpt`, `application/octet-stream` or none, which are sniffed; a whole
/// mail as `message/rfc822`.
pub fn parse_body(content_type: &str, body: &[u8], limits: &Limits) -> Result<Report, ReportError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    match media.to_ascii_lowercase().as_str() {
        "application/tlsrpt+json" | "application/json" => parse_json(body, limits),
        "application/tlsrpt+gzip" | "application/gzip" | "application/x-gzip" => {
            parse_gzip(body, limits)
        }
        "application/tlsrpt" | "application/octet-stream" | "" => sniff(body, limits),
        "message/rfc822" => parse_mail(body, limits).map(|mail| mail.report),
        _ => Err(ReportError::UnsupportedContentType(clip(media, 100))),
    }
}

/// A report e-mail and what its headers say about it. Nothing here is verified: DKIM
/// (RFC 8460 §5.3 says reports without a valid signature MUST be ignored) is the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailReport {
    pub report: Report,
    /// The `From` address.
    pub from: Option<String>,
    /// `TLS-Report-Domain`, `TLS-Report-Submitter` (RFC 8460 §5.3).
    pub tls_report_domain: Option<String>,
    pub tls_report_submitter: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// The report part's content type (`application/tlsrpt+gzip`) and file name, as sent.
    pub part_type: String,
    pub part_name: Option<String>,
    /// The report part's bytes with the transfer encoding undone: the gzip data or the JSON
    /// the sender attached, for the raw copy a store keeps.
    pub part: Vec<u8>,
    /// Whether `part` is gzip data (by its magic bytes, as the parser read it).
    pub part_gzip: bool,
}

/// Parses a whole report e-mail (RFC 8460 §5.3): the first part that is
/// `application/tlsrpt+gzip` or `+json`; else the first `application/tlsrpt`; else the
/// first `application/gzip`, `application/octet-stream` or `application/json` named
/// `*.json.gz` or `*.json`; in attached messages too. Transfer encodings (base64,
/// quoted-printable) are undone by the mail parser.
pub fn parse_mail(raw: &[u8], limits: &Limits) -> Result<MailReport, ReportError> {
    if raw.len() > limits.max_mail {
        return Err(ReportError::TooLarge {
            what: "mail",
            size: raw.len(),
            limit: limits.max_mail,
        });
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| ReportError::NotAReport("not a mail message".into()))?;
    let (part, form) = report_part(&message, 2).ok_or(ReportError::NoReportPart)?;
    let body = part.contents();
    let mut report = match form {
        Form::Gzip => parse_gzip(body, limits),
        Form::Json => parse_json(body, limits),
        Form::Sniff => sniff(body, limits),
    }?;

    let header = |name: &str| {
        message
            .header(name)
            .and_then(|h| h.as_text())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let tls_report_submitter = header("TLS-Report-Submitter");
    if let (Some(submitter), Some(contact)) = (&tls_report_submitter, &report.contact_info)
        && !submitter_matches(submitter, contact)
        && report.warnings.len() < limits.max_warnings
    {
        report.warnings.push(Warning::SubmitterMismatch {
            submitter: clip(submitter, 100),
            contact: clip(contact, 100),
        });
    }
    let part_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{sub}", ct.ctype()),
            None => ct.ctype().to_owned(),
        })
        .unwrap_or_default();
    Ok(MailReport {
        from: message
            .from()
            .and_then(|from| from.first())
            .and_then(|addr| addr.address())
            .map(str::to_owned),
        tls_report_domain: header("TLS-Report-Domain"),
        tls_report_submitter,
        subject: message.subject().map(str::to_owned),
        message_id: message.message_id().map(str::to_owned),
        part_type,
        part_name: part.attachment_name().map(str::to_owned),
        part: body.to_vec(),
        part_gzip: body.starts_with(GZIP_MAGIC),
        report,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Gzip,
    Json,
    Sniff,
}

/// The best report part of `message` (lowest rank, first of equals), looking into attached
/// messages down to `depth` levels when the message itself has none.
fn report_part<'m>(message: &'m Message<'m>, depth: usize) -> Option<(&'m MessagePart<'m>, Form)> {
    let mut best: Option<(u8, &MessagePart<'m>, Form)> = None;
    for part in &message.parts {
        if let Some((rank, form)) = classify(part)
            && best.as_ref().is_none_or(|(r, _, _)| rank < *r)
        {
            best = Some((rank, part, form));
        }
    }
    if let Some((_, part, form)) = best {
        return Some((part, form));
    }
    if depth == 0 {
        return None;
    }
    message
        .parts
        .iter()
        .filter_map(MessagePart::message)
        .find_map(|inner| report_part(inner, depth - 1))
}

fn classify(part: &MessagePart<'_>) -> Option<(u8, Form)> {
    let content_type = part.content_type()?;
    if !content_type.ctype().eq_ignore_ascii_case("application") {
        return None;
    }
    let subtype = content_type.subtype()?.to_ascii_lowercase();
    let named_json = || {
        part.attachment_name().is_some_and(|name| {
            let name = name.to_ascii_lowercase();
            name.ends_with(".json.gz") || name.ends_with(".json")
        })
    };
    match subtype.as_str() {
        "tlsrpt+gzip" => Some((0, Form::Gzip)),
        "tlsrpt+json" => Some((0, Form::Json)),
        "tlsrpt" => Some((1, Form::Sniff)),
        "gzip" | "x-gzip" | "octet-stream" | "json" if named_json() => Some((2, Form::Sniff)),
        _ => None,
    }
}

/// RFC 8460 §5.3: the submitter MUST be the domain of `contact-info`. Mail.ru submits as
/// `mail.ru` with a contact at `corp.mail.ru`, so a domain below the submitter matches too.
fn submitter_matches(submitter: &str, contact: &str) -> bool {
    let Some((_, domain)) = contact.rsplit_once('@') else {
        return true; // not an address: nothing to compare
    };
    let domain = domain
        .trim()
        .trim_end_matches(['>', '.'])
        .to_ascii_lowercase();
    let submitter = submitter.trim().trim_end_matches('.').to_ascii_lowercase();
    domain == submitter || domain.ends_with(&format!(".{submitter}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("write to a Vec");
        enc.finish().expect("finish into a Vec")
    }

    #[test]
    fn inflate_stops_at_the_limit() {
        let limits = Limits {
            max_uncompressed: 1000,
            ..Limits::default()
        };
        assert_eq!(
            inflate(&gzip(&[b' '; 1000]), &limits).map(|v| v.len()),
            Ok(1000)
        );
        assert_eq!(
            inflate(&gzip(&[b' '; 1001]), &limits),
            Err(ReportError::InflatedTooLarge { limit: 1000 })
        );
    }

    #[test]
    fn gzip_members_are_joined() {
        let mut gz = gzip(b"hello ");
        gz.extend(gzip(b"world"));
        assert_eq!(
            inflate(&gz, &Limits::default()),
            Ok(b"hello world".to_vec())
        );
    }

    #[test]
    fn broken_gzip_is_named() {
        let gz = gzip(b"{\"a\": 1}");
        let limits = Limits::default();
        assert_eq!(inflate(b"{\"a\": 1}", &limits), Err(ReportError::NotGzip));
        for cut in [3, 12, gz.len() - 4, gz.len() - 1] {
            assert_eq!(
                inflate(&gz[..cut], &limits),
                Err(ReportError::TruncatedGzip),
                "cut at {cut}"
            );
        }
        let mut flipped = gz.clone();
        let at = flipped.len() - 6;
        flipped[at] ^= 1;
        assert_eq!(
            inflate(&flipped, &limits).map_err(|e| e.reason()),
            Err("CorruptGzip")
        );
        let big = Limits {
            max_compressed: 10,
            ..Limits::default()
        };
        assert_eq!(inflate(&gz, &big).map_err(|e| e.reason()), Err("TooLarge"));
    }

    #[test]
    fn submitter_is_the_contact_domain_or_above_it() {
        assert!(submitter_matches(
            "google.com",
            "smtp-tls-reporting@google.com"
        ));
        assert!(submitter_matches("mail.ru", "tls_support@corp.mail.ru"));
        assert!(submitter_matches("Example.COM.", "x@example.com"));
        assert!(!submitter_matches("example.com", "x@badexample.com"));
        assert!(!submitter_matches("corp.mail.ru", "x@mail.ru"));
        assert!(submitter_matches(
            "example.com",
            "https://example.com/contact"
        ));
    }

    #[test]
    fn content_types_choose_the_reader() {
        let limits = Limits::default();
        let reason = |ct: &str, body: &[u8]| parse_body(ct, body, &limits).map_err(|e| e.reason());
        assert_eq!(reason("application/tlsrpt+gzip", b"{}"), Err("NotGzip"));
        assert_eq!(
            reason("application/tlsrpt+json; charset=utf-8", b"[]"),
            Err("NotAReport")
        );
        assert_eq!(
            reason("application/tlsrpt", b"PK\x03\x04"),
            Err("UnsupportedContentType")
        );
        assert_eq!(reason("text/html", b"{}"), Err("UnsupportedContentType"));
        assert_eq!(
            reason("application/octet-stream", b"<xml/>"),
            Err("NotAReport")
        );
        assert_eq!(reason("", &gzip(b"{")), Err("TruncatedJson"));
    }
}
