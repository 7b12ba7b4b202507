//! The whole life of a Helm release against the API server: `helm install`, `helm upgrade
//! --reuse-values` with a changed value, `helm rollback`, `helm uninstall`. After each step the
//! cluster holds exactly the objects the chart renders for that revision's values, and the
//! controller, run as the chart's ServiceAccount with the Deployment's arguments and replicas,
//! still does its job; after the uninstall, no chart object is left and the controller may
//! write nothing. Each test has a control plane of its own: the release lives in namespace
//! `kube-reloader` and, installed cluster-wide, owns cluster-scoped RBAC.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::install::{
    SA_TOKEN, SA_USER, control_plane_with_service_account_token, controller_args, denied,
    every_kind_opted_in,
};
use crate::support::chart;
use crate::support::helm::Release;
use crate::support::objects::configmap;
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{ControlPlane, TestNs, kubectl_command, wait_for};

const RELEASE: &str = "kube-reloader";
const NAMESPACE: &str = "kube-reloader";
const TIMEOUT: Duration = Duration::from_secs(60);

/// What the upgrade changes, as `helm upgrade --set` takes it and as values YAML: a flag of the
/// Deployment and an object more (the metrics Service), so the rollback must remove one.
const UPGRADE_SET: [&str; 2] = ["log.level=debug", "metrics.service.enabled=true"];
const UPGRADE_VALUES: &str = "log: {level: debug}\nmetrics: {service: {enabled: true}}";

/// The requests that change something, as the audit log names their verbs.
const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

#[tokio::test]
async fn helm_lifecycle_keeps_the_default_release_as_charted_and_working() {
    lifecycle("", None).await;
}

#[tokio::test]
async fn helm_lifecycle_keeps_a_namespaced_release_as_charted_and_working() {
    lifecycle("watchNamespaces: [apps]", Some("apps")).await;
}

#[tokio::test]
async fn helm_lifecycle_keeps_a_two_replica_release_as_charted_and_working() {
    lifecycle("replicas: 2", None).await;
}

/// Installs the release with `values`, upgrades, rolls back and uninstalls it, checking the
/// cluster and the controller after each step. `watched` names the one namespace the values
/// restrict the release to (created before the install, as the chart requires).
async fn lifecycle(values: &str, watched: Option<&str>) {
    let cp = control_plane_with_service_account_token();
    let apps = match watched {
        Some(name) => {
            cp.kubectl(&["create", "namespace", name]);
            TestNs {
                name: name.into(),
                client: cp.client().await,
                kubeconfig: cp.kubeconfig.clone(),
            }
        }
        None => TestNs::on(&cp, "app").await,
    };
    every_kind_opted_in(&apps).await;
    let release = Release {
        cp: &cp,
        name: RELEASE,
        namespace: NAMESPACE,
    };
    // Every object of every revision so far.
    let mut seen: Vec<Value> = Vec::new();

    release.install(values);
    let installed = as_charted(&release, values, "Install complete", &seen);
    seen.extend(installed.iter().cloned());
    let install_args = chart::deployment_args(&installed);
    stop(controller_rolls(&cp, &installed, &apps, "2", 1).await);

    release.upgrade_reusing_values(&UPGRADE_SET);
    let upgraded = as_charted(
        &release,
        &format!("{values}\n{UPGRADE_VALUES}"),
        "Upgrade complete",
        &seen,
    );
    seen.extend(upgraded.iter().cloned());
    let mut upgrade_args = chart::deployment_args(&upgraded);
    assert!(
        upgrade_args.contains(&"--log-level=debug".to_string()),
        "{upgrade_args:?}"
    );
    // --reuse-values kept everything else: the install's values give the install's arguments.
    upgrade_args.retain(|a| a != "--log-level=debug");
    assert_eq!(upgrade_args, install_args);
    assert!(has(&upgraded, "Service", RELEASE), "no metrics Service");
    stop(controller_rolls(&cp, &upgraded, &apps, "3", 2).await);

    release.rollback(1);
    let rolled_back = as_charted(&release, values, "Rollback to 1", &seen);
    assert_eq!(chart::deployment_args(&rolled_back), install_args);
    assert!(
        !has(&rolled_back, "Service", RELEASE),
        "the Service is back"
    );
    let controllers = controller_rolls(&cp, &rolled_back, &apps, "4", 3).await;

    let before = cp.requests_by(SA_USER).len();
    release.uninstall();
    nothing_left(&release, &seen).await;
    writes_denied(&cp, &apps, &controllers, 3, before).await;
}

/// Checks the release's latest revision (deployed, the earlier ones superseded, described so)
/// against the chart rendered with `values`: `helm get manifest` holds the same objects, each
/// is on the server as rendered, marked as the release's and applied server-side by helm, and
/// every object of an earlier revision that this one lacks is gone. Returns the manifest's
/// objects.
fn as_charted(release: &Release, values: &str, description: &str, seen: &[Value]) -> Vec<Value> {
    let history = release.history();
    let (latest, earlier) = history.split_last().expect("a revision");
    assert_eq!(latest.revision as usize, history.len(), "{history:?}");
    assert_eq!(
        (latest.status.as_str(), latest.description.as_str()),
        ("deployed", description)
    );
    assert!(
        earlier.iter().all(|r| r.status == "superseded"),
        "{history:?}"
    );

    // Helm 4's default storage driver: a Secret per revision, in the release's namespace.
    let record = format!("secret/sh.helm.release.v1.{RELEASE}.v{}", latest.revision);
    let records = release
        .cp
        .kubectl_stdout(&["get", "-n", NAMESPACE, "-o", "name", &record], "");
    assert_eq!(records.trim(), record);

    let manifest = release.manifest();
    let rendered = chart::render(RELEASE, NAMESPACE, values).expect("render");
    let ids = identities(&manifest);
    assert_eq!(ids, identities(&rendered.objects), "helm get manifest");

    let live = kubectl_get(
        release.cp,
        &manifest,
        &["-o", "json", "--show-managed-fields"],
    );
    let live: Value = serde_json::from_str(&live).expect("kubectl JSON");
    let live = match live["items"].as_array() {
        Some(items) => chart::by_identity(items),
        None => chart::by_identity(&[live]),
    };
    for (id, want) in chart::by_identity(&manifest) {
        let found = live.get(&id).unwrap_or_else(|| panic!("{id} is missing"));
        if let Err(at) = chart::contains(found, &want) {
            panic!("{id} on the server differs from the release's manifest at {at}:\n{found:#}");
        }
        let owner = &found["metadata"]["annotations"];
        assert_eq!(owner["meta.helm.sh/release-name"], RELEASE, "{id}");
        assert_eq!(owner["meta.helm.sh/release-namespace"], NAMESPACE, "{id}");
        // Helm 4 applies server-side by default, and the 1.20 API server takes it.
        let managers = found["metadata"]["managedFields"].as_array();
        let applied = managers
            .into_iter()
            .flatten()
            .any(|m| m["manager"] == "helm" && m["operation"] == "Apply");
        assert!(
            applied,
            "{id} was not applied server-side by helm:\n{found:#}"
        );
    }

    let dropped: Vec<Value> = seen
        .iter()
        .filter(|o| !ids.contains(&identity(o)))
        .cloned()
        .collect();
    let left = kubectl_get(release.cp, &dropped, &["--ignore-not-found", "-o", "name"]);
    assert_eq!(left.trim(), "", "objects of earlier revisions left");
    manifest
}

/// Runs the Deployment of `manifest` as local processes, one per replica, as the chart's
/// ServiceAccount with the Deployment's arguments: exactly one takes the Lease, every workload
/// kind has its baseline, and setting ConfigMap `cfg` to `value` rolls each once more, to
/// `rollouts` in all, with no request refused. Returns the processes, still running.
async fn controller_rolls(
    cp: &ControlPlane,
    manifest: &[Value],
    apps: &TestNs,
    value: &str,
    rollouts: u64,
) -> Vec<Reloader> {
    let args = controller_args(manifest);
    let deployment = manifest
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    let sa = cp.kubeconfig_with_token(SA_TOKEN, "sa");
    let replicas: Vec<Reloader> = (0..replicas)
        .map(|i| Reloader::start_raw(&sa, &args, &format!("helm-{}-{i}", apps.name)))
        .collect();
    for kind in Kind::ALL {
        workloads::baseline(apps, kind, "web").await;
    }
    configmap(apps, "cfg", &[("k", value)], json!({})).await;
    for kind in Kind::ALL {
        workloads::wait_rollouts(apps, kind, "web", rollouts).await;
        assert_eq!(
            workloads::rollouts(apps, kind, "web").await,
            rollouts,
            "{kind:?}"
        );
    }
    let leaders: usize = replicas
        .iter()
        .map(|r| r.count(&["acquired the Lease"]))
        .sum();
    assert_eq!(leaders, 1, "replicas that took the Lease");
    for r in &replicas {
        let logs = r.logs();
        assert!(!logs.to_lowercase().contains("forbidden"), "{logs}");
    }
    assert_eq!(denied(cp), Vec::new(), "requests refused");
    replicas
}

/// Stops the replicas as Kubernetes would (SIGTERM), the standbys first: each exits 0, the
/// leader releasing the Lease, so the next step's replicas take it at once. (Stopped last, the
/// leader's release cannot hand the Lease to a standby about to stop.)
fn stop(mut replicas: Vec<Reloader>) {
    replicas.sort_by_key(|r| r.count(&["acquired the Lease"]));
    for mut r in replicas {
        let status = r.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}\n{}",
            r.logs()
        );
    }
}

/// After `helm uninstall`: no object of any revision is left, nor the Deployment's ReplicaSets
/// and Pods, nor the release's own records; what the controller made itself (its key Secret
/// and Lease) and the namespace stay.
async fn nothing_left(release: &Release<'_>, seen: &[Value]) {
    let cp = release.cp;
    let left = kubectl_get(cp, seen, &["--ignore-not-found", "-o", "name"]);
    assert_eq!(left.trim(), "", "chart objects left after helm uninstall");
    wait_for("the garbage collector", TIMEOUT, || async {
        let args = ["get", "replicasets,pods", "-n", NAMESPACE, "-o", "name"];
        let left = cp.kubectl_stdout(&args, "");
        left.trim().is_empty().then_some(())
    })
    .await;
    assert_eq!(
        release.list_all(),
        Vec::<String>::new(),
        "helm list, any state"
    );
    let names = |kind: &str| -> Vec<String> {
        let out = cp.kubectl_stdout(&["get", kind, "-n", NAMESPACE, "-o", "name"], "");
        out.lines().map(str::to_string).collect()
    };
    assert_eq!(names("secrets"), ["secret/kube-reloader-key"]);
    assert_eq!(names("leases"), ["lease.coordination.k8s.io/kube-reloader"]);
    cp.kubectl(&["get", "namespace", NAMESPACE]);
}

/// Once the API server no longer grants the ServiceAccount anything, the controller left
/// running is refused its next write (a Lease renewal or a rollout), stops writing, and rolls
/// nothing: the `web` workloads stay at `rollouts`.
/// `before`: the audited requests of the controller's user before the uninstall. Its first
/// refused write may come from then on (a Lease renewal, while the rest of the uninstall is
/// checked), after which the replica no longer leads and writes to no workload at all; once the
/// authorizer has dropped the RBAC, no write of it is allowed.
async fn writes_denied(
    cp: &ControlPlane,
    apps: &TestNs,
    replicas: &[Reloader],
    rollouts: u64,
    before: usize,
) {
    let revoked = [
        vec!["patch", "deployments.apps", "-n", &apps.name],
        vec!["update", "leases.coordination.k8s.io", "-n", NAMESPACE],
    ];
    wait_for(
        "the RBAC to be gone from the authorizer",
        TIMEOUT,
        || async { revoked.iter().all(|what| !can_i(cp, what)).then_some(()) },
    )
    .await;
    let gone = cp.requests_by(SA_USER).len();
    configmap(apps, "cfg", &[("k", "5")], json!({})).await;
    let first = wait_for("a write of the controller refused", TIMEOUT, || async {
        let requests = cp.requests_by(SA_USER);
        requests[before..]
            .iter()
            .find(|r| WRITES.contains(&r.verb.as_str()) && r.code == 403)
            .cloned()
    })
    .await;
    assert_eq!(first.code, 403, "{first:?}");
    wait_for("the controller to stop writing", TIMEOUT, || async {
        let n: usize = replicas
            .iter()
            .map(|r| r.count(&["Lease operation failed"]))
            .sum();
        (n > 0).then_some(())
    })
    .await;
    for kind in Kind::ALL {
        assert_eq!(
            workloads::rollouts(apps, kind, "web").await,
            rollouts,
            "{kind:?}"
        );
    }
    let requests = cp.requests_by(SA_USER);
    let allowed: Vec<_> = requests[gone..]
        .iter()
        .filter(|r| WRITES.contains(&r.verb.as_str()) && r.code != 403)
        .collect();
    assert_eq!(allowed, Vec::<&_>::new(), "writes allowed after uninstall");
}

/// `kubectl auth can-i VERB RESOURCE …` as the chart's ServiceAccount.
fn can_i(cp: &ControlPlane, what: &[&str]) -> bool {
    let out = kubectl_command()
        .args(["auth", "can-i"])
        .args(what)
        .args(["--as", SA_USER])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("run kubectl auth can-i");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// `kubectl get -f - ARGS` of these objects (as a List): what it prints on stdout. Nothing for
/// no objects.
fn kubectl_get(cp: &ControlPlane, objects: &[Value], args: &[&str]) -> String {
    if objects.is_empty() {
        return String::new();
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let mut get = vec!["get", "-f", "-"];
    get.extend(args);
    cp.kubectl_stdout(&get, &list.to_string())
}

fn identity(o: &Value) -> String {
    chart::by_identity(std::slice::from_ref(o))
        .into_keys()
        .next()
        .expect("one identity")
}

fn identities(objects: &[Value]) -> BTreeSet<String> {
    chart::by_identity(objects).into_keys().collect()
}

fn has(objects: &[Value], kind: &str, name: &str) -> bool {
    objects
        .iter()
        .any(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}
