//! The test environment is real: kube-controller-manager turns a pod-template change into a
//! rollout for each workload kind, and kube-rs server-side apply works against it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::support::workloads::{self, Kind};
use crate::support::{ControlPlane, TestNs, wait_for};

async fn apply_template_annotation(ns: &TestNs, kind: Kind, name: &str, value: &str) {
    let patch = json!({
        "apiVersion": "apps/v1",
        "kind": format!("{kind:?}"),
        "metadata": {"name": name},
        "spec": {"template": {"metadata": {"annotations": {"example.com/touched": value}}}},
    });
    let pp = PatchParams::apply("environment-test");
    let p = Patch::Apply(&patch);
    match kind {
        Kind::Deployment => drop(
            ns.api::<Deployment>()
                .patch(name, &pp, &p)
                .await
                .expect("apply"),
        ),
        Kind::StatefulSet => drop(
            ns.api::<StatefulSet>()
                .patch(name, &pp, &p)
                .await
                .expect("apply"),
        ),
        Kind::DaemonSet => drop(
            ns.api::<DaemonSet>()
                .patch(name, &pp, &p)
                .await
                .expect("apply"),
        ),
    }
}

async fn template_change_is_rolled_out(kind: Kind) {
    let ns = TestNs::new("env").await;
    let spec = workloads::pod_spec(json!({}), json!([]));
    workloads::create(&ns, kind, workloads::manifest(kind, "web", json!({}), spec)).await;
    let before = workloads::settled_revision(&ns, kind, "web").await;

    apply_template_annotation(&ns, kind, "web", "1").await;

    let after = wait_for(
        &format!("{kind:?} to roll out its new pod template"),
        Duration::from_secs(60),
        || async {
            let now = workloads::revision(&ns, kind, "web").await?;
            (now != before).then_some(now)
        },
    )
    .await;
    assert_ne!(before, after);
    if kind == Kind::DaemonSet {
        let generation = workloads::get(&ns, kind, "web").await["metadata"]["generation"].as_i64();
        assert!(generation >= Some(2), "DaemonSet generation {generation:?}");
    }
    assert_eq!(
        workloads::annotation(&ns, kind, "web", "example.com/touched", true)
            .await
            .as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn deployment_template_change_creates_a_second_replicaset() {
    template_change_is_rolled_out(Kind::Deployment).await;
}

#[tokio::test]
async fn statefulset_template_change_moves_update_revision() {
    template_change_is_rolled_out(Kind::StatefulSet).await;
}

#[tokio::test]
async fn daemonset_template_change_is_observed_as_a_new_generation() {
    template_change_is_rolled_out(Kind::DaemonSet).await;
}

#[test]
fn a_private_control_plane_stops_when_dropped() {
    let cp = crate::support::ControlPlane::start().expect("control plane");
    let dir = cp.dir().to_path_buf();
    let pids: Vec<u32> = ["etcd", "kube-apiserver", "kube-controller-manager"]
        .iter()
        .map(|c| {
            std::fs::read_to_string(dir.join(format!("{c}.pid")))
                .expect("pid file")
                .trim()
                .parse()
                .expect("pid")
        })
        .collect();
    drop(cp);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "process {pid} outlived its control plane"
        );
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

/// The test API server's release, `(major, minor)`, as it reports it.
async fn server_release(ns: &TestNs) -> (u32, u32) {
    let info = ns.client.apiserver_version().await.expect("/version");
    let number = |s: &str| s.trim_end_matches('+').parse().expect("a version number");
    (number(&info.major), number(&info.minor))
}

/// What a metadata-only write does to `metadata.generation`, per kind, on the releases the tests
/// run (1.34 to 1.37): a Deployment's moves (its strategy still counts annotation changes as
/// spec changes, as 1.20's did), a StatefulSet's, DaemonSet's and CronJob's does not. This is why
/// the tests count rollouts by ReplicaSets and ControllerRevisions, never by generation, and why
/// kube-controller-manager writes a Deployment's status after each baseline kube-reloader records.
#[tokio::test]
async fn an_annotation_only_write_moves_the_generation_of_deployments_only() {
    let ns = TestNs::new("env-generation").await;
    let release = server_release(&ns).await;
    assert!(
        ((1, 34)..=(1, 37)).contains(&release),
        "the tests know this behaviour for 1.34 to 1.37, not {release:?}: check it and extend this test"
    );
    let spec = workloads::pod_spec(json!({}), json!([]));
    let cronjob = crate::support::kinds::TestKind::cronjob();
    crate::support::kinds::create(
        &ns,
        &cronjob,
        crate::support::kinds::manifest(&cronjob, "nightly", json!({}), spec.clone()),
    )
    .await;
    let mut cases = vec![("CronJob", "cronjobs.batch/nightly", false)];
    for (kind, resource, moves) in [
        (Kind::Deployment, "deployment.apps/web", true),
        (Kind::StatefulSet, "statefulset.apps/web", false),
        (Kind::DaemonSet, "daemonset.apps/web", false),
    ] {
        workloads::create(
            &ns,
            kind,
            workloads::manifest(kind, "web", json!({}), spec.clone()),
        )
        .await;
        cases.push((kind_name(kind), resource, moves));
    }
    for (kind, resource, moves) in cases {
        let generation = |ns: &TestNs| {
            let out = crate::support::kubectl_command()
                .args([
                    "get",
                    resource,
                    "-n",
                    &ns.name,
                    "-o",
                    "jsonpath={.metadata.generation}",
                ])
                .env("KUBECONFIG", &ns.kubeconfig)
                .output()
                .expect("kubectl get");
            String::from_utf8_lossy(&out.stdout)
                .parse::<i64>()
                .expect("a generation")
        };
        let before = generation(&ns);
        crate::support::kubectl(&ns, &["annotate", resource, "example.com/note=1"], "").await;
        let after = generation(&ns);
        assert_eq!(
            after > before,
            moves,
            "{kind} on {release:?}: generation {before} -> {after} after an annotation-only write"
        );
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Deployment => "Deployment",
        Kind::StatefulSet => "StatefulSet",
        Kind::DaemonSet => "DaemonSet",
    }
}

/// Server-side apply of one annotation into a custom resource's pod template that its schema
/// leaves untyped (`x-kubernetes-preserve-unknown-fields`): on every release the tests run, the
/// rest of the template is kept (the untyped map is merged key by key). On 1.20 the map was
/// replaced whole, which is why kube-reloader writes custom kinds with a JSON merge patch; the
/// merge patch stays (it is right on every release), and this test records that apply is no
/// longer a hazard there.
#[tokio::test]
async fn an_apply_into_an_untyped_template_keeps_the_rest_of_it() {
    crate::support::kinds::install_test_crds();
    let ns = TestNs::new("env-ssa").await;
    let widget = crate::support::kinds::TestKind::widget();
    let spec = workloads::env_from_configmap("cfg");
    crate::support::kinds::create(
        &ns,
        &widget,
        crate::support::kinds::manifest(&widget, "gizmo", json!({}), spec),
    )
    .await;
    let before = crate::support::kinds::get(&ns, &widget, "gizmo").await;
    let patch = json!({
        "apiVersion": widget.api_version(),
        "kind": widget.kind,
        "metadata": {"name": "gizmo"},
        "spec": {"workload": {"podTemplate": {"metadata": {"annotations": {"example.com/mark": "1"}}}}},
    });
    widget
        .api(&ns)
        .patch(
            "gizmo",
            &PatchParams::apply("environment-test"),
            &Patch::Apply(&patch),
        )
        .await
        .expect("server-side apply");
    let after = crate::support::kinds::get(&ns, &widget, "gizmo").await;
    let (was, now) = (widget.template(&before), widget.template(&after));
    assert_eq!(
        now["metadata"]["annotations"]["example.com/mark"],
        json!("1")
    );
    assert_eq!(now["spec"], was["spec"], "the apply dropped the pod spec");
    assert_eq!(
        now["metadata"]["labels"], was["metadata"]["labels"],
        "the apply dropped the labels"
    );
}

/// Streaming lists (`sendInitialEvents`, the WatchList feature) and watch bookmarks: every release
/// the tests run answers a watch that asks for its initial events with them and a closing
/// bookmark annotated `k8s.io/initial-events-end`.
#[tokio::test]
async fn the_server_streams_initial_lists_with_a_closing_bookmark() {
    let ns = TestNs::new("env-watchlist").await;
    crate::support::objects::configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    let path = format!(
        "/api/v1/namespaces/{}/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2",
        ns.name
    );
    let out = crate::support::kubectl_command()
        .args(["get", "--raw", &path])
        .env("KUBECONFIG", &ns.kubeconfig)
        .output()
        .expect("kubectl get --raw");
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a watch event"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "cfg"),
        "{text}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "BOOKMARK"
            && e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"),
        "{text}"
    );
}

/// `--initial-list streaming`: the controller reads what exists through streaming lists, records
/// its baselines from them (no rollout at first sight), rolls a change once, and a restart that
/// streams again writes nothing.
#[tokio::test]
async fn the_controller_reads_through_streaming_lists() {
    let ns = TestNs::new("env-streaming").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let args = ["--initial-list", "streaming"];
    let mut reloader = crate::support::reloader::Reloader::start(&ns, &args);
    let recorded = workloads::baseline(&ns, Kind::Deployment, "web").await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 0);

    crate::support::objects::configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    reloader.wait_up_to_date("web", 1).await;
    reloader.terminate();

    let restarted = crate::support::reloader::Reloader::start(&ns, &args);
    restarted.wait_up_to_date("web", 1).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
    assert_ne!(
        workloads::baseline(&ns, Kind::Deployment, "web").await,
        recorded,
        "the change was recorded"
    );
}

/// `--initial-list auto` (the default) on an API server whose WatchList feature is off (as
/// Kubernetes 1.33's is by default, or turned off by an admin): the probe's refusal is logged,
/// the watches read through paged lists, and the controller works as usual; on one that serves
/// them, it streams.
#[tokio::test]
async fn the_default_falls_back_to_paged_lists_where_streaming_is_refused() {
    let cp = ControlPlane::start_with_apiserver_flags("--feature-gates=WatchList=false")
        .expect("a control plane with WatchList off");
    let ns = TestNs::on(&cp, "env-no-watchlist").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let reloader = crate::support::reloader::Reloader::start(&ns, &[]);
    reloader
        .wait_count(&["refuses streaming lists", "paged lists"], 1)
        .await;
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    crate::support::objects::configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    assert_eq!(
        reloader.count(&["serves streaming lists"]),
        0,
        "{}",
        reloader.logs()
    );
    drop(reloader);

    let ns = TestNs::new("env-watchlist").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let reloader = crate::support::reloader::Reloader::start(&ns, &[]);
    reloader.wait_count(&["serves streaming lists"], 1).await;
    workloads::baseline(&ns, Kind::Deployment, "web").await;
}
