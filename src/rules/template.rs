//! What the rules read of a pod template (its annotations, the objects it references, its digest),
//! and how a workload is rolled.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::Deserialize;

use crate::model::annotations::{
    RELOADER_ROLLOUT_STRATEGY, ROLLOUT_STRATEGY, written::CONFIG_HASH,
};
use crate::model::kinds::{ConfigKind, WorkloadKind};
use crate::rules::digest;
use crate::rules::references::{References, Usage, references};

/// How a workload is rolled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Our annotation in its pod template changes: its own controller replaces the pods.
    Template,
    /// Argo Rollouts' `spec.restartAt` is set to now: Argo restarts the pods. For a Rollout whose
    /// template lives in a referenced Deployment (which must not be edited), or that asks for it.
    RestartAt,
}

/// How a workload of `kind`, with these metadata annotations, is rolled.
pub fn restart(
    kind: WorkloadKind,
    annotations: &BTreeMap<String, String>,
    template_ref: bool,
    reloader_compat: bool,
) -> Restart {
    if !kind.spec().argo {
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
}
