//! Pods that run (on the node of [`super::with_node`]): an app that reads its config and says
//! what it read, and what a user checks of its pods.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use serde_json::{Value, json};

use super::workloads::Kind;
use super::{TestNs, http_get};

/// The port the app serves what it read on (and is readiness-probed on).
pub const PORT: u16 = 8080;

/// The app's pod spec: busybox (`localhost/busybox:latest`, imported into the node, never
/// pulled) reads the key `greeting` of ConfigMap `cm` as the environment variable `GREETING` and
/// as the file `/config/greeting`, prints both (`read env=… file=…`) and serves the same line
/// with httpd on [`PORT`], where its readiness probe asks.
pub fn app_pod_spec(cm: &str) -> Value {
    let script = format!(
        "line=\"read env=$GREETING file=$(cat /config/greeting)\"; echo \"$line\"; \
         mkdir -p /tmp/www && echo \"$line\" > /tmp/www/index.html && \
         exec httpd -f -p {PORT} -h /tmp/www"
    );
    json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "app",
            "image": "localhost/busybox:latest",
            "imagePullPolicy": "Never",
            "command": ["/bin/sh", "-c", script],
            "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "greeting"}}}],
            "volumeMounts": [{"name": "config", "mountPath": "/config"}],
            "ports": [{"containerPort": PORT}],
            "readinessProbe": {"httpGet": {"path": "/", "port": PORT}, "periodSeconds": 1},
        }],
        "volumes": [{"name": "config", "configMap": {"name": cm}}],
    })
}

/// What the app prints and serves when `greeting` is `value`.
pub fn reads(value: &str) -> String {
    format!("read env={value} file={value}")
}

/// A workload manifest of `kind` named `name` running `replicas` pods (a DaemonSet: one, on the
/// node) of [`app_pod_spec`] for ConfigMap `cm`, opted in with `kube-reloader.io/auto`.
pub fn app(kind: Kind, name: &str, replicas: u32, cm: &str) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": app_pod_spec(cm)},
    });
    match kind {
        Kind::Deployment => spec["replicas"] = json!(replicas),
        Kind::StatefulSet => {
            spec["replicas"] = json!(replicas);
            spec["serviceName"] = json!(name);
            spec["podManagementPolicy"] = json!("Parallel");
        }
        Kind::DaemonSet => {}
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": format!("{kind:?}"),
        "metadata": {"name": name, "annotations": {"kube-reloader.io/auto": "true"}},
        "spec": spec,
    })
}

/// One pod of a workload as a user sees it.
#[derive(Clone, Debug)]
pub struct AppPod {
    pub name: String,
    pub uid: String,
    /// Its pod-template generation: `pod-template-hash` (Deployment) or
    /// `controller-revision-hash` (StatefulSet, DaemonSet).
    pub generation: String,
    pub ready: bool,
    /// Being deleted (Terminating).
    pub terminating: bool,
    pub ip: Option<String>,
}

/// The pods of workload `name` (label `app=name`) as the API has them now, old ones included.
pub async fn pods(ns: &TestNs, name: &str) -> Vec<AppPod> {
    let list = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .expect("list pods");
    list.items
        .into_iter()
        .map(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let generation = labels
                .get("pod-template-hash")
                .or_else(|| labels.get("controller-revision-hash"))
                .cloned()
                .unwrap_or_default();
            let status = p.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            AppPod {
                name: p.metadata.name.clone().unwrap_or_default(),
                uid: p.metadata.uid.clone().unwrap_or_default(),
                generation,
                ready,
                terminating: p.metadata.deletion_timestamp.is_some(),
                ip: status.pod_ip,
            }
        })
        .collect()
}

/// The pod's log (its one container's), as `kubectl logs` shows it: the API server fetches it
/// from the kubelet.
pub async fn log(ns: &TestNs, pod: &str) -> String {
    ns.api::<Pod>()
        .logs(pod, &LogParams::default())
        .await
        .unwrap_or_else(|e| panic!("logs of pod {pod}: {e}"))
}

/// What the pod serves on [`PORT`], asked from this process over the node's bridge.
pub async fn served(pod: &AppPod) -> String {
    let ip = pod
        .ip
        .as_deref()
        .unwrap_or_else(|| panic!("pod {} has no IP", pod.name));
    let addr: SocketAddr = format!("{ip}:{PORT}").parse().expect("pod address");
    let (status, body) = http_get(addr, "/").await;
    assert_eq!(status, 200, "GET / of pod {} ({addr}): {body}", pod.name);
    body.trim().to_string()
}

/// The distinct pod-template generations among `pods`.
pub fn generations(pods: &[AppPod]) -> BTreeSet<String> {
    pods.iter().map(|p| p.generation.clone()).collect()
}
