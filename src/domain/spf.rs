//! SPF (RFC 7208): the `v=spf1` record at the domain apex.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 7208 §4.6.4: evaluating more than ten DNS-querying terms is a permanent error.
pub const LOOKUP_LIMIT: usize = 10;
/// RFC 7208 §3.4: keep the record small enough for a UDP answer.
pub const SIZE_ADVICE_BYTES: usize = 450;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    fn from_char(c: char) -> Option<Qualifier> {
        match c {
            '+' => Some(Qualifier::Pass),
            '-' => Some(Qualifier::Fail),
            '~' => Some(Qualifier::SoftFail),
            '?' => Some(Qualifier::Neutral),
            _ => None,
        }
    }

    /// The prefix we write: none for the default `+`.
    fn prefix(self) -> &'static str {
        match self {
            Qualifier::Pass => "",
            Qualifier::Fail => "-",
            Qualifier::SoftFail => "~",
            Qualifier::Neutral => "?",
        }
    }
}

/// A mechanism with its argument, as RFC 7208 §5 defines them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(String),
    A {
        domain: Option<String>,
        v4: Option<u8>,
        v6: Option<u8>,
    },
    Mx {
        domain: Option<String>,
        v4: Option<u8>,
        v6: Option<u8>,
    },
    Ptr(Option<String>),
    Ip4 {
        addr: Ipv4Addr,
        prefix: Option<u8>,
    },
    Ip6 {
        addr: Ipv6Addr,
        prefix: Option<u8>,
    },
    Exists(String),
}

impl Mechanism {
    /// Whether evaluating this mechanism costs a DNS lookup (RFC 7208 §4.6.4).
    pub fn costs_lookup(&self) -> bool {
        matches!(
            self,
            Mechanism::Include(_)
                | Mechanism::A { .. }
                | Mechanism::Mx { .. }
                | Mechanism::Ptr(_)
                | Mechanism::Exists(_)
        )
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn host(
            f: &mut fmt::Formatter<'_>,
            name: &str,
            d: &Option<String>,
            v4: &Option<u8>,
            v6: &Option<u8>,
        ) -> fmt::Result {
            f.write_str(name)?;
            if let Some(d) = d {
                write!(f, ":{d}")?;
            }
            if let Some(p) = v4 {
                write!(f, "/{p}")?;
            }
            if let Some(p) = v6 {
                write!(f, "//{p}")?;
            }
            Ok(())
        }
        match self {
            Mechanism::All => f.write_str("all"),
            Mechanism::Include(d) => write!(f, "include:{d}"),
            Mechanism::A { domain, v4, v6 } => host(f, "a", domain, v4, v6),
            Mechanism::Mx { domain, v4, v6 } => host(f, "mx", domain, v4, v6),
            Mechanism::Ptr(None) => f.write_str("ptr"),
            Mechanism::Ptr(Some(d)) => write!(f, "ptr:{d}"),
            Mechanism::Ip4 { addr, prefix } => {
                write!(f, "ip4:{addr}")?;
                prefix.map_or(Ok(()), |p| write!(f, "/{p}"))
            }
            Mechanism::Ip6 { addr, prefix } => {
                write!(f, "ip6:{addr}")?;
                prefix.map_or(Ok(()), |p| write!(f, "/{p}"))
            }
            Mechanism::Exists(d) => write!(f, "exists:{d}"),
        }
    }
}

/// One term of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Directive {
        qualifier: Qualifier,
        mechanism: Mechanism,
    },
    Redirect(String),
    Exp(String),
    /// An unknown modifier, which RFC 7208 §6 says to ignore.
    Unknown {
        name: String,
        value: String,
    },
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Directive {
                qualifier,
                mechanism,
            } => write!(f, "{}{mechanism}", qualifier.prefix()),
            Term::Redirect(d) => write!(f, "redirect={d}"),
            Term::Exp(d) => write!(f, "exp={d}"),
            Term::Unknown { name, value } => write!(f, "{name}={value}"),
        }
    }
}

/// Why an SPF term or record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpfError {
    #[error("the record must start with `v=spf1`")]
    Version,
    #[error(
        "`{0}` is not an SPF mechanism (all, include, a, mx, ptr, ip4, ip6, exists) or modifier"
    )]
    Unknown(String),
    #[error("`{term}`: {reason}")]
    Argument { term: String, reason: String },
    #[error("modifier `{0}` appears more than once")]
    DuplicateModifier(&'static str),
    #[error(
        "{count} terms need DNS lookups; receivers fail the check above {LOOKUP_LIMIT} (RFC 7208 §4.6.4)"
    )]
    TooManyLookups { count: usize },
    #[error("`{0}` is set with its own field, not as a mechanism")]
    OwnField(String),
    #[error(
        "`all` and `redirect` cannot both be set: receivers ignore redirect when all is present"
    )]
    AllAndRedirect,
}

/// A `v=spf1` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfRecord {
    pub terms: Vec<Term>,
}

impl SpfRecord {
    pub fn render(&self) -> String {
        let mut out = String::from("v=spf1");
        for term in &self.terms {
            out.push(' ');
            out.push_str(&term.to_string());
        }
        out
    }

    /// Terms that cost a DNS lookup in this record alone (includes are not followed here).
    pub fn lookup_count(&self) -> usize {
        self.terms
            .iter()
            .filter(|t| match t {
                Term::Directive { mechanism, .. } => mechanism.costs_lookup(),
                Term::Redirect(_) => true,
                _ => false,
            })
            .count()
    }

    /// Parses a published record (RFC 7208 §4.5, §12).
    pub fn parse(value: &str) -> Result<Self, SpfError> {
        let mut words = value.split(' ').filter(|w| !w.is_empty());
        match words.next() {
            Some(v) if v.eq_ignore_ascii_case("v=spf1") => {}
            _ => return Err(SpfError::Version),
        }
        let terms = words.map(parse_term).collect::<Result<Vec<_>, _>>()?;
        let record = SpfRecord { terms };
        record.check_modifiers()?;
        Ok(record)
    }

    /// Builds a record from the operator's fields: mechanisms, a final `all`, a redirect.
    /// Returns advice that does not make the record invalid alongside it.
    pub fn build(
        mechanisms: &[String],
        all: Option<Qualifier>,
        redirect: Option<&str>,
    ) -> Result<(SpfRecord, Vec<String>), (Option<usize>, SpfError)> {
        let mut terms = Vec::new();
        let mut warnings = Vec::new();
        for (index, text) in mechanisms.iter().enumerate() {
            let term = parse_term(text).map_err(|e| (Some(index), e))?;
            match &term {
                Term::Directive {
                    mechanism: Mechanism::All,
                    ..
                } => {
                    return Err((Some(index), SpfError::OwnField("all".into())));
                }
                Term::Redirect(_) | Term::Exp(_) | Term::Unknown { .. } => {
                    return Err((Some(index), SpfError::OwnField(text.clone())));
                }
                Term::Directive {
                    mechanism: Mechanism::Ptr(_),
                    ..
                } => {
                    warnings.push(format!("`{text}`: RFC 7208 §5.5 says ptr SHOULD NOT be used; many receivers skip it"));
                }
                _ => {}
            }
            if terms.contains(&term) {
                warnings.push(format!("`{text}` is listed twice"));
            }
            terms.push(term);
        }
        match (all, redirect) {
            (Some(_), Some(_)) => return Err((None, SpfError::AllAndRedirect)),
            (Some(q), None) => terms.push(Term::Directive {
                qualifier: q,
                mechanism: Mechanism::All,
            }),
            (None, Some(target)) => {
                check_domain_spec(target).map_err(|reason| {
                    (
                        None,
                        SpfError::Argument {
                            term: format!("redirect={target}"),
                            reason,
                        },
                    )
                })?;
                terms.push(Term::Redirect(target.to_owned()));
            }
            (None, None) => {}
        }
        let record = SpfRecord { terms };
        let count = record.lookup_count();
        if count > LOOKUP_LIMIT {
            return Err((None, SpfError::TooManyLookups { count }));
        }
        let size = record.render().len();
        if size > SIZE_ADVICE_BYTES {
            warnings.push(format!("the record is {size} bytes; RFC 7208 §3.4 advises staying under {SIZE_ADVICE_BYTES}"));
        }
        Ok((record, warnings))
    }

    fn check_modifiers(&self) -> Result<(), SpfError> {
        let redirects = self
            .terms
            .iter()
            .filter(|t| matches!(t, Term::Redirect(_)))
            .count();
        let exps = self
            .terms
            .iter()
            .filter(|t| matches!(t, Term::Exp(_)))
            .count();
        if redirects > 1 {
            return Err(SpfError::DuplicateModifier("redirect"));
        }
        if exps > 1 {
            return Err(SpfError::DuplicateModifier("exp"));
        }
        Ok(())
    }
}

fn parse_term(text: &str) -> Result<Term, SpfError> {
    let arg_err = |reason: String| SpfError::Argument {
        term: text.to_owned(),
        reason,
    };
    // Modifiers are `name=value`; a mechanism never holds `=` before its first `:` or `/`.
    let name_end = text.find([':', '/']).unwrap_or(text.len());
    if let Some(eq) = text[..name_end].find('=') {
        let (name, value) = (&text[..eq], &text[eq + 1..]);
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(SpfError::Unknown(text.to_owned()));
        }
        return match name.to_ascii_lowercase().as_str() {
            "redirect" => check_domain_spec(value)
                .map(|_| Term::Redirect(value.to_owned()))
                .map_err(arg_err),
            "exp" => check_domain_spec(value)
                .map(|_| Term::Exp(value.to_owned()))
                .map_err(arg_err),
            _ => Ok(Term::Unknown {
                name: name.to_owned(),
                value: value.to_owned(),
            }),
        };
    }
    let mut rest = text;
    let mut qualifier = Qualifier::Pass;
    if let Some(q) = rest.chars().next().and_then(Qualifier::from_char) {
        qualifier = q;
        rest = &rest[1..];
    }
    let name_end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, arg) = rest.split_at(name_end);
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if arg.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(required_domain(arg).map_err(arg_err)?),
        "exists" => Mechanism::Exists(required_domain(arg).map_err(arg_err)?),
        "ptr" => Mechanism::Ptr(optional_domain(arg).map_err(arg_err)?),
        "a" | "mx" => {
            let (domain, v4, v6) = host_mechanism_args(arg).map_err(arg_err)?;
            if name.eq_ignore_ascii_case("a") {
                Mechanism::A { domain, v4, v6 }
            } else {
                Mechanism::Mx { domain, v4, v6 }
            }
        }
        "ip4" => {
            let value = arg
                .strip_prefix(':')
                .ok_or_else(|| arg_err("needs an address: ip4:192.0.2.0/24".into()))?;
            let (addr, prefix) = split_prefix(value, 32).map_err(arg_err)?;
            let addr = addr
                .parse::<Ipv4Addr>()
                .map_err(|_| arg_err(format!("`{addr}` is not an IPv4 address")))?;
            Mechanism::Ip4 { addr, prefix }
        }
        "ip6" => {
            let value = arg
                .strip_prefix(':')
                .ok_or_else(|| arg_err("needs an address: ip6:2001:db8::/32".into()))?;
            let (addr, prefix) = split_prefix(value, 128).map_err(arg_err)?;
            let addr = addr
                .parse::<Ipv6Addr>()
                .map_err(|_| arg_err(format!("`{addr}` is not an IPv6 address")))?;
            Mechanism::Ip6 { addr, prefix }
        }
        _ => return Err(SpfError::Unknown(text.to_owned())),
    };
    Ok(Term::Directive {
        qualifier,
        mechanism,
    })
}

fn required_domain(arg: &str) -> Result<String, String> {
    let domain = arg
        .strip_prefix(':')
        .filter(|d| !d.is_empty())
        .ok_or("needs a domain after `:`")?;
    check_domain_spec(domain)?;
    Ok(domain.to_owned())
}

fn optional_domain(arg: &str) -> Result<Option<String>, String> {
    if arg.is_empty() {
        return Ok(None);
    }
    required_domain(arg).map(Some)
}

/// The domain and the IPv4 and IPv6 prefix lengths of an `a` or `mx` mechanism.
type HostArgs = (Option<String>, Option<u8>, Option<u8>);

/// `[:domain][/cidr4][//cidr6]` of the a and mx mechanisms.
fn host_mechanism_args(arg: &str) -> Result<HostArgs, String> {
    let (domain_part, cidr_part) = match arg.find('/') {
        Some(i) => (&arg[..i], &arg[i..]),
        None => (arg, ""),
    };
    let domain = optional_domain(domain_part)?;
    let (mut v4, mut v6) = (None, None);
    if let Some(rest) = cidr_part.strip_prefix("//") {
        v6 = Some(parse_prefix(rest, 128)?);
    } else if let Some(rest) = cidr_part.strip_prefix('/') {
        match rest.split_once("//") {
            Some((a, b)) => {
                v4 = Some(parse_prefix(a, 32)?);
                v6 = Some(parse_prefix(b, 128)?);
            }
            None => v4 = Some(parse_prefix(rest, 32)?),
        }
    }
    Ok((domain, v4, v6))
}

fn split_prefix(value: &str, max: u8) -> Result<(&str, Option<u8>), String> {
    match value.split_once('/') {
        Some((addr, p)) => Ok((addr, Some(parse_prefix(p, max)?))),
        None => Ok((value, None)),
    }
}

fn parse_prefix(text: &str, max: u8) -> Result<u8, String> {
    let leading_zero = text.len() > 1 && text.starts_with('0');
    match text.parse::<u8>() {
        Ok(n) if n <= max && !leading_zero => Ok(n),
        _ => Err(format!("prefix length `{text}` must be 0 to {max}")),
    }
}

/// RFC 7208 §7.1 domain-spec: a name that may hold macros. Labels may begin with `_`
/// (`_spf.example.net`), and the last label must not be all digits.
pub fn check_domain_spec(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("the domain is empty".into());
    }
    if spec.contains('%') {
        return check_macro_string(spec);
    }
    let name = spec.strip_suffix('.').unwrap_or(spec);
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("`{spec}` is not a fully qualified domain"));
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("`{label}` is not a valid label of `{spec}`"));
        }
    }
    if labels
        .last()
        .is_some_and(|t| t.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("`{spec}` ends in a numeric label"));
    }
    Ok(())
}

/// RFC 7208 §7.1 macro-string: `%{<letter><digits>[r]<delims>}`, `%%`, `%_`, `%-`.
fn check_macro_string(spec: &str) -> Result<(), String> {
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_ascii_graphic() {
            return Err(format!(
                "`{spec}` holds a character not allowed in a domain-spec"
            ));
        }
        if c != '%' {
            continue;
        }
        match chars.next() {
            Some('%' | '_' | '-') => {}
            Some('{') => {
                let letter = chars.next().map(|l| l.to_ascii_lowercase());
                if !matches!(
                    letter,
                    Some('s' | 'l' | 'o' | 'd' | 'i' | 'p' | 'h' | 'c' | 'r' | 't' | 'v')
                ) {
                    return Err(format!("`{spec}` has an unknown macro letter"));
                }
                let mut closed = false;
                for m in chars.by_ref() {
                    if m == '}' {
                        closed = true;
                        break;
                    }
                    if !(m.is_ascii_digit()
                        || matches!(m, 'r' | 'R' | '.' | '-' | '+' | ',' | '/' | '_' | '='))
                    {
                        return Err(format!("`{spec}` has a bad macro transformer `{m}`"));
                    }
                }
                if !closed {
                    return Err(format!("`{spec}` has an unterminated macro"));
                }
            }
            _ => return Err(format!("`{spec}` has a `%` that starts no macro")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn builds_a_record_from_fields() {
        let (rec, warnings) = SpfRecord::build(
            &strings(&[
                "mx",
                "include:_spf.example.net",
                "ip4:203.0.113.0/24",
                "ip6:2001:db8::/32",
                "~a:mail.example.com/28",
            ]),
            Some(Qualifier::Fail),
            None,
        )
        .unwrap();
        assert_eq!(
            rec.render(),
            "v=spf1 mx include:_spf.example.net ip4:203.0.113.0/24 ip6:2001:db8::/32 ~a:mail.example.com/28 -all"
        );
        assert!(warnings.is_empty());
        assert_eq!(rec.lookup_count(), 3);
        assert_eq!(SpfRecord::parse(&rec.render()).unwrap(), rec);
    }

    #[test]
    fn counts_lookups_and_refuses_more_than_ten() {
        let many: Vec<String> = (0..11)
            .map(|i| format!("include:s{i}.example.net"))
            .collect();
        let err = SpfRecord::build(&many, Some(Qualifier::Fail), None).unwrap_err();
        assert_eq!(err, (None, SpfError::TooManyLookups { count: 11 }));
        let ten: Vec<String> = (0..9)
            .map(|i| format!("include:s{i}.example.net"))
            .collect();
        let (rec, _) = SpfRecord::build(&ten, None, Some("_spf.example.net")).unwrap();
        assert_eq!(rec.lookup_count(), 10);
        let ips = strings(&["ip4:192.0.2.1", "ip6:2001:db8::1", "ip4:198.51.100.0/24"]);
        assert_eq!(
            SpfRecord::build(&ips, Some(Qualifier::Fail), None)
                .unwrap()
                .0
                .lookup_count(),
            0
        );
    }

    #[test]
    fn bad_mechanisms_name_the_term() {
        let cases = [
            ("ip4:203.0.113.0/33", 0),
            ("ip4:example.com", 0),
            ("ip6:2001:db8::/129", 0),
            ("include:", 0),
            ("include:localhost", 0),
            ("a:/24", 0),
            ("mx/024", 0),
            ("exists:%{z}.example.com", 0),
        ];
        for (text, index) in cases {
            let err = SpfRecord::build(&strings(&[text]), None, None).unwrap_err();
            assert_eq!(err.0, Some(index), "{text}");
            assert!(
                matches!(err.1, SpfError::Argument { ref term, .. } if term == text),
                "{text}: {:?}",
                err.1
            );
        }
        assert_eq!(
            SpfRecord::build(&strings(&["mx", "mailserver"]), None, None).unwrap_err(),
            (Some(1), SpfError::Unknown("mailserver".into()))
        );
        assert_eq!(
            SpfRecord::build(&strings(&["-all"]), None, None).unwrap_err(),
            (Some(0), SpfError::OwnField("all".into()))
        );
        assert_eq!(
            SpfRecord::build(&[], Some(Qualifier::Fail), Some("_spf.example.net")).unwrap_err(),
            (None, SpfError::AllAndRedirect)
        );
    }

    #[test]
    fn macros_are_checked() {
        assert!(check_domain_spec("%{i}._spf.%{d}").is_ok());
        assert!(check_domain_spec("%{ir}.%{v}._spf.%{d2}").is_ok());
        assert!(check_domain_spec("%{q}.example.com").is_err());
        assert!(check_domain_spec("%{i.example.com").is_err());
        assert!(check_domain_spec("100%.example.com").is_err());
    }

    #[test]
    fn ptr_and_duplicates_warn() {
        let (_, warnings) = SpfRecord::build(
            &strings(&["ptr", "mx", "mx"]),
            Some(Qualifier::SoftFail),
            None,
        )
        .unwrap();
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn parses_published_records() {
        let rec = SpfRecord::parse(
            "V=SPF1  +mx ?include:_spf.google.com  redirect=_spf.example.com foo=bar",
        )
        .unwrap();
        assert_eq!(rec.terms.len(), 4);
        assert_eq!(rec.lookup_count(), 3);
        assert_eq!(SpfRecord::parse("v=spf10 mx"), Err(SpfError::Version));
        assert_eq!(
            SpfRecord::parse("v=spf1 mx redirect=a.example redirect=b.example"),
            Err(SpfError::DuplicateModifier("redirect"))
        );
        assert!(matches!(
            SpfRecord::parse("v=spf1 ipv4:192.0.2.1"),
            Err(SpfError::Unknown(_))
        ));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn mechanism_text() -> impl Strategy<Value = String> {
        let q = "[-~?]?";
        prop_oneof![
            (q, "[a-z]{1,6}\\.(com|net)").prop_map(|(q, d)| format!("{q}include:{d}")),
            (
                q,
                proptest::option::of("[a-z]{1,6}\\.example"),
                proptest::option::of(0u8..=32)
            )
                .prop_map(|(q, d, p)| {
                    format!(
                        "{q}a{}{}",
                        d.map(|d| format!(":{d}")).unwrap_or_default(),
                        p.map(|p| format!("/{p}")).unwrap_or_default()
                    )
                }),
            (q, proptest::option::of(0u8..=128)).prop_map(|(q, p)| format!(
                "{q}mx{}",
                p.map(|p| format!("//{p}")).unwrap_or_default()
            )),
            (q, any::<[u8; 4]>(), 0u8..=32)
                .prop_map(|(q, ip, p)| format!("{q}ip4:{}/{p}", Ipv4Addr::from(ip))),
            (q, any::<[u16; 8]>()).prop_map(|(q, ip)| format!("{q}ip6:{}", Ipv6Addr::from(ip))),
        ]
    }

    proptest! {
        #[test]
        fn built_records_parse_back_to_the_same_terms(
            mechanisms in proptest::collection::vec(mechanism_text(), 0..8),
            all in prop_oneof![Just(Qualifier::Fail), Just(Qualifier::SoftFail), Just(Qualifier::Neutral)],
        ) {
            let (rec, _) = SpfRecord::build(&mechanisms, Some(all), None).unwrap();
            let text = rec.render();
            prop_assert!(text.starts_with("v=spf1 "));
            prop_assert_eq!(SpfRecord::parse(&text).unwrap(), rec);
        }
    }
}
