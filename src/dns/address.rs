//! The policy host's address: `mta-sts.<domain>` as a CNAME to a name the user gives, or as
//! A/AAAA records (from the Ingress's or Gateway's load balancer). Published through the same
//! provider as the TXT records, marked the same way (`_mailsec.mta-sts.<domain>`), and never
//! written over address records someone else made: those are a conflict.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address records at one name (CNAME, A, AAAA), as a provider holds them or as wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressSet {
    pub ttl: u32,
    /// The target, lower case, without the root dot.
    pub cname: Option<String>,
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
}

impl AddressSet {
    /// A CNAME to `target`.
    pub fn cname(target: &str, ttl: u32) -> Self {
        AddressSet {
            ttl,
            cname: Some(target.trim_end_matches('.').to_ascii_lowercase()),
            ..AddressSet::default()
        }
    }

    /// A and AAAA records for `ips` (sorted, each once).
    pub fn ips(ips: &[IpAddr], ttl: u32) -> Self {
        let mut set = AddressSet {
            ttl,
            ..AddressSet::default()
        };
        for ip in ips {
            match ip {
                IpAddr::V4(v4) => set.a.push(*v4),
                IpAddr::V6(v6) => set.aaaa.push(*v6),
            }
        }
        set.a.sort();
        set.a.dedup();
        set.aaaa.sort();
        set.aaaa.dedup();
        set
    }

    /// Adds one record as a provider's API shows it (`CNAME` target with or without the root
    /// dot, an address in text). Other types are not address records: `Ok(false)`. A value
    /// that cannot be read is an error naming it.
    pub fn add(&mut self, rtype: &str, value: &str, ttl: u32) -> Result<bool, String> {
        let unreadable = || format!("{rtype} content `{value}` cannot be read");
        match rtype {
            "CNAME" => self.cname = Some(value.trim_end_matches('.').to_ascii_lowercase()),
            "A" => self.a.push(value.parse().map_err(|_| unreadable())?),
            "AAAA" => self.aaaa.push(value.parse().map_err(|_| unreadable())?),
            _ => return Ok(false),
        }
        self.ttl = ttl;
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        self.cname.is_none() && self.a.is_empty() && self.aaaa.is_empty()
    }

    /// The same records, whatever the TTL and order.
    pub fn same_records(&self, other: &AddressSet) -> bool {
        let sorted = |s: &AddressSet| {
            let (mut a, mut aaaa) = (s.a.clone(), s.aaaa.clone());
            a.sort();
            aaaa.sort();
            (s.cname.clone(), a, aaaa)
        };
        sorted(self) == sorted(other)
    }

    /// Each record as `(type, value)`, the way status lists them (CNAME targets with no dot).
    pub fn records(&self) -> Vec<(&'static str, String)> {
        self.cname
            .iter()
            .map(|c| ("CNAME", c.clone()))
            .chain(self.a.iter().map(|ip| ("A", ip.to_string())))
            .chain(self.aaaa.iter().map(|ip| ("AAAA", ip.to_string())))
            .collect()
    }
}

/// What to do at the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// DNS already holds exactly what is wanted (or nothing, and nothing is wanted).
    Nothing,
    /// Replace what is there (ours, or nothing) by `after`; an empty `after` deletes it.
    Write { after: AddressSet, mark: bool },
    /// Someone else's records are in the way; nothing is written.
    Conflict(String),
}

/// Plans the address at `name`: `want` (None: none wanted) against `current`, `ours` when our
/// marker is at the name. Records without our marker are never changed or removed; an exact
/// match of what is wanted is left as it is, unmarked.
pub fn plan(name: &str, want: Option<&AddressSet>, current: &AddressSet, ours: bool) -> Step {
    match want {
        None if ours && !current.is_empty() => Step::Write {
            after: AddressSet::default(),
            mark: false,
        },
        None => Step::Nothing,
        Some(want) if current.same_records(want) => Step::Nothing,
        Some(want) if current.is_empty() || ours => Step::Write {
            after: want.clone(),
            mark: !ours,
        },
        Some(_) => {
            let there: Vec<String> = current
                .records()
                .into_iter()
                .map(|(t, v)| format!("{t} {v}"))
                .collect();
            Step::Conflict(format!(
                "{name} already has {} that this operator did not create; remove it, or drop policyHost.address",
                there.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_records_or_none_are_written() {
        let name = "mta-sts.example.com";
        let want = AddressSet::cname("LB.example.net.", 300);
        assert_eq!(want.cname.as_deref(), Some("lb.example.net"));
        let empty = AddressSet::default();
        assert_eq!(
            plan(name, Some(&want), &empty, false),
            Step::Write {
                after: want.clone(),
                mark: true
            }
        );
        // Exactly there already (ours or not): nothing to do.
        let there = AddressSet {
            ttl: 60,
            ..want.clone()
        };
        assert_eq!(plan(name, Some(&want), &there, false), Step::Nothing);
        // Someone else's A record: a conflict naming it, no write.
        let foreign = AddressSet::ips(&["192.0.2.7".parse().unwrap()], 300);
        match plan(name, Some(&want), &foreign, false) {
            Step::Conflict(m) => assert!(m.contains("A 192.0.2.7"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Ours: replaced; no longer wanted: deleted; not ours and not wanted: left.
        assert_eq!(
            plan(name, Some(&want), &foreign, true),
            Step::Write {
                after: want.clone(),
                mark: false
            }
        );
        assert_eq!(
            plan(name, None, &foreign, true),
            Step::Write {
                after: AddressSet::default(),
                mark: false
            }
        );
        assert_eq!(plan(name, None, &foreign, false), Step::Nothing);
    }

    #[test]
    fn records_are_read_the_way_apis_show_them() {
        let mut set = AddressSet::default();
        assert_eq!(set.add("CNAME", "LB.Example.NET.", 60), Ok(true));
        assert_eq!(
            set.add("TXT", "v=spf1 -all", 1),
            Ok(false),
            "not an address"
        );
        assert_eq!(set.add("AAAA", "2001:db8::1", 60), Ok(true));
        assert!(
            set.add("A", "192.0.2.300", 60)
                .unwrap_err()
                .contains("192.0.2.300")
        );
        assert_eq!(set.cname.as_deref(), Some("lb.example.net"));
        assert_eq!((set.a.len(), set.aaaa.len(), set.ttl), (0, 1, 60));
    }

    #[test]
    fn addresses_are_sorted_once_each_and_compared_as_sets() {
        let ips: Vec<IpAddr> = ["2001:db8::2", "192.0.2.2", "192.0.2.1", "192.0.2.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let set = AddressSet::ips(&ips, 300);
        assert_eq!(
            set.records(),
            [
                ("A", "192.0.2.1".to_owned()),
                ("A", "192.0.2.2".to_owned()),
                ("AAAA", "2001:db8::2".to_owned())
            ]
        );
        let mut other = set.clone();
        other.a.reverse();
        other.ttl = 1;
        assert!(set.same_records(&other));
    }
}
