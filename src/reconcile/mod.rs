//! One reconcile for every workload kind: compare the digest of what the workload tracks with the
//! baseline it records, and record a baseline or roll it out.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use thiserror::Error;

use crate::alerts::Alerts;
use crate::locked;
use crate::model::kinds::{WorkloadKind, WorkloadRef};
use crate::rules::assess::{self, Assessment};
use crate::rules::decision::{Action as Decided, Change, Inputs, WaitReason, Wave, decide};
use crate::rules::digest::{Recorded, SecretKey};
use crate::rules::optin::{self};
use crate::rules::ratelimit::TokenBucket;
use crate::rules::references::ConfigKind;
use crate::rules::restart_window::{self, Standing};
use crate::rules::rollout::Progressive;
use crate::rules::scope::WatchScope;
use crate::state::configs::{ConfigObject, ConfigStore};
use crate::state::csi::{CsiStore, WorkloadView};
use crate::state::index::Index;
use crate::state::metrics::{KindLabels, Metrics};
use crate::state::namespaces::{Changed, NamespaceFilter};
use crate::state::router::TriggerRouter;
use crate::state::workload::{Reading, Workload};

pub use crate::model::annotations::{FIELD_MANAGER, REPORTER, written};

mod events;
mod execute;
mod progressive;

pub use events::error_policy;
use events::{EVENTS_AT_ONCE, publish, warn_invalid_flags, warn_missing};
pub use execute::changed_text;
use execute::{Found, execute};

/// How workloads are reconciled, as the command line says.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How opt-in annotations are read (Reloader's honoured, --auto-reload-all,
    /// --resources-to-ignore).
    pub policy: optin::Policy,
    /// What is watched (so a check of an absence reads as the watches do).
    pub scope: WatchScope,
    pub min_rollout_interval: Duration,
    /// Report what would be rolled out; write nothing to workloads.
    pub dry_run: bool,
    /// Reconciles in flight at once per workload controller.
    pub max_concurrent_reconciles: u16,
    /// The global token bucket of rollouts: its rate per second and burst.
    pub max_rollouts_per_second: f64,
    pub rollout_burst: u32,
    /// The field manager of every write (`--field-manager`).
    pub field_manager: &'static str,
    /// Progressive rollouts: `--progressive`, the waves, `--rollout-timeout`.
    pub progressive: Progressive,
}

impl Settings {
    /// How workloads are read into their slim copies.
    pub fn reading(&self) -> Reading {
        Reading {
            names: self.policy.names,
            field_manager: self.field_manager,
        }
    }
}

/// A running controller's workload cache: its kind, scope, where it is served, and the cache.
type Cache = (WorkloadKind, Option<String>, ApiResource, Store<Workload>);

/// Everything a reconcile needs, shared.
pub struct Context {
    pub client: Client,
    pub configs: Arc<ConfigStore>,
    /// What the Secrets Store CSI driver's pods report (empty without
    /// `--enable-csi-integration`).
    pub csi: Arc<CsiStore>,
    pub index: Index,
    pub key: SecretKey,
    pub recorder: Recorder,
    /// Events being published at once: they are sent beside the reconciles, not in their way
    /// (a rollout is done when its write is; its Event must not hold a reconcile slot).
    event_slots: Arc<tokio::sync::Semaphore>,
    pub settings: Settings,
    pub bucket: Mutex<TokenBucket>,
    pub metrics: Arc<Metrics>,
    /// With `--dry-run`, the baselines that would have been written, so that later changes can
    /// be reported as the rollouts they would cause.
    dry_run_baselines: Mutex<HashMap<WorkloadRef, Recorded>>,
    /// (workload, problem) pairs already warned about: once, not on every resync, and again
    /// only after the problem went away and came back.
    warned: Mutex<HashSet<(WorkloadRef, String)>>,
    /// Whether this replica may write (it holds the Lease, or leader election is off).
    may_write: std::sync::atomic::AtomicBool,
    /// resourceVersion a workload had just before our last write to it. Until the watch delivers
    /// the written version, a reconcile would see the old baseline and roll a second time.
    pending_writes: Mutex<HashMap<WorkloadRef, String>>,
    /// Failed reconciles in a row, per workload: the retry delay grows with them.
    failures: Mutex<HashMap<WorkloadRef, u32>>,
    /// With `--rollout-soak`: since when each workload's progressive rollout of a change has
    /// been seen complete.
    complete_since: Mutex<HashMap<WorkloadRef, (crate::rules::rollout::ChangeId, Instant)>>,
    /// The workloads' debounce windows, and the triggers at their ends.
    pub router: Arc<TriggerRouter>,
    /// Where the API server serves each kind (found by discovery).
    resources: Mutex<HashMap<WorkloadKind, ApiResource>>,
    /// The alert queue, with `--alert-webhook-url`: an alert per rollout.
    alerts: Option<Alerts>,
    /// The workload caches of the running controllers, by kind and scope.
    stores: Mutex<Vec<Cache>>,
    /// `--namespace-selector`'s namespaces.
    pub namespaces: Arc<NamespaceFilter>,
    /// The workloads whose pod template lives in another (Argo Rollouts' workloadRef), by the
    /// namespace and name of that Deployment.
    template_users: Mutex<HashMap<(String, String), HashSet<WorkloadRef>>>,
}

impl Context {
    pub fn new(
        client: Client,
        configs: Arc<ConfigStore>,
        key: SecretKey,
        recorder: Recorder,
        settings: Settings,
        router: Arc<TriggerRouter>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let namespaces = Arc::new(NamespaceFilter::new(
            settings.scope.namespace_selector.clone(),
        ));
        let bucket = TokenBucket::new(
            settings.max_rollouts_per_second,
            settings.rollout_burst,
            Instant::now(),
        );
        Self {
            client,
            configs,
            csi: Arc::default(),
            index: Index::default(),
            key,
            recorder,
            event_slots: Arc::new(tokio::sync::Semaphore::new(EVENTS_AT_ONCE)),
            settings,
            bucket: Mutex::new(bucket),
            metrics,
            dry_run_baselines: Mutex::default(),
            warned: Mutex::default(),
            may_write: std::sync::atomic::AtomicBool::new(false),
            pending_writes: Mutex::default(),
            failures: Mutex::default(),
            complete_since: Mutex::default(),
            router,
            resources: Mutex::default(),
            alerts: None,
            stores: Mutex::default(),
            template_users: Mutex::default(),
            namespaces,
        }
    }
}

impl Context {
    /// Reads what the CSI driver's pods report from this store.
    pub fn with_csi(mut self, csi: Arc<CsiStore>) -> Self {
        self.csi = csi;
        self
    }

    /// Sends an alert for every rollout to this queue.
    pub fn with_alerts(mut self, alerts: Option<Alerts>) -> Self {
        self.alerts = alerts;
        self
    }

    /// Allows or forbids writes to workloads (the Lease gate).
    pub fn set_may_write(&self, may: bool) {
        self.may_write
            .store(may, std::sync::atomic::Ordering::Release);
    }

    fn may_write(&self) -> bool {
        self.may_write.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records where the API server serves `kind`.
    pub fn set_api_resource(&self, kind: WorkloadKind, resource: ApiResource) {
        locked(&self.resources).insert(kind, resource);
    }

    /// Where the API server serves `kind`, once found.
    pub fn api_resource(&self, kind: WorkloadKind) -> Option<ApiResource> {
        locked(&self.resources).get(&kind).cloned()
    }

    /// Makes a controller's cache readable by other reconciles.
    pub fn register_store(
        &self,
        kind: WorkloadKind,
        scope: Option<String>,
        resource: ApiResource,
        store: Store<Workload>,
    ) {
        locked(&self.stores).push((kind, scope, resource, store));
    }

    /// Drops every cache (the controllers stopped).
    pub fn clear_stores(&self) {
        locked(&self.stores).clear();
    }

    /// A workload from the controllers' caches; `Err` while the cache that would hold it has not
    /// listed yet (or its controller has not started).
    fn cached(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Workload>>, NotSynced> {
        let stores = locked(&self.stores);
        let (_, _, resource, store) = stores
            .iter()
            .find(|(k, scope, ..)| *k == kind && scope.as_deref().is_none_or(|s| s == namespace))
            .ok_or(NotSynced)?;
        if store.wait_until_ready().now_or_never().is_none() {
            return Err(NotSynced);
        }
        Ok(store.get(&ObjectRef::new_with(name, resource.clone()).within(namespace)))
    }

    /// Namespaces started or stopped matching `--namespace-selector`: the workloads in the new
    /// ones are reconciled now, those in the old ones forgotten.
    pub fn namespaces_changed(&self, changed: Changed) {
        if !changed.added.is_empty() {
            let stores = locked(&self.stores);
            for (_, _, _, store) in stores.iter() {
                for obj in store.state() {
                    let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
                    if changed.added.iter().any(|n| n == ns) {
                        self.router.now(&workload_ref(&obj));
                    }
                }
            }
        }
        for ns in &changed.removed {
            for kind in &self.settings.scope.kinds {
                for w in self.known(*kind, Some(ns)) {
                    self.forget(&w);
                }
            }
        }
    }

    /// Notes that `user` takes its pod template from Deployment `name` (or from none).
    fn set_template_source(&self, user: &WorkloadRef, name: Option<&str>) {
        let mut users = locked(&self.template_users);
        users.retain(|_, set| {
            set.remove(user);
            !set.is_empty()
        });
        if let Some(name) = name {
            let key = (user.namespace.clone(), name.to_string());
            users.entry(key).or_default().insert(user.clone());
        }
    }

    /// Reconciles the workloads that take their pod template from this Deployment: a change of
    /// it is a change of their template.
    fn template_changed(&self, deployment: &WorkloadRef) {
        let key = (deployment.namespace.clone(), deployment.name.clone());
        let users: Vec<WorkloadRef> = locked(&self.template_users)
            .get(&key)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        for user in users {
            self.router.now(&user);
        }
    }

    /// Every workload of `kind` (in `namespace`, or in all when `None`) this context holds
    /// something about: indexed, warned about, failing, debouncing, or with a write or dry-run
    /// baseline in flight.
    pub fn known(&self, kind: WorkloadKind, namespace: Option<&str>) -> HashSet<WorkloadRef> {
        let mine = |w: &&WorkloadRef| w.kind == kind && namespace.is_none_or(|n| n == w.namespace);
        let indexed = self.index.workloads(kind).into_iter();
        let mut known: HashSet<WorkloadRef> = indexed.filter(|w| mine(&w)).collect();
        known.extend(
            locked(&self.warned)
                .iter()
                .map(|(w, _)| w)
                .filter(mine)
                .cloned(),
        );
        known.extend(locked(&self.failures).keys().filter(mine).cloned());
        known.extend(locked(&self.pending_writes).keys().filter(mine).cloned());
        known.extend(locked(&self.dry_run_baselines).keys().filter(mine).cloned());
        known.extend(self.router.workloads().into_iter().filter(|w| mine(&w)));
        known.extend(
            locked(&self.template_users)
                .values()
                .flatten()
                .filter(mine)
                .cloned(),
        );
        known
    }

    /// Forgets everything about a workload that no longer exists, so that memory follows the
    /// workloads that exist, whatever the churn.
    pub fn forget(&self, wref: &WorkloadRef) {
        tracing::debug!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
            "workload deleted; forgetting it");
        self.index.remove(wref);
        locked(&self.warned).retain(|(w, _)| w != wref);
        locked(&self.failures).remove(wref);
        locked(&self.complete_since).remove(wref);
        locked(&self.pending_writes).remove(wref);
        locked(&self.dry_run_baselines).remove(wref);
        self.router.forget(wref);
        self.set_template_source(wref, None);
    }

    /// Which of these tracked objects (`Kind/name`) exist in the API server, read now (a list by
    /// name, with the watch's own selector, so an object the watch leaves out counts as absent
    /// here too). Metadata only: no Secret value is read.
    pub async fn find_present(
        &self,
        namespace: &str,
        objects: &[String],
    ) -> Result<Vec<String>, Error> {
        let mut present = Vec::new();
        for object in objects {
            let found = match object.split_once('/') {
                Some(("Secret", name)) => {
                    let skipped = self.settings.scope.object_fields(ConfigKind::Secret);
                    self.exists::<Secret>(namespace, name, skipped).await
                }
                Some((_, name)) => self.exists::<ConfigMap>(namespace, name, None).await,
                None => continue,
            };
            let found = found.map_err(|source| Error::Read {
                namespace: namespace.to_string(),
                object: object.clone(),
                source,
            })?;
            self.metrics.absence_check(found);
            if found {
                present.push(object.clone());
            }
        }
        Ok(present)
    }

    /// Whether object `name` of kind `K` exists in `namespace` and passes `selector`.
    async fn exists<K: ConfigObject>(
        &self,
        namespace: &str,
        name: &str,
        selector: Option<String>,
    ) -> Result<bool, kube::Error> {
        let fields = match selector {
            Some(s) => format!("metadata.name={name},{s}"),
            None => format!("metadata.name={name}"),
        };
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let mut params = ListParams::default().fields(&fields);
        if let Some(labels) = &self.settings.scope.resource_label_selector {
            params = params.labels(labels);
        }
        let list = api.list_metadata(&params).await?;
        Ok(!list.items.is_empty())
    }

    /// Whether a problem of a workload is to be reported now: true the first time it is seen,
    /// false while it persists; once it is gone, it is forgotten.
    fn report_once(&self, wref: &WorkloadRef, problem: String, present: bool) -> bool {
        let mut warned = locked(&self.warned);
        let key = (wref.clone(), problem);
        if present {
            warned.insert(key)
        } else {
            warned.remove(&key);
            false
        }
    }
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("not writing to {0}: this replica does not hold the Lease")]
    NotLeader(WorkloadRef),
    #[error(
        "checking whether {object} exists in namespace {namespace} failed: {source} (the controller needs list on configmaps and secrets)"
    )]
    Read {
        namespace: String,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("not writing to {0}: the API server does not serve its kind")]
    NotServed(WorkloadRef),
    #[error("writing the config-hash annotations of {workload} failed: {source}")]
    Write {
        workload: WorkloadRef,
        #[source]
        source: kube::Error,
    },
}

fn workload_ref(obj: &Workload) -> WorkloadRef {
    WorkloadRef {
        kind: obj.kind,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    }
}

/// The reconcile, in kube-runtime's shape.
pub async fn reconcile(obj: Arc<Workload>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.configs.wait_synced().await;
    ctx.namespaces.wait_synced().await;
    let start = Instant::now();
    let wref = workload_ref(obj.as_ref());
    let result = reconcile_synced(obj, &ctx).await;
    if result.is_ok() {
        locked(&ctx.failures).remove(&wref);
    }
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels {
            kind: wref.kind.as_str(),
        })
        .observe(start.elapsed().as_secs_f64());
    result
}

async fn reconcile_synced(obj: Arc<Workload>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let wref = workload_ref(obj.as_ref());

    // Skip a copy of the object older than our own last write (see `pending_writes`).
    {
        let mut pending = locked(&ctx.pending_writes);
        if let Some(before) = pending.get(&wref) {
            if obj.resource_version().as_ref() == Some(before) {
                return Ok(Action::requeue(Duration::from_millis(500)));
            }
            pending.remove(&wref);
        }
    }

    if wref.kind == WorkloadKind::DEPLOYMENT {
        ctx.template_changed(&wref);
    }
    if !ctx.namespaces.allows(&wref.namespace) {
        // Outside --namespace-selector.
        return Ok(leave_alone(ctx, &wref));
    }
    // The pod template: the workload's own, or the one in the Deployment it refers to.
    let source = match template_source(ctx, obj.as_ref(), &wref) {
        Ok(source) => source,
        Err(action) => return Ok(action),
    };
    let subject = obj.subject(source.as_deref());
    let restart = assess::restart(&subject, &ctx.settings.policy);
    let settings = assess::Settings {
        policy: &ctx.settings.policy,
        key_id: ctx.key.id(),
        dry_run: ctx.settings.dry_run,
    };
    // A dry run, typically beside Reloader: Reloader's rollout for a config change is not a
    // template change that covers it, or the dry run would report nothing where kube-reloader
    // alone rolls. Its baselines live in memory, digested the same way.
    let simulated = if ctx.settings.dry_run {
        locked(&ctx.dry_run_baselines).get(&wref).cloned()
    } else {
        None
    };
    let view = WorkloadView {
        configs: &ctx.configs,
        csi: &ctx.csi,
        namespace: &wref.namespace,
        kind: wref.kind,
        name: &wref.name,
    };
    let assessed = match assess::assess(&subject, &view, &settings, simulated) {
        Assessment::OptedIn(assessed) => assessed,
        // Not opted in, or auto only by --auto-reload-all with nothing to track: no baseline to
        // write.
        Assessment::NotOptedIn | Assessment::NothingTracked => return Ok(leave_alone(ctx, &wref)),
        Assessment::Invalid(invalid) => {
            ctx.index.remove(&wref);
            ctx.router.forget(&wref);
            ctx.metrics.error("invalid_annotation");
            tracing::warn!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
                "{invalid}; the workload is left alone until the annotation is fixed");
            publish(
                ctx,
                obj.as_ref(),
                EventType::Warning,
                "InvalidAnnotation",
                format!("{invalid}. kube-reloader leaves this workload alone until it is fixed."),
            );
            return Ok(Action::await_change());
        }
    };
    set_debounce(ctx, obj.as_ref(), &wref);
    warn_invalid_flags(ctx, obj.as_ref(), &wref, &assessed.candidates, &view);
    let has_patterns = optin::has_patterns(&assessed.opt);
    let assess::Assessed {
        candidates,
        tracked,
        current,
        template: template_now,
        change,
        unconfirmed,
        ..
    } = *assessed;
    // Index every referenced and every listed name, so that a change of either reaches us.
    ctx.index.set(&wref, candidates, has_patterns);
    let annotations = obj.annotations();
    let (window, opened) = ctx.router.window(&wref);
    let last_rollout = annotations
        .get(written::RELOADED_AT)
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(SystemTime::from);
    // A change of a config that rolls progressively: where this workload's rollout would stand.
    let (wave, progressive_ids) = match &change {
        Change::Roll { changed } => progressive::wave(ctx, obj.as_ref(), &wref, changed),
        _ => (Wave::Free, Vec::new()),
    };
    let now = SystemTime::now();
    let inputs = Inputs {
        wave,
        change,
        unconfirmed,
        window,
        last_rollout,
        now,
        min_rollout_interval: ctx.settings.min_rollout_interval,
        dry_run: ctx.settings.dry_run,
        window_opens: restart_window(ctx, obj.as_ref(), &wref, now),
    };
    let Some((action, unconfirmed)) = decide_confirmed(ctx, &wref, inputs).await? else {
        // The watch has not delivered an object the API server has; when it does, the window
        // decides again.
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    deferred(ctx, obj.as_ref(), &wref, &action, now);
    warn_missing(ctx, obj.as_ref(), &wref, &current, &unconfirmed);
    let up_to_date = action == Decided::UpToDate;
    let found = Found {
        obj: obj.as_ref(),
        wref: wref.clone(),
        restart,
        current,
        template: template_now,
        opened,
        tracked: tracked.len(),
        progressive: progressive_ids,
    };
    let done = execute(ctx, &found, action).await?;
    if up_to_date
        && let Some(watching) = progressive::watch(ctx, obj.as_ref(), &wref, restart).await?
    {
        return Ok(watching);
    }
    Ok(done)
}

/// Forgets what a workload that is not (or no longer) opted in had indexed or pending.
fn leave_alone(ctx: &Context, wref: &WorkloadRef) -> Action {
    ctx.index.remove(wref);
    ctx.router.forget(wref);
    Action::await_change()
}

/// Gives the workload its own debounce window if it asks for one (`kube-reloader.io/debounce`,
/// Reloader's pause-period). An invalid one is reported once, and `--debounce` used instead.
fn set_debounce(ctx: &Context, obj: &Workload, wref: &WorkloadRef) {
    let (length, invalid) = match optin::debounce(obj.annotations(), ctx.settings.policy.reloader())
    {
        Ok(length) => (length, None),
        Err(invalid) => (None, Some(invalid)),
    };
    ctx.router.set_length(wref, length);
    if ctx.report_once(wref, "invalid debounce".into(), invalid.is_some())
        && let Some(invalid) = invalid
    {
        ctx.metrics.error("invalid_annotation");
        tracing::warn!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
            "{invalid}; using --debounce for this workload until it is fixed");
        let note = format!(
            "{invalid}. kube-reloader uses its --debounce for this workload until it is fixed."
        );
        publish(ctx, obj, EventType::Warning, "InvalidAnnotation", note);
    }
}

/// When the workload's restart window opens, if it has one and it is closed now. An invalid one
/// is reported once, and the workload rolls as if it had none.
fn restart_window(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
    now: SystemTime,
) -> Option<SystemTime> {
    let reloader = ctx.settings.policy.reloader().is_some();
    let now = Timestamp::try_from(now).ok()?;
    let read = restart_window::read(obj.annotations(), reloader, now);
    let invalid = read.as_ref().err();
    if ctx.report_once(wref, "invalid restart window".into(), invalid.is_some())
        && let Some(invalid) = invalid
    {
        ctx.metrics.error("invalid_annotation");
        tracing::warn!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
            "{invalid}; rolling this workload as if it had no restart window until it is fixed");
        let note = format!(
            "{invalid}. kube-reloader rolls this workload as if it had no restart window until it is fixed."
        );
        publish(ctx, obj, EventType::Warning, "InvalidAnnotation", note);
    }
    match read.ok()?? {
        (_, Standing::Closed { opens }) => Some(SystemTime::from(opens)),
        (_, Standing::Open { .. }) => None,
    }
}

/// Says once, when a change starts waiting for the workload's restart window, when it will roll
/// (a log line and a `RolloutDeferred` Event).
fn deferred(ctx: &Context, obj: &Workload, wref: &WorkloadRef, action: &Decided, now: SystemTime) {
    let waits = match action {
        Decided::Wait {
            delay,
            why: WaitReason::RestartWindow,
        } => Some(now + *delay),
        _ => None,
    };
    if !ctx.report_once(wref, "restart window".into(), waits.is_some()) {
        return;
    }
    let Some(opens) = waits.and_then(|t| Timestamp::try_from(t).ok()) else {
        return;
    };
    let opens = opens.round(jiff::Unit::Second).unwrap_or(opens);
    tracing::info!(target: "kube_reloader::reconcile", kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, opens = %opens,
        "change pending: outside the workload's restart window; rolling when it opens");
    let reloader = ctx.settings.policy.reloader().is_some();
    let (key, value) = restart_window::annotation(obj.annotations(), reloader).unzip();
    let note = format!(
        "A change of what it uses waits for its restart window ({}={}), which opens at {opens}; it rolls once then, with the configs as they are at that time.",
        key.unwrap_or_default(),
        value.map_or("", String::as_str)
    );
    publish(ctx, obj, EventType::Normal, "RolloutDeferred", note);
}

/// A cache that has not listed yet.
#[derive(Debug)]
struct NotSynced;

/// The Deployment holding a workload's pod template (Argo Rollouts' `spec.workloadRef`):
/// `Ok(None)` when the template is the workload's own; `Err` with what to do when the Deployment
/// cannot be read (reported once, with an Event).
fn template_source(
    ctx: &Context,
    obj: &Workload,
    wref: &WorkloadRef,
) -> Result<Option<Arc<Workload>>, Action> {
    if !wref.kind.spec().argo {
        return Ok(None);
    }
    let Some(source) = &obj.template_ref else {
        ctx.set_template_source(wref, None);
        return Ok(None);
    };
    ctx.set_template_source(wref, Some(&source.name));
    let problem = if source.kind != "Deployment" {
        format!(
            "its spec.workloadRef names a {} ({}); kube-reloader reads pod templates from Deployments only, so it leaves this {} alone",
            source.kind, source.name, wref.kind
        )
    } else if !ctx.settings.scope.kinds.contains(&WorkloadKind::DEPLOYMENT) {
        format!(
            "its pod template is in Deployment {} (spec.workloadRef), and Deployments are not among --kinds, so kube-reloader cannot read it. Add Deployment to --kinds",
            source.name
        )
    } else {
        match ctx.cached(WorkloadKind::DEPLOYMENT, &wref.namespace, &source.name) {
            Err(NotSynced) => return Err(Action::requeue(Duration::from_secs(1))),
            Ok(Some(deployment)) => {
                ctx.report_once(wref, "template source".into(), false);
                return Ok(Some(deployment));
            }
            Ok(None) => format!(
                "its pod template is in Deployment {} (spec.workloadRef), which does not exist in namespace {}. Create it, or fix spec.workloadRef; kube-reloader reads it as soon as it exists",
                source.name, wref.namespace
            ),
        }
    };
    if ctx.report_once(wref, "template source".into(), true) {
        tracing::warn!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name, "{problem}");
        let note = format!("{problem}.");
        publish(ctx, obj, EventType::Warning, "MissingReference", note);
    }
    Err(Action::await_change())
}

/// Decides, confirming with the API server any absence the decision asks about. `None` when an
/// apparently missing object exists (the watch is behind); otherwise the action, and the
/// absences still unconfirmed (not to be warned about).
async fn decide_confirmed(
    ctx: &Context,
    wref: &WorkloadRef,
    mut inputs: Inputs,
) -> Result<Option<(Decided, Vec<String>)>, Error> {
    loop {
        let action = decide(inputs.clone(), &mut locked(&ctx.bucket), Instant::now());
        let absent = match action {
            Decided::Confirm { absent } => absent,
            // A deletion comes from the watch itself: nothing to confirm before warning of it.
            Decided::Hold { .. } => return Ok(Some((action, Vec::new()))),
            _ => return Ok(Some((action, inputs.unconfirmed))),
        };
        let present = ctx.find_present(&wref.namespace, &absent).await?;
        if !present.is_empty() {
            tracing::debug!(kind = %wref.kind, namespace = %wref.namespace, name = %wref.name,
                present = %present.join(", "),
                "exists in the API server but not yet in the watch; waiting for the watch");
            return Ok(None);
        }
        inputs.unconfirmed.clear();
    }
}
