//! Carrying out a decision: the writes, Events, metrics and log lines it stands for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use crate::locked;
use crate::model::kinds::WorkloadRef;
use crate::rules::decision::{Action as Decided, Record, WaitReason};
use crate::rules::digest::{Recorded, WorkloadDigest};
use crate::rules::rollout::{ChangeId, mark};
use crate::rules::template::Restart;
use crate::state::metrics::Outcome;
use crate::state::workload::Workload;

use crate::model::annotations::written;

use super::events::publish;
use super::progressive;
use super::{Context, Error};

/// What a reconcile found out about one workload, for executing its decision.
pub(super) struct Found<'a> {
    pub(super) obj: &'a Workload,
    pub(super) wref: WorkloadRef,
    pub(super) restart: Restart,
    pub(super) current: WorkloadDigest,
    /// The pod template's digest now.
    pub(super) template: String,
    /// When its debounce window opened, if it has one.
    pub(super) opened: Option<Instant>,
    /// How many objects it tracks.
    pub(super) tracked: usize,
    /// The config changes a rollout now rolls progressively (none: all at once).
    pub(super) progressive: Vec<ChangeId>,
}

/// Carries out a decision: the writes, Events, metrics and log lines it stands for.
pub(super) async fn execute(
    ctx: &Context,
    found: &Found<'_>,
    action: Decided,
) -> Result<Action, Error> {
    let Found {
        obj,
        wref,
        current,
        opened,
        ..
    } = found;
    let (obj, opened) = (*obj, *opened);
    let log = |what: &str| {
        tracing::info!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, tracked = found.tracked, "{what}");
    };
    // A baseline recorded without a rollout because the changed configs are covered by someone
    // else's rollout: a log line naming them, and a ReloadNotNeeded Event.
    let not_needed = |changed: &str, line: &str, note: String| {
        tracing::info!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, changed = %changed, "{line}");
        publish(ctx, obj, EventType::Normal, "ReloadNotNeeded", note);
    };
    // What the last rollout wrote, written again with every baseline (see `write`).
    let marks = Marks::kept(obj);
    let reloaded_at = obj.annotations().get(written::RELOADED_AT).cloned();
    let base = Baseline {
        digest: current,
        template: &found.template,
    };
    match action {
        // Answered by `decide_confirmed`; never reaches here.
        Decided::Confirm { .. } => Ok(Action::requeue(Duration::from_secs(1))),
        Decided::UpToDate => {
            ctx.router.close(wref, opened);
            tracing::debug!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, tracked = found.tracked, "up to date");
            Ok(Action::await_change())
        }
        Decided::Hold { deleted } => {
            ctx.router.close(wref, opened);
            tracing::debug!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, deleted = %deleted.join(", "),
                "tracked objects were deleted; keeping the baseline and rolling nothing until they are back or something else changes");
            Ok(Action::await_change())
        }
        Decided::Debounce { open } => {
            if open {
                ctx.router.open(wref);
            }
            tracing::debug!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
                "change pending: inside the --debounce window");
            Ok(Action::await_change())
        }
        Decided::Wait { delay, why } => {
            let what = match why {
                WaitReason::Cooldown => "waiting for --min-rollout-interval since the last rollout",
                WaitReason::RateLimit => "global rollout rate limit (--max-rollouts-per-second)",
                WaitReason::Wave => "progressive rollout: an earlier wave has not completed",
                WaitReason::RestartWindow => "outside the workload's restart window",
            };
            tracing::debug!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, wait = ?delay,
                "change pending: {what}");
            Ok(Action::requeue(delay))
        }
        Decided::Halted(halt) => {
            ctx.router.close(wref, opened);
            progressive::hold(ctx, obj, wref, halt).await
        }
        Decided::Simulate { roll } => {
            simulate(ctx, wref, base);
            ctx.router.close(wref, opened);
            match roll {
                None => log("dry run: would record the baseline"),
                Some(changed) => {
                    let what = changed_text(&changed);
                    ctx.metrics
                        .rollout(wref.kind, &wref.namespace, Outcome::dry_run);
                    tracing::info!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, changed = %what,
                        "dry run: would roll out");
                    let note = format!("Dry run: would roll out because {what} changed.");
                    publish(ctx, obj, EventType::Normal, "WouldReload", note);
                }
            }
            Ok(Action::await_change())
        }
        Decided::Record(why) => {
            if write(ctx, obj, wref, base, marks, reloaded_at).await? == Written::Stale {
                return Ok(decide_again(wref));
            }
            ctx.router.close(wref, opened);
            let outcome = match &why {
                Record::FirstSight => Outcome::baseline,
                Record::KeyRotated
                | Record::Backfill
                | Record::Untracked { .. }
                | Record::Reported { .. } => Outcome::rebaseline,
                Record::Template => Outcome::template_changed,
                Record::Covered { .. } => Outcome::covered,
                Record::Restored { .. } => Outcome::restored,
            };
            ctx.metrics.rollout(wref.kind, &wref.namespace, outcome);
            match why {
                Record::FirstSight => log("recorded the baseline (first sight: nothing rolled)"),
                Record::KeyRotated => log(
                    "recorded a new baseline: the digest key changed, so Secret digests cannot be compared (nothing rolled)",
                ),
                Record::Backfill => log(
                    "recorded the pod template's digest beside a baseline written without it (nothing rolled)",
                ),
                Record::Untracked { removed } => {
                    tracing::info!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace,
                    name = %wref.name, removed = %removed.join(", "),
                    "recorded a new baseline: objects no longer tracked need no rollout (nothing rolled)")
                }
                Record::Reported { changed } => {
                    tracing::info!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace,
                    name = %wref.name, changed = %changed.join(", "),
                    "recorded a new baseline: the versions its pods report to the CSI driver came or went with pods starting or stopping, no rotation (nothing rolled)")
                }
                Record::Template => log(
                    "recorded the pod template's change (someone else's rollout; configs unchanged, nothing rolled)",
                ),
                Record::Covered { changed } => {
                    let what = changed_text(&changed);
                    not_needed(
                        &what,
                        "recorded a new baseline: the pod template changed at the same time as its configs, so the new pods read the new config (nothing rolled)",
                        format!(
                            "{what} changed, and the pod template changed at the same time: the new pods read the new config. Recorded the new baseline; kube-reloader rolled nothing."
                        ),
                    );
                }
                Record::Restored { changed } if changed.is_empty() => log(
                    "recorded the baseline again: someone else had rewritten it, with the values it holds (nothing rolled)",
                ),
                Record::Restored { changed } => {
                    let what = changed_text(&changed);
                    not_needed(
                        &what,
                        "recorded a new baseline: the one on the workload was written by someone else (kubectl rollout undo restores an older one with its pod template), and the pods of that rollout read the configs as they are (nothing rolled)",
                        format!(
                            "The baseline on this workload was rewritten by someone else (kubectl rollout undo restores an older one along with its pod template); {what} differs from it, and the pods of that rollout read the configs as they are. Recorded the new baseline; kube-reloader rolled nothing."
                        ),
                    );
                }
            }
            Ok(Action::await_change())
        }
        Decided::Roll { changed } => {
            let what = changed_text(&changed);
            let now = Timestamp::from_second(Timestamp::now().as_second())
                .unwrap_or_else(|_| Timestamp::now());
            let mut marks = match found.restart {
                Restart::Template => Marks {
                    template: Some(current.hash_annotation()),
                    ..marks
                },
                Restart::RestartAt => Marks {
                    restart_at: Some(now.to_string()),
                    ..marks
                },
            };
            if !found.progressive.is_empty() {
                // A progressive rollout: marked with the changes it rolls, so that the other
                // workloads of each know; a failure or a hold of an earlier change is over.
                marks.progress = BTreeMap::from([(written::ROLLOUT, mark(&found.progressive))]);
            }
            if write(ctx, obj, wref, base, marks, Some(now.to_string())).await? == Written::Stale {
                return Ok(decide_again(wref));
            }
            ctx.router.close(wref, opened);
            ctx.metrics
                .rollout(wref.kind, &wref.namespace, Outcome::rolled);
            if found.progressive.is_empty() {
                tracing::info!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, changed = %what, "rolled out");
            } else {
                tracing::info!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, changed = %what,
                    progressive = %mark(&found.progressive), "rolled out (progressive rollout: its wave has started)");
            }
            if let Some(alerts) = &ctx.alerts {
                alerts.rolled(wref, &changed, now);
            }
            publish(
                ctx,
                obj,
                EventType::Normal,
                "Reloaded",
                format!("Rolled out because {what} changed."),
            );
            Ok(Action::await_change())
        }
    }
}

/// After a write refused because the workload changed since its copy was read: decide again on a
/// fresh copy, once the watch has delivered it.
fn decide_again(wref: &WorkloadRef) -> Action {
    tracing::debug!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
        "the workload changed since this copy was read; deciding again on the current one");
    Action::requeue(Duration::from_millis(500))
}

/// The changed objects, as messages name them.
pub fn changed_text(changed: &[String]) -> String {
    if changed.is_empty() {
        "its tracked configuration".to_string()
    } else {
        changed.join(", ")
    }
}

/// What a baseline write records.
#[derive(Clone, Copy)]
struct Baseline<'a> {
    digest: &'a WorkloadDigest,
    template: &'a str,
}

/// Records, in memory only, the baseline a dry run would have written.
fn simulate(ctx: &Context, wref: &WorkloadRef, base: Baseline<'_>) {
    let recorded = Recorded::of(base.digest, base.template);
    locked(&ctx.dry_run_baselines).insert(wref.clone(), recorded);
}

/// What a rollout writes into a workload, besides its baseline: kept in every later write.
#[derive(Clone, Debug, Default)]
struct Marks {
    /// Our annotation in the pod template (at the kind's path).
    template: Option<String>,
    /// Argo Rollouts' `spec.restartAt`.
    restart_at: Option<String>,
    /// The progressive rollout's annotations on the workload's metadata (`rollout`,
    /// `rollout-failed`, `held`) that it has.
    progress: BTreeMap<&'static str, String>,
}

impl Marks {
    /// The marks on the workload as it is.
    fn kept(obj: &Workload) -> Self {
        let progress = written::PROGRESSIVE.into_iter().filter_map(|key| {
            let value = obj.annotations().get(key)?;
            Some((key, value.clone()))
        });
        Marks {
            template: obj
                .template_annotation(written::CONFIG_HASH)
                .map(String::from),
            restart_at: obj.restart_at.clone(),
            progress: progress.collect(),
        }
    }
}

/// Writes one of the progressive rollout's annotations (`rollout-failed`, `held`) into a
/// workload, keeping its baseline and everything else kube-reloader wrote there as it is.
pub(super) async fn annotate(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
    key: &'static str,
    value: String,
) -> Result<Written, Error> {
    let kept = [
        written::CONFIG_HASH,
        written::TRACKED,
        written::TEMPLATE_HASH,
        written::RELOADED_AT,
    ];
    let meta = kept
        .into_iter()
        .filter_map(|k| Some((k, obj.annotations().get(k)?.clone())))
        .collect();
    let mut marks = Marks::kept(obj);
    marks.progress.insert(key, value);
    apply(ctx, obj, wref, meta, marks).await
}

/// Sets `value` at `path` in `v`, making the objects on the way.
fn put(v: &mut serde_json::Value, path: &[&str], value: serde_json::Value) {
    let mut at = v;
    for field in path {
        at = &mut at[*field];
    }
    *at = value;
}

/// Server-side applies exactly the fields kube-reloader owns (a JSON merge patch of the same
/// fields for kinds whose schema may leave the pod template untyped; see [`KindSpec::apply`]).
/// Every apply names all of them: a field this manager applied before and leaves out now would
/// be removed, and removing the template annotation (or restartAt) would roll the pods.
///
/// [`KindSpec::apply`]: crate::state::workload::KindSpec::apply
async fn write(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
    base: Baseline<'_>,
    marks: Marks,
    reloaded_at: Option<String>,
) -> Result<Written, Error> {
    let mut meta = BTreeMap::from([
        (written::CONFIG_HASH, base.digest.hash_annotation()),
        (written::TRACKED, base.digest.parts_annotation()),
        (written::TEMPLATE_HASH, base.template.to_string()),
    ]);
    if let Some(at) = reloaded_at {
        meta.insert(written::RELOADED_AT, at);
    }
    apply(ctx, obj, wref, meta, marks).await
}

/// Writes these annotations of the workload's metadata and `marks`: every field kube-reloader
/// owns (see [`write`]). The progressive rollout's annotations it does not name are removed.
async fn apply(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
    mut meta: BTreeMap<&'static str, String>,
    marks: Marks,
) -> Result<Written, Error> {
    let Some(resource) = ctx.api_resource(wref.kind) else {
        return Err(Error::NotServed(wref.clone()));
    };
    meta.extend(marks.progress);
    let mut meta = json!(meta);
    if !wref.kind.spec().apply {
        // A merge patch removes what it sets to null (an apply, what it leaves out).
        for key in written::PROGRESSIVE {
            if obj.annotations().contains_key(key) && meta.get(key).is_none() {
                meta[key] = serde_json::Value::Null;
            }
        }
    }
    let mut patch = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": wref.name, "namespace": wref.namespace, "annotations": meta},
    });
    if let Some(hash) = marks.template {
        let path: Vec<&str> = wref
            .kind
            .spec()
            .template_path
            .iter()
            .copied()
            .chain(["metadata", "annotations", written::CONFIG_HASH])
            .collect();
        put(&mut patch, &path, json!(hash));
    }
    if let Some(at) = marks.restart_at {
        put(&mut patch, &["spec", "restartAt"], json!(at));
    }
    if !ctx.may_write() {
        return Err(Error::NotLeader(wref.clone()));
    }
    let before = obj.resource_version();
    // A precondition: the decision was made on this version of the workload. A copy the watch
    // has not brought up to date (it lacks a baseline written a moment ago, say) fails with a
    // conflict instead of recording or rolling a second time.
    if let Some(rv) = &before {
        patch["metadata"]["resourceVersion"] = json!(rv);
    }
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &wref.namespace, &resource);
    let (params, patch) = if wref.kind.spec().apply {
        (
            PatchParams::apply(ctx.settings.field_manager).force(),
            Patch::Apply(patch),
        )
    } else {
        let params = PatchParams {
            field_manager: Some(ctx.settings.field_manager.to_string()),
            ..PatchParams::default()
        };
        (params, Patch::Merge(patch))
    };
    let updated = match api.patch(&wref.name, &params, &patch).await {
        Ok(updated) => updated,
        Err(kube::Error::Api(status)) if status.code == 409 => return Ok(Written::Stale),
        Err(source) => {
            return Err(Error::Write {
                workload: wref.clone(),
                source,
            });
        }
    };
    if let Some(rv) = before.filter(|rv| updated.resource_version().as_ref() != Some(rv)) {
        locked(&ctx.pending_writes).insert(wref.clone(), rv);
    }
    Ok(Written::Done)
}

/// The outcome of a write that did not fail.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    Done,
    /// The workload changed since the copy the decision was made on: nothing was written.
    Stale,
}
