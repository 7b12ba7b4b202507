//! Progressive rollouts (issue 24) with pods that really run: ten Deployments of an app that
//! exits when its config says `bad`, all on one ConfigMap that opts in
//! (`kube-reloader.io/progressive: "true"`). A bad value reaches the canary only: it fails, the
//! nine others are held (no new ReplicaSet), with Events, an alert and the metric; the hold
//! survives a SIGKILL of the controller; the fix rolls all ten once, in waves, each after the
//! previous completed; a good change does the same, its waves timed, and the same change all at
//! once (`kube-reloader.io/progressive: "false"`) timed beside it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::alerts::{Answer, Receiver, sample};
use crate::support::objects::{configmap, events_about};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, http_get, wait_for, with_node};

const APPS: usize = 10;
/// The annotated canary: first, whatever its name.
const CANARY: &str = "app-7";
const CM: &str = "app-config";
const HASH: &str = "kube-reloader.io/config-hash";
const FAILED: &str = "kube-reloader.io/rollout-failed";
const HELD: &str = "kube-reloader.io/held";
/// Generous bounds: a pod starts in about a second here; a failure shows within the
/// Deployments' 20 s progress deadline.
const TIMEOUT: Duration = Duration::from_secs(180);

fn name(i: usize) -> String {
    format!("app-{i}")
}

/// The waves of the default `--rollout-waves` (1,10%) for ten workloads: the canary, then the
/// first by name, then the rest.
fn wave_of(name: &str) -> usize {
    match name {
        CANARY => 0,
        "app-0" => 1,
        _ => 2,
    }
}

/// One replica of busybox that reads `greeting` of the ConfigMap and exits 3 when it is `bad`,
/// else sleeps. A pod counts as available after 8 s Ready, so one that exits at once never does:
/// with 2 s, a loaded node's kubelet once reported the exited container's pod Ready long enough
/// for the canary to count as complete, and the second wave started.
fn app(name: &str) -> Value {
    let mut annotations = json!({"kube-reloader.io/auto": "true"});
    if name == CANARY {
        annotations["kube-reloader.io/canary"] = json!("true");
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "minReadySeconds": 8,
            "progressDeadlineSeconds": 20,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app",
                        "image": "localhost/busybox:latest",
                        "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c",
                            "echo \"read $GREETING\"; if [ \"$GREETING\" = bad ]; then exit 3; fi; exec sleep 100000"],
                        "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": CM, "key": "greeting"}}}],
                    }],
                },
            },
        },
    })
}

/// The ConfigMap, progressive or not.
async fn config(ns: &TestNs, value: &str, progressive: bool) {
    let annotations = json!({"kube-reloader.io/progressive": progressive.to_string()});
    configmap(ns, CM, &[("greeting", value)], annotations).await;
}

/// A Deployment's rollout complete (read here from the status, independently of the
/// controller's rules): observed, one replica updated, ready and available, no old one left.
fn complete(d: &Deployment) -> bool {
    let Some(s) = &d.status else { return false };
    let one = |n: Option<i32>| n == Some(1);
    d.metadata.generation == s.observed_generation
        && one(s.updated_replicas)
        && one(s.ready_replicas)
        && one(s.available_replicas)
        && one(s.replicas)
        && s.conditions.iter().flatten().any(|c| {
            c.type_.as_deref() == Some("Progressing")
                && c.reason.as_deref() == Some("NewReplicaSetAvailable")
        })
}

fn template_hash(d: &Deployment) -> Option<String> {
    let t = d.spec.template.metadata.as_ref()?;
    t.annotations.as_ref()?.get(HASH).cloned()
}

fn annotation(d: &Deployment, key: &str) -> Option<String> {
    d.metadata.annotations.as_ref()?.get(key).cloned()
}

/// The ten Deployments, by name, as one list (one consistent snapshot).
async fn snapshot(ns: &TestNs) -> BTreeMap<String, Deployment> {
    let list = ns
        .api::<Deployment>()
        .list(&ListParams::default())
        .await
        .expect("list Deployments");
    let items = list.items.into_iter();
    items
        .map(|d| (d.metadata.name.clone().unwrap_or_default(), d))
        .collect()
}

/// When each Deployment's rollout started (its pod template got a new digest) and completed,
/// seconds after `start`.
#[derive(Debug, Default, Clone)]
struct Timing {
    rolled: Option<f64>,
    complete: Option<f64>,
}

/// Watches a change roll: waits until all ten rolled (their pod-template digest differs from
/// `before`) and completed. In every snapshot, a Deployment that rolled has all those of the
/// earlier waves complete (`progressive`); the timings.
async fn watch_rollout(
    ns: &TestNs,
    before: &BTreeMap<String, Option<String>>,
    start: Instant,
    progressive: bool,
) -> BTreeMap<String, Timing> {
    let mut timings: BTreeMap<String, Timing> =
        (0..APPS).map(|i| (name(i), Timing::default())).collect();
    loop {
        let now = start.elapsed().as_secs_f64();
        let all = snapshot(ns).await;
        for (n, d) in &all {
            let rolled = template_hash(d) != before[n];
            let t = timings.get_mut(n).expect("one of the ten");
            if rolled && t.rolled.is_none() {
                t.rolled = Some(now);
            }
            if rolled && complete(d) && t.complete.is_none() {
                t.complete = Some(now);
            }
            if progressive && rolled {
                for (m, earlier) in &all {
                    if wave_of(m) < wave_of(n) {
                        assert!(
                            template_hash(earlier) != before[m] && complete(earlier),
                            "{n} (wave {}) rolled while {m} (wave {}) had not completed: {:#?}",
                            wave_of(n) + 1,
                            wave_of(m) + 1,
                            earlier.status
                        );
                    }
                }
            }
        }
        if timings.values().all(|t| t.complete.is_some()) {
            return timings;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "the rollout did not complete in {TIMEOUT:?}: {timings:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until exactly `n` Deployments carry a hold.
async fn wait_held(ns: &TestNs, n: usize) {
    wait_for(&format!("{n} Deployments held"), TIMEOUT, || async {
        let all = snapshot(ns).await;
        let held = all.values().filter(|d| annotation(d, HELD).is_some());
        (held.count() == n).then_some(())
    })
    .await;
}

/// Changes the ConfigMap to `value` (rolled progressively or not) and watches the ten roll it
/// ([`watch_rollout`]).
async fn change_and_watch(ns: &TestNs, value: &str, progressive: bool) -> BTreeMap<String, Timing> {
    let before = hashes(ns).await;
    let start = Instant::now();
    config(ns, value, progressive).await;
    watch_rollout(ns, &before, start, progressive).await
}

async fn hashes(ns: &TestNs) -> BTreeMap<String, Option<String>> {
    let all = snapshot(ns).await;
    all.iter()
        .map(|(n, d)| (n.clone(), template_hash(d)))
        .collect()
}

/// Pod-template revisions (ReplicaSets beyond the first) of each of the ten.
async fn rollouts(ns: &TestNs) -> BTreeMap<String, u64> {
    rollouts_of(ns, APPS).await
}

/// Pod-template revisions of each of the first `n`.
async fn rollouts_of(ns: &TestNs, n: usize) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        out.insert(
            name(i),
            workloads::rollouts(ns, Kind::Deployment, &name(i)).await,
        );
    }
    out
}

/// The waves' start and end (first rollout written, last completed), seconds after the change.
fn waves(timings: &BTreeMap<String, Timing>) -> Vec<(f64, f64)> {
    (0..3)
        .map(|w| {
            let of = timings.iter().filter(|(n, _)| wave_of(n) == w);
            let (starts, ends): (Vec<f64>, Vec<f64>) = of
                .map(|(_, t)| (t.rolled.unwrap_or_default(), t.complete.unwrap_or_default()))
                .unzip();
            (
                starts.into_iter().fold(f64::MAX, f64::min),
                ends.into_iter().fold(0.0, f64::max),
            )
        })
        .collect()
}

fn report(what: &str, timings: &BTreeMap<String, Timing>) -> f64 {
    let total = timings
        .values()
        .filter_map(|t| t.complete)
        .fold(0.0, f64::max);
    let waves: Vec<String> = waves(timings)
        .iter()
        .enumerate()
        .map(|(i, (s, e))| format!("wave {} {s:.1}-{e:.1} s", i + 1))
        .collect();
    eprintln!(
        "progressive: {what}: all ten complete {total:.1} s after the change ({})",
        waves.join(", ")
    );
    total
}

#[tokio::test]
async fn a_bad_config_stops_at_the_canary_and_the_fix_rolls_all_in_waves() {
    let ns = TestNs::on(with_node(), "progressive").await;
    let receiver = Receiver::start(Answer::Status(200)).await;
    config(&ns, "one", true).await;
    for i in 0..APPS {
        workloads::create(&ns, Kind::Deployment, app(&name(i))).await;
    }
    let url = format!("--alert-webhook-url={}", receiver.url());
    let mut reloader = Reloader::start(&ns, &[&url]);
    for i in 0..APPS {
        workloads::baseline(&ns, Kind::Deployment, &name(i)).await;
    }
    wait_for("the ten apps running", TIMEOUT, || async {
        snapshot(&ns).await.values().all(complete).then_some(())
    })
    .await;
    let untouched: BTreeMap<String, u64> = (0..APPS).map(|i| (name(i), 0)).collect();
    assert_eq!(rollouts(&ns).await, untouched);

    // A bad value: the canary rolls and fails; the nine others are held.
    let start = Instant::now();
    config(&ns, "bad", true).await;
    let failure = wait_for("the canary's failure recorded", TIMEOUT, || async {
        workloads::annotation(&ns, Kind::Deployment, CANARY, FAILED, false).await
    })
    .await;
    eprintln!(
        "progressive: the bad value's failure recorded on the canary {:.1} s after the change: {failure}",
        start.elapsed().as_secs_f64()
    );
    assert!(failure.starts_with("ConfigMap/app-config@"), "{failure}");
    assert!(
        failure.contains(&format!("; Deployment/{CANARY}: ")),
        "{failure}"
    );
    assert!(
        failure.contains("crash-loop") || failure.contains("ProgressDeadlineExceeded"),
        "{failure}"
    );
    let change = failure.split("; ").next().expect("the change").to_string();
    wait_held(&ns, APPS - 1).await;
    for (n, d) in snapshot(&ns).await {
        if n == CANARY {
            continue;
        }
        let held = annotation(&d, HELD).expect("held");
        assert_eq!(
            held, failure,
            "{n}: the hold names the change, the failed one and why"
        );
    }
    let mut canary_only = untouched.clone();
    canary_only.insert(CANARY.into(), 1);
    assert_eq!(
        rollouts(&ns).await,
        canary_only,
        "only the canary got a new ReplicaSet"
    );

    // Told: Events on the config and on each held workload, an alert, the metric.
    let on_config = wait_for("RolloutHalted on the ConfigMap", TIMEOUT, || async {
        let e = events_about(&ns, Some("ConfigMap"), CM, "RolloutHalted").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(on_config.len(), 1, "{on_config:?}");
    assert!(
        on_config[0].contains(&change) && on_config[0].contains(CANARY),
        "{on_config:?}"
    );
    assert!(
        on_config[0].contains("kube-reloader.io/release-hold="),
        "{on_config:?}"
    );
    for i in (0..APPS).filter(|i| name(*i) != CANARY) {
        let n = name(i);
        let e = wait_for(&format!("RolloutHalted on {n}"), TIMEOUT, || async {
            let e = events_about(&ns, Some("Deployment"), &n, "RolloutHalted").await;
            (!e.is_empty()).then_some(e)
        })
        .await;
        assert!(
            e[0].contains(&format!("failed at Deployment/{CANARY}")),
            "{n}: {e:?}"
        );
    }
    let alerts = wait_for("the halt's alert", TIMEOUT, || async {
        let got: Vec<Value> = receiver.received().iter().map(|r| r.json()).collect();
        let halted: Vec<Value> = got
            .into_iter()
            .filter(|a| a["reason"] == "RolloutHalted")
            .collect();
        (!halted.is_empty()).then_some(halted)
    })
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["name"], CANARY);
    assert_eq!(
        alerts[0]["changed"],
        json!([{"kind": "ConfigMap", "name": CM}])
    );
    let addr = reloader.http_addr().await;
    let (_, metrics) = http_get(addr, "/metrics").await;
    let series = format!(
        "kube_reloader_rollouts_halted_total{{namespace=\"{}\"}}",
        ns.name
    );
    assert_eq!(sample(&metrics, &series), Some(1.0), "{metrics}");

    // SIGKILL during the hold: the new process keeps it.
    reloader.kill();
    let reloader = Reloader::start(&ns, &[&url]);
    for i in (0..APPS).filter(|i| name(*i) != CANARY) {
        let n = format!("name={}", name(i));
        reloader
            .wait_count(&["held (as recorded on the workload)", &n], 1)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rollouts(&ns).await,
        canary_only,
        "after the restart, still held"
    );
    assert_eq!(reloader.count(&["rolled out"]), 0, "{}", reloader.logs());

    // The fix: all ten roll once, in waves.
    let fixed = change_and_watch(&ns, "two", true).await;
    report("the fix", &fixed);
    let mut all_once: BTreeMap<String, u64> = (0..APPS).map(|i| (name(i), 1)).collect();
    all_once.insert(CANARY.into(), 2);
    assert_eq!(rollouts(&ns).await, all_once, "the fix rolls each once");
    for (n, d) in snapshot(&ns).await {
        assert_eq!(annotation(&d, HELD), None, "{n}: hold released");
        assert_eq!(annotation(&d, FAILED), None, "{n}: failure superseded");
    }

    // A good change: the waves timed; then the same change all at once, timed beside it.
    let good = change_and_watch(&ns, "three", true).await;
    let progressive = report("a good change, progressively", &good);
    let at_once = change_and_watch(&ns, "four", false).await;
    let at_once = report("the same, all at once", &at_once);
    eprintln!(
        "progressive: 10 Deployments, 1 replica each: progressive {progressive:.1} s, all at once {at_once:.1} s"
    );
    let mut three: BTreeMap<String, u64> = (0..APPS).map(|i| (name(i), 3)).collect();
    three.insert(CANARY.into(), 4);
    assert_eq!(rollouts(&ns).await, three, "each change rolled each once");
    drop(reloader);
}

/// A hold released by hand: `kube-reloader.io/release-hold` naming the halted change's digest
/// lets it go on, bad as it is, to every workload.
#[tokio::test]
async fn a_hold_released_by_hand_lets_the_change_go_on() {
    let ns = TestNs::on(with_node(), "progressive-release").await;
    config(&ns, "one", true).await;
    for i in 0..3 {
        workloads::create(&ns, Kind::Deployment, app(&name(i))).await;
    }
    let reloader = Reloader::start(&ns, &[]);
    for i in 0..3 {
        workloads::baseline(&ns, Kind::Deployment, &name(i)).await;
    }
    config(&ns, "bad", true).await;
    let failure = wait_for("the first one's failure", TIMEOUT, || async {
        workloads::annotation(&ns, Kind::Deployment, "app-0", FAILED, false).await
    })
    .await;
    wait_held(&ns, 2).await;
    let first_only = BTreeMap::from([(name(0), 1), (name(1), 0), (name(2), 0)]);
    assert_eq!(rollouts_of(&ns, 3).await, first_only);

    // The digest the hold names, on the ConfigMap: the change goes on.
    let digest = failure
        .split("; ")
        .next()
        .and_then(|c| c.rsplit_once('@'))
        .map(|(_, d)| d.to_string())
        .expect("a digest");
    let annotations =
        json!({"kube-reloader.io/progressive": "true", "kube-reloader.io/release-hold": digest});
    configmap(&ns, CM, &[("greeting", "bad")], annotations).await;
    wait_held(&ns, 0).await;
    let all_once = BTreeMap::from([(name(0), 1), (name(1), 1), (name(2), 1)]);
    assert_eq!(
        rollouts_of(&ns, 3).await,
        all_once,
        "released: each rolled once"
    );
    drop(reloader);
}

/// Like [`app`], but its pods start well: with `bad` they run, become available, and exit 12 s
/// later (a value that breaks only once used), then crash-loop.
fn late_crasher(name: &str) -> Value {
    let mut manifest = app(name);
    manifest["spec"]["minReadySeconds"] = json!(2);
    manifest["spec"]["template"]["spec"]["containers"][0]["command"] = json!([
        "/bin/sh",
        "-c",
        "echo \"read $GREETING\"; if [ \"$GREETING\" = bad ]; then sleep 12; exit 3; fi; exec sleep 100000"
    ]);
    manifest
}

/// `--rollout-soak`: each wave starts only once the previous one's rollouts have stayed complete
/// that long; a value whose pods crash after they counted as available halts the change at the
/// canary, the two others untouched.
#[tokio::test]
async fn with_a_soak_a_value_that_breaks_pods_late_stops_at_the_canary() {
    let ns = TestNs::on(with_node(), "progressive-soak").await;
    config(&ns, "one", true).await;
    let names: Vec<String> = (0..3).map(name).collect();
    for n in &names {
        workloads::create(&ns, Kind::Deployment, late_crasher(n)).await;
    }
    let mut reloader = Reloader::start(&ns, &["--rollout-soak=10s"]);
    for n in &names {
        workloads::baseline(&ns, Kind::Deployment, n).await;
    }
    wait_for("the three apps running", TIMEOUT, || async {
        snapshot(&ns).await.values().all(complete).then_some(())
    })
    .await;

    // A good change: one wave each (the canary, a tenth, the rest), each 10 s after the
    // previous one completed.
    let before = hashes(&ns).await;
    let start = Instant::now();
    config(&ns, "two", true).await;
    let mut rolled: BTreeMap<String, f64> = BTreeMap::new();
    let mut completed: BTreeMap<String, f64> = BTreeMap::new();
    while completed.len() < names.len() {
        let now = start.elapsed().as_secs_f64();
        for (n, d) in snapshot(&ns).await {
            if template_hash(&d) != before[&n] {
                rolled.entry(n.clone()).or_insert(now);
                if complete(&d) {
                    completed.entry(n).or_insert(now);
                }
            }
        }
        assert!(start.elapsed() < TIMEOUT, "{rolled:?} {completed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("progressive: soak 10 s: rolled {rolled:?}, complete {completed:?}");
    for (earlier, later) in [(&names[0], &names[1]), (&names[1], &names[2])] {
        let gap = rolled[later] - completed[earlier];
        assert!(
            gap >= 9.5,
            "{later} rolled {gap:.1} s after {earlier} completed, within the 10 s soak"
        );
    }
    let once: BTreeMap<String, u64> = names.iter().map(|n| (n.clone(), 1)).collect();
    assert_eq!(rollouts_of(&ns, 3).await, once);

    // A value that breaks the pods 12 s after they start, well after they count as available:
    // the canary completes, soaks, crash-loops inside its soak, and the change halts there.
    reloader.kill();
    let reloader = Reloader::start(&ns, &["--rollout-soak=60s"]);
    for n in &names {
        reloader.wait_up_to_date(n, 1).await;
    }
    let start = Instant::now();
    config(&ns, "bad", true).await;
    let failure = wait_for("the canary's failure recorded", TIMEOUT, || async {
        workloads::annotation(&ns, Kind::Deployment, &names[0], FAILED, false).await
    })
    .await;
    eprintln!(
        "progressive: soak 60 s: the late failure recorded {:.1} s after the change: {failure}",
        start.elapsed().as_secs_f64()
    );
    assert!(failure.contains("crash-loop"), "{failure}");
    wait_held(&ns, 2).await;
    let canary_twice = BTreeMap::from([
        (names[0].clone(), 2),
        (names[1].clone(), 1),
        (names[2].clone(), 1),
    ]);
    assert_eq!(
        rollouts_of(&ns, 3).await,
        canary_twice,
        "only the canary rolled the bad value"
    );
    drop(reloader);
}
