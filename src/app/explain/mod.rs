//! `kube-reloader explain <kind>/<name>`: why did (or didn't) a workload roll? Computed with the
//! same rules the controller uses, from the cluster as it is now. `explain --all`: the same for
//! every workload of a namespace (or of all), one line each for those that opt in.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use crate::adapters::key::KeySecret;
use crate::model::kinds::WorkloadKind;
use crate::reconcile::{changed_text, written};
use crate::rules::assess::{self, Assessment};
use crate::rules::decision::Change;
use crate::rules::digest::SecretKey;
use crate::rules::optin::{self, ConfigView, Policy};
use crate::rules::references::{ConfigKind, Keys};
use crate::rules::reloaded_from::{self, LastReloadedFrom};
use crate::rules::restart_window::{self, Standing};
use crate::rules::rollout::{ChangeId, Halt, hold_of, what_to_do};
use crate::rules::scope::WatchScope;
use crate::rules::template::{self, Restart};
use crate::state::configs::ConfigStore;
use crate::state::csi::{self, CsiStore, WorkloadView};
use crate::state::workload::Workload;

mod fetch;
mod render;

pub use fetch::{ExplainError, parse_target, run, run_all};
pub use render::{render_inventory, render_text};

/// What `explain` reads with: the controller's view of what is watched and how opt-in is read,
/// and where the digest key is.
#[derive(Debug, Clone)]
pub struct Config {
    pub scope: WatchScope,
    pub policy: Policy,
    pub key: KeySecret,
    /// The controller's field manager (`--field-manager`), to tell its writes from others'.
    pub field_manager: &'static str,
}

impl Config {
    /// How workloads are read into their slim copies, as the controller reads them.
    pub fn reading(&self) -> crate::state::workload::Reading {
        crate::state::workload::Reading {
            names: self.policy.names,
            field_manager: self.field_manager,
        }
    }
}

/// The objects explain reads a workload against: the ConfigMaps, Secrets and
/// SecretProviderClasses, and what pods report to the Secrets Store CSI driver (nothing without
/// `--enable-csi-integration`).
#[derive(Clone, Copy)]
pub struct Configs<'a> {
    pub store: &'a ConfigStore,
    pub csi: &'a CsiStore,
}

impl<'a> From<&'a ConfigStore> for Configs<'a> {
    fn from(store: &'a ConfigStore) -> Self {
        Configs {
            store,
            csi: &csi::NONE,
        }
    }
}

/// Where a workload stands, in a word; [`Explanation::status`] says it in a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// No opt-in: the controller leaves it alone.
    NotOptedIn,
    /// A malformed opt-in annotation: left alone until it is fixed.
    Invalid,
    /// The digest key Secret, or the Deployment holding its pod template, could not be read.
    Unknown,
    /// Not reconciled yet: the controller records a baseline on first sight, rolling nothing.
    NoBaseline,
    /// Nothing it tracks changed since the baseline.
    UpToDate,
    /// The digest key changed: the controller records a new baseline, rolling nothing.
    KeyChanged,
    /// Configs changed together with the pod template: Kubernetes' own rollout covers them.
    Covered,
    /// Tracked objects were deleted: nothing rolls until they are back.
    Held,
    /// Configs changed: the controller rolls it.
    RolloutPending,
    /// A progressive rollout of a change it has to roll failed elsewhere: held until the config
    /// changes again or the hold is released.
    Halted,
}

impl State {
    /// A few words for tables.
    pub fn label(self) -> &'static str {
        match self {
            State::NotOptedIn => "not opted in",
            State::Invalid => "left alone: invalid annotation",
            State::Unknown => "unknown",
            State::NoBaseline => "no baseline yet",
            State::UpToDate => "up to date",
            State::KeyChanged => "digest key changed",
            State::Covered => "no rollout needed",
            State::Held => "holding",
            State::RolloutPending => "rollout pending",
            State::Halted => "held: progressive rollout halted",
        }
    }
}

/// One ConfigMap or Secret as it concerns the workload.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObjectRow {
    pub kind: ConfigKind,
    pub name: String,
    /// Where the pod template references it (empty when only named by an annotation).
    pub referenced_by: Vec<String>,
    pub exists: bool,
    pub ignored: bool,
    pub tracked: bool,
    /// `all` or the keys used.
    pub keys: String,
    /// Why it is or is not tracked.
    pub why: String,
}

/// Everything `explain` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// The opt-in annotations found, or the parse error.
    pub opt_in: Result<Vec<String>, String>,
    pub objects: Vec<ObjectRow>,
    /// Digest of what it tracks now (as the controller would record it).
    pub current: Option<String>,
    /// The baseline recorded on the workload's metadata.
    pub recorded: Option<String>,
    /// The value in the pod template (set by the last rollout).
    pub pod_template: Option<String>,
    /// Where the pod template is, when not in the workload itself (Argo Rollouts' workloadRef).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_from: Option<String>,
    /// For a workload restarted through Argo Rollouts' `spec.restartAt`: its value (empty when
    /// unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
    pub last_rollout: Option<String>,
    /// Its restart windows (`kube-reloader.io/restart-window`) and where they stand now, or why
    /// the annotation is invalid; left out when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_window: Option<String>,
    pub rollout_pending: bool,
    pub state: State,
    /// What differs from the baseline: the changed objects (`rollout-pending`, `covered`), or
    /// the deleted ones (`held`).
    pub changed: Vec<String>,
    pub status: String,
    /// kube-reloader's latest Event about the workload (`Reason: note`), which says what it did
    /// last and why (a rollout, a change a template change covered, a missing object). `None`
    /// when there is none, or the Events could not be read.
    pub last_event: Option<String>,
    /// stakater Reloader's last rollout of the workload, as its `last-reloaded-from` pod-template
    /// annotation records it (either of Reloader's formats), or why it cannot be read; left out
    /// when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reloader_last_reloaded_from: Option<Result<LastReloadedFrom, String>>,
}

impl Serialize for ConfigKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for WorkloadKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn keys_text(k: &Keys) -> String {
    match k {
        Keys::All => "all".into(),
        Keys::Only(keys) => keys.iter().cloned().collect::<Vec<_>>().join(","),
    }
}

/// Marks an opt-in annotation read from the pod template rather than the workload's metadata.
const FROM_TEMPLATE: &str = " (pod template)";

/// Whether an annotation says how a workload opts in or is rolled: ours but those kube-reloader
/// writes, and Reloader's (when honoured, under the names they are read by) but those Reloader
/// writes.
fn is_opt_in(key: &str, reloader: Option<&optin::reloader::Names>) -> bool {
    let ours_written = [
        written::CONFIG_HASH,
        written::TRACKED,
        written::RELOADED_AT,
        written::TEMPLATE_HASH,
    ];
    if key.starts_with("kube-reloader.io/") {
        return !ours_written.contains(&key);
    }
    reloader.is_some_and(|names| {
        names.on_workloads(key)
            || (key.contains("reloader.stakater.com/")
                && !optin::reloader::WRITTEN.contains(&key)
                && key != names.paused_at)
    })
}

/// The explanation of one workload against the objects in `store`. `key` is the installation's
/// digest key; without it, digests involving Secrets cannot be compared.
/// `source` is the Deployment holding its pod template, for an Argo Rollout with a
/// `spec.workloadRef`. `policy` is the command line's say on opt-in (`--reloader-compat`,
/// `--auto-reload-all`, `--resources-to-ignore`).
pub fn explain<'a>(
    obj: &Workload,
    source: Option<&Workload>,
    configs: impl Into<Configs<'a>>,
    key: Option<&SecretKey>,
    policy: &Policy,
) -> Explanation {
    explain_at(obj, source, configs, key, policy, Timestamp::now())
}

/// [`explain`] as of `now` (where its restart window stands).
pub fn explain_at<'a>(
    obj: &Workload,
    source: Option<&Workload>,
    configs: impl Into<Configs<'a>>,
    key: Option<&SecretKey>,
    policy: &Policy,
    now: Timestamp,
) -> Explanation {
    let Configs { store, csi } = configs.into();
    let restart_window = restart_window::read(obj.annotations(), policy.reloader().is_some(), now);
    let reloader_names = policy.reloader();
    let namespace = obj.namespace().unwrap_or_default();
    let annotations = obj.annotations();
    let subject = obj.subject(source);
    let restart = assess::restart(&subject, policy);
    let mut out = Explanation {
        kind: obj.kind,
        namespace: namespace.clone(),
        name: obj.name_any(),
        opt_in: Ok(Vec::new()),
        objects: Vec::new(),
        current: None,
        recorded: annotations.get(written::CONFIG_HASH).cloned(),
        pod_template: obj
            .template_annotation(written::CONFIG_HASH)
            .map(String::from),
        template_from: obj
            .template_ref
            .as_ref()
            .map(|r| format!("{} {}", r.kind, r.name)),
        restart_at: match restart {
            Restart::RestartAt => Some(obj.restart_at.clone().unwrap_or_default()),
            Restart::Template => None,
        },
        last_rollout: annotations.get(written::RELOADED_AT).cloned(),
        restart_window: match &restart_window {
            Ok(None) => None,
            Ok(Some((window, Standing::Open { closes }))) => {
                Some(format!("{}: open until {closes}", window.describe()))
            }
            Ok(Some((window, Standing::Closed { opens }))) => {
                Some(format!("{}: closed, opens at {opens}", window.describe()))
            }
            Err(invalid) => Some(format!(
                "{invalid}; the controller rolls it as if it had none (see the InvalidAnnotation Event)"
            )),
        },
        rollout_pending: false,
        state: State::NotOptedIn,
        changed: Vec::new(),
        status: String::new(),
        last_event: None,
        reloader_last_reloaded_from: template::template_annotations(subject.template)
            .get(optin::reloader::LAST_RELOADED_FROM)
            .map(|v| reloaded_from::parse(v)),
    };
    let not_opted_in = "not opted in: add kube-reloader.io/auto: \"true\" (or a Reloader annotation) to the workload's metadata";
    let key_id = key.map(SecretKey::id).unwrap_or("unknown");
    let settings = assess::Settings {
        policy,
        key_id,
        dry_run: false,
    };
    let name = obj.name_any();
    let view = WorkloadView {
        configs: store,
        csi,
        namespace: &namespace,
        kind: obj.kind,
        name: &name,
    };
    let assessed = match assess::assess(&subject, &view, &settings, None) {
        Assessment::Invalid(e) => {
            out.opt_in = Err(e.to_string());
            out.state = State::Invalid;
            out.status = "left alone: its opt-in annotation is invalid (fix it; see the InvalidAnnotation Event)".into();
            return out;
        }
        Assessment::NotOptedIn => {
            out.opt_in = Ok(Vec::new());
            out.status = not_opted_in.into();
            return out;
        }
        Assessment::NothingTracked => {
            // As the controller: auto only by --auto-reload-all, and nothing to track.
            out.opt_in = Ok(Vec::new());
            out.status = format!(
                "{not_opted_in}; --auto-reload-all covers it, but it uses no ConfigMap or Secret"
            );
            return out;
        }
        Assessment::OptedIn(assessed) => assessed,
    };
    let (opt, refs, tracked) = (&assessed.opt, &assessed.refs, &assessed.tracked);
    // Ours are read from the workload's metadata only; Reloader's also from the pod template.
    let template_annotations = template::template_annotations(subject.template);
    let mut opt_in_keys: Vec<String> = annotations
        .iter()
        .filter(|(k, _)| is_opt_in(k, reloader_names))
        .map(|(k, v)| format!("{k}={v}"))
        .chain(
            template_annotations
                .iter()
                .filter(|(k, _)| {
                    !k.starts_with("kube-reloader.io/") && is_opt_in(k, reloader_names)
                })
                .map(|(k, v)| format!("{k}={v}{FROM_TEMPLATE}")),
        )
        .collect();
    if opt.implicit {
        opt_in_keys.push("--auto-reload-all".into());
    }
    out.opt_in = Ok(opt_in_keys);

    let mut rows: BTreeMap<(ConfigKind, String), ObjectRow> = BTreeMap::new();
    for ((kind, name), usage) in refs {
        rows.insert(
            (*kind, name.clone()),
            ObjectRow {
                kind: *kind,
                name: name.clone(),
                referenced_by: usage.sites.clone(),
                exists: false,
                ignored: false,
                tracked: false,
                keys: keys_text(&usage.keys),
                why: String::new(),
            },
        );
    }
    for t in tracked {
        let row = rows.entry((t.kind, t.name.clone())).or_insert(ObjectRow {
            kind: t.kind,
            name: t.name.clone(),
            referenced_by: Vec::new(),
            exists: false,
            ignored: false,
            tracked: true,
            keys: String::new(),
            why: "named by an annotation".into(),
        });
        row.tracked = true;
        row.keys = keys_text(&t.keys);
    }
    for row in rows.values_mut() {
        let flags = view.flags(row.kind, &row.name);
        row.exists = flags.is_some();
        row.ignored = flags.is_some_and(|f| f.ignored);
        if row.why.is_empty() {
            row.why = if row.tracked {
                "referenced, and the opt-in covers it".into()
            } else if row.ignored {
                "ignored: it carries an ignore annotation".into()
            } else if opt
                .excluded
                .iter()
                .any(|(k, n)| *k == row.kind && *n == row.name)
            {
                "excluded by an exclude list".into()
            } else if opt.search(row.kind) && !flags.is_some_and(|f| f.matched) {
                "search mode: it lacks reloader.stakater.com/match: \"true\"".into()
            } else {
                format!("the opt-in does not cover {}s", row.kind)
            };
        }
        if let Some(annotation) = flags.and_then(|f| f.invalid) {
            row.why = format!(
                "{}; its {annotation} is neither \"true\" nor \"false\", so it counts as not set",
                row.why
            );
        }
    }
    out.objects = rows.into_values().collect();

    let current = &assessed.current;
    out.current = Some(current.hash_annotation());
    if key.is_none() && current.key_id.is_some() && assessed.recorded.is_some() {
        out.state = State::Unknown;
        out.status = "unknown: the digest key Secret could not be read, so Secret digests cannot be compared".into();
        return out;
    }
    let (state, status) = match assessed.change {
        Change::None => (
            State::UpToDate,
            "up to date: the recorded baseline matches what it tracks now".to_string(),
        ),
        Change::FirstSight => (
            State::NoBaseline,
            "no baseline yet: the controller records one on first sight, without a rollout (is it running and watching this namespace?)".into(),
        ),
        Change::KeyRotated => (
            State::KeyChanged,
            "the digest key changed: the controller records a new baseline, without a rollout".into(),
        ),
        Change::Backfill => (
            State::UpToDate,
            "up to date; the baseline predates pod-template digests: the controller adds one, without a rollout".into(),
        ),
        Change::Untracked { removed } => (
            State::UpToDate,
            format!(
                "up to date; {} no longer tracked: the controller records a new baseline, without a rollout",
                removed.join(", ")
            ),
        ),
        // Without --enable-csi-integration explain reads no versions, and those the baseline
        // records look gone.
        Change::Reported { changed } if policy.ignored.contains(&ConfigKind::SecretProviderClass) => (
            State::UpToDate,
            format!(
                "up to date as far as ConfigMaps and Secrets go; its baseline records versions its pods report to the Secrets Store CSI driver for {}, which explain reads only with --enable-csi-integration",
                changed.join(", ")
            ),
        ),
        Change::Reported { changed } => (
            State::UpToDate,
            format!(
                "up to date; the versions its pods report for {} came or went with pods starting or stopping (no rotation): the controller records them, without a rollout",
                changed.join(", ")
            ),
        ),
        Change::Template => (
            State::UpToDate,
            "up to date; the pod template changed since the baseline (someone else's rollout): the controller records it, without a rollout of its own".into(),
        ),
        Change::Covered { changed } => {
            let status = format!(
                "no rollout needed: {} changed, and the pod template changed at the same time: the new pods read the new config. The controller records the new baseline and rolls nothing.",
                changed_text(&changed)
            );
            covered(&mut out, changed, status)
        }
        Change::Restored { changed } if changed.is_empty() => (
            State::UpToDate,
            "up to date; the baseline was rewritten by someone else with the values it holds: the controller records it again, without a rollout".into(),
        ),
        Change::Restored { changed } => {
            let status = format!(
                "no rollout needed: the baseline was rewritten by someone else (kubectl rollout undo restores an older one along with its pod template), and {} differs from it; the pods of that rollout read the configs as they are. The controller records the new baseline and rolls nothing.",
                changed_text(&changed)
            );
            covered(&mut out, changed, status)
        }
        Change::Hold { deleted } => {
            let status = format!(
                "holding: {} was deleted; nothing rolls until it is back or something else changes",
                deleted.join(", ")
            );
            out.changed = deleted;
            (State::Held, status)
        }
        Change::Roll { changed } => match halt(obj, store, &namespace, &changed) {
            Some(halt) => {
                let status = format!(
                    "held: {} changed, but the progressive rollout of that change ({}) failed at {}: {}. The controller does not roll this workload. {}",
                    changed_text(&changed),
                    halt.change,
                    halt.failed,
                    halt.reason,
                    what_to_do(&halt.change)
                );
                out.changed = changed;
                (State::Halted, status)
            }
            None => {
                out.rollout_pending = true;
                let what = changed_text(&changed);
                let status = match &restart_window {
                    Ok(Some((_, Standing::Closed { opens }))) => format!(
                        "rollout pending: {what} changed since the baseline; outside its restart window, it rolls once when the window opens, at {opens}, with the configs as they are then"
                    ),
                    _ => format!(
                        "rollout pending: {what} changed since the baseline (the controller rolls it after the debounce window and --min-rollout-interval, and in its wave when the config rolls progressively; if this persists, check the controller's log and the workload's Events)"
                    ),
                };
                out.changed = changed;
                (State::RolloutPending, status)
            }
        },
    };
    out.state = state;
    out.status = status;
    // The workload whose own rollout failed and halted a change still current: said as well.
    let failed = annotations.get(written::ROLLOUT_FAILED);
    if let Some(f) = failed.and_then(|f| f.parse::<Halt>().ok())
        && store
            .changes(&namespace, std::slice::from_ref(&f.change.config))
            .iter()
            .any(|c| c.id == f.change && !c.released)
    {
        out.status.push_str(&format!(
            ". Its progressive rollout of {} failed ({}), which holds the workloads still to roll it. {}",
            f.change,
            f.reason,
            what_to_do(&f.change)
        ));
    }
    out
}

/// The hold in force on a workload with these `changed` configs to roll.
fn halt(obj: &Workload, store: &ConfigStore, namespace: &str, changed: &[String]) -> Option<Halt> {
    let changes = store.changes(namespace, changed);
    let ids: Vec<ChangeId> = changes.iter().map(|c| c.id.clone()).collect();
    let released: Vec<ChangeId> = changes
        .into_iter()
        .filter(|c| c.released)
        .map(|c| c.id)
        .collect();
    let recorded = obj.annotations().get(written::HELD).map(String::as_str);
    hold_of(recorded, &ids, &released)
}

/// The state of a workload whose changed configs someone else's rollout covers: they are listed,
/// and the controller records a new baseline without rolling.
fn covered(out: &mut Explanation, changed: Vec<String>, status: String) -> (State, String) {
    out.changed = changed;
    (State::Covered, status)
}

/// `explain --all`: every workload of the kinds rolled in one namespace, or in all of them.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The namespace listed; `None` for all namespaces.
    pub namespace: Option<String>,
    /// The workloads that opt in (a malformed opt-in included), by namespace, then in the
    /// order of the kinds rolled, then by name.
    pub workloads: Vec<Explanation>,
    /// How many workloads do not opt in; they are left out of `workloads`.
    pub not_opted_in: usize,
    /// How many workloads opt in but are in namespaces the controller does not watch
    /// (`--namespace`, `--ignore-namespace`, `--namespace-selector`); left out too.
    pub unwatched: usize,
    /// Kinds rolled that this API server does not serve, skipped (`GROUP/VERSION/KIND`).
    pub not_served: Vec<String>,
}

/// A listed workload, and the Deployment holding its pod template for an Argo Rollout with a
/// `spec.workloadRef`: `Err` saying why that Deployment could not be had.
pub type Found = (Workload, Result<Option<Workload>, String>);

/// The namespaces the controller watches, as its flags say: those of `--namespace` (all when
/// none), less `--ignore-namespace`, and with `--namespace-selector` only those whose labels
/// match (`matching`).
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub only: Vec<String>,
    pub ignored: Vec<String>,
    pub matching: Option<HashSet<String>>,
}

impl Watched {
    pub fn contains(&self, namespace: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|n| n == namespace))
            && !self.ignored.iter().any(|n| n == namespace)
            && self.matching.as_ref().is_none_or(|m| m.contains(namespace))
    }
}

/// Explains every workload found (each with [`explain`], against one `store`) and keeps those
/// that opt in, in namespaces the controller watches.
pub fn inventory<'a>(
    namespace: Option<String>,
    found: &[Found],
    configs: impl Into<Configs<'a>>,
    key: Option<&SecretKey>,
    policy: &Policy,
    watched: &Watched,
    not_served: Vec<String>,
) -> Inventory {
    let configs = configs.into();
    let mut workloads = Vec::new();
    let (mut not_opted_in, mut unwatched) = (0, 0);
    for (obj, source) in found {
        let mut e = explain(
            obj,
            source.as_ref().ok().and_then(Option::as_ref),
            configs,
            key,
            policy,
        );
        match (&e.state, source) {
            (State::NotOptedIn, _) => {
                not_opted_in += 1;
                continue;
            }
            _ if !watched.contains(&e.namespace) => {
                unwatched += 1;
                continue;
            }
            (State::Invalid, _) | (_, Ok(_)) => {}
            (_, Err(why)) => {
                e.state = State::Unknown;
                e.rollout_pending = false;
                e.changed.clear();
                e.status = format!("unknown: {why}");
            }
        }
        workloads.push(e);
    }
    // Stable: within a namespace, the order found (by kind, then name).
    workloads.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    Inventory {
        namespace,
        workloads,
        not_opted_in,
        unwatched,
        not_served,
    }
}

#[cfg(test)]
mod tests {
    use super::render::short_opt_in;
    use super::*;
    use crate::state::configs::summarize;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::{Value, json};

    #[test]
    fn targets() {
        let widget = WorkloadKind::parse("tests.example.io/v1/Widget=spec.workload.podTemplate")
            .expect("a kind");
        let kinds = crate::model::kinds::resolve(&WorkloadKind::BUILT_IN, &[widget]);
        let parse = |t: &str| parse_target(t, &kinds);
        assert_eq!(
            parse("deploy/web").unwrap(),
            (WorkloadKind::DEPLOYMENT, "web".into())
        );
        assert_eq!(
            parse("StatefulSet/db").unwrap(),
            (WorkloadKind::STATEFUL_SET, "db".into())
        );
        assert_eq!(parse("ds/a").unwrap().0, WorkloadKind::DAEMON_SET);
        assert_eq!(parse("cj/nightly").unwrap().0, WorkloadKind::CRON_JOB);
        assert_eq!(parse("rollout/web").unwrap().0, WorkloadKind::ROLLOUT);
        assert_eq!(parse("ro/web").unwrap().0, WorkloadKind::ROLLOUT);
        assert_eq!(parse("widget/w").unwrap().0, widget);
        assert_eq!(parse("widgets.tests.example.io/w").unwrap().0, widget);
        for bad in ["web", "pod/web", "deploy/", "", "widget.other.io/w"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // A kind not rolled is not explained.
        assert!(parse_target("cj/nightly", &[WorkloadKind::DEPLOYMENT]).is_err());
    }

    fn deployment(annotations: serde_json::Value, spec: serde_json::Value) -> Workload {
        let obj = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "annotations": annotations},
            "spec": {"selector": {}, "template": {"spec": spec}}
        }))
        .unwrap();
        Workload::from_dynamic(obj, WorkloadKind::DEPLOYMENT)
    }

    /// A Deployment rolled by Reloader's annotations strategy, with this `last-reloaded-from`.
    fn rolled_by_reloader(metadata: Value, last_reloaded_from: &str) -> Workload {
        let obj = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "annotations": metadata},
            "spec": {"selector": {}, "template": {
                "metadata": {"annotations": {
                    "reloader.stakater.com/last-reloaded-from": last_reloaded_from}},
                "spec": {"containers": [{"name": "app",
                    "envFrom": [{"configMapRef": {"name": "app"}}]}]}}}
        }))
        .unwrap();
        Workload::from_dynamic(obj, WorkloadKind::DEPLOYMENT)
    }

    #[test]
    fn reloaders_last_rollout_is_read_in_either_format() {
        let compat = Policy {
            reloader_compat: true,
            ..Policy::default()
        };
        let store = ConfigStore::new(0);
        let auto = json!({"reloader.stakater.com/auto": "true"});
        let v1 = json!({"type": "CONFIGMAP", "name": "app", "namespace": "ns",
            "hash": "b1d5781111d84f7b3fe45a0852e59758cd7a87e5", "containerRefs": ["app"],
            "observedAt": 1_700_000_000});
        let v2 = json!({"kind": "configmap", "name": "app", "namespace": "ns",
            "hash": "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23",
            "containers": ["app"], "reloadedAt": "2023-11-14T22:13:20Z"});
        for (doc, format) in [(v1, "v1"), (v2, "v2")] {
            let w = rolled_by_reloader(auto.clone(), &doc.to_string());
            let e = explain(&w, None, &store, None, &compat);
            let from = e.reloader_last_reloaded_from.clone().unwrap().unwrap();
            assert_eq!(from.object(), "ConfigMap/app");
            assert_eq!(from.format.as_str(), format);
            let text = render_text(&e);
            assert!(
                text.contains(&format!(
                    "Reloader:      last rolled it for ConfigMap/app, at 2023-11-14T22:13:20Z (its last-reloaded-from, {format} format)"
                )),
                "{text}"
            );
            // What Reloader writes is no opt-in, and the same either way.
            assert_eq!(
                e.opt_in,
                Ok(vec!["reloader.stakater.com/auto=true".to_string()])
            );
            assert_eq!(e.state, State::NoBaseline);
        }
        let w = rolled_by_reloader(auto.clone(), "{\"name\":\"app\"}");
        let e = explain(&w, None, &store, None, &compat);
        assert!(render_text(&e).contains("its last-reloaded-from cannot be read: it has neither"));
        let w = deployment(auto, json!({"containers": []}));
        let e = explain(&w, None, &store, None, &compat);
        assert!(e.reloader_last_reloaded_from.is_none());
        let json = serde_json::to_value(&e).unwrap();
        assert!(json.get("reloader_last_reloaded_from").is_none());
    }

    /// Under Reloader's `--*-annotation` flags, the renamed annotations are the opt-in shown.
    #[test]
    fn renamed_reloader_annotations_are_shown_as_the_opt_in() {
        let renamed = Policy {
            reloader_compat: true,
            names: optin::reloader::Names {
                auto: "example.com/auto",
                paused_at: "example.com/paused-at",
                ..optin::reloader::Names::STAKATER
            },
            ..Policy::default()
        };
        let store = ConfigStore::new(0);
        let obj = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "annotations": {
                "example.com/auto": "true", "example.com/paused-at": "2023-11-14T22:13:20Z"}},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "c", "envFrom": [{"configMapRef": {"name": "app"}}]}]}}}
        }))
        .unwrap();
        let reading = crate::state::workload::Reading {
            names: renamed.names,
            ..Default::default()
        };
        let w = Workload::from_dynamic_with(obj, WorkloadKind::DEPLOYMENT, &reading);
        let e = explain(&w, None, &store, None, &renamed);
        assert_eq!(e.opt_in, Ok(vec!["example.com/auto=true".to_string()]));
        assert_eq!(e.state, State::NoBaseline);
    }

    #[test]
    fn explains_tracked_missing_ignored_and_pending() {
        let compat = Policy {
            reloader_compat: true,
            ..Policy::default()
        };
        let key = SecretKey::new(vec![7; 32]);
        let store = ConfigStore::new(0);
        let put = |name: &str, annotations: serde_json::Value, data: serde_json::Value| {
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
                "data": data
            }))
            .unwrap();
            store.insert(
                ("ns".into(), ConfigKind::ConfigMap, name.into()),
                summarize(&cm, &key, Some(&optin::reloader::Names::STAKATER)),
            );
        };
        put("app", serde_json::json!({}), serde_json::json!({"k": "v"}));
        let ignore = |v: &str| serde_json::json!({"kube-reloader.io/ignore": v});
        put("quiet", ignore("true"), serde_json::json!({}));
        put("typo", ignore("yes"), serde_json::json!({}));
        let spec = serde_json::json!({"containers": [{"name": "c", "envFrom": [
            {"configMapRef": {"name": "app"}}, {"configMapRef": {"name": "quiet"}},
            {"configMapRef": {"name": "typo"}}, {"secretRef": {"name": "gone"}}
        ]}]});

        let w = deployment(
            serde_json::json!({"kube-reloader.io/auto": "true"}),
            spec.clone(),
        );
        let e = explain(&w, None, &store, Some(&key), &compat);
        assert!(e.status.starts_with("no baseline yet"), "{}", e.status);
        let row = |n: &str| e.objects.iter().find(|o| o.name == n).unwrap().clone();
        assert!(row("app").tracked && row("app").exists);
        assert!(!row("quiet").tracked && row("quiet").ignored);
        assert!(row("gone").tracked && !row("gone").exists);
        assert!(row("typo").tracked && !row("typo").ignored);
        assert!(
            row("typo")
                .why
                .contains("kube-reloader.io/ignore is neither \"true\" nor \"false\""),
            "{}",
            row("typo").why
        );
        assert_eq!(row("app").referenced_by, vec!["container c envFrom"]);

        // Record the current digest as the baseline: up to date.
        let current = e.current.clone().unwrap();
        let w = deployment(
            serde_json::json!({"kube-reloader.io/auto": "true", "kube-reloader.io/config-hash": current}),
            spec.clone(),
        );
        let e = explain(&w, None, &store, Some(&key), &compat);
        assert!(e.status.starts_with("up to date"), "{}", e.status);
        assert!(!e.rollout_pending);

        // Change the ConfigMap: pending.
        put("app", serde_json::json!({}), serde_json::json!({"k": "v2"}));
        let e = explain(&w, None, &store, Some(&key), &compat);
        assert!(e.rollout_pending, "{}", e.status);
        let text = render_text(&e);
        assert!(text.contains("rollout pending"), "{text}");
        assert!(text.contains("ConfigMap  app"), "{text}");

        // Outside its restart window: pending until the opening, which explain names.
        let windowed = |window: &str| {
            deployment(
                serde_json::json!({"kube-reloader.io/auto": "true", "kube-reloader.io/config-hash": current,
                    "kube-reloader.io/restart-window": window}),
                spec.clone(),
            )
        };
        let noon: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
        let w = windowed("Europe/Berlin 0 2 * * * 1h");
        let e = explain_at(&w, None, &store, Some(&key), &compat, noon);
        assert!(e.rollout_pending, "{}", e.status);
        assert!(
            e.status
                .contains("outside its restart window, it rolls once when the window opens, at 2026-12-08T01:00:00Z"),
            "{}",
            e.status
        );
        let text = render_text(&e);
        assert!(
            text.contains("Restart window: 0 2 * * * (Europe/Berlin) for 1h: closed, opens at 2026-12-08T01:00:00Z"),
            "{text}"
        );
        // Inside it: pending as any change, the window shown open.
        let w = windowed("UTC 0 12 * * * 30m");
        let e = explain_at(&w, None, &store, Some(&key), &compat, noon);
        assert!(!e.status.contains("restart window"), "{}", e.status);
        assert_eq!(
            e.restart_window.as_deref(),
            Some("0 12 * * * (UTC) for 30m: open until 2026-12-07T12:30:00Z")
        );
        // Invalid: said, and the workload rolls as without one.
        let w = windowed("at night");
        let e = explain_at(&w, None, &store, Some(&key), &compat, noon);
        assert!(
            e.rollout_pending && !e.status.contains("restart window"),
            "{}",
            e.status
        );
        let said = e.restart_window.unwrap_or_default();
        assert!(
            said.contains("is invalid") && said.contains("as if it had none"),
            "{said}"
        );

        // Held: a progressive rollout of this very change failed at another workload.
        let digest = store
            .rollout_info("ns", ConfigKind::ConfigMap, "app")
            .unwrap()
            .digest;
        let held = format!("ConfigMap/app@{digest}; Deployment/web-0: its new pods crash-loop");
        let w = deployment(
            serde_json::json!({"kube-reloader.io/auto": "true", "kube-reloader.io/config-hash": current,
                "kube-reloader.io/held": held}),
            spec.clone(),
        );
        let e = explain(&w, None, &store, Some(&key), &compat);
        assert_eq!(e.state, State::Halted, "{}", e.status);
        assert!(!e.rollout_pending);
        for part in [
            "failed at Deployment/web-0: its new pods crash-loop",
            "kubectl annotate configmap app kube-reloader.io/release-hold=",
        ] {
            assert!(e.status.contains(part), "{part} in {}", e.status);
        }
        // The fix (another change) ends the hold: pending again.
        put("app", serde_json::json!({}), serde_json::json!({"k": "v3"}));
        let e = explain(&w, None, &store, Some(&key), &compat);
        assert_eq!(e.state, State::RolloutPending, "{}", e.status);

        // Not opted in, and invalid.
        let e = explain(
            &deployment(serde_json::json!({}), spec.clone()),
            None,
            &store,
            Some(&key),
            &compat,
        );
        assert!(e.status.starts_with("not opted in"));
        assert_eq!(e.state, State::NotOptedIn);
        let e = explain(
            &deployment(serde_json::json!({"kube-reloader.io/auto": "yes"}), spec),
            None,
            &store,
            Some(&key),
            &compat,
        );
        assert!(e.opt_in.is_err());
        assert_eq!(e.state, State::Invalid);
        assert!(
            serde_json::to_string(&e)
                .unwrap()
                .contains("kube-reloader.io/auto")
        );
    }

    /// A workload of `kind` named `name` in namespace `ns`, from its metadata annotations, its pod
    /// template's annotations and pod spec.
    fn workload(
        kind: WorkloadKind,
        name: &str,
        annotations: Value,
        template: Value,
        spec: Value,
    ) -> Workload {
        let obj = serde_json::from_value(json!({
            "apiVersion": kind.api_version(), "kind": kind.as_str(),
            "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
            "spec": {"template": {"metadata": {"annotations": template}, "spec": spec}}
        }))
        .unwrap();
        Workload::from_dynamic(obj, kind)
    }

    fn env_from(cm: &str) -> Value {
        json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": cm}}]}]})
    }

    #[test]
    fn opt_in_annotations_in_short() {
        let cases = [
            ("kube-reloader.io/auto=true", "auto"),
            ("kube-reloader.io/configmaps=a,b", "configmaps=a,b"),
            ("kube-reloader.io/debounce=30s", "debounce=30s"),
            ("reloader.stakater.com/auto=true", "reloader:auto"),
            ("reloader.stakater.com/auto=false", "reloader:auto=false"),
            (
                "configmap.reloader.stakater.com/reload=app,db",
                "reloader:configmap.reload=app,db",
            ),
            (
                "secrets.exclude.reloader.stakater.com/reload=x",
                "reloader:secrets.exclude.reload=x",
            ),
            (
                "deployment.reloader.stakater.com/pause-period=5m",
                "reloader:deployment.pause-period=5m",
            ),
            (
                "reloader.stakater.com/search=true (pod template)",
                "reloader:search (pod template)",
            ),
            ("--auto-reload-all", "--auto-reload-all"),
        ];
        for (entry, short) in cases {
            assert_eq!(short_opt_in(entry), short, "{entry}");
        }
    }

    /// `explain --all`: the opted-in workloads, each with how it opts in, what it tracks and its
    /// state; the others counted. Reloader's annotations count only when honoured, and
    /// `--auto-reload-all` opts in every workload that uses a config and says nothing itself.
    #[test]
    fn inventory_of_a_namespace() {
        let key = SecretKey::new(vec![7; 32]);
        let store = ConfigStore::new(0);
        let put = |name: &str, value: &str| {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns"}, "data": {"k": value}
            }))
            .unwrap();
            store.insert(
                ("ns".into(), ConfigKind::ConfigMap, name.into()),
                summarize(&cm, &key, Some(&optin::reloader::Names::STAKATER)),
            );
        };
        put("app", "1");
        put("db", "1");
        let compat = Policy {
            reloader_compat: true,
            ..Policy::default()
        };
        let auto = json!({"kube-reloader.io/auto": "true"});
        // The baseline as the controller would record it now, for `ours`.
        let ours = |annotations: Value| {
            workload(
                WorkloadKind::DEPLOYMENT,
                "ours",
                annotations,
                json!({}),
                env_from("app"),
            )
        };
        let baseline = explain(&ours(auto.clone()), None, &store, Some(&key), &compat)
            .current
            .unwrap();
        let ours = ours(
            json!({"kube-reloader.io/auto": "true", "kube-reloader.io/config-hash": baseline}),
        );
        put("app", "2");
        let deployment = |name: &str, annotations: Value, template: Value, spec: Value| {
            workload(WorkloadKind::DEPLOYMENT, name, annotations, template, spec)
        };
        let template_opt_in = json!({
            "reloader.stakater.com/auto": "true",
            "reloader.stakater.com/last-reloaded-from": "{\"type\":\"CONFIGMAP\",\"name\":\"app\"}",
        });
        let rollout: Workload = Workload::from_dynamic(
            serde_json::from_value(json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "ro", "namespace": "ns", "annotations": auto},
                "spec": {"workloadRef": {"kind": "Deployment", "name": "gone"}}
            }))
            .unwrap(),
            WorkloadKind::ROLLOUT,
        );
        let found: Vec<Found> = vec![
            (
                deployment(
                    "web",
                    json!({"reloader.stakater.com/auto": "true"}),
                    json!({}),
                    env_from("app"),
                ),
                Ok(None),
            ),
            (
                deployment("tmpl", json!({}), template_opt_in, env_from("app")),
                Ok(None),
            ),
            (
                deployment(
                    "named",
                    json!({"configmap.reloader.stakater.com/reload": "db"}),
                    json!({}),
                    env_from("app"),
                ),
                Ok(None),
            ),
            (
                deployment("plain", json!({}), json!({}), env_from("app")),
                Ok(None),
            ),
            (
                deployment(
                    "bare",
                    json!({}),
                    json!({}),
                    json!({"containers": [{"name": "c"}]}),
                ),
                Ok(None),
            ),
            (
                deployment(
                    "typo",
                    json!({"reloader.stakater.com/auto": "True"}),
                    json!({}),
                    env_from("app"),
                ),
                Ok(None),
            ),
            (ours, Ok(None)),
            (
                rollout,
                Err("the Deployment gone its spec.workloadRef names cannot be read".into()),
            ),
        ];
        let inv = inventory(
            Some("ns".into()),
            &found,
            &store,
            Some(&key),
            &compat,
            &Watched::default(),
            vec!["batch/v1/CronJob".into()],
        );
        let listed: Vec<(&str, State)> = inv
            .workloads
            .iter()
            .map(|e| (e.name.as_str(), e.state))
            .collect();
        assert_eq!(
            listed,
            [
                ("web", State::NoBaseline),
                ("tmpl", State::NoBaseline),
                ("named", State::NoBaseline),
                ("typo", State::Invalid),
                ("ours", State::RolloutPending),
                ("ro", State::Unknown),
            ]
        );
        assert_eq!(inv.not_opted_in, 2);
        let tmpl = &inv.workloads[1];
        assert_eq!(
            tmpl.opt_in,
            Ok(vec![
                "reloader.stakater.com/auto=true (pod template)".to_string()
            ])
        );
        assert_eq!(inv.workloads[4].changed, ["ConfigMap/app"]);

        let text = render_inventory(&inv);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(line("WORKLOAD"), "WORKLOAD OPT-IN TRACKS STATE");
        assert_eq!(
            line("deployment/web"),
            "deployment/web reloader:auto ConfigMap/app no baseline yet"
        );
        assert_eq!(
            line("deployment/tmpl"),
            "deployment/tmpl reloader:auto (pod template) ConfigMap/app no baseline yet"
        );
        assert_eq!(
            line("deployment/named"),
            "deployment/named reloader:configmap.reload=db ConfigMap/db no baseline yet"
        );
        assert!(
            line("deployment/typo").starts_with(
                "deployment/typo invalid - left alone: annotation reloader.stakater.com/auto=\"True\" is invalid"
            ),
            "{text}"
        );
        assert_eq!(
            line("deployment/ours"),
            "deployment/ours auto ConfigMap/app rollout pending: ConfigMap/app changed"
        );
        assert!(
            line("rollout/ro").contains("unknown: the Deployment gone"),
            "{text}"
        );
        assert!(!text.contains("plain") && !text.contains("bare"), "{text}");
        assert!(
            text.contains("6 workloads opted in, 2 not opted in (not listed) in namespace ns.\n"),
            "{text}"
        );
        assert!(
            text.contains("Not served by this API server, skipped: batch/v1/CronJob."),
            "{text}"
        );
        let v = serde_json::to_value(&inv).unwrap();
        assert_eq!(v["workloads"][0]["state"], "no-baseline");
        assert_eq!(v["workloads"][4]["state"], "rollout-pending");
        assert_eq!(v["not_opted_in"], 2);

        // Without Reloader's annotations, only ours opt in (the typo is not read at all).
        let ours_only = Policy::default();
        let everywhere = Watched::default();
        let inv = inventory(
            None,
            &found,
            &store,
            Some(&key),
            &ours_only,
            &everywhere,
            vec![],
        );
        let names: Vec<&str> = inv.workloads.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["ours", "ro"]);
        assert_eq!(inv.not_opted_in, 6);
        let text = render_inventory(&inv);
        assert!(text.starts_with("NAMESPACE  WORKLOAD"), "{text}");
        assert!(text.contains("in all namespaces."), "{text}");

        // --auto-reload-all: every workload that uses a config and sets no auto of its own.
        let all = Policy {
            auto_reload_all: true,
            ..compat.clone()
        };
        let inv = inventory(
            Some("ns".into()),
            &found,
            &store,
            Some(&key),
            &all,
            &everywhere,
            vec![],
        );
        let plain = inv
            .workloads
            .iter()
            .find(|e| e.name == "plain")
            .expect("plain listed");
        assert_eq!(plain.opt_in, Ok(vec!["--auto-reload-all".to_string()]));
        assert!(inv.workloads.iter().all(|e| e.name != "bare"));
        assert_eq!(inv.not_opted_in, 1);

        // A namespace the controller does not watch: its opted-in workloads are counted apart.
        let elsewhere = Watched {
            only: vec!["other".into()],
            ..Watched::default()
        };
        let inv = inventory(
            Some("ns".into()),
            &found,
            &store,
            Some(&key),
            &compat,
            &elsewhere,
            vec![],
        );
        assert!(inv.workloads.is_empty());
        assert_eq!((inv.not_opted_in, inv.unwatched), (2, 6));
        let text = render_inventory(&inv);
        assert_eq!(
            text,
            "0 workloads opted in, 2 not opted in (not listed) in namespace ns.\n\
             6 more workloads opted in, but in namespaces kube-reloader does not watch \
             (--namespace, --ignore-namespace, --namespace-selector): not listed.\n"
        );
    }

    #[test]
    fn watched_namespaces_follow_the_controllers_flags() {
        let s = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let cases: [(Watched, &[&str], &[&str]); 4] = [
            (Watched::default(), &["a", "b"], &[]),
            (
                Watched {
                    only: s(&["a", "b"]),
                    ..Watched::default()
                },
                &["a", "b"],
                &["c"],
            ),
            (
                Watched {
                    ignored: s(&["kube-system"]),
                    ..Watched::default()
                },
                &["a"],
                &["kube-system"],
            ),
            (
                Watched {
                    only: s(&["a", "b"]),
                    ignored: s(&["b"]),
                    matching: Some(["a".to_string(), "c".to_string()].into()),
                },
                &["a"],
                &["b", "c", "d"],
            ),
        ];
        for (watched, inside, outside) in cases {
            for ns in inside {
                assert!(watched.contains(ns), "{ns} in {watched:?}");
            }
            for ns in outside {
                assert!(!watched.contains(ns), "{ns} not in {watched:?}");
            }
        }
    }
}
