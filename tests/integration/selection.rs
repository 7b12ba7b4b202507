//! What kube-reloader looks at and how a Reloader user's settings carry over:
//! `--namespace-selector`, `--resource-label-selector`, `--auto-reload-all`,
//! `--resources-to-ignore`, Reloader's spellings of the flags both have, a workload's own debounce
//! window (Reloader's `pause-period`, `kube-reloader.io/debounce`), and what the log says when
//! the API server goes away.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::objects::{self, configmap, secret};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{ControlPlane, TestNs, wait_for};

const HASH: &str = "kube-reloader.io/config-hash";
const AUTO: &str = "kube-reloader.io/auto";
const RELOADER_AUTO: &str = "reloader.stakater.com/auto";
const PAUSE_PERIOD: &str = "deployment.reloader.stakater.com/pause-period";
const TIMEOUT: Duration = Duration::from_secs(60);
/// Long enough after a change for a rollout under `--debounce=500ms` and
/// `--min-rollout-interval=1s` to have happened, if one were coming.
const SETTLE: Duration = Duration::from_millis(2500);

/// Merges these labels into the namespace's (a `null` value removes a label).
async fn label_namespace(ns: &TestNs, labels: Value) {
    let patch = json!({"metadata": {"labels": labels}});
    Api::<Namespace>::all(ns.client.clone())
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label the namespace");
}

/// Creates or updates a ConfigMap to exactly this data and these labels.
async fn labelled_configmap(ns: &TestNs, name: &str, data: &[(&str, &str)], labels: Value) {
    objects::configmap_with(ns, name, data, json!({"labels": labels})).await;
}

/// Asserts that kube-reloader never touched Deployment `name`: none of its annotations, no field
/// of its manager, no rollout.
async fn assert_untouched(ns: &TestNs, name: &str) {
    let d = workloads::get(ns, Kind::Deployment, name).await;
    for meta in [&d["metadata"], &d["spec"]["template"]["metadata"]] {
        for key in workloads::WRITTEN {
            assert_eq!(
                meta["annotations"][key],
                Value::Null,
                "{name}: {key} written"
            );
        }
    }
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        !managers.contains(&"kube-reloader"),
        "{name}: written by kube-reloader ({managers:?})"
    );
    assert_eq!(
        workloads::rollouts(ns, Kind::Deployment, name).await,
        0,
        "{name}"
    );
}

/// The type and note of every Event with `reason` about object `name`.
async fn typed_events(ns: &TestNs, name: &str, reason: &str) -> Vec<(String, String)> {
    let list = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("list Events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Two namespaces, A labelled `team=x` and B not, each with ConfigMap `cfg` and an opted-in
/// Deployment `web`; kube-reloader watching both with `--namespace-selector=SELECTOR` (its own
/// namespace A). Returns once A's workload has its baseline, having checked that B's has none.
async fn selected_namespaces(prefix: &str, selector: &str) -> (TestNs, TestNs, Reloader) {
    let a = TestNs::new(&format!("{prefix}-a")).await;
    let b = TestNs::new(&format!("{prefix}-b")).await;
    label_namespace(&a, json!({"team": "x"})).await;
    for ns in [&a, &b] {
        workloads::opted_in_with_configmap(ns, "web").await;
    }
    let args = vec![
        format!("--namespace={},{}", a.name, b.name),
        format!("--controller-namespace={}", a.name),
        format!("--namespace-selector={selector}"),
        "--debounce=500ms".to_string(),
        "--min-rollout-interval=1s".to_string(),
    ];
    let reloader = Reloader::start_raw(&a.kubeconfig, &args, prefix);
    reloader
        .wait_count(&["namespaces matching --namespace-selector listed"], 1)
        .await;
    let listed = reloader
        .logs()
        .lines()
        .find(|l| l.contains("namespaces matching --namespace-selector listed"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        listed.contains(&a.name) && !listed.contains(&b.name),
        "{listed}"
    );
    workloads::baseline(&a, Kind::Deployment, "web").await;
    reloader.wait_count(&["initial lists complete"], 1).await;
    // B's workload was listed with A's, in the same first pass; give it a moment beyond.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_untouched(&b, "web").await;
    (a, b, reloader)
}

/// `--namespace-selector`: only labelled namespaces are served, and a namespace that gains or
/// loses the label is picked up or dropped while the controller runs.
#[tokio::test]
async fn namespace_selector_follows_namespace_labels_while_running() {
    let (a, b, reloader) = selected_namespaces("nssel", "team=x").await;

    // B gains the label: its workload gets a baseline, and a change there then rolls once.
    label_namespace(&b, json!({"team": "x"})).await;
    let labelled = Instant::now();
    wait_for(
        "a baseline in B once it is labelled",
        Duration::from_secs(20),
        || async { workloads::annotation(&b, Kind::Deployment, "web", HASH, false).await },
    )
    .await;
    eprintln!("B picked up {:?} after it was labelled", labelled.elapsed());
    assert_eq!(workloads::rollouts(&b, Kind::Deployment, "web").await, 0);
    configmap(&b, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&b, Kind::Deployment, "web", 1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(workloads::rollouts(&b, Kind::Deployment, "web").await, 1);

    // A loses the label: a change there rolls nothing.
    label_namespace(&a, json!({"team": null})).await;
    reloader
        .wait_count(
            &[
                "namespaces matching --namespace-selector changed",
                "removed=",
                &a.name,
            ],
            1,
        )
        .await;
    configmap(&a, "cfg", &[("k", "2")], json!({})).await;
    tokio::time::sleep(SETTLE + Duration::from_secs(1)).await;
    assert_eq!(workloads::rollouts(&a, Kind::Deployment, "web").await, 0);
    assert_eq!(
        workloads::annotation(&a, Kind::Deployment, "web", HASH, true).await,
        None
    );
}

/// Reloader's `key:value` form of the selector means `key=value`.
#[tokio::test]
async fn namespace_selector_takes_reloaders_key_colon_value_form() {
    let (a, _b, _reloader) = selected_namespaces("nscolon", "team:x").await;
    configmap(&a, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&a, Kind::Deployment, "web", 1).await;
}

/// `--resource-label-selector`: only matching ConfigMaps count; one that stops matching is
/// treated as deleted (the workload holds), one that starts matching as created.
#[tokio::test]
async fn resource_label_selector_counts_only_matching_configs() {
    let ns = TestNs::new("rlsel").await;
    let on = || json!({"reload": "true"});
    labelled_configmap(&ns, "a", &[("v", "1")], on()).await;
    labelled_configmap(&ns, "b", &[("v", "1")], json!({})).await;
    labelled_configmap(&ns, "canary", &[("n", "0")], on()).await;
    let both = workloads::pod_spec(
        json!({"envFrom": [{"configMapRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}]}),
        json!([]),
    );
    workloads::deployment(&ns, "web", json!({AUTO: "true"}), both).await;
    workloads::deployment(
        &ns,
        "canary",
        json!({AUTO: "true"}),
        workloads::env_from_configmap("canary"),
    )
    .await;
    let reloader = Reloader::start(&ns, &["--resource-label-selector=reload=true"]);
    let baseline = workloads::baseline(&ns, Kind::Deployment, "web").await;
    workloads::baseline(&ns, Kind::Deployment, "canary").await;

    // ConfigMap events arrive in order on one watch: once a later change of the canary has
    // rolled, the change before it has been seen (and its debounce window has ended too).
    let mut canary = 0u64;
    let mut sync = || {
        canary += 1;
        let n = canary;
        let ns = &ns;
        async move {
            labelled_configmap(
                ns,
                "canary",
                &[("n", &n.to_string())],
                json!({"reload": "true"}),
            )
            .await;
            workloads::wait_rollouts(ns, Kind::Deployment, "canary", n).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    };
    let web = || workloads::rollouts(&ns, Kind::Deployment, "web");

    // b does not match: its change rolls nothing.
    labelled_configmap(&ns, "b", &[("v", "2")], json!({})).await;
    sync().await;
    assert_eq!(
        web().await,
        0,
        "a change of the unlabelled ConfigMap rolled"
    );

    // a matches: its change rolls once.
    labelled_configmap(&ns, "a", &[("v", "2")], on()).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    sync().await;
    assert_eq!(web().await, 1);
    let after_change = workloads::baseline(&ns, Kind::Deployment, "web").await;
    assert_ne!(after_change, baseline);

    // a loses the label: as if deleted, the workload holds (no rollout, baseline kept).
    labelled_configmap(&ns, "a", &[("v", "2")], json!({})).await;
    reloader
        .wait_count(&["tracked objects were deleted", "name=web"], 1)
        .await;
    sync().await;
    assert_eq!(web().await, 1, "losing the label rolled");
    assert_eq!(
        workloads::baseline(&ns, Kind::Deployment, "web").await,
        after_change
    );

    // a gains the label again with new content: as if created with it, one rollout.
    labelled_configmap(&ns, "a", &[("v", "3")], on()).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 2).await;
    sync().await;
    assert_eq!(web().await, 2);

    // Loses it and gains it again with the same content: nothing.
    labelled_configmap(&ns, "a", &[("v", "3")], json!({})).await;
    reloader
        .wait_count(&["tracked objects were deleted", "name=web"], 2)
        .await;
    labelled_configmap(&ns, "a", &[("v", "3")], on()).await;
    sync().await;
    assert_eq!(web().await, 2, "the same content, labelled again, rolled");
}

/// `--auto-reload-all`: a workload without annotations counts as `auto: "true"`; one that sets
/// an auto annotation itself to "false" (Reloader's or ours) is left alone, and so is one that
/// references nothing.
#[tokio::test]
async fn auto_reload_all_covers_workloads_that_say_nothing() {
    let ns = TestNs::new("autoall").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    let uses_cfg = workloads::env_from_configmap("cfg");
    workloads::deployment(&ns, "plain", json!({}), uses_cfg.clone()).await;
    workloads::deployment(
        &ns,
        "reloader-off",
        json!({RELOADER_AUTO: "false"}),
        uses_cfg.clone(),
    )
    .await;
    workloads::deployment(&ns, "ours-off", json!({AUTO: "false"}), uses_cfg).await;
    workloads::deployment(
        &ns,
        "no-refs",
        json!({}),
        workloads::pod_spec(json!({}), json!([])),
    )
    .await;
    let reloader = Reloader::start(&ns, &["--auto-reload-all"]);
    reloader
        .wait_count(&["starting", "auto_reload_all=true"], 1)
        .await;
    workloads::baseline(&ns, Kind::Deployment, "plain").await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "plain").await, 0);

    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "plain", 1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "plain").await, 1);
    for name in ["reloader-off", "ours-off", "no-refs"] {
        assert_untouched(&ns, name).await;
    }
}

/// `--resources-to-ignore=secrets`: Secrets are not watched at all, so a Secret change rolls
/// nothing while a ConfigMap change still rolls; ignoring both kinds is refused.
#[tokio::test]
async fn resources_to_ignore_stops_the_secret_watch() {
    let ns = TestNs::new("ignsec").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    secret(&ns, "creds", &[("password", "p")], json!({})).await;
    let spec = workloads::pod_spec(
        json!({"envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "creds"}}]}),
        json!([]),
    );
    workloads::deployment(&ns, "web", json!({AUTO: "true"}), spec).await;
    let reloader = Reloader::start(&ns, &["--resources-to-ignore=secrets"]);
    reloader.wait_count(&["starting"], 1).await;
    let starting = reloader
        .logs()
        .lines()
        .find(|l| l.contains("starting"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(starting.contains(r#"watched=["ConfigMap"]"#), "{starting}");
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    let tracked = workloads::annotation(
        &ns,
        Kind::Deployment,
        "web",
        "kube-reloader.io/tracked",
        false,
    )
    .await
    .unwrap_or_default();
    assert!(
        tracked.contains("ConfigMap/cfg") && !tracked.contains("Secret"),
        "{tracked}"
    );

    objects::update_secret(&ns, "creds", &[("password", "q")]).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 0);

    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
    // What was rolled for is the ConfigMap alone.
    assert_eq!(
        workloads::annotation(&ns, Kind::Deployment, "web", HASH, true).await,
        Some(workloads::expected_hash(&[("cfg", &[("k", "2")])]))
    );

    let mut both = Reloader::start(&ns, &["--resources-to-ignore=configmaps,secrets"]);
    let status = both.wait_exit(Duration::from_secs(30));
    let logs = both.logs();
    let status = status.unwrap_or_else(|| panic!("still running after 30 s:\n{logs}"));
    assert!(!status.success(), "exited with {status}:\n{logs}");
    assert!(
        logs.contains("--resources-to-ignore names both configmaps and secrets"),
        "{logs}"
    );
}

/// A Reloader Deployment's arguments, kept as they are during a migration (Reloader's spellings
/// of `--namespace`, `--ignore-namespace`, `--leader-elect`, an empty `--log-format`), start the
/// controller and roll a Reloader-annotated workload as usual.
#[tokio::test]
async fn a_reloader_deployments_arguments_work_unchanged() {
    let ns = TestNs::new("rlargs").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    workloads::deployment(
        &ns,
        "web",
        json!({RELOADER_AUTO: "true"}),
        workloads::env_from_configmap("cfg"),
    )
    .await;
    // Not opted in, and --auto-reload-all=false: left alone.
    workloads::deployment(
        &ns,
        "plain",
        json!({}),
        workloads::env_from_configmap("cfg"),
    )
    .await;
    let args = vec![
        format!("--namespaces={}", ns.name),
        "--namespaces-to-ignore=kube-system".to_string(),
        "--enable-ha=true".to_string(),
        "--log-format=".to_string(),
        "--auto-reload-all=false".to_string(),
        // What the test needs besides.
        format!("--controller-namespace={}", ns.name),
        "--debounce=500ms".to_string(),
        "--min-rollout-interval=1s".to_string(),
    ];
    let reloader = Reloader::start_raw_as(&ns.kubeconfig, &args, &ns.name, "reloader-5d8f7");
    reloader.wait_count(&["acquired the Lease"], 1).await;
    let holder = ns
        .api::<Lease>()
        .get("kube-reloader")
        .await
        .expect("the Lease")
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(holder.starts_with("reloader-5d8f7-"), "{holder}");
    let logs = reloader.logs();
    let starting = logs
        .lines()
        .find(|l| l.contains("starting"))
        .unwrap_or_default();
    let namespaces = format!(r#"namespaces=["{}"]"#, ns.name);
    for part in [
        namespaces.as_str(),
        r#"ignored=["kube-system"]"#,
        "auto_reload_all=false",
    ] {
        assert!(starting.contains(part), "{part} in {starting}");
    }
    // An empty --log-format is text, as Reloader takes it.
    assert!(
        logs.lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| !l.trim_start().starts_with('{')),
        "{logs}"
    );

    workloads::baseline(&ns, Kind::Deployment, "web").await;
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
    let notes = objects::events(&ns, "web", "Reloaded").await;
    assert!(
        notes.iter().any(|n| n.contains("ConfigMap/cfg")),
        "{notes:?}"
    );
    assert_untouched(&ns, "plain").await;
}

/// A workload's own debounce window, from Reloader's `pause-period` or our
/// `kube-reloader.io/debounce`: two changes 2 s apart roll out once, at the end of its 6 s
/// window, and the Deployment is never paused. An invalid value is reported once and
/// `--debounce` used.
#[tokio::test]
async fn a_workloads_own_debounce_window_gathers_changes_without_pausing() {
    let ns = TestNs::new("pause").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    configmap(&ns, "cfg-bad", &[("k", "1")], json!({})).await;
    let own_window = [
        (
            "pause-period",
            json!({RELOADER_AUTO: "true", PAUSE_PERIOD: "6s"}),
        ),
        (
            "debounce",
            json!({AUTO: "true", "kube-reloader.io/debounce": "6s"}),
        ),
    ];
    for (name, annotations) in &own_window {
        workloads::deployment(
            &ns,
            name,
            annotations.clone(),
            workloads::env_from_configmap("cfg"),
        )
        .await;
    }
    workloads::deployment(
        &ns,
        "invalid",
        json!({AUTO: "true", PAUSE_PERIOD: "soon"}),
        workloads::env_from_configmap("cfg-bad"),
    )
    .await;
    let _reloader = Reloader::start(&ns, &["--debounce=500ms", "--min-rollout-interval=1s"]);
    for name in ["pause-period", "debounce", "invalid"] {
        workloads::baseline(&ns, Kind::Deployment, name).await;
    }

    let first = Instant::now();
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    configmap(&ns, "cfg-bad", &[("k", "2")], json!({})).await;
    let mut second_sent = false;
    let mut rolled: [Option<Duration>; 3] = [None; 3];
    let names = ["pause-period", "debounce", "invalid"];
    // Watch every 200 ms, until 2 s past the last rollout: when each rolled, and that none is
    // ever paused.
    let mut last_rollout: Option<Instant> = None;
    while last_rollout.is_none_or(|t| t.elapsed() < Duration::from_secs(2)) {
        let now = first.elapsed();
        assert!(now < Duration::from_secs(30), "rolled so far: {rolled:?}");
        if !second_sent && now >= Duration::from_secs(2) {
            configmap(&ns, "cfg", &[("k", "3")], json!({})).await;
            second_sent = true;
        }
        for (i, name) in names.iter().enumerate() {
            let d = workloads::get(&ns, Kind::Deployment, name).await;
            assert_ne!(d["spec"]["paused"], json!(true), "{name} was paused");
            let template = &d["spec"]["template"]["metadata"]["annotations"][HASH];
            if rolled[i].is_none() && !template.is_null() {
                rolled[i] = Some(now);
            }
        }
        if last_rollout.is_none() && rolled.iter().all(Option::is_some) {
            last_rollout = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("rollouts after the first change: {names:?} {rolled:?}");
    let want = workloads::expected_hash(&[("cfg", &[("k", "3")])]);
    for (i, (name, _)) in own_window.iter().enumerate() {
        let at = rolled[i].expect("rolled");
        assert!(
            at >= Duration::from_millis(5900) && at <= Duration::from_secs(12),
            "{name} rolled {at:?} after the first change, expected at the end of its 6 s window"
        );
        assert_eq!(
            workloads::rollouts(&ns, Kind::Deployment, name).await,
            1,
            "{name}"
        );
        assert_eq!(
            workloads::annotation(&ns, Kind::Deployment, name, HASH, true).await,
            Some(want.clone()),
            "{name}: not both changes rolled out"
        );
    }
    // The invalid one rolled under --debounce (500 ms), not a window of its own.
    let at = rolled[2].expect("rolled");
    assert!(at < Duration::from_secs(5), "invalid rolled after {at:?}");
    assert_eq!(
        workloads::rollouts(&ns, Kind::Deployment, "invalid").await,
        1
    );
    let events = typed_events(&ns, "invalid", "InvalidAnnotation").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "Warning", "{events:?}");
    assert!(
        events[0].1.contains(PAUSE_PERIOD) && events[0].1.contains("soon"),
        "{events:?}"
    );
}

/// With the API server gone, the watch-failure lines say it could not be reached, and never
/// send the user to RBAC.
#[tokio::test]
async fn an_unreachable_api_server_is_named_as_such_not_blamed_on_rbac() {
    let cp = ControlPlane::start().expect("control plane");
    let ns = TestNs::on(&cp, "faults").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let reloader = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    let addr = reloader.http_addr().await;
    wait_for("/readyz to answer 200", TIMEOUT, || async {
        (crate::support::http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;

    let before = reloader.logs().len();
    let killed = Instant::now();
    cp.kill_apiserver();
    let unreachable = "failed: the API server could not be reached";
    let since_kill = || {
        reloader
            .logs()
            .get(before..)
            .unwrap_or_default()
            .to_string()
    };
    wait_for(
        "watch-failure lines for ConfigMaps, Secrets and Deployments",
        TIMEOUT,
        || async {
            let log = since_kill();
            ["ConfigMaps", "Secrets", "Deployments"]
                .iter()
                .all(|what| log.contains(&format!("watching {what} {unreachable}")))
                .then_some(())
        },
    )
    .await;
    eprintln!("watch failures named {:?} after the kill", killed.elapsed());
    // Let the retries go on for a while.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = since_kill();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("watching ") && l.contains(" failed"))
        .collect();
    let blaming: Vec<&&str> = failures.iter().filter(|l| l.contains("RBAC")).collect();
    assert!(blaming.is_empty(), "{blaming:#?}");
    assert!(
        failures
            .iter()
            .all(|l| l.contains(r#"cause="unreachable""#)),
        "{failures:#?}"
    );
    // Nothing else written since the kill blames RBAC either.
    assert!(!log.contains("RBAC"), "{log}");
    for what in ["ConfigMaps", "Secrets", "Deployments"] {
        let n = failures
            .iter()
            .filter(|l| l.contains(&format!("watching {what} failed")))
            .count();
        eprintln!("{n} failure lines for {what} in {:?}", killed.elapsed());
        // "Retrying with backoff": a few attempts, not a tight loop.
        assert!((1..=10).contains(&n), "{n} failures of the {what} watch");
    }
}
