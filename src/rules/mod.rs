//! The rules of the product: pure functions over k8s-openapi types and the model, no I/O. Each
//! is unit-tested on its own; the layers above gather their inputs and carry out what they decide.

pub mod assess;
pub mod csi;
pub mod decision;
pub mod digest;
pub mod faults;
pub mod optin;
pub mod ratelimit;
pub mod references;
pub mod reloaded_from;
pub mod restart_window;
pub mod rollout;
pub mod scope;
pub mod template;
