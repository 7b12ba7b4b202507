//! The test environment is real: kube-controller-manager turns a pod-template change into a
//! rollout for each workload kind, and kube-rs server-side apply works against it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, wait_for};

async fn apply_template_annotation(ns: &TestNs, kind: Kind, name: &str, value: &str) {
    let patch = json!({
        "apiVersion": "apps/v1",
        "kind": format!("{kind:?}"),
        "metadata": {"name": name},
        "spec": {"template": {"metadata": {"annotations": {"example.com/touched": value}}}},
    });
    let pp = PatchParams::apply("environment-test");
    let p = Patch::Apply(&patch);
    match kind {
        Kind::Deployment => drop(
            ns.api::<Deployment>()
                .patch(name, &pp, &p)
                .await
                .expect("apply"),
        ),
        Kind::StatefulSet => drop(
            ns.api::<StatefulSet>()
                .patch(name, &pp, &p)
                .await
                .expect("apply"),
        ),
        Kind::DaemonSet => drop(
            ns.api::<DaemonSet>()
                .patch(name, &pp, &p)
                .await
                .expect("apply"),
        ),
    }
}

async fn template_change_is_rolled_out(kind: Kind) {
    let ns = TestNs::new("env").await;
    let spec = workloads::pod_spec(json!({}), json!([]));
    workloads::create(&ns, kind, workloads::manifest(kind, "web", json!({}), spec)).await;
    let before = workloads::settled_revision(&ns, kind, "web").await;

    apply_template_annotation(&ns, kind, "web", "1").await;

    let after = wait_for(
        &format!("{kind:?} to roll out its new pod template"),
        Duration::from_secs(60),
        || async {
            let now = workloads::revision(&ns, kind, "web").await?;
            (now != before).then_some(now)
        },
    )
    .await;
    assert_ne!(before, after);
    if kind == Kind::DaemonSet {
        let generation = workloads::get(&ns, kind, "web").await["metadata"]["generation"].as_i64();
        assert!(generation >= Some(2), "DaemonSet generation {generation:?}");
    }
    assert_eq!(
        workloads::annotation(&ns, kind, "web", "example.com/touched", true)
            .await
            .as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn deployment_template_change_creates_a_second_replicaset() {
    template_change_is_rolled_out(Kind::Deployment).await;
}

#[tokio::test]
async fn statefulset_template_change_moves_update_revision() {
    template_change_is_rolled_out(Kind::StatefulSet).await;
}

#[tokio::test]
async fn daemonset_template_change_is_observed_as_a_new_generation() {
    template_change_is_rolled_out(Kind::DaemonSet).await;
}

#[test]
fn a_private_control_plane_stops_when_dropped() {
    let cp = crate::support::ControlPlane::start().expect("control plane");
    let dir = cp.dir().to_path_buf();
    let pids: Vec<u32> = ["etcd", "kube-apiserver", "kube-controller-manager"]
        .iter()
        .map(|c| {
            std::fs::read_to_string(dir.join(format!("{c}.pid")))
                .expect("pid file")
                .trim()
                .parse()
                .expect("pid")
        })
        .collect();
    drop(cp);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "process {pid} outlived its control plane"
        );
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
