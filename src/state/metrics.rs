//! Prometheus metrics. Label values are static names (kinds, results, reasons) or namespaces,
//! never object names or error text, so cardinality stays bounded. See docs/metrics.md.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::model::kinds::WorkloadKind;
use crate::rules::faults::Cause;

/// What a reconcile that found a difference did.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Rolled out.
    rolled,
    /// Would have rolled out, but `--dry-run` is on.
    dry_run,
    /// First sight: baseline recorded.
    baseline,
    /// Digest key changed, or the pod template's digest added to an older baseline: baseline
    /// recorded anew.
    rebaseline,
    /// Configs changed together with the pod template: the template's own rollout covers them;
    /// baseline recorded, nothing rolled.
    covered,
    /// Only the pod template changed (someone else's rollout): its digest recorded.
    template_changed,
    /// The baseline on the workload was written by someone else (`kubectl rollout undo`
    /// restores an older one): the present recorded, nothing rolled.
    restored,
    /// The write failed.
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub kind: &'static str,
    pub namespace: String,
    pub result: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub kind: &'static str,
    /// [`Cause::as_str`].
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

fn reconcile_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric kube-reloader exports.
pub struct Metrics {
    pub registry: Registry,
    pub rollouts: Family<RolloutLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    pub watched_objects: Family<KindLabels, Gauge>,
    pub tracked_workloads: Gauge,
    pub watch_restarts: Family<WatchLabels, Counter>,
    pub last_sync: Gauge<f64, AtomicU64>,
    pub leader: Gauge,
    pub absence_checks: Family<ResultLabels, Counter>,
    pub alerts: Family<ResultLabels, Counter>,
    pub rollouts_halted: Family<NamespaceLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kube_reloader");
        let rollouts = Family::<RolloutLabels, Counter>::default();
        registry.register(
            "rollouts",
            "Workload reconciles that found a configuration difference, by kind, namespace and what was done",
            rollouts.clone(),
        );
        let reconcile_duration: Family<KindLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register(
            "reconcile_duration_seconds",
            "Time taken by one workload reconcile",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed or found the workload's opt-in invalid, by reason",
            reconcile_errors.clone(),
        );
        let watched_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "watched_objects",
            "ConfigMaps and Secrets currently known, by kind",
            watched_objects.clone(),
        );
        let tracked_workloads = Gauge::default();
        registry.register(
            "tracked_workloads",
            "Opted-in workloads currently indexed",
            tracked_workloads.clone(),
        );
        let watch_restarts = Family::<WatchLabels, Counter>::default();
        registry.register(
            "watch_restarts",
            "Watch streams that failed and were restarted, by kind and cause (stalled: nothing arrived, so its connection was taken for dead)",
            watch_restarts.clone(),
        );
        let last_sync = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_sync_timestamp_seconds",
            "Unix time of the last complete list of ConfigMaps and Secrets",
            last_sync.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica may write (it holds the Lease, or leader election is off), else 0",
            leader.clone(),
        );
        let absence_checks = Family::<ResultLabels, Counter>::default();
        registry.register(
            "absence_checks",
            "Tracked objects missing from the watch cache that were looked up in the API server before being recorded absent, by result (absent, present)",
            absence_checks.clone(),
        );
        let alerts = Family::<ResultLabels, Counter>::default();
        registry.register(
            "alerts",
            "Rollout alerts to --alert-webhook-url, by what became of them (sent, failed, dropped)",
            alerts.clone(),
        );
        let rollouts_halted = Family::<NamespaceLabels, Counter>::default();
        registry.register(
            "rollouts_halted",
            "Progressive rollouts of a config change halted because a workload's rollout of it failed, by namespace",
            rollouts_halted.clone(),
        );
        Self {
            registry,
            rollouts_halted,
            rollouts,
            reconcile_duration,
            reconcile_errors,
            watched_objects,
            tracked_workloads,
            watch_restarts,
            last_sync,
            leader,
            absence_checks,
            alerts,
        }
    }
}

impl Metrics {
    pub fn rollout(&self, kind: WorkloadKind, namespace: &str, result: Outcome) {
        self.rollouts
            .get_or_create(&RolloutLabels {
                kind: kind.as_str(),
                namespace: namespace.to_string(),
                result,
            })
            .inc();
    }

    pub fn error(&self, reason: &'static str) {
        self.reconcile_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn absence_check(&self, present: bool) {
        let result = if present { "present" } else { "absent" };
        self.absence_checks
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts an alert: `sent`, `failed` (every attempt failed, or the receiver refused it) or
    /// `dropped` (the queue was full).
    pub fn alert(&self, result: &'static str) {
        self.alerts.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts a progressive rollout halted in `namespace`.
    pub fn halted(&self, namespace: &str) {
        let namespace = namespace.to_string();
        self.rollouts_halted
            .get_or_create(&NamespaceLabels { namespace })
            .inc();
    }

    /// Makes the alert series exist at 0 once alerts are on, so that `increase()` sees the first
    /// failure.
    pub fn alerts_on(&self) {
        for result in ["sent", "failed", "dropped"] {
            let _ = self.alerts.get_or_create(&ResultLabels { result });
        }
    }

    /// Counts a failed watch of `kind` (a workload kind, `ConfigMap`, `Secret`, `Namespace`,
    /// `Lease`), by its cause.
    pub fn watch_restart(&self, kind: &'static str, cause: Cause) {
        let cause = cause.as_str();
        self.watch_restarts
            .get_or_create(&WatchLabels { kind, cause })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::default();
        m.rollout(WorkloadKind::DEPLOYMENT, "shop", Outcome::rolled);
        m.error("write_failed");
        m.watch_restart("Secret", Cause::Stalled(45));
        m.alerts_on();
        m.alert("failed");
        m.halted("shop");
        m.reconcile_duration
            .get_or_create(&KindLabels { kind: "Deployment" })
            .observe(0.01);
        let text = m.encode();
        for needle in [
            "kube_reloader_rollouts_total{kind=\"Deployment\",namespace=\"shop\",result=\"rolled\"} 1",
            "kube_reloader_reconcile_errors_total{reason=\"write_failed\"} 1",
            "kube_reloader_watch_restarts_total{kind=\"Secret\",cause=\"stalled\"} 1",
            "kube_reloader_alerts_total{result=\"failed\"} 1",
            "kube_reloader_alerts_total{result=\"dropped\"} 0",
            "kube_reloader_rollouts_halted_total{namespace=\"shop\"} 1",
            "kube_reloader_reconcile_duration_seconds_bucket",
            "kube_reloader_tracked_workloads",
            "kube_reloader_last_sync_timestamp_seconds",
            "kube_reloader_leader",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
