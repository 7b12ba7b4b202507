//! What a GitOps tool's re-apply of the original manifest does to kube-reloader's annotation,
//! as docs/gitops.md states it.

use serde_json::{Value, json};

use crate::support::objects::configmap;
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, kubectl, try_kubectl, wait_for};

const HASH: &str = "kube-reloader.io/config-hash";

fn manifest(name: &str) -> String {
    let m = workloads::manifest(
        Kind::Deployment,
        name,
        json!({"kube-reloader.io/auto": "true"}),
        workloads::env_from_configmap("cfg"),
    );
    serde_json::to_string(&m).expect("json")
}

async fn template_hash(ns: &TestNs, name: &str) -> Option<String> {
    workloads::annotation(ns, Kind::Deployment, name, HASH, true).await
}

/// Creates the workload from the Git manifest with `first`, lets kube-reloader roll it once,
/// writes the same manifest again with `again`, and returns whether the pod-template annotation
/// survived.
async fn reapply_keeps_annotation(ns: &TestNs, name: &str, first: &[&str], again: &[&str]) -> bool {
    kubectl(ns, first, &manifest(name)).await;
    workloads::baseline(ns, Kind::Deployment, name).await;
    configmap(ns, "cfg", &[("k", name)], json!({})).await;
    wait_for(
        "the rollout",
        std::time::Duration::from_secs(60),
        || async { template_hash(ns, name).await },
    )
    .await;
    write_again(ns, again, &manifest(name)).await;
    template_hash(ns, name).await.is_some()
}

/// Writes the manifest again, as a GitOps tool syncing it would: a replace carries the
/// resourceVersion kubectl just read, so a status update by kube-controller-manager in between
/// (the rollout is still settling) makes it a Conflict, which the tool retries.
async fn write_again(ns: &TestNs, args: &[&str], manifest: &str) {
    for _ in 0..10 {
        match try_kubectl(ns, args, manifest).await {
            Ok(_) => return,
            Err(out) if out.contains("the object has been modified") => {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            Err(out) => panic!("kubectl {args:?} failed:\n{out}"),
        }
    }
    panic!("kubectl {args:?} met a Conflict 10 times in a row");
}

#[tokio::test]
async fn reapplying_the_git_manifest_keeps_or_drops_the_annotation_as_documented() {
    let ns = TestNs::new("gitops").await;
    configmap(&ns, "cfg", &[("k", "0")], json!({})).await;
    let _reloader = Reloader::start(&ns, &["--debounce=200ms", "--min-rollout-interval=1s"]);

    // Argo CD with server-side apply, Flux (always server-side): kept.
    let ssa = [
        "apply",
        "--server-side",
        "--field-manager=argocd-controller",
        "-f",
        "-",
    ];
    assert!(reapply_keeps_annotation(&ns, "ssa", &ssa, &ssa).await);
    // kube-reloader owns exactly its annotations, as an Apply manager.
    let v = workloads::get(&ns, Kind::Deployment, "ssa").await;
    let entry: &Value = v["metadata"]["managedFields"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["manager"] == "kube-reloader"))
        .expect("a kube-reloader managedFields entry");
    assert_eq!(entry["operation"], "Apply");
    let fields = entry["fieldsV1"].to_string();
    assert!(
        fields.contains("f:kube-reloader.io/config-hash"),
        "{fields}"
    );
    assert!(
        !fields.contains("f:containers"),
        "owns more than its annotations: {fields}"
    );

    // Argo CD's default client-side apply (kubectl apply with last-applied-configuration): kept.
    let csa = ["apply", "-f", "-"];
    assert!(reapply_keeps_annotation(&ns, "csa", &csa, &csa).await);

    // A replace (Argo CD's Replace=true, kubectl replace): the object is overwritten whole and
    // the annotation is dropped, which itself changes the pod template.
    let (create, replace) = (["create", "-f", "-"], ["replace", "-f", "-"]);
    assert!(!reapply_keeps_annotation(&ns, "replace", &create, &replace).await);
}

/// Every annotation kube-reloader writes on the workload's metadata, with its value.
async fn baseline_annotations(ns: &TestNs, name: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for key in workloads::WRITTEN {
        let value = workloads::annotation(ns, Kind::Deployment, name, key, false).await;
        out.push((key.to_string(), value));
    }
    out
}

/// The managers in the workload's managedFields, with the operation of each entry.
async fn managers(ns: &TestNs, name: &str) -> Vec<(String, String)> {
    let v = workloads::get(ns, Kind::Deployment, name).await;
    v["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |f: &str| e[f].as_str().unwrap_or_default().to_string();
            (s("manager"), s("operation"))
        })
        .collect()
}

/// Waits until the pod-template annotation differs from `before` (kube-reloader rolled), then
/// until the rollout settles; returns the new value.
async fn rolled_from(ns: &TestNs, name: &str, before: Option<&str>) -> String {
    let now = wait_for("kube-reloader's rollout", TIMEOUT, || async {
        template_hash(ns, name)
            .await
            .filter(|h| Some(h.as_str()) != before)
    })
    .await;
    workloads::settled_revision(ns, Kind::Deployment, name).await;
    now
}

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The scenario of both tests below, with the Git manifest written each time by `sync` (the
/// tool's apply): created by it, baselined and rolled once by kube-reloader (run with
/// `reloader_args`), synced again unchanged, rolled once more for a config change, then a new
/// commit (an image bump) synced. kube-reloader's writes are expected under field manager
/// `manager`.
async fn gitops_sync_scenario(
    ns: &TestNs,
    name: &str,
    sync: &[&str],
    manager: &str,
    reloader_args: &[&str],
) {
    configmap(ns, "cfg", &[("k", "0")], json!({})).await;
    let reloader = Reloader::start(ns, reloader_args);
    let git = manifest(name);
    kubectl(ns, sync, &git).await;
    workloads::baseline(ns, Kind::Deployment, name).await;
    configmap(ns, "cfg", &[("k", "1")], json!({})).await;
    let first = rolled_from(ns, name, None).await;
    let rolled = workloads::rollouts(ns, Kind::Deployment, name).await;
    assert_eq!(rolled, 1);
    let baseline = baseline_annotations(ns, name).await;
    assert!(baseline.iter().all(|(_, v)| v.is_some()), "{baseline:?}");
    let generation =
        workloads::get(ns, Kind::Deployment, name).await["metadata"]["generation"].clone();
    // Every write of kube-reloader's is under its field manager, as an Apply entry.
    let entries = managers(ns, name).await;
    assert!(
        entries.contains(&(manager.to_string(), "Apply".to_string())),
        "{entries:?}"
    );
    if manager != "kube-reloader" {
        assert!(
            !entries.iter().any(|(m, _)| m == "kube-reloader"),
            "{entries:?}"
        );
    }

    // The tool syncs the unchanged Git manifest, without kube-reloader's annotations: the
    // baseline and the pod-template annotation stay, the spec is not touched.
    write_again(ns, sync, &git).await;
    assert_eq!(baseline_annotations(ns, name).await, baseline);
    assert_eq!(
        template_hash(ns, name).await.as_deref(),
        Some(first.as_str())
    );
    let v = workloads::get(ns, Kind::Deployment, name).await;
    assert_eq!(
        v["metadata"]["generation"], generation,
        "the sync changed the spec"
    );

    // A config change rolls exactly once more: the sync rolled nothing, and kube-reloader still
    // takes its baseline for its own (under its field manager), not for a restored one.
    configmap(ns, "cfg", &[("k", "2")], json!({})).await;
    let second = rolled_from(ns, name, Some(&first)).await;
    assert_eq!(
        workloads::rollouts(ns, Kind::Deployment, name).await,
        rolled + 1
    );

    // A new commit (an image bump) synced the same way: Kubernetes rolls for it, once; the
    // pod-template annotation stays; kube-reloader records the new template and rolls nothing.
    let mut bumped: Value = serde_json::from_str(&git).expect("json");
    bumped["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.invalid/app:2");
    let template_before = workloads::annotation(
        ns,
        Kind::Deployment,
        name,
        "kube-reloader.io/template-hash",
        false,
    )
    .await;
    write_again(ns, sync, &bumped.to_string()).await;
    wait_for("the new template recorded", TIMEOUT, || async {
        workloads::annotation(
            ns,
            Kind::Deployment,
            name,
            "kube-reloader.io/template-hash",
            false,
        )
        .await
        .filter(|t| Some(t) != template_before.as_ref())
    })
    .await;
    workloads::settled_revision(ns, Kind::Deployment, name).await;
    assert_eq!(
        workloads::rollouts(ns, Kind::Deployment, name).await,
        rolled + 2
    );
    // A rollout of kube-reloader's would have written a new value.
    assert_eq!(
        template_hash(ns, name).await.as_deref(),
        Some(second.as_str())
    );
    drop(reloader);
}

/// Argo CD's server-side sync (`ServerSideApply=true`: field manager `argocd-controller`,
/// conflicts forced) of the Git manifest, which lacks kube-reloader's annotations, with
/// kube-reloader writing under a field manager of its own (`--field-manager`).
#[tokio::test]
async fn argo_cds_server_side_sync_keeps_the_baseline_and_rolls_nothing() {
    let ns = TestNs::new("gitops-argo-ssa").await;
    let argo = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=argocd-controller",
        "-f",
        "-",
    ];
    let manager = "platform-reloader";
    gitops_sync_scenario(
        &ns,
        "web",
        &argo,
        manager,
        &["--field-manager=platform-reloader"],
    )
    .await;
    // argocd-controller owns the manifest's fields and none of kube-reloader's.
    let v = workloads::get(&ns, Kind::Deployment, "web").await;
    for entry in v["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let fields = entry["fieldsV1"].to_string();
        match entry["manager"].as_str() {
            Some("argocd-controller") => {
                assert!(
                    !fields.contains("f:kube-reloader.io/config-hash"),
                    "{fields}"
                );
                assert!(!fields.contains("f:kube-reloader.io/tracked"), "{fields}");
            }
            Some(m) if m == manager => {
                assert!(
                    fields.contains("f:kube-reloader.io/config-hash"),
                    "{fields}"
                );
                assert!(!fields.contains("f:containers"), "{fields}");
            }
            _ => {}
        }
    }
}

/// Client-side `kubectl apply` of the same Git manifest (Argo CD's default sync): its three-way
/// merge against the last-applied-configuration annotation, which never held kube-reloader's
/// annotations, leaves them alone; the rest as with a server-side sync.
#[tokio::test]
async fn client_side_apply_of_the_git_manifest_keeps_the_baseline_and_rolls_nothing() {
    let ns = TestNs::new("gitops-csa").await;
    let csa = ["apply", "-f", "-"];
    gitops_sync_scenario(&ns, "web", &csa, "kube-reloader", &[]).await;
    let last_applied = workloads::annotation(
        &ns,
        Kind::Deployment,
        "web",
        "kubectl.kubernetes.io/last-applied-configuration",
        false,
    )
    .await
    .expect("kubectl's last-applied-configuration");
    assert!(
        !last_applied.contains("kube-reloader.io/config-hash"),
        "{last_applied}"
    );
}
