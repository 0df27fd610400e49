//! Which old TLS version a server speaks when it refused TLS 1.2 and 1.3.
//!
//! rustls rightly implements nothing below TLS 1.2, and many servers hang up on a modern hello
//! without the `protocol_version` alert, so the failure alone does not say why. To name it, the
//! probe sends one TLS 1.1 ClientHello and reads the version in the server's answer; nothing
//! after the ServerHello is spoken and no session is made. These are fixed bytes of RFC 4346
//! §7.4.1.2: a TLS library that can build them would be a second TLS stack for 40 lines.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
/// The highest version offered: TLS 1.1 (a server speaking 1.0 only answers 1.0).
const TLS11: [u8; 2] = [3, 2];

/// What the server said to the old hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A ServerHello for this protocol version (e.g. `0x0301` for TLS 1.0).
    Hello(u16),
    /// An alert: it does not speak old TLS either (or not our ciphers).
    Alert(u8),
}

/// A TLS 1.1 ClientHello for `host` (SNI), offering the CBC suites old servers have.
pub fn client_hello(host: &str) -> Vec<u8> {
    // ECDHE-ECDSA and ECDHE-RSA with AES-CBC, RSA with AES-CBC and 3DES, and the
    // renegotiation SCSV.
    let suites: [u16; 8] = [
        0xC00A, 0xC009, 0xC014, 0xC013, 0x0035, 0x002F, 0x000A, 0x00FF,
    ];
    let mut extensions = Vec::new();
    let name = host.as_bytes();
    if let Ok(name_len) = u16::try_from(name.len())
        && name_len < 256
    {
        // server_name: list length, type host_name, name length, name.
        extensions.extend_from_slice(&[0, 0]);
        extensions.extend_from_slice(&(name_len + 5).to_be_bytes());
        extensions.extend_from_slice(&(name_len + 3).to_be_bytes());
        extensions.push(0);
        extensions.extend_from_slice(&name_len.to_be_bytes());
        extensions.extend_from_slice(name);
    }
    // supported_groups: secp256r1, secp384r1, x25519.
    extensions.extend_from_slice(&[0, 10, 0, 8, 0, 6, 0, 23, 0, 24, 0, 29]);
    // ec_point_formats: uncompressed.
    extensions.extend_from_slice(&[0, 11, 0, 2, 1, 0]);

    let mut body = Vec::new();
    body.extend_from_slice(&TLS11);
    // The client random needs no secrecy: no keys are ever derived from this hello.
    body.extend((0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11)));
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);

    let mut handshake = vec![CLIENT_HELLO];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);

    // The record layer says TLS 1.0, as old clients do, so 1.0-only servers read it.
    let mut record = vec![HANDSHAKE, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Reads the version from the start of the server's answer (at least 11 bytes for a
/// ServerHello, 7 for an alert); `None` when it is neither.
pub fn answer(bytes: &[u8]) -> Option<Answer> {
    match *bytes {
        [ALERT, 3, _, _, _, _level, description, ..] => Some(Answer::Alert(description)),
        [
            HANDSHAKE,
            3,
            _,
            _,
            _,
            SERVER_HELLO,
            _,
            _,
            _,
            major,
            minor,
            ..,
        ] => Some(Answer::Hello(u16::from_be_bytes([major, minor]))),
        _ => None,
    }
}

/// The protocol's name for a version number.
pub fn version_name(version: u16) -> String {
    match version {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        other => format!("version 0x{other:04x}"),
    }
}

/// Sends the old hello on `stream` (right after STARTTLS) and returns the answer, if one
/// came within `timeout`.
pub async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    timeout: Duration,
) -> Option<Answer> {
    let exchange = async {
        stream.write_all(&client_hello(host)).await.ok()?;
        let mut buf = [0u8; 11];
        let mut filled = 0;
        while filled < buf.len() {
            let n = stream.read(&mut buf[filled..]).await.ok()?;
            if n == 0 {
                break;
            }
            filled += n;
            if let Some(a @ Answer::Alert(_)) = answer(&buf[..filled]) {
                return Some(a);
            }
        }
        answer(&buf[..filled])
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

/// The name of the pre-1.2 version the server answers the old hello with, if it does.
pub async fn old_version<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    timeout: Duration,
) -> Option<String> {
    match ask(stream, host, timeout).await? {
        Answer::Hello(v) if v < 0x0303 => Some(version_name(v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hello_is_well_formed() {
        let hello = client_hello("mx1.example.com");
        assert_eq!(&hello[..3], &[HANDSHAKE, 3, 1]);
        let record_len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
        assert_eq!(record_len, hello.len() - 5, "record length");
        assert_eq!(hello[5], CLIENT_HELLO);
        let hs_len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize;
        assert_eq!(hs_len, hello.len() - 9, "handshake length");
        assert_eq!(&hello[9..11], &TLS11);
        // After version, random and an empty session id: 8 suites.
        let suites = 9 + 2 + 32 + 1;
        assert_eq!(u16::from_be_bytes([hello[suites], hello[suites + 1]]), 16);
        let compression = suites + 2 + 16;
        assert_eq!(&hello[compression..compression + 2], &[1, 0]);
        let ext_len = u16::from_be_bytes([hello[compression + 2], hello[compression + 3]]) as usize;
        assert_eq!(ext_len, hello.len() - compression - 4, "extensions length");
        // SNI first, with the host name at its end.
        let sni = compression + 4;
        assert_eq!(&hello[sni..sni + 2], &[0, 0]);
        let name = &hello[sni + 9..sni + 9 + "mx1.example.com".len()];
        assert_eq!(name, b"mx1.example.com");
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(
            answer(&[22, 3, 1, 0, 80, 2, 0, 0, 76, 3, 1]),
            Some(Answer::Hello(0x0301))
        );
        assert_eq!(answer(&[21, 3, 1, 0, 2, 2, 70]), Some(Answer::Alert(70)));
        assert_eq!(answer(&[22, 3, 1, 0, 80, 11, 0, 0, 76, 3, 1]), None);
        assert_eq!(answer(b"220 hello"), None);
        assert_eq!(answer(&[22, 3]), None);
        assert_eq!(version_name(0x0301), "TLS 1.0");
        assert_eq!(version_name(0x7f00), "version 0x7f00");
    }
}
