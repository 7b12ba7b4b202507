//! Progressive rollouts (issue 24), the shell: gathers what [`crate::rules::rollout`] reads (the
//! workloads a change concerns, from the caches; their status; the failures and holds recorded
//! on them; the new pods of a rollout) and carries out what it decides: a rollout waits for its
//! wave, a failure is recorded on the failed workload and told (Events, an alert, a metric), a
//! hold is recorded on each workload held.

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::locked;
use crate::model::annotations::{ours, written};
use crate::model::kinds::WorkloadRef;
use crate::rules::assess::{self, Assessment};
use crate::rules::decision::{Change, Wave};
use crate::rules::references::ConfigKind;
use crate::rules::restart_window;
use crate::rules::rollout::{
    self, ChangeId, Gate, Halt, Member, Progress, Standing, WAVE_POLL, hold_of, parse_mark,
    what_to_do,
};
use crate::rules::template::Restart;
use crate::state::workload::Workload;

use super::events::{publish, publish_config};
use super::execute::{Written, annotate};
use super::{Context, Error};

/// The progressive changes among a rollout's `changed` objects.
#[derive(Debug, Default)]
struct Changes {
    ids: Vec<ChangeId>,
    /// Those released by hand (`kube-reloader.io/release-hold`).
    released: Vec<ChangeId>,
}

/// The changes among `changed` (`Kind/name`) of configs that roll progressively.
fn changes(ctx: &Context, namespace: &str, changed: &[String]) -> Changes {
    let mut out = Changes::default();
    for change in ctx.configs.changes(namespace, changed) {
        if !ctx.settings.progressive.applies(change.progressive) {
            continue;
        }
        if change.released {
            out.released.push(change.id.clone());
        }
        out.ids.push(change.id);
    }
    out
}

fn config_key(config: &str) -> Option<(ConfigKind, &str)> {
    match config.split_once('/')? {
        ("ConfigMap", name) => Some((ConfigKind::ConfigMap, name)),
        ("Secret", name) => Some((ConfigKind::Secret, name)),
        _ => None,
    }
}

/// `Kind/name` of a workload, as members and holds name it.
fn member_name(wref: &WorkloadRef) -> String {
    format!("{}/{}", wref.kind, wref.name)
}

/// Where a rollout of `changed` (a workload's changed configs) would stand: not progressive, its
/// wave started (with the progressive changes it rolls), waiting for an earlier wave, or held.
pub(super) fn wave(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
    changed: &[String],
) -> (Wave, Vec<ChangeId>) {
    let changes = changes(ctx, &wref.namespace, changed);
    if changes.ids.is_empty() {
        return (Wave::Free, Vec::new());
    }
    match gate(ctx, obj, wref, &changes) {
        Verdict::Roll => (Wave::Free, changes.ids),
        Verdict::Wait {
            change,
            wave,
            waves,
            waiting_for,
        } => {
            tracing::debug!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
                %change, wave, waves, waiting_for = %waiting_for.join(", "),
                "progressive rollout: in wave {wave} of {waves}, waiting for the earlier waves to complete");
            (Wave::Waiting, Vec::new())
        }
        Verdict::Hold(halt) => (Wave::Held(halt), Vec::new()),
    }
}

/// What becomes of a rollout of progressive changes.
enum Verdict {
    Roll,
    Wait {
        change: ChangeId,
        wave: usize,
        waves: usize,
        waiting_for: Vec<String>,
    },
    Hold(Halt),
}

/// Whether a workload about to roll `changes` may roll now.
fn gate(ctx: &Context, obj: &Workload, wref: &WorkloadRef, changes: &Changes) -> Verdict {
    let recorded = obj.annotations().get(written::HELD).map(String::as_str);
    if let Some(halt) = hold_of(recorded, &changes.ids, &changes.released) {
        return Verdict::Hold(halt);
    }
    for id in &changes.ids {
        let members = members(ctx, wref, id);
        let released = changes.released.contains(id);
        let waves = &ctx.settings.progressive.waves;
        match rollout::gate(&member_name(wref), &members, waves, released) {
            Gate::Roll { .. } => {}
            Gate::Wait {
                wave,
                waves,
                waiting_for,
            } => {
                return Verdict::Wait {
                    change: id.clone(),
                    wave,
                    waves,
                    waiting_for,
                };
            }
            Gate::Hold { failed, reason } => {
                return Verdict::Hold(Halt {
                    change: id.clone(),
                    failed,
                    reason,
                });
            }
        }
    }
    Verdict::Roll
}

/// The hold recorded on a workload.
fn held(obj: &Workload) -> Option<Halt> {
    obj.annotations().get(written::HELD)?.parse().ok()
}

/// The failure recorded on a workload.
fn failed(obj: &Workload) -> Option<Halt> {
    obj.annotations().get(written::ROLLOUT_FAILED)?.parse().ok()
}

/// The workloads change `id` concerns, in `me`'s namespace: those still to roll it (`me`
/// among them) and those that rolled it.
fn members(ctx: &Context, me: &WorkloadRef, id: &ChangeId) -> Vec<Member> {
    let Some((kind, name)) = config_key(&id.config) else {
        return Vec::new();
    };
    let key = (me.namespace.clone(), kind, name.to_string());
    let mut members = Vec::new();
    for peer in ctx.index.affected(&key) {
        let Ok(Some(obj)) = ctx.cached(peer.kind, &peer.namespace, &peer.name) else {
            continue;
        };
        let standing = if peer == *me {
            Some(Standing::Pending)
        } else {
            standing(ctx, &obj, id)
        };
        if let Some(standing) = standing {
            members.push(Member {
                name: member_name(&peer),
                canary: obj.annotations().get(ours::CANARY).map(String::as_str) == Some("true"),
                standing,
            });
        }
    }
    members
}

/// Where a workload stands in change `id`: still to roll it (its baseline differs in that
/// config), rolled it (its `rollout` mark names it), or not concerned.
fn standing(ctx: &Context, obj: &Workload, id: &ChangeId) -> Option<Standing> {
    let subject = obj.subject(None);
    let settings = assess::Settings {
        policy: &ctx.settings.policy,
        key_id: ctx.key.id(),
        dry_run: false,
    };
    let namespace = obj.metadata.namespace.as_deref().unwrap_or_default();
    let view = ctx.configs.view(namespace);
    let Assessment::OptedIn(assessed) = assess::assess(&subject, &view, &settings, None) else {
        return None;
    };
    if let Change::Roll { changed } = &assessed.change
        && changed.contains(&id.config)
    {
        let reloader = ctx.settings.policy.reloader().is_some();
        let window = restart_window::read(obj.annotations(), reloader, Timestamp::now());
        if let Ok(Some((_, restart_window::Standing::Closed { .. }))) = window {
            return Some(Standing::Deferred);
        }
        return Some(Standing::Pending);
    }
    let marked = parse_mark(obj.annotations().get(written::ROLLOUT).map(String::as_str));
    marked
        .contains(id)
        .then(|| Standing::Rolled(progress(ctx, obj, id)))
}

/// How a workload's rollout of `id` stands, from its status and the failure recorded on it.
fn progress(ctx: &Context, obj: &Workload, id: &ChangeId) -> Progress {
    if let Some(f) = failed(obj).filter(|f| f.change == *id) {
        return Progress::Failed(f.reason);
    }
    let rolled = obj
        .annotations()
        .get(written::RELOADED_AT)
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(SystemTime::from);
    let elapsed = rolled
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let progress = rollout::progress(
        obj.kind,
        &obj.status,
        elapsed,
        ctx.settings.progressive.timeout,
    );
    let complete_for = complete_for(ctx, obj, id, progress == Progress::Complete);
    rollout::soaked(progress, complete_for, ctx.settings.progressive.soak)
}

/// How long a workload's rollout of `id` has been seen complete without a break (`complete`:
/// whether it is now). Kept in memory: a restarted controller starts the soak again, which only
/// makes it longer.
fn complete_for(ctx: &Context, obj: &Workload, id: &ChangeId, complete: bool) -> Option<Duration> {
    if ctx.settings.progressive.soak.is_zero() {
        return None;
    }
    let wref = super::workload_ref(obj);
    let mut seen = locked(&ctx.complete_since);
    if !complete {
        seen.remove(&wref);
        return None;
    }
    let since = match seen.get(&wref) {
        Some((change, since)) if change == id => *since,
        _ => {
            let now = Instant::now();
            seen.insert(wref, (id.clone(), now));
            now
        }
    };
    Some(since.elapsed())
}

/// Holds a workload: records the hold on it (once) with a `RolloutHalted` Event.
pub(super) async fn hold(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
    halt: Halt,
) -> Result<Action, Error> {
    if held(obj).as_ref() != Some(&halt) {
        if annotate(ctx, obj, wref, written::HELD, halt.to_string()).await? == Written::Stale {
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        tracing::warn!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
            change = %halt.change, failed = %halt.failed, reason = %halt.reason, "held: the progressive rollout of this change failed elsewhere; not rolling it");
        let note = format!(
            "Not rolled: the rollout of {} failed at {} ({}). kube-reloader holds this workload. {}",
            halt.change,
            halt.failed,
            halt.reason,
            what_to_do(&halt.change)
        );
        publish(ctx, obj, EventType::Warning, "RolloutHalted", note);
    } else {
        tracing::debug!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
            change = %halt.change, "held (as recorded on the workload): not rolling this change");
    }
    Ok(Action::await_change())
}

/// Watches a workload's own progressive rollout, if it made one of a change still current and
/// not released by hand: a
/// failure is recorded on it and told; one in progress is looked at again after [`WAVE_POLL`]; a
/// completed one starts the workloads of the next wave.
pub(super) async fn watch(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
    restart: Restart,
) -> Result<Option<Action>, Error> {
    let marked = parse_mark(obj.annotations().get(written::ROLLOUT).map(String::as_str));
    let configs: Vec<String> = marked.iter().map(|id| id.config.clone()).collect();
    let now = ctx.configs.changes(&wref.namespace, &configs);
    // A change still current, and not released by hand (whose failures halt nothing).
    let current = marked
        .into_iter()
        .find(|id| now.iter().any(|c| c.id == *id && !c.released));
    let Some(id) = current else {
        return Ok(None);
    };
    if failed(obj).is_some_and(|f| f.change == id) {
        return Ok(None); // recorded and told already
    }
    let mut progress = progress(ctx, obj, &id);
    if matches!(progress, Progress::InProgress | Progress::Soaking)
        && restart == Restart::Template
        && let Some(why) = crash_loop(ctx, obj, wref).await
    {
        progress = Progress::Failed(why);
    }
    match progress {
        Progress::InProgress | Progress::Soaking => Ok(Some(Action::requeue(WAVE_POLL))),
        Progress::Complete => {
            wake_pending(ctx, wref, &id);
            Ok(None)
        }
        Progress::Failed(reason) => {
            let halt = Halt {
                change: id,
                failed: member_name(wref),
                reason,
            };
            if annotate(ctx, obj, wref, written::ROLLOUT_FAILED, halt.to_string()).await?
                == Written::Stale
            {
                return Ok(Some(Action::requeue(Duration::from_millis(500))));
            }
            halted(ctx, obj, wref, &halt);
            wake_pending(ctx, wref, &halt.change);
            Ok(Some(Action::await_change()))
        }
    }
}

/// Tells of a halted rollout, once (when the failure is recorded): a log line, a
/// `RolloutHalted` Event on the failed workload and on the config, the metric, an alert.
fn halted(ctx: &Context, obj: &Workload, wref: &WorkloadRef, halt: &Halt) {
    tracing::warn!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
        change = %halt.change, reason = %halt.reason, "progressive rollout failed here; halting it: the workloads still to roll this change are held");
    ctx.metrics.halted(&wref.namespace);
    if let Some(alerts) = &ctx.alerts {
        alerts.halted(wref, &halt.change.config, &halt.reason, Timestamp::now());
    }
    let todo = what_to_do(&halt.change);
    let note = format!(
        "The rollout of {} failed here: {}. kube-reloader halted it; the workloads still to roll it are held. {todo}",
        halt.change, halt.reason
    );
    publish(ctx, obj, EventType::Warning, "RolloutHalted", note);
    let note = format!(
        "The progressive rollout of this change ({}) failed at {}: {}. kube-reloader holds every workload still to roll it. {todo}",
        halt.change, halt.failed, halt.reason
    );
    publish_config(
        ctx,
        &wref.namespace,
        &halt.change.config,
        EventType::Warning,
        "RolloutHalted",
        note,
    );
}

/// Reconciles now the workloads still to roll change `id`: a wave completed, or a failure holds
/// them (those waiting for their restart window too: a hold is recorded at once).
fn wake_pending(ctx: &Context, me: &WorkloadRef, id: &ChangeId) {
    let Some((kind, name)) = config_key(&id.config) else {
        return;
    };
    let key = (me.namespace.clone(), kind, name.to_string());
    for peer in ctx.index.affected(&key) {
        if peer == *me {
            continue;
        }
        let pending = ctx
            .cached(peer.kind, &peer.namespace, &peer.name)
            .ok()
            .flatten()
            .is_some_and(|obj| {
                matches!(
                    standing(ctx, &obj, id),
                    Some(Standing::Pending | Standing::Deferred)
                )
            });
        if pending {
            ctx.router.now(&peer);
        }
    }
}

/// Whether the pods of the workload's new revision (those carrying the digest its last rollout
/// wrote into the pod template) crash-loop. Read with the workload's selector; `None` when it
/// has none, or the pods cannot be listed (said in the log, once: the deadline or
/// `--rollout-timeout` still catches a failure).
async fn crash_loop(ctx: &Context, obj: &Workload, wref: &WorkloadRef) -> Option<String> {
    let selector = obj.selector.as_deref()?;
    let revision = obj.template_annotation(written::CONFIG_HASH)?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &wref.namespace);
    let pods = match api.list(&ListParams::default().labels(selector)).await {
        Ok(pods) => {
            ctx.report_once(wref, "pods unreadable".into(), false);
            pods.items
        }
        Err(e) => {
            if ctx.report_once(wref, "pods unreadable".into(), true) {
                tracing::warn!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, error = %e,
                    "cannot list the pods of a progressive rollout (the controller needs list on pods); crash loops go unseen, the rollout's deadline still applies");
            }
            return None;
        }
    };
    let new: Vec<Pod> = pods
        .into_iter()
        .filter(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(written::CONFIG_HASH))
                .map(String::as_str)
                == Some(revision)
        })
        .collect();
    let looping = rollout::crash_loop(&new);
    if looping.is_none() {
        let states: Vec<String> = new
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .map(|c| {
                let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
                let reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or("-");
                format!("{}:{reason}/{}", c.name, c.restart_count)
            })
            .collect();
        tracing::debug!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
            new_pods = new.len(), containers = %states.join(","), "progressive rollout under way: no new pod crash-loops");
    }
    looping
}
