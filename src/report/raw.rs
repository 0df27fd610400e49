//! The raw form of a report as serde reads it from JSON: every field optional, each value
//! as sent. The visitors know the report's shape: they check the nesting depth as they enter
//! each array and object (a value under an unknown key is skipped within the same bound),
//! count policies and failure details as they are read, note unknown keys, and allocate only
//! for the strings the report keeps. [`super::json`] builds the typed report from this.

use std::marker::PhantomData;

use jiff::Timestamp;
use jiff::tz::Offset;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::limits::Limits;
use super::model::{PolicyType, ResultType, Warning};
use super::{ReportError, clip};

/// The warnings of one parse, at most `max` of them, the rest counted.
pub(super) struct Warnings {
    list: Vec<Warning>,
    max: usize,
    dropped: usize,
}

impl Warnings {
    pub(super) fn new(max: usize) -> Self {
        Warnings {
            list: Vec::new(),
            max,
            dropped: 0,
        }
    }

    pub(super) fn push(&mut self, warning: Warning) {
        self.push_with(|| warning);
    }

    /// Makes the warning only when it is kept.
    fn push_with(&mut self, warning: impl FnOnce() -> Warning) {
        if self.list.len() < self.max {
            self.list.push(warning());
        } else {
            self.dropped += 1;
        }
    }

    pub(super) fn finish(mut self) -> Vec<Warning> {
        if self.dropped > 0 {
            self.list.push(Warning::MoreWarnings {
                count: self.dropped,
            });
        }
        self.list
    }
}

/// What one parse counts and collects. The first limit exceeded is kept here (serde's error
/// type cannot carry it) and wins over the error serde then returns.
pub(super) struct Ctx<'l> {
    pub(super) limits: &'l Limits,
    /// Failure details read so far, of all policies.
    pub(super) details: usize,
    pub(super) exceeded: Option<ReportError>,
    pub(super) warnings: Warnings,
}

impl<'l> Ctx<'l> {
    pub(super) fn new(limits: &'l Limits) -> Self {
        Ctx {
            limits,
            details: 0,
            exceeded: None,
            warnings: Warnings::new(limits.max_warnings),
        }
    }

    fn over<E: de::Error>(&mut self, error: ReportError) -> E {
        let message = error.to_string();
        self.exceeded = Some(error);
        E::custom(message)
    }

    /// Entering an array or object at `depth` (the report's object is 1).
    fn enter<E: de::Error>(&mut self, depth: usize) -> Result<(), E> {
        let limit = self.limits.max_depth;
        if depth > limit {
            return Err(self.over(ReportError::TooDeep { limit }));
        }
        Ok(())
    }

    fn unknown(&mut self, place: &dyn Fn() -> String, key: &str) {
        self.warnings.push_with(|| {
            let place = place();
            let path = if place.is_empty() {
                key.to_owned()
            } else {
                format!("{place}.{key}")
            };
            Warning::UnknownField {
                path: clip(&path, 200),
            }
        });
    }
}

/// A key of an object: the index of a name the visitor knows, or an unknown name.
enum Key {
    Known(usize),
    Unknown(String),
}

struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match self.0.iter().position(|name| *name == key) {
            Some(i) => Key::Known(i),
            None => Key::Unknown(clip(key, 100)),
        })
    }
}

/// Reads an object at `depth`: each known key (an index into `names`, at most once) goes to
/// `field`; an unknown key is noted (under `place`) and its value skipped, within the depth
/// limit.
fn entries<'de, 'l, A, F>(
    mut map: A,
    ctx: &mut Ctx<'l>,
    names: &'static [&'static str],
    depth: usize,
    place: &dyn Fn() -> String,
    mut field: F,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(usize, &mut A, &mut Ctx<'l>) -> Result<(), A::Error>,
{
    ctx.enter(depth)?;
    let mut seen = 0u32;
    while let Some(key) = map.next_key_seed(KeySeed(names))? {
        match key {
            Key::Known(i) => {
                let bit = 1u32 << i;
                if seen & bit != 0 {
                    return Err(de::Error::duplicate_field(names[i]));
                }
                seen |= bit;
                field(i, &mut map, ctx)?;
            }
            Key::Unknown(key) => {
                ctx.unknown(place, &key);
                map.next_value_seed(Skip {
                    ctx: &mut *ctx,
                    depth: depth + 1,
                })?;
            }
        }
    }
    Ok(())
}

/// Skips a value nobody asked for, counting its depth.
struct Skip<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    /// The depth the value has if it is an array or object.
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Skip<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.ctx.enter(self.depth)?;
        while seq
            .next_element_seed(Skip {
                ctx: &mut *self.ctx,
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.ctx.enter(self.depth)?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip {
                ctx: &mut *self.ctx,
                depth: self.depth + 1,
            })?;
        }
        Ok(())
    }
}

/// A value or null (`None`), the value read by the inner seed.
struct OrNull<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for OrNull<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OrNull<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

/// `policy-type` and `result-type` by name, without allocating for the known ones.
struct ByName<T>(T);

trait Named: Sized {
    fn named(name: &str) -> Self;
}

impl Named for PolicyType {
    fn named(name: &str) -> Self {
        PolicyType::from_name(name)
    }
}

impl Named for ResultType {
    fn named(name: &str) -> Self {
        ResultType::from_name(name)
    }
}

impl<'de, T: Named> serde::Deserialize<'de> for ByName<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Named> Visitor<'de> for V<T> {
            type Value = ByName<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a type name")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByName<T>, E> {
                Ok(ByName(T::named(v)))
            }
        }
        deserializer.deserialize_str(V(PhantomData))
    }
}

/// A date-time as sent: RFC 3339, or without a time zone (read as UTC, flagged), or text
/// that is neither (kept, clipped, for the error).
pub(super) enum RawDate {
    Zoned(Timestamp),
    Unzoned(Timestamp),
    Invalid(String),
}

impl<'de> serde::Deserialize<'de> for RawDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDate;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 date-time")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDate, E> {
                let text = v.trim();
                if let Ok(t) = text.parse::<Timestamp>() {
                    return Ok(RawDate::Zoned(t));
                }
                // Microsoft, 2023–2024: `2024-03-26T00:00:00`.
                if let Ok(civil) = text.parse::<jiff::civil::DateTime>()
                    && let Ok(t) = Offset::UTC.to_timestamp(civil)
                {
                    return Ok(RawDate::Unzoned(t));
                }
                Ok(RawDate::Invalid(clip(text, 64)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[derive(Default)]
pub(super) struct RawReport {
    pub(super) organization_name: Option<String>,
    pub(super) date_range: Option<RawDateRange>,
    pub(super) contact_info: Option<String>,
    pub(super) report_id: Option<String>,
    pub(super) policies: Option<Vec<RawEntry>>,
    /// A top-level `policy` object: the pre-RFC draft schema when `policies` is missing.
    pub(super) draft_policy: bool,
}

pub(super) struct ReportSeed<'c, 'l> {
    pub(super) ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for ReportSeed<'_, '_> {
    type Value = RawReport;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawReport, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReportSeed<'_, '_> {
    type Value = RawReport;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a TLS report object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawReport, A::Error> {
        const NAMES: &[&str] = &[
            "organization-name",
            "date-range",
            "contact-info",
            "report-id",
            "policies",
            "policy",
        ];
        let mut raw = RawReport::default();
        entries(map, self.ctx, NAMES, 1, &String::new, |key, map, ctx| {
            match key {
                0 => raw.organization_name = map.next_value()?,
                1 => raw.date_range = map.next_value_seed(OrNull(RangeSeed { ctx }))?,
                2 => raw.contact_info = map.next_value()?,
                3 => raw.report_id = map.next_value()?,
                4 => raw.policies = map.next_value_seed(OrNull(PoliciesSeed { ctx }))?,
                _ => {
                    raw.draft_policy = true;
                    ctx.unknown(&String::new, "policy");
                    map.next_value_seed(Skip { ctx, depth: 2 })?;
                }
            }
            Ok(())
        })?;
        Ok(raw)
    }
}

#[derive(Default)]
pub(super) struct RawDateRange {
    pub(super) start: Option<RawDate>,
    pub(super) end: Option<RawDate>,
}

struct RangeSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for RangeSeed<'_, '_> {
    type Value = RawDateRange;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RangeSeed<'_, '_> {
    type Value = RawDateRange;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a date-range object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        const NAMES: &[&str] = &["start-datetime", "end-datetime"];
        let mut raw = RawDateRange::default();
        let place = || "date-range".to_owned();
        entries(map, self.ctx, NAMES, 2, &place, |key, map, _| {
            match key {
                0 => raw.start = map.next_value()?,
                _ => raw.end = map.next_value()?,
            }
            Ok(())
        })?;
        Ok(raw)
    }
}

/// `policies`, at most `max_policies` of them.
struct PoliciesSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for PoliciesSeed<'_, '_> {
    type Value = Vec<RawEntry>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PoliciesSeed<'_, '_> {
    type Value = Vec<RawEntry>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of policies")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.ctx.enter(2)?;
        let mut out = Vec::new();
        while let Some(entry) = seq.next_element_seed(EntrySeed {
            ctx: &mut *self.ctx,
            index: out.len(),
        })? {
            let limit = self.ctx.limits.max_policies;
            if out.len() >= limit {
                return Err(self.ctx.over(ReportError::TooManyPolicies { limit }));
            }
            out.push(entry);
        }
        Ok(out)
    }
}

#[derive(Default)]
pub(super) struct RawEntry {
    pub(super) policy: Option<RawPolicy>,
    pub(super) summary: Option<RawSummary>,
    pub(super) failure_details: Vec<RawDetail>,
}

struct EntrySeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_, '_> {
    type Value = RawEntry;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawEntry, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_, '_> {
    type Value = RawEntry;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a policy object with policy, summary and failure-details")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawEntry, A::Error> {
        const NAMES: &[&str] = &["policy", "summary", "failure-details"];
        let index = self.index;
        let mut raw = RawEntry::default();
        let place = || format!("policies.{index}");
        entries(map, self.ctx, NAMES, 3, &place, |key, map, ctx| {
            match key {
                0 => raw.policy = map.next_value_seed(OrNull(PolicySeed { ctx, index }))?,
                1 => raw.summary = map.next_value_seed(OrNull(SummarySeed { ctx, index }))?,
                _ => {
                    raw.failure_details = map
                        .next_value_seed(OrNull(DetailsSeed { ctx, index }))?
                        .unwrap_or_default();
                }
            }
            Ok(())
        })?;
        Ok(raw)
    }
}

#[derive(Default)]
pub(super) struct RawPolicy {
    pub(super) policy_type: Option<PolicyType>,
    pub(super) policy_string: Vec<String>,
    pub(super) policy_domain: Option<String>,
    pub(super) mx_host: Option<MxHost>,
}

struct PolicySeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for PolicySeed<'_, '_> {
    type Value = RawPolicy;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawPolicy, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PolicySeed<'_, '_> {
    type Value = RawPolicy;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a policy object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPolicy, A::Error> {
        const NAMES: &[&str] = &["policy-type", "policy-string", "policy-domain", "mx-host"];
        let index = self.index;
        let mut raw = RawPolicy::default();
        let place = || format!("policies.{index}.policy");
        entries(map, self.ctx, NAMES, 4, &place, |key, map, ctx| {
            match key {
                0 => raw.policy_type = map.next_value::<Option<ByName<_>>>()?.map(|t| t.0),
                1 => {
                    raw.policy_string = map
                        .next_value_seed(OrNull(Strings { ctx, depth: 5 }))?
                        .unwrap_or_default();
                }
                2 => raw.policy_domain = map.next_value()?,
                _ => raw.mx_host = map.next_value_seed(OrNull(MxHostSeed { ctx }))?,
            }
            Ok(())
        })?;
        Ok(raw)
    }
}

/// A list of strings at `depth`.
struct Strings<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Strings<'_, '_> {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Strings<'_, '_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.ctx.enter(self.depth)?;
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            out.push(s);
        }
        Ok(out)
    }
}

/// `mx-host` as sent: a list (RFC 8460 with errata 6241) or one string (its Appendix B).
pub(super) enum MxHost {
    One(String),
    Many(Vec<String>),
}

struct MxHostSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for MxHostSeed<'_, '_> {
    type Value = MxHost;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<MxHost, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MxHostSeed<'_, '_> {
    type Value = MxHost;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of MX host patterns or one pattern")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MxHost, E> {
        Ok(MxHost::One(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MxHost, A::Error> {
        Strings {
            ctx: self.ctx,
            depth: 5,
        }
        .visit_seq(seq)
        .map(MxHost::Many)
    }
}

#[derive(Default)]
pub(super) struct RawSummary {
    pub(super) successful: Option<u64>,
    pub(super) failed: Option<u64>,
}

struct SummarySeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for SummarySeed<'_, '_> {
    type Value = RawSummary;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawSummary, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SummarySeed<'_, '_> {
    type Value = RawSummary;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a summary object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSummary, A::Error> {
        const NAMES: &[&str] = &[
            "total-successful-session-count",
            "total-failure-session-count",
        ];
        let index = self.index;
        let mut raw = RawSummary::default();
        let place = || format!("policies.{index}.summary");
        entries(map, self.ctx, NAMES, 4, &place, |key, map, _| {
            match key {
                0 => raw.successful = map.next_value()?,
                _ => raw.failed = map.next_value()?,
            }
            Ok(())
        })?;
        Ok(raw)
    }
}

/// One policy's `failure-details`; all policies' lists together hold at most
/// `max_failure_details`.
struct DetailsSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for DetailsSeed<'_, '_> {
    type Value = Vec<RawDetail>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DetailsSeed<'_, '_> {
    type Value = Vec<RawDetail>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of failure details")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.ctx.enter(4)?;
        let mut out = Vec::new();
        while let Some(detail) = seq.next_element_seed(DetailSeed {
            ctx: &mut *self.ctx,
            policy: self.index,
            detail: out.len(),
        })? {
            let limit = self.ctx.limits.max_failure_details;
            if self.ctx.details >= limit {
                return Err(self.ctx.over(ReportError::TooManyFailureDetails { limit }));
            }
            self.ctx.details += 1;
            out.push(detail);
        }
        Ok(out)
    }
}

#[derive(Default)]
pub(super) struct RawDetail {
    pub(super) result_type: Option<ResultType>,
    pub(super) sending_mta_ip: Option<String>,
    pub(super) receiving_mx_hostname: Option<String>,
    pub(super) receiving_mx_helo: Option<String>,
    pub(super) receiving_ip: Option<String>,
    pub(super) failed_session_count: Option<u64>,
    pub(super) additional_information: Option<String>,
    pub(super) failure_reason_code: Option<String>,
}

struct DetailSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    policy: usize,
    detail: usize,
}

impl<'de> DeserializeSeed<'de> for DetailSeed<'_, '_> {
    type Value = RawDetail;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawDetail, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DetailSeed<'_, '_> {
    type Value = RawDetail;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a failure detail object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDetail, A::Error> {
        const NAMES: &[&str] = &[
            "result-type",
            "sending-mta-ip",
            "receiving-mx-hostname",
            "receiving-mx-helo",
            "receiving-ip",
            "failed-session-count",
            "additional-information",
            "failure-reason-code",
        ];
        let (policy, detail) = (self.policy, self.detail);
        let mut raw = RawDetail::default();
        let place = || format!("policies.{policy}.failure-details.{detail}");
        entries(map, self.ctx, NAMES, 5, &place, |key, map, _| {
            match key {
                0 => raw.result_type = map.next_value::<Option<ByName<_>>>()?.map(|t| t.0),
                1 => raw.sending_mta_ip = map.next_value()?,
                2 => raw.receiving_mx_hostname = map.next_value()?,
                3 => raw.receiving_mx_helo = map.next_value()?,
                4 => raw.receiving_ip = map.next_value()?,
                5 => raw.failed_session_count = map.next_value()?,
                6 => raw.additional_information = map.next_value()?,
                _ => raw.failure_reason_code = map.next_value()?,
            }
            Ok(())
        })?;
        Ok(raw)
    }
}
