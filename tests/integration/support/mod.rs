//! Test support: a real control plane (etcd, kube-apiserver, kube-controller-manager) on loopback.
//!
//! One control plane serves the whole test binary, started on first use. All integration tests
//! live in this one binary (one build, one link), and every test works in a namespace of its own,
//! so sharing is safe and saves the ~10 s start-up per test that 2 cores would otherwise pay
//! dozens of times. Tests that need cluster-wide state of their own start a private control plane
//! with [`ControlPlane::start`].
//!
//! Lifetime: the control plane runs under `hack/cluster.sh run`, which stops every process it
//! started and removes its directory as soon as its stdin closes. We hold the write end of that
//! pipe for as long as the test process lives, so however the process ends (success, panic,
//! abort, SIGKILL) the kernel closes it and nothing outlives the run.

#![allow(dead_code)]

pub mod chart;
pub mod csi;
pub mod helm;
pub mod kinds;
pub mod net;
pub mod objects;
pub mod pods;
pub mod proxy;
pub mod reloader;
pub mod workloads;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The helm and kubectl every test runs: the pinned binaries `hack/testenv.sh` provisions (see
/// the README's Development section), never whichever ones are on the PATH.
pub struct Tools {
    pub helm: PathBuf,
    pub kubectl: PathBuf,
}

/// The pinned tools, provisioned on first use. Panics with the reason if they cannot be had: a
/// missing environment is a failure, never a skip.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    match TOOLS.get_or_init(provision_tools) {
        Ok(tools) => tools,
        Err(e) => panic!("the pinned helm and kubectl are unavailable: {e}"),
    }
}

fn provision_tools() -> Result<Tools, String> {
    let out = Command::new(repo_root().join("hack/testenv.sh"))
        .output()
        .map_err(|e| format!("cannot run hack/testenv.sh: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "hack/testenv.sh failed ({}):\n{stderr}",
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(stdout.lines().last().unwrap_or_default());
    let tools = Tools {
        helm: dir.join("helm"),
        kubectl: dir.join("kubectl"),
    };
    for bin in [&tools.helm, &tools.kubectl] {
        if !bin.is_file() {
            return Err(format!(
                "{} is missing although hack/testenv.sh succeeded:\n{stderr}",
                bin.display()
            ));
        }
    }
    Ok(tools)
}

/// A command running the pinned kubectl.
pub fn kubectl_command() -> Command {
    Command::new(&tools().kubectl)
}

/// Runs the pinned kubectl with this kubeconfig and `input` on its stdin; its stdout and stderr.
/// Panics with both on failure.
fn run_kubectl(kubeconfig: &Path, args: &[&str], input: &str) -> (String, String) {
    try_run_kubectl(kubeconfig, args, input)
        .unwrap_or_else(|output| panic!("kubectl {args:?} failed:\n{output}"))
}

/// Runs kubectl: its stdout and stderr, or all its output when it fails.
fn try_run_kubectl(
    kubeconfig: &Path,
    args: &[&str],
    input: &str,
) -> Result<(String, String), String> {
    let mut cmd = kubectl_command();
    cmd.args(args).env("KUBECONFIG", kubeconfig);
    let out = run_with_stdin(&mut cmd, input);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok((stdout, stderr))
    } else {
        Err(stdout + &stderr)
    }
}

/// A running control plane. Stopped when dropped, or when the test process exits.
pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    child: Mutex<Child>,
    // Closing this pipe tells `cluster.sh run` to stop everything.
    stdin: Mutex<Option<ChildStdin>>,
}

/// What a control plane has beside etcd, kube-apiserver and kube-controller-manager.
#[derive(Clone, Copy)]
enum Extra {
    None,
    /// Further kube-apiserver flags (`KUBE_RELOADER_APISERVER_FLAGS`).
    ApiserverFlags(&'static str),
    SecondApiserver,
    Node,
}

impl ControlPlane {
    /// Starts a control plane of its own (provisioning binaries if needed). Fails with the
    /// reason, never silently.
    pub fn start() -> Result<Self, String> {
        Self::start_with_tokens("")
    }

    /// Like [`start`](Self::start), with extra lines for the apiserver's static token file
    /// (`token,user,uid,"groups"`), e.g. to act as a ServiceAccount.
    pub fn start_with_tokens(extra_tokens: &str) -> Result<Self, String> {
        Self::launch(extra_tokens, Extra::None)
    }

    /// Like [`start`](Self::start), with a second kube-apiserver on the same etcd
    /// ([`second_kubeconfig`](Self::second_kubeconfig)): one can be frozen while the test
    /// writes through the other.
    pub fn start_with_second_apiserver() -> Result<Self, String> {
        Self::launch("", Extra::SecondApiserver)
    }

    /// Like [`start`](Self::start), its kube-apiserver given these further flags (separated by
    /// spaces), e.g. `--feature-gates=WatchList=false`.
    pub fn start_with_apiserver_flags(flags: &'static str) -> Result<Self, String> {
        Self::launch("", Extra::ApiserverFlags(flags))
    }

    /// Like [`start`](Self::start), with kube-scheduler and a node that runs pods
    /// (`hack/cluster.sh run DIR --node`, see hack/node.sh): returns once the node is Ready.
    pub fn start_with_node() -> Result<Self, String> {
        Self::launch("", Extra::Node)
    }

    fn launch(extra_tokens: &str, extra: Extra) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("kube-reloader-cp-{}", unique_suffix()));
        let mut cmd = Command::new(repo_root().join("hack/cluster.sh"));
        cmd.arg("run").arg(&dir);
        match extra {
            Extra::None => {}
            Extra::ApiserverFlags(flags) => {
                cmd.env("KUBE_RELOADER_APISERVER_FLAGS", flags);
            }
            Extra::SecondApiserver => {
                cmd.env("KUBE_RELOADER_SECOND_APISERVER", "1");
            }
            Extra::Node => {
                cmd.arg("--node");
            }
        }
        let mut child = cmd
            .env("KUBE_RELOADER_EXTRA_TOKENS", extra_tokens)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run hack/cluster.sh: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let mut kubeconfig = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("reading hack/cluster.sh output: {e}"))?;
            if let Some(path) = line.strip_prefix("ready ") {
                kubeconfig = Some(PathBuf::from(path));
                break;
            }
        }
        let Some(kubeconfig) = kubeconfig else {
            let status = child.wait().map_err(|e| e.to_string())?;
            return Err(format!(
                "the control plane did not start (hack/cluster.sh exited with {status}; its output above says why)"
            ));
        };
        Ok(Self {
            kubeconfig,
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
        })
    }

    /// A fresh client for the admin user. Make one per test: a client is bound to the tokio
    /// runtime it first runs on, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> Client {
        client_for(&self.kubeconfig).await
    }

    /// A kubeconfig like the admin's, authenticating with `token` instead (see
    /// [`start_with_tokens`](Self::start_with_tokens)).
    pub fn kubeconfig_with_token(&self, token: &str, label: &str) -> PathBuf {
        let admin = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let text: String = admin
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("token:") {
                    format!("    token: {token}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = self.dir().join(format!("kubeconfig-{label}"));
        std::fs::write(&path, text + "\n").expect("write kubeconfig");
        path
    }

    /// The address of the API server the admin kubeconfig names.
    pub fn api_addr(&self) -> std::net::SocketAddr {
        server_addr(&self.kubeconfig)
    }

    /// A kubeconfig like the admin's, reaching the API server at `addr` instead (a
    /// [`proxy::FaultProxy`] in front of it); the certificate is the same, for 127.0.0.1.
    pub fn kubeconfig_via(&self, addr: std::net::SocketAddr, label: &str) -> PathBuf {
        let admin = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let text: String = admin
            .lines()
            .map(|l| match l.split_once("server:") {
                Some((indent, _)) => format!("{indent}server: https://{addr}"),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = self.dir().join(format!("kubeconfig-{label}"));
        std::fs::write(&path, text + "\n").expect("write kubeconfig");
        path
    }

    /// Runs kubectl against this control plane as admin; panics with its output on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_with_input(args, "")
    }

    /// Applies these YAML documents server-side as admin (`kubectl apply --server-side -f -`),
    /// with no file between, so parallel tests cannot overwrite each other's input; panics with
    /// kubectl's output on failure.
    pub fn apply(&self, yaml: &str) -> String {
        self.kubectl_with_input(&["apply", "--server-side", "-f", "-"], yaml)
    }

    fn kubectl_with_input(&self, args: &[&str], input: &str) -> String {
        let (stdout, stderr) = run_kubectl(&self.kubeconfig, args, input);
        stdout + &stderr
    }

    /// Runs kubectl as admin with `input` on its stdin; what it prints on stdout (its notes on
    /// stderr, such as "No resources found", are not part of the answer). Panics on failure.
    pub fn kubectl_stdout(&self, args: &[&str], input: &str) -> String {
        run_kubectl(&self.kubeconfig, args, input).0
    }

    /// The requests `user` has made so far, as the apiserver's audit log records them (every
    /// request by a ServiceAccount is logged, metadata only; see hack/cluster.sh).
    pub fn requests_by(&self, user: &str) -> Vec<AuditedRequest> {
        let log = std::fs::read_to_string(self.dir().join("audit.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["user"]["username"] == user)
            .map(|e| {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                let o = &e["objectRef"];
                AuditedRequest {
                    verb: s(&e["verb"]),
                    group: s(&o["apiGroup"]),
                    resource: s(&o["resource"]),
                    namespace: s(&o["namespace"]),
                    name: s(&o["name"]),
                    uri: s(&e["requestURI"]),
                    code: e["responseStatus"]["code"].as_u64().unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Kills this control plane's kube-apiserver (SIGKILL, as a crash or a partition would look
    /// to its clients), leaving etcd and kube-controller-manager running, and waits until it is
    /// gone. Its pid file is removed, so the final stop does not signal a reused pid.
    pub fn kill_apiserver(&self) {
        let pid_file = self.dir().join("kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("kube-apiserver.pid");
        let pid = pid.trim().to_string();
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {pid} failed");
        // Gone, or a zombie waiting for hack/cluster.sh to reap it.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim().to_string()))
                .is_some_and(|rest| !rest.starts_with('Z'))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive() {
            assert!(
                Instant::now() < deadline,
                "kube-apiserver {pid} still running"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(pid_file);
    }

    /// The admin kubeconfig of the second kube-apiserver
    /// ([`start_with_second_apiserver`](Self::start_with_second_apiserver)).
    pub fn second_kubeconfig(&self) -> PathBuf {
        let path = self.dir().join("kubeconfig-2");
        assert!(
            path.is_file(),
            "no second kube-apiserver in {}",
            self.dir().display()
        );
        path
    }

    /// Freezes this control plane's (first) kube-apiserver with SIGSTOP, as a process that
    /// stops answering while its connections stay open; it resumes (SIGCONT) when the guard is
    /// dropped, panics included.
    pub fn freeze_apiserver(&self) -> Frozen {
        let pid = std::fs::read_to_string(self.dir().join("kube-apiserver.pid"))
            .expect("kube-apiserver.pid")
            .trim()
            .to_string();
        assert!(signal("-STOP", &pid), "kill -STOP {pid} failed");
        Frozen { pid }
    }

    /// The directory holding the kubeconfig, certificates and component logs.
    pub fn dir(&self) -> &Path {
        self.kubeconfig.parent().expect("kubeconfig has a parent")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Ok(mut stdin) = self.stdin.lock() {
            stdin.take();
        }
        if let Ok(mut child) = self.child.lock() {
            let _ = child.wait();
        }
    }
}

/// A kube-apiserver stopped by [`ControlPlane::freeze_apiserver`]; resumed when dropped.
pub struct Frozen {
    pid: String,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !signal("-CONT", &self.pid) {
            eprintln!("kill -CONT {} failed", self.pid);
        }
    }
}

/// Sends signal `sig` to process `pid`; whether that worked.
fn signal(sig: &str, pid: &str) -> bool {
    Command::new("kill")
        .args([sig, pid])
        .status()
        .is_ok_and(|s| s.success())
}

/// One request from the apiserver's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedRequest {
    pub verb: String,
    /// The API group, empty for the core group.
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    /// The path and query asked for (the only name of a discovery request, which has no
    /// resource).
    pub uri: String,
    /// The response's HTTP status (0 while a watch is still open).
    pub code: u64,
}

/// The address of the API server a kubeconfig names (`server: https://127.0.0.1:PORT`).
pub fn server_addr(kubeconfig: &Path) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .and_then(|s| s.trim().strip_prefix("https://"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no https://IP:PORT server in {}", kubeconfig.display()))
}

/// A client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("valid kubeconfig");
    Client::try_from(config).expect("client")
}

/// The control plane shared by every test in this binary.
pub fn shared() -> &'static ControlPlane {
    static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    match SHARED.get_or_init(ControlPlane::start) {
        Ok(cp) => cp,
        Err(e) => panic!("test control plane unavailable: {e}"),
    }
}

/// The control plane with a node (pods run) shared by the tests that need pods; the others use
/// the lighter [`shared`] one.
pub fn with_node() -> &'static ControlPlane {
    static WITH_NODE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    match WITH_NODE.get_or_init(ControlPlane::start_with_node) {
        Ok(cp) => cp,
        Err(e) => panic!("test control plane with a node unavailable: {e}"),
    }
}

/// A suffix no other caller in this test run gets (for names of namespaces, groups, files).
pub fn unique_suffix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A namespace of a test's own on the shared control plane, with an admin client.
pub struct TestNs {
    pub name: String,
    pub client: Client,
    pub kubeconfig: PathBuf,
}

impl TestNs {
    /// Creates namespace `<prefix>-<unique>` on the shared control plane.
    pub async fn new(prefix: &str) -> Self {
        Self::on(shared(), prefix).await
    }

    /// Creates a namespace on the given control plane.
    pub async fn on(cp: &ControlPlane, prefix: &str) -> Self {
        let client = cp.client().await;
        let name = format!("{}-{}", prefix, unique_suffix().replace('-', ""))
            .chars()
            .take(63)
            .collect::<String>();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        Self {
            name,
            client,
            kubeconfig: cp.kubeconfig.clone(),
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `cmd` with `input` on its stdin and returns its output.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("command output")
}

/// Runs kubectl as admin in the test namespace with `stdin` as its input (`apply -f -` reads the
/// manifests from there, so parallel tests share no file); panics with its output on failure.
/// kubectl runs off the async runtime, so that deliveries joined in one test run at once.
pub async fn kubectl(ns: &TestNs, args: &[&str], stdin: &str) -> String {
    try_kubectl(ns, args, stdin)
        .await
        .unwrap_or_else(|output| panic!("kubectl {args:?} failed:\n{output}"))
}

/// As [`kubectl`], but a failure is returned (all of kubectl's output) rather than a panic.
pub async fn try_kubectl(ns: &TestNs, args: &[&str], stdin: &str) -> Result<String, String> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["-n".to_string(), ns.name.clone()]);
    let (kubeconfig, input) = (ns.kubeconfig.clone(), stdin.to_string());
    let (stdout, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        try_run_kubectl(&kubeconfig, &args, &input)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    Ok(stdout + &stderr)
}

/// Builds a typed object from JSON (test fixtures read best as manifests).
pub fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("valid fixture")
}

/// A plain HTTP/1.1 GET; returns the status code and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
