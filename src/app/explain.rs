//! `kube-reloader explain <kind>/<name>`: why did (or didn't) a workload roll? Computed with the
//! same rules the controller uses, from the cluster as it is now. `explain --all`: the same for
//! every workload of a namespace (or of all), one line each for those that opt in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace, Secret};
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use thiserror::Error;

use crate::adapters::api::discover;
use crate::adapters::key::KeySecret;
use crate::model::kinds::WorkloadKind;
use crate::reconcile::{REPORTER, changed_text, written};
use crate::rules::assess::{self, Assessment, Subject};
use crate::rules::decision::Change;
use crate::rules::digest::SecretKey;
use crate::rules::optin::{self, ConfigView, Policy};
use crate::rules::references::{ConfigKind, Keys};
use crate::rules::scope::WatchScope;
use crate::rules::template::{self, Restart};
use crate::state::configs::{ConfigObject, ConfigStore, summarize};
use crate::state::workload::Workload;

/// What `explain` reads with: the controller's view of what is watched and how opt-in is read,
/// and where the digest key is.
#[derive(Debug, Clone)]
pub struct Config {
    pub scope: WatchScope,
    pub policy: Policy,
    pub key: KeySecret,
}

/// Where a workload stands, in a word; [`Explanation::status`] says it in a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// No opt-in: the controller leaves it alone.
    NotOptedIn,
    /// A malformed opt-in annotation: left alone until it is fixed.
    Invalid,
    /// The digest key Secret, or the Deployment holding its pod template, could not be read.
    Unknown,
    /// Not reconciled yet: the controller records a baseline on first sight, rolling nothing.
    NoBaseline,
    /// Nothing it tracks changed since the baseline.
    UpToDate,
    /// The digest key changed: the controller records a new baseline, rolling nothing.
    KeyChanged,
    /// Configs changed together with the pod template: Kubernetes' own rollout covers them.
    Covered,
    /// Tracked objects were deleted: nothing rolls until they are back.
    Held,
    /// Configs changed: the controller rolls it.
    RolloutPending,
}

impl State {
    /// A few words for tables.
    pub fn label(self) -> &'static str {
        match self {
            State::NotOptedIn => "not opted in",
            State::Invalid => "left alone: invalid annotation",
            State::Unknown => "unknown",
            State::NoBaseline => "no baseline yet",
            State::UpToDate => "up to date",
            State::KeyChanged => "digest key changed",
            State::Covered => "no rollout needed",
            State::Held => "holding",
            State::RolloutPending => "rollout pending",
        }
    }
}

/// One ConfigMap or Secret as it concerns the workload.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObjectRow {
    pub kind: ConfigKind,
    pub name: String,
    /// Where the pod template references it (empty when only named by an annotation).
    pub referenced_by: Vec<String>,
    pub exists: bool,
    pub ignored: bool,
    pub tracked: bool,
    /// `all` or the keys used.
    pub keys: String,
    /// Why it is or is not tracked.
    pub why: String,
}

/// Everything `explain` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// The opt-in annotations found, or the parse error.
    pub opt_in: Result<Vec<String>, String>,
    pub objects: Vec<ObjectRow>,
    /// Digest of what it tracks now (as the controller would record it).
    pub current: Option<String>,
    /// The baseline recorded on the workload's metadata.
    pub recorded: Option<String>,
    /// The value in the pod template (set by the last rollout).
    pub pod_template: Option<String>,
    /// Where the pod template is, when not in the workload itself (Argo Rollouts' workloadRef).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_from: Option<String>,
    /// For a workload restarted through Argo Rollouts' `spec.restartAt`: its value (empty when
    /// unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
    pub last_rollout: Option<String>,
    pub rollout_pending: bool,
    pub state: State,
    /// What differs from the baseline: the changed objects (`rollout-pending`, `covered`), or
    /// the deleted ones (`held`).
    pub changed: Vec<String>,
    pub status: String,
    /// kube-reloader's latest Event about the workload (`Reason: note`), which says what it did
    /// last and why (a rollout, a change a template change covered, a missing object). `None`
    /// when there is none, or the Events could not be read.
    pub last_event: Option<String>,
}

impl Serialize for ConfigKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for WorkloadKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn keys_text(k: &Keys) -> String {
    match k {
        Keys::All => "all".into(),
        Keys::Only(keys) => keys.iter().cloned().collect::<Vec<_>>().join(","),
    }
}

/// Marks an opt-in annotation read from the pod template rather than the workload's metadata.
const FROM_TEMPLATE: &str = " (pod template)";

/// Whether an annotation says how a workload opts in or is rolled: ours but those kube-reloader
/// writes, and Reloader's (when honoured) but those Reloader writes.
fn is_opt_in(key: &str, reloader_compat: bool) -> bool {
    let ours_written = [
        written::CONFIG_HASH,
        written::TRACKED,
        written::RELOADED_AT,
        written::TEMPLATE_HASH,
    ];
    if key.starts_with("kube-reloader.io/") {
        return !ours_written.contains(&key);
    }
    reloader_compat
        && key.contains("reloader.stakater.com/")
        && !optin::reloader::WRITTEN.contains(&key)
}

/// The explanation of one workload against the objects in `store`. `key` is the installation's
/// digest key; without it, digests involving Secrets cannot be compared.
/// `source` is the Deployment holding its pod template, for an Argo Rollout with a
/// `spec.workloadRef`. `policy` is the command line's say on opt-in (`--reloader-compat`,
/// `--auto-reload-all`, `--resources-to-ignore`).
pub fn explain(
    obj: &Workload,
    source: Option<&Workload>,
    store: &ConfigStore,
    key: Option<&SecretKey>,
    policy: &Policy,
) -> Explanation {
    let reloader_compat = policy.reloader_compat;
    let namespace = obj.namespace().unwrap_or_default();
    let template = match source {
        Some(deployment) => deployment.template.as_ref(),
        None => obj.template.as_ref(),
    };
    let annotations = obj.annotations();
    let subject = Subject {
        kind: obj.kind,
        annotations,
        template,
        template_ref: obj.template_ref.is_some(),
        baseline_by_others: obj.baseline_by_others,
    };
    let restart = assess::restart(&subject, policy);
    let mut out = Explanation {
        kind: obj.kind,
        namespace: namespace.clone(),
        name: obj.name_any(),
        opt_in: Ok(Vec::new()),
        objects: Vec::new(),
        current: None,
        recorded: annotations.get(written::CONFIG_HASH).cloned(),
        pod_template: obj
            .template_annotation(written::CONFIG_HASH)
            .map(String::from),
        template_from: obj
            .template_ref
            .as_ref()
            .map(|r| format!("{} {}", r.kind, r.name)),
        restart_at: match restart {
            Restart::RestartAt => Some(obj.restart_at.clone().unwrap_or_default()),
            Restart::Template => None,
        },
        last_rollout: annotations.get(written::RELOADED_AT).cloned(),
        rollout_pending: false,
        state: State::NotOptedIn,
        changed: Vec::new(),
        status: String::new(),
        last_event: None,
    };
    let not_opted_in = "not opted in: add kube-reloader.io/auto: \"true\" (or a Reloader annotation) to the workload's metadata";
    let key_id = key.map(SecretKey::id).unwrap_or("unknown");
    let settings = assess::Settings {
        policy,
        key_id,
        dry_run: false,
    };
    let view = store.view(&namespace);
    let assessed = match assess::assess(&subject, &view, &settings, None) {
        Assessment::Invalid(e) => {
            out.opt_in = Err(e.to_string());
            out.state = State::Invalid;
            out.status = "left alone: its opt-in annotation is invalid (fix it; see the InvalidAnnotation Event)".into();
            return out;
        }
        Assessment::NotOptedIn => {
            out.opt_in = Ok(Vec::new());
            out.status = not_opted_in.into();
            return out;
        }
        Assessment::NothingTracked => {
            // As the controller: auto only by --auto-reload-all, and nothing to track.
            out.opt_in = Ok(Vec::new());
            out.status = format!(
                "{not_opted_in}; --auto-reload-all covers it, but it uses no ConfigMap or Secret"
            );
            return out;
        }
        Assessment::OptedIn(assessed) => assessed,
    };
    let (opt, refs, tracked) = (&assessed.opt, &assessed.refs, &assessed.tracked);
    // Ours are read from the workload's metadata only; Reloader's also from the pod template.
    let template_annotations = template::template_annotations(template);
    let mut opt_in_keys: Vec<String> = annotations
        .iter()
        .filter(|(k, _)| is_opt_in(k, reloader_compat))
        .map(|(k, v)| format!("{k}={v}"))
        .chain(
            template_annotations
                .iter()
                .filter(|(k, _)| {
                    !k.starts_with("kube-reloader.io/") && is_opt_in(k, reloader_compat)
                })
                .map(|(k, v)| format!("{k}={v}{FROM_TEMPLATE}")),
        )
        .collect();
    if opt.implicit {
        opt_in_keys.push("--auto-reload-all".into());
    }
    out.opt_in = Ok(opt_in_keys);

    let mut rows: BTreeMap<(ConfigKind, String), ObjectRow> = BTreeMap::new();
    for ((kind, name), usage) in refs {
        rows.insert(
            (*kind, name.clone()),
            ObjectRow {
                kind: *kind,
                name: name.clone(),
                referenced_by: usage.sites.clone(),
                exists: false,
                ignored: false,
                tracked: false,
                keys: keys_text(&usage.keys),
                why: String::new(),
            },
        );
    }
    for t in tracked {
        let row = rows.entry((t.kind, t.name.clone())).or_insert(ObjectRow {
            kind: t.kind,
            name: t.name.clone(),
            referenced_by: Vec::new(),
            exists: false,
            ignored: false,
            tracked: true,
            keys: String::new(),
            why: "named by an annotation".into(),
        });
        row.tracked = true;
        row.keys = keys_text(&t.keys);
    }
    for row in rows.values_mut() {
        let flags = view.flags(row.kind, &row.name);
        row.exists = flags.is_some();
        row.ignored = flags.is_some_and(|f| f.ignored);
        if row.why.is_empty() {
            row.why = if row.tracked {
                "referenced, and the opt-in covers it".into()
            } else if row.ignored {
                "ignored: it carries an ignore annotation".into()
            } else if opt
                .excluded
                .iter()
                .any(|(k, n)| *k == row.kind && *n == row.name)
            {
                "excluded by an exclude list".into()
            } else if opt.search(row.kind) && !flags.is_some_and(|f| f.matched) {
                "search mode: it lacks reloader.stakater.com/match: \"true\"".into()
            } else {
                format!("the opt-in does not cover {}s", row.kind)
            };
        }
        if let Some(annotation) = flags.and_then(|f| f.invalid) {
            row.why = format!(
                "{}; its {annotation} is neither \"true\" nor \"false\", so it counts as not set",
                row.why
            );
        }
    }
    out.objects = rows.into_values().collect();

    let current = &assessed.current;
    out.current = Some(current.hash_annotation());
    if key.is_none() && current.key_id.is_some() && assessed.recorded.is_some() {
        out.state = State::Unknown;
        out.status = "unknown: the digest key Secret could not be read, so Secret digests cannot be compared".into();
        return out;
    }
    let (state, status) = match assessed.change {
        Change::None => (
            State::UpToDate,
            "up to date: the recorded baseline matches what it tracks now".to_string(),
        ),
        Change::FirstSight => (
            State::NoBaseline,
            "no baseline yet: the controller records one on first sight, without a rollout (is it running and watching this namespace?)".into(),
        ),
        Change::KeyRotated => (
            State::KeyChanged,
            "the digest key changed: the controller records a new baseline, without a rollout".into(),
        ),
        Change::Backfill => (
            State::UpToDate,
            "up to date; the baseline predates pod-template digests: the controller adds one, without a rollout".into(),
        ),
        Change::Untracked { removed } => (
            State::UpToDate,
            format!(
                "up to date; {} no longer tracked: the controller records a new baseline, without a rollout",
                removed.join(", ")
            ),
        ),
        Change::Template => (
            State::UpToDate,
            "up to date; the pod template changed since the baseline (someone else's rollout): the controller records it, without a rollout of its own".into(),
        ),
        Change::Covered { changed } => {
            let status = format!(
                "no rollout needed: {} changed, and the pod template changed at the same time: the new pods read the new config. The controller records the new baseline and rolls nothing.",
                changed_text(&changed)
            );
            out.changed = changed;
            (State::Covered, status)
        }
        Change::Restored { changed } if changed.is_empty() => (
            State::UpToDate,
            "up to date; the baseline was rewritten by someone else with the values it holds: the controller records it again, without a rollout".into(),
        ),
        Change::Restored { changed } => {
            let status = format!(
                "no rollout needed: the baseline was rewritten by someone else (kubectl rollout undo restores an older one along with its pod template), and {} differs from it; the pods of that rollout read the configs as they are. The controller records the new baseline and rolls nothing.",
                changed_text(&changed)
            );
            out.changed = changed;
            (State::Covered, status)
        }
        Change::Hold { deleted } => {
            let status = format!(
                "holding: {} was deleted; nothing rolls until it is back or something else changes",
                deleted.join(", ")
            );
            out.changed = deleted;
            (State::Held, status)
        }
        Change::Roll { changed } => {
            out.rollout_pending = true;
            let status = format!(
                "rollout pending: {} changed since the baseline (the controller rolls it after the debounce window and --min-rollout-interval; if this persists, check the controller's log and the workload's Events)",
                changed_text(&changed)
            );
            out.changed = changed;
            (State::RolloutPending, status)
        }
    };
    out.state = state;
    out.status = status;
    out
}

/// Writes `rows` as columns padded to their widest cell, each line after `indent`.
fn write_table<R: AsRef<[String]>>(s: &mut String, indent: &str, rows: &[R]) {
    let columns = rows.first().map_or(0, |r| r.as_ref().len());
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r.as_ref()[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(s, "{indent}{}", line.join("  ").trim_end());
    }
}

/// Renders the human table.
pub fn render_text(e: &Explanation) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} {}/{}", e.kind, e.namespace, e.name);
    match &e.opt_in {
        Ok(keys) if keys.is_empty() => {
            let _ = writeln!(s, "Opt-in:        none");
        }
        Ok(keys) => {
            let _ = writeln!(s, "Opt-in:        {}", keys.join(", "));
        }
        Err(err) => {
            let _ = writeln!(s, "Opt-in:        INVALID: {err}");
        }
    }
    if !e.objects.is_empty() {
        let _ = writeln!(s, "Objects:");
        let mut table = vec![[
            "KIND".to_string(),
            "NAME".into(),
            "TRACKED".into(),
            "EXISTS".into(),
            "IGNORED".into(),
            "KEYS".into(),
            "REFERENCED BY".into(),
            "WHY".into(),
        ]];
        let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
        for o in &e.objects {
            table.push([
                o.kind.to_string(),
                o.name.clone(),
                yn(o.tracked),
                yn(o.exists),
                yn(o.ignored),
                o.keys.clone(),
                if o.referenced_by.is_empty() {
                    "-".into()
                } else {
                    o.referenced_by.join("; ")
                },
                o.why.clone(),
            ]);
        }
        write_table(&mut s, "  ", &table);
    }
    let none = "-".to_string();
    let _ = writeln!(s, "Digest now:    {}", e.current.as_ref().unwrap_or(&none));
    let _ = writeln!(s, "Baseline:      {}", e.recorded.as_ref().unwrap_or(&none));
    if let Some(from) = &e.template_from {
        let _ = writeln!(s, "Template in:   {from} (spec.workloadRef)");
    }
    match &e.restart_at {
        Some(at) => {
            let at = if at.is_empty() { &none } else { at };
            let _ = writeln!(
                s,
                "Restarted at:  {at} (spec.restartAt: rolled by Argo Rollouts' restart)"
            );
        }
        None => {
            let _ = writeln!(
                s,
                "Pod template:  {}",
                e.pod_template.as_ref().unwrap_or(&none)
            );
        }
    }
    let _ = writeln!(
        s,
        "Last rollout:  {}",
        e.last_rollout.as_ref().unwrap_or(&none)
    );
    let _ = writeln!(s, "Status:        {}", e.status);
    if let Some(event) = &e.last_event {
        let _ = writeln!(s, "Last event:    {event}");
    }
    s
}

#[derive(Debug, Error)]
pub enum ExplainError {
    #[error(
        "{0:?} is not KIND/NAME with KIND one of {1} (or their plurals and short names: deploy, sts, ds, cj, ro); for another kind, pass --workload-kind GROUP/VERSION/KIND[=PATH] as the controller has it"
    )]
    Target(String, String),
    #[error("cannot configure the Kubernetes client: {0} (set KUBECONFIG, or run in a cluster)")]
    Client(#[source] kube::Error),
    #[error("{0} is not served by this API server (is its CRD installed?)")]
    NotServed(String),
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Parses `deployment/web`, `deploy/web`, `sts/db`, `cj/nightly`, `rollout/web`, `widget/w`
/// (case-insensitive kind) against the kinds rolled.
pub fn parse_target(
    target: &str,
    kinds: &[WorkloadKind],
) -> Result<(WorkloadKind, String), ExplainError> {
    let err = || {
        let names: Vec<String> = kinds
            .iter()
            .map(|k| k.as_str().to_ascii_lowercase())
            .collect();
        ExplainError::Target(target.to_string(), names.join(", "))
    };
    let (kind, name) = target.split_once('/').ok_or_else(err)?;
    let kind = kinds
        .iter()
        .copied()
        .find(|k| k.is_named(kind))
        .ok_or_else(err)?;
    if name.is_empty() {
        return Err(err());
    }
    Ok((kind, name.to_string()))
}

/// Where objects are listed: one namespace, or all.
fn api_in<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn scope_text(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".into(),
    }
}

async fn list_into<K: ConfigObject>(
    client: &Client,
    namespace: Option<&str>,
    lp: ListParams,
    store: &ConfigStore,
    key: &SecretKey,
    compat: bool,
) -> Result<(), ExplainError> {
    let api: Api<K> = api_in(client, namespace);
    let mut lp = lp.limit(100);
    loop {
        let list = api.list(&lp).await.map_err(|source| ExplainError::Read {
            what: format!("{}s in {}", K::KIND, scope_text(namespace)),
            source,
        })?;
        for obj in &list.items {
            store.insert(
                (obj.namespace().unwrap_or_default(), K::KIND, obj.name_any()),
                summarize(obj, key, compat),
            );
        }
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(()),
        }
    }
}

/// The ConfigMaps and Secrets of `namespace` (of all, for `None`) as the controller would see
/// them with these flags, and the installation's digest key if it can be read. Read-only:
/// explain never creates the key; without it, Secret digests cannot be compared.
async fn load_configs(
    client: &Client,
    namespace: Option<&str>,
    config: &Config,
) -> Result<(ConfigStore, Option<SecretKey>), ExplainError> {
    let key = crate::adapters::key::load(client.clone(), &config.key.namespace, &config.key.name)
        .await
        .ok()
        .flatten();
    let digest_key = key
        .clone()
        .unwrap_or_else(|| SecretKey::new(vec![0; SecretKey::MIN_LEN]));
    let store = ConfigStore::new(0);
    let compat = config.policy.reloader_compat;
    let mut lp = ListParams::default();
    if let Some(labels) = &config.scope.resource_label_selector {
        lp = lp.labels(labels);
    }
    let kinds = config.scope.config_kinds();
    if kinds.contains(&ConfigKind::ConfigMap) {
        list_into::<ConfigMap>(client, namespace, lp.clone(), &store, &digest_key, compat).await?;
    }
    if kinds.contains(&ConfigKind::Secret) {
        if let Some(fields) = config.scope.object_fields(ConfigKind::Secret) {
            lp = lp.fields(&fields);
        }
        list_into::<Secret>(client, namespace, lp, &store, &digest_key, compat).await?;
    }
    Ok((store, key))
}

/// kube-reloader's latest Event about a workload, as `Reason: note`. Read with the caller's own
/// credentials; if they may not list Events, explain goes without.
async fn last_event(
    client: Client,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Option<String> {
    let api: Api<CoreEvent> = Api::namespaced(client, namespace);
    let fields = format!("involvedObject.kind={kind},involvedObject.name={name}");
    let list = api
        .list(&ListParams::default().fields(&fields))
        .await
        .ok()?;
    let when = |e: &CoreEvent| {
        let series = e.series.as_ref().and_then(|s| s.last_observed_time.clone());
        let at = e.event_time.clone().or(series).map(|t| t.0);
        at.or_else(|| e.last_timestamp.clone().map(|t| t.0))
    };
    list.items
        .into_iter()
        .filter(|e| e.reporting_component.as_deref() == Some(REPORTER))
        .max_by_key(when)
        .map(|e| {
            let at = when(&e).map(|t| format!(" (at {t})")).unwrap_or_default();
            format!(
                "{}: {}{at}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
}

/// A workload of `kind`, read now.
async fn fetch(
    client: &Client,
    kind: WorkloadKind,
    ns: &str,
    name: &str,
) -> Result<Workload, ExplainError> {
    let read = |source| ExplainError::Read {
        what: format!("{kind} {name}"),
        source,
    };
    let resource = discover(client, kind)
        .await
        .map_err(read)?
        .ok_or_else(|| ExplainError::NotServed(kind.describe()))?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let obj = api.get(name).await.map_err(read)?;
    Ok(Workload::from_dynamic(obj, kind))
}

/// Runs `explain` against the cluster and returns the rendered output.
pub async fn run(
    target: &str,
    namespace: Option<&str>,
    json: bool,
    config: &Config,
) -> Result<String, ExplainError> {
    let (kind, name) = parse_target(target, &config.scope.kinds)?;
    let client = Client::try_default().await.map_err(ExplainError::Client)?;
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let (store, key) = load_configs(&client, Some(&namespace), config).await?;

    let ns = namespace.as_str();
    let obj = fetch(&client, kind, ns, &name).await?;
    let source = match &obj.template_ref {
        Some(r) if obj.kind.spec().argo && r.kind == "Deployment" => {
            Some(fetch(&client, WorkloadKind::DEPLOYMENT, ns, &r.name).await?)
        }
        _ => None,
    };
    let mut e = explain(&obj, source.as_ref(), &store, key.as_ref(), &config.policy);
    e.last_event = last_event(client, ns, kind, &name).await;
    if json {
        Ok(serde_json::to_string_pretty(&e).unwrap_or_default() + "\n")
    } else {
        Ok(render_text(&e))
    }
}

/// `explain --all`: every workload of the kinds rolled in one namespace, or in all of them.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The namespace listed; `None` for all namespaces.
    pub namespace: Option<String>,
    /// The workloads that opt in (a malformed opt-in included), by namespace, then in the
    /// order of the kinds rolled, then by name.
    pub workloads: Vec<Explanation>,
    /// How many workloads do not opt in; they are left out of `workloads`.
    pub not_opted_in: usize,
    /// How many workloads opt in but are in namespaces the controller does not watch
    /// (`--namespace`, `--ignore-namespace`, `--namespace-selector`); left out too.
    pub unwatched: usize,
    /// Kinds rolled that this API server does not serve, skipped (`GROUP/VERSION/KIND`).
    pub not_served: Vec<String>,
}

/// A listed workload, and the Deployment holding its pod template for an Argo Rollout with a
/// `spec.workloadRef`: `Err` saying why that Deployment could not be had.
pub type Found = (Workload, Result<Option<Workload>, String>);

/// The namespaces the controller watches, as its flags say: those of `--namespace` (all when
/// none), less `--ignore-namespace`, and with `--namespace-selector` only those whose labels
/// match (`matching`).
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub only: Vec<String>,
    pub ignored: Vec<String>,
    pub matching: Option<HashSet<String>>,
}

impl Watched {
    pub fn contains(&self, namespace: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|n| n == namespace))
            && !self.ignored.iter().any(|n| n == namespace)
            && self.matching.as_ref().is_none_or(|m| m.contains(namespace))
    }
}

/// Explains every workload found (each with [`explain`], against one `store`) and keeps those
/// that opt in, in namespaces the controller watches.
pub fn inventory(
    namespace: Option<String>,
    found: &[Found],
    store: &ConfigStore,
    key: Option<&SecretKey>,
    policy: &Policy,
    watched: &Watched,
    not_served: Vec<String>,
) -> Inventory {
    let mut workloads = Vec::new();
    let (mut not_opted_in, mut unwatched) = (0, 0);
    for (obj, source) in found {
        let mut e = explain(
            obj,
            source.as_ref().ok().and_then(Option::as_ref),
            store,
            key,
            policy,
        );
        match (&e.state, source) {
            (State::NotOptedIn, _) => {
                not_opted_in += 1;
                continue;
            }
            _ if !watched.contains(&e.namespace) => {
                unwatched += 1;
                continue;
            }
            (State::Invalid, _) | (_, Ok(_)) => {}
            (_, Err(why)) => {
                e.state = State::Unknown;
                e.rollout_pending = false;
                e.changed.clear();
                e.status = format!("unknown: {why}");
            }
        }
        workloads.push(e);
    }
    // Stable: within a namespace, the order found (by kind, then name).
    workloads.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    Inventory {
        namespace,
        workloads,
        not_opted_in,
        unwatched,
        not_served,
    }
}

/// An opt-in annotation in a few characters: `auto`, `configmaps=a,b`, `reloader:auto`,
/// `reloader:configmap.reload=app`, `reloader:auto (pod template)`; `"true"` goes without saying.
fn short_opt_in(entry: &str) -> String {
    let (entry, place) = match entry.strip_suffix(FROM_TEMPLATE) {
        Some(e) => (e, FROM_TEMPLATE),
        None => (entry, ""),
    };
    let Some((key, value)) = entry.split_once('=') else {
        return format!("{entry}{place}");
    };
    let key = match key.strip_prefix("kube-reloader.io/") {
        Some(name) => name.to_string(),
        None => match key.split_once("reloader.stakater.com/") {
            Some((prefix, name)) => format!("reloader:{prefix}{name}"),
            None => key.to_string(),
        },
    };
    if value == "true" {
        format!("{key}{place}")
    } else {
        format!("{key}={value}{place}")
    }
}

/// An inventory line's state: the label, and what it is about.
fn state_text(e: &Explanation) -> String {
    let about = changed_text(&e.changed);
    match (&e.state, &e.opt_in) {
        (State::Invalid, Err(why)) => format!("left alone: {why}"),
        (State::RolloutPending, _) => format!("rollout pending: {about} changed"),
        (State::Covered, _) => {
            format!("no rollout needed: {about} changed with the pod template")
        }
        (State::Held, _) => format!("holding: {about} deleted"),
        (State::Unknown, _) => e.status.clone(),
        (state, _) => state.label().to_string(),
    }
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// Renders the inventory as a table, one line per workload, and a footer saying what was left
/// out.
pub fn render_inventory(inv: &Inventory) -> String {
    let all = inv.namespace.is_none();
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["WORKLOAD", "OPT-IN", "TRACKS", "STATE"];
    if all {
        header.insert(0, "NAMESPACE");
    }
    table.push(header.into_iter().map(String::from).collect());
    for e in &inv.workloads {
        let opt_in = match &e.opt_in {
            Ok(keys) => keys
                .iter()
                .map(|k| short_opt_in(k))
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => "invalid".into(),
        };
        let tracks: Vec<String> = e
            .objects
            .iter()
            .filter(|o| o.tracked)
            .map(|o| {
                let absent = if o.exists { "" } else { " (absent)" };
                format!("{}/{}{absent}", o.kind, o.name)
            })
            .collect();
        let mut row = vec![
            format!("{}/{}", e.kind.as_str().to_ascii_lowercase(), e.name),
            if opt_in.is_empty() {
                "-".into()
            } else {
                opt_in
            },
            if tracks.is_empty() {
                "-".into()
            } else {
                tracks.join(", ")
            },
            state_text(e),
        ];
        if all {
            row.insert(0, e.namespace.clone());
        }
        table.push(row);
    }
    let mut s = String::new();
    if !inv.workloads.is_empty() {
        write_table(&mut s, "", &table);
    }
    let scope = match &inv.namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in all namespaces".into(),
    };
    let _ = writeln!(
        s,
        "{} opted in, {} not opted in (not listed) {scope}.",
        plural(inv.workloads.len(), "workload"),
        inv.not_opted_in
    );
    if inv.unwatched > 0 {
        let _ = writeln!(
            s,
            "{} opted in, but in namespaces kube-reloader does not watch (--namespace, --ignore-namespace, --namespace-selector): not listed.",
            plural(inv.unwatched, "more workload")
        );
    }
    if !inv.not_served.is_empty() {
        let _ = writeln!(
            s,
            "Not served by this API server, skipped: {}.",
            inv.not_served.join(", ")
        );
    }
    s
}

/// Every workload of `kind` in `namespace` (all namespaces for `None`), sorted by namespace and
/// name.
async fn list_workloads(
    client: &Client,
    resource: &kube::api::ApiResource,
    kind: WorkloadKind,
    namespace: Option<&str>,
) -> Result<Vec<Workload>, ExplainError> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let mut lp = ListParams::default().limit(50);
    let mut out = Vec::new();
    loop {
        let list = api.list(&lp).await.map_err(|source| ExplainError::Read {
            what: format!("{}s in {}", kind, scope_text(namespace)),
            source,
        })?;
        out.extend(
            list.items
                .into_iter()
                .map(|o| Workload::from_dynamic(o, kind)),
        );
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    out.sort_by_key(|w| (w.namespace(), w.name_any()));
    Ok(out)
}

/// Runs `explain --all` against the cluster and returns the rendered output: the workloads of
/// `namespace` (default: the kubeconfig context's), or of every namespace.
pub async fn run_all(
    namespace: Option<&str>,
    all_namespaces: bool,
    json: bool,
    config: &Config,
) -> Result<String, ExplainError> {
    let client = Client::try_default().await.map_err(ExplainError::Client)?;
    let namespace = (!all_namespaces).then(|| {
        namespace
            .map(str::to_string)
            .unwrap_or_else(|| client.default_namespace().to_string())
    });
    let scope = namespace.as_deref();
    let (store, key) = load_configs(&client, scope, config).await?;

    let mut listed = Vec::new();
    let mut not_served = Vec::new();
    for kind in config.scope.kinds.iter().copied() {
        let resource = discover(&client, kind)
            .await
            .map_err(|source| ExplainError::Read {
                what: format!("the API of {}", kind.describe()),
                source,
            })?;
        match resource {
            Some(resource) => {
                listed.extend(list_workloads(&client, &resource, kind, scope).await?);
            }
            None => not_served.push(format!("{}/{}", kind.api_version(), kind)),
        }
    }
    // The Deployments Argo Rollouts' spec.workloadRef names: from the list when Deployments are
    // rolled, otherwise read one by one.
    let deployments: HashMap<(String, String), &Workload> = listed
        .iter()
        .filter(|w| w.kind == WorkloadKind::DEPLOYMENT)
        .map(|w| ((w.namespace().unwrap_or_default(), w.name_any()), w))
        .collect();
    let mut found: Vec<Found> = Vec::with_capacity(listed.len());
    for obj in &listed {
        let source = match &obj.template_ref {
            Some(r) if obj.kind.spec().argo && r.kind == "Deployment" => {
                let ns = obj.namespace().unwrap_or_default();
                match deployments.get(&(ns.clone(), r.name.clone())) {
                    Some(d) => Ok(Some((*d).clone())),
                    None => fetch(&client, WorkloadKind::DEPLOYMENT, &ns, &r.name)
                        .await
                        .map(Some)
                        .map_err(|e| {
                            format!(
                                "the Deployment {} its spec.workloadRef names cannot be read: {e}",
                                r.name
                            )
                        }),
                }
            }
            _ => Ok(None),
        };
        found.push((obj.clone(), source));
    }
    let matching = match &config.scope.namespace_selector {
        Some(selector) => {
            let api: Api<Namespace> = Api::all(client.clone());
            let lp = ListParams::default().labels(selector);
            let list = api
                .list_metadata(&lp)
                .await
                .map_err(|source| ExplainError::Read {
                    what: format!("the namespaces --namespace-selector={selector} selects"),
                    source,
                })?;
            Some(list.items.iter().map(|n| n.name_any()).collect())
        }
        None => None,
    };
    let watched = Watched {
        only: config.scope.namespaces.clone(),
        ignored: config.scope.ignored_namespaces.clone(),
        matching,
    };
    let inv = inventory(
        namespace,
        &found,
        &store,
        key.as_ref(),
        &config.policy,
        &watched,
        not_served,
    );
    if json {
        Ok(serde_json::to_string_pretty(&inv).unwrap_or_default() + "\n")
    } else {
        Ok(render_inventory(&inv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn targets() {
        let widget = WorkloadKind::parse("tests.example.io/v1/Widget=spec.workload.podTemplate")
            .expect("a kind");
        let kinds = crate::model::kinds::resolve(&WorkloadKind::BUILT_IN, &[widget]);
        let parse = |t: &str| parse_target(t, &kinds);
        assert_eq!(
            parse("deploy/web").unwrap(),
            (WorkloadKind::DEPLOYMENT, "web".into())
        );
        assert_eq!(
            parse("StatefulSet/db").unwrap(),
            (WorkloadKind::STATEFUL_SET, "db".into())
        );
        assert_eq!(parse("ds/a").unwrap().0, WorkloadKind::DAEMON_SET);
        assert_eq!(parse("cj/nightly").unwrap().0, WorkloadKind::CRON_JOB);
        assert_eq!(parse("rollout/web").unwrap().0, WorkloadKind::ROLLOUT);
        assert_eq!(parse("ro/web").unwrap().0, WorkloadKind::ROLLOUT);
        assert_eq!(parse("widget/w").unwrap().0, widget);
        assert_eq!(parse("widgets.tests.example.io/w").unwrap().0, widget);
        for bad in ["web", "pod/web", "deploy/", "", "widget.other.io/w"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // A kind not rolled is not explained.
        assert!(parse_target("cj/nightly", &[WorkloadKind::DEPLOYMENT]).is_err());
    }

    fn deployment(annotations: serde_json::Value, spec: serde_json::Value) -> Workload {
        let obj = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "annotations": annotations},
            "spec": {"selector": {}, "template": {"spec": spec}}
        }))
        .unwrap();
        Workload::from_dynamic(obj, WorkloadKind::DEPLOYMENT)
    }

    #[test]
    fn explains_tracked_missing_ignored_and_pending() {
        let compat = Policy {
            reloader_compat: true,
            ..Policy::default()
        };
        let key = SecretKey::new(vec![7; 32]);
        let store = ConfigStore::new(0);
        let put = |name: &str, annotations: serde_json::Value, data: serde_json::Value| {
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
                "data": data
            }))
            .unwrap();
            store.insert(
                ("ns".into(), ConfigKind::ConfigMap, name.into()),
                summarize(&cm, &key, true),
            );
        };
        put("app", serde_json::json!({}), serde_json::json!({"k": "v"}));
        let ignore = |v: &str| serde_json::json!({"kube-reloader.io/ignore": v});
        put("quiet", ignore("true"), serde_json::json!({}));
        put("typo", ignore("yes"), serde_json::json!({}));
        let spec = serde_json::json!({"containers": [{"name": "c", "envFrom": [
            {"configMapRef": {"name": "app"}}, {"configMapRef": {"name": "quiet"}},
            {"configMapRef": {"name": "typo"}}, {"secretRef": {"name": "gone"}}
        ]}]});

        let w = deployment(
            serde_json::json!({"kube-reloader.io/auto": "true"}),
            spec.clone(),
        );
        let e = explain(&w, None, &store, Some(&key), &compat);
        assert!(e.status.starts_with("no baseline yet"), "{}", e.status);
        let row = |n: &str| e.objects.iter().find(|o| o.name == n).unwrap().clone();
        assert!(row("app").tracked && row("app").exists);
        assert!(!row("quiet").tracked && row("quiet").ignored);
        assert!(row("gone").tracked && !row("gone").exists);
        assert!(row("typo").tracked && !row("typo").ignored);
        assert!(
            row("typo")
                .why
                .contains("kube-reloader.io/ignore is neither \"true\" nor \"false\""),
            "{}",
            row("typo").why
        );
        assert_eq!(row("app").referenced_by, vec!["container c envFrom"]);

        // Record the current digest as the baseline: up to date.
        let current = e.current.clone().unwrap();
        let w = deployment(
            serde_json::json!({"kube-reloader.io/auto": "true", "kube-reloader.io/config-hash": current}),
            spec.clone(),
        );
        let e = explain(&w, None, &store, Some(&key), &compat);
        assert!(e.status.starts_with("up to date"), "{}", e.status);
        assert!(!e.rollout_pending);

        // Change the ConfigMap: pending.
        put("app", serde_json::json!({}), serde_json::json!({"k": "v2"}));
        let e = explain(&w, None, &store, Some(&key), &compat);
        assert!(e.rollout_pending, "{}", e.status);
        let text = render_text(&e);
        assert!(text.contains("rollout pending"), "{text}");
        assert!(text.contains("ConfigMap  app"), "{text}");

        // Not opted in, and invalid.
        let e = explain(
            &deployment(serde_json::json!({}), spec.clone()),
            None,
            &store,
            Some(&key),
            &compat,
        );
        assert!(e.status.starts_with("not opted in"));
        assert_eq!(e.state, State::NotOptedIn);
        let e = explain(
            &deployment(serde_json::json!({"kube-reloader.io/auto": "yes"}), spec),
            None,
            &store,
            Some(&key),
            &compat,
        );
        assert!(e.opt_in.is_err());
        assert_eq!(e.state, State::Invalid);
        assert!(
            serde_json::to_string(&e)
                .unwrap()
                .contains("kube-reloader.io/auto")
        );
    }

    /// A workload of `kind` named `name` in namespace `ns`, from its metadata annotations, its pod
    /// template's annotations and pod spec.
    fn workload(
        kind: WorkloadKind,
        name: &str,
        annotations: Value,
        template: Value,
        spec: Value,
    ) -> Workload {
        let obj = serde_json::from_value(json!({
            "apiVersion": kind.api_version(), "kind": kind.as_str(),
            "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
            "spec": {"template": {"metadata": {"annotations": template}, "spec": spec}}
        }))
        .unwrap();
        Workload::from_dynamic(obj, kind)
    }

    fn env_from(cm: &str) -> Value {
        json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": cm}}]}]})
    }

    #[test]
    fn opt_in_annotations_in_short() {
        let cases = [
            ("kube-reloader.io/auto=true", "auto"),
            ("kube-reloader.io/configmaps=a,b", "configmaps=a,b"),
            ("kube-reloader.io/debounce=30s", "debounce=30s"),
            ("reloader.stakater.com/auto=true", "reloader:auto"),
            ("reloader.stakater.com/auto=false", "reloader:auto=false"),
            (
                "configmap.reloader.stakater.com/reload=app,db",
                "reloader:configmap.reload=app,db",
            ),
            (
                "secrets.exclude.reloader.stakater.com/reload=x",
                "reloader:secrets.exclude.reload=x",
            ),
            (
                "deployment.reloader.stakater.com/pause-period=5m",
                "reloader:deployment.pause-period=5m",
            ),
            (
                "reloader.stakater.com/search=true (pod template)",
                "reloader:search (pod template)",
            ),
            ("--auto-reload-all", "--auto-reload-all"),
        ];
        for (entry, short) in cases {
            assert_eq!(short_opt_in(entry), short, "{entry}");
        }
    }

    /// `explain --all`: the opted-in workloads, each with how it opts in, what it tracks and its
    /// state; the others counted. Reloader's annotations count only when honoured, and
    /// `--auto-reload-all` opts in every workload that uses a config and says nothing itself.
    #[test]
    fn inventory_of_a_namespace() {
        let key = SecretKey::new(vec![7; 32]);
        let store = ConfigStore::new(0);
        let put = |name: &str, value: &str| {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns"}, "data": {"k": value}
            }))
            .unwrap();
            store.insert(
                ("ns".into(), ConfigKind::ConfigMap, name.into()),
                summarize(&cm, &key, true),
            );
        };
        put("app", "1");
        put("db", "1");
        let compat = Policy {
            reloader_compat: true,
            ..Policy::default()
        };
        let auto = json!({"kube-reloader.io/auto": "true"});
        // The baseline as the controller would record it now, for `ours`.
        let ours = |annotations: Value| {
            workload(
                WorkloadKind::DEPLOYMENT,
                "ours",
                annotations,
                json!({}),
                env_from("app"),
            )
        };
        let baseline = explain(&ours(auto.clone()), None, &store, Some(&key), &compat)
            .current
            .unwrap();
        let ours = ours(
            json!({"kube-reloader.io/auto": "true", "kube-reloader.io/config-hash": baseline}),
        );
        put("app", "2");
        let deployment = |name: &str, annotations: Value, template: Value, spec: Value| {
            workload(WorkloadKind::DEPLOYMENT, name, annotations, template, spec)
        };
        let template_opt_in = json!({
            "reloader.stakater.com/auto": "true",
            "reloader.stakater.com/last-reloaded-from": "{\"type\":\"CONFIGMAP\",\"name\":\"app\"}",
        });
        let rollout: Workload = Workload::from_dynamic(
            serde_json::from_value(json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "ro", "namespace": "ns", "annotations": auto},
                "spec": {"workloadRef": {"kind": "Deployment", "name": "gone"}}
            }))
            .unwrap(),
            WorkloadKind::ROLLOUT,
        );
        let found: Vec<Found> = vec![
            (
                deployment(
                    "web",
                    json!({"reloader.stakater.com/auto": "true"}),
                    json!({}),
                    env_from("app"),
                ),
                Ok(None),
            ),
            (
                deployment("tmpl", json!({}), template_opt_in, env_from("app")),
                Ok(None),
            ),
            (
                deployment(
                    "named",
                    json!({"configmap.reloader.stakater.com/reload": "db"}),
                    json!({}),
                    env_from("app"),
                ),
                Ok(None),
            ),
            (
                deployment("plain", json!({}), json!({}), env_from("app")),
                Ok(None),
            ),
            (
                deployment(
                    "bare",
                    json!({}),
                    json!({}),
                    json!({"containers": [{"name": "c"}]}),
                ),
                Ok(None),
            ),
            (
                deployment(
                    "typo",
                    json!({"reloader.stakater.com/auto": "True"}),
                    json!({}),
                    env_from("app"),
                ),
                Ok(None),
            ),
            (ours, Ok(None)),
            (
                rollout,
                Err("the Deployment gone its spec.workloadRef names cannot be read".into()),
            ),
        ];
        let inv = inventory(
            Some("ns".into()),
            &found,
            &store,
            Some(&key),
            &compat,
            &Watched::default(),
            vec!["batch/v1/CronJob".into()],
        );
        let listed: Vec<(&str, State)> = inv
            .workloads
            .iter()
            .map(|e| (e.name.as_str(), e.state))
            .collect();
        assert_eq!(
            listed,
            [
                ("web", State::NoBaseline),
                ("tmpl", State::NoBaseline),
                ("named", State::NoBaseline),
                ("typo", State::Invalid),
                ("ours", State::RolloutPending),
                ("ro", State::Unknown),
            ]
        );
        assert_eq!(inv.not_opted_in, 2);
        let tmpl = &inv.workloads[1];
        assert_eq!(
            tmpl.opt_in,
            Ok(vec![
                "reloader.stakater.com/auto=true (pod template)".to_string()
            ])
        );
        assert_eq!(inv.workloads[4].changed, ["ConfigMap/app"]);

        let text = render_inventory(&inv);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(line("WORKLOAD"), "WORKLOAD OPT-IN TRACKS STATE");
        assert_eq!(
            line("deployment/web"),
            "deployment/web reloader:auto ConfigMap/app no baseline yet"
        );
        assert_eq!(
            line("deployment/tmpl"),
            "deployment/tmpl reloader:auto (pod template) ConfigMap/app no baseline yet"
        );
        assert_eq!(
            line("deployment/named"),
            "deployment/named reloader:configmap.reload=db ConfigMap/db no baseline yet"
        );
        assert!(
            line("deployment/typo").starts_with(
                "deployment/typo invalid - left alone: annotation reloader.stakater.com/auto=\"True\" is invalid"
            ),
            "{text}"
        );
        assert_eq!(
            line("deployment/ours"),
            "deployment/ours auto ConfigMap/app rollout pending: ConfigMap/app changed"
        );
        assert!(
            line("rollout/ro").contains("unknown: the Deployment gone"),
            "{text}"
        );
        assert!(!text.contains("plain") && !text.contains("bare"), "{text}");
        assert!(
            text.contains("6 workloads opted in, 2 not opted in (not listed) in namespace ns.\n"),
            "{text}"
        );
        assert!(
            text.contains("Not served by this API server, skipped: batch/v1/CronJob."),
            "{text}"
        );
        let v = serde_json::to_value(&inv).unwrap();
        assert_eq!(v["workloads"][0]["state"], "no-baseline");
        assert_eq!(v["workloads"][4]["state"], "rollout-pending");
        assert_eq!(v["not_opted_in"], 2);

        // Without Reloader's annotations, only ours opt in (the typo is not read at all).
        let ours_only = Policy::default();
        let everywhere = Watched::default();
        let inv = inventory(
            None,
            &found,
            &store,
            Some(&key),
            &ours_only,
            &everywhere,
            vec![],
        );
        let names: Vec<&str> = inv.workloads.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["ours", "ro"]);
        assert_eq!(inv.not_opted_in, 6);
        let text = render_inventory(&inv);
        assert!(text.starts_with("NAMESPACE  WORKLOAD"), "{text}");
        assert!(text.contains("in all namespaces."), "{text}");

        // --auto-reload-all: every workload that uses a config and sets no auto of its own.
        let all = Policy {
            auto_reload_all: true,
            ..compat.clone()
        };
        let inv = inventory(
            Some("ns".into()),
            &found,
            &store,
            Some(&key),
            &all,
            &everywhere,
            vec![],
        );
        let plain = inv
            .workloads
            .iter()
            .find(|e| e.name == "plain")
            .expect("plain listed");
        assert_eq!(plain.opt_in, Ok(vec!["--auto-reload-all".to_string()]));
        assert!(inv.workloads.iter().all(|e| e.name != "bare"));
        assert_eq!(inv.not_opted_in, 1);

        // A namespace the controller does not watch: its opted-in workloads are counted apart.
        let elsewhere = Watched {
            only: vec!["other".into()],
            ..Watched::default()
        };
        let inv = inventory(
            Some("ns".into()),
            &found,
            &store,
            Some(&key),
            &compat,
            &elsewhere,
            vec![],
        );
        assert!(inv.workloads.is_empty());
        assert_eq!((inv.not_opted_in, inv.unwatched), (2, 6));
        let text = render_inventory(&inv);
        assert_eq!(
            text,
            "0 workloads opted in, 2 not opted in (not listed) in namespace ns.\n\
             6 more workloads opted in, but in namespaces kube-reloader does not watch \
             (--namespace, --ignore-namespace, --namespace-selector): not listed.\n"
        );
    }

    #[test]
    fn watched_namespaces_follow_the_controllers_flags() {
        let s = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let cases: [(Watched, &[&str], &[&str]); 4] = [
            (Watched::default(), &["a", "b"], &[]),
            (
                Watched {
                    only: s(&["a", "b"]),
                    ..Watched::default()
                },
                &["a", "b"],
                &["c"],
            ),
            (
                Watched {
                    ignored: s(&["kube-system"]),
                    ..Watched::default()
                },
                &["a"],
                &["kube-system"],
            ),
            (
                Watched {
                    only: s(&["a", "b"]),
                    ignored: s(&["b"]),
                    matching: Some(["a".to_string(), "c".to_string()].into()),
                },
                &["a"],
                &["b", "c", "d"],
            ),
        ];
        for (watched, inside, outside) in cases {
            for ns in inside {
                assert!(watched.contains(ns), "{ns} in {watched:?}");
            }
            for ns in outside {
                assert!(!watched.contains(ns), "{ns} not in {watched:?}");
            }
        }
    }
}
