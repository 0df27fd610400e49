//! The connection bounds of `mailsec serve` and `mailsec receive` (see `crate::conn`), the
//! same flags on both.

use std::time::Duration;

use clap::Args;

use crate::conn::{Limits, LimitsError};
use crate::model::rotation::parse_duration;

/// Bounds on what one client can hold of a public endpoint.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Connections served at once; one more is accepted and closed at once
    /// [default: 4096 for serve, 1024 for receive].
    #[arg(long, env = "MAILSEC_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Time a client has for its request line and headers (and, first, the TLS handshake);
    /// after it, 408 and the connection is closed. E.g. 10s, 1m.
    #[arg(long, env = "MAILSEC_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    #[arg(long, env = "MAILSEC_IDLE_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Largest request line and headers, in bytes (431 above), at least 1024
    /// [default: 16384 for serve, 65536 for receive].
    #[arg(long, env = "MAILSEC_MAX_HEADER_BYTES")]
    max_header_bytes: Option<usize>,
    /// Requests on one connection; the last response says `Connection: close`.
    #[arg(
        long,
        env = "MAILSEC_MAX_REQUESTS_PER_CONNECTION",
        default_value_t = 1000
    )]
    max_requests_per_connection: u64,
    /// Age at which a connection is closed gracefully (its request in flight is answered).
    #[arg(long, env = "MAILSEC_MAX_CONNECTION_AGE", default_value = "300s", value_parser = parse_duration)]
    max_connection_age: Duration,
}

impl LimitArgs {
    /// The limits these flags set over a command's `defaults`.
    pub fn limits(&self, defaults: Limits) -> Result<Limits, LimitsError> {
        let limits = Limits {
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_header_bytes: self.max_header_bytes.unwrap_or(defaults.max_header_bytes),
            max_requests_per_connection: self.max_requests_per_connection,
            max_connection_age: self.max_connection_age,
            ..defaults
        };
        limits.validate()?;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
    }

    #[test]
    fn flags_parse_durations_and_keep_each_commands_defaults() {
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.limits.limits(Limits::serve()), Ok(Limits::serve()));
        assert_eq!(cli.limits.limits(Limits::receive()), Ok(Limits::receive()));
        let cli = Cli::parse_from([
            "x",
            "--header-timeout=4s",
            "--idle-timeout=1m",
            "--max-connection-age=1h30m",
            "--max-connections=7",
            "--max-header-bytes=2048",
            "--max-requests-per-connection=3",
        ]);
        let limits = cli.limits.limits(Limits::receive()).expect("valid");
        assert_eq!(limits.header_timeout, Duration::from_secs(4));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.max_connection_age, Duration::from_secs(5400));
        assert_eq!((limits.max_connections, limits.max_header_bytes), (7, 2048));
        assert_eq!(limits.max_requests_per_connection, 3);
        assert_eq!(limits.body_timeout, Limits::receive().body_timeout);
        assert!(Cli::try_parse_from(["x", "--header-timeout=10"]).is_err());
    }

    #[test]
    fn a_header_buffer_under_1024_bytes_is_refused_with_the_flag_named() {
        let cli = Cli::parse_from(["x", "--max-header-bytes=512"]);
        let e = cli.limits.limits(Limits::serve()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--max-header-bytes must be at least 1024"),
            "{e}"
        );
    }
}
