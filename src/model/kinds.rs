//! The kinds kube-reloader knows: the two kinds of config object whose content is tracked, and
//! the workload kinds it rolls, as data (group, version, kind and where the pod template lives).
//! The built-in kinds and `--workload-kind` kinds are the same thing with different defaults.

use std::fmt;
use std::hash::{Hash, Hasher};

/// The kinds of object whose content is tracked: ConfigMaps and Secrets, and (with
/// `--enable-csi-integration`) the SecretProviderClasses of the Secrets Store CSI driver, whose
/// content is the object versions a workload's own pods report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
    SecretProviderClass,
}

impl ConfigKind {
    /// Every kind, in order.
    pub const ALL: [ConfigKind; 3] = [
        ConfigKind::ConfigMap,
        ConfigKind::Secret,
        ConfigKind::SecretProviderClass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "ConfigMap",
            ConfigKind::Secret => "Secret",
            ConfigKind::SecretProviderClass => "SecretProviderClass",
        }
    }
}

impl fmt::Display for ConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind of workload: where its objects are served and where their pod template lives.
#[derive(Debug)]
pub struct KindSpec {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource name (plural), when known before discovery.
    pub plural: Option<&'static str>,
    /// kubectl's short names, accepted by `explain`.
    pub short_names: &'static [&'static str],
    /// Field names from the object's root to its pod template.
    pub template_path: &'static [&'static str],
    /// Argo Rollouts' semantics: the template may live in a referenced Deployment
    /// (`spec.workloadRef`), and a restart may be asked for with `spec.restartAt`.
    pub argo: bool,
    /// Whether writes are server-side applies. Only for Kubernetes' own kinds, whose schemas type
    /// the whole pod template: where a custom resource's schema leaves part of it untyped
    /// (`x-kubernetes-preserve-unknown-fields`), an apply of one annotation there takes the
    /// untyped map as a unit and drops what else it holds. Other kinds get a JSON merge patch,
    /// which sets only the fields it names.
    pub apply: bool,
}

/// A workload kind: a handle on its [`KindSpec`]. Two handles are the same kind when their group
/// and kind are, whatever the version: the same objects are served at every version.
#[derive(Clone, Copy)]
pub struct WorkloadKind(&'static KindSpec);

const TEMPLATE: &[&str] = &["spec", "template"];

impl WorkloadKind {
    pub const DEPLOYMENT: WorkloadKind = WorkloadKind(&KindSpec {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: Some("deployments"),
        short_names: &["deploy"],
        template_path: TEMPLATE,
        argo: false,
        apply: true,
    });
    pub const STATEFUL_SET: WorkloadKind = WorkloadKind(&KindSpec {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: Some("statefulsets"),
        short_names: &["sts"],
        template_path: TEMPLATE,
        argo: false,
        apply: true,
    });
    pub const DAEMON_SET: WorkloadKind = WorkloadKind(&KindSpec {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: Some("daemonsets"),
        short_names: &["ds"],
        template_path: TEMPLATE,
        argo: false,
        apply: true,
    });
    /// The template of the Jobs it creates: a change reaches the next scheduled Job. No Job is
    /// ever created, deleted or touched.
    pub const CRON_JOB: WorkloadKind = WorkloadKind(&KindSpec {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: Some("cronjobs"),
        short_names: &["cj"],
        template_path: &["spec", "jobTemplate", "spec", "template"],
        argo: false,
        apply: true,
    });
    /// Argo Rollouts' Rollout; watched once its CRD is installed.
    pub const ROLLOUT: WorkloadKind = WorkloadKind(&KindSpec {
        group: "argoproj.io",
        version: "v1alpha1",
        kind: "Rollout",
        plural: Some("rollouts"),
        short_names: &["ro"],
        template_path: TEMPLATE,
        argo: true,
        apply: false,
    });

    /// Every built-in kind, in the order of `--kinds`'s default.
    pub const BUILT_IN: [WorkloadKind; 5] = [
        Self::DEPLOYMENT,
        Self::STATEFUL_SET,
        Self::DAEMON_SET,
        Self::CRON_JOB,
        Self::ROLLOUT,
    ];

    /// The kind's name, `Deployment`; also its metric label.
    pub fn as_str(self) -> &'static str {
        self.0.kind
    }

    pub fn spec(self) -> &'static KindSpec {
        self.0
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(self) -> String {
        if self.0.group.is_empty() {
            self.0.version.to_string()
        } else {
            format!("{}/{}", self.0.group, self.0.version)
        }
    }

    /// `GROUP/VERSION/KIND=PATH`, as `--workload-kind` takes it.
    pub fn describe(self) -> String {
        format!(
            "{}/{}={}",
            self.api_version(),
            self.0.kind,
            self.0.template_path.join(".")
        )
    }

    /// The kind in the plural, for messages: `Deployments`, `Policies`.
    pub fn plural_name(self) -> String {
        plural_of(self.0.kind)
    }

    /// Whether `name` (any case) names this kind on the command line: its kind, plural or short
    /// name, optionally followed by `.GROUP`, as kubectl accepts them.
    pub fn is_named(self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let (bare, group) = match name.split_once('.') {
            Some((bare, group)) => (bare.to_string(), Some(group.to_string())),
            None => (name, None),
        };
        if group.is_some_and(|g| g != self.0.group) {
            return false;
        }
        let kind = self.0.kind.to_ascii_lowercase();
        let plural = self
            .0
            .plural
            .map_or_else(|| plural_of(&kind), str::to_string);
        bare == kind || bare == plural || self.0.short_names.contains(&bare.as_str())
    }

    /// The built-in kind `name` names (its kind, plural or short name, any case).
    pub fn built_in(name: &str) -> Result<WorkloadKind, String> {
        let name = name.trim();
        Self::BUILT_IN
            .into_iter()
            .find(|k| k.is_named(name))
            .ok_or_else(|| {
                format!(
                    "{name:?} is not a built-in kind (one of {}); add other kinds with --workload-kind GROUP/VERSION/KIND[=PATH]",
                    Self::BUILT_IN.map(|k| k.as_str()).join(", ")
                )
            })
    }

    /// Parses `GROUP/VERSION/KIND[=PATH]` (`VERSION/KIND` for the core group), `PATH` being the
    /// dotted path to the pod template, `spec.template` by default. The kind lives as long as the
    /// process: kinds are configured once, at start.
    pub fn parse(s: &str) -> Result<WorkloadKind, String> {
        let s = s.trim();
        let (gvk, path) = s.split_once('=').unwrap_or((s, "spec.template"));
        let parts: Vec<&str> = gvk.split('/').collect();
        let (group, version, kind) = match parts.as_slice() {
            [group, version, kind] => (*group, *version, *kind),
            [version, kind] => ("", *version, *kind),
            _ => {
                return Err(format!(
                    "{s:?}: expected GROUP/VERSION/KIND[=PATH], e.g. apps.kruise.io/v1alpha1/CloneSet or batch/v1/CronJob=spec.jobTemplate.spec.template"
                ));
            }
        };
        let dns = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if !group.chars().all(dns) || group.starts_with('.') || group.ends_with('.') {
            return Err(format!("{s:?}: {group:?} is not an API group"));
        }
        if parts.len() == 3 && group.is_empty() {
            return Err(format!(
                "{s:?}: empty API group (write VERSION/KIND for the core group)"
            ));
        }
        if !is_api_version(version) {
            return Err(format!(
                "{s:?}: {version:?} is not an API version like v1, v1beta1 or v2alpha3"
            ));
        }
        if !kind.starts_with(|c: char| c.is_ascii_uppercase())
            || !kind.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(format!(
                "{s:?}: {kind:?} is not a kind (kinds are CamelCase, like CloneSet)"
            ));
        }
        let segments: Vec<&str> = path.split('.').collect();
        if segments
            .iter()
            .any(|f| f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "{s:?}: {path:?} is not a dotted field path like spec.template"
            ));
        }
        // A built-in kind named again keeps what the built-in knows (names, Argo's semantics).
        let known = Self::BUILT_IN
            .into_iter()
            .find(|k| k.0.group == group && k.0.kind == kind);
        let leak = |v: &str| -> &'static str { Box::leak(v.to_string().into_boxed_str()) };
        let segments: Vec<&'static str> = segments.into_iter().map(leak).collect();
        Ok(WorkloadKind(Box::leak(Box::new(KindSpec {
            group: leak(group),
            version: leak(version),
            kind: leak(kind),
            plural: known.and_then(|k| k.0.plural),
            short_names: known.map_or(&[], |k| k.0.short_names),
            template_path: Box::leak(segments.into_boxed_slice()),
            argo: known.is_some_and(|k| k.0.argo),
            apply: known.is_some_and(|k| k.0.apply),
        }))))
    }

    /// Whether the pod template lives where the built-in kind of the same name has it.
    fn same(self, other: WorkloadKind) -> bool {
        self.0.group == other.0.group && self.0.kind == other.0.kind
    }
}

/// Whether `v` is a Kubernetes API version: `v1`, `v1beta1`, `v2alpha3`.
fn is_api_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let major_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (major, tail) = rest.split_at(major_end);
    if major.is_empty() || major.starts_with('0') {
        return false;
    }
    match tail
        .strip_prefix("alpha")
        .or_else(|| tail.strip_prefix("beta"))
    {
        None => tail.is_empty(),
        Some(n) => !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && !n.starts_with('0'),
    }
}

/// The kinds to roll: the built-in kinds chosen, then the `--workload-kind` kinds, one per group
/// and kind. A `--workload-kind` kind replaces a built-in kind of the same group and kind (say,
/// CronJobs at batch/v1beta1 on a cluster older than Kubernetes 1.21), and a later one an earlier.
pub fn resolve(built_in: &[WorkloadKind], extra: &[WorkloadKind]) -> Vec<WorkloadKind> {
    let mut kinds: Vec<WorkloadKind> = Vec::new();
    for k in built_in.iter().chain(extra) {
        match kinds.iter_mut().find(|have| have.same(*k)) {
            Some(have) => *have = *k,
            None => kinds.push(*k),
        }
    }
    kinds
}

/// The regular English plural of a kind, in its own case, as Kubernetes resources are usually
/// named (the plural served is only known after discovery).
fn plural_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        format!("{kind}es")
    } else if lower.ends_with('y')
        && !["ay", "ey", "iy", "oy", "uy"]
            .iter()
            .any(|e| lower.ends_with(e))
    {
        format!("{}ies", &kind[..kind.len() - 1])
    } else {
        format!("{kind}s")
    }
}

impl PartialEq for WorkloadKind {
    fn eq(&self, other: &Self) -> bool {
        self.same(*other)
    }
}
impl Eq for WorkloadKind {}
impl Hash for WorkloadKind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0.group, self.0.kind).hash(state);
    }
}
impl PartialOrd for WorkloadKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for WorkloadKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.kind, self.0.group).cmp(&(other.0.kind, other.0.group))
    }
}

impl fmt::Debug for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workload by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}
