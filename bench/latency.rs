//! The latency benchmark's helper (driven by bench/latency.sh): builds the fixture, plays the
//! floor client, changes configs at a steady rate while timing how long each takes to reach the
//! workload's pod template, puts things back after the floor, and counts writes.
//!
//!   latency fixture --workloads N --configmaps C --secrets S [--secret-bytes B] [--envs E]
//!   latency floor                            (until SIGTERM)
//!   latency drive --changes K --rate R --offset O --record FILE
//!   latency restore --record FILE
//!   latency writes                           (until SIGTERM; then prints the count)
//!
//! Workload `web-I` uses ConfigMap `cm-I` and Secret `s-I` (when they exist); configs beyond the
//! workloads are used by none. Everything lives in one namespace (--namespace, default `bench`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures::{FutureExt, StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The floor's mark in a pod template.
const FLOOR: &str = "bench.kube-reloader.io/floor";
/// What kube-reloader writes (metadata and pod template), for `writes`.
const OURS: &str = "kube-reloader.io/";

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "bench")]
    namespace: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the workloads and configs (requests in parallel).
    Fixture {
        #[arg(long)]
        workloads: usize,
        #[arg(long)]
        configmaps: usize,
        #[arg(long)]
        secrets: usize,
        #[arg(long, default_value_t = 16384)]
        secret_bytes: usize,
        /// Environment variables per container: bench/workloads.sh's 30 make ~13 KiB objects.
        #[arg(long, default_value_t = 30)]
        envs: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// The fastest thing possible: on each ConfigMap change, merge-patch the workload at once.
    Floor,
    /// Changes ConfigMap `cm-I` of K distinct workloads at R per second and reports the time from
    /// each change to its workload's pod template changing, as a watch sees it.
    Drive {
        #[arg(long)]
        changes: usize,
        #[arg(long)]
        rate: f64,
        /// The first workload changed: workloads OFFSET.. in turn, wrapping around.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// How long to wait for the last pod template after the last change.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Where to keep the changed ConfigMaps' previous values (for `restore`).
        #[arg(long)]
        record: std::path::PathBuf,
        /// A label for the output line.
        #[arg(long, default_value = "run")]
        label: String,
    },
    /// Puts back what `drive` changed, and takes the floor's mark out of the pod templates, so
    /// the workloads are as kube-reloader last left them.
    Restore {
        #[arg(long)]
        record: std::path::PathBuf,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Counts the workloads whose pod template or kube-reloader annotations change, until SIGTERM.
    Writes,
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Res<()> {
    let args = Args::parse();
    let client = Client::try_default().await?;
    let ns = args.namespace.as_str();
    match args.command {
        Command::Fixture {
            workloads,
            configmaps,
            secrets,
            secret_bytes,
            envs,
            concurrency,
        } => {
            let fixture = Fixture {
                workloads,
                configmaps,
                secrets,
                secret_bytes,
                envs,
            };
            fixture.create(&client, ns, concurrency).await
        }
        Command::Floor => floor(client, ns).await,
        Command::Drive {
            changes,
            rate,
            offset,
            timeout,
            record,
            label,
        } => {
            let plan = Plan {
                changes,
                rate,
                offset,
                timeout: Duration::from_secs(timeout),
            };
            drive(client, ns, plan, &record, &label).await
        }
        Command::Restore {
            record,
            concurrency,
        } => restore(client, ns, &record, concurrency).await,
        Command::Writes => writes(client, ns).await,
    }
}

struct Fixture {
    workloads: usize,
    configmaps: usize,
    secrets: usize,
    secret_bytes: usize,
    envs: usize,
}

impl Fixture {
    fn deployment(&self, i: usize) -> Res<Deployment> {
        let mut env_from = Vec::new();
        if i < self.configmaps {
            env_from.push(json!({"configMapRef": {"name": format!("cm-{i}")}}));
        }
        if i < self.secrets {
            env_from.push(json!({"secretRef": {"name": format!("s-{i}")}}));
        }
        let env: Vec<_> = (1..=self.envs)
            .map(|e| json!({"name": format!("SETTING_NUMBER_{e}"), "value": format!("a value of a typical length for setting {e}")}))
            .collect();
        let mut d = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": format!("web-{i}"),
                "labels": {"app": format!("web-{i}"), "team": "bench"},
                "annotations": {"kube-reloader.io/auto": "true"},
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": format!("web-{i}")}},
                "template": {
                    "metadata": {"labels": {"app": format!("web-{i}"), "team": "bench"}},
                    "spec": {"containers": [{
                        "name": "app",
                        "image": "registry.invalid/team/app:1.2.3",
                        "envFrom": env_from,
                        "env": env,
                    }]},
                },
            },
        });
        // As `kubectl apply` leaves it: a copy of the object in an annotation.
        let copy = d.to_string();
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            copy.into();
        Ok(serde_json::from_value(d)?)
    }

    async fn create(&self, client: &Client, ns: &str, concurrency: usize) -> Res<()> {
        let pp = PostParams::default();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let started = Instant::now();
        // 16 KiB of varied bytes (their base64 is what etcd and the watch carry).
        let blob: Vec<u8> = (0..self.secret_bytes)
            .map(|b| (b * 131 % 251) as u8)
            .collect();
        let cm_jobs = (0..self.configmaps).map(|i| {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("cm-{i}")},
                "data": {"bench": "0", "LOG_LEVEL": "info", "FEATURE_FLAGS": "a,b,c"},
            }))
            .expect("a valid ConfigMap");
            let (cms, pp) = (cms.clone(), pp.clone());
            async move { cms.create(&pp, &cm).await.map(|_| ()) }.boxed()
        });
        let secret_jobs = (0..self.secrets).map(|i| {
            let mut s = Secret::default();
            s.metadata.name = Some(format!("s-{i}"));
            s.data = Some(BTreeMap::from([(
                "blob".to_string(),
                k8s_openapi::ByteString(blob.clone()),
            )]));
            let (secrets, pp) = (secrets.clone(), pp.clone());
            async move { secrets.create(&pp, &s).await.map(|_| ()) }.boxed()
        });
        let mut deployment_jobs = Vec::new();
        for i in 0..self.workloads {
            let d = self.deployment(i)?;
            let (deployments, pp) = (deployments.clone(), pp.clone());
            deployment_jobs
                .push(async move { deployments.create(&pp, &d).await.map(|_| ()) }.boxed());
        }
        stream::iter(cm_jobs.chain(secret_jobs).chain(deployment_jobs))
            .buffer_unordered(concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        eprintln!(
            "fixture: {} Deployments, {} ConfigMaps, {} Secrets of {} bytes in {:.1} s",
            self.workloads,
            self.configmaps,
            self.secrets,
            self.secret_bytes,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn floor(client: Client, ns: &str) -> Res<()> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut synced = false;
    let events = watcher(cms, watcher::Config::default());
    let mut events = std::pin::pin!(events);
    let stop = terminated();
    let mut stop = std::pin::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => return Ok(()),
            e = events.next() => e,
        };
        let Some(event) = event else { return Ok(()) };
        match event {
            Ok(watcher::Event::InitApply(cm)) => {
                seen.insert(cm.name_any(), data_of(&cm));
            }
            Ok(watcher::Event::InitDone) => {
                synced = true;
                eprintln!("floor: synced, {} ConfigMaps", seen.len());
            }
            Ok(watcher::Event::Apply(cm)) if synced => {
                let name = cm.name_any();
                let data = data_of(&cm);
                if seen.insert(name.clone(), data.clone()).as_ref() == Some(&data) {
                    continue;
                }
                let Some(i) = name.strip_prefix("cm-") else {
                    continue;
                };
                let patch =
                    json!({"spec": {"template": {"metadata": {"annotations": {FLOOR: data}}}}});
                let (deployments, target) = (deployments.clone(), format!("web-{i}"));
                tokio::spawn(async move {
                    let pp = PatchParams::default();
                    if let Err(e) = deployments.patch(&target, &pp, &Patch::Merge(&patch)).await {
                        eprintln!("floor: {target}: {e}");
                    }
                });
            }
            Ok(_) => {}
            Err(e) => eprintln!("floor: watch: {e}"),
        }
    }
}

fn data_of(cm: &ConfigMap) -> String {
    cm.data
        .as_ref()
        .and_then(|d| d.get("bench"))
        .cloned()
        .unwrap_or_default()
}

struct Plan {
    changes: usize,
    rate: f64,
    offset: usize,
    timeout: Duration,
}

#[derive(Default)]
struct Pending {
    /// Workload name → (a hash of its pod template when its config was changed, when).
    waiting: HashMap<String, (u64, Instant)>,
    latencies: Vec<Duration>,
    /// Hashes of the pod templates as last seen on the watch.
    templates: HashMap<String, u64>,
}

/// A hash of a workload's pod template. Not its generation: the API server also counts
/// metadata-only updates of Deployments as new generations (tests/integration/environment.rs).
fn template_hash(d: &Deployment) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let template = &d.spec.template;
    serde_json::to_string(&template)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

async fn drive(
    client: Client,
    ns: &str,
    plan: Plan,
    record: &std::path::Path,
    label: &str,
) -> Res<()> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let workloads = deployments
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len();
    if plan.changes > workloads {
        return Err(format!(
            "{} changes need as many workloads; there are {workloads}",
            plan.changes
        )
        .into());
    }
    let mut previous = HashMap::new();
    for cm in cms.list(&ListParams::default()).await?.items {
        previous.insert(cm.name_any(), data_of(&cm));
    }

    let pending = Arc::new(Mutex::new(Pending::default()));
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let watch = {
        let pending = Arc::clone(&pending);
        let mut synced_tx = Some(synced_tx);
        watcher(deployments, watcher::Config::default())
            .default_backoff()
            .try_for_each(move |event| {
                let mut p = pending.lock().expect("not poisoned");
                match event {
                    watcher::Event::Apply(d) | watcher::Event::InitApply(d) => {
                        let name = d.name_any();
                        let template = template_hash(&d);
                        p.templates.insert(name.clone(), template);
                        if let Some((before, _)) = p.waiting.get(&name)
                            && template != *before
                            && let Some((_, at)) = p.waiting.remove(&name)
                        {
                            p.latencies.push(at.elapsed());
                        }
                    }
                    watcher::Event::InitDone => {
                        if let Some(tx) = synced_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                }
                futures::future::ready(Ok(()))
            })
    };
    let watch = tokio::spawn(watch);
    synced_rx.await?;

    let run = format!("{label}-{}", std::process::id());
    let mut lines = String::new();
    let period = Duration::from_secs_f64(1.0 / plan.rate);
    let start = tokio::time::Instant::now();
    for j in 0..plan.changes {
        tokio::time::sleep_until(start + period * j as u32).await;
        let i = (plan.offset + j) % workloads;
        let (cm, workload) = (format!("cm-{i}"), format!("web-{i}"));
        lines.push_str(&format!(
            "{cm}\t{}\n",
            previous.get(&cm).cloned().unwrap_or_default()
        ));
        {
            let mut p = pending.lock().expect("not poisoned");
            let template = p.templates.get(&workload).copied().unwrap_or_default();
            p.waiting.insert(workload, (template, Instant::now()));
        }
        let patch = json!({"data": {"bench": format!("{run}-{j}")}});
        let cms = cms.clone();
        tokio::spawn(async move {
            if let Err(e) = cms
                .patch(&cm, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                eprintln!("drive: {cm}: {e}");
            }
        });
    }
    std::fs::write(record, lines)?;
    let sent = start.elapsed();
    let deadline = Instant::now() + plan.timeout;
    while Instant::now() < deadline && !pending.lock().expect("not poisoned").waiting.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.abort();
    let p = pending.lock().expect("not poisoned");
    let mut l = p.latencies.clone();
    l.sort();
    let q = |f: f64| -> f64 {
        if l.is_empty() {
            return f64::NAN;
        }
        let at = ((l.len() as f64 * f).ceil() as usize).clamp(1, l.len()) - 1;
        l[at].as_secs_f64() * 1000.0
    };
    println!(
        "{{\"label\":\"{label}\",\"changes\":{},\"rate\":{},\"seconds\":{:.1},\"missed\":{},\"p50_ms\":{:.1},\"p90_ms\":{:.1},\"p99_ms\":{:.1},\"max_ms\":{:.1}}}",
        plan.changes,
        plan.rate,
        sent.as_secs_f64(),
        p.waiting.len(),
        q(0.50),
        q(0.90),
        q(0.99),
        q(1.0),
    );
    Ok(())
}

async fn restore(
    client: Client,
    ns: &str,
    record: &std::path::Path,
    concurrency: usize,
) -> Res<()> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let text = std::fs::read_to_string(record)?;
    let jobs = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(cm, value)| {
            let (cms, deployments) = (cms.clone(), deployments.clone());
            let (cm, value) = (cm.to_string(), value.to_string());
            async move {
                let pp = PatchParams::default();
                let data = json!({"data": {"bench": value}});
                cms.patch(&cm, &pp, &Patch::Merge(&data)).await?;
                let workload = cm.replacen("cm-", "web-", 1);
                let unmark =
                    json!({"spec": {"template": {"metadata": {"annotations": {FLOOR: null}}}}});
                deployments
                    .patch(&workload, &pp, &Patch::Merge(&unmark))
                    .await?;
                Ok::<_, kube::Error>(())
            }
        });
    stream::iter(jobs)
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// What of a workload kube-reloader may write: its pod template and its own annotations.
fn written(d: &Deployment) -> String {
    let ours: BTreeMap<_, _> = d
        .annotations()
        .iter()
        .filter(|(k, _)| k.starts_with(OURS) && k.as_str() != "kube-reloader.io/auto")
        .collect();
    let template = &d.spec.template;
    serde_json::to_string(&(ours, template)).unwrap_or_default()
}

async fn writes(client: Client, ns: &str) -> Res<()> {
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    let mut state: HashMap<String, String> = HashMap::new();
    let mut changed: std::collections::HashSet<String> = Default::default();
    let mut writes = 0usize;
    let events = watcher(deployments, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    let stop = terminated();
    let mut stop = std::pin::pin!(stop);
    let (tx, mut synced) = tokio::sync::watch::channel(false);
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            e = events.next() => e,
        };
        let Some(event) = event else { break };
        match event {
            Ok(watcher::Event::InitApply(d)) => {
                state.insert(d.name_any(), written(&d));
            }
            Ok(watcher::Event::InitDone) => {
                let _ = tx.send(true);
                eprintln!("writes: watching {} workloads", state.len());
            }
            Ok(watcher::Event::Apply(d)) if *synced.borrow_and_update() => {
                let now = written(&d);
                if state
                    .insert(d.name_any(), now.clone())
                    .is_some_and(|before| before != now)
                {
                    writes += 1;
                    changed.insert(d.name_any());
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("writes: watch: {e}"),
        }
    }
    println!("{{\"writes\":{writes},\"workloads\":{}}}", changed.len());
    Ok(())
}
