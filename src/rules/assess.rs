//! The assessment of one workload: its opt-in, the objects it references and tracks, the digest
//! of what it tracks, the baseline it records, and what changed since. The reconcile acts on it;
//! `explain` renders it. One function for both, so that a rule added here is right in both.

use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

use crate::model::annotations::written;
use crate::model::kinds::WorkloadKind;
use crate::rules::decision::{Change, classify, unconfirmed_absent, written_after};
use crate::rules::digest::{Recorded, WorkloadDigest};
use crate::rules::optin::{self, ConfigView, InvalidAnnotation, OptIn, Policy, Tracked};
use crate::rules::references::{ConfigKind, References};
use crate::rules::template::{self, Restart, Template};

/// The objects of a workload's namespace as the assessment reads them: their flags and names
/// ([`ConfigView`]), and the digest of a set of tracked ones (the config store's).
pub trait ConfigDigests: ConfigView {
    /// The digest of the `tracked` objects over the keys each uses; Secrets under the digest key
    /// `key_id` names.
    fn workload_digest(&self, tracked: &[Tracked], key_id: &str) -> WorkloadDigest;
    /// When the content of a tracked object (`Kind/name`) was last written, as far as its
    /// managedFields tell ([`crate::rules::digest::last_written`]).
    fn written(&self, _object: &str) -> Option<Timestamp> {
        None
    }
}

/// What the assessment reads of a workload.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub kind: WorkloadKind,
    /// Its metadata's annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// Its pod template: its own, or that of the Deployment it refers to (Argo Rollouts'
    /// `spec.workloadRef`).
    pub template: Option<&'a Template>,
    /// Whether it takes its pod template from another workload.
    pub template_ref: bool,
    /// Whether its recorded baseline was written by someone other than kube-reloader.
    pub baseline_by_others: bool,
    /// When its pod template was last written by someone other than kube-reloader, as far as its
    /// managedFields tell.
    pub template_written: Option<Timestamp>,
}

/// How to assess: the command line's say.
#[derive(Clone, Copy, Debug)]
pub struct Settings<'a> {
    pub policy: &'a Policy,
    /// The id of the digest key Secrets are digested under.
    pub key_id: &'a str,
    /// A dry run: the pod template is compared less stakater Reloader's writes, and
    /// `simulated` stands for the baseline on the workload.
    pub dry_run: bool,
}

/// Where a workload stands.
#[derive(Debug)]
pub enum Assessment {
    /// A malformed opt-in annotation: left alone until it is fixed.
    Invalid(InvalidAnnotation),
    /// No opt-in: left alone.
    NotOptedIn,
    /// Opted in only by `--auto-reload-all`, and it uses nothing to track: left alone (no
    /// baseline is written into it).
    NothingTracked,
    /// Opted in.
    OptedIn(Box<Assessed>),
}

/// What an opted-in workload tracks, and what changed since its baseline.
#[derive(Debug)]
pub struct Assessed {
    pub opt: OptIn,
    /// What its pod template references.
    pub refs: References,
    /// Every referenced name (of a kind not ignored) and every name its opt-in lists exactly:
    /// a change of any of them concerns it.
    pub candidates: BTreeSet<(ConfigKind, String)>,
    /// The objects it tracks.
    pub tracked: Vec<Tracked>,
    /// The digest of what it tracks now.
    pub current: WorkloadDigest,
    /// The pod template's digest now.
    pub template: String,
    /// The baseline it records (or a dry run recorded in memory), `None` before the first.
    pub recorded: Option<Recorded>,
    /// What changed since the baseline.
    pub change: Change,
    /// Tracked objects that look deleted since the baseline and that the decision may have to
    /// confirm with the API server.
    pub unconfirmed: Vec<String>,
}

/// How a workload of this kind, with these annotations, is rolled.
pub fn restart(subject: &Subject<'_>, policy: &Policy) -> Restart {
    template::restart(
        subject.kind,
        subject.annotations,
        subject.template_ref,
        policy.reloader_compat,
    )
}

/// The baseline a workload records on its metadata, `None` before the first.
pub fn recorded_baseline(
    annotations: &BTreeMap<String, String>,
    by_others: bool,
) -> Option<Recorded> {
    let get = |key: &str| annotations.get(key).map(String::as_str);
    Recorded::parse(get(written::CONFIG_HASH), get(written::TRACKED)).map(|r| {
        r.with_template(get(written::TEMPLATE_HASH))
            .written_by_others(by_others)
    })
}

/// Assesses a workload against the objects of its namespace. `simulated` is, in a dry run, the
/// baseline the dry run recorded in memory, which stands for the one on the workload.
pub fn assess(
    subject: &Subject<'_>,
    configs: &dyn ConfigDigests,
    settings: &Settings<'_>,
    simulated: Option<Recorded>,
) -> Assessment {
    let template_annotations = template::template_annotations(subject.template);
    let opt = match optin::parse_with(subject.annotations, &template_annotations, settings.policy) {
        Err(invalid) => return Assessment::Invalid(invalid),
        Ok(None) => return Assessment::NotOptedIn,
        Ok(Some(opt)) => opt,
    };
    let refs = template::template_references(subject.template);
    let tracked = optin::tracked(&opt, &refs, configs);
    if opt.implicit && tracked.is_empty() {
        return Assessment::NothingTracked;
    }
    let ignored = &settings.policy.ignored;
    let mut candidates: BTreeSet<_> = refs
        .keys()
        .filter(|(kind, _)| !ignored.contains(kind))
        .cloned()
        .collect();
    for (kind, pattern) in &opt.named {
        if let optin::NamePattern::Exact(name) = pattern {
            candidates.insert((*kind, name.clone()));
        }
    }
    let current = configs.workload_digest(&tracked, settings.key_id);
    let template = template::template_digest(subject.template, settings.dry_run);
    let recorded = match simulated {
        Some(simulated) if settings.dry_run => Some(simulated),
        _ => recorded_baseline(subject.annotations, subject.baseline_by_others),
    };
    let change = classify(recorded.as_ref(), &current, &template);
    let change = written_after(change, subject.template_written, |o| configs.written(o));
    let unconfirmed = unconfirmed_absent(recorded.as_ref(), &current);
    Assessment::OptedIn(Box::new(Assessed {
        opt,
        refs,
        candidates,
        tracked,
        current,
        template,
        recorded,
        change,
        unconfirmed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::digest::{Entry, Hash};
    use crate::rules::optin::ConfigFlags;
    use serde_json::json;

    /// A namespace's objects: each with its flags and a digest standing for its content.
    #[derive(Default)]
    struct Namespace(BTreeMap<(ConfigKind, String), (ConfigFlags, Hash)>);

    impl Namespace {
        fn with(mut self, kind: ConfigKind, name: &str, flags: ConfigFlags, content: u8) -> Self {
            self.0
                .insert((kind, name.to_string()), (flags, [content; 32]));
            self
        }
    }

    impl ConfigView for Namespace {
        fn flags(&self, kind: ConfigKind, name: &str) -> Option<ConfigFlags> {
            self.0.get(&(kind, name.to_string())).map(|(f, _)| *f)
        }
        fn names(&self, kind: ConfigKind) -> Vec<String> {
            let names = self.0.keys().filter(|(k, _)| *k == kind);
            names.map(|(_, n)| n.clone()).collect()
        }
    }

    impl ConfigDigests for Namespace {
        fn workload_digest(&self, tracked: &[Tracked], key_id: &str) -> WorkloadDigest {
            let entries = tracked.iter().map(|t| Entry {
                kind: t.kind,
                name: t.name.clone(),
                digest: self.0.get(&(t.kind, t.name.clone())).map(|(_, h)| *h),
            });
            WorkloadDigest::new(entries.collect(), key_id)
        }
    }

    use ConfigKind::{ConfigMap as CM, Secret as S};
    const PLAIN: ConfigFlags = ConfigFlags {
        ignored: false,
        matched: false,
        invalid: None,
        progressive: None,
    };
    const IGNORED: ConfigFlags = ConfigFlags {
        ignored: true,
        matched: false,
        invalid: None,
        progressive: None,
    };

    /// A pod template that reads ConfigMap `app` as a volume and Secret `creds` in env.
    fn template(annotations: serde_json::Value) -> Template {
        Template::of(&json!({
            "metadata": {"annotations": annotations},
            "spec": {"containers": [{"name": "app",
                "envFrom": [{"secretRef": {"name": "creds"}}]}],
                "volumes": [{"name": "config", "configMap": {"name": "app"}}]},
        }))
        .expect("a pod template")
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let pairs = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        pairs.collect()
    }

    fn names(tracked: &[Tracked]) -> Vec<String> {
        tracked
            .iter()
            .map(|t| format!("{}/{}", t.kind, t.name))
            .collect()
    }

    /// What `assess` says, in a few words, for table rows.
    fn summary(a: &Assessment) -> String {
        match a {
            Assessment::Invalid(_) => "invalid".into(),
            Assessment::NotOptedIn => "not opted in".into(),
            Assessment::NothingTracked => "nothing tracked".into(),
            Assessment::OptedIn(a) => format!("{:?} {:?}", names(&a.tracked), a.change),
        }
    }

    /// The annotations a baseline of `a` writes on the workload.
    fn baseline_of(a: &Assessment) -> BTreeMap<String, String> {
        let Assessment::OptedIn(a) = a else {
            panic!("not opted in: {a:?}")
        };
        ann(&[
            (written::CONFIG_HASH, &a.current.hash_annotation()),
            (written::TRACKED, &a.current.parts_annotation()),
            (written::TEMPLATE_HASH, &a.template),
        ])
    }

    /// ConfigMap `app` with content `app`, and Secret `creds`.
    fn both(app: u8) -> Namespace {
        Namespace::default()
            .with(CM, "app", PLAIN, app)
            .with(S, "creds", PLAIN, 2)
    }

    /// Assesses a Deployment; in a dry run, with the baseline it `simulated`.
    fn assess_with(
        annotations: &BTreeMap<String, String>,
        template: &Template,
        ns: &Namespace,
        policy: &Policy,
        simulated: Option<(bool, Recorded)>,
    ) -> Assessment {
        let subject = Subject {
            kind: WorkloadKind::DEPLOYMENT,
            annotations,
            template: Some(template),
            template_ref: false,
            baseline_by_others: false,
            template_written: None,
        };
        let (dry_run, simulated) = simulated.map_or((false, None), |(d, r)| (d, Some(r)));
        let settings = Settings {
            policy,
            key_id: "k1",
            dry_run,
        };
        assess(&subject, ns, &settings, simulated)
    }

    fn run(
        annotations: &BTreeMap<String, String>,
        template: &Template,
        ns: &Namespace,
        policy: &Policy,
    ) -> Assessment {
        assess_with(annotations, template, ns, policy, None)
    }

    /// A table row: the case, the workload's annotations, its template, its namespace, the
    /// policy, and what `assess` says.
    type Row<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a Template,
        &'a Namespace,
        &'a Policy,
        &'a str,
    );

    #[test]
    fn opt_in_and_tracked_objects() {
        let t = template(json!({}));
        let ns = both(1);
        let ignoring = Namespace::default()
            .with(CM, "app", PLAIN, 1)
            .with(S, "creds", IGNORED, 2);
        let all = Policy {
            auto_reload_all: true,
            ..Policy::default()
        };
        let no_secrets = Policy {
            ignored: vec![S],
            ..Policy::default()
        };
        let bare = Template::of(&json!({"spec": {"containers": []}})).expect("a pod template");
        let rows: [Row<'_>; 8] = [
            ("none", &[], &t, &ns, &Policy::default(), "not opted in"),
            (
                "auto",
                &[("kube-reloader.io/auto", "true")],
                &t,
                &ns,
                &Policy::default(),
                r#"["ConfigMap/app", "Secret/creds"] FirstSight"#,
            ),
            (
                "auto, ignored object",
                &[("kube-reloader.io/auto", "true")],
                &t,
                &ignoring,
                &Policy::default(),
                r#"["ConfigMap/app"] FirstSight"#,
            ),
            (
                "auto, ignored kind",
                &[("kube-reloader.io/auto", "true")],
                &t,
                &ns,
                &no_secrets,
                r#"["ConfigMap/app"] FirstSight"#,
            ),
            (
                "invalid",
                &[("kube-reloader.io/auto", "yes")],
                &t,
                &ns,
                &Policy::default(),
                "invalid",
            ),
            (
                "--auto-reload-all",
                &[],
                &t,
                &ns,
                &all,
                r#"["ConfigMap/app", "Secret/creds"] FirstSight"#,
            ),
            (
                "--auto-reload-all, nothing used",
                &[],
                &bare,
                &ns,
                &all,
                "nothing tracked",
            ),
            (
                "named, missing",
                &[("kube-reloader.io/configmaps", "other")],
                &t,
                &ns,
                &Policy::default(),
                r#"["ConfigMap/other"] FirstSight"#,
            ),
        ];
        for (case, annotations, t, ns, policy, want) in rows {
            let got = summary(&run(&ann(annotations), t, ns, policy));
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn candidates_are_references_of_kinds_not_ignored_and_exact_names() {
        let t = template(json!({}));
        let ns = Namespace::default();
        let policy = Policy {
            ignored: vec![S],
            ..Policy::default()
        };
        let annotations = ann(&[("kube-reloader.io/configmaps", "listed")]);
        let Assessment::OptedIn(a) = run(&annotations, &t, &ns, &policy) else {
            panic!("opted in")
        };
        let want: BTreeSet<_> = [(CM, "app".to_string()), (CM, "listed".to_string())].into();
        assert_eq!(a.candidates, want);
        assert_eq!(names(&a.tracked), ["ConfigMap/listed"]);
    }

    #[test]
    fn the_baseline_read_back_classifies_the_change() {
        let auto = ("kube-reloader.io/auto", "true");
        let t = template(json!({}));
        let before = both(1);
        let baseline = baseline_of(&run(&ann(&[auto]), &t, &before, &Policy::default()));
        let mut annotations = baseline.clone();
        annotations.insert(auto.0.into(), auto.1.into());

        let changed = both(3);
        let deleted = Namespace::default().with(CM, "app", PLAIN, 1);
        let other_template = template(json!({"team": "b"}));
        let rows: [(&str, &Template, &Namespace, &str); 5] = [
            ("same", &t, &before, "None"),
            (
                "config changed",
                &t,
                &changed,
                r#"Roll { changed: ["ConfigMap/app"] }"#,
            ),
            ("template changed", &other_template, &before, "Template"),
            (
                "both changed",
                &other_template,
                &changed,
                r#"Covered { changed: ["ConfigMap/app"] }"#,
            ),
            (
                "deleted",
                &t,
                &deleted,
                r#"Hold { deleted: ["Secret/creds"] }"#,
            ),
        ];
        for (case, t, ns, want) in rows {
            let Assessment::OptedIn(a) = run(&annotations, t, ns, &Policy::default()) else {
                panic!("{case}: opted in")
            };
            assert_eq!(format!("{:?}", a.change), want, "{case}");
            assert!(a.recorded.is_some(), "{case}: the baseline is read back");
        }
    }

    #[test]
    fn a_dry_run_compares_with_its_simulated_baseline() {
        let auto = ("kube-reloader.io/auto", "true");
        let t = template(json!({}));
        let before = both(1);
        let Assessment::OptedIn(first) = run(&ann(&[auto]), &t, &before, &Policy::default()) else {
            panic!("opted in")
        };
        let simulated = Recorded::of(&first.current, &first.template);
        let changed = both(3);
        let change = |dry_run: bool| {
            let simulated = Some((dry_run, simulated.clone()));
            match assess_with(&ann(&[auto]), &t, &changed, &Policy::default(), simulated) {
                Assessment::OptedIn(a) => format!("{:?}", a.change),
                other => panic!("opted in: {other:?}"),
            }
        };
        assert_eq!(change(true), r#"Roll { changed: ["ConfigMap/app"] }"#);
        // Outside a dry run, only the workload's own baseline counts: there is none.
        assert_eq!(change(false), "FirstSight");
    }

    #[test]
    fn argo_rollouts_restart_through_restart_at_when_asked_or_by_reference() {
        let none = ann(&[]);
        let asks = ann(&[("kube-reloader.io/rollout-strategy", "restart")]);
        let subject = |kind, annotations, template_ref| Subject {
            kind,
            annotations,
            template: None,
            template_ref,
            baseline_by_others: false,
            template_written: None,
        };
        let policy = Policy::default();
        let rollout = WorkloadKind::ROLLOUT;
        let rows = [
            (
                subject(WorkloadKind::DEPLOYMENT, &asks, false),
                Restart::Template,
            ),
            (subject(rollout, &none, false), Restart::Template),
            (subject(rollout, &asks, false), Restart::RestartAt),
            (subject(rollout, &none, true), Restart::RestartAt),
        ];
        for (subject, want) in rows {
            assert_eq!(restart(&subject, &policy), want, "{subject:?}");
        }
    }
}
