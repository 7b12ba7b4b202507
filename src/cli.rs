//! Command-line flags. Every flag has an environment variable twin, `KUBE_RELOADER_…`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::adapters::client::{InitialList, Timeouts};
use crate::adapters::key::KeySecret;
use crate::adapters::lease;
use crate::alerts::{self, SecretUrl};
use crate::app::controller::{self, RunError};
use crate::app::explain;
use crate::model::annotations::FIELD_MANAGER;
use crate::model::duration::parse_duration;
use crate::model::kinds::{self, WorkloadKind};
use crate::reconcile::Settings;
use crate::rules::optin;
use crate::rules::references::ConfigKind;
use crate::rules::rollout::{Progressive, Waves};
use crate::rules::scope::{SKIPPED_SECRET_TYPES, WatchScope};

mod reloader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Rolls Deployments, StatefulSets, DaemonSets, CronJobs, Argo Rollouts and any pod-template kind
/// when the ConfigMaps and Secrets they use change.
///
/// Workloads opt in with annotations (`kube-reloader.io/auto: "true"`, or stakater Reloader's);
/// see docs/annotations.md. The Kubernetes connection is configured as kubectl's is: KUBECONFIG
/// or ~/.kube/config, or the in-cluster service account.
#[derive(Debug, Clone, Parser)]
#[command(name = "kube-reloader", version, about, long_about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Watch only this namespace (repeatable, or comma-separated). Default: all namespaces.
    /// Reloader's spelling `--namespaces` is accepted.
    #[arg(
        long = "namespace",
        alias = "namespaces",
        env = "KUBE_RELOADER_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Never watch this namespace (repeatable, or comma-separated). Reloader's spelling
    /// `--namespaces-to-ignore` is accepted.
    #[arg(
        long = "ignore-namespace",
        alias = "namespaces-to-ignore",
        env = "KUBE_RELOADER_IGNORE_NAMESPACES",
        value_delimiter = ','
    )]
    pub ignore_namespaces: Vec<String>,

    /// Watch only namespaces whose labels match this label selector (`team=payments`,
    /// `env in (prod,staging)`, `!legacy`); namespaces that gain or lose the labels are picked up
    /// or dropped while running. Needs list and watch on namespaces. Reloader's `key:value` and
    /// `key:*` forms are accepted.
    #[arg(long, env = "KUBE_RELOADER_NAMESPACE_SELECTOR", value_parser = parse_selector)]
    pub namespace_selector: Option<String>,

    /// Watch only ConfigMaps and Secrets whose labels match this label selector. The API server
    /// applies it, so the others are never sent nor held. An object that stops matching counts
    /// as deleted (nothing rolls), one that starts matching as created. Reloader's `key:value`
    /// and `key:*` forms are accepted.
    #[arg(long, env = "KUBE_RELOADER_RESOURCE_LABEL_SELECTOR", value_parser = parse_selector)]
    pub resource_label_selector: Option<String>,

    /// Treat every workload as annotated `auto: "true"` unless it sets an auto annotation itself
    /// (any value, "false" included). A workload that references no ConfigMap or Secret is still
    /// left alone.
    #[arg(long, env = "KUBE_RELOADER_AUTO_RELOAD_ALL", num_args = 0..=1, default_value_t = false,
        default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    pub auto_reload_all: bool,

    /// Do not watch this kind of object at all: `configmaps` or `secrets` (not both). Its objects
    /// are never tracked, and its RBAC can be left out.
    #[arg(long, env = "KUBE_RELOADER_RESOURCES_TO_IGNORE", value_delimiter = ',', value_parser = parse_config_kind)]
    pub resources_to_ignore: Vec<ConfigKind>,

    /// Roll workloads when the Secrets Store CSI driver rotates what their pods mount: track the
    /// SecretProviderClasses their CSI volumes name, through the SecretProviderClassPodStatuses
    /// the driver writes per pod (secrets-store.csi.x-k8s.io/v1). Needs list and watch on both,
    /// and get on pods and replicasets (to find a pod's workload). Reloader's flag.
    #[arg(long, env = "KUBE_RELOADER_ENABLE_CSI_INTEGRATION", num_args = 0..=1, default_value_t = false,
        default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    pub enable_csi_integration: bool,

    /// Namespace of the controller itself, where its digest key Secret lives.
    /// Default: $POD_NAMESPACE, else `kube-reloader`.
    #[arg(long, env = "KUBE_RELOADER_CONTROLLER_NAMESPACE")]
    pub controller_namespace: Option<String>,

    /// Name of the Secret holding the key that Secret digests are made with (created with 32
    /// random bytes if absent).
    #[arg(
        long,
        env = "KUBE_RELOADER_KEY_SECRET",
        default_value = "kube-reloader-key"
    )]
    pub key_secret: String,

    /// Changes to a workload's configs within this window after the first are rolled out together.
    #[arg(long, env = "KUBE_RELOADER_DEBOUNCE", default_value = "2s", value_parser = parse_duration)]
    pub debounce: Duration,

    /// At most one rollout per workload in this interval; later changes are merged into the next
    /// rollout, never dropped.
    #[arg(long, env = "KUBE_RELOADER_MIN_ROLLOUT_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub min_rollout_interval: Duration,

    /// Rollouts per second across all workloads, sustained (token bucket rate).
    #[arg(long, env = "KUBE_RELOADER_MAX_ROLLOUTS_PER_SECOND", default_value_t = 5.0, value_parser = parse_rate)]
    pub max_rollouts_per_second: f64,

    /// Rollouts that may happen at once before the rate limit applies (token bucket size).
    #[arg(long, env = "KUBE_RELOADER_ROLLOUT_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub rollout_burst: u32,

    /// Roll each config change in waves (a canary, then growing waves, each after the previous
    /// one completed) and halt it when a rollout fails. Off by default; a ConfigMap or Secret
    /// annotated kube-reloader.io/progressive: "true" (or "false") decides for itself.
    #[arg(long, env = "KUBE_RELOADER_PROGRESSIVE")]
    pub progressive: bool,

    /// Sizes of the waves of a progressive rollout before the last, which takes the rest: a
    /// number of workloads or a share of those the change concerns (1,10%: a canary, a tenth,
    /// the rest). Workloads annotated kube-reloader.io/canary: "true" go in the first.
    #[arg(long, env = "KUBE_RELOADER_ROLLOUT_WAVES", default_value = "1,10%", value_parser = clap::value_parser!(Waves))]
    pub rollout_waves: Waves,

    /// A progressive rollout of a StatefulSet, DaemonSet or Argo Rollout that has not completed
    /// in this long has failed (a Deployment fails at its own progressDeadlineSeconds).
    #[arg(long, env = "KUBE_RELOADER_ROLLOUT_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub rollout_timeout: Duration,

    /// How long each rollout of a progressive wave must stay complete before the next wave
    /// starts; its new pods are watched meanwhile, so a value that brings them down only after
    /// they counted as available still halts the change. 0s: the next wave starts at completion.
    #[arg(long, env = "KUBE_RELOADER_ROLLOUT_SOAK", default_value = "0s", value_parser = parse_duration)]
    pub rollout_soak: Duration,

    /// Reconciles in flight at once, per workload kind and watched namespace (each holds an API
    /// connection while it writes, so this also bounds the connections kept open after a burst,
    /// such as the first baselines of a large cluster). 16 by default: with 4, rollouts of a burst
    /// of changes queued behind each other (bench/latency.sh, docs/performance.md "Latency and scale").
    #[arg(long, env = "KUBE_RELOADER_MAX_CONCURRENT_RECONCILES", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// Honour stakater Reloader's annotations (`reloader.stakater.com/…`), so manifests written for
    /// Reloader work unchanged.
    #[arg(long, env = "KUBE_RELOADER_RELOADER_COMPAT", default_value_t = true, action = clap::ArgAction::Set)]
    pub reloader_compat: bool,

    /// The built-in workload kinds to roll (comma-separated): Deployment, StatefulSet, DaemonSet,
    /// CronJob (batch/v1: its job template, so the next scheduled Job runs with the new config)
    /// and Rollout (Argo Rollouts); all five when not given. A kind the API server does not serve
    /// is looked for again every 20 seconds when named here or with --workload-kind; one that
    /// comes with the default is looked up at start only.
    #[arg(
        long = "kinds",
        env = "KUBE_RELOADER_KINDS",
        value_delimiter = ',',
        value_parser = WorkloadKind::built_in
    )]
    pub kinds: Option<Vec<WorkloadKind>>,

    /// Also roll this kind: GROUP/VERSION/KIND[=PATH], PATH being the dotted path to its pod
    /// template (default spec.template), e.g. apps.kruise.io/v1alpha1/CloneSet or
    /// batch/v1beta1/CronJob=spec.jobTemplate.spec.template. Repeatable, or comma-separated. It
    /// replaces a built-in kind of the same group and kind. Needs list, watch and patch on it.
    #[arg(
        long = "workload-kind",
        env = "KUBE_RELOADER_WORKLOAD_KINDS",
        value_delimiter = ',',
        global = true,
        value_parser = WorkloadKind::parse
    )]
    pub workload_kinds: Vec<WorkloadKind>,

    /// Also watch Secrets of type helm.sh/release.v1 and kubernetes.io/service-account-token
    /// (skipped by default: they are large or numerous, and never mounted as configuration).
    #[arg(long, env = "KUBE_RELOADER_WATCH_ALL_SECRET_TYPES")]
    pub watch_all_secret_types: bool,

    /// Run several replicas safely: only the holder of a coordination.k8s.io/v1 Lease in the
    /// controller's namespace writes; the others stay ready as standbys.
    /// Reloader's spelling `--enable-ha` is accepted.
    #[arg(long, alias = "enable-ha", env = "KUBE_RELOADER_LEADER_ELECT", num_args = 0..=1,
        default_value_t = false, default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Name of the Lease used for leader election. Reloader's spelling
    /// `--leader-election-id` is accepted.
    #[arg(
        long,
        alias = "leader-election-id",
        env = "KUBE_RELOADER_LEASE_NAME",
        default_value = "kube-reloader"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: --controller-namespace's). The controller needs get,
    /// create, patch, list and watch on leases there. Reloader's spelling
    /// `--leader-election-namespace` is accepted.
    #[arg(
        long,
        alias = "leader-election-namespace",
        env = "KUBE_RELOADER_LEASE_NAMESPACE"
    )]
    pub lease_namespace: Option<String>,

    /// How long a Lease is valid without renewal: the longest failover after a leader dies
    /// without releasing it (whole seconds). Reloader's spelling
    /// `--leader-election-lease-duration` is accepted.
    #[arg(long, alias = "leader-election-lease-duration", env = "KUBE_RELOADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// The leader renews the Lease when no more than lease-duration minus this is left
    /// (whole seconds, less than --lease-duration). Reloader's spelling
    /// `--leader-election-renew-deadline` is accepted.
    #[arg(long, alias = "leader-election-renew-deadline", env = "KUBE_RELOADER_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,

    /// Wait between attempts after a failed Lease operation. Reloader's spelling
    /// `--leader-election-retry-period` is accepted.
    #[arg(long, alias = "leader-election-retry-period", env = "KUBE_RELOADER_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,

    /// A watch that receives nothing, no event and no bookmark, for this long is taken for dead
    /// (a load balancer or NAT dropped its connection without closing it, or the API server
    /// stopped answering) and restarted on a fresh connection. The API server is asked to end
    /// every watch 3 s sooner, after a bookmark, so a live one is never silent that long. At
    /// least 10s.
    #[arg(long, env = "KUBE_RELOADER_WATCH_TIMEOUT", default_value = "45s", value_parser = parse_watch_timeout)]
    pub watch_timeout: Duration,

    /// A request to the API server other than a watch (a get, list, apply or patch; the Lease's,
    /// at most the renewal grace, --lease-duration minus --renew-deadline) that has no answer
    /// within this fails, and is retried on a fresh connection. At least 1s.
    #[arg(long, env = "KUBE_RELOADER_REQUEST_TIMEOUT", default_value = "20s", value_parser = parse_request_timeout)]
    pub request_timeout: Duration,

    /// How watches read the objects that exist before they watch: `paged` lists (limit and
    /// continue; every release), `streaming` (sendInitialEvents, the WatchList feature of the API
    /// server, on by default since Kubernetes 1.34; the API server answers from its watch cache
    /// instead of building list pages, and kube-reloader's memory peaks lower), or `auto`:
    /// streaming where the API server serves it, paged where it refuses it (asked once at start).
    /// docs/performance.md compares them.
    #[arg(long, env = "KUBE_RELOADER_INITIAL_LIST", value_enum, default_value_t = InitialList::Auto)]
    pub initial_list: InitialList,

    /// On SIGTERM, how long in-flight reconciles may take to finish before the process exits
    /// (keep it below the pod's terminationGracePeriodSeconds).
    #[arg(long, env = "KUBE_RELOADER_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Address of the HTTP listener serving /metrics, /healthz and /readyz (`:9090`, as
    /// Reloader writes it, is every interface).
    #[arg(
        long,
        env = "KUBE_RELOADER_METRICS_ADDR",
        default_value = "0.0.0.0:9090",
        value_parser = parse_listen_addr
    )]
    pub metrics_addr: SocketAddr,

    /// The field manager of every write kube-reloader makes (server-side apply of its
    /// annotations, patches, its digest key Secret; its Lease as `<NAME>-lease-<identity>`), and
    /// the one whose entry in managedFields tells its own writes from others'. GitOps tools
    /// ignore its fields by this name (docs/gitops.md). Changing it on a running installation
    /// makes every existing baseline look written by someone else once: each is recorded again
    /// under the new name, without a rollout.
    #[arg(long, env = "KUBE_RELOADER_FIELD_MANAGER", default_value = FIELD_MANAGER, value_name = "NAME", value_parser = parse_field_manager)]
    pub field_manager: String,

    /// Compute and report (log, Events) what would be rolled out, but write nothing to workloads.
    #[arg(long, env = "KUBE_RELOADER_DRY_RUN")]
    pub dry_run: bool,

    /// POST an alert to this http:// or https:// URL for every rollout (not for --dry-run). The
    /// URL is a secret (it carries the receiver's token): pass it through the environment from a
    /// Secret; logs and Events show only its host. See docs/alerts.md.
    #[arg(
        long,
        env = "KUBE_RELOADER_ALERT_WEBHOOK_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub alert_webhook_url: Option<SecretUrl>,

    /// stakater Reloader's alert switch: `false` sends no alerts even with a webhook URL, `true`
    /// needs one. Without it, a webhook URL turns alerts on.
    #[arg(long, env = "KUBE_RELOADER_ALERT_ON_RELOAD", num_args = 0..=1,
        default_missing_value = "true", require_equals = true, action = clap::ArgAction::Set)]
    pub alert_on_reload: Option<bool>,

    /// Send alerts through this http:// or https:// proxy (`http://user:password@host:port`),
    /// whatever HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY say. Without it (or empty), those
    /// variables apply to alerts as curl reads them. Only its host is ever shown.
    #[arg(
        long,
        env = "KUBE_RELOADER_ALERT_PROXY",
        value_name = "URL",
        hide_env_values = true
    )]
    pub alert_proxy: Option<SecretUrl>,

    /// Body of the alerts: `json` (kube-reloader's own document), `slack` (incoming webhook),
    /// `teams` (Workflows webhook, an Adaptive Card) or `gchat` (Google Chat incoming webhook).
    /// Reloader's spelling `--alert-sink` is accepted, its sinks `webhook` and `raw` as `json`.
    #[arg(long, alias = "alert-sink", env = "KUBE_RELOADER_ALERT_FORMAT", value_enum, ignore_case = true, default_value_t = alerts::Format::Json)]
    pub alert_format: alerts::Format,

    /// Name of this cluster, included in alerts (empty: not mentioned). Reloader's
    /// `--alert-additional-info` is accepted as this.
    #[arg(
        long,
        alias = "alert-additional-info",
        env = "KUBE_RELOADER_CLUSTER_NAME",
        default_value = ""
    )]
    pub cluster_name: String,

    /// Log format: `text` for people, `json` for log pipelines (an empty value, as Reloader
    /// takes it, means `text`).
    #[arg(long, env = "KUBE_RELOADER_LOG_FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub log_format: LogFormat,

    /// Log filter when RUST_LOG is not set: error, warn, info, debug or trace.
    #[arg(long, env = "KUBE_RELOADER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    #[command(flatten)]
    pub reloader_names: reloader::AnnotationNames,
}

/// The command line from `argv` and the environment `env` reads from: kube-reloader's flags and
/// stakater Reloader's (those with a meaning here read as kube-reloader's, the others refused with
/// what to do instead; see docs/migrating-from-reloader.md). Also returns notes to log once
/// logging is set up: which of Reloader's environment variables were read or ignored.
pub fn try_parse<I, T>(
    argv: I,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Args, Vec<String>), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = reloader::command(Args::command());
    let matches = cmd.try_get_matches_from_mut(argv)?;
    let invalid =
        |cmd: &mut clap::Command, e: String| cmd.error(clap::error::ErrorKind::ValueValidation, e);
    reloader::refused(&matches).map_err(|e| invalid(&mut cmd, e))?;
    let mut args = Args::from_arg_matches(&matches)?;
    let notes = reloader::apply_env(&mut args, &matches, env).map_err(|e| invalid(&mut cmd, e))?;
    reloader::alert_switch(&mut args).map_err(|e| invalid(&mut cmd, e))?;
    Ok((args, notes))
}

/// [`try_parse`] of the process's arguments and environment; on an error, says so and exits.
pub fn parse() -> (Args, Vec<String>) {
    try_parse(std::env::args_os(), &|name| std::env::var(name).ok()).unwrap_or_else(|e| e.exit())
}

/// Commands besides running the controller (the default).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Why did (or didn't) a workload roll? Shows its opt-in, every ConfigMap and Secret it
    /// references or names (where, whether it exists, is ignored, is tracked), the digest now
    /// versus the recorded baseline and the pod template, and whether a rollout is pending.
    /// With --all, one line per opted-in workload of the namespace: the inventory a migration
    /// from stakater Reloader starts from.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["target", "all"])))]
    Explain {
        /// The workload: KIND/NAME, KIND being deployment, statefulset, daemonset, cronjob or
        /// rollout (or deploy, sts, ds, cj, ro), or a --workload-kind kind's name (widget/NAME).
        /// Either this or --all.
        target: Option<String>,
        /// Every workload of every kind rolled, instead of one: one line for each that opts in
        /// (how, what it tracks, its status), and how many do not.
        #[arg(long)]
        all: bool,
        /// With --all: in every namespace (overrides -n).
        #[arg(short = 'A', long, conflicts_with = "target")]
        all_namespaces: bool,
        /// Its namespace (default: the kubeconfig context's).
        #[arg(
            short = 'n',
            long = "namespace",
            env = "KUBE_RELOADER_EXPLAIN_NAMESPACE"
        )]
        namespace: Option<String>,
        /// Output format: `table` or `json`.
        #[arg(short = 'o', long, env = "KUBE_RELOADER_EXPLAIN_OUTPUT", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl Args {
    /// How long the client waits on the API server before taking a connection for dead.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            request: self.request_timeout,
            watch: self.watch_timeout,
        }
    }

    /// Lease duration and renewal grace in whole seconds, checked for consistency.
    pub fn lease_seconds(&self) -> Result<(u64, u64), String> {
        self.lease().seconds()
    }

    /// Leader election's settings.
    pub fn lease(&self) -> lease::Config {
        lease::Config {
            name: self.lease_name.clone(),
            namespace: self
                .lease_namespace
                .clone()
                .unwrap_or_else(|| self.controller_namespace()),
            duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
            field_manager: self.field_manager(),
        }
    }

    /// What is watched.
    pub fn scope(&self) -> WatchScope {
        WatchScope {
            namespaces: self.namespaces.clone(),
            ignored_namespaces: self.ignore_namespaces.clone(),
            namespace_selector: self.namespace_selector.clone(),
            resource_label_selector: self.resource_label_selector.clone(),
            ignored_kinds: self.ignored_kinds(),
            skipped_secret_types: if self.watch_all_secret_types {
                &[]
            } else {
                &SKIPPED_SECRET_TYPES
            },
            kinds: self.kinds(),
            named_kinds: self.named_kinds(),
        }
    }

    /// Where the digest key Secret is.
    pub fn key_secret(&self) -> KeySecret {
        KeySecret {
            namespace: self.controller_namespace(),
            name: self.key_secret.clone(),
        }
    }

    /// What `explain` reads with.
    pub fn explain_config(&self) -> explain::Config {
        explain::Config {
            scope: self.scope(),
            policy: self.policy(),
            key: self.key_secret(),
            field_manager: self.field_manager(),
        }
    }

    /// `--field-manager`, for as long as the process runs (it is read once).
    pub fn field_manager(&self) -> &'static str {
        if self.field_manager == FIELD_MANAGER {
            FIELD_MANAGER
        } else {
            Box::leak(self.field_manager.clone().into_boxed_str())
        }
    }

    /// The controller's whole configuration, built once; each part is a type of the layer that
    /// uses it. Fails on alert settings that cannot work (checked before anything starts).
    pub fn config(&self) -> Result<controller::Config, RunError> {
        let alerts = alerts::Config::new(
            self.alert_webhook_url.as_ref(),
            self.alert_proxy.as_ref(),
            self.alert_format,
            &self.cluster_name,
        )?;
        Ok(controller::Config {
            settings: Settings {
                policy: self.policy(),
                scope: self.scope(),
                min_rollout_interval: self.min_rollout_interval,
                dry_run: self.dry_run,
                max_concurrent_reconciles: self.max_concurrent_reconciles,
                max_rollouts_per_second: self.max_rollouts_per_second,
                rollout_burst: self.rollout_burst,
                field_manager: self.field_manager(),
                progressive: Progressive {
                    default: self.progressive,
                    waves: self.rollout_waves.clone(),
                    timeout: self.rollout_timeout,
                    soak: self.rollout_soak,
                },
            },
            alerts,
            timeouts: self.timeouts(),
            initial_list: self.initial_list,
            lease: self.leader_elect.then(|| self.lease()),
            debounce: self.debounce,
            metrics_addr: self.metrics_addr,
            key: self.key_secret(),
            shutdown_grace: self.shutdown_grace,
        })
    }

    /// The kinds to roll: `--kinds` (every built-in kind unless given), with `--workload-kind`
    /// kinds added or replacing them.
    pub fn kinds(&self) -> Vec<WorkloadKind> {
        let built_in = self.kinds.as_deref().unwrap_or(&WorkloadKind::BUILT_IN);
        kinds::resolve(built_in, &self.workload_kinds)
    }

    /// The kinds the user named: those of `--kinds` when it is given, and every
    /// `--workload-kind`. Not the default `--kinds`.
    pub fn named_kinds(&self) -> Vec<WorkloadKind> {
        self.kinds
            .iter()
            .flatten()
            .chain(&self.workload_kinds)
            .copied()
            .collect()
    }

    /// How workloads' opt-in is read, as the command line says.
    pub fn policy(&self) -> optin::Policy {
        optin::Policy {
            reloader_compat: self.reloader_compat,
            auto_reload_all: self.auto_reload_all,
            ignored: self.ignored_kinds(),
            names: self.reloader_names.names(),
        }
    }

    /// The kinds of config object not watched: `--resources-to-ignore`, and
    /// SecretProviderClasses unless `--enable-csi-integration`.
    pub fn ignored_kinds(&self) -> Vec<ConfigKind> {
        let mut ignored = self.resources_to_ignore.clone();
        if !self.enable_csi_integration {
            ignored.push(ConfigKind::SecretProviderClass);
        }
        ignored
    }

    /// The controller's own namespace.
    pub fn controller_namespace(&self) -> String {
        self.controller_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "kube-reloader".to_string())
    }
}

/// `--watch-timeout`: a duration of at least 10 s (the API server ends watches 3 s sooner).
fn parse_watch_timeout(s: &str) -> Result<Duration, String> {
    at_least(s, Duration::from_secs(10))
}

/// `--request-timeout`: a duration of at least 1 s.
fn parse_request_timeout(s: &str) -> Result<Duration, String> {
    at_least(s, Duration::from_secs(1))
}

fn at_least(s: &str, min: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < min {
        return Err(format!("{s:?} is less than {}s", min.as_secs()));
    }
    Ok(d)
}

/// A listening address: `HOST:PORT`, or `:PORT` (Reloader's and Go's way to say every
/// interface).
fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    };
    full.parse()
        .map_err(|_| format!("{s:?}: use HOST:PORT (0.0.0.0:9090) or :PORT"))
}

/// A field manager name as the API server takes it: 1 to 128 printable characters.
fn parse_field_manager(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{s:?}: use 1 to 128 printable characters, e.g. kube-reloader"
        ));
    }
    Ok(s.to_string())
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?}: use text or json")),
    }
}

fn parse_config_kind(s: &str) -> Result<ConfigKind, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "configmaps" | "configmap" => Ok(ConfigKind::ConfigMap),
        "secrets" | "secret" => Ok(ConfigKind::Secret),
        other => Err(format!("{other:?}: use configmaps or secrets")),
    }
}

/// A label selector as the API server takes it, from ours or Reloader's forms: Reloader's
/// `key:value` means `key=value`, and `key:*` or `key=*` means "has the label `key`".
pub fn parse_selector(s: &str) -> Result<String, String> {
    // Requirements are separated by commas outside parentheses (`env in (a,b)` is one).
    let mut items = vec![String::new()];
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(item) = items.last_mut() {
            item.push(c);
        }
    }
    items
        .iter()
        .map(|item| {
            let item = item.trim();
            if item.is_empty() {
                return Err(format!("{s:?}: an empty requirement"));
            }
            let simple = !item.contains([' ', '(', '!']);
            Ok(match (simple, item.split_once(':'), item.split_once('=')) {
                (true, Some((k, "*")), _) | (true, None, Some((k, "*"))) => k.to_string(),
                (true, Some((k, v)), _) => format!("{k}={v}"),
                _ => item.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|items| items.join(","))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::controller::{Unserved, when_unserved};

    /// Each kind rolled with these flags, and what becomes of it while it is not served.
    fn unserved(flags: &[&str]) -> Vec<(&'static str, Unserved)> {
        use clap::Parser;
        let args =
            Args::try_parse_from(std::iter::once("kube-reloader").chain(flags.to_vec())).unwrap();
        let named = args.named_kinds();
        args.kinds()
            .into_iter()
            .map(|k| (k.as_str(), when_unserved(k, &named)))
            .collect()
    }

    #[test]
    fn only_a_kind_the_user_named_is_looked_for_again_while_not_served() {
        use Unserved::{GiveUp, LookAgain};
        let defaults = [
            ("Deployment", GiveUp),
            ("StatefulSet", GiveUp),
            ("DaemonSet", GiveUp),
            ("CronJob", GiveUp),
            ("Rollout", GiveUp),
        ];
        assert_eq!(unserved(&[]), defaults);
        assert_eq!(
            unserved(&["--kinds=Deployment,Rollout"]),
            [("Deployment", LookAgain), ("Rollout", LookAgain)]
        );
        // Named, even if the same as the default.
        assert_eq!(
            unserved(&["--kinds=Deployment,StatefulSet,DaemonSet,CronJob,Rollout"]),
            defaults.map(|(k, _)| (k, LookAgain))
        );
        // A built-in kind replaced is named; the others still come with the default.
        assert_eq!(
            unserved(&["--workload-kind=batch/v1beta1/CronJob=spec.jobTemplate.spec.template"]),
            [
                ("Deployment", GiveUp),
                ("StatefulSet", GiveUp),
                ("DaemonSet", GiveUp),
                ("CronJob", LookAgain),
                ("Rollout", GiveUp),
            ]
        );
        // The chart's way to have Rollouts looked for: it passes --kinds only when it differs
        // from the default.
        assert_eq!(
            unserved(&["--workload-kind=argoproj.io/v1alpha1/Rollout"]),
            [
                ("Deployment", GiveUp),
                ("StatefulSet", GiveUp),
                ("DaemonSet", GiveUp),
                ("CronJob", GiveUp),
                ("Rollout", LookAgain),
            ]
        );
        assert_eq!(
            unserved(&["--kinds=sts", "--workload-kind=example.com/v1/Widget"]),
            [("StatefulSet", LookAgain), ("Widget", LookAgain)]
        );
    }

    /// [`try_parse`] with these flags and Reloader's environment variables.
    fn parse_with(flags: &[&str], env: &[(&str, &str)]) -> Result<(Args, Vec<String>), String> {
        let env: std::collections::BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let argv = std::iter::once("kube-reloader").chain(flags.iter().copied());
        try_parse(argv, &|name| env.get(name).cloned()).map_err(|e| e.to_string())
    }

    fn parse_flags(flags: &[&str]) -> Args {
        parse_with(flags, &[])
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"))
            .0
    }

    #[test]
    fn reloaders_leader_election_flags_are_ours() {
        let a = parse_flags(&[
            "--enable-ha",
            "--leader-election-lease-duration=30s",
            "--leader-election-renew-deadline=20s",
            "--leader-election-retry-period=5s",
            "--leader-election-id=reloader-leader-election",
            "--leader-election-namespace=ops",
            "--leader-election-release-on-cancel=true",
        ]);
        let lease = a.lease();
        assert!(a.leader_elect);
        assert_eq!(lease.name, "reloader-leader-election");
        assert_eq!(lease.namespace, "ops");
        assert_eq!(
            (lease.duration, lease.renew_deadline, lease.retry_period),
            (
                Duration::from_secs(30),
                Duration::from_secs(20),
                Duration::from_secs(5)
            )
        );
        assert_eq!(a.lease_seconds(), Ok((30, 10)));
        // Without --lease-namespace, the controller's namespace.
        let a = parse_flags(&["--controller-namespace=kr"]);
        assert_eq!(a.lease().namespace, "kr");
        assert_eq!(a.lease().name, "kube-reloader");
        assert!(parse_with(&["--leader-election-release-on-cancel"], &[]).is_ok());
    }

    #[test]
    fn every_write_uses_the_field_manager_given() {
        let a = parse_flags(&[]);
        assert_eq!(a.field_manager(), "kube-reloader");
        let config = a.config().unwrap();
        assert_eq!(config.settings.field_manager, "kube-reloader");
        let a = parse_flags(&["--field-manager=platform-reloader", "--leader-elect"]);
        let config = a.config().unwrap();
        assert_eq!(config.settings.field_manager, "platform-reloader");
        assert_eq!(config.settings.reading().field_manager, "platform-reloader");
        assert_eq!(
            config.lease.map(|l| l.field_manager),
            Some("platform-reloader")
        );
        assert_eq!(a.explain_config().field_manager, "platform-reloader");
        assert_eq!(
            a.explain_config().reading().field_manager,
            "platform-reloader"
        );
        let long = format!("--field-manager={}", "m".repeat(129));
        for bad in ["--field-manager=", "--field-manager=a\tb", long.as_str()] {
            assert!(parse_with(&[bad], &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn reloaders_alert_flags_are_ours() {
        let a = parse_flags(&[
            "--alert-on-reload=true",
            "--alert-webhook-url=https://hooks.example.com/T0/s3cr3t",
            "--alert-sink=Slack",
            "--alert-proxy=http://proxy.example.com:3128",
            "--alert-additional-info=prod-eu",
            "--alert-structured=true",
        ]);
        assert!(a.alert_webhook_url.is_some() && a.alert_proxy.is_some());
        assert_eq!(a.alert_format, alerts::Format::Slack);
        assert_eq!(a.cluster_name, "prod-eu");
        for sink in ["webhook", "raw", "JSON"] {
            let a = parse_flags(&[&format!("--alert-sink={sink}")]);
            assert_eq!(a.alert_format, alerts::Format::Json, "{sink}");
        }
        // Reloader's switch: off wins over a URL; on needs one.
        let a = parse_flags(&[
            "--alert-on-reload=false",
            "--alert-webhook-url=https://hooks.example.com/x",
        ]);
        assert_eq!(a.alert_webhook_url, None);
        let a = parse_flags(&["--alert-webhook-url=https://hooks.example.com/x"]);
        assert!(a.alert_webhook_url.is_some(), "a URL alone turns alerts on");
        let e = parse_with(&["--alert-on-reload"], &[]).unwrap_err();
        assert!(e.contains("--alert-webhook-url"), "{e}");
        assert!(parse_with(&["--alert-sink=webex"], &[]).is_err());
    }

    #[test]
    fn reloaders_environment_variables_are_read_when_ours_are_not_given() {
        let reloader_env = [
            ("ALERT_ON_RELOAD", "true"),
            ("ALERT_WEBHOOK_URL", "https://hooks.example.com/T0/s3cr3t"),
            ("ALERT_SINK", "teams"),
            ("ALERT_WEBHOOK_PROXY", "http://proxy.example.com:3128"),
            ("ALERT_ADDITIONAL_INFO", "prod-eu"),
            ("KUBERNETES_NAMESPACE", "shop"),
            ("RELOADER_NAMESPACE", "reloader"),
            ("METRICS_COUNT_BY_NAMESPACE", "enabled"),
        ];
        let (a, notes) = parse_with(&[], &reloader_env).unwrap();
        assert!(a.alert_webhook_url.is_some() && a.alert_proxy.is_some());
        assert_eq!(a.alert_format, alerts::Format::Teams);
        assert_eq!(a.cluster_name, "prod-eu");
        assert_eq!(a.namespaces, ["shop"]);
        assert_eq!(
            notes,
            [
                "read stakater Reloader's ALERT_ON_RELOAD as --alert-on-reload",
                "read stakater Reloader's ALERT_WEBHOOK_URL as --alert-webhook-url",
                "read stakater Reloader's ALERT_SINK as --alert-format",
                "read stakater Reloader's ALERT_WEBHOOK_PROXY as --alert-proxy",
                "read stakater Reloader's ALERT_ADDITIONAL_INFO as --cluster-name",
                "read stakater Reloader's KUBERNETES_NAMESPACE as --namespace",
                "ignored stakater Reloader's RELOADER_NAMESPACE: kube-reloader publishes no meta-info ConfigMap",
                "ignored stakater Reloader's METRICS_COUNT_BY_NAMESPACE: kube_reloader_rollouts_total has a namespace label already",
            ]
        );
        assert!(!notes.concat().contains("s3cr3t"));
        // Ours, given, win.
        let (a, _) = parse_with(
            &["--alert-format=gchat", "--namespace=a", "--cluster-name=c"],
            &reloader_env,
        )
        .unwrap();
        assert_eq!(a.alert_format, alerts::Format::Gchat);
        assert_eq!(
            (a.namespaces, a.cluster_name),
            (vec!["a".into()], "c".into())
        );
        // As in Reloader, a URL without ALERT_ON_RELOAD=true sends nothing.
        let url = ("ALERT_WEBHOOK_URL", "https://hooks.example.com/x");
        for on in [None, Some("false"), Some("yes-please")] {
            let env: Vec<_> = [url]
                .into_iter()
                .chain(on.map(|v| ("ALERT_ON_RELOAD", v)))
                .collect();
            let (a, _) = parse_with(&[], &env).unwrap();
            assert_eq!(a.alert_webhook_url, None, "{on:?}");
        }
        let (a, _) = parse_with(&[], &[url, ("ALERT_ON_RELOAD", "True")]).unwrap();
        assert!(a.alert_webhook_url.is_some());
        // v2's ALERT_PROXY first.
        let (a, notes) = parse_with(
            &[],
            &[
                ("ALERT_PROXY", "http://a:1"),
                ("ALERT_WEBHOOK_PROXY", "http://b:2"),
            ],
        )
        .unwrap();
        assert!(a.alert_proxy.is_some());
        assert_eq!(
            notes,
            ["read stakater Reloader's ALERT_PROXY as --alert-proxy"]
        );
        let e = parse_with(&[], &[("ALERT_SINK", "webex")]).unwrap_err();
        assert!(e.contains("ALERT_SINK"), "{e}");
    }

    #[test]
    fn reloaders_annotation_names_are_read_as_given() {
        let a = parse_flags(&[]);
        assert_eq!(a.policy().names, optin::reloader::Names::STAKATER);
        let a = parse_flags(&[
            "--auto-annotation=example.com/auto",
            "--configmap-exclude-annotation=example.com/skip-configmaps",
            "--secret-exclude-annotation=example.com/skip-secrets",
            "--secretproviderclass-annotation=example.com/spc",
            "--secretproviderclass-auto-annotation=example.com/spc-auto",
            "--secretproviderclass-exclude-annotation=example.com/skip-spc",
            "--ignore-annotation=example.com/ignore",
            "--pause-deployment-annotation=example.com/pause",
            "--configmap-annotation=configmap.reloader.stakater.com/reload",
        ]);
        let names = a.policy().names;
        assert_eq!(names.auto, "example.com/auto");
        assert_eq!(names.configmaps_exclude, "example.com/skip-configmaps");
        assert_eq!(names.secrets_exclude, "example.com/skip-secrets");
        assert_eq!(names.secretproviderclass_reload, "example.com/spc");
        assert_eq!(names.secretproviderclass_auto, "example.com/spc-auto");
        assert_eq!(names.secretproviderclasses_exclude, "example.com/skip-spc");
        assert_eq!(names.ignore, "example.com/ignore");
        assert_eq!(names.pause_period, "example.com/pause");
        assert_eq!(names.secret_auto, optin::reloader::SECRET_AUTO);
        assert_eq!(names.configmap_reload, optin::reloader::CONFIGMAP_RELOAD);
        for bad in ["", "a b", "-x", "Example.com/x", "x/", "/x", "a/b/c"] {
            let e = parse_with(&[&format!("--auto-annotation={bad}")], &[]).unwrap_err();
            assert!(e.contains("not an annotation name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn reloaders_other_flags_are_accepted_when_they_ask_for_what_we_do() {
        for flags in [
            &["--reload-strategy=annotations"][..],
            &["--reload-strategy", "annotations"],
            &["--reload-on-create=true"],
            &["--reload-on-create", "True"],
            &["--reload-on-delete=false"],
            &["--sync-after-restart"],
            &["--sync-after-restart=1"],
            &["--is-Argo-Rollouts=true"],
            &["--ignored-workload-types=jobs"],
            &["--is-openshift=false"],
            &["--enable-pprof=false"],
            &["--enable-restart-windows"],
            &["--alert-structured"],
            &["--alert-structured=false"],
            &["--metrics-addr=:9090"],
            &["--log-format=", "--log-level=debug"],
        ] {
            assert!(parse_with(flags, &[]).is_ok(), "{flags:?}");
        }
        assert_eq!(
            parse_flags(&["--metrics-addr=:9091"]).metrics_addr,
            "0.0.0.0:9091".parse::<SocketAddr>().unwrap()
        );
        // A subcommand after a boolean is not taken for its value.
        let a = parse_flags(&["--sync-after-restart", "explain", "--all"]);
        assert!(a.command.is_some());
    }

    #[test]
    fn reloaders_other_flags_are_refused_naming_what_to_do_instead() {
        let cases = [
            ("--reload-strategy=env-vars", "kube-reloader.io/config-hash"),
            ("--reload-on-create=false", "leave the flag out"),
            ("--reload-on-delete=true", "never rolls for a deletion"),
            ("--sync-after-restart=false", "catches up after a restart"),
            (
                "--is-Argo-Rollouts=false",
                "--kinds=Deployment,StatefulSet,DaemonSet,CronJob",
            ),
            (
                "--ignored-workload-types=jobs,cronjobs",
                "--kinds=Deployment,StatefulSet,DaemonSet,Rollout",
            ),
            ("--webhook-url=http://x", "--alert-webhook-url"),
            (
                "--is-openshift",
                "--workload-kind=apps.openshift.io/v1/DeploymentConfig",
            ),
            (
                "--is-openshift=auto",
                "--workload-kind=apps.openshift.io/v1/DeploymentConfig",
            ),
            (
                "--is-openshift=true",
                "apps.openshift.io/v1/DeploymentConfig",
            ),
            ("--enable-pprof", "no pprof"),
            (
                "--enable-restart-windows=false",
                "always honours restart windows",
            ),
            ("--pprof-addr=:6060", "no pprof"),
            ("--health-addr=:8080", "--metrics-addr"),
            (
                "--leader-election-release-on-cancel=false",
                "releases its Lease",
            ),
            ("--alert-structured=maybe", "true or false"),
        ];
        for (flag, names) in cases {
            let e = parse_with(&[flag], &[]).expect_err(flag);
            assert!(
                e.contains("stakater Reloader's --") && e.contains(names),
                "{flag}: {e}"
            );
        }
        let e = parse_with(&["--is-openshift"], &[]).unwrap_err();
        assert!(e.contains("Reloader's --is-openshift:"), "{e}");
    }

    #[test]
    fn durations() {
        let ok = [
            ("2s", 2000),
            ("1500ms", 1500),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("0.5", 500),
            ("0s", 0),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for s in ["", "s", "2x", "-1s", "1m-"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn label_selectors_in_ours_and_reloaders_forms() {
        let ok = [
            ("team=payments", "team=payments"),
            ("team:payments", "team=payments"),
            ("team:*", "team"),
            ("team=*", "team"),
            ("a:1, b!=2,!legacy", "a=1,b!=2,!legacy"),
            ("env in (prod,staging),tier", "env in (prod,staging),tier"),
        ];
        for (given, want) in ok {
            assert_eq!(parse_selector(given).as_deref(), Ok(want), "{given}");
        }
        for bad in ["", "a=1,", ",a"] {
            assert!(parse_selector(bad).is_err(), "{bad:?}");
        }
    }

    /// `explain` takes exactly one of a target or `--all`; `-A` only with `--all`, where it
    /// overrides `-n`. (`-A` cannot say `requires = "all"`: clap counts the flag's default
    /// `false` as present.)
    #[test]
    fn explain_takes_a_target_or_all() {
        let explain = |args: &[&str]| {
            let all = ["kube-reloader", "explain"].iter().chain(args);
            Args::try_parse_from(all).map(|a| match a.command {
                Some(Command::Explain {
                    target,
                    all,
                    all_namespaces,
                    namespace,
                    ..
                }) => (target, all, all_namespaces, namespace),
                None => panic!("no command"),
            })
        };
        let web = Some("deploy/web".to_string());
        assert_eq!(explain(&["deploy/web"]).unwrap(), (web, false, false, None));
        assert_eq!(explain(&["--all"]).unwrap(), (None, true, false, None));
        let shop = Some("shop".to_string());
        assert_eq!(
            explain(&["--all", "-n", "shop"]).unwrap(),
            (None, true, false, shop.clone())
        );
        for all_namespaces in [
            &["--all", "-A"][..],
            &["-A", "--all"],
            &["--all", "--all-namespaces"],
        ] {
            assert_eq!(explain(all_namespaces).unwrap(), (None, true, true, None));
        }
        assert_eq!(
            explain(&["--all", "-A", "-n", "shop"]).unwrap(),
            (None, true, true, shop)
        );
        assert!(explain(&["--all", "-o", "json"]).unwrap().1);
        // Neither, both, or -A without --all.
        for bad in [
            &[][..],
            &["-n", "shop"],
            &["--all", "deploy/web"],
            &["deploy/web", "--all"],
            &["-A"],
            &["-A", "deploy/web"],
            &["--all", "deploy/web", "-A"],
        ] {
            assert!(explain(bad).is_err(), "{bad:?}");
        }
        // The controller's flags before the command apply to it as to a single explain.
        let a = Args::try_parse_from([
            "kube-reloader",
            "--reloader-compat=false",
            "--auto-reload-all=true",
            "explain",
            "--all",
        ])
        .unwrap();
        let policy = a.policy();
        assert!(!policy.reloader_compat && policy.auto_reload_all);
    }

    /// `--enable-csi-integration` (Reloader's flag, its forms): SecretProviderClasses are a kind
    /// watched and tracked only with it.
    #[test]
    fn csi_integration_is_off_unless_asked_for() {
        let spc = ConfigKind::SecretProviderClass;
        let off = Args::try_parse_from(["kube-reloader"]).unwrap();
        assert!(!off.scope().csi() && off.policy().ignored.contains(&spc));
        assert!(!off.scope().config_kinds().contains(&spc));
        for on in [
            &["kube-reloader", "--enable-csi-integration"][..],
            &["kube-reloader", "--enable-csi-integration=true"],
        ] {
            let a = Args::try_parse_from(on).unwrap();
            assert!(a.scope().csi(), "{on:?}");
            assert!(!a.policy().ignored.contains(&spc));
            assert_eq!(a.scope().config_kinds(), ConfigKind::ALL);
        }
        let a = Args::try_parse_from([
            "kube-reloader",
            "--enable-csi-integration",
            "--resources-to-ignore=secrets",
        ])
        .unwrap();
        let kinds = [ConfigKind::ConfigMap, spc];
        assert_eq!(a.scope().config_kinds(), kinds);
        assert!(Args::try_parse_from(["kube-reloader", "--enable-csi-integration=yes"]).is_err());
        // Reloader's renaming flags reach the SecretProviderClass opt-in, only with the flag.
        let renamed = "--secretproviderclass-auto-annotation=example.com/spc-auto";
        let meta = [("example.com/spc-auto".to_string(), "true".to_string())].into();
        let read = |args: &[&str]| {
            let policy = Args::try_parse_from(args).unwrap().policy();
            optin::parse_with(&meta, &Default::default(), &policy).unwrap()
        };
        let on = read(&["kube-reloader", "--enable-csi-integration", renamed]);
        assert!(on.is_some_and(|o| o.auto_secret_provider_classes));
        assert!(read(&["kube-reloader", renamed]).is_none());
    }

    #[test]
    fn defaults_and_env_twins() {
        let a = Args::try_parse_from(["kube-reloader"]).unwrap();
        assert_eq!(a.debounce, Duration::from_secs(2));
        assert_eq!(a.min_rollout_interval, Duration::from_secs(10));
        assert!(a.reloader_compat);
        assert!(a.namespaces.is_empty());
        assert_eq!(a.max_concurrent_reconciles, 16);
        assert_eq!(a.kinds(), WorkloadKind::BUILT_IN);
        // Progressive rollouts: off, with a canary, a tenth and the rest, 10 minutes.
        assert!(!a.progressive);
        assert_eq!(a.rollout_waves, Waves::default());
        assert_eq!(a.rollout_timeout, Duration::from_secs(600));
        assert_eq!(a.rollout_soak, Duration::ZERO);
        let p = Args::try_parse_from([
            "kube-reloader",
            "--progressive",
            "--rollout-waves=2,25%,50%",
            "--rollout-timeout=5m",
            "--rollout-soak=2m",
        ])
        .unwrap();
        assert_eq!(p.rollout_soak, Duration::from_secs(120));
        assert!(p.progressive && p.rollout_timeout == Duration::from_secs(300));
        assert_eq!(p.rollout_waves, "2,25%,50%".parse().unwrap());
        assert!(Args::try_parse_from(["kube-reloader", "--rollout-waves=0"]).is_err());
        assert!(Args::try_parse_from(["kube-reloader", "--rollout-waves=150%"]).is_err());
        assert_eq!(
            a.timeouts(),
            Timeouts {
                request: Duration::from_secs(20),
                watch: Duration::from_secs(45),
            }
        );
        let t = Args::try_parse_from([
            "kube-reloader",
            "--watch-timeout=1m",
            "--request-timeout=5s",
        ])
        .unwrap()
        .timeouts();
        assert_eq!((t.watch.as_secs(), t.request.as_secs()), (60, 5));
        // A watch bound the API server could not end a watch before; no bound at all.
        for bad in [
            "--watch-timeout=9s",
            "--request-timeout=500ms",
            "--request-timeout=0s",
        ] {
            assert!(
                Args::try_parse_from(["kube-reloader", bad]).is_err(),
                "{bad}"
            );
        }
        let a = Args::try_parse_from([
            "kube-reloader",
            "--kinds=deployment,sts",
            "--workload-kind=batch/v1beta1/CronJob=spec.jobTemplate.spec.template",
            "--workload-kind",
            "apps.kruise.io/v1alpha1/CloneSet",
        ])
        .unwrap();
        let kinds: Vec<String> = a.kinds().iter().map(|k| k.describe()).collect();
        assert_eq!(
            kinds,
            [
                "apps/v1/Deployment=spec.template",
                "apps/v1/StatefulSet=spec.template",
                "batch/v1beta1/CronJob=spec.jobTemplate.spec.template",
                "apps.kruise.io/v1alpha1/CloneSet=spec.template",
            ]
        );
        assert!(Args::try_parse_from(["kube-reloader", "--kinds=CloneSet"]).is_err());
        // Reloader's spellings and forms, so a Reloader Deployment's args can be kept.
        let a = Args::try_parse_from([
            "kube-reloader",
            "--namespaces=a,b",
            "--namespaces-to-ignore=kube-system",
            "--enable-ha=true",
            "--log-format=",
            "--auto-reload-all",
            "--resources-to-ignore=Secrets",
            "--namespace-selector=team:payments,env:*",
            "--resource-label-selector=reload=true",
        ])
        .unwrap();
        assert_eq!(a.namespaces, ["a", "b"]);
        assert_eq!(a.ignore_namespaces, ["kube-system"]);
        assert!(a.leader_elect && a.auto_reload_all);
        assert_eq!(a.log_format, LogFormat::Text);
        assert_eq!(a.resources_to_ignore, [ConfigKind::Secret]);
        assert_eq!(a.namespace_selector.as_deref(), Some("team=payments,env"));
        assert_eq!(a.resource_label_selector.as_deref(), Some("reload=true"));
        let a =
            Args::try_parse_from(["kube-reloader", "--leader-elect", "--auto-reload-all=false"])
                .unwrap();
        assert!(a.leader_elect && !a.auto_reload_all);
        // A value only with `=`, so a subcommand after the flag is not taken for one.
        let a = Args::try_parse_from(["kube-reloader", "--auto-reload-all", "explain", "--all"])
            .unwrap();
        assert!(a.auto_reload_all && a.command.is_some());
        assert!(Args::try_parse_from(["kube-reloader", "--resources-to-ignore=pods"]).is_err());
        assert!(Args::try_parse_from(["kube-reloader", "--log-format=xml"]).is_err());
        assert!(Args::try_parse_from(["kube-reloader", "--workload-kind=CloneSet"]).is_err());
        // Given to explain as to the controller.
        let a = Args::try_parse_from([
            "kube-reloader",
            "explain",
            "--workload-kind=tests.example.io/v1/Widget",
            "widget/w",
        ])
        .unwrap();
        assert_eq!(a.kinds().len(), 6);
        assert!(Args::try_parse_from(["kube-reloader", "--max-concurrent-reconciles=0"]).is_err());
        let a = Args::try_parse_from([
            "kube-reloader",
            "--namespace",
            "a,b",
            "--namespace=c",
            "--reloader-compat=false",
        ])
        .unwrap();
        assert_eq!(a.namespaces, ["a", "b", "c"]);
        assert!(!a.reloader_compat);
        // Alerts: off by default; the URL never shows in Debug output.
        let a = Args::try_parse_from(["kube-reloader"]).unwrap();
        assert_eq!(a.alert_webhook_url, None);
        assert_eq!(a.alert_proxy, None);
        assert_eq!(a.alert_format, alerts::Format::Json);
        assert_eq!(a.cluster_name, "");
        let a = Args::try_parse_from([
            "kube-reloader",
            "--alert-webhook-url=https://hooks.example.com/T0/s3cr3t",
            "--alert-proxy=http://me:pr0xypw@proxy.example.com:3128",
            "--alert-format=teams",
            "--cluster-name=prod-eu",
        ])
        .unwrap();
        assert!(a.alert_webhook_url.is_some());
        assert_eq!(a.alert_format, alerts::Format::Teams);
        assert_eq!(a.cluster_name, "prod-eu");
        assert!(!format!("{a:?}").contains("s3cr3t"));
        assert!(a.alert_proxy.is_some());
        assert!(!format!("{a:?}").contains("pr0xypw"));
        assert!(Args::try_parse_from(["kube-reloader", "--alert-format=webex"]).is_err());
        // Every flag has a KUBE_RELOADER_ environment variable.
        use clap::CommandFactory;
        let cmd = Args::command();
        let explain = cmd.find_subcommand("explain").expect("explain").clone();
        for arg in cmd.get_arguments().chain(explain.get_arguments()) {
            // The target, or --all and -A instead of one, say what to explain: the subject of
            // the command, not a setting an environment could carry.
            if matches!(
                arg.get_id().as_str(),
                "help" | "version" | "target" | "all" | "all_namespaces"
            ) {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().to_string());
            assert!(
                env.as_deref()
                    .is_some_and(|e| e.starts_with("KUBE_RELOADER_")),
                "--{} has no KUBE_RELOADER_ env var",
                arg.get_id()
            );
        }
    }
}
