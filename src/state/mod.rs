//! What the controller holds in memory: the config store, the reverse index, the debounce router,
//! the metrics, the namespaces selected and the cached workloads. Built from the rules below;
//! knows nothing of the reconcile or the wiring above.

pub mod configs;
pub mod csi;
pub mod index;
pub mod metrics;
pub mod namespaces;
pub mod router;
pub mod workload;
