//! What a user installs kube-reloader for, with pods that really run (a control plane with a node,
//! `hack/cluster.sh run DIR --node`): after a ConfigMap change the old pods are gone and new ones
//! run, Ready, saying (in their log, and over HTTP) that they read the new value from the
//! environment and from the mounted file; exactly one new pod generation per change. The same
//! with a Secret; a CronJob's next scheduled Job reading the new value, none off schedule; and
//! kube-reloader itself running as a Pod on the node, from its image, installed with the chart.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use serde_json::json;

use crate::support::helm::Release;
use crate::support::kinds::{self, TestKind};
use crate::support::objects::configmap;
use crate::support::pods::{self, AppPod, RanJob, Source};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, kubectl, repo_root, wait_for, with_node};

/// The ConfigMap the apps read.
const CONFIG: Source = Source::ConfigMap("app-config");

/// Generous: a pod starts in about a second here, and an old one leaves the API at the kubelet's
/// pace (5 to 15 s).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The app's pods once `replicas` pods of one generation, other than any in `old`, are Ready and
/// each says it read `value`; how long that took; and every generation seen on the way.
/// Old pods may still be terminating (see [`old_pods_gone`]).
pub(crate) async fn new_pods_ready(
    ns: &TestNs,
    name: &str,
    replicas: usize,
    old: &BTreeSet<String>,
    value: &str,
    seen: &mut BTreeSet<String>,
) -> (Vec<AppPod>, Duration) {
    let start = Instant::now();
    let want = pods::reads(value);
    loop {
        let all = pods::pods(ns, name).await;
        seen.extend(pods::generations(&all));
        let fresh: Vec<AppPod> = all
            .iter()
            .filter(|p| !old.contains(&p.generation) && !p.terminating)
            .cloned()
            .collect();
        if fresh.len() == replicas
            && pods::generations(&fresh).len() == 1
            && fresh.iter().all(|p| p.ready)
        {
            let elapsed = start.elapsed();
            let mut said = Vec::new();
            for p in &fresh {
                said.push((
                    p.name.clone(),
                    pods::log(ns, &p.name).await,
                    pods::served(p).await,
                ));
            }
            // A Ready pod has printed its line and serves it: each must be the new value.
            for (pod, log, served) in &said {
                assert_eq!(log.trim(), want, "pod {pod} of {name} logged {log:?}");
                assert_eq!(served, &want, "pod {pod} of {name} serves {served:?}");
            }
            return (fresh, elapsed);
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out after {TIMEOUT:?} waiting for {replicas} Ready pods of {name} reading {value:?} \
             (besides generations {old:?}); the pods:\n{all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until only pods of generation `current` are left of the app (the old ones are gone from
/// the API, not only terminating); how long that took.
async fn old_pods_gone(
    ns: &TestNs,
    name: &str,
    current: &str,
    seen: &mut BTreeSet<String>,
) -> Duration {
    let start = Instant::now();
    loop {
        let all = pods::pods(ns, name).await;
        seen.extend(pods::generations(&all));
        if all.iter().all(|p| p.generation == current) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out after {TIMEOUT:?} waiting for the old pods of {name} to go: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One workload of `kind` with `replicas` pods reading `source` (env var and mounted file): it
/// comes up reading the first value; each of two changes of the object gives exactly one new
/// pod generation, whose pods all read the new value, and the old pods go.
async fn pods_read_each_new_value(kind: Kind, replicas: usize, source: Source<'_>) {
    let lower = format!("{kind:?}").to_lowercase();
    let ns = TestNs::on(with_node(), &format!("pods-{lower}")).await;
    let name = "app";
    source.set(&ns, "one").await;
    workloads::create(
        &ns,
        kind,
        pods::app_reading(kind, name, replicas as u32, source),
    )
    .await;
    let reloader = Reloader::start(&ns, &[]);

    let mut seen = BTreeSet::new();
    let (first, ready) =
        new_pods_ready(&ns, name, replicas, &BTreeSet::new(), "one", &mut seen).await;
    eprintln!(
        "pods: {kind:?} {name}: {replicas} pod(s) Ready on the first value {:.1} s after the apply",
        ready.as_secs_f64()
    );
    workloads::baseline(&ns, kind, name).await;
    let mut current = first[0].generation.clone();
    let mut before: BTreeSet<String> = first.iter().map(|p| p.uid.clone()).collect();

    for (change, value) in [(1, "two"), (2, "three")] {
        let old = std::mem::take(&mut seen);
        let old: BTreeSet<String> = old.into_iter().chain([current.clone()]).collect();
        source.set(&ns, value).await;
        let (after, ready) = new_pods_ready(&ns, name, replicas, &old, value, &mut seen).await;
        let next = after[0].generation.clone();
        let gone = ready + old_pods_gone(&ns, name, &next, &mut seen).await;
        eprintln!(
            "pods: {kind:?} {name}: change {change} of {source:?}: {replicas} new pod(s) Ready on {value:?} {:.1} s after the update, the old ones gone after {:.1} s",
            ready.as_secs_f64(),
            gone.as_secs_f64()
        );
        assert!(
            after.iter().all(|p| !before.contains(&p.uid)),
            "{kind:?}: a pod from before change {change} is still running: {after:#?}"
        );
        // One new generation: no pod of any other template was ever made on the way.
        let new: BTreeSet<String> = seen.difference(&old).cloned().collect();
        assert_eq!(
            new,
            BTreeSet::from([next.clone()]),
            "{kind:?}: new pod generations seen since change {change} (old: {current})"
        );
        assert_eq!(
            workloads::rollouts(&ns, kind, name).await,
            change,
            "{kind:?}: pod-template revisions after change {change}"
        );
        current = next;
        before = after.iter().map(|p| p.uid.clone()).collect();
    }
    drop(reloader);
}

#[tokio::test]
async fn deployment_pods_read_the_new_configmap_value_and_the_old_pods_go() {
    pods_read_each_new_value(Kind::Deployment, 2, CONFIG).await;
}

#[tokio::test]
async fn statefulset_pods_read_the_new_configmap_value_and_the_old_pods_go() {
    pods_read_each_new_value(Kind::StatefulSet, 2, CONFIG).await;
}

/// The Deployment's pods read a Secret instead: the same story.
#[tokio::test]
async fn deployment_pods_read_the_new_secret_value_and_the_old_pods_go() {
    pods_read_each_new_value(Kind::Deployment, 2, Source::Secret("app-secret")).await;
}

#[tokio::test]
async fn daemonset_pod_reads_the_new_configmap_value_and_the_old_pod_goes() {
    pods_read_each_new_value(Kind::DaemonSet, 1, CONFIG).await;
}

/// A kustomize configMapGenerator's rename, applied in one step (the new ConfigMap and the
/// Deployment pointing at it): Kubernetes rolls the Deployment once, and kube-reloader, which
/// tracks the new ConfigMap from then on, adds no second pod generation.
#[tokio::test]
async fn a_kustomize_rename_in_one_apply_gives_one_pod_generation() {
    let ns = TestNs::on(with_node(), "pods-rename").await;
    let name = "app";
    let apply = |cm: &str, value: &str| {
        let cm_doc = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": cm}, "data": {"greeting": value},
        });
        let app = pods::app(Kind::Deployment, name, 1, cm);
        format!("{cm_doc}\n---\n{app}\n")
    };
    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        &apply("app-config-aaa", "one"),
    )
    .await;
    let reloader = Reloader::start(&ns, &[]);
    let mut seen = BTreeSet::new();
    let (first, _) = new_pods_ready(&ns, name, 1, &BTreeSet::new(), "one", &mut seen).await;
    workloads::baseline(&ns, Kind::Deployment, name).await;
    let current = first[0].generation.clone();
    let up_to_date = reloader.count(&["up to date", &format!("name={name}")]);

    kubectl(
        &ns,
        &["apply", "--server-side", "-f", "-"],
        &apply("app-config-bbb", "two"),
    )
    .await;
    let (next, ready) = rolled_once(&ns, name, 1, &current, "two").await;
    eprintln!(
        "pods: rename: the new pod Ready on \"two\" {:.1} s after the apply",
        ready.as_secs_f64()
    );
    // kube-reloader has looked at the renamed Deployment since, found it up to date, and added
    // no generation.
    reloader.wait_up_to_date(name, up_to_date + 1).await;
    let more = pods::pods(&ns, name).await;
    assert_eq!(
        pods::generations(&more),
        BTreeSet::from([next]),
        "{more:#?}"
    );
    assert_eq!(workloads::rollouts(&ns, Kind::Deployment, name).await, 1);
}

/// Once what Deployment `name`'s pods (of generation `current`) read has changed to `value`:
/// `replicas` pods of one new generation Ready, each reading `value`, the old pods gone, no other
/// generation made on the way, and one rollout in all. The new generation, and how long until
/// its pods were Ready.
async fn rolled_once(
    ns: &TestNs,
    name: &str,
    replicas: usize,
    current: &str,
    value: &str,
) -> (String, Duration) {
    let old = BTreeSet::from([current.to_string()]);
    let mut seen = BTreeSet::new();
    let (after, ready) = new_pods_ready(ns, name, replicas, &old, value, &mut seen).await;
    let next = after[0].generation.clone();
    old_pods_gone(ns, name, &next, &mut seen).await;
    seen.remove(current);
    assert_eq!(
        seen,
        BTreeSet::from([next.clone()]),
        "new pod generations of {name} (old: {current})"
    );
    assert_eq!(workloads::rollouts(ns, Kind::Deployment, name).await, 1);
    (next, ready)
}

/// Waits (at most 2 minutes: a schedule of every minute, and the pod's run) for the first Job
/// that `which` picks to have its pod ended; that Job.
async fn job_ended(ns: &TestNs, what: &str, which: impl Fn(&RanJob) -> bool) -> RanJob {
    wait_for(what, Duration::from_secs(120), || async {
        pods::jobs(ns)
            .await
            .into_iter()
            .find(|j| which(j))
            .filter(|j| j.read.is_some())
    })
    .await
}

/// A CronJob run every minute by the cronjob controller, its Jobs' pods reading a ConfigMap: once
/// the ConfigMap changes, kube-reloader patches the job template, and the next Job scheduled after
/// that reads the new value. No Job is made off schedule: every Job is the CronJob's, made for a
/// minute it was due, one per minute; kube-reloader makes none.
#[tokio::test]
async fn a_cronjobs_next_scheduled_job_reads_the_new_value_and_none_runs_off_schedule() {
    let ns = TestNs::on(with_node(), "pods-cronjob").await;
    let source = Source::ConfigMap("job-config");
    source.set(&ns, "one").await;
    let kind = TestKind::cronjob();
    let mut cronjob = kinds::manifest(
        &kind,
        "report",
        json!({"kube-reloader.io/auto": "true"}),
        pods::job_pod_spec(source),
    );
    cronjob["spec"]["schedule"] = json!("* * * * *");
    cronjob["spec"]["successfulJobsHistoryLimit"] = json!(10);
    cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] = json!(0);
    let start = Instant::now();
    kinds::create(&ns, &kind, cronjob).await;
    let reloader = Reloader::start(&ns, &[]);
    kinds::baseline(&ns, &kind, "report").await;
    let history = kinds::History::watch(&ns, &kind, "report").await;

    // The change comes once a Job's pod has read the first value and ended, early in a minute,
    // so that kube-reloader's patch (a second) is almost always in before the next one.
    let first = job_ended(&ns, "a first Job of the CronJob", |_| true).await;
    assert_eq!(
        first.read.as_deref(),
        Some(pods::reads("one").as_str()),
        "{first:?}"
    );
    source.set(&ns, "two").await;
    history.wait_template_changes(1).await;
    let patched = Timestamp::now();
    eprintln!(
        "pods: CronJob: first Job {} read \"one\"; the job template patched {:.1} s into the minute",
        first.name,
        (patched.as_millisecond() % 60_000) as f64 / 1000.0
    );
    let next = job_ended(&ns, "a Job scheduled after the patch", |j| {
        j.scheduled.is_some_and(|s| s > patched)
    })
    .await;
    assert_eq!(
        next.read.as_deref(),
        Some(pods::reads("two").as_str()),
        "{next:?}"
    );
    eprintln!(
        "pods: CronJob: Job {} read \"two\", {:.0} s after the CronJob was made",
        next.name,
        start.elapsed().as_secs_f64()
    );

    let jobs = pods::jobs(&ns).await;
    let mut minutes = BTreeSet::new();
    for job in &jobs {
        assert_eq!(job.owner.as_deref(), Some("CronJob/report"), "{jobs:#?}");
        let scheduled = job
            .scheduled
            .unwrap_or_else(|| panic!("Job {} has no scheduled time: {jobs:#?}", job.name));
        assert_eq!(scheduled.as_second() % 60, 0, "off schedule: {jobs:#?}");
        let late = job.created.as_second() - scheduled.as_second();
        assert!(
            (0..30).contains(&late),
            "Job {} made {late} s from its scheduled time: {jobs:#?}",
            job.name
        );
        assert!(
            minutes.insert(scheduled),
            "two Jobs for one minute: {jobs:#?}"
        );
    }
    assert_eq!(history.template_changes(), 1, "job template changes");
    drop(reloader);
}

/// kube-reloader itself as a Pod on the node, as a user runs it: `make image`'s image imported
/// into the node's containerd (never pulled), installed with the chart (`helm install --wait`:
/// its pod Ready on the kubelet's probes), its API credentials the ServiceAccount token the
/// kubelet mounts. A ConfigMap change then rolls a Deployment: every new pod reads the new value,
/// the old pods go, one pod generation. The pod is in the node's network (`hostNetwork`, with the
/// API server's loopback address), as this cluster has no kube-proxy.
#[tokio::test]
async fn the_controller_in_a_pod_from_the_image_and_the_chart_rolls_a_deployment() {
    let cp = with_node();
    let image = "localhost/kube-reloader";
    let out = std::process::Command::new(repo_root().join("hack/node.sh"))
        .arg("import")
        .arg(cp.dir().join("node"))
        .arg(crate::image::archive())
        .arg(image)
        .output()
        .expect("run hack/node.sh import");
    assert!(
        out.status.success(),
        "hack/node.sh import failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = TestNs::on(cp, "pods-in-pod").await;
    let name = "app";
    CONFIG.set(&ns, "one").await;
    workloads::create(
        &ns,
        Kind::Deployment,
        pods::app(Kind::Deployment, name, 2, "app-config"),
    )
    .await;

    // The metrics port opens on the node's network: one nothing else here listens on.
    let metrics_port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let values = format!(
        r#"
image: {{repository: {image}, tag: "{tag}", pullPolicy: Never}}
watchNamespaces: [{ns}]
hostNetwork: true
metricsPort: {metrics_port}
extraArgs: ["--debounce=500ms", "--min-rollout-interval=1s"]
extraEnv:
  - {{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}}
  - {{name: KUBERNETES_SERVICE_PORT, value: "{api_port}"}}
"#,
        tag = env!("CARGO_PKG_VERSION"),
        ns = ns.name,
        api_port = cp.api_addr().port(),
    );
    let release = Release {
        cp,
        name: "kube-reloader",
        namespace: &ns.name,
    };
    let started = Instant::now();
    release.install_with(&values, &["--wait", "--timeout", "2m"]);
    eprintln!(
        "pods: in a pod: helm install --wait returned after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let controller = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/name=kube-reloader"))
        .await
        .expect("list the controller's pods")
        .items;
    assert_eq!(controller.len(), 1, "{controller:#?}");
    let pod = &controller[0];
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let container = &status.container_statuses.unwrap_or_default()[0];
    assert!(container.ready, "{pod:#?}");
    assert_eq!(
        container.image,
        format!("{image}:{}", env!("CARGO_PKG_VERSION"))
    );

    let mut seen = BTreeSet::new();
    let (first, _) = new_pods_ready(&ns, name, 2, &BTreeSet::new(), "one", &mut seen).await;
    workloads::baseline(&ns, Kind::Deployment, name).await;
    CONFIG.set(&ns, "two").await;
    let (_, ready) = rolled_once(&ns, name, 2, &first[0].generation, "two").await;
    eprintln!(
        "pods: in a pod: the new pods Ready on \"two\" {:.1} s after the ConfigMap update",
        ready.as_secs_f64()
    );

    // It was the pod: the writes came from its ServiceAccount, through the mounted token.
    let user = format!("system:serviceaccount:{}:kube-reloader", ns.name);
    let patches: Vec<_> = cp
        .requests_by(&user)
        .into_iter()
        .filter(|r| r.resource == "deployments" && r.verb == "patch" && r.name == name)
        .collect();
    assert!(
        !patches.is_empty() && patches.iter().all(|r| r.code == 200),
        "no patch of Deployment {name} by {user}, or one refused: {patches:#?}\nits log:\n{}",
        pods::log(&ns, &pod_name).await
    );
    release.uninstall();
}

/// Every pid in the node's cgroups (kubelet, containerd, shims, containers), from the memory
/// hierarchy hack/node.sh nests the node's cgroup root in.
fn node_pids(cgroup: &str) -> Vec<u32> {
    let root = std::path::Path::new("/sys/fs/cgroup/memory").join(cgroup.trim_start_matches('/'));
    let mut pids = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            }
        }
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    pids
}

/// A control plane with a node, dropped while a pod runs, leaves nothing behind: no process of
/// the node (containers included), no cgroup, no mount, no bridge.
#[tokio::test]
async fn a_node_leaves_nothing_behind_when_its_control_plane_stops() {
    let cp = crate::support::ControlPlane::start_with_node().expect("control plane with a node");
    let node = cp.dir().join("node");
    let ns = TestNs::on(&cp, "pods-stop").await;
    configmap(&ns, "app-config", &[("greeting", "one")], json!({})).await;
    workloads::create(
        &ns,
        Kind::Deployment,
        pods::app(Kind::Deployment, "app", 1, "app-config"),
    )
    .await;
    new_pods_ready(&ns, "app", 1, &BTreeSet::new(), "one", &mut BTreeSet::new()).await;

    let read = |f: &str| {
        std::fs::read_to_string(node.join(f))
            .expect(f)
            .trim()
            .to_string()
    };
    let (cgroup, bridge) = (read("cgroup"), format!("kr-node-{}", read("index")));
    let pids = node_pids(&cgroup);
    let comms: Vec<String> = pids
        .iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    for wanted in ["kubelet", "containerd", "pause", "httpd"] {
        assert!(
            comms.iter().any(|c| c == wanted),
            "no {wanted} among the node's processes: {comms:?}"
        );
    }
    let dir = cp.dir().to_path_buf();
    drop(cp);

    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "process {pid} outlived its node: {stat}"
        );
    }
    assert!(
        !std::path::Path::new("/sys/fs/cgroup/memory")
            .join(cgroup.trim_start_matches('/'))
            .exists(),
        "cgroup {cgroup} left behind"
    );
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists(),
        "bridge {bridge} left behind"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let prefix = dir.to_string_lossy().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&prefix)),
        "mounts under {prefix} left behind"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}
