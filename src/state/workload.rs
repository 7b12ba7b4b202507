//! The cached workload: every kind is watched through the dynamic API and cached in one slim
//! shape, [`Workload`], so one reconcile serves them all.

use std::borrow::Cow;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::core::DynamicResourceScope;
use kube::{Resource, ResourceExt};
use serde::Deserialize;

use crate::model::annotations::reloader::Names;
use crate::model::annotations::{FIELD_MANAGER, written::CONFIG_HASH};
use crate::model::kinds::WorkloadKind;
use crate::rules::assess::Subject;
use crate::rules::digest;
use crate::rules::rollout::Status;
use crate::rules::template::Template;

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
    /// Whether its baseline (`kube-reloader.io/config-hash`) holds a value someone other than
    /// kube-reloader wrote ([`digest::written_by_others`]), for the kinds written by server-side
    /// apply (whose next write makes the field kube-reloader's again; a merge patch of the same
    /// value would not).
    pub baseline_by_others: bool,
    /// What the rules read of its status, to tell when a rollout completed or failed.
    pub status: Status,
    /// `spec.selector.matchLabels` as a label selector (`a=b,c=d`), to find its pods.
    pub selector: Option<String>,
    /// When its pod template was last written by someone other than kube-reloader (its
    /// managedFields' time, read before they are dropped).
    pub template_written: Option<Timestamp>,
}

impl Workload {
    /// What the rules assess: this workload, with the pod template of `source` (the Deployment
    /// an Argo Rollout's `spec.workloadRef` names) when it has one, else its own.
    pub fn subject<'a>(&'a self, source: Option<&'a Workload>) -> Subject<'a> {
        Subject {
            kind: self.kind,
            annotations: self.annotations(),
            template: source.unwrap_or(self).template.as_ref(),
            template_ref: self.template_ref.is_some(),
            baseline_by_others: self.baseline_by_others,
            template_written: source.unwrap_or(self).template_written,
        }
    }

    /// The slim copy of a watched object of `kind`, read the default way
    /// ([`Workload::from_dynamic_with`]).
    pub fn from_dynamic(obj: DynamicObject, kind: WorkloadKind) -> Self {
        Self::from_dynamic_with(obj, kind, &Reading::default())
    }

    /// The slim copy of a watched object of `kind`, keeping Reloader's annotations under the
    /// names `reading` gives besides those of the usual prefixes, and telling kube-reloader's
    /// writes by its field manager. A pod template that does not parse counts as none (a
    /// workload without one is never rolled).
    pub fn from_dynamic_with(obj: DynamicObject, kind: WorkloadKind, reading: &Reading) -> Self {
        let status = Status::of(kind, &obj.data, obj.metadata.generation);
        let selector = obj
            .data
            .pointer("/spec/selector/matchLabels")
            .and_then(serde_json::Value::as_object)
            .filter(|labels| !labels.is_empty())
            .map(|labels| {
                let pairs = labels
                    .iter()
                    .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)));
                pairs.collect::<Vec<_>>().join(",")
            });
        let DynamicObject {
            metadata, mut data, ..
        } = obj;
        let mut at = Some(&mut data);
        for field in kind.spec().template_path {
            at = at.and_then(|v| v.get_mut(*field));
        }
        let template = at
            .map(serde_json::Value::take)
            .filter(|v| !v.is_null())
            .and_then(|v| Template::of(&v));
        let spec = data.get_mut("spec");
        let (template_ref, restart_at) = match spec {
            Some(spec) if kind.spec().argo => (
                spec.get_mut("workloadRef")
                    .map(serde_json::Value::take)
                    .and_then(|v| serde_json::from_value(v).ok()),
                spec.get("restartAt")
                    .and_then(|v| v.as_str())
                    .map(String::from),
            ),
            _ => (None, None),
        };
        let baseline_by_others = kind.spec().apply
            && digest::written_by_others(&metadata, CONFIG_HASH, reading.field_manager);
        let template_fields: Vec<String> = kind
            .spec()
            .template_path
            .iter()
            .map(|field| format!("f:{field}"))
            .collect();
        let template_fields: Vec<&str> = template_fields.iter().map(String::as_str).collect();
        let template_written =
            digest::last_written(&metadata, &[&template_fields], reading.field_manager);
        Workload {
            kind,
            metadata: slim(metadata, &reading.names),
            template,
            template_ref,
            restart_at,
            baseline_by_others,
            status,
            selector,
            template_written,
        }
    }

    /// One of the pod template's annotations.
    pub fn template_annotation(&self, key: &str) -> Option<&str> {
        self.template.as_ref().and_then(|t| t.annotation(key))
    }
}

/// How a workload is read into its slim copy: the names of Reloader's annotations to keep (its
/// `--*-annotation` flags), and the field manager kube-reloader writes with (`--field-manager`),
/// to tell its own writes from others'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub names: Names,
    pub field_manager: &'static str,
}

impl Default for Reading {
    fn default() -> Self {
        Reading {
            names: Names::STAKATER,
            field_manager: FIELD_MANAGER,
        }
    }
}

/// The metadata the rules read: identity, version, and the annotations that are ours or stakater
/// Reloader's (not kubectl's copy of the whole object, nor Helm's, Argo CD's and others').
fn slim(meta: ObjectMeta, names: &Names) -> ObjectMeta {
    let mut annotations = meta.annotations;
    if let Some(a) = annotations.as_mut() {
        a.retain(|k, _| is_read(k) || names.on_workloads(k));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::model::annotations::{RELOADER_ROLLOUT_STRATEGY, ROLLOUT_STRATEGY};
    use crate::model::kinds::{ConfigKind, resolve};
    use crate::rules::template::{Restart, restart, template_references};
    use serde_json::json;

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
        let w = Workload::from_dynamic(d.clone(), WorkloadKind::DEPLOYMENT);
        // Under Reloader's --*-annotation flags, their names are kept too.
        let renamed = Names {
            auto: "meta.helm.sh/release-name",
            ..Names::STAKATER
        };
        let reading = Reading {
            names: renamed,
            ..Reading::default()
        };
        let kept = Workload::from_dynamic_with(d, WorkloadKind::DEPLOYMENT, &reading);
        let kept = kept.metadata.annotations.expect("annotations");
        assert!(kept.contains_key("meta.helm.sh/release-name"), "{kept:?}");
        assert_eq!(kept.len(), 3, "{kept:?}");
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
    fn a_baseline_rewritten_by_someone_else_is_noted_for_applied_kinds_only() {
        let object = |api_version: &str, kind: &str, owner: &str| {
            dynamic(json!({
                "apiVersion": api_version, "kind": kind,
                "metadata": {
                    "name": "web", "namespace": "app",
                    "annotations": {CONFIG_HASH: "h"},
                    "managedFields": [{
                        "manager": owner, "operation": "Update", "apiVersion": api_version,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:metadata": {"f:annotations": {"f:kube-reloader.io/config-hash": {}}}},
                    }],
                },
                "spec": {"template": {}},
            }))
        };
        let deployment = |owner| {
            Workload::from_dynamic(
                object("apps/v1", "Deployment", owner),
                WorkloadKind::DEPLOYMENT,
            )
        };
        assert!(deployment("kubectl-rollout").baseline_by_others);
        assert!(!deployment(FIELD_MANAGER).baseline_by_others);
        // Under --field-manager, that manager's writes are ours, the default's someone else's.
        let platform = Reading {
            field_manager: "platform-reloader",
            ..Reading::default()
        };
        let as_platform = |owner| {
            let o = object("apps/v1", "Deployment", owner);
            Workload::from_dynamic_with(o, WorkloadKind::DEPLOYMENT, &platform)
        };
        assert!(!as_platform("platform-reloader").baseline_by_others);
        assert!(as_platform(FIELD_MANAGER).baseline_by_others);
        // A kind written by merge patch: a write of the same value would not take the field
        // back, so who wrote it is not asked.
        let widget = WorkloadKind::parse("example.com/v1/Widget").expect("a kind");
        let w = Workload::from_dynamic(object("example.com/v1", "Widget", "other"), widget);
        assert!(!w.baseline_by_others);
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
