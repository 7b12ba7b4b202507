//! What a reconcile tells people: its Events, its warnings once each, and its retries.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};

use crate::locked;
use crate::model::kinds::WorkloadRef;
use crate::rules::digest::{ABSENT, WorkloadDigest};
use crate::rules::optin::ConfigView;
use crate::rules::references::ConfigKind;
use crate::state::metrics::Outcome;
use crate::state::workload::Workload;

use super::{Context, Error, workload_ref};

/// A Warning Event, once per workload and object, for each tracked object that does not exist.
/// Objects whose absence is `unconfirmed` are passed over: they may exist, not yet delivered by
/// the watch.
pub(super) fn warn_missing(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
    current: &WorkloadDigest,
    unconfirmed: &[String],
) {
    let newly_missing: Vec<&String> = current
        .parts
        .iter()
        .filter(|(name, _)| !unconfirmed.contains(name))
        .filter(|(name, part)| ctx.report_once(wref, format!("missing {name}"), *part == ABSENT))
        .map(|(name, _)| name)
        .collect();
    for name in newly_missing {
        tracing::warn!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, missing = %name,
            "tracked object does not exist; its creation will roll the workload");
        let note = format!(
            "{name} is tracked but does not exist in namespace {}. Create it, or remove it from the workload's references or annotations; its creation will roll this workload.",
            wref.namespace
        );
        publish(ctx, obj, EventType::Warning, "MissingReference", note);
    }
}

/// A Warning Event, once per workload and object, for each object it uses whose ignore or match
/// annotation is neither "true" nor "false" (so it counts as not set).
pub(super) fn warn_invalid_flags(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
    used: &BTreeSet<(ConfigKind, String)>,
    view: &dyn ConfigView,
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
        tracing::warn!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, object = %format!("{kind}/{name}"),
            "{kind} {name} has annotation {annotation} with a value other than \"true\" or \"false\"; it counts as not set");
        let note = format!(
            "{kind} {name}, which this workload uses, has annotation {annotation} set to neither \"true\" nor \"false\", so it counts as not set. Set it to \"true\" or \"false\"."
        );
        publish(ctx, obj, EventType::Warning, "InvalidAnnotation", note);
    }
}

/// Publishes an Event about `obj` in the background.
pub(super) fn publish(ctx: &Context, obj: &Workload, type_: EventType, reason: &str, note: String) {
    let regarding = ObjectReference {
        api_version: Some(obj.kind.api_version()),
        kind: Some(obj.kind.as_str().to_string()),
        name: obj.metadata.name.clone(),
        namespace: obj.metadata.namespace.clone(),
        uid: obj.metadata.uid.clone(),
        ..ObjectReference::default()
    };
    publish_about(ctx, regarding, type_, reason, note);
}

/// Publishes an Event about a ConfigMap or Secret in the background.
pub(super) fn publish_config(
    ctx: &Context,
    namespace: &str,
    config: &str,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let (kind, name) = config.split_once('/').unwrap_or(("ConfigMap", config));
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..ObjectReference::default()
    };
    publish_about(ctx, regarding, type_, reason, note);
}

/// Publishes an Event about `regarding` in the background.
fn publish_about(
    ctx: &Context,
    regarding: ObjectReference,
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
    let (recorder, slots) = (ctx.recorder.clone(), Arc::clone(&ctx.event_slots));
    let reason = reason.to_string();
    tokio::spawn(async move {
        let Ok(_slot) = slots.acquire_owned().await else {
            return;
        };
        if let Err(e) = recorder.publish(&event, &regarding).await {
            tracing::warn!(target: "kube_reloader::reconcile", kind = regarding.kind.unwrap_or_default(), namespace = regarding.namespace.unwrap_or_default(), name = regarding.name.unwrap_or_default(),
                error = %e, "could not publish Event {reason} (the controller needs create and patch on events.k8s.io events)");
        }
    });
}

/// Events sent at once (each holds an API connection while it is sent).
pub(super) const EVENTS_AT_ONCE: usize = 4;

/// On error: log, Event the workload, and retry with a delay.
pub fn error_policy(obj: Arc<Workload>, error: &Error, ctx: Arc<Context>) -> Action {
    let wref = workload_ref(obj.as_ref());
    if let Error::NotLeader(_) = error {
        // Leadership moved: the new leader reconciles this workload; nothing failed.
        tracing::debug!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, "{error}");
        return Action::await_change();
    }
    let failures = {
        let mut all = locked(&ctx.failures);
        let n = all.entry(wref.clone()).or_default();
        *n = n.saturating_add(1);
        *n
    };
    let delay = retry_delay(failures);
    tracing::warn!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, error = %error,
        failures, "reconcile failed; retrying in {}s", delay.as_secs());
    ctx.metrics.error("write_failed");
    ctx.metrics
        .rollout(wref.kind, &wref.namespace, Outcome::failed);
    let note = error.to_string();
    tokio::spawn(async move {
        publish(&ctx, obj.as_ref(), EventType::Warning, "WriteFailed", note);
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
