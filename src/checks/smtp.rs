//! SMTP STARTTLS probe of one MX host, as a sending MTA-STS sender would do it: connect, EHLO,
//! STARTTLS offered, TLS 1.2 or newer, a certificate valid for the MX host name (RFC 8461 §4.2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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
    let greeting = within(timeout, label, reply(&mut conn, label)).await?;
    expect(&greeting, "220", label, "as greeting")?;
    within(
        timeout,
        label,
        send(&mut conn, "EHLO mailsec.check\r\n", label),
    )
    .await?;
    let ehlo = within(timeout, label, reply(&mut conn, label)).await?;
    expect(&ehlo, "250", label, "to EHLO")?;
    if !ehlo.iter().any(|l| {
        l.get(4..)
            .is_some_and(|k| k.trim().eq_ignore_ascii_case("STARTTLS"))
    }) {
        return Err(SmtpError::NoStartTls(label.to_owned()));
    }
    within(timeout, label, send(&mut conn, "STARTTLS\r\n", label)).await?;
    let ready = within(timeout, label, reply(&mut conn, label)).await?;
    expect(&ready, "220", label, "to STARTTLS")?;
    Ok(conn.into_inner())
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

async fn send(conn: &mut BufReader<TcpStream>, line: &str, label: &str) -> Result<(), SmtpError> {
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
async fn reply(conn: &mut BufReader<TcpStream>, label: &str) -> Result<Vec<String>, SmtpError> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = (&mut *conn)
            .take(1024)
            .read_line(&mut line)
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
        let line = line.trim_end().to_owned();
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
