//! The Helm chart rendered by `helm template` (the pinned helm, see [`tools`]), and the kubectl
//! manifests read as objects, so the two can be compared and applied.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use super::{repo_root, run_with_stdin, tools};

/// The labels only Helm adds: every other field must be the same in the chart and manifests/.
pub const HELM_ONLY_LABELS: [&str; 2] = ["helm.sh/chart", "app.kubernetes.io/managed-by"];

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

/// Runs `helm template RELEASE charts/kube-reloader -n NAMESPACE -f values.yaml` for the test
/// control plane's Kubernetes version; returns the rendering, or the error helm prints.
/// Helm checks the values against charts/kube-reloader/values.schema.json first.
pub fn render(release: &str, namespace: &str, values: &str) -> Result<Rendering, String> {
    template(release, namespace, values, &[])
}

/// Like [`render`], with `--skip-schema-validation`: what the templates' own checks say to
/// someone who skips the schema.
pub fn render_without_schema(
    release: &str,
    namespace: &str,
    values: &str,
) -> Result<Rendering, String> {
    template(release, namespace, values, &["--skip-schema-validation"])
}

fn template(
    release: &str,
    namespace: &str,
    values: &str,
    flags: &[&str],
) -> Result<Rendering, String> {
    let out = run_with_stdin(
        Command::new(&tools().helm)
            .args(["template", release])
            .arg(repo_root().join("charts/kube-reloader"))
            .args(["--namespace", namespace, "--kube-version", &kube_version()])
            .args(flags)
            .args(["--values", "-"]),
        values,
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let yaml = String::from_utf8(out.stdout).expect("UTF-8 output");
    let objects = documents(&yaml, "helm template's output");
    Ok(Rendering { yaml, objects })
}

/// `helm lint --strict` of charts/kube-reloader: Ok with its report, or Err with it.
pub fn lint() -> Result<String, String> {
    let out = Command::new(&tools().helm)
        .args(["lint", "--strict", "--kube-version", &kube_version()])
        .arg(repo_root().join("charts/kube-reloader"))
        .output()
        .expect("run helm lint");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}

/// The test control plane's Kubernetes version, from hack/k8s-version.env.
fn kube_version() -> String {
    let env = std::fs::read_to_string(repo_root().join("hack/k8s-version.env"))
        .expect("hack/k8s-version.env");
    env.lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION="))
        .map(|v| format!("v{}", v.trim()))
        .expect("K8S_VERSION in hack/k8s-version.env")
}

/// The documents of a YAML file, or of a directory's *.yaml files in name order (as `kubectl
/// apply -f DIR` reads them).
pub fn yaml_documents(path: &str) -> Vec<Value> {
    let path = repo_root().join(path);
    let mut files = vec![path.clone()];
    if path.is_dir() {
        files = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
    }
    files
        .iter()
        .flat_map(|f| {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
            documents(&text, &f.display().to_string())
        })
        .collect()
}

/// The documents of a YAML stream, as JSON values; a document that is empty or only comments
/// holds no object and is left out.
fn documents(yaml: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
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

/// One value a user sets as a whole, with its default from values.yaml.
pub struct ChartValue {
    /// Its dotted path, as `--set` takes it: `image.digest`.
    pub path: String,
    pub default: Value,
}

/// The chart's values, in values.yaml's order. An object values.schema.json closes
/// (`additionalProperties: false`: image, log, metrics...) is a group of values and is walked
/// into; any other (resources, podLabels...) is one value, handed to Kubernetes as it is. A key
/// the schema does not describe counts as one value, so a comparison with the schema shows it.
pub fn chart_values() -> Vec<ChartValue> {
    let path = repo_root().join("charts/kube-reloader/values.yaml");
    let text = std::fs::read_to_string(&path).expect("charts/kube-reloader/values.yaml");
    // serde_norway's mappings keep the file's order; serde_json's (here) would sort the keys.
    let values: serde_norway::Value = serde_norway::from_str(&text).expect("values.yaml is YAML");
    let mut out = Vec::new();
    value_leaves("", &values, Some(&values_schema()), &mut out);
    out
}

fn value_leaves(
    path: &str,
    value: &serde_norway::Value,
    schema: Option<&Value>,
    out: &mut Vec<ChartValue>,
) {
    match value {
        serde_norway::Value::Mapping(map) if schema.is_some_and(closed) => {
            for (key, value) in map {
                let key = key.as_str().expect("values.yaml keys are strings");
                let schema = schema.and_then(|s| s["properties"].get(key));
                value_leaves(&join(path, key), value, schema, out);
            }
        }
        _ => out.push(ChartValue {
            path: path.to_string(),
            default: serde_json::to_value(value).expect("values.yaml converts to JSON"),
        }),
    }
}

/// charts/kube-reloader/values.schema.json.
pub fn values_schema() -> Value {
    let path = repo_root().join("charts/kube-reloader/values.schema.json");
    let text = std::fs::read_to_string(&path).expect("charts/kube-reloader/values.schema.json");
    serde_json::from_str(&text).expect("values.schema.json is JSON")
}

/// The values values.schema.json describes, walked as [`chart_values`] walks values.yaml: each
/// dotted path (in key order) with the schema of its value.
pub fn schema_values() -> Vec<(String, Value)> {
    fn walk(path: &str, schema: &Value, out: &mut Vec<(String, Value)>) {
        match schema["properties"].as_object() {
            Some(properties) if closed(schema) => {
                for (key, s) in properties {
                    walk(&join(path, key), s, out);
                }
            }
            _ => out.push((path.to_string(), schema.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", &values_schema(), &mut out);
    out
}

/// A schema of an object whose keys are all known: the chart's own groups of values.
fn closed(schema: &Value) -> bool {
    schema["additionalProperties"] == false
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// One row of the README's table of chart values (`| value | default | meaning |`).
pub struct ReadmeRow {
    /// The value's dotted path, without its backticks.
    pub key: String,
    pub default: String,
    pub meaning: String,
}

/// The rows of the README's chart values table, in order.
pub fn readme_values_table() -> Vec<ReadmeRow> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let rows: Vec<ReadmeRow> = readme
        .lines()
        .skip_while(|l| *l != "| value | default | meaning |")
        .skip(2) // the header and its |---| line
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(
                cells.len(),
                3,
                "README values table row {row:?}: want 3 cells"
            );
            ReadmeRow {
                key: cells[0].trim_matches('`').to_string(),
                default: cells[1].to_string(),
                meaning: cells[2].to_string(),
            }
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "README.md has no `| value | default | meaning |` table"
    );
    rows
}

/// The value a README default cell shows: its first `code span`, read as YAML (so `""`, `[]`,
/// `{cpu: 10m}`); None if it has none or it is not YAML.
pub fn shown_default(cell: &str) -> Option<Value> {
    let mut spans = cell.split('`');
    spans.next();
    let code = spans.next()?;
    spans.next()?; // the span must be closed
    serde_norway::from_str(code).ok()
}
