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

use crate::metrics::Metrics;

/// Readiness, fed by the watches and the shutdown path.
#[derive(Debug)]
pub struct Health {
    /// Watch streams whose initial list has not completed yet.
    unsynced: AtomicUsize,
    shutting_down: AtomicBool,
}

impl Health {
    pub fn new(streams: usize) -> Self {
        Self {
            unsynced: AtomicUsize::new(streams),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// One watch stream delivered its initial list.
    pub fn stream_synced(&self) {
        let _ = self
            .unsynced
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else why not.
    pub fn ready(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        match self.unsynced.load(Ordering::Acquire) {
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
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
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
        let h = Health::new(2);
        assert!(h.ready().unwrap_err().contains("2 watches"));
        h.stream_synced();
        h.stream_synced();
        h.stream_synced(); // a relist after the first does not underflow
        assert_eq!(h.ready(), Ok(()));
        h.shutting_down();
        assert_eq!(h.ready(), Err("shutting down".into()));
    }
}
