//! Workloads of the kinds beyond apps/v1, read and written through the dynamic API as
//! kube-reloader watches them: Argo Rollouts, CronJobs (the built-in batch/v1 kind) and
//! the tests' own Widget; the test CRDs; and a record of every change of a workload's pod template
//! and `spec.restartAt`, which is how these tests count rollouts of kinds that have no ReplicaSets.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::{ControlPlane, TestNs, kubectl_command, repo_root, shared, wait_for};

/// kube-reloader's baseline on a workload's metadata, and its mark in the pod template.
pub const HASH: &str = "kube-reloader.io/config-hash";
pub const AUTO: &str = "kube-reloader.io/auto";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A workload kind as the tests handle it: where it is served and where its pod template lives.
#[derive(Clone, Debug)]
pub struct TestKind {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    /// The dotted path to the pod template, as `--workload-kind` takes it.
    pub template_path: String,
}

impl TestKind {
    fn new(group: &str, version: &str, kind: &str, plural: &str, path: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            template_path: path.into(),
        }
    }

    /// The tests' own kind (tests/fixtures/crds/widget.yaml), its template at a non-default path.
    pub fn widget() -> Self {
        Self::new(
            "tests.kube-reloader.io",
            "v1",
            "Widget",
            "widgets",
            "spec.workload.podTemplate",
        )
    }

    /// Argo Rollouts' Rollout (tests/fixtures/crds/rollout.yaml), a built-in kind.
    pub fn rollout() -> Self {
        Self::new(
            "argoproj.io",
            "v1alpha1",
            "Rollout",
            "rollouts",
            "spec.template",
        )
    }

    /// The CronJob, batch/v1: a built-in kind, rolled with no flag.
    pub fn cronjob() -> Self {
        Self::new(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            "spec.jobTemplate.spec.template",
        )
    }

    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The flags kube-reloader needs to roll this kind: none for a built-in kind (a CronJob, a
    /// Rollout), `--workload-kind=GROUP/VERSION/KIND=PATH` for the others.
    pub fn flags(&self) -> Vec<String> {
        if self.builtin() {
            Vec::new()
        } else {
            vec![self.flag()]
        }
    }

    fn builtin(&self) -> bool {
        matches!(
            (self.group.as_str(), self.kind.as_str()),
            ("batch", "CronJob") | ("argoproj.io", "Rollout")
        )
    }

    /// `--workload-kind=GROUP/VERSION/KIND=PATH`, the flag kube-reloader takes this kind with.
    pub fn flag(&self) -> String {
        format!(
            "--workload-kind={}/{}={}",
            self.api_version(),
            self.kind,
            self.template_path
        )
    }

    pub fn resource(&self) -> ApiResource {
        let gvk = GroupVersionKind::gvk(&self.group, &self.version, &self.kind);
        ApiResource::from_gvk_with_plural(&gvk, &self.plural)
    }

    pub fn api(&self, ns: &TestNs) -> Api<DynamicObject> {
        Api::namespaced_with(ns.client.clone(), &ns.name, &self.resource())
    }

    fn path(&self) -> Vec<&str> {
        self.template_path.split('.').collect()
    }

    /// The pod template in `obj` (an object of this kind as JSON), `Null` if it has none.
    pub fn template<'a>(&self, obj: &'a Value) -> &'a Value {
        self.path().iter().fold(obj, |v, f| &v[*f])
    }

    /// An annotation of the pod template in `obj`.
    pub fn template_annotation(&self, obj: &Value, key: &str) -> Option<String> {
        self.template(obj)["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_string)
    }

    /// The CRD serving this kind (namespaced; spec kept as is, status a subresource, so
    /// `metadata.generation` counts spec changes only).
    pub fn crd(&self) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{}.{}", self.plural, self.group)},
            "spec": {
                "group": self.group,
                "names": {
                    "kind": self.kind,
                    "listKind": format!("{}List", self.kind),
                    "plural": self.plural,
                    "singular": self.kind.to_lowercase(),
                },
                "scope": "Namespaced",
                "versions": [{
                    "name": self.version, "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        },
                    }},
                }],
            },
        })
    }
}

/// Installs the test CRDs (Rollout, Widget) on the shared control plane, once per test run, and
/// waits until both are served. Idempotent: CRDs are cluster-wide and tests run in parallel, so
/// they are applied server-side and never deleted.
pub fn install_test_crds() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for (file, kind) in [
            ("widget.yaml", TestKind::widget()),
            ("rollout.yaml", TestKind::rollout()),
        ] {
            let yaml = std::fs::read_to_string(repo_root().join("tests/fixtures/crds").join(file))
                .expect("test CRD");
            install_crd(&yaml, &kind);
        }
    });
}

/// Applies a CRD (YAML or JSON) for `kind` server-side and waits until the API server serves the
/// kind, in discovery too (what kube-reloader looks at). Blocks.
pub fn install_crd(manifest: &str, kind: &TestKind) {
    let cp = shared();
    cp.kubectl_stdout(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        manifest,
    );
    wait_served(cp, &kind.group, &kind.api_version(), &kind.plural);
}

/// Waits until the CRD of `plural` in `group` is established on `cp` and the API server serves
/// it at `api_version`, in discovery too (what kube-reloader looks at). Blocks.
pub fn wait_served(cp: &ControlPlane, group: &str, api_version: &str, plural: &str) {
    let crd = format!("crd/{plural}.{group}");
    cp.kubectl(&["wait", "--for=condition=established", "--timeout=60s", &crd]);
    let path = format!("/apis/{api_version}");
    let start = Instant::now();
    loop {
        let out = kubectl_command()
            .args(["get", "--raw", &path])
            .env("KUBECONFIG", &cp.kubeconfig)
            .output()
            .expect("run kubectl");
        let served = out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|v| v["resources"].as_array().cloned())
                .is_some_and(|r| r.iter().any(|r| r["name"] == plural));
        if served {
            return;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "{path} does not serve {plural} a minute after its CRD was established"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A manifest of `kind` named `name`: these annotations on its metadata, and a pod template with
/// this pod spec at the kind's path (plus what the kind needs to be valid and to start nothing:
/// no replicas, a CronJob schedule that is never due during a test).
pub fn manifest(kind: &TestKind, name: &str, annotations: Value, pod_spec: Value) -> Value {
    let mut obj = json!({
        "apiVersion": kind.api_version(),
        "kind": kind.kind,
        "metadata": {"name": name, "annotations": annotations},
    });
    let mut template = json!({"metadata": {"labels": {"app": name}}, "spec": pod_spec});
    match kind.kind.as_str() {
        "Rollout" => {
            obj["spec"] = json!({"replicas": 0, "selector": {"matchLabels": {"app": name}}});
        }
        "CronJob" => {
            obj["spec"] = json!({"schedule": "0 0 1 1 *"});
            template["spec"]["restartPolicy"] = json!("Never");
        }
        _ => {}
    }
    let path = kind.path();
    let (last, parents) = path.split_last().expect("a template path");
    let mut at = &mut obj;
    for field in parents {
        if at.get(*field).is_none() {
            at[*field] = json!({});
        }
        at = &mut at[*field];
    }
    at[*last] = template;
    obj
}

/// Creates the object in the test namespace.
pub async fn create(ns: &TestNs, kind: &TestKind, manifest: Value) {
    let obj: DynamicObject = serde_json::from_value(manifest).expect("a valid manifest");
    kind.api(ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {} {:?}: {e}", kind.kind, obj.metadata.name));
}

/// Creates `name` of `kind` opted in with `kube-reloader.io/auto`, with this pod spec.
pub async fn opted_in(ns: &TestNs, kind: &TestKind, name: &str, pod_spec: Value) {
    create(
        ns,
        kind,
        manifest(kind, name, json!({AUTO: "true"}), pod_spec),
    )
    .await;
}

/// The object as JSON.
pub async fn get(ns: &TestNs, kind: &TestKind, name: &str) -> Value {
    let obj = kind
        .api(ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get {} {name}: {e}", kind.kind));
    serde_json::to_value(obj).expect("serializable")
}

/// An annotation on the object's metadata.
pub async fn annotation(ns: &TestNs, kind: &TestKind, name: &str, key: &str) -> Option<String> {
    get(ns, kind, name).await["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

/// Waits for the baseline kube-reloader records on first sight (`kube-reloader.io/config-hash` on
/// the object's metadata) and returns it.
pub async fn baseline(ns: &TestNs, kind: &TestKind, name: &str) -> String {
    wait_for(
        &format!("a baseline on {} {name}", kind.kind),
        TIMEOUT,
        || async { annotation(ns, kind, name, HASH).await },
    )
    .await
}

/// Notes of the Events with `reason` about `kind` `name`.
pub async fn events(ns: &TestNs, kind: &str, name: &str, reason: &str) -> Vec<String> {
    super::objects::events_about(ns, Some(kind), name, reason).await
}

/// Waits for an Event with `reason` about `kind` `name` and returns the notes of all of them.
pub async fn wait_events(ns: &TestNs, kind: &str, name: &str, reason: &str) -> Vec<String> {
    wait_for(
        &format!("a {reason} Event on {kind} {name}"),
        TIMEOUT,
        || async {
            let notes = events(ns, kind, name, reason).await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await
}

/// A pod template without kube-reloader's annotation (and without an annotation map left empty).
pub fn without_mark(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(HASH);
        }
        if meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| a.is_empty())
        {
            meta.remove("annotations");
        }
    }
    t
}

#[derive(Default)]
struct Seen {
    /// Each distinct pod template in turn, the first as the watch found it.
    templates: Vec<Value>,
    /// Each distinct `spec.restartAt` in turn (`Null` while unset).
    restarts: Vec<Value>,
    listed: bool,
}

/// Every version of one workload's pod template and `spec.restartAt` since it was started, as a
/// watch delivers them: a rollout of a kind without ReplicaSets is a change of one of these. A
/// watch sees every version, so two rollouts in quick succession count as two.
pub struct History {
    what: String,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    /// Starts watching `kind` `name` (which must exist) and waits for its current state.
    pub async fn watch(ns: &TestNs, kind: &TestKind, name: &str) -> Self {
        let what = format!("{} {name}", kind.kind);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher(kind.api(ns), config).default_backoff();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (record, kind) = (Arc::clone(&seen), kind.clone());
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let mut seen = record.lock().expect("history");
                match event {
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                        let obj = serde_json::to_value(obj).expect("serializable");
                        let template = kind.template(&obj).clone();
                        if seen.templates.last() != Some(&template) {
                            seen.templates.push(template);
                        }
                        let restart = obj["spec"]["restartAt"].clone();
                        if seen.restarts.last() != Some(&restart) {
                            seen.restarts.push(restart);
                        }
                    }
                    Ok(watcher::Event::InitDone) => seen.listed = true,
                    _ => {}
                }
            }
        });
        let history = Self { what, seen, task };
        wait_for(
            &format!("the watch on {}", history.what),
            TIMEOUT,
            || async {
                let seen = history.seen.lock().expect("history");
                (seen.listed && !seen.templates.is_empty()).then_some(())
            },
        )
        .await;
        history
    }

    /// How many times the pod template has changed since the watch started.
    pub fn template_changes(&self) -> usize {
        self.seen
            .lock()
            .expect("history")
            .templates
            .len()
            .saturating_sub(1)
    }

    /// The values `spec.restartAt` has been set to since the watch started, in order.
    pub fn restarts(&self) -> Vec<String> {
        let seen = self.seen.lock().expect("history");
        seen.restarts
            .iter()
            .skip(1)
            .map(|v| v.as_str().unwrap_or("<unset>").to_string())
            .collect()
    }

    /// Every distinct pod template in turn, the first as the watch found it.
    pub fn templates(&self) -> Vec<Value> {
        self.seen.lock().expect("history").templates.clone()
    }

    /// Asserts that every change of the pod template since the watch started was a change of
    /// kube-reloader's annotation in it, and nothing else.
    pub fn assert_only_the_mark_changed(&self) {
        let templates = self.templates();
        let Some(first) = templates.first() else {
            return;
        };
        for t in &templates[1..] {
            assert_eq!(
                without_mark(t),
                without_mark(first),
                "{}: the pod template changed beyond {HASH}:\nbefore {first:#}\nafter {t:#}",
                self.what
            );
        }
    }

    /// Waits (at most 60 s) until the pod template has changed `n` times.
    pub async fn wait_template_changes(&self, n: usize) {
        wait_for(
            &format!("{n} pod template changes of {}", self.what),
            TIMEOUT,
            || async { (self.template_changes() >= n).then_some(()) },
        )
        .await;
    }

    /// Waits (at most 60 s) until `spec.restartAt` has been set `n` times; the values.
    pub async fn wait_restarts(&self, n: usize) -> Vec<String> {
        wait_for(
            &format!("{n} restarts of {} (spec.restartAt)", self.what),
            TIMEOUT,
            || async {
                let r = self.restarts();
                (r.len() >= n).then_some(r)
            },
        )
        .await
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}
