//! The workload kinds kube-reloader rolls. They differ only in type and in where their pod template
//! lives; everything else goes through one reconcile.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 3] = [Self::Deployment, Self::StatefulSet, Self::DaemonSet];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// kubectl's client-side apply record: a copy of the whole object as last applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A Deployment, StatefulSet or DaemonSet.
pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + fmt::Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    const KIND: WorkloadKind;
    fn template(&self) -> Option<&PodTemplateSpec>;

    /// Drops what kube-reloader never reads before the object is cached: its status, its
    /// managedFields and kubectl's last-applied copy of the whole object. These are most of a
    /// typical workload's size, and the controller's cache holds every watched workload.
    fn slim(&mut self) {
        let meta = self.meta_mut();
        meta.managed_fields = None;
        if let Some(a) = meta.annotations.as_mut() {
            a.remove(LAST_APPLIED);
        }
        self.clear_status();
    }

    fn clear_status(&mut self);

    /// The pod template's annotations (empty when it has none).
    fn template_annotations(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .unwrap_or(&EMPTY)
    }
}

impl Workload for Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn clear_status(&mut self) {
        self.status = None;
    }
}

impl Workload for StatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn clear_status(&mut self) {
        self.status = None;
    }
}

impl Workload for DaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn clear_status(&mut self) {
        self.status = None;
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

    #[test]
    fn slimming_keeps_what_reconciles_read_and_drops_the_rest() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "app", "uid": "u1", "resourceVersion": "7",
                "annotations": {
                    "kube-reloader.io/auto": "true",
                    LAST_APPLIED: "{\"a whole copy\": true}",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Update"}],
            },
            "spec": {
                "selector": {},
                "template": {
                    "metadata": {"annotations": {"reloader.stakater.com/auto": "true"}},
                    "spec": {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]},
                },
            },
            "status": {"replicas": 3, "observedGeneration": 2},
        }))
        .expect("a Deployment");
        let before = d.clone();
        d.slim();
        assert_eq!(d.metadata.managed_fields, None);
        assert_eq!(d.status, None);
        let annotations = d.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["kube-reloader.io/auto"]
        );
        assert_eq!(d.spec, before.spec);
        assert_eq!(d.template_annotations(), before.template_annotations());
        assert_eq!(
            (d.metadata.uid, d.metadata.resource_version),
            (before.metadata.uid, before.metadata.resource_version)
        );
    }
}
