//! ConfigMaps, Secrets and Events in a test namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::TestNs;

fn pairs(data: &[(&str, &str)]) -> BTreeMap<String, String> {
    data.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Creates or updates a ConfigMap to exactly this data and these annotations.
pub async fn configmap(ns: &TestNs, name: &str, data: &[(&str, &str)], annotations: Value) {
    configmap_with(ns, name, data, json!({"annotations": annotations})).await;
}

/// Creates or updates a ConfigMap to exactly this data and these metadata fields (labels,
/// annotations), besides its name.
pub async fn configmap_with(ns: &TestNs, name: &str, data: &[(&str, &str)], metadata: Value) {
    let mut metadata = metadata;
    metadata["name"] = json!(name);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": metadata,
        "data": pairs(data),
    });
    ns.api::<ConfigMap>()
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&cm),
        )
        .await
        .expect("apply ConfigMap");
}

/// Creates or updates a Secret to exactly this data (given as plain text).
pub async fn secret(ns: &TestNs, name: &str, data: &[(&str, &str)], annotations: Value) {
    let s = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "annotations": annotations},
        "stringData": pairs(data),
        "type": "Opaque",
    });
    // stringData is merged into data; clear data first so removed keys go away.
    let _ = ns
        .api::<Secret>()
        .delete(name, &DeleteParams::default())
        .await;
    super::wait_for(
        "Secret deletion",
        std::time::Duration::from_secs(10),
        || async {
            ns.api::<Secret>()
                .get_opt(name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    ns.api::<Secret>()
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&s))
        .await
        .expect("apply Secret");
}

/// Changes a Secret's data in place.
pub async fn update_secret(ns: &TestNs, name: &str, data: &[(&str, &str)]) {
    let s = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": pairs(data),
    });
    ns.api::<Secret>()
        .patch(
            name,
            &PatchParams::apply("test-update").force(),
            &Patch::Apply(&s),
        )
        .await
        .expect("update Secret");
}

pub async fn delete_configmap(ns: &TestNs, name: &str) {
    ns.api::<ConfigMap>()
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete ConfigMap");
}

/// Notes of the Events with `reason` about the object `name`.
pub async fn events(ns: &TestNs, name: &str, reason: &str) -> Vec<String> {
    events_about(ns, None, name, reason).await
}

/// Notes of the Events with `reason` about the object `name`, of `kind` when given.
pub async fn events_about(
    ns: &TestNs,
    kind: Option<&str>,
    name: &str,
    reason: &str,
) -> Vec<String> {
    let list = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("list Events");
    list.items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.name.as_deref() == Some(name) && kind.is_none_or(|k| r.kind.as_deref() == Some(k))
            })
        })
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}
