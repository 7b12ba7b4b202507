//! Kubernetes adapters: the bounded client, the digest key Secret, the Lease, and the API helpers
//! the layers above use to read the cluster.

pub mod api;
pub mod client;
pub mod key;
pub mod lease;
