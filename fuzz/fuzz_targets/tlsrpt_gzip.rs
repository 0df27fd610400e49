//! Gzip intake (`application/tlsrpt+gzip`, one member or several). Properties: inflating
//! never yields more than `max_uncompressed` bytes, whatever the data claims; gzip we make of
//! any payload (repeated up to 255 times, to 32 KiB: many are bombs for the 16 KiB limit; split
//! into two members) inflates back to the payload when it fits and is refused as
//! InflatedTooLarge when it does not.
#![no_main]
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use mailsec_operator::report::{Limits, ReportError, inflate, parse_gzip};

const LIMIT: usize = 16 << 10;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_uncompressed: LIMIT,
        max_compressed: 64 << 10,
        ..Limits::default()
    };
    // Arbitrary data as gzip.
    match inflate(data, &limits) {
        Ok(out) => assert!(out.len() <= LIMIT, "{} bytes inflated", out.len()),
        Err(ReportError::TooLarge { size, .. }) => assert!(size > limits.max_compressed),
        Err(_) => {}
    }
    let _ = parse_gzip(data, &limits);

    let Some((&repeat, rest)) = data.split_first() else {
        return;
    };
    // At most twice the limit: enough to cross it, small enough to compress quickly.
    let size = (rest.len() * usize::from(repeat)).min(2 * LIMIT);
    let payload: Vec<u8> = rest.iter().copied().cycle().take(size).collect();
    let split = payload.len() / 2;
    let mut two_members = gzip(&payload[..split]);
    two_members.extend_from_slice(&gzip(&payload[split..]));
    for gz in [gzip(&payload), two_members] {
        match inflate(&gz, &limits) {
            Ok(out) => assert_eq!(out, payload),
            Err(ReportError::InflatedTooLarge { limit }) => {
                assert_eq!(limit, LIMIT);
                assert!(payload.len() > LIMIT, "{} bytes refused", payload.len());
            }
            Err(ReportError::TooLarge { .. }) => assert!(gz.len() > limits.max_compressed),
            Err(e) => panic!("our gzip of {} bytes: {e}", payload.len()),
        }
    }
});
