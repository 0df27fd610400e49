//! Test PKI (rcgen) and a real SMTP server (aiosmtpd) for the tests of the live checks.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mailsec_operator::serve::tls::Source;

use super::random_suffix;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
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
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .signed_by(&key, &self.issuer)
            .expect("sign");
        let (c, k) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        Source::Files { cert: c, key: k }
    }
}

/// A real SMTP server (aiosmtpd) on a free loopback port; killed when dropped.
pub struct Smtp {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    /// `mode`: `starttls`, `plain` (no STARTTLS) or `tls10` (TLS 1.0 only).
    pub fn start(mode: &str, tls: &Source) -> Smtp {
        let Source::Files { cert, key } = tls else {
            panic!("file certificates")
        };
        let tools = super::repo_root().join("scripts/tools.sh");
        let pythonpath = Command::new(tools)
            .arg("pythonpath")
            .output()
            .expect("tools.sh");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(super::repo_root().join("tests/fixtures/smtp/server.py"))
            .args([&port.to_string(), mode])
            .args([cert, key])
            .env(
                "PYTHONPATH",
                String::from_utf8_lossy(&pythonpath.stdout).trim(),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start aiosmtpd (run `make tools`)");
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
            "aiosmtpd did not start (is it installed? `make tools`)"
        );
        Smtp { child, port }
    }
}
