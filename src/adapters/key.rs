//! The per-installation key Secrets are digested under. It lives in a Secret in the controller's
//! namespace, created with 32 random bytes on first start.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Error as KubeError};
use thiserror::Error;

use crate::rules::digest::SecretKey;
use crate::rules::faults::{Cause, causes};

/// The data key inside the key Secret.
/// Where the digest key Secret is: the controller's namespace, and its name (`--key-secret`).
#[derive(Debug, Clone)]
pub struct KeySecret {
    pub namespace: String,
    pub name: String,
}

pub const DATA_KEY: &str = "key";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error(
        "cannot read or create the digest key Secret {namespace}/{name}: {}",
        explained(*cause, namespace, source)
    )]
    Api {
        namespace: String,
        name: String,
        cause: Cause,
        #[source]
        source: KubeError,
    },
    #[error(
        "the digest key Secret {namespace}/{name} has no `{DATA_KEY}` of at least {min} bytes; \
         delete it and restart the controller to have a new one generated"
    )]
    Malformed {
        namespace: String,
        name: String,
        min: usize,
    },
    #[error("no randomness available to generate the digest key: {0}")]
    Random(String),
}

impl KeyError {
    /// The API server's answer `source` to a request for the key Secret, with its cause.
    fn api(namespace: &str, name: &str, source: KubeError) -> Self {
        KeyError::Api {
            namespace: namespace.to_string(),
            name: name.to_string(),
            cause: Cause::of_client(&source),
            source,
        }
    }

    /// Whether trying again later may succeed (the API server unreachable or failing), rather
    /// than needing someone to change something.
    pub fn transient(&self) -> bool {
        matches!(self, KeyError::Api { cause, .. } if cause.transient())
    }

    /// The cause's short name (a log field), for an answer of the API server.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            KeyError::Api { cause, .. } => Some(*cause),
            _ => None,
        }
    }
}

/// What went wrong with the key Secret in `namespace`, and the error itself: what the API server
/// said, or the failure with its sources ("client error (Connect)" alone does not say that the
/// connection was refused).
fn explained(cause: Cause, namespace: &str, source: &KubeError) -> String {
    let rbac = format!("get and create on Secrets in namespace {namespace}");
    let missing = format!(
        "the namespace {namespace} does not exist (404); create it, or point --controller-namespace at one that does"
    );
    let error = match source {
        KubeError::Api(status) => format!("the API server said: {}", status.message),
        other => causes(other),
    };
    match cause.explain(&rbac, &missing) {
        Some(clause) => format!("{clause} ({error})"),
        None => error,
    }
}

/// The waits between attempts to read (or create) the key while the API server is unreachable or
/// failing: from 1 s, doubling up to 30 s, with jitter; without end, since a controller that
/// exited would only be restarted, later each time.
const RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_secs(1))
    .with_max_delay(Duration::from_secs(30))
    .with_jitter()
    .without_max_times();

/// Reads the key without creating it; `None` when the Secret does not exist.
pub async fn load(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<Option<SecretKey>, KeyError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|source| KeyError::api(namespace, name, source))?;
    secret.map(|s| from_secret(&s, namespace, name)).transpose()
}

fn from_secret(secret: &Secret, namespace: &str, name: &str) -> Result<SecretKey, KeyError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .map(|b| b.0.clone())
        .unwrap_or_default();
    if bytes.len() < SecretKey::MIN_LEN {
        return Err(KeyError::Malformed {
            namespace: namespace.to_string(),
            name: name.to_string(),
            min: SecretKey::MIN_LEN,
        });
    }
    Ok(SecretKey::new(bytes))
}

/// Reads the key, creating the Secret if it does not exist yet. When several replicas start at
/// once, the first create wins and the others read it. While the API server is unreachable or
/// failing, tries again with backoff, saying so in the log, until it answers; any other failure
/// (RBAC, credentials, a missing namespace) is returned at once.
pub async fn load_or_create(
    client: Client,
    namespace: &str,
    name: &str,
    field_manager: &str,
) -> Result<SecretKey, KeyError> {
    (|| try_load_or_create(client.clone(), namespace, name, field_manager))
        .retry(RETRY)
        .sleep(tokio::time::sleep)
        .when(KeyError::transient)
        .notify(|e, wait| {
            let cause = e.cause().map(Cause::as_str).unwrap_or_default();
            tracing::warn!(target: "kube_reloader::key", cause, "{e}. Retrying in {:.1}s", wait.as_secs_f64());
        })
        .await
}

/// One attempt of [`load_or_create`].
async fn try_load_or_create(
    client: Client,
    namespace: &str,
    name: &str,
    field_manager: &str,
) -> Result<SecretKey, KeyError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let api_err = |source| KeyError::api(namespace, name, source);
    for _ in 0..2 {
        if let Some(secret) = api.get_opt(name).await.map_err(api_err)? {
            return from_secret(&secret, namespace, name);
        }
        let mut bytes = vec![0u8; SecretKey::MIN_LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "kube-reloader".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                DATA_KEY.to_string(),
                ByteString(bytes.clone()),
            )])),
            type_: Some("Opaque".to_string()),
            ..Default::default()
        };
        let pp = PostParams {
            field_manager: Some(field_manager.to_string()),
            ..Default::default()
        };
        match api.create(&pp, &secret).await {
            Ok(_) => {
                tracing::info!(target: "kube_reloader::key", namespace, name, "created the digest key Secret");
                return Ok(SecretKey::new(bytes));
            }
            // Another replica created it first: read theirs.
            Err(KubeError::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_err(e)),
        }
    }
    Err(KeyError::Malformed {
        namespace: namespace.to_string(),
        name: name.to_string(),
        min: SecretKey::MIN_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn answered(code: u16, message: &str) -> KubeError {
        KubeError::Api(Box::new(Status::failure(message, "Reason").with_code(code)))
    }

    fn refused() -> KubeError {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        KubeError::Service(Box::new(io))
    }

    /// Each failure to read or create the key Secret is named by its cause: only a 403 is blamed
    /// on RBAC, and only an unreachable or failing API server is worth waiting for.
    #[test]
    fn key_secret_failures_are_named_by_their_cause() {
        let cases = [
            (refused(), true, "the API server could not be reached"),
            (
                answered(503, "etcd down"),
                true,
                "the API server answered 503",
            ),
            (
                answered(429, "slow down"),
                true,
                "the API server answered 429",
            ),
            (
                answered(401, "Unauthorized"),
                false,
                "refused the controller's credentials (401)",
            ),
            (
                answered(403, "secrets is forbidden: User \"sa\" cannot get"),
                false,
                "forbidden (403); the controller's RBAC needs get and create on Secrets in namespace ops",
            ),
            (
                answered(404, "namespaces \"ops\" not found"),
                false,
                "the namespace ops does not exist (404)",
            ),
            (answered(422, "invalid"), false, "invalid"),
        ];
        for (source, transient, says) in cases {
            let e = KeyError::api("ops", "kube-reloader-key", source);
            let text = e.to_string();
            assert_eq!(e.transient(), transient, "{text}");
            assert!(
                text.starts_with(
                    "cannot read or create the digest key Secret ops/kube-reloader-key: "
                ),
                "{text}"
            );
            assert!(text.contains(says), "{text}");
            assert_eq!(text.contains("RBAC"), says.contains("RBAC"), "{text}");
        }
        // The error's own causes are kept: "connection refused", or what the API server said.
        let e = KeyError::api("ops", "k", refused());
        assert_eq!(e.cause(), Some(Cause::Unreachable));
        assert!(e.to_string().contains("Connection refused"), "{e}");
        let e = KeyError::api(
            "ops",
            "k",
            answered(403, "User \"system:serviceaccount:ops:kr\""),
        );
        assert!(
            e.to_string().contains("system:serviceaccount:ops:kr"),
            "{e}"
        );
        // Not an answer of the API server: not retried.
        let e = KeyError::Random("no entropy".into());
        assert!(!e.transient() && e.cause().is_none());
    }
}
