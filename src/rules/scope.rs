//! What is watched: the namespaces, and the field selectors that leave out ignored namespaces and
//! skipped Secret types.

use std::collections::HashSet;

/// Secret types never watched unless `--watch-all-secret-types`: Helm release records are large
/// and numerous, service-account tokens are managed by Kubernetes; neither is app configuration.
pub const SKIPPED_SECRET_TYPES: [&str; 2] =
    ["helm.sh/release.v1", "kubernetes.io/service-account-token"];

/// The namespaces to watch, one scope each; `None` stands for all namespaces.
pub fn scopes(namespaces: &[String], ignored: &[String]) -> Vec<Option<String>> {
    if namespaces.is_empty() {
        return vec![None];
    }
    let mut seen = HashSet::new();
    namespaces
        .iter()
        .filter(|n| !n.is_empty() && !ignored.contains(n) && seen.insert(n.as_str()))
        .map(|n| Some(n.clone()))
        .collect()
}

/// Field selector excluding ignored namespaces (and, for Secrets, skipped types).
pub fn field_selector(ignored: &[String], secret_types: &[&str]) -> Option<String> {
    let parts: Vec<String> = ignored
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| format!("metadata.namespace!={n}"))
        .chain(secret_types.iter().map(|t| format!("type!={t}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn scopes_from_flags() {
        assert_eq!(scopes(&[], &s(&["x"])), vec![None]);
        assert_eq!(
            scopes(&s(&["a", "b", "a", "x"]), &s(&["x"])),
            vec![Some("a".to_string()), Some("b".to_string())]
        );
        assert!(scopes(&s(&["x"]), &s(&["x"])).is_empty());
    }

    #[test]
    fn field_selectors() {
        assert_eq!(field_selector(&[], &[]), None);
        assert_eq!(
            field_selector(&s(&["kube-system"]), &SKIPPED_SECRET_TYPES).as_deref(),
            Some(
                "metadata.namespace!=kube-system,type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token"
            )
        );
    }
}
