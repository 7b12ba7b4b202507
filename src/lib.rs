//! kube-reloader: rolls Deployments, StatefulSets, DaemonSets, CronJobs, Argo Rollouts and any
//! kind with a pod template when the ConfigMaps and Secrets they use change. See README.md for the
//! product, docs/ for details, and docs/architecture.md for the layers.
//!
//! Layers, each importing only from its own or lower ones (tests/layers.rs checks it):
//! [`cli`] → [`app`] (wiring, controller, http, explain) → [`reconcile`] → [`alerts`] and
//! [`adapters`] (client, key, lease, API helpers) → [`state`] (config store, index, router,
//! metrics, cached workload) → [`rules`] (pure) → [`model`] (kinds, annotation names, durations).
#![forbid(unsafe_code)]

pub mod adapters;
pub mod alerts;
pub mod app;
pub mod cli;
pub mod model;
pub mod reconcile;
pub mod rules;
pub mod state;

/// A Mutex's guard, also when a holder panicked: every lock here guards data that stays
/// consistent between statements, so a panic elsewhere must not stop the controller.
pub(crate) fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
