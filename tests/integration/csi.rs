//! The Secrets Store CSI driver (`--enable-csi-integration`, issue 25): the driver's CRDs on the
//! control plane, the status objects written as the driver writes them, one per pod of a
//! Deployment's ReplicaSet, and what a user checks: ReplicaSets (rollouts), the baseline, Events.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::csi::{self, TestPod};
use crate::support::objects::{self, configmap};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, from_json, http_get, wait_for};

const TRACKED: &str = "kube-reloader.io/tracked";
const CLASS: &str = "vault";
const TIMEOUT: Duration = Duration::from_secs(60);

/// What the driver reports for a pod at `db` version: two objects of the class.
fn versions(db: &str) -> [(&'static str, String); 2] {
    [
        ("secret/data/db#password", db.to_string()),
        ("secret/data/api#key", "7".to_string()),
    ]
}

/// `kube-reloader FLAGS explain deploy/web -n NS -o json`, as JSON.
fn explain(ns: &TestNs, flags: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-reloader"))
        .arg(format!("--controller-namespace={}", ns.name))
        .args(flags)
        .args(["explain", "deploy/web", "-n", &ns.name, "-o", "json"])
        .env("KUBECONFIG", &ns.kubeconfig)
        .output()
        .expect("run explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn report(ns: &TestNs, pod: &TestPod, db: &str) {
    let v = versions(db);
    let objects: Vec<(&str, &str)> = v.iter().map(|(i, v)| (*i, v.as_str())).collect();
    csi::report(ns, pod, CLASS, &objects).await;
}

async fn create_deployment(ns: &TestNs, name: &str, annotations: Value, replicas: i32) {
    let d = csi::deployment(name, annotations, CLASS, replicas);
    ns.api::<k8s_openapi::api::apps::v1::Deployment>()
        .create(&Default::default(), &from_json(d))
        .await
        .expect("create Deployment");
}

/// The whole life of a rotation, with `--resource-label-selector` on (the driver's objects carry
/// no such label, and must be seen all the same): first sight rolls nothing; the same versions
/// written again roll nothing; a rotation reported by three pods in turn rolls once; the pods of
/// the new ReplicaSet reporting the new versions, and the old pods' status objects going away,
/// roll nothing more; and a restart writes nothing.
#[tokio::test]
async fn a_rotation_reported_by_three_pods_rolls_the_deployment_once() {
    csi::install_shared_crds();
    let ns = TestNs::new("csi").await;
    csi::secret_provider_class(&ns, CLASS, json!({})).await;
    let auto = json!({"secretproviderclass.reloader.stakater.com/auto": "true"});
    create_deployment(&ns, "web", auto, 3).await;
    let (pods, first_sets) = csi::pods_of(&ns, "web", 3, &[]).await;
    for pod in &pods {
        report(&ns, pod, "1").await;
    }
    let args = [
        "--enable-csi-integration",
        "--resource-label-selector=team=payments",
    ];
    let mut reloader = Reloader::start(&ns, &args);

    // First sight: a baseline naming the versions the pods report, nothing rolled.
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    let tracked = workloads::annotation(&ns, Kind::Deployment, "web", TRACKED, false).await;
    let tracked = tracked.unwrap_or_default();
    assert_eq!(
        tracked.matches("SecretProviderClass/vault:").count(),
        2,
        "the two objects the pods report, despite the label selector: {tracked}"
    );
    reloader.wait_up_to_date("web", 1).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 0);

    // The same versions written again (the driver's next rotation poll finding nothing new),
    // objects in another order: nothing to roll (the rotation below makes it the only one).
    for pod in &pods {
        let v = versions("1");
        csi::report(&ns, pod, CLASS, &[(v[1].0, &v[1].1), (v[0].0, &v[0].1)]).await;
    }

    // The rotation, seen by one pod after the other, as the driver's per-node polls see it.
    for pod in &pods {
        report(&ns, pod, "2").await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    let notes = wait_for("a Reloaded Event", TIMEOUT, || async {
        let n = objects::events(&ns, "web", "Reloaded").await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert!(
        notes
            .iter()
            .all(|n| n.contains("SecretProviderClass/vault")),
        "{notes:?}"
    );

    // The new ReplicaSet's pods mount the new versions; the old pods go, and their status
    // objects with them.
    let (new_pods, _) = csi::pods_of(&ns, "web", 1, &first_sets).await;
    for pod in &new_pods {
        report(&ns, pod, "2").await;
    }
    for pod in &pods {
        csi::forget(&ns, pod, CLASS).await;
    }
    reloader.wait_count(&["came or went", "name=web"], 1).await;
    reloader.wait_up_to_date("web", 2).await;
    // What the controller holds: the new pods' status objects, the class.
    let addr = reloader.http_addr().await;
    let want = format!(
        "kube_reloader_watched_objects{{kind=\"SecretProviderClassPodStatus\"}} {}",
        new_pods.len()
    );
    wait_for(&want, TIMEOUT, || async {
        let (_, text) = http_get(addr, "/metrics").await;
        let class = "kube_reloader_watched_objects{kind=\"SecretProviderClass\"} 1";
        (text.lines().any(|l| l == want) && text.lines().any(|l| l == class)).then_some(())
    })
    .await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
    assert_eq!(reloader.count(&["rolled out", "name=web"]), 1);

    // explain reads what the pods report as the controller does: up to date, the class tracked;
    // without the flag it says what it does not read.
    let e = explain(&ns, &["--enable-csi-integration"]);
    assert_eq!(e["state"], "up-to-date", "{e:#}");
    let vault = e["objects"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == CLASS))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&vault["kind"], &vault["exists"], &vault["tracked"]),
        (&json!("SecretProviderClass"), &json!(true), &json!(true)),
        "{e:#}"
    );
    let without = explain(&ns, &[]);
    assert_eq!(without["state"], "not-opted-in", "{without:#}");

    // A restart: reconciled, nothing written.
    reloader.kill();
    let written = |v: &Value| {
        (
            v["metadata"]["generation"].clone(),
            v["metadata"]["annotations"].clone(),
        )
    };
    let before = written(&workloads::get(&ns, Kind::Deployment, "web").await);
    let second = Reloader::start(&ns, &args);
    second.wait_up_to_date("web", 1).await;
    let after = written(&workloads::get(&ns, Kind::Deployment, "web").await);
    assert_eq!(after, before, "the restart wrote to the workload");
    assert_eq!(
        second.count(&["recorded"]) + second.count(&["rolled out"]),
        0,
        "{}",
        second.logs()
    );
}

/// Without `--enable-csi-integration`, nothing of the driver is read: its status objects roll
/// nothing (a ConfigMap change after them rolls once, so they did not), and the controller
/// says it watches ConfigMaps and Secrets only.
#[tokio::test]
async fn without_the_flag_the_drivers_objects_are_not_watched() {
    csi::install_shared_crds();
    let ns = TestNs::new("csi-off").await;
    csi::secret_provider_class(&ns, CLASS, json!({})).await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    let mut d = csi::deployment(
        "web",
        json!({"reloader.stakater.com/auto": "true"}),
        CLASS,
        1,
    );
    d["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        json!([{"configMapRef": {"name": "cfg"}}]);
    ns.api::<k8s_openapi::api::apps::v1::Deployment>()
        .create(&Default::default(), &from_json(d))
        .await
        .expect("create Deployment");
    let (pods, _) = csi::pods_of(&ns, "web", 1, &[]).await;
    report(&ns, &pods[0], "1").await;
    let reloader = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    report(&ns, &pods[0], "2").await;
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    reloader.wait_up_to_date("web", 1).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
    let notes = objects::events(&ns, "web", "Reloaded").await;
    assert!(
        notes.iter().all(|n| !n.contains("SecretProviderClass")),
        "{notes:?}"
    );
    let starting = reloader.count(&["starting", "csi=false"]);
    assert_eq!(starting, 1, "{}", reloader.logs());
    assert_eq!(reloader.count(&["SecretProviderClassPodStatus"]), 0);
    assert_eq!(reloader.count(&["kube_reloader::csi"]), 0);
}

/// A status object whose Pod belongs to another workload, or to none that is rolled, never
/// reaches this one; and a class the workload excludes is not tracked at all.
#[tokio::test]
async fn a_workload_reads_only_its_own_pods_and_classes() {
    csi::install_shared_crds();
    let ns = TestNs::new("csi-own").await;
    csi::secret_provider_class(&ns, CLASS, json!({})).await;
    let auto = json!({"kube-reloader.io/auto": "true"});
    create_deployment(&ns, "web", auto.clone(), 1).await;
    create_deployment(&ns, "api", auto, 1).await;
    let excluding = json!({
        "reloader.stakater.com/auto": "true",
        "secretproviderclasses.exclude.reloader.stakater.com/reload": CLASS,
    });
    create_deployment(&ns, "quiet", excluding, 1).await;
    let (web, _) = csi::pods_of(&ns, "web", 1, &[]).await;
    let (api, _) = csi::pods_of(&ns, "api", 1, &[]).await;
    let (quiet, _) = csi::pods_of(&ns, "quiet", 1, &[]).await;
    for pod in [&web[0], &api[0], &quiet[0]] {
        report(&ns, pod, "1").await;
    }
    let reloader = Reloader::start(&ns, &["--enable-csi-integration"]);
    for name in ["web", "api", "quiet"] {
        workloads::baseline(&ns, Kind::Deployment, name).await;
    }
    // api's pod rotates: api rolls, web and quiet do not.
    report(&ns, &api[0], "2").await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "api", 1).await;
    report(&ns, &quiet[0], "2").await;
    // web's rotation comes last: when it has rolled, the others' changes had their turn.
    report(&ns, &web[0], "2").await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    reloader.wait_up_to_date("web", 1).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "api").await, 1);
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "quiet").await, 0);
    let tracked = workloads::annotation(&ns, Kind::Deployment, "quiet", TRACKED, false).await;
    assert!(
        !tracked.unwrap_or_default().contains("SecretProviderClass"),
        "an excluded class is not tracked"
    );
}
