//! The shipped installs, manifests/ and the Helm chart, applied to a real control plane, and the
//! controller doing its whole job as the ServiceAccount they create, with exactly their RBAC and
//! the arguments of their Deployment.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

use crate::support::chart;
use crate::support::objects::{self, configmap};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{ControlPlane, TestNs, repo_root, wait_for};

const SA_TOKEN: &str = "kube-reloader-sa-test-token";
const TIMEOUT: Duration = Duration::from_secs(60);

fn control_plane_with_service_account_token() -> ControlPlane {
    ControlPlane::start_with_tokens(&format!(
        "{SA_TOKEN},system:serviceaccount:kube-reloader:kube-reloader,kube-reloader-sa,\
         \"system:serviceaccounts,system:serviceaccounts:kube-reloader\""
    ))
    .expect("control plane")
}

/// Where an install's objects come from.
enum Install {
    /// A directory of manifests, applied with `kubectl apply --server-side -f DIR`.
    Manifests(&'static str),
    /// The chart rendered with these values for release `kube-reloader` in namespace
    /// `kube-reloader`, as `helm install --create-namespace` would install it.
    Chart(&'static str),
}

impl Install {
    /// Applies the objects server-side and returns the arguments of their Deployment, plus
    /// what the pod would have (its namespace) and shorter timings for the test.
    fn apply(&self, cp: &ControlPlane) -> Vec<String> {
        let (path, objects) = match self {
            Install::Manifests(dir) => (repo_root().join(dir), chart::yaml_documents(dir)),
            Install::Chart(values) => {
                let r = chart::render("kube-reloader", "kube-reloader", values).expect("render");
                cp.kubectl(&["create", "namespace", "kube-reloader"]);
                (r.write("install"), r.objects)
            }
        };
        let applied = cp.kubectl(&["apply", "--server-side", "-f", path.to_str().unwrap()]);
        assert!(
            applied.contains("deployment.apps/kube-reloader serverside-applied"),
            "{applied}"
        );
        let mut args = chart::deployment_args(&objects);
        assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
        args.extend(
            [
                "--controller-namespace=kube-reloader",
                "--lease-duration=6s",
                "--renew-deadline=4s",
                "--debounce=500ms",
                "--min-rollout-interval=1s",
            ]
            .map(String::from),
        );
        args
    }
}

#[tokio::test]
async fn manifests_install_and_the_controller_works_with_exactly_their_rbac() {
    works_with_exactly_its_rbac(Install::Manifests("manifests")).await;
}

#[tokio::test]
async fn chart_install_and_the_controller_works_with_exactly_its_rbac() {
    works_with_exactly_its_rbac(Install::Chart("")).await;
}

#[tokio::test]
async fn namespaced_manifests_work_in_their_namespaces_and_never_touch_others() {
    works_in_its_namespaces_only(Install::Manifests("manifests/namespaced")).await;
}

#[tokio::test]
async fn namespaced_chart_works_in_its_namespaces_and_never_touches_others() {
    works_in_its_namespaces_only(Install::Chart("watchNamespaces: [apps]")).await;
}

/// The cluster-wide install: the whole job as its ServiceAccount, then a loud failure once one
/// permission is taken away.
async fn works_with_exactly_its_rbac(install: Install) {
    let cp = control_plane_with_service_account_token();
    let args = install.apply(&cp);

    let app = TestNs::on(&cp, "app").await;
    workloads::opted_in_with_configmap(&app, "web").await;

    // Outside the cluster, but as the ServiceAccount, with the Deployment's arguments.
    let sa = cp.kubeconfig_with_token(SA_TOKEN, "sa");
    let reloader = Reloader::start_raw(&sa, &args, "rbac");
    workloads::baseline(&app, Kind::Deployment, "web").await;
    configmap(&app, "cfg", &[("k", "2")], json!({})).await;
    wait_for("the rollout", TIMEOUT, || async {
        (workloads::rollouts(&app, Kind::Deployment, "web").await == 1).then_some(())
    })
    .await;
    wait_for("the Reloaded Event", TIMEOUT, || async {
        let n = objects::events(&app, "web", "Reloaded").await;
        (!n.is_empty()).then_some(())
    })
    .await;
    let keys: Api<Secret> = Api::namespaced(app.client.clone(), "kube-reloader");
    assert!(keys.get_opt("kube-reloader-key").await.unwrap().is_some());
    let logs = reloader.logs();
    assert!(!logs.to_lowercase().contains("forbidden"), "{logs}");
    assert_eq!(reloader.count(&["acquired the Lease"]), 1, "{logs}");

    // Take one permission away (patching Deployments): the next change must fail loudly, with
    // a Warning Event on the workload saying what was forbidden.
    cp.kubectl(&[
        "patch",
        "clusterrole",
        "kube-reloader",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/rules/1/verbs", "value": ["list", "watch"]}]"#,
    ]);
    configmap(&app, "cfg", &[("k", "3")], json!({})).await;
    let notes = wait_for("a WriteFailed Event", TIMEOUT, || async {
        let n = objects::events(&app, "web", "WriteFailed").await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert!(notes[0].contains("forbidden"), "{notes:?}");
    assert!(notes[0].contains("Deployment"), "{notes:?}");
    reloader
        .wait_count(&["reconcile failed", "name=web", "forbidden"], 1)
        .await;
    assert_eq!(workloads::rollouts(&app, Kind::Deployment, "web").await, 1);
}

/// The namespaced install: works in `apps`, never touches `other`.
async fn works_in_its_namespaces_only(install: Install) {
    let cp = control_plane_with_service_account_token();
    cp.kubectl(&["create", "namespace", "apps"]);
    let args = install.apply(&cp);
    assert!(args.contains(&"--namespace=apps".to_string()), "{args:?}");
    let admin = cp.client().await;
    let apps = TestNs {
        name: "apps".into(),
        client: admin.clone(),
        kubeconfig: cp.kubeconfig.clone(),
    };
    let other = TestNs::on(&cp, "other").await;
    for ns in [&apps, &other] {
        workloads::opted_in_with_configmap(ns, "web").await;
    }
    let sa = cp.kubeconfig_with_token(SA_TOKEN, "sa");
    let reloader = Reloader::start_raw(&sa, &args, "namespaced");
    workloads::baseline(&apps, Kind::Deployment, "web").await;
    for ns in [&apps, &other] {
        configmap(ns, "cfg", &[("k", "2")], json!({})).await;
    }
    wait_for("the rollout in apps", TIMEOUT, || async {
        (workloads::rollouts(&apps, Kind::Deployment, "web").await == 1).then_some(())
    })
    .await;
    let untouched = workloads::get(&other, Kind::Deployment, "web").await;
    assert_eq!(
        untouched["metadata"]["annotations"]["kube-reloader.io/config-hash"],
        serde_json::Value::Null
    );
    assert_eq!(
        workloads::rollouts(&other, Kind::Deployment, "web").await,
        0
    );
    assert!(objects::events(&other, "web", "Reloaded").await.is_empty());
    let logs = reloader.logs();
    assert!(!logs.to_lowercase().contains("forbidden"), "{logs}");
    assert_eq!(reloader.count(&["acquired the Lease"]), 1, "{logs}");
}
