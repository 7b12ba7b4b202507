//! The Secrets Store CSI driver, as far as kube-reloader sees it: its two CRDs
//! (tests/fixtures/crds), SecretProviderClasses, and the SecretProviderClassPodStatus the driver
//! writes for each pod that mounts a class, written here as the driver writes them (named
//! `<pod>-<namespace>-<class>`, owned by the Pod, the node's label, the mounted objects' ids and
//! versions). The light control plane runs no kubelet: the Pods are those kube-controller-manager
//! creates for a Deployment's ReplicaSet, which stay Pending, and that is all the mapping needs.

use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};

use super::{ControlPlane, TestNs, from_json, repo_root, shared, wait_for};

pub const GROUP: &str = "secrets-store.csi.x-k8s.io";
pub const DRIVER: &str = "secrets-store.csi.k8s.io";
const TIMEOUT: Duration = Duration::from_secs(60);

/// Installs the driver's CRDs on `cp` and waits until discovery serves both. Idempotent.
pub fn install_crds(cp: &ControlPlane) {
    for (file, plural) in [
        ("secretproviderclass.yaml", "secretproviderclasses"),
        (
            "secretproviderclasspodstatus.yaml",
            "secretproviderclasspodstatuses",
        ),
    ] {
        let yaml = std::fs::read_to_string(repo_root().join("tests/fixtures/crds").join(file))
            .expect("CSI CRD");
        cp.kubectl_stdout(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            &yaml,
        );
        super::kinds::wait_served(cp, GROUP, &format!("{GROUP}/v1"), plural);
    }
}

/// The driver's CRDs on the shared control plane, installed once per run.
pub fn install_shared_crds() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| install_crds(shared()));
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", kind), plural)
}

fn classes(ns: &TestNs) -> Api<DynamicObject> {
    let r = resource("SecretProviderClass", "secretproviderclasses");
    Api::namespaced_with(ns.client.clone(), &ns.name, &r)
}

fn statuses(ns: &TestNs) -> Api<DynamicObject> {
    let r = resource(
        "SecretProviderClassPodStatus",
        "secretproviderclasspodstatuses",
    );
    Api::namespaced_with(ns.client.clone(), &ns.name, &r)
}

/// Creates SecretProviderClass `name` (a Vault one) with these annotations.
pub async fn secret_provider_class(ns: &TestNs, name: &str, annotations: Value) {
    let obj: DynamicObject = from_json(json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "SecretProviderClass",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"provider": "vault", "parameters": {
            "vaultAddress": "https://vault.invalid:8200", "roleName": "app",
            "objects": "- objectName: db-password\n  secretPath: secret/data/db\n  secretKey: password\n",
        }},
    }));
    let pp = kube::api::PostParams::default();
    classes(ns)
        .create(&pp, &obj)
        .await
        .expect("create SecretProviderClass");
}

/// A Deployment `name` with `replicas` (Pending) pods whose volume `secrets` is the driver's,
/// mounting class `class`, with these annotations.
pub fn deployment(name: &str, annotations: Value, class: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": "registry.invalid/app:1",
                        "volumeMounts": [{"name": "secrets", "mountPath": "/mnt/secrets", "readOnly": true}]}],
                    "volumes": [{"name": "secrets", "csi": {"driver": DRIVER, "readOnly": true,
                        "volumeAttributes": {"secretProviderClass": class}}}],
                },
            },
        },
    })
}

/// A Pod of a workload: name and uid.
#[derive(Clone, Debug)]
pub struct TestPod {
    pub name: String,
    pub uid: String,
}

/// The Pods of Deployment `name` owned by its ReplicaSets other than those in `except`, once
/// there are at least `n`; and the names of those ReplicaSets.
pub async fn pods_of(
    ns: &TestNs,
    name: &str,
    n: usize,
    except: &[String],
) -> (Vec<TestPod>, Vec<String>) {
    wait_for(&format!("{n} pods of {name}"), TIMEOUT, || async {
        let rs = ns
            .api::<ReplicaSet>()
            .list(&ListParams::default())
            .await
            .ok()?;
        let sets: Vec<String> = rs
            .items
            .iter()
            .filter(|r| {
                let owners = r.metadata.owner_references.iter().flatten();
                owners
                    .clone()
                    .any(|o| o.kind == "Deployment" && o.name == name)
            })
            .filter_map(|r| r.metadata.name.clone())
            .filter(|r| !except.contains(r))
            .collect();
        let lp = ListParams::default().labels(&format!("app={name}"));
        let pods = ns.api::<Pod>().list(&lp).await.ok()?;
        let mine: Vec<TestPod> = pods
            .items
            .iter()
            .filter(|p| {
                let owners = p.metadata.owner_references.iter().flatten();
                owners
                    .clone()
                    .any(|o| o.kind == "ReplicaSet" && sets.contains(&o.name))
            })
            .map(|p| TestPod {
                name: p.metadata.name.clone().unwrap_or_default(),
                uid: p.metadata.uid.clone().unwrap_or_default(),
            })
            .collect();
        (mine.len() >= n).then_some((mine, sets))
    })
    .await
}

fn status_name(ns: &TestNs, pod: &TestPod, class: &str) -> String {
    format!("{}-{}-{class}", pod.name, ns.name)
}

/// Writes the status object of `pod` and `class` as the driver does on a mount or a rotation:
/// these objects at these versions.
pub async fn report(ns: &TestNs, pod: &TestPod, class: &str, objects: &[(&str, &str)]) {
    let name = status_name(ns, pod, class);
    let objects: Vec<Value> = objects
        .iter()
        .map(|(id, version)| json!({"id": id, "version": version}))
        .collect();
    let obj = json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "SecretProviderClassPodStatus",
        "metadata": {
            "name": name,
            "labels": {"internal.secrets-store.csi.k8s.io/node-name": "node-1"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}],
        },
        "status": {
            "podName": pod.name, "secretProviderClassName": class, "mounted": true,
            "targetPath": format!("/var/lib/kubelet/pods/{}/volumes/kubernetes.io~csi/secrets/mount", pod.uid),
            "objects": objects,
        },
    });
    let pp = PatchParams::apply("secrets-store-csi-driver").force();
    statuses(ns)
        .patch(&name, &pp, &Patch::Apply(obj))
        .await
        .expect("write SecretProviderClassPodStatus");
}

/// Deletes the status object of `pod` and `class` (as its Pod going away does).
pub async fn forget(ns: &TestNs, pod: &TestPod, class: &str) {
    let name = status_name(ns, pod, class);
    statuses(ns)
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete SecretProviderClassPodStatus");
}
