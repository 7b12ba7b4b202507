//! The reloader core against the real control plane: opt-in, reference sites, digests, and
//! restart-safe, bounded rollouts. Every test runs its own kube-reloader process in its own
//! namespace and checks what a user would: generations, ReplicaSets, annotations and Events.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube_reloader::rules::digest::{ContentDigest, Entry, WorkloadDigest};
use kube_reloader::rules::references::{ConfigKind, Keys};
use serde_json::{Value, json};

use crate::support::objects::{self, configmap, secret};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, wait_for};

const HASH: &str = "kube-reloader.io/config-hash";
const AUTO: &str = "kube-reloader.io/auto";
const IGNORE: &str = "kube-reloader.io/ignore";
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn each_workload_kind_rolls_when_its_configmap_changes() {
    let ns = TestNs::new("kinds").await;
    configmap(&ns, "cfg", &[("level", "info")], json!({})).await;
    for kind in Kind::ALL {
        let name = format!("{kind:?}").to_lowercase();
        workloads::opted_in(&ns, kind, &name, workloads::env_from_configmap("cfg")).await;
    }
    let reloader = Reloader::start(&ns, &[]);
    let mut before = Vec::new();
    for kind in Kind::ALL {
        let name = format!("{kind:?}").to_lowercase();
        workloads::baseline(&ns, kind, &name).await;
        before.push(workloads::settled_revision(&ns, kind, &name).await);
    }

    configmap(&ns, "cfg", &[("level", "debug")], json!({})).await;

    let want = workloads::expected_hash(&[("cfg", &[("level", "debug")])]);
    for (kind, before) in Kind::ALL.into_iter().zip(before) {
        let name = format!("{kind:?}").to_lowercase();
        workloads::wait_rollouts(&ns, kind, &name, 1).await;
        let after = workloads::settled_revision(&ns, kind, &name).await;
        assert_ne!(
            after, before,
            "{kind:?}: its controller saw no new pod template"
        );
        let template = workloads::annotation(&ns, kind, &name, HASH, true).await;
        assert_eq!(template.as_deref(), Some(want.as_str()), "{kind:?}");
        let notes = objects::events(&ns, &name, "Reloaded").await;
        assert!(
            notes.iter().any(|n| n.contains("ConfigMap/cfg")),
            "{kind:?}: no Reloaded Event naming ConfigMap/cfg: {notes:?}"
        );
        reloader.wait_up_to_date(&name, 1).await;
        assert_eq!(workloads::rollouts(&ns, kind, &name).await, 1, "{kind:?}");
    }
    // The object that changed gets nothing written.
    let cm = ns
        .api::<k8s_openapi::api::core::v1::ConfigMap>()
        .get("cfg")
        .await
        .unwrap();
    assert!(
        cm.metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .all(|m| m.manager.as_deref() != Some("kube-reloader"))
    );
}

/// One opt-in case: a Deployment's annotations and pod spec, the configs it may use, and whether
/// changing all configs rolls it.
struct Case {
    name: &'static str,
    annotations: Value,
    template_annotations: Value,
    pod_spec: Value,
    rolls: bool,
}

fn case(name: &'static str, annotations: Value, pod_spec: Value, rolls: bool) -> Case {
    Case {
        name,
        annotations,
        template_annotations: json!({}),
        pod_spec,
        rolls,
    }
}

/// Runs the cases in one namespace: every case `x` has ConfigMap `x-cm` and Secret `x-s` (plus
/// whatever its pod spec names), all changed at once; then checks which Deployments rolled.
async fn run_cases(prefix: &str, cases: Vec<Case>, extra_args: &[&str], extra: &[(&str, Value)]) {
    let ns = TestNs::new(prefix).await;
    for c in &cases {
        configmap(&ns, &format!("{}-cm", c.name), &[("k", "1")], json!({})).await;
        secret(&ns, &format!("{}-s", c.name), &[("k", "1")], json!({})).await;
    }
    for (name, annotations) in extra {
        configmap(&ns, name, &[("k", "1")], annotations.clone()).await;
    }
    for c in &cases {
        let mut m = workloads::manifest(
            Kind::Deployment,
            c.name,
            c.annotations.clone(),
            c.pod_spec.clone(),
        );
        m["spec"]["template"]["metadata"]["annotations"] = c.template_annotations.clone();
        workloads::create(&ns, Kind::Deployment, m).await;
    }
    let reloader = Reloader::start(&ns, extra_args);
    // Opted-in workloads get a baseline; wait for all of them before changing anything.
    reloader.wait_count(&["initial lists complete"], 1).await;
    for c in cases.iter().filter(|c| c.rolls) {
        workloads::baseline(&ns, Kind::Deployment, c.name).await;
    }

    for c in &cases {
        configmap(&ns, &format!("{}-cm", c.name), &[("k", "2")], json!({})).await;
        objects::update_secret(&ns, &format!("{}-s", c.name), &[("k", "2")]).await;
    }
    for (name, annotations) in extra {
        configmap(&ns, name, &[("k", "2")], annotations.clone()).await;
    }

    for c in cases.iter().filter(|c| c.rolls) {
        workloads::wait_rollouts(&ns, Kind::Deployment, c.name, 1).await;
    }
    // The rolled ones prove the changes were processed; give the others the same chance by
    // waiting for a reconcile of theirs after the change where they have an opt-in at all.
    for c in cases.iter().filter(|c| !c.rolls) {
        if workloads::annotation(&ns, Kind::Deployment, c.name, HASH, false)
            .await
            .is_some()
        {
            reloader.wait_up_to_date(c.name, 1).await;
        }
    }
    let mut wrong = Vec::new();
    for c in &cases {
        let n = workloads::rollouts(&ns, Kind::Deployment, c.name).await;
        if n != u64::from(c.rolls) {
            wrong.push(format!(
                "{}: {n} rollouts, expected {}",
                c.name,
                u64::from(c.rolls)
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn env_cm_and_secret(cm: &str, s: &str) -> Value {
    workloads::pod_spec(
        json!({"envFrom": [{"configMapRef": {"name": cm}}, {"secretRef": {"name": s}}]}),
        json!([]),
    )
}

fn refs(name: &str) -> Value {
    env_cm_and_secret(&format!("{name}-cm"), &format!("{name}-s"))
}

fn no_refs() -> Value {
    workloads::pod_spec(json!({}), json!([]))
}

#[tokio::test]
async fn opt_in_annotations_ours_and_reloaders() {
    let cases = vec![
        case("ours-auto", json!({AUTO: "true"}), refs("ours-auto"), true),
        case(
            "ours-auto-false",
            json!({AUTO: "false"}),
            refs("ours-auto-false"),
            false,
        ),
        case("no-opt-in", json!({}), refs("no-opt-in"), false),
        case(
            "ours-cms",
            json!({"kube-reloader.io/configmaps": "ours-cms-cm, unrelated"}),
            no_refs(),
            true,
        ),
        case(
            "ours-secrets",
            json!({"kube-reloader.io/secrets": "ours-secrets-s"}),
            no_refs(),
            true,
        ),
        case(
            "rl-auto",
            json!({"reloader.stakater.com/auto": "true"}),
            refs("rl-auto"),
            true,
        ),
        case(
            "rl-auto-false",
            json!({"reloader.stakater.com/auto": "false"}),
            refs("rl-auto-false"),
            false,
        ),
        case(
            "rl-cm-auto",
            json!({"configmap.reloader.stakater.com/auto": "true"}),
            env_cm_and_secret("rl-cm-auto-cm", "unchanged"),
            true,
        ),
        case(
            "rl-cm-auto-secret-only",
            json!({"configmap.reloader.stakater.com/auto": "true"}),
            env_cm_and_secret("unchanged", "rl-cm-auto-secret-only-s"),
            false,
        ),
        case(
            "rl-secret-auto",
            json!({"secret.reloader.stakater.com/auto": "true"}),
            env_cm_and_secret("unchanged", "rl-secret-auto-s"),
            true,
        ),
        case(
            "rl-secret-auto-cm-only",
            json!({"secret.reloader.stakater.com/auto": "true"}),
            env_cm_and_secret("rl-secret-auto-cm-only-cm", "unchanged"),
            false,
        ),
        case(
            "rl-cm-reload",
            json!({"configmap.reloader.stakater.com/reload": "rl-cm-reload-cm"}),
            no_refs(),
            true,
        ),
        case(
            "rl-cm-regex",
            json!({"configmap.reloader.stakater.com/reload": "rx-[0-9]+"}),
            no_refs(),
            true,
        ),
        case(
            "rl-regex-anchored",
            json!({"configmap.reloader.stakater.com/reload": "x-[0-9]+"}),
            no_refs(),
            false,
        ),
        case(
            "rl-secret-reload",
            json!({"secret.reloader.stakater.com/reload": "rl-secret-reload-s"}),
            no_refs(),
            true,
        ),
        case(
            "rl-search",
            json!({"reloader.stakater.com/search": "true"}),
            env_cm_and_secret("matched", "unchanged"),
            true,
        ),
        case(
            "rl-search-nomatch",
            json!({"reloader.stakater.com/search": "true"}),
            refs("rl-search-nomatch"),
            false,
        ),
        case(
            "rl-exclude",
            json!({"reloader.stakater.com/auto": "true",
                   "configmaps.exclude.reloader.stakater.com/reload": "rl-exclude-cm",
                   "secrets.exclude.reloader.stakater.com/reload": "rl-exclude-s"}),
            refs("rl-exclude"),
            false,
        ),
        case(
            "ignored",
            json!({AUTO: "true"}),
            env_cm_and_secret("ignored-by-us", "unchanged"),
            false,
        ),
        case(
            "rl-ignored",
            json!({"reloader.stakater.com/auto": "true"}),
            env_cm_and_secret("ignored-by-reloader", "unchanged"),
            false,
        ),
        Case {
            name: "rl-template",
            annotations: json!({}),
            template_annotations: json!({"reloader.stakater.com/auto": "true"}),
            pod_spec: refs("rl-template"),
            rolls: true,
        },
    ];
    let extra = [
        ("rx-1", json!({})),
        ("matched", json!({"reloader.stakater.com/match": "true"})),
        ("ignored-by-us", json!({"kube-reloader.io/ignore": "true"})),
        (
            "ignored-by-reloader",
            json!({"reloader.stakater.com/ignore": "true"}),
        ),
    ];
    run_cases("optin", cases, &[], &extra).await;
}

#[tokio::test]
async fn reloader_compatibility_can_be_turned_off() {
    let cases = vec![
        case("ours", json!({AUTO: "true"}), refs("ours"), true),
        case(
            "rl-auto",
            json!({"reloader.stakater.com/auto": "true"}),
            refs("rl-auto"),
            false,
        ),
        case(
            "rl-reload",
            json!({"configmap.reloader.stakater.com/reload": "rl-reload-cm"}),
            no_refs(),
            false,
        ),
        // Reloader's ignore does not count either: this one rolls.
        case(
            "rl-ignore-unhonoured",
            json!({AUTO: "true"}),
            env_cm_and_secret("ignored-by-reloader", "unchanged"),
            true,
        ),
    ];
    let extra = [(
        "ignored-by-reloader",
        json!({"reloader.stakater.com/ignore": "true"}),
    )];
    run_cases("nocompat", cases, &["--reloader-compat=false"], &extra).await;
}

#[tokio::test]
async fn every_reference_site_is_tracked() {
    let c = |name: &'static str, container: Value, volumes: Value, rolls: bool| {
        case(
            name,
            json!({AUTO: "true"}),
            workloads::pod_spec(container, volumes),
            rolls,
        )
    };
    let cases = vec![
        c(
            "vol-cm",
            json!({}),
            json!([{"name": "v", "configMap": {"name": "vol-cm-cm"}}]),
            true,
        ),
        c(
            "vol-cm-items",
            json!({}),
            json!([{"name": "v", "configMap": {"name": "vol-cm-items-cm", "items": [{"key": "k", "path": "k"}]}}]),
            true,
        ),
        c(
            "vol-secret",
            json!({}),
            json!([{"name": "v", "secret": {"secretName": "vol-secret-s"}}]),
            true,
        ),
        c(
            "proj-cm",
            json!({}),
            json!([{"name": "v", "projected": {"sources": [{"configMap": {"name": "proj-cm-cm"}}]}}]),
            true,
        ),
        c(
            "proj-secret",
            json!({}),
            json!([{"name": "v", "projected": {"sources": [{"secret": {"name": "proj-secret-s"}}]}}]),
            true,
        ),
        c(
            "env-cm-key",
            json!({"env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "env-cm-key-cm", "key": "k"}}}]}),
            json!([]),
            true,
        ),
        c(
            "env-secret-key",
            json!({"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "env-secret-key-s", "key": "k"}}}]}),
            json!([]),
            true,
        ),
        c(
            "envfrom-cm",
            json!({"envFrom": [{"configMapRef": {"name": "envfrom-cm-cm"}}]}),
            json!([]),
            true,
        ),
        c(
            "envfrom-secret",
            json!({"envFrom": [{"secretRef": {"name": "envfrom-secret-s"}}]}),
            json!([]),
            true,
        ),
        case(
            "init",
            json!({AUTO: "true"}),
            json!({
                "initContainers": [{"name": "init", "image": "registry.invalid/init:1",
                    "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
                "containers": [{"name": "app", "image": "registry.invalid/app:1"}]
            }),
            true,
        ),
        case(
            "pull-secret",
            json!({AUTO: "true"}),
            json!({"containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                   "imagePullSecrets": [{"name": "pull-secret-s"}]}),
            false,
        ),
    ];
    run_cases("sites", cases, &[], &[]).await;
}

#[tokio::test]
async fn a_key_the_workload_does_not_use_rolls_nothing_and_a_used_one_does() {
    let ns = TestNs::new("keys").await;
    configmap(&ns, "cfg", &[("used", "1"), ("unused", "1")], json!({})).await;
    let spec = workloads::pod_spec(
        json!({"env": [{"name": "U", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "used"}}}]}),
        json!([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "used", "path": "u"}]}}]),
    );
    workloads::deployment(&ns, "web", json!({AUTO: "true"}), spec).await;
    let reloader = Reloader::start(&ns, &[]);
    let first = workloads::baseline(&ns, Kind::Deployment, "web").await;

    configmap(&ns, "cfg", &[("used", "1"), ("unused", "2")], json!({})).await;
    reloader.wait_up_to_date("web", 2).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 0);
    assert_eq!(
        workloads::baseline(&ns, Kind::Deployment, "web").await,
        first
    );

    configmap(&ns, "cfg", &[("used", "2"), ("unused", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
}

#[tokio::test]
async fn metadata_only_change_does_not_roll() {
    let ns = TestNs::new("meta").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    configmap(&ns, "canary", &[("k", "1")], json!({})).await;
    workloads::deployment(
        &ns,
        "web",
        json!({AUTO: "true"}),
        workloads::env_from_configmap("cfg"),
    )
    .await;
    workloads::deployment(
        &ns,
        "canary",
        json!({AUTO: "true"}),
        workloads::env_from_configmap("canary"),
    )
    .await;
    let _reloader = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    workloads::baseline(&ns, Kind::Deployment, "canary").await;

    configmap(
        &ns,
        "cfg",
        &[("k", "1")],
        json!({"team": "payments", "note": "relabelled"}),
    )
    .await;
    // ConfigMap events arrive in order on one watch: once the canary's later change has rolled,
    // the metadata change before it has been seen.
    configmap(&ns, "canary", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "canary", 1).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 0);
}

#[tokio::test]
async fn absent_then_created_rolls_and_delete_recreate_does_not() {
    let ns = TestNs::new("absent").await;
    let spec = workloads::pod_spec(
        json!({"envFrom": [{"configMapRef": {"name": "late", "optional": true}}]}),
        json!([]),
    );
    workloads::deployment(&ns, "web", json!({AUTO: "true"}), spec).await;
    let reloader = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 0);

    configmap(&ns, "late", &[("k", "1")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    reloader.wait_up_to_date("web", 1).await;

    objects::delete_configmap(&ns, "late").await;
    reloader
        .wait_count(&["tracked objects were deleted", "name=web"], 1)
        .await;
    configmap(&ns, "late", &[("k", "1")], json!({})).await;
    reloader.wait_up_to_date("web", 2).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
}

#[tokio::test]
async fn installing_over_existing_workloads_rolls_nothing() {
    let ns = TestNs::new("install").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    secret(&ns, "creds", &[("password", "p")], json!({})).await;
    let spec = env_cm_and_secret("cfg", "creds");
    for kind in Kind::ALL {
        let name = format!("{kind:?}").to_lowercase();
        workloads::opted_in(&ns, kind, &name, spec.clone()).await;
    }
    let _reloader = Reloader::start(&ns, &[]);
    for kind in Kind::ALL {
        let name = format!("{kind:?}").to_lowercase();
        workloads::baseline(&ns, kind, &name).await;
        assert_eq!(workloads::rollouts(&ns, kind, &name).await, 0, "{kind:?}");
        assert_eq!(
            workloads::annotation(&ns, kind, &name, HASH, true).await,
            None
        );
    }
}

#[tokio::test]
async fn restart_without_changes_writes_nothing_and_a_change_while_down_rolls_once() {
    let ns = TestNs::new("restart").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    secret(&ns, "creds", &[("password", "p")], json!({})).await;
    workloads::deployment(
        &ns,
        "web",
        json!({AUTO: "true"}),
        env_cm_and_secret("cfg", "creds"),
    )
    .await;
    let mut first = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    first.wait_up_to_date("web", 1).await;
    first.kill();
    // The generation moves on every metadata or spec write (on this apiserver even
    // annotation-only ones), but not on kube-controller-manager's status updates.
    let written = |v: &Value| {
        (
            v["metadata"]["generation"].clone(),
            v["metadata"]["annotations"].clone(),
        )
    };
    let before = written(&workloads::get(&ns, Kind::Deployment, "web").await);

    // Restart with nothing changed: reconciled, nothing written.
    let mut second = Reloader::start(&ns, &[]);
    second.wait_up_to_date("web", 1).await;
    let after = written(&workloads::get(&ns, Kind::Deployment, "web").await);
    assert_eq!(after, before, "the restart wrote to the workload");
    assert_eq!(
        second.count(&["recorded the baseline"]) + second.count(&["rolled out"]),
        0
    );
    second.kill();

    // A change made while it is down: exactly one rollout after it starts.
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    let third = Reloader::start(&ns, &[]);
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    third.wait_up_to_date("web", 1).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
}

#[tokio::test]
async fn several_configs_changed_together_roll_once() {
    let ns = TestNs::new("together").await;
    for c in ["a", "b", "c"] {
        configmap(&ns, c, &[("k", "1")], json!({})).await;
    }
    let spec = workloads::pod_spec(
        json!({"envFrom": [{"configMapRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}, {"configMapRef": {"name": "c"}}]}),
        json!([]),
    );
    workloads::deployment(&ns, "web", json!({AUTO: "true"}), spec).await;
    let reloader = Reloader::start(&ns, &["--debounce=2s"]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;

    // The workload itself changes inside the debounce window too: the reconcile that this
    // triggers sees `a` changed already, and must leave the rollout to the window's end.
    configmap(&ns, "a", &[("k", "2")], json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let touch = json!({"metadata": {"labels": {"touched": "yes"}}});
    ns.api::<Deployment>()
        .patch("web", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("label the Deployment");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in ["b", "c"] {
        configmap(&ns, c, &[("k", "2")], json!({})).await;
    }
    let k2: &[(&str, &str)] = &[("k", "2")];
    let want = workloads::expected_hash(&[("a", k2), ("b", k2), ("c", k2)]);
    wait_for("all three changes to be rolled out", TIMEOUT, || async {
        let t = workloads::annotation(&ns, Kind::Deployment, "web", HASH, true).await?;
        (t == want).then_some(())
    })
    .await;
    reloader.wait_up_to_date("web", 1).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 1);
    let notes = objects::events(&ns, "web", "Reloaded").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    for c in ["ConfigMap/a", "ConfigMap/b", "ConfigMap/c"] {
        assert!(notes[0].contains(c), "{notes:?}");
    }
}

#[tokio::test]
async fn a_config_rewritten_every_second_rolls_a_bounded_number_of_times_and_ends_current() {
    let ns = TestNs::new("storm").await;
    configmap(&ns, "cfg", &[("n", "0")], json!({})).await;
    workloads::deployment(
        &ns,
        "web",
        json!({AUTO: "true"}),
        workloads::env_from_configmap("cfg"),
    )
    .await;
    // The defaults: --debounce=2s, --min-rollout-interval=10s.
    let reloader = Reloader::start(&ns, &["--debounce=2s", "--min-rollout-interval=10s"]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;

    let mut last = String::new();
    let start = std::time::Instant::now();
    for i in 1..=120 {
        last = i.to_string();
        configmap(&ns, "cfg", &[("n", &last)], json!({})).await;
        let next = start + Duration::from_secs(i);
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
    let want = workloads::expected_hash(&[("cfg", &[("n", &last)])]);
    wait_for("the final content to be rolled out", TIMEOUT, || async {
        let t = workloads::annotation(&ns, Kind::Deployment, "web", HASH, true).await?;
        (t == want).then_some(())
    })
    .await;
    let n = workloads::rollouts(&ns, Kind::Deployment, "web").await;
    assert!((2..=13).contains(&n), "{n} rollouts in two minutes");
    drop(reloader);
}

#[tokio::test]
async fn a_secret_digest_is_keyed_not_a_plain_sha256_of_its_data() {
    let ns = TestNs::new("secret").await;
    secret(&ns, "creds", &[("password", "hunter2")], json!({})).await;
    let spec = workloads::pod_spec(
        json!({"envFrom": [{"secretRef": {"name": "creds"}}]}),
        json!([]),
    );
    workloads::deployment(&ns, "web", json!({AUTO: "true"}), spec).await;
    let _reloader = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;

    objects::update_secret(&ns, "creds", &[("password", "correct horse")]).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    let recorded = workloads::annotation(&ns, Kind::Deployment, "web", HASH, true)
        .await
        .expect("template hash");
    // What an unkeyed digest of the same data would be, by our own encoding and by a plain
    // SHA-256 of the value.
    let unkeyed =
        ContentDigest::new(None, [("password", &b"correct horse"[..])]).select(&Keys::All);
    let unkeyed = WorkloadDigest::new(
        vec![Entry {
            kind: ConfigKind::Secret,
            name: "creds".into(),
            digest: Some(unkeyed),
        }],
        "x",
    );
    let (hash, key_id) = recorded.split_once('@').expect("a key id is recorded");
    assert_ne!(hash, unkeyed.hash);
    assert_eq!(key_id.len(), 8);
    let tracked = workloads::annotation(
        &ns,
        Kind::Deployment,
        "web",
        "kube-reloader.io/tracked",
        false,
    )
    .await
    .unwrap();
    assert!(
        !tracked
            .contains(&kube_reloader::rules::digest::hex(&unkeyed_sha256("correct horse"))[..10])
    );
    assert!(!recorded.contains("correct horse") && !tracked.contains("correct horse"));
}

fn unkeyed_sha256(v: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(v.as_bytes()).into()
}

#[tokio::test]
async fn losing_the_key_rebaselines_without_rolling() {
    let ns = TestNs::new("keyloss").await;
    secret(&ns, "creds", &[("password", "p")], json!({})).await;
    let spec = workloads::pod_spec(
        json!({"envFrom": [{"secretRef": {"name": "creds"}}]}),
        json!([]),
    );
    workloads::deployment(&ns, "web", json!({AUTO: "true"}), spec).await;
    let mut first = Reloader::start(&ns, &[]);
    let before = workloads::baseline(&ns, Kind::Deployment, "web").await;
    first.kill();

    ns.api::<Secret>()
        .delete("kube-reloader-key", &DeleteParams::default())
        .await
        .expect("delete the key Secret");
    let second = Reloader::start(&ns, &[]);
    let after = wait_for("a new baseline under the new key", TIMEOUT, || async {
        let now = workloads::annotation(&ns, Kind::Deployment, "web", HASH, false).await?;
        (now != before).then_some(now)
    })
    .await;
    assert_ne!(
        before.split_once('@').map(|p| p.1),
        after.split_once('@').map(|p| p.1)
    );
    second.wait_up_to_date("web", 1).await;
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 0);
    assert!(objects::events(&ns, "web", "Reloaded").await.is_empty());
}

#[tokio::test]
async fn a_malformed_annotation_gets_a_warning_event_and_nothing_is_patched() {
    let ns = TestNs::new("malformed").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({})).await;
    workloads::deployment(
        &ns,
        "bad-bool",
        json!({AUTO: "yes"}),
        workloads::env_from_configmap("cfg"),
    )
    .await;
    workloads::deployment(
        &ns,
        "bad-list",
        json!({"kube-reloader.io/configmaps": "a,,b"}),
        workloads::env_from_configmap("cfg"),
    )
    .await;
    workloads::deployment(
        &ns,
        "bad-regex",
        json!({"configmap.reloader.stakater.com/reload": "cfg(["}),
        workloads::env_from_configmap("cfg"),
    )
    .await;
    workloads::deployment(
        &ns,
        "good",
        json!({AUTO: "true"}),
        workloads::env_from_configmap("cfg"),
    )
    .await;
    let _reloader = Reloader::start(&ns, &[]);
    for (name, annotation) in [
        ("bad-bool", "kube-reloader.io/auto"),
        ("bad-list", "kube-reloader.io/configmaps"),
        ("bad-regex", "configmap.reloader.stakater.com/reload"),
    ] {
        let notes = wait_for(
            &format!("an InvalidAnnotation Event on {name}"),
            TIMEOUT,
            || async {
                let n = objects::events(&ns, name, "InvalidAnnotation").await;
                (!n.is_empty()).then_some(n)
            },
        )
        .await;
        assert!(notes[0].contains(annotation), "{notes:?}");
    }
    // The valid workload beside them is served.
    workloads::baseline(&ns, Kind::Deployment, "good").await;
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "good", 1).await;
    for name in ["bad-bool", "bad-list", "bad-regex"] {
        let v = workloads::get(&ns, Kind::Deployment, name).await;
        assert_eq!(
            v["metadata"]["annotations"][HASH],
            Value::Null,
            "{name} was patched"
        );
        assert_eq!(
            workloads::rollouts(&ns, Kind::Deployment, name).await,
            0,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_malformed_ignore_on_a_used_config_gets_one_warning_and_counts_as_not_set() {
    let ns = TestNs::new("badignore").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    configmap(&ns, "cfg", &[("k", "1")], json!({IGNORE: "yes"})).await;
    let reloader = Reloader::start(&ns, &[]);
    let notes = wait_for("an InvalidAnnotation Event on web", TIMEOUT, || async {
        let n = objects::events(&ns, "web", "InvalidAnnotation").await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert!(
        notes[0].contains("ConfigMap cfg") && notes[0].contains(IGNORE),
        "{notes:?}"
    );
    // Not ignored: a change rolls; and the warning is not repeated on every reconcile.
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    configmap(&ns, "cfg", &[("k", "2")], json!({IGNORE: "yes"})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    assert_eq!(
        reloader.count(&["has annotation", IGNORE, "counts as not set"]),
        1,
        "{}",
        reloader.logs()
    );
}
