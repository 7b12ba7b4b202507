//! Every workload kind through one mechanism: a custom kind at a custom template path (the tests'
//! Widget), a kind whose CRD arrives after the controller started, Argo Rollouts (by template, by
//! `spec.restartAt` for a `workloadRef` or on request) and CronJobs (the built-in batch/v1 kind). These kinds have no ReplicaSets to count: a rollout is a change of the pod
//! template at the kind's path (or of `spec.restartAt`), counted by a watch on the object.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::kinds::{self, AUTO, HASH, History, TestKind};
use crate::support::objects::configmap;
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, http_get, unique_suffix, wait_for};

/// After the test Reloader's --debounce (500 ms) and --min-rollout-interval (1 s), with room to
/// spare: a second rollout kube-reloader were about to make by mistake would have been made.
const SETTLE: Duration = Duration::from_secs(3);
const TRACKED: &str = "kube-reloader.io/tracked";

/// The value of a sample of kube-reloader's /metrics (0 when absent).
async fn metric(reloader: &Reloader, sample: &str) -> u64 {
    let (_, body) = http_get(reloader.http_addr().await, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

fn rollouts_sample(kind: &str, ns: &TestNs, result: &str) -> String {
    format!(
        "kube_reloader_rollouts_total{{kind=\"{kind}\",namespace=\"{}\",result=\"{result}\"}}",
        ns.name
    )
}

fn generation(obj: &Value) -> i64 {
    obj["metadata"]["generation"].as_i64().unwrap_or_default()
}

/// A pod spec using only key `key` of ConfigMap `cm` (an env var from a `configMapKeyRef`).
fn one_key(cm: &str, key: &str) -> Value {
    workloads::pod_spec(
        json!({"env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": cm, "key": key}}}]}),
        json!([]),
    )
}

fn no_refs() -> Value {
    workloads::pod_spec(json!({}), json!([]))
}

#[tokio::test]
async fn a_widget_at_a_custom_path_is_baselined_then_rolled_once_per_change_it_uses() {
    kinds::install_test_crds();
    let widget = TestKind::widget();
    let ns = TestNs::new("kinds-widget").await;
    for cm in ["auto-cm", "ours-cm", "rl-cm", "plain-cm"] {
        configmap(&ns, cm, &[("k", "1")], json!({})).await;
    }
    configmap(&ns, "keys-cm", &[("used", "1"), ("unused", "1")], json!({})).await;
    // (name, metadata annotations, pod spec, the ConfigMap whose change must roll it)
    let opted = [
        (
            "auto-w",
            json!({AUTO: "true"}),
            workloads::env_from_configmap("auto-cm"),
            "auto-cm",
        ),
        (
            "ours-w",
            json!({"kube-reloader.io/configmaps": "ours-cm"}),
            no_refs(),
            "ours-cm",
        ),
        (
            "rl-w",
            json!({"configmap.reloader.stakater.com/reload": "rl-cm"}),
            no_refs(),
            "rl-cm",
        ),
        (
            "keys-w",
            json!({AUTO: "true"}),
            one_key("keys-cm", "used"),
            "keys-cm",
        ),
    ];
    for (name, annotations, spec, _) in &opted {
        kinds::create(
            &ns,
            &widget,
            kinds::manifest(&widget, name, annotations.clone(), spec.clone()),
        )
        .await;
    }
    kinds::create(
        &ns,
        &widget,
        kinds::manifest(
            &widget,
            "plain-w",
            json!({}),
            workloads::env_from_configmap("plain-cm"),
        ),
    )
    .await;
    let mut histories = BTreeMap::new();
    for name in ["auto-w", "ours-w", "rl-w", "keys-w", "plain-w"] {
        histories.insert(name, History::watch(&ns, &widget, name).await);
    }
    let history = |name: &str| histories.get(name).expect("watched");

    let reloader = Reloader::start(&ns, &[&widget.flag()]);
    // First sight: a baseline on the Widget's metadata, nothing in its template, no spec write.
    for (name, ..) in &opted {
        kinds::baseline(&ns, &widget, name).await;
        reloader.wait_up_to_date(name, 1).await;
    }
    for (name, ..) in &opted {
        let obj = kinds::get(&ns, &widget, name).await;
        assert_eq!(
            history(name).template_changes(),
            0,
            "{name}: first sight rolled"
        );
        assert_eq!(widget.template_annotation(&obj, HASH), None, "{name}");
        assert_eq!(generation(&obj), 1, "{name}: first sight wrote its spec");
    }

    // A key keys-w does not read changes: nothing rolls.
    let reconciled = reloader.count(&["up to date", "name=keys-w"]);
    configmap(&ns, "keys-cm", &[("used", "1"), ("unused", "2")], json!({})).await;
    reloader.wait_up_to_date("keys-w", reconciled + 1).await;
    assert_eq!(
        history("keys-w").template_changes(),
        0,
        "an unused key rolled"
    );

    // Every ConfigMap changes.
    configmap(&ns, "keys-cm", &[("used", "2"), ("unused", "2")], json!({})).await;
    for cm in ["auto-cm", "ours-cm", "rl-cm", "plain-cm"] {
        configmap(&ns, cm, &[("k", "2")], json!({})).await;
    }
    for (name, ..) in &opted {
        history(name).wait_template_changes(1).await;
    }
    tokio::time::sleep(SETTLE).await;
    for (name, _, _, cm) in &opted {
        assert_eq!(history(name).template_changes(), 1, "{name}: rollouts");
        history(name).assert_only_the_mark_changed();
        let obj = kinds::get(&ns, &widget, name).await;
        assert_eq!(generation(&obj), 2, "{name}: spec writes");
        let mark = widget.template_annotation(&obj, HASH);
        assert!(
            mark.is_some(),
            "{name}: no {HASH} in spec.workload.podTemplate"
        );
        assert_eq!(
            mark.as_deref(),
            obj["metadata"]["annotations"][HASH].as_str(),
            "{name}: the template's mark is not the new baseline"
        );
        assert!(
            obj["metadata"]["annotations"][TRACKED]
                .as_str()
                .is_some_and(|t| t.contains(&format!("ConfigMap/{cm}="))),
            "{name}: {obj:#}"
        );
        let notes = kinds::wait_events(&ns, "Widget", name, "Reloaded").await;
        assert_eq!(notes.len(), 1, "{name}: {notes:?}");
        assert!(notes[0].contains(&format!("ConfigMap/{cm}")), "{notes:?}");
    }
    for (name, ..) in &opted {
        let covered = kinds::events(&ns, "Widget", name, "ReloadNotNeeded").await;
        assert!(covered.is_empty(), "{name}: {covered:?}");
    }
    // Not opted in: no baseline, no rollout.
    assert_eq!(history("plain-w").template_changes(), 0);
    assert_eq!(kinds::annotation(&ns, &widget, "plain-w", HASH).await, None);
    assert_eq!(
        metric(&reloader, &rollouts_sample("Widget", &ns, "rolled")).await,
        4
    );
}

#[tokio::test]
async fn a_widget_restart_over_unchanged_objects_writes_nothing_and_a_change_while_down_rolls_once()
{
    kinds::install_test_crds();
    let widget = TestKind::widget();
    let ns = TestNs::new("kinds-restart").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    kinds::opted_in(&ns, &widget, "gizmo", workloads::env_from_configmap("cfg")).await;
    let history = History::watch(&ns, &widget, "gizmo").await;
    let mut first = Reloader::start(&ns, &[&widget.flag()]);
    kinds::baseline(&ns, &widget, "gizmo").await;
    first.wait_up_to_date("gizmo", 1).await;
    first.kill();
    let before = kinds::get(&ns, &widget, "gizmo").await;

    // Restarted over unchanged objects: ready, reconciled, and nothing written.
    let mut second = Reloader::start(&ns, &[&widget.flag()]);
    let addr = second.http_addr().await;
    wait_for(
        "the restarted kube-reloader to be ready",
        Duration::from_secs(60),
        || async { (http_get(addr, "/readyz").await.0 == 200).then_some(()) },
    )
    .await;
    second.wait_up_to_date("gizmo", 1).await;
    tokio::time::sleep(SETTLE).await;
    let after = kinds::get(&ns, &widget, "gizmo").await;
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "the restart wrote to the Widget:\n{before:#}\n{after:#}"
    );
    assert_eq!(
        second.count(&["recorded the baseline"]) + second.count(&["rolled out"]),
        0
    );
    second.kill();

    // A change made while it is down: exactly one rollout once it is back.
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    let third = Reloader::start(&ns, &[&widget.flag()]);
    history.wait_template_changes(1).await;
    third.wait_up_to_date("gizmo", 1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(history.template_changes(), 1);
    history.assert_only_the_mark_changed();
    assert_eq!(
        kinds::wait_events(&ns, "Widget", "gizmo", "Reloaded")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_kind_whose_crd_is_installed_later_is_watched_within_30_seconds_without_a_restart() {
    let ns = TestNs::new("kinds-late").await;
    // A group of this test's own: no other test may have installed it.
    let group = format!(
        "late{}.tests.kube-reloader.io",
        unique_suffix().replace('-', "")
    );
    let gadget = TestKind {
        group,
        version: "v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
        template_path: "spec.pod.template".into(),
    };
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    let mut reloader = Reloader::start(&ns, &[&gadget.flag()]);
    reloader
        .wait_count(&["Gadget is not served by this API server"], 1)
        .await;
    // An absent kind does not hold readiness back.
    let addr = reloader.http_addr().await;
    wait_for(
        "kube-reloader to be ready",
        Duration::from_secs(60),
        || async { (http_get(addr, "/readyz").await.0 == 200).then_some(()) },
    )
    .await;

    let installed = Instant::now();
    let crd = gadget.crd().to_string();
    tokio::task::spawn_blocking({
        let gadget = gadget.clone();
        move || kinds::install_crd(&crd, &gadget)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    kinds::opted_in(
        &ns,
        &gadget,
        "gadget-a",
        workloads::env_from_configmap("cfg"),
    )
    .await;
    let history = History::watch(&ns, &gadget, "gadget-a").await;
    kinds::baseline(&ns, &gadget, "gadget-a").await;
    let took = installed.elapsed();
    // Looked up again every 20 s; 30 s promised, plus the first --debounce window and the writes.
    assert!(
        took < Duration::from_secs(33),
        "the baseline took {took:?} after the CRD was installed"
    );
    reloader
        .wait_count(&["Gadget is served now: watching it"], 1)
        .await;
    assert!(reloader.running(), "kube-reloader exited");
    reloader.wait_up_to_date("gadget-a", 1).await;
    assert_eq!(history.template_changes(), 0, "first sight rolled");

    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    history.wait_template_changes(1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(history.template_changes(), 1);
    history.assert_only_the_mark_changed();
    let obj = kinds::get(&ns, &gadget, "gadget-a").await;
    assert!(
        gadget.template_annotation(&obj, HASH).is_some(),
        "no {HASH} in spec.pod.template: {obj:#}"
    );
    let tracked = obj["metadata"]["annotations"][TRACKED].as_str();
    assert!(
        tracked.is_some_and(|t| t.contains("ConfigMap/cfg=")),
        "it no longer tracks ConfigMap/cfg: {obj:#}"
    );
    let notes = kinds::wait_events(&ns, "Gadget", "gadget-a", "Reloaded").await;
    assert!(notes[0].contains("ConfigMap/cfg"), "{notes:?}");
    let covered = kinds::events(&ns, "Gadget", "gadget-a", "ReloadNotNeeded").await;
    assert!(
        covered.is_empty(),
        "its own rollout was taken for someone else's: {covered:?}"
    );
}

#[tokio::test]
async fn a_rollout_with_a_template_rolls_once_through_its_template() {
    kinds::install_test_crds();
    let rollout = TestKind::rollout();
    let ns = TestNs::new("kinds-ro").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    kinds::opted_in(&ns, &rollout, "web", workloads::env_from_configmap("cfg")).await;
    let history = History::watch(&ns, &rollout, "web").await;
    // Rollout is a built-in kind: no flag.
    let reloader = Reloader::start(&ns, &[]);
    kinds::baseline(&ns, &rollout, "web").await;
    reloader.wait_up_to_date("web", 1).await;
    assert_eq!(history.template_changes(), 0, "first sight rolled");
    assert_eq!(generation(&kinds::get(&ns, &rollout, "web").await), 1);

    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    history.wait_template_changes(1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(history.template_changes(), 1);
    history.assert_only_the_mark_changed();
    assert!(history.restarts().is_empty(), "{:?}", history.restarts());
    let obj = kinds::get(&ns, &rollout, "web").await;
    assert_eq!(generation(&obj), 2);
    assert_eq!(
        rollout.template_annotation(&obj, HASH).as_deref(),
        obj["metadata"]["annotations"][HASH].as_str()
    );
    let notes = kinds::wait_events(&ns, "Rollout", "web", "Reloaded").await;
    assert!(notes[0].contains("ConfigMap/cfg"), "{notes:?}");
    assert_eq!(
        metric(&reloader, &rollouts_sample("Rollout", &ns, "rolled")).await,
        1
    );
}

/// A `restartAt` kube-reloader wrote: RFC 3339, and a time since `since`.
fn assert_restarted_since(at: &str, since: Timestamp) {
    let t: Timestamp = at
        .parse()
        .unwrap_or_else(|e| panic!("spec.restartAt {at:?} is not RFC 3339: {e}"));
    // It is written in whole seconds.
    let since = Timestamp::from_second(since.as_second()).expect("a time");
    assert!(
        t >= since && t <= Timestamp::now(),
        "spec.restartAt {at} is not between {since} and now"
    );
}

#[tokio::test]
async fn a_rollout_asking_for_restarts_gets_restart_at_and_no_template_change() {
    kinds::install_test_crds();
    let rollout = TestKind::rollout();
    let ns = TestNs::new("kinds-ro-restart").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    let annotations = json!({AUTO: "true", "reloader.stakater.com/rollout-strategy": "restart"});
    let m = kinds::manifest(
        &rollout,
        "web",
        annotations,
        workloads::env_from_configmap("cfg"),
    );
    kinds::create(&ns, &rollout, m).await;
    let history = History::watch(&ns, &rollout, "web").await;
    let reloader = Reloader::start(&ns, &[]);
    kinds::baseline(&ns, &rollout, "web").await;
    reloader.wait_up_to_date("web", 1).await;
    assert!(history.restarts().is_empty(), "first sight restarted it");

    let changed = Timestamp::now();
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    let restarts = history.wait_restarts(1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(history.restarts(), restarts, "restarted more than once");
    assert_restarted_since(&restarts[0], changed);
    assert_eq!(history.template_changes(), 0, "the template was changed");
    let obj = kinds::get(&ns, &rollout, "web").await;
    assert_eq!(rollout.template_annotation(&obj, HASH), None);
    let notes = kinds::wait_events(&ns, "Rollout", "web", "Reloaded").await;
    assert!(notes[0].contains("ConfigMap/cfg"), "{notes:?}");
}

/// What a write to a Deployment would change: its generation (which on this apiserver moves on
/// annotation-only writes too), metadata annotations and spec.
fn written(d: &Value) -> (Value, Value, Value) {
    (
        d["metadata"]["generation"].clone(),
        d["metadata"]["annotations"].clone(),
        d["spec"].clone(),
    )
}

#[tokio::test]
async fn a_rollout_with_a_workload_ref_is_restarted_once_and_its_deployment_left_alone() {
    kinds::install_test_crds();
    let rollout = TestKind::rollout();
    let ns = TestNs::new("kinds-ro-ref").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    // The Deployment holding the template: not opted in itself, no replicas.
    workloads::deployment(&ns, "src", json!({}), workloads::env_from_configmap("cfg")).await;
    workloads::settled_revision(&ns, Kind::Deployment, "src").await;
    let ro = json!({
        "apiVersion": rollout.api_version(), "kind": "Rollout",
        "metadata": {"name": "ref", "annotations": {AUTO: "true"}},
        "spec": {
            "replicas": 0,
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "src"},
        },
    });
    kinds::create(&ns, &rollout, ro).await;
    let history = History::watch(&ns, &rollout, "ref").await;
    let before = written(&workloads::get(&ns, Kind::Deployment, "src").await);

    let reloader = Reloader::start(&ns, &[]);
    kinds::baseline(&ns, &rollout, "ref").await;
    reloader.wait_up_to_date("ref", 1).await;
    assert!(history.restarts().is_empty(), "first sight restarted it");
    // It tracks what the referenced Deployment's template uses.
    let tracked = kinds::annotation(&ns, &rollout, "ref", TRACKED).await;
    assert!(
        tracked
            .as_deref()
            .is_some_and(|t| t.contains("ConfigMap/cfg=")),
        "{tracked:?}"
    );

    let changed = Timestamp::now();
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    let restarts = history.wait_restarts(1).await;
    reloader.wait_up_to_date("ref", 2).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(history.restarts(), restarts, "restarted more than once");
    assert_restarted_since(&restarts[0], changed);
    let obj = kinds::get(&ns, &rollout, "ref").await;
    assert_eq!(
        obj["spec"]["restartAt"].as_str(),
        Some(restarts[0].as_str())
    );
    assert_eq!(obj["spec"].get("template"), None, "a template was added");
    let notes = kinds::wait_events(&ns, "Rollout", "ref", "Reloaded").await;
    assert!(notes[0].contains("ConfigMap/cfg"), "{notes:?}");

    // The Deployment: untouched, and no new ReplicaSet.
    let d = workloads::get(&ns, Kind::Deployment, "src").await;
    assert_eq!(written(&d), before, "the referenced Deployment was written");
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(!managers.contains(&"kube-reloader"), "{managers:?}");
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "src").await, 0);
}

#[tokio::test]
async fn a_cronjob_gets_its_job_template_changed_once_and_no_job_even_when_suspended() {
    let cronjob = TestKind::cronjob();
    let ns = TestNs::new("kinds-cj").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    kinds::opted_in(
        &ns,
        &cronjob,
        "nightly",
        workloads::env_from_configmap("cfg"),
    )
    .await;
    let mut paused = kinds::manifest(
        &cronjob,
        "paused",
        json!({AUTO: "true"}),
        workloads::env_from_configmap("cfg"),
    );
    paused["spec"]["suspend"] = json!(true);
    kinds::create(&ns, &cronjob, paused).await;
    let names = ["nightly", "paused"];
    let mut histories = Vec::new();
    for name in names {
        histories.push(History::watch(&ns, &cronjob, name).await);
    }
    // The built-in batch/v1 CronJob: no flag needed.
    let reloader = Reloader::start(&ns, &[]);
    for name in names {
        kinds::baseline(&ns, &cronjob, name).await;
        reloader.wait_up_to_date(name, 1).await;
    }
    for (name, history) in names.iter().zip(&histories) {
        assert_eq!(history.template_changes(), 0, "{name}: first sight rolled");
    }

    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    for history in &histories {
        history.wait_template_changes(1).await;
    }
    tokio::time::sleep(SETTLE).await;
    for (name, history) in names.iter().zip(&histories) {
        assert_eq!(
            history.template_changes(),
            1,
            "{name}: job template changes"
        );
        let obj = kinds::get(&ns, &cronjob, name).await;
        assert_eq!(
            cronjob.template_annotation(&obj, HASH).as_deref(),
            obj["metadata"]["annotations"][HASH].as_str(),
            "{name}: {obj:#}"
        );
        let notes = kinds::wait_events(&ns, "CronJob", name, "Reloaded").await;
        assert!(notes[0].contains("ConfigMap/cfg"), "{notes:?}");
    }
    let paused = kinds::get(&ns, &cronjob, "paused").await;
    assert_eq!(paused["spec"]["suspend"], json!(true), "{paused:#}");
    // This control plane runs no cronjob controller: any Job would be kube-reloader's.
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .expect("list Jobs");
    let jobs: Vec<_> = jobs.items.iter().map(|j| j.metadata.name.clone()).collect();
    assert!(jobs.is_empty(), "Jobs were created: {jobs:?}");
    assert_eq!(
        reloader.count(&["CronJob is not served"]),
        0,
        "{}",
        reloader.logs()
    );
}

/// Sets a field of the Widget's pod spec that no typed model of a pod knows, as a newer
/// Kubernetes release's field (or a custom kind's own) would be.
async fn set_unknown_template_field(ns: &TestNs, widget: &TestKind, name: &str, value: u32) {
    let patch =
        json!({"spec": {"workload": {"podTemplate": {"spec": {"aFieldFromTheFuture": value}}}}});
    widget
        .api(ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("merge patch");
}

/// The template digest is taken of the template as the server sent it: a field unknown to
/// k8s-openapi is a template change like any other. Alone, it is recorded as the new baseline;
/// with a config change in the same window, the workload's own rollout covers that change (no
/// second one from kube-reloader); the next config change rolls once.
#[tokio::test]
async fn a_template_field_no_typed_model_knows_counts_as_a_template_change() {
    const TEMPLATE_HASH: &str = "kube-reloader.io/template-hash";
    kinds::install_test_crds();
    let widget = TestKind::widget();
    let ns = TestNs::new("kinds-unknown").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    kinds::opted_in(&ns, &widget, "gizmo", workloads::env_from_configmap("cfg")).await;
    let history = History::watch(&ns, &widget, "gizmo").await;
    let reloader = Reloader::start(&ns, &[&widget.flag()]);
    kinds::baseline(&ns, &widget, "gizmo").await;
    reloader.wait_up_to_date("gizmo", 1).await;
    let recorded = kinds::annotation(&ns, &widget, "gizmo", TEMPLATE_HASH).await;
    assert!(recorded.is_some(), "no {TEMPLATE_HASH} recorded");

    set_unknown_template_field(&ns, &widget, "gizmo", 1).await;
    wait_for(
        "the changed template's digest to be recorded",
        Duration::from_secs(60),
        || async {
            let now = kinds::annotation(&ns, &widget, "gizmo", TEMPLATE_HASH).await;
            (now != recorded).then_some(())
        },
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(history.template_changes(), 1, "only the edit itself");

    set_unknown_template_field(&ns, &widget, "gizmo", 2).await;
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    kinds::wait_events(&ns, "Widget", "gizmo", "ReloadNotNeeded").await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        history.template_changes(),
        2,
        "kube-reloader rolled a config change the template change covered"
    );

    configmap(&ns, "cfg", &[("k", "3")], json!({})).await;
    history.wait_template_changes(3).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(history.template_changes(), 3, "the next config change");
    let templates = history.templates();
    assert_eq!(
        kinds::without_mark(&templates[3]),
        kinds::without_mark(&templates[2]),
        "the rollout changed more than {HASH}"
    );
}

/// The API server's warnings, which kube's client drops, reach the log: a kind served at a
/// version its CRD deprecates warns on every request (the list, each watch, each write), and the
/// warning is logged once.
#[tokio::test]
async fn the_api_servers_warnings_are_logged_once_each() {
    const WARNING: &str = "tests.kube-reloader.io/v1 Gauge is deprecated; use v2";
    let ns = TestNs::new("kinds-warn").await;
    let gauge = TestKind {
        group: format!(
            "warn{}.tests.kube-reloader.io",
            unique_suffix().replace('-', "")
        ),
        version: "v1".into(),
        kind: "Gauge".into(),
        plural: "gauges".into(),
        template_path: "spec.template".into(),
    };
    let mut crd = gauge.crd();
    crd["spec"]["versions"][0]["deprecated"] = json!(true);
    crd["spec"]["versions"][0]["deprecationWarning"] = json!(WARNING);
    let crd = crd.to_string();
    tokio::task::spawn_blocking({
        let gauge = gauge.clone();
        move || kinds::install_crd(&crd, &gauge)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    kinds::opted_in(&ns, &gauge, "g", workloads::env_from_configmap("cfg")).await;
    let history = History::watch(&ns, &gauge, "g").await;
    let reloader = Reloader::start(&ns, &[&gauge.flag()]);
    kinds::baseline(&ns, &gauge, "g").await;
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    history.wait_template_changes(1).await;
    tokio::time::sleep(SETTLE).await;
    let logged = reloader.count(&["the API server warns", WARNING]);
    assert_eq!(logged, 1, "{}", reloader.logs());
}
