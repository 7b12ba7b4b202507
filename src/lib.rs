//! kube-reloader: rolls Deployments, StatefulSets, DaemonSets, CronJobs, Argo Rollouts and any
//! kind with a pod template when the ConfigMaps and Secrets they use change. See README.md for the
//! product, docs/ for details.
//!
//! Pure rules: [`digest`], [`references`], [`optin`], [`decision`], [`ratelimit`], and
//! [`workload`] (the kinds as data, the slim cached workload, how each is restarted), [`faults`]
//! (what a failed watch means).
//! The shell: [`client`] (the Kubernetes client, bounded so dead connections are noticed),
//! [`configs`] (watched objects), [`index`], [`reconcile`], [`controller`], [`key`],
//! [`metrics`] and [`http`] (metrics and probes), [`alerts`] (a webhook POST per rollout).
#![forbid(unsafe_code)]

pub mod alerts;
pub mod cli;
pub mod client;
pub mod configs;
pub mod controller;
pub mod decision;
pub mod digest;
pub mod explain;
pub mod faults;
pub mod http;
pub mod index;
pub mod key;
pub mod lease;
pub mod metrics;
pub mod namespaces;
pub mod optin;
pub mod ratelimit;
pub mod reconcile;
pub mod references;
pub mod workload;

/// A Mutex's guard, also when a holder panicked: every lock here guards data that stays
/// consistent between statements, so a panic elsewhere must not stop the controller.
pub(crate) fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
