//! Test support shared by the integration tests (`mod support;` in each `tests/*.rs`).
//!
//! It hands out one [`TestEnv`] per test binary: a real kube-apiserver + etcd and a real
//! BIND 9 started by `scripts/env-up.sh`.
//!
//! * If `KUBECONFIG` and `MAILSEC_DNS_SERVER` are already exported (`make test` does this, as
//!   does `eval "$(make -s up)"` in a shell), those are used as they are.
//! * Otherwise `scripts/env-up.sh` is run once and its `export` lines are parsed. No teardown
//!   is registered: the environment outlives the test binary (the next binary reuses it, since
//!   env-up.sh is idempotent); `make test` takes it down, by hand it is `make down`.
//! * If the environment cannot be started or reached, tests must not silently pass: with
//!   `CI=true` [`env`] panics (the test fails); otherwise it prints a loud `SKIPPED` line and
//!   returns `None`, and the caller returns early:
//!
//! ```ignore
//! let Some(env) = support::env() else { return };
//! ```
//!
//! Only `kube`, `k8s-openapi`, `tokio`, `serde_json`, std and the crate's API types are used.
#![allow(dead_code)]

pub mod api_fake;
pub mod azure;
pub mod cloudflare;
pub mod controller_process;
pub mod digitalocean;
pub mod faults;
pub mod google;
pub mod hetzner;
pub mod maildomain;
pub mod operator;
pub mod process;
pub mod route53;
pub mod tls;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Label put on every namespace created by [`TestEnv::namespace`].
pub const NAMESPACE_LABEL: &str = "mailsec.test/harness";

/// The DNS side of the environment: an authoritative BIND 9 for `zone` that accepts RFC 2136
/// updates signed with the TSIG key below.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    pub server: SocketAddr,
    pub zone: String,
    pub tsig_key_name: String,
    /// e.g. `hmac-sha256`
    pub tsig_algorithm: String,
    /// base64, as in a BIND `key` clause
    pub tsig_secret: String,
}

/// The PowerDNS Authoritative server of the environment: its HTTP API, and its DNS side
/// (`dns.server`; the TSIG fields there are unused).
#[derive(Clone, Debug)]
pub struct PowerDnsSettings {
    /// `http://127.0.0.1:<port>`
    pub api_url: String,
    pub api_key: String,
    pub dns: DnsSettings,
}

/// The running test environment.
#[derive(Clone, Debug)]
pub struct TestEnv {
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>` as written in the kubeconfig.
    pub api_server: String,
    /// BIND 9.
    pub dns: DnsSettings,
    /// Knot DNS: the same zone and TSIG key as `dns`.
    pub knot: DnsSettings,
    pub pdns: PowerDnsSettings,
    /// moto's Route 53, strict (scripts/route53-strict.py), with the hosted zone `dns.zone`.
    pub route53: route53::Route53,
    /// The env-up.sh state directory (logs are in `logs/`), if known.
    pub env_dir: Option<PathBuf>,
    /// Directory holding kubectl, helm, kube-apiserver, etcd (scripts/tools.sh).
    pub tools_bin: PathBuf,
}

static ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when running in CI, where an unavailable environment must fail the tests.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The shared environment, started or found once per test binary. `None` means "skip this
/// test" (never in CI, see the module docs).
pub fn env() -> Option<&'static TestEnv> {
    match ENV.get_or_init(init) {
        Ok(env) => Some(env),
        Err(why) => {
            if in_ci() {
                panic!(
                    "test environment unavailable and CI=true, failing instead of skipping: {why}"
                );
            }
            // Written to the stderr handle directly: libtest captures eprintln! of passing
            // tests, and a skip must be visible.
            static BANNER: std::sync::Once = std::sync::Once::new();
            let mut err = std::io::stderr().lock();
            BANNER.call_once(|| {
                let _ = writeln!(
                    err,
                    "\n################################################################\n\
                     ## SKIPPING integration tests: test environment unavailable:\n\
                     ##   {why}\n\
                     ## (run `make test`, or `eval \"$(make -s up)\"` before `cargo test`;\n\
                     ##  with CI=true these tests fail instead)\n\
                     ################################################################"
                );
            });
            let test = std::thread::current().name().unwrap_or("?").to_string();
            let _ = writeln!(err, "## SKIPPED: {test}");
            None
        }
    }
}

fn init() -> Result<TestEnv, String> {
    let vars: HashMap<String, String> = if std::env::var_os("KUBECONFIG").is_some()
        && std::env::var_os("MAILSEC_DNS_SERVER").is_some()
    {
        std::env::vars().collect()
    } else {
        run_env_up()?
    };
    let env = TestEnv::from_vars(&vars)?;
    env.check_reachable()?;
    Ok(env)
}

fn run_env_up() -> Result<HashMap<String, String>, String> {
    let script = repo_root().join("scripts/env-up.sh");
    // Straight to stderr (not eprintln!, which libtest captures), next to env-up.sh's output.
    let _ = writeln!(
        std::io::stderr(),
        "[support] KUBECONFIG/MAILSEC_DNS_SERVER not exported: running {}",
        script.display()
    );
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed with {}", script.display(), out.status));
    }
    let vars = parse_exports(&String::from_utf8_lossy(&out.stdout));
    if !vars.contains_key("KUBECONFIG") {
        return Err("env-up.sh printed no KUBECONFIG export".into());
    }
    Ok(vars)
}

/// Parses the `export NAME='value'` lines printed by env-up.sh (single-quoted values, with the
/// `'\''` escape). Lines it does not understand (e.g. the PATH line) are ignored.
pub fn parse_exports(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("export ") else {
            continue;
        };
        let Some((name, raw)) = rest.split_once('=') else {
            continue;
        };
        if let Some(value) = unquote_single(raw) {
            vars.insert(name.to_string(), value);
        }
    }
    vars
}

fn unquote_single(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("\\'") {
            out.push('\'');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'')?;
            out.push_str(&r[..end]);
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(out)
}

impl TestEnv {
    fn from_vars(vars: &HashMap<String, String>) -> Result<Self, String> {
        let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
        let need = |k: &str| get(k).ok_or_else(|| format!("{k} is not set"));

        let kubeconfig = PathBuf::from(need("KUBECONFIG")?);
        let kc = Kubeconfig::read_from(&kubeconfig)
            .map_err(|e| format!("cannot read kubeconfig {}: {e}", kubeconfig.display()))?;
        let api_server = current_server(&kc).ok_or_else(|| {
            format!(
                "no server for the current context in {}",
                kubeconfig.display()
            )
        })?;

        let addr = |var: &str| -> Result<SocketAddr, String> {
            let text = need(var)?;
            text.to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("{var}={text} is not host:port"))
        };
        let server = addr("MAILSEC_DNS_SERVER")?;
        let dns = DnsSettings {
            server,
            zone: get("MAILSEC_DNS_ZONE").unwrap_or_else(|| "example.test".into()),
            tsig_key_name: need("MAILSEC_TSIG_KEY_NAME")?,
            tsig_algorithm: get("MAILSEC_TSIG_ALGORITHM").unwrap_or_else(|| "hmac-sha256".into()),
            tsig_secret: need("MAILSEC_TSIG_SECRET")?,
        };
        let knot = DnsSettings {
            server: addr("MAILSEC_KNOT_SERVER")?,
            ..dns.clone()
        };
        let pdns = PowerDnsSettings {
            api_url: need("MAILSEC_PDNS_API_URL")?,
            api_key: need("MAILSEC_PDNS_API_KEY")?,
            dns: DnsSettings {
                server: addr("MAILSEC_PDNS_SERVER")?,
                ..dns.clone()
            },
        };
        let route53 = route53::Route53 {
            url: need("MAILSEC_ROUTE53_URL")?,
        };
        let tools_bin = match get("MAILSEC_TOOLS_BIN") {
            Some(dir) => PathBuf::from(dir),
            None => tools_bindir()?,
        };
        Ok(TestEnv {
            kubeconfig,
            api_server,
            dns,
            knot,
            pdns,
            route53,
            env_dir: get("MAILSEC_ENV_DIR").map(PathBuf::from),
            tools_bin,
        })
    }

    fn check_reachable(&self) -> Result<(), String> {
        let api = host_port(&self.api_server)
            .ok_or_else(|| format!("cannot parse API server address {}", self.api_server))?;
        tcp_probe(&api).map_err(|e| format!("API server {} unreachable: {e}", self.api_server))?;
        tcp_probe(&self.dns.server.to_string())
            .map_err(|e| format!("DNS server {} unreachable: {e}", self.dns.server))?;
        Ok(())
    }

    /// A fresh client for the environment's API server. Create one per test: a client is
    /// bound to the tokio runtime it was created in, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> Client {
        build_client(self.config().await).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The client configuration for the environment's API server.
    pub async fn config(&self) -> Config {
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kube config from the test kubeconfig")
    }

    /// Creates a namespace `<prefix>-<random>` and returns a guard that deletes it (see
    /// [`TestNamespace`]).
    pub async fn namespace(&self, client: &Client, prefix: &str) -> TestNamespace {
        let prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        let name = format!("{}-{}", prefix.trim_matches('-'), random_suffix());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(NAMESPACE_LABEL.to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        TestNamespace {
            name,
            kubeconfig: self.kubeconfig.clone(),
            done: false,
        }
    }

    /// Path of a tool from the tools bin directory (kubectl, helm, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.tools_bin.join(name)
    }

    /// Runs kubectl (from the tools bin directory) against the environment.
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::new(self.tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl and returns its stdout; panics with stderr if it fails.
    pub fn kubectl_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\n{}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl DnsSettings {
    /// Runs `nsupdate` with the given commands (the `server` line is prepended), signed with
    /// this key name and algorithm and the given secret (pass `&self.tsig_secret` normally).
    pub fn nsupdate(&self, commands: &str, secret: &str) -> Output {
        let script = format!(
            "server {} {}\n{commands}",
            self.server.ip(),
            self.server.port()
        );
        let key = format!("{}:{}:{secret}", self.tsig_algorithm, self.tsig_key_name);
        run_with_stdin(
            Command::new("nsupdate").args(["-t", "10", "-y", &key]),
            &script,
        )
    }

    /// Sends `commands` as one update signed with the right key, and fails if BIND refuses it.
    pub fn update(&self, commands: &str) {
        let out = self.nsupdate(&format!("{commands}send\n"), &self.tsig_secret);
        assert!(
            out.status.success(),
            "nsupdate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The TXT values at `name`, each joined from its character-strings, sorted.
    pub fn txt(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .dig_short(name, "TXT")
            .iter()
            .map(|l| parse_txt_strings(l).concat())
            .collect();
        values.sort();
        values
    }

    /// `dig +short` against the test server; one entry per answer line.
    pub fn dig_short(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = self.dig(&["+short", name, rtype]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Runs dig against the test server with extra arguments.
    pub fn dig(&self, args: &[&str]) -> Output {
        let out = Command::new("dig")
            .arg(format!("@{}", self.server.ip()))
            .args(["-p", &self.server.port().to_string(), "+time=2", "+tries=2"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run dig");
        assert!(
            out.status.success(),
            "dig {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The zone's SOA serial.
    pub fn soa_serial(&self) -> u32 {
        let soa = self.dig_short(&self.zone, "SOA");
        let line = soa.first().expect("SOA answer");
        line.split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse SOA {line:?}"))
    }
}

/// Splits a TXT rdata as printed by dig (`"a" "b\"c"`) into its character-strings.
pub fn parse_txt_strings(rdata: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut chars = rdata.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut bytes = Vec::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => {
                    let mut digits = String::new();
                    while digits.len() < 3 && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                        digits.extend(chars.next());
                    }
                    if digits.is_empty() {
                        if let Some(e) = chars.next() {
                            let mut buf = [0; 4];
                            bytes.extend_from_slice(e.encode_utf8(&mut buf).as_bytes());
                        }
                    } else {
                        bytes.push(digits.parse::<u8>().unwrap_or(b'?'));
                    }
                }
                c => {
                    let mut buf = [0; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        strings.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    strings
}

/// A namespace created for one test. Call [`TestNamespace::delete`] at the end of the test to
/// delete it and wait until it is gone; if the guard is dropped instead (e.g. the test
/// panicked), it is deleted in the background of the drop, without waiting.
///
/// The environment runs no kube-controller-manager (like envtest), so nothing empties and
/// finalizes a deleted namespace: deletion here removes the `kubernetes` finalizer through the
/// `finalize` subresource and deletes again. Objects inside are not deleted (they stay
/// orphaned in etcd), so do not rely on cross-namespace listings being empty.
pub struct TestNamespace {
    pub name: String,
    kubeconfig: PathBuf,
    done: bool,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace and waits (bounded) until the API server no longer has it.
    pub async fn delete(mut self, client: &Client) {
        self.done = true;
        delete_namespace(client, &self.name)
            .await
            .unwrap_or_else(|e| panic!("delete namespace {}: {e}", self.name));
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let name = self.name.clone();
        let kubeconfig = self.kubeconfig.clone();
        // A separate thread with its own runtime: this may run inside a test's runtime.
        let res = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let kc = Kubeconfig::read_from(&kubeconfig).map_err(|e| e.to_string())?;
                let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let client = build_client(config)?;
                tokio::time::timeout(Duration::from_secs(20), delete_namespace(&client, &name))
                    .await
                    .map_err(|_| "timed out".to_string())?
            })
        })
        .join();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("[support] cleanup of namespace {} failed: {e}", self.name),
            Err(_) => eprintln!("[support] cleanup of namespace {} panicked", self.name),
        }
    }
}

/// `Client::try_from`, turning rustls' "cannot determine the CryptoProvider" panic into an
/// explanation: it happens when the test build enables both of rustls' `ring` (kube) and
/// `aws-lc-rs` (e.g. mail-auth's default features) providers.
pub fn build_client(config: Config) -> Result<Client, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Client::try_from(config))) {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("cannot build a kube client: {e}")),
        Err(_) => Err(
            "building a kube client panicked (see above). If rustls could not pick a \
             CryptoProvider, both its `ring` and `aws-lc-rs` features are enabled in the test \
             build: give dev-dependencies that pull in aws-lc-rs (mail-auth) the `ring` feature \
             instead, or install a provider before creating clients"
                .into(),
        ),
    }
}

/// Deletes a namespace fully in an environment without the namespace controller: DELETE,
/// clear `spec.finalizers` via the `finalize` subresource, DELETE again, wait until gone.
pub async fn delete_namespace(client: &Client, name: &str) -> Result<(), String> {
    let api = Api::<Namespace>::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(format!("delete: {e}")),
        }
        match api.get_opt(name).await.map_err(|e| format!("get: {e}"))? {
            None => return Ok(()),
            Some(mut ns) => {
                let has_finalizers = ns
                    .spec
                    .as_ref()
                    .and_then(|s| s.finalizers.as_ref())
                    .is_some_and(|f| !f.is_empty());
                if has_finalizers {
                    if let Some(spec) = ns.spec.as_mut() {
                        spec.finalizers = Some(Vec::new());
                    }
                    ns.metadata.managed_fields = None;
                    match api
                        .replace_subresource("finalize", name, &PostParams::default(), &ns)
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(e) => return Err(format!("finalize: {e}")),
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return Err("still present after 30s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A short random lowercase-hex suffix for names (namespaces, DNS labels). Uses std only:
/// std's per-process random hash keys, the time, the PID and a counter.
/// A loopback address with a free TCP port, for a server a test starts. Below the ephemeral
/// range (32768 and up on Linux), so that no outgoing connection of a concurrent test can take
/// the port between this check and the server's bind (that race made a controller fail with
/// "Address already in use"); each port is handed out once per test process.
pub fn free_addr() -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(97) % SPAN;
    for _ in 0..SPAN {
        let port = FIRST + (base + NEXT.fetch_add(1, Ordering::SeqCst)) % SPAN;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port as u16));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}

pub fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    format!("{:010x}", h.finish() & 0xff_ffff_ffff)
}

fn tools_bindir() -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/tools.sh"))
        .arg("bindir")
        .output()
        .map_err(|e| format!("scripts/tools.sh bindir: {e}"))?;
    if !out.status.success() {
        return Err(format!("scripts/tools.sh bindir failed: {}", out.status));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn current_server(kc: &Kubeconfig) -> Option<String> {
    let ctx_name = kc.current_context.as_deref()?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)?
        .context
        .as_ref()?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)?
        .cluster
        .as_ref()?;
    cluster.server.clone()
}

fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        Some(authority.to_string())
    } else if url.starts_with("http://") {
        Some(format!("{authority}:80"))
    } else {
        Some(format!("{authority}:443"))
    }
}

fn tcp_probe(addr: &str) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| e.to_string())?.collect();
    let mut last = String::from("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for command")
}

/// True if `path` exists and is a file with a YAML extension.
pub fn is_yaml(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// An HTTP client for the tests (the library's rustls provider installed first, as the
/// operator does at start).
pub fn http_client() -> reqwest::Client {
    mailsec_operator::dns::http::install_crypto_provider();
    reqwest::Client::new()
}

/// Waits (20 s at most) until `/readyz` on `admin` answers 200: for `mailsec serve` started by
/// a test, ready once its watch cache has synced.
pub async fn wait_ready(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = http_client();
    while !http
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "{admin} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Applies `value` (a Secret, DNSProvider or MailDomain) in `ns` by server-side apply as
/// `manager`, taking over conflicting fields.
pub async fn apply_json(client: &Client, ns: &str, manager: &str, value: serde_json::Value) {
    use kube::api::{Patch, PatchParams};
    use kube::core::{ApiResource, DynamicObject};
    let kind = value["kind"].as_str().expect("kind").to_owned();
    let name = value["metadata"]["name"].as_str().expect("name").to_owned();
    let resource = match kind.as_str() {
        "MailDomain" => ApiResource::erase::<mailsec_operator::api::MailDomain>(&()),
        "DNSProvider" => ApiResource::erase::<mailsec_operator::api::DNSProvider>(&()),
        "Secret" => ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        other => panic!("kind {other}"),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(value),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

/// Annotates the MailDomain to skip the MTA-STS withdrawal wait, deletes it (unless a deletion
/// is already under way) and waits (60 s at most) until the controller has removed its records
/// and its finalizer. The annotation has a field manager of its own: applied by the manager
/// that created the MailDomain, it would drop the spec.
pub async fn delete_skipping_withdrawal(
    api: &Api<mailsec_operator::api::MailDomain>,
    name: &str,
    already_deleting: bool,
) {
    use kube::api::{Patch, PatchParams};
    let skip = serde_json::json!({"apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
        "metadata": {"annotations": {"mailsec.io/skip-withdrawal": "true"}}});
    api.patch(name, &PatchParams::apply("skipper"), &Patch::Apply(&skip))
        .await
        .expect("annotate");
    if !already_deleting {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt(name).await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "the finalizer never let {name} go"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
