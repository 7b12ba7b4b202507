//! Starting up against an API server that cannot serve the controller yet, or will not: the
//! digest key Secret, read first, names the cause of a failure. An unreachable API server is
//! waited for (alive, not ready), and the controller starts once it answers; refused credentials,
//! missing RBAC or a missing namespace end the start at once, each with its own message, and only
//! RBAC's mentions RBAC.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::PostParams;
use serde_json::json;
use tokio::net::TcpListener;

use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, from_json, http_get, net, shared, wait_for};

const TIMEOUT: Duration = Duration::from_secs(60);
const KEY_FAILED: &str = "cannot read or create the digest key Secret";

/// The shared control plane's kubeconfig, with its server replaced by `server`; written to a file
/// of the test's own.
fn kubeconfig_with_server(server: &str, label: &str) -> PathBuf {
    let admin = std::fs::read_to_string(&shared().kubeconfig).expect("kubeconfig");
    let text: Vec<String> = admin
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server:") {
            Some(_) => format!("    server: {server}"),
            None => l.to_string(),
        })
        .collect();
    let path = shared().dir().join(format!("kubeconfig-{label}"));
    std::fs::write(&path, text.join("\n") + "\n").expect("write kubeconfig");
    path
}

/// The address of the shared control plane's API server.
fn apiserver_addr() -> std::net::SocketAddr {
    let admin = std::fs::read_to_string(&shared().kubeconfig).expect("kubeconfig");
    admin
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("server:"))
        .and_then(|s| s.trim().strip_prefix("https://"))
        .and_then(|a| a.parse().ok())
        .expect("an https://ADDRESS:PORT server in the kubeconfig")
}

/// kube-reloader for `ns` as the user of `kubeconfig`.
fn start(ns: &TestNs, kubeconfig: &std::path::Path, label: &str, key_namespace: &str) -> Reloader {
    let args = [
        format!("--namespace={}", ns.name),
        format!("--controller-namespace={key_namespace}"),
        "--debounce=500ms".to_string(),
    ];
    Reloader::start_raw(kubeconfig, &args, label)
}

/// Started while nothing answers at its API server's address, kube-reloader keeps trying to read
/// its key, saying the API server is unreachable (never blaming RBAC), alive and not ready
/// meanwhile; once the API server answers there, it starts and baselines the workload.
#[tokio::test]
async fn an_unreachable_api_server_is_waited_for_then_served() {
    let ns = TestNs::new("start-unreachable").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    // A loopback port nobody listens on yet; the test listens on it later.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        probe.local_addr().expect("address").port()
    };
    let kubeconfig = kubeconfig_with_server(&format!("https://127.0.0.1:{port}"), &ns.name);
    let mut reloader = start(&ns, &kubeconfig, "start-unreachable", &ns.name);

    reloader
        .wait_count(
            &[
                KEY_FAILED,
                "unreachable",
                "could not be reached",
                "Retrying in",
            ],
            2,
        )
        .await;
    assert!(reloader.running(), "it exited:\n{}", reloader.logs());
    let logs = reloader.logs();
    assert!(
        !logs.contains("RBAC"),
        "a connection error blamed on RBAC:\n{logs}"
    );
    assert!(logs.contains("Connection refused"), "{logs}");
    let addr = reloader.http_addr().await;
    assert_eq!(
        http_get(addr, "/healthz").await.0,
        200,
        "alive while it waits"
    );
    assert_eq!(
        http_get(addr, "/readyz").await.0,
        503,
        "not ready while it waits"
    );

    // The API server answers at that address now.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("port {port} was taken meanwhile: {e}"));
    net::forward(listener, apiserver_addr());
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    wait_for("/readyz to answer 200", TIMEOUT, || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert!(reloader.count(&["starting"]) >= 1, "{}", reloader.logs());
    let key = ns.api::<Secret>().get("kube-reloader-key").await;
    assert!(key.is_ok(), "the key Secret was created: {key:?}");
}

/// A token for a new ServiceAccount `name` of `ns`, which no RBAC rule names.
async fn service_account_token(ns: &TestNs, name: &str) -> String {
    let accounts = ns.api::<ServiceAccount>();
    let account: ServiceAccount = from_json(json!({"metadata": {"name": name}}));
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create ServiceAccount");
    let request: TokenRequest = from_json(json!({"spec": {"audiences": []}}));
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    token.status.and_then(|s| s.token).expect("a token")
}

/// Waits for kube-reloader to exit by itself, and returns its log; fails if it exited 0 or is
/// still running.
fn failed_start(mut reloader: Reloader) -> String {
    let status = reloader.wait_exit(Duration::from_secs(30));
    let logs = reloader.logs();
    match status {
        Some(s) => assert_eq!(s.code(), Some(1), "{logs}"),
        None => panic!("still running after 30 s:\n{logs}"),
    }
    logs
}

/// Credentials refused, RBAC missing, the controller namespace missing: the start ends at once,
/// each with its own message, and only the 403 mentions RBAC.
#[tokio::test]
async fn a_key_secret_refused_ends_the_start_naming_its_cause() {
    let ns = TestNs::new("start-refused").await;
    let cp = shared();

    let token = service_account_token(&ns, "no-rbac").await;
    let sa = cp.kubeconfig_with_token(&token, &format!("{}-no-rbac", ns.name));
    let logs = failed_start(start(&ns, &sa, "start-forbidden", &ns.name));
    let want = format!(
        "{KEY_FAILED} {}/kube-reloader-key: forbidden (403); the controller's RBAC needs get and create on Secrets in namespace {} (see docs/rbac.md)",
        ns.name, ns.name
    );
    assert!(logs.contains(&want), "{logs}");
    // What the API server said names the user.
    let user = format!("system:serviceaccount:{}:no-rbac", ns.name);
    assert!(logs.contains(&user), "{logs}");

    let bogus = cp.kubeconfig_with_token("not-a-token", &format!("{}-bogus", ns.name));
    let logs = failed_start(start(&ns, &bogus, "start-unauthorized", &ns.name));
    assert!(
        logs.contains("the API server refused the controller's credentials (401)"),
        "{logs}"
    );
    assert!(!logs.contains("RBAC"), "{logs}");

    let missing = format!("{}-gone", ns.name);
    let logs = failed_start(start(&ns, &cp.kubeconfig, "start-no-namespace", &missing));
    assert!(
        logs.contains(&format!("the namespace {missing} does not exist (404)")),
        "{logs}"
    );
    assert!(!logs.contains("RBAC"), "{logs}");
}
