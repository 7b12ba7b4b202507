//! The ConfigMaps, Secrets and SecretProviderClasses a pod template references, and which keys
//! of them it reads.
//!
//! Sites: `volumes[].configMap|secret`, `volumes[].projected.sources[].configMap|secret`,
//! `env[].valueFrom.configMapKeyRef|secretKeyRef` and `envFrom[].configMapRef|secretRef`, in
//! `containers` and `initContainers`; and the Secrets Store CSI driver's volumes
//! (`volumes[].csi`, driver [`CSI_DRIVER`], `volumeAttributes.secretProviderClass`), whose
//! SecretProviderClass is read whole. `imagePullSecrets` are deliberately not tracked: a changed pull
//! secret does not change what a running container sees.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, KeyToPath, PodSpec};

pub use crate::model::kinds::ConfigKind;

/// The Secrets Store CSI driver's name, in a CSI volume's `driver`.
pub const CSI_DRIVER: &str = "secrets-store.csi.k8s.io";
/// The volume attribute naming the SecretProviderClass a CSI volume mounts.
pub const CSI_SPC_ATTRIBUTE: &str = "secretProviderClass";

/// Which keys of an object a workload reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keys {
    All,
    Only(BTreeSet<String>),
}

impl Keys {
    /// The keys read by two uses together.
    pub fn merge(&mut self, other: Keys) {
        match (&mut *self, other) {
            (Keys::All, _) => {}
            (_, Keys::All) => *self = Keys::All,
            (Keys::Only(a), Keys::Only(b)) => a.extend(b),
        }
    }

    fn from_items(items: Option<&Vec<KeyToPath>>) -> Keys {
        match items {
            Some(items) if !items.is_empty() => {
                Keys::Only(items.iter().map(|i| i.key.clone()).collect())
            }
            _ => Keys::All,
        }
    }

    fn one(key: &str) -> Keys {
        Keys::Only(BTreeSet::from([key.to_string()]))
    }
}

/// How a pod template uses one ConfigMap or Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub keys: Keys,
    /// Where it is referenced, e.g. `volume config`, `container app env LOG_LEVEL`.
    pub sites: Vec<String>,
}

/// References of a pod template, by (kind, name).
pub type References = BTreeMap<(ConfigKind, String), Usage>;

fn add(refs: &mut References, kind: ConfigKind, name: &str, keys: Keys, site: String) {
    if name.is_empty() {
        return;
    }
    match refs.get_mut(&(kind, name.to_string())) {
        Some(usage) => {
            usage.keys.merge(keys);
            usage.sites.push(site);
        }
        None => {
            refs.insert(
                (kind, name.to_string()),
                Usage {
                    keys,
                    sites: vec![site],
                },
            );
        }
    }
}

fn container_refs(refs: &mut References, c: &Container, role: &str) {
    for env in c.env.iter().flatten() {
        let Some(from) = &env.value_from else {
            continue;
        };
        let site = || format!("{role} {} env {}", c.name, env.name);
        if let Some(r) = &from.config_map_key_ref {
            add(
                refs,
                ConfigKind::ConfigMap,
                &r.name,
                Keys::one(&r.key),
                site(),
            );
        }
        if let Some(r) = &from.secret_key_ref {
            add(refs, ConfigKind::Secret, &r.name, Keys::one(&r.key), site());
        }
    }
    for from in c.env_from.iter().flatten() {
        let site = || format!("{role} {} envFrom", c.name);
        if let Some(r) = &from.config_map_ref {
            add(refs, ConfigKind::ConfigMap, &r.name, Keys::All, site());
        }
        if let Some(r) = &from.secret_ref {
            add(refs, ConfigKind::Secret, &r.name, Keys::All, site());
        }
    }
}

/// Every ConfigMap and Secret the pod spec references, with the keys it reads.
pub fn references(spec: &PodSpec) -> References {
    let mut refs = References::new();
    for v in spec.volumes.iter().flatten() {
        let site = || format!("volume {}", v.name);
        if let Some(cm) = &v.config_map {
            let keys = Keys::from_items(cm.items.as_ref());
            add(&mut refs, ConfigKind::ConfigMap, &cm.name, keys, site());
        }
        if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().unwrap_or_default();
            let keys = Keys::from_items(s.items.as_ref());
            add(&mut refs, ConfigKind::Secret, name, keys, site());
        }
        if let Some(csi) = v.csi.as_ref().filter(|c| c.driver == CSI_DRIVER) {
            let attributes = csi.volume_attributes.as_ref();
            let spc = attributes.and_then(|a| a.get(CSI_SPC_ATTRIBUTE));
            let (kind, name) = (ConfigKind::SecretProviderClass, spc.map(String::as_str));
            add(&mut refs, kind, name.unwrap_or_default(), Keys::All, site());
        }
        let sources = v.projected.as_ref().and_then(|p| p.sources.as_ref());
        for src in sources.into_iter().flatten() {
            if let Some(cm) = &src.config_map {
                let keys = Keys::from_items(cm.items.as_ref());
                add(&mut refs, ConfigKind::ConfigMap, &cm.name, keys, site());
            }
            if let Some(s) = &src.secret {
                let keys = Keys::from_items(s.items.as_ref());
                add(&mut refs, ConfigKind::Secret, &s.name, keys, site());
            }
        }
    }
    for c in spec.init_containers.iter().flatten() {
        container_refs(&mut refs, c, "initContainer");
    }
    for c in &spec.containers {
        container_refs(&mut refs, c, "container");
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("valid PodSpec")
    }

    fn only(keys: &[&str]) -> Keys {
        Keys::Only(keys.iter().map(|k| k.to_string()).collect())
    }

    fn keys_of(refs: &References, kind: ConfigKind, name: &str) -> Option<Keys> {
        refs.get(&(kind, name.to_string())).map(|u| u.keys.clone())
    }

    #[test]
    fn finds_every_site_with_its_keys() {
        use ConfigKind::*;
        let refs = references(&spec(json!({
            "volumes": [
                {"name": "whole", "configMap": {"name": "cm-vol"}},
                {"name": "some", "configMap": {"name": "cm-items", "items": [{"key": "a", "path": "a"}]}},
                {"name": "sec", "secret": {"secretName": "sec-vol"}},
                {"name": "proj", "projected": {"sources": [
                    {"configMap": {"name": "cm-proj", "items": [{"key": "p", "path": "p"}]}},
                    {"secret": {"name": "sec-proj"}},
                    {"serviceAccountToken": {"path": "token"}}
                ]}},
                {"name": "scratch", "emptyDir": {}}
            ],
            "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "sec-init"}}]}],
            "containers": [{
                "name": "app",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "x"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec-env", "key": "y"}}},
                    {"name": "C", "value": "literal"},
                    {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
                "envFrom": [{"configMapRef": {"name": "cm-from"}}]
            }],
            "imagePullSecrets": [{"name": "pull"}]
        })));
        let expect = [
            (ConfigMap, "cm-vol", Keys::All),
            (ConfigMap, "cm-items", only(&["a"])),
            (Secret, "sec-vol", Keys::All),
            (ConfigMap, "cm-proj", only(&["p"])),
            (Secret, "sec-proj", Keys::All),
            (Secret, "sec-init", Keys::All),
            (ConfigMap, "cm-env", only(&["x"])),
            (Secret, "sec-env", only(&["y"])),
            (ConfigMap, "cm-from", Keys::All),
        ];
        for (kind, name, keys) in &expect {
            assert_eq!(
                keys_of(&refs, *kind, name).as_ref(),
                Some(keys),
                "{kind}/{name}"
            );
        }
        assert_eq!(refs.len(), expect.len(), "{refs:?}");
        assert_eq!(keys_of(&refs, Secret, "pull"), None);
        assert_eq!(
            refs[&(ConfigMap, "cm-env".to_string())].sites,
            vec!["container app env A"]
        );
        assert_eq!(
            refs[&(Secret, "sec-init".to_string())].sites,
            vec!["initContainer init envFrom"]
        );
    }

    #[test]
    fn uses_of_one_object_merge() {
        let refs = references(&spec(json!({
            "volumes": [{"name": "v", "configMap": {"name": "c", "items": [{"key": "f", "path": "f"}]}}],
            "containers": [{"name": "app", "env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "e"}}}
            ]}]
        })));
        assert_eq!(
            keys_of(&refs, ConfigKind::ConfigMap, "c"),
            Some(only(&["e", "f"]))
        );

        let refs = references(&spec(json!({
            "volumes": [{"name": "v", "configMap": {"name": "c"}}],
            "containers": [{"name": "app", "env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "e"}}}
            ]}]
        })));
        assert_eq!(keys_of(&refs, ConfigKind::ConfigMap, "c"), Some(Keys::All));
        assert_eq!(refs.values().next().map(|u| u.sites.len()), Some(2));
    }

    #[test]
    fn secrets_store_csi_volumes_name_their_secret_provider_class() {
        let refs = references(&spec(json!({
            "volumes": [
                {"name": "vault", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
                    "volumeAttributes": {"secretProviderClass": "vault-db"}}},
                {"name": "again", "csi": {"driver": "secrets-store.csi.k8s.io",
                    "volumeAttributes": {"secretProviderClass": "vault-db"}}},
                // Another CSI driver, and the driver's volume without a class: nothing.
                {"name": "other", "csi": {"driver": "ebs.csi.aws.com",
                    "volumeAttributes": {"secretProviderClass": "not-this"}}},
                {"name": "bare", "csi": {"driver": "secrets-store.csi.k8s.io"}},
                {"name": "same-name", "secret": {"secretName": "vault-db"}}
            ],
            "containers": [{"name": "app"}]
        })));
        let spc = (ConfigKind::SecretProviderClass, "vault-db".to_string());
        assert_eq!(refs[&spc].keys, Keys::All);
        assert_eq!(refs[&spc].sites, ["volume vault", "volume again"]);
        assert_eq!(refs.len(), 2, "{refs:?}");
        assert!(refs.contains_key(&(ConfigKind::Secret, "vault-db".to_string())));
    }

    #[test]
    fn configmap_and_secret_of_same_name_are_distinct() {
        let refs = references(&spec(json!({
            "containers": [{"name": "app", "envFrom": [
                {"configMapRef": {"name": "same"}}, {"secretRef": {"name": "same"}}
            ]}]
        })));
        assert_eq!(refs.len(), 2);
    }
}
