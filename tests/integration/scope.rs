//! What kube-reloader watches: namespaces and Secret types.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::support::objects::configmap;
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{ControlPlane, TestNs, wait_for};

const HASH: &str = "kube-reloader.io/config-hash";

/// Cluster-wide mode watches every namespace but the ignored ones. It runs on a control plane of
/// its own: on the shared one it would reach into every other test's namespace.
#[tokio::test]
async fn all_namespaces_are_watched_except_ignored_ones() {
    let cp = ControlPlane::start().expect("control plane");
    let home = TestNs::on(&cp, "home").await;
    let watched = TestNs::on(&cp, "watched").await;
    let ignored = TestNs::on(&cp, "ignored").await;
    for ns in [&watched, &ignored] {
        workloads::opted_in_with_configmap(ns, "web").await;
    }
    let args = vec![
        format!("--controller-namespace={}", home.name),
        format!("--ignore-namespace={}", ignored.name),
        "--debounce=500ms".to_string(),
    ];
    let reloader = Reloader::start_raw(&cp.kubeconfig, &args, "cluster-wide");
    wait_for(
        "a baseline in the watched namespace",
        Duration::from_secs(60),
        || async { workloads::annotation(&watched, Kind::Deployment, "web", HASH, false).await },
    )
    .await;
    for ns in [&watched, &ignored] {
        configmap(ns, "cfg", &[("k", "2")], json!({})).await;
    }
    wait_for(
        "a rollout in the watched namespace",
        Duration::from_secs(60),
        || async {
            (workloads::rollouts(&watched, Kind::Deployment, "web").await == 1).then_some(())
        },
    )
    .await;
    let untouched = workloads::get(&ignored, Kind::Deployment, "web").await;
    assert_eq!(
        untouched["metadata"]["annotations"][HASH],
        serde_json::Value::Null
    );
    assert_eq!(
        workloads::rollouts(&ignored, Kind::Deployment, "web").await,
        0
    );
    assert_eq!(
        reloader.count(&[&ignored.name]),
        reloader.count(&["ignored=", &ignored.name])
    );
}

async fn typed_secret(ns: &TestNs, name: &str, type_: &str, value: &str) {
    let s = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "type": type_,
        "stringData": {"release": value},
    });
    ns.api::<Secret>()
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&s))
        .await
        .expect("apply Secret");
}

/// Changes a Helm release Secret a workload names, and a canary Secret after it; returns whether
/// the workload rolled (waiting for it when `expected`).
async fn helm_release_secret_rolls(extra_args: &[&str], expected: bool) -> bool {
    let ns = TestNs::new("helm").await;
    typed_secret(&ns, "sh.helm.release.v1.app.v1", "helm.sh/release.v1", "v1").await;
    typed_secret(&ns, "canary", "Opaque", "v1").await;
    let annotations = json!({"kube-reloader.io/secrets": "sh.helm.release.v1.app.v1"});
    workloads::deployment(
        &ns,
        "web",
        annotations,
        workloads::pod_spec(json!({}), json!([])),
    )
    .await;
    let canary = json!({"kube-reloader.io/secrets": "canary"});
    workloads::deployment(
        &ns,
        "canary",
        canary,
        workloads::pod_spec(json!({}), json!([])),
    )
    .await;
    let _reloader = Reloader::start(&ns, extra_args);
    for name in ["web", "canary"] {
        workloads::baseline(&ns, Kind::Deployment, name).await;
    }
    typed_secret(&ns, "sh.helm.release.v1.app.v1", "helm.sh/release.v1", "v2").await;
    // Secret events arrive in order: once the canary's later change is rolled, the Helm
    // release Secret's change has been seen, if it is watched at all.
    typed_secret(&ns, "canary", "Opaque", "v2").await;
    wait_for("the canary's rollout", Duration::from_secs(60), || async {
        (workloads::rollouts(&ns, Kind::Deployment, "canary").await == 1).then_some(())
    })
    .await;
    if expected {
        wait_for(
            "the workload's rollout",
            Duration::from_secs(60),
            || async {
                (workloads::rollouts(&ns, Kind::Deployment, "web").await > 0).then_some(())
            },
        )
        .await;
    }
    workloads::rollouts(&ns, Kind::Deployment, "web").await > 0
}

#[tokio::test]
async fn helm_release_secrets_are_not_watched_by_default() {
    assert!(!helm_release_secret_rolls(&[], false).await);
}

#[tokio::test]
async fn helm_release_secrets_are_watched_when_asked() {
    assert!(helm_release_secret_rolls(&["--watch-all-secret-types"], true).await);
}
