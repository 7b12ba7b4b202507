//! A Helm release of charts/kube-reloader on a test control plane, managed with the pinned helm
//! (see [`tools`]) as a user would: `--kubeconfig` and `--namespace` on every command. `--wait`
//! only on a control plane with a node: without a kubelet the Deployment's pods never become
//! ready.

use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use super::{ControlPlane, repo_root, run_with_stdin, tools};

/// One revision of a release, as `helm history -o json` lists it.
#[derive(Debug, Deserialize)]
pub struct Revision {
    pub revision: u32,
    pub status: String,
    pub description: String,
}

/// The release `name` in `namespace` on `cp`.
pub struct Release<'a> {
    pub cp: &'a ControlPlane,
    pub name: &'a str,
    pub namespace: &'a str,
}

impl Release<'_> {
    /// Runs `helm ARGS --kubeconfig … --namespace …` with `input` on its stdin: Ok with what it
    /// prints, or Err with that and its exit status.
    pub fn helm(&self, args: &[&str], input: &str) -> Result<String, String> {
        let mut cmd = Command::new(&tools().helm);
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(&self.cp.kubeconfig)
            .args(["--namespace", self.namespace]);
        let out = run_with_stdin(&mut cmd, input);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("helm {args:?} failed ({}):\n{text}", out.status))
        }
    }

    fn must(&self, args: &[&str], input: &str) -> String {
        self.helm(args, input).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `helm install` of charts/kube-reloader with these values (YAML), creating the namespace.
    pub fn install(&self, values: &str) -> String {
        self.install_with(values, &[])
    }

    /// Like [`install`](Self::install), with further flags (`--wait`, on a control plane with a
    /// node).
    pub fn install_with(&self, values: &str, flags: &[&str]) -> String {
        let chart = chart_dir();
        let mut args = vec![
            "install",
            self.name,
            &chart,
            "--create-namespace",
            "--values",
            "-",
        ];
        args.extend(flags);
        self.must(&args, values)
    }

    /// `helm upgrade --reuse-values` to charts/kube-reloader, with these `--set` overrides.
    pub fn upgrade_reusing_values(&self, set: &[&str]) -> String {
        let chart = chart_dir();
        let mut args = vec!["upgrade", self.name, &chart, "--reuse-values"];
        for s in set {
            args.extend(["--set", s]);
        }
        self.must(&args, "")
    }

    /// `helm rollback` to `revision`.
    pub fn rollback(&self, revision: u32) -> String {
        self.must(&["rollback", self.name, &revision.to_string()], "")
    }

    /// `helm uninstall`.
    pub fn uninstall(&self) -> String {
        self.must(&["uninstall", self.name], "")
    }

    /// The objects of the current revision, as `helm get manifest` prints them.
    pub fn manifest(&self) -> Vec<Value> {
        let yaml = self.must(&["get", "manifest", self.name], "");
        serde_norway::Deserializer::from_str(&yaml)
            .map(|doc| Value::deserialize(doc).expect("helm get manifest prints YAML"))
            .filter(|v| !v.is_null())
            .collect()
    }

    /// Every revision, oldest first.
    pub fn history(&self) -> Vec<Revision> {
        let json = self.must(&["history", self.name, "--output", "json"], "");
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("helm history: {e}: {json}"))
    }

    /// The releases of the namespace in any state, by name. (Helm 4's `helm list` has no
    /// `--all`: each state is asked for.)
    pub fn list_all(&self) -> Vec<String> {
        let states = [
            "--deployed",
            "--failed",
            "--pending",
            "--superseded",
            "--uninstalled",
            "--uninstalling",
        ];
        let mut args = vec!["list", "--short"];
        args.extend(states);
        self.must(&args, "").lines().map(str::to_string).collect()
    }
}

fn chart_dir() -> String {
    let dir = repo_root().join("charts/kube-reloader");
    dir.to_str().expect("UTF-8 path").to_string()
}
