//! The decision at the heart of kube-reloader, and the one place that makes it: given what a
//! workload recorded, what its configs and pod template digest to now, and the state of its
//! debounce window, cooldown and the rollout rate limit, what to do. `reconcile.rs` executes the
//! [`Action`] returned and decides nothing itself.
//!
//! Two steps: [`classify`] says what changed since the baseline (a pure function of the record
//! and the present), and [`decide`] turns that into an action under the timing rules.

use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;

use crate::rules::csi;
use crate::rules::digest::{ABSENT, Recorded, WorkloadDigest};
use crate::rules::ratelimit::{TokenBucket, cooldown};
use crate::rules::rollout::{Halt, WAVE_POLL};

/// What changed since the baseline a workload records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// No baseline yet: the workload is seen for the first time.
    FirstSight,
    /// Recorded and current agree.
    None,
    /// The configs agree, but the baseline was written before kube-reloader recorded the pod
    /// template's digest: record it, so that later template changes can be recognised.
    Backfill,
    /// Only the pod template changed (someone else's rollout: an image bump, `kubectl rollout
    /// restart`): record its digest, so that a later config change is compared with it.
    Template,
    /// The secret key changed since the baseline, so Secret digests cannot be compared, and no
    /// ConfigMap changed: record the current digest.
    KeyRotated,
    /// Configs changed, and so did the pod template, since the baseline: the rollout the
    /// template change starts brings up pods that read the new configs, so this is one delivery
    /// (a kustomize generator's rename, Helm's `checksum/config`, a config and the workload
    /// applied together). `changed` names the configs that differ, references that came and went
    /// included.
    Covered { changed: Vec<String> },
    /// The only difference is that tracked objects were deleted. Rolling now would start pods
    /// that reference a missing object; keep the baseline instead, so that re-creating it with
    /// the same content rolls nothing, and with other content rolls once.
    Hold { deleted: Vec<String> },
    /// The only difference is that objects are no longer tracked (the opt-in was narrowed, or
    /// `--resources-to-ignore` turned on): the running pods need nothing new, so the baseline is
    /// recorded without a rollout.
    Untracked { removed: Vec<String> },
    /// The only difference is in the versions a workload's pods report to the Secrets Store CSI
    /// driver, and none is a rotation: pods that started report versions of objects the baseline
    /// had none of, or pods that went away took theirs along (see [`crate::rules::csi`]). The
    /// pods running read what they report: record it, roll nothing. `changed` names the
    /// SecretProviderClasses.
    Reported { changed: Vec<String> },
    /// The configs differ from a baseline someone else wrote: a `kubectl rollout undo` of a
    /// Deployment restores an older baseline together with the older pod template it was
    /// recorded with (so the template digests agree), and the pods the undo starts read the
    /// configs as they are; a GitOps tool re-applying a copy of kube-reloader's annotations does
    /// the same without a rollout of its own, and rolling for it would fight the tool. Either
    /// way the record no longer says what the running pods read: record the present, roll
    /// nothing. `changed` names the configs that differ from that record (none when it matches
    /// the present: it is recorded again all the same, to be kube-reloader's own once more).
    Restored { changed: Vec<String> },
    /// The configs changed and the pod template did not: roll out. `changed` names the objects
    /// whose digest differs (objects no longer tracked are not a reason to roll, and left out).
    Roll { changed: Vec<String> },
}

/// What changed between the baseline `recorded` and the present: the digest of the configs the
/// workload tracks now, and the digest of its pod template ([`crate::rules::digest::template_digest`]).
///
/// "The template changed at or after the config change" is established from the record alone:
/// every template change is recorded once its debounce window has passed (see [`decide`]), so a
/// template digest that still differs from the record when a config change is decided was
/// changed within that window, before or after the config change, or while no kube-reloader was
/// leading. A template change made earlier than that is already in the record, and the config
/// change then rolls.
///
/// A baseline someone else wrote ([`Recorded::by_others`]) is [`Change::Restored`], whatever
/// else changed: even one that matches the present is recorded again, so that it is
/// kube-reloader's once more and the next config change rolls.
pub fn classify(recorded: Option<&Recorded>, current: &WorkloadDigest, template: &str) -> Change {
    let Some(recorded) = recorded else {
        return Change::FirstSight;
    };
    if recorded.by_others {
        return Change::Restored {
            changed: recorded.changed(current),
        };
    }
    let template_changed = recorded.template.as_deref().is_some_and(|t| t != template);
    if recorded.hash == current.hash {
        return match &recorded.template {
            None => Change::Backfill,
            Some(_) if template_changed => Change::Template,
            Some(_) => Change::None,
        };
    }
    let key_rotated =
        matches!((&recorded.key_id, &current.key_id), (Some(was), Some(now)) if was != now);
    let mut changed = recorded.changed(current);
    if key_rotated {
        // Secrets cannot be compared across keys; ConfigMaps still can.
        changed.retain(|name| !name.starts_with("Secret/"));
        if changed.is_empty() {
            return Change::KeyRotated;
        }
    }
    if template_changed {
        let changed = csi::object_names(changed);
        return Change::Covered { changed };
    }
    let (removed, changed): (Vec<String>, Vec<String>) = changed
        .into_iter()
        .partition(|name| !current.parts.contains_key(name));
    let (arrived, changed): (Vec<String>, Vec<String>) = changed
        .into_iter()
        .partition(|name| csi::arrived(name, &recorded.parts));
    if changed.is_empty() && !(removed.is_empty() && arrived.is_empty()) {
        if removed.iter().all(|n| csi::is_version(n)) {
            let mut reported = arrived;
            reported.extend(removed);
            return Change::Reported {
                changed: csi::object_names(reported),
            };
        }
        // Objects no longer tracked (any versions that arrived are recorded along).
        return Change::Untracked { removed };
    }
    let deleted = |name: &String| {
        current.parts.get(name).map(String::as_str) == Some(ABSENT)
            && recorded.parts.get(name).is_some_and(|p| p != ABSENT)
    };
    if !changed.is_empty() && changed.iter().all(deleted) {
        return Change::Hold { deleted: changed };
    }
    Change::Roll {
        changed: csi::object_names(changed),
    }
}

/// How many seconds later than the pod template a config must have been written for its change
/// not to count as part of the template's delivery. managedFields times are whole seconds, one
/// delivery may write the template first (`kubectl apply -f dir/` in file-name order) and take
/// up to 1.7 s between two objects on a loaded machine (tests/integration/delivery.rs), and a
/// pod of the template's rollout takes a second or two to start and read its configs; more than
/// 2 s later (3 s apart in whole seconds), the pods may have read the old config.
pub const WRITTEN_APART: i64 = 2;

/// A change the pod template's change covers ([`Change::Covered`]), unless a changed config was
/// written more than [`WRITTEN_APART`] seconds after the pod template was (`written` gives when,
/// by `Kind/name`): then the pods of the template's rollout may have started, and read the
/// config, before that write, and it is rolled ([`Change::Roll`], naming those configs). Without
/// times (no managedFields) the template's change covers it, as before anything could tell.
pub fn written_after(
    change: Change,
    template_written: Option<Timestamp>,
    written: impl Fn(&str) -> Option<Timestamp>,
) -> Change {
    let (Change::Covered { changed }, Some(template)) = (&change, template_written) else {
        return change;
    };
    let later: Vec<String> = changed
        .iter()
        .filter(|name| {
            written(name).is_some_and(|w| w.as_second() > template.as_second() + WRITTEN_APART)
        })
        .cloned()
        .collect();
    if later.is_empty() {
        return change;
    }
    Change::Roll { changed: later }
}

/// Tracked objects that the store shows as absent while the baseline does not record them so:
/// before anything records them absent, their absence is confirmed with the API server, since the
/// watch may simply not have delivered them yet (a workload and its ConfigMap created together).
pub fn unconfirmed_absent(recorded: Option<&Recorded>, current: &WorkloadDigest) -> Vec<String> {
    current
        .parts
        .iter()
        .filter(|(_, part)| *part == ABSENT)
        .filter(|(name, _)| {
            recorded.is_none_or(|r| r.parts.get(*name).map(String::as_str) != Some(ABSENT))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The workload's debounce window: opened by the first change seen (a config change, or a
/// template change), reconciled again when it ends. Everything a delivery changes within one
/// window is decided together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// No window: nothing pending.
    Closed,
    /// Opened, not yet over: its end brings a reconcile.
    Open,
    /// Over: decide now.
    Passed,
}

/// Why a workload waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// `--min-rollout-interval` since the workload's last rollout.
    Cooldown,
    /// The global token bucket (`--max-rollouts-per-second`).
    RateLimit,
    /// A progressive rollout's earlier waves have not completed.
    Wave,
    /// The workload's restart window is closed (`kube-reloader.io/restart-window`).
    RestartWindow,
}

/// Where a rollout would stand in the progressive rollout of its change
/// ([`crate::rules::rollout::gate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Wave {
    /// Not progressive, or its wave has started.
    #[default]
    Free,
    /// An earlier wave has not completed.
    Waiting,
    /// A rollout of the change failed: held.
    Held(Halt),
}

/// Why a baseline is recorded without a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    FirstSight,
    Backfill,
    Untracked { removed: Vec<String> },
    Reported { changed: Vec<String> },
    Template,
    KeyRotated,
    Covered { changed: Vec<String> },
    Restored { changed: Vec<String> },
}

/// What a reconcile does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Recorded and current agree: nothing to write.
    UpToDate,
    /// Tracked objects were deleted: keep the baseline, write nothing.
    Hold { deleted: Vec<String> },
    /// Wait for the end of the debounce window, opening it first when `open`.
    Debounce { open: bool },
    /// Read these objects, which the store shows as absent, from the API server; decide again
    /// with their absence confirmed, or wait for the watch if they exist.
    Confirm { absent: Vec<String> },
    /// Reconcile again after `delay`.
    Wait { delay: Duration, why: WaitReason },
    /// Write the new baseline; roll nothing.
    Record(Record),
    /// Write the new baseline and the digest into the pod template: a rollout.
    Roll { changed: Vec<String> },
    /// A progressive rollout of the change failed elsewhere: record the hold, roll nothing.
    Halted(Halt),
    /// `--dry-run`: report what would be done (`roll` names what changed, `None` for a
    /// baseline) and remember the baseline in memory; write nothing.
    Simulate { roll: Option<Vec<String>> },
}

/// Everything a decision reads, as data.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub change: Change,
    /// See [`unconfirmed_absent`]; empty once the API server has confirmed them absent.
    pub unconfirmed: Vec<String>,
    pub window: Window,
    /// When the workload last rolled (its `reloaded-at` annotation).
    pub last_rollout: Option<SystemTime>,
    pub now: SystemTime,
    pub min_rollout_interval: Duration,
    pub dry_run: bool,
    /// Where a rollout would stand in a progressive rollout of its change.
    pub wave: Wave,
    /// When the workload's restart window next opens, if it has one and it is closed
    /// ([`crate::rules::restart_window`]).
    pub window_opens: Option<SystemTime>,
}

/// The one decision: what to do about `inputs`. A token is taken from `bucket` only when the
/// answer is a rollout.
pub fn decide(inputs: Inputs, bucket: &mut TokenBucket, now: Instant) -> Action {
    /// Where a change leads once its window has passed.
    enum Then {
        Record(Record),
        Roll(Vec<String>),
    }
    let Inputs {
        change,
        unconfirmed,
        window,
        last_rollout,
        now: wall_now,
        min_rollout_interval,
        dry_run,
        wave,
        window_opens,
    } = inputs;
    let (then, windowed) = match change {
        Change::None => return Action::UpToDate,
        Change::Hold { deleted } => return Action::Hold { deleted },
        Change::FirstSight => (Then::Record(Record::FirstSight), false),
        Change::Backfill => (Then::Record(Record::Backfill), false),
        Change::KeyRotated => (Then::Record(Record::KeyRotated), false),
        Change::Untracked { removed } => (Then::Record(Record::Untracked { removed }), false),
        // Pods come and go in steps: the window gathers a rollout's (or a scale's) worth.
        Change::Reported { changed } => (Then::Record(Record::Reported { changed }), true),
        // A delivery may change the template before or after its configs: wait for the window
        // to see the whole of it.
        Change::Template => (Then::Record(Record::Template), true),
        Change::Covered { changed } => (Then::Record(Record::Covered { changed }), true),
        // As a template change: a config change in the same window is part of it.
        Change::Restored { changed } => (Then::Record(Record::Restored { changed }), true),
        Change::Roll { changed } => (Then::Roll(changed), true),
    };
    // An object missing from the store gets one window to arrive before its absence is checked.
    if windowed || !unconfirmed.is_empty() {
        match window {
            Window::Closed => return Action::Debounce { open: true },
            Window::Open => return Action::Debounce { open: false },
            Window::Passed => {}
        }
    }
    if !unconfirmed.is_empty() {
        return Action::Confirm {
            absent: unconfirmed,
        };
    }
    let changed = match then {
        Then::Record(_) if dry_run => return Action::Simulate { roll: None },
        Then::Record(record) => return Action::Record(record),
        Then::Roll(changed) => changed,
    };
    // Held: recorded at once, whatever the cooldown (it rolls nothing).
    if let Wave::Held(halt) = wave {
        if dry_run {
            return Action::Simulate { roll: None };
        }
        return Action::Halted(halt);
    }
    // Outside its restart window: wait for the opening, and decide again then (with whatever
    // the configs hold by that time: one rollout for everything that changed meanwhile).
    if let Some(opens) = window_opens {
        return Action::Wait {
            delay: opens.duration_since(wall_now).unwrap_or_default(),
            why: WaitReason::RestartWindow,
        };
    }
    if let Some(delay) = cooldown(last_rollout, wall_now, min_rollout_interval) {
        return Action::Wait {
            delay,
            why: WaitReason::Cooldown,
        };
    }
    if dry_run {
        return Action::Simulate {
            roll: Some(changed),
        };
    }
    // Before the bucket: waiting for a wave takes no token.
    if wave == Wave::Waiting {
        return Action::Wait {
            delay: WAVE_POLL,
            why: WaitReason::Wave,
        };
    }
    match bucket.try_take(now) {
        Ok(()) => Action::Roll { changed },
        Err(delay) => Action::Wait {
            delay,
            why: WaitReason::RateLimit,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::digest::Entry;
    use crate::rules::references::ConfigKind;

    fn entry(kind: ConfigKind, name: &str, digest: Option<u8>) -> Entry {
        Entry {
            kind,
            name: name.into(),
            digest: digest.map(|b| [b; 32]),
        }
    }

    fn digest(cm: Option<u8>, secret: Option<u8>, key_id: &str) -> WorkloadDigest {
        let mut entries = vec![entry(ConfigKind::ConfigMap, "app", cm)];
        if let Some(s) = secret {
            entries.push(entry(ConfigKind::Secret, "db", Some(s)));
        }
        WorkloadDigest::new(entries, key_id)
    }

    const T1: &str = "11111111111111111111";
    const T2: &str = "22222222222222222222";

    fn record(d: &WorkloadDigest) -> Recorded {
        Recorded::of(d, T1)
    }

    /// A record as written before template digests were recorded.
    fn legacy(d: &WorkloadDigest) -> Recorded {
        Recorded::parse(Some(&d.hash_annotation()), Some(&d.parts_annotation())).unwrap()
    }

    fn roll(names: &[&str]) -> Change {
        Change::Roll {
            changed: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    /// A workload with ConfigMap `app` and the versions its pods report for class `vault`.
    fn reporting(versions: &[(&str, &str)]) -> WorkloadDigest {
        let pairs: Vec<_> = versions.iter().map(|(i, v)| csi::pair(i, v)).collect();
        let mut entries = vec![entry(ConfigKind::ConfigMap, "app", Some(1))];
        entries.extend(csi::entries("vault", &pairs));
        WorkloadDigest::new(entries, "k1")
    }

    /// A rotation seen by three pods in turn, the rollout it causes, the new pods reporting and
    /// the old ones going: one rollout, whatever the order.
    #[test]
    fn a_rotation_reported_pod_by_pod_rolls_once() {
        let class = || vec!["SecretProviderClass/vault".to_string()];
        let c = |r: &Recorded, now: &WorkloadDigest| classify(Some(r), now, T1);
        // First sight, before any pod reported: a baseline; then the first pods report.
        let none = reporting(&[]);
        let v1 = reporting(&[("db", "1"), ("api", "1")]);
        assert_eq!(classify(None, &none, T1), Change::FirstSight);
        assert_eq!(
            c(&record(&none), &v1),
            Change::Reported { changed: class() }
        );
        // The same versions reported again (by more pods): nothing.
        assert_eq!(c(&record(&v1), &v1), Change::None);
        // One pod of three sees the rotation: the union holds both versions of `db`.
        let rotating = reporting(&[("db", "1"), ("db", "2"), ("api", "1")]);
        assert_eq!(
            c(&record(&v1), &rotating),
            Change::Roll { changed: class() }
        );
        // All three, at the decision: the same rollout.
        let rotated = reporting(&[("db", "2"), ("api", "1")]);
        assert_eq!(c(&record(&v1), &rotated), Change::Roll { changed: class() });
        // Rolled with both versions recorded: the other pods seeing it, the new pods reporting
        // it, change nothing; the old pods going away take version 1 along, and roll nothing.
        let after = record(&rotating);
        assert_eq!(c(&after, &rotating), Change::None);
        assert_eq!(c(&after, &rotated), Change::Reported { changed: class() });
        // Every pod gone (scaled to zero), then back: nothing rolls either way.
        assert_eq!(
            c(&record(&rotated), &none),
            Change::Reported { changed: class() }
        );
        assert_eq!(
            c(&record(&none), &rotated),
            Change::Reported { changed: class() }
        );
        // A new object in the class: an arrival, not a rotation.
        let more = reporting(&[("db", "2"), ("api", "1"), ("new", "1")]);
        assert_eq!(
            c(&record(&rotated), &more),
            Change::Reported { changed: class() }
        );
        // A rotation beside a ConfigMap change: both named.
        let mut both = vec![entry(ConfigKind::ConfigMap, "app", Some(2))];
        both.extend(csi::entries("vault", &[csi::pair("db", "3")]));
        let both = WorkloadDigest::new(both, "k1");
        assert_eq!(
            c(&record(&rotated), &both),
            roll(&["ConfigMap/app", "SecretProviderClass/vault"])
        );
        // Pods going away while a ConfigMap is no longer tracked: recorded, nothing rolled.
        let untracked = WorkloadDigest::new(vec![], "k1");
        assert!(matches!(
            c(&record(&rotated), &untracked),
            Change::Untracked { .. }
        ));
    }

    #[test]
    fn changes_with_the_template_unchanged() {
        let base = digest(Some(1), Some(1), "k1");
        let c = |r: &Recorded, now: &WorkloadDigest| classify(Some(r), now, T1);
        assert_eq!(classify(None, &base, T1), Change::FirstSight);
        assert_eq!(c(&record(&base), &base), Change::None);
        assert_eq!(
            c(&record(&base), &digest(Some(2), Some(1), "k1")),
            roll(&["ConfigMap/app"])
        );
        // Key rotated: the Secret's digest differs for that reason alone.
        assert_eq!(
            c(&record(&base), &digest(Some(1), Some(9), "k2")),
            Change::KeyRotated
        );
        // Key rotated while a ConfigMap changed: that change is still rolled out.
        assert_eq!(
            c(&record(&base), &digest(Some(3), Some(9), "k2")),
            roll(&["ConfigMap/app"])
        );
        // Without Secrets the key id plays no part.
        let no_secret = digest(Some(1), None, "k1");
        assert_eq!(
            c(&record(&no_secret), &digest(Some(1), None, "k2")),
            Change::None
        );
        // A Secret newly tracked is a change, not a key rotation.
        assert_eq!(
            c(&record(&no_secret), &digest(Some(1), Some(1), "k2")),
            roll(&["Secret/db"])
        );
        // Deleted: hold the baseline; re-created unchanged: nothing.
        let absent = digest(None, None, "k1");
        assert_eq!(
            c(&record(&no_secret), &absent),
            Change::Hold {
                deleted: vec!["ConfigMap/app".into()]
            }
        );
        // Deleted while another object changed: roll.
        assert!(matches!(
            c(&record(&base), &digest(None, Some(2), "k1")),
            Change::Roll { .. }
        ));
        // Absent, then created.
        assert_eq!(c(&record(&absent), &no_secret), roll(&["ConfigMap/app"]));
        // No longer tracked (an opt-in narrowed, --resources-to-ignore): nothing to roll for;
        // with another change, only that one is named.
        assert_eq!(
            c(&record(&base), &no_secret),
            Change::Untracked {
                removed: vec!["Secret/db".into()]
            }
        );
        assert_eq!(
            c(&record(&base), &digest(Some(2), None, "k1")),
            roll(&["ConfigMap/app"])
        );
    }

    /// A config written well after the pod template (a `kubectl edit` a few seconds after a
    /// `helm upgrade`, inside a long debounce window, or both while kube-reloader was down) is
    /// rolled: the template's pods may have read it before. Written with it, or before it, the
    /// template's rollout covers it.
    #[test]
    fn a_config_written_after_the_template_is_not_covered_by_it() {
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let covered = || Change::Covered {
            changed: vec!["ConfigMap/app".into(), "Secret/db".into()],
        };
        let written = |app: Option<i64>, db: Option<i64>| {
            move |name: &str| match name {
                "ConfigMap/app" => app.map(at),
                "Secret/db" => db.map(at),
                _ => None,
            }
        };
        let cases = [
            (
                "both written before",
                Some(0),
                written(Some(-5), Some(-1)),
                covered(),
            ),
            (
                "written in the same second",
                Some(0),
                written(Some(0), Some(0)),
                covered(),
            ),
            (
                "across a second's boundary",
                Some(0),
                written(Some(1), None),
                covered(),
            ),
            (
                "two seconds apart",
                Some(0),
                written(Some(2), None),
                covered(),
            ),
            (
                "three seconds later",
                Some(0),
                written(Some(3), Some(0)),
                roll(&["ConfigMap/app"]),
            ),
            (
                "both later",
                Some(0),
                written(Some(30), Some(3)),
                roll(&["ConfigMap/app", "Secret/db"]),
            ),
            (
                "no time for the template",
                None,
                written(Some(30), None),
                covered(),
            ),
            (
                "no time for the configs",
                Some(0),
                written(None, None),
                covered(),
            ),
        ];
        for (name, template, written, want) in cases {
            assert_eq!(
                written_after(covered(), template.map(at), written),
                want,
                "{name}"
            );
        }
        // Other changes pass as they are.
        let untouched = roll(&["ConfigMap/app"]);
        assert_eq!(
            written_after(untouched.clone(), Some(at(0)), |_| Some(at(60))),
            untouched
        );
        assert_eq!(
            written_after(Change::Template, Some(at(0)), |_| Some(at(60))),
            Change::Template
        );
    }

    #[test]
    fn changes_with_the_template_changed_too() {
        let base = digest(Some(1), None, "k1");
        let c = |now: &WorkloadDigest| classify(Some(&record(&base)), now, T2);
        // Template alone: someone else's rollout, recorded.
        assert_eq!(c(&base), Change::Template);
        // Template and config together (Helm's checksum/config): covered by that rollout.
        assert_eq!(
            c(&digest(Some(2), None, "k1")),
            Change::Covered {
                changed: vec!["ConfigMap/app".into()]
            }
        );
        // A kustomize generator's rename: the template references another object now.
        let renamed =
            WorkloadDigest::new(vec![entry(ConfigKind::ConfigMap, "app-b", Some(5))], "k1");
        assert_eq!(
            c(&renamed),
            Change::Covered {
                changed: vec!["ConfigMap/app".into(), "ConfigMap/app-b".into()]
            }
        );
        // Key rotated with the template changed: Secrets are still not compared.
        let with_secret = digest(Some(1), Some(1), "k1");
        assert_eq!(
            classify(
                Some(&record(&with_secret)),
                &digest(Some(1), Some(7), "k2"),
                T2
            ),
            Change::KeyRotated
        );
        // A baseline from before template digests: configs unchanged → backfill; changed → the
        // old rule (no template to compare with).
        assert_eq!(classify(Some(&legacy(&base)), &base, T2), Change::Backfill);
        assert_eq!(
            classify(Some(&legacy(&base)), &digest(Some(2), None, "k1"), T2),
            roll(&["ConfigMap/app"])
        );
    }

    #[test]
    fn a_baseline_someone_else_wrote_is_recorded_again_whatever_changed() {
        let base = digest(Some(1), Some(1), "k1");
        // `kubectl rollout undo` after a rollout: the baseline of the revision rolled back to,
        // restored with its pod template (same template digest), against the configs of now.
        let restored = record(&base).written_by_others(true);
        let now = digest(Some(2), Some(1), "k1");
        assert_eq!(
            classify(Some(&restored), &now, T1),
            Change::Restored {
                changed: vec!["ConfigMap/app".into()]
            }
        );
        // The same record written by kube-reloader is a config change to roll.
        assert_eq!(
            classify(Some(&record(&base)), &now, T1),
            roll(&["ConfigMap/app"])
        );
        // Whatever else differs: the template, the key, a deletion.
        assert!(matches!(
            classify(Some(&restored), &now, T2),
            Change::Restored { .. }
        ));
        assert!(matches!(
            classify(Some(&restored), &digest(Some(1), Some(9), "k2"), T1),
            Change::Restored { .. }
        ));
        assert!(matches!(
            classify(Some(&restored), &digest(None, Some(1), "k1"), T1),
            Change::Restored { .. }
        ));
        // Matching the present, it is recorded again all the same, to be kube-reloader's own.
        assert_eq!(
            classify(Some(&restored), &base, T1),
            Change::Restored { changed: vec![] }
        );
    }

    #[test]
    fn absences_to_confirm_are_those_not_recorded_absent() {
        let two = |a: Option<u8>, b: Option<u8>| {
            WorkloadDigest::new(
                vec![
                    entry(ConfigKind::ConfigMap, "a", a),
                    entry(ConfigKind::ConfigMap, "b", b),
                ],
                "k",
            )
        };
        assert_eq!(
            unconfirmed_absent(None, &two(Some(1), None)),
            ["ConfigMap/b"]
        );
        assert!(unconfirmed_absent(None, &two(Some(1), Some(1))).is_empty());
        // Recorded absent already (confirmed when it was recorded): nothing to confirm.
        let r = Recorded::of(&two(Some(1), None), T1);
        assert!(unconfirmed_absent(Some(&r), &two(Some(2), None)).is_empty());
        // Recorded present, missing now (deleted, or a new reference the watch has not
        // delivered yet): confirm.
        assert_eq!(
            unconfirmed_absent(Some(&r), &two(None, None)),
            ["ConfigMap/a"]
        );
    }

    struct Case {
        name: &'static str,
        change: Change,
        unconfirmed: &'static [&'static str],
        window: Window,
        /// Seconds since the last rollout.
        since_rollout: Option<u64>,
        dry_run: bool,
        tokens: bool,
        wave: Wave,
        /// Seconds until the workload's restart window opens, when it is closed.
        opens_in: Option<u64>,
        want: Action,
    }

    fn case(name: &'static str, change: Change, window: Window, want: Action) -> Case {
        Case {
            name,
            change,
            unconfirmed: &[],
            window,
            since_rollout: None,
            dry_run: false,
            tokens: true,
            wave: Wave::Free,
            opens_in: None,
            want,
        }
    }

    fn halt() -> Halt {
        "ConfigMap/app@aaa; Deployment/web-0: its new pods crash-loop"
            .parse()
            .expect("a halt")
    }

    fn changed(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn decisions() {
        use Window::*;
        let cm = || roll(&["ConfigMap/app"]);
        let covered = || Change::Covered {
            changed: changed(&["ConfigMap/app"]),
        };
        let cases = vec![
            case("up to date", Change::None, Closed, Action::UpToDate),
            case(
                "up to date in a window",
                Change::None,
                Open,
                Action::UpToDate,
            ),
            case(
                "deleted: hold",
                Change::Hold {
                    deleted: changed(&["ConfigMap/app"]),
                },
                Passed,
                Action::Hold {
                    deleted: changed(&["ConfigMap/app"]),
                },
            ),
            case(
                "first sight records at once",
                Change::FirstSight,
                Closed,
                Action::Record(Record::FirstSight),
            ),
            Case {
                unconfirmed: &["ConfigMap/app"],
                ..case(
                    "first sight with a missing object: a window for it to arrive",
                    Change::FirstSight,
                    Closed,
                    Action::Debounce { open: true },
                )
            },
            Case {
                unconfirmed: &["ConfigMap/app"],
                ..case(
                    "first sight, window over, object still missing: confirm",
                    Change::FirstSight,
                    Passed,
                    Action::Confirm {
                        absent: changed(&["ConfigMap/app"]),
                    },
                )
            },
            case(
                "backfill at once",
                Change::Backfill,
                Closed,
                Action::Record(Record::Backfill),
            ),
            case(
                "key rotated at once",
                Change::KeyRotated,
                Closed,
                Action::Record(Record::KeyRotated),
            ),
            case(
                "template change opens a window",
                Change::Template,
                Closed,
                Action::Debounce { open: true },
            ),
            case(
                "template change inside its window waits",
                Change::Template,
                Open,
                Action::Debounce { open: false },
            ),
            case(
                "template change recorded after the window",
                Change::Template,
                Passed,
                Action::Record(Record::Template),
            ),
            case(
                "covered: waits for the window",
                covered(),
                Open,
                Action::Debounce { open: false },
            ),
            case(
                "covered: recorded, not rolled",
                covered(),
                Passed,
                Action::Record(Record::Covered {
                    changed: changed(&["ConfigMap/app"]),
                }),
            ),
            Case {
                unconfirmed: &["ConfigMap/app-b"],
                ..case(
                    "covered with a new reference not delivered yet: confirm first",
                    covered(),
                    Passed,
                    Action::Confirm {
                        absent: changed(&["ConfigMap/app-b"]),
                    },
                )
            },
            case(
                "restored by someone else: a window, as for a template change",
                Change::Restored {
                    changed: changed(&["ConfigMap/app"]),
                },
                Closed,
                Action::Debounce { open: true },
            ),
            Case {
                tokens: false,
                ..case(
                    "restored by someone else: recorded, not rolled",
                    Change::Restored {
                        changed: changed(&["ConfigMap/app"]),
                    },
                    Passed,
                    Action::Record(Record::Restored {
                        changed: changed(&["ConfigMap/app"]),
                    }),
                )
            },
            case(
                "config change opens a window",
                cm(),
                Closed,
                Action::Debounce { open: true },
            ),
            case(
                "config change inside the window waits",
                cm(),
                Open,
                Action::Debounce { open: false },
            ),
            case(
                "config change rolls after the window",
                cm(),
                Passed,
                Action::Roll {
                    changed: changed(&["ConfigMap/app"]),
                },
            ),
            Case {
                since_rollout: Some(3),
                ..case(
                    "cooldown",
                    cm(),
                    Passed,
                    Action::Wait {
                        delay: Duration::from_secs(7),
                        why: WaitReason::Cooldown,
                    },
                )
            },
            Case {
                since_rollout: Some(60),
                ..case(
                    "cooldown over",
                    cm(),
                    Passed,
                    Action::Roll {
                        changed: changed(&["ConfigMap/app"]),
                    },
                )
            },
            Case {
                dry_run: true,
                ..case(
                    "dry run: would roll",
                    cm(),
                    Passed,
                    Action::Simulate {
                        roll: Some(changed(&["ConfigMap/app"])),
                    },
                )
            },
            Case {
                dry_run: true,
                ..case(
                    "dry run: would record",
                    Change::FirstSight,
                    Closed,
                    Action::Simulate { roll: None },
                )
            },
            Case {
                tokens: false,
                ..case(
                    "rate limited",
                    cm(),
                    Passed,
                    Action::Wait {
                        delay: Duration::from_secs(1),
                        why: WaitReason::RateLimit,
                    },
                )
            },
            Case {
                tokens: false,
                ..case(
                    "the rate limit holds back rollouts only",
                    covered(),
                    Passed,
                    Action::Record(Record::Covered {
                        changed: changed(&["ConfigMap/app"]),
                    }),
                )
            },
            Case {
                wave: Wave::Waiting,
                ..case(
                    "progressive: an earlier wave not complete: wait, no token taken",
                    cm(),
                    Passed,
                    Action::Wait {
                        delay: WAVE_POLL,
                        why: WaitReason::Wave,
                    },
                )
            },
            Case {
                wave: Wave::Waiting,
                tokens: false,
                ..case(
                    "progressive: waiting for a wave goes before the rate limit",
                    cm(),
                    Passed,
                    Action::Wait {
                        delay: WAVE_POLL,
                        why: WaitReason::Wave,
                    },
                )
            },
            Case {
                wave: Wave::Waiting,
                ..case(
                    "progressive: the debounce window first",
                    cm(),
                    Open,
                    Action::Debounce { open: false },
                )
            },
            Case {
                wave: Wave::Held(halt()),
                since_rollout: Some(3),
                ..case(
                    "progressive: held, recorded whatever the cooldown",
                    cm(),
                    Passed,
                    Action::Halted(halt()),
                )
            },
            Case {
                wave: Wave::Held(halt()),
                dry_run: true,
                ..case(
                    "progressive: held in a dry run: nothing would roll",
                    cm(),
                    Passed,
                    Action::Simulate { roll: None },
                )
            },
            Case {
                wave: Wave::Held(halt()),
                ..case(
                    "progressive: a hold concerns rollouts only",
                    covered(),
                    Passed,
                    Action::Record(Record::Covered {
                        changed: changed(&["ConfigMap/app"]),
                    }),
                )
            },
            Case {
                opens_in: Some(600),
                ..case(
                    "restart window closed: wait for its opening",
                    cm(),
                    Passed,
                    Action::Wait {
                        delay: Duration::from_secs(600),
                        why: WaitReason::RestartWindow,
                    },
                )
            },
            Case {
                opens_in: Some(600),
                tokens: false,
                since_rollout: Some(3),
                ..case(
                    "restart window closed: before the cooldown and the rate limit",
                    cm(),
                    Passed,
                    Action::Wait {
                        delay: Duration::from_secs(600),
                        why: WaitReason::RestartWindow,
                    },
                )
            },
            Case {
                opens_in: Some(600),
                ..case(
                    "restart window closed: the debounce window first",
                    cm(),
                    Open,
                    Action::Debounce { open: false },
                )
            },
            Case {
                opens_in: Some(600),
                ..case(
                    "restart window closed: baselines are recorded at once",
                    covered(),
                    Passed,
                    Action::Record(Record::Covered {
                        changed: changed(&["ConfigMap/app"]),
                    }),
                )
            },
            Case {
                opens_in: Some(600),
                wave: Wave::Held(halt()),
                ..case(
                    "restart window closed: a hold is recorded at once",
                    cm(),
                    Passed,
                    Action::Halted(halt()),
                )
            },
            Case {
                opens_in: Some(600),
                dry_run: true,
                ..case(
                    "restart window closed in a dry run: waits as a rollout would",
                    cm(),
                    Passed,
                    Action::Wait {
                        delay: Duration::from_secs(600),
                        why: WaitReason::RestartWindow,
                    },
                )
            },
        ];
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for c in cases {
            let start = Instant::now();
            let mut bucket = TokenBucket::new(1.0, 1, start);
            if !c.tokens {
                bucket.try_take(start).expect("one token");
            }
            let inputs = Inputs {
                change: c.change,
                unconfirmed: changed(c.unconfirmed),
                window: c.window,
                last_rollout: c.since_rollout.map(|s| epoch - Duration::from_secs(s)),
                now: epoch,
                min_rollout_interval: Duration::from_secs(10),
                dry_run: c.dry_run,
                wave: c.wave,
                window_opens: c.opens_in.map(|s| epoch + Duration::from_secs(s)),
            };
            assert_eq!(decide(inputs, &mut bucket, start), c.want, "{}", c.name);
        }
    }
}
