//! Pods that run (on the node of [`super::with_node`]): an app that reads its config and says
//! what it read, and what a user checks of its pods.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, LogParams};
use serde_json::{Value, json};

use super::objects::{configmap, update_secret};
use super::workloads::Kind;
use super::{TestNs, http_get};

/// The port the app serves what it read on (and is readiness-probed on).
pub const PORT: u16 = 8080;

/// Where the app reads its `greeting` from: a ConfigMap or a Secret of this name.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    ConfigMap(&'a str),
    Secret(&'a str),
}

impl Source<'_> {
    /// The object's name.
    pub fn name(&self) -> &str {
        match self {
            Source::ConfigMap(name) | Source::Secret(name) => name,
        }
    }

    /// Creates or changes the object so that `greeting` is `value`.
    pub async fn set(&self, ns: &TestNs, value: &str) {
        match self {
            Source::ConfigMap(name) => configmap(ns, name, &[("greeting", value)], json!({})).await,
            Source::Secret(name) => update_secret(ns, name, &[("greeting", value)]).await,
        }
    }
}

/// A shell line that reads `greeting` from the environment (`GREETING`) and the mounted file
/// (`/config/greeting`), and sets `line` to what [`reads`] says.
const READ: &str = "line=\"read env=$GREETING file=$(cat /config/greeting)\"";

/// A pod spec of one busybox container `app` (`localhost/busybox:latest`, imported into the
/// node, never pulled) running `script` with `greeting` of `source` as the environment variable
/// `GREETING` and as the file `/config/greeting`; `container` adds fields to the container.
fn reading_pod_spec(source: Source, script: &str, container: Value) -> Value {
    let (env_from, volume) = match source {
        Source::ConfigMap(name) => (
            json!({"configMapKeyRef": {"name": name, "key": "greeting"}}),
            json!({"name": "config", "configMap": {"name": name}}),
        ),
        Source::Secret(name) => (
            json!({"secretKeyRef": {"name": name, "key": "greeting"}}),
            json!({"name": "config", "secret": {"secretName": name}}),
        ),
    };
    let mut c = json!({
        "name": "app",
        "image": "localhost/busybox:latest",
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", script],
        "env": [{"name": "GREETING", "valueFrom": env_from}],
        "volumeMounts": [{"name": "config", "mountPath": "/config"}],
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), container.as_object()) {
        c.extend(extra.clone());
    }
    json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [c],
        "volumes": [volume],
    })
}

/// The app's pod spec: busybox reads `greeting` of `source` (see [`reading_pod_spec`]), prints
/// what it read (`read env=… file=…`) and serves the same line with httpd on [`PORT`], where its
/// readiness probe asks.
pub fn app_pod_spec(source: Source) -> Value {
    let script = format!(
        "{READ}; echo \"$line\"; \
         mkdir -p /tmp/www && echo \"$line\" > /tmp/www/index.html && \
         exec httpd -f -p {PORT} -h /tmp/www"
    );
    reading_pod_spec(
        source,
        &script,
        json!({
            "ports": [{"containerPort": PORT}],
            "readinessProbe": {"httpGet": {"path": "/", "port": PORT}, "periodSeconds": 1},
        }),
    )
}

/// A Job's pod spec: busybox reads `greeting` of `source` once, prints what it read and writes it
/// as its termination message (the pod's status has it, see [`jobs`]), and exits.
pub fn job_pod_spec(source: Source) -> Value {
    let script = format!("{READ}; echo \"$line\" | tee /dev/termination-log");
    let mut spec = reading_pod_spec(source, &script, json!({}));
    spec["restartPolicy"] = json!("Never");
    spec
}

/// What the app prints and serves when `greeting` is `value`.
pub fn reads(value: &str) -> String {
    format!("read env={value} file={value}")
}

/// A workload manifest of `kind` named `name` running `replicas` pods (a DaemonSet: one, on the
/// node) of [`app_pod_spec`] for ConfigMap `cm`, opted in with `kube-reloader.io/auto`.
pub fn app(kind: Kind, name: &str, replicas: u32, cm: &str) -> Value {
    app_reading(kind, name, replicas, Source::ConfigMap(cm))
}

/// Like [`app`], its pods reading `source`.
pub fn app_reading(kind: Kind, name: &str, replicas: u32, source: Source) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": app_pod_spec(source)},
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

/// A Job as a user checks a CronJob's: when it was made and for which scheduled time, by whom,
/// and what its pod read.
#[derive(Clone, Debug)]
pub struct RanJob {
    pub name: String,
    pub created: Timestamp,
    /// The time the CronJob controller made it for
    /// (`batch.kubernetes.io/cronjob-scheduled-timestamp`).
    pub scheduled: Option<Timestamp>,
    /// Its controller, `Kind/name`.
    pub owner: Option<String>,
    /// The termination message of its pod once the pod has ended: what [`job_pod_spec`] read.
    pub read: Option<String>,
}

/// The Jobs of the namespace, oldest first, with what their pods read.
pub async fn jobs(ns: &TestNs) -> Vec<RanJob> {
    let list = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .expect("list Jobs");
    let mut jobs = Vec::new();
    for job in list.items {
        let meta = job.metadata;
        let name = meta.name.unwrap_or_default();
        let scheduled = meta
            .annotations
            .unwrap_or_default()
            .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
            .map(|t| t.parse().expect("an RFC 3339 scheduled time"));
        let owner = meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| format!("{}/{}", o.kind, o.name));
        let pods = ns
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("job-name={name}")))
            .await
            .expect("list the Job's pods");
        let read = pods.items.iter().find_map(|p| {
            let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
            let ended = statuses.first()?.state.as_ref()?.terminated.as_ref()?;
            Some(ended.message.clone().unwrap_or_default().trim().to_string())
        });
        jobs.push(RanJob {
            name,
            created: meta.creation_timestamp.expect("a creation time").0,
            scheduled,
            owner,
            read,
        });
    }
    jobs.sort_by_key(|j| (j.created, j.name.clone()));
    jobs
}
