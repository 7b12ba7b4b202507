//! The switch from stakater Reloader, as docs/migrating-from-reloader.md tells it, on the test
//! control plane: (a) the inventory with `explain --all`, (b) kube-reloader with `--dry-run`
//! beside Reloader, (c) Reloader gone and kube-reloader writing. Reloader itself cannot run here;
//! it stands in as the writes it makes when it rolls a workload (its `STAKATER_…` environment
//! variable, or its `last-reloaded-from` template annotation), made the moment a config changes,
//! as Reloader makes them.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::kinds;
use crate::support::objects::{self, configmap, secret};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, kubectl, wait_for};

const HASH: &str = "kube-reloader.io/config-hash";
const TIMEOUT: Duration = Duration::from_secs(60);
/// Reloader's env-vars strategy: the SHA1 of the ConfigMap `app-config` it last rolled `web` for.
const STAKATER_ENV: &str = "STAKATER_APP_CONFIG_CONFIGMAP";
/// Reloader's annotations strategy: what it last rolled `db` for, on the pod template.
const LAST_RELOADED_FROM: &str = "reloader.stakater.com/last-reloaded-from";

/// The workloads of the scenario: kind, name, and whether kube-reloader rolls it.
const WORKLOADS: [(Kind, &str); 6] = [
    (Kind::Deployment, "web"),
    (Kind::StatefulSet, "db"),
    (Kind::DaemonSet, "worker"),
    (Kind::Deployment, "api"),
    (Kind::Deployment, "plain"),
    (Kind::Deployment, "typo"),
];

/// `kube-reloader GLOBAL… explain --all ARGS…` against the test namespace (`-n` unless `-A` is
/// among `args`): whether it succeeded, and its output.
fn explain_all(ns: &TestNs, global: &[&str], args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-reloader"));
    cmd.arg(format!("--controller-namespace={}", ns.name))
        .args(global)
        .args(["explain", "--all"])
        .args(args)
        .env("KUBECONFIG", &ns.kubeconfig);
    if !args.contains(&"-A") {
        cmd.args(["-n", &ns.name]);
    }
    let out = cmd.output().expect("run explain --all");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `explain --all -o json` of the test namespace.
fn inventory(ns: &TestNs, global: &[&str]) -> Value {
    let (ok, text) = explain_all(ns, global, &["-o", "json"]);
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The inventory's lines as (kind, name, state), in its order.
fn states(inv: &Value) -> Vec<(String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    inv["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| (s(&w["kind"]), s(&w["name"]), s(&w["state"])))
        .collect()
}

/// The objects an inventory line tracks, as `Kind/name`.
fn tracks(inv: &Value, name: &str) -> Vec<String> {
    let w = inv["workloads"]
        .as_array()
        .and_then(|a| a.iter().find(|w| w["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {inv:#}"));
    w["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["tracked"] == true)
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// A table line of `explain --all`, its columns joined by single spaces.
fn line(text: &str, workload: &str) -> String {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(workload))
        .unwrap_or_else(|| panic!("no line for {workload} in:\n{text}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reloader rolling `web` (env-vars strategy): its strategic-merge patch of the variable on the
/// container, with its field manager.
async fn reloader_rolls_web(ns: &TestNs, sha1: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": STAKATER_ENV, "value": sha1}]}
    ]}}}});
    let pp = PatchParams {
        field_manager: Some("Reloader".into()),
        ..PatchParams::default()
    };
    ns.api::<Deployment>()
        .patch("web", &pp, &Patch::Strategic(&patch))
        .await
        .expect("Reloader's patch of web");
}

/// Reloader rolling `db` (annotations strategy): its annotation on the pod template.
async fn reloader_rolls_db(ns: &TestNs, sha1: &str, observed_at: u64) {
    let from = json!({"type": "CONFIGMAP", "name": "db-config", "namespace": ns.name,
        "hash": sha1, "containerRefs": ["app"], "observedAt": observed_at});
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        LAST_RELOADED_FROM: from.to_string()
    }}}}});
    let pp = PatchParams {
        field_manager: Some("Reloader".into()),
        ..PatchParams::default()
    };
    ns.api::<StatefulSet>()
        .patch("db", &pp, &Patch::Strategic(&patch))
        .await
        .expect("Reloader's patch of db");
}

/// Every workload's resourceVersion.
async fn resource_versions(ns: &TestNs) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    for (kind, name) in WORKLOADS {
        let v = workloads::get(ns, kind, name).await;
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        out.insert(name, rv.to_string());
    }
    out
}

/// Every workload's rollouts so far (ReplicaSets or ControllerRevisions beyond the first).
async fn rollouts(ns: &TestNs) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for (kind, name) in WORKLOADS {
        out.insert(name, workloads::rollouts(ns, kind, name).await);
    }
    out
}

/// Nothing of kube-reloader's on any workload: no field it manages, none of the annotations it
/// writes in the metadata or the pod template.
async fn untouched_by_kube_reloader(ns: &TestNs) {
    for (kind, name) in WORKLOADS {
        let v = workloads::get(ns, kind, name).await;
        let managers: Vec<&str> = v["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert!(!managers.contains(&"kube-reloader"), "{name}: {managers:?}");
        for meta in [&v["metadata"], &v["spec"]["template"]["metadata"]] {
            let ours: Vec<&String> = meta["annotations"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .filter(|k| workloads::WRITTEN.contains(&k.as_str()))
                .collect();
            assert!(ours.is_empty(), "{name} carries {ours:?}");
        }
    }
}

#[tokio::test]
async fn migrating_from_reloader_with_a_dry_run_first_restarts_nothing() {
    let ns = TestNs::new("migrate").await;
    for cm in ["app-config", "worker-config", "api-config", "db-config"] {
        configmap(&ns, cm, &[("k", "1")], json!({})).await;
    }
    secret(&ns, "db-creds", &[("password", "p")], json!({})).await;
    let env_from = |cm: &str| json!([{"configMapRef": {"name": cm}}]);
    // web: Reloader's auto, rolled by Reloader before (its variable is in the template).
    let web = workloads::pod_spec(
        json!({"envFrom": env_from("app-config"),
               "env": [{"name": STAKATER_ENV, "value": "5d41402abc4b2a76b9719d911017c592ae1bc8f1"}]}),
        json!([]),
    );
    let reloader_auto = json!({"reloader.stakater.com/auto": "true"});
    workloads::deployment(&ns, "web", reloader_auto.clone(), web).await;
    // db: Reloader's named lists (it references neither), annotations strategy.
    let lists = json!({"configmap.reloader.stakater.com/reload": "db-config",
                       "secret.reloader.stakater.com/reload": "db-creds"});
    let mut db = workloads::manifest(
        Kind::StatefulSet,
        "db",
        lists,
        workloads::pod_spec(json!({}), json!([])),
    );
    db["spec"]["template"]["metadata"]["annotations"] =
        json!({LAST_RELOADED_FROM: "{\"type\":\"CONFIGMAP\",\"name\":\"db-config\"}"});
    workloads::create(&ns, Kind::StatefulSet, db).await;
    // worker: Reloader's auto on its pod template.
    let mut worker = workloads::manifest(
        Kind::DaemonSet,
        "worker",
        json!({}),
        workloads::pod_spec(json!({"envFrom": env_from("worker-config")}), json!([])),
    );
    worker["spec"]["template"]["metadata"]["annotations"] = reloader_auto;
    workloads::create(&ns, Kind::DaemonSet, worker).await;
    // api: already ours. plain: not opted in. typo: "True", which Reloader takes and we do not.
    let uses_app = workloads::env_from_configmap("app-config");
    workloads::opted_in(
        &ns,
        Kind::Deployment,
        "api",
        workloads::env_from_configmap("api-config"),
    )
    .await;
    workloads::deployment(&ns, "plain", json!({}), uses_app.clone()).await;
    let typo = json!({"reloader.stakater.com/auto": "True"});
    workloads::deployment(&ns, "typo", typo, uses_app).await;
    for (kind, name) in WORKLOADS {
        workloads::settled_revision(&ns, kind, name).await;
    }

    // (a) The inventory: exactly the opted-in workloads, none of them with a baseline yet.
    let inv = inventory(&ns, &[]);
    let state = |kind: &str, name: &str, state: &str| {
        (kind.to_string(), name.to_string(), state.to_string())
    };
    let fresh = [
        state("Deployment", "api", "no-baseline"),
        state("Deployment", "typo", "invalid"),
        state("Deployment", "web", "no-baseline"),
        state("StatefulSet", "db", "no-baseline"),
        state("DaemonSet", "worker", "no-baseline"),
    ];
    assert_eq!(states(&inv), fresh, "{inv:#}");
    assert_eq!(inv["not_opted_in"], 1, "{inv:#}");
    assert_eq!(inv["namespace"], ns.name.as_str());
    // Every Kubernetes release the tests run serves batch/v1 CronJobs (since 1.21); whether the
    // Argo Rollout CRD is there depends on which other test applied it first.
    let not_served = inv["not_served"].as_array().unwrap();
    assert!(
        not_served
            .iter()
            .all(|k| k == "argoproj.io/v1alpha1/Rollout"),
        "{inv:#}"
    );
    assert_eq!(tracks(&inv, "web"), ["ConfigMap/app-config"]);
    assert_eq!(
        tracks(&inv, "db"),
        ["ConfigMap/db-config", "Secret/db-creds"]
    );
    assert_eq!(tracks(&inv, "worker"), ["ConfigMap/worker-config"]);
    assert_eq!(tracks(&inv, "api"), ["ConfigMap/api-config"]);
    let db_opt_in = &inv["workloads"][3]["opt_in"]["Ok"];
    assert_eq!(
        db_opt_in,
        &json!([
            "configmap.reloader.stakater.com/reload=db-config",
            "secret.reloader.stakater.com/reload=db-creds"
        ]),
        "what Reloader wrote is not an opt-in: {inv:#}"
    );

    let (ok, text) = explain_all(&ns, &[], &[]);
    assert!(ok, "{text}");
    assert_eq!(line(&text, "WORKLOAD"), "WORKLOAD OPT-IN TRACKS STATE");
    assert_eq!(
        line(&text, "deployment/web"),
        "deployment/web reloader:auto ConfigMap/app-config no baseline yet"
    );
    assert_eq!(
        line(&text, "statefulset/db"),
        "statefulset/db reloader:configmap.reload=db-config, reloader:secret.reload=db-creds \
         ConfigMap/db-config, Secret/db-creds no baseline yet"
    );
    assert_eq!(
        line(&text, "daemonset/worker"),
        "daemonset/worker reloader:auto (pod template) ConfigMap/worker-config no baseline yet"
    );
    assert_eq!(
        line(&text, "deployment/api"),
        "deployment/api auto ConfigMap/api-config no baseline yet"
    );
    assert!(
        line(&text, "deployment/typo").starts_with(
            "deployment/typo invalid - left alone: annotation reloader.stakater.com/auto=\"True\" is invalid"
        ),
        "{text}"
    );
    assert!(!text.contains("plain"), "{text}");
    let footer = format!(
        "5 workloads opted in, 1 not opted in (not listed) in namespace {}.",
        ns.name
    );
    assert!(text.contains(&footer), "{text}");

    // Every namespace: the same lines, under a NAMESPACE column.
    let (ok, text) = explain_all(&ns, &[], &["-A"]);
    assert!(ok, "{text}");
    assert!(text.starts_with("NAMESPACE"), "{text}");
    assert!(text.contains("in all namespaces."), "{text}");
    let mine: Vec<String> = text
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(ns.name.as_str()))
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        mine,
        [
            "deployment/api",
            "deployment/typo",
            "deployment/web",
            "statefulset/db",
            "daemonset/worker"
        ],
        "{text}"
    );

    // Only where the controller, with the same flags, would look.
    let selector = format!("--namespace-selector=migrating={}", ns.name);
    let (ok, text) = explain_all(&ns, &[&selector], &[]);
    let unwatched = "5 more workloads opted in, but in namespaces kube-reloader does not watch";
    assert!(ok && text.contains(unwatched), "{text}");
    let label = format!("migrating={}", ns.name);
    crate::support::shared().kubectl(&["label", "namespace", &ns.name, &label]);
    let inv = inventory(&ns, &[&selector]);
    assert_eq!(states(&inv), fresh, "{inv:#}");
    let (ok, text) = explain_all(&ns, &["--ignore-namespace", &ns.name], &["-A"]);
    assert!(ok && !text.contains(&ns.name), "{text}");

    // Reloader's annotations count only while kube-reloader honours them.
    let inv = inventory(&ns, &["--reloader-compat=false"]);
    assert_eq!(
        states(&inv),
        [state("Deployment", "api", "no-baseline")],
        "{inv:#}"
    );
    assert_eq!(inv["not_opted_in"], 5, "{inv:#}");

    // (b) kube-reloader in dry run beside Reloader: it writes nothing.
    let versions = resource_versions(&ns).await;
    let before = rollouts(&ns).await;
    // A long window, so that Reloader's writes land inside it, as they do in a cluster.
    let mut dry = Reloader::start(&ns, &["--dry-run", "--debounce=5s"]);
    for name in ["web", "db", "worker", "api"] {
        dry.wait_count(
            &[
                "dry run: would record the baseline",
                &format!("name={name}"),
            ],
            1,
        )
        .await;
    }
    wait_for("the InvalidAnnotation Warning on typo", TIMEOUT, || async {
        let n = objects::events(&ns, "typo", "InvalidAnnotation").await;
        (!n.is_empty()).then_some(())
    })
    .await;
    assert_eq!(resource_versions(&ns).await, versions, "the dry run wrote");

    // Config changes, and Reloader rolling web and db for them at once; api is ours alone.
    configmap(&ns, "app-config", &[("k", "2")], json!({})).await;
    reloader_rolls_web(&ns, "7c4a8d09ca3762af61e59520943dc26494f8941b").await;
    configmap(&ns, "db-config", &[("k", "2")], json!({})).await;
    reloader_rolls_db(
        &ns,
        "b1d5781111d84f7b3fe45a0852e59758cd7a87e5",
        1_700_000_000,
    )
    .await;
    configmap(&ns, "api-config", &[("k", "2")], json!({})).await;
    for (name, changed) in [
        ("web", "ConfigMap/app-config"),
        ("db", "ConfigMap/db-config"),
        ("api", "ConfigMap/api-config"),
    ] {
        let what = format!("a WouldReload Event on {name}");
        let notes = wait_for(&what, TIMEOUT, || async {
            let n = objects::events(&ns, name, "WouldReload").await;
            (!n.is_empty()).then_some(n)
        })
        .await;
        assert!(
            notes.iter().all(|n| n.contains(changed)),
            "{name}: {notes:?}"
        );
    }
    // The guide's comparison: kube-reloader's WouldReload Events, workload by workload.
    let listed = kubectl(
        &ns,
        &["get", "events", "--field-selector", "reason=WouldReload"],
        "",
    )
    .await;
    for object in ["deployment/web", "statefulset/db", "deployment/api"] {
        assert!(
            listed.to_lowercase().contains(object),
            "{object} missing from:\n{listed}"
        );
    }
    assert!(
        objects::events(&ns, "worker", "WouldReload")
            .await
            .is_empty()
    );
    assert!(objects::events(&ns, "typo", "WouldReload").await.is_empty());
    untouched_by_kube_reloader(&ns).await;
    let now = resource_versions(&ns).await;
    for name in ["worker", "api", "plain", "typo"] {
        assert_eq!(now[name], versions[name], "the dry run wrote to {name}");
    }
    // Reloader's own rollouts, and none of kube-reloader's.
    let mut expected = before.clone();
    *expected.get_mut("web").unwrap() += 1;
    *expected.get_mut("db").unwrap() += 1;
    assert_eq!(rollouts(&ns).await, expected);

    // (c) Reloader removed, then kube-reloader without --dry-run: baselines, no rollout.
    let status = dry.terminate();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", dry.logs());
    let before = rollouts(&ns).await;
    let live = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    workloads::baseline(&ns, Kind::StatefulSet, "db").await;
    workloads::baseline(&ns, Kind::DaemonSet, "worker").await;
    workloads::baseline(&ns, Kind::Deployment, "api").await;
    for name in ["web", "db", "worker", "api"] {
        live.wait_up_to_date(name, 1).await;
    }
    assert_eq!(
        rollouts(&ns).await,
        before,
        "the first baselines rolled something"
    );
    for name in ["plain", "typo"] {
        let hash = workloads::annotation(&ns, Kind::Deployment, name, HASH, false).await;
        assert_eq!(hash, None, "{name} got a baseline");
    }
    let inv = inventory(&ns, &[]);
    let baselined = [
        state("Deployment", "api", "up-to-date"),
        state("Deployment", "typo", "invalid"),
        state("Deployment", "web", "up-to-date"),
        state("StatefulSet", "db", "up-to-date"),
        state("DaemonSet", "worker", "up-to-date"),
    ];
    assert_eq!(states(&inv), baselined, "{inv:#}");

    // A further change rolls its workload once, and nothing else.
    configmap(&ns, "app-config", &[("k", "3")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", before["web"] + 1).await;
    live.wait_up_to_date("web", 2).await;
    let mut expected = before.clone();
    *expected.get_mut("web").unwrap() += 1;
    assert_eq!(rollouts(&ns).await, expected);
    let notes = objects::events(&ns, "web", "Reloaded").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("ConfigMap/app-config"), "{notes:?}");
}

/// Reloader's `last-reloaded-from` in its v1 format (`type`, `containerRefs`, `observedAt` in
/// Unix seconds, a SHA-1) or its v2 branch's (`kind`, `containers`, `reloadedAt` in RFC 3339, and
/// a hash of another length, as its SHA-512/256 branch would write).
fn last_reloaded_from(format: &str, ns: &TestNs, cm: &str, round: u64) -> String {
    match format {
        "v1" => json!({"type": "CONFIGMAP", "name": cm, "namespace": ns.name,
            "hash": format!("{round:040x}"), "containerRefs": ["app"],
            "observedAt": 1_700_000_000 + round}),
        _ => json!({"kind": "configmap", "name": cm, "namespace": ns.name,
            "hash": format!("{round:064x}"), "containers": ["app"],
            "reloadedAt": format!("2023-11-14T22:13:{:02}Z", 20 + round)}),
    }
    .to_string()
}

/// Reloader (annotations strategy) rolling Deployment `name`: its annotation on the pod template,
/// with its field manager.
async fn reloader_rolls_with_annotation(ns: &TestNs, name: &str, from: &str) {
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        LAST_RELOADED_FROM: from
    }}}}});
    let pp = PatchParams {
        field_manager: Some("Reloader".into()),
        ..PatchParams::default()
    };
    ns.api::<Deployment>()
        .patch(name, &pp, &Patch::Strategic(&patch))
        .await
        .expect("Reloader's patch");
}

/// A workload Reloader's v2 rolled (its `last-reloaded-from` in the v2 format) goes through the
/// guide's three steps exactly as one Reloader v1 rolled: the same inventory, the same dry run
/// beside Reloader, the same switch with no rollout.
#[tokio::test]
async fn a_workload_rolled_by_reloader_v2_migrates_as_one_rolled_by_v1() {
    let ns = TestNs::new("migrate-v2").await;
    const FORMATS: [&str; 2] = ["v1", "v2"];
    for format in FORMATS {
        let cm = format!("cfg-{format}");
        configmap(&ns, &cm, &[("k", "1")], json!({})).await;
        let lists = json!({"configmap.reloader.stakater.com/reload": cm});
        let mut d = workloads::manifest(
            Kind::Deployment,
            format,
            lists,
            workloads::env_from_configmap(&cm),
        );
        d["spec"]["template"]["metadata"]["annotations"] =
            json!({LAST_RELOADED_FROM: last_reloaded_from(format, &ns, &cm, 0)});
        workloads::create(&ns, Kind::Deployment, d).await;
    }
    for format in FORMATS {
        workloads::settled_revision(&ns, Kind::Deployment, format).await;
    }

    // (a) The inventory: both listed alike, Reloader's last rollout read from either format.
    let inv = inventory(&ns, &[]);
    let state = |name: &str, state: &str| {
        (
            "Deployment".to_string(),
            name.to_string(),
            state.to_string(),
        )
    };
    assert_eq!(
        states(&inv),
        [state("v1", "no-baseline"), state("v2", "no-baseline")],
        "{inv:#}"
    );
    for (i, format) in FORMATS.iter().enumerate() {
        let w = &inv["workloads"][i];
        let from = &w["reloader_last_reloaded_from"]["Ok"];
        assert_eq!(from["format"], *format, "{w:#}");
        assert_eq!(from["kind"], "ConfigMap", "{w:#}");
        assert_eq!(from["name"], format!("cfg-{format}"), "{w:#}");
        assert_eq!(from["containers"], json!(["app"]), "{w:#}");
        assert!(
            from["at"]
                .as_str()
                .is_some_and(|t| t.starts_with("2023-11-14T22:13:20")),
            "{w:#}"
        );
        assert_eq!(
            w["opt_in"]["Ok"],
            json!([format!(
                "configmap.reloader.stakater.com/reload=cfg-{format}"
            )]),
            "what Reloader wrote is not an opt-in: {w:#}"
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-reloader"));
        cmd.args(["explain", &format!("deploy/{format}"), "-n", &ns.name])
            .env("KUBECONFIG", &ns.kubeconfig);
        let out = cmd.output().expect("run explain");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = format!(
            "Reloader:      last rolled it for ConfigMap/cfg-{format}, at 2023-11-14T22:13:20Z \
             (its last-reloaded-from, {format} format)"
        );
        assert!(text.contains(&line), "{text}");
    }

    // (b) The dry run beside Reloader: a change, Reloader's rollout for it in each format inside
    // the window, and a WouldReload Event on each all the same.
    let before: Vec<u64> = rollouts_of(&ns, &FORMATS).await;
    let mut dry = Reloader::start(&ns, &["--dry-run", "--debounce=5s"]);
    for format in FORMATS {
        dry.wait_count(
            &[
                "dry run: would record the baseline",
                &format!("name={format}"),
            ],
            1,
        )
        .await;
    }
    for format in FORMATS {
        let cm = format!("cfg-{format}");
        configmap(&ns, &cm, &[("k", "2")], json!({})).await;
        reloader_rolls_with_annotation(&ns, format, &last_reloaded_from(format, &ns, &cm, 1)).await;
    }
    for format in FORMATS {
        let notes = kinds::wait_events(&ns, "Deployment", format, "WouldReload").await;
        assert!(
            notes
                .iter()
                .all(|n| n.contains(&format!("ConfigMap/cfg-{format}"))),
            "{format}: {notes:?}"
        );
    }
    let after_dry = rollouts_of(&ns, &FORMATS).await;
    assert_eq!(
        after_dry,
        before.iter().map(|n| n + 1).collect::<Vec<_>>(),
        "only Reloader's rollouts, one each"
    );
    for format in FORMATS {
        let hash = workloads::annotation(&ns, Kind::Deployment, format, HASH, false).await;
        assert_eq!(hash, None, "the dry run wrote to {format}");
    }
    let status = dry.terminate();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", dry.logs());

    // (c) The switch: a baseline on each and no rollout, then one rollout for a change.
    let live = Reloader::start(&ns, &[]);
    for format in FORMATS {
        workloads::baseline(&ns, Kind::Deployment, format).await;
        live.wait_up_to_date(format, 1).await;
    }
    assert_eq!(
        rollouts_of(&ns, &FORMATS).await,
        after_dry,
        "the baselines rolled"
    );
    for format in FORMATS {
        configmap(&ns, &format!("cfg-{format}"), &[("k", "3")], json!({})).await;
    }
    for (i, format) in FORMATS.iter().enumerate() {
        workloads::wait_rollouts(&ns, Kind::Deployment, format, after_dry[i] + 1).await;
        live.wait_up_to_date(format, 2).await;
    }
    assert_eq!(
        rollouts_of(&ns, &FORMATS).await,
        after_dry.iter().map(|n| n + 1).collect::<Vec<_>>()
    );
    // Reloader's annotation stays as it was, inert, beside kube-reloader's.
    for format in FORMATS {
        let from = workloads::annotation(&ns, Kind::Deployment, format, LAST_RELOADED_FROM, true)
            .await
            .expect("Reloader's annotation");
        assert_eq!(
            from,
            last_reloaded_from(format, &ns, &format!("cfg-{format}"), 1)
        );
    }
}

/// The rollouts so far of each of these Deployments.
async fn rollouts_of(ns: &TestNs, names: &[&str]) -> Vec<u64> {
    let mut out = Vec::new();
    for name in names {
        out.push(workloads::rollouts(ns, Kind::Deployment, name).await);
    }
    out
}
