//! API helpers: an `Api` for a watched scope, and where the API server serves a kind.

use kube::Client;
use kube::api::{Api, ApiResource, GroupVersionKind};
use kube::discovery;

use crate::model::kinds::WorkloadKind;

pub fn api_for<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Finds where the API server serves `kind`: `None` while it does not (its CRD is not installed,
/// or this Kubernetes version lacks it).
pub async fn discover(
    client: &Client,
    kind: WorkloadKind,
) -> Result<Option<ApiResource>, kube::Error> {
    let spec = kind.spec();
    let gvk = GroupVersionKind::gvk(spec.group, spec.version, spec.kind);
    match discovery::pinned_kind(client, &gvk).await {
        Ok((resource, _)) => Ok(Some(resource)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the API server serves `plural` in `group_version` (`group/version`): false while it
/// does not (the CRD is not installed).
pub async fn serves(
    client: &Client,
    group_version: &str,
    plural: &str,
) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}
