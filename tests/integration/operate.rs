//! Operating kube-reloader: metrics, probes, logs, dry-run and shutdown.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::objects::{self, configmap, secret};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, http_get as get, wait_for};

const HASH: &str = "kube-reloader.io/config-hash";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A deleted workload is forgotten (its index entry, its warnings, its retry count), so memory
/// follows the workloads that exist however many come and go; and one created again under the
/// same name is judged afresh: warned again about the same missing ConfigMap.
#[tokio::test]
async fn deleted_workloads_are_forgotten() {
    let ns = TestNs::new("forget").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let lacking = || {
        let pod = workloads::env_from_configmap("absent");
        workloads::deployment(
            &ns,
            "lacking",
            json!({"kube-reloader.io/auto": "true"}),
            pod,
        )
    };
    lacking().await;
    let reloader = Reloader::start(&ns, &[]);
    let addr = reloader.http_addr().await;
    let tracked = |n: f64| async move {
        let (_, text) = get(addr, "/metrics").await;
        (sample(&text, "kube_reloader_tracked_workloads") == Some(n)).then_some(())
    };
    let test_ns = &ns;
    let warnings = |n: usize| async move {
        let events = objects::events(test_ns, "lacking", "MissingReference").await;
        (events.len() == n).then_some(())
    };
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    wait_for("both to be tracked", TIMEOUT, || tracked(2.0)).await;
    wait_for("the Warning about lacking", TIMEOUT, || warnings(1)).await;

    for name in ["web", "lacking"] {
        workloads::delete(&ns, Kind::Deployment, name).await;
    }
    wait_for("the deleted workloads to be forgotten", TIMEOUT, || {
        tracked(0.0)
    })
    .await;
    reloader
        .wait_count(&["workload deleted; forgetting it", "name=lacking"], 1)
        .await;
    lacking().await;
    wait_for("a Warning about the new lacking", TIMEOUT, || warnings(2)).await;
}

#[tokio::test]
async fn metrics_and_probes_after_a_rollout() {
    let ns = TestNs::new("metrics").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let reloader = Reloader::start(&ns, &[]);
    let addr = reloader.http_addr().await;
    assert_eq!(get(addr, "/healthz").await.0, 200);
    wait_for("/readyz to answer 200", TIMEOUT, || async {
        (get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    wait_for("a rollout", TIMEOUT, || async {
        (workloads::rollouts(&ns, Kind::Deployment, "web").await == 1).then_some(())
    })
    .await;

    let labels = |result: &str| {
        format!(
            "kube_reloader_rollouts_total{{kind=\"Deployment\",namespace=\"{}\",result=\"{result}\"}}",
            ns.name
        )
    };
    let text = wait_for("the gauges to be refreshed", TIMEOUT, || async {
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        sample(&text, "kube_reloader_tracked_workloads").filter(|n| *n >= 1.0)?;
        Some(text)
    })
    .await;
    assert_eq!(sample(&text, &labels("rolled")), Some(1.0), "{text}");
    assert_eq!(sample(&text, &labels("baseline")), Some(1.0), "{text}");
    assert!(
        sample(&text, "kube_reloader_watched_objects{kind=\"ConfigMap\"}") >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "kube_reloader_reconcile_duration_seconds_count{kind=\"Deployment\"}"
        ) >= Some(2.0),
        "{text}"
    );
    assert!(
        sample(&text, "kube_reloader_last_sync_timestamp_seconds") > Some(1.0e9),
        "{text}"
    );
    assert_eq!(sample(&text, "kube_reloader_leader"), Some(1.0), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "not OpenMetrics text");
}

#[tokio::test]
async fn json_logs_name_the_object_and_never_show_secret_values() {
    let ns = TestNs::new("logs").await;
    let value = "s3cr3t-V4lue-never-logged";
    secret(&ns, "creds", &[("password", value)], json!({})).await;
    let spec = workloads::pod_spec(
        json!({"envFrom": [{"secretRef": {"name": "creds"}}]}),
        json!([]),
    );
    workloads::deployment(&ns, "web", json!({"kube-reloader.io/auto": "true"}), spec).await;
    let reloader = Reloader::start(&ns, &["--log-format=json"]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    let changed = "an0ther-s3cr3t-never-logged";
    objects::update_secret(&ns, "creds", &[("password", changed)]).await;
    wait_for("a rollout", TIMEOUT, || async {
        (workloads::rollouts(&ns, Kind::Deployment, "web").await == 1).then_some(())
    })
    .await;
    reloader
        .wait_count(&["\"up to date\"", "\"name\":\"web\""], 1)
        .await;

    let logs = reloader.logs();
    let mut rolled = None;
    for line in logs.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "rolled out" {
            rolled = Some(v);
        }
    }
    let rolled = rolled.expect("a 'rolled out' line");
    assert_eq!(rolled["namespace"], ns.name.as_str());
    assert_eq!(rolled["kind"], "Deployment");
    assert_eq!(rolled["name"], "web");
    assert_eq!(rolled["level"], "INFO");

    // Neither the values, in any encoding, nor the Secret-derived digests appear.
    // ByteString serializes as base64, the form Secret data takes on the wire.
    let b64 = |s: &str| {
        serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec()))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let digest = workloads::annotation(&ns, Kind::Deployment, "web", HASH, true)
        .await
        .unwrap();
    let hash = digest.split('@').next().unwrap().to_string();
    for needle in [
        value.to_string(),
        changed.to_string(),
        b64(value),
        b64(changed),
        hash,
    ] {
        assert!(!logs.contains(&needle), "the log contains {needle:?}");
    }
}

#[tokio::test]
async fn dry_run_reports_and_writes_nothing() {
    let ns = TestNs::new("dryrun").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let reloader = Reloader::start(&ns, &["--dry-run"]);
    reloader
        .wait_count(&["dry run: would record the baseline", "name=web"], 1)
        .await;
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    reloader
        .wait_count(&["dry run: would roll out", "name=web"], 1)
        .await;
    let notes = wait_for("a WouldReload Event", TIMEOUT, || async {
        let n = objects::events(&ns, "web", "WouldReload").await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert!(notes[0].contains("ConfigMap/cfg"), "{notes:?}");
    let v = workloads::get(&ns, Kind::Deployment, "web").await;
    assert_eq!(v["metadata"]["annotations"][HASH], Value::Null);
    assert!(
        v["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|m| m["manager"] != "kube-reloader"),
        "dry run wrote to the workload"
    );
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, "web").await, 0);
}

#[tokio::test]
async fn sigterm_exits_zero() {
    let ns = TestNs::new("sigterm").await;
    let mut reloader = Reloader::start(&ns, &[]);
    reloader.wait_count(&["initial lists complete"], 1).await;
    let status = reloader.terminate();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        reloader.logs()
    );
}

#[tokio::test]
async fn a_missing_reference_is_warned_about_once() {
    let ns = TestNs::new("missing").await;
    configmap(&ns, "other", &[("k", "1")], json!({})).await;
    let spec = workloads::pod_spec(
        json!({"envFrom": [{"configMapRef": {"name": "nowhere", "optional": true}},
                           {"configMapRef": {"name": "other"}}]}),
        json!([]),
    );
    workloads::deployment(&ns, "web", json!({"kube-reloader.io/auto": "true"}), spec).await;
    let reloader = Reloader::start(&ns, &[]);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    // More reconciles: two changes of the other ConfigMap, two rollouts.
    for v in ["2", "3"] {
        configmap(&ns, "other", &[("k", v)], json!({})).await;
        let n = if v == "2" { 1 } else { 2 };
        wait_for("a rollout", TIMEOUT, || async {
            (workloads::rollouts(&ns, Kind::Deployment, "web").await >= n).then_some(())
        })
        .await;
    }
    reloader.wait_up_to_date("web", 2).await;
    let notes = objects::events(&ns, "web", "MissingReference").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("ConfigMap/nowhere"), "{notes:?}");
    assert_eq!(reloader.count(&["tracked object does not exist"]), 1);
}
