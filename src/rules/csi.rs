//! The Secrets Store CSI driver's rules: which workload a `SecretProviderClassPodStatus` speaks
//! for, what of it enters a workload's digest, and how the versions its pods report are compared.
//!
//! The driver writes one status object per pod and SecretProviderClass, owned by the Pod, with the
//! `{id, version}` of every object it mounted. A workload's digest input for a class is the set of
//! `id=version` pairs its own pods report; each pair enters the digest as its own part,
//! `SecretProviderClass/<class>:<id>.<version>` (both as short digests), so that the decision
//! can tell a rotation from pods coming and going:
//! - a version of an id the baseline already knew with another version is a rotation: it rolls;
//! - a pair of an id the baseline did not know (the first pods to report, after a scale from
//!   zero) and pairs that disappear (the old pods of a rollout going away) roll nothing: the
//!   pods that report them read them when they started.
//!
//! So a rotation reported by 3 pods one after the other rolls once, the new pods of that rollout
//! report versions already recorded, and the old ones leaving only narrow the set again.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest as _, Sha256};

use crate::model::kinds::{ConfigKind, WorkloadKind};
use crate::rules::digest::{Entry, hex};

/// One reported `id=version` pair, as kept: 4 bytes of digest of the id, 4 of the id and its
/// version. Enough to tell the handful of objects of one class apart, and two versions of one.
pub type Pair = [u8; 8];

fn short(parts: &[&str]) -> [u8; 4] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The pair kept for an object `id` reported at `version`.
pub fn pair(id: &str, version: &str) -> Pair {
    let (i, v) = (short(&[id]), short(&[id, version]));
    [i[0], i[1], i[2], i[3], v[0], v[1], v[2], v[3]]
}

/// The pairs of a status object's `status.objects`, sorted, each once.
pub fn reported<'a>(objects: impl IntoIterator<Item = (&'a str, &'a str)>) -> Box<[Pair]> {
    let set: BTreeSet<Pair> = objects.into_iter().map(|(i, v)| pair(i, v)).collect();
    set.into_iter().collect()
}

/// The digest entries of the pairs a workload's pods report for class `spc`: one per pair.
pub fn entries<'a>(spc: &str, pairs: impl IntoIterator<Item = &'a Pair>) -> Vec<Entry> {
    let pairs: BTreeSet<&Pair> = pairs.into_iter().collect();
    pairs
        .into_iter()
        .map(|p| {
            let name = format!("{spc}:{}.{}", hex(&p[..4]), hex(&p[4..]));
            let mut h = Sha256::new();
            h.update(name.as_bytes());
            Entry {
                kind: ConfigKind::SecretProviderClass,
                name,
                digest: Some(h.finalize().into()),
            }
        })
        .collect()
}

const PREFIX: &str = "SecretProviderClass/";

/// For a part name that is a reported version (`SecretProviderClass/<class>:<id>.<version>`),
/// the part up to the id's end and the dot: `SecretProviderClass/<class>:<id>.`.
fn id_prefix(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PREFIX)?;
    let colon = rest.rfind(':')?;
    let dot = rest[colon..].find('.')? + colon;
    Some(&name[..PREFIX.len() + dot + 1])
}

/// Whether a part name is a version reported by pods.
pub fn is_version(name: &str) -> bool {
    id_prefix(name).is_some()
}

/// Whether a version part new since the baseline `recorded` is an arrival rather than a
/// rotation: the baseline knew no version of that id of that class.
pub fn arrived(name: &str, recorded: &BTreeMap<String, String>) -> bool {
    let Some(prefix) = id_prefix(name) else {
        return false;
    };
    !recorded
        .range(prefix.to_string()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(prefix))
}

/// The names for people: each reported version as its class, `SecretProviderClass/<class>`,
/// once; other names as they are.
pub fn object_names(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = match id_prefix(&name) {
            Some(prefix) => {
                let class = &prefix[..prefix.rfind(':').unwrap_or(prefix.len())];
                class.to_string()
            }
            None => name,
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// An owner reference, as the rules read it.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

/// Where a Pod's owner leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A workload of a kind rolled: its kind and name.
    Workload(WorkloadKind, String),
    /// A ReplicaSet, whose own owner is the workload (a Deployment, an Argo Rollout).
    ReplicaSet(String),
    /// Nothing rolled: no controller, or one of a kind not rolled (a Job, a bare ReplicaSet).
    Nothing,
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

fn rolled(owner: Owner<'_>, kinds: &[WorkloadKind]) -> Option<WorkloadKind> {
    let group = group_of(owner.api_version);
    kinds
        .iter()
        .copied()
        .find(|k| k.spec().group == group && k.spec().kind == owner.kind)
}

/// Where the controller of a Pod (`None` for a bare Pod) leads, `kinds` being the kinds rolled.
pub fn pod_owner(controller: Option<Owner<'_>>, kinds: &[WorkloadKind]) -> Step {
    let Some(owner) = controller else {
        return Step::Nothing;
    };
    if let Some(kind) = rolled(owner, kinds) {
        return Step::Workload(kind, owner.name.to_string());
    }
    if owner.kind == "ReplicaSet" && group_of(owner.api_version) == "apps" {
        return Step::ReplicaSet(owner.name.to_string());
    }
    Step::Nothing
}

/// The workload a ReplicaSet's controller (`None` when it has none) is, if it is rolled.
pub fn replica_set_owner(
    controller: Option<Owner<'_>>,
    kinds: &[WorkloadKind],
) -> Option<(WorkloadKind, String)> {
    let owner = controller?;
    rolled(owner, kinds).map(|k| (k, owner.name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(entries: &[Entry]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|e| (format!("{}/{}", e.kind, e.name), "x".to_string()))
            .collect()
    }

    #[test]
    fn a_pair_tells_ids_and_versions_apart_and_is_stable() {
        let p = pair("db-password", "v1");
        assert_eq!(p, pair("db-password", "v1"));
        assert_eq!(p[..4], pair("db-password", "v2")[..4], "same id");
        assert_ne!(p[4..], pair("db-password", "v2")[4..], "another version");
        assert_ne!(p[..4], pair("api-key", "v1")[..4], "another id");
        // Length-prefixed: the boundary between id and version counts.
        assert_ne!(pair("ab", "c"), pair("a", "bc"));
        // A fixed value, so that a restart (or another replica) digests alike.
        assert_eq!(hex(&pair("id", "1")).len(), 16);
        assert_eq!(hex(&pair("id", "1")), hex(&pair("id", "1")));
    }

    #[test]
    fn the_digest_input_is_the_set_of_pairs() {
        let a = reported([("b", "2"), ("a", "1"), ("a", "1")]);
        let b = reported([("a", "1"), ("b", "2")]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        let e = entries("vault", a.iter().chain(b.iter()));
        assert_eq!(e.len(), 2, "pairs reported by several pods count once");
        assert!(e.iter().all(|e| e.kind == ConfigKind::SecretProviderClass));
        assert!(e[0].name.starts_with("vault:"));
        // Another class, same objects: other entries.
        let other = entries("aws", a.iter());
        assert_ne!(other[0].digest, e[0].digest);
    }

    #[test]
    fn a_new_version_of_a_known_id_is_a_rotation_a_new_id_an_arrival() {
        let v1 = parts(&entries("vault", &[pair("db", "1")]));
        let v2 = parts(&entries("vault", &[pair("db", "2")]));
        let api = parts(&entries("vault", &[pair("api", "1")]));
        let other_class = parts(&entries("other", &[pair("db", "2")]));
        let name = |p: &BTreeMap<String, String>| p.keys().next().cloned().unwrap();
        assert!(!arrived(&name(&v2), &v1), "rotation");
        assert!(arrived(&name(&api), &v1), "a new object");
        assert!(arrived(&name(&v2), &BTreeMap::new()), "first pods");
        assert!(arrived(&name(&other_class), &v1), "another class");
        assert!(!arrived("ConfigMap/app", &v1));
        assert!(is_version(&name(&v1)) && !is_version("SecretProviderClass/vault"));
        assert!(!is_version("ConfigMap/a:b.c"));
    }

    #[test]
    fn versions_read_as_their_class() {
        let mut names: Vec<String> = parts(&entries("vault", &[pair("a", "1"), pair("b", "1")]))
            .into_keys()
            .collect();
        names.insert(0, "ConfigMap/app".into());
        assert_eq!(
            object_names(names),
            ["ConfigMap/app", "SecretProviderClass/vault"]
        );
    }

    #[test]
    fn pods_lead_to_their_workload() {
        let kinds = WorkloadKind::BUILT_IN;
        let owner = |api_version, kind, name| Owner {
            api_version,
            kind,
            name,
        };
        let web = || "web".to_string();
        assert_eq!(
            pod_owner(Some(owner("apps/v1", "ReplicaSet", "web-5d9")), &kinds),
            Step::ReplicaSet("web-5d9".into())
        );
        assert_eq!(
            pod_owner(Some(owner("apps/v1", "StatefulSet", "web")), &kinds),
            Step::Workload(WorkloadKind::STATEFUL_SET, web())
        );
        assert_eq!(
            pod_owner(Some(owner("apps/v1", "DaemonSet", "web")), &kinds),
            Step::Workload(WorkloadKind::DAEMON_SET, web())
        );
        // A Job's pods: the next Job mounts the current versions anyway.
        assert_eq!(
            pod_owner(Some(owner("batch/v1", "Job", "nightly-1")), &kinds),
            Step::Nothing
        );
        assert_eq!(pod_owner(None, &kinds), Step::Nothing);
        // A kind not rolled is left alone.
        let only = [WorkloadKind::DEPLOYMENT];
        assert_eq!(
            pod_owner(Some(owner("apps/v1", "StatefulSet", "web")), &only),
            Step::Nothing
        );
        // A --workload-kind kind whose pods it owns itself.
        let clone = WorkloadKind::parse("apps.kruise.io/v1alpha1/CloneSet").expect("a kind");
        assert_eq!(
            pod_owner(
                Some(owner("apps.kruise.io/v1alpha1", "CloneSet", "web")),
                &[clone]
            ),
            Step::Workload(clone, web())
        );
        // ReplicaSet → Deployment or Argo Rollout; a bare ReplicaSet is nothing rolled.
        assert_eq!(
            replica_set_owner(Some(owner("apps/v1", "Deployment", "web")), &kinds),
            Some((WorkloadKind::DEPLOYMENT, web()))
        );
        assert_eq!(
            replica_set_owner(
                Some(owner("argoproj.io/v1alpha1", "Rollout", "web")),
                &kinds
            ),
            Some((WorkloadKind::ROLLOUT, web()))
        );
        assert_eq!(replica_set_owner(None, &kinds), None);
        assert_eq!(
            replica_set_owner(Some(owner("apps/v1", "Deployment", "web")), &only[..0]),
            None
        );
    }
}
