//! Progressive rollouts of one config change (issue 24): the waves a change is rolled in, when a
//! workload's rollout has completed or failed (per kind, from its status), and whether a workload
//! may roll now, waits for an earlier wave, or is held because a rollout of the same change failed.
//!
//! Everything here is read from the cluster by the shell: the workloads a change concerns (those
//! still to roll it, from their baselines, and those that rolled it, from the `rollout` mark a
//! progressive rollout writes), their status, and the failures and holds recorded on them. So a
//! restarted controller, or a new leader, continues a rollout where it stood, and keeps a hold.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::model::annotations::ours::RELEASE_HOLD;
use crate::model::kinds::WorkloadKind;

/// How often a workload waiting for its wave, or a rollout being watched, is looked at again
/// (besides the reconciles their own changes bring: a completed rollout starts the next wave at
/// once).
pub const WAVE_POLL: Duration = Duration::from_secs(3);

/// How progressive rollouts are made, as the command line says.
#[derive(Debug, Clone)]
pub struct Progressive {
    /// `--progressive`: for configs that do not say (`kube-reloader.io/progressive`).
    pub default: bool,
    pub waves: Waves,
    /// `--rollout-timeout`.
    pub timeout: Duration,
    /// `--rollout-soak`: how long a wave's rollouts stay complete before the next wave starts.
    pub soak: Duration,
}

impl Default for Progressive {
    fn default() -> Self {
        Self {
            default: false,
            waves: Waves::default(),
            timeout: Duration::from_secs(600),
            soak: Duration::ZERO,
        }
    }
}

impl Progressive {
    /// Whether a config whose annotation says `annotated` rolls progressively.
    pub fn applies(&self, annotated: Option<bool>) -> bool {
        annotated.unwrap_or(self.default)
    }
}

/// Whether a `kube-reloader.io/release-hold` value releases `change`: its digest alone, or the
/// change as a hold names it.
pub fn releases(value: Option<&str>, change: &ChangeId) -> bool {
    value.is_some_and(|v| v == change.digest || v == change.to_string())
}

/// One change of one config: its `Kind/name` and a short digest of its whole content, as the
/// annotations and messages name it (`ConfigMap/app@1a2b3c4d5e`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeId {
    /// `Kind/name`.
    pub config: String,
    /// The short digest of the config's content.
    pub digest: String,
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.config, self.digest)
    }
}

impl FromStr for ChangeId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (config, digest) = s.trim().rsplit_once('@').ok_or(())?;
        if config.is_empty() || digest.is_empty() || !config.contains('/') {
            return Err(());
        }
        Ok(Self {
            config: config.into(),
            digest: digest.into(),
        })
    }
}

/// The change ids a progressive rollout was made for (the `rollout` mark: comma-separated).
pub fn parse_mark(value: Option<&str>) -> Vec<ChangeId> {
    let ids = value.into_iter().flat_map(|v| v.split(','));
    ids.filter_map(|id| id.parse().ok()).collect()
}

/// The `rollout` mark for these change ids.
pub fn mark(ids: &[ChangeId]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    ids.join(",")
}

/// A failure or a hold, as recorded on a workload's metadata: the change, the workload whose
/// rollout of it failed (`Kind/name`), and why.
/// Written `ConfigMap/app@1a2b3c4d5e; Deployment/web-0: why`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt {
    pub change: ChangeId,
    pub failed: String,
    pub reason: String,
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}: {}", self.change, self.failed, self.reason)
    }
}

impl FromStr for Halt {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (change, rest) = s.split_once("; ").ok_or(())?;
        let (failed, reason) = rest.split_once(": ").ok_or(())?;
        Ok(Self {
            change: change.parse()?,
            failed: failed.into(),
            reason: reason.into(),
        })
    }
}

/// The size of one wave: a number of workloads, or a share of all the change concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Count(usize),
    Percent(u8),
}

/// The waves' sizes before the last one, which takes the rest (`--rollout-waves`, default
/// `1,10%`: a canary, then a tenth, then the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waves(pub Vec<Size>);

impl Default for Waves {
    fn default() -> Self {
        Self(vec![Size::Count(1), Size::Percent(10)])
    }
}

impl FromStr for Waves {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let sizes = s.split(',').map(str::trim).filter(|p| !p.is_empty());
        let sizes = sizes.map(|part| {
            let bad = || format!("{part:?} is neither a number of workloads (1) nor a share (10%)");
            match part.strip_suffix('%') {
                Some(p) => match p.parse::<u8>() {
                    Ok(p) if (1..=100).contains(&p) => Ok(Size::Percent(p)),
                    _ => Err(bad()),
                },
                None => match part.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(Size::Count(n)),
                    _ => Err(bad()),
                },
            }
        });
        let sizes = sizes.collect::<Result<Vec<_>, _>>()?;
        if sizes.is_empty() {
            return Err("name at least one wave size (such as 1,10%)".into());
        }
        Ok(Self(sizes))
    }
}

impl Waves {
    /// Where each wave ends, for `n` workloads of which the first `canaries` are annotated
    /// canaries: the first wave holds at least all of them; a share rounds up, to one at
    /// least; the last wave takes the rest.
    pub fn ends(&self, n: usize, canaries: usize) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut end = 0;
        for (i, size) in self.0.iter().enumerate() {
            let mut len = match *size {
                Size::Count(c) => c,
                Size::Percent(p) => (n * usize::from(p)).div_ceil(100).max(1),
            };
            if i == 0 {
                len = len.max(canaries);
            }
            end = (end + len).min(n);
            if ends.last() != Some(&end) {
                ends.push(end);
            }
            if end == n {
                return ends;
            }
        }
        ends.push(n);
        ends
    }
}

/// How a workload's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Complete,
    /// Complete for less than `--rollout-soak`: not counted complete yet, and its new pods are
    /// still watched (a value that brings them down only after they became available fails it).
    Soaking,
    InProgress,
    Failed(String),
}

/// A complete rollout counts as complete once it has been for `soak` (`complete_for`: how long
/// it has been seen complete without a break); before that it soaks. Anything else stands.
pub fn soaked(progress: Progress, complete_for: Option<Duration>, soak: Duration) -> Progress {
    match progress {
        Progress::Complete if complete_for.unwrap_or_default() < soak => Progress::Soaking,
        other => other,
    }
}

/// Where one workload stands in a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It has not rolled the change yet.
    Pending,
    /// It has not rolled the change yet, and its restart window is closed
    /// ([`crate::rules::restart_window`]): it rolls when the window opens. Until then it takes
    /// no place in the waves, so that no wave waits for it and the first wave is still a canary
    /// that rolls now.
    Deferred,
    /// It rolled the change (its `rollout` mark names it).
    Rolled(Progress),
}

/// A workload a change concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `Kind/name`: the deterministic order after the canaries.
    pub name: String,
    /// Annotated `kube-reloader.io/canary: "true"`: in the first wave.
    pub canary: bool,
    pub standing: Standing,
}

/// What a workload with the change still to roll does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Its wave has started: roll (wave counted from 1, of `waves`).
    Roll { wave: usize, waves: usize },
    /// An earlier wave has not completed: `waiting_for` names its workloads not complete yet.
    Wait {
        wave: usize,
        waves: usize,
        waiting_for: Vec<String>,
    },
    /// A rollout of the change failed: hold. `failed` names that workload.
    Hold { failed: String, reason: String },
}

/// The members in wave order: canaries first, then by name.
pub fn ordered(members: &[Member]) -> Vec<&Member> {
    let mut order: Vec<&Member> = members.iter().collect();
    order.sort_by(|a, b| (!a.canary, &a.name).cmp(&(!b.canary, &b.name)));
    order
}

/// Whether `me` (a member, pending) may roll now. A failure of any member halts the change
/// unless it was `released` by hand; otherwise every member of the earlier waves must have
/// rolled and completed.
pub fn gate(me: &str, members: &[Member], waves: &Waves, released: bool) -> Gate {
    if !released
        && let Some((failed, reason)) = members.iter().find_map(|m| match &m.standing {
            Standing::Rolled(Progress::Failed(why)) => Some((m.name.clone(), why.clone())),
            _ => None,
        })
    {
        return Gate::Hold { failed, reason };
    }
    let order: Vec<&Member> = ordered(members)
        .into_iter()
        .filter(|m| m.standing != Standing::Deferred || m.name == me)
        .collect();
    let canaries = order.iter().filter(|m| m.canary).count();
    let ends = waves.ends(order.len(), canaries);
    let at = order.iter().position(|m| m.name == me).unwrap_or(0);
    let wave = ends.iter().position(|end| at < *end).unwrap_or(0);
    let start = if wave == 0 { 0 } else { ends[wave - 1] };
    let waiting_for: Vec<String> = order[..start]
        .iter()
        .filter(|m| m.standing != Standing::Rolled(Progress::Complete))
        .filter(|m| !(released && matches!(m.standing, Standing::Rolled(Progress::Failed(_)))))
        .map(|m| m.name.clone())
        .collect();
    let (wave, waves) = (wave + 1, ends.len());
    if waiting_for.is_empty() {
        Gate::Roll { wave, waves }
    } else {
        Gate::Wait {
            wave,
            waves,
            waiting_for,
        }
    }
}

/// Whether a hold recorded on a workload is in force: it names a change the workload still has
/// to roll (a later change of the config, the fix, releases it), not released by hand.
pub fn hold_in_force(hold: Option<&Halt>, pending: &[ChangeId], released: &[ChangeId]) -> bool {
    hold.is_some_and(|h| pending.contains(&h.change) && !released.contains(&h.change))
}

/// The hold recorded on a workload (its `held` annotation's value) when it is in force.
pub fn hold_of(value: Option<&str>, pending: &[ChangeId], released: &[ChangeId]) -> Option<Halt> {
    let hold = value?.parse::<Halt>().ok();
    hold_in_force(hold.as_ref(), pending, released)
        .then_some(hold)
        .flatten()
}

/// What to do about a halted rollout of `change`, said to people (Events, `explain`).
pub fn what_to_do(change: &ChangeId) -> String {
    let (kind, name) = change
        .config
        .split_once('/')
        .unwrap_or(("", &change.config));
    format!(
        "Fix {kind} {name}: its next change releases the hold and rolls every workload that uses it once, progressively again. Or, to go on with this change as it is: kubectl annotate {} {name} {RELEASE_HOLD}={}",
        kind.to_lowercase(),
        change.digest
    )
}

/// What the rules read of a workload's status (and of its spec, the replicas asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    /// Replicas asked for (`spec.replicas`; a DaemonSet's `desiredNumberScheduled`).
    pub desired: Option<i64>,
    pub replicas: Option<i64>,
    pub updated: Option<i64>,
    pub ready: Option<i64>,
    pub available: Option<i64>,
    /// The reason of the Deployment's `Progressing` condition.
    pub progressing: Option<String>,
    pub update_revision: Option<String>,
    pub current_revision: Option<String>,
    /// An Argo Rollout's `status.phase`, and its message.
    pub phase: Option<String>,
    pub message: Option<String>,
}

impl Status {
    /// Reads the status of a workload of `kind`, of this `generation` (its spec and status, as
    /// the API server sent them).
    pub fn of(kind: WorkloadKind, object: &Value, generation: Option<i64>) -> Self {
        let int = |v: &Value, field: &str| v.get(field).and_then(Value::as_i64);
        let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).map(String::from);
        let status = object.get("status").unwrap_or(&Value::Null);
        let spec = object.get("spec").unwrap_or(&Value::Null);
        // Argo Rollouts write their observed generation as a string.
        let observed_generation = int(status, "observedGeneration")
            .or_else(|| text(status, "observedGeneration").and_then(|g| g.parse().ok()));
        let mut s = Status {
            generation,
            observed_generation,
            desired: spec.get("replicas").map_or(Some(1), Value::as_i64),
            replicas: int(status, "replicas"),
            updated: int(status, "updatedReplicas"),
            ready: int(status, "readyReplicas"),
            available: int(status, "availableReplicas"),
            update_revision: text(status, "updateRevision"),
            current_revision: text(status, "currentRevision"),
            phase: text(status, "phase"),
            message: text(status, "message"),
            progressing: None,
        };
        let conditions = status.get("conditions").and_then(Value::as_array);
        s.progressing = conditions.into_iter().flatten().find_map(|c| {
            (c.get("type").and_then(Value::as_str) == Some("Progressing"))
                .then(|| text(c, "reason"))
                .flatten()
        });
        if kind == WorkloadKind::DAEMON_SET {
            s.desired = int(status, "desiredNumberScheduled");
            s.replicas = int(status, "currentNumberScheduled");
            s.updated = int(status, "updatedNumberScheduled");
            s.ready = int(status, "numberReady");
            s.available = int(status, "numberAvailable");
        }
        s
    }

    fn observed(&self) -> bool {
        self.generation.is_some() && self.observed_generation >= self.generation
    }
}

/// How a workload's rollout stands, from its status, `elapsed` since it was rolled, and
/// `--rollout-timeout` for the kinds that have no deadline of their own. Kinds whose status the
/// rules cannot read (CronJobs: their next Job runs the new template; custom kinds) complete at
/// once.
pub fn progress(
    kind: WorkloadKind,
    status: &Status,
    elapsed: Duration,
    timeout: Duration,
) -> Progress {
    let eq = |a: Option<i64>, b: Option<i64>| a.is_some() && a == b;
    let (complete, deadline) = match kind {
        k if k == WorkloadKind::DEPLOYMENT => {
            if !status.observed() {
                return Progress::InProgress;
            }
            if status.progressing.as_deref() == Some("ProgressDeadlineExceeded") {
                return Progress::Failed(
                    "its rollout did not complete within its progressDeadlineSeconds (ProgressDeadlineExceeded)"
                        .into(),
                );
            }
            let d = status.desired;
            let complete = eq(status.updated, d)
                && eq(status.ready, d)
                && eq(status.available, d)
                && status.replicas.unwrap_or(0) <= d.unwrap_or(0)
                && status.progressing.as_deref() == Some("NewReplicaSetAvailable");
            (complete, false)
        }
        k if k == WorkloadKind::STATEFUL_SET => {
            let complete = status.observed()
                && status.update_revision.is_some()
                && status.update_revision == status.current_revision
                && eq(status.ready, status.desired);
            (complete, true)
        }
        k if k == WorkloadKind::DAEMON_SET => {
            let complete = status.observed()
                && eq(status.updated, status.desired)
                && eq(status.available, status.desired);
            (complete, true)
        }
        k if k == WorkloadKind::ROLLOUT => {
            let observed = status.observed_generation.is_none() || status.observed();
            match status.phase.as_deref() {
                Some("Degraded") if observed => {
                    let why = status.message.as_deref().unwrap_or("no message");
                    return Progress::Failed(format!("the Rollout is Degraded ({why})"));
                }
                Some("Healthy") if observed => (true, true),
                _ => (false, true),
            }
        }
        _ => (true, false),
    };
    if complete {
        Progress::Complete
    } else if deadline && elapsed > timeout {
        Progress::Failed(format!(
            "its rollout did not complete within --rollout-timeout ({}s)",
            timeout.as_secs()
        ))
    } else {
        Progress::InProgress
    }
}

/// Restarts after which a container whose last run failed counts as crash-looping even when its
/// status is not caught in `CrashLoopBackOff` (a kubelet whose back-off starts at a second shows
/// that state briefly).
pub const CRASH_RESTARTS: i32 = 2;

/// The first of these pods (those of the new revision) with a container crash-looping (waiting
/// in `CrashLoopBackOff`, or restarted [`CRASH_RESTARTS`] times, its last run failed), said in a
/// sentence.
pub fn crash_loop(pods: &[Pod]) -> Option<String> {
    pods.iter().find_map(|pod| {
        let status = pod.status.as_ref()?;
        let containers = status.init_container_statuses.iter().flatten();
        let containers = containers.chain(status.container_statuses.iter().flatten());
        let exit_code = |c: &k8s_openapi::api::core::v1::ContainerStatus| {
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            last.map(|t| t.exit_code)
        };
        let looping = containers.into_iter().find(|c| {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff")
                || (c.restart_count >= CRASH_RESTARTS && exit_code(c).is_some_and(|e| e != 0))
        })?;
        let exit = exit_code(looping)
            .map(|e| format!(", exit code {e}"))
            .unwrap_or_default();
        let pod = pod.metadata.name.as_deref().unwrap_or_default();
        Some(format!(
            "its new pods crash-loop (pod {pod}, container {}: {} restarts{exit})",
            looping.name, looping.restart_count
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn waves(s: &str) -> Waves {
        s.parse().expect("wave sizes")
    }

    #[test]
    fn wave_sizes_parse_and_cut() {
        assert_eq!(Waves::default(), waves("1,10%"));
        for bad in ["", "0", "0%", "101%", "x", "1,-2", "10 %%"] {
            assert!(bad.parse::<Waves>().is_err(), "{bad:?}");
        }
        // The default: a canary, a tenth (rounded up), the rest.
        assert_eq!(Waves::default().ends(10, 0), [1, 2, 10]);
        assert_eq!(Waves::default().ends(40, 0), [1, 5, 40]);
        assert_eq!(Waves::default().ends(1, 0), [1]);
        assert_eq!(Waves::default().ends(2, 0), [1, 2]);
        assert_eq!(Waves::default().ends(0, 0), [0]);
        // Canaries all go first, however many.
        assert_eq!(Waves::default().ends(10, 3), [3, 4, 10]);
        assert_eq!(waves("2,50%,100%").ends(10, 0), [2, 7, 10]);
        assert_eq!(waves("100%").ends(10, 0), [10]);
    }

    fn member(name: &str, standing: Standing) -> Member {
        Member {
            name: name.into(),
            canary: false,
            standing,
        }
    }

    /// Ten workloads `w0`..`w9`, each standing as `standing(i)` says.
    fn ten(standing: impl Fn(usize) -> Standing) -> Vec<Member> {
        (0..10)
            .map(|i| member(&format!("w{i}"), standing(i)))
            .collect()
    }

    use Progress::*;
    use Standing::*;

    #[test]
    fn the_canary_first_then_each_wave_after_the_previous_completed() {
        let waves = Waves::default();
        // Nothing rolled: the canary (first by name) rolls, the others wait for it.
        let none = ten(|_| Pending);
        assert_eq!(
            gate("w0", &none, &waves, false),
            Gate::Roll { wave: 1, waves: 3 }
        );
        assert_eq!(
            gate("w1", &none, &waves, false),
            Gate::Wait {
                wave: 2,
                waves: 3,
                waiting_for: vec!["w0".into()]
            }
        );
        // The canary rolling: still waiting.
        let rolling = ten(|i| if i == 0 { Rolled(InProgress) } else { Pending });
        assert!(matches!(
            gate("w1", &rolling, &waves, false),
            Gate::Wait { .. }
        ));
        // The canary complete: the second wave (one workload) rolls, the third waits for both.
        let canary_done = ten(|i| if i == 0 { Rolled(Complete) } else { Pending });
        assert_eq!(
            gate("w1", &canary_done, &waves, false),
            Gate::Roll { wave: 2, waves: 3 }
        );
        assert_eq!(
            gate("w5", &canary_done, &waves, false),
            Gate::Wait {
                wave: 3,
                waves: 3,
                waiting_for: vec!["w1".into()]
            }
        );
        let two_done = ten(|i| if i < 2 { Rolled(Complete) } else { Pending });
        assert_eq!(
            gate("w9", &two_done, &waves, false),
            Gate::Roll { wave: 3, waves: 3 }
        );
    }

    #[test]
    fn a_soaking_rollout_holds_the_next_wave_until_its_soak_has_passed() {
        let soak = Duration::from_secs(30);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(soaked(Complete, secs(10), soak), Soaking);
        assert_eq!(soaked(Complete, None, soak), Soaking);
        assert_eq!(soaked(Complete, secs(30), soak), Complete);
        assert_eq!(soaked(Complete, None, Duration::ZERO), Complete);
        assert_eq!(soaked(InProgress, secs(60), soak), InProgress);
        let failed = Failed("crash-loop".into());
        assert_eq!(soaked(failed.clone(), secs(60), soak), failed);
        // The next wave waits for a soaking canary as for one in progress.
        let waves = Waves::default();
        let soaking = ten(|i| if i == 0 { Rolled(Soaking) } else { Pending });
        assert_eq!(
            gate("w1", &soaking, &waves, false),
            Gate::Wait {
                wave: 2,
                waves: 3,
                waiting_for: vec!["w0".into()]
            }
        );
    }

    #[test]
    fn a_workload_outside_its_restart_window_takes_no_place_in_the_waves() {
        let waves = Waves::default();
        // The canary (w0) waits for its window: w1 is the canary now, and rolls.
        let deferred = ten(|i| if i == 0 { Deferred } else { Pending });
        assert_eq!(
            gate("w1", &deferred, &waves, false),
            Gate::Roll { wave: 1, waves: 3 }
        );
        assert_eq!(
            gate("w2", &deferred, &waves, false),
            Gate::Wait {
                wave: 2,
                waves: 3,
                waiting_for: vec!["w1".into()]
            }
        );
        // Nobody waits for it: the last wave rolls once the others completed.
        let others_done = ten(|i| match i {
            0 => Deferred,
            1 | 2 => Rolled(Complete),
            _ => Pending,
        });
        assert_eq!(
            gate("w9", &others_done, &waves, false),
            Gate::Roll { wave: 3, waves: 3 }
        );
        // Its window open (pending again) after the others rolled: it rolls, in the first wave.
        let last = ten(|i| if i == 0 { Pending } else { Rolled(Complete) });
        assert_eq!(
            gate("w0", &last, &waves, false),
            Gate::Roll { wave: 1, waves: 3 }
        );
    }

    #[test]
    fn annotated_canaries_go_first_whatever_their_names() {
        let mut members = ten(|_| Pending);
        members[7].canary = true;
        let waves = Waves::default();
        assert_eq!(
            gate("w7", &members, &waves, false),
            Gate::Roll { wave: 1, waves: 3 }
        );
        assert!(matches!(
            gate("w0", &members, &waves, false),
            Gate::Wait { wave: 2, .. }
        ));
        let names: Vec<&str> = ordered(&members).iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names[..3], ["w7", "w0", "w1"]);
    }

    #[test]
    fn a_failure_holds_every_workload_still_to_roll_unless_released() {
        let waves = Waves::default();
        let why = "ProgressDeadlineExceeded".to_string();
        let failed = ten(|i| {
            if i == 0 {
                Rolled(Failed(why.clone()))
            } else {
                Pending
            }
        });
        let hold = Gate::Hold {
            failed: "w0".into(),
            reason: why.clone(),
        };
        for me in ["w1", "w2", "w9"] {
            assert_eq!(gate(me, &failed, &waves, false), hold, "{me}");
        }
        // Released by hand: the failed canary counts as done.
        assert_eq!(
            gate("w1", &failed, &waves, true),
            Gate::Roll { wave: 2, waves: 3 }
        );
        // A failure in a later wave holds the rest too.
        let later = ten(|i| match i {
            0 => Rolled(Complete),
            1 => Rolled(Failed(why.clone())),
            _ => Pending,
        });
        assert!(
            matches!(gate("w4", &later, &waves, false), Gate::Hold { failed, .. } if failed == "w1")
        );
    }

    #[test]
    fn a_recorded_hold_lasts_until_the_change_is_superseded_or_released() {
        let id = |d: &str| ChangeId {
            config: "ConfigMap/app".into(),
            digest: d.into(),
        };
        let halt = Halt {
            change: id("aaa"),
            failed: "Deployment/web-0".into(),
            reason: "its new pods crash-loop".into(),
        };
        let text = halt.to_string();
        assert_eq!(
            text,
            "ConfigMap/app@aaa; Deployment/web-0: its new pods crash-loop"
        );
        assert_eq!(text.parse::<Halt>(), Ok(halt.clone()));
        assert!(hold_in_force(Some(&halt), &[id("aaa")], &[]));
        // The fix: the config changed again, so the workload now has another change to roll.
        assert!(!hold_in_force(Some(&halt), &[id("bbb")], &[]));
        assert!(!hold_in_force(Some(&halt), &[id("aaa")], &[id("aaa")]));
        assert!(!hold_in_force(None, &[id("aaa")], &[]));
        assert_eq!(hold_of(Some(&text), &[id("aaa")], &[]), Some(halt.clone()));
        assert_eq!(hold_of(Some(&text), &[id("bbb")], &[]), None);
        assert_eq!(hold_of(Some("garbage"), &[id("aaa")], &[]), None);
        assert_eq!(
            what_to_do(&id("aaa")),
            "Fix ConfigMap app: its next change releases the hold and rolls every workload that uses it once, progressively again. Or, to go on with this change as it is: kubectl annotate configmap app kube-reloader.io/release-hold=aaa"
        );
        assert_eq!(
            parse_mark(Some("ConfigMap/app@aaa,Secret/s@bbb,junk")),
            [
                id("aaa"),
                ChangeId {
                    config: "Secret/s".into(),
                    digest: "bbb".into()
                }
            ]
        );
        assert_eq!(
            mark(&[id("aaa"), id("b")]),
            "ConfigMap/app@aaa,ConfigMap/app@b"
        );
        assert!("x; y".parse::<Halt>().is_err());
        assert!(releases(Some("aaa"), &id("aaa")));
        assert!(releases(Some("ConfigMap/app@aaa"), &id("aaa")));
        assert!(!releases(Some("bbb"), &id("aaa")));
        assert!(!releases(None, &id("aaa")));
    }

    fn deployment(status: Value) -> Status {
        let d = json!({"spec": {"replicas": 2}, "status": status});
        Status::of(WorkloadKind::DEPLOYMENT, &d, Some(2))
    }

    const MIN: Duration = Duration::from_secs(60);
    const T: Duration = Duration::from_secs(300);

    #[test]
    fn a_deployment_completes_when_its_new_replica_set_is_available() {
        let progressing =
            |reason: &str| json!([{"type": "Progressing", "status": "True", "reason": reason}]);
        let done = deployment(
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2, "conditions": progressing("NewReplicaSetAvailable")}),
        );
        assert_eq!(progress(WorkloadKind::DEPLOYMENT, &done, MIN, T), Complete);
        // Not observed yet: the status is that of the previous generation.
        let stale = deployment(
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2, "conditions": progressing("ProgressDeadlineExceeded")}),
        );
        assert_eq!(
            progress(WorkloadKind::DEPLOYMENT, &stale, MIN, T),
            InProgress
        );
        // Old pods still there.
        let surge = deployment(
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2,
            "readyReplicas": 3, "availableReplicas": 3, "conditions": progressing("ReplicaSetUpdated")}),
        );
        assert_eq!(
            progress(WorkloadKind::DEPLOYMENT, &surge, MIN, T),
            InProgress
        );
        // Its own deadline, not --rollout-timeout.
        assert_eq!(
            progress(WorkloadKind::DEPLOYMENT, &surge, 10 * T, T),
            InProgress
        );
        let late = deployment(
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
            "readyReplicas": 2, "availableReplicas": 2, "conditions": progressing("ProgressDeadlineExceeded")}),
        );
        assert!(
            matches!(progress(WorkloadKind::DEPLOYMENT, &late, MIN, T), Failed(w) if w.contains("ProgressDeadlineExceeded"))
        );
    }

    #[test]
    fn other_kinds_complete_by_their_own_status_fields_or_time_out() {
        let sts = |status: Value| {
            let o = json!({"spec": {"replicas": 2}, "status": status});
            Status::of(WorkloadKind::STATEFUL_SET, &o, Some(3))
        };
        let done = sts(
            json!({"observedGeneration": 3, "readyReplicas": 2, "updateRevision": "r2", "currentRevision": "r2"}),
        );
        assert_eq!(
            progress(WorkloadKind::STATEFUL_SET, &done, MIN, T),
            Complete
        );
        let rolling = sts(
            json!({"observedGeneration": 3, "readyReplicas": 2, "updateRevision": "r2", "currentRevision": "r1"}),
        );
        assert_eq!(
            progress(WorkloadKind::STATEFUL_SET, &rolling, MIN, T),
            InProgress
        );
        assert!(
            matches!(progress(WorkloadKind::STATEFUL_SET, &rolling, T + MIN, T), Failed(w) if w.contains("--rollout-timeout (300s)"))
        );

        let ds = |status: Value| {
            let o = json!({"spec": {}, "status": status});
            Status::of(WorkloadKind::DAEMON_SET, &o, Some(4))
        };
        let done = ds(
            json!({"observedGeneration": 4, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}),
        );
        assert_eq!(progress(WorkloadKind::DAEMON_SET, &done, MIN, T), Complete);
        let short = ds(
            json!({"observedGeneration": 4, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}),
        );
        assert_eq!(
            progress(WorkloadKind::DAEMON_SET, &short, MIN, T),
            InProgress
        );

        let ro = |status: Value| {
            let o = json!({"spec": {}, "status": status});
            Status::of(WorkloadKind::ROLLOUT, &o, Some(5))
        };
        let healthy = ro(json!({"observedGeneration": "5", "phase": "Healthy"}));
        assert_eq!(progress(WorkloadKind::ROLLOUT, &healthy, MIN, T), Complete);
        let before = ro(json!({"observedGeneration": "4", "phase": "Healthy"}));
        assert_eq!(progress(WorkloadKind::ROLLOUT, &before, MIN, T), InProgress);
        let degraded = ro(
            json!({"observedGeneration": "5", "phase": "Degraded", "message": "ProgressDeadlineExceeded"}),
        );
        assert!(
            matches!(progress(WorkloadKind::ROLLOUT, &degraded, MIN, T), Failed(w) if w.contains("Degraded"))
        );
        let paused = ro(json!({"observedGeneration": "5", "phase": "Paused"}));
        assert_eq!(progress(WorkloadKind::ROLLOUT, &paused, MIN, T), InProgress);

        let cron = Status::of(WorkloadKind::CRON_JOB, &json!({}), None);
        assert_eq!(
            progress(WorkloadKind::CRON_JOB, &cron, Duration::ZERO, T),
            Complete
        );
    }

    #[test]
    fn crash_looping_new_pods_fail_the_rollout() {
        let pod = |reason: &str, restarts: i32, exit: i32| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "web-0-abc"},
                "status": {"containerStatuses": [{"name": "app", "image": "busybox", "imageID": "",
                    "ready": false, "restartCount": restarts,
                    "state": {"waiting": {"reason": reason}},
                    "lastState": {"terminated": {"exitCode": exit}}}]},
            }))
            .expect("a pod")
        };
        assert_eq!(crash_loop(&[pod("ContainerCreating", 0, 0)]), None);
        assert_eq!(
            crash_loop(&[
                pod("ContainerCreating", 0, 0),
                pod("CrashLoopBackOff", 1, 3)
            ])
            .as_deref(),
            Some("its new pods crash-loop (pod web-0-abc, container app: 1 restarts, exit code 3)")
        );
        // Not caught waiting, but restarted twice after failing: crash-looping all the same.
        assert!(crash_loop(&[pod("ContainerCreating", 2, 1)]).is_some());
        // Once, or after runs that ended well (a job-like container restarted by its policy): not.
        assert_eq!(crash_loop(&[pod("ContainerCreating", 1, 1)]), None);
        assert_eq!(crash_loop(&[pod("ContainerCreating", 5, 0)]), None);
    }
}
