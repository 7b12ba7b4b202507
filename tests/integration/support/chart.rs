//! The Helm chart rendered as `helm template` renders it (by tools/helm-render, built here from
//! Debian's Go packages), and the kubectl manifests read as objects, so the two can be compared
//! and applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use super::{repo_root, run_with_stdin};

/// Go 1.19 from Debian's golang-1.19-go, installed by hack/testenv.sh.
const GO: &str = "/usr/lib/go-1.19/bin/go";

/// The labels only Helm adds: every other field must be the same in the chart and manifests/.
pub const HELM_ONLY_LABELS: [&str; 2] = ["helm.sh/chart", "app.kubernetes.io/managed-by"];

/// The renderer binary, built once per test run. Panics with the way out if Go or the packages
/// are missing: a missing environment is a failure, never a skip.
fn renderer() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-render");
        let built = Command::new(GO)
            .args(["build", "-o"])
            .arg(&out)
            .arg("./tools/helm-render")
            .current_dir(repo_root())
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {GO} ({e}): run `make testenv` first"));
        assert!(
            built.status.success(),
            "building tools/helm-render failed (does `make testenv` pass?):\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        out
    })
}

/// One rendering of the chart.
pub struct Rendering {
    /// What `helm template` prints: one YAML document per object.
    pub yaml: String,
    pub objects: Vec<Value>,
}

impl Rendering {
    /// The object of this kind and name; panics listing what there is.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", ids(&self.objects)))
    }

    /// The container arguments of the Deployment (there is one).
    pub fn args(&self) -> Vec<String> {
        deployment_args(&self.objects)
    }
}

/// Renders charts/kube-reloader as `helm template RELEASE charts/kube-reloader -n NAMESPACE -f
/// values.yaml` would (for the test control plane's Kubernetes version), or returns the error
/// Helm would print.
pub fn render(release: &str, namespace: &str, values: &str) -> Result<Rendering, String> {
    let run = |output: &str| -> Result<String, String> {
        let out = run_with_stdin(
            Command::new(renderer())
                .args(["--name", release, "--namespace", namespace])
                .args(["--kube-version", "v1.20.2", "-o", output, "-f", "-"])
                .arg(repo_root().join("charts/kube-reloader")),
            values,
        );
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).expect("UTF-8 output"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let yaml = run("yaml")?;
    let objects = serde_json::from_str(&run("json")?).expect("renderer JSON");
    Ok(Rendering { yaml, objects })
}

/// The documents of a YAML file, or of a directory's *.yaml files in name order (as `kubectl
/// apply -f DIR` reads them).
pub fn yaml_documents(path: &str) -> Vec<Value> {
    let out = Command::new(renderer())
        .arg("yaml2json")
        .arg(repo_root().join(path))
        .output()
        .expect("run helm-render yaml2json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("renderer JSON")
}

/// The container arguments of the one Deployment among `objects`.
pub fn deployment_args(objects: &[Value]) -> Vec<String> {
    let deployments: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 1, "{:?}", ids(objects));
    deployments[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("string arg").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Objects keyed by kind/namespace/name, without the labels only Helm adds.
pub fn by_identity(objects: &[Value]) -> BTreeMap<String, Value> {
    objects
        .iter()
        .map(|o| {
            let mut o = o.clone();
            if let Some(labels) = o["metadata"]["labels"].as_object_mut() {
                for l in HELM_ONLY_LABELS {
                    labels.remove(l);
                }
            }
            (identity(&o), o)
        })
        .collect()
}

fn identity(o: &Value) -> String {
    format!(
        "{}/{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn ids(objects: &[Value]) -> Vec<String> {
    objects.iter().map(identity).collect()
}

/// Ok if every field of `want` is in `live` with the same value (the server adds defaults and
/// status); else the path of the first difference.
pub fn contains(live: &Value, want: &Value) -> Result<(), String> {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => w.iter().try_for_each(|(k, v)| {
            contains(l.get(k).unwrap_or(&Value::Null), v).map_err(|p| format!(".{k}{p}"))
        }),
        (Value::Array(l), Value::Array(w)) if l.len() == w.len() => l
            .iter()
            .zip(w)
            .enumerate()
            .try_for_each(|(i, (l, w))| contains(l, w).map_err(|p| format!("[{i}]{p}"))),
        _ if live == want => Ok(()),
        _ => Err(format!(": wanted {want}, found {live}")),
    }
}
