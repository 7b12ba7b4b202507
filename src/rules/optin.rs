//! Opt-in: which ConfigMaps, Secrets and SecretProviderClasses a workload asked to be rolled for, parsed from its
//! annotations (ours and, unless turned off, stakater Reloader's). See docs/annotations.md.

use std::collections::BTreeMap;

use regex::Regex;
use thiserror::Error;

pub use crate::model::annotations::{ours, reloader};
use crate::model::duration::parse_duration;
use crate::rules::references::{ConfigKind, Keys, References};

pub type Annotations = BTreeMap<String, String>;

/// A malformed opt-in annotation. The workload is left alone until it is fixed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("annotation {annotation}={value:?} is invalid: {expected}")]
pub struct InvalidAnnotation {
    pub annotation: String,
    pub value: String,
    pub expected: String,
}

/// A name in a list: ours are exact names; Reloader's are regular expressions anchored at both
/// ends. A Reloader entry with no regex syntax in it is an exact name too, so it can be tracked
/// before the object exists.
#[derive(Debug, Clone)]
pub enum NamePattern {
    Exact(String),
    Regex(Regex),
}

impl NamePattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(n) => n == name,
            NamePattern::Regex(r) => r.is_match(name),
        }
    }
}

/// What a workload opted into.
#[derive(Debug, Clone, Default)]
pub struct OptIn {
    /// Track every ConfigMap the pod template references.
    pub auto_configmaps: bool,
    /// Track every Secret the pod template references.
    pub auto_secrets: bool,
    /// Reloader's search mode, for ConfigMaps: track referenced ones that carry
    /// `reloader.stakater.com/match`.
    pub search_configmaps: bool,
    /// The same for Secrets.
    pub search_secrets: bool,
    /// Track every SecretProviderClass the pod template's CSI volumes name.
    pub auto_secret_provider_classes: bool,
    /// Search mode for SecretProviderClasses.
    pub search_secret_provider_classes: bool,
    /// Track objects with these names, referenced or not, with all their keys.
    pub named: Vec<(ConfigKind, NamePattern)>,
    /// Never track these (Reloader's exclude lists).
    pub excluded: Vec<(ConfigKind, String)>,
    /// Auto only by `--auto-reload-all`, not by an annotation of its own: such a workload that
    /// references nothing is left alone (no baseline is written into it).
    pub implicit: bool,
}

impl OptIn {
    /// Whether anything can be tracked at all.
    pub fn is_empty(&self) -> bool {
        ConfigKind::ALL
            .iter()
            .all(|k| !self.auto(*k) && !self.search(*k))
            && self.named.is_empty()
    }

    fn auto(&self, kind: ConfigKind) -> bool {
        match kind {
            ConfigKind::ConfigMap => self.auto_configmaps,
            ConfigKind::Secret => self.auto_secrets,
            ConfigKind::SecretProviderClass => self.auto_secret_provider_classes,
        }
    }

    fn auto_mut(&mut self, kind: ConfigKind) -> &mut bool {
        match kind {
            ConfigKind::ConfigMap => &mut self.auto_configmaps,
            ConfigKind::Secret => &mut self.auto_secrets,
            ConfigKind::SecretProviderClass => &mut self.auto_secret_provider_classes,
        }
    }

    /// Whether search mode covers this kind of object.
    pub fn search(&self, kind: ConfigKind) -> bool {
        match kind {
            ConfigKind::ConfigMap => self.search_configmaps,
            ConfigKind::Secret => self.search_secrets,
            ConfigKind::SecretProviderClass => self.search_secret_provider_classes,
        }
    }

    fn search_mut(&mut self, kind: ConfigKind) -> &mut bool {
        match kind {
            ConfigKind::ConfigMap => &mut self.search_configmaps,
            ConfigKind::Secret => &mut self.search_secrets,
            ConfigKind::SecretProviderClass => &mut self.search_secret_provider_classes,
        }
    }

    fn is_excluded(&self, kind: ConfigKind, name: &str) -> bool {
        self.excluded.iter().any(|(k, n)| *k == kind && n == name)
    }
}

/// The workload's own debounce window: ours, `kube-reloader.io/debounce`, or Reloader's
/// `deployment.reloader.stakater.com/pause-period` (read from the workload's metadata only, as
/// Reloader reads it, and on every kind), under the names of `reloader` when Reloader's
/// annotations are honoured. A duration like `30s`, `5m` or `1m30s`.
pub fn debounce(
    metadata: &Annotations,
    reloader: Option<&reloader::Names>,
) -> Result<Option<std::time::Duration>, InvalidAnnotation> {
    let key = match reloader {
        Some(names) if !metadata.contains_key(ours::DEBOUNCE) => names.pause_period,
        _ => ours::DEBOUNCE,
    };
    let Some(value) = metadata.get(key) else {
        return Ok(None);
    };
    parse_duration(value)
        .map(Some)
        .map_err(|_| InvalidAnnotation {
            annotation: key.to_string(),
            value: value.clone(),
            expected: "use a duration like 30s, 5m or 1m30s".to_string(),
        })
}

fn parse_bool(annotations: &Annotations, key: &str) -> Result<Option<bool>, InvalidAnnotation> {
    match annotations.get(key).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(InvalidAnnotation {
            annotation: key.to_string(),
            value: other.to_string(),
            expected: "use \"true\" or \"false\"".to_string(),
        }),
    }
}

fn parse_list(
    annotations: &Annotations,
    key: &str,
    regex: bool,
) -> Result<Vec<NamePattern>, InvalidAnnotation> {
    let Some(value) = annotations.get(key) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim) {
        let invalid = |why: &str| InvalidAnnotation {
            annotation: key.to_string(),
            value: value.clone(),
            expected: format!("entry {item:?} {why}; use a comma-separated list of names"),
        };
        if item.is_empty() {
            // Tolerate a trailing comma, but not an empty list or empty entries in the middle.
            if value.trim().ends_with(',') && !value.trim().trim_end_matches(',').is_empty() {
                continue;
            }
            return Err(invalid("is empty"));
        }
        if !regex {
            if !is_object_name(item) {
                return Err(invalid("is not a valid object name"));
            }
            out.push(NamePattern::Exact(item.to_string()));
        } else if is_object_name(item) && !item.contains('.') {
            // Letters, digits and '-' have no special meaning in a regex: an exact name.
            out.push(NamePattern::Exact(item.to_string()));
        } else {
            let re = Regex::new(&format!("^(?:{item})$"))
                .map_err(|_| invalid("is not a valid regular expression"))?;
            out.push(NamePattern::Regex(re));
        }
    }
    Ok(out)
}

/// A DNS subdomain name, as ConfigMap and Secret names are (dots are regex syntax, so names with
/// dots in Reloader lists are treated as patterns, which match themselves).
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// How workloads' opt-in is read: the command line's say.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Honour Reloader's annotations.
    pub reloader_compat: bool,
    /// `--auto-reload-all`: a workload that sets no auto annotation itself (whatever the value,
    /// "false" included) counts as `auto: "true"`.
    pub auto_reload_all: bool,
    /// `--resources-to-ignore`: kinds of objects never tracked (SecretProviderClasses too,
    /// unless `--enable-csi-integration`).
    pub ignored: Vec<ConfigKind>,
    /// The names Reloader's annotations are read under (Reloader's `--*-annotation` flags).
    pub names: reloader::Names,
}

impl Policy {
    /// Reloader's annotation names, when they are honoured.
    pub fn reloader(&self) -> Option<&reloader::Names> {
        self.reloader_compat.then_some(&self.names)
    }

    /// The kinds whose annotations are read: a kind ignored is not even parsed, but for
    /// ConfigMaps and Secrets, whose annotations have always been checked.
    fn parsed_kinds(&self) -> Vec<ConfigKind> {
        let spc = ConfigKind::SecretProviderClass;
        let mut kinds = vec![ConfigKind::ConfigMap, ConfigKind::Secret];
        if !self.ignored.contains(&spc) {
            kinds.push(spc);
        }
        kinds
    }
}

/// The opt-in of a workload from its metadata and pod-template annotations; `None` when it did
/// not opt in (or opted out). With `reloader_compat`, Reloader's annotations count too, read from
/// the pod template's annotations when none of them sits on the workload's own metadata, as
/// Reloader does.
pub fn parse(
    metadata: &Annotations,
    template: &Annotations,
    reloader_compat: bool,
) -> Result<Option<OptIn>, InvalidAnnotation> {
    let policy = Policy {
        reloader_compat,
        ..Policy::default()
    };
    parse_with(metadata, template, &policy)
}

/// [`parse`] under the command line's [`Policy`].
pub fn parse_with(
    metadata: &Annotations,
    template: &Annotations,
    policy: &Policy,
) -> Result<Option<OptIn>, InvalidAnnotation> {
    let kinds = policy.parsed_kinds();
    let mut opt = annotated(metadata, template, policy.reloader(), &kinds)?;
    if policy.auto_reload_all {
        for kind in kinds {
            let mut keys = vec![ours::AUTO];
            if let Some(names) = policy.reloader() {
                let [auto, typed_auto, ..] = names.workload_level(kind);
                keys.extend([auto, typed_auto]);
            }
            let sets_its_own = keys
                .iter()
                .any(|k| metadata.contains_key(*k) || template.contains_key(*k));
            if !sets_its_own && !opt.auto(kind) {
                opt.implicit = true;
                *opt.auto_mut(kind) = true;
            }
        }
    }
    for kind in &policy.ignored {
        *opt.auto_mut(*kind) = false;
        *opt.search_mut(*kind) = false;
        opt.named.retain(|(k, _)| k != kind);
        opt.excluded.retain(|(k, _)| k != kind);
    }
    Ok((!opt.is_empty()).then_some(opt))
}

/// What the annotations themselves opt into (possibly nothing).
fn annotated(
    metadata: &Annotations,
    template: &Annotations,
    reloader: Option<&reloader::Names>,
    kinds: &[ConfigKind],
) -> Result<OptIn, InvalidAnnotation> {
    let mut opt = OptIn::default();

    if parse_bool(metadata, ours::AUTO)? == Some(true) {
        for kind in kinds {
            *opt.auto_mut(*kind) = true;
        }
    }
    for (key, kind) in [
        (ours::CONFIGMAPS, ConfigKind::ConfigMap),
        (ours::SECRETS, ConfigKind::Secret),
        (
            ours::SECRET_PROVIDER_CLASSES,
            ConfigKind::SecretProviderClass,
        ),
    ] {
        if !kinds.contains(&kind) {
            continue;
        }
        for p in parse_list(metadata, key, false)? {
            opt.named.push((kind, p));
        }
    }

    if let Some(names) = reloader {
        for &kind in kinds {
            // Decided for each kind, as Reloader decides it for each changed object.
            let keys = names.workload_level(kind);
            let on_metadata = keys.iter().any(|k| metadata.contains_key(*k));
            let a = if on_metadata { metadata } else { template };
            let [auto, typed_auto, reload, search] = keys;
            let auto = parse_bool(a, auto)? == Some(true);
            if parse_bool(a, typed_auto)? == Some(true) || auto {
                *opt.auto_mut(kind) = true;
            }
            if parse_bool(a, search)? == Some(true) {
                *opt.search_mut(kind) = true;
            }
            for p in parse_list(a, reload, true)? {
                opt.named.push((kind, p));
            }
        }
        // The exclude lists are read from the workload's metadata only, as Reloader does.
        for &kind in kinds {
            for p in parse_list(metadata, names.exclude(kind), false)? {
                if let NamePattern::Exact(name) = p {
                    opt.excluded.push((kind, name));
                }
            }
        }
    }

    Ok(opt)
}

/// What the rules need to know about one existing ConfigMap or Secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigFlags {
    /// `kube-reloader.io/ignore: "true"`, or Reloader's ignore with compatibility on.
    pub ignored: bool,
    /// `reloader.stakater.com/match: "true"` (Reloader's search mode).
    pub matched: bool,
    /// The first of those annotations whose value is neither "true" nor "false": it counts as
    /// not set, and workloads using the object get a Warning saying so.
    pub invalid: Option<&'static str>,
    /// `kube-reloader.io/progressive`: its changes roll in waves ("true") or at once ("false");
    /// `None` leaves it to `--progressive`.
    pub progressive: Option<bool>,
}

impl ConfigFlags {
    /// Reads the flags from an object's annotations, Reloader's under the names of `reloader`
    /// when they are honoured.
    pub fn from_annotations(annotations: &Annotations, reloader: Option<&reloader::Names>) -> Self {
        let is_true = |k: &str| annotations.get(k).map(String::as_str) == Some("true");
        let read = [
            Some(ours::IGNORE),
            Some(ours::PROGRESSIVE),
            reloader.map(|n| n.ignore),
            reloader.map(|n| n.match_),
        ];
        let invalid = read.into_iter().flatten().find(|k| {
            annotations
                .get(*k)
                .is_some_and(|v| v != "true" && v != "false")
        });
        Self {
            ignored: is_true(ours::IGNORE) || reloader.is_some_and(|n| is_true(n.ignore)),
            matched: reloader.is_some_and(|n| is_true(n.match_)),
            invalid,
            progressive: match annotations.get(ours::PROGRESSIVE).map(String::as_str) {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            },
        }
    }
}

/// The objects of a workload's namespace, as the rules see them.
pub trait ConfigView {
    /// The flags of an existing object, `None` when it does not exist.
    fn flags(&self, kind: ConfigKind, name: &str) -> Option<ConfigFlags>;
    /// Names of the existing objects of a kind (to match Reloader's regular expressions).
    fn names(&self, kind: ConfigKind) -> Vec<String>;
}

/// One object a workload tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub kind: ConfigKind,
    pub name: String,
    pub keys: Keys,
}

/// The tracked objects (ignored ones left out), sorted by kind and name.
pub fn tracked(opt: &OptIn, refs: &References, view: &dyn ConfigView) -> Vec<Tracked> {
    let mut out: BTreeMap<(ConfigKind, String), Keys> = BTreeMap::new();
    let mut add = |kind: ConfigKind, name: &str, keys: Keys| {
        if opt.is_excluded(kind, name) {
            return;
        }
        if view.flags(kind, name).is_some_and(|f| f.ignored) {
            return;
        }
        match out.get_mut(&(kind, name.to_string())) {
            Some(k) => k.merge(keys),
            None => {
                out.insert((kind, name.to_string()), keys);
            }
        }
    };
    for ((kind, name), usage) in refs {
        let searched = opt.search(*kind) && view.flags(*kind, name).is_some_and(|f| f.matched);
        if opt.auto(*kind) || searched {
            add(*kind, name, usage.keys.clone());
        }
    }
    for (kind, pattern) in &opt.named {
        match pattern {
            NamePattern::Exact(name) => add(*kind, name, Keys::All),
            NamePattern::Regex(_) => {
                for name in view.names(*kind) {
                    if pattern.matches(&name) {
                        add(*kind, &name, Keys::All);
                    }
                }
            }
        }
    }
    out.into_iter()
        .map(|((kind, name), keys)| Tracked { kind, name, keys })
        .collect()
}

/// Whether the opt-in names objects by pattern, so that any new object of the namespace may need
/// a look.
pub fn has_patterns(opt: &OptIn) -> bool {
    opt.named
        .iter()
        .any(|(_, p)| matches!(p, NamePattern::Regex(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::references::Usage;
    use std::collections::BTreeSet;

    fn ann(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[derive(Default)]
    struct View(BTreeMap<(ConfigKind, String), ConfigFlags>);

    impl View {
        fn with(mut self, kind: ConfigKind, name: &str, flags: ConfigFlags) -> Self {
            self.0.insert((kind, name.to_string()), flags);
            self
        }
    }

    impl ConfigView for View {
        fn flags(&self, kind: ConfigKind, name: &str) -> Option<ConfigFlags> {
            self.0.get(&(kind, name.to_string())).copied()
        }
        fn names(&self, kind: ConfigKind) -> Vec<String> {
            self.0
                .keys()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| n.clone())
                .collect()
        }
    }

    fn refs(items: &[(ConfigKind, &str, Keys)]) -> References {
        items
            .iter()
            .map(|(k, n, keys)| {
                (
                    (*k, n.to_string()),
                    Usage {
                        keys: keys.clone(),
                        sites: vec![],
                    },
                )
            })
            .collect()
    }

    fn names(t: &[Tracked]) -> Vec<String> {
        t.iter().map(|t| format!("{}/{}", t.kind, t.name)).collect()
    }

    use ConfigKind::{ConfigMap as CM, Secret as S};

    fn sample_refs() -> References {
        refs(&[
            (CM, "app", Keys::All),
            (
                S,
                "db",
                Keys::Only(BTreeSet::from(["password".to_string()])),
            ),
        ])
    }

    fn run(meta: &[(&str, &str)], tmpl: &[(&str, &str)], view: &View) -> Option<Vec<String>> {
        let opt = parse(&ann(meta), &ann(tmpl), true).expect("valid");
        opt.map(|o| names(&tracked(&o, &sample_refs(), view)))
    }

    /// (what, workload annotations, template annotations, tracked objects or None for no opt-in)
    type OptInCase = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        Vec<(&'static str, &'static str)>,
        Option<Vec<&'static str>>,
    );

    #[test]
    fn table_of_opt_ins() {
        let view = View::default()
            .with(CM, "app", ConfigFlags::default())
            .with(CM, "extra-1", ConfigFlags::default())
            .with(CM, "extra-2", ConfigFlags::default())
            .with(S, "db", ConfigFlags::default());
        let cases: Vec<OptInCase> = vec![
            ("nothing", vec![], vec![], None),
            (
                "ours auto",
                vec![(ours::AUTO, "true")],
                vec![],
                Some(vec!["ConfigMap/app", "Secret/db"]),
            ),
            ("ours auto false", vec![(ours::AUTO, "false")], vec![], None),
            (
                "ours named",
                vec![(ours::CONFIGMAPS, " extra-1 , other ")],
                vec![],
                Some(vec!["ConfigMap/extra-1", "ConfigMap/other"]),
            ),
            (
                "ours secrets",
                vec![(ours::SECRETS, "x")],
                vec![],
                Some(vec!["Secret/x"]),
            ),
            (
                "reloader auto",
                vec![(reloader::AUTO, "true")],
                vec![],
                Some(vec!["ConfigMap/app", "Secret/db"]),
            ),
            (
                "reloader cm auto",
                vec![(reloader::CONFIGMAP_AUTO, "true")],
                vec![],
                Some(vec!["ConfigMap/app"]),
            ),
            (
                "reloader secret auto",
                vec![(reloader::SECRET_AUTO, "true")],
                vec![],
                Some(vec!["Secret/db"]),
            ),
            (
                "reloader auto false",
                vec![(reloader::AUTO, "false")],
                vec![],
                None,
            ),
            (
                "reloader auto false + list",
                vec![
                    (reloader::AUTO, "false"),
                    (reloader::CONFIGMAP_RELOAD, "app"),
                ],
                vec![],
                Some(vec!["ConfigMap/app"]),
            ),
            (
                "reloader regex list",
                vec![(reloader::CONFIGMAP_RELOAD, "extra-.*")],
                vec![],
                Some(vec!["ConfigMap/extra-1", "ConfigMap/extra-2"]),
            ),
            (
                "regex is anchored",
                vec![(reloader::CONFIGMAP_RELOAD, "xtra-1")],
                vec![],
                Some(vec!["ConfigMap/xtra-1"]),
            ),
            (
                "regex anchored, partial",
                vec![(reloader::CONFIGMAP_RELOAD, "extra")],
                vec![],
                Some(vec!["ConfigMap/extra"]),
            ),
            (
                "reloader secret list",
                vec![(reloader::SECRET_RELOAD, "db,other")],
                vec![],
                Some(vec!["Secret/db", "Secret/other"]),
            ),
            (
                "template fallback",
                vec![],
                vec![(reloader::AUTO, "true")],
                Some(vec!["ConfigMap/app", "Secret/db"]),
            ),
            (
                "metadata wins over template",
                vec![(reloader::AUTO, "false")],
                vec![(reloader::AUTO, "true")],
                None,
            ),
            (
                "template fallback is decided per kind",
                vec![(reloader::SECRET_AUTO, "true")],
                vec![(reloader::AUTO, "true")],
                Some(vec!["ConfigMap/app", "Secret/db"]),
            ),
            (
                "a typed list on metadata keeps only its kind there",
                vec![(reloader::SECRET_RELOAD, "other")],
                vec![
                    (reloader::CONFIGMAP_RELOAD, "extra-1"),
                    (reloader::SECRET_AUTO, "true"),
                ],
                Some(vec!["ConfigMap/extra-1", "Secret/other"]),
            ),
            (
                "search on metadata concerns both kinds",
                vec![(reloader::SEARCH, "false")],
                vec![(reloader::AUTO, "true")],
                None,
            ),
            (
                "ours never read from template",
                vec![],
                vec![(ours::AUTO, "true")],
                None,
            ),
            (
                "exclude",
                vec![
                    (reloader::AUTO, "true"),
                    (reloader::CONFIGMAPS_EXCLUDE, "app"),
                ],
                vec![],
                Some(vec!["Secret/db"]),
            ),
            (
                "exclude secrets",
                vec![
                    (reloader::AUTO, "true"),
                    (reloader::SECRETS_EXCLUDE, "db, x"),
                ],
                vec![],
                Some(vec!["ConfigMap/app"]),
            ),
            (
                "search without match",
                vec![(reloader::SEARCH, "true")],
                vec![],
                Some(vec![]),
            ),
        ];
        for (what, meta, tmpl, want) in cases {
            let got = run(&meta, &tmpl, &view);
            let want = want.map(|w| w.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "{what}");
        }
    }

    /// SecretProviderClasses follow the rules of ConfigMaps and Secrets: auto, typed auto, named
    /// lists (ours exact, Reloader's patterns), exclude, ignore, search.
    #[test]
    fn secret_provider_classes_opt_in_as_configmaps_and_secrets_do() {
        use ConfigKind::SecretProviderClass as SPC;
        let refs = refs(&[
            (CM, "app", Keys::All),
            (SPC, "vault", Keys::All),
            (SPC, "aws", Keys::All),
        ]);
        let ignored = ConfigFlags {
            ignored: true,
            ..Default::default()
        };
        let matched = ConfigFlags {
            matched: true,
            ..Default::default()
        };
        let view = View::default()
            .with(SPC, "vault", ConfigFlags::default())
            .with(SPC, "aws", matched)
            .with(SPC, "vault-extra", ConfigFlags::default())
            .with(SPC, "quiet", ignored);
        let run = |meta: &[(&str, &str)], tmpl: &[(&str, &str)]| {
            let opt = parse(&ann(meta), &ann(tmpl), true).expect("valid");
            opt.map(|o| names(&tracked(&o, &refs, &view)))
        };
        let want = |w: &[&str]| Some(w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let all = [
            "ConfigMap/app",
            "SecretProviderClass/aws",
            "SecretProviderClass/vault",
        ];
        assert_eq!(run(&[(ours::AUTO, "true")], &[]), want(&all));
        assert_eq!(run(&[(reloader::AUTO, "true")], &[]), want(&all));
        assert_eq!(
            run(&[(reloader::SECRETPROVIDERCLASS_AUTO, "true")], &[]),
            want(&["SecretProviderClass/aws", "SecretProviderClass/vault"])
        );
        // Read from the pod template when the workload's metadata says nothing of them.
        assert_eq!(
            run(&[], &[(reloader::SECRETPROVIDERCLASS_AUTO, "true")]),
            want(&["SecretProviderClass/aws", "SecretProviderClass/vault"])
        );
        assert_eq!(
            run(&[(reloader::SECRETPROVIDERCLASS_RELOAD, "vault.*")], &[]),
            want(&[
                "SecretProviderClass/vault",
                "SecretProviderClass/vault-extra"
            ])
        );
        assert_eq!(
            run(&[(ours::SECRET_PROVIDER_CLASSES, "vault, quiet")], &[]),
            want(&["SecretProviderClass/vault"]),
            "an ignored class is never tracked, even named"
        );
        assert_eq!(
            run(
                &[
                    (reloader::AUTO, "true"),
                    (reloader::SECRETPROVIDERCLASSES_EXCLUDE, "vault")
                ],
                &[]
            ),
            want(&["ConfigMap/app", "SecretProviderClass/aws"])
        );
        assert_eq!(
            run(&[(reloader::SEARCH, "true")], &[]),
            want(&["SecretProviderClass/aws"])
        );
        let bad = parse(
            &ann(&[(reloader::SECRETPROVIDERCLASS_AUTO, "yes")]),
            &ann(&[]),
            true,
        );
        assert_eq!(
            bad.expect_err("invalid").annotation,
            reloader::SECRETPROVIDERCLASS_AUTO
        );
        // Without --enable-csi-integration they are not read at all, malformed or not.
        let off = Policy {
            reloader_compat: true,
            ignored: vec![SPC],
            ..Policy::default()
        };
        let meta = ann(&[
            (reloader::SECRETPROVIDERCLASS_AUTO, "yes"),
            (ours::AUTO, "true"),
        ]);
        let opt = parse_with(&meta, &ann(&[]), &off)
            .expect("valid")
            .expect("opted in");
        assert_eq!(names(&tracked(&opt, &refs, &view)), ["ConfigMap/app"]);
        let only = ann(&[(ours::SECRET_PROVIDER_CLASSES, "vault")]);
        assert!(parse_with(&only, &ann(&[]), &off).expect("valid").is_none());
    }

    /// Reloader's `--secretproviderclass-*-annotation` flags rename the SecretProviderClass
    /// annotations as the others: read under the new names (on the metadata, or the pod template
    /// as Reloader falls back to), and Reloader's own names no longer opt in nor exclude.
    #[test]
    fn renamed_secret_provider_class_annotations_are_read_under_their_new_names() {
        use ConfigKind::SecretProviderClass as SPC;
        let refs = refs(&[(SPC, "vault", Keys::All), (SPC, "aws", Keys::All)]);
        let view = View::default()
            .with(SPC, "vault", ConfigFlags::default())
            .with(SPC, "aws", ConfigFlags::default())
            .with(SPC, "gcp", ConfigFlags::default());
        let policy = Policy {
            reloader_compat: true,
            names: reloader::Names {
                secretproviderclass_auto: "example.com/spc-auto",
                secretproviderclass_reload: "example.com/spc",
                secretproviderclasses_exclude: "example.com/skip-spc",
                ..reloader::Names::STAKATER
            },
            ..Policy::default()
        };
        let run = |meta: &[(&str, &str)], tmpl: &[(&str, &str)]| {
            parse_with(&ann(meta), &ann(tmpl), &policy)
                .expect("valid")
                .map(|o| names(&tracked(&o, &refs, &view)))
        };
        let want = |w: &[&str]| Some(w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let both = ["SecretProviderClass/aws", "SecretProviderClass/vault"];
        assert_eq!(run(&[("example.com/spc-auto", "true")], &[]), want(&both));
        assert_eq!(run(&[], &[("example.com/spc-auto", "true")]), want(&both));
        assert_eq!(
            run(&[("example.com/spc", "gcp")], &[]),
            want(&["SecretProviderClass/gcp"])
        );
        assert_eq!(
            run(
                &[
                    ("example.com/spc-auto", "true"),
                    ("example.com/skip-spc", "vault")
                ],
                &[]
            ),
            want(&["SecretProviderClass/aws"])
        );
        // Reloader's own names are plain annotations now.
        assert_eq!(
            run(&[(reloader::SECRETPROVIDERCLASS_AUTO, "true")], &[]),
            None
        );
        assert_eq!(
            run(&[(reloader::SECRETPROVIDERCLASS_RELOAD, "gcp")], &[]),
            None
        );
        assert_eq!(
            run(
                &[
                    ("example.com/spc-auto", "true"),
                    (reloader::SECRETPROVIDERCLASSES_EXCLUDE, "vault")
                ],
                &[]
            ),
            want(&both)
        );
        let err = parse_with(&ann(&[("example.com/spc-auto", "yes")]), &ann(&[]), &policy)
            .expect_err("invalid");
        assert_eq!(err.annotation, "example.com/spc-auto");
    }

    #[test]
    fn search_tracks_matched_referenced_objects() {
        let matched = ConfigFlags {
            matched: true,
            ..Default::default()
        };
        let view = View::default()
            .with(CM, "app", matched)
            .with(S, "db", ConfigFlags::default())
            .with(CM, "unreferenced", matched);
        assert_eq!(
            run(&[(reloader::SEARCH, "true")], &[], &view),
            Some(vec!["ConfigMap/app".to_string()])
        );
        // Search read from the template reaches only the kinds with nothing on the metadata.
        let view = view.with(S, "db", matched);
        assert_eq!(
            run(
                &[(reloader::CONFIGMAP_RELOAD, "other")],
                &[(reloader::SEARCH, "true")],
                &view
            ),
            Some(vec!["ConfigMap/other".to_string(), "Secret/db".to_string()])
        );
    }

    #[test]
    fn config_flags_name_the_first_annotation_that_is_neither_true_nor_false() {
        // (what, annotations, Reloader compatibility, invalid, ignored)
        type Case = (
            &'static str,
            &'static [(&'static str, &'static str)],
            bool,
            Option<&'static str>,
            bool,
        );
        let cases: &[Case] = &[
            ("ours true", &[(ours::IGNORE, "true")], true, None, true),
            ("ours false", &[(ours::IGNORE, "false")], true, None, false),
            (
                "ours yes",
                &[(ours::IGNORE, "yes")],
                true,
                Some(ours::IGNORE),
                false,
            ),
            (
                "Reloader's True",
                &[(reloader::IGNORE, "True")],
                true,
                Some(reloader::IGNORE),
                false,
            ),
            (
                "Reloader's, compat off",
                &[(reloader::IGNORE, "True")],
                false,
                None,
                false,
            ),
            (
                "match 1",
                &[(reloader::MATCH, "1")],
                true,
                Some(reloader::MATCH),
                false,
            ),
            (
                "ours first",
                &[(reloader::IGNORE, "on"), (ours::IGNORE, "on")],
                true,
                Some(ours::IGNORE),
                false,
            ),
        ];
        for (what, annotations, compat, invalid, ignored) in cases {
            let flags = ConfigFlags::from_annotations(&ann(annotations), compat_names(*compat));
            assert_eq!(flags.invalid, *invalid, "{what}");
            assert_eq!(flags.ignored, *ignored, "{what}");
        }
    }

    #[test]
    fn ignored_objects_are_not_tracked() {
        let ignored = ConfigFlags {
            ignored: true,
            ..Default::default()
        };
        let view = View::default().with(CM, "app", ignored);
        assert_eq!(
            run(&[(ours::AUTO, "true")], &[], &view),
            Some(vec!["Secret/db".to_string()])
        );
    }

    #[test]
    fn key_precision_is_kept_and_named_lists_take_all_keys() {
        let view = View::default();
        let opt = parse(&ann(&[(ours::AUTO, "true")]), &ann(&[]), true)
            .unwrap()
            .unwrap();
        let t = tracked(&opt, &sample_refs(), &view);
        assert!(matches!(&t[1].keys, Keys::Only(k) if k.len() == 1));
        let opt = parse(
            &ann(&[(ours::AUTO, "true"), (ours::SECRETS, "db")]),
            &ann(&[]),
            true,
        )
        .unwrap()
        .unwrap();
        let t = tracked(&opt, &sample_refs(), &view);
        assert_eq!(t[1].keys, Keys::All);
    }

    #[test]
    fn malformed_values_are_errors_naming_the_annotation() {
        for (k, v) in [
            (ours::AUTO, "yes"),
            (ours::AUTO, "True"),
            (ours::AUTO, ""),
            (ours::CONFIGMAPS, "a,,b"),
            (ours::CONFIGMAPS, ""),
            (ours::CONFIGMAPS, "Not_A_Name"),
            (reloader::AUTO, "1"),
            (reloader::CONFIGMAP_RELOAD, "bad(["),
        ] {
            let err = parse(&ann(&[(k, v)]), &ann(&[]), true).expect_err(k);
            assert_eq!(err.annotation, k);
            assert!(err.to_string().contains(k), "{err}");
        }
        // Whitespace and a trailing comma are tolerated.
        assert!(parse(&ann(&[(ours::CONFIGMAPS, " a ,b, ")]), &ann(&[]), true).is_ok());
    }

    #[test]
    fn compatibility_off_ignores_reloader_annotations() {
        let meta = ann(&[(reloader::AUTO, "true")]);
        assert!(parse(&meta, &ann(&[]), false).unwrap().is_none());
        // Not even a malformed one is looked at.
        let meta = ann(&[(reloader::AUTO, "maybe")]);
        assert!(parse(&meta, &ann(&[]), false).unwrap().is_none());
        let flags =
            ConfigFlags::from_annotations(&ann(&[(reloader::IGNORE, "true")]), compat_names(false));
        assert!(!flags.ignored);
        let flags =
            ConfigFlags::from_annotations(&ann(&[(reloader::IGNORE, "true")]), compat_names(true));
        assert!(flags.ignored);
    }

    /// `--auto-reload-all`: auto for every kind the workload sets no auto annotation of its own
    /// for, whatever that annotation's value.
    #[test]
    fn auto_reload_all_applies_where_the_workload_says_nothing() {
        let all = Policy {
            reloader_compat: true,
            auto_reload_all: true,
            ..Policy::default()
        };
        let kinds = |m: &[(&str, &str)], t: &[(&str, &str)], p: &Policy| {
            parse_with(&ann(m), &ann(t), p)
                .expect("valid")
                .map(|o| (o.auto_configmaps, o.auto_secrets, o.implicit))
        };
        assert_eq!(kinds(&[], &[], &all), Some((true, true, true)));
        // An auto annotation of its own, any value, is the workload's say.
        assert_eq!(kinds(&[(ours::AUTO, "false")], &[], &all), None);
        assert_eq!(kinds(&[(reloader::AUTO, "false")], &[], &all), None);
        assert_eq!(kinds(&[], &[(reloader::AUTO, "false")], &all), None);
        assert_eq!(
            kinds(&[(reloader::SECRET_AUTO, "false")], &[], &all),
            Some((true, false, true))
        );
        assert_eq!(
            kinds(&[(ours::AUTO, "true")], &[], &all),
            Some((true, true, false))
        );
        // Reloader's keys are the workload's own only when they are honoured.
        let ours_only = Policy {
            reloader_compat: false,
            ..all.clone()
        };
        assert_eq!(
            kinds(&[(reloader::AUTO, "false")], &[], &ours_only),
            Some((true, true, true))
        );
        // Without the flag, nothing changes.
        assert_eq!(kinds(&[], &[], &Policy::default()), None);
    }

    #[test]
    fn ignored_kinds_are_never_tracked() {
        let no_secrets = Policy {
            reloader_compat: true,
            ignored: vec![ConfigKind::Secret],
            ..Policy::default()
        };
        let opt = parse_with(&ann(&[(ours::AUTO, "true")]), &ann(&[]), &no_secrets)
            .expect("valid")
            .expect("opted in");
        assert!(opt.auto_configmaps && !opt.auto_secrets);
        // Opted in only to Secrets: not opted in at all.
        let named = ann(&[
            (reloader::SECRET_RELOAD, "db"),
            (reloader::SECRET_AUTO, "true"),
        ]);
        assert!(
            parse_with(&named, &ann(&[]), &no_secrets)
                .expect("valid")
                .is_none()
        );
    }

    /// Reloader's names when its annotations are honoured.
    fn compat_names(compat: bool) -> Option<&'static reloader::Names> {
        compat.then_some(&reloader::Names::STAKATER)
    }

    /// Reloader's `--*-annotation` flags rename what is read; the default names are then plain
    /// annotations.
    #[test]
    fn renamed_reloader_annotations_are_read_under_their_new_names() {
        let renamed = reloader::Names {
            auto: "example.com/auto",
            configmaps_exclude: "example.com/skip-configmaps",
            secret_reload: "example.com/secrets",
            ignore: "example.com/ignore",
            pause_period: "example.com/pause",
            ..reloader::Names::STAKATER
        };
        let policy = Policy {
            reloader_compat: true,
            names: renamed,
            ..Policy::default()
        };
        let run = |m: &[(&str, &str)]| {
            parse_with(&ann(m), &ann(&[]), &policy)
                .unwrap()
                .map(|o| names(&tracked(&o, &sample_refs(), &View::default())))
        };
        assert_eq!(run(&[(reloader::AUTO, "true")]), None);
        assert_eq!(
            run(&[
                ("example.com/auto", "true"),
                ("example.com/skip-configmaps", "app")
            ]),
            Some(vec!["Secret/db".to_string()])
        );
        // Reloader's own exclude name is no longer one.
        assert_eq!(
            run(&[
                ("example.com/auto", "true"),
                (reloader::CONFIGMAPS_EXCLUDE, "app")
            ]),
            Some(vec!["ConfigMap/app".to_string(), "Secret/db".to_string()])
        );
        assert_eq!(
            run(&[("example.com/secrets", "other")]),
            Some(vec!["Secret/other".to_string()])
        );
        let err = parse_with(&ann(&[("example.com/auto", "1")]), &ann(&[]), &policy)
            .expect_err("invalid");
        assert_eq!(err.annotation, "example.com/auto");
        let flags =
            ConfigFlags::from_annotations(&ann(&[(reloader::IGNORE, "true")]), policy.reloader());
        assert!(!flags.ignored);
        let flags = ConfigFlags::from_annotations(
            &ann(&[("example.com/ignore", "true")]),
            policy.reloader(),
        );
        assert!(flags.ignored);
        let pause = debounce(&ann(&[("example.com/pause", "1m")]), policy.reloader());
        assert_eq!(pause, Ok(Some(std::time::Duration::from_secs(60))));
        assert_eq!(
            debounce(&ann(&[(reloader::PAUSE_PERIOD, "1m")]), policy.reloader()),
            Ok(None)
        );
    }

    #[test]
    fn a_workload_may_set_its_own_debounce_window() {
        use std::time::Duration;
        let d = |pairs: &[(&str, &str)], compat: bool| debounce(&ann(pairs), compat_names(compat));
        assert_eq!(d(&[], true), Ok(None));
        assert_eq!(
            d(&[(ours::DEBOUNCE, "30s")], true),
            Ok(Some(Duration::from_secs(30)))
        );
        assert_eq!(
            d(&[(reloader::PAUSE_PERIOD, "1m30s")], true),
            Ok(Some(Duration::from_secs(90)))
        );
        // Ours wins over Reloader's; Reloader's counts only when honoured.
        assert_eq!(
            d(
                &[(ours::DEBOUNCE, "5s"), (reloader::PAUSE_PERIOD, "5m")],
                true
            ),
            Ok(Some(Duration::from_secs(5)))
        );
        assert_eq!(d(&[(reloader::PAUSE_PERIOD, "5m")], false), Ok(None));
        let bad = d(&[(reloader::PAUSE_PERIOD, "soon")], true).expect_err("invalid");
        assert_eq!(bad.annotation, reloader::PAUSE_PERIOD);
        assert!(d(&[(ours::DEBOUNCE, "")], true).is_err());
    }
}
