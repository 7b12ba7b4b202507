//! Never blind for long: with kube-reloader's connections to the API server broken the ways
//! networks break them (through a [`FaultProxy`] of the tests' own), changes still roll, once
//! each, within the bounds the issue sets: after every open connection went silent (a load
//! balancer dropping idle flows) within 60 s and the next ones within 15 s; after every
//! connection was reset within 15 s; after the API server was frozen (SIGSTOP) for 60 s, each
//! change made meanwhile (through a second API server) within 30 s of its resumption. The Lease
//! behaves: a leader whose renewal gets no answer stops writing, and leads again once it can.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::objects::configmap;
use crate::support::proxy::FaultProxy;
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{ControlPlane, TestNs, client_for, http_get, shared, wait_for};

const HASH: &str = "kube-reloader.io/config-hash";

/// ConfigMaps `cfg-1` and `cfg-2`, and Deployments `web-1` and `web-2` opted in, each reading
/// its own.
async fn two_workloads(ns: &TestNs) {
    for n in ["1", "2"] {
        let cm = format!("cfg-{n}");
        configmap(ns, &cm, &[("k", "0")], json!({})).await;
        let spec = workloads::env_from_configmap(&cm);
        workloads::opted_in(ns, Kind::Deployment, &format!("web-{n}"), spec).await;
    }
}

/// A kube-reloader for `ns` reaching the API server through a new proxy, leading and settled.
async fn through_a_proxy(ns: &TestNs, args: &[&str]) -> (FaultProxy, Reloader) {
    let cp = shared();
    let proxy = FaultProxy::start(cp.api_addr());
    let kubeconfig = cp.kubeconfig_via(proxy.addr, &format!("{}-proxy", ns.name));
    let reloader = Reloader::start_via(ns, &kubeconfig, args);
    for name in ["web-1", "web-2"] {
        workloads::baseline(ns, Kind::Deployment, name).await;
        reloader.wait_up_to_date(name, 1).await;
    }
    (proxy, reloader)
}

/// Changes ConfigMap `cfg-N` to `value` and returns how long until `web-N` has rolled for it,
/// failing after `bound`.
async fn time_to_roll(ns: &TestNs, n: &str, value: &str, bound: Duration) -> Duration {
    let start = Instant::now();
    configmap(ns, &format!("cfg-{n}"), &[("k", value)], json!({})).await;
    rolled(ns, n, value, bound).await;
    start.elapsed()
}

/// Waits (at most `bound`) until `web-N`'s pod template carries the digest of `cfg-N` holding
/// `value`.
async fn rolled(ns: &TestNs, n: &str, value: &str, bound: Duration) {
    let cm = format!("cfg-{n}");
    let want = workloads::expected_hash(&[(cm.as_str(), &[("k", value)])]);
    let name = format!("web-{n}");
    wait_for(
        &format!("{name} rolled for {cm}={value}"),
        bound,
        || async {
            let now = workloads::annotation(ns, Kind::Deployment, &name, HASH, true).await;
            (now.as_deref() == Some(want.as_str())).then_some(())
        },
    )
    .await;
}

/// The value of a counter on kube-reloader's /metrics (0 when absent).
async fn counter(reloader: &Reloader, series: &str) -> u64 {
    let (_, body) = http_get(reloader.http_addr().await, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// With a leading kube-reloader for a new namespace behind a proxy: `fault` done to the proxy
/// (it says to how many connections), then a change of `cfg-1` that must roll within `bound`,
/// then one of `cfg-2` within 15 s.
async fn changes_after(
    prefix: &str,
    fault: fn(&FaultProxy) -> usize,
    bound: Duration,
) -> (TestNs, Reloader) {
    let ns = TestNs::new(prefix).await;
    two_workloads(&ns).await;
    let (proxy, reloader) = through_a_proxy(&ns, &["--leader-elect"]).await;
    reloader.wait_count(&["acquired the Lease"], 1).await;

    let n = fault(&proxy);
    eprintln!("{prefix}: {n} open connections");
    let first = time_to_roll(&ns, "1", "1", bound).await;
    eprintln!("{prefix}: after it, a change rolled in {first:?}");
    let next = time_to_roll(&ns, "2", "1", Duration::from_secs(15)).await;
    eprintln!("{prefix}: the next one in {next:?}");
    (ns, reloader)
}

/// Each of `web-1` and `web-2` was rolled once: by kube-reloader, and by its Deployment.
async fn rolled_once_each(ns: &TestNs, reloader: &Reloader) {
    for name in ["web-1", "web-2"] {
        assert_eq!(reloader.count(&["rolled out", &format!("name={name} ")]), 1);
        assert_eq!(workloads::rollouts(ns, Kind::Deployment, name).await, 1);
    }
}

#[tokio::test]
async fn after_every_connection_goes_silent_changes_roll_within_a_minute() {
    let silence = |p: &FaultProxy| p.silence();
    let (ns, reloader) = changes_after("silent", silence, Duration::from_secs(60)).await;
    // Which watch was stuck, and for how long.
    let stalled = [
        "watching ConfigMaps stalled",
        "for 45s",
        &format!("scope=\"{}\"", ns.name),
    ];
    assert!(reloader.count(&stalled) >= 1, "{}", reloader.logs());
    let series = "kube_reloader_watch_restarts_total{kind=\"ConfigMap\",cause=\"stalled\"}";
    assert!(counter(&reloader, series).await >= 1);
    // The leader's renewal got no answer: it stopped writing, then took the Lease again.
    assert!(reloader.count(&["Lease operation failed: not writing"]) >= 1);
    reloader.wait_count(&["acquired the Lease"], 2).await;
    rolled_once_each(&ns, &reloader).await;
}

#[tokio::test]
async fn after_every_connection_is_reset_changes_roll_within_15_seconds() {
    let reset = |p: &FaultProxy| p.reset();
    let (ns, reloader) = changes_after("reset", reset, Duration::from_secs(15)).await;
    rolled_once_each(&ns, &reloader).await;
}

#[tokio::test]
async fn after_the_api_server_is_frozen_for_a_minute_each_change_made_meanwhile_rolls_once() {
    let cp = ControlPlane::start_with_second_apiserver().expect("control plane");
    let ns = TestNs::on(&cp, "frozen").await;
    two_workloads(&ns).await;
    // kube-reloader and kube-controller-manager talk to the first API server.
    let reloader = Reloader::start(&ns, &["--leader-elect"]);
    for name in ["web-1", "web-2"] {
        workloads::baseline(&ns, Kind::Deployment, name).await;
        reloader.wait_up_to_date(name, 1).await;
    }
    reloader.wait_count(&["acquired the Lease"], 1).await;
    let metrics = reloader.http_addr().await;
    // The test goes through the second.
    let kubeconfig = cp.second_kubeconfig();
    let other = TestNs {
        name: ns.name.clone(),
        client: client_for(&kubeconfig).await,
        kubeconfig,
    };

    let frozen = cp.freeze_apiserver();
    let froze = Instant::now();
    configmap(&other, "cfg-1", &[("k", "1")], json!({})).await;
    // The leader cannot renew: it stops writing by the time its Lease (15 s) would expire.
    wait_for(
        "the frozen-out leader to stop writing",
        Duration::from_secs(30),
        || async {
            let (_, body) = http_get(metrics, "/metrics").await;
            body.lines()
                .any(|l| l == "kube_reloader_leader 0")
                .then_some(())
        },
    )
    .await;
    eprintln!("stopped writing {:?} after the freeze", froze.elapsed());
    assert!(reloader.count(&["Lease operation failed: not writing"]) >= 1);
    configmap(&other, "cfg-2", &[("k", "1")], json!({})).await;
    configmap(&other, "cfg-1", &[("k", "2")], json!({})).await;
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(froze.elapsed())).await;
    drop(frozen);
    let resumed = Instant::now();

    rolled(&other, "1", "2", Duration::from_secs(30)).await;
    rolled(
        &other,
        "2",
        "1",
        Duration::from_secs(30).saturating_sub(resumed.elapsed()),
    )
    .await;
    eprintln!(
        "every change made during the freeze rolled {:?} after it ended",
        resumed.elapsed()
    );
    reloader.wait_count(&["acquired the Lease"], 2).await;
    // Once each: two changes of cfg-1 while frozen are one rollout.
    tokio::time::sleep(Duration::from_secs(5)).await;
    rolled_once_each(&other, &reloader).await;
}
