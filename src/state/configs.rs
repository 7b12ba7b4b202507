//! What kube-reloader knows of every watched ConfigMap and Secret: its per-key digests and the
//! few annotations the rules read. Content is digested as each object arrives and then dropped,
//! so memory does not grow with the size of the data watched.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as make_watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use crate::model::annotations::ours::RELEASE_HOLD;
use crate::rules::assess::ConfigDigests;
use crate::rules::digest::{self, ContentDigest, Entry, SecretKey, WorkloadDigest, hex};
use crate::rules::faults::Cause;
use crate::rules::optin::{ConfigFlags, ConfigView, Tracked, reloader};
use crate::rules::references::{ConfigKind, Keys};
use crate::rules::rollout::{ChangeId, releases};

/// (namespace, kind, name) of a ConfigMap or Secret.
pub type ConfigKey = (String, ConfigKind, String);

/// What a progressive rollout reads of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutInfo {
    /// A short digest of its whole content: a change of it, whichever workload reads which keys.
    pub digest: String,
    /// Its `kube-reloader.io/progressive` annotation.
    pub progressive: Option<bool>,
    /// Its `kube-reloader.io/release-hold` annotation.
    pub release: Option<String>,
}

/// A change of a config, as a progressive rollout reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub id: ChangeId,
    /// Its `kube-reloader.io/progressive` annotation.
    pub progressive: Option<bool>,
    /// Released by hand (`kube-reloader.io/release-hold` names it).
    pub released: bool,
}

/// Hex characters of [`RolloutInfo::digest`].
const CHANGE_DIGEST_LEN: usize = 10;

/// All that is kept of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSummary {
    pub digest: ContentDigest,
    pub flags: ConfigFlags,
    /// `kube-reloader.io/release-hold`: the change whose halted rollout is to go on.
    pub release: Option<Box<str>>,
    /// When its content was last written, as far as its managedFields tell.
    pub written: Option<Timestamp>,
}

/// A watched kind of config object.
pub trait ConfigObject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    const KIND: ConfigKind;
    /// Every key of `data` and `binaryData` with its bytes.
    fn entries(&self) -> Vec<(&str, &[u8])>;
}

impl ConfigObject for ConfigMap {
    const KIND: ConfigKind = ConfigKind::ConfigMap;
    fn entries(&self) -> Vec<(&str, &[u8])> {
        let text = self.data.iter().flatten();
        let binary = self.binary_data.iter().flatten();
        text.map(|(k, v)| (k.as_str(), v.as_bytes()))
            .chain(binary.map(|(k, v)| (k.as_str(), v.0.as_slice())))
            .collect()
    }
}

impl ConfigObject for Secret {
    const KIND: ConfigKind = ConfigKind::Secret;
    fn entries(&self) -> Vec<(&str, &[u8])> {
        // `stringData` is write-only: the API server merges it into `data`.
        self.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.0.as_slice()))
            .collect()
    }
}

/// The store of every watched object's summary, shared by the watchers and the reconciles.
pub struct ConfigStore {
    objects: RwLock<BTreeMap<ConfigKey, ConfigSummary>>,
    /// Watch streams that have not delivered their first complete list yet.
    unsynced: AtomicUsize,
    synced: watch::Sender<bool>,
}

impl ConfigStore {
    /// A store that becomes ready once `streams` watch streams have each listed once.
    pub fn new(streams: usize) -> Self {
        Self {
            objects: RwLock::default(),
            unsynced: AtomicUsize::new(streams),
            synced: watch::Sender::new(streams == 0),
        }
    }

    /// Waits until every watch stream has delivered its initial list. Before that, an object not
    /// in the store may simply not have been listed yet, and counting it absent would roll.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as the store, so this only ends when synced.
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Watch streams that have not delivered their first complete list yet.
    pub fn unsynced_streams(&self) -> usize {
        self.unsynced.load(Ordering::Acquire)
    }

    pub(crate) fn mark_stream_synced(&self) {
        if self.unsynced.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!(target: "kube_reloader::configs",
                configmaps = self.count(ConfigKind::ConfigMap),
                secrets = self.count(ConfigKind::Secret),
                "initial lists complete; reconciling workloads"
            );
            self.synced.send_replace(true);
        }
    }

    /// Reads one object's summary in place (no copy of its digests).
    /// When the content of `object` (`Kind/name`, a ConfigMap or Secret) in `namespace` was
    /// last written, as far as its managedFields tell.
    pub fn written(&self, namespace: &str, object: &str) -> Option<Timestamp> {
        let kind = match object.split_once('/')?.0 {
            "ConfigMap" => ConfigKind::ConfigMap,
            "Secret" => ConfigKind::Secret,
            _ => return None,
        };
        let name = object.split_once('/')?.1;
        self.with(namespace, kind, name, |s| s.written).flatten()
    }

    pub fn with<T>(
        &self,
        namespace: &str,
        kind: ConfigKind,
        name: &str,
        read: impl FnOnce(&ConfigSummary) -> T,
    ) -> Option<T> {
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        objects
            .get(&(namespace.to_string(), kind, name.to_string()))
            .map(read)
    }

    /// Number of objects held, by kind.
    pub fn count(&self, kind: ConfigKind) -> usize {
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        objects.keys().filter(|(_, k, _)| *k == kind).count()
    }

    /// Approximate heap bytes held by the digests (for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        objects
            .iter()
            .map(|((ns, _, n), s)| ns.len() + n.len() + s.digest.heap_bytes())
            .sum()
    }

    /// Inserts or replaces one object; true when what the rules see of it changed. A change is
    /// announced to `announce` before it becomes visible, so a reconcile that sees the new
    /// content also sees the change's debounce window open (see `TriggerRouter::window`).
    fn upsert(
        &self,
        key: ConfigKey,
        summary: ConfigSummary,
        announce: impl FnOnce(Vec<ConfigKey>),
    ) -> bool {
        let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
        if objects.get(&key) == Some(&summary) {
            return false;
        }
        announce(vec![key.clone()]);
        objects.insert(key, summary);
        true
    }

    /// Removes one object; true when it was there. Announced as [`upsert`](Self::upsert) is.
    fn remove(&self, key: &ConfigKey, announce: impl FnOnce(Vec<ConfigKey>)) -> bool {
        let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
        if !objects.contains_key(key) {
            return false;
        }
        announce(vec![key.clone()]);
        objects.remove(key);
        true
    }

    /// Replaces every object of `kind` within `scope` (a namespace, or all when `None`) with a
    /// complete list, and returns the keys whose summary changed, appeared or disappeared
    /// (announced first, as [`upsert`](Self::upsert) does).
    fn replace(
        &self,
        kind: ConfigKind,
        scope: Option<&str>,
        listed: BTreeMap<ConfigKey, ConfigSummary>,
        announce: impl FnOnce(Vec<ConfigKey>),
    ) -> Vec<ConfigKey> {
        let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
        let in_scope = |(ns, k, _): &ConfigKey| *k == kind && scope.is_none_or(|s| s == ns);
        let gone: Vec<ConfigKey> = objects
            .keys()
            .filter(|k| in_scope(k) && !listed.contains_key(*k))
            .cloned()
            .collect();
        let mut changed = gone.clone();
        changed.extend(
            listed
                .iter()
                .filter(|(key, summary)| objects.get(*key) != Some(*summary))
                .map(|(key, _)| key.clone()),
        );
        if !changed.is_empty() {
            announce(changed.clone());
        }
        for key in gone {
            objects.remove(&key);
        }
        for (key, summary) in listed {
            objects.insert(key, summary);
        }
        changed
    }

    /// The digest of the tracked objects of a workload in `namespace`, over the keys it uses.
    pub fn workload_digest(
        &self,
        namespace: &str,
        tracked: &[Tracked],
        key_id: &str,
    ) -> WorkloadDigest {
        WorkloadDigest::new(self.entries(namespace, tracked), key_id)
    }

    /// The digest entries of the tracked ConfigMaps and Secrets of a workload in `namespace`.
    /// SecretProviderClasses have none here: what a workload digests of one is what its own pods
    /// report ([`crate::state::csi::WorkloadView`]).
    pub fn entries(&self, namespace: &str, tracked: &[Tracked]) -> Vec<Entry> {
        tracked
            .iter()
            .filter(|t| t.kind != ConfigKind::SecretProviderClass)
            .map(|t| Entry {
                kind: t.kind,
                name: t.name.clone(),
                digest: self.with(namespace, t.kind, &t.name, |s| s.digest.select(&t.keys)),
            })
            .collect()
    }

    /// What a progressive rollout reads of one object, `None` when it does not exist.
    pub fn rollout_info(
        &self,
        namespace: &str,
        kind: ConfigKind,
        name: &str,
    ) -> Option<RolloutInfo> {
        self.with(namespace, kind, name, |s| RolloutInfo {
            digest: hex(&s.digest.select(&Keys::All))[..CHANGE_DIGEST_LEN].to_string(),
            progressive: s.flags.progressive,
            release: s.release.as_deref().map(String::from),
        })
    }

    /// The changes among `changed` (`Kind/name`, objects of `namespace`) that exist, with what
    /// a progressive rollout reads of their configs. Only ConfigMaps and Secrets: a
    /// SecretProviderClass rotation is what each workload's own pods report to the CSI driver,
    /// no one change the workloads of a wave share, so it is rolled at once, never in waves.
    pub fn changes(&self, namespace: &str, changed: &[String]) -> Vec<ConfigChange> {
        let known = changed.iter().filter_map(|config| {
            let kind = match config.split_once('/')? {
                ("ConfigMap", _) => ConfigKind::ConfigMap,
                ("Secret", _) => ConfigKind::Secret,
                ("SecretProviderClass", _) => return None,
                _ => return None,
            };
            let name = config.split_once('/')?.1;
            let info = self.rollout_info(namespace, kind, name)?;
            let id = ChangeId {
                config: config.clone(),
                digest: info.digest,
            };
            Some(ConfigChange {
                released: releases(info.release.as_deref(), &id),
                progressive: info.progressive,
                id,
            })
        });
        known.collect()
    }

    /// Puts a listed object in (for one-shot uses such as `explain`, outside any watch).
    pub fn insert(&self, key: ConfigKey, summary: ConfigSummary) {
        self.upsert(key, summary, |_| {});
    }

    /// A view of one namespace for the opt-in rules.
    pub fn view<'a>(&'a self, namespace: &'a str) -> NamespaceView<'a> {
        NamespaceView {
            store: self,
            namespace,
        }
    }
}

/// The objects of one namespace, as [`crate::rules::optin`] sees them.
pub struct NamespaceView<'a> {
    store: &'a ConfigStore,
    namespace: &'a str,
}

impl ConfigView for NamespaceView<'_> {
    fn flags(&self, kind: ConfigKind, name: &str) -> Option<ConfigFlags> {
        self.store.with(self.namespace, kind, name, |s| s.flags)
    }

    fn names(&self, kind: ConfigKind) -> Vec<String> {
        let objects = self.store.objects.read().unwrap_or_else(|e| e.into_inner());
        let from = (self.namespace.to_string(), kind, String::new());
        objects
            .range(from..)
            .take_while(|((ns, k, _), _)| ns == self.namespace && *k == kind)
            .map(|((_, _, n), _)| n.clone())
            .collect()
    }
}

impl ConfigDigests for NamespaceView<'_> {
    fn workload_digest(&self, tracked: &[Tracked], key_id: &str) -> WorkloadDigest {
        self.store.workload_digest(self.namespace, tracked, key_id)
    }
    fn written(&self, object: &str) -> Option<Timestamp> {
        self.store.written(self.namespace, object)
    }
}

/// Digests an object; Secrets under `key`.
pub fn summarize<K: ConfigObject>(
    obj: &K,
    key: &SecretKey,
    reloader: Option<&reloader::Names>,
) -> ConfigSummary {
    let secret_key = (K::KIND == ConfigKind::Secret).then_some(key);
    ConfigSummary {
        digest: ContentDigest::new(secret_key, obj.entries()),
        flags: ConfigFlags::from_annotations(obj.annotations(), reloader),
        release: obj.annotations().get(RELEASE_HOLD).map(|v| v.trim().into()),
        written: digest::last_written(obj.meta(), CONTENT_FIELDS, ""),
    }
}

/// The fields of a ConfigMap's or Secret's content, as managedFields name them.
const CONTENT_FIELDS: &[&[&str]] = &[&["f:data"], &["f:binaryData"], &["f:stringData"]];

fn key_of<K: ConfigObject>(obj: &K) -> ConfigKey {
    (obj.namespace().unwrap_or_default(), K::KIND, obj.name_any())
}

/// About how many bytes (as JSON) a page of an initial list may hold: a list costs that much
/// memory on top of what is kept, while it is read.
pub const LIST_PAGE_BYTES: usize = 4 << 20;
/// Pages hold this many objects at least and at most.
pub const LIST_PAGE_OBJECTS: (u32, u32) = (10, 500);

/// The page size for objects of which the largest seen so far has `largest` bytes (as JSON):
/// [`LIST_PAGE_BYTES`] worth, within [`LIST_PAGE_OBJECTS`]; the smallest page when none was seen.
pub fn page_size(largest: Option<usize>) -> u32 {
    let (min, max) = LIST_PAGE_OBJECTS;
    match largest {
        Some(bytes) => (LIST_PAGE_BYTES / bytes.max(1)).clamp(min as usize, max as usize) as u32,
        None => min,
    }
}

/// Sizes the pages of a watch's lists from its first page of [`LIST_PAGE_OBJECTS`]' minimum:
/// 16 KiB Secrets are read 190 at a time rather than 10 (50,000 of them take a tenth of the
/// requests), 1 MiB ConfigMaps still 10 at a time. A sample, not a bound: larger objects listed
/// later cost more. If the sample cannot be read, the smallest page (the watch reports why).
async fn sample_page_size<K: ConfigObject>(api: &Api<K>, config: &watcher::Config) -> u32 {
    let mut params = ListParams::default().limit(LIST_PAGE_OBJECTS.0);
    params.label_selector = config.label_selector.clone();
    params.field_selector = config.field_selector.clone();
    let largest = match api.list(&params).await {
        Ok(page) => page
            .items
            .iter()
            .filter_map(|o| serde_json::to_vec(o).ok().map(|b| b.len()))
            .max(),
        Err(_) => None,
    };
    page_size(largest)
}

/// Callbacks of a config watch.
pub struct WatchHooks<C, L, F> {
    /// Every change of what the rules see (content, the ignore/match annotations, existence).
    pub changed: C,
    /// A complete list was delivered.
    pub listed: L,
    /// The watch failed, for this cause, and will be retried.
    pub failed: F,
}

/// Watches one kind within one scope, keeping `store` current.
pub async fn watch<K: ConfigObject>(
    api: Api<K>,
    config: watcher::Config,
    scope: Option<String>,
    store: std::sync::Arc<ConfigStore>,
    key: SecretKey,
    reloader: Option<reloader::Names>,
    hooks: WatchHooks<impl Fn(Vec<ConfigKey>), impl Fn(), impl Fn(Cause)>,
) {
    // A streaming list has no pages to size.
    let config = if config.initial_list_strategy == watcher::InitialListStrategy::ListWatch {
        let page = sample_page_size(&api, &config).await;
        tracing::debug!(target: "kube_reloader::configs", kind = %K::KIND, scope = scope.as_deref().unwrap_or("*"), page, "listing in pages of this many objects");
        config.page_size(page)
    } else {
        config
    };
    let mut stream = make_watcher(api, config).default_backoff().boxed();
    let mut listing: Option<BTreeMap<ConfigKey, ConfigSummary>> = None;
    let mut synced_once = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing = Some(BTreeMap::new()),
            Ok(Event::InitApply(obj)) => {
                if let Some(l) = listing.as_mut() {
                    l.insert(key_of(&obj), summarize(&obj, &key, reloader.as_ref()));
                }
            }
            Ok(Event::InitDone) => {
                let listed = listing.take().unwrap_or_default();
                let n = listed.len();
                let diff = store.replace(K::KIND, scope.as_deref(), listed, &hooks.changed);
                tracing::debug!(target: "kube_reloader::configs", kind = %K::KIND, scope = scope.as_deref().unwrap_or("*"), objects = n, changed = diff.len(), "listed");
                if !synced_once {
                    synced_once = true;
                    store.mark_stream_synced();
                }
                (hooks.listed)();
            }
            Ok(Event::Apply(obj)) => {
                let summary = summarize(&obj, &key, reloader.as_ref());
                store.upsert(key_of(&obj), summary, &hooks.changed);
            }
            Ok(Event::Delete(obj)) => {
                store.remove(&key_of(&obj), &hooks.changed);
            }
            Err(e) => {
                let cause = Cause::of(&e);
                (hooks.failed)(cause);
                tracing::warn!(target: "kube_reloader::configs", kind = %K::KIND, scope = scope.as_deref().unwrap_or("*"), cause = cause.as_str(), error = %e,
                    "{}", cause.advice(&format!("{}s", K::KIND)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_pages_hold_about_four_mebibytes() {
        assert_eq!(page_size(None), 10);
        assert_eq!(page_size(Some(0)), 500);
        assert_eq!(page_size(Some(1_000)), 500);
        // A 16 KiB Secret is about 22 KB as JSON (base64).
        assert_eq!(page_size(Some(22_000)), 190);
        assert_eq!(page_size(Some(256 << 10)), 16);
        assert_eq!(page_size(Some(1 << 20)), 10);
        assert_eq!(page_size(Some(1_500_000)), 10);
    }

    fn summary(v: &str) -> ConfigSummary {
        ConfigSummary {
            digest: ContentDigest::new(None, [("k", v.as_bytes())]),
            flags: ConfigFlags::default(),
            release: None,
            written: None,
        }
    }

    fn key(ns: &str, name: &str) -> ConfigKey {
        (ns.into(), ConfigKind::ConfigMap, name.into())
    }

    #[test]
    fn relist_reports_only_differences_within_scope() {
        let store = ConfigStore::new(1);
        assert!(!store.is_synced());
        store.upsert(key("a", "same"), summary("1"), |_| {});
        store.upsert(key("a", "edited"), summary("1"), |_| {});
        store.upsert(key("a", "deleted"), summary("1"), |_| {});
        store.upsert(key("b", "other-ns"), summary("1"), |_| {});
        let listed = BTreeMap::from([
            (key("a", "same"), summary("1")),
            (key("a", "edited"), summary("2")),
            (key("a", "new"), summary("1")),
        ]);
        let mut changed = store.replace(ConfigKind::ConfigMap, Some("a"), listed, |_| {});
        changed.sort();
        assert_eq!(
            changed,
            vec![key("a", "deleted"), key("a", "edited"), key("a", "new")]
        );
        assert!(
            store
                .with("b", ConfigKind::ConfigMap, "other-ns", |_| ())
                .is_some()
        );
        store.mark_stream_synced();
        assert!(store.is_synced());
    }

    #[test]
    fn upsert_of_the_same_summary_is_no_change() {
        let store = ConfigStore::new(0);
        assert!(store.upsert(key("a", "x"), summary("1"), |_| {}));
        assert!(!store.upsert(key("a", "x"), summary("1"), |_| {}));
        assert!(store.upsert(key("a", "x"), summary("2"), |_| {}));
    }

    #[test]
    fn view_lists_names_of_one_namespace_and_kind() {
        let store = ConfigStore::new(0);
        store.upsert(key("a", "x"), summary("1"), |_| {});
        store.upsert(key("a", "y"), summary("1"), |_| {});
        store.upsert(key("ab", "z"), summary("1"), |_| {});
        store.upsert(
            ("a".into(), ConfigKind::Secret, "s".into()),
            summary("1"),
            |_| {},
        );
        assert_eq!(store.view("a").names(ConfigKind::ConfigMap), ["x", "y"]);
        assert_eq!(store.view("a").names(ConfigKind::Secret), ["s"]);
    }

    /// A progressive rollout reads ConfigMaps and Secrets; a SecretProviderClass rotation rolls
    /// at once, whatever the class's own annotation says.
    #[test]
    fn progressive_changes_are_of_configmaps_and_secrets_only() {
        let store = ConfigStore::new(0);
        let progressive = |v: &str| ConfigSummary {
            flags: ConfigFlags {
                progressive: Some(true),
                ..ConfigFlags::default()
            },
            ..summary(v)
        };
        store.upsert(key("a", "app"), progressive("1"), |_| {});
        let spc = ("a".into(), ConfigKind::SecretProviderClass, "vault".into());
        store.upsert(spc, progressive("1"), |_| {});
        let changed = [
            "ConfigMap/app".to_string(),
            "SecretProviderClass/vault".into(),
        ];
        let changes = store.changes("a", &changed);
        let configs: Vec<&str> = changes.iter().map(|c| c.id.config.as_str()).collect();
        assert_eq!(configs, ["ConfigMap/app"]);
        assert_eq!(changes[0].progressive, Some(true));
    }

    #[test]
    fn only_real_changes_are_announced_each_once() {
        let store = ConfigStore::new(0);
        let seen = std::cell::RefCell::new(Vec::new());
        let announce = |keys: Vec<ConfigKey>| seen.borrow_mut().extend(keys);
        assert!(store.upsert(key("a", "x"), summary("1"), announce));
        assert!(!store.upsert(key("a", "x"), summary("1"), announce));
        assert!(!store.remove(&key("a", "absent"), announce));
        let relisted = BTreeMap::from([(key("a", "x"), summary("1"))]);
        assert!(
            store
                .replace(ConfigKind::ConfigMap, None, relisted, announce)
                .is_empty()
        );
        assert!(store.remove(&key("a", "x"), announce));
        assert_eq!(*seen.borrow(), [key("a", "x"), key("a", "x")]);
    }

    #[test]
    fn configmap_entries_include_binary_data() {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c", "namespace": "n"},
            "data": {"a": "1"},
            "binaryData": {"b": "AAE="}
        }))
        .unwrap();
        let entries = cm.entries();
        assert_eq!(entries, vec![("a", &b"1"[..]), ("b", &[0u8, 1][..])]);
    }
}
