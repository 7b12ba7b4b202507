//! What kube-reloader knows of the Secrets Store CSI driver (with `--enable-csi-integration`):
//! for every `SecretProviderClassPodStatus`, the class it reports on, the workload its Pod
//! belongs to, and the `id=version` pairs it reports (8 bytes each: see [`crate::rules::csi`]).
//! Nothing else of the object is kept. SecretProviderClasses themselves go to the config store,
//! for their `ignore` and `match` annotations and their names.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as make_watcher};
use kube::{Client, Resource, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::model::kinds::{ConfigKind, WorkloadKind};
use crate::rules::assess::ConfigDigests;
use crate::rules::csi::{self, Owner, Pair, Step};
use crate::rules::digest::{Entry, WorkloadDigest};
use crate::rules::faults::Cause;
use crate::rules::optin::{ConfigFlags, ConfigView, Tracked};
use crate::state::configs::{ConfigKey, ConfigObject, ConfigStore};

/// The driver's API group and version.
pub const GROUP: &str = "secrets-store.csi.x-k8s.io";
pub const VERSION: &str = "v1";

/// A SecretProviderClass, as read: its metadata (the `ignore` and `match` annotations, its
/// name); its spec is dropped as it is decoded.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SecretProviderClass {
    pub metadata: ObjectMeta,
}

/// A `SecretProviderClassPodStatus`, as read: its metadata and what its status says.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SecretProviderClassPodStatus {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: PodStatus,
}

/// The status the driver writes for one pod and class.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub pod_name: String,
    #[serde(default)]
    pub secret_provider_class_name: String,
    #[serde(default)]
    pub objects: Vec<ObjectVersion>,
}

/// One object the driver mounted, at the version it mounted.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ObjectVersion {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub version: String,
}

macro_rules! csi_resource {
    ($t:ty, $kind:literal, $plural:literal) => {
        impl Resource for $t {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;
            fn kind(_: &()) -> Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> Cow<'_, str> {
                GROUP.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                VERSION.into()
            }
            fn api_version(_: &()) -> Cow<'_, str> {
                format!("{GROUP}/{VERSION}").into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
csi_resource!(
    SecretProviderClass,
    "SecretProviderClass",
    "secretproviderclasses"
);
csi_resource!(
    SecretProviderClassPodStatus,
    "SecretProviderClassPodStatus",
    "secretproviderclasspodstatuses"
);

impl ConfigObject for SecretProviderClass {
    const KIND: ConfigKind = ConfigKind::SecretProviderClass;
    /// No content of its own: what a workload's digest takes of a class is what its pods report.
    fn entries(&self) -> Vec<(&str, &[u8])> {
        Vec::new()
    }
}

/// Which workload a status object's Pod belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owned {
    /// Not known yet: the Pod could not be read; asked again.
    Pending,
    /// No workload that is rolled (a Job's Pod, a bare Pod, a Pod gone).
    Nothing,
    /// This workload, of this kind.
    By(WorkloadKind, Box<str>),
}

/// All that is kept of one status object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    /// The class it reports on.
    pub class: Box<str>,
    /// The Pod it is about (to find the workload, until found).
    pub pod: Box<str>,
    pub owner: Owned,
    /// The pairs it reports, sorted.
    pub pairs: Box<[Pair]>,
}

impl Reported {
    /// What is kept of a status object, its owner not yet known.
    pub fn of(obj: &SecretProviderClassPodStatus) -> Self {
        let s = &obj.status;
        let pod = if s.pod_name.is_empty() {
            let owners = obj.metadata.owner_references.iter().flatten();
            let pod = owners.filter(|o| o.kind == "Pod").map(|o| o.name.as_str());
            pod.into_iter().next().unwrap_or_default()
        } else {
            s.pod_name.as_str()
        };
        let objects = s.objects.iter();
        Reported {
            class: s.secret_provider_class_name.as_str().into(),
            pod: pod.into(),
            owner: Owned::Pending,
            pairs: csi::reported(objects.map(|o| (o.id.as_str(), o.version.as_str()))),
        }
    }

    /// Approximate bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        let owner = match &self.owner {
            Owned::By(_, name) => name.len(),
            _ => 0,
        };
        self.class.len() + self.pod.len() + owner + std::mem::size_of_val(&*self.pairs)
    }
}

/// (namespace, name) of a status object.
pub type StatusKey = (String, String);

/// Every status object's [`Reported`], shared by the watch and the reconciles.
#[derive(Default)]
pub struct CsiStore {
    statuses: RwLock<BTreeMap<StatusKey, Reported>>,
}

/// A store that holds nothing, for readers without the CSI integration.
pub static NONE: CsiStore = CsiStore::new();

impl CsiStore {
    pub const fn new() -> Self {
        Self {
            statuses: RwLock::new(BTreeMap::new()),
        }
    }

    /// The key a change of a status object is announced under: its class's.
    fn announced(ns: &str, r: &Reported) -> ConfigKey {
        (
            ns.to_string(),
            ConfigKind::SecretProviderClass,
            r.class.to_string(),
        )
    }

    /// Inserts or replaces one status object; a change of what a workload's digest reads is
    /// announced (before it becomes visible, as the config store does).
    pub fn upsert(&self, key: StatusKey, r: Reported, announce: impl FnOnce(Vec<ConfigKey>)) {
        let mut statuses = self.statuses.write().unwrap_or_else(|e| e.into_inner());
        if statuses.get(&key) == Some(&r) {
            return;
        }
        announce(vec![Self::announced(&key.0, &r)]);
        statuses.insert(key, r);
    }

    /// Removes one status object (its Pod is gone).
    pub fn remove(&self, key: &StatusKey, announce: impl FnOnce(Vec<ConfigKey>)) {
        let mut statuses = self.statuses.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = statuses.get(key) {
            announce(vec![Self::announced(&key.0, r)]);
            statuses.remove(key);
        }
    }

    /// Replaces every status object within `scope` (a namespace, or all) with a complete list.
    pub fn replace(
        &self,
        scope: Option<&str>,
        listed: BTreeMap<StatusKey, Reported>,
        announce: impl FnOnce(Vec<ConfigKey>),
    ) {
        let mut statuses = self.statuses.write().unwrap_or_else(|e| e.into_inner());
        let in_scope = |(ns, _): &StatusKey| scope.is_none_or(|s| s == ns);
        let mut changed: Vec<ConfigKey> = statuses
            .iter()
            .filter(|(k, _)| in_scope(k) && !listed.contains_key(*k))
            .map(|((ns, _), r)| Self::announced(ns, r))
            .collect();
        changed.extend(
            listed
                .iter()
                .filter(|(k, r)| statuses.get(*k) != Some(*r))
                .map(|((ns, _), r)| Self::announced(ns, r)),
        );
        changed.sort();
        changed.dedup();
        if !changed.is_empty() {
            announce(changed);
        }
        statuses.retain(|k, _| !in_scope(k));
        statuses.extend(listed);
    }

    /// The owner known for a status object (kept when it is updated: a Pod's owner stays).
    pub fn owner(&self, key: &StatusKey) -> Option<Owned> {
        let statuses = self.statuses.read().unwrap_or_else(|e| e.into_inner());
        statuses
            .get(key)
            .map(|r| r.owner.clone())
            .filter(|o| *o != Owned::Pending)
    }

    /// The status objects whose owner is not known yet.
    pub fn pending(&self) -> Vec<(StatusKey, Reported)> {
        let statuses = self.statuses.read().unwrap_or_else(|e| e.into_inner());
        let pending = statuses.iter().filter(|(_, r)| r.owner == Owned::Pending);
        pending.map(|(k, r)| (k.clone(), r.clone())).collect()
    }

    /// The digest entries of the versions the pods of workload `kind`/`name` in `namespace`
    /// report for class `class`.
    pub fn entries(
        &self,
        namespace: &str,
        kind: WorkloadKind,
        name: &str,
        class: &str,
    ) -> Vec<Entry> {
        let statuses = self.statuses.read().unwrap_or_else(|e| e.into_inner());
        let from = (namespace.to_string(), String::new());
        let mine = statuses
            .range(from..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, r)| r)
            .filter(|r| &*r.class == class)
            .filter(|r| matches!(&r.owner, Owned::By(k, n) if *k == kind && &**n == name));
        csi::entries(class, mine.flat_map(|r| r.pairs.iter()))
    }

    /// Number of status objects held.
    pub fn len(&self) -> usize {
        let statuses = self.statuses.read().unwrap_or_else(|e| e.into_inner());
        statuses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held (for the memory figures): keys, what is kept, and the map's
    /// own per-entry share.
    pub fn heap_bytes(&self) -> usize {
        let statuses = self.statuses.read().unwrap_or_else(|e| e.into_inner());
        statuses
            .iter()
            .map(|((ns, n), r)| {
                ns.capacity()
                    + n.capacity()
                    + r.heap_bytes()
                    + std::mem::size_of::<(StatusKey, Reported)>()
            })
            .sum()
    }
}

/// One workload's view of its namespace: the config store's, and the versions its own pods
/// report for the SecretProviderClasses it tracks.
pub struct WorkloadView<'a> {
    pub configs: &'a ConfigStore,
    pub csi: &'a CsiStore,
    pub namespace: &'a str,
    pub kind: WorkloadKind,
    pub name: &'a str,
}

impl ConfigView for WorkloadView<'_> {
    fn flags(&self, kind: ConfigKind, name: &str) -> Option<ConfigFlags> {
        self.configs.view(self.namespace).flags(kind, name)
    }
    fn names(&self, kind: ConfigKind) -> Vec<String> {
        self.configs.view(self.namespace).names(kind)
    }
}

impl ConfigDigests for WorkloadView<'_> {
    fn workload_digest(&self, tracked: &[Tracked], key_id: &str) -> WorkloadDigest {
        let mut entries = self.configs.entries(self.namespace, tracked);
        for t in tracked {
            if t.kind == ConfigKind::SecretProviderClass {
                let (ns, kind, name) = (self.namespace, self.kind, self.name);
                entries.extend(self.csi.entries(ns, kind, name, &t.name));
            }
        }
        WorkloadDigest::new(entries, key_id)
    }
    fn written(&self, object: &str) -> Option<Timestamp> {
        self.configs.written(self.namespace, object)
    }
}

/// Finds the workload of a Pod through ownerReferences: the Pod's controller, and a ReplicaSet's
/// own (Deployment, Argo Rollout). Metadata only; each ReplicaSet read once.
pub struct Owners {
    client: Client,
    kinds: Vec<WorkloadKind>,
    replica_sets: std::sync::Mutex<HashMap<(String, String), Owned>>,
    /// Whether a failed read was warned about since the last one that succeeded: once, not for
    /// every pod every [`RETRY`].
    warned: std::sync::atomic::AtomicBool,
}

/// ReplicaSets remembered at most: each rollout makes one, so the memory is bounded by
/// forgetting them all now and then (they are read again as needed).
const REPLICA_SETS_KEPT: usize = 4096;

fn controller_of(refs: &Option<Vec<OwnerReference>>) -> Option<Owner<'_>> {
    let refs = refs.iter().flatten();
    refs.filter(|o| o.controller == Some(true))
        .map(|o| Owner {
            api_version: &o.api_version,
            kind: &o.kind,
            name: &o.name,
        })
        .next()
}

impl Owners {
    pub fn new(client: Client, kinds: Vec<WorkloadKind>) -> Self {
        Self {
            client,
            kinds,
            replica_sets: Default::default(),
            warned: Default::default(),
        }
    }

    /// The workload Pod `pod` of `namespace` belongs to; `Err` when it could not be read.
    pub async fn of_pod(&self, namespace: &str, pod: &str) -> Result<Owned, kube::Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let Some(meta) = pods.get_metadata_opt(pod).await? else {
            return Ok(Owned::Nothing);
        };
        match csi::pod_owner(controller_of(&meta.metadata.owner_references), &self.kinds) {
            Step::Workload(kind, name) => Ok(Owned::By(kind, name.into())),
            Step::Nothing => Ok(Owned::Nothing),
            Step::ReplicaSet(rs) => self.of_replica_set(namespace, rs).await,
        }
    }

    async fn of_replica_set(&self, namespace: &str, rs: String) -> Result<Owned, kube::Error> {
        let key = (namespace.to_string(), rs);
        if let Some(owned) = crate::locked(&self.replica_sets).get(&key) {
            return Ok(owned.clone());
        }
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let owned = match api.get_metadata_opt(&key.1).await? {
            None => Owned::Nothing,
            Some(meta) => {
                let owner = controller_of(&meta.metadata.owner_references);
                match csi::replica_set_owner(owner, &self.kinds) {
                    Some((kind, name)) => Owned::By(kind, name.into()),
                    None => Owned::Nothing,
                }
            }
        };
        let mut replica_sets = crate::locked(&self.replica_sets);
        if replica_sets.len() >= REPLICA_SETS_KEPT {
            replica_sets.clear();
        }
        replica_sets.insert(key, owned.clone());
        Ok(owned)
    }

    /// The owner of a status object: the one known, or read now. A Pod that cannot be read is
    /// [`Owned::Pending`], asked again later.
    pub async fn resolve(&self, store: &CsiStore, key: &StatusKey, r: &mut Reported) {
        if let Some(known) = store.owner(key) {
            r.owner = known;
            return;
        }
        r.owner = match self.of_pod(&key.0, &r.pod).await {
            Ok(owned) => {
                self.warned.store(false, Ordering::Relaxed);
                owned
            }
            Err(e) => {
                let cause = Cause::of_client(&e);
                let what = "cannot read the Pod a SecretProviderClassPodStatus is about (kube-reloader needs get on pods and replicasets with --enable-csi-integration); asking again every";
                if self.warned.swap(true, Ordering::Relaxed) {
                    tracing::debug!(target: "kube_reloader::csi", namespace = %key.0, pod = %r.pod, cause = cause.as_str(), error = %e, "{what} {}s", RETRY.as_secs());
                } else {
                    tracing::warn!(target: "kube_reloader::csi", namespace = %key.0, pod = %r.pod, cause = cause.as_str(), error = %e, "{what} {}s", RETRY.as_secs());
                }
                Owned::Pending
            }
        };
    }
}

/// Pods read at once when a list of status objects arrives.
const RESOLVED_AT_ONCE: usize = 8;

/// How often status objects whose Pod could not be read are looked at again.
pub const RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// Callbacks of the status watch, as the config watch's.
pub struct StatusHooks<C, F, S> {
    /// A change of what a workload's digest reads, by class.
    pub changed: C,
    /// The watch failed, for this cause, and will be retried.
    pub failed: F,
    /// The first complete list was delivered and every owner looked up.
    pub synced: S,
}

/// Watches the driver's status objects within one scope, keeping `store` current. The resource
/// label selector is never applied here (see [`crate::rules::scope::WatchScope`]).
pub async fn watch(
    api: Api<SecretProviderClassPodStatus>,
    config: watcher::Config,
    scope: Option<String>,
    store: std::sync::Arc<CsiStore>,
    owners: Owners,
    hooks: StatusHooks<impl Fn(Vec<ConfigKey>), impl Fn(Cause), impl FnOnce()>,
) {
    let mut stream = make_watcher(api, config).default_backoff().boxed();
    let mut listing: Option<BTreeMap<StatusKey, Reported>> = None;
    let mut synced = Some(hooks.synced);
    let mut retry = tokio::time::interval(RETRY);
    let where_ = scope.as_deref().unwrap_or("*").to_string();
    let key_of =
        |o: &SecretProviderClassPodStatus| (o.namespace().unwrap_or_default(), o.name_any());
    loop {
        let event = tokio::select! {
            event = stream.next() => match event {
                Some(event) => event,
                None => return,
            },
            _ = retry.tick() => {
                for (key, mut r) in store.pending() {
                    owners.resolve(&store, &key, &mut r).await;
                    if r.owner != Owned::Pending {
                        store.upsert(key, r, &hooks.changed);
                    }
                }
                continue;
            }
        };
        match event {
            Ok(Event::Init) => listing = Some(BTreeMap::new()),
            Ok(Event::InitApply(obj)) => {
                if let Some(l) = listing.as_mut() {
                    l.insert(key_of(&obj), Reported::of(&obj));
                }
            }
            Ok(Event::InitDone) => {
                let mut listed = listing.take().unwrap_or_default();
                // A few Pods read at once: at start, every status object's Pod is read.
                let (owners, store) = (&owners, &*store);
                futures::stream::iter(listed.iter_mut())
                    .for_each_concurrent(RESOLVED_AT_ONCE, |(key, r)| async move {
                        owners.resolve(store, key, r).await
                    })
                    .await;
                let n = listed.len();
                store.replace(scope.as_deref(), listed, &hooks.changed);
                tracing::debug!(target: "kube_reloader::csi", scope = %where_, statuses = n, "listed");
                if let Some(synced) = synced.take() {
                    synced();
                }
            }
            Ok(Event::Apply(obj)) => {
                let key = key_of(&obj);
                let mut r = Reported::of(&obj);
                owners.resolve(&store, &key, &mut r).await;
                store.upsert(key, r, &hooks.changed);
            }
            Ok(Event::Delete(obj)) => store.remove(&key_of(&obj), &hooks.changed),
            Err(e) => {
                let cause = Cause::of(&e);
                (hooks.failed)(cause);
                tracing::warn!(target: "kube_reloader::csi", scope = %where_, cause = cause.as_str(), error = %e,
                    "{}", cause.advice("SecretProviderClassPodStatuses"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status object as the driver writes it.
    fn status(pod: &str, class: &str, versions: &[(&str, &str)]) -> SecretProviderClassPodStatus {
        let objects: Vec<_> = versions
            .iter()
            .map(|(id, version)| serde_json::json!({"id": id, "version": version}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClassPodStatus",
            "metadata": {
                "name": format!("{pod}-shop-{class}"), "namespace": "shop",
                "labels": {"internal.secrets-store.csi.k8s.io/node-name": "node-1"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": "u"}],
            },
            "status": {
                "podName": pod, "secretProviderClassName": class, "mounted": true,
                "targetPath": format!("/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/{class}/mount"),
                "objects": objects,
            },
        }))
        .expect("a status object")
    }

    fn owned(r: Reported, by: &str) -> Reported {
        Reported {
            owner: Owned::By(WorkloadKind::DEPLOYMENT, by.into()),
            ..r
        }
    }

    fn key(name: &str) -> StatusKey {
        ("shop".into(), name.into())
    }

    #[test]
    fn a_workload_reads_the_pairs_of_its_own_pods_for_each_class() {
        let store = CsiStore::default();
        let v = [("db", "1"), ("api", "7")];
        for (pod, by) in [("web-a", "web"), ("web-b", "web"), ("api-a", "api")] {
            let r = owned(Reported::of(&status(pod, "vault", &v)), by);
            store.upsert(key(pod), r, |_| {});
        }
        let other = owned(Reported::of(&status("web-a", "aws", &v)), "web");
        store.upsert(key("web-a-aws"), other, |_| {});
        let web = store.entries("shop", WorkloadKind::DEPLOYMENT, "web", "vault");
        assert_eq!(web.len(), 2, "two pods, the same two pairs");
        let api = store.entries("shop", WorkloadKind::DEPLOYMENT, "api", "vault");
        assert_eq!(web, api, "the same versions digest alike");
        assert!(
            store
                .entries("other", WorkloadKind::DEPLOYMENT, "web", "vault")
                .is_empty()
        );
        assert!(
            store
                .entries("shop", WorkloadKind::STATEFUL_SET, "web", "vault")
                .is_empty()
        );
        // One pod rotates: the union holds both versions of db.
        let rotated = owned(
            Reported::of(&status("web-a", "vault", &[("db", "2"), ("api", "7")])),
            "web",
        );
        let mut announced = Vec::new();
        store.upsert(key("web-a"), rotated.clone(), |k| announced.extend(k));
        assert_eq!(
            announced,
            [(
                "shop".to_string(),
                ConfigKind::SecretProviderClass,
                "vault".to_string()
            )]
        );
        let web = store.entries("shop", WorkloadKind::DEPLOYMENT, "web", "vault");
        assert_eq!(web.len(), 3);
        // The same status written again: nothing announced.
        store.upsert(key("web-a"), rotated, |_| panic!("no change"));
        assert_eq!(
            store.owner(&key("web-a")),
            Some(Owned::By(WorkloadKind::DEPLOYMENT, "web".into()))
        );
    }

    #[test]
    fn a_relist_announces_only_differences() {
        let store = CsiStore::default();
        let a = owned(
            Reported::of(&status("web-a", "vault", &[("db", "1")])),
            "web",
        );
        let b = owned(
            Reported::of(&status("web-b", "vault", &[("db", "1")])),
            "web",
        );
        store.upsert(key("a"), a.clone(), |_| {});
        store.upsert(key("b"), b.clone(), |_| {});
        store.replace(
            Some("shop"),
            BTreeMap::from([(key("a"), a.clone()), (key("b"), b)]),
            |_| panic!("nothing changed"),
        );
        let mut announced = Vec::new();
        store.replace(Some("shop"), BTreeMap::from([(key("a"), a)]), |k| {
            announced.extend(k)
        });
        assert_eq!(announced.len(), 1);
        assert_eq!(store.len(), 1);
    }

    /// What is kept per status object, for a typical one (a Deployment's pod, three objects):
    /// the figure docs/performance.md quotes.
    #[test]
    fn memory_per_status_object_is_small() {
        let store = CsiStore::default();
        let pod = "checkout-7d9f8c6b5d-x2x9z";
        let s = status(
            pod,
            "vault-db",
            &[("db-user", "3"), ("db-password", "3"), ("api-key", "12")],
        );
        let r = owned(Reported::of(&s), "checkout");
        store.upsert((s.namespace().unwrap_or_default(), s.name_any()), r, |_| {});
        let bytes = store.heap_bytes();
        // 128 bytes of map entry, 4 + 39 of key, 8 + 25 + 8 of class, pod and workload names,
        // 24 of pairs: 236. The BTreeMap's node slack comes on top.
        assert!(bytes < 320, "{bytes} bytes per status object");
        eprintln!(
            "csi: {bytes} bytes per status object (3 objects): entry {}, key {}",
            std::mem::size_of::<(StatusKey, Reported)>(),
            s.name_any().len() + 4
        );
    }
}
