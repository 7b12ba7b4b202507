//! High availability: two replicas with leader election on a Lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;

use crate::support::objects::configmap;
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, wait_for};

const HA: [&str; 4] = [
    "--leader-elect",
    "--lease-duration=6s",
    "--renew-deadline=4s",
    "--retry-period=1s",
];
const TIMEOUT: Duration = Duration::from_secs(60);

async fn holder(ns: &TestNs) -> Option<String> {
    let lease = ns.api::<Lease>().get_opt("kube-reloader").await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

async fn setup(prefix: &str) -> (TestNs, Reloader, Reloader) {
    let ns = TestNs::new(prefix).await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let a = Reloader::start_as(&ns, &HA, Some("replica-a"));
    // Let the first take the Lease, so which one leads is known.
    wait_for("replica-a to take the Lease", TIMEOUT, || async {
        holder(&ns).await.filter(|h| h.starts_with("replica-a"))
    })
    .await;
    let b = Reloader::start_as(&ns, &HA, Some("replica-b"));
    b.wait_count(&["leader election on"], 1).await;
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    (ns, a, b)
}

#[tokio::test]
async fn standby_takes_over_when_the_leader_dies_and_rolls_a_later_change_once() {
    let (ns, mut a, b) = setup("ha-kill").await;
    a.wait_up_to_date("web", 1).await;
    // Exactly one replica writes: the standby has done nothing.
    assert_eq!(
        b.count(&["recorded the baseline"]) + b.count(&["rolled out"]),
        0
    );
    assert_eq!(b.count(&["acquired the Lease"]), 0);
    // Both are ready: the standby as a standby.
    for r in [&a, &b] {
        let addr = r.http_addr().await;
        wait_for("/readyz to answer 200", TIMEOUT, || async {
            (crate::support::http_get(addr, "/readyz").await.0 == 200).then_some(())
        })
        .await;
    }

    a.kill();
    let killed = Instant::now();
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    b.wait_count(&["acquired the Lease"], 1).await;
    let takeover = killed.elapsed();
    wait_for("the rollout by the new leader", TIMEOUT, || async {
        (workloads::rollouts(&ns, Kind::Deployment, "web").await >= 1).then_some(())
    })
    .await;
    b.wait_up_to_date("web", 1).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
    assert!(
        holder(&ns)
            .await
            .is_some_and(|h| h.starts_with("replica-b"))
    );
    eprintln!("takeover after SIGKILL: {takeover:?} (lease duration 6s)");
    // Generous bound: the Lease expires 6 s after its last renewal.
    assert!(
        takeover < Duration::from_secs(20),
        "takeover took {takeover:?}"
    );
}

#[tokio::test]
async fn sigterm_releases_the_lease_exits_zero_and_the_standby_takes_over_at_once() {
    let (ns, mut a, b) = setup("ha-term").await;
    let status = a.terminate();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", a.logs());
    assert!(a.count(&["released the Lease"]) == 1, "{}", a.logs());
    let released = Instant::now();
    b.wait_count(&["acquired the Lease"], 1).await;
    let takeover = released.elapsed();
    eprintln!("takeover after SIGTERM: {takeover:?} (lease duration 6s)");
    // Without the release the standby would wait for the Lease to expire (6 s).
    assert!(
        takeover < Duration::from_secs(5),
        "takeover took {takeover:?}"
    );
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    wait_for("the rollout by the new leader", TIMEOUT, || async {
        (workloads::rollouts(&ns, Kind::Deployment, "web").await == 1).then_some(())
    })
    .await;
}
