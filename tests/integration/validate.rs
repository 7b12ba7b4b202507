//! The Kubernetes versions users run, which the 1.20 test API server cannot stand in for: every
//! rendering of the chart and everything in manifests/ is validated offline against the OpenAPI
//! schemas of Kubernetes 1.30 to 1.35 by kubernetes-validate in strict mode (an unknown field is
//! an error), and every Deployment is checked against the Pod Security Standards' restricted
//! profile. kubernetes-validate is the one hack/testenv.sh installs (pinned in
//! hack/validate-requirements.txt); a test that cannot run it fails, saying why.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::support::chart;
use crate::support::{repo_root, tools};

/// The Kubernetes versions whose schemas everything is validated against.
const KUBERNETES_VERSIONS: [&str; 6] = ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35"];

/// Kinds that Kubernetes' own schemas do not describe, so kubernetes-validate has nothing to check
/// them against (it only warns, and passes). They are left out of schema validation here, by name,
/// and every test that leaves one out says so on stderr.
const NOT_IN_KUBERNETES: [(&str, &str); 1] = [
    // The Prometheus Operator's CRD: its schema is the operator's, not Kubernetes'.
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
];

/// A value set touching every value of the chart that shapes an object (but fullnameOverride and
/// image.tag, which nameOverride and image.digest stand in for, and hostNetwork, which the
/// restricted Pod Security Standard checked below forbids: chart.rs checks it), with every object it can create
/// on (chart.rs's custom set, private to it, turns the ServiceAccount and RBAC off). The chart
/// refuses namespaceSelector with watchNamespaces, so namespaceSelector has a rendering of its
/// own below.
const EVERY_VALUE: &str = r#"
nameOverride: reloader
image: {repository: registry.example/kube-reloader, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", pullPolicy: Always}
imagePullSecrets: [{name: pull}]
replicas: 3
leaderElection: {enabled: true, leaseName: reloader-lease}
watchNamespaces: [apps, web]
ignoreNamespaces: [kube-system]
resourceLabelSelector: "reload in (yes,true)"
resourcesToIgnore: [secrets]
kinds: [Deployment, StatefulSet, CronJob]
workloadKinds: [apps.kruise.io/v1alpha1/CloneSet, {kind: "example.com/v1/Mouse=spec.pod", resource: mice}, batch/v1beta1/CronJob=spec.jobTemplate.spec.template]
reloaderCompat: false
autoReloadAll: true
csi: {enabled: true}
keySecretName: digest-key
log: {level: debug, format: json}
metricsPort: 8080
metrics: {service: {enabled: true}, serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}}
alerts: {webhookUrlSecret: {name: alert-webhook, key: url}, format: teams}
clusterName: prod-eu
extraArgs: ["--debounce=5s"]
extraEnv: [{name: TZ, value: UTC}, {name: TOKEN, valueFrom: {secretKeyRef: {name: token, key: value}}}]
resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: "1", memory: 256Mi}}
podSecurityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000}
securityContext: {privileged: false}
podAnnotations: {prometheus.io/scrape: "true"}
podLabels: {team: platform}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}]}]}}}
priorityClassName: system-cluster-critical
terminationGracePeriodSeconds: 60
serviceAccount: {create: true, name: reloader-sa, annotations: {example.com/role: reloader}}
rbac: {create: true}
"#;

/// The chart's renderings checked here: (what, values).
const RENDERINGS: [(&str, &str); 7] = [
    ("chart-defaults", ""),
    ("chart-namespaced", "watchNamespaces: [apps, web]"),
    (
        "chart-namespace-selector",
        "namespaceSelector: \"team:payments, env in (prod,staging)\"\nresourcesToIgnore: [configmaps]\nignoreNamespaces: [kube-system]",
    ),
    ("chart-ha", "replicas: 2"),
    (
        "chart-metrics",
        "metrics: {service: {enabled: true}, serviceMonitor: {enabled: true}}",
    ),
    (
        "chart-workload-kinds",
        "workloadKinds: [apps.kruise.io/v1alpha1/CloneSet, serving.knative.dev/v1/Service, example.com/v1/Policy=spec.pod, v1/PodTemplate=template]",
    ),
    ("chart-every-value", EVERY_VALUE),
];

/// The kubectl manifests checked here: (what, file or directory).
const MANIFESTS: [(&str, &str); 2] = [
    ("manifests", "manifests"),
    ("manifests-namespaced", "manifests/namespaced"),
];

#[test]
fn chart_renderings_pass_strict_schema_validation_for_every_supported_kubernetes() {
    let mut failures = Vec::new();
    for (what, values) in RENDERINGS {
        let rendering = chart::render("kube-reloader", "kube-reloader", values)
            .unwrap_or_else(|e| panic!("{what}: helm template failed:\n{e}"));
        match validate(what, &rendering.objects) {
            Ok(skipped) => {
                let expected: &[&str] = match what {
                    "chart-metrics" => &["ServiceMonitor/kube-reloader"],
                    "chart-every-value" => &["ServiceMonitor/kube-reloader"],
                    _ => &[],
                };
                assert_eq!(skipped, expected, "{what}: objects left out");
            }
            Err(e) => failures.push(format!("{what} (values {values:?}):\n{e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn manifests_pass_strict_schema_validation_for_every_supported_kubernetes() {
    let mut failures = Vec::new();
    for (what, path) in MANIFESTS {
        match validate(what, &chart::yaml_documents(path)) {
            Ok(skipped) => assert!(skipped.is_empty(), "{what}: {skipped:?} left out"),
            Err(e) => failures.push(format!("{path}:\n{e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The validation above would pass vacuously if the tool accepted anything: it must reject an
/// unknown field (strict mode) and a kind it has no schema for (which it only warns about).
#[test]
fn schema_validation_rejects_an_unknown_field_and_an_unknown_kind() {
    let mut deployment = chart::yaml_documents("manifests/20-deployment.yaml")
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment in manifests/20-deployment.yaml");
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] =
        json!(true);
    let err = validate("misspelled-field", &[deployment]).expect_err("a misspelled field passed");
    for v in KUBERNETES_VERSIONS {
        assert!(
            err.contains(&format!(
                "against version {v}: spec.template.spec.containers.0.securityContext: Additional properties are not allowed ('readOnlyRootFilesytem' was unexpected)"
            )),
            "{err}"
        );
    }

    let widget =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    let err = validate("unknown-kind", &[widget]).expect_err("an unknown kind passed");
    assert!(
        err.contains("Couldn't find schema for kind Widget with api version example.com/v1"),
        "{err}"
    );
}

#[test]
fn every_deployment_meets_the_restricted_pod_security_standard() {
    let mut sources: Vec<(&str, Vec<Value>)> = RENDERINGS
        .iter()
        .map(|(what, values)| {
            let r = chart::render("kube-reloader", "kube-reloader", values)
                .unwrap_or_else(|e| panic!("{what}: helm template failed:\n{e}"));
            (*what, r.objects)
        })
        .collect();
    sources.extend(
        MANIFESTS
            .iter()
            .map(|(what, path)| (*what, chart::yaml_documents(path))),
    );
    let mut failures = Vec::new();
    for (what, objects) in &sources {
        let deployments: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .collect();
        assert_eq!(deployments.len(), 1, "{what}: one Deployment expected");
        for d in deployments {
            let violations = restricted_violations(&d["spec"]["template"]);
            if !violations.is_empty() {
                failures.push(format!(
                    "{what}: Deployment {}: {}",
                    d["metadata"]["name"],
                    violations.join("; ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Unit-style cases of [`restricted_violations`]: a compliant pod passes, and each rule of the
/// profile rejects a pod that breaks it, naming the field.
#[test]
fn restricted_check_accepts_a_compliant_pod_and_names_each_violation() {
    let compliant = json!({
        "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/app": "runtime/default"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"},
                "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
            "volumes": [{"name": "config", "configMap": {"name": "c"}}, {"name": "tmp", "emptyDir": {}}],
            "containers": [{"name": "app", "image": "app", "ports": [{"containerPort": 80}],
                "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]
        }
    });
    assert_eq!(restricted_violations(&compliant), Vec::<String>::new());

    // Non-root and seccomp may be set on every container instead of the pod.
    let mut per_container = compliant.clone();
    per_container["spec"]["securityContext"] = json!({});
    per_container["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(true);
    per_container["spec"]["containers"][0]["securityContext"]["seccompProfile"] =
        json!({"type": "Localhost", "localhostProfile": "p.json"});
    assert_eq!(restricted_violations(&per_container), Vec::<String>::new());

    let container = "/spec/containers/0/securityContext";
    let cases: [(&str, Value, &str); 26] = [
        ("/spec/hostNetwork", json!(true), "hostNetwork"),
        ("/spec/hostPID", json!(true), "hostPID"),
        ("/spec/hostIPC", json!(true), "hostIPC"),
        (
            "/spec/volumes/1",
            json!({"name": "host", "hostPath": {"path": "/"}}),
            "volume host: hostPath",
        ),
        (
            "/spec/volumes/1",
            json!({"name": "nfs", "nfs": {"server": "s", "path": "/"}}),
            "volume nfs: nfs",
        ),
        (
            "/spec/securityContext/runAsNonRoot",
            json!(false),
            "runAsNonRoot",
        ),
        ("/spec/securityContext/runAsUser", json!(0), "runAsUser"),
        (
            "/spec/securityContext/seccompProfile/type",
            json!("Unconfined"),
            "seccompProfile",
        ),
        (
            "/spec/securityContext/sysctls/0/name",
            json!("kernel.msgmax"),
            "sysctl kernel.msgmax",
        ),
        (
            "/spec/securityContext/seLinuxOptions",
            json!({"type": "spc_t"}),
            "seLinuxOptions",
        ),
        (
            "/spec/securityContext/windowsOptions",
            json!({"hostProcess": true}),
            "hostProcess",
        ),
        (
            "/spec/securityContext/appArmorProfile",
            json!({"type": "Unconfined"}),
            "appArmorProfile",
        ),
        (
            "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1app",
            json!("unconfined"),
            "AppArmor",
        ),
        (
            &format!("{container}/allowPrivilegeEscalation"),
            json!(true),
            "allowPrivilegeEscalation",
        ),
        (container, json!({}), "allowPrivilegeEscalation"),
        (
            &format!("{container}/privileged"),
            json!(true),
            "privileged",
        ),
        (
            &format!("{container}/capabilities/drop"),
            json!(["NET_RAW"]),
            "drop ALL",
        ),
        (
            &format!("{container}/capabilities/add"),
            json!(["NET_ADMIN"]),
            "NET_ADMIN",
        ),
        (
            &format!("{container}/runAsNonRoot"),
            json!(false),
            "runAsNonRoot",
        ),
        (&format!("{container}/runAsUser"), json!(0), "runAsUser"),
        (
            &format!("{container}/seccompProfile"),
            json!({"type": "Unconfined"}),
            "seccompProfile",
        ),
        (
            &format!("{container}/procMount"),
            json!("Unmasked"),
            "procMount",
        ),
        (
            &format!("{container}/seLinuxOptions"),
            json!({"user": "root"}),
            "seLinuxOptions",
        ),
        ("/spec/containers/0/ports/0/hostPort", json!(80), "hostPort"),
        (
            "/spec/initContainers",
            json!([{"name": "init", "image": "i", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]),
            "initContainers[0] init: allowPrivilegeEscalation",
        ),
        (
            "/spec/ephemeralContainers",
            json!([{"name": "debug", "image": "d", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": true}}]),
            "ephemeralContainers[0] debug: privileged",
        ),
    ];
    for (pointer, value, expected) in cases {
        let mut pod = compliant.clone();
        set(&mut pod, pointer, value.clone());
        let violations = restricted_violations(&pod);
        assert!(
            violations.iter().any(|v| v.contains(expected)),
            "{pointer} = {value}: expected a violation naming {expected:?}, got {violations:?}"
        );
    }

    // Without runAsNonRoot and seccomp on the pod, a container that sets neither breaks both rules.
    let mut unset = compliant.clone();
    unset["spec"]["securityContext"] = json!({});
    let violations = restricted_violations(&unset).join("; ");
    assert!(
        violations.contains("runAsNonRoot") && violations.contains("seccompProfile"),
        "{violations}"
    );
}

/// Sets the value at a JSON pointer, creating the objects on the way.
fn set(v: &mut Value, pointer: &str, value: Value) {
    let mut at = v;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if at.is_array() {
            let a = at.as_array_mut().expect("array");
            let i: usize = token.parse().expect("array index");
            if i == a.len() {
                a.push(Value::Null);
            }
            at = &mut a[i];
        } else {
            if !at.is_object() {
                *at = json!({});
            }
            at = at
                .as_object_mut()
                .expect("object")
                .entry(token)
                .or_insert(Value::Null);
        }
    }
    *at = value;
}

/// The pinned kubernetes-validate, as hack/testenv.sh links it beside helm and kubectl; panics
/// with the reason if it is missing or not the pinned version.
fn kubernetes_validate() -> &'static PathBuf {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let tool = tools().helm.with_file_name("kubernetes-validate");
        let reqs = std::fs::read_to_string(repo_root().join("hack/validate-requirements.txt"))
            .expect("hack/validate-requirements.txt");
        let pinned = reqs
            .lines()
            .find_map(|l| l.strip_prefix("kubernetes-validate=="))
            .and_then(|l| l.split_whitespace().next())
            .expect("kubernetes-validate==VERSION in hack/validate-requirements.txt");
        let out = Command::new(&tool).arg("--version").output().unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); hack/testenv.sh installs it: run it and read its messages",
                tool.display()
            )
        });
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            version,
            pinned,
            "{} is not the kubernetes-validate pinned in hack/validate-requirements.txt (stderr: {})",
            tool.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        tool
    })
}

/// Validates `objects` with `kubernetes-validate --strict` against every version of
/// [`KUBERNETES_VERSIONS`]. Kinds of [`NOT_IN_KUBERNETES`] are left out and returned as
/// `Kind/name`; anything but a pass of every other object against every version (a schema
/// error, a kind without a schema, a version the tool lacks or falls back from) is an Err with
/// the tool's output.
fn validate(what: &str, objects: &[Value]) -> Result<Vec<String>, String> {
    let (skipped, checked): (Vec<&Value>, Vec<&Value>) = objects.iter().partition(|o| {
        NOT_IN_KUBERNETES
            .iter()
            .any(|(api_version, kind)| o["apiVersion"] == *api_version && o["kind"] == *kind)
    });
    let skipped: Vec<String> = skipped
        .iter()
        .map(|o| format!("{}/{}", str_of(&o["kind"]), str_of(&o["metadata"]["name"])))
        .collect();
    for s in &skipped {
        eprintln!(
            "{what}: {s} left out of schema validation: not a Kubernetes kind, no schema for it in kubernetes-validate"
        );
    }

    // A file, not stdin: the tool reads its input once per version asked for.
    let file = std::env::temp_dir().join(format!(
        "kube-reloader-validate-{}-{what}.yaml",
        std::process::id()
    ));
    let yaml: String = checked.iter().map(|o| format!("---\n{o}\n")).collect();
    std::fs::write(&file, yaml).expect("write the objects to validate");
    let mut cmd = Command::new(kubernetes_validate());
    cmd.arg("--strict");
    for v in KUBERNETES_VERSIONS {
        cmd.args(["--kubernetes-version", v]);
    }
    let out = cmd.arg(&file).output();
    std::fs::remove_file(&file).ok();
    let out = out.unwrap_or_else(|e| panic!("cannot run kubernetes-validate: {e}"));
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);

    // Every object must pass against every version, by name: the tool exits 0 on a kind it has
    // no schema for, and validates against an older schema when it lacks the version asked for.
    let mut passed: Vec<&str> = report
        .lines()
        .filter_map(|l| l.split_once(" passed for resource ").map(|(_, r)| r))
        .collect();
    let mut expected: Vec<String> = checked
        .iter()
        .flat_map(|o| {
            let id = format!(
                "{}/{}",
                str_of(&o["kind"]).to_lowercase(),
                str_of(&o["metadata"]["name"])
            );
            KUBERNETES_VERSIONS
                .iter()
                .map(move |v| format!("{id} against version {v}"))
        })
        .collect();
    passed.sort_unstable();
    expected.sort_unstable();
    let others = report.lines().any(|l| !l.starts_with("INFO "));
    if !out.status.success() || others || passed != expected {
        return Err(format!(
            "kubernetes-validate --strict ({}) failed:\n{report}",
            out.status
        ));
    }
    Ok(skipped)
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// The violations of the Pod Security Standards' restricted profile (which includes the
/// baseline's rules) by a pod template (`metadata` and `spec`), as the Kubernetes documentation
/// of the standards (v1.30 to v1.35) lists them; empty when it complies. Windows-only
/// exemptions are not applied. It reads JSON rather than k8s-openapi's PodSpec, which the tests'
/// 1.20 version feature would strip of newer fields such as `appArmorProfile`.
fn restricted_violations(pod: &Value) -> Vec<String> {
    const VOLUME_TYPES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    const SAFE_SYSCTLS: [&str; 10] = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    let confined_seccomp = |sc: &Value| {
        matches!(
            sc["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let mut v = Vec::new();
    let spec = &pod["spec"];
    let psc = &spec["securityContext"];

    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[host] == true {
            v.push(format!("spec.{host} is true"));
        }
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        let name = str_of(&volume["name"]);
        for (key, _) in volume.as_object().into_iter().flatten() {
            if key != "name" && !VOLUME_TYPES.contains(&key.as_str()) {
                v.push(format!(
                    "volume {name}: {key} volumes are not allowed (only {VOLUME_TYPES:?})"
                ));
            }
        }
    }
    for sysctl in psc["sysctls"].as_array().into_iter().flatten() {
        let name = str_of(&sysctl["name"]);
        if !SAFE_SYSCTLS.contains(&name) {
            v.push(format!("sysctl {name} is not in the safe set"));
        }
    }
    for (key, value) in pod["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if key.starts_with("container.apparmor.security.beta.kubernetes.io/") {
            let profile = value.as_str().unwrap_or_default();
            if profile != "runtime/default" && !profile.starts_with("localhost/") {
                v.push(format!("AppArmor annotation {key}: {profile:?}"));
            }
        }
    }
    v.extend(
        security_context_violations(psc)
            .into_iter()
            .map(|e| format!("spec.securityContext: {e}")),
    );

    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let at = format!("{list}[{i}] {}", str_of(&c["name"]));
            let sc = &c["securityContext"];
            let mut bad = security_context_violations(sc);
            if sc["privileged"] == true {
                bad.push("privileged is true".into());
            }
            if sc["allowPrivilegeEscalation"] != false {
                bad.push("allowPrivilegeEscalation is not false".into());
            }
            let caps = |k: &str| -> Vec<&str> {
                sc["capabilities"][k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(str_of)
                    .collect()
            };
            if !caps("drop").contains(&"ALL") {
                bad.push("capabilities do not drop ALL".into());
            }
            for cap in caps("add") {
                if cap != "NET_BIND_SERVICE" {
                    bad.push(format!(
                        "capability {cap} added (only NET_BIND_SERVICE may be)"
                    ));
                }
            }
            if sc["procMount"].as_str().is_some_and(|m| m != "Default") {
                bad.push(format!("procMount is {}", sc["procMount"]));
            }
            for port in c["ports"].as_array().into_iter().flatten() {
                if port["hostPort"].as_i64().is_some_and(|p| p != 0) {
                    bad.push(format!("hostPort {} is set", port["hostPort"]));
                }
            }
            // These two may be set once on the pod instead (a container setting them otherwise
            // is reported by security_context_violations).
            if psc["runAsNonRoot"] != true && sc["runAsNonRoot"] != true {
                bad.push("runAsNonRoot is not true (on the pod or the container)".into());
            }
            if !confined_seccomp(sc) && !confined_seccomp(psc) {
                bad.push(
                    "seccompProfile is not RuntimeDefault or Localhost (on the pod or the container)"
                        .into(),
                );
            }
            v.extend(bad.into_iter().map(|e| format!("{at}: {e}")));
        }
    }
    v
}

/// The rules that apply alike to a pod's and a container's securityContext.
fn security_context_violations(sc: &Value) -> Vec<String> {
    const SELINUX_TYPES: [&str; 5] = [
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let mut v = Vec::new();
    if sc["runAsNonRoot"] == false {
        v.push("runAsNonRoot is false".into());
    }
    if sc["runAsUser"] == 0 {
        v.push("runAsUser is 0".into());
    }
    let seccomp = &sc["seccompProfile"]["type"];
    if !seccomp.is_null() && *seccomp != "RuntimeDefault" && *seccomp != "Localhost" {
        v.push(format!("seccompProfile type {seccomp}"));
    }
    let apparmor = &sc["appArmorProfile"]["type"];
    if !apparmor.is_null() && *apparmor != "RuntimeDefault" && *apparmor != "Localhost" {
        v.push(format!("appArmorProfile type {apparmor}"));
    }
    if sc["windowsOptions"]["hostProcess"] == true {
        v.push("windowsOptions.hostProcess is true".into());
    }
    let selinux = &sc["seLinuxOptions"];
    if !selinux.is_null() {
        let t = selinux["type"].as_str().unwrap_or_default();
        if !SELINUX_TYPES.contains(&t) || !selinux["user"].is_null() || !selinux["role"].is_null() {
            v.push(format!(
                "seLinuxOptions {selinux} (only a container_* type, no user or role)"
            ));
        }
    }
    v
}
