//! Restart windows (issue 24) with pods that really run: windows of 8 seconds opening at the
//! start of each minute (UTC), in kube-reloader's form and in Reloader's JSON form. Two changes
//! of the ConfigMap made outside the window, and a SIGKILL of the controller between them, roll
//! each windowed Deployment once, inside the next opening, its new pods reading the last value;
//! a Deployment without a window rolls each change at once, and one with an invalid window
//! rolls as without one, warned about once.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::explain::explain_json_with;
use crate::pods::new_pods_ready;
use crate::support::objects::events_about;
use crate::support::pods::{self, Source};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, wait_for, with_node};

const CONFIG: Source = Source::ConfigMap("app-config");
/// Open for the first 8 seconds of every minute.
const OURS: &str = "UTC * * * * * 8s";
const THEIRS: &str = r#"{"timezone":"UTC","windows":[{"cron":"* * * * *","duration":"8s"}]}"#;
const WINDOW: i64 = 8;
const TIMEOUT: Duration = Duration::from_secs(150);

/// A Deployment of one app pod reading the ConfigMap, with these annotations besides the opt-in.
fn app(name: &str, annotations: Value) -> Value {
    let mut manifest = pods::app(Kind::Deployment, name, 1, CONFIG.name());
    let own = manifest["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations");
    own.extend(annotations.as_object().expect("an object").clone());
    manifest
}

/// The second of the current minute.
fn second() -> i64 {
    Timestamp::now().as_second().rem_euclid(60)
}

/// Sleeps until the second of the minute is at least `at` (and, if it is already past `before`,
/// until `at` of the next minute): a change made then is outside the window, with time to spare.
async fn until_second(at: i64, before: i64) {
    loop {
        let s = second();
        if (at..before).contains(&s) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn rollouts(ns: &TestNs, name: &str) -> u64 {
    workloads::rollouts(ns, Kind::Deployment, name).await
}

/// When kube-reloader wrote the workload's last rollout (its `reloaded-at`).
async fn reloaded_at(ns: &TestNs, name: &str) -> Timestamp {
    let at = workloads::annotation(
        ns,
        Kind::Deployment,
        name,
        "kube-reloader.io/reloaded-at",
        false,
    )
    .await
    .unwrap_or_else(|| panic!("{name} has no reloaded-at"));
    at.parse().unwrap_or_else(|e| panic!("{name}: {at}: {e}"))
}

#[tokio::test]
async fn a_change_outside_the_restart_window_rolls_once_when_it_opens() {
    let ns = TestNs::on(with_node(), "windows").await;
    CONFIG.set(&ns, "one").await;
    let windowed = ["ours", "theirs"];
    let at_once = ["control", "typo"];
    let annotations = [
        json!({"kube-reloader.io/restart-window": OURS}),
        json!({"reloader.stakater.com/restart-window": THEIRS}),
        json!({}),
        json!({"kube-reloader.io/restart-window": "every night"}),
    ];
    let names = windowed.iter().chain(&at_once);
    for (name, annotations) in names.clone().zip(annotations) {
        workloads::create(&ns, Kind::Deployment, app(name, annotations)).await;
    }
    let mut first = Reloader::start(&ns, &[]);
    let mut generations = std::collections::BTreeMap::new();
    for name in names.clone() {
        workloads::baseline(&ns, Kind::Deployment, name).await;
        let mut seen = BTreeSet::new();
        let (ready, _) = new_pods_ready(&ns, name, 1, &BTreeSet::new(), "one", &mut seen).await;
        generations.insert(*name, pods::generations(&ready));
    }

    // A change well outside the window: the two without a window roll it; the windowed wait.
    until_second(15, 25).await;
    CONFIG.set(&ns, "two").await;
    let changed = Timestamp::now();
    for name in at_once {
        workloads::wait_rollouts(&ns, Kind::Deployment, name, 1).await;
    }
    for name in windowed {
        let deferred = wait_for(&format!("RolloutDeferred on {name}"), TIMEOUT, || async {
            let e = events_about(&ns, Some("Deployment"), name, "RolloutDeferred").await;
            (!e.is_empty()).then_some(e)
        })
        .await;
        assert!(deferred[0].contains("opens at"), "{deferred:?}");
        assert_eq!(
            rollouts(&ns, name).await,
            0,
            "{name} rolled outside its window"
        );
    }
    let e = explain_json_with(&ns, &[], "deployment/ours");
    assert_eq!(e["state"], "rollout-pending", "{e:#}");
    let status = e["status"].as_str().unwrap_or_default();
    assert!(status.contains("outside its restart window"), "{e:#}");
    assert!(
        e["restart_window"]
            .as_str()
            .is_some_and(|w| w.starts_with("* * * * * (UTC) for 8s: closed, opens at")),
        "{e:#}"
    );

    // SIGKILL; the new process finds the change waiting from the cluster alone.
    first.kill();
    let reloader = Reloader::start(&ns, &[]);
    until_second(28, 40).await;
    CONFIG.set(&ns, "three").await;
    let minute = |t: Timestamp| t.as_second().div_euclid(60);
    assert_eq!(
        minute(Timestamp::now()),
        minute(changed),
        "the minute turned between the changes: too slow a machine for this test"
    );
    for name in at_once {
        workloads::wait_rollouts(&ns, Kind::Deployment, name, 2).await;
    }
    for name in windowed {
        let n = format!("name={name}");
        reloader
            .wait_count(&["outside the workload's restart window", &n], 1)
            .await;
    }
    assert_eq!(
        minute(Timestamp::now()),
        minute(changed),
        "the minute turned before the checks: too slow a machine for this test"
    );
    for name in windowed {
        assert_eq!(
            rollouts(&ns, name).await,
            0,
            "{name} rolled outside its window"
        );
    }

    // The opening: each windowed one rolls once, inside the window, reading the last value.
    let opened = Timestamp::from_second((minute(changed) + 1) * 60).expect("a time");
    for name in windowed {
        workloads::wait_rollouts(&ns, Kind::Deployment, name, 1).await;
        let at = reloaded_at(&ns, name).await;
        assert!(
            at >= opened && at.as_second() - opened.as_second() < WINDOW,
            "{name} rolled at {at}, not inside the window opening at {opened}"
        );
        eprintln!("windows: {name}: changed at {changed}, rolled at {at}");
        let mut seen = BTreeSet::new();
        new_pods_ready(&ns, name, 1, &generations[name], "three", &mut seen).await;
    }
    // Past the window's end: nothing more rolled, anywhere.
    until_second(WINDOW + 3, 50).await;
    for name in windowed {
        assert_eq!(
            rollouts(&ns, name).await,
            1,
            "{name}: one rollout for both changes"
        );
    }
    for name in at_once {
        assert_eq!(rollouts(&ns, name).await, 2, "{name}: each change rolled");
    }
    // The invalid window: warned about once by this process, however many changes.
    let invalid = reloader.count(&["kube-reloader.io/restart-window", "is invalid", "name=typo"]);
    assert_eq!(invalid, 1, "{}", reloader.logs());
    let warned = events_about(&ns, Some("Deployment"), "typo", "InvalidAnnotation").await;
    assert!(
        warned
            .iter()
            .all(|w| w.contains("as if it had no restart window"))
            && !warned.is_empty(),
        "{warned:?}"
    );
    drop(reloader);
}
