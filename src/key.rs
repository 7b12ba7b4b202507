//! The per-installation key Secrets are digested under. It lives in a Secret in the controller's
//! namespace, created with 32 random bytes on first start.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Error as KubeError};
use thiserror::Error;

use crate::digest::SecretKey;

/// The data key inside the key Secret.
pub const DATA_KEY: &str = "key";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error(
        "cannot read or create the digest key Secret {namespace}/{name}: {source}. \
         The controller needs get and create on Secrets in its own namespace, and the namespace must exist"
    )]
    Api {
        namespace: String,
        name: String,
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

/// Reads the key without creating it; `None` when the Secret does not exist.
pub async fn load(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<Option<SecretKey>, KeyError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let secret = api.get_opt(name).await.map_err(|source| KeyError::Api {
        namespace: namespace.to_string(),
        name: name.to_string(),
        source,
    })?;
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
/// once, the first create wins and the others read it.
pub async fn load_or_create(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<SecretKey, KeyError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let api_err = |source| KeyError::Api {
        namespace: namespace.to_string(),
        name: name.to_string(),
        source,
    };
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
            field_manager: Some("kube-reloader".to_string()),
            ..Default::default()
        };
        match api.create(&pp, &secret).await {
            Ok(_) => {
                tracing::info!(namespace, name, "created the digest key Secret");
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
