//! Content digests of ConfigMaps and Secrets, and the digest of a workload's configuration.
//!
//! Only `data` and `binaryData` enter a digest, so labels, annotations, resourceVersion or
//! managedFields never cause a rollout. Every key's value is digested on its own, once, when the
//! object is seen; afterwards only the per-key digests are kept (32 bytes per key, whatever the size
//! of the value), which is what lets a workload that reads only some keys be digested over just
//! those keys.
//!
//! Encoding: every variable-length field is prefixed by its length (u64, big-endian), so no two
//! different contents produce the same byte stream by concatenation. Secrets are digested with
//! HMAC-SHA256 under the installation's key, so a recorded digest reveals nothing guessable about a
//! secret value; ConfigMaps use plain SHA-256.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::rules::references::{ConfigKind, Keys};

/// A SHA-256 or HMAC-SHA256 output.
pub type Hash = [u8; 32];

type HmacSha256 = Hmac<Sha256>;

/// The secret key Secrets are digested under, with a short public id.
#[derive(Clone)]
pub struct SecretKey {
    key: Vec<u8>,
    id: String,
}

impl SecretKey {
    /// Minimum key length accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// Wraps key material. The id is derived from the key (a one-way function of it), so it changes
    /// exactly when the key does and reveals nothing about it.
    pub fn new(key: Vec<u8>) -> Self {
        let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length");
        mac.update(b"kube-reloader key id");
        let id = hex(&mac.finalize().into_bytes()[..4]);
        Self { key, id }
    }

    /// The short public identifier recorded next to digests that involve Secrets.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn put_len_prefixed(out: &mut impl FnMut(&[u8]), bytes: &[u8]) {
    out(&(bytes.len() as u64).to_be_bytes());
    out(bytes);
}

/// Digest of one key/value pair of a ConfigMap (`secret_key` None) or Secret.
pub fn key_digest(secret_key: Option<&SecretKey>, key: &str, value: &[u8]) -> Hash {
    match secret_key {
        None => {
            let mut h = Sha256::new();
            let mut put = |b: &[u8]| h.update(b);
            put_len_prefixed(&mut put, key.as_bytes());
            put_len_prefixed(&mut put, value);
            h.finalize().into()
        }
        Some(k) => {
            let mut mac =
                HmacSha256::new_from_slice(&k.key).expect("HMAC accepts keys of any length");
            let mut put = |b: &[u8]| mac.update(b);
            put_len_prefixed(&mut put, key.as_bytes());
            put_len_prefixed(&mut put, value);
            mac.finalize().into_bytes().into()
        }
    }
}

/// The per-key digests of one ConfigMap or Secret: all that is kept of its content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentDigest {
    /// Sorted by key (a `data` key and a `binaryData` key never coincide: the API server rejects it).
    keys: Vec<(Box<str>, Hash)>,
}

impl ContentDigest {
    /// Digests every key of `data` and `binaryData`.
    pub fn new<'a>(
        secret_key: Option<&SecretKey>,
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Self {
        let mut keys: Vec<(Box<str>, Hash)> = entries
            .into_iter()
            .map(|(k, v)| (Box::from(k), key_digest(secret_key, k, v)))
            .collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        keys.dedup_by(|a, b| a.0 == b.0);
        Self { keys }
    }

    fn get(&self, key: &str) -> Option<&Hash> {
        self.keys
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &self.keys[i].1)
    }

    /// Digest over the selected keys. A selected key the object lacks is encoded as missing, so
    /// adding it later is a change.
    pub fn select(&self, keys: &Keys) -> Hash {
        let mut h = Sha256::new();
        let mut put = |b: &[u8]| h.update(b);
        match keys {
            Keys::All => {
                for (k, d) in &self.keys {
                    put_len_prefixed(&mut put, k.as_bytes());
                    put(&[1]);
                    put(d);
                }
            }
            Keys::Only(only) => {
                for k in only {
                    put_len_prefixed(&mut put, k.as_bytes());
                    match self.get(k) {
                        Some(d) => {
                            put(&[1]);
                            put(d);
                        }
                        None => put(&[0]),
                    }
                }
            }
        }
        h.finalize().into()
    }

    /// Approximate heap bytes held, for the memory benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * std::mem::size_of::<(Box<str>, Hash)>()
            + self.keys.iter().map(|(k, _)| k.len()).sum::<usize>()
    }
}

/// One tracked object's contribution to a workload digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub kind: ConfigKind,
    pub name: String,
    /// Digest of the keys the workload uses; `None` when the object does not exist.
    pub digest: Option<Hash>,
}

/// The digest of everything a workload tracks, as recorded in its annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadDigest {
    /// Hex SHA-256 over the sorted entries.
    pub hash: String,
    /// Id of the secret key, present when at least one Secret is tracked.
    pub key_id: Option<String>,
    /// Short per-object digests, to name what changed between two digests.
    pub parts: BTreeMap<String, String>,
}

/// The short digest recorded for a tracked object that does not exist.
pub const ABSENT: &str = "absent";

/// Length of the per-object short digests in [`WorkloadDigest::parts`] (hex characters).
const PART_LEN: usize = 10;

impl WorkloadDigest {
    /// Digests the sorted entries. `key_id` is recorded when a Secret is among them.
    pub fn new(mut entries: Vec<Entry>, key_id: &str) -> Self {
        entries.sort();
        entries.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
        let mut h = Sha256::new();
        let mut parts = BTreeMap::new();
        for e in &entries {
            let mut put = |b: &[u8]| h.update(b);
            put_len_prefixed(&mut put, e.kind.as_str().as_bytes());
            put_len_prefixed(&mut put, e.name.as_bytes());
            let part = match &e.digest {
                Some(d) => {
                    put(&[1]);
                    put(d);
                    hex(d)[..PART_LEN].to_string()
                }
                None => {
                    put(&[0]);
                    ABSENT.to_string()
                }
            };
            parts.insert(format!("{}/{}", e.kind.as_str(), e.name), part);
        }
        let has_secret = entries.iter().any(|e| e.kind == ConfigKind::Secret);
        Self {
            hash: hex(&h.finalize()),
            key_id: has_secret.then(|| key_id.to_string()),
            parts,
        }
    }

    /// The value of the `config-hash` annotation: `<hex>` or `<hex>@<key id>`.
    pub fn hash_annotation(&self) -> String {
        match &self.key_id {
            Some(id) => format!("{}@{}", self.hash, id),
            None => self.hash.clone(),
        }
    }

    /// The value of the `tracked` annotation: `Kind/name=short,…`, sorted.
    pub fn parts_annotation(&self) -> String {
        self.parts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Length of a pod-template digest (hex characters): it only has to tell two templates of one
/// workload apart. 24 since the digest is taken of the template's JSON; the 20 of the earlier
/// digest of the typed template makes such a record read as none ([`Recorded::with_template`]),
/// so that after an upgrade a config change is not taken for one covered by a template change.
const TEMPLATE_DIGEST_LEN: usize = 24;

/// The digest of a pod template as others wrote it: the whole template as the API server sent it
/// (its JSON, so that a field newer than k8s-openapi's feature level counts too), but the
/// annotation kube-reloader itself writes there (`template_annotation`), so that our own rollouts
/// do not count as someone else's template change. `None` (no template) digests as an empty one.
pub fn template_digest(template: Option<&Value>, template_annotation: &str) -> String {
    let mut h = Sha256::new();
    if let Some(t) = template {
        let mut mine = t.clone();
        if let Some(meta) = mine.get_mut("metadata").and_then(Value::as_object_mut) {
            if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                a.remove(template_annotation);
            }
            // Our first rollout adds the map itself: no annotations and none left are the same.
            if meta
                .get("annotations")
                .is_some_and(|a| a.is_null() || a.as_object().is_some_and(|a| a.is_empty()))
            {
                meta.remove("annotations");
            }
        }
        drop_nulls(&mut mine);
        // serde_json's maps are sorted (no `preserve_order`), so equal templates give equal bytes
        // whatever order the fields came in.
        match serde_json::to_vec(&mine) {
            Ok(bytes) => h.update(&bytes),
            Err(_) => h.update(b"unserializable"),
        }
    }
    hex(&h.finalize())[..TEMPLATE_DIGEST_LEN].to_string()
}

/// Takes out every `null` member of every object: an absent field and a null one mean the same to
/// the API server.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The containers and init containers of a pod template's spec.
fn containers_mut(template: &mut Value) -> impl Iterator<Item = &mut Value> {
    let spec = template.get_mut("spec").and_then(Value::as_object_mut);
    spec.into_iter().flat_map(|spec| {
        spec.iter_mut()
            .filter(|(k, _)| *k == "containers" || *k == "initContainers")
            .filter_map(|(_, v)| v.as_array_mut())
            .flatten()
    })
}

/// A pod template less what stakater Reloader writes into one to roll it: its
/// `STAKATER_<NAME>_<CONFIGMAP|SECRET|SECRETPROVIDERCLASS>` environment variables (its default
/// strategy) and its `reloader.stakater.com/last-reloaded-from` annotation. A dry run beside
/// Reloader digests templates so, because Reloader's rollout for a config change would otherwise
/// be a template change covering that change, and the dry run would report nothing where
/// kube-reloader alone will roll.
pub fn without_reloader_writes(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(a) = t
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(crate::model::annotations::reloader::LAST_RELOADED_FROM);
    }
    for c in containers_mut(&mut t) {
        let Some(c) = c.as_object_mut() else { continue };
        if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
            env.retain(|e| {
                !e.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(is_reloaders)
            });
            // Reloader's first rollout adds the list itself.
            if env.is_empty() {
                c.remove("env");
            }
        }
    }
    t
}

/// Whether a pod template holds anything [`without_reloader_writes`] takes out: a cheap look,
/// so that templates Reloader never rolled (nearly all) are not copied to find out.
pub fn has_reloader_writes(template: &Value) -> bool {
    let annotated = template
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(crate::model::annotations::reloader::LAST_RELOADED_FROM));
    let spec = template.get("spec");
    let in_env = ["containers", "initContainers"].iter().any(|list| {
        let containers = spec.and_then(|s| s.get(*list)).and_then(Value::as_array);
        containers.into_iter().flatten().any(|c| {
            let env = c.get("env").and_then(Value::as_array);
            env.into_iter().flatten().any(|e| {
                e.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(is_reloaders)
            })
        })
    });
    annotated || in_env
}

/// Whether an environment variable is one stakater Reloader writes to roll a workload.
fn is_reloaders(name: &str) -> bool {
    name.starts_with("STAKATER_")
        && ["_CONFIGMAP", "_SECRET", "_SECRETPROVIDERCLASS"]
            .iter()
            .any(|t| name.ends_with(t))
}

/// A digest as recorded on a workload by an earlier reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub hash: String,
    pub key_id: Option<String>,
    pub parts: BTreeMap<String, String>,
    /// The pod template's digest when the baseline was recorded ([`template_digest`]); `None` in
    /// baselines written before kube-reloader recorded it.
    pub template: Option<String>,
    /// Its value was written by someone other than kube-reloader ([`written_by_others`]): a
    /// `kubectl rollout undo` restoring an older baseline, a copy of the annotations re-applied.
    pub by_others: bool,
}

impl Recorded {
    /// Parses the `config-hash` and `tracked` annotation values. `None` when there is no usable
    /// baseline (absent or not written by us), which the caller treats as first sight.
    pub fn parse(hash: Option<&str>, tracked: Option<&str>) -> Option<Self> {
        let hash = hash?;
        let (hash, key_id) = match hash.split_once('@') {
            Some((h, id)) => (h, Some(id.to_string())),
            None => (hash, None),
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let parts = tracked
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Self {
            hash: hash.to_string(),
            key_id,
            parts,
            template: None,
            by_others: false,
        })
    }

    /// The same record, noting whether someone other than kube-reloader wrote it.
    pub fn written_by_others(mut self, by_others: bool) -> Self {
        self.by_others = by_others;
        self
    }

    /// The same record, with the pod-template digest of a `template-hash` annotation.
    pub fn with_template(mut self, template: Option<&str>) -> Self {
        self.template = template
            .filter(|t| t.len() == TEMPLATE_DIGEST_LEN && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string);
        self
    }

    /// What a baseline of `digest` and `template` records.
    pub fn of(digest: &WorkloadDigest, template: &str) -> Self {
        Self {
            hash: digest.hash.clone(),
            key_id: digest.key_id.clone(),
            parts: digest.parts.clone(),
            template: Some(template.to_string()),
            by_others: false,
        }
    }

    /// Names of the objects whose short digest differs between this record and `now`.
    pub fn changed(&self, now: &WorkloadDigest) -> Vec<String> {
        let mut names: Vec<String> = now
            .parts
            .iter()
            .filter(|(k, v)| self.parts.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        names.extend(
            self.parts
                .keys()
                .filter(|k| !now.parts.contains_key(*k))
                .cloned(),
        );
        names.sort();
        names
    }
}

/// Whether the object's annotation `annotation` holds a value that field manager `manager` did
/// not write: the API server's managedFields give each field to the manager that last set its
/// value, so a value someone else changed (a `kubectl rollout undo` of a Deployment restores the
/// workload's annotations from the ReplicaSet it rolls back to; a GitOps tool re-applies a copy
/// of them) is no longer `manager`'s. False when the annotation is absent, or when the object has
/// no managedFields at all (nothing tells who wrote it).
pub fn written_by_others(meta: &ObjectMeta, annotation: &str, manager: &str) -> bool {
    let present = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(annotation));
    let Some(entries) = meta.managed_fields.as_ref().filter(|e| !e.is_empty()) else {
        return false;
    };
    let field = format!("f:{annotation}");
    let ours = entries
        .iter()
        .filter(|e| e.manager.as_deref() == Some(manager))
        .filter(|e| e.subresource.as_deref().unwrap_or_default().is_empty())
        .filter_map(|e| e.fields_v1.as_ref())
        .any(|f| f.0["f:metadata"]["f:annotations"].get(&field).is_some());
    present && !ours
}

/// When the fields under any of `paths` (managedFields' `f:` names: `["f:data"]`,
/// `["f:spec", "f:template"]`) were last written, by any manager but `except`: the latest `time`
/// of the managedFields entries of the object itself (not of a subresource) owning something
/// under one of them. `None` without managedFields, or without times.
pub fn last_written(meta: &ObjectMeta, paths: &[&[&str]], except: &str) -> Option<Timestamp> {
    let entries = meta.managed_fields.as_ref()?;
    entries
        .iter()
        .filter(|e| e.manager.as_deref() != Some(except))
        .filter(|e| e.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|e| {
            e.fields_v1.as_ref().is_some_and(|f| {
                paths.iter().any(|path| {
                    let mut at = Some(&f.0);
                    for field in *path {
                        at = at.and_then(|v| v.get(*field));
                    }
                    at.is_some()
                })
            })
        })
        .filter_map(|e| e.time.as_ref().map(|t| t.0))
        .max()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn last_written_is_the_latest_write_of_those_fields_by_others() {
        let meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "web",
            "managedFields": [
                {"manager": "helm", "operation": "Update", "time": "2026-12-07T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {}}}}},
                {"manager": "kubectl-rollout", "operation": "Update", "time": "2026-12-07T10:05:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {"f:metadata": {}}}}},
                {"manager": "kube-reloader", "operation": "Apply", "time": "2026-12-07T10:09:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {"f:metadata": {}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
                 "time": "2026-12-07T10:10:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}},
                {"manager": "hpa", "operation": "Update", "time": "2026-12-07T10:11:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            ],
        }))
        .unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let template: &[&[&str]] = &[&["f:spec", "f:template"]];
        assert_eq!(
            last_written(&meta, template, "kube-reloader"),
            Some(at("2026-12-07T10:05:00Z"))
        );
        // Ours counts when not excepted; the status and replicas never do.
        assert_eq!(
            last_written(&meta, template, ""),
            Some(at("2026-12-07T10:09:00Z"))
        );
        assert_eq!(last_written(&meta, &[&["f:data"]], ""), None);
        assert_eq!(last_written(&ObjectMeta::default(), template, ""), None);
    }

    fn cd(entries: &[(&str, &str)]) -> ContentDigest {
        ContentDigest::new(None, entries.iter().map(|(k, v)| (*k, v.as_bytes())))
    }

    fn only(keys: &[&str]) -> Keys {
        Keys::Only(keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>())
    }

    #[test]
    fn concatenation_does_not_collide() {
        let a = cd(&[("ab", "c")]).select(&Keys::All);
        let b = cd(&[("a", "bc")]).select(&Keys::All);
        let c = cd(&[("a", "b"), ("c", "")]).select(&Keys::All);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn key_order_does_not_matter() {
        let a = cd(&[("x", "1"), ("y", "2")]);
        let b = cd(&[("y", "2"), ("x", "1")]);
        assert_eq!(a.select(&Keys::All), b.select(&Keys::All));
    }

    #[test]
    fn value_change_changes_digest() {
        assert_ne!(
            cd(&[("x", "1")]).select(&Keys::All),
            cd(&[("x", "2")]).select(&Keys::All)
        );
    }

    #[test]
    fn unused_key_change_does_not_change_selection() {
        let before = cd(&[("used", "1"), ("other", "a")]);
        let after = cd(&[("used", "1"), ("other", "b")]);
        assert_eq!(
            before.select(&only(&["used"])),
            after.select(&only(&["used"]))
        );
        assert_ne!(before.select(&Keys::All), after.select(&Keys::All));
    }

    #[test]
    fn selected_key_appearing_is_a_change() {
        let before = cd(&[("other", "a")]);
        let after = cd(&[("other", "a"), ("used", "")]);
        assert_ne!(
            before.select(&only(&["used"])),
            after.select(&only(&["used"]))
        );
    }

    #[test]
    fn secret_digest_is_keyed_and_not_plain_sha256() {
        let k1 = SecretKey::new(vec![1; 32]);
        let k2 = SecretKey::new(vec![2; 32]);
        let plain = key_digest(None, "password", b"hunter2");
        let s1 = key_digest(Some(&k1), "password", b"hunter2");
        let s2 = key_digest(Some(&k2), "password", b"hunter2");
        assert_ne!(plain, s1);
        assert_ne!(s1, s2);
        assert_eq!(s1, key_digest(Some(&k1), "password", b"hunter2"));
        assert_ne!(k1.id(), k2.id());
        assert_eq!(k1.id().len(), 8);
        assert!(!format!("{k1:?}").contains("[1, 1"));
    }

    fn entry(kind: ConfigKind, name: &str, digest: Option<Hash>) -> Entry {
        Entry {
            kind,
            name: name.to_string(),
            digest,
        }
    }

    #[test]
    fn workload_digest_is_order_independent_and_tracks_absence() {
        let d = cd(&[("k", "v")]).select(&Keys::All);
        let a = WorkloadDigest::new(
            vec![
                entry(ConfigKind::ConfigMap, "a", Some(d)),
                entry(ConfigKind::Secret, "b", None),
            ],
            "kid",
        );
        let b = WorkloadDigest::new(
            vec![
                entry(ConfigKind::Secret, "b", None),
                entry(ConfigKind::ConfigMap, "a", Some(d)),
            ],
            "kid",
        );
        assert_eq!(a, b);
        assert_eq!(a.key_id.as_deref(), Some("kid"));
        let created = WorkloadDigest::new(
            vec![
                entry(ConfigKind::ConfigMap, "a", Some(d)),
                entry(ConfigKind::Secret, "b", Some(d)),
            ],
            "kid",
        );
        assert_ne!(a.hash, created.hash);
        // A ConfigMap and a Secret of the same name are different objects.
        let cm = WorkloadDigest::new(vec![entry(ConfigKind::ConfigMap, "x", Some(d))], "kid");
        let sec = WorkloadDigest::new(vec![entry(ConfigKind::Secret, "x", Some(d))], "kid");
        assert_ne!(cm.hash, sec.hash);
        assert_eq!(cm.key_id, None);
    }

    #[test]
    fn recorded_round_trip_and_changed_names() {
        let d1 = cd(&[("k", "1")]).select(&Keys::All);
        let d2 = cd(&[("k", "2")]).select(&Keys::All);
        let before = WorkloadDigest::new(
            vec![
                entry(ConfigKind::ConfigMap, "a", Some(d1)),
                entry(ConfigKind::Secret, "s", Some(d1)),
            ],
            "kid",
        );
        let rec = Recorded::parse(
            Some(&before.hash_annotation()),
            Some(&before.parts_annotation()),
        )
        .unwrap();
        assert_eq!(rec.hash, before.hash);
        assert_eq!(rec.key_id.as_deref(), Some("kid"));
        let after = WorkloadDigest::new(
            vec![
                entry(ConfigKind::ConfigMap, "a", Some(d2)),
                entry(ConfigKind::Secret, "s", Some(d1)),
                entry(ConfigKind::ConfigMap, "new", None),
            ],
            "kid",
        );
        assert_eq!(rec.changed(&after), vec!["ConfigMap/a", "ConfigMap/new"]);
    }

    fn template(json: serde_json::Value) -> serde_json::Value {
        json
    }

    #[test]
    fn template_digest_ignores_only_our_own_annotation() {
        const OURS: &str = "kube-reloader.io/config-hash";
        let plain = template(serde_json::json!({
            "metadata": {"annotations": {"checksum/config": "1"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        }));
        let d = template_digest(Some(&plain), OURS);
        assert_eq!(d.len(), TEMPLATE_DIGEST_LEN);
        let mut ours = plain.clone();
        ours["metadata"]["annotations"][OURS] = "abc".into();
        assert_eq!(template_digest(Some(&ours), OURS), d);
        let mut checksum = plain.clone();
        checksum["metadata"]["annotations"]["checksum/config"] = "2".into();
        assert_ne!(template_digest(Some(&checksum), OURS), d);
        let image = template(serde_json::json!({
            "metadata": {"annotations": {"checksum/config": "1"}},
            "spec": {"containers": [{"name": "app", "image": "app:2"}]},
        }));
        assert_ne!(template_digest(Some(&image), OURS), d);
        assert_ne!(template_digest(None, OURS), d);
        // A template without annotations, before and after our first rollout adds ours.
        let bare = template(serde_json::json!({"metadata": {"labels": {"app": "web"}}}));
        let rolled = template(serde_json::json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"kube-reloader.io/config-hash": "abc"}},
        }));
        assert_eq!(
            template_digest(Some(&bare), OURS),
            template_digest(Some(&rolled), OURS)
        );
    }

    #[test]
    fn template_digest_sees_fields_no_typed_model_knows() {
        const OURS: &str = "kube-reloader.io/config-hash";
        let base = serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        });
        let d = template_digest(Some(&base), OURS);
        // A field of a Kubernetes release newer than k8s-openapi's feature level, in the pod spec
        // and in a container: both are template changes.
        let mut newer = base.clone();
        newer["spec"]["aFieldFromTheFuture"] = serde_json::json!({"enabled": true});
        assert_ne!(template_digest(Some(&newer), OURS), d);
        let mut in_container = base.clone();
        in_container["spec"]["containers"][0]["restartPolicyRules"] = serde_json::json!([]);
        assert_ne!(template_digest(Some(&in_container), OURS), d);
        // The same template with its fields in another order, or with null members, is the same.
        let reordered: serde_json::Value = serde_json::from_str(
            r#"{"spec": {"containers": [{"image": "app:1", "name": "app"}]},
                "metadata": {"annotations": null, "labels": {"app": "web"}}}"#,
        )
        .unwrap();
        assert_eq!(template_digest(Some(&reordered), OURS), d);
    }

    #[test]
    fn reloaders_writes_can_be_left_out_of_a_template() {
        const OURS: &str = "kube-reloader.io/config-hash";
        let digest = |t: serde_json::Value| {
            let original = template(t);
            let t = without_reloader_writes(&original);
            // The cheap look agrees with what taking them out changes.
            assert_eq!(has_reloader_writes(&original), t != original);
            template_digest(Some(&t), OURS)
        };
        let app = |env: serde_json::Value, annotations: serde_json::Value| {
            serde_json::json!({
                "metadata": {"labels": {"app": "web"}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "app:1", "env": env}]},
            })
        };
        let none = serde_json::json!(null);
        let before = digest(app(none.clone(), none.clone()));
        // Reloader's rollouts, either strategy, the first one included.
        let env = |name: &str| serde_json::json!([{"name": name, "value": "5d41402a"}]);
        for name in [
            "STAKATER_APP_CONFIG_CONFIGMAP",
            "STAKATER_DB_SECRET",
            "STAKATER_VAULT_SECRETPROVIDERCLASS",
        ] {
            assert_eq!(digest(app(env(name), none.clone())), before, "{name}");
        }
        let from = serde_json::json!({"reloader.stakater.com/last-reloaded-from": "{}"});
        assert_eq!(digest(app(none.clone(), from)), before);
        // Anyone else's changes still count.
        assert_ne!(digest(app(env("STAKATER_MODE"), none.clone())), before);
        assert_ne!(digest(app(env("LOG_LEVEL"), none.clone())), before);
        let other = serde_json::json!({"checksum/config": "2"});
        assert_ne!(digest(app(none, other)), before);
        // Only on request: the plain digest sees Reloader's rollouts.
        let rolled = template(app(
            env("STAKATER_APP_CONFIG_CONFIGMAP"),
            serde_json::json!(null),
        ));
        assert_ne!(template_digest(Some(&rolled), OURS), before);
    }

    #[test]
    fn recorded_template_digest_is_kept_only_when_well_formed() {
        let rec = Recorded::parse(Some(&"a".repeat(64)), None).unwrap();
        assert_eq!(rec.template, None);
        let t = "0123456789abcdef01234567";
        assert_eq!(
            rec.clone().with_template(Some(t)).template.as_deref(),
            Some(t)
        );
        assert_eq!(rec.clone().with_template(Some("xyz")).template, None);
        // The 20 characters of the digest of the typed template (before the JSON one): none, so
        // that a config change after the upgrade rolls rather than looking covered.
        let typed_era = "0123456789abcdef0123";
        assert_eq!(rec.clone().with_template(Some(typed_era)).template, None);
        assert_eq!(rec.with_template(None).template, None);
    }

    #[test]
    fn recorded_rejects_foreign_values() {
        assert_eq!(Recorded::parse(None, None), None);
        assert_eq!(Recorded::parse(Some("abc"), None), None);
        assert_eq!(Recorded::parse(Some(&"z".repeat(64)), None), None);
        assert!(Recorded::parse(Some(&"a".repeat(64)), None).is_some());
    }

    #[test]
    fn a_baseline_is_someone_elses_when_its_manager_lost_the_field() {
        const KEY: &str = "kube-reloader.io/config-hash";
        let meta = |annotated: bool, entries: serde_json::Value| -> ObjectMeta {
            let annotations = if annotated {
                serde_json::json!({KEY: "h"})
            } else {
                serde_json::json!({})
            };
            serde_json::from_value(serde_json::json!({
                "annotations": annotations,
                "managedFields": entries,
            }))
            .unwrap()
        };
        let entry = |manager: &str, subresource: &str, fields: serde_json::Value| {
            serde_json::json!({
                "manager": manager, "operation": "Apply", "apiVersion": "apps/v1",
                "subresource": subresource, "fieldsType": "FieldsV1", "fieldsV1": fields,
            })
        };
        let annotation = serde_json::json!({"f:metadata": {"f:annotations": {"f:kube-reloader.io/config-hash": {}}}});
        let image = serde_json::json!({"f:spec": {"f:template": {}}});
        let by_others = |m: &ObjectMeta| written_by_others(m, KEY, "kube-reloader");
        // Written by kube-reloader (an Apply or an Update entry alike), alone or with others.
        assert!(!by_others(&meta(
            true,
            serde_json::json!([entry("kube-reloader", "", annotation.clone())])
        )));
        assert!(!by_others(&meta(
            true,
            serde_json::json!([
                entry("gitops", "", annotation.clone()),
                entry("kube-reloader", "", annotation.clone())
            ])
        )));
        // Rewritten by `kubectl rollout undo`: the field moved to its manager.
        assert!(by_others(&meta(
            true,
            serde_json::json!([
                entry("kube-reloader", "", image.clone()),
                entry("kubectl-rollout", "", annotation.clone())
            ])
        )));
        // kube-reloader's entry for a subresource does not count.
        assert!(by_others(&meta(
            true,
            serde_json::json!([entry("kube-reloader", "status", annotation.clone())])
        )));
        // No annotation, or no managedFields at all: nothing to say.
        assert!(!by_others(&meta(
            false,
            serde_json::json!([entry("kubectl-rollout", "", image)])
        )));
        assert!(!by_others(&meta(true, serde_json::json!([]))));
        assert!(!by_others(&ObjectMeta::default()));
    }
}
