//! A controller for one test namespace, as a task of the test's runtime: no DNS provider
//! needed (MailDomains without one list their records for publishing by hand), no live
//! checks, and the report receiver's URL given for `tlsRpt.receive`.

use std::net::SocketAddr;

use mailsec_operator::controller::context::Config;
use mailsec_operator::controller::run::{self, Options};

use super::TestEnv;

/// The report receiver URL the controller names for `tlsRpt.receive`.
pub const REPORT_URL: &str = "https://tlsrpt.example.test/v1/reports";

/// Starts the controller for `ns`; returns its admin address.
pub async fn controller(env: &TestEnv, ns: &str) -> SocketAddr {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,mailsec_operator=debug")
        .with_test_writer()
        .try_init();
    let config = env.config().await;
    let admin = super::free_addr();
    let options = Options {
        config: Config {
            owner_id: "test".into(),
            operator_namespace: ns.into(),
            policy_server: None,
            hosting: mailsec_operator::controller::hosting::HostingConfig {
                service_name: "mailsec-serve".into(),
                service_namespace: "mailsec-system".into(),
                service_port: 80,
                cluster_domain: "cluster.local".into(),
            },
            checks: None,
            report_url: Some(
                mailsec_operator::domain::tlsrpt::ReportUri::parse(REPORT_URL).expect("url"),
            ),
            report_retention: Default::default(),
        },
        admin_addr: admin,
        leader_election: false,
        lease_name: "mailsec-operator".into(),
        identity: "reports".into(),
        watch_namespace: Some(ns.into()),
        reconcile_concurrency: 4,
    };
    tokio::spawn(async move {
        if let Err(e) = run::run(config, options).await {
            eprintln!("controller stopped: {e}");
        }
    });
    admin
}
