//! Test PKI (rcgen), a real SMTP server (aiosmtpd) and a real HTTPS server (Python's
//! http.server) for the tests of the live checks.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mailsec_operator::serve::tls::Source;

use super::random_suffix;

fn free_port() -> u16 {
    super::free_addr().port()
}

/// A test CA, and certificate files for `names` signed by it.
pub struct Pki {
    pub dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    pub fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("mailsec-check-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("ca");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
        Pki {
            dir,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    pub fn leaf(&self, name: &str) -> Source {
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        self.sign(name, "", params)
    }

    /// A certificate for `name` that expired at the end of 2020.
    pub fn expired_leaf(&self, name: &str) -> Source {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        self.sign(name, "-expired", params)
    }

    fn sign(&self, name: &str, tag: &str, params: rcgen::CertificateParams) -> Source {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (c, k) = (
            self.dir.join(format!("{name}{tag}.crt")),
            self.dir.join(format!("{name}{tag}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        Source::Files { cert: c, key: k }
    }
}

/// A Python fixture server on a free loopback port; killed when dropped.
pub struct Fixture {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fixture {
    /// Starts `tests/fixtures/<script> PORT <args>` and waits for its "ready" line.
    fn start(script: &str, args: &[&std::ffi::OsStr]) -> Fixture {
        let tools = super::repo_root().join("scripts/tools.sh");
        let pythonpath = Command::new(tools)
            .arg("pythonpath")
            .output()
            .expect("tools.sh");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(super::repo_root().join("tests/fixtures").join(script))
            .arg(port.to_string())
            .args(args)
            .env(
                "PYTHONPATH",
                String::from_utf8_lossy(&pythonpath.stdout).trim(),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e} (run `make tools`)"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        let ready = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        assert_eq!(
            ready.trim(),
            "ready",
            "{script} did not start (is everything installed? `make tools`)"
        );
        Fixture { child, port }
    }
}

fn files(tls: &Source) -> (&std::path::Path, &std::path::Path) {
    let Source::Files { cert, key } = tls else {
        panic!("file certificates")
    };
    (cert, key)
}

/// A real SMTP server (aiosmtpd).
pub struct Smtp;

impl Smtp {
    /// `mode`: `starttls`, `plain` (no STARTTLS), `tls10` or `tls11` (TLS 1.0 or 1.1 only).
    pub fn start(mode: &str, tls: &Source) -> Fixture {
        let (cert, key) = files(tls);
        Fixture::start(
            "smtp/server.py",
            &[mode.as_ref(), cert.as_os_str(), key.as_os_str()],
        )
    }
}

/// A real HTTPS server (Python's http.server) serving `policy` in a way `mailsec serve` never
/// would.
pub struct Https;

impl Https {
    /// `mode`: `redirect` (301 elsewhere), `html` (wrong Content-Type), `noclose` (no
    /// Content-Length, no TLS close_notify), `tls10` (TLS 1.0
    /// only) or `ok`.
    pub fn start(mode: &str, tls: &Source, policy: &str) -> Fixture {
        let (cert, key) = files(tls);
        let file = cert.with_extension(format!("{mode}.policy"));
        std::fs::write(&file, policy).expect("write policy");
        Fixture::start(
            "https/server.py",
            &[
                mode.as_ref(),
                cert.as_os_str(),
                key.as_os_str(),
                file.as_os_str(),
            ],
        )
    }
}
