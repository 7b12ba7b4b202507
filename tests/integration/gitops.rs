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
