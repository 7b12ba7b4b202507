//! What is watched: the namespaces, and the field selectors that leave out ignored namespaces and
//! skipped Secret types.

use std::collections::HashSet;

use crate::model::kinds::{ConfigKind, WorkloadKind};

/// Secret types never watched unless `--watch-all-secret-types`: Helm release records are large
/// and numerous, service-account tokens are managed by Kubernetes; neither is app configuration.
pub const SKIPPED_SECRET_TYPES: [&str; 2] =
    ["helm.sh/release.v1", "kubernetes.io/service-account-token"];

/// The namespaces to watch, one scope each; `None` stands for all namespaces.
pub fn scopes(namespaces: &[String], ignored: &[String]) -> Vec<Option<String>> {
    if namespaces.is_empty() {
        return vec![None];
    }
    let mut seen = HashSet::new();
    namespaces
        .iter()
        .filter(|n| !n.is_empty() && !ignored.contains(n) && seen.insert(n.as_str()))
        .map(|n| Some(n.clone()))
        .collect()
}

/// Field selector excluding ignored namespaces (and, for Secrets, skipped types).
pub fn field_selector(ignored: &[String], secret_types: &[&str]) -> Option<String> {
    let parts: Vec<String> = ignored
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| format!("metadata.namespace!={n}"))
        .chain(secret_types.iter().map(|t| format!("type!={t}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// What is watched, and so what the controller, the reconcile and explain read: the one place
/// that says it, built once from the command line.
#[derive(Debug, Clone, Default)]
pub struct WatchScope {
    /// `--namespace`: the namespaces watched (all when empty).
    pub namespaces: Vec<String>,
    /// `--ignore-namespace`: the namespaces never watched.
    pub ignored_namespaces: Vec<String>,
    /// `--namespace-selector`: the namespaces whose workloads are reconciled.
    pub namespace_selector: Option<String>,
    /// `--resource-label-selector`: the ConfigMaps and Secrets watched. Never applied to the
    /// Secrets Store CSI driver's objects: the status objects are the driver's, and carry no
    /// labels of their users (applying it would stop every CSI reload without a word).
    pub resource_label_selector: Option<String>,
    /// `--resources-to-ignore`: the kinds of config object not watched; SecretProviderClasses
    /// among them unless `--enable-csi-integration`.
    pub ignored_kinds: Vec<ConfigKind>,
    /// Secret types the Secret watch leaves out ([`SKIPPED_SECRET_TYPES`] unless
    /// `--watch-all-secret-types`).
    pub skipped_secret_types: &'static [&'static str],
    /// The workload kinds rolled.
    pub kinds: Vec<WorkloadKind>,
    /// The kinds the user named (`--kinds` when given, every `--workload-kind`).
    pub named_kinds: Vec<WorkloadKind>,
}

impl WatchScope {
    /// The namespaces to watch, one scope each; `None` stands for all namespaces.
    pub fn scopes(&self) -> Vec<Option<String>> {
        scopes(&self.namespaces, &self.ignored_namespaces)
    }

    /// The kinds of config object watched.
    pub fn config_kinds(&self) -> Vec<ConfigKind> {
        ConfigKind::ALL
            .into_iter()
            .filter(|k| !self.ignored_kinds.contains(k))
            .collect()
    }

    /// `--enable-csi-integration`: SecretProviderClasses, and the status objects the Secrets
    /// Store CSI driver writes for each pod, are watched.
    pub fn csi(&self) -> bool {
        !self
            .ignored_kinds
            .contains(&ConfigKind::SecretProviderClass)
    }

    /// The label selector of the watch of `kind`: `--resource-label-selector` for ConfigMaps and
    /// Secrets, none for SecretProviderClasses (see [`Self::resource_label_selector`]).
    pub fn config_labels(&self, kind: ConfigKind) -> Option<&str> {
        match kind {
            ConfigKind::SecretProviderClass => None,
            _ => self.resource_label_selector.as_deref(),
        }
    }

    /// The field selector of the watch of `kind`: ignored namespaces, and skipped Secret types.
    pub fn config_fields(&self, kind: ConfigKind) -> Option<String> {
        match kind {
            ConfigKind::ConfigMap | ConfigKind::SecretProviderClass => {
                field_selector(&self.ignored_namespaces, &[])
            }
            ConfigKind::Secret => {
                field_selector(&self.ignored_namespaces, self.skipped_secret_types)
            }
        }
    }

    /// The field selector of a read of objects of `kind` in one namespace: as its watch, less
    /// the namespaces (the one read is watched).
    pub fn object_fields(&self, kind: ConfigKind) -> Option<String> {
        match kind {
            ConfigKind::ConfigMap | ConfigKind::SecretProviderClass => None,
            ConfigKind::Secret => field_selector(&[], self.skipped_secret_types),
        }
    }

    /// The field selector of the workload watches: ignored namespaces.
    pub fn workload_fields(&self) -> Option<String> {
        field_selector(&self.ignored_namespaces, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn scopes_from_flags() {
        assert_eq!(scopes(&[], &s(&["x"])), vec![None]);
        assert_eq!(
            scopes(&s(&["a", "b", "a", "x"]), &s(&["x"])),
            vec![Some("a".to_string()), Some("b".to_string())]
        );
        assert!(scopes(&s(&["x"]), &s(&["x"])).is_empty());
    }

    #[test]
    fn field_selectors() {
        assert_eq!(field_selector(&[], &[]), None);
        assert_eq!(
            field_selector(&s(&["kube-system"]), &SKIPPED_SECRET_TYPES).as_deref(),
            Some(
                "metadata.namespace!=kube-system,type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token"
            )
        );
    }
}
