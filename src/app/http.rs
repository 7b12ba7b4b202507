//! The metrics and probe listener: `/metrics`, `/healthz` (the process serves), `/readyz` (every
//! watch has delivered its initial list, and the process is not shutting down).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::configs::ConfigStore;
use crate::state::metrics::Metrics;

/// Readiness, fed by the watches and the shutdown path. A standby (leader election on, Lease
/// held elsewhere) runs only the ConfigMap/Secret watches, and is ready once they have listed.
pub struct Health {
    /// The ConfigMap/Secret store, which knows which of its watches have listed.
    configs: Arc<ConfigStore>,
    /// Workload watch streams (running while this replica leads) not listed yet.
    workloads_unsynced: AtomicUsize,
    shutting_down: AtomicBool,
    /// `--namespace-selector`'s watch, once the controller has one.
    namespaces: std::sync::OnceLock<Arc<crate::state::namespaces::NamespaceFilter>>,
}

fn decrement(n: &AtomicUsize) {
    let _ = n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

impl Health {
    pub fn new(configs: Arc<ConfigStore>) -> Self {
        Self {
            configs,
            workloads_unsynced: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            namespaces: std::sync::OnceLock::new(),
        }
    }

    /// Workload watches were started (`n`), or stopped (0).
    pub fn expect_workloads(&self, n: usize) {
        self.workloads_unsynced.store(n, Ordering::Release);
    }

    /// A workload watch stream delivered its first list.
    pub fn workload_synced(&self) {
        decrement(&self.workloads_unsynced);
    }

    /// Readiness also waits for the namespaces matching `--namespace-selector` to be listed.
    pub fn watch_namespaces(&self, namespaces: Arc<crate::state::namespaces::NamespaceFilter>) {
        let _ = self.namespaces.set(namespaces);
    }

    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else why not.
    pub fn ready(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        let namespaces = self.namespaces.get().is_some_and(|n| !n.synced());
        let n = self.configs.unsynced_streams()
            + self.workloads_unsynced.load(Ordering::Acquire)
            + usize::from(namespaces);
        match n {
            0 => Ok(()),
            n => Err(format!(
                "{n} watches have not delivered their initial list yet"
            )),
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

async fn serve_metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    match s.health.ready() {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Binds the listener (so a taken port fails start-up with a clear error) and returns the
/// future that serves it.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(target: "kube_reloader::http", address = %bound, "serving /metrics, /healthz and /readyz");
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    Ok(async move { axum::serve(listener, app).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_syncs_and_shutdown() {
        let store = Arc::new(ConfigStore::new(2));
        let h = Health::new(Arc::clone(&store));
        assert!(h.ready().unwrap_err().contains("2 watches"));
        store.mark_stream_synced();
        store.mark_stream_synced();
        assert_eq!(h.ready(), Ok(())); // a ready standby
        h.expect_workloads(3);
        assert!(h.ready().unwrap_err().contains("3 watches"));
        for _ in 0..3 {
            h.workload_synced();
        }
        assert_eq!(h.ready(), Ok(()));
        h.shutting_down();
        assert_eq!(h.ready(), Err("shutting down".into()));
    }
}
