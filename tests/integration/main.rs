//! Integration tests of kube-reloader against a real control plane (see `support`).
//! One binary for all of them: one build, one shared control plane, a namespace per test.

mod support;

mod alerts;
mod chart;
mod connections;
mod csi;
mod delivery;
mod environment;
mod explain;
mod gitops;
mod ha;
mod helm;
mod image;
mod install;
mod kinds;
mod migrate;
mod operate;
mod pods;
mod progressive;
mod reload;
mod scope;
mod selection;
mod start;
mod steady;
mod undo;
mod validate;
mod windows;
