//! The decision at the heart of kube-reloader: given what a workload recorded and what its configs
//! digest to now, record a baseline, roll it out, or do nothing.

use crate::digest::{ABSENT, Recorded, WorkloadDigest};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Recorded and current agree.
    Nothing,
    /// No baseline yet (first sight): record one, roll nothing.
    Baseline,
    /// The secret key changed since the baseline was recorded, so Secret digests cannot be
    /// compared, and no ConfigMap changed: record the current digest, roll nothing.
    Rebaseline,
    /// The only difference is that tracked objects were deleted. Rolling now would start pods
    /// that reference a missing object; keep the baseline instead, so that re-creating it with
    /// the same content rolls nothing, and with other content rolls once.
    Hold { deleted: Vec<String> },
    /// The configs changed: roll out. `changed` names the objects whose digest differs.
    Roll { changed: Vec<String> },
}

pub fn decide(recorded: Option<&Recorded>, current: &WorkloadDigest) -> Decision {
    let Some(recorded) = recorded else {
        return Decision::Baseline;
    };
    if recorded.hash == current.hash {
        return Decision::Nothing;
    }
    if let (Some(was), Some(now)) = (&recorded.key_id, &current.key_id)
        && was != now
    {
        // Secrets cannot be compared across keys; ConfigMaps still can.
        let changed: Vec<String> = recorded
            .changed(current)
            .into_iter()
            .filter(|name| !name.starts_with("Secret/"))
            .collect();
        return if changed.is_empty() {
            Decision::Rebaseline
        } else {
            Decision::Roll { changed }
        };
    }
    let changed = recorded.changed(current);
    let deleted = |name: &String| {
        current.parts.get(name).map(String::as_str) == Some(ABSENT)
            && recorded.parts.get(name).is_some_and(|p| p != ABSENT)
    };
    if !changed.is_empty() && changed.iter().all(deleted) {
        return Decision::Hold { deleted: changed };
    }
    Decision::Roll { changed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Entry;
    use crate::references::ConfigKind;

    fn digest(cm: Option<u8>, secret: Option<u8>, key_id: &str) -> WorkloadDigest {
        let mut entries = vec![Entry {
            kind: ConfigKind::ConfigMap,
            name: "app".into(),
            digest: cm.map(|b| [b; 32]),
        }];
        if let Some(s) = secret {
            entries.push(Entry {
                kind: ConfigKind::Secret,
                name: "db".into(),
                digest: Some([s; 32]),
            });
        }
        WorkloadDigest::new(entries, key_id)
    }

    fn record(d: &WorkloadDigest) -> Recorded {
        Recorded::parse(Some(&d.hash_annotation()), Some(&d.parts_annotation())).unwrap()
    }

    fn absent_cm() -> WorkloadDigest {
        digest(None, None, "k1")
    }

    #[test]
    fn decisions() {
        let base = digest(Some(1), Some(1), "k1");
        assert_eq!(decide(None, &base), Decision::Baseline);
        assert_eq!(decide(Some(&record(&base)), &base), Decision::Nothing);
        assert_eq!(
            decide(Some(&record(&base)), &digest(Some(2), Some(1), "k1")),
            Decision::Roll {
                changed: vec!["ConfigMap/app".into()]
            }
        );
        // Key rotated: the Secret's digest differs for that reason alone.
        assert_eq!(
            decide(Some(&record(&base)), &digest(Some(1), Some(9), "k2")),
            Decision::Rebaseline
        );
        // Key rotated while a ConfigMap changed: that change is still rolled out.
        assert_eq!(
            decide(Some(&record(&base)), &digest(Some(3), Some(9), "k2")),
            Decision::Roll {
                changed: vec!["ConfigMap/app".into()]
            }
        );
        // Without Secrets the key id plays no part.
        let no_secret = digest(Some(1), None, "k1");
        assert_eq!(
            decide(Some(&record(&no_secret)), &digest(Some(1), None, "k2")),
            Decision::Nothing
        );
        // A Secret newly tracked is a change, not a key rotation.
        assert!(matches!(
            decide(Some(&record(&no_secret)), &digest(Some(1), Some(1), "k2")),
            Decision::Roll { .. }
        ));
        // Deleted: hold the baseline; re-created unchanged: nothing.
        assert_eq!(
            decide(Some(&record(&no_secret)), &absent_cm()),
            Decision::Hold {
                deleted: vec!["ConfigMap/app".into()]
            }
        );
        // Deleted while another object changed: roll.
        assert!(matches!(
            decide(Some(&record(&base)), &digest(None, Some(2), "k1")),
            Decision::Roll { .. }
        ));
        // Absent, then created.
        let absent = digest(None, None, "k1");
        assert!(matches!(
            decide(Some(&record(&absent)), &no_secret),
            Decision::Roll { .. }
        ));
    }
}
