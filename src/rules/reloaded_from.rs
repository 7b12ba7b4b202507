//! What stakater Reloader records on a pod template when it rolls a workload with its
//! `annotations` strategy: `reloader.stakater.com/last-reloaded-from`, a JSON document in one of
//! two formats. Reloader v1 writes `{"type","name","namespace","hash","containerRefs","observedAt"}`
//! (`observedAt` in Unix seconds); its v2 branch `{"kind","name","namespace","hash","containers",
//! "reloadedAt"}` (`reloadedAt` in RFC 3339). Both are read the same: which object it last rolled
//! the workload for, and when. Its `hash` is an opaque marker, never recomputed nor compared with
//! kube-reloader's digests: SHA-1 in v1, possibly SHA-512/256 later, empty for a deletion in v2.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

/// Which of Reloader's formats a value was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `type`, `containerRefs`, `observedAt`: Reloader v1 (up to v1.4.22 at least).
    V1,
    /// `kind`, `containers`, `reloadedAt`: Reloader's v2 branch.
    V2,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::V1 => "v1",
            Format::V2 => "v2",
        }
    }
}

/// Reloader's last rollout of a workload, as its `last-reloaded-from` annotation records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastReloadedFrom {
    pub format: Format,
    /// `ConfigMap`, `Secret` or `SecretProviderClass` (whatever case Reloader wrote it in), or
    /// the value as written if it is none of them.
    pub kind: String,
    pub name: String,
    pub namespace: String,
    /// Reloader's hash of the object: opaque (any algorithm, possibly empty).
    pub hash: String,
    /// The containers Reloader named.
    pub containers: Vec<String>,
    /// When Reloader rolled, if it said so in a form that can be read.
    #[serde(serialize_with = "rfc3339")]
    pub at: Option<Timestamp>,
}

fn rfc3339<S: serde::Serializer>(at: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(t) => s.collect_str(t),
        None => s.serialize_none(),
    }
}

impl LastReloadedFrom {
    /// `Kind/name`, as kube-reloader names objects.
    pub fn object(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// Reads a `last-reloaded-from` value in either format. An error says what is wrong with it.
pub fn parse(value: &str) -> Result<LastReloadedFrom, String> {
    let doc: Value =
        serde_json::from_str(value).map_err(|e| format!("not a JSON document ({e})"))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_string);
    let (format, kind, containers, at) = match (text("kind"), text("type")) {
        (Some(kind), _) => (
            Format::V2,
            kind,
            "containers",
            text("reloadedAt").and_then(|t| t.parse::<Timestamp>().ok()),
        ),
        (None, Some(kind)) => {
            let seconds = match obj.get("observedAt") {
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            };
            let at = seconds.and_then(|s| Timestamp::from_second(s).ok());
            (Format::V1, kind, "containerRefs", at)
        }
        (None, None) => {
            return Err("it has neither `type` (Reloader v1) nor `kind` (Reloader v2)".into());
        }
    };
    let name = text("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| "it names no object (`name`)".to_string())?;
    let containers = obj
        .get(containers)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    Ok(LastReloadedFrom {
        format,
        kind: kind_name(&kind),
        name,
        namespace: text("namespace").unwrap_or_default(),
        hash: text("hash").unwrap_or_default(),
        containers,
        at,
    })
}

/// Reloader's resource type in kube-reloader's spelling: v1 writes `CONFIGMAP`, v2 `configmap`.
fn kind_name(kind: &str) -> String {
    match kind.to_ascii_lowercase().as_str() {
        "configmap" => "ConfigMap".into(),
        "secret" => "Secret".into(),
        "secretproviderclass" => "SecretProviderClass".into(),
        _ => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA1: &str = "b1d5781111d84f7b3fe45a0852e59758cd7a87e5";
    /// A value of SHA-512/256's length (64 hex digits), as Reloader's `feature/use-SHA512` branch
    /// would write.
    const SHA512_256: &str = "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23";

    fn v1(hash: &str) -> String {
        json!({"type": "CONFIGMAP", "name": "db-config", "namespace": "shop", "hash": hash,
               "containerRefs": ["app"], "observedAt": 1_700_000_000})
        .to_string()
    }

    fn v2(hash: &str) -> String {
        json!({"kind": "configmap", "name": "db-config", "namespace": "shop", "hash": hash,
               "containers": ["app"], "reloadedAt": "2023-11-14T22:13:20.123456789Z"})
        .to_string()
    }

    #[test]
    fn both_formats_say_the_same_thing() {
        let one = parse(&v1(SHA1)).unwrap();
        let two = parse(&v2(SHA1)).unwrap();
        assert_eq!((one.format, two.format), (Format::V1, Format::V2));
        for r in [&one, &two] {
            assert_eq!(r.object(), "ConfigMap/db-config");
            assert_eq!(r.namespace, "shop");
            assert_eq!(r.hash, SHA1);
            assert_eq!(r.containers, ["app"]);
        }
        assert_eq!(one.at.unwrap().to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(
            two.at.unwrap().to_string(),
            "2023-11-14T22:13:20.123456789Z"
        );
        let as_json = serde_json::to_value(&two).unwrap();
        assert_eq!(as_json["format"], "v2");
        assert_eq!(as_json["at"], "2023-11-14T22:13:20.123456789Z");
    }

    #[test]
    fn hashes_are_opaque_markers() {
        // SHA-1, SHA-512/256, v2's empty hash of a deletion, anything: kept as written.
        for hash in [SHA1, SHA512_256, "", "not-a-hash"] {
            assert_eq!(parse(&v1(hash)).unwrap().hash, hash);
            assert_eq!(parse(&v2(hash)).unwrap().hash, hash);
        }
        let no_hash = json!({"type": "SECRET", "name": "creds"}).to_string();
        assert_eq!(parse(&no_hash).unwrap().hash, "");
    }

    #[test]
    fn kinds_in_every_case_reloader_writes_them() {
        for (written, kind) in [
            ("CONFIGMAP", "ConfigMap"),
            ("configmap", "ConfigMap"),
            ("SECRET", "Secret"),
            ("secret", "Secret"),
            ("SECRETPROVIDERCLASS", "SecretProviderClass"),
            ("secretproviderclass", "SecretProviderClass"),
            ("Widget", "Widget"),
        ] {
            let doc = json!({"kind": written, "name": "x"}).to_string();
            assert_eq!(parse(&doc).unwrap().kind, kind, "{written}");
        }
    }

    #[test]
    fn what_is_missing_or_unreadable() {
        // The short form the migration test's manifest carries: no time, no containers.
        let short = parse(r#"{"type":"CONFIGMAP","name":"db-config"}"#).unwrap();
        assert_eq!((short.at, short.containers.len()), (None, 0));
        // A time in a form that cannot be read is left out, not an error.
        let odd = json!({"kind": "secret", "name": "x", "reloadedAt": "yesterday"});
        assert_eq!(parse(&odd.to_string()).unwrap().at, None);
        let string_seconds = json!({"type": "SECRET", "name": "x", "observedAt": "1700000000"});
        assert!(parse(&string_seconds.to_string()).unwrap().at.is_some());
        for (bad, why) in [
            ("", "not a JSON document"),
            ("[]", "not a JSON object"),
            (r#"{"name":"x"}"#, "neither `type`"),
            (r#"{"type":"SECRET"}"#, "names no object"),
            (r#"{"kind":"secret","name":""}"#, "names no object"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
