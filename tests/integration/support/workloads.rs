//! Workload fixtures and the observable signs of a real rollout, per kind.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use super::{TestNs, from_json, wait_for};

/// The three workload kinds kube-reloader rolls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet];
}

/// A manifest of `kind` named `name`, with workload annotations and a pod spec.
pub fn manifest(kind: Kind, name: &str, annotations: Value, pod_spec: Value) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": pod_spec,
        },
    });
    // No replicas: without a scheduler pods would only pile up as Pending. A Deployment still
    // gets a ReplicaSet per pod template, a StatefulSet or DaemonSet a ControllerRevision.
    match kind {
        Kind::Deployment => spec["replicas"] = json!(0),
        Kind::StatefulSet => {
            spec["replicas"] = json!(0);
            spec["serviceName"] = json!(name);
        }
        Kind::DaemonSet => {}
    }
    let kind_name = format!("{kind:?}");
    json!({
        "apiVersion": "apps/v1",
        "kind": kind_name,
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    })
}

/// A pod spec with one container `app` and the given extra container fields and volumes.
pub fn pod_spec(container_extra: Value, volumes: Value) -> Value {
    let mut c = json!({"name": "app", "image": "registry.invalid/app:1"});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), container_extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    json!({"containers": [c], "volumes": volumes})
}

/// A pod spec whose container takes all of ConfigMap `cm` as environment variables.
pub fn env_from_configmap(cm: &str) -> Value {
    pod_spec(
        json!({"envFrom": [{"configMapRef": {"name": cm}}]}),
        json!([]),
    )
}

/// Creates Deployment `name` with these workload annotations and pod spec.
pub async fn deployment(ns: &TestNs, name: &str, annotations: Value, pod_spec: Value) {
    create(
        ns,
        Kind::Deployment,
        manifest(Kind::Deployment, name, annotations, pod_spec),
    )
    .await;
}

/// The most common fixture: ConfigMap `cfg` (`k: "1"`) and Deployment `name`, opted in with
/// `kube-reloader.io/auto`, taking `cfg` as environment variables.
pub async fn opted_in_with_configmap(ns: &TestNs, name: &str) {
    super::objects::configmap(ns, "cfg", &[("k", "1")], json!({})).await;
    opted_in(ns, Kind::Deployment, name, env_from_configmap("cfg")).await;
}

/// Creates workload `name` of this kind with this pod spec, opted in with `kube-reloader.io/auto`.
pub async fn opted_in(ns: &TestNs, kind: Kind, name: &str, pod_spec: Value) {
    let auto = json!({"kube-reloader.io/auto": "true"});
    create(ns, kind, manifest(kind, name, auto, pod_spec)).await;
}

/// Waits (at most 60 s) until the workload has had `n` rollouts.
pub async fn wait_rollouts(ns: &TestNs, kind: Kind, name: &str, n: u64) {
    let what = format!("{n} rollouts of {kind:?} {name}");
    wait_for(&what, Duration::from_secs(60), || async {
        (rollouts(ns, kind, name).await >= n).then_some(())
    })
    .await;
}

/// Creates the workload in the test namespace.
pub async fn create(ns: &TestNs, kind: Kind, manifest: Value) {
    let pp = PostParams::default();
    match kind {
        Kind::Deployment => drop(
            ns.api::<Deployment>()
                .create(&pp, &from_json(manifest))
                .await
                .expect("create"),
        ),
        Kind::StatefulSet => drop(
            ns.api::<StatefulSet>()
                .create(&pp, &from_json(manifest))
                .await
                .expect("create"),
        ),
        Kind::DaemonSet => drop(
            ns.api::<DaemonSet>()
                .create(&pp, &from_json(manifest))
                .await
                .expect("create"),
        ),
    }
}

/// Deletes the workload (in the background: its pods and ReplicaSets go after it).
pub async fn delete(ns: &TestNs, kind: Kind, name: &str) {
    let dp = DeleteParams::default();
    match kind {
        Kind::Deployment => drop(
            ns.api::<Deployment>()
                .delete(name, &dp)
                .await
                .expect("delete"),
        ),
        Kind::StatefulSet => drop(
            ns.api::<StatefulSet>()
                .delete(name, &dp)
                .await
                .expect("delete"),
        ),
        Kind::DaemonSet => drop(
            ns.api::<DaemonSet>()
                .delete(name, &dp)
                .await
                .expect("delete"),
        ),
    }
}

/// The workload as JSON (metadata and spec of any kind, read the same way).
pub async fn get(ns: &TestNs, kind: Kind, name: &str) -> Value {
    let v = match kind {
        Kind::Deployment => {
            serde_json::to_value(ns.api::<Deployment>().get(name).await.expect("get"))
        }
        Kind::StatefulSet => {
            serde_json::to_value(ns.api::<StatefulSet>().get(name).await.expect("get"))
        }
        Kind::DaemonSet => {
            serde_json::to_value(ns.api::<DaemonSet>().get(name).await.expect("get"))
        }
    };
    v.expect("serializable")
}

/// A workload annotation, or the pod template's when `template` is set.
pub async fn annotation(
    ns: &TestNs,
    kind: Kind,
    name: &str,
    key: &str,
    template: bool,
) -> Option<String> {
    let v = get(ns, kind, name).await;
    let meta = if template {
        &v["spec"]["template"]["metadata"]
    } else {
        &v["metadata"]
    };
    meta["annotations"][key].as_str().map(str::to_string)
}

/// Names of the objects `kind`/`name` owns among `items` (owner references, as its controller set them).
fn owned<'a, T: kube::Resource + 'a>(
    items: impl IntoIterator<Item = &'a T>,
    kind: Kind,
    name: &str,
) -> usize {
    let kind = format!("{kind:?}");
    items
        .into_iter()
        .filter(|o| {
            o.meta()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.kind == kind && r.name == name)
        })
        .count()
}

/// Pod-template revisions the workload's controller has made: ReplicaSets of a Deployment,
/// ControllerRevisions of a StatefulSet or DaemonSet. One per distinct pod template.
///
/// Not `metadata.generation`: the 1.20 apiserver bumps it on metadata-only updates too (even
/// `kubectl annotate`), so it counts writes, not rollouts.
async fn revisions(ns: &TestNs, kind: Kind, name: &str) -> usize {
    match kind {
        Kind::Deployment => {
            let rs = ns
                .api::<ReplicaSet>()
                .list(&ListParams::default())
                .await
                .expect("list ReplicaSets");
            owned(&rs.items, kind, name)
        }
        Kind::StatefulSet | Kind::DaemonSet => {
            let cr = ns
                .api::<ControllerRevision>()
                .list(&ListParams::default())
                .await
                .expect("list ControllerRevisions");
            owned(&cr.items, kind, name)
        }
    }
}

/// Whether the workload's controller has processed its current spec.
async fn settled(ns: &TestNs, kind: Kind, name: &str) -> bool {
    let (generation, observed) = match kind {
        Kind::Deployment => {
            let d = ns.api::<Deployment>().get(name).await.expect("get");
            (
                d.metadata.generation,
                d.status.and_then(|s| s.observed_generation),
            )
        }
        Kind::StatefulSet => {
            let d = ns.api::<StatefulSet>().get(name).await.expect("get");
            (
                d.metadata.generation,
                d.status.and_then(|s| s.observed_generation),
            )
        }
        Kind::DaemonSet => {
            let d = ns.api::<DaemonSet>().get(name).await.expect("get");
            (
                d.metadata.generation,
                d.status.and_then(|s| s.observed_generation),
            )
        }
    };
    generation.is_some() && generation == observed
}

/// What the workload's controller has made of its pod template so far: the number of
/// ReplicaSets (Deployment), the update revision (StatefulSet) or the number of
/// ControllerRevisions (DaemonSet). It changes exactly when the pod template changes.
pub async fn revision(ns: &TestNs, kind: Kind, name: &str) -> Option<String> {
    match kind {
        Kind::StatefulSet => {
            let s = ns.api::<StatefulSet>().get(name).await.expect("get");
            s.status?.update_revision
        }
        _ => {
            let n = revisions(ns, kind, name).await;
            (n > 0).then(|| n.to_string())
        }
    }
}

/// Waits until the workload's controller has caught up with its current spec and returns its
/// revision.
pub async fn settled_revision(ns: &TestNs, kind: Kind, name: &str) -> String {
    wait_for(
        &format!("{kind:?} {name} to be reconciled by kube-controller-manager"),
        Duration::from_secs(60),
        || async {
            if settled(ns, kind, name).await {
                revision(ns, kind, name).await
            } else {
                None
            }
        },
    )
    .await
}

/// Rollouts since creation: pod-template revisions beyond the first, counted once the workload's
/// controller has caught up with the current spec.
pub async fn rollouts(ns: &TestNs, kind: Kind, name: &str) -> u64 {
    wait_for(
        &format!("{kind:?} {name} to settle"),
        Duration::from_secs(60),
        || async {
            if !settled(ns, kind, name).await {
                return None;
            }
            let n = revisions(ns, kind, name).await;
            (n > 0).then(|| n as u64 - 1)
        },
    )
    .await
}

/// Waits for the baseline kube-reloader records on first sight (the workload's
/// `kube-reloader.io/config-hash`) and returns it.
pub async fn baseline(ns: &TestNs, kind: Kind, name: &str) -> String {
    wait_for(
        &format!("a baseline on {kind:?} {name}"),
        Duration::from_secs(60),
        || async { annotation(ns, kind, name, "kube-reloader.io/config-hash", false).await },
    )
    .await
}

/// Every annotation kube-reloader writes on a workload.
pub const WRITTEN: [&str; 4] = [
    "kube-reloader.io/config-hash",
    "kube-reloader.io/tracked",
    "kube-reloader.io/reloaded-at",
    "kube-reloader.io/template-hash",
];

/// The digest kube-reloader must record for a workload tracking exactly these ConfigMaps with all
/// their keys, computed independently of the controller from the data the test wrote.
pub fn expected_hash(configmaps: &[(&str, &[(&str, &str)])]) -> String {
    use kube_reloader::rules::digest::{ContentDigest, Entry, WorkloadDigest};
    use kube_reloader::rules::references::{ConfigKind, Keys};
    let entries = configmaps
        .iter()
        .map(|(name, data)| Entry {
            kind: ConfigKind::ConfigMap,
            name: name.to_string(),
            digest: Some(
                ContentDigest::new(None, data.iter().map(|(k, v)| (*k, v.as_bytes())))
                    .select(&Keys::All),
            ),
        })
        .collect();
    WorkloadDigest::new(entries, "unused").hash_annotation()
}
