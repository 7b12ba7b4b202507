//! The container image `make image` builds (hack/image.sh, with buildah): equal to the
//! Dockerfile's final stage, and run as a Pod would run it, against a real control plane.
//!
//! The Pod is played by Debian's podman with runc (crun cannot start containers on these
//! machines), as strictly as a kubelet would run the Deployment in manifests/: the image's own
//! read-only root with nothing added that the kubelet would not add (no /tmp, no /etc/passwd),
//! uid/gid 65532, every capability dropped, no privilege escalation, the runtime's default seccomp
//! profile, the ServiceAccount volume (token, ca.crt, namespace) mounted read-only where
//! Kubernetes mounts it, and only the environment a Pod gets. The binary must find its
//! in-cluster configuration there, serve its probes, record a baseline and roll a Deployment.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::install::{SA_TOKEN, SA_USER, control_plane_with_service_account_token};
use crate::support::objects::configmap;
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, chart, http_get, repo_root, unique_suffix, wait_for};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Where Kubernetes mounts a Pod's ServiceAccount volume.
const SA_MOUNT: &str = "var/run/secrets/kubernetes.io/serviceaccount";

/// The image as its OCI layout describes it.
struct Image {
    /// The OCI archive hack/image.sh prints.
    archive: PathBuf,
    /// The OCI layout unpacked beside it.
    layout: PathBuf,
    config: Value,
    /// The layers' blobs (gzipped tars), bottom first.
    layers: Vec<PathBuf>,
}

/// The image `make image` builds, built (or found up to date) once per test run. Panics with
/// hack/image.sh's output if it cannot be built: a missing toolchain is a failure, never a skip.
fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut cmd = Command::new(repo_root().join("hack/image.sh"));
        // The build must look like `make image`'s, or cargo would redo the release link (minutes)
        // for environment variables only a test process has.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR" {
                cmd.env_remove(k);
            }
        }
        let out = cmd.output().expect("run hack/image.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "hack/image.sh failed ({}):\n{stderr}",
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let archive = PathBuf::from(stdout.lines().last().unwrap_or_default());
        assert!(archive.is_file(), "no archive at {archive:?}:\n{stderr}");
        let layout = archive.parent().expect("target/image").join("oci");
        Image::read(&archive, &layout)
    })
}

/// The OCI archive `make image` builds (see [`image`]).
pub(crate) fn archive() -> &'static Path {
    &image().archive
}

impl Image {
    /// Reads index.json, the manifest and the config from the layout, checking every digest.
    fn read(archive: &Path, layout: &Path) -> Self {
        let index = json_file(&layout.join("index.json"));
        let manifests = index["manifests"].as_array().expect("manifests");
        assert_eq!(manifests.len(), 1, "{index}");
        let manifest = serde_json::from_slice::<Value>(&blob(layout, &manifests[0])).unwrap();
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        let config = serde_json::from_slice::<Value>(&blob(layout, &manifest["config"])).unwrap();
        let layers = manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| {
                assert_eq!(
                    l["mediaType"],
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                );
                blob(layout, l);
                blob_path(layout, l)
            })
            .collect();
        Self {
            archive: archive.to_path_buf(),
            layout: layout.to_path_buf(),
            config,
            layers,
        }
    }

    /// The files and directories of the image's file system, as paths from its root.
    fn files(&self) -> Vec<String> {
        let mut files = Vec::new();
        for layer in &self.layers {
            let out = Command::new("tar")
                .arg("-tzf")
                .arg(layer)
                .output()
                .expect("run tar");
            assert!(out.status.success(), "tar -tzf {layer:?} failed");
            files.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(|l| format!("/{}", l.trim_start_matches("./")))
                    .filter(|l| l != "/"),
            );
        }
        files
    }
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob_path(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().expect("digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// A descriptor's blob, checked against its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let path = blob_path(layout, descriptor);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    assert_eq!(descriptor["digest"], digest.as_str(), "{}", path.display());
    assert_eq!(descriptor["size"], bytes.len() as u64, "{}", path.display());
    bytes
}

/// What an image's final stage says about the image: its base, files, user, ports, entrypoint.
#[derive(Debug, PartialEq, Eq)]
struct Stage {
    base: String,
    files: Vec<String>,
    user: String,
    exposed: Vec<String>,
    entrypoint: Vec<String>,
}

/// The Dockerfile's final stage (the instructions after its last `FROM`), as far as this
/// Dockerfile uses them: COPY, USER, EXPOSE and ENTRYPOINT in exec form. Anything else there
/// (a RUN, an ENV, a second file) fails the test until the comparison learns about it.
fn dockerfile_final_stage(text: &str) -> Stage {
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let mut stage = Stage {
        base: lines[last_from]["FROM ".len()..].trim().to_string(),
        files: vec![],
        user: String::new(),
        exposed: vec![],
        entrypoint: vec![],
    };
    for line in &lines[last_from + 1..] {
        let (instruction, rest) = line.split_once(' ').expect("an instruction with arguments");
        let words: Vec<&str> = rest
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        match instruction {
            "COPY" => stage
                .files
                .push(words.last().expect("a destination").to_string()),
            "USER" => stage.user = rest.trim().to_string(),
            "EXPOSE" => stage.exposed.extend(words.iter().map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            })),
            "ENTRYPOINT" => {
                stage.entrypoint = serde_json::from_str(rest).expect("ENTRYPOINT in exec form")
            }
            other => panic!("the final stage has {other}, which this test does not compare"),
        }
    }
    stage
}

/// The same, read from the built image.
fn image_stage(image: &Image) -> Stage {
    let c = &image.config["config"];
    let exposed = c["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    Stage {
        // Built from nothing: one layer and no base image's history.
        base: if image.layers.len() == 1 {
            "scratch".into()
        } else {
            format!("{} layers", image.layers.len())
        },
        files: image.files(),
        user: c["User"].as_str().unwrap_or_default().to_string(),
        exposed,
        entrypoint: serde_json::from_value(c["Entrypoint"].clone()).unwrap_or_default(),
    }
}

#[test]
fn image_equals_the_dockerfiles_final_stage_and_is_under_20_mb() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let expected = dockerfile_final_stage(&dockerfile);
    assert_eq!(
        expected,
        Stage {
            base: "scratch".into(),
            files: vec!["/kube-reloader".into()],
            user: "65532:65532".into(),
            exposed: vec!["9090/tcp".into()],
            entrypoint: vec!["/kube-reloader".into()],
        },
        "the Dockerfile's final stage changed: update hack/image.sh and this test with it"
    );
    let image = image();
    assert_eq!(image_stage(image), expected);
    assert_eq!(image.config["os"], "linux");
    assert_eq!(image.config["architecture"], "amd64");
    let binary = repo_root().join("target/x86_64-unknown-linux-musl/release/kube-reloader");
    let size = std::fs::metadata(&binary)
        .expect("the release binary")
        .len();
    let layer = std::fs::metadata(&image.layers[0]).expect("layer").len();
    assert!(size < 20_000_000, "the binary is {size} bytes");
    assert!(layer < size, "the layer is {layer} bytes");
    assert!(image.layout.join("oci-layout").is_file());
}

#[test]
fn dockerfile_stage_parser_reads_flags_continuations_and_default_protocols() {
    let stage = dockerfile_final_stage(
        "FROM rust AS build\nRUN x\nFROM scratch\n# c\nCOPY --from=build /a \\\n /b\nUSER 1:2\nEXPOSE 80 53/udp\nENTRYPOINT [\"/b\", \"-v\"]\n",
    );
    assert_eq!(
        stage,
        Stage {
            base: "scratch".into(),
            files: vec!["/b".into()],
            user: "1:2".into(),
            exposed: vec!["80/tcp".into(), "53/udp".into()],
            entrypoint: vec!["/b".into(), "-v".into()],
        }
    );
}

/// Debian's podman with runc, its storage, state and temporary files in a directory of its own
/// (never the machine's /var/lib/containers), vfs storage and cgroupfs (no systemd here).
struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// Fails, naming the fix, when podman or runc is missing: hack/testenv.sh installs both.
    fn new(dir: &Path) -> Self {
        for tool in ["podman", "runc"] {
            let found = Command::new(tool).arg("--version").output();
            assert!(
                found.as_ref().is_ok_and(|o| o.status.success()),
                "{tool} does not run ({found:?}): hack/testenv.sh installs it (apt-get install podman runc)"
            );
        }
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--runtime=runc")
            .arg("--storage-driver=vfs")
            .arg("--cgroup-manager=cgroupfs")
            .arg("--events-backend=file")
            .arg(format!("--root={}", self.dir.join("storage").display()))
            .arg(format!("--runroot={}", self.dir.join("run").display()))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()));
        cmd
    }

    /// Runs podman to completion; its stdout. Panics with its output on failure.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("run podman");
        assert!(
            out.status.success(),
            "podman {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The container of a running Pod: removed (killed first) when dropped, with podman's directory.
struct Container<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .command()
            .args(["rm", "--force", "--time=0", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(&self.podman.dir);
    }
}

/// The process status fields of `/proc/PID/status`, their values' words joined by one space.
fn proc_status(pid: &str) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

#[tokio::test]
async fn image_runs_as_a_pod_would_with_its_in_cluster_config_and_rolls_a_deployment() {
    let image = image();
    let cp = control_plane_with_service_account_token();
    // The shipped install (namespace, ServiceAccount, RBAC), and its Deployment's arguments.
    let applied = cp.kubectl(&["apply", "--server-side", "-f", "manifests"]);
    assert!(
        applied.contains("deployment.apps/kube-reloader"),
        "{applied}"
    );
    let mut args = crate::install::controller_args(&chart::yaml_documents("manifests"));
    // A free port rather than 9090, which other processes on this machine may hold (the Pod
    // shares the host's network, to reach the apiserver on loopback).
    args.push("--metrics-addr=127.0.0.1:0".into());

    let dir = std::env::temp_dir().join(format!("kr-pod-{}", unique_suffix()));
    let sa = dir.join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    // The ServiceAccount volume as the kubelet writes it: readable by the container's user.
    std::fs::write(sa.join("token"), SA_TOKEN).unwrap();
    std::fs::copy(cp.dir().join("certs/apiserver.crt"), sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("namespace"), "kube-reloader").unwrap();
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for d in [&dir, &sa] {
        chmod(d, 0o755);
    }
    for f in ["token", "ca.crt", "namespace"] {
        chmod(&sa.join(f), 0o644);
    }

    let kubeconfig = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server in kubeconfig");
    let (host, port) = server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .expect("host:port");

    let podman = Podman::new(&dir.join("podman"));
    let pod = "kube-reloader-7d9f8-abcde";
    let container = Container {
        podman: &podman,
        name: format!("kr-pod-{}", unique_suffix()),
    };
    let archive = format!("oci-archive:{}", image.archive.display());
    let mut cmd = podman.command();
    cmd.args(["run", "--rm", "--quiet", "--name", &container.name])
        // manifests/20-deployment.yaml's securityContext: runAsUser/runAsGroup 65532,
        // readOnlyRootFilesystem, capabilities drop ALL, allowPrivilegeEscalation false, seccomp
        // RuntimeDefault (podman's default profile).
        .args(["--user=65532:65532", "--read-only", "--cap-drop=ALL"])
        .args(["--security-opt=no-new-privileges"])
        // Nothing the kubelet would not add: podman's tmpfs on /tmp, /run and /var/tmp with a
        // read-only root, and its /etc/passwd entry for the user, are left out.
        .args(["--read-only-tmpfs=false", "--passwd=false"])
        // This machine refuses podman's default rlimits (and crun altogether).
        .args(["--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024"])
        // The host's network, where the apiserver listens on loopback; a kubelet would give the
        // Pod its own, with the apiserver's Service address in the same variables.
        .args(["--network=host", "--hostname", pod])
        // If this test process dies, the container stops by itself all the same.
        .args(["--timeout=600"])
        .arg(format!("--volume={}:/{SA_MOUNT}:ro", sa.display()))
        // Only what a Pod's container gets: the runtime's PATH and HOSTNAME, the Service
        // variables, and the downward-API variables of manifests/20-deployment.yaml.
        .arg("--unsetenv-all")
        .args([
            "--env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            &format!("--env=HOSTNAME={pod}"),
            &format!("--env=KUBERNETES_SERVICE_HOST={host}"),
            &format!("--env=KUBERNETES_SERVICE_PORT={port}"),
            &format!("--env=KUBERNETES_SERVICE_PORT_HTTPS={port}"),
            &format!("--env=POD_NAME={pod}"),
            "--env=POD_NAMESPACE=kube-reloader",
        ])
        .arg(&archive)
        .args(&args)
        .env_remove("KUBECONFIG");
    let mut reloader = Reloader::spawn_command(cmd, dir.join("kube-reloader.log"));

    let addr = reloader.http_addr().await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    wait_for("/readyz to answer 200", TIMEOUT, || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;

    // The process is the Pod's: the image's entrypoint in the image's read-only root, uid/gid
    // 65532, no capabilities, no privilege escalation, under a seccomp filter, with the Pod's
    // environment only (no KUBECONFIG: the in-cluster configuration is its only way in).
    let pid = podman.run(&["inspect", "--format={{.State.Pid}}", &container.name]);
    let proc = PathBuf::from(format!("/proc/{pid}"));
    assert_eq!(
        std::fs::read_link(proc.join("exe")).unwrap(),
        Path::new("/kube-reloader")
    );
    let status = proc_status(&pid);
    assert_eq!(status["Uid"], "65532 65532 65532 65532");
    assert_eq!(status["Gid"], "65532 65532 65532 65532");
    // No supplementary group but its own (no root group, none from the host).
    assert!(
        status["Groups"].split_whitespace().all(|g| g == "65532"),
        "{status:?}"
    );
    for caps in ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] {
        assert_eq!(status[caps], "0000000000000000", "{caps}");
    }
    assert_eq!(status["NoNewPrivs"], "1");
    assert_eq!(status["Seccomp"], "2", "a seccomp filter");
    let environ = std::fs::read(proc.join("environ")).unwrap();
    let env: BTreeMap<String, String> = String::from_utf8_lossy(&environ)
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        env.keys().collect::<Vec<_>>(),
        [
            // runc sets HOME, to / for a user with no /etc/passwd entry, as it does under a
            // kubelet: no ~/.kube/config there either.
            "HOME",
            "HOSTNAME",
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
            "KUBERNETES_SERVICE_PORT_HTTPS",
            "PATH",
            "POD_NAME",
            "POD_NAMESPACE"
        ],
        "{env:?}"
    );
    assert_eq!(env["HOME"], "/");
    let mountinfo = std::fs::read_to_string(proc.join("mountinfo")).unwrap();
    let mount_options = |point: &str| {
        mountinfo
            .lines()
            .filter(|l| l.split_whitespace().nth(4) == Some(point))
            .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
            .next_back()
    };
    let ro = |point: &str| {
        mount_options(point)
            .unwrap_or_else(|| panic!("{point} not mounted:\n{mountinfo}"))
            .starts_with("ro,")
    };
    assert!(ro("/"), "{mountinfo}");
    assert!(ro(&format!("/{SA_MOUNT}")), "{mountinfo}");
    for none in ["/tmp", "/etc/passwd"] {
        assert_eq!(mount_options(none), None, "{mountinfo}");
    }
    // Root's only file from the image is the binary: what else is there the runtime made.
    assert!(proc.join("root/kube-reloader").is_file());
    assert!(!proc.join("root/tmp").exists());

    // Its whole job, authenticated by the mounted token only: baseline, then a rollout.
    let app = TestNs::on(&cp, "app").await;
    workloads::opted_in_with_configmap(&app, "web").await;
    workloads::baseline(&app, Kind::Deployment, "web").await;
    configmap(&app, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&app, Kind::Deployment, "web", 1).await;
    let requests = cp.requests_by(SA_USER);
    assert!(
        requests
            .iter()
            .any(|r| r.verb == "patch" && r.name == "web"),
        "{requests:?}"
    );
    let logs = reloader.logs();
    assert!(!logs.to_lowercase().contains("forbidden"), "{logs}");
    // Stopped as the kubelet stops it: SIGTERM, then a clean exit within the grace period.
    podman.run(&["stop", "--time=30", &container.name]);
    let exit = reloader.wait_exit(Duration::from_secs(30));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{exit:?}:\n{}",
        reloader.logs()
    );
    drop(reloader);
    drop(container);
    let _ = std::fs::remove_dir_all(&dir);
}
