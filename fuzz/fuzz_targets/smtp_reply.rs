//! The SMTP replies an MX host sends the STARTTLS probe (RFC 5321 §4.2: greeting, EHLO
//! keywords, the answer to STARTTLS), here from memory instead of a TCP peer. Properties:
//! the dialogue ends (EOF is an error, never a hang); the probe only ever writes its two
//! commands, in order; success needs a 220 greeting, a STARTTLS keyword and a 220 answer;
//! a well-formed dialogue succeeds whatever bytes its text holds (servers send Latin-1).
#![no_main]
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mailsec_operator::checks::smtp::{SmtpError, negotiate};
use tokio::io::BufReader;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
});

const EHLO: &[u8] = b"EHLO mailsec.check\r\n";
const STARTTLS: &[u8] = b"STARTTLS\r\n";

fn talk(peer: &[u8]) -> (Result<(), SmtpError>, Vec<u8>) {
    let mut sent = Vec::new();
    let mut conn = BufReader::new(tokio::io::join(peer, &mut sent));
    let result = RUNTIME.block_on(negotiate(
        &mut conn,
        "mx.example.com",
        Duration::from_secs(60),
    ));
    drop(conn);
    (result, sent)
}

fuzz_target!(|peer: &[u8]| {
    // The fuzz bytes as reply text (no line ends, within RFC 5321's 512-octet lines).
    let text: Vec<u8> = peer
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .take(400)
        .collect();
    let dialogue = [
        b"220 ".as_slice(),
        &text,
        b"\r\n250-",
        &text,
        b"\r\n250 STARTTLS\r\n220 ",
        &text,
        b"\r\n",
    ]
    .concat();
    let (result, _) = talk(&dialogue);
    assert_eq!(result, Ok(()), "{:?}", String::from_utf8_lossy(&dialogue));

    let (result, sent) = talk(peer);
    assert!(sent.is_empty() || sent.starts_with(EHLO), "{sent:?}");
    assert!(
        sent == b"" || sent == EHLO || sent == [EHLO, STARTTLS].concat(),
        "{sent:?}"
    );
    match result {
        Ok(()) => {
            assert!(peer.starts_with(b"220"));
            assert_eq!(sent, [EHLO, STARTTLS].concat());
            let text = String::from_utf8_lossy(peer).to_ascii_uppercase();
            assert!(text.contains("STARTTLS"));
        }
        Err(SmtpError::NoStartTls(_)) => assert_eq!(sent, EHLO),
        Err(SmtpError::Protocol { .. }) => {}
        Err(e) => panic!("a memory peer gave {e}"),
    }
});
