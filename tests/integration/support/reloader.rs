//! The kube-reloader binary, run as a user would run it, against the test control plane.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube_reloader::alerts::PROXY_VARIABLES;

use super::{TestNs, wait_for};

/// A running kube-reloader process, watching one test namespace. Killed when dropped.
pub struct Reloader {
    child: Child,
    pub log: PathBuf,
}

impl Reloader {
    /// Starts kube-reloader for `ns` (also its controller namespace, where its key Secret lives),
    /// with a short debounce and rollout interval unless `args` set them.
    pub fn start(ns: &TestNs, args: &[&str]) -> Self {
        Self::start_as(ns, args, None)
    }

    /// Like [`start`](Self::start), reaching the API server through `kubeconfig` (say, through
    /// a [`FaultProxy`](super::proxy::FaultProxy)).
    pub fn start_via(ns: &TestNs, kubeconfig: &std::path::Path, args: &[&str]) -> Self {
        let (all, label) = Self::args_for(ns, args, None);
        Self::spawn(kubeconfig, all, &label, None, &[])
    }

    /// Like [`start`](Self::start), as pod `pod_name` (its identity in leader election).
    pub fn start_as(ns: &TestNs, args: &[&str], pod_name: Option<&str>) -> Self {
        Self::start_with_env(ns, args, pod_name, &[])
    }

    /// Like [`start_as`](Self::start_as), with these environment variables (`HTTP_PROXY`…).
    pub fn start_with_env(
        ns: &TestNs,
        args: &[&str],
        pod_name: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let (all, label) = Self::args_for(ns, args, pod_name);
        Self::spawn(&ns.kubeconfig, all, &label, pod_name, env)
    }

    /// The arguments of a run for `ns` (see [`start`](Self::start)), and its log's label.
    fn args_for(ns: &TestNs, args: &[&str], pod_name: Option<&str>) -> (Vec<String>, String) {
        let mut all: Vec<String> = vec![
            format!("--namespace={}", ns.name),
            format!("--controller-namespace={}", ns.name),
        ];
        if !args.iter().any(|a| a.starts_with("--debounce")) {
            all.push("--debounce=500ms".into());
        }
        if !args.iter().any(|a| a.starts_with("--min-rollout-interval")) {
            all.push("--min-rollout-interval=1s".into());
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let label = format!("{}-{}", ns.name, pod_name.unwrap_or("r"));
        (all, label)
    }

    /// The address of the metrics and probe listener, once it is up.
    pub async fn http_addr(&self) -> std::net::SocketAddr {
        wait_for("the metrics listener", Duration::from_secs(30), || async {
            let logs = self.logs();
            let line = logs.lines().find(|l| l.contains("serving /metrics"))?;
            let addr = line.split("address=").nth(1)?.split_whitespace().next()?;
            addr.trim_matches('"').parse().ok()
        })
        .await
    }

    /// Starts the binary with these arguments (plus a metrics listener on a free loopback port,
    /// unless they name one).
    pub fn start_raw(kubeconfig: &std::path::Path, args: &[String], label: &str) -> Self {
        Self::spawn(kubeconfig, args.to_vec(), label, None, &[])
    }

    /// Like [`start_raw`](Self::start_raw), as pod `pod_name` (`POD_NAME`, its identity in
    /// leader election).
    pub fn start_raw_as(
        kubeconfig: &std::path::Path,
        args: &[String],
        label: &str,
        pod_name: &str,
    ) -> Self {
        Self::spawn(kubeconfig, args.to_vec(), label, Some(pod_name), &[])
    }

    fn spawn(
        kubeconfig: &std::path::Path,
        mut args: Vec<String>,
        label: &str,
        pod_name: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        if !args.iter().any(|a| a.starts_with("--metrics-addr")) {
            args.push("--metrics-addr=127.0.0.1:0".into());
        }
        let log = std::env::temp_dir().join(format!(
            "kube-reloader-{label}-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-reloader"));
        if let Some(p) = pod_name {
            cmd.env("POD_NAME", p);
        }
        cmd.args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "kube_reloader=debug,info")
            .env_remove("POD_NAMESPACE");
        // Alerts go where a test says, whatever proxy the machine running the tests has.
        for var in PROXY_VARIABLES.iter().chain(&["NO_PROXY", "no_proxy"]) {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        Self::spawn_command(cmd, log)
    }

    /// Runs `cmd`, a command that ends by executing kube-reloader in place (so that the child's
    /// pid is kube-reloader's), with its output in the log file `log`.
    pub fn spawn_command(mut cmd: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start kube-reloader");
        Self { child, log }
    }

    /// The process id of the running binary.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log containing every one of `needles`.
    pub fn count(&self, needles: &[&str]) -> usize {
        self.logs()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Waits until at least `n` log lines contain all of `needles`.
    pub async fn wait_count(&self, needles: &[&str], n: usize) {
        let what = format!("{n} log lines with {needles:?}");
        wait_for(&what, Duration::from_secs(60), || async {
            (self.count(needles) >= n).then_some(())
        })
        .await;
    }

    /// Waits until the workload `name` has been reconciled and found up to date `n` times in all.
    pub async fn wait_up_to_date(&self, name: &str, n: usize) {
        self.wait_count(&["up to date", &format!("name={name}")], n)
            .await;
    }

    /// Kills the process (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most 30 s) for the process to exit; its exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits (at most `timeout`) for the process to exit by itself; its exit status, or `None`
    /// if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- kube-reloader log ({}) ----\n{}",
                self.log.display(),
                self.logs()
            );
        }
    }
}
