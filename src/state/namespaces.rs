//! `--namespace-selector`: the namespaces whose labels match, kept current by a metadata-only
//! watch of Namespaces with that selector (a namespace that stops matching arrives as a deletion).

use std::collections::HashSet;
use std::sync::RwLock;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::rules::faults::Cause;

/// Which namespaces a workload may be reconciled in.
pub struct NamespaceFilter {
    /// `None`: every namespace (no `--namespace-selector`).
    selector: Option<String>,
    matching: RwLock<HashSet<String>>,
    synced: watch::Sender<bool>,
}

/// What changed in the set of matching namespaces.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl NamespaceFilter {
    pub fn new(selector: Option<String>) -> Self {
        let (synced, _) = watch::channel(selector.is_none());
        Self {
            selector,
            matching: RwLock::default(),
            synced,
        }
    }

    /// Whether workloads in `namespace` are reconciled.
    pub fn allows(&self, namespace: &str) -> bool {
        self.selector.is_none()
            || self
                .matching
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(namespace)
    }

    /// Waits until the matching namespaces were listed (at once without a selector).
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Whether the namespaces were listed (always, without a selector).
    pub fn synced(&self) -> bool {
        *self.synced.borrow()
    }

    fn replace(&self, now: HashSet<String>) -> Changed {
        let mut matching = self.matching.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = Changed {
            added: now.difference(&matching).cloned().collect(),
            removed: matching.difference(&now).cloned().collect(),
        };
        changed.added.sort();
        changed.removed.sort();
        *matching = now;
        changed
    }

    fn set(&self, namespace: String, matches: bool) -> Changed {
        let mut matching = self.matching.write().unwrap_or_else(|e| e.into_inner());
        match matches {
            true if matching.insert(namespace.clone()) => Changed {
                added: vec![namespace],
                ..Changed::default()
            },
            false if matching.remove(&namespace) => Changed {
                removed: vec![namespace],
                ..Changed::default()
            },
            _ => Changed::default(),
        }
    }

    /// Watches the matching namespaces until the process ends, calling `on_change` with every
    /// change after the first list, and `failed` on every failure of the watch (retried with
    /// backoff). Returns at once without a selector.
    pub async fn watch(
        &self,
        client: Client,
        config: watcher::Config,
        on_change: impl Fn(Changed),
        failed: impl Fn(Cause),
    ) {
        let Some(selector) = &self.selector else {
            return;
        };
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let config = config.labels(selector);
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut listing: Option<HashSet<String>> = None;
        while let Some(event) = stream.next().await {
            let changed = match event {
                Ok(Event::Init) => {
                    listing = Some(HashSet::new());
                    continue;
                }
                Ok(Event::InitApply(ns)) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(ns.name_any());
                    }
                    continue;
                }
                Ok(Event::InitDone) => {
                    let changed = self.replace(listing.take().unwrap_or_default());
                    tracing::info!(target: "kube_reloader::namespaces", selector = %selector, namespaces = ?self.names(),
                        "namespaces matching --namespace-selector listed");
                    self.synced.send_replace(true);
                    changed
                }
                Ok(Event::Apply(ns)) => self.set(ns.name_any(), true),
                Ok(Event::Delete(ns)) => self.set(ns.name_any(), false),
                Err(e) => {
                    let cause = Cause::of(&e);
                    failed(cause);
                    tracing::warn!(target: "kube_reloader::namespaces", cause = cause.as_str(), error = %e, "{}", cause.advice("Namespaces"));
                    continue;
                }
            };
            if changed != Changed::default() {
                tracing::info!(target: "kube_reloader::namespaces", added = ?changed.added, removed = ?changed.removed,
                    "namespaces matching --namespace-selector changed");
                on_change(changed);
            }
        }
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .matching
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matching_set_follows_lists_and_events() {
        let f = NamespaceFilter::new(Some("team=a".into()));
        assert!(!f.synced() && !f.allows("x"));
        let listed = f.replace(HashSet::from(["x".to_string(), "y".to_string()]));
        assert_eq!(listed.added, ["x", "y"]);
        assert!(f.allows("x") && !f.allows("z"));
        assert_eq!(f.set("z".into(), true).added, ["z"]);
        assert_eq!(f.set("z".into(), true), Changed::default());
        assert_eq!(f.set("x".into(), false).removed, ["x"]);
        let relisted = f.replace(HashSet::from(["y".to_string(), "w".to_string()]));
        assert_eq!(
            (relisted.added, relisted.removed),
            (vec!["w".into()], vec!["z".into()])
        );
        // Without a selector, every namespace, at once.
        let all = NamespaceFilter::new(None);
        assert!(all.synced() && all.allows("anything"));
    }
}
