//! Leader election on a coordination.k8s.io/v1 Lease (in the controller's namespace unless
//! `--lease-namespace` says otherwise), through
//! kube-lease-manager (kept for kube 5, server-side apply on the Lease, tolerant of clock skew).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use thiserror::Error;

use crate::rules::faults::Cause;

/// Leader election's settings (`--lease-name`, `--lease-namespace`, `--lease-duration`,
/// `--renew-deadline`, `--retry-period`).
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    /// Where the Lease is: `--lease-namespace`, by default the controller's own namespace.
    pub namespace: String,
    /// `--field-manager`: the Lease is written as `<it>-lease-<identity>`.
    pub field_manager: &'static str,
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Config {
    /// Lease duration and renewal grace in whole seconds, checked for consistency.
    pub fn seconds(&self) -> Result<(u64, u64), String> {
        let duration = self.duration.as_secs();
        let renew = self.renew_deadline.as_secs();
        if renew == 0 || renew >= duration {
            return Err(format!(
                "--renew-deadline ({renew}s) must be at least 1s and less than --lease-duration ({duration}s)"
            ));
        }
        Ok((duration, duration - renew))
    }
}

#[derive(Debug, Error)]
pub enum LeaseError {
    #[error("invalid leader election settings: {0}")]
    Settings(String),
    #[error(
        "cannot set up the Lease {namespace}/{name}: {source}. The controller needs get, create, \
         patch, list and watch on coordination.k8s.io leases in that namespace"
    )]
    Setup {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
}

/// This replica's side of the election.
pub struct Elector {
    manager: LeaseManager,
    /// What `changed` last reported.
    leading: bool,
    /// Fires when the Lease is seen without a holder (released by a leader shutting down).
    released: futures::stream::BoxStream<'static, ()>,
    client: Client,
    namespace: String,
    name: String,
    duration: u64,
    grace: u64,
    retry: std::time::Duration,
    identity: String,
    /// The last Lease operation failed: the manager is rebuilt before anything else.
    broken: bool,
    field_manager: &'static str,
}

/// The bound of every Lease request: the renewal grace (the leader renews when that much of the
/// Lease is left), so a renewal that gets no answer fails, and the leader stops writing, by the
/// time its Lease expires; never more than `request` (`--request-timeout`).
pub fn request_timeout(grace_secs: u64, request: Duration) -> Duration {
    Duration::from_secs(grace_secs.max(1)).min(request)
}

/// Who this replica is in the Lease: the pod name (downward API), else the host name, with a
/// random suffix so a restarted process never mistakes an old holder record for itself.
fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "kube-reloader".into());
    let mut suffix = [0u8; 4];
    let _ = getrandom::fill(&mut suffix);
    format!("{base}-{}", crate::rules::digest::hex(&suffix))
}

/// A stream that yields whenever the Lease is seen with no holder. Its watch's failures are
/// logged and passed to `failed`.
fn released(
    client: &Client,
    namespace: &str,
    name: &str,
    config: watcher::Config,
    failed: impl Fn(Cause) + Send + Sync + 'static,
) -> futures::stream::BoxStream<'static, ()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let config = config.fields(&format!("metadata.name={name}"));
    watcher(api, config)
        .default_backoff()
        .applied_objects()
        .filter_map(move |lease| {
            let released = match lease {
                Ok(lease) => {
                    let holder = lease.spec.and_then(|s| s.holder_identity);
                    holder.is_none_or(|h| h.is_empty()).then_some(())
                }
                Err(e) => {
                    let cause = Cause::of(&e);
                    tracing::warn!(target: "kube_reloader::lease", kind = "Lease", cause = cause.as_str(), error = %e,
                        "{}", cause.advice("Leases"));
                    failed(cause);
                    None
                }
            };
            async move { released }
        })
        .boxed()
}

async fn build(
    client: &Client,
    namespace: &str,
    name: &str,
    identity: &str,
    duration: u64,
    grace: u64,
    field_manager: &str,
) -> Result<LeaseManager, LeaseError> {
    LeaseManagerBuilder::new(client.clone(), name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration)
        .with_grace(grace)
        .with_field_manager(format!("{field_manager}-lease-{identity}"))
        .build()
        .await
        .map_err(|source| LeaseError::Setup {
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })
}

impl Elector {
    /// `client` should bound its requests by [`request_timeout`]; `watch` is the configuration of
    /// the watch that notices a released Lease, and `failed` hears of its failures.
    pub async fn start(
        client: Client,
        namespace: &str,
        config: &Config,
        watch: watcher::Config,
        failed: impl Fn(Cause) + Send + Sync + 'static,
    ) -> Result<Self, LeaseError> {
        let (duration, grace) = config.seconds().map_err(LeaseError::Settings)?;
        let identity = identity();
        let manager = build(
            &client,
            namespace,
            &config.name,
            &identity,
            duration,
            grace,
            config.field_manager,
        )
        .await?;
        tracing::info!(target: "kube_reloader::lease", lease = %config.name, namespace, identity = %identity, "leader election on; waiting for the Lease");
        Ok(Self {
            manager,
            leading: false,
            released: released(&client, namespace, &config.name, watch, failed),
            client,
            namespace: namespace.to_string(),
            name: config.name.clone(),
            duration,
            grace,
            retry: config.retry_period,
            field_manager: config.field_manager,
            identity,
            broken: false,
        })
    }

    /// Waits for this replica's leadership to change and returns it. Keeps the Lease renewed
    /// while it is polled, so it must be polled continuously while leading. A failed Lease
    /// operation (a renewal without an answer within its bound included) reports not leading at
    /// once, so that the caller stops writing; the next call retries every --retry-period until
    /// the Lease can be read again, and reports leadership only once it is confirmed.
    pub async fn changed(&mut self) -> bool {
        loop {
            if self.broken {
                // A fresh manager starts as not leading and reports leadership again only after
                // reading the Lease, so this replica's view cannot drift from it.
                tokio::time::sleep(self.retry).await;
                match self.rebuild().await {
                    Ok(m) => {
                        self.manager = m;
                        self.broken = false;
                    }
                    Err(e) => {
                        tracing::warn!(target: "kube_reloader::lease", error = %e, "retrying");
                        continue;
                    }
                }
            }
            let result = tokio::select! {
                r = self.manager.changed() => r,
                // A standby sleeps until the holder's Lease would expire, trusting its cached
                // copy until then; a released Lease is free now, so start afresh from the
                // Lease as it is.
                Some(()) = self.released.next() => {
                    if !self.leading && let Ok(m) = self.rebuild().await {
                        self.manager = m;
                    }
                    continue;
                }
            };
            match result {
                Ok(leading) => {
                    self.leading = leading;
                    return leading;
                }
                Err(e) => {
                    tracing::warn!(target: "kube_reloader::lease", identity = %self.identity, error = %e,
                        "Lease operation failed: not writing until the Lease is confirmed again");
                    self.broken = true;
                    if self.leading {
                        self.leading = false;
                        return false;
                    }
                }
            }
        }
    }

    async fn rebuild(&self) -> Result<LeaseManager, LeaseError> {
        build(
            &self.client,
            &self.namespace,
            &self.name,
            &self.identity,
            self.duration,
            self.grace,
            self.field_manager,
        )
        .await
    }

    /// Gives the Lease up so a standby takes over at once.
    pub async fn release(self) {
        match self.manager.release().await {
            Ok(()) => {
                tracing::info!(target: "kube_reloader::lease", identity = %self.identity, "released the Lease")
            }
            Err(e) => {
                tracing::warn!(target: "kube_reloader::lease", identity = %self.identity, error = %e, "could not release the Lease; a standby takes over when it expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_request_fails_before_the_lease_would_expire() {
        let request = Duration::from_secs(20);
        // --lease-duration=15s, --renew-deadline=10s: renewed with 5 s left.
        assert_eq!(request_timeout(5, request), Duration::from_secs(5));
        assert_eq!(request_timeout(0, request), Duration::from_secs(1));
        assert_eq!(request_timeout(60, request), request);
    }
}
