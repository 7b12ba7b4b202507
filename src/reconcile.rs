//! One reconcile for every workload kind: compare the digest of what the workload tracks with the
//! baseline it records, and record a baseline or roll it out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, ResourceExt};
use serde_json::json;
use thiserror::Error;

use crate::configs::{ConfigStore, NamespaceView};
use crate::decision::{Decision, decide};
use crate::digest::{ABSENT, Recorded, SecretKey, WorkloadDigest};
use crate::index::Index;
use crate::locked;
use crate::metrics::{KindLabels, Metrics, Outcome};
use crate::optin::{self, ConfigView};
use crate::ratelimit::{TokenBucket, cooldown};
use crate::references::{ConfigKind, references};
use crate::workload::{Workload, WorkloadKind, WorkloadRef};

/// Annotations kube-reloader writes.
pub mod written {
    /// On the workload's metadata: the digest it was last reconciled to (its baseline). On the pod
    /// template: the digest of the last rollout.
    pub const CONFIG_HASH: &str = "kube-reloader.io/config-hash";
    /// On the workload's metadata: a short digest per tracked object, to name what changed.
    pub const TRACKED: &str = "kube-reloader.io/tracked";
    /// On the workload's metadata: when the last rollout was made (RFC 3339).
    pub const RELOADED_AT: &str = "kube-reloader.io/reloaded-at";
}

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "kube-reloader";

/// Behaviour settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub reloader_compat: bool,
    pub min_rollout_interval: Duration,
    /// Report what would be rolled out; write nothing to workloads.
    pub dry_run: bool,
    /// Reconciles in flight at once per workload controller.
    pub max_concurrent_reconciles: u16,
}

/// Everything a reconcile needs, shared.
pub struct Context {
    pub client: Client,
    pub configs: Arc<ConfigStore>,
    pub index: Index,
    pub key: SecretKey,
    pub recorder: Recorder,
    pub settings: Settings,
    pub bucket: Mutex<TokenBucket>,
    pub metrics: Arc<Metrics>,
    /// With `--dry-run`, the baselines that would have been written, so that later changes can
    /// be reported as the rollouts they would cause.
    dry_run_baselines: Mutex<HashMap<WorkloadRef, Recorded>>,
    /// (workload, problem) pairs already warned about: once, not on every resync, and again
    /// only after the problem went away and came back.
    warned: Mutex<HashSet<(WorkloadRef, String)>>,
    /// Whether this replica may write (it holds the Lease, or leader election is off).
    may_write: std::sync::atomic::AtomicBool,
    /// resourceVersion a workload had just before our last write to it. Until the watch delivers
    /// the written version, a reconcile would see the old baseline and roll a second time.
    pending_writes: Mutex<HashMap<WorkloadRef, String>>,
    /// Failed reconciles in a row, per workload: the retry delay grows with them.
    failures: Mutex<HashMap<WorkloadRef, u32>>,
    /// Workloads whose debounce window is open: a config change of theirs was seen, and its
    /// reconcile is scheduled for the window's end.
    debouncing: Mutex<HashSet<WorkloadRef>>,
}

impl Context {
    pub fn new(
        client: Client,
        configs: Arc<ConfigStore>,
        key: SecretKey,
        recorder: Recorder,
        settings: Settings,
        bucket: TokenBucket,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            configs,
            index: Index::default(),
            key,
            recorder,
            settings,
            bucket: Mutex::new(bucket),
            metrics,
            dry_run_baselines: Mutex::default(),
            warned: Mutex::default(),
            may_write: std::sync::atomic::AtomicBool::new(false),
            pending_writes: Mutex::default(),
            failures: Mutex::default(),
            debouncing: Mutex::default(),
        }
    }
}

impl Context {
    /// Allows or forbids writes to workloads (the Lease gate).
    pub fn set_may_write(&self, may: bool) {
        self.may_write
            .store(may, std::sync::atomic::Ordering::Release);
    }

    fn may_write(&self) -> bool {
        self.may_write.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Opens a workload's debounce window; false when it is open already.
    pub fn open_debounce(&self, wref: &WorkloadRef) -> bool {
        locked(&self.debouncing).insert(wref.clone())
    }

    pub fn close_debounce(&self, wref: &WorkloadRef) {
        locked(&self.debouncing).remove(wref);
    }

    /// Whether a config change of this workload waits for the end of its debounce window. A
    /// change is announced before the store shows it, so a reconcile that sees the new content
    /// and then finds the window closed knows that the window has passed.
    fn is_debouncing(&self, wref: &WorkloadRef) -> bool {
        locked(&self.debouncing).contains(wref)
    }

    /// Every workload of `kind` (in `namespace`, or in all when `None`) this context holds
    /// something about: indexed, warned about, failing, or with a write or dry-run baseline in
    /// flight.
    pub fn known(&self, kind: WorkloadKind, namespace: Option<&str>) -> HashSet<WorkloadRef> {
        let mine = |w: &&WorkloadRef| w.kind == kind && namespace.is_none_or(|n| n == w.namespace);
        let indexed = self.index.workloads(kind).into_iter();
        let mut known: HashSet<WorkloadRef> = indexed.filter(|w| mine(&w)).collect();
        known.extend(
            locked(&self.warned)
                .iter()
                .map(|(w, _)| w)
                .filter(mine)
                .cloned(),
        );
        known.extend(locked(&self.failures).keys().filter(mine).cloned());
        known.extend(locked(&self.pending_writes).keys().filter(mine).cloned());
        known.extend(locked(&self.dry_run_baselines).keys().filter(mine).cloned());
        known
    }

    /// Forgets everything about a workload that no longer exists, so that memory follows the
    /// workloads that exist, whatever the churn.
    pub fn forget(&self, wref: &WorkloadRef) {
        tracing::debug!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
            "workload deleted; forgetting it");
        self.index.remove(wref);
        locked(&self.warned).retain(|(w, _)| w != wref);
        locked(&self.failures).remove(wref);
        locked(&self.pending_writes).remove(wref);
        locked(&self.dry_run_baselines).remove(wref);
    }

    /// Whether a problem of a workload is to be reported now: true the first time it is seen,
    /// false while it persists; once it is gone, it is forgotten.
    fn report_once(&self, wref: &WorkloadRef, problem: String, present: bool) -> bool {
        let mut warned = locked(&self.warned);
        let key = (wref.clone(), problem);
        if present {
            warned.insert(key)
        } else {
            warned.remove(&key);
            false
        }
    }
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("not writing to {0}: this replica does not hold the Lease")]
    NotLeader(WorkloadRef),
    #[error("writing the config-hash annotations of {workload} failed: {source}")]
    Write {
        workload: WorkloadRef,
        #[source]
        source: kube::Error,
    },
}

fn workload_ref<K: Workload>(obj: &K) -> WorkloadRef {
    WorkloadRef {
        kind: K::KIND,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

/// The reconcile, in kube-runtime's shape.
pub async fn reconcile<K: Workload>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.configs.wait_synced().await;
    let start = Instant::now();
    let wref = workload_ref(obj.as_ref());
    let result = reconcile_synced(obj, &ctx).await;
    if result.is_ok() {
        locked(&ctx.failures).remove(&wref);
    }
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels {
            kind: K::KIND.as_str(),
        })
        .observe(start.elapsed().as_secs_f64());
    result
}

async fn reconcile_synced<K: Workload>(obj: Arc<K>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let wref = workload_ref(obj.as_ref());

    // Skip a copy of the object older than our own last write (see `pending_writes`).
    {
        let mut pending = locked(&ctx.pending_writes);
        if let Some(before) = pending.get(&wref) {
            if obj.resource_version().as_ref() == Some(before) {
                return Ok(Action::requeue(Duration::from_millis(500)));
            }
            pending.remove(&wref);
        }
    }

    let template = obj.template();
    let template_annotations = obj.template_annotations();
    let opt = match optin::parse(
        obj.annotations(),
        template_annotations,
        ctx.settings.reloader_compat,
    ) {
        Ok(Some(opt)) => opt,
        Ok(None) => {
            ctx.index.remove(&wref);
            return Ok(Action::await_change());
        }
        Err(invalid) => {
            ctx.index.remove(&wref);
            ctx.metrics.error("invalid_annotation");
            tracing::warn!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
                "{invalid}; the workload is left alone until the annotation is fixed");
            publish(
                ctx,
                obj.as_ref(),
                EventType::Warning,
                "InvalidAnnotation",
                format!("{invalid}. kube-reloader leaves this workload alone until it is fixed."),
            )
            .await;
            return Ok(Action::await_change());
        }
    };

    let refs = template
        .and_then(|t| t.spec.as_ref())
        .map(references)
        .unwrap_or_default();
    let view = ctx.configs.view(&wref.namespace);
    let tracked = optin::tracked(&opt, &refs, &view);

    // Index every referenced and every listed name, so that a change of either reaches us.
    let mut candidates: BTreeSet<_> = refs.keys().cloned().collect();
    for (kind, pattern) in &opt.named {
        if let optin::NamePattern::Exact(name) = pattern {
            candidates.insert((*kind, name.clone()));
        }
    }
    warn_invalid_flags(ctx, obj.as_ref(), &wref, &candidates, &view).await;
    ctx.index.set(&wref, candidates, optin::has_patterns(&opt));

    let current = ctx
        .configs
        .workload_digest(&wref.namespace, &tracked, ctx.key.id());
    warn_missing(ctx, obj.as_ref(), &wref, &current).await;
    let annotations = obj.annotations();
    let mut recorded = Recorded::parse(
        annotations.get(written::CONFIG_HASH).map(String::as_str),
        annotations.get(written::TRACKED).map(String::as_str),
    );
    if ctx.settings.dry_run {
        let simulated = locked(&ctx.dry_run_baselines);
        if let Some(r) = simulated.get(&wref) {
            recorded = Some(r.clone());
        }
    }
    let decision = decide(recorded.as_ref(), &current);

    let template_hash = template_annotations.get(written::CONFIG_HASH).cloned();
    let last_rollout = annotations.get(written::RELOADED_AT).cloned();
    match decision {
        Decision::Nothing => {
            tracing::debug!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, tracked = tracked.len(), "up to date");
            Ok(Action::await_change())
        }
        Decision::Hold { deleted } => {
            tracing::debug!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, deleted = %deleted.join(", "),
                "tracked objects were deleted; keeping the baseline and rolling nothing until they are back or something else changes");
            Ok(Action::await_change())
        }
        Decision::Baseline | Decision::Rebaseline => {
            let outcome = if decision == Decision::Baseline {
                Outcome::baseline
            } else {
                Outcome::rebaseline
            };
            if ctx.settings.dry_run {
                simulate(ctx, &wref, &current);
                tracing::info!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
                    "dry run: would record the baseline");
                return Ok(Action::await_change());
            }
            write(
                ctx,
                obj.as_ref(),
                &wref,
                &current,
                template_hash,
                last_rollout,
            )
            .await?;
            ctx.metrics.rollout(wref.kind, &wref.namespace, outcome);
            let what = if decision == Decision::Baseline {
                "recorded the baseline (first sight: nothing rolled)"
            } else {
                "recorded a new baseline: the digest key changed, so Secret digests cannot be compared (nothing rolled)"
            };
            tracing::info!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, tracked = tracked.len(), "{what}");
            Ok(Action::await_change())
        }
        Decision::Roll { changed } => {
            // Reconciled early (say, because the workload itself was updated) while configs
            // are still changing: the reconcile at the window's end rolls once for them all.
            if ctx.is_debouncing(&wref) {
                tracing::debug!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
                    "change pending: inside the --debounce window");
                return Ok(Action::await_change());
            }
            let last = last_rollout
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(SystemTime::from);
            if let Some(wait) = cooldown(last, SystemTime::now(), ctx.settings.min_rollout_interval)
            {
                tracing::debug!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, ?wait,
                    "change pending: waiting for --min-rollout-interval since the last rollout");
                return Ok(Action::requeue(wait));
            }
            let what = if changed.is_empty() {
                "its tracked configuration".to_string()
            } else {
                changed.join(", ")
            };
            if ctx.settings.dry_run {
                simulate(ctx, &wref, &current);
                ctx.metrics
                    .rollout(wref.kind, &wref.namespace, Outcome::dry_run);
                tracing::info!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, changed = %what,
                    "dry run: would roll out");
                let note = format!("Dry run: would roll out because {what} changed.");
                publish(ctx, obj.as_ref(), EventType::Normal, "WouldReload", note).await;
                return Ok(Action::await_change());
            }
            let token = locked(&ctx.bucket).try_take(Instant::now());
            if let Err(wait) = token {
                tracing::debug!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, ?wait,
                    "change pending: global rollout rate limit (--max-rollouts-per-second)");
                return Ok(Action::requeue(wait));
            }
            let now = Timestamp::from_second(Timestamp::now().as_second())
                .unwrap_or_else(|_| Timestamp::now());
            write(
                ctx,
                obj.as_ref(),
                &wref,
                &current,
                Some(current.hash_annotation()),
                Some(now.to_string()),
            )
            .await?;
            ctx.metrics
                .rollout(wref.kind, &wref.namespace, Outcome::rolled);
            tracing::info!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, changed = %what, "rolled out");
            publish(
                ctx,
                obj.as_ref(),
                EventType::Normal,
                "Reloaded",
                format!("Rolled out because {what} changed."),
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

/// Records, in memory only, the baseline a dry run would have written.
fn simulate(ctx: &Context, wref: &WorkloadRef, current: &WorkloadDigest) {
    let recorded = Recorded::parse(
        Some(&current.hash_annotation()),
        Some(&current.parts_annotation()),
    );
    if let Some(r) = recorded {
        locked(&ctx.dry_run_baselines).insert(wref.clone(), r);
    }
}

/// A Warning Event, once per workload and object, for each tracked object that does not exist.
async fn warn_missing<K: Workload>(
    ctx: &Context,
    obj: &K,
    wref: &WorkloadRef,
    current: &WorkloadDigest,
) {
    let newly_missing: Vec<&String> = current
        .parts
        .iter()
        .filter(|(name, part)| ctx.report_once(wref, format!("missing {name}"), *part == ABSENT))
        .map(|(name, _)| name)
        .collect();
    for name in newly_missing {
        tracing::warn!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, missing = %name,
            "tracked object does not exist; its creation will roll the workload");
        let note = format!(
            "{name} is tracked but does not exist in namespace {}. Create it, or remove it from the workload's references or annotations; its creation will roll this workload.",
            wref.namespace
        );
        publish(ctx, obj, EventType::Warning, "MissingReference", note).await;
    }
}

/// A Warning Event, once per workload and object, for each object it uses whose ignore or match
/// annotation is neither "true" nor "false" (so it counts as not set).
async fn warn_invalid_flags<K: Workload>(
    ctx: &Context,
    obj: &K,
    wref: &WorkloadRef,
    used: &BTreeSet<(ConfigKind, String)>,
    view: &NamespaceView<'_>,
) {
    let newly_invalid: Vec<(&(ConfigKind, String), &'static str)> = used
        .iter()
        .filter_map(|used| {
            let invalid = view.flags(used.0, &used.1).and_then(|f| f.invalid);
            let problem = format!("invalid flag {}/{}", used.0, used.1);
            ctx.report_once(wref, problem, invalid.is_some())
                .then(|| (used, invalid.unwrap_or_default()))
        })
        .collect();
    for ((kind, name), annotation) in newly_invalid {
        ctx.metrics.error("invalid_annotation");
        tracing::warn!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, object = %format!("{kind}/{name}"),
            "{kind} {name} has annotation {annotation} with a value other than \"true\" or \"false\"; it counts as not set");
        let note = format!(
            "{kind} {name}, which this workload uses, has annotation {annotation} set to neither \"true\" nor \"false\", so it counts as not set. Set it to \"true\" or \"false\"."
        );
        publish(ctx, obj, EventType::Warning, "InvalidAnnotation", note).await;
    }
}

/// Server-side applies exactly the fields kube-reloader owns. Every apply names all of them: a
/// field this manager applied before and leaves out now would be removed, and removing the
/// template annotation would roll the pods.
async fn write<K: Workload>(
    ctx: &Context,
    obj: &K,
    wref: &WorkloadRef,
    current: &WorkloadDigest,
    template_hash: Option<String>,
    reloaded_at: Option<String>,
) -> Result<(), Error> {
    let mut meta = BTreeMap::from([
        (written::CONFIG_HASH, current.hash_annotation()),
        (written::TRACKED, current.parts_annotation()),
    ]);
    if let Some(at) = reloaded_at {
        meta.insert(written::RELOADED_AT, at);
    }
    let mut patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": wref.name, "namespace": wref.namespace, "annotations": meta},
    });
    if let Some(hash) = template_hash {
        patch["spec"] =
            json!({"template": {"metadata": {"annotations": {written::CONFIG_HASH: hash}}}});
    }
    if !ctx.may_write() {
        return Err(Error::NotLeader(wref.clone()));
    }
    let before = obj.resource_version();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &wref.namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let updated = api
        .patch(&wref.name, &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Write {
            workload: wref.clone(),
            source,
        })?;
    if let Some(rv) = before.filter(|rv| updated.resource_version().as_ref() != Some(rv)) {
        locked(&ctx.pending_writes).insert(wref.clone(), rv);
    }
    Ok(())
}

async fn publish<K: Workload>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: if reason == "Reloaded" {
            "Rollout"
        } else {
            "Reconcile"
        }
        .to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(kind = %K::KIND, namespace = obj.namespace().unwrap_or_default(), name = obj.name_any(),
            error = %e, "could not publish Event {reason} (the controller needs create and patch on events.k8s.io events)");
    }
}

/// On error: log, Event the workload, and retry with a delay.
pub fn error_policy<K: Workload>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let wref = workload_ref(obj.as_ref());
    if let Error::NotLeader(_) = error {
        // Leadership moved: the new leader reconciles this workload; nothing failed.
        tracing::debug!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, "{error}");
        return Action::await_change();
    }
    let failures = {
        let mut all = locked(&ctx.failures);
        let n = all.entry(wref.clone()).or_default();
        *n = n.saturating_add(1);
        *n
    };
    let delay = retry_delay(failures);
    tracing::warn!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, error = %error,
        failures, "reconcile failed; retrying in {}s", delay.as_secs());
    ctx.metrics.error("write_failed");
    ctx.metrics
        .rollout(wref.kind, &wref.namespace, Outcome::failed);
    let note = error.to_string();
    tokio::spawn(async move {
        publish(&ctx, obj.as_ref(), EventType::Warning, "WriteFailed", note).await;
    });
    Action::requeue(delay)
}

/// The wait before retrying a workload after `failures` failed reconciles in a row: 5 s, doubling
/// each time, at most 5 minutes, so a lasting failure (say, a missing permission) neither floods
/// the API server and the Events nor waits long once fixed. A change of the workload or of its
/// configs still triggers a reconcile at once.
fn retry_delay(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);
    FIRST
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry_delay(0).as_secs(), 5);
        assert_eq!(retry_delay(u32::MAX).as_secs(), 300);
    }
}
