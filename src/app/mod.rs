//! The application: the wiring of the controller, its HTTP endpoints, and `explain`.

pub mod controller;
pub mod explain;
pub mod http;
