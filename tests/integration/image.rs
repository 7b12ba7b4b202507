//! The container image `make image` builds (hack/image.sh): equal to the Dockerfile's final
//! stage, and run as a Pod would run it, against a real control plane.
//!
//! There is no container engine here, so the Pod is played by hand, as strictly as a kubelet and
//! runc would: the image's rootfs unpacked from its OCI layout, bind-mounted read-only in a mount
//! namespace of its own, with the ServiceAccount volume (token, ca.crt, namespace) mounted
//! read-only where Kubernetes mounts it, the environment a Pod gets, and the process chrooted
//! into it as uid/gid 65532 with no capabilities and no_new_privs. The binary must find its
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
        Image::read(&archive.parent().expect("target/image").join("oci"))
    })
}

impl Image {
    /// Reads index.json, the manifest and the config from the layout, checking every digest.
    fn read(layout: &Path) -> Self {
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

    /// Unpacks the layers into `dir` (as root, so owners and modes are the image's).
    fn unpack(&self, dir: &Path) {
        for layer in &self.layers {
            let status = Command::new("tar")
                .args(["-xzf"])
                .arg(layer)
                .arg("-C")
                .arg(dir)
                .arg("--same-owner")
                .arg("--same-permissions")
                .status()
                .expect("run tar");
            assert!(status.success(), "unpacking {layer:?} failed");
        }
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

/// Mounts the rootfs read-only on itself, the ServiceAccount volume read-only at its place, then
/// runs the entrypoint chrooted as 65532:65532 with no_new_privs (setuid away from root clears
/// every capability). `exec` all the way down: the child's pid is the binary's.
const POD_SCRIPT: &str = r#"set -eu
root=$1 sa=$2
shift 2
mount --bind "$root" "$root"
mount --bind "$sa" "$root/var/run/secrets/kubernetes.io/serviceaccount"
mount -o remount,bind,ro "$root/var/run/secrets/kubernetes.io/serviceaccount"
mount -o remount,bind,ro "$root"
exec setpriv --no-new-privs chroot --userspec=65532:65532 --groups=65532 "$root" "$@"
"#;

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
    // A free port rather than 9090, which other processes on this machine may hold.
    args.push("--metrics-addr=127.0.0.1:0".into());

    let dir = std::env::temp_dir().join(format!("kube-reloader-pod-{}", unique_suffix()));
    let rootfs = dir.join("rootfs");
    let sa = dir.join("serviceaccount");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::create_dir_all(&sa).unwrap();
    image.unpack(&rootfs);
    let mut entries: Vec<String> = std::fs::read_dir(&rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["kube-reloader"],
        "the rootfs holds the binary only"
    );
    // The mount point the runtime creates for the volume, and the modes a runtime's rootfs has.
    std::fs::create_dir_all(rootfs.join(SA_MOUNT)).unwrap();
    std::fs::write(sa.join("token"), SA_TOKEN).unwrap();
    std::fs::copy(cp.dir().join("certs/apiserver.crt"), sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("namespace"), "kube-reloader").unwrap();
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for d in [&dir, &rootfs, &sa] {
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

    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(POD_SCRIPT)
        .arg("sh")
        .arg(&rootfs)
        .arg(&sa)
        .arg("/kube-reloader")
        .args(&args)
        // Only what a Pod's container gets: the runtime's PATH and HOSTNAME, the Service
        // variables, and the downward-API variables of manifests/20-deployment.yaml.
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOSTNAME", "kube-reloader-7d9f8-abcde")
        .env("KUBERNETES_SERVICE_HOST", host)
        .env("KUBERNETES_SERVICE_PORT", port)
        .env("KUBERNETES_SERVICE_PORT_HTTPS", port)
        .env("POD_NAME", "kube-reloader-7d9f8-abcde")
        .env("POD_NAMESPACE", "kube-reloader");
    let log = dir.join("kube-reloader.log");
    let reloader = Reloader::spawn_command(cmd, log);

    let addr = reloader.http_addr().await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    wait_for("/readyz to answer 200", TIMEOUT, || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;

    // The process is the Pod's: the image's binary, its own read-only root, uid/gid 65532, no
    // capabilities, no privilege escalation.
    let proc = PathBuf::from(format!("/proc/{}", reloader.pid()));
    assert_eq!(std::fs::read_link(proc.join("root")).unwrap(), rootfs);
    assert_eq!(
        std::fs::read_link(proc.join("exe")).unwrap(),
        rootfs.join("kube-reloader")
    );
    let status: BTreeMap<String, String> = std::fs::read_to_string(proc.join("status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    assert_eq!(status["Uid"], "65532 65532 65532 65532");
    assert_eq!(status["Gid"], "65532 65532 65532 65532");
    assert_eq!(status["CapEff"], "0000000000000000");
    assert_eq!(status["CapPrm"], "0000000000000000");
    assert_eq!(status["NoNewPrivs"], "1");
    let mountinfo = std::fs::read_to_string(proc.join("mountinfo")).unwrap();
    let mount_options = |point: &str| {
        mountinfo
            .lines()
            .filter(|l| l.split_whitespace().nth(4) == Some(point))
            .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
            .next_back()
            .unwrap_or_else(|| panic!("{point} not mounted:\n{mountinfo}"))
    };
    assert!(mount_options("/").starts_with("ro,"), "{mountinfo}");
    assert!(
        mount_options(&format!("/{SA_MOUNT}")).starts_with("ro,"),
        "{mountinfo}"
    );

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
    drop(reloader);
    let _ = std::fs::remove_dir_all(&dir);
}
