//! The shipped installs, manifests/ and the Helm chart, applied to a real control plane, and the
//! controller doing its whole job as the ServiceAccount they create, with exactly their RBAC and
//! the arguments of their Deployment: every kind they turn on (Deployments, StatefulSets,
//! DaemonSets, CronJobs, Argo Rollouts, and the chart's `workloadKinds`) is baselined and rolled,
//! no request is refused, and every permission granted is used. With the chart's `csi.enabled`,
//! the same with the Secrets Store CSI driver's objects: a rotation its pods report rolls their
//! Deployment, and the integration's grants (the driver's kinds, pods, replicasets) are all used.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};

use crate::support::chart;
use crate::support::csi::{self, TestPod};
use crate::support::kinds::{self, HASH, History, TestKind};
use crate::support::objects::{self, configmap};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{AuditedRequest, ControlPlane, TestNs, kubectl_command, repo_root, wait_for};

pub(crate) const SA_TOKEN: &str = "kube-reloader-sa-test-token";
pub(crate) const SA_USER: &str = "system:serviceaccount:kube-reloader:kube-reloader";
const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn control_plane_with_service_account_token() -> ControlPlane {
    ControlPlane::start_with_tokens(&format!(
        "{SA_TOKEN},{SA_USER},kube-reloader-sa,\
         \"system:serviceaccounts,system:serviceaccounts:kube-reloader\""
    ))
    .expect("control plane")
}

/// Where an install's objects come from.
enum Install {
    /// A directory of manifests, applied with `kubectl apply --server-side -f DIR`.
    Manifests(&'static str),
    /// The chart rendered with these values, plus `workloadKinds` naming these kinds, for release
    /// `kube-reloader` in namespace `kube-reloader`, as `helm install --create-namespace` would
    /// install it. (With no values the chart renders exactly manifests/, and with
    /// `watchNamespaces: [apps]` manifests/namespaced/: chart.rs keeps them equal, so the chart
    /// cases add a kind of their own rather than repeat the manifests' cases.)
    Chart {
        values: &'static str,
        workload_kinds: Vec<TestKind>,
    },
}

impl Install {
    /// Applies the objects server-side and returns them with the arguments of their Deployment,
    /// plus what the pod would have (its namespace) and shorter timings for the test.
    fn apply(&self, cp: &ControlPlane) -> (Vec<Value>, Vec<String>) {
        let (applied, objects) = match self {
            Install::Manifests(dir) => {
                let path = repo_root().join(dir);
                let path = path.to_str().unwrap();
                let applied = cp.kubectl(&["apply", "--server-side", "-f", path]);
                (applied, chart::yaml_documents(dir))
            }
            Install::Chart { .. } => {
                let r = chart::render("kube-reloader", "kube-reloader", &self.values())
                    .expect("render");
                cp.kubectl(&["create", "namespace", "kube-reloader"]);
                (cp.apply(&r.yaml), r.objects)
            }
        };
        assert!(
            applied.contains("deployment.apps/kube-reloader serverside-applied"),
            "{applied}"
        );
        let args = controller_args(&objects);
        (objects, args)
    }

    /// The chart values: the case's own, and `workloadKinds`.
    fn values(&self) -> String {
        let Install::Chart {
            values,
            workload_kinds,
        } = self
        else {
            return String::new();
        };
        let kinds: Vec<String> = workload_kinds
            .iter()
            .map(|k| format!("{}/{}={}", k.api_version(), k.kind, k.template_path))
            .collect();
        format!("{values}\nworkloadKinds: [{}]\n", kinds.join(", "))
    }

    /// The kinds beyond apps/v1 the install rolls: CronJobs and Argo Rollouts (on by default),
    /// then the chart's `workloadKinds`.
    fn more_kinds(&self) -> Vec<TestKind> {
        let mut more = vec![TestKind::cronjob(), TestKind::rollout()];
        if let Install::Chart { workload_kinds, .. } = self {
            more.extend(workload_kinds.iter().cloned());
        }
        more
    }
}

/// The arguments of the one Deployment among `objects` (an install in namespace
/// `kube-reloader`, leader election on), plus what its pod would have (its namespace), shorter
/// timings for the test.
pub(crate) fn controller_args(objects: &[Value]) -> Vec<String> {
    let mut args = chart::deployment_args(objects);
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

#[tokio::test]
async fn manifests_install_and_the_controller_works_with_exactly_their_rbac() {
    works_with_exactly_its_rbac(Install::Manifests("manifests")).await;
}

#[tokio::test]
async fn chart_install_with_a_workload_kind_works_with_exactly_its_rbac() {
    works_with_exactly_its_rbac(Install::Chart {
        values: "",
        workload_kinds: vec![TestKind::widget()],
    })
    .await;
}

#[tokio::test]
async fn chart_install_with_csi_works_with_exactly_its_rbac() {
    works_with_exactly_its_rbac(Install::Chart {
        values: "csi: {enabled: true}",
        workload_kinds: vec![],
    })
    .await;
}

/// `progressive.enabled`: the change rolls (in one wave here, `100%`: the pods of this control
/// plane never run, so no wave would ever complete) and the rollouts under way are watched,
/// their pods listed, with exactly the chart's RBAC.
#[tokio::test]
async fn chart_install_with_progressive_works_with_exactly_its_rbac() {
    works_with_exactly_its_rbac(Install::Chart {
        values: "progressive: {enabled: true, waves: \"100%\"}",
        workload_kinds: vec![],
    })
    .await;
}

#[tokio::test]
async fn namespaced_manifests_work_in_their_namespaces_and_never_touch_others() {
    works_in_its_namespaces_only(Install::Manifests("manifests/namespaced")).await;
}

#[tokio::test]
async fn namespaced_chart_with_a_workload_kind_works_in_its_namespaces_and_never_touches_others() {
    works_in_its_namespaces_only(Install::Chart {
        values: "watchNamespaces: [apps]",
        workload_kinds: vec![TestKind::widget()],
    })
    .await;
}

/// The install's arguments with `--initial-list=paged`. The default, `auto`, streams the initial
/// lists where the API server serves them (it does here), and a streaming list is a watch: the
/// `list` grants would go unused. They are there for API servers that refuse streaming, where
/// `auto` reads through paged lists (and for absence checks): the audit runs that path, which
/// needs every verb the streaming one needs and `list` besides.
fn paged(mut args: Vec<String>) -> Vec<String> {
    args.push("--initial-list=paged".into());
    args
}

/// The cluster-wide install: the whole job as its ServiceAccount, then a loud failure once one
/// permission is taken away.
async fn works_with_exactly_its_rbac(install: Install) {
    let cp = control_plane_with_service_account_token();
    let (objects, args) = install.apply(&cp);
    let args = paged(args);
    apply_test_crds(&cp).await;
    let with_csi = args.contains(&"--enable-csi-integration".to_string());
    if with_csi {
        csi::install_crds(&cp);
    }

    let app = TestNs::on(&cp, "app").await;
    every_kind_opted_in(&app).await;
    let more = MoreKinds::opted_in(&app, install.more_kinds()).await;
    let vaulted = match with_csi {
        true => vaulted_pods(&app).await,
        false => Vec::new(),
    };

    // Outside the cluster, but as the ServiceAccount, with the Deployment's arguments.
    let sa = cp.kubeconfig_with_token(SA_TOKEN, "sa");
    let reloader = Reloader::start_raw(&sa, &args, "rbac");
    for kind in Kind::ALL {
        workloads::baseline(&app, kind, "web").await;
    }
    more.baselines().await;
    if with_csi {
        // First sight rolled nothing; a rotation its two pods report rolls it once.
        workloads::baseline(&app, Kind::Deployment, "vaulted").await;
        for pod in &vaulted {
            csi::report(&app, pod, "vault", &[("db", "2")]).await;
        }
        workloads::wait_rollouts(&app, Kind::Deployment, "vaulted", 1).await;
    }
    configmap(&app, "cfg", &[("k", "2")], json!({})).await;
    for kind in Kind::ALL {
        workloads::wait_rollouts(&app, kind, "web", 1).await;
    }
    more.wait_rollouts(1).await;
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
    assert_eq!(reloader.count(&["is not served"]), 0, "{logs}");

    let role = ["clusterrole", "kube-reloader"];
    fails_loudly_without_patch(&cp, &app, &role, &reloader, &more).await;
    every_grant_is_used(&cp, &objects, reloader).await;
}

/// SecretProviderClass `vault` and Deployment `vaulted` (opted in, two Pending pods mounting it
/// through the driver), its pods' status objects written as the driver writes them on a mount.
async fn vaulted_pods(ns: &TestNs) -> Vec<TestPod> {
    csi::secret_provider_class(ns, "vault", json!({})).await;
    let d = csi::deployment(
        "vaulted",
        json!({"kube-reloader.io/auto": "true"}),
        "vault",
        2,
    );
    workloads::create(ns, Kind::Deployment, d).await;
    let (pods, _) = csi::pods_of(ns, "vaulted", 2, &[]).await;
    for pod in &pods {
        csi::report(ns, pod, "vault", &[("db", "1")]).await;
    }
    pods
}

/// A Deployment, a StatefulSet and a DaemonSet named `web`, opted in, using ConfigMap `cfg`.
pub(crate) async fn every_kind_opted_in(ns: &TestNs) {
    workloads::opted_in_with_configmap(ns, "web").await;
    for kind in [Kind::StatefulSet, Kind::DaemonSet] {
        workloads::opted_in(ns, kind, "web", workloads::env_from_configmap("cfg")).await;
    }
}

/// The namespaced install: works in `apps`, never touches `other`.
async fn works_in_its_namespaces_only(install: Install) {
    let cp = control_plane_with_service_account_token();
    cp.kubectl(&["create", "namespace", "apps"]);
    let (objects, args) = install.apply(&cp);
    let args = paged(args);
    assert!(args.contains(&"--namespace=apps".to_string()), "{args:?}");
    apply_test_crds(&cp).await;
    let admin = cp.client().await;
    let apps = TestNs {
        name: "apps".into(),
        client: admin.clone(),
        kubeconfig: cp.kubeconfig.clone(),
    };
    let other = TestNs::on(&cp, "other").await;
    for ns in [&apps, &other] {
        every_kind_opted_in(ns).await;
    }
    let more = MoreKinds::opted_in(&apps, install.more_kinds()).await;
    let more_elsewhere = MoreKinds::opted_in(&other, install.more_kinds()).await;
    let sa = cp.kubeconfig_with_token(SA_TOKEN, "sa");
    let reloader = Reloader::start_raw(&sa, &args, "namespaced");
    for kind in Kind::ALL {
        workloads::baseline(&apps, kind, "web").await;
    }
    more.baselines().await;
    for ns in [&apps, &other] {
        configmap(ns, "cfg", &[("k", "2")], json!({})).await;
    }
    for kind in Kind::ALL {
        workloads::wait_rollouts(&apps, kind, "web", 1).await;
    }
    more.wait_rollouts(1).await;
    let untouched = workloads::get(&other, Kind::Deployment, "web").await;
    assert_eq!(
        untouched["metadata"]["annotations"]["kube-reloader.io/config-hash"],
        serde_json::Value::Null
    );
    assert_eq!(
        workloads::rollouts(&other, Kind::Deployment, "web").await,
        0
    );
    more_elsewhere.untouched().await;
    assert!(objects::events(&other, "web", "Reloaded").await.is_empty());
    let logs = reloader.logs();
    assert!(!logs.to_lowercase().contains("forbidden"), "{logs}");
    assert_eq!(reloader.count(&["acquired the Lease"]), 1, "{logs}");
    assert_eq!(reloader.count(&["is not served"]), 0, "{logs}");

    let watch_role = ["role", "kube-reloader-watch", "--namespace=apps"];
    fails_loudly_without_patch(&cp, &apps, &watch_role, &reloader, &more).await;
    every_grant_is_used(&cp, &objects, reloader).await;
}

/// Applies the test CRDs (tests/fixtures/crds: Argo Rollouts' Rollout, the tests' Widget) to
/// this control plane server-side, and waits until discovery serves both, as kube-reloader looks
/// them up. Idempotent, and never undone: CRDs are cluster-wide.
async fn apply_test_crds(cp: &ControlPlane) {
    for (file, kind) in [
        ("rollout.yaml", TestKind::rollout()),
        ("widget.yaml", TestKind::widget()),
    ] {
        let path = repo_root().join("tests/fixtures/crds").join(file);
        let yaml = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let apply = ["apply", "--server-side", "--force-conflicts", "-f", "-"];
        cp.kubectl_stdout(&apply, &yaml);
        let crd = format!("crd/{}.{}", kind.plural, kind.group);
        cp.kubectl(&["wait", "--for=condition=established", "--timeout=60s", &crd]);
        let path = format!("/apis/{}", kind.api_version());
        wait_for(
            &format!("{path} to serve {}", kind.plural),
            TIMEOUT,
            || async {
                let out = kubectl_command()
                    .args(["get", "--raw", &path])
                    .env("KUBECONFIG", &cp.kubeconfig)
                    .output()
                    .expect("run kubectl");
                let resources = serde_json::from_slice::<Value>(&out.stdout)
                    .ok()
                    .and_then(|v| v["resources"].as_array().cloned())
                    .unwrap_or_default();
                let served =
                    out.status.success() && resources.iter().any(|r| r["name"] == kind.plural);
                served.then_some(())
            },
        )
        .await;
    }
}

/// Workloads `web` of the kinds beyond apps/v1, opted in and using ConfigMap `cfg`, each with the
/// history of its pod template since it was created. These kinds have no ReplicaSets to count:
/// a rollout is a change of the pod template at the kind's path.
struct MoreKinds<'a> {
    ns: &'a TestNs,
    workloads: Vec<(TestKind, History)>,
}

impl<'a> MoreKinds<'a> {
    /// Creates `web` of each kind in `ns`, and starts watching it.
    async fn opted_in(ns: &'a TestNs, kinds: Vec<TestKind>) -> Self {
        let mut workloads = Vec::new();
        for kind in kinds {
            kinds::opted_in(ns, &kind, "web", workloads::env_from_configmap("cfg")).await;
            let history = History::watch(ns, &kind, "web").await;
            workloads.push((kind, history));
        }
        Self { ns, workloads }
    }

    /// Waits for kube-reloader's baseline on each; first sight rolls nothing.
    async fn baselines(&self) {
        for (kind, history) in &self.workloads {
            kinds::baseline(self.ns, kind, "web").await;
            assert_eq!(
                history.template_changes(),
                0,
                "{}: first sight rolled",
                kind.kind
            );
        }
    }

    /// Waits until each has been rolled `n` times in all (not more): each time kube-reloader's
    /// mark in the pod template changed, and nothing else; the mark is the baseline on the
    /// workload's metadata; a Reloaded Event on the workload says so.
    async fn wait_rollouts(&self, n: usize) {
        for (kind, history) in &self.workloads {
            history.wait_template_changes(n).await;
            assert_eq!(history.template_changes(), n, "{}: rollouts", kind.kind);
            history.assert_only_the_mark_changed();
            let what = format!("{} web's mark to be its baseline", kind.kind);
            wait_for(&what, TIMEOUT, || async {
                let obj = kinds::get(self.ns, kind, "web").await;
                let mark = kind.template_annotation(&obj, HASH)?;
                (obj["metadata"]["annotations"][HASH] == mark.as_str()).then_some(())
            })
            .await;
            kinds::wait_events(self.ns, &kind.kind, "web", "Reloaded").await;
        }
    }

    /// Asserts that kube-reloader has neither baselined nor rolled any of them.
    async fn untouched(&self) {
        for (kind, history) in &self.workloads {
            let baseline = kinds::annotation(self.ns, kind, "web", HASH).await;
            assert_eq!(baseline, None, "{} web was baselined", kind.kind);
            assert_eq!(
                history.template_changes(),
                0,
                "{} web was rolled",
                kind.kind
            );
            let reloaded = kinds::events(self.ns, &kind.kind, "web", "Reloaded").await;
            assert_eq!(reloaded, Vec::<String>::new(), "{}", kind.kind);
        }
    }
}

/// Takes one permission away (patching apps/v1 workloads, in the role named by `role`, as
/// kubectl arguments): the next change of the `web` workloads' ConfigMap in `ns` must fail
/// loudly for those, with a Warning Event on each saying what was forbidden, and roll none of
/// them; the kinds whose permission is intact (`more`) roll once more.
async fn fails_loudly_without_patch(
    cp: &ControlPlane,
    ns: &TestNs,
    role: &[&str],
    reloader: &Reloader,
    more: &MoreKinds<'_>,
) {
    assert_eq!(
        denied(cp),
        Vec::new(),
        "denied before any permission was taken"
    );
    let mut get = vec!["get"];
    get.extend(role);
    get.extend(["-o", "json"]);
    let live: Value = serde_json::from_str(&cp.kubectl_stdout(&get, "")).expect("role JSON");
    let rules = live["rules"].as_array().expect("rules");
    let apps = rules
        .iter()
        .position(|r| r["apiGroups"] == json!(["apps"]))
        .unwrap_or_else(|| panic!("no rule for apps alone in {role:?}: {rules:#?}"));
    let remove = json!([{
        "op": "replace",
        "path": format!("/rules/{apps}/verbs"),
        "value": ["list", "watch"],
    }])
    .to_string();
    let mut patch = vec!["patch"];
    patch.extend(role);
    patch.extend(["--type=json", "-p", &remove]);
    cp.kubectl(&patch);
    configmap(ns, "cfg", &[("k", "3")], json!({})).await;
    let notes = wait_for("a WriteFailed Event on the Deployment", TIMEOUT, || async {
        let n = objects::events(ns, "web", "WriteFailed").await;
        n.iter().any(|n| n.contains("Deployment")).then_some(n)
    })
    .await;
    assert!(notes.iter().all(|n| n.contains("forbidden")), "{notes:?}");
    reloader
        .wait_count(&["reconcile failed", "name=web", "forbidden"], 1)
        .await;
    more.wait_rollouts(2).await;
    for kind in Kind::ALL {
        assert_eq!(workloads::rollouts(ns, kind, "web").await, 1, "{kind:?}");
    }
    // The only denied requests are those the missing permission explains.
    for r in denied(cp) {
        assert_eq!(
            (r.verb.as_str(), r.group.as_str()),
            ("patch", "apps"),
            "{r:?}"
        );
    }
}

/// The ServiceAccount's requests the apiserver refused.
pub(crate) fn denied(cp: &ControlPlane) -> Vec<AuditedRequest> {
    let mut denied = cp.requests_by(SA_USER);
    denied.retain(|r| r.code == 403);
    denied
}

/// One permission a Role or ClusterRole of the install grants.
#[derive(Debug)]
struct Grant {
    /// The Role's namespace; empty for a ClusterRole (every namespace).
    namespace: String,
    group: String,
    resource: String,
    verb: String,
    /// From `resourceNames`; empty when the rule names none.
    name: String,
}

impl Grant {
    fn used_by(&self, r: &AuditedRequest) -> bool {
        (self.namespace.is_empty() || self.namespace == r.namespace)
            && self.group == r.group
            && self.resource == r.resource
            && self.verb == r.verb
            && (self.name.is_empty() || self.name == r.name)
    }
}

/// Every permission the install's Roles and ClusterRoles grant, one per verb, resource and name.
fn grants(objects: &[Value]) -> Vec<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        let list = v.as_array().cloned().unwrap_or_default();
        list.iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let mut grants = Vec::new();
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
    {
        let namespace = role["metadata"]["namespace"].as_str().unwrap_or_default();
        for rule in role["rules"].as_array().expect("rules") {
            let mut names = strings(&rule["resourceNames"]);
            if names.is_empty() {
                names.push(String::new());
            }
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        for name in &names {
                            grants.push(Grant {
                                namespace: namespace.to_string(),
                                group: group.clone(),
                                resource: resource.clone(),
                                verb: verb.clone(),
                                name: name.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    assert!(!grants.is_empty(), "the install grants nothing");
    grants
}

/// Least privilege, the other way round: each permission granted has been used by the controller
/// (the apiserver's audit log shows a request it covers). Some are used only after a while:
/// `patch` on Events folds a repeated Warning into a series, on the first retry. A watch is
/// logged reliably only once it ends, so the controller is stopped before those are checked.
async fn every_grant_is_used(cp: &ControlPlane, objects: &[Value], reloader: Reloader) {
    let (watches, others): (Vec<Grant>, Vec<Grant>) =
        grants(objects).into_iter().partition(|g| g.verb == "watch");
    all_used(cp, &others).await;
    drop(reloader);
    all_used(cp, &watches).await;
}

async fn all_used(cp: &ControlPlane, grants: &[Grant]) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let requests = cp.requests_by(SA_USER);
        let unused: Vec<&Grant> = grants
            .iter()
            .filter(|g| !requests.iter().any(|r| g.used_by(r)))
            .collect();
        if unused.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "granted but never used by the controller: {unused:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
