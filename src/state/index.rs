//! What each workload may track, and the reverse: which workloads a changed ConfigMap or Secret
//! concerns. Kept up to date by every reconcile, so a change reconciles only those workloads.
//!
//! A workload is indexed under every object its pod template references (whatever its opt-in:
//! a reference can become tracked when a `match` or `ignore` annotation changes) and every name it
//! lists. A workload whose opt-in uses Reloader's regular expressions is indexed under its whole
//! namespace, since any new object there may match.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use crate::locked;
use crate::model::kinds::{WorkloadKind, WorkloadRef};
use crate::rules::references::ConfigKind;
use crate::state::configs::ConfigKey;

#[derive(Default)]
struct Inner {
    by_object: HashMap<ConfigKey, HashSet<WorkloadRef>>,
    by_namespace: HashMap<String, HashSet<WorkloadRef>>,
    by_workload: HashMap<WorkloadRef, (Vec<ConfigKey>, bool)>,
}

#[derive(Default)]
pub struct Index {
    inner: Mutex<Inner>,
}

impl Index {
    /// Records what `workload` may track, replacing what was recorded before.
    pub fn set(
        &self,
        workload: &WorkloadRef,
        objects: BTreeSet<(ConfigKind, String)>,
        whole_namespace: bool,
    ) {
        let mut inner = locked(&self.inner);
        Self::remove_locked(&mut inner, workload);
        let keys: Vec<ConfigKey> = objects
            .into_iter()
            .map(|(kind, name)| (workload.namespace.clone(), kind, name))
            .collect();
        for key in &keys {
            inner
                .by_object
                .entry(key.clone())
                .or_default()
                .insert(workload.clone());
        }
        if whole_namespace {
            inner
                .by_namespace
                .entry(workload.namespace.clone())
                .or_default()
                .insert(workload.clone());
        }
        if !keys.is_empty() || whole_namespace {
            inner
                .by_workload
                .insert(workload.clone(), (keys, whole_namespace));
        }
    }

    /// The indexed workloads of one kind.
    pub fn workloads(&self, kind: WorkloadKind) -> Vec<WorkloadRef> {
        let inner = locked(&self.inner);
        inner
            .by_workload
            .keys()
            .filter(|w| w.kind == kind)
            .cloned()
            .collect()
    }

    /// Forgets a workload (deleted, or no longer opted in).
    pub fn remove(&self, workload: &WorkloadRef) {
        let mut inner = locked(&self.inner);
        Self::remove_locked(&mut inner, workload);
    }

    fn remove_locked(inner: &mut Inner, workload: &WorkloadRef) {
        let Some((keys, whole_namespace)) = inner.by_workload.remove(workload) else {
            return;
        };
        for key in keys {
            if let Some(set) = inner.by_object.get_mut(&key) {
                set.remove(workload);
                if set.is_empty() {
                    inner.by_object.remove(&key);
                }
            }
        }
        if whole_namespace && let Some(set) = inner.by_namespace.get_mut(&workload.namespace) {
            set.remove(workload);
            if set.is_empty() {
                inner.by_namespace.remove(&workload.namespace);
            }
        }
    }

    /// The workloads a change of `key` concerns.
    pub fn affected(&self, key: &ConfigKey) -> BTreeSet<WorkloadRef> {
        let inner = locked(&self.inner);
        let direct = inner.by_object.get(key).into_iter().flatten();
        let by_ns = inner.by_namespace.get(&key.0).into_iter().flatten();
        direct.chain(by_ns).cloned().collect()
    }

    /// Number of workloads indexed.
    pub fn len(&self) -> usize {
        let inner = locked(&self.inner);
        inner.by_workload.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(ns: &str, name: &str) -> WorkloadRef {
        WorkloadRef {
            kind: WorkloadKind::DEPLOYMENT,
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn objs(names: &[&str]) -> BTreeSet<(ConfigKind, String)> {
        names
            .iter()
            .map(|n| (ConfigKind::ConfigMap, n.to_string()))
            .collect()
    }

    fn cm(ns: &str, name: &str) -> ConfigKey {
        (ns.into(), ConfigKind::ConfigMap, name.into())
    }

    #[test]
    fn lookup_replace_and_remove() {
        let index = Index::default();
        index.set(&w("a", "web"), objs(&["x", "y"]), false);
        index.set(&w("a", "api"), objs(&["y"]), false);
        index.set(&w("b", "web"), objs(&["x"]), false);
        assert_eq!(
            index.affected(&cm("a", "x")),
            BTreeSet::from([w("a", "web")])
        );
        assert_eq!(
            index.affected(&cm("a", "y")),
            BTreeSet::from([w("a", "api"), w("a", "web")])
        );
        assert!(
            index
                .affected(&(String::from("a"), ConfigKind::Secret, "x".into()))
                .is_empty()
        );
        // Replacing drops the old entries.
        index.set(&w("a", "web"), objs(&["z"]), false);
        assert!(index.affected(&cm("a", "x")).is_empty());
        index.remove(&w("a", "api"));
        assert!(index.affected(&cm("a", "y")).is_empty());
        assert_eq!(index.len(), 2);
        let mut deployments = index.workloads(WorkloadKind::DEPLOYMENT);
        deployments.sort_by(|x, y| x.namespace.cmp(&y.namespace));
        assert_eq!(deployments, vec![w("a", "web"), w("b", "web")]);
        assert!(index.workloads(WorkloadKind::DAEMON_SET).is_empty());
    }

    #[test]
    fn pattern_workloads_see_their_whole_namespace() {
        let index = Index::default();
        index.set(&w("a", "web"), objs(&[]), true);
        assert_eq!(
            index.affected(&cm("a", "anything")),
            BTreeSet::from([w("a", "web")])
        );
        assert!(index.affected(&cm("b", "anything")).is_empty());
        index.set(&w("a", "web"), objs(&[]), false);
        assert!(index.affected(&cm("a", "anything")).is_empty());
        assert!(index.is_empty());
    }
}
