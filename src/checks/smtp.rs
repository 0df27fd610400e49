//! SMTP STARTTLS probe of one MX host, as a sending MTA-STS sender would do it: connect, EHLO,
//! STARTTLS offered, TLS 1.2 or newer, a certificate valid for the MX host name (RFC 8461 §4.2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A successful handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secured {
    pub version: String,
}

/// Why the MX host did not give a validated TLS session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpError {
    /// No answer to the TCP connect: often outbound port 25 is blocked where the check runs,
    /// which says nothing about the domain.
    #[error("no answer from {0} (outbound port 25 may be blocked where this check runs)")]
    ConnectTimeout(String),
    #[error("connection to {0} refused")]
    Refused(String),
    #[error("{host} answered `{line}` {when}")]
    Protocol {
        host: String,
        line: String,
        when: &'static str,
    },
    #[error("{0} does not offer STARTTLS")]
    NoStartTls(String),
    #[error("{host} offers no TLS 1.2 or newer: {message}")]
    TlsVersion { host: String, message: String },
    #[error("{host}: certificate refused: {message}")]
    Certificate {
        host: String,
        message: String,
        /// Stable reason, e.g. `CertificateNameMismatch`.
        reason: &'static str,
    },
    #[error("{host}: TLS handshake failed: {message}")]
    Handshake { host: String, message: String },
    #[error("{0} did not answer in time")]
    Timeout(String),
}

impl SmtpError {
    /// Stable reason for findings and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            SmtpError::ConnectTimeout(_) => "Port25Unreachable",
            SmtpError::Refused(_) => "ConnectionRefused",
            SmtpError::Protocol { .. } => "SMTPProtocolError",
            SmtpError::NoStartTls(_) => "NoSTARTTLS",
            SmtpError::TlsVersion { .. } => "TLSVersionTooOld",
            SmtpError::Certificate { reason, .. } => reason,
            SmtpError::Handshake { .. } => "TLSHandshakeFailed",
            SmtpError::Timeout(_) => "Timeout",
        }
    }
}

/// Probes `host` at `addr` within `timeout` for each step.
pub async fn probe(
    host: &str,
    addr: SocketAddr,
    roots: Arc<RootCertStore>,
    timeout: Duration,
) -> Result<Secured, SmtpError> {
    let label = format!("{host} ({addr})");
    let tcp = starttls(addr, &label, timeout).await?;
    let connector = super::tls::connector(roots).map_err(|e| SmtpError::Handshake {
        host: host.to_owned(),
        message: e.to_string(),
    })?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| SmtpError::Handshake {
        host: host.to_owned(),
        message: format!("not a host name: {e}"),
    })?;
    let handshake = connector.connect(name, tcp);
    let mut tls = match tokio::time::timeout(timeout, handshake).await {
        Err(_) => return Err(SmtpError::Timeout(label)),
        Ok(Err(e)) => {
            let error = classify(host, &e);
            if matches!(error, SmtpError::Handshake { .. })
                && let Some(old) = old_tls(host, addr, timeout).await
            {
                return Err(SmtpError::TlsVersion {
                    host: host.to_owned(),
                    message: format!(
                        "it speaks {old} at most (it answered a {old} hello after refusing TLS 1.2 and 1.3)"
                    ),
                });
            }
            return Err(error);
        }
        Ok(Ok(tls)) => tls,
    };
    let version = tls
        .get_ref()
        .1
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    // Best effort: a polite goodbye; the result does not depend on it.
    let _ = tokio::time::timeout(Duration::from_secs(1), tls.write_all(b"QUIT\r\n")).await;
    Ok(Secured { version })
}

/// Connects, reads the greeting, says EHLO and starts TLS: the stream is ready for a
/// ClientHello.
async fn starttls(
    addr: SocketAddr,
    label: &str,
    timeout: Duration,
) -> Result<TcpStream, SmtpError> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(SmtpError::ConnectTimeout(label.to_owned())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(SmtpError::Refused(label.to_owned()));
        }
        Ok(Err(_)) => return Err(SmtpError::ConnectTimeout(label.to_owned())),
        Ok(Ok(tcp)) => tcp,
    };
    let mut conn = BufReader::new(tcp);
    negotiate(&mut conn, label, timeout).await?;
    Ok(conn.into_inner())
}

/// The SMTP part of [`starttls`] on any stream: greeting, EHLO, STARTTLS offered and accepted.
/// Generic so the fuzz targets (fuzz/) can drive it with the peer's bytes from memory.
#[doc(hidden)]
pub async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    label: &str,
    timeout: Duration,
) -> Result<(), SmtpError> {
    let greeting = within(timeout, label, reply(conn, label)).await?;
    expect(&greeting, "220", label, "as greeting")?;
    within(timeout, label, send(conn, "EHLO mailsec.check\r\n", label)).await?;
    let ehlo = within(timeout, label, reply(conn, label)).await?;
    expect(&ehlo, "250", label, "to EHLO")?;
    if !ehlo.iter().any(|l| {
        l.get(4..)
            .is_some_and(|k| k.trim().eq_ignore_ascii_case("STARTTLS"))
    }) {
        return Err(SmtpError::NoStartTls(label.to_owned()));
    }
    within(timeout, label, send(conn, "STARTTLS\r\n", label)).await?;
    let ready = within(timeout, label, reply(conn, label)).await?;
    expect(&ready, "220", label, "to STARTTLS")
}

/// After a failed modern handshake: the old TLS version the host speaks, if it speaks one.
async fn old_tls(host: &str, addr: SocketAddr, timeout: Duration) -> Option<String> {
    let label = format!("{host} ({addr})");
    let mut tcp = starttls(addr, &label, timeout).await.ok()?;
    super::legacy_tls::old_version(&mut tcp, host, timeout).await
}

/// Runs one protocol step within the timeout.
async fn within<T>(
    timeout: Duration,
    label: &str,
    step: impl Future<Output = Result<T, SmtpError>>,
) -> Result<T, SmtpError> {
    tokio::time::timeout(timeout, step)
        .await
        .map_err(|_| SmtpError::Timeout(label.to_owned()))?
}

fn classify(host: &str, error: &std::io::Error) -> SmtpError {
    let message = error.to_string();
    if let Some(reason) = super::tls::certificate_reason(error) {
        return SmtpError::Certificate {
            host: host.to_owned(),
            message,
            reason,
        };
    }
    match super::tls::rustls_error(error) {
        Some(rustls::Error::PeerIncompatible(_))
        | Some(rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)) => {
            SmtpError::TlsVersion {
                host: host.to_owned(),
                message,
            }
        }
        _ if message.contains("ProtocolVersion") || message.contains("incompatible") => {
            SmtpError::TlsVersion {
                host: host.to_owned(),
                message,
            }
        }
        // Some servers hang up without an alert when they cannot speak TLS 1.2+; say so, but
        // do not claim it as the cause.
        _ if error.kind() == std::io::ErrorKind::UnexpectedEof => SmtpError::Handshake {
            host: host.to_owned(),
            message: format!(
                "{message}: the server closed the connection during the handshake (often: it has no TLS 1.2 or newer)"
            ),
        },
        _ => SmtpError::Handshake {
            host: host.to_owned(),
            message,
        },
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    line: &str,
    label: &str,
) -> Result<(), SmtpError> {
    conn.get_mut()
        .write_all(line.as_bytes())
        .await
        .map_err(|e| SmtpError::Protocol {
            host: label.to_owned(),
            line: e.to_string(),
            when: "while writing",
        })
}

/// One (possibly multi-line) reply; lines are bounded so a hostile peer cannot grow memory.
/// Each line must start with the reply's code (RFC 5321 §4.2.1: the same on every line); the
/// text after it may be any bytes (servers send Latin-1), read lossily.
async fn reply<S: AsyncRead + Unpin>(
    conn: &mut BufReader<S>,
    label: &str,
) -> Result<Vec<String>, SmtpError> {
    let mut lines: Vec<String> = Vec::new();
    loop {
        let mut raw = Vec::new();
        let n = (&mut *conn)
            .take(1024)
            .read_until(b'\n', &mut raw)
            .await
            .map_err(|e| SmtpError::Protocol {
                host: label.to_owned(),
                line: e.to_string(),
                when: "while reading",
            })?;
        if n == 0 {
            return Err(SmtpError::Protocol {
                host: label.to_owned(),
                line: "(connection closed)".into(),
                when: "mid-reply",
            });
        }
        let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
        let code = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
        let first = lines.first().and_then(|l| l.get(..3));
        if code.is_none() || (first.is_some() && code != first) {
            return Err(SmtpError::Protocol {
                host: label.to_owned(),
                line,
                when: "as a reply line (a 3-digit code, the same on every line of a reply)",
            });
        }
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last || lines.len() > 100 {
            return Ok(lines);
        }
    }
}

fn expect(reply: &[String], code: &str, label: &str, when: &'static str) -> Result<(), SmtpError> {
    match reply.last() {
        Some(l) if l.starts_with(code) => Ok(()),
        other => Err(SmtpError::Protocol {
            host: label.to_owned(),
            line: other.cloned().unwrap_or_default(),
            when,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn talk(peer: &[u8]) -> (Result<(), SmtpError>, Vec<u8>) {
        let mut sent = Vec::new();
        let mut conn = BufReader::new(tokio::io::join(peer, &mut sent));
        let result = negotiate(&mut conn, "mx.example.com", Duration::from_secs(5)).await;
        drop(conn);
        (result, sent)
    }

    /// fuzz/fuzz_targets/smtp_reply.rs found a "greeting" of 250 lines and code-less lines
    /// ending in one `220 ` line taken as a 220 greeting (only the last line was read); this
    /// is its 2 KB crasher cut down by hand.
    #[tokio::test]
    async fn every_line_of_a_reply_has_its_code() {
        let mixed: &[u8] =
            b"250-T\0PIPEAJININGG\r\n0%x-Sle.\r\n220 x\r\n250 STARTTLS\r\n220 go\r\n";
        let (result, sent) = talk(mixed).await;
        assert!(
            matches!(&result, Err(SmtpError::Protocol { line, .. }) if line == "0%x-Sle."),
            "{result:?}"
        );
        assert!(sent.is_empty());
        let codeless: &[u8] = b"220-mx\r\nabc\r\n";
        assert!(matches!(
            talk(codeless).await.0,
            Err(SmtpError::Protocol { .. })
        ));
    }

    /// Found with the same target: reply text that is not UTF-8 (a Latin-1 greeting) failed
    /// the probe with "stream did not contain valid UTF-8".
    #[tokio::test]
    async fn reply_text_need_not_be_utf8() {
        let peer: &[u8] =
            b"220 mx.example.com ESMTP Gr\xfc\xdfe\r\n250-mx\xe9\r\n250 STARTTLS\r\n220 pr\xeat\r\n";
        let (result, sent) = talk(peer).await;
        assert_eq!(result, Ok(()));
        assert_eq!(sent, b"EHLO mailsec.check\r\nSTARTTLS\r\n");
    }
}
