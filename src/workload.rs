//! The workload kinds kube-reloader rolls, as data: group, version, kind and where the pod template
//! lives. The built-in kinds and `--workload-kind` kinds are the same thing with different
//! defaults; all are watched through the dynamic API and cached in one slim shape, [`Workload`],
//! so one reconcile serves them all.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject};
use kube::core::DynamicResourceScope;
use serde::Deserialize;

use crate::digest;
use crate::reconcile::written::CONFIG_HASH;
use crate::references::{ConfigKind, References, Usage, references};

/// A kind of workload: where its objects are served and where their pod template lives.
#[derive(Debug)]
pub struct KindSpec {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource name (plural), when known before discovery.
    pub plural: Option<&'static str>,
    /// kubectl's short names, accepted by `explain`.
    pub short_names: &'static [&'static str],
    /// Field names from the object's root to its pod template.
    pub template_path: &'static [&'static str],
    /// Argo Rollouts' semantics: the template may live in a referenced Deployment
    /// (`spec.workloadRef`), and a restart may be asked for with `spec.restartAt`.
    pub argo: bool,
    /// Whether writes are server-side applies. Only for Kubernetes' own kinds, whose schemas type
    /// the whole pod template: where a custom resource's schema leaves part of it untyped
    /// (`x-kubernetes-preserve-unknown-fields`), an apply of one annotation there takes the
    /// untyped map as a unit and drops what else it holds. Other kinds get a JSON merge patch,
    /// which sets only the fields it names.
    pub apply: bool,
}

/// A workload kind: a handle on its [`KindSpec`]. Two handles are the same kind when their group
/// and kind are, whatever the version: the same objects are served at every version.
#[derive(Clone, Copy)]
pub struct WorkloadKind(&'static KindSpec);

const TEMPLATE: &[&str] = &["spec", "template"];

impl WorkloadKind {
    pub const DEPLOYMENT: WorkloadKind = WorkloadKind(&KindSpec {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: Some("deployments"),
        short_names: &["deploy"],
        template_path: TEMPLATE,
        argo: false,
        apply: true,
    });
    pub const STATEFUL_SET: WorkloadKind = WorkloadKind(&KindSpec {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: Some("statefulsets"),
        short_names: &["sts"],
        template_path: TEMPLATE,
        argo: false,
        apply: true,
    });
    pub const DAEMON_SET: WorkloadKind = WorkloadKind(&KindSpec {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: Some("daemonsets"),
        short_names: &["ds"],
        template_path: TEMPLATE,
        argo: false,
        apply: true,
    });
    /// The template of the Jobs it creates: a change reaches the next scheduled Job. No Job is
    /// ever created, deleted or touched.
    pub const CRON_JOB: WorkloadKind = WorkloadKind(&KindSpec {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: Some("cronjobs"),
        short_names: &["cj"],
        template_path: &["spec", "jobTemplate", "spec", "template"],
        argo: false,
        apply: true,
    });
    /// Argo Rollouts' Rollout; watched once its CRD is installed.
    pub const ROLLOUT: WorkloadKind = WorkloadKind(&KindSpec {
        group: "argoproj.io",
        version: "v1alpha1",
        kind: "Rollout",
        plural: Some("rollouts"),
        short_names: &["ro"],
        template_path: TEMPLATE,
        argo: true,
        apply: false,
    });

    /// Every built-in kind, in the order of `--kinds`'s default.
    pub const BUILT_IN: [WorkloadKind; 5] = [
        Self::DEPLOYMENT,
        Self::STATEFUL_SET,
        Self::DAEMON_SET,
        Self::CRON_JOB,
        Self::ROLLOUT,
    ];

    /// The kind's name, `Deployment`; also its metric label.
    pub fn as_str(self) -> &'static str {
        self.0.kind
    }

    pub fn spec(self) -> &'static KindSpec {
        self.0
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(self) -> String {
        if self.0.group.is_empty() {
            self.0.version.to_string()
        } else {
            format!("{}/{}", self.0.group, self.0.version)
        }
    }

    /// `GROUP/VERSION/KIND=PATH`, as `--workload-kind` takes it.
    pub fn describe(self) -> String {
        format!(
            "{}/{}={}",
            self.api_version(),
            self.0.kind,
            self.0.template_path.join(".")
        )
    }

    /// The kind in the plural, for messages: `Deployments`, `Policies`.
    pub fn plural_name(self) -> String {
        plural_of(self.0.kind)
    }

    /// Whether `name` (any case) names this kind on the command line: its kind, plural or short
    /// name, optionally followed by `.GROUP`, as kubectl accepts them.
    pub fn is_named(self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let (bare, group) = match name.split_once('.') {
            Some((bare, group)) => (bare.to_string(), Some(group.to_string())),
            None => (name, None),
        };
        if group.is_some_and(|g| g != self.0.group) {
            return false;
        }
        let kind = self.0.kind.to_ascii_lowercase();
        let plural = self
            .0
            .plural
            .map_or_else(|| plural_of(&kind), str::to_string);
        bare == kind || bare == plural || self.0.short_names.contains(&bare.as_str())
    }

    /// The built-in kind `name` names (its kind, plural or short name, any case).
    pub fn built_in(name: &str) -> Result<WorkloadKind, String> {
        let name = name.trim();
        Self::BUILT_IN
            .into_iter()
            .find(|k| k.is_named(name))
            .ok_or_else(|| {
                format!(
                    "{name:?} is not a built-in kind (one of {}); add other kinds with --workload-kind GROUP/VERSION/KIND[=PATH]",
                    Self::BUILT_IN.map(|k| k.as_str()).join(", ")
                )
            })
    }

    /// Parses `GROUP/VERSION/KIND[=PATH]` (`VERSION/KIND` for the core group), `PATH` being the
    /// dotted path to the pod template, `spec.template` by default. The kind lives as long as the
    /// process: kinds are configured once, at start.
    pub fn parse(s: &str) -> Result<WorkloadKind, String> {
        let s = s.trim();
        let (gvk, path) = s.split_once('=').unwrap_or((s, "spec.template"));
        let parts: Vec<&str> = gvk.split('/').collect();
        let (group, version, kind) = match parts.as_slice() {
            [group, version, kind] => (*group, *version, *kind),
            [version, kind] => ("", *version, *kind),
            _ => {
                return Err(format!(
                    "{s:?}: expected GROUP/VERSION/KIND[=PATH], e.g. apps.kruise.io/v1alpha1/CloneSet or batch/v1/CronJob=spec.jobTemplate.spec.template"
                ));
            }
        };
        let dns = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if !group.chars().all(dns) || group.starts_with('.') || group.ends_with('.') {
            return Err(format!("{s:?}: {group:?} is not an API group"));
        }
        if parts.len() == 3 && group.is_empty() {
            return Err(format!(
                "{s:?}: empty API group (write VERSION/KIND for the core group)"
            ));
        }
        if !is_api_version(version) {
            return Err(format!(
                "{s:?}: {version:?} is not an API version like v1, v1beta1 or v2alpha3"
            ));
        }
        if !kind.starts_with(|c: char| c.is_ascii_uppercase())
            || !kind.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(format!(
                "{s:?}: {kind:?} is not a kind (kinds are CamelCase, like CloneSet)"
            ));
        }
        let segments: Vec<&str> = path.split('.').collect();
        if segments
            .iter()
            .any(|f| f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "{s:?}: {path:?} is not a dotted field path like spec.template"
            ));
        }
        // A built-in kind named again keeps what the built-in knows (names, Argo's semantics).
        let known = Self::BUILT_IN
            .into_iter()
            .find(|k| k.0.group == group && k.0.kind == kind);
        let leak = |v: &str| -> &'static str { Box::leak(v.to_string().into_boxed_str()) };
        let segments: Vec<&'static str> = segments.into_iter().map(leak).collect();
        Ok(WorkloadKind(Box::leak(Box::new(KindSpec {
            group: leak(group),
            version: leak(version),
            kind: leak(kind),
            plural: known.and_then(|k| k.0.plural),
            short_names: known.map_or(&[], |k| k.0.short_names),
            template_path: Box::leak(segments.into_boxed_slice()),
            argo: known.is_some_and(|k| k.0.argo),
            apply: known.is_some_and(|k| k.0.apply),
        }))))
    }

    /// Whether the pod template lives where the built-in kind of the same name has it.
    fn same(self, other: WorkloadKind) -> bool {
        self.0.group == other.0.group && self.0.kind == other.0.kind
    }
}

/// Whether `v` is a Kubernetes API version: `v1`, `v1beta1`, `v2alpha3`.
fn is_api_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let major_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (major, tail) = rest.split_at(major_end);
    if major.is_empty() || major.starts_with('0') {
        return false;
    }
    match tail
        .strip_prefix("alpha")
        .or_else(|| tail.strip_prefix("beta"))
    {
        None => tail.is_empty(),
        Some(n) => !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && !n.starts_with('0'),
    }
}

/// The kinds to roll: the built-in kinds chosen, then the `--workload-kind` kinds, one per group
/// and kind. A `--workload-kind` kind replaces a built-in kind of the same group and kind (say,
/// CronJobs at batch/v1beta1 on a cluster older than Kubernetes 1.21), and a later one an earlier.
pub fn resolve(built_in: &[WorkloadKind], extra: &[WorkloadKind]) -> Vec<WorkloadKind> {
    let mut kinds: Vec<WorkloadKind> = Vec::new();
    for k in built_in.iter().chain(extra) {
        match kinds.iter_mut().find(|have| have.same(*k)) {
            Some(have) => *have = *k,
            None => kinds.push(*k),
        }
    }
    kinds
}

/// The regular English plural of a kind, in its own case, as Kubernetes resources are usually
/// named (the plural served is only known after discovery).
fn plural_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        format!("{kind}es")
    } else if lower.ends_with('y')
        && !["ay", "ey", "iy", "oy", "uy"]
            .iter()
            .any(|e| lower.ends_with(e))
    {
        format!("{}ies", &kind[..kind.len() - 1])
    } else {
        format!("{kind}s")
    }
}

impl PartialEq for WorkloadKind {
    fn eq(&self, other: &Self) -> bool {
        self.same(*other)
    }
}
impl Eq for WorkloadKind {}
impl Hash for WorkloadKind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0.group, self.0.kind).hash(state);
    }
}
impl PartialOrd for WorkloadKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for WorkloadKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.kind, self.0.group).cmp(&(other.0.kind, other.0.group))
    }
}

impl fmt::Debug for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a workload is rolled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Our annotation in its pod template changes: its own controller replaces the pods.
    Template,
    /// Argo Rollouts' `spec.restartAt` is set to now: Argo restarts the pods. For a Rollout whose
    /// template lives in a referenced Deployment (which must not be edited), or that asks for it.
    RestartAt,
}

/// The annotation (ours, and Reloader's) asking for an Argo Rollout to be restarted through
/// `spec.restartAt` rather than by a template change.
pub const ROLLOUT_STRATEGY: &str = "kube-reloader.io/rollout-strategy";
pub const RELOADER_ROLLOUT_STRATEGY: &str = "reloader.stakater.com/rollout-strategy";

/// How a workload of `kind`, with these metadata annotations, is rolled.
pub fn restart(
    kind: WorkloadKind,
    annotations: &BTreeMap<String, String>,
    template_ref: bool,
    reloader_compat: bool,
) -> Restart {
    if !kind.0.argo {
        return Restart::Template;
    }
    let asks = |key: &str| annotations.get(key).is_some_and(|v| v == "restart");
    if template_ref
        || asks(ROLLOUT_STRATEGY)
        || (reloader_compat && asks(RELOADER_ROLLOUT_STRATEGY))
    {
        Restart::RestartAt
    } else {
        Restart::Template
    }
}

/// Where a workload's pod template lives when it is not its own: Argo Rollouts'
/// `spec.workloadRef`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TemplateRef {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A watched workload of any kind, as cached: only what the rules read. Its status, its
/// managedFields, kubectl's last-applied copy of it and the rest of its spec are dropped before
/// it is cached; they are most of a typical workload's size, and the cache holds every workload.
#[derive(Clone, Debug)]
pub struct Workload {
    pub kind: WorkloadKind,
    /// Name, namespace, uid, resourceVersion, generation and annotations.
    pub metadata: ObjectMeta,
    /// What the rules read of the pod template at the kind's path (the template itself is not
    /// kept: it is most of a workload's bytes).
    pub template: Option<Template>,
    /// Argo Rollouts' `spec.workloadRef`.
    pub template_ref: Option<TemplateRef>,
    /// Argo Rollouts' `spec.restartAt`.
    pub restart_at: Option<String>,
}

impl Workload {
    /// The slim copy of a watched object of `kind`. A pod template that does not parse counts as
    /// none (a workload without one is never rolled).
    pub fn from_dynamic(obj: DynamicObject, kind: WorkloadKind) -> Self {
        let DynamicObject {
            metadata, mut data, ..
        } = obj;
        let mut at = Some(&mut data);
        for field in kind.0.template_path {
            at = at.and_then(|v| v.get_mut(*field));
        }
        let template = at
            .map(serde_json::Value::take)
            .filter(|v| !v.is_null())
            .and_then(|v| Template::of(&v));
        let spec = data.get_mut("spec");
        let (template_ref, restart_at) = match spec {
            Some(spec) if kind.0.argo => (
                spec.get_mut("workloadRef")
                    .map(serde_json::Value::take)
                    .and_then(|v| serde_json::from_value(v).ok()),
                spec.get("restartAt")
                    .and_then(|v| v.as_str())
                    .map(String::from),
            ),
            _ => (None, None),
        };
        Workload {
            kind,
            metadata: slim(metadata),
            template,
            template_ref,
            restart_at,
        }
    }

    /// One of the pod template's annotations.
    pub fn template_annotation(&self, key: &str) -> Option<&str> {
        self.template.as_ref().and_then(|t| t.annotation(key))
    }
}

/// What the rules read of a pod template, taken once when the object arrives. Kept in boxed
/// slices rather than maps: a map allocates a whole node for its first entry, and 10,000
/// workloads each holding a few entries would pay that many times over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    annotations: Box<[(String, String)]>,
    /// The ConfigMaps and Secrets its pod spec uses, in order.
    references: Box<[((ConfigKind, String), Usage)]>,
    /// Its digest as others wrote it ([`digest::template_digest`]).
    digest: Box<str>,
    /// The same less stakater Reloader's writes, when it has any (what a dry run compares).
    digest_without_reloader: Option<Box<str>>,
}

impl Template {
    /// What the rules read of a pod template as the API server sent it (JSON); `None` when it is
    /// not a pod template. The digest is taken of the JSON, every field of it, whether or not
    /// k8s-openapi's feature level knows the field; the references are read through the typed
    /// model.
    pub fn of(t: &serde_json::Value) -> Option<Self> {
        let typed = PodTemplateSpec::deserialize(t).ok()?;
        let digest = digest::template_digest(Some(t), CONFIG_HASH);
        let digest_without_reloader = digest::has_reloader_writes(t).then(|| {
            let without = digest::without_reloader_writes(t);
            digest::template_digest(Some(&without), CONFIG_HASH).into()
        });
        let annotations = typed.metadata.and_then(|m| m.annotations);
        let references = typed.spec.as_ref().map(references).unwrap_or_default();
        Some(Template {
            annotations: annotations.unwrap_or_default().into_iter().collect(),
            references: references.into_iter().collect(),
            digest: digest.into(),
            digest_without_reloader,
        })
    }

    /// Its digest as others wrote it ([`digest::template_digest`]).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// One of its annotations.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        let at = self
            .annotations
            .binary_search_by(|(k, _)| k.as_str().cmp(key));
        at.ok().map(|i| self.annotations[i].1.as_str())
    }
}

/// A pod template's annotations (empty when it has none).
pub fn template_annotations(template: Option<&Template>) -> BTreeMap<String, String> {
    template
        .map(|t| t.annotations.iter().cloned().collect())
        .unwrap_or_default()
}

/// A pod template's references (none without one).
pub fn template_references(template: Option<&Template>) -> References {
    template
        .map(|t| t.references.iter().cloned().collect())
        .unwrap_or_default()
}

/// The digest of a pod template as others wrote it, less stakater Reloader's writes for a
/// `dry_run` ([`digest::without_reloader_writes`]); no template digests as an empty one.
pub fn template_digest(template: Option<&Template>, dry_run: bool) -> String {
    match template {
        Some(t) if dry_run => t
            .digest_without_reloader
            .as_deref()
            .unwrap_or(&t.digest)
            .to_string(),
        Some(t) => t.digest.to_string(),
        None => digest::template_digest(None, CONFIG_HASH),
    }
}

/// The metadata the rules read: identity, version, and the annotations that are ours or stakater
/// Reloader's (not kubectl's copy of the whole object, nor Helm's, Argo CD's and others').
fn slim(meta: ObjectMeta) -> ObjectMeta {
    let mut annotations = meta.annotations;
    if let Some(a) = annotations.as_mut() {
        a.retain(|k, _| is_read(k));
    }
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        generation: meta.generation,
        annotations,
        ..ObjectMeta::default()
    }
}

/// Whether the rules read an annotation of a workload's metadata: all are kube-reloader's
/// (`kube-reloader.io/…`) or stakater Reloader's (`….reloader.stakater.com/…`).
fn is_read(key: &str) -> bool {
    key.starts_with("kube-reloader.io/") || key.contains("reloader.stakater.com/")
}

impl Resource for Workload {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// kube-runtime's Controller asks its objects to be decodable; a [`Workload`] is only ever made
/// from a watched object ([`Workload::from_dynamic`]), so decoding one directly is refused.
impl<'de> Deserialize<'de> for Workload {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "a Workload is made from a watched object, not decoded",
        ))
    }
}

/// A workload by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_dry_run_digests_the_template_less_reloaders_writes() {
        let template =
            |env: serde_json::Value| json!({"spec": {"containers": [{"name": "c", "env": env}]}});
        let plain = template(json!([{"name": "A", "value": "1"}]));
        let rolled_by_reloader = template(json!([
            {"name": "A", "value": "1"},
            {"name": "STAKATER_CFG_CONFIGMAP", "value": "abc"},
        ]));
        let of = |t| Template::of(t).expect("a template");
        let (plain, rolled) = (of(&plain), of(&rolled_by_reloader));
        assert_ne!(template_digest(Some(&rolled), false), plain.digest());
        assert_eq!(template_digest(Some(&rolled), true), plain.digest());
        // Nothing of Reloader's: the same digest either way, and nothing more kept.
        assert_eq!(template_digest(Some(&plain), true), plain.digest());
        assert_eq!(plain.digest_without_reloader, None);
        assert_eq!(
            template_digest(None, true),
            digest::template_digest(None, CONFIG_HASH)
        );
    }

    fn dynamic(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).expect("an object")
    }

    #[test]
    fn slimming_keeps_what_reconciles_read_and_drops_the_rest() {
        let template = json!({
            "metadata": {"annotations": {"reloader.stakater.com/auto": "true"}, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]},
        });
        let d = dynamic(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "app", "uid": "u1", "resourceVersion": "7", "generation": 2,
                "labels": {"app": "web"},
                "annotations": {
                    "kube-reloader.io/auto": "true",
                    "configmap.reloader.stakater.com/reload": "cfg",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"a whole copy\": true}",
                    "meta.helm.sh/release-name": "web",
                    "argocd.argoproj.io/tracking-id": "app:apps/Deployment:app/web",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Update"}],
            },
            "spec": {"selector": {}, "replicas": 3, "template": template},
            "status": {"replicas": 3, "observedGeneration": 2},
        }));
        let w = Workload::from_dynamic(d, WorkloadKind::DEPLOYMENT);
        assert_eq!(w.metadata.managed_fields, None);
        assert_eq!(w.metadata.labels, None);
        let annotations = w.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            [
                "configmap.reloader.stakater.com/reload",
                "kube-reloader.io/auto"
            ]
        );
        assert_eq!(
            (
                w.metadata.name.as_deref(),
                w.metadata.uid.as_deref(),
                w.metadata.resource_version.as_deref(),
                w.metadata.generation
            ),
            (Some("web"), Some("u1"), Some("7"), Some(2))
        );
        let t = w.template.as_ref().expect("a template");
        assert_eq!(Some(t), Template::of(&template).as_ref());
        assert_eq!(
            t.digest(),
            digest::template_digest(Some(&template), CONFIG_HASH)
        );
        assert_eq!(
            template_references(Some(t))
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            [(ConfigKind::ConfigMap, "cfg".to_string())]
        );
        assert_eq!(
            w.template_annotation("reloader.stakater.com/auto"),
            Some("true")
        );
        assert_eq!((w.template_ref, w.restart_at), (None, None));
    }

    #[test]
    fn the_template_is_read_at_the_kinds_path() {
        let cron = dynamic(json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {
                "spec": {"containers": [{"name": "job", "image": "job:1",
                    "envFrom": [{"secretRef": {"name": "job-secrets"}}]}]}}}}},
        }));
        let w = Workload::from_dynamic(cron, WorkloadKind::CRON_JOB);
        let t = w.template.expect("a template");
        assert_eq!(
            template_references(Some(&t))
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            [(ConfigKind::Secret, "job-secrets".to_string())]
        );

        let widget = WorkloadKind::parse("tests.example.io/v1/Widget=spec.workload.podTemplate")
            .expect("a kind");
        let obj = |spec: serde_json::Value| {
            dynamic(
                json!({"apiVersion": "tests.example.io/v1", "kind": "Widget",
                "metadata": {"name": "w"}, "spec": spec}),
            )
        };
        let at_path =
            obj(json!({"workload": {"podTemplate": {"metadata": {"labels": {"a": "b"}}}}}));
        assert!(Workload::from_dynamic(at_path, widget).template.is_some());
        // Elsewhere, or not a pod template: none, and so never rolled.
        let elsewhere = obj(json!({"template": {"metadata": {}}}));
        assert!(Workload::from_dynamic(elsewhere, widget).template.is_none());
        let garbage = obj(json!({"workload": {"podTemplate": "not an object"}}));
        assert!(Workload::from_dynamic(garbage, widget).template.is_none());
    }

    #[test]
    fn rollouts_keep_their_workload_ref_and_restart_at() {
        let ro = dynamic(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "restartAt": "2026-11-26T10:00:00Z"},
        }));
        let w = Workload::from_dynamic(ro, WorkloadKind::ROLLOUT);
        assert_eq!(
            w.template_ref,
            Some(TemplateRef {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
        assert_eq!(w.restart_at.as_deref(), Some("2026-11-26T10:00:00Z"));
        assert!(w.template.is_none());
    }

    #[test]
    fn workload_kind_flags() {
        let k = WorkloadKind::parse("apps.kruise.io/v1alpha1/CloneSet").expect("a kind");
        assert_eq!(
            (k.spec().group, k.spec().version, k.as_str()),
            ("apps.kruise.io", "v1alpha1", "CloneSet")
        );
        assert_eq!(k.spec().template_path, ["spec", "template"]);
        assert_eq!(
            k.describe(),
            "apps.kruise.io/v1alpha1/CloneSet=spec.template"
        );
        let rc = WorkloadKind::parse("v1/ReplicationController").expect("the core group");
        assert_eq!((rc.spec().group, rc.api_version()), ("", "v1".to_string()));
        let cj = WorkloadKind::parse("batch/v1beta1/CronJob=spec.jobTemplate.spec.template")
            .expect("a kind");
        assert_eq!(cj, WorkloadKind::CRON_JOB);
        assert!(cj.is_named("cj") && cj.is_named("cronjobs") && cj.is_named("CronJob.batch"));
        let ro = WorkloadKind::parse("argoproj.io/v1alpha1/Rollout").expect("a kind");
        assert!(ro.spec().argo, "naming a built-in keeps what it knows");
        for bad in [
            "",
            "CloneSet",
            "a/b/c/D",
            "apps.kruise.io/v1alpha1/cloneSet",
            "Apps/v1/Deployment",
            "apps/V1/Deployment",
            "apps/CloneSet",
            "/v1/Widget",
            "example.io/1/Widget",
            "example.io/v1gamma1/Widget",
            "example.io/v1beta/Widget",
            "apps/v1/Deployment=spec..template",
            "apps/v1/Deployment=",
            "apps/v1/Deployment=spec.template!",
        ] {
            assert!(WorkloadKind::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// The built-in kinds, and where each keeps the template a rollout changes.
    #[test]
    fn built_in_kinds() {
        let table: Vec<(String, String)> = WorkloadKind::BUILT_IN
            .iter()
            .map(|k| {
                (
                    k.api_version() + "/" + k.as_str(),
                    k.spec().template_path.join("."),
                )
            })
            .collect();
        let want = [
            ("apps/v1/Deployment", "spec.template"),
            ("apps/v1/StatefulSet", "spec.template"),
            ("apps/v1/DaemonSet", "spec.template"),
            ("batch/v1/CronJob", "spec.jobTemplate.spec.template"),
            ("argoproj.io/v1alpha1/Rollout", "spec.template"),
        ];
        assert_eq!(
            table,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
        // Server-side apply only where Kubernetes' own schema types the whole template.
        let applied: Vec<bool> = WorkloadKind::BUILT_IN
            .iter()
            .map(|k| k.spec().apply)
            .collect();
        assert_eq!(applied, [true, true, true, true, false]);
        let cj = WorkloadKind::parse("batch/v1beta1/CronJob=spec.jobTemplate.spec.template");
        assert!(cj.expect("a kind").spec().apply);
        let custom = WorkloadKind::parse("apps.kruise.io/v1alpha1/CloneSet").expect("a kind");
        assert!(!custom.spec().apply);
        assert_eq!(
            WorkloadKind::built_in("sts"),
            Ok(WorkloadKind::STATEFUL_SET)
        );
        assert_eq!(
            WorkloadKind::built_in("Rollouts"),
            Ok(WorkloadKind::ROLLOUT)
        );
        assert!(WorkloadKind::built_in("CloneSet").is_err());
        let widget = WorkloadKind::parse("tests.example.io/v1/Policy").expect("a kind");
        assert!(widget.is_named("policy") && widget.is_named("policies"));
        assert_eq!(widget.plural_name(), "Policies");
        assert_eq!(WorkloadKind::DEPLOYMENT.plural_name(), "Deployments");
        assert!(widget.is_named("Policy.tests.example.io") && !widget.is_named("policy.other.io"));
    }

    #[test]
    fn a_workload_kind_replaces_the_built_in_of_the_same_group_and_kind() {
        let cj = WorkloadKind::parse("batch/v1beta1/CronJob=spec.jobTemplate.spec.template")
            .expect("a kind");
        let clone = WorkloadKind::parse("apps.kruise.io/v1alpha1/CloneSet").expect("a kind");
        let kinds = resolve(&WorkloadKind::BUILT_IN, &[cj, clone, clone]);
        let described: Vec<String> = kinds.iter().map(|k| k.describe()).collect();
        assert_eq!(
            described,
            [
                "apps/v1/Deployment=spec.template",
                "apps/v1/StatefulSet=spec.template",
                "apps/v1/DaemonSet=spec.template",
                "batch/v1beta1/CronJob=spec.jobTemplate.spec.template",
                "argoproj.io/v1alpha1/Rollout=spec.template",
                "apps.kruise.io/v1alpha1/CloneSet=spec.template",
            ]
        );
        assert_eq!(
            resolve(&[WorkloadKind::DEPLOYMENT], &[]),
            [WorkloadKind::DEPLOYMENT]
        );
    }

    #[test]
    fn how_each_workload_is_restarted() {
        let none = BTreeMap::new();
        let asks = |key: &str, value: &str| BTreeMap::from([(key.to_string(), value.to_string())]);
        let cases = [
            (
                WorkloadKind::DEPLOYMENT,
                none.clone(),
                false,
                true,
                Restart::Template,
            ),
            // Only Argo Rollouts have restartAt.
            (
                WorkloadKind::DEPLOYMENT,
                asks(RELOADER_ROLLOUT_STRATEGY, "restart"),
                true,
                true,
                Restart::Template,
            ),
            (
                WorkloadKind::ROLLOUT,
                none.clone(),
                false,
                true,
                Restart::Template,
            ),
            // The template is in a Deployment that must not be edited.
            (WorkloadKind::ROLLOUT, none, true, true, Restart::RestartAt),
            (
                WorkloadKind::ROLLOUT,
                asks(RELOADER_ROLLOUT_STRATEGY, "restart"),
                false,
                true,
                Restart::RestartAt,
            ),
            (
                WorkloadKind::ROLLOUT,
                asks(RELOADER_ROLLOUT_STRATEGY, "restart"),
                false,
                false,
                Restart::Template,
            ),
            (
                WorkloadKind::ROLLOUT,
                asks(RELOADER_ROLLOUT_STRATEGY, "rollout"),
                false,
                true,
                Restart::Template,
            ),
            (
                WorkloadKind::ROLLOUT,
                asks(ROLLOUT_STRATEGY, "restart"),
                false,
                false,
                Restart::RestartAt,
            ),
        ];
        for (i, (kind, annotations, template_ref, compat, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                restart(kind, &annotations, template_ref, compat),
                want,
                "case {i}"
            );
        }
    }
}
