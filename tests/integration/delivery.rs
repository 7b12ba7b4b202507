//! One change, one rollout, also when Git delivers it. A config change and a pod-template change
//! delivered together (a kustomize generator's rename, Helm's `checksum/config`) are rolled out
//! by Kubernetes alone, for the template change; kube-reloader records the new baseline and rolls
//! nothing. Changes are delivered as GitOps tools make them: `kubectl apply --server-side` of
//! manifests, in each order a tool may write a commit's objects.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::objects::{configmap, events};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, kubectl, wait_for};

const AUTO: &str = "kube-reloader.io/auto";
const HASH: &str = "kube-reloader.io/config-hash";
const TRACKED: &str = "kube-reloader.io/tracked";
/// kube-reloader's log line when a delivery's own rollout covers its config change.
const COVERED: &str = "recorded a new baseline: the pod template changed at the same time";
/// ... and the note of its `ReloadNotNeeded` Event.
const COVERED_NOTE: &str =
    "the pod template changed at the same time: the new pods read the new config";
const TIMEOUT: Duration = Duration::from_secs(60);
/// The --debounce of the tests that deliver a config and a template change together. A delivery
/// of two kubectl calls was measured taking up to 1.7 s here (2 cores, parallel tests), and
/// writes further apart than --debounce are two deliveries by design (docs/gitops.md): a wide
/// window keeps these tests about the rule, not about the machine's load.
const DEBOUNCE: Duration = Duration::from_secs(5);
/// The test Reloader's --min-rollout-interval.
const MIN_ROLLOUT_INTERVAL: Duration = Duration::from_secs(1);
/// After the test Reloader's default --debounce (500 ms) and --min-rollout-interval together: a
/// rollout kube-reloader were about to make by mistake would have been made by then.
const SETTLE: Duration = Duration::from_secs(2);

fn debounce_arg(window: Duration) -> String {
    format!("--debounce={}ms", window.as_millis())
}

/// How a GitOps tool writes the config and the workload of one commit.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// Two applies back to back, the config first (Argo CD orders a sync by kind: ConfigMaps and
    /// Secrets before workloads).
    ConfigFirst,
    /// Two applies back to back, the workload first.
    WorkloadFirst,
    /// One apply of both objects, the config first, as `kustomize build` and `helm template`
    /// print them.
    OneApply,
}

impl Order {
    const ALL: [Order; 3] = [Order::ConfigFirst, Order::WorkloadFirst, Order::OneApply];

    /// Distinct names per order let all three run at once in one namespace.
    fn tag(self) -> &'static str {
        match self {
            Order::ConfigFirst => "a",
            Order::WorkloadFirst => "b",
            Order::OneApply => "c",
        }
    }
}

/// Applies the objects server-side in one kubectl call, as a GitOps tool's field manager: one
/// object, or a `List` of several, which kubectl applies in order.
async fn apply(ns: &TestNs, objects: &[&Value]) {
    let input = match objects {
        [one] => one.to_string(),
        _ => json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string(),
    };
    // No client-side validation: it downloads the whole OpenAPI schema on every call, which
    // spaces two applies seconds apart on a loaded machine; the API server validates anyway.
    let args = [
        "apply",
        "--server-side",
        "--field-manager=gitops",
        "--validate=false",
        "-f",
        "-",
    ];
    kubectl(ns, &args, &input).await;
}

/// Delivers one commit's config and workload in this order, and checks it was one delivery for
/// kube-reloader: both writes inside the --debounce window of these tests, or they prove
/// nothing. Returns `what` (the case, for failure messages) with the order and how long it took.
async fn deliver(
    ns: &TestNs,
    order: Order,
    (config, workload): (&Value, &Value),
    what: &str,
) -> String {
    let start = Instant::now();
    match order {
        Order::ConfigFirst => {
            apply(ns, &[config]).await;
            apply(ns, &[workload]).await;
        }
        Order::WorkloadFirst => {
            apply(ns, &[workload]).await;
            apply(ns, &[config]).await;
        }
        Order::OneApply => apply(ns, &[config, workload]).await,
    }
    let took = start.elapsed();
    assert!(
        took < DEBOUNCE,
        "{what}: delivering {order:?} took {took:?}, longer than --debounce={DEBOUNCE:?}: the machine is too loaded for this test"
    );
    format!("{what}, delivered {order:?} in {took:?}")
}

/// Waits for the state a delivery starts from: kube-reloader's baseline on the workload, and the
/// first revision its controller made.
async fn deployed(ns: &TestNs, kind: Kind, name: &str) {
    workloads::baseline(ns, kind, name).await;
    workloads::settled_revision(ns, kind, name).await;
}

/// The outcome of a delivery that changed a config and the pod template together, under a
/// kube-reloader with this --debounce: kube-reloader recorded the new baseline (log line,
/// `ReloadNotNeeded` Event) and rolled nothing itself, so the workload had exactly one rollout,
/// its controller's. `what` names the case in failures.
async fn rolled_once_by_kubernetes(
    ns: &TestNs,
    reloader: &Reloader,
    (kind, name): (Kind, &str),
    debounce: Duration,
    what: &str,
) {
    reloader
        .wait_count(&[COVERED, &format!("name={name}")], 1)
        .await;
    let notes = wait_for("a ReloadNotNeeded Event", TIMEOUT, || async {
        let notes = events(ns, name, "ReloadNotNeeded").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(
        notes.iter().any(|n| n.contains(COVERED_NOTE)),
        "{what}: {notes:?}"
    );
    // Long enough for a rollout of kube-reloader's own that a later window would bring.
    tokio::time::sleep(debounce + MIN_ROLLOUT_INTERVAL).await;
    assert_eq!(
        workloads::rollouts(ns, kind, name).await,
        1,
        "{what}: rollouts"
    );
    let reloaded = events(ns, name, "Reloaded").await;
    assert!(
        reloaded.is_empty(),
        "{what}: kube-reloader rolled: {reloaded:?}"
    );
}

/// What a kustomize generator makes.
#[derive(Clone, Copy, Debug)]
enum Generated {
    /// configMapGenerator
    ConfigMap,
    /// secretGenerator
    Secret,
}

impl Generated {
    fn kind(self) -> &'static str {
        match self {
            Generated::ConfigMap => "ConfigMap",
            Generated::Secret => "Secret",
        }
    }

    /// The generated object `name` holding `LEVEL=<level>`, as `kustomize build` prints it.
    fn object(self, name: &str, level: &str) -> Value {
        match self {
            Generated::ConfigMap => json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": {"LEVEL": level},
            }),
            Generated::Secret => json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name},
                "type": "Opaque",
                // ByteString serializes as base64, as `data` holds it.
                "data": {"LEVEL": ByteString(level.as_bytes().to_vec())},
            }),
        }
    }

    /// A pod spec taking all of the object `name` as environment variables.
    fn env_from(self, name: &str) -> Value {
        match self {
            Generated::ConfigMap => workloads::env_from_configmap(name),
            Generated::Secret => workloads::pod_spec(
                json!({"envFrom": [{"secretRef": {"name": name}}]}),
                json!([]),
            ),
        }
    }
}

/// A kustomize generator's rename: the workload `<kind>-<order>` uses the generated
/// `…-cfg-aaa`; one commit changes the generator's input, so kustomize makes `…-cfg-bbb` (a new
/// hash suffix) and points the workload at it. One rollout, and kube-reloader tracks the new
/// object from then on.
async fn generator_rename(
    ns: &TestNs,
    reloader: &Reloader,
    kind: Kind,
    generated: Generated,
    order: Order,
) {
    let name = format!("{}-{}", format!("{kind:?}").to_lowercase(), order.tag());
    let (old, new) = (format!("{name}-cfg-aaa"), format!("{name}-cfg-bbb"));
    let workload = |config: &str| {
        workloads::manifest(
            kind,
            &name,
            json!({AUTO: "true"}),
            generated.env_from(config),
        )
    };
    apply(ns, &[&generated.object(&old, "info"), &workload(&old)]).await;
    deployed(ns, kind, &name).await;

    let commit = (&generated.object(&new, "debug"), &workload(&new));
    let what = format!("{kind:?} {name}, {old} renamed {new}");
    let what = deliver(ns, order, commit, &what).await;

    rolled_once_by_kubernetes(ns, reloader, (kind, &name), DEBOUNCE, &what).await;
    let tracked = workloads::annotation(ns, kind, &name, TRACKED, false)
        .await
        .unwrap_or_default();
    assert!(
        tracked.contains(&format!("{}/{new}=", generated.kind())) && !tracked.contains(&old),
        "{what}: tracked {tracked:?}"
    );
}

/// Runs the rename for each kind in each delivery order, all at once, under one kube-reloader.
async fn renames(prefix: &str, kinds: &[Kind], generated: Generated) {
    let ns = TestNs::new(prefix).await;
    let reloader = Reloader::start(&ns, &[&debounce_arg(DEBOUNCE)]);
    let cases = kinds
        .iter()
        .flat_map(|&kind| Order::ALL.map(|order| (kind, order)));
    join_all(cases.map(|(kind, order)| generator_rename(&ns, &reloader, kind, generated, order)))
        .await;
}

#[tokio::test]
async fn a_configmap_generator_rename_is_one_rollout_in_any_delivery_order() {
    renames("kz-cm", &[Kind::Deployment], Generated::ConfigMap).await;
}

#[tokio::test]
async fn a_secret_generator_rename_is_one_rollout_in_any_delivery_order() {
    renames("kz-secret", &[Kind::Deployment], Generated::Secret).await;
}

#[tokio::test]
async fn a_generator_rename_rolls_a_statefulset_and_a_daemonset_once() {
    renames(
        "kz-sts-ds",
        &[Kind::StatefulSet, Kind::DaemonSet],
        Generated::ConfigMap,
    )
    .await;
}

/// A chart's ConfigMap `<name>-config` and its Deployment `name`, which carries the ConfigMap's
/// checksum in its pod template (Helm's `checksum/config: {{ include … | sha256sum }}`).
fn helm_release(name: &str, level: &str) -> (Value, Value) {
    let config = format!("{name}-config");
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": config},
        "data": {"LEVEL": level},
    });
    let checksum = format!("{:x}", Sha256::digest(cm.to_string()));
    let mut deployment = workloads::manifest(
        Kind::Deployment,
        name,
        json!({AUTO: "true"}),
        workloads::env_from_configmap(&config),
    );
    deployment["spec"]["template"]["metadata"]["annotations"] =
        json!({"checksum/config": checksum});
    (cm, deployment)
}

#[tokio::test]
async fn a_helm_checksum_annotation_changed_with_its_configmap_is_one_rollout_in_any_delivery_order()
 {
    let ns = TestNs::new("helm-checksum").await;
    let reloader = Reloader::start(&ns, &[&debounce_arg(DEBOUNCE)]);
    let (ns, reloader) = (&ns, &reloader);
    join_all(Order::ALL.map(|order| async move {
        let name = format!("release-{}", order.tag());
        let (cm, deployment) = helm_release(&name, "info");
        apply(ns, &[&cm, &deployment]).await;
        deployed(ns, Kind::Deployment, &name).await;

        let (cm, deployment) = helm_release(&name, "debug");
        let what = format!("release {name}'s upgrade");
        let what = deliver(ns, order, (&cm, &deployment), &what).await;

        rolled_once_by_kubernetes(ns, reloader, (Kind::Deployment, &name), DEBOUNCE, &what).await;
    }))
    .await;
}

/// Once kube-controller-manager has caught up with all `expected` Deployments of the namespace
/// (each processed and given its first ReplicaSet), the ones that rolled since, with their
/// rollout counts; `None` until then. One list per kind for the whole namespace.
async fn rolled_deployments(ns: &TestNs, expected: usize) -> Option<Vec<String>> {
    let deployments = ns
        .api::<Deployment>()
        .list(&ListParams::default())
        .await
        .ok()?;
    let settled = deployments.items.iter().all(|d| {
        let observed = d.status.as_ref().and_then(|s| s.observed_generation);
        d.metadata.generation.is_some() && d.metadata.generation == observed
    });
    if deployments.items.len() != expected || !settled {
        return None;
    }
    let replicasets = ns
        .api::<ReplicaSet>()
        .list_metadata(&ListParams::default())
        .await
        .ok()?;
    let mut per_deployment: BTreeMap<String, usize> = BTreeMap::new();
    for rs in &replicasets.items {
        for owner in rs.metadata.owner_references.iter().flatten() {
            if owner.kind == "Deployment" {
                *per_deployment.entry(owner.name.clone()).or_default() += 1;
            }
        }
    }
    if per_deployment.len() != expected {
        return None;
    }
    Some(
        per_deployment
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(name, n)| format!("{name}: {} rollouts", n - 1))
            .collect(),
    )
}

#[tokio::test]
async fn hundreds_of_configmaps_and_workloads_created_together_roll_nothing() {
    const WRITERS: usize = 4;
    const PAIRS: usize = 100;
    const TOTAL: usize = WRITERS * PAIRS;
    // A list of hundreds of objects is heavy on a shared control plane: poll once a second.
    const POLL: Duration = Duration::from_secs(1);
    let ns = TestNs::new("bulk").await;
    let reloader = Reloader::start(&ns, &[]);
    reloader.wait_count(&["initial lists complete"], 1).await;

    // As a GitOps tool's first sync of many apps: each ConfigMap, then the Deployment using it.
    let ns = &ns;
    join_all((0..WRITERS).map(|writer| async move {
        for i in 0..PAIRS {
            let name = format!("w{writer}-{i:03}");
            configmap(ns, &name, &[("LEVEL", "info")], json!({})).await;
            let spec = workloads::env_from_configmap(&name);
            workloads::opted_in(ns, Kind::Deployment, &name, spec).await;
        }
    }))
    .await;

    let long = Duration::from_secs(300);
    wait_for(
        &format!("a baseline on all {TOTAL} Deployments"),
        long,
        || async {
            tokio::time::sleep(POLL).await;
            let list = ns
                .api::<Deployment>()
                .list_metadata(&ListParams::default())
                .await
                .ok()?;
            let with_baseline = list
                .items
                .iter()
                .filter(|d| {
                    d.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(HASH))
                })
                .count();
            (with_baseline == TOTAL).then_some(())
        },
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    let rolled = wait_for("kube-controller-manager to settle", long, || async {
        tokio::time::sleep(POLL).await;
        rolled_deployments(ns, TOTAL).await
    })
    .await;
    assert!(rolled.is_empty(), "rolled on first sight: {rolled:#?}");

    let missing: Vec<String> = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("MissingReference"))
        .map(|e| e.note.unwrap_or_default())
        .collect();
    assert!(
        missing.is_empty(),
        "MissingReference for objects that exist: {missing:#?}"
    );
}

/// A ConfigMap `app-config` and the Deployment `web` running `image`, using it.
fn app(level: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app-config"},
        "data": {"LEVEL": level},
    })
}

fn web(image: &str) -> Value {
    let spec = workloads::pod_spec(
        json!({"image": image, "envFrom": [{"configMapRef": {"name": "app-config"}}]}),
        json!([]),
    );
    workloads::manifest(Kind::Deployment, "web", json!({AUTO: "true"}), spec)
}

/// Waits for kube-reloader's rollout of `web` for `app-config` (its `Reloaded` Event naming the
/// ConfigMap), and checks it came on top of the template's: two rollouts, nothing more.
async fn rolled_for_the_config_too(ns: &TestNs) {
    let notes = wait_for("a Reloaded Event", TIMEOUT, || async {
        let notes = events(ns, "web", "Reloaded").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(
        notes.iter().any(|n| n.contains("ConfigMap/app-config")),
        "{notes:?}"
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(workloads::rollouts(ns, Kind::Deployment, "web").await, 2);
}

#[tokio::test]
async fn an_image_bump_and_a_config_change_twenty_seconds_later_are_two_rollouts() {
    let ns = TestNs::new("bump-then-config").await;
    let reloader = Reloader::start(&ns, &[]);
    apply(&ns, &[&app("info"), &web("registry.invalid/app:1")]).await;
    deployed(&ns, Kind::Deployment, "web").await;

    apply(&ns, &[&web("registry.invalid/app:2")]).await;
    let bumped = Instant::now();
    reloader
        .wait_count(&["recorded the pod template's change", "name=web"], 1)
        .await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(bumped.elapsed())).await;
    apply(&ns, &[&app("debug")]).await;

    rolled_for_the_config_too(&ns).await;
    let not_needed = events(&ns, "web", "ReloadNotNeeded").await;
    assert!(not_needed.is_empty(), "{not_needed:?}");
}

#[tokio::test]
async fn a_template_change_inside_the_debounce_window_after_a_config_change_is_one_rollout() {
    let ns = TestNs::new("config-then-template").await;
    let debounce = Duration::from_secs(4);
    let reloader = Reloader::start(&ns, &[&debounce_arg(debounce)]);
    apply(&ns, &[&app("info"), &web("registry.invalid/app:1")]).await;
    deployed(&ns, Kind::Deployment, "web").await;

    apply(&ns, &[&app("debug")]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    apply(&ns, &[&web("registry.invalid/app:2")]).await;

    let what = "ConfigMap changed, then the image 1 s later (--debounce=4s)";
    rolled_once_by_kubernetes(&ns, &reloader, (Kind::Deployment, "web"), debounce, what).await;
}

/// The image bumped, then the config edited 4 s later, both inside one debounce window: the pods
/// of the bump's rollout may have started, and read the config, before the edit. Two rollouts:
/// the bump's, and kube-reloader's for the edit.
#[tokio::test]
async fn a_config_edited_seconds_after_a_template_change_inside_the_window_is_rolled() {
    let ns = TestNs::new("template-then-edit").await;
    let reloader = Reloader::start(&ns, &[&debounce_arg(Duration::from_secs(10))]);
    apply(&ns, &[&app("info"), &web("registry.invalid/app:1")]).await;
    deployed(&ns, Kind::Deployment, "web").await;

    apply(&ns, &[&web("registry.invalid/app:2")]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    configmap(&ns, "app-config", &[("LEVEL", "debug")], json!({})).await;
    rolled_for_the_config_too(&ns).await;
    drop(reloader);
}

/// The same while kube-reloader was down: the image bumped, the config edited 4 s later; back, it
/// rolls the edit (the bump's pods may have read the old config). An edit before the bump is
/// covered by it: one rollout.
#[tokio::test]
async fn changes_made_while_down_are_ordered_by_when_they_were_written() {
    let ns = TestNs::new("down-then-ordered").await;
    let mut reloader = Reloader::start(&ns, &[]);
    apply(&ns, &[&app("info"), &web("registry.invalid/app:1")]).await;
    deployed(&ns, Kind::Deployment, "web").await;
    reloader.kill();

    apply(&ns, &[&web("registry.invalid/app:2")]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    configmap(&ns, "app-config", &[("LEVEL", "debug")], json!({})).await;
    let mut second = Reloader::start(&ns, &[]);
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 2).await;
    second.wait_up_to_date("web", 1).await;
    second.kill();

    // The edit first, then the bump: the bump's pods read the edit.
    configmap(&ns, "app-config", &[("LEVEL", "warn")], json!({})).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    apply(&ns, &[&web("registry.invalid/app:3")]).await;
    let reloader = Reloader::start(&ns, &[]);
    wait_for("the covered change recorded", TIMEOUT, || async {
        let notes = events(&ns, "web", "ReloadNotNeeded").await;
        (!notes.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 3);
    drop(reloader);
}
