//! Steady state costs nothing: with nothing changing, kube-reloader sends the API server no
//! request but its watches (and, with `--leader-elect`, the renewals of its own Lease), over a
//! window long enough for all its periodic work: two rounds of the deletion sweep, and three of
//! the 20 s lookup of a kind the API server does not serve.
//!
//! Both runs use the default `--kinds`, so the Argo Rollout kind, whose CRD this control plane
//! lacks, is among them; CronJobs are the built-in batch/v1 kind.

use std::time::{Duration, Instant};

use kube_reloader::app::controller::SWEEP_INTERVAL;
use serde_json::json;

use crate::support::kinds::{self, TestKind};
use crate::support::objects::{configmap, secret};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{AuditedRequest, ControlPlane, TestNs, http_get, wait_for};

/// Two users of their own, in the group the audit policy of hack/cluster.sh logs
/// (`system:serviceaccounts`), and allowed everything: RBAC is install.rs's concern.
const ALONE: (&str, &str) = ("steady-alone-token", "system:serviceaccount:steady:alone");
const ELECTED: (&str, &str) = (
    "steady-elected-token",
    "system:serviceaccount:steady:elected",
);
const LEASE: &str = "kube-reloader";
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn with_nothing_changing_only_watches_and_lease_renewals_reach_the_api_server() {
    let started = Instant::now();
    let tokens: Vec<String> = [ALONE, ELECTED]
        .iter()
        .map(|(token, user)| {
            format!("{token},{user},{user},\"system:serviceaccounts,system:masters\"")
        })
        .collect();
    let cp = ControlPlane::start_with_tokens(&tokens.join("\n")).expect("control plane");
    let alone = TestNs::on(&cp, "alone").await;
    let elected = TestNs::on(&cp, "elected").await;
    // The default --controller-namespace, where the cluster-wide run keeps its key Secret.
    cp.kubectl(&["create", "namespace", "kube-reloader"]);
    for ns in [&alone, &elected] {
        opted_in_workloads(ns).await;
    }

    // Cluster-wide, every flag at its default; the other run's namespace left to it, so that no
    // workload has two writers.
    let alone_args = [format!("--ignore-namespace={}", elected.name)];
    let elected_args = [
        format!("--namespace={}", elected.name),
        format!("--controller-namespace={}", elected.name),
        "--leader-elect".to_string(),
    ];
    let mut runs = [
        (
            Reloader::start_raw(
                &cp.kubeconfig_with_token(ALONE.0, "alone"),
                &alone_args,
                "steady-alone",
            ),
            &alone,
            ALONE.1,
        ),
        (
            Reloader::start_raw(
                &cp.kubeconfig_with_token(ELECTED.0, "elected"),
                &elected_args,
                "steady-elected",
            ),
            &elected,
            ELECTED.1,
        ),
    ];
    for (reloader, ns, _) in &runs {
        settled(reloader, ns).await;
    }
    assert_eq!(runs[1].0.count(&["acquired the Lease"]), 1);
    // The kind this server lacks is among those watched for, and named once.
    for (reloader, _, user) in &runs {
        let unserved = ["Rollout is not served", "looked up at start only"];
        assert_eq!(reloader.count(&unserved), 1, "{user}:\n{}", reloader.logs());
    }
    // Anything the first sight set off (an Event, say) has landed.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The sweep ticks every SWEEP_INTERVAL from the moment its controller listed, before now:
    // any window longer than two intervals holds two rounds.
    let window = 2 * SWEEP_INTERVAL + Duration::from_secs(5);
    let marks: Vec<usize> = runs
        .iter()
        .map(|(_, _, user)| cp.requests_by(user).len())
        .collect();
    let opened = Instant::now();
    eprintln!(
        "steady state from {:?} after the start, for {window:?}",
        started.elapsed()
    );
    tokio::time::sleep(window).await;

    let mut unexpected = Vec::new();
    for ((_, ns, user), mark) in runs.iter().zip(marks) {
        let requests = cp.requests_by(user);
        let seen = &requests[mark..];
        let renewals = seen.iter().filter(|r| is_lease_renewal(r, ns)).count();
        eprintln!(
            "{user}: {} requests in {:?}, {renewals} of them on its Lease",
            seen.len(),
            opened.elapsed()
        );
        unexpected.extend(
            seen.iter()
                .filter(|r| r.verb != "watch" && !is_lease_renewal(r, ns))
                .map(|r| format!("{user}: {}", describe(r))),
        );
    }
    for (reloader, _, user) in &mut runs {
        assert!(reloader.running(), "{user}'s kube-reloader exited");
    }
    // The elected run renews its Lease (every 10 s by default) all along: the audit log was live.
    let elected_renewals = cp.requests_by(ELECTED.1)[..]
        .iter()
        .filter(|r| is_lease_renewal(r, &elected) && r.verb == "patch")
        .count();
    assert!(elected_renewals >= 5, "{elected_renewals} Lease renewals");
    assert!(
        unexpected.is_empty(),
        "requests other than watches and Lease renewals while nothing changed:\n{}",
        unexpected.join("\n")
    );
    eprintln!("test took {:?}", started.elapsed());
}

/// ConfigMap `cfg` and Secret `sec`; a Deployment, StatefulSet, DaemonSet and CronJob reading
/// `cfg`; a Deployment reading `sec` and an optional ConfigMap that does not exist. All opted in.
async fn opted_in_workloads(ns: &TestNs) {
    configmap(ns, "cfg", &[("k", "1")], json!({})).await;
    secret(ns, "sec", &[("password", "1")], json!({})).await;
    for kind in Kind::ALL {
        workloads::opted_in(ns, kind, "web", workloads::env_from_configmap("cfg")).await;
    }
    let cronjob = TestKind::cronjob();
    kinds::opted_in(
        ns,
        &cronjob,
        "nightly",
        workloads::env_from_configmap("cfg"),
    )
    .await;
    let env = json!({"envFrom": [
        {"secretRef": {"name": "sec"}},
        {"configMapRef": {"name": "absent", "optional": true}},
    ]});
    let pod_spec = workloads::pod_spec(env, json!([]));
    workloads::opted_in(ns, Kind::Deployment, "api", pod_spec).await;
}

/// Waits until the run is ready and has baselined every workload of `opted_in_workloads`, each
/// found up to date since.
async fn settled(reloader: &Reloader, ns: &TestNs) {
    let addr = reloader.http_addr().await;
    wait_for("/readyz to answer 200", TIMEOUT, || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    for kind in Kind::ALL {
        workloads::baseline(ns, kind, "web").await;
    }
    workloads::baseline(ns, Kind::Deployment, "api").await;
    kinds::baseline(ns, &TestKind::cronjob(), "nightly").await;
    // web: once per kind.
    reloader.wait_up_to_date("web", Kind::ALL.len()).await;
    for name in ["api", "nightly"] {
        reloader.wait_up_to_date(name, 1).await;
    }
}

/// A read or renewal of the elected run's own Lease.
fn is_lease_renewal(r: &AuditedRequest, ns: &TestNs) -> bool {
    ["get", "patch", "update"].contains(&r.verb.as_str())
        && r.group == "coordination.k8s.io"
        && r.resource == "leases"
        && r.namespace == ns.name
        && r.name == LEASE
}

fn describe(r: &AuditedRequest) -> String {
    let resource = match (r.group.as_str(), r.resource.as_str()) {
        (_, "") => "-".to_string(),
        ("", res) => res.to_string(),
        (g, res) => format!("{res}.{g}"),
    };
    format!("{} {} {} ({})", r.verb, resource, r.uri, r.code)
}
