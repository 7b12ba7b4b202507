//! The Helm chart, rendered by the pinned `helm template`: it passes `helm lint --strict`, its
//! defaults render what manifests/ applies, every values combination applies server-side as
//! rendered, and bad values fail with a message naming them (values.schema.json's or the
//! templates'). values.yaml, values.schema.json and the README's values table describe the same
//! values. The workload kinds turned on (`kinds`, `workloadKinds`) get exactly their flags and
//! RBAC rules, which the binary parses to the same kinds and the API server grants as rendered;
//! so do the scope values (`namespaceSelector`: list and watch on namespaces;
//! `resourcesToIgnore`: that kind's rule left out, the key Secret's kept).
//! (The controller running as the chart's ServiceAccount is in install.rs.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::chart::{self, HELM_ONLY_LABELS, Rendering};
use crate::support::{TestNs, shared, wait_for};

#[test]
fn chart_passes_helm_lint_strict() {
    let report =
        chart::lint().unwrap_or_else(|report| panic!("helm lint --strict failed:\n{report}"));
    assert!(
        report.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{report}"
    );
}

#[test]
fn chart_defaults_render_exactly_what_the_manifests_apply() {
    for (values, dir) in [
        ("", "manifests"),
        ("watchNamespaces: [apps]", "manifests/namespaced"),
    ] {
        let rendering = chart::render("kube-reloader", "kube-reloader", values).expect("render");
        for o in &rendering.objects {
            let labels = &o["metadata"]["labels"];
            for l in HELM_ONLY_LABELS {
                assert!(labels[l].is_string(), "{l} missing on {o}");
            }
        }
        let rendered = chart::by_identity(&rendering.objects);
        let mut manifests = chart::by_identity(&chart::yaml_documents(dir));
        // A chart does not own its release namespace: `helm install --create-namespace` makes it.
        manifests.retain(|id, _| !id.starts_with("Namespace/"));
        assert_eq!(
            rendered.keys().collect::<Vec<_>>(),
            manifests.keys().collect::<Vec<_>>(),
            "the chart with values {values:?} and {dir} install different objects"
        );
        for (id, m) in &manifests {
            let r = &rendered[id];
            if let Err(at) = chart::contains(r, m).and_then(|_| chart::contains(m, r)) {
                panic!("{id} differs between the chart (values {values:?}) and {dir} at {at}");
            }
        }
    }
}

#[tokio::test]
async fn every_chart_rendering_applies_server_side_as_rendered() {
    let cp = shared();
    let release_ns = [
        TestNs::new("chart-defaults").await,
        TestNs::new("chart-ha").await,
        TestNs::new("chart-scoped").await,
        TestNs::new("chart-custom").await,
    ];
    let watched = [TestNs::new("chart-w1").await, TestNs::new("chart-w2").await];
    let ns = |i: usize| release_ns[i].name.as_str();

    let defaults = chart::render("defaults", ns(0), "").expect("render");
    let d = defaults.get("Deployment", "defaults-kube-reloader");
    assert_eq!(args(d), ["--leader-elect"]);
    assert!(defaults.objects.iter().any(|o| o["kind"] == "ClusterRole"));

    let ha = chart::render("ha", ns(1), "replicas: 3").expect("render");
    let d = ha.get("Deployment", "ha-kube-reloader");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(args(d), ["--leader-elect"]);
    let role = ha.get("Role", "ha-kube-reloader");
    assert!(role["rules"].to_string().contains("leases"), "{role}");

    let scoped = chart::render(
        "scoped",
        ns(2),
        &format!(
            "watchNamespaces: [{}, {}]",
            watched[0].name, watched[1].name
        ),
    )
    .expect("render");
    let d = scoped.get("Deployment", "scoped-kube-reloader");
    assert_eq!(
        args(d),
        [
            "--leader-elect".to_string(),
            format!("--namespace={}", watched[0].name),
            format!("--namespace={}", watched[1].name),
        ]
    );
    for w in &watched {
        let role = scoped
            .objects
            .iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == w.name.as_str());
        assert!(role.is_some(), "no Role in {}", w.name);
    }
    assert!(
        !scoped
            .objects
            .iter()
            .any(|o| o["kind"].as_str().unwrap().starts_with("Cluster")),
        "a namespaced install must not need cluster-wide RBAC"
    );

    let custom = chart::render("custom", ns(3), CUSTOM_VALUES).expect("render");
    check_custom(&custom, ns(3));

    // The custom values include a ServiceMonitor: the API server needs its kind first.
    cp.apply(SERVICE_MONITOR_CRD);
    cp.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
    ]);
    for r in [defaults, ha, scoped, custom].iter() {
        cp.apply(&r.yaml);
        for o in &r.objects {
            let kind = o["kind"].as_str().unwrap();
            let name = o["metadata"]["name"].as_str().unwrap();
            let mut get = vec!["get", kind, name, "-o", "json"];
            if let Some(n) = o["metadata"]["namespace"].as_str() {
                get.extend(["-n", n]);
            }
            let live: Value = serde_json::from_str(&cp.kubectl(&get)).expect("kubectl JSON");
            if let Err(path) = chart::contains(&live, o) {
                panic!(
                    "{kind} {name} on the server differs from its rendering at {path}:\n{live:#}"
                );
            }
        }
    }
}

/// Just enough of the Prometheus Operator's ServiceMonitor kind for the API server to store
/// one (its real schema is the operator's; only the group, names and scope matter here).
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

const CUSTOM_VALUES: &str = r#"
fullnameOverride: reloader
replicas: 0
image: {repository: registry.example/kube-reloader, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", pullPolicy: Always}
imagePullSecrets: [{name: pull}]
leaderElection: {enabled: false}
ignoreNamespaces: [kube-system, kube-public]
reloaderCompat: false
keySecretName: digest-key
log: {level: debug, format: json}
metricsPort: 8080
metrics: {serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}}
extraArgs: ["--debounce=5s"]
extraEnv: [{name: TZ, value: UTC}]
resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: "1", memory: 256Mi}}
podSecurityContext: {runAsNonRoot: true, runAsUser: 1000, fsGroup: 1000}
securityContext: {readOnlyRootFilesystem: true, privileged: false}
podAnnotations: {prometheus.io/scrape: "true"}
podLabels: {team: platform}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}]}]}}}
priorityClassName: system-cluster-critical
terminationGracePeriodSeconds: 60
serviceAccount: {create: false, name: existing}
rbac: {create: false}
"#;

fn check_custom(r: &Rendering, namespace: &str) {
    let kinds: Vec<&str> = r
        .objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["Service", "Deployment", "ServiceMonitor"],
        "rbac.create and serviceAccount.create are off; the ServiceMonitor brings its Service"
    );
    let selector =
        json!({"app.kubernetes.io/name": "kube-reloader", "app.kubernetes.io/instance": "custom"});
    let svc = r.get("Service", "reloader");
    assert_eq!(svc["spec"]["selector"], selector);
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    let sm = r.get("ServiceMonitor", "reloader");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(sm["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"],
        json!([namespace])
    );
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "interval": "15s"}])
    );
    let d = r.get("Deployment", "reloader");
    assert_eq!(d["metadata"]["namespace"], namespace);
    assert_eq!(
        args(d),
        [
            "--ignore-namespace=kube-system",
            "--ignore-namespace=kube-public",
            "--reloader-compat=false",
            "--key-secret=digest-key",
            "--log-level=debug",
            "--log-format=json",
            "--metrics-addr=0.0.0.0:8080",
            "--debounce=5s",
        ]
    );
    let pod = &d["spec"]["template"];
    let spec = &pod["spec"];
    let c = &spec["containers"][0];
    assert_eq!(
        c["image"],
        "registry.example/kube-reloader@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["env"][2], json!({"name": "TZ", "value": "UTC"}));
    assert_eq!(c["resources"]["limits"]["cpu"], "1");
    assert_eq!(c["securityContext"]["privileged"], false);
    assert_eq!(spec["securityContext"]["fsGroup"], 1000);
    assert_eq!(spec["serviceAccountName"], "existing");
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "pull"}]));
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(spec["terminationGracePeriodSeconds"], 60);
    assert_eq!(spec["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(spec["tolerations"][0]["value"], "infra");
    assert!(spec["affinity"]["nodeAffinity"].is_object());
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    assert_eq!(d["spec"]["selector"]["matchLabels"], selector);
}

#[test]
fn bad_chart_values_fail_with_a_message_that_says_what_to_change() {
    for (values, expected) in [
        (
            "replicas: 2\nleaderElection: {enabled: false}",
            "replicas: 2 needs leaderElection.enabled: true",
        ),
        // The schema refuses it before the template's own check (below) can.
        (
            "log: {format: xml}",
            "at '/log/format': value must be one of 'text', 'json'",
        ),
        ("image: {repository: \"\"}", "image.repository is required"),
        // null drops the key before the schema sees it; the binary refuses an empty --kinds.
        (
            "kinds: null",
            "kinds: list at least one built-in kind (Deployment, StatefulSet, DaemonSet, CronJob or Rollout)",
        ),
        // Each value is valid alone; together they make no sense (and would need cluster-wide
        // RBAC in a namespaced install).
        (
            "watchNamespaces: [a]\nnamespaceSelector: team=a",
            "namespaceSelector and watchNamespaces cannot both be set",
        ),
        (
            "watchNamespaces: [a]\nnamespaceSelector: team=a\nrbac: {create: false}",
            "namespaceSelector and watchNamespaces cannot both be set",
        ),
    ] {
        let err = chart::render("r", "ns", values)
            .err()
            .unwrap_or_else(|| panic!("values {values:?} rendered"));
        assert!(err.contains(expected), "{values:?}: {err}");
    }
    // With --skip-schema-validation, the template still refuses what it cannot pass on.
    let err = chart::render_without_schema("r", "ns", "log: {format: xml}")
        .err()
        .expect("log.format xml rendered without the schema");
    assert!(
        err.contains("log.format must be text or json, not \"xml\""),
        "{err}"
    );
    for (values, expected) in [
        (
            "workloadKinds: [apps/CloneSet]",
            "workloadKinds: \"apps/CloneSet\" is neither GROUP/VERSION/KIND[=PATH] (e.g. apps.kruise.io/v1alpha1/CloneSet) nor {kind: GROUP/VERSION/KIND[=PATH], resource: PLURAL}",
        ),
        (
            "workloadKinds: [{resource: mice}]",
            "workloadKinds: {\"resource\":\"mice\"} is neither",
        ),
        (
            "kinds: [Job]",
            "kinds: \"Job\" is not a built-in kind (Deployment, StatefulSet, DaemonSet, CronJob or Rollout); add other kinds with workloadKinds",
        ),
        // Also with rbac.create off: the Deployment's flags are checked as well.
        (
            "rbac: {create: false}\nworkloadKinds: [apps/CloneSet]",
            "workloadKinds: \"apps/CloneSet\" is neither",
        ),
        (
            "resourcesToIgnore: [configmaps, secrets]",
            "resourcesToIgnore: list configmaps or secrets, not both; with both ignored kube-reloader has nothing to watch and refuses to start",
        ),
        (
            "rbac: {create: false}\nresourcesToIgnore: [secrets, configmaps]",
            "resourcesToIgnore: list configmaps or secrets, not both",
        ),
        (
            "resourcesToIgnore: [pods]",
            "resourcesToIgnore: \"pods\" is neither configmaps nor secrets",
        ),
    ] {
        let err = chart::render_without_schema("r", "ns", values)
            .err()
            .unwrap_or_else(|| panic!("values {values:?} rendered without the schema"));
        assert!(err.contains(expected), "{values:?}: {err}");
    }
}

#[test]
fn values_the_schema_refuses_fail_naming_the_value() {
    for (values, expected) in [
        ("replicas: two", "at '/replicas': got string, want integer"),
        ("replicas: -1", "at '/replicas': minimum: got -1, want 0"),
        (
            "replica: 2",
            "at '': additional properties 'replica' not allowed",
        ),
        (
            "log: {lvl: debug}",
            "at '/log': additional properties 'lvl' not allowed",
        ),
        (
            "log: {level: loud}",
            "at '/log/level': value must be one of 'error', 'warn', 'info', 'debug', 'trace'",
        ),
        (
            "log: {format: xml}",
            "at '/log/format': value must be one of 'text', 'json'",
        ),
        (
            "image: {digest: abc}",
            "at '/image/digest': 'abc' does not match pattern '^(sha256:[0-9a-f]{64})?$'",
        ),
        (
            "image: {pullPolicy: always}",
            "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            "metricsPort: 70000",
            "at '/metricsPort': maximum: got 70,000, want 65,535",
        ),
        (
            "watchNamespaces: default",
            "at '/watchNamespaces': got string, want array",
        ),
        (
            "watchNamespaces: [Team_A]",
            "at '/watchNamespaces/0': 'Team_A' does not match pattern",
        ),
        (
            "leaderElection: {enabled: \"yes\"}",
            "at '/leaderElection/enabled': got string, want boolean",
        ),
        (
            "metrics: {serviceMonitor: {interval: 5 minutes}}",
            "at '/metrics/serviceMonitor/interval': '5 minutes' does not match pattern",
        ),
        (
            "podAnnotations: {prometheus.io/scrape: true}",
            "at '/podAnnotations/prometheus.io~1scrape': got boolean, want string",
        ),
        (
            "kinds: [deployment]",
            "at '/kinds/0': value must be one of 'Deployment', 'StatefulSet', 'DaemonSet', 'CronJob', 'Rollout'",
        ),
        ("kinds: [Job]", "at '/kinds/0': value must be one of"),
        ("kinds: []", "at '/kinds': minItems: got 0, want 1"),
        (
            "kinds: [Deployment, Deployment]",
            "at '/kinds': items at 0 and 1 are equal",
        ),
        (
            "workloadKinds: apps.kruise.io/v1alpha1/CloneSet",
            "at '/workloadKinds': got string, want array",
        ),
        // No version: it would read as the core group at version "apps".
        (
            "workloadKinds: [apps/CloneSet]",
            "at '/workloadKinds/0': 'apps/CloneSet' does not match pattern",
        ),
        (
            "workloadKinds: [apps.kruise.io/v1alpha1/cloneset]",
            "at '/workloadKinds/0': 'apps.kruise.io/v1alpha1/cloneset' does not match pattern",
        ),
        (
            "workloadKinds: [\"example.com/v1/Widget=spec..template\"]",
            "at '/workloadKinds/0': 'example.com/v1/Widget=spec..template' does not match pattern",
        ),
        (
            "workloadKinds: [{resource: mice}]",
            "at '/workloadKinds/0': missing property 'kind'",
        ),
        (
            "workloadKinds: [{kind: example.com/v1/Mouse, resource: Mice}]",
            "at '/workloadKinds/0/resource': 'Mice' does not match pattern",
        ),
        (
            "workloadKinds: [{kind: example.com/v1/Mouse, plural: mice}]",
            "at '/workloadKinds/0': additional properties 'plural' not allowed",
        ),
        (
            "workloadKinds: [{kind: example.com/v1}]",
            "at '/workloadKinds/0/kind': 'example.com/v1' does not match pattern",
        ),
        (
            "namespaceSelector: {team: payments}",
            "at '/namespaceSelector': got object, want string",
        ),
        // An empty requirement, which the binary refuses.
        (
            "namespaceSelector: \"team=payments,\"",
            "at '/namespaceSelector': 'team=payments,' does not match pattern",
        ),
        (
            "resourceLabelSelector: \"a=1,,b=2\"",
            "at '/resourceLabelSelector': 'a=1,,b=2' does not match pattern",
        ),
        (
            "resourcesToIgnore: secrets",
            "at '/resourcesToIgnore': got string, want array",
        ),
        (
            "resourcesToIgnore: [Secrets]",
            "at '/resourcesToIgnore/0': value must be one of 'configmaps', 'secrets'",
        ),
        (
            "resourcesToIgnore: [configmaps, secrets]",
            "at '/resourcesToIgnore': maxItems: got 2, want 1",
        ),
        (
            "autoReloadAll: \"true\"",
            "at '/autoReloadAll': got string, want boolean",
        ),
    ] {
        let err = chart::render("r", "ns", values)
            .err()
            .unwrap_or_else(|| panic!("values {values:?} rendered"));
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "{values:?}: {err}"
        );
        assert!(err.contains(expected), "{values:?}: {err}");
        assert_eq!(
            err.matches("- at '").count(),
            1,
            "{values:?} is the only bad value: {err}"
        );
    }
}

#[test]
fn values_the_schema_accepts_render() {
    for (values, check) in [
        // --set image.tag=2 gives a number; the chart writes it as text.
        ("image: {tag: 2}", "kube-reloader:2"),
        (
            "metrics: {serviceMonitor: {enabled: true, interval: 1h30m}}",
            "interval: \"1h30m\"",
        ),
        ("replicas: 0", "replicas: 0"),
        // The core group, and versions of every Kubernetes form.
        (
            "workloadKinds: [v1/PodTemplate]",
            "--workload-kind=v1/PodTemplate",
        ),
        (
            "workloadKinds: [example.com/v2beta3/Widget2]",
            "--workload-kind=example.com/v2beta3/Widget2",
        ),
        (
            "workloadKinds: [{kind: example.com/v1alpha1/Mouse}]",
            "resources: [\"mouses\"]",
        ),
        // The pod in the node's network (left out of validate.rs's every-value rendering: the
        // restricted Pod Security Standard forbids it).
        ("hostNetwork: true", "      hostNetwork: true\n"),
        // Selectors of every form the binary takes, Reloader's included, passed as they are.
        (
            "namespaceSelector: \"env in (prod,staging), !legacy\"",
            "--namespace-selector=env in (prod,staging), !legacy",
        ),
        (
            "resourceLabelSelector: \"reload:*\"",
            "--resource-label-selector=reload:*",
        ),
    ] {
        let r = chart::render("r", "ns", values)
            .unwrap_or_else(|err| panic!("values {values:?} refused: {err}"));
        assert!(r.yaml.contains(check), "{values:?}:\n{}", r.yaml);
    }
    // null removes a default Kubernetes object (Helm drops the key before the schema check).
    let r = chart::render("r", "ns", "resources: null").expect("resources: null refused");
    let c = &r.get("Deployment", "r-kube-reloader")["spec"]["template"]["spec"]["containers"][0];
    assert!(c["resources"].is_null(), "{c}");
}

#[test]
fn values_schema_describes_exactly_the_chart_values() {
    let values = chart::chart_values();
    let schema = chart::schema_values();
    same_paths(
        "values.yaml",
        values.iter().map(|v| v.path.as_str()),
        "values.schema.json",
        schema.iter().map(|(path, _)| path.as_str()),
    );
    for (path, s) in &schema {
        assert!(
            ["type", "enum", "$ref"].iter().any(|k| s.get(k).is_some()),
            "values.schema.json says nothing of {path}'s type: {s}"
        );
    }
}

#[test]
fn readme_values_table_lists_every_chart_value_with_its_default() {
    let values = chart::chart_values();
    let rows = chart::readme_values_table();
    let listed: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let paths: Vec<&str> = values.iter().map(|v| v.path.as_str()).collect();
    same_paths(
        "values.yaml",
        paths.iter().copied(),
        "the README's values table",
        listed.iter().copied(),
    );
    assert_eq!(
        listed, paths,
        "the README lists the values in another order than values.yaml"
    );
    for (row, value) in rows.iter().zip(&values) {
        assert_eq!(
            chart::shown_default(&row.default).as_ref(),
            Some(&value.default),
            "the README shows {}'s default as {:?}, values.yaml has {}: its first `code span` must be that value",
            row.key,
            row.default,
            value.default
        );
        assert!(
            !row.meaning.is_empty(),
            "the README does not say what {} is for",
            row.key
        );
    }
}

/// Panics naming the value paths only one side has.
fn same_paths<'a>(
    left: &str,
    left_paths: impl Iterator<Item = &'a str>,
    right: &str,
    right_paths: impl Iterator<Item = &'a str>,
) {
    let l: BTreeSet<&str> = left_paths.collect();
    let r: BTreeSet<&str> = right_paths.collect();
    let only_left: Vec<_> = l.difference(&r).collect();
    let only_right: Vec<_> = r.difference(&l).collect();
    assert!(
        only_left.is_empty() && only_right.is_empty(),
        "only in {left}: {only_left:?}; only in {right}: {only_right:?}"
    );
}

fn args(deployment: &Value) -> Vec<String> {
    chart::deployment_args(std::slice::from_ref(deployment))
}

/// Kinds of every shape `workloadKinds` takes: a custom group, plurals in -ies, -s after a vowel
/// and y, and -es, a map naming an irregular resource, and a batch/v1beta1 CronJob replacing the
/// built-in batch/v1 one.
const WORKLOAD_KINDS: &str = r#"
workloadKinds:
  - apps.kruise.io/v1alpha1/CloneSet
  - example.com/v1/Policy
  - example.com/v1/Gateway
  - example.com/v1/Box=spec.workload.podTemplate
  - {kind: "example.com/v2/Mouse=spec.pod", resource: mice}
  - batch/v1beta1/CronJob=spec.jobTemplate.spec.template
"#;

/// The rules [`WORKLOAD_KINDS`] grants: the built-in kinds', each workload kind's group and
/// resource once, one rule per group, in the order the kinds are resolved.
fn workload_kinds_rules() -> Value {
    let workloads = |group: &str, resources: &[&str]| json!({"apiGroups": [group], "resources": resources, "verbs": ["list", "watch", "patch"]});
    json!([
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["list", "watch"]},
        workloads("apps", &["deployments", "statefulsets", "daemonsets"]),
        workloads("batch", &["cronjobs"]),
        workloads("argoproj.io", &["rollouts"]),
        workloads("apps.kruise.io", &["clonesets"]),
        workloads("example.com", &["policies", "gateways", "boxes", "mice"]),
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

const WORKLOAD_KIND_ARGS: [&str; 6] = [
    "--workload-kind=apps.kruise.io/v1alpha1/CloneSet",
    "--workload-kind=example.com/v1/Policy",
    "--workload-kind=example.com/v1/Gateway",
    "--workload-kind=example.com/v1/Box=spec.workload.podTemplate",
    "--workload-kind=example.com/v2/Mouse=spec.pod",
    "--workload-kind=batch/v1beta1/CronJob=spec.jobTemplate.spec.template",
];

#[test]
fn workload_kinds_render_one_flag_each_and_rbac_on_exactly_their_resources() {
    let r = chart::render("r", "ns", WORKLOAD_KINDS).expect("render");
    let mut expected = vec!["--leader-elect"];
    expected.extend(WORKLOAD_KIND_ARGS);
    assert_eq!(r.args(), expected);
    assert_eq!(
        r.get("ClusterRole", "r-kube-reloader")["rules"],
        workload_kinds_rules()
    );

    // Namespaced: each watched namespace's Role grants the same.
    let values = format!("watchNamespaces: [a, b]\n{WORKLOAD_KINDS}");
    let r = chart::render("r", "ns", &values).expect("render");
    for ns in ["a", "b"] {
        let role = r
            .objects
            .iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("no Role in {ns}"));
        assert_eq!(role["rules"], workload_kinds_rules(), "Role in {ns}");
    }
}

/// The binary, given the Deployment's arguments, resolves exactly the kinds the chart grants
/// RBAC on: each by its group and the plural the binary itself would name it by (the map's
/// irregular `mice` excepted, which only RBAC needs).
#[test]
fn the_binary_rolls_exactly_the_kinds_the_chart_grants() {
    use clap::Parser;
    for values in [
        WORKLOAD_KINDS.to_string(),
        format!("kinds: [Deployment, Rollout]\n{WORKLOAD_KINDS}"),
        "kinds: [StatefulSet]".to_string(),
        String::new(),
    ] {
        let r = chart::render("r", "ns", &values).expect("render");
        let args = std::iter::once("kube-reloader".to_string()).chain(r.args());
        let parsed = kube_reloader::cli::Args::try_parse_from(args)
            .unwrap_or_else(|e| panic!("values {values:?}: the binary refuses the args: {e}"));
        let mut resolved: Vec<(String, String)> = parsed
            .kinds()
            .iter()
            .map(|k| (k.spec().group.to_string(), k.as_str().to_string()))
            .collect();
        let mut granted: Vec<(String, String)> = Vec::new();
        for rule in workload_rules(&r) {
            let group = rule["apiGroups"][0]
                .as_str()
                .expect("one group")
                .to_string();
            for resource in rule["resources"].as_array().expect("resources") {
                let resource = resource.as_str().expect("resource");
                let kind = parsed
                    .kinds()
                    .into_iter()
                    .find(|k| {
                        let irregular = resource == "mice" && k.as_str() == "Mouse";
                        k.spec().group == group
                            && (irregular || k.is_named(&format!("{resource}.{group}")))
                    })
                    .unwrap_or_else(|| {
                        panic!("values {values:?}: RBAC on {resource}.{group}, a kind the binary does not roll")
                    });
                granted.push((group.clone(), kind.as_str().to_string()));
            }
        }
        resolved.sort();
        granted.sort();
        assert_eq!(granted, resolved, "values {values:?}");
    }
}

#[test]
fn kinds_turned_off_get_no_rbac_and_a_kinds_flag() {
    let r = chart::render("r", "ns", "kinds: [Deployment]").expect("render");
    assert_eq!(r.args(), ["--leader-elect", "--kinds=Deployment"]);
    let rules = &r.get("ClusterRole", "r-kube-reloader")["rules"];
    assert_eq!(
        rules,
        &json!([
            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch", "patch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ])
    );
    for gone in ["statefulsets", "daemonsets", "cronjobs", "rollouts"] {
        assert!(!r.yaml.contains(gone), "{gone} in\n{}", r.yaml);
    }

    // Another order than the default's is passed as it is; the rules follow it.
    let r = chart::render("r", "ns", "kinds: [Rollout, Deployment, CronJob]").expect("render");
    assert_eq!(
        r.args(),
        ["--leader-elect", "--kinds=Rollout,Deployment,CronJob"]
    );
    let groups: Vec<Value> = workload_rules(&r)
        .iter()
        .map(|rule| rule["apiGroups"][0].clone())
        .collect();
    assert_eq!(groups, ["argoproj.io", "apps", "batch"]);
}

/// The rules granting list, watch and patch (the workload kinds') of the release's ClusterRole.
fn workload_rules(r: &Rendering) -> Vec<Value> {
    let role = r
        .objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|rule| rule["verbs"] == json!(["list", "watch", "patch"]))
        .cloned()
        .collect()
}

/// The rendering with `workloadKinds` applied to the API server: the ClusterRole there holds the
/// rules as rendered, and they authorize the chart's ServiceAccount for exactly those kinds.
#[tokio::test]
async fn workload_kinds_rbac_applied_to_the_server_grants_exactly_those_kinds() {
    let cp = shared();
    let ns = TestNs::new("chart-kinds").await;
    let r = chart::render("kinds", &ns.name, WORKLOAD_KINDS).expect("render");
    cp.apply(&r.yaml);
    let live: Value = serde_json::from_str(&cp.kubectl(&[
        "get",
        "clusterrole",
        "kinds-kube-reloader",
        "-o",
        "json",
    ]))
    .expect("kubectl JSON");
    assert_eq!(live["rules"], workload_kinds_rules(), "{live:#}");

    // Asked of the authorizer directly: `kubectl auth can-i` answers no for a resource the
    // server does not serve (no CRD here), whatever RBAC says.
    let sa = format!("system:serviceaccount:{}:kinds-kube-reloader", ns.name);
    let can_i = |verb: &str, resource: &str| allowed(&sa, &ns.name, verb, resource, "");
    // The authorizer learns of new RBAC objects through its own watch, a moment after apply.
    wait_for(
        "the ClusterRole to reach the authorizer",
        Duration::from_secs(30),
        || async { can_i("list", "clonesets.apps.kruise.io").then_some(()) },
    )
    .await;
    for resource in [
        "clonesets.apps.kruise.io",
        "policies.example.com",
        "gateways.example.com",
        "boxes.example.com",
        "mice.example.com",
        "cronjobs.batch",
        "rollouts.argoproj.io",
        "deployments.apps",
    ] {
        for verb in ["list", "watch", "patch"] {
            assert!(can_i(verb, resource), "{sa} may not {verb} {resource}");
        }
        for verb in ["get", "update", "delete", "create"] {
            assert!(!can_i(verb, resource), "{sa} may {verb} {resource}");
        }
    }
    for (verb, resource) in [
        ("create", "jobs.batch"),
        ("list", "jobs.batch"),
        ("patch", "mouses.example.com"),
        ("patch", "clonesets.apps"),
    ] {
        assert!(!can_i(verb, resource), "{sa} may {verb} {resource}");
    }
}

/// Whether the authorizer lets `user` do `verb` on `resource` (`plural.group`, or `plural` in the
/// core group) in `namespace` (`""`: cluster-wide), on the object `name` (`""`: any), asked with
/// a SubjectAccessReview.
fn allowed(user: &str, namespace: &str, verb: &str, resource: &str, name: &str) -> bool {
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": {"namespace": namespace, "verb": verb,
            "group": group, "resource": resource, "name": name}},
    });
    let args = ["create", "-f", "-", "-o", "jsonpath={.status.allowed}"];
    shared().kubectl_stdout(&args, &review.to_string()).trim() == "true"
}

/// The ClusterRole's rules with the default kinds, its rule on ConfigMaps and Secrets granting
/// `configs` (what `resourcesToIgnore` leaves), and the rule on namespaces if `namespaces`.
fn scope_rules(configs: &[&str], namespaces: bool) -> Value {
    let workloads = |group: &str, resources: &[&str]| json!({"apiGroups": [group], "resources": resources, "verbs": ["list", "watch", "patch"]});
    let mut rules = vec![
        json!({"apiGroups": [""], "resources": configs, "verbs": ["list", "watch"]}),
        workloads("apps", &["deployments", "statefulsets", "daemonsets"]),
        workloads("batch", &["cronjobs"]),
        workloads("argoproj.io", &["rollouts"]),
        json!({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}),
    ];
    if namespaces {
        rules.push(
            json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}),
        );
    }
    Value::from(rules)
}

const BOTH: [&str; 2] = ["configmaps", "secrets"];

/// Each of the scope values alone: its flag, and the RBAC it changes (list and watch on
/// namespaces for `namespaceSelector`, the ignored kind's rule gone for `resourcesToIgnore`),
/// nothing else. The controller's own Role (its key Secret, its Lease) is the same throughout.
#[test]
fn scope_values_render_their_flag_and_exactly_their_rbac() {
    let defaults = chart::render("r", "ns", "").expect("render");
    assert_eq!(
        defaults.get("ClusterRole", "r-kube-reloader")["rules"],
        scope_rules(&BOTH, false)
    );
    let own_role = defaults.get("Role", "r-kube-reloader")["rules"].clone();
    assert_eq!(
        own_role,
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["kube-reloader-key"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch", "list", "watch"]},
        ])
    );
    for (values, flag, rules) in [
        (
            "namespaceSelector: team=payments",
            "--namespace-selector=team=payments",
            scope_rules(&BOTH, true),
        ),
        // Reloader's forms are the binary's to translate: passed as they are.
        (
            "namespaceSelector: \"team:payments,env:*\"",
            "--namespace-selector=team:payments,env:*",
            scope_rules(&BOTH, true),
        ),
        (
            "resourceLabelSelector: reload=true",
            "--resource-label-selector=reload=true",
            scope_rules(&BOTH, false),
        ),
        (
            "autoReloadAll: true",
            "--auto-reload-all",
            scope_rules(&BOTH, false),
        ),
        (
            "resourcesToIgnore: [secrets]",
            "--resources-to-ignore=secrets",
            scope_rules(&["configmaps"], false),
        ),
        (
            "resourcesToIgnore: [configmaps]",
            "--resources-to-ignore=configmaps",
            scope_rules(&["secrets"], false),
        ),
    ] {
        let r = chart::render("r", "ns", values).expect("render");
        assert_eq!(r.args(), ["--leader-elect", flag], "{values}");
        assert_eq!(
            r.get("ClusterRole", "r-kube-reloader")["rules"],
            rules,
            "{values}"
        );
        assert_eq!(
            r.get("Role", "r-kube-reloader")["rules"],
            own_role,
            "{values}: the key Secret and Lease rules must stay"
        );
    }
    // Off, as by default, each is absent: empty selectors and false are not passed.
    let r = chart::render(
        "r",
        "ns",
        "namespaceSelector: \"\"\nresourceLabelSelector: \"\"\nautoReloadAll: false\nresourcesToIgnore: []",
    )
    .expect("render");
    assert_eq!(r.args(), ["--leader-elect"]);
    assert_eq!(
        r.get("ClusterRole", "r-kube-reloader")["rules"],
        scope_rules(&BOTH, false)
    );

    // Namespaced: each watched namespace's Role leaves the ignored kind out as well, and nothing
    // is granted cluster-wide.
    let r = chart::render(
        "r",
        "ns",
        "watchNamespaces: [a, b]\nresourcesToIgnore: [secrets]",
    )
    .expect("render");
    for ns in ["a", "b"] {
        let role = r
            .objects
            .iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("no Role in {ns}"));
        assert_eq!(
            role["rules"],
            scope_rules(&["configmaps"], false),
            "Role in {ns}"
        );
    }
    assert_eq!(r.get("Role", "r-kube-reloader")["rules"], own_role);
    assert!(
        !r.objects
            .iter()
            .any(|o| o["kind"].as_str().unwrap().starts_with("Cluster")),
        "a namespaced install must not need cluster-wide RBAC"
    );
}

/// `csi.enabled`: its flag, and exactly the rules the CSI integration uses, cluster-wide or in
/// each watched namespace; off (the default), none of them and no flag.
#[test]
fn csi_enabled_renders_its_flag_and_exactly_its_rbac() {
    let csi_rules = [
        json!({"apiGroups": ["secrets-store.csi.x-k8s.io"], "resources": ["secretproviderclasses", "secretproviderclasspodstatuses"], "verbs": ["list", "watch"]}),
        json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
        json!({"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get"]}),
    ];
    let with_csi = |mut rules: Value| {
        let list = rules.as_array_mut().expect("rules");
        let events = list.pop().expect("the events rule last");
        list.extend(csi_rules.iter().cloned());
        list.push(events);
        rules
    };
    for off in ["", "csi: {enabled: false}"] {
        let r = chart::render("r", "ns", off).expect("render");
        assert_eq!(r.args(), ["--leader-elect"], "{off}");
        let rules = &r.get("ClusterRole", "r-kube-reloader")["rules"];
        assert_eq!(rules, &scope_rules(&BOTH, false), "{off}");
        assert!(!rules.to_string().contains("secrets-store"), "{off}");
    }
    let r = chart::render("r", "ns", "csi: {enabled: true}").expect("render");
    assert_eq!(r.args(), ["--leader-elect", "--enable-csi-integration"]);
    assert_eq!(
        r.get("ClusterRole", "r-kube-reloader")["rules"],
        with_csi(scope_rules(&BOTH, false))
    );
    let r = chart::render("r", "ns", "csi: {enabled: true}\nwatchNamespaces: [a]").expect("render");
    let role = r
        .objects
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == "a")
        .expect("a Role in a");
    assert_eq!(role["rules"], with_csi(scope_rules(&BOTH, false)));
    // The binary takes the flag as the chart means it.
    use clap::Parser;
    let args = std::iter::once("kube-reloader".to_string()).chain(r.args());
    let parsed = kube_reloader::cli::Args::try_parse_from(args).expect("the binary's args");
    assert!(parsed.enable_csi_integration && parsed.scope().csi());
}

/// `progressive`: its flags, and list on pods (the crash-loop check) with `enabled` or
/// `listPods`, cluster-wide or in each watched namespace; off (the default), neither.
#[test]
fn progressive_renders_its_flags_and_exactly_its_rbac() {
    let pods = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]});
    let with_pods = |mut rules: Value| {
        let list = rules.as_array_mut().expect("rules");
        let events = list.pop().expect("the events rule last");
        list.push(pods.clone());
        list.push(events);
        rules
    };
    for off in ["", "progressive: {enabled: false}"] {
        let r = chart::render("r", "ns", off).expect("render");
        assert_eq!(r.args(), ["--leader-elect"], "{off}");
        let rules = &r.get("ClusterRole", "r-kube-reloader")["rules"];
        assert_eq!(rules, &scope_rules(&BOTH, false), "{off}");
    }
    let values =
        "progressive: {enabled: true, waves: \"2,50%\", rolloutTimeout: 5m, rolloutSoak: 1m}";
    let r = chart::render("r", "ns", values).expect("render");
    assert_eq!(
        r.args(),
        [
            "--leader-elect",
            "--progressive",
            "--rollout-waves=2,50%",
            "--rollout-timeout=5m",
            "--rollout-soak=1m"
        ]
    );
    assert_eq!(
        r.get("ClusterRole", "r-kube-reloader")["rules"],
        with_pods(scope_rules(&BOTH, false))
    );
    // The binary takes the flags as the chart means them.
    use clap::Parser;
    let args = std::iter::once("kube-reloader".to_string()).chain(r.args());
    let parsed = kube_reloader::cli::Args::try_parse_from(args).expect("the binary's args");
    assert!(parsed.progressive);
    assert_eq!(parsed.rollout_waves, "2,50%".parse().unwrap());
    assert_eq!(parsed.rollout_timeout, Duration::from_secs(300));
    assert_eq!(parsed.rollout_soak, Duration::from_secs(60));
    // Only some configs progressive: the pods rule without the flag, in each namespace's Role.
    let r = chart::render(
        "r",
        "ns",
        "progressive: {listPods: true}\nwatchNamespaces: [a]",
    )
    .expect("render");
    assert_eq!(r.args(), ["--leader-elect", "--namespace=a"]);
    let role = r
        .objects
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == "a")
        .expect("a Role in a");
    assert_eq!(role["rules"], with_pods(scope_rules(&BOTH, false)));
    // Values the binary would refuse are refused by the schema.
    for bad in [
        "progressive: {waves: \"1, 10%\"}",
        "progressive: {rolloutTimeout: 10}",
        "progressive: {canary: true}",
    ] {
        assert!(chart::render("r", "ns", bad).is_err(), "{bad}");
    }
}

/// All of them together: the binary takes the Deployment's arguments and reads each as the
/// values meant it.
#[test]
fn the_binary_reads_the_scope_values_as_the_chart_means_them() {
    use clap::Parser;
    use kube_reloader::rules::references::ConfigKind;
    let values = r#"
ignoreNamespaces: [kube-system]
namespaceSelector: "team:payments, env in (prod,staging)"
resourceLabelSelector: "reload:*"
resourcesToIgnore: [secrets]
autoReloadAll: true
"#;
    let r = chart::render("r", "ns", values).expect("render");
    assert_eq!(
        r.args(),
        [
            "--leader-elect",
            "--ignore-namespace=kube-system",
            "--namespace-selector=team:payments, env in (prod,staging)",
            "--resource-label-selector=reload:*",
            "--resources-to-ignore=secrets",
            "--auto-reload-all",
        ]
    );
    let args = std::iter::once("kube-reloader".to_string()).chain(r.args());
    let parsed = kube_reloader::cli::Args::try_parse_from(args)
        .unwrap_or_else(|e| panic!("the binary refuses the args: {e}"));
    assert_eq!(
        parsed.namespace_selector.as_deref(),
        Some("team=payments,env in (prod,staging)")
    );
    assert_eq!(parsed.resource_label_selector.as_deref(), Some("reload"));
    assert_eq!(parsed.resources_to_ignore, [ConfigKind::Secret]);
    assert!(parsed.auto_reload_all && parsed.leader_elect);
    assert_eq!(parsed.ignore_namespaces, ["kube-system"]);
}

/// The rendering with `namespaceSelector` and `resourcesToIgnore: [secrets]` applied to the API
/// server: the ServiceAccount may list and watch namespaces (nothing more on them), may no longer
/// read Secrets across namespaces, and still reads and creates its own key Secret.
#[tokio::test]
async fn scope_values_rbac_applied_to_the_server_grants_namespaces_and_no_secrets() {
    let cp = shared();
    let ns = TestNs::new("chart-scope").await;
    let other = TestNs::new("chart-scope-other").await;
    let values = "namespaceSelector: team=payments\nresourcesToIgnore: [secrets]";
    let r = chart::render("selector", &ns.name, values).expect("render");
    cp.apply(&r.yaml);
    let live: Value = serde_json::from_str(&cp.kubectl(&[
        "get",
        "clusterrole",
        "selector-kube-reloader",
        "-o",
        "json",
    ]))
    .expect("kubectl JSON");
    assert_eq!(
        live["rules"],
        scope_rules(&["configmaps"], true),
        "{live:#}"
    );

    let sa = format!("system:serviceaccount:{}:selector-kube-reloader", ns.name);
    // The authorizer learns of new RBAC objects through its own watch, a moment after apply.
    wait_for(
        "the ClusterRole to reach the authorizer",
        Duration::from_secs(30),
        || async { allowed(&sa, "", "list", "namespaces", "").then_some(()) },
    )
    .await;
    for verb in ["list", "watch"] {
        assert!(
            allowed(&sa, "", verb, "namespaces", ""),
            "{sa} may not {verb} namespaces"
        );
        assert!(
            allowed(&sa, &other.name, verb, "configmaps", ""),
            "{sa} may not {verb} configmaps"
        );
    }
    for verb in ["get", "create", "update", "patch", "delete"] {
        assert!(
            !allowed(&sa, "", verb, "namespaces", other.name.as_str()),
            "{sa} may {verb} namespaces"
        );
    }
    for verb in ["list", "watch", "get"] {
        for namespace in [other.name.as_str(), ns.name.as_str()] {
            assert!(
                !allowed(&sa, namespace, verb, "secrets", ""),
                "{sa} may {verb} secrets in {namespace}"
            );
        }
    }
    // Its own key Secret keeps its rules.
    assert!(allowed(
        &sa,
        &ns.name,
        "get",
        "secrets",
        "kube-reloader-key"
    ));
    assert!(allowed(&sa, &ns.name, "create", "secrets", ""));
    assert!(!allowed(&sa, &ns.name, "get", "secrets", "another"));
}
