//! The API server and etcd restarted mid-run: the controller (the `mailsec` binary) has
//! published three MailDomains when the environment's kube-apiserver and etcd are killed
//! with SIGKILL, and after a pause started again with their own command lines (etcd keeps its
//! data directory). The controller must live through it (its watches fail and resume) and
//! then converge exactly on what changed after the restart: the three updated, a fourth
//! created, each name holding exactly its one value in BIND.
//!
//! This restarts the shared environment's control plane, so it is a test binary of its own
//! (cargo runs test binaries one after another): the other tests never see the outage. The
//! restarted processes are written into the environment's pid files, so `make down` stops
//! them as it stops the others.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use mailsec_operator::api::MailDomain;
use support::controller_process::{Controller, bind_maildomain, bind_provider};
use support::maildomain::{published, wait_for};
use support::random_suffix;

/// One of the environment's processes: its pid file and command line.
struct Component {
    pid_file: PathBuf,
    log: PathBuf,
    argv: Vec<String>,
}

impl Component {
    fn of(state: &Path, name: &str) -> Component {
        let pid_file = state.join("pids").join(format!("{name}.pid"));
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let raw = std::fs::read(format!("/proc/{}/cmdline", pid.trim()))
            .unwrap_or_else(|e| panic!("{name} (pid {}) is not running: {e}", pid.trim()));
        let argv = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Component {
            pid_file,
            log: state.join("logs").join(format!("{name}.log")),
            argv,
        }
    }

    fn pid(&self) -> String {
        std::fs::read_to_string(&self.pid_file)
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// SIGKILL, then waits until it is gone (it is not our child: it is polled).
    fn kill(&self) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -KILL {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}/cmdline")).exists()
            && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
        {
            assert!(Instant::now() < deadline, "pid {pid} did not die");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again with the same command line, its log appended to, in a session of its
    /// own (as env-up starts it), and records the new pid.
    // Never waited for: it outlives this test, and `make down` stops it by its pid file.
    #[allow(clippy::zombie_processes)]
    fn restart(&self) {
        let log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("log")
        };
        let child = Command::new("setsid")
            .args(&self.argv)
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("restart");
        // setsid execs the command when it is not a group leader: the pid is the command's.
        std::fs::write(&self.pid_file, format!("{}\n", child.id())).expect("pid file");
    }
}

// This found a real fault: kube-runtime's Controller backs off all its watches together, so
// after the restart every watch's failure paused the MailDomain watch as well, and new
// generations were seen 210 s later, or not within 240 s. Each watch now backs off alone
// (src/controller/run.rs, `watched`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_api_server_and_etcd_restart_it_converges_exactly() {
    let Some(env) = support::env() else { return };
    let state = env
        .env_dir
        .clone()
        .expect("the environment's state directory (MAILSEC_ENV_DIR)");
    let client = env.client().await;
    let ns = env.namespace(&client, "apirestart").await;
    let n = ns.name().to_owned();
    bind_provider(env, &client, &n).await;
    let log = std::env::temp_dir().join(format!("mailsec-api-restart-{n}.log"));
    eprintln!("controller log: {}", log.display());
    let (_, policy_server) = support::controller_process::policy_server(&client).await;
    let mut controller = Controller::start(
        env,
        &n,
        &log,
        &["--policy-server-url", policy_server.as_str()],
    );

    let domains: Vec<String> = (0..4)
        .map(|i| format!("ar{i}-{}.{}", random_suffix(), env.dns.zone))
        .collect();
    let apply = |i: usize, dmarc: &'static str| {
        let client = client.clone();
        let (n, domain) = (n.clone(), domains[i].clone());
        async move {
            let api: Api<MailDomain> = Api::namespaced(client, &n);
            let name = format!("md{i}");
            api.patch(
                &name,
                &PatchParams::apply("api-restart-test").force(),
                &Patch::Apply(bind_maildomain(&name, &domain, dmarc)),
            )
            .await
            .expect("apply")
        }
    };
    let api: Api<MailDomain> = Api::namespaced(client.clone(), &n);
    for i in 0..3 {
        apply(i, "none").await;
    }
    for i in 0..3 {
        wait_for(&api, &format!("md{i}"), "published", published).await;
    }

    let etcd = Component::of(&state, "etcd");
    let apiserver = Component::of(&state, "kube-apiserver");
    apiserver.kill();
    etcd.kill();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        controller.running(),
        "the controller exited while the API server was down; its log: {}",
        log.display()
    );
    etcd.restart();
    apiserver.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    while api.list(&Default::default()).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the API server did not come back: {}",
            apiserver.log.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let back = Instant::now();
    let failed = controller
        .metric(r#"mailsec_watch_errors_total{resource="MailDomain"}"#)
        .await;
    assert!(
        failed > 0,
        "the MailDomain watch failed while the API server was down, and says so in its metric"
    );
    for i in 0..3 {
        apply(i, "quarantine").await;
    }
    apply(3, "quarantine").await;
    // Each watch's backoff is at most 30 s (plus jitter) when the API server answers again.
    let deadline = Instant::now() + Duration::from_secs(75);
    for i in 0..4 {
        let name = format!("md{i}");
        while !api
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .is_some_and(|m| published(&m))
        {
            assert!(
                Instant::now() < deadline,
                "{name} not published 75 s after the API server answered again; the controller's log: {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    eprintln!(
        "API server and etcd down for {:.1} s; the four MailDomains published {:.1} s after the API server answered again",
        (back - down).as_secs_f64(),
        back.elapsed().as_secs_f64()
    );
    eprintln!("failed steps of the MailDomain watch: {failed}");
    assert!(
        controller.running(),
        "the controller is still the same process"
    );
    for d in &domains {
        assert_eq!(
            env.dns.txt(&format!("_dmarc.{d}")),
            ["v=DMARC1; p=quarantine"],
            "{d}: exactly the new DMARC value"
        );
        assert_eq!(env.dns.txt(d), ["v=spf1 mx -all"], "{d}: one SPF");
    }
    ns.delete(&client).await;
}
