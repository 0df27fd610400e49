//! The local BIND 9 of the test environment: RFC 2136 updates signed with the TSIG key are
//! applied, updates signed with a wrong secret are refused. Uses nsupdate/dig (bind9-utils,
//! bind9-dnsutils) so these tests check the harness, independent of the operator's DNS code.

mod support;

use std::sync::Mutex;

use support::{parse_txt_strings, random_suffix};

/// The tests compare the zone serial; run them one at a time.
static DNS: Mutex<()> = Mutex::new(());

/// A deterministic value of `len` bytes, safe inside a quoted TXT string.
fn filler(tag: &str, len: usize) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-=";
    let mut s = String::from(tag);
    let mut i = 0;
    while s.len() < len {
        s.push(char::from(alphabet[i % alphabet.len()]));
        i += 1;
    }
    s
}

#[test]
fn zone_serves_the_seed_records() {
    let Some(env) = support::env() else { return };
    let _lock = DNS.lock().unwrap_or_else(|e| e.into_inner());
    let dns = &env.dns;
    assert!(dns.soa_serial() >= 1);
    assert_eq!(
        dns.dig_short(&dns.zone, "MX"),
        [format!("10 mx1.{}.", dns.zone)]
    );
    assert_eq!(dns.dig_short(&format!("mx1.{}", dns.zone), "A").len(), 1);
    assert_eq!(dns.dig_short(&dns.zone, "A").len(), 1);
    assert_eq!(
        dns.dig_short(&dns.zone, "NS"),
        [format!("ns1.{}.", dns.zone)]
    );
}

#[test]
fn tsig_signed_update_adds_a_long_txt_record() {
    let Some(env) = support::env() else { return };
    let _lock = DNS.lock().unwrap_or_else(|e| e.into_inner());
    let dns = &env.dns;
    let name = format!("harness-{}.{}", random_suffix(), dns.zone);
    // 600 bytes: more than one 255-byte character-string, so it is sent as three.
    let value = filler("v=harness1 ", 600);
    let chunks: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(chunks.len(), 3);
    let quoted: Vec<String> = chunks.iter().map(|c| format!("\"{c}\"")).collect();
    let serial = dns.soa_serial();

    let out = dns.nsupdate(
        &format!(
            "zone {}\nupdate add {name} 60 IN TXT {}\nsend\n",
            dns.zone,
            quoted.join(" ")
        ),
        &dns.tsig_secret,
    );
    assert!(
        out.status.success(),
        "signed nsupdate failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let answers = dns.dig_short(&name, "TXT");
    assert_eq!(answers.len(), 1, "one TXT record expected, got {answers:?}");
    assert_eq!(parse_txt_strings(&answers[0]), chunks);
    assert_eq!(parse_txt_strings(&answers[0]).concat(), value);
    assert!(
        dns.soa_serial() > serial,
        "serial must grow after an update"
    );

    // Tidy up (and check that a signed delete works too).
    let out = dns.nsupdate(
        &format!("zone {}\nupdate delete {name} TXT\nsend\n", dns.zone),
        &dns.tsig_secret,
    );
    assert!(out.status.success(), "signed delete failed");
    assert!(dns.dig_short(&name, "TXT").is_empty());
}

#[test]
fn update_with_a_wrong_tsig_secret_is_refused() {
    let Some(env) = support::env() else { return };
    let _lock = DNS.lock().unwrap_or_else(|e| e.into_inner());
    let dns = &env.dns;
    let name = format!("harness-{}.{}", random_suffix(), dns.zone);
    // Valid base64 of 32 zero bytes: same key name and algorithm, wrong secret.
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    assert_ne!(wrong, dns.tsig_secret);
    let serial = dns.soa_serial();

    let out = dns.nsupdate(
        &format!(
            "zone {}\nupdate add {name} 60 IN TXT \"must-not-exist\"\nsend\n",
            dns.zone
        ),
        wrong,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "update with a wrong secret succeeded:\n{text}"
    );
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("notauth") || lower.contains("tsig") || lower.contains("badsig"),
        "unexpected nsupdate failure:\n{text}"
    );

    assert!(
        dns.dig_short(&name, "TXT").is_empty(),
        "the refused update left a record"
    );
    assert_eq!(
        dns.soa_serial(),
        serial,
        "the refused update changed the zone serial"
    );
}

#[test]
fn txt_parser_handles_escapes() {
    assert_eq!(
        parse_txt_strings(r#""a b" "c\"d" "e\059f""#),
        ["a b", "c\"d", "e;f"]
    );
}
