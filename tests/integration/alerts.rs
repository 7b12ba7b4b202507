//! Alerts on rollout, against a local HTTP receiver: one POST per rollout in each format's body,
//! none for a baseline or a dry run; a receiver that fails or hangs delays no rollout, and its
//! failure is a metric, a log line and a Warning Event on the controller's own Pod. The URL (a
//! secret) never shows, only its host.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::net::Proxy;
use crate::support::objects::{self, configmap};
use crate::support::reloader::Reloader;
use crate::support::workloads::{self, Kind};
use crate::support::{TestNs, http_get, wait_for};

const TIMEOUT: Duration = Duration::from_secs(60);
const HASH: &str = "kube-reloader.io/config-hash";
const RELOADED_AT: &str = "kube-reloader.io/reloaded-at";
/// The secret part of the test webhook URLs: it must appear in no log line and no Event.
const TOKEN: &str = "s3cr3t-t0ken";
/// The controller's bound on one attempt (src/alerts.rs ATTEMPT_TIMEOUT).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The controller's attempts in all, and the most they take against a receiver that never
/// answers: 4 × 10 s, plus waits of 1, 2 and 4 s.
const ATTEMPTS: usize = 4;
const ALL_ATTEMPTS: Duration = Duration::from_secs(47);
const POD: &str = "kube-reloader-7c9d5-x2x8q";

/// What the receiver does with each request.
#[derive(Clone, Copy)]
pub(crate) enum Answer {
    Status(u16),
    /// Read the request, then hold the connection open without a word.
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the alert is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// An HTTP/1.1 receiver on 127.0.0.1 recording every request (progressive.rs uses it too).
pub(crate) struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move { serve(conn, answer, log).await });
            }
        });
        Self { addr, received }
    }

    /// The webhook URL: a path and a query carrying the secret token, as real ones do.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/hooks/{TOKEN}?token={TOKEN}", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().expect("receiver log").clone()
    }

    /// Waits until `n` requests have come, and returns them all.
    async fn wait(&self, n: usize, timeout: Duration) -> Vec<Received> {
        wait_for(
            &format!("{n} requests to the receiver"),
            timeout,
            || async {
                let got = self.received();
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

async fn serve(mut conn: TcpStream, answer: Answer, log: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    log.lock().expect("receiver log").push(Received {
        method,
        target,
        headers,
        body,
    });
    match answer {
        Answer::Status(code) => {
            let text = if code < 300 { "ok" } else { "receiver_down" };
            let response = format!(
                "HTTP/1.1 {code} Whatever\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
        Answer::Hang => {
            // Keep the connection until the client gives up and closes it.
            let _ = conn.read(&mut chunk).await;
        }
    }
}

/// The value of the sample whose line starts with `series` (name and labels).
pub(crate) fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn alerts_total(addr: SocketAddr, result: &str) -> Option<f64> {
    let (_, text) = http_get(addr, "/metrics").await;
    sample(
        &text,
        &format!("kube_reloader_alerts_total{{result=\"{result}\"}}"),
    )
}

/// The pod template's digest annotation of Deployment `web`.
async fn template_hash(ns: &TestNs) -> Option<String> {
    workloads::annotation(ns, Kind::Deployment, "web", HASH, true).await
}

/// Changes ConfigMap `cfg` to `value` and waits for kube-reloader to write the rollout into the
/// pod template; how long that took.
async fn change_and_time_rollout(ns: &TestNs, value: &str) -> Duration {
    let before = template_hash(ns).await;
    let start = Instant::now();
    configmap(ns, "cfg", &[("k", value)], json!({})).await;
    wait_for("the rollout", TIMEOUT, || async {
        let now = template_hash(ns).await;
        (now.is_some() && now != before).then_some(())
    })
    .await;
    start.elapsed()
}

/// ConfigMap `cfg`, Deployment `web` using it, and kube-reloader (as Pod [`POD`]) sending
/// alerts to `receiver` in `format`, the baseline recorded.
async fn setup(prefix: &str, receiver: &Receiver, format: &str) -> (TestNs, Reloader) {
    let ns = TestNs::new(prefix).await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let url = format!("--alert-webhook-url={}", receiver.url());
    let format = format!("--alert-format={format}");
    let args = [url.as_str(), &format, "--cluster-name=test-cluster"];
    let reloader = Reloader::start_as(&ns, &args, Some(POD));
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    (ns, reloader)
}

/// Neither the log nor any Event shows the webhook URL's secret part.
async fn secret_never_shown(ns: &TestNs, reloader: &Reloader) {
    assert!(
        !reloader.logs().contains(TOKEN),
        "the log shows the webhook URL"
    );
    let events =
        kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(ns.client.clone(), &ns.name)
            .list(&Default::default())
            .await
            .expect("list Events");
    for e in events.items {
        let note = e.note.unwrap_or_default();
        assert!(
            !note.contains(TOKEN),
            "an Event shows the webhook URL: {note}"
        );
    }
}

/// A ConfigMap change rolls the Deployment, and the receiver gets exactly one POST about it (none
/// for the baseline), in `format`'s body; the alert counted as sent.
async fn one_alert_per_rollout(format: &str) -> (TestNs, Received) {
    let receiver = Receiver::start(Answer::Status(200)).await;
    let (ns, reloader) = setup(&format!("alert-{format}"), &receiver, format).await;
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(&ns, Kind::Deployment, "web", 1).await;
    let got = receiver.wait(1, TIMEOUT).await;
    // Later reconciles find it up to date: nothing more is sent.
    reloader.wait_up_to_date("web", 1).await;
    let addr = reloader.http_addr().await;
    wait_for("the alert to be counted as sent", TIMEOUT, || async {
        (alerts_total(addr, "sent").await == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(alerts_total(addr, "failed").await, Some(0.0));
    assert_eq!(alerts_total(addr, "dropped").await, Some(0.0));
    assert_eq!(receiver.received().len(), 1, "{got:#?}");
    let alert = got.into_iter().next().expect("one request");
    assert_eq!(alert.method, "POST");
    assert_eq!(alert.target, format!("/hooks/{TOKEN}?token={TOKEN}"));
    assert_eq!(alert.header("content-type"), Some("application/json"));
    assert!(
        alert
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("kube-reloader/")),
        "{alert:?}"
    );
    secret_never_shown(&ns, &reloader).await;
    (ns, alert)
}

#[tokio::test]
async fn json_alert_is_one_document_per_rollout() {
    let (ns, alert) = one_alert_per_rollout("json").await;
    let reloaded_at = workloads::annotation(&ns, Kind::Deployment, "web", RELOADED_AT, false)
        .await
        .expect("reloaded-at");
    assert_eq!(
        alert.json(),
        json!({
            "reason": "Reloaded",
            "cluster": "test-cluster",
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": ns.name,
            "name": "web",
            "changed": [{"kind": "ConfigMap", "name": "cfg"}],
            "time": reloaded_at,
            "message": format!("kube-reloader rolled out Deployment {}/web in cluster test-cluster because ConfigMap/cfg changed.", ns.name),
        })
    );
}

#[tokio::test]
async fn slack_alert_is_text_and_mrkdwn_blocks() {
    let (ns, alert) = one_alert_per_rollout("slack").await;
    let v = alert.json();
    let text = v["text"].as_str().expect("text");
    assert!(text.contains(&format!("Deployment {}/web", ns.name)), "{v}");
    let blocks = v["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty());
    for block in blocks {
        assert_eq!(block["type"], "section", "{v}");
        let texts = block["fields"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![block["text"].clone()]);
        for t in texts {
            assert_eq!(t["type"], "mrkdwn", "{v}");
            assert!(t["text"].is_string(), "{v}");
        }
    }
    assert!(v.to_string().contains("`ConfigMap/cfg`"), "{v}");
    assert!(v.to_string().contains("test-cluster"), "{v}");
}

#[tokio::test]
async fn teams_alert_is_an_adaptive_card_message() {
    let (ns, alert) = one_alert_per_rollout("teams").await;
    let v = alert.json();
    assert_eq!(v["type"], "message");
    let attachments = v["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1, "{v}");
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let body = card["body"].as_array().expect("card body");
    assert_eq!(body[0]["type"], "TextBlock");
    assert_eq!(
        body[0]["text"],
        format!("Rolled out Deployment {}/web", ns.name)
    );
    assert_eq!(body[1]["type"], "FactSet");
    let facts = body[1]["facts"].as_array().expect("facts");
    assert!(
        facts
            .iter()
            .any(|f| f["title"] == "Changed" && f["value"] == "ConfigMap/cfg"),
        "{v}"
    );
    assert!(
        facts
            .iter()
            .any(|f| f["title"] == "Cluster" && f["value"] == "test-cluster"),
        "{v}"
    );
}

#[tokio::test]
async fn gchat_alert_is_text() {
    let (ns, alert) = one_alert_per_rollout("gchat").await;
    let v = alert.json();
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["text"]);
    let text = v["text"].as_str().expect("text");
    assert!(
        text.starts_with(&format!("*Rolled out Deployment {}/web*\n", ns.name)),
        "{text}"
    );
    assert!(text.contains("`ConfigMap/cfg`"), "{text}");
    assert!(text.contains("Cluster: test-cluster"), "{text}");
}

#[tokio::test]
async fn a_dry_run_sends_no_alert() {
    let receiver = Receiver::start(Answer::Status(200)).await;
    let ns = TestNs::new("alert-dryrun").await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let url = format!("--alert-webhook-url={}", receiver.url());
    let reloader = Reloader::start(&ns, &["--dry-run", &url]);
    reloader
        .wait_count(&["dry run: would record the baseline", "name=web"], 1)
        .await;
    configmap(&ns, "cfg", &[("k", "2")], json!({})).await;
    reloader
        .wait_count(&["dry run: would roll out", "name=web"], 1)
        .await;
    let addr = reloader.http_addr().await;
    // An alert would have been handed to the sender at once; its POST takes milliseconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.received().is_empty(), "{:#?}", receiver.received());
    assert_eq!(alerts_total(addr, "sent").await, Some(0.0));
}

/// The controller as Pod [`POD`] reports an undelivered alert: `failed` counted, a warning
/// naming the host and the cause, and a Warning Event `AlertFailed` on that Pod.
async fn failure_reported(
    ns: &TestNs,
    reloader: &Reloader,
    receiver: &Receiver,
    cause: &str,
    timeout: Duration,
) {
    let addr = reloader.http_addr().await;
    wait_for("the alert to be counted as failed", timeout, || async {
        (alerts_total(addr, "failed").await >= Some(1.0)).then_some(())
    })
    .await;
    let host = receiver.addr.to_string();
    reloader
        .wait_count(&["alert not delivered", &host, cause], 1)
        .await;
    let notes = wait_for("an AlertFailed Event on the Pod", TIMEOUT, || async {
        let notes = objects::events_about(ns, Some("Pod"), POD, "AlertFailed").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains(&host), "{notes:?}");
    assert!(notes[0].contains(cause), "{notes:?}");
    assert!(notes[0].contains("4 attempt(s)"), "{notes:?}");
    let events =
        kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(ns.client.clone(), &ns.name)
            .list(&Default::default())
            .await
            .expect("list Events");
    let event = events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("AlertFailed"))
        .expect("the AlertFailed Event");
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let pod = event.regarding.as_ref().expect("regarding");
    assert_eq!(
        (pod.kind.as_deref(), pod.api_version.as_deref()),
        (Some("Pod"), Some("v1"))
    );
    assert_eq!(pod.namespace.as_deref(), Some(ns.name.as_str()));
    secret_never_shown(ns, reloader).await;
}

#[tokio::test]
async fn a_failing_receiver_delays_no_rollout_and_is_reported() {
    let receiver = Receiver::start(Answer::Status(500)).await;
    let (ns, reloader) = setup("alert-500", &receiver, "json").await;
    let first = change_and_time_rollout(&ns, "2").await;
    // The second rollout comes while the first alert is still being retried (1 + 2 + 4 s).
    let second = change_and_time_rollout(&ns, "3").await;
    eprintln!("receiver answering 500: rollouts took {first:?} and {second:?}");
    for took in [first, second] {
        assert!(took < ATTEMPT_TIMEOUT, "a rollout took {took:?}");
    }
    failure_reported(&ns, &reloader, &receiver, "HTTP 500", TIMEOUT).await;
    // Each alert was attempted four times.
    let got = receiver.wait(2 * ATTEMPTS, TIMEOUT).await;
    assert!(got.iter().all(|r| r.method == "POST"), "{got:#?}");
}

#[tokio::test]
async fn a_hanging_receiver_delays_no_rollout_and_is_reported() {
    let receiver = Receiver::start(Answer::Hang).await;
    let (ns, reloader) = setup("alert-hang", &receiver, "slack").await;
    let first = change_and_time_rollout(&ns, "2").await;
    // The first alert's POST is hanging now; the next rollout does not wait for it.
    receiver.wait(1, TIMEOUT).await;
    let second = change_and_time_rollout(&ns, "3").await;
    eprintln!("receiver never answering: rollouts took {first:?} and {second:?}");
    for took in [first, second] {
        assert!(
            took < ATTEMPT_TIMEOUT,
            "a rollout took {took:?}, longer than an alert attempt"
        );
    }
    assert_eq!(
        workloads::rollouts(&ns, Kind::Deployment, "web").await,
        2,
        "both rollouts made"
    );
    let waited = Instant::now();
    failure_reported(
        &ns,
        &reloader,
        &receiver,
        "no answer within 10s",
        ALL_ATTEMPTS + TIMEOUT,
    )
    .await;
    eprintln!(
        "receiver never answering: the failure was reported {:?} after the second rollout",
        waited.elapsed()
    );
}

/// Changes ConfigMap `cfg` of a namespace set up by [`setup_with_env`] and waits until
/// `receiver` has its alert and the reloader has counted it as sent.
async fn one_alert_sent(ns: &TestNs, reloader: &Reloader, receiver: &Receiver) -> Received {
    configmap(ns, "cfg", &[("k", "2")], json!({})).await;
    workloads::wait_rollouts(ns, Kind::Deployment, "web", 1).await;
    let got = receiver.wait(1, TIMEOUT).await;
    let addr = reloader.http_addr().await;
    wait_for("the alert to be counted as sent", TIMEOUT, || async {
        (alerts_total(addr, "sent").await == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(got.len(), 1, "{got:#?}");
    got.into_iter().next().expect("one request")
}

/// Like [`setup`], with `args` besides the URL and these environment variables.
async fn setup_with_env(
    prefix: &str,
    receiver: &Receiver,
    args: &[&str],
    env: &[(&str, &str)],
) -> (TestNs, Reloader) {
    let ns = TestNs::new(prefix).await;
    workloads::opted_in_with_configmap(&ns, "web").await;
    let url = format!("--alert-webhook-url={}", receiver.url());
    let all: Vec<&str> = std::iter::once(url.as_str())
        .chain(args.iter().copied())
        .collect();
    let reloader = Reloader::start_with_env(&ns, &all, None, env);
    workloads::baseline(&ns, Kind::Deployment, "web").await;
    (ns, reloader)
}

/// `--alert-proxy` carries the alert, with its credentials, although the environment names
/// another proxy and NO_PROXY names the receiver's host: the flag overrides them all. Only the
/// proxy's host is ever shown.
#[tokio::test]
async fn alerts_go_through_the_alert_proxy_whatever_the_environment_says() {
    const CREDENTIALS: &str = "alerts:pr0xy-pa55";
    let receiver = Receiver::start(Answer::Status(200)).await;
    let flag_proxy = Proxy::start().await;
    let env_proxy = Proxy::start().await;
    let flag = format!("--alert-proxy={}", flag_proxy.url(Some(CREDENTIALS)));
    let env_url = env_proxy.url(None);
    let env = [("HTTP_PROXY", env_url.as_str()), ("NO_PROXY", "127.0.0.1")];
    let (ns, reloader) = setup_with_env("alert-proxy", &receiver, &[&flag], &env).await;
    let alert = one_alert_sent(&ns, &reloader, &receiver).await;
    assert_eq!(alert.method, "POST");
    assert_eq!(alert.target, format!("/hooks/{TOKEN}?token={TOKEN}"));
    assert_eq!(alert.json()["name"], "web");

    let proxied = flag_proxy.proxied();
    assert_eq!(proxied.len(), 1, "{proxied:#?}");
    assert_eq!(proxied[0].method, "POST");
    assert_eq!(
        proxied[0].target,
        receiver.url(),
        "absolute form, to the receiver"
    );
    // "Basic " + base64("alerts:pr0xy-pa55")
    assert_eq!(
        proxied[0].proxy_authorization.as_deref(),
        Some("Basic YWxlcnRzOnByMHh5LXBhNTU=")
    );
    assert!(env_proxy.proxied().is_empty(), "{:#?}", env_proxy.proxied());
    let host = flag_proxy.addr.to_string();
    assert_eq!(reloader.count(&["alerts on", &format!("proxy={host}")]), 1);
    assert!(
        !reloader.logs().contains("pr0xy-pa55"),
        "the log shows the proxy's password"
    );
    secret_never_shown(&ns, &reloader).await;
}

/// Without the flag, HTTP_PROXY carries an http:// alert, and a host that NO_PROXY names is
/// reached directly.
#[tokio::test]
async fn alerts_follow_the_environments_proxy_except_to_no_proxy_hosts() {
    let (via, direct) = (
        Receiver::start(Answer::Status(200)).await,
        Receiver::start(Answer::Status(200)).await,
    );
    let (proxy, bypassed) = (Proxy::start().await, Proxy::start().await);
    let (proxy_url, bypassed_url) = (proxy.url(None), bypassed.url(None));
    let proxied_env = [("HTTP_PROXY", proxy_url.as_str())];
    let direct_env = [
        ("http_proxy", bypassed_url.as_str()),
        ("NO_PROXY", "example.com,127.0.0.1"),
    ];
    let ((via_ns, via_reloader), (direct_ns, direct_reloader)) = tokio::join!(
        setup_with_env("alert-envproxy", &via, &[], &proxied_env),
        setup_with_env("alert-noproxy", &direct, &[], &direct_env),
    );
    let (alert, direct_alert) = tokio::join!(
        one_alert_sent(&via_ns, &via_reloader, &via),
        one_alert_sent(&direct_ns, &direct_reloader, &direct),
    );
    assert_eq!(alert.json()["namespace"], via_ns.name.as_str());
    assert_eq!(direct_alert.json()["namespace"], direct_ns.name.as_str());
    let proxied = proxy.proxied();
    assert_eq!(proxied.len(), 1, "{proxied:#?}");
    assert_eq!(
        (proxied[0].method.as_str(), proxied[0].target.as_str()),
        ("POST", via.url().as_str())
    );
    assert!(bypassed.proxied().is_empty(), "{:#?}", bypassed.proxied());
    for reloader in [&via_reloader, &direct_reloader] {
        assert_eq!(reloader.count(&["alerts on", "proxy=environment"]), 1);
    }
}

/// An https:// receiver is reached through a CONNECT tunnel: the proxy sees only its host and
/// port, and the TLS handshake goes through to the receiver (whose certificate, on loopback, no
/// public root vouches for, so the alert fails there, as it should).
#[tokio::test]
async fn https_alerts_tunnel_through_the_proxy() {
    use kube_reloader::alerts::{Poster, Route, SecretUrl, Target};

    let tls_receiver = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let receiver_addr = tls_receiver.local_addr().expect("address");
    let first_bytes = tokio::spawn(async move {
        let (mut conn, _) = tls_receiver.accept().await.expect("accept");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).await.expect("read");
        buf
    });
    let proxy = Proxy::start().await;
    let url = format!("https://{receiver_addr}/hooks/{TOKEN}");
    let target = Target::parse(&SecretUrl::from(url)).expect("URL");
    let route = Route::from_flag(Some(&SecretUrl::from(proxy.url(None)))).expect("proxy");
    let once = backon::ExponentialBuilder::new().with_max_times(0);
    let poster = Poster::new(target, route, Duration::from_secs(5), once).expect("poster");
    let (attempts, result) = poster.deliver("{}").await;
    assert_eq!(attempts, 1);
    let failure = result.expect_err("no public root vouches for a loopback receiver");
    assert!(!failure.to_string().contains(TOKEN), "{failure}");

    let proxied = proxy.proxied();
    assert_eq!(proxied.len(), 1, "{proxied:#?}");
    assert_eq!(proxied[0].method, "CONNECT");
    assert_eq!(proxied[0].target, receiver_addr.to_string());
    let hello = tokio::time::timeout(TIMEOUT, first_bytes)
        .await
        .expect("the receiver got the handshake")
        .expect("receiver task");
    // A TLS record of type handshake (22), version 3.x: the ClientHello, through the tunnel.
    assert_eq!(&hello[..2], &[22, 3], "{hello:?}");
}

/// The chart's alert values: the URL comes from a Secret (rendered as a secretKeyRef, never as a
/// value), the format and cluster name as flags the binary takes; a namespaced install grants
/// the Events on the controller's own Pod in the release namespace, which the API server
/// authorizes as rendered.
#[tokio::test]
async fn chart_takes_the_webhook_url_from_a_secret() {
    use clap::Parser;
    use kube_reloader::alerts::Format;
    use kube_reloader::cli::Args;

    use crate::support::chart;

    const ALERTS: &str = "alerts: {webhookUrlSecret: {name: alert-webhook, key: hook-url}, format: slack}\nclusterName: prod-eu";
    let env = |r: &chart::Rendering, name: &str| {
        let d = r
            .objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment");
        let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        env.into_iter().find(|e| e["name"] == name)
    };
    let events_rule = json!({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]});
    let release_role_has_events = |r: &chart::Rendering, release: &str| {
        let role = r.get("Role", &format!("{release}-kube-reloader"));
        role["rules"]
            .as_array()
            .expect("rules")
            .contains(&events_rule)
    };

    // Off by default: no variable, no flag.
    let r = chart::render("r", "ns", "").expect("render");
    assert_eq!(env(&r, "KUBE_RELOADER_ALERT_WEBHOOK_URL"), None);
    assert_eq!(r.args(), ["--leader-elect"]);

    let r = chart::render("r", "ns", ALERTS).expect("render");
    assert_eq!(
        env(&r, "KUBE_RELOADER_ALERT_WEBHOOK_URL"),
        Some(json!({"name": "KUBE_RELOADER_ALERT_WEBHOOK_URL",
            "valueFrom": {"secretKeyRef": {"name": "alert-webhook", "key": "hook-url"}}}))
    );
    assert_eq!(
        r.args(),
        [
            "--leader-elect",
            "--alert-format=slack",
            "--cluster-name=prod-eu"
        ]
    );
    let args = std::iter::once("kube-reloader".to_string()).chain(r.args());
    let parsed = Args::try_parse_from(args).expect("the binary takes the chart's args");
    assert_eq!(parsed.alert_format, Format::Slack);
    assert_eq!(parsed.cluster_name, "prod-eu");
    assert_eq!(parsed.alert_proxy, None);
    // A proxy is a flag.
    let r =
        chart::render("r", "ns", "alerts: {proxy: \"http://proxy.corp:3128\"}").expect("render");
    assert_eq!(
        r.args(),
        ["--leader-elect", "--alert-proxy=http://proxy.corp:3128"]
    );
    let args = std::iter::once("kube-reloader".to_string()).chain(r.args());
    let parsed = Args::try_parse_from(args).expect("the binary takes the chart's args");
    assert_eq!(
        parsed.alert_proxy,
        Some("http://proxy.corp:3128".to_string().into())
    );
    // Cluster-wide, the ClusterRole's events rule covers the release namespace too.
    assert!(!release_role_has_events(&r, "r"));
    let cluster_role = r.get("ClusterRole", "r-kube-reloader");
    assert!(
        cluster_role["rules"]
            .as_array()
            .expect("rules")
            .contains(&events_rule)
    );

    // Namespaced: the release namespace's Role grants the Events, unless it is watched (and its
    // watch Role grants them already), and only with alerts on.
    let scoped = format!("watchNamespaces: [a, b]\n{ALERTS}");
    let r = chart::render("r", "ns", &scoped).expect("render");
    assert!(release_role_has_events(&r, "r"));
    let r = chart::render("r", "ns", "watchNamespaces: [a, b]").expect("render");
    assert!(!release_role_has_events(&r, "r"));
    let r =
        chart::render("r", "ns", &format!("watchNamespaces: [ns, b]\n{ALERTS}")).expect("render");
    assert!(!release_role_has_events(&r, "r"));

    // A URL in values, or a format the binary does not know, is refused naming the value.
    for (values, expected) in [
        (
            "alerts: {webhookUrl: \"https://hooks.example.com/s3cr3t\"}",
            "at '/alerts': additional properties 'webhookUrl' not allowed",
        ),
        (
            "alerts: {format: webex}",
            "at '/alerts/format': value must be one of 'json', 'slack', 'teams', 'gchat'",
        ),
        (
            "alerts: {webhookUrlSecret: {name: Alert_Webhook}}",
            "at '/alerts/webhookUrlSecret/name': 'Alert_Webhook' does not match pattern",
        ),
        (
            "clusterName: 7",
            "at '/clusterName': got number, want string",
        ),
        // Credentials go in a Secret, through extraEnv.
        (
            "alerts: {proxy: \"http://me:pw@proxy.corp:3128\"}",
            "at '/alerts/proxy': 'http://me:pw@proxy.corp:3128' does not match pattern",
        ),
        (
            "alerts: {proxy: \"proxy.corp:3128\"}",
            "at '/alerts/proxy': 'proxy.corp:3128' does not match pattern",
        ),
    ] {
        let err = chart::render("r", "ns", values)
            .err()
            .unwrap_or_else(|| panic!("values {values:?} rendered"));
        assert!(err.contains(expected), "{values:?}: {err}");
    }
    let err = chart::render_without_schema("r", "ns", "alerts: {format: webex}")
        .err()
        .expect("alerts.format webex rendered without the schema");
    assert!(
        err.contains("alerts.format must be json, slack, teams or gchat, not \"webex\""),
        "{err}"
    );
    let values = "alerts: {proxy: \"http://me:s3cr3t-pw@proxy.corp:3128\"}";
    let err = chart::render_without_schema("r", "ns", values)
        .err()
        .expect("a proxy with credentials rendered without the schema");
    assert!(
        err.contains("alerts.proxy must be an http:// or https:// URL without credentials"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-pw"), "{err}");

    // Applied to the API server: stored as rendered, and the ServiceAccount may record Events in
    // the release namespace.
    let cp = crate::support::shared();
    let release = TestNs::new("chart-alerts").await;
    let watched = TestNs::new("chart-alerts-w").await;
    let values = format!("watchNamespaces: [{}]\n{ALERTS}", watched.name);
    let r = chart::render("alerts", &release.name, &values).expect("render");
    cp.apply(&r.yaml);
    let deployment = r.get("Deployment", "alerts-kube-reloader");
    let live: Value = serde_json::from_str(&cp.kubectl(&[
        "get",
        "deployment",
        "alerts-kube-reloader",
        "-n",
        &release.name,
        "-o",
        "json",
    ]))
    .expect("kubectl JSON");
    if let Err(path) = chart::contains(&live, deployment) {
        panic!("the Deployment on the server differs from its rendering at {path}");
    }
    let sa = format!(
        "system:serviceaccount:{}:alerts-kube-reloader",
        release.name
    );
    let can_create_events = || {
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": sa, "resourceAttributes": {"namespace": release.name,
                "verb": "create", "group": "events.k8s.io", "resource": "events"}},
        });
        let args = ["create", "-f", "-", "-o", "jsonpath={.status.allowed}"];
        cp.kubectl_stdout(&args, &review.to_string()).trim() == "true"
    };
    wait_for(
        "the release Role to let the controller record Events on its Pod",
        Duration::from_secs(30),
        || async { can_create_events().then_some(()) },
    )
    .await;
}
