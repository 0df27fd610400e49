//! The TLS-RPT mailbox poller (`intake::imap`) against a real Dovecot: each test starts its own
//! `dovecot -F` from a temporary config on loopback ports, delivers mails with IMAP APPEND
//! (the real report mails of ../shared/tlsrpt-samples and mails composed here), runs the
//! poller into a `MemorySink`, and checks the folders as a second IMAP client.
//!
//! DKIM keys come from a small DNS responder in the test (hickory-proto messages over UDP on
//! loopback) that serves one `_domainkey` TXT record and NXDOMAIN for every other name; the
//! poller's resolver is pointed at it, so no test asks a resolver beyond loopback.
//!
//! Dovecot is the Debian package `dovecot-imapd`, installed by `scripts/tools.sh`
//! (scripts/tools.d/dovecot.sh). Without it these tests fail, with a message saying so.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_imap::types::Flag;
use base64::Engine as _;
use futures_util::TryStreamExt;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mailsec_operator::intake::imap::{self, Config, DkimResolver, PassSummary, TlsMode};
use mailsec_operator::intake::memory::MemorySink;
use mailsec_operator::intake::{Dkim, Via};
use mailsec_operator::serve::tls::Source;

const USER: &str = "reporter";
const PASSWORD: &str = "s3cret-for-tests";

// ---------------------------------------------------------------------------------------
// Dovecot, started per test

/// A Dovecot of this test: killed (by its PID) and its directory removed when dropped.
struct Dovecot {
    child: Child,
    dir: PathBuf,
    /// The plain (and STARTTLS) listener.
    imap: SocketAddr,
    /// The implicit-TLS listener, when TLS is on.
    imaps: Option<SocketAddr>,
    /// The CA that signed the server certificate (for `Config::ca_file`).
    ca_file: Option<PathBuf>,
    _pki: Option<support::tls::Pki>,
}

#[derive(Default)]
struct Options {
    tls: bool,
    /// Replaces the capabilities Dovecot announces after login (to hide MOVE or IDLE).
    capability: Option<&'static str>,
}

fn dovecot_binary() -> PathBuf {
    // PATH first; the Debian package puts it in sbin, which a non-login PATH may lack.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("dovecot"))
        .find(|p| p.is_file());
    match found {
        Some(path) => path,
        None if support::in_ci() => panic!(
            "dovecot is not installed and CI=true: .ci/run must run scripts/tools.sh, which \
             installs the Debian package dovecot-imapd (scripts/tools.d/dovecot.sh)"
        ),
        None => panic!(
            "dovecot is not installed: run scripts/tools.sh (it installs the Debian package \
             dovecot-imapd, scripts/tools.d/dovecot.sh), then run these tests again"
        ),
    }
}

impl Dovecot {
    fn start(options: Options) -> Dovecot {
        let binary = dovecot_binary();
        let dir =
            std::env::temp_dir().join(format!("mailsec-dovecot-{}", support::random_suffix()));
        std::fs::create_dir_all(dir.join("home")).expect("dovecot dir");
        // Dovecot's unprivileged login and mail processes (users dovenull and dovecot) must
        // reach their files under here; the mail user creates its home below `home`.
        set_mode(&dir, 0o755);
        set_mode(&dir.join("home"), 0o1777);
        std::fs::write(dir.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n"))
            .expect("passwd");

        let imap = support::free_addr();
        let (imaps, ca_file, pki, ssl) = if options.tls {
            let pki = support::tls::Pki::new();
            let Source::Files { cert, key } = pki.leaf("localhost") else {
                panic!("the test PKI writes files")
            };
            let ssl = format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                cert.display(),
                key.display()
            );
            let ca = pki.dir.join("ca.pem");
            (Some(support::free_addr()), Some(ca), Some(pki), ssl)
        } else {
            (None, None, None, "ssl = no\n".to_owned())
        };
        let d = dir.display();
        let capability = options
            .capability
            .map(|c| format!("imap_capability = {c}\n"))
            .unwrap_or_default();
        let conf = format!(
            "# A Dovecot for one test (tests/imap_intake.rs).\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             {ssl}\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             # Run as root here: the internal and login processes as the package's users.\n\
             default_internal_user = dovecot\n\
             default_internal_group = dovecot\n\
             default_login_user = dovenull\n\
             first_valid_uid = 1\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home={d}/home/%u\n}}\n\
             mail_location = maildir:~/Maildir\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n\
             {capability}\
             service imap-login {{\n  inet_listener imap {{\n    port = {}\n  }}\n  inet_listener imaps {{\n    port = {}\n  }}\n}}\n",
            imap.port(),
            imaps.map_or(0, |a| a.port()),
        );
        let conf_path = dir.join("dovecot.conf");
        std::fs::write(&conf_path, conf).expect("dovecot.conf");
        let child = Command::new(&binary)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).expect("stdout"))
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut dovecot = Dovecot {
            child,
            dir,
            imap,
            imaps,
            ca_file,
            _pki: pki,
        };
        dovecot.wait_listening();
        dovecot
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let ports: Vec<SocketAddr> = std::iter::once(self.imap).chain(self.imaps).collect();
        for addr in ports {
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("dovecot exited ({status}) at start:\n{}", self.logs());
                }
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "dovecot does not listen on {addr}:\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }

    fn logs(&self) -> String {
        ["dovecot.log", "stderr.log", "stdout.log"]
            .iter()
            .map(|f| {
                format!(
                    "--- {f}\n{}",
                    std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Poller settings for this server: implicit TLS with the test CA when TLS is on, else
    /// plain to loopback; the test DNS for DKIM keys.
    fn config(&self, dns: SocketAddr) -> Config {
        let mut config = match self.imaps {
            Some(imaps) => {
                let mut c = Config::new("localhost", imaps.port(), USER, PASSWORD);
                c.tls = TlsMode::Tls;
                c.ca_file = self.ca_file.clone();
                c
            }
            None => {
                let mut c = Config::new("127.0.0.1", self.imap.port(), USER, PASSWORD);
                c.tls = TlsMode::Plain;
                c
            }
        };
        config.dkim_resolver = DkimResolver::Servers(vec![dns]);
        config.io_timeout = Duration::from_secs(10);
        config.min_backoff = Duration::from_millis(100);
        config.max_backoff = Duration::from_secs(1);
        config
    }

    /// A second client, for delivering and looking.
    async fn client(&self) -> Looker {
        Looker::connect(self.imap).await
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM to our master by its PID: it stops its own children; SIGKILL if it lingers.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("dovecot logs ({}):\n{}", self.dir.display(), self.logs());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

// ---------------------------------------------------------------------------------------
// The second IMAP client

/// A message as another client sees it.
#[derive(Debug)]
struct Seen {
    body: Vec<u8>,
    seen: bool,
    deleted: bool,
}

struct Looker {
    session: async_imap::Session<tokio::net::TcpStream>,
}

impl Looker {
    async fn connect(addr: SocketAddr) -> Looker {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut client = async_imap::Client::new(tcp);
        client
            .read_response()
            .await
            .expect("greeting")
            .expect("greeting");
        let session = client
            .login(USER, PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .expect("login");
        Looker { session }
    }

    async fn append(&mut self, folder: &str, mail: &[u8]) {
        self.session
            .append(folder, None, None, mail)
            .await
            .unwrap_or_else(|e| panic!("APPEND to {folder}: {e}"));
    }

    /// The messages of `folder` (none if it does not exist), read-only and without setting
    /// `\Seen`.
    async fn messages(&mut self, folder: &str) -> Vec<Seen> {
        let Ok(mailbox) = self.session.examine(folder).await else {
            return Vec::new();
        };
        if mailbox.exists == 0 {
            return Vec::new();
        }
        let fetches: Vec<_> = self
            .session
            .fetch("1:*", "(UID FLAGS BODY.PEEK[])")
            .await
            .expect("FETCH")
            .try_collect()
            .await
            .expect("FETCH responses");
        fetches
            .iter()
            .map(|f| Seen {
                body: f.body().unwrap_or_default().to_vec(),
                seen: f.flags().any(|fl| fl == Flag::Seen),
                deleted: f.flags().any(|fl| fl == Flag::Deleted),
            })
            .collect()
    }

    async fn count(&mut self, folder: &str) -> usize {
        self.messages(folder).await.len()
    }
}

// ---------------------------------------------------------------------------------------
// A DNS responder for DKIM keys

/// Answers TXT queries for `name` with `value`; NXDOMAIN for everything else. Runs on the
/// test's runtime until the test ends.
async fn dns_server(name: &str, value: &str) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind UDP");
    let addr = socket.local_addr().expect("addr");
    let owner = Name::from_ascii(name).expect("name");
    let value = value.to_owned();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            answer.metadata.authoritative = true;
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            let mut found = false;
            for q in &query.queries {
                answer.add_query(q.clone());
                if q.name().to_ascii().eq_ignore_ascii_case(&owner.to_ascii())
                    && q.query_type() == RecordType::TXT
                {
                    answer.add_answer(Record::from_rdata(
                        owner.clone(),
                        60,
                        RData::TXT(TXT::new(vec![value.clone()])),
                    ));
                    found = true;
                }
            }
            if !found {
                answer.metadata.response_code = ResponseCode::NXDomain;
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}

/// A DNS that knows no name: every key lookup fails (for tests that do not look at DKIM).
async fn empty_dns() -> SocketAddr {
    dns_server("nothing.invalid.", "").await
}

// ---------------------------------------------------------------------------------------
// Mails

fn samples_dir() -> PathBuf {
    let dir = support::repo_root().join("../shared/tlsrpt-samples");
    assert!(
        dir.join("manifest.json").is_file(),
        "the TLS-RPT samples are missing at {} (shared/tlsrpt-samples beside the repository)",
        dir.display()
    );
    dir
}

/// Every real report e-mail of the samples (by the manifest), with its file name.
fn sample_mails() -> Vec<(String, Vec<u8>)> {
    let dir = samples_dir();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest.json"))
            .expect("manifest.json is JSON");
    let mails: Vec<(String, Vec<u8>)> = manifest
        .as_array()
        .expect("manifest.json is a list")
        .iter()
        .filter_map(|e| e["file"].as_str())
        .filter(|f| f.starts_with("eml/"))
        .map(|f| {
            let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            (f.to_owned(), bytes)
        })
        .collect();
    assert!(mails.len() >= 3, "{} sample mails", mails.len());
    mails
}

fn report_json(report_id: &str, domain: &str) -> String {
    serde_json::json!({
        "organization-name": "Test Sender",
        "date-range": {
            "start-datetime": "2026-01-01T00:00:00Z",
            "end-datetime": "2026-01-01T23:59:59Z"
        },
        "contact-info": "tlsrpt@sender.example",
        "report-id": report_id,
        "policies": [{
            "policy": {
                "policy-type": "sts",
                "policy-string": ["version: STSv1", "mode: testing", "mx: mx.example.test", "max_age: 86400"],
                "policy-domain": domain,
            },
            "summary": {"total-successful-session-count": 12, "total-failure-session-count": 1},
            "failure-details": [{
                "result-type": "certificate-expired",
                "sending-mta-ip": "192.0.2.1",
                "receiving-mx-hostname": "mx.example.test",
                "failed-session-count": 1
            }]
        }]
    })
    .to_string()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// base64 in lines of 76, CRLF.
fn base64_lines(data: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    text.as_bytes()
        .chunks(76)
        .map(|l| format!("{}\r\n", String::from_utf8_lossy(l)))
        .collect()
}

enum Attach {
    Gzip,
    Json,
}

/// A report mail as RFC 8460 §5.3 describes it (multipart/report with the report as an
/// attachment), with CRLF line ends; `padding` bytes of text make it large.
fn report_mail(report_id: &str, domain: &str, attach: Attach, padding: usize) -> Vec<u8> {
    let json = report_json(report_id, domain);
    let (ctype, name, body) = match attach {
        Attach::Gzip => (
            "application/tlsrpt+gzip",
            format!("sender.example!{domain}!1767225600!1767311999!{report_id}.json.gz"),
            gzip(json.as_bytes()),
        ),
        Attach::Json => (
            "application/tlsrpt+json",
            format!("sender.example!{domain}!1767225600!1767311999!{report_id}.json"),
            json.into_bytes(),
        ),
    };
    let pad: String = (0..padding / 64)
        .map(|_| format!("{}\r\n", "x".repeat(62)))
        .collect();
    format!(
        "From: TLS Reporting <tlsrpt@sender.example>\r\n\
         To: tlsrpt@{domain}\r\n\
         Subject: Report Domain: {domain} Submitter: sender.example Report-ID: <{report_id}>\r\n\
         Date: Thu, 01 Jan 2026 12:00:00 +0000\r\n\
         Message-ID: <{report_id}@sender.example>\r\n\
         TLS-Report-Domain: {domain}\r\n\
         TLS-Report-Submitter: sender.example\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"=_report\"\r\n\
         \r\n\
         --=_report\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is an aggregate TLS report from sender.example.\r\n\
         {pad}\
         --=_report\r\n\
         Content-Type: {ctype}\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\
         \r\n\
         {}\
         --=_report--\r\n",
        base64_lines(&body)
    )
    .into_bytes()
}

fn plain_mail(subject: &str) -> Vec<u8> {
    format!(
        "From: someone@elsewhere.example\r\n\
         To: tlsrpt@example.test\r\n\
         Subject: {subject}\r\n\
         Date: Thu, 01 Jan 2026 12:00:00 +0000\r\n\
         Message-ID: <{subject}@elsewhere.example>\r\n\
         \r\n\
         Hello, this is not a TLS report.\r\n"
    )
    .into_bytes()
}

/// The text with LF line ends.
fn lf(mail: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(mail)
        .replace("\r\n", "\n")
        .into_bytes()
}

fn report_ids(sink: &MemorySink) -> Vec<String> {
    let mut ids: Vec<String> = sink
        .stored()
        .iter()
        .map(|i| i.report.report_id.clone())
        .collect();
    ids.sort();
    ids
}

fn dkim_of(sink: &MemorySink, report_id: &str) -> Dkim {
    let stored = sink.stored();
    let incoming = stored
        .iter()
        .find(|i| i.report.report_id == report_id)
        .unwrap_or_else(|| panic!("{report_id} was not stored"));
    match &incoming.via {
        Via::Mail { dkim, .. } => dkim.clone(),
        other => panic!("{report_id} came {other:?}"),
    }
}

async fn poll(config: &Config, sink: &MemorySink) -> PassSummary {
    imap::poll_once(config, sink)
        .await
        .unwrap_or_else(|e| panic!("poll_once: {} ({e})", e.reason()))
}

// ---------------------------------------------------------------------------------------
// The tests

/// Every real report mail of the samples and composed ones (gzip and JSON attachments), over
/// implicit TLS: each stored once, moved to the processed folder, the mailbox left empty.
#[tokio::test]
async fn reports_are_stored_once_and_moved_to_processed() {
    let dovecot = Dovecot::start(Options {
        tls: true,
        ..Options::default()
    });
    let config = dovecot.config(empty_dns().await);
    let mut looker = dovecot.client().await;
    let samples = sample_mails();
    for (_, mail) in &samples {
        looker.append("INBOX", mail).await;
    }
    looker
        .append(
            "INBOX",
            &report_mail("composed-gzip", "example.test", Attach::Gzip, 0),
        )
        .await;
    looker
        .append(
            "INBOX",
            &report_mail("composed-json", "example.test", Attach::Json, 0),
        )
        .await;
    let total = samples.len() + 2;

    let sink = MemorySink::new();
    let summary = poll(&config, &sink).await;
    assert_eq!(
        summary,
        PassSummary {
            stored: total,
            ..PassSummary::default()
        }
    );
    assert_eq!(sink.stored().len(), total, "{:?}", report_ids(&sink));
    assert!(report_ids(&sink).contains(&"composed-gzip".to_owned()));
    assert!(report_ids(&sink).contains(&"composed-json".to_owned()));
    for incoming in sink.stored() {
        let Via::Mail { mailbox, from, .. } = &incoming.via else {
            panic!("not from a mailbox: {:?}", incoming.via)
        };
        assert_eq!(mailbox, "INBOX");
        assert!(from.is_some(), "{}: no From", incoming.report.report_id);
        assert!(!incoming.raw.bytes.is_empty());
    }
    let gz = sink
        .stored()
        .into_iter()
        .find(|i| i.report.report_id == "composed-gzip")
        .expect("stored");
    assert!(gz.raw.gzip && gz.raw.bytes.starts_with(&[0x1f, 0x8b]));
    let js = sink
        .stored()
        .into_iter()
        .find(|i| i.report.report_id == "composed-json")
        .expect("stored");
    assert!(!js.raw.gzip && js.raw.bytes.starts_with(b"{"));

    assert_eq!(looker.count("INBOX").await, 0);
    let processed = looker.messages("TLSRPT/Processed").await;
    assert_eq!(processed.len(), total);
    // Moved as they were (IMAP hands out CRLF line ends, whatever the file had).
    for (name, mail) in &samples {
        assert!(
            processed.iter().any(|m| lf(&m.body) == lf(mail)),
            "{name} is not in the processed folder as it was sent"
        );
    }
    assert_eq!(looker.count("TLSRPT/Rejected").await, 0);

    // Nothing left: the next pass does nothing.
    assert_eq!(poll(&config, &sink).await, PassSummary::default());
    assert_eq!(sink.stored().len(), total);
}

/// A mail that is no report, a report over the size limit and a report for a domain not
/// managed here: each moved to the rejected folder (not deleted), nothing stored. STARTTLS.
#[tokio::test]
async fn non_reports_too_large_and_foreign_mails_are_rejected_not_deleted() {
    let dovecot = Dovecot::start(Options {
        tls: true,
        ..Options::default()
    });
    let mut config = dovecot.config(empty_dns().await);
    config.tls = TlsMode::StartTls;
    config.port = dovecot.imap.port();
    config.limits.max_mail = 32 * 1024;
    let mut looker = dovecot.client().await;
    let not_a_report = plain_mail("hello");
    let too_large = report_mail("too-large", "example.test", Attach::Gzip, 64 * 1024);
    let foreign = report_mail("foreign", "other.example", Attach::Gzip, 0);
    let ours = report_mail("ours", "example.test", Attach::Json, 0);
    for mail in [&not_a_report, &too_large, &foreign, &ours] {
        looker.append("INBOX", mail).await;
    }

    let sink = MemorySink::for_domains(["example.test"]);
    let summary = poll(&config, &sink).await;
    assert_eq!(
        summary,
        PassSummary {
            stored: 1,
            rejected: 3,
            ..PassSummary::default()
        }
    );
    assert_eq!(report_ids(&sink), ["ours"]);
    assert_eq!(looker.count("INBOX").await, 0);
    let rejected = looker.messages("TLSRPT/Rejected").await;
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    for mail in [&not_a_report, &too_large, &foreign] {
        assert!(rejected.iter().any(|m| m.body == *mail && !m.deleted));
    }
    assert_eq!(looker.count("TLSRPT/Processed").await, 1);
}

/// The same report mailed twice: stored once, both mails moved to the processed folder.
#[tokio::test]
async fn the_same_report_twice_is_stored_once_and_both_are_moved() {
    let dovecot = Dovecot::start(Options::default());
    let config = dovecot.config(empty_dns().await);
    let mut looker = dovecot.client().await;
    let mail = report_mail("twice", "example.test", Attach::Gzip, 0);
    looker.append("INBOX", &mail).await;
    looker.append("INBOX", &mail).await;

    let sink = MemorySink::new();
    let summary = poll(&config, &sink).await;
    assert_eq!(
        summary,
        PassSummary {
            stored: 1,
            duplicate: 1,
            ..PassSummary::default()
        }
    );
    assert_eq!(report_ids(&sink), ["twice"]);
    assert_eq!(looker.count("INBOX").await, 0);
    assert_eq!(looker.count("TLSRPT/Processed").await, 2);

    // Mailed again later (a sender retrying, or a crash after storing but before moving).
    looker.append("INBOX", &mail).await;
    assert_eq!(
        poll(&config, &sink).await,
        PassSummary {
            duplicate: 1,
            ..PassSummary::default()
        }
    );
    assert_eq!(sink.stored().len(), 1);
    assert_eq!(looker.count("TLSRPT/Processed").await, 3);
}

/// With the store unavailable nothing is moved or marked `\Seen`; once it is back, the next
/// pass stores and moves every report: a message leaves the mailbox only once stored.
#[tokio::test]
async fn an_unavailable_store_leaves_mail_untouched_until_it_is_back() {
    let dovecot = Dovecot::start(Options {
        tls: true,
        ..Options::default()
    });
    let config = dovecot.config(empty_dns().await);
    let mut looker = dovecot.client().await;
    let a = report_mail("later-a", "example.test", Attach::Gzip, 0);
    let b = report_mail("later-b", "example.test", Attach::Json, 0);
    looker.append("INBOX", &a).await;
    looker.append("INBOX", &b).await;

    let sink = MemorySink::new();
    sink.set_unavailable(true);
    let summary = poll(&config, &sink).await;
    assert_eq!(
        summary,
        PassSummary {
            deferred: 2,
            ..PassSummary::default()
        }
    );
    assert!(summary.store_unavailable());
    assert!(sink.stored().is_empty());
    let inbox = looker.messages("INBOX").await;
    assert_eq!(inbox.len(), 2);
    assert!(
        inbox.iter().all(|m| !m.seen && !m.deleted),
        "flags changed: {inbox:?}"
    );
    assert_eq!(looker.count("TLSRPT/Processed").await, 0);
    assert_eq!(looker.count("TLSRPT/Rejected").await, 0);

    sink.set_unavailable(false);
    assert_eq!(
        poll(&config, &sink).await,
        PassSummary {
            stored: 2,
            ..PassSummary::default()
        }
    );
    assert_eq!(report_ids(&sink), ["later-a", "later-b"]);
    assert_eq!(looker.count("INBOX").await, 0);
    assert_eq!(looker.count("TLSRPT/Processed").await, 2);
}

/// DKIM: a mail signed with Ed25519 (key published in the test DNS) passes with its `d=`; an
/// unsigned one has no verdict; a signed one changed after signing fails.
#[tokio::test]
async fn dkim_verdicts_pass_none_and_fail() {
    let seed = [7u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let record = format!(
        "v=DKIM1; k=ed25519; p={}",
        base64::engine::general_purpose::STANDARD.encode(public)
    );
    let dns = dns_server("s2026._domainkey.sender.example.", &record).await;
    let sign = |mail: &[u8]| -> Vec<u8> {
        let key = Ed25519Key::from_seed_and_public_key(&seed, &public).expect("key");
        let signature = DkimSigner::from_key(key)
            .domain("sender.example")
            .selector("s2026")
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(mail)
            .expect("sign");
        let mut signed = signature.to_header().into_bytes();
        signed.extend_from_slice(mail);
        signed
    };
    let signed = sign(&report_mail("dkim-signed", "example.test", Attach::Gzip, 0));
    let unsigned = report_mail("dkim-unsigned", "example.test", Attach::Gzip, 0);
    let tampered = {
        let mail = sign(&report_mail(
            "dkim-tampered",
            "example.test",
            Attach::Gzip,
            0,
        ));
        String::from_utf8(mail)
            .expect("ASCII")
            .replace("an aggregate TLS report", "an aggregate TLS rep0rt")
            .into_bytes()
    };

    let dovecot = Dovecot::start(Options::default());
    let config = dovecot.config(dns);
    let mut looker = dovecot.client().await;
    for mail in [&signed, &unsigned, &tampered] {
        looker.append("INBOX", mail).await;
    }
    let sink = MemorySink::new();
    assert_eq!(poll(&config, &sink).await.stored, 3);
    assert_eq!(
        dkim_of(&sink, "dkim-signed"),
        Dkim::Pass {
            domain: "sender.example".into()
        }
    );
    assert_eq!(dkim_of(&sink, "dkim-unsigned"), Dkim::None);
    match dkim_of(&sink, "dkim-tampered") {
        Dkim::Fail { why } => assert!(!why.is_empty()),
        other => panic!("tampered mail: {other:?}"),
    }
}

/// `run` waits in IDLE (the poll interval is an hour): a mail appended while it waits is
/// stored and moved within seconds; shutdown ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_picks_up_a_mail_appended_while_waiting() {
    let dovecot = Dovecot::start(Options {
        tls: true,
        ..Options::default()
    });
    let mut config = dovecot.config(empty_dns().await);
    config.poll_interval = Duration::from_secs(3600);
    let mut looker = dovecot.client().await;
    looker
        .append(
            "INBOX",
            &report_mail("idle-first", "example.test", Attach::Gzip, 0),
        )
        .await;

    let sink = MemorySink::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = imap::run(config, &sink, async {
        let _ = stopped.await;
    });
    let checker = async {
        wait_for(&sink, 1, Duration::from_secs(20)).await;
        // Now in IDLE (or about to be): the next mail arrives while it waits.
        let started = Instant::now();
        looker
            .append(
                "INBOX",
                &report_mail("idle-second", "example.test", Attach::Json, 0),
            )
            .await;
        wait_for(&sink, 2, Duration::from_secs(10)).await;
        let took = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while looker.count("TLSRPT/Processed").await < 2 {
            assert!(Instant::now() < deadline, "the second mail was not moved");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        took
    };
    let (result, took) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(runner, checker)
    })
    .await
    .expect("run did not end after shutdown");
    result.expect("run");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(report_ids(&sink), ["idle-first", "idle-second"]);
    assert_eq!(looker.count("INBOX").await, 0);
}

/// `run` with the store down backs off and tries again (no IDLE wait in between): the report
/// is stored once the store is back, and until then the mail stays unread in the mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_retries_after_the_store_was_unavailable() {
    let dovecot = Dovecot::start(Options::default());
    let mut config = dovecot.config(empty_dns().await);
    config.poll_interval = Duration::from_secs(3600);
    let mut looker = dovecot.client().await;
    looker
        .append(
            "INBOX",
            &report_mail("retried", "example.test", Attach::Gzip, 0),
        )
        .await;
    let sink = MemorySink::new();
    sink.set_unavailable(true);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = imap::run(config, &sink, async {
        let _ = stopped.await;
    });
    let checker = async {
        // Several tries with backoff 100 ms, 200 ms, 400 ms...
        tokio::time::sleep(Duration::from_millis(800)).await;
        let inbox = looker.messages("INBOX").await;
        assert_eq!(inbox.len(), 1);
        assert!(!inbox[0].seen);
        sink.set_unavailable(false);
        wait_for(&sink, 1, Duration::from_secs(10)).await;
        let _ = stop.send(());
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(runner, checker)
    })
    .await
    .expect("run did not end after shutdown");
    result.expect("run");
    assert_eq!(report_ids(&sink), ["retried"]);
    assert_eq!(looker.count("INBOX").await, 0);
    assert_eq!(looker.count("TLSRPT/Processed").await, 1);
}

/// A server without IDLE: `run` polls every poll interval instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_it_polls() {
    let dovecot = Dovecot::start(Options {
        tls: false,
        capability: Some("IMAP4rev1 LITERAL+ SASL-IR MOVE UIDPLUS"),
    });
    let mut config = dovecot.config(empty_dns().await);
    config.poll_interval = Duration::from_millis(300);
    let mut looker = dovecot.client().await;
    let sink = MemorySink::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = imap::run(config, &sink, async {
        let _ = stopped.await;
    });
    let checker = async {
        for (i, id) in ["poll-1", "poll-2"].into_iter().enumerate() {
            looker
                .append("INBOX", &report_mail(id, "example.test", Attach::Gzip, 0))
                .await;
            wait_for(&sink, i + 1, Duration::from_secs(10)).await;
        }
        let _ = stop.send(());
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(runner, checker)
    })
    .await
    .expect("run did not end after shutdown");
    result.expect("run");
    assert_eq!(report_ids(&sink), ["poll-1", "poll-2"]);
}

async fn wait_for(sink: &MemorySink, count: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while sink.stored().len() < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} reports stored after {limit:?}",
            sink.stored().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server without MOVE: COPY, `\Deleted`, and `UID EXPUNGE` of that message only — a message
/// a person flagged `\Deleted` stays.
#[tokio::test]
async fn without_move_it_copies_and_expunges_only_that_message() {
    let dovecot = Dovecot::start(Options {
        tls: false,
        capability: Some("IMAP4rev1 LITERAL+ SASL-IR IDLE UIDPLUS"),
    });
    let config = dovecot.config(empty_dns().await);
    let mut looker = dovecot.client().await;
    let caps = looker.session.capabilities().await.expect("CAPABILITY");
    assert!(
        !caps.has_str("MOVE") && caps.has_str("UIDPLUS"),
        "the server still offers MOVE"
    );
    looker
        .append("INBOX", &plain_mail("flagged-by-a-person"))
        .await;
    looker.session.select("INBOX").await.expect("select");
    looker
        .session
        .store("1", "+FLAGS.SILENT (\\Deleted)")
        .await
        .expect("store")
        .try_collect::<Vec<_>>()
        .await
        .expect("store responses");
    looker
        .append(
            "INBOX",
            &report_mail("no-move", "example.test", Attach::Gzip, 0),
        )
        .await;
    looker.append("INBOX", &plain_mail("no-move-reject")).await;

    let sink = MemorySink::new();
    assert_eq!(
        poll(&config, &sink).await,
        PassSummary {
            stored: 1,
            rejected: 1,
            ..PassSummary::default()
        }
    );
    let inbox = looker.messages("INBOX").await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(
        inbox[0].deleted,
        "the person's \\Deleted message stays as it was"
    );
    assert_eq!(looker.count("TLSRPT/Processed").await, 1);
    assert_eq!(looker.count("TLSRPT/Rejected").await, 1);
}

/// Plain IMAP works to loopback (this Dovecot has no TLS at all) and is refused, before any
/// connection, for a host that is not a loopback address.
#[tokio::test]
async fn plain_imap_only_to_loopback() {
    let dovecot = Dovecot::start(Options::default());
    let config = dovecot.config(empty_dns().await);
    assert_eq!(config.tls, TlsMode::Plain);
    let mut looker = dovecot.client().await;
    looker
        .append(
            "INBOX",
            &report_mail("plain", "example.test", Attach::Json, 0),
        )
        .await;
    let sink = MemorySink::new();
    assert_eq!(poll(&config, &sink).await.stored, 1);

    for host in ["mail.example.com", "localhost", "192.0.2.10"] {
        let mut remote = config.clone();
        remote.host = host.into();
        let err = imap::poll_once(&remote, &sink)
            .await
            .expect_err("plain IMAP to a remote host");
        assert_eq!(err.reason(), "PlainNotLoopback", "{host}: {err}");
        assert!(err.to_string().contains(host), "{err}");
        assert!(err.is_config());
    }
    // The same hosts with TLS are fine as settings.
    let mut tls = config.clone();
    tls.host = "mail.example.com".into();
    tls.tls = TlsMode::Tls;
    assert!(tls.validate().is_ok());
}

/// A server certificate the CA file does not vouch for fails the TLS handshake.
#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let dovecot = Dovecot::start(Options {
        tls: true,
        ..Options::default()
    });
    let mut config = dovecot.config(empty_dns().await);
    config.ca_file = None;
    let err = imap::poll_once(&config, &MemorySink::new())
        .await
        .expect_err("an unknown CA");
    assert_eq!(err.reason(), "TlsFailed", "{err}");
}

/// Through the real API server: a report mailed to the mailbox becomes a TLSReport owned by
/// its MailDomain (a copy mailed again is stored once), the controller's summary and
/// `TLSReportsClean` follow, and the metrics count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mailed_report_becomes_a_tlsreport_the_summary_the_condition_and_the_metric() {
    use kube::Api;
    use kube::api::{ListParams, Patch, PatchParams};
    use mailsec_operator::api::{MailDomain, TLSReport};
    use mailsec_operator::intake::Counted;
    use mailsec_operator::intake::kube::KubeSink;
    use mailsec_operator::metrics::{Exposition, ReportMetrics};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use support::maildomain::{condition, wait_for};

    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "imap").await;
    let domain = format!("i{}.example.test", support::random_suffix());
    support::operator::controller(env, ns.name()).await;
    let api: Api<MailDomain> = Api::namespaced(client.clone(), ns.name());
    let md = serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": "md"},
        "spec": {"domain": domain, "mx": ["mx.example.test"], "mtaSts": {"mode": "testing"},
                 "tlsRpt": {"rua": [format!("mailto:tlsrpt@{domain}")]}}
    });
    api.patch(
        "md",
        &PatchParams::apply("imap-test").force(),
        &Patch::Apply(md),
    )
    .await
    .expect("apply");
    wait_for(&api, "md", "no reports yet", |m| {
        condition(m, "TLSReportsClean").is_some_and(|c| c.1 == "NoReports")
    })
    .await;

    // The receiver's side: its MailDomain cache, the Kubernetes sink, counted as mail.
    let ready = Arc::new(AtomicBool::new(false));
    let store = mailsec_operator::serve::maildomain_store(client.clone(), ready.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.load(Ordering::SeqCst) || store.state().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the MailDomain cache never synced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = Arc::new(ReportMetrics::default());
    let sink = Counted {
        inner: KubeSink::new(client.clone(), store, metrics.clone()),
        metrics: metrics.clone(),
        source: "mail",
    };

    // A report about yesterday, mailed twice.
    let today = jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    let yesterday = today.yesterday().expect("date").to_string();
    let mail = String::from_utf8(report_mail("mailed-1", &domain, Attach::Gzip, 0)).expect("utf-8");
    let json = report_json("mailed-1", &domain).replace("2026-01-01", &yesterday);
    let body = base64_lines(&gzip(json.as_bytes()));
    let original = base64_lines(&gzip(report_json("mailed-1", &domain).as_bytes()));
    assert!(
        mail.contains(&original),
        "the composed mail has its attachment in one piece"
    );
    let mail = mail.replace(&original, &body);
    let dovecot = Dovecot::start(Options::default());
    let config = dovecot.config(empty_dns().await);
    let mut looker = dovecot.client().await;
    looker.append("INBOX", mail.as_bytes()).await;
    looker.append("INBOX", mail.as_bytes()).await;
    let summary = imap::poll_once(&config, &sink).await.expect("poll");
    assert_eq!(
        (summary.stored, summary.duplicate, summary.rejected),
        (1, 1, 0),
        "{summary:?}"
    );
    assert_eq!(looker.count("TLSRPT/Processed").await, 2);

    let stored = Api::<TLSReport>::namespaced(client.clone(), ns.name())
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    assert_eq!(stored.len(), 1);
    let spec = &stored[0].spec;
    assert_eq!(
        (spec.received.via.as_str(), spec.received.dkim.as_deref()),
        ("mail", Some("none"))
    );
    assert_eq!(
        (spec.day.as_str(), spec.successful, spec.failed),
        (yesterday.as_str(), 12, 1)
    );

    let md = wait_for(&api, "md", "TLSReportsClean False", |m| {
        condition(m, "TLSReportsClean").is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&md, "TLSReportsClean").expect("condition");
    assert_eq!(reason, "FailuresReported");
    assert!(
        message.starts_with("certificate-expired at mx.example.test (1 sessions)"),
        "{message}"
    );
    assert_eq!(
        md.status
            .as_ref()
            .and_then(|s| s.tls_reports.as_ref())
            .map(|t| t.stored),
        Some(1)
    );
    let text = metrics.render();
    let line = format!(
        "mailsec_tlsrpt_sessions_total{{domain=\"{domain}\",reporter=\"Test Sender\",policy_type=\"sts\",result=\"certificate-expired\"}} 1"
    );
    assert!(text.contains(&line), "{text}");
    assert!(
        text.contains(
            "mailsec_tlsrpt_reports_total{source=\"mail\",outcome=\"duplicate\",reason=\"\"} 1"
        ),
        "{text}"
    );
    ns.delete(&client).await;
}
