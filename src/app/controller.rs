//! Wiring: the digest key, the ConfigMap/Secret watchers feeding the store, the reverse-index
//! router, and one kube-runtime Controller per workload kind and watched scope.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::TryStreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::controller::{self, Controller, Error as ControllerError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use thiserror::Error;
use tokio::sync::watch;

use crate::adapters::api::{api_for, discover, serves};
use crate::adapters::client;
use crate::adapters::key::{self, KeyError, KeySecret};
use crate::adapters::lease;
use crate::alerts::{self, AlertError, Alerts};
use crate::app::http::{self, Health};
use crate::locked;
use crate::model::kinds::{WorkloadKind, WorkloadRef};
use crate::reconcile::{self, Context, Settings};
use crate::rules::faults::Cause;
use crate::rules::references::ConfigKind;
use crate::state::configs::{self, ConfigObject, ConfigStore, WatchHooks};
use crate::state::csi::{self, CsiStore, SecretProviderClass, StatusHooks};
use crate::state::metrics::{KindLabels, Metrics};
use crate::state::router::{Senders, Trigger, TriggerRouter};
use crate::state::workload::{Reading, Workload};

/// Page size of the ConfigMap and Secret watches until their first page sizes them
/// ([`configs::page_size`]): bounds the transient memory of listing large objects.
const LIST_PAGE_SIZE: u32 = 10;

/// Workloads are listed in pages of this many: they are decoded whole before they are slimmed,
/// so the page bounds what a list costs on top of the cache.
const WORKLOAD_PAGE_SIZE: u32 = 50;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot configure the Kubernetes client: {0} (set KUBECONFIG, or run in a cluster)")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("--namespace and --ignore-namespace leave no namespace to watch")]
    NothingToWatch,
    #[error(
        "--resources-to-ignore names both configmaps and secrets: there would be nothing to watch"
    )]
    IgnoringAll,
    #[error(transparent)]
    Lease(lease::LeaseError),
    #[error(transparent)]
    Alerts(#[from] AlertError),
    #[error("cannot listen on --metrics-addr {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How often each workload controller forgets the workloads that are gone from its cache (from
/// the cache alone: the sweep sends the API server nothing).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// What one workload controller (one kind, one watched scope) runs with.
struct ControllerParts {
    client: Client,
    kind: WorkloadKind,
    api: ApiResource,
    scope: Option<String>,
    config: watcher::Config,
    triggers: mpsc::UnboundedReceiver<Trigger>,
    ctx: Arc<Context>,
    health: Arc<Health>,
    /// Whether its first list counts towards readiness (not for a kind found served only later).
    counts_for_readiness: bool,
    stop: watch::Receiver<bool>,
    /// Set once the controller's cache has listed: before that it reconciles nothing.
    ready: Arc<AtomicBool>,
}

/// The slim copy of a watch event's object.
fn slim_event(
    event: watcher::Event<DynamicObject>,
    kind: WorkloadKind,
    reading: &Reading,
) -> watcher::Event<Workload> {
    let slim = |o| Workload::from_dynamic_with(o, kind, reading);
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(slim(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(slim(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(slim(o)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

fn run_controller(parts: ControllerParts) -> impl std::future::Future<Output = ()> {
    let ControllerParts {
        client,
        kind,
        api: resource,
        scope,
        config,
        triggers,
        ctx,
        health,
        counts_for_readiness,
        stop,
        ready,
    } = parts;
    let api: Api<DynamicObject> = match &scope {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    let watched = scope.clone().unwrap_or_else(|| "*".to_string());
    let trigger_type = resource.clone();
    let triggers = triggers
        .map(move |(ns, name)| ObjectRef::new_with(&name, trigger_type.clone()).within(&ns));
    let index_ctx = Arc::clone(&ctx);
    // As Controller::new builds it, with two differences: objects are slimmed before they are
    // cached, and deletions trigger too, so that a deleted workload is forgotten at once.
    let writer = Writer::<Workload>::new(resource.clone());
    let store = writer.as_reader();
    ctx.register_store(kind, scope.clone(), resource.clone(), store.clone());
    let stream = watcher(api, config)
        .map_ok({
            let reading = ctx.settings.reading();
            move |event| slim_event(event, kind, &reading)
        })
        .reflect(writer)
        .touched_objects();
    let concurrency = ctx.settings.max_concurrent_reconciles;
    let controller = Controller::for_stream_with(stream, store.clone(), resource.clone())
        .with_config(controller::Config::default().concurrency(concurrency));
    let (sweep_ctx, mut sweep_stop) = (Arc::clone(&ctx), stop.clone());
    // kube-runtime's readiness signal wakes only one of several concurrent waiters, and the
    // controller itself waits on it too; so poll it with a timeout instead of awaiting it once.
    tokio::spawn(async move {
        loop {
            let wait = tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready());
            match wait.await {
                Ok(Ok(())) => {
                    ready.store(true, Ordering::Release);
                    if counts_for_readiness {
                        health.workload_synced();
                    }
                    break;
                }
                Ok(Err(_)) => return, // the controller is gone
                Err(_) => continue,
            }
        }
        // A deletion triggers a reconcile that finds the workload gone (ObjectNotFound, below),
        // but one made while the watch was down only shows as an absence after the relist; so
        // what the context holds is also swept against the cache, for this controller's scope
        // only. Ends with the controller (say, on losing the Lease), so no stale cache outlives
        // it.
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = sweep_stop.wait_for(|s| *s) => return,
            }
            for w in sweep_ctx.known(kind, scope.as_deref()) {
                let key = ObjectRef::new_with(&w.name, resource.clone()).within(&w.namespace);
                if store.get(&key).is_none() {
                    sweep_ctx.forget(&w);
                }
            }
        }
    });
    let mut stop = stop;
    controller
        .reconcile_on(triggers)
        // On stop: take no new work, let reconciles in flight finish, then end.
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(move |result| {
            match result {
                Ok(_) => {}
                // A workload deleted (or deleted since a config change was routed to it).
                Err(ControllerError::ObjectNotFound(obj)) => {
                    index_ctx.forget(&WorkloadRef {
                        kind,
                        namespace: obj.namespace.clone().unwrap_or_default(),
                        name: obj.name.clone(),
                    });
                }
                Err(ControllerError::ReconcilerFailed(..)) => {} // logged by error_policy
                Err(ControllerError::QueueError(e)) => {
                    let cause = Cause::of(&e);
                    index_ctx.metrics.watch_restart(kind.as_str(), cause);
                    tracing::warn!(target: "kube_reloader::controller", kind = %kind, scope = %watched, cause = cause.as_str(), error = %e,
                        "{}", cause.advice(&kind.plural_name()));
                }
                Err(e) => tracing::warn!(target: "kube_reloader::controller", kind = %kind, error = %e, "controller error"),
            }
            futures::future::ready(())
        })
}

/// Whether the API server serves the Secrets Store CSI driver's status objects; when it does not
/// (the driver is not installed), says so. Looked up at start only, as Reloader does.
async fn csi_served(client: &Client) -> bool {
    let group_version = format!("{}/{}", csi::GROUP, csi::VERSION);
    match serves(client, &group_version, "secretproviderclasspodstatuses").await {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!(target: "kube_reloader::controller", api_version = %group_version,
                "--enable-csi-integration is on, but this API server does not serve {group_version} secretproviderclasspodstatuses (the Secrets Store CSI driver is not installed): not watching them. Install the driver, then restart kube-reloader.");
            false
        }
        Err(e) => {
            // Watched all the same: the watches report what goes wrong, and retry.
            tracing::warn!(target: "kube_reloader::controller", error = %e,
                "looking up whether the API server serves {group_version} failed; watching the CSI driver's objects all the same");
            true
        }
    }
}

/// How often a kind whose API is not served is looked up again, if it is (see [`when_unserved`]).
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(20);

/// What becomes of a kind the API server does not serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unserved {
    /// Looked up again every [`DISCOVERY_INTERVAL`], and watched as soon as it is served.
    LookAgain,
    /// Not looked up again until a restart.
    GiveUp,
}

/// What becomes of `kind` while it is not served, `named` being the kinds the user named
/// ([`WatchScope::named_kinds`](crate::rules::scope::WatchScope::named_kinds)). A kind asked for is looked for until it comes. One that only comes
/// with the default `--kinds` is not: most clusters never install Argo Rollouts (nor serve
/// batch/v1 CronJobs before 1.21), and looking would cost them a request every 20 s for ever,
/// when a cluster with nothing changing should cost kube-reloader's watches alone.
pub fn when_unserved(kind: WorkloadKind, named: &[WorkloadKind]) -> Unserved {
    if named.contains(&kind) {
        Unserved::LookAgain
    } else {
        Unserved::GiveUp
    }
}

fn spawn_config_watch<K: ConfigObject>(
    client: &Client,
    scope: &Option<String>,
    selector: Option<String>,
    watch: &watcher::Config,
    ctx: &Arc<Context>,
) {
    let mut config = watch.clone().page_size(LIST_PAGE_SIZE);
    if let Some(s) = selector {
        config = config.fields(&s);
    }
    if let Some(labels) = ctx.settings.scope.config_labels(K::KIND) {
        config = config.labels(labels);
    }
    let api = api_for::<K>(client, scope);
    let (store, key, compat) = (
        Arc::clone(&ctx.configs),
        ctx.key.clone(),
        ctx.settings.policy.reloader().copied(),
    );
    let ctx = Arc::clone(ctx);
    let scope = scope.clone();
    tokio::spawn(async move {
        let hooks = WatchHooks {
            changed: |keys| ctx.router.changed(keys, &ctx.index),
            listed: || {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or_default();
                ctx.metrics.last_sync.set(now);
            },
            failed: |cause| ctx.metrics.watch_restart(K::KIND.as_str(), cause),
        };
        configs::watch::<K>(api, config, scope, store, key, compat, hooks).await
    });
}

/// Watches the Secrets Store CSI driver's status objects within one scope, the owners of their
/// Pods looked up as they come. Never with `--resource-label-selector`: the objects are the
/// driver's, and carry no labels of their users.
fn spawn_status_watch(
    client: &Client,
    scope: &Option<String>,
    watch: &watcher::Config,
    ctx: &Arc<Context>,
) {
    let mut config = watch.clone().page_size(STATUS_PAGE_SIZE);
    if let Some(s) = ctx
        .settings
        .scope
        .config_fields(ConfigKind::SecretProviderClass)
    {
        config = config.fields(&s);
    }
    let api = api_for::<csi::SecretProviderClassPodStatus>(client, scope);
    let owners = csi::Owners::new(client.clone(), ctx.settings.scope.kinds.clone());
    let (ctx, scope) = (Arc::clone(ctx), scope.clone());
    tokio::spawn(async move {
        let hooks = StatusHooks {
            changed: |keys| ctx.router.changed(keys, &ctx.index),
            failed: |cause| {
                ctx.metrics
                    .watch_restart("SecretProviderClassPodStatus", cause)
            },
            synced: || ctx.configs.mark_stream_synced(),
        };
        let store = Arc::clone(&ctx.csi);
        csi::watch(api, config, scope, store, owners, hooks).await
    });
}

/// Status objects are small (a few hundred bytes as JSON): listed this many at a time.
const STATUS_PAGE_SIZE: u32 = 500;

/// The controller's configuration, built once by the command line: each part a type of the layer
/// that uses it.
pub struct Config {
    /// How workloads are reconciled, and what is watched.
    pub settings: Settings,
    /// `--alert-webhook-url` and its companions; `None` without a URL.
    pub alerts: Option<alerts::Config>,
    /// How long the client waits on the API server.
    pub timeouts: client::Timeouts,
    /// `--initial-list`: how watches read what exists.
    pub initial_list: client::InitialList,
    /// Leader election, with `--leader-elect`.
    pub lease: Option<lease::Config>,
    /// `--debounce`.
    pub debounce: Duration,
    /// `--metrics-addr`.
    pub metrics_addr: std::net::SocketAddr,
    /// The digest key Secret.
    pub key: KeySecret,
    /// `--shutdown-grace`.
    pub shutdown_grace: Duration,
}

/// Runs the controller until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), RunError> {
    let Config {
        settings,
        alerts: alert_config,
        timeouts,
        initial_list,
        lease: lease_config,
        debounce,
        metrics_addr,
        key: key_secret,
        shutdown_grace,
    } = config;
    let watched = settings.scope.clone();
    // Flags first: nothing is read or created in the cluster for a run refused anyway.
    let scopes = watched.scopes();
    if scopes.is_empty() {
        return Err(RunError::NothingToWatch);
    }
    let config_kinds = watched.config_kinds();
    if config_kinds.is_empty() {
        return Err(RunError::IgnoringAll);
    }
    let kube_config = kube::Config::infer()
        .await
        .map_err(|e| RunError::Client(kube::Error::InferConfig(e)))?;
    let connector = client::Connector::new(kube_config);
    let client = connector.client(timeouts).map_err(RunError::Client)?;
    let controller_ns = key_secret.namespace.clone();
    // With the CSI integration, one more stream per scope: the driver's status objects.
    let streams = config_kinds.len() + usize::from(watched.csi());
    let store = Arc::new(ConfigStore::new(scopes.len() * streams));
    let metrics = Arc::new(Metrics::default());
    // Ready once every ConfigMap/Secret watch has listed, and, while leading, every workload watch.
    let health = Arc::new(Health::new(Arc::clone(&store)));
    let serve = http::bind(metrics_addr, Arc::clone(&metrics), Arc::clone(&health))
        .await
        .map_err(|source| RunError::Listen {
            addr: metrics_addr,
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!(target: "kube_reloader::controller", error = %e, "the metrics and probe listener stopped");
        }
    });
    // Read after the listener is up: while the API server cannot be reached, the key is retried,
    // and the probes must say "alive, not ready" meanwhile, or the kubelet would restart the Pod.
    let key = key::load_or_create(
        client.clone(),
        &controller_ns,
        &key_secret.name,
        settings.field_manager,
    )
    .await?;
    // Asked of the API server once the key could be read (it answers by then), of the first
    // scope and kind watched (so that the probe needs no permission beyond theirs).
    let scope = scopes[0].as_deref();
    let initial_list = match config_kinds[0] {
        ConfigKind::Secret => initial_list.resolve::<Secret>(&client, scope).await,
        _ => initial_list.resolve::<ConfigMap>(&client, scope).await,
    };
    // Every watch is asked to end before the client would take it for dead.
    let watch = initial_list.watch_config(timeouts);
    tracing::info!(target: "kube_reloader::controller",
        namespaces = ?scopes.iter().map(|s| s.as_deref().unwrap_or("*")).collect::<Vec<_>>(),
        ignored = ?watched.ignored_namespaces,
        controller_namespace = %controller_ns,
        key_id = key.id(),
        reloader_compat = settings.policy.reloader_compat,
        csi = watched.csi(),
        auto_reload_all = settings.policy.auto_reload_all,
        watched = ?config_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        namespace_selector = watched.namespace_selector.as_deref().unwrap_or(""),
        resource_label_selector = watched.resource_label_selector.as_deref().unwrap_or(""),
        kinds = %watched.kinds.iter().map(|k| k.describe()).collect::<Vec<_>>().join(","),
        "starting"
    );
    let reporter = Reporter {
        controller: reconcile::REPORTER.to_string(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let router = Arc::new(TriggerRouter::new(debounce));
    let recorder = Recorder::new(client.clone(), reporter);
    let alerts = alert_config.map(|config| {
        Alerts::start(
            config,
            &controller_ns,
            recorder.clone(),
            Arc::clone(&metrics),
        )
    });
    let ctx = Context::new(
        client.clone(),
        store,
        key,
        recorder,
        settings,
        Arc::clone(&router),
        Arc::clone(&metrics),
    );
    let ctx = Arc::new(
        ctx.with_alerts(alerts)
            .with_csi(Arc::new(CsiStore::default())),
    );
    tokio::spawn(update_gauges(Arc::clone(&ctx)));
    if watched.namespace_selector.is_some() {
        let (ctx, client, watch) = (Arc::clone(&ctx), client.clone(), watch.clone());
        health.watch_namespaces(Arc::clone(&ctx.namespaces));
        tokio::spawn(async move {
            let on_change = |changed| ctx.namespaces_changed(changed);
            let failed = |cause| ctx.metrics.watch_restart("Namespace", cause);
            ctx.namespaces.watch(client, watch, on_change, failed).await;
        });
    }

    let csi = watched.csi() && csi_served(&client).await;
    if watched.csi() && !csi {
        // Nothing to wait for: the SecretProviderClass and status streams count as listed.
        for _ in 0..scopes.len() * 2 {
            ctx.configs.mark_stream_synced();
        }
    }
    for scope in &scopes {
        if csi {
            let fields = watched.config_fields(ConfigKind::SecretProviderClass);
            spawn_config_watch::<SecretProviderClass>(&client, scope, fields, &watch, &ctx);
            spawn_status_watch(&client, scope, &watch, &ctx);
        }
        if config_kinds.contains(&ConfigKind::ConfigMap) {
            let cm_selector = watched.config_fields(ConfigKind::ConfigMap);
            spawn_config_watch::<ConfigMap>(&client, scope, cm_selector, &watch, &ctx);
        }
        if config_kinds.contains(&ConfigKind::Secret) {
            let secret_selector = watched.config_fields(ConfigKind::Secret);
            spawn_config_watch::<Secret>(&client, scope, secret_selector, &watch, &ctx);
        }
    }
    let mut workload_watch = watch.clone();
    if let Some(s) = watched.workload_fields() {
        workload_watch = workload_watch.fields(&s);
    }
    let spawn_workers = || {
        Workers::start(
            &client,
            &scopes,
            &workload_watch,
            &watched.named_kinds,
            &ctx,
            &router,
            &health,
        )
    };

    let mut shutdown = std::pin::pin!(shutdown_signal());
    let Some(lease_config) = lease_config else {
        ctx.set_may_write(true);
        metrics.leader.set(1);
        let workers = spawn_workers();
        shutdown.await;
        health.shutting_down();
        tracing::info!(target: "kube_reloader::controller", "shutting down: finishing reconciles in flight");
        workers.stop(shutdown_grace).await;
        return Ok(());
    };

    // The Lease's requests have a client of their own, bounded by the renewal grace.
    let (_, grace) = lease_config
        .seconds()
        .map_err(|e| RunError::Lease(lease::LeaseError::Settings(e)))?;
    let lease_timeouts = client::Timeouts {
        request: lease::request_timeout(grace, timeouts.request),
        ..timeouts
    };
    let lease_client = connector.client(lease_timeouts).map_err(RunError::Client)?;
    let lease_metrics = Arc::clone(&metrics);
    let failed = move |cause| lease_metrics.watch_restart("Lease", cause);
    let mut lease = lease::Elector::start(
        lease_client,
        &lease_config.namespace,
        &lease_config,
        watch,
        failed,
    )
    .await
    .map_err(RunError::Lease)?;
    let mut workers: Option<Workers> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            leading = lease.changed() => {
                metrics.leader.set(i64::from(leading));
                if leading && workers.is_none() {
                    tracing::info!(target: "kube_reloader::controller", lease = %lease_config.name, "acquired the Lease: reconciling workloads");
                    ctx.set_may_write(true);
                    workers = Some(spawn_workers());
                } else if !leading && let Some(w) = workers.take() {
                    tracing::warn!(target: "kube_reloader::controller", lease = %lease_config.name, "lost the Lease: stopping all writes, standing by");
                    ctx.set_may_write(false);
                    w.abort();
                }
            }
        }
    }
    health.shutting_down();
    tracing::info!(target: "kube_reloader::controller", "shutting down: finishing reconciles in flight, then releasing the Lease");
    if let Some(w) = workers.take() {
        w.stop(shutdown_grace).await;
    }
    ctx.set_may_write(false);
    lease.release().await;
    Ok(())
}

/// The workload controllers of every kind and scope, run while this replica may write.
struct Workers {
    /// One per kind: finds where it is served, then starts its controllers.
    discovery: Vec<tokio::task::JoinHandle<()>>,
    /// The controllers started so far, each with whether its cache has listed.
    tasks: Controllers,
    stop: watch::Sender<bool>,
    ctx: Arc<Context>,
    router: Arc<TriggerRouter>,
    health: Arc<Health>,
}

/// The workload controllers started, each with whether its cache has listed.
type Controllers = Arc<Mutex<Vec<(tokio::task::JoinHandle<()>, Arc<AtomicBool>)>>>;

/// What the controllers of one kind share.
struct KindWatch {
    client: Client,
    kind: WorkloadKind,
    /// Whether it is looked for again while it is not served.
    unserved: Unserved,
    scopes: Vec<Option<String>>,
    /// The watches' configuration: the server's timeout, the ignored namespaces.
    watch: watcher::Config,
    receivers: Vec<mpsc::UnboundedReceiver<Trigger>>,
    ctx: Arc<Context>,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
    tasks: Controllers,
}

impl KindWatch {
    /// Looks the kind up, then runs its controllers (one per scope). While it is not served, it
    /// does not hold readiness back; a kind looked for again ([`when_unserved`]) and found later
    /// is watched from then on without a restart.
    async fn run(self) {
        let mut announced = false;
        loop {
            match discover(&self.client, self.kind).await {
                Ok(Some(resource)) => {
                    if announced {
                        tracing::info!(target: "kube_reloader::controller", kind = %self.kind, api_version = %resource.api_version,
                            "{} is served now: watching it", self.kind);
                    }
                    return self.start(resource, !announced);
                }
                Ok(None) if self.unserved == Unserved::GiveUp => {
                    tracing::warn!(target: "kube_reloader::controller", kind = %self.kind, api_version = %self.kind.api_version(),
                        "{} is not served by this API server (its CRD is not installed, or this Kubernetes version lacks {}): not watching it. It comes with the default --kinds, looked up at start only: restart kube-reloader once it is served, or name it in --kinds (or --workload-kind) to have it looked for every {}s.",
                        self.kind, self.kind.api_version(), DISCOVERY_INTERVAL.as_secs());
                    if !announced {
                        self.unsynced_no_more();
                    }
                    return;
                }
                Ok(None) if !announced => {
                    tracing::warn!(target: "kube_reloader::controller", kind = %self.kind, api_version = %self.kind.api_version(),
                        "{} is not served by this API server (its CRD is not installed, or this Kubernetes version lacks {}): not watching it; looking again every {}s. Leave it out of --kinds (or --workload-kind) to stop looking.",
                        self.kind, self.kind.api_version(), DISCOVERY_INTERVAL.as_secs());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target: "kube_reloader::controller", kind = %self.kind, error = %e,
                    "looking up where the API server serves {} failed; trying again in {}s",
                    self.kind, DISCOVERY_INTERVAL.as_secs())
                }
            }
            if !announced {
                announced = true;
                self.unsynced_no_more();
            }
            tokio::time::sleep(DISCOVERY_INTERVAL).await;
        }
    }

    /// Readiness waits no more for this kind's watches (it is not served).
    fn unsynced_no_more(&self) {
        for _ in &self.scopes {
            self.health.workload_synced();
        }
    }

    fn start(self, resource: ApiResource, counts_for_readiness: bool) {
        self.ctx.set_api_resource(self.kind, resource.clone());
        let mut tasks = locked(&self.tasks);
        for (scope, triggers) in self.scopes.into_iter().zip(self.receivers) {
            let config = self.watch.clone().page_size(WORKLOAD_PAGE_SIZE);
            let ready = Arc::new(AtomicBool::new(false));
            let parts = ControllerParts {
                client: self.client.clone(),
                kind: self.kind,
                api: resource.clone(),
                scope,
                config,
                triggers,
                ctx: Arc::clone(&self.ctx),
                health: Arc::clone(&self.health),
                counts_for_readiness,
                stop: self.stop.clone(),
                ready: Arc::clone(&ready),
            };
            tasks.push((tokio::spawn(run_controller(parts)), ready));
        }
    }
}

impl Workers {
    fn start(
        client: &Client,
        scopes: &[Option<String>],
        watch: &watcher::Config,
        named_kinds: &[WorkloadKind],
        ctx: &Arc<Context>,
        router: &Arc<TriggerRouter>,
        health: &Arc<Health>,
    ) -> Self {
        let kinds = ctx.settings.scope.kinds.clone();
        let (stop, stop_rx) = watch::channel(false);
        health.expect_workloads(scopes.len() * kinds.len());
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let mut senders = Senders::new();
        let mut discovery = Vec::new();
        for kind in kinds {
            let mut receivers = Vec::new();
            for scope in scopes {
                let (tx, rx) = mpsc::unbounded();
                senders.insert((kind, scope.clone()), tx);
                receivers.push(rx);
            }
            let watch = KindWatch {
                client: client.clone(),
                kind,
                unserved: when_unserved(kind, named_kinds),
                scopes: scopes.to_vec(),
                watch: watch.clone(),
                receivers,
                ctx: Arc::clone(ctx),
                health: Arc::clone(health),
                stop: stop_rx.clone(),
                tasks: Arc::clone(&tasks),
            };
            discovery.push(tokio::spawn(watch.run()));
        }
        router.set_senders(senders);
        Self {
            discovery,
            tasks,
            stop,
            ctx: Arc::clone(ctx),
            router: Arc::clone(router),
            health: Arc::clone(health),
        }
    }

    /// Stops at once (the Lease is lost: nothing more may be written).
    fn abort(self) {
        self.router.set_senders(Senders::new());
        self.health.expect_workloads(0);
        for d in &self.discovery {
            d.abort();
        }
        for (t, _) in locked(&self.tasks).iter() {
            t.abort();
        }
        self.ctx.clear_stores();
    }

    /// Stops taking work and waits up to `grace` for reconciles in flight to finish.
    async fn stop(self, grace: Duration) {
        self.router.set_senders(Senders::new());
        for d in &self.discovery {
            d.abort();
        }
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        let tasks = std::mem::take(&mut *locked(&self.tasks));
        for (t, ready) in tasks {
            let abort = t.abort_handle();
            // kube-runtime holds every reconcile back until the cache has listed, and a graceful
            // shutdown stops the watch that would list it: such a controller has nothing in
            // flight and would only wait out the grace period.
            if !ready.load(Ordering::Acquire) {
                abort.abort();
                continue;
            }
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                tracing::warn!(target: "kube_reloader::controller", "a reconcile did not finish within --shutdown-grace; abandoning it");
                abort.abort();
            }
        }
        self.ctx.clear_stores();
    }
}

/// Refreshes the gauges that are counts of what the store and index hold.
async fn update_gauges(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let set = |kind: &'static str, n: usize| {
            let labels = KindLabels { kind };
            ctx.metrics
                .watched_objects
                .get_or_create(&labels)
                .set(n as i64);
        };
        for kind in [ConfigKind::ConfigMap, ConfigKind::Secret] {
            set(kind.as_str(), ctx.configs.count(kind));
        }
        if ctx.settings.scope.csi() {
            let spc = ConfigKind::SecretProviderClass;
            set(spc.as_str(), ctx.configs.count(spc));
            set("SecretProviderClassPodStatus", ctx.csi.len());
        }
        ctx.metrics.tracked_workloads.set(ctx.index.len() as i64);
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
