//! What `explain` reads from the cluster: the workload, the Deployment holding its pod template,
//! the ConfigMaps and Secrets of its namespace, the digest key, its latest Event.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace, Secret};
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use thiserror::Error;

use crate::adapters::api::discover;
use crate::adapters::api::serves;
use crate::model::kinds::WorkloadKind;
use crate::reconcile::REPORTER;
use crate::rules::digest::SecretKey;
use crate::rules::optin::reloader;
use crate::rules::references::ConfigKind;
use crate::state::configs::{ConfigObject, ConfigStore, summarize};
use crate::state::csi::{
    self, CsiStore, Owners, Reported, SecretProviderClass, SecretProviderClassPodStatus,
};
use crate::state::workload::{Reading, Workload};

use super::render::{render_inventory, render_text};
use super::{Config, Configs, Found, Watched, explain, inventory};

#[derive(Debug, Error)]
pub enum ExplainError {
    #[error(
        "{0:?} is not KIND/NAME with KIND one of {1} (or their plurals and short names: deploy, sts, ds, cj, ro); for another kind, pass --workload-kind GROUP/VERSION/KIND[=PATH] as the controller has it"
    )]
    Target(String, String),
    #[error("cannot configure the Kubernetes client: {0} (set KUBECONFIG, or run in a cluster)")]
    Client(#[source] kube::Error),
    #[error("{0} is not served by this API server (is its CRD installed?)")]
    NotServed(String),
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Parses `deployment/web`, `deploy/web`, `sts/db`, `cj/nightly`, `rollout/web`, `widget/w`
/// (case-insensitive kind) against the kinds rolled.
pub fn parse_target(
    target: &str,
    kinds: &[WorkloadKind],
) -> Result<(WorkloadKind, String), ExplainError> {
    let err = || {
        let names: Vec<String> = kinds
            .iter()
            .map(|k| k.as_str().to_ascii_lowercase())
            .collect();
        ExplainError::Target(target.to_string(), names.join(", "))
    };
    let (kind, name) = target.split_once('/').ok_or_else(err)?;
    let kind = kinds
        .iter()
        .copied()
        .find(|k| k.is_named(kind))
        .ok_or_else(err)?;
    if name.is_empty() {
        return Err(err());
    }
    Ok((kind, name.to_string()))
}

/// Where objects are listed: one namespace, or all.
fn api_in<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn scope_text(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".into(),
    }
}

async fn list_into<K: ConfigObject>(
    client: &Client,
    namespace: Option<&str>,
    lp: ListParams,
    store: &ConfigStore,
    key: &SecretKey,
    compat: Option<&reloader::Names>,
) -> Result<(), ExplainError> {
    let api: Api<K> = api_in(client, namespace);
    let mut lp = lp.limit(100);
    loop {
        let list = api.list(&lp).await.map_err(|source| ExplainError::Read {
            what: format!("{}s in {}", K::KIND, scope_text(namespace)),
            source,
        })?;
        for obj in &list.items {
            store.insert(
                (obj.namespace().unwrap_or_default(), K::KIND, obj.name_any()),
                summarize(obj, key, compat),
            );
        }
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(()),
        }
    }
}

/// The ConfigMaps and Secrets of `namespace` (of all, for `None`) as the controller would see
/// them with these flags, and the installation's digest key if it can be read. Read-only:
/// explain never creates the key; without it, Secret digests cannot be compared.
async fn load_configs(
    client: &Client,
    namespace: Option<&str>,
    config: &Config,
) -> Result<(ConfigStore, Option<SecretKey>), ExplainError> {
    let key = crate::adapters::key::load(client.clone(), &config.key.namespace, &config.key.name)
        .await
        .ok()
        .flatten();
    let digest_key = key
        .clone()
        .unwrap_or_else(|| SecretKey::new(vec![0; SecretKey::MIN_LEN]));
    let store = ConfigStore::new(0);
    let compat = config.policy.reloader();
    let mut lp = ListParams::default();
    if let Some(labels) = &config.scope.resource_label_selector {
        lp = lp.labels(labels);
    }
    let kinds = config.scope.config_kinds();
    if kinds.contains(&ConfigKind::ConfigMap) {
        list_into::<ConfigMap>(client, namespace, lp.clone(), &store, &digest_key, compat).await?;
    }
    if kinds.contains(&ConfigKind::Secret) {
        if let Some(fields) = config.scope.object_fields(ConfigKind::Secret) {
            lp = lp.fields(&fields);
        }
        list_into::<Secret>(client, namespace, lp, &store, &digest_key, compat).await?;
    }
    Ok((store, key))
}

/// With `--enable-csi-integration`, the SecretProviderClasses of `namespace` (of all, for `None`)
/// into `store`, and what the pods there report to the Secrets Store CSI driver, each status
/// object's Pod read to find its workload, as the controller does. Nothing when the driver's API
/// is not served. A Pod the caller may not read counts for no workload.
async fn load_csi(
    client: &Client,
    namespace: Option<&str>,
    config: &Config,
    store: &ConfigStore,
) -> Result<CsiStore, ExplainError> {
    let reported = CsiStore::new();
    let group_version = format!("{}/{}", csi::GROUP, csi::VERSION);
    let read = |what: &str| {
        let what = format!("{what} in {}", scope_text(namespace));
        move |source| ExplainError::Read { what, source }
    };
    if !config.scope.csi()
        || !serves(client, &group_version, "secretproviderclasspodstatuses")
            .await
            .map_err(read("the API of the Secrets Store CSI driver"))?
    {
        return Ok(reported);
    }
    // As the controller: no --resource-label-selector on the driver's kinds.
    let (key, compat) = (
        SecretKey::new(vec![0; SecretKey::MIN_LEN]),
        config.policy.reloader(),
    );
    list_into::<SecretProviderClass>(
        client,
        namespace,
        ListParams::default(),
        store,
        &key,
        compat,
    )
    .await?;
    let api: Api<SecretProviderClassPodStatus> = api_in(client, namespace);
    let owners = Owners::new(client.clone(), config.scope.kinds.clone());
    let mut lp = ListParams::default().limit(500);
    loop {
        let list = api
            .list(&lp)
            .await
            .map_err(read("SecretProviderClassPodStatuses"))?;
        for obj in &list.items {
            let key = (obj.namespace().unwrap_or_default(), obj.name_any());
            let mut r = Reported::of(obj);
            owners.resolve(&reported, &key, &mut r).await;
            reported.upsert(key, r, |_| {});
        }
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(reported),
        }
    }
}

/// kube-reloader's latest Event about a workload, as `Reason: note`. Read with the caller's own
/// credentials; if they may not list Events, explain goes without.
async fn last_event(
    client: Client,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Option<String> {
    let api: Api<CoreEvent> = Api::namespaced(client, namespace);
    let fields = format!("involvedObject.kind={kind},involvedObject.name={name}");
    let list = api
        .list(&ListParams::default().fields(&fields))
        .await
        .ok()?;
    let when = |e: &CoreEvent| {
        let series = e.series.as_ref().and_then(|s| s.last_observed_time.clone());
        let at = e.event_time.clone().or(series).map(|t| t.0);
        at.or_else(|| e.last_timestamp.clone().map(|t| t.0))
    };
    list.items
        .into_iter()
        .filter(|e| e.reporting_component.as_deref() == Some(REPORTER))
        .max_by_key(when)
        .map(|e| {
            let at = when(&e).map(|t| format!(" (at {t})")).unwrap_or_default();
            format!(
                "{}: {}{at}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
}

/// A workload of `kind`, read now.
async fn fetch(
    client: &Client,
    kind: WorkloadKind,
    ns: &str,
    name: &str,
    reading: &Reading,
) -> Result<Workload, ExplainError> {
    let read = |source| ExplainError::Read {
        what: format!("{kind} {name}"),
        source,
    };
    let resource = discover(client, kind)
        .await
        .map_err(read)?
        .ok_or_else(|| ExplainError::NotServed(kind.describe()))?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let obj = api.get(name).await.map_err(read)?;
    Ok(Workload::from_dynamic_with(obj, kind, reading))
}

/// Runs `explain` against the cluster and returns the rendered output.
pub async fn run(
    target: &str,
    namespace: Option<&str>,
    json: bool,
    config: &Config,
) -> Result<String, ExplainError> {
    let (kind, name) = parse_target(target, &config.scope.kinds)?;
    let client = Client::try_default().await.map_err(ExplainError::Client)?;
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let (store, key) = load_configs(&client, Some(&namespace), config).await?;
    let csi = load_csi(&client, Some(&namespace), config, &store).await?;
    let configs = Configs {
        store: &store,
        csi: &csi,
    };

    let ns = namespace.as_str();
    let obj = fetch(&client, kind, ns, &name, &config.reading()).await?;
    let source = match &obj.template_ref {
        Some(r) if obj.kind.spec().argo && r.kind == "Deployment" => Some(
            fetch(
                &client,
                WorkloadKind::DEPLOYMENT,
                ns,
                &r.name,
                &config.reading(),
            )
            .await?,
        ),
        _ => None,
    };
    let mut e = explain(&obj, source.as_ref(), configs, key.as_ref(), &config.policy);
    e.last_event = last_event(client, ns, kind, &name).await;
    if json {
        Ok(serde_json::to_string_pretty(&e).unwrap_or_default() + "\n")
    } else {
        Ok(render_text(&e))
    }
}

/// Every workload of `kind` in `namespace` (all namespaces for `None`), sorted by namespace and
/// name.
async fn list_workloads(
    client: &Client,
    resource: &kube::api::ApiResource,
    kind: WorkloadKind,
    namespace: Option<&str>,
    reading: &Reading,
) -> Result<Vec<Workload>, ExplainError> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let mut lp = ListParams::default().limit(50);
    let mut out = Vec::new();
    loop {
        let list = api.list(&lp).await.map_err(|source| ExplainError::Read {
            what: format!("{}s in {}", kind, scope_text(namespace)),
            source,
        })?;
        out.extend(
            list.items
                .into_iter()
                .map(|o| Workload::from_dynamic_with(o, kind, reading)),
        );
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    out.sort_by_key(|w| (w.namespace(), w.name_any()));
    Ok(out)
}

/// Runs `explain --all` against the cluster and returns the rendered output: the workloads of
/// `namespace` (default: the kubeconfig context's), or of every namespace.
pub async fn run_all(
    namespace: Option<&str>,
    all_namespaces: bool,
    json: bool,
    config: &Config,
) -> Result<String, ExplainError> {
    let client = Client::try_default().await.map_err(ExplainError::Client)?;
    let namespace = (!all_namespaces).then(|| {
        namespace
            .map(str::to_string)
            .unwrap_or_else(|| client.default_namespace().to_string())
    });
    let scope = namespace.as_deref();
    let (store, key) = load_configs(&client, scope, config).await?;
    let csi = load_csi(&client, scope, config, &store).await?;

    let mut listed = Vec::new();
    let mut not_served = Vec::new();
    for kind in config.scope.kinds.iter().copied() {
        let resource = discover(&client, kind)
            .await
            .map_err(|source| ExplainError::Read {
                what: format!("the API of {}", kind.describe()),
                source,
            })?;
        match resource {
            Some(resource) => {
                listed.extend(
                    list_workloads(&client, &resource, kind, scope, &config.reading()).await?,
                );
            }
            None => not_served.push(format!("{}/{}", kind.api_version(), kind)),
        }
    }
    // The Deployments Argo Rollouts' spec.workloadRef names: from the list when Deployments are
    // rolled, otherwise read one by one.
    let deployments: HashMap<(String, String), &Workload> = listed
        .iter()
        .filter(|w| w.kind == WorkloadKind::DEPLOYMENT)
        .map(|w| ((w.namespace().unwrap_or_default(), w.name_any()), w))
        .collect();
    let mut found: Vec<Found> = Vec::with_capacity(listed.len());
    for obj in &listed {
        let source = match &obj.template_ref {
            Some(r) if obj.kind.spec().argo && r.kind == "Deployment" => {
                let ns = obj.namespace().unwrap_or_default();
                match deployments.get(&(ns.clone(), r.name.clone())) {
                    Some(d) => Ok(Some((*d).clone())),
                    None => fetch(
                        &client,
                        WorkloadKind::DEPLOYMENT,
                        &ns,
                        &r.name,
                        &config.reading(),
                    )
                    .await
                    .map(Some)
                    .map_err(|e| {
                        format!(
                            "the Deployment {} its spec.workloadRef names cannot be read: {e}",
                            r.name
                        )
                    }),
                }
            }
            _ => Ok(None),
        };
        found.push((obj.clone(), source));
    }
    let matching = match &config.scope.namespace_selector {
        Some(selector) => {
            let api: Api<Namespace> = Api::all(client.clone());
            let lp = ListParams::default().labels(selector);
            let list = api
                .list_metadata(&lp)
                .await
                .map_err(|source| ExplainError::Read {
                    what: format!("the namespaces --namespace-selector={selector} selects"),
                    source,
                })?;
            Some(list.items.iter().map(|n| n.name_any()).collect())
        }
        None => None,
    };
    let watched = Watched {
        only: config.scope.namespaces.clone(),
        ignored: config.scope.ignored_namespaces.clone(),
        matching,
    };
    let configs = Configs {
        store: &store,
        csi: &csi,
    };
    let inv = inventory(
        namespace,
        &found,
        configs,
        key.as_ref(),
        &config.policy,
        &watched,
        not_served,
    );
    if json {
        Ok(serde_json::to_string_pretty(&inv).unwrap_or_default() + "\n")
    } else {
        Ok(render_inventory(&inv))
    }
}
