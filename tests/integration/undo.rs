//! A rollout someone else makes is not rolled over: `kubectl rollout undo` right after
//! kube-reloader rolled a Deployment, and `kubectl rollout restart`, each start pods that read
//! the configs as they are; kube-reloader records that and rolls nothing on top. The next real
//! config change rolls once.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::ListParams;
use serde_json::json;

use crate::support::objects::{configmap, events};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, kubectl, wait_for};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Longer than the test Reloader's --debounce (500 ms) and --min-rollout-interval (1 s)
/// together: a rollout kube-reloader were about to make by mistake would have been made.
const SETTLE: Duration = Duration::from_secs(5);
const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "kube-reloader.io/config-hash";

/// The Deployment's revision (`deployment.kubernetes.io/revision`: one more for every pod
/// template it rolls out, an undo included), once kube-controller-manager has caught up with its
/// spec.
async fn revision(ns: &TestNs, name: &str) -> u64 {
    wait_for(&format!("Deployment {name} to settle"), TIMEOUT, || async {
        let d = ns.api::<Deployment>().get(name).await.ok()?;
        let observed = d.status.as_ref()?.observed_generation;
        if observed != d.metadata.generation {
            return None;
        }
        d.metadata.annotations.as_ref()?.get(REVISION)?.parse().ok()
    })
    .await
}

/// Waits until the Deployment is at revision `n`.
async fn wait_revision(ns: &TestNs, name: &str, n: u64) {
    wait_for(&format!("revision {n} of {name}"), TIMEOUT, || async {
        (revision(ns, name).await == n).then_some(())
    })
    .await;
}

/// Waits until kube-controller-manager has copied kube-reloader's baseline onto the ReplicaSet
/// of `revision` (it copies the Deployment's annotations to its newest ReplicaSet): what an undo
/// to that revision restores.
async fn baseline_copied(ns: &TestNs, name: &str, revision: u64) {
    wait_for(
        &format!("the baseline on {name}'s ReplicaSet of revision {revision}"),
        TIMEOUT,
        || async {
            let list = ns
                .api::<ReplicaSet>()
                .list(&ListParams::default())
                .await
                .ok()?;
            list.items.into_iter().find_map(|rs| {
                let a = rs.metadata.annotations?;
                let owned = rs.metadata.owner_references?.iter().any(|o| o.name == name);
                (owned && a.get(REVISION)? == &revision.to_string() && a.contains_key(HASH))
                    .then_some(())
            })
        },
    )
    .await;
}

/// A new namespace with Deployment `web` reading ConfigMap `cfg`, opted in, and a
/// kube-reloader that has recorded its baseline.
async fn baselined(prefix: &str) -> (TestNs, Reloader) {
    let ns = TestNs::new(prefix).await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let reloader = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    (ns, reloader)
}

#[tokio::test]
async fn an_undo_after_a_reload_is_not_rolled_over_and_the_next_change_rolls_once() {
    let (ns, reloader) = baselined("undo").await;
    baseline_copied(&ns, "web", 1).await;

    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    reloader.wait_count(&["rolled out", "name=web"], 1).await;
    wait_revision(&ns, "web", 2).await;

    kubectl(&ns, &["rollout", "undo", "deployment/web"], "").await;
    wait_revision(&ns, "web", 3).await;
    // kube-reloader decides: records the restored state, or (the old behaviour) rolls again.
    let restored = "the one on the workload was written by someone else";
    wait_for(
        "kube-reloader to decide about the undo",
        TIMEOUT,
        || async {
            let decided = reloader.count(&[restored, "name=web"]) > 0
                || reloader.count(&["rolled out", "name=web"]) > 1;
            decided.then_some(())
        },
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        reloader.count(&["rolled out", "name=web"]),
        1,
        "the undo was rolled over:\n{}",
        reloader.logs()
    );
    assert_eq!(revision(&ns, "web").await, 3);
    assert_eq!(reloader.count(&[restored, "name=web"]), 1);
    // The template is revision 1's: without kube-reloader's annotation.
    let template = workloads::annotation(&ns, Kind::Deployment, "web", HASH, true).await;
    assert_eq!(template, None);
    let notes = events(&ns, "web", "ReloadNotNeeded").await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("rewritten by someone else") && n.contains("ConfigMap/cfg")),
        "{notes:?}"
    );
    // The baseline is the present's, and kube-reloader's again.
    let want = workloads::expected_hash(&[("cfg", &[("k", "2")])]);
    let baseline = workloads::annotation(&ns, Kind::Deployment, "web", HASH, false).await;
    assert!(baseline.is_some_and(|b| b.starts_with(&want)), "{want}");

    // The next real change: one rollout.
    configmap(&ns, "cfg", &[("k", "3")], json!({})).await;
    reloader.wait_count(&["rolled out", "name=web"], 2).await;
    wait_revision(&ns, "web", 4).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(revision(&ns, "web").await, 4);
    assert_eq!(reloader.count(&["rolled out", "name=web"]), 2);
}

#[tokio::test]
async fn a_rollout_restart_is_not_rolled_over() {
    let (ns, reloader) = baselined("restart").await;
    assert_eq!(revision(&ns, "web").await, 1);

    kubectl(&ns, &["rollout", "restart", "deployment/web"], "").await;
    wait_revision(&ns, "web", 2).await;
    reloader
        .wait_count(&["recorded the pod template's change", "name=web"], 1)
        .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(revision(&ns, "web").await, 2);
    assert_eq!(reloader.count(&["rolled out", "name=web"]), 0);

    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    reloader.wait_count(&["rolled out", "name=web"], 1).await;
    wait_revision(&ns, "web", 3).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(revision(&ns, "web").await, 3);
}

#[tokio::test]
async fn a_statefulset_undo_is_not_rolled_over_either() {
    // A StatefulSet's undo restores its pod template alone, kube-reloader's annotation in it
    // included; the baseline on its metadata stays kube-reloader's.
    let ns = TestNs::new("undo-sts").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    let spec = workloads::env_from_configmap("cfg");
    workloads::opted_in(&ns, Kind::StatefulSet, "db", spec).await;
    let reloader = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::StatefulSet, "db").await;

    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    reloader.wait_count(&["rolled out", "name=db"], 1).await;
    workloads::wait_rollouts(&ns, Kind::StatefulSet, "db", 1).await;
    kubectl(&ns, &["rollout", "undo", "statefulset/db"], "").await;
    wait_for("the undo", TIMEOUT, || async {
        let t = workloads::annotation(&ns, Kind::StatefulSet, "db", HASH, true).await;
        t.is_none().then_some(())
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(reloader.count(&["rolled out", "name=db"]), 1);
    let t = workloads::annotation(&ns, Kind::StatefulSet, "db", HASH, true).await;
    assert_eq!(t, None, "rolled over");

    configmap(&ns, "cfg", &[("k", "3")], json!({})).await;
    reloader.wait_count(&["rolled out", "name=db"], 2).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(reloader.count(&["rolled out", "name=db"]), 2);
}
