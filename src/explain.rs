//! `kube-reloader explain <kind>/<name>`: why did (or didn't) a workload roll? Computed with the
//! same rules the controller uses, from the cluster as it is now.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Secret};
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use thiserror::Error;

use crate::configs::{ConfigObject, ConfigStore, summarize};
use crate::controller::{SKIPPED_SECRET_TYPES, discover, field_selector};
use crate::decision::{Change, classify};
use crate::digest::{SecretKey, template_digest};
use crate::optin::{self, ConfigView};
use crate::reconcile::{REPORTER, changed_text, recorded_baseline, written};
use crate::references::{ConfigKind, Keys, references};
use crate::workload::{self, Restart, Workload, WorkloadKind};

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

/// The explanation of one workload against the objects in `store`. `key` is the installation's
/// digest key; without it, digests involving Secrets cannot be compared.
/// `source` is the Deployment holding its pod template, for an Argo Rollout with a
/// `spec.workloadRef`.
pub fn explain(
    obj: &Workload,
    source: Option<&Workload>,
    store: &ConfigStore,
    key: Option<&SecretKey>,
    reloader_compat: bool,
) -> Explanation {
    let namespace = obj.namespace().unwrap_or_default();
    let template = match source {
        Some(deployment) => deployment.template.as_ref(),
        None => obj.template.as_ref(),
    };
    let template_annotations = workload::template_annotations(template);
    let annotations = obj.annotations();
    let restart = workload::restart(
        obj.kind,
        annotations,
        obj.template_ref.is_some(),
        reloader_compat,
    );
    let mut out = Explanation {
        kind: obj.kind,
        namespace: namespace.clone(),
        name: obj.name_any(),
        opt_in: Ok(Vec::new()),
        objects: Vec::new(),
        current: None,
        recorded: annotations.get(written::CONFIG_HASH).cloned(),
        pod_template: obj
            .template_annotations()
            .get(written::CONFIG_HASH)
            .cloned(),
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
        status: String::new(),
        last_event: None,
    };
    let opt = match optin::parse(annotations, template_annotations, reloader_compat) {
        Err(e) => {
            out.opt_in = Err(e.to_string());
            out.status = "left alone: its opt-in annotation is invalid (fix it; see the InvalidAnnotation Event)".into();
            return out;
        }
        Ok(None) => {
            out.opt_in = Ok(Vec::new());
            out.status = "not opted in: add kube-reloader.io/auto: \"true\" (or a Reloader annotation) to the workload's metadata".into();
            return out;
        }
        Ok(Some(opt)) => opt,
    };
    let opt_in_keys: Vec<String> = annotations
        .iter()
        .chain(template_annotations.iter())
        .filter(|(k, _)| {
            k.starts_with("kube-reloader.io/")
                && *k != written::CONFIG_HASH
                && *k != written::TRACKED
                && *k != written::RELOADED_AT
                && *k != written::TEMPLATE_HASH
                || (reloader_compat && k.contains("reloader.stakater.com/"))
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.opt_in = Ok(opt_in_keys);

    let refs = template
        .and_then(|t| t.spec.as_ref())
        .map(references)
        .unwrap_or_default();
    let view = store.view(&namespace);
    let tracked = optin::tracked(&opt, &refs, &view);

    let mut rows: BTreeMap<(ConfigKind, String), ObjectRow> = BTreeMap::new();
    for ((kind, name), usage) in &refs {
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
    for t in &tracked {
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

    let key_id = key.map(SecretKey::id).unwrap_or("unknown");
    let current = store.workload_digest(&namespace, &tracked, key_id);
    out.current = Some(current.hash_annotation());
    let recorded = recorded_baseline(annotations);
    if key.is_none() && current.key_id.is_some() && recorded.is_some() {
        out.status = "unknown: the digest key Secret could not be read, so Secret digests cannot be compared".into();
        return out;
    }
    let template_now = template_digest(template, written::CONFIG_HASH);
    out.status = match classify(recorded.as_ref(), &current, &template_now) {
        Change::None => "up to date: the recorded baseline matches what it tracks now".into(),
        Change::FirstSight => {
            "no baseline yet: the controller records one on first sight, without a rollout (is it running and watching this namespace?)".into()
        }
        Change::KeyRotated => {
            "the digest key changed: the controller records a new baseline, without a rollout".into()
        }
        Change::Backfill => {
            "up to date; the baseline predates pod-template digests: the controller adds one, without a rollout".into()
        }
        Change::Template => {
            "up to date; the pod template changed since the baseline (someone else's rollout): the controller records it, without a rollout of its own".into()
        }
        Change::Covered { changed } => format!(
            "no rollout needed: {} changed, and the pod template changed at the same time: the new pods read the new config. The controller records the new baseline and rolls nothing.",
            changed_text(&changed)
        ),
        Change::Hold { deleted } => format!(
            "holding: {} was deleted; nothing rolls until it is back or something else changes",
            deleted.join(", ")
        ),
        Change::Roll { changed } => {
            out.rollout_pending = true;
            format!(
                "rollout pending: {} changed since the baseline (the controller rolls it after the debounce window and --min-rollout-interval; if this persists, check the controller's log and the workload's Events)",
                changed_text(&changed)
            )
        }
    };
    out
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
        let widths: Vec<usize> = (0..8)
            .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        for row in &table {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(s, "  {}", line.join("  ").trim_end());
        }
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

async fn list_into<K: ConfigObject>(
    client: &Client,
    namespace: &str,
    selector: Option<String>,
    store: &ConfigStore,
    key: &SecretKey,
    compat: bool,
) -> Result<(), ExplainError> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut lp = ListParams::default().limit(100);
    if let Some(s) = &selector {
        lp = lp.fields(s);
    }
    loop {
        let list = api.list(&lp).await.map_err(|source| ExplainError::Read {
            what: format!("{}s in namespace {namespace}", K::KIND),
            source,
        })?;
        for obj in &list.items {
            store.insert(
                (namespace.to_string(), K::KIND, obj.name_any()),
                summarize(obj, key, compat),
            );
        }
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(()),
        }
    }
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
    args: &crate::cli::Args,
) -> Result<String, ExplainError> {
    let (kind, name) = parse_target(target, &args.kinds())?;
    let client = Client::try_default().await.map_err(ExplainError::Client)?;
    let namespace = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    // Read-only: explain never creates the key. Without it, Secret digests cannot be compared.
    let key = crate::key::load(
        client.clone(),
        &args.controller_namespace(),
        &args.key_secret,
    )
    .await
    .ok()
    .flatten();
    let digest_key = key
        .clone()
        .unwrap_or_else(|| SecretKey::new(vec![0; SecretKey::MIN_LEN]));
    let store = ConfigStore::new(0);
    let compat = args.reloader_compat;
    list_into::<ConfigMap>(&client, &namespace, None, &store, &digest_key, compat).await?;
    let skipped: &[&str] = if args.watch_all_secret_types {
        &[]
    } else {
        &SKIPPED_SECRET_TYPES
    };
    let selector = field_selector(&[], skipped);
    list_into::<Secret>(&client, &namespace, selector, &store, &digest_key, compat).await?;

    let ns = namespace.as_str();
    let obj = fetch(&client, kind, ns, &name).await?;
    let source = match &obj.template_ref {
        Some(r) if obj.kind.spec().argo && r.kind == "Deployment" => {
            Some(fetch(&client, WorkloadKind::DEPLOYMENT, ns, &r.name).await?)
        }
        _ => None,
    };
    let mut e = explain(&obj, source.as_ref(), &store, key.as_ref(), compat);
    e.last_event = last_event(client, ns, kind, &name).await;
    if json {
        Ok(serde_json::to_string_pretty(&e).unwrap_or_default() + "\n")
    } else {
        Ok(render_text(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let widget = WorkloadKind::parse("tests.example.io/v1/Widget=spec.workload.podTemplate")
            .expect("a kind");
        let kinds = crate::workload::resolve(&WorkloadKind::BUILT_IN, &[widget]);
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
        let e = explain(&w, None, &store, Some(&key), true);
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
        let e = explain(&w, None, &store, Some(&key), true);
        assert!(e.status.starts_with("up to date"), "{}", e.status);
        assert!(!e.rollout_pending);

        // Change the ConfigMap: pending.
        put("app", serde_json::json!({}), serde_json::json!({"k": "v2"}));
        let e = explain(&w, None, &store, Some(&key), true);
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
            true,
        );
        assert!(e.status.starts_with("not opted in"));
        let e = explain(
            &deployment(serde_json::json!({"kube-reloader.io/auto": "yes"}), spec),
            None,
            &store,
            Some(&key),
            true,
        );
        assert!(e.opt_in.is_err());
        assert!(
            serde_json::to_string(&e)
                .unwrap()
                .contains("kube-reloader.io/auto")
        );
    }
}
