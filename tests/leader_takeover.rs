//! Two controller replicas (the `mailsec` binary, leader election on, one Lease): the leader is
//! killed with SIGKILL while it works. The standby must take over once the Lease has run out —
//! not before (two writers at once), and not much after (the lease duration, 15 s, plus one
//! retry of the standby): the time from the kill until the standby holds the Lease, and until
//! a MailDomain applied after the kill is published, are measured and printed. Before the kill
//! only the leader reconciles and writes DNS; after it the standby publishes what changed
//! meanwhile, and what was applied while nobody led.

mod support;

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mailsec_operator::api::MailDomain;
use support::controller_process::{Controller, bind_maildomain, bind_provider};
use support::maildomain::{published, wait_for};
use support::random_suffix;

/// The controller's Lease duration (src/controller/run.rs).
const LEASE_SECONDS: u64 = 15;

/// The Lease's holder and when it was last renewed.
async fn holder(leases: &Api<Lease>) -> Option<(String, SystemTime)> {
    let spec = leases.get_opt("mailsec-operator").await.ok()??.spec?;
    let renewed = spec.renew_time.map(|t| SystemTime::from(t.0))?;
    Some((spec.holder_identity?, renewed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standby_takes_over_when_the_killed_leaders_lease_runs_out() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "takeover").await;
    let n = ns.name().to_owned();
    bind_provider(env, &client, &n).await;
    let log = std::env::temp_dir().join(format!("mailsec-takeover-{n}.log"));
    eprintln!("controller log: {}", log.display());
    let (_, policy_server) = support::controller_process::policy_server(&client).await;
    let extra = ["--policy-server-url", policy_server.as_str()];

    let a = Controller::start_replica(env, &n, &log, "replica-a", &extra);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &n);
    // replica-a first, so it is the one that leads; then its standby.
    let deadline = Instant::now() + Duration::from_secs(30);
    while holder(&leases).await.map(|h| h.0).as_deref() != Some("replica-a") {
        assert!(Instant::now() < deadline, "replica-a never took the Lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = Controller::start_replica(env, &n, &log, "replica-b", &extra);
    support::wait_ready(b.admin).await;

    let api: Api<MailDomain> = Api::namespaced(client.clone(), &n);
    let apply = |name: String, domain: String| {
        let api = api.clone();
        async move {
            api.patch(
                &name,
                &PatchParams::apply("takeover-test").force(),
                &Patch::Apply(bind_maildomain(&name, &domain, "none")),
            )
            .await
            .expect("apply")
        }
    };
    let domain = |i: usize| format!("to{i}-{}.{}", random_suffix(), env.dns.zone);
    let (before, after, gap) = (domain(0), domain(1), domain(2));
    apply("before".into(), before.clone()).await;
    wait_for(&api, "before", "published by replica-a", published).await;
    assert!(
        a.metric("mailsec_dns_updates_total").await > 0,
        "the leader wrote"
    );
    assert_eq!(
        (
            b.metric("mailsec_dns_updates_total").await,
            b.metric("mailsec_reconciles_total").await,
            b.metric("mailsec_leader").await
        ),
        (0, 0, 0),
        "the standby neither reconciled nor wrote"
    );

    // Killed mid-work: a change is under way when it dies.
    apply("after".into(), after.clone()).await;
    let (_, renewed) = holder(&leases).await.expect("the Lease");
    a.kill();
    let killed = Instant::now();
    let killed_at = SystemTime::now();
    // Applied while nobody leads: only the standby, once leader, can publish it.
    apply("gap".into(), gap.clone()).await;
    let deadline = killed + Duration::from_secs(3 * LEASE_SECONDS);
    let (new_holder, taken_at) = loop {
        if let Some((h, t)) = holder(&leases).await
            && h != "replica-a"
        {
            break (h, t);
        }
        assert!(
            Instant::now() < deadline,
            "no takeover {} s after the kill",
            3 * LEASE_SECONDS
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let takeover = killed.elapsed();
    assert_eq!(new_holder, "replica-b");
    // Never two leaders: the standby took the Lease only once the dead leader's had run out.
    let expired_at = renewed + Duration::from_secs(LEASE_SECONDS);
    assert!(
        taken_at + Duration::from_secs(1) >= expired_at,
        "taken at {taken_at:?}, before the leader's Lease ran out at {expired_at:?}"
    );
    let left = expired_at
        .duration_since(killed_at)
        .unwrap_or(Duration::ZERO);
    wait_for(&api, "gap", "published by replica-b", published).await;
    let gap_published = killed.elapsed();
    wait_for(&api, "after", "published", published).await;
    eprintln!(
        "takeover: the Lease had {:.1} s left at the kill; replica-b held it {:.1} s after the kill, and the MailDomain applied after the kill was published {:.1} s after it",
        left.as_secs_f64(),
        takeover.as_secs_f64(),
        gap_published.as_secs_f64()
    );
    assert!(
        takeover <= left + Duration::from_secs(LEASE_SECONDS / 3 + 2),
        "the standby took {takeover:?}; the Lease had {left:?} left"
    );
    assert_eq!(b.metric("mailsec_leader").await, 1);
    assert!(
        b.metric("mailsec_dns_updates_total").await > 0,
        "the new leader wrote"
    );
    for d in [&after, &gap] {
        assert_eq!(
            env.dns.txt(&format!("_dmarc.{d}")),
            ["v=DMARC1; p=none"],
            "{d}"
        );
    }
    drop(b);
    ns.delete(&client).await;
}
