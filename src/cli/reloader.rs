//! stakater Reloader's flags and environment variables (v1.4.22 and its v2 branch), so that a
//! Reloader Deployment's arguments can be kept: each is either read as kube-reloader's own
//! equivalent, or refused at start with a message naming what to do instead. The table in
//! docs/migrating-from-reloader.md lists every one.

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches};

use crate::alerts::{Format, SecretUrl};
use crate::model::annotations::reloader::Names;

use super::Args;

/// Reloader's `--*-annotation` flags: the names its annotations are read under. Unset, Reloader's
/// own names.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(
    next_help_heading = "Names of stakater Reloader's annotations (its --*-annotation flags)"
)]
pub struct AnnotationNames {
    /// Instead of `reloader.stakater.com/auto`.
    #[arg(long, env = "KUBE_RELOADER_AUTO_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub auto_annotation: Option<String>,
    /// Instead of `configmap.reloader.stakater.com/auto`.
    #[arg(long, env = "KUBE_RELOADER_CONFIGMAP_AUTO_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub configmap_auto_annotation: Option<String>,
    /// Instead of `secret.reloader.stakater.com/auto`.
    #[arg(long, env = "KUBE_RELOADER_SECRET_AUTO_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub secret_auto_annotation: Option<String>,
    /// Instead of `secretproviderclass.reloader.stakater.com/auto`.
    #[arg(long, env = "KUBE_RELOADER_SECRETPROVIDERCLASS_AUTO_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub secretproviderclass_auto_annotation: Option<String>,
    /// Instead of `configmap.reloader.stakater.com/reload`.
    #[arg(long, env = "KUBE_RELOADER_CONFIGMAP_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub configmap_annotation: Option<String>,
    /// Instead of `secret.reloader.stakater.com/reload`.
    #[arg(long, env = "KUBE_RELOADER_SECRET_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub secret_annotation: Option<String>,
    /// Instead of `secretproviderclass.reloader.stakater.com/reload`.
    #[arg(long, env = "KUBE_RELOADER_SECRETPROVIDERCLASS_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub secretproviderclass_annotation: Option<String>,
    /// Instead of `reloader.stakater.com/search`.
    #[arg(long, env = "KUBE_RELOADER_AUTO_SEARCH_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub auto_search_annotation: Option<String>,
    /// Instead of `reloader.stakater.com/match`.
    #[arg(long, env = "KUBE_RELOADER_SEARCH_MATCH_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub search_match_annotation: Option<String>,
    /// Instead of `reloader.stakater.com/ignore`.
    #[arg(long, env = "KUBE_RELOADER_IGNORE_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub ignore_annotation: Option<String>,
    /// Instead of `configmaps.exclude.reloader.stakater.com/reload`.
    #[arg(long, env = "KUBE_RELOADER_CONFIGMAP_EXCLUDE_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub configmap_exclude_annotation: Option<String>,
    /// Instead of `secrets.exclude.reloader.stakater.com/reload`.
    #[arg(long, env = "KUBE_RELOADER_SECRET_EXCLUDE_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub secret_exclude_annotation: Option<String>,
    /// Instead of `secretproviderclasses.exclude.reloader.stakater.com/reload`.
    #[arg(long, env = "KUBE_RELOADER_SECRETPROVIDERCLASS_EXCLUDE_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub secretproviderclass_exclude_annotation: Option<String>,
    /// Instead of `deployment.reloader.stakater.com/pause-period` (read as the workload's
    /// debounce window).
    #[arg(long, env = "KUBE_RELOADER_PAUSE_DEPLOYMENT_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub pause_deployment_annotation: Option<String>,
    /// Instead of `deployment.reloader.stakater.com/paused-at` (written by Reloader; never an
    /// opt-in).
    #[arg(long, env = "KUBE_RELOADER_PAUSE_DEPLOYMENT_TIME_ANNOTATION", value_name = "NAME", value_parser = parse_name)]
    pub pause_deployment_time_annotation: Option<String>,
}

impl AnnotationNames {
    /// The names Reloader's annotations are read under. A renamed one lives as long as the
    /// process (the command line is read once), so names stay plain `&'static str` everywhere.
    pub fn names(&self) -> Names {
        let d = Names::STAKATER;
        let or = |given: &Option<String>, default: &'static str| -> &'static str {
            match given {
                Some(name) if name != default => Box::leak(name.clone().into_boxed_str()),
                _ => default,
            }
        };
        Names {
            auto: or(&self.auto_annotation, d.auto),
            configmap_auto: or(&self.configmap_auto_annotation, d.configmap_auto),
            secret_auto: or(&self.secret_auto_annotation, d.secret_auto),
            secretproviderclass_auto: or(
                &self.secretproviderclass_auto_annotation,
                d.secretproviderclass_auto,
            ),
            configmap_reload: or(&self.configmap_annotation, d.configmap_reload),
            secret_reload: or(&self.secret_annotation, d.secret_reload),
            secretproviderclass_reload: or(
                &self.secretproviderclass_annotation,
                d.secretproviderclass_reload,
            ),
            search: or(&self.auto_search_annotation, d.search),
            match_: or(&self.search_match_annotation, d.match_),
            ignore: or(&self.ignore_annotation, d.ignore),
            configmaps_exclude: or(&self.configmap_exclude_annotation, d.configmaps_exclude),
            secrets_exclude: or(&self.secret_exclude_annotation, d.secrets_exclude),
            secretproviderclasses_exclude: or(
                &self.secretproviderclass_exclude_annotation,
                d.secretproviderclasses_exclude,
            ),
            pause_period: or(&self.pause_deployment_annotation, d.pause_period),
            paused_at: or(&self.pause_deployment_time_annotation, d.paused_at),
        }
    }
}

/// An annotation name as the API server takes one: an optional DNS-subdomain prefix and `/`,
/// then 1 to 63 characters of letters, digits, `-`, `_` and `.`, alphanumeric at both ends.
fn parse_name(s: &str) -> Result<String, String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let alnum_ends = |t: &str| {
        t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && t.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    let name_ok = name.len() <= 63
        && alnum_ends(name)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && alnum_ends(p)
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
    });
    if name_ok && prefix_ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not an annotation name (like example.com/auto: a DNS prefix, '/', then letters, digits, '-', '_' or '.')"
        ))
    }
}

/// How a Reloader flag takes its value.
#[derive(Clone, Copy)]
enum Takes {
    /// A boolean: `--flag` alone means `true`; a value only with `=`.
    Bool,
    /// A value, as `--flag=v` or `--flag v`.
    Value,
    /// A value, or none (`--is-openshift` alone means auto-detect).
    MaybeValue,
}

/// A Reloader flag kube-reloader has no flag for: accepted with the values that ask for what
/// kube-reloader does anyway (none for some), refused otherwise with `why`.
struct Fixed {
    flag: &'static str,
    takes: Takes,
    /// Values accepted (after [`normalize`]); for a comma list, each item must be one.
    accepts: &'static [&'static str],
    why: &'static str,
}

/// Every Reloader flag (v1.4.22 and its v2 branch) without a kube-reloader flag of its own.
/// `--enable-csi-integration` is kube-reloader's own flag.
const FIXED: &[Fixed] = &[
    Fixed {
        flag: "reload-strategy",
        takes: Takes::Value,
        accepts: &["annotations"],
        why: "kube-reloader never writes environment variables: it rolls a workload by writing one annotation, kube-reloader.io/config-hash, into its pod template (as Reloader's `annotations` strategy does); leave the flag out",
    },
    Fixed {
        flag: "reload-on-create",
        takes: Takes::Value,
        accepts: &["true"],
        why: "kube-reloader always rolls a workload once when an object it tracks, but that did not exist, is created; leave the flag out",
    },
    Fixed {
        flag: "reload-on-delete",
        takes: Takes::Value,
        accepts: &["false"],
        why: "kube-reloader never rolls for a deletion (new pods would reference a missing object); leave the flag out",
    },
    Fixed {
        flag: "sync-after-restart",
        takes: Takes::Bool,
        accepts: &["true"],
        why: "kube-reloader always catches up after a restart: a change made while it was down is rolled once, and nothing else rolls; leave the flag out",
    },
    Fixed {
        flag: "is-Argo-Rollouts",
        takes: Takes::Value,
        accepts: &["true"],
        why: "kube-reloader rolls Argo Rollouts whenever their CRD is served; to leave them out, list the other kinds: --kinds=Deployment,StatefulSet,DaemonSet,CronJob",
    },
    Fixed {
        flag: "ignored-workload-types",
        takes: Takes::Value,
        accepts: &["jobs"],
        why: "kube-reloader never rolls Jobs; to leave CronJobs out, list the other kinds: --kinds=Deployment,StatefulSet,DaemonSet,Rollout",
    },
    Fixed {
        flag: "webhook-url",
        takes: Takes::Value,
        accepts: &[],
        why: "kube-reloader always rolls: Reloader's webhook mode (a POST instead of a rollout) has no equivalent. For a POST on every rollout, use --alert-webhook-url",
    },
    Fixed {
        flag: "is-openshift",
        takes: Takes::MaybeValue,
        accepts: &["false"],
        why: "kube-reloader has no built-in OpenShift DeploymentConfig support; roll them as any kind with a pod template: --workload-kind=apps.openshift.io/v1/DeploymentConfig (and grant list, watch and patch on deploymentconfigs)",
    },
    Fixed {
        flag: "enable-restart-windows",
        takes: Takes::Bool,
        accepts: &["true"],
        why: "kube-reloader always honours restart windows (kube-reloader.io/restart-window, and reloader.stakater.com/restart-window with Reloader's annotations); to roll a windowed workload at once, remove its annotation; leave the flag out",
    },
    Fixed {
        flag: "enable-pprof",
        takes: Takes::Bool,
        accepts: &["false"],
        why: "kube-reloader serves no pprof profiles; leave the flag out",
    },
    Fixed {
        flag: "pprof-addr",
        takes: Takes::Value,
        accepts: &[],
        why: "kube-reloader serves no pprof profiles; leave the flag out",
    },
    Fixed {
        flag: "health-addr",
        takes: Takes::Value,
        accepts: &[],
        why: "kube-reloader serves /healthz and /readyz on --metrics-addr, beside /metrics; leave the flag out and point the probes at the metrics port",
    },
    Fixed {
        flag: "leader-election-release-on-cancel",
        takes: Takes::Bool,
        accepts: &["true"],
        why: "kube-reloader always releases its Lease when it shuts down, so that a standby takes over at once; leave the flag out",
    },
    Fixed {
        flag: "alert-structured",
        takes: Takes::Bool,
        accepts: &["true", "false"],
        why: "use true or false: kube-reloader's json alerts are always a structured document",
    },
];

/// The command line with Reloader's flags of [`FIXED`] added (hidden from the help).
pub fn command(cmd: clap::Command) -> clap::Command {
    cmd.args(FIXED.iter().map(|f| {
        let arg = Arg::new(f.flag).long(f.flag).hide(true);
        match f.takes {
            Takes::Bool => arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true"),
            Takes::Value => arg.num_args(1),
            Takes::MaybeValue => arg.num_args(0..=1).default_missing_value(""),
        }
    }))
}

/// A Reloader value as it is meant: Go's booleans (`1`, `t`, `True`, … and v2's `yes`/`no`) as
/// `true`/`false`, anything else trimmed and lower-cased.
fn normalize(v: &str) -> String {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" | "yes" => "true".into(),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "no" => "false".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// Refuses a Reloader flag of [`FIXED`] given with a value asking for something kube-reloader
/// does not do, with what to do instead.
pub fn refused(m: &ArgMatches) -> Result<(), String> {
    for f in FIXED {
        let Some(given) = m.get_one::<String>(f.flag) else {
            continue;
        };
        let ok = given
            .split(',')
            .all(|item| f.accepts.contains(&normalize(item).as_str()));
        if !ok {
            let flag = match given.as_str() {
                "" => format!("--{}", f.flag),
                _ => format!("--{}={given}", f.flag),
            };
            return Err(format!("stakater Reloader's {flag}: {}", f.why));
        }
    }
    Ok(())
}

/// Reloader's environment variables kube-reloader reads when its own flag (or `KUBE_RELOADER_…`
/// twin) is not given: Reloader v1's alert settings and single namespace, and its v2 branch's
/// `ALERT_PROXY`. Those without a meaning here are named in a note and otherwise ignored.
/// Returns notes to log: which were read, which were ignored (never their values).
pub fn apply_env(
    args: &mut Args,
    m: &ArgMatches,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let given = |id: &str| {
        matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let get = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut notes = Vec::new();
    let mut read = |var: &str, flag: &str| {
        notes.push(format!("read stakater Reloader's {var} as --{flag}"));
    };

    if !given("alert_on_reload")
        && let Some(v) = get("ALERT_ON_RELOAD")
    {
        // Reloader v1 compares it with "true" literally; its v2 parses booleans.
        args.alert_on_reload = Some(normalize(&v) == "true");
        read("ALERT_ON_RELOAD", "alert-on-reload");
    }
    if !given("alert_webhook_url")
        && let Some(v) = get("ALERT_WEBHOOK_URL")
    {
        args.alert_webhook_url = Some(SecretUrl::from(v));
        // As in Reloader, the URL alone turns nothing on.
        args.alert_on_reload.get_or_insert(false);
        read("ALERT_WEBHOOK_URL", "alert-webhook-url");
    }
    if !given("alert_format")
        && let Some(v) = get("ALERT_SINK")
    {
        args.alert_format = parse_sink(&v)?;
        read("ALERT_SINK", "alert-format");
    }
    if !given("alert_proxy") {
        for var in ["ALERT_PROXY", "ALERT_WEBHOOK_PROXY"] {
            if let Some(v) = get(var) {
                args.alert_proxy = Some(SecretUrl::from(v));
                read(var, "alert-proxy");
                break;
            }
        }
    }
    if !given("cluster_name")
        && let Some(v) = get("ALERT_ADDITIONAL_INFO")
    {
        args.cluster_name = v;
        read("ALERT_ADDITIONAL_INFO", "cluster-name");
    }
    if !given("namespaces")
        && let Some(v) = get("KUBERNETES_NAMESPACE")
    {
        args.namespaces = vec![v];
        read("KUBERNETES_NAMESPACE", "namespace");
    }
    for (var, why) in [
        (
            "RELOADER_NAMESPACE",
            "kube-reloader publishes no meta-info ConfigMap",
        ),
        (
            "RELOADER_DEPLOYMENT_NAME",
            "kube-reloader publishes no meta-info ConfigMap",
        ),
        (
            "METRICS_COUNT_BY_NAMESPACE",
            "kube_reloader_rollouts_total has a namespace label already",
        ),
    ] {
        if get(var).is_some() {
            notes.push(format!("ignored stakater Reloader's {var}: {why}"));
        }
    }
    Ok(notes)
}

/// Reloader's alert sink (`ALERT_SINK`, v2's `--alert-sink`) as an alert format.
fn parse_sink(s: &str) -> Result<Format, String> {
    use clap::ValueEnum;
    Format::from_str(s.trim(), true).map_err(|_| {
        format!("stakater Reloader's ALERT_SINK={s:?}: use slack, teams, gchat, webhook or raw")
    })
}

/// `--alert-on-reload`, Reloader's switch: `false` turns alerts off even with a URL; `true`
/// needs the URL.
pub fn alert_switch(args: &mut Args) -> Result<(), String> {
    match args.alert_on_reload {
        Some(false) => args.alert_webhook_url = None,
        Some(true) if args.alert_webhook_url.is_none() => {
            return Err(
                "--alert-on-reload=true needs --alert-webhook-url (or Reloader's ALERT_WEBHOOK_URL)"
                    .into(),
            );
        }
        _ => {}
    }
    Ok(())
}
