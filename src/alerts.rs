//! Alerts on rollout: one POST to `--alert-webhook-url` per rollout, in the body of the
//! `--alert-format` chosen (see docs/alerts.md).
//!
//! The pure part builds each format's body from an [`Alert`]. The shell is a bounded queue and
//! one sender task: a reconcile only offers an alert to the queue (never waiting: a full queue
//! drops it, counted), and the task POSTs each in turn, with a timeout and retries. Every alert
//! ends up counted in `kube_reloader_alerts_total` as sent, failed or dropped; a failure is also
//! a log line and (at most once a minute) a Warning Event `AlertFailed` on the controller's own
//! Pod. The URL is a secret (it carries the receiver's token): only its host is ever shown.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::cli::Args;
use crate::metrics::Metrics;
use crate::workload::WorkloadRef;

/// The body an alert is POSTed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// kube-reloader's own JSON document (docs/alerts.md lists its fields).
    Json,
    /// A Slack incoming webhook message: `text`, and `blocks` of mrkdwn sections.
    Slack,
    /// A Microsoft Teams Workflows (Power Automate) webhook message carrying an Adaptive Card.
    Teams,
    /// A Google Chat incoming webhook message: `text`.
    Gchat,
}

impl fmt::Display for Format {
    /// As the flag takes it: `json`, `slack`, `teams`, `gchat`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => Ok(()),
        }
    }
}

/// One rollout, as an alert reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// `--cluster-name`; empty when not set.
    pub cluster: String,
    /// The workload's apiVersion and kind (`apps/v1`, `Deployment`).
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The objects whose change was rolled out, `Kind/name` (`ConfigMap/cfg`), in the
    /// workload's namespace. Empty when they cannot be named.
    pub changed: Vec<String>,
    /// When the rollout was written.
    pub time: Timestamp,
}

/// How many characters of object names a chat message lists before it says "and N more": the
/// services cap a message or a section (Slack: 3000 characters a section, 2000 a field).
const LIST_BUDGET: usize = 1500;

/// The body of `alert` in `format`.
pub fn body(format: Format, alert: &Alert) -> Value {
    match format {
        Format::Json => json_document(alert),
        Format::Slack => slack(alert),
        Format::Teams => teams(alert),
        Format::Gchat => gchat(alert),
    }
}

/// The workload as people name it: `Deployment shop/web`.
fn workload(a: &Alert) -> String {
    format!("{} {}/{}", a.kind, a.namespace, a.name)
}

/// One sentence saying it all, in plain text.
fn sentence(a: &Alert) -> String {
    let cluster = if a.cluster.is_empty() {
        String::new()
    } else {
        format!(" in cluster {}", a.cluster)
    };
    let changed = listed(&a.changed, &|n| n.to_string());
    format!(
        "kube-reloader rolled out {}{cluster} because {changed} changed.",
        workload(a)
    )
}

/// The changed objects, each shown by `show`, as many as fit in [`LIST_BUDGET`] characters,
/// then "and N more".
fn listed(changed: &[String], show: &dyn Fn(&str) -> String) -> String {
    if changed.is_empty() {
        return "its tracked configuration".to_string();
    }
    let mut out = String::new();
    for (i, name) in changed.iter().enumerate() {
        let shown = show(name);
        if i > 0 && out.len() + shown.len() > LIST_BUDGET {
            return format!("{out} and {} more", changed.len() - i);
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&shown);
    }
    out
}

/// kube-reloader's own document: one object per rollout, its fields stable (docs/alerts.md).
fn json_document(a: &Alert) -> Value {
    let changed: Vec<Value> = a
        .changed
        .iter()
        .map(|c| match c.split_once('/') {
            Some((kind, name)) => json!({"kind": kind, "name": name}),
            None => json!({"kind": "", "name": c}),
        })
        .collect();
    json!({
        "reason": "Reloaded",
        "cluster": a.cluster,
        "apiVersion": a.api_version,
        "kind": a.kind,
        "namespace": a.namespace,
        "name": a.name,
        "changed": changed,
        "time": a.time.to_string(),
        "message": sentence(a),
    })
}

/// Slack reads `&`, `<` and `>` as markup (`<!channel>` notifies everyone): escaped as it asks.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

/// A Slack incoming webhook message: `text` (the notification and fallback) and `blocks`, a
/// section with the summary and one with the details as fields.
fn slack(a: &Alert) -> Value {
    let summary = format!("*Rolled out {}*", slack_escape(&workload(a)));
    let changed = listed(&a.changed, &|n| format!("`{}`", slack_escape(n)));
    let mut fields = vec![mrkdwn(format!("*Changed*\n{changed}"))];
    if !a.cluster.is_empty() {
        fields.push(mrkdwn(format!("*Cluster*\n{}", slack_escape(&a.cluster))));
    }
    fields.push(mrkdwn(format!("*Time*\n{}", a.time)));
    json!({
        "text": slack_escape(&sentence(a)),
        "blocks": [
            {"type": "section", "text": mrkdwn(summary)},
            {"type": "section", "fields": fields},
        ],
    })
}

/// A Teams Workflows webhook message: one Adaptive Card attachment, a title and a fact set.
fn teams(a: &Alert) -> Value {
    let mut facts = vec![];
    if !a.cluster.is_empty() {
        facts.push(json!({"title": "Cluster", "value": a.cluster}));
    }
    facts.extend([
        json!({"title": "Namespace", "value": a.namespace}),
        json!({"title": a.kind, "value": a.name}),
        json!({"title": "Changed", "value": listed(&a.changed, &|n| n.to_string())}),
        json!({"title": "Time", "value": a.time.to_string()}),
    ]);
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": format!("Rolled out {}", workload(a)),
                     "weight": "Bolder", "size": "Medium", "wrap": true},
                    {"type": "FactSet", "facts": facts},
                ],
            },
        }],
    })
}

/// A Google Chat incoming webhook message: `text`, in Chat's own formatting.
fn gchat(a: &Alert) -> Value {
    let mut text = format!("*Rolled out {}*\n", workload(a));
    let changed = listed(&a.changed, &|n| format!("`{n}`"));
    text.push_str(&format!("Changed: {changed}\n"));
    if !a.cluster.is_empty() {
        text.push_str(&format!("Cluster: {}\n", a.cluster));
    }
    text.push_str(&format!("Time: {}", a.time));
    json!({ "text": text })
}

/// What a receiver's answer means for the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt: the receiver is busy or failing (429, 5xx).
    Retry,
    /// Another attempt would get the same answer (a 4xx: a bad URL or token, a body refused;
    /// a redirect, which is not followed: the token would go to another place).
    GiveUp,
}

/// The verdict on an HTTP status. Any 2xx is a delivery: Teams' Workflows answer 202.
pub fn verdict(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Verdict::Retry
    } else {
        Verdict::GiveUp
    }
}

/// Allows something at most once per period (the `AlertFailed` Event).
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// Whether it may happen at `now`; if so, the next time is a period later.
    pub fn allow(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.every)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// The webhook URL as given: a secret, so it never shows in Debug output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl From<String> for WebhookUrl {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookUrl(<secret>)")
    }
}

#[derive(Debug, Error)]
pub enum AlertError {
    #[error(
        "--alert-webhook-url is not an http:// or https:// URL with a host (the value is not shown: it is a secret): {0}"
    )]
    Url(&'static str),
    #[error("cannot set up TLS for alerts: {0}")]
    Tls(#[source] rustls::Error),
}

/// Where alerts go: the URL, and its host (the only part that is ever shown).
#[derive(Clone)]
pub struct Target {
    uri: Uri,
    host: String,
}

impl Target {
    pub fn parse(url: &WebhookUrl) -> Result<Self, AlertError> {
        if url.0.trim().is_empty() {
            return Err(AlertError::Url(
                "it is empty (leave it unset to send no alerts)",
            ));
        }
        let uri: Uri = url
            .0
            .trim()
            .parse()
            .map_err(|_| AlertError::Url("it does not parse as a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(AlertError::Url("the scheme must be http or https")),
        }
        let host = match uri.host() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => return Err(AlertError::Url("it has no host")),
        };
        let host = match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Ok(Self { uri, host })
    }

    /// The host (and port, if the URL names one): what logs and Events name.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.host)
    }
}

/// Alerts waiting to be sent, at most; beyond, new ones are dropped (and counted).
pub const QUEUE: usize = 1024;
/// Each attempt's bound, from connecting to the answer's headers.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The waits before the second, third and fourth attempts.
pub const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// At most one `AlertFailed` Event per this period.
pub const EVENT_EVERY: Duration = Duration::from_secs(60);

type Http = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why an alert was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The receiver answered with this status (and the start of its body, if any).
    Status(StatusCode, String),
    /// No answer within the attempt's timeout.
    Timeout(Duration),
    /// Connecting, TLS or the exchange failed.
    Transport(String),
}

impl Failure {
    fn verdict(&self) -> Verdict {
        match self {
            Failure::Status(status, _) => verdict(*status),
            Failure::Timeout(_) | Failure::Transport(_) => Verdict::Retry,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(status, body) if body.is_empty() => write!(f, "HTTP {status}"),
            Failure::Status(status, body) => write!(f, "HTTP {status}: {body:?}"),
            Failure::Timeout(t) => write!(f, "no answer within {}s", t.as_secs_f64()),
            Failure::Transport(cause) => f.write_str(cause),
        }
    }
}

/// POSTs bodies to one URL, with a timeout per attempt and retries with backoff.
pub struct Poster {
    http: Http,
    target: Target,
    timeout: Duration,
    backoff: Vec<Duration>,
}

impl Poster {
    /// A poster with the given timeout per attempt and waits between attempts. HTTPS is
    /// verified against Mozilla's roots (webpki-roots), compiled in: the image has no CA bundle.
    pub fn new(
        target: Target,
        timeout: Duration,
        backoff: Vec<Duration>,
    ) -> Result<Self, AlertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(AlertError::Tls)?
            .https_or_http()
            .enable_http1()
            .build();
        // No pooling: alerts are rare, and an idle connection would only hold memory (and go
        // stale on the receiver's side).
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(https);
        Ok(Self {
            http,
            target,
            timeout,
            backoff,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Delivers `body`: attempts until one succeeds, one fails for good, or the backoff is used
    /// up. The number of attempts made, with the last failure if none succeeded.
    pub async fn deliver(&self, body: &Bytes) -> (u32, Result<(), Failure>) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match tokio::time::timeout(self.timeout, self.post(body.clone())).await {
                Ok(Ok(())) => return (attempts, Ok(())),
                Ok(Err(failure)) => failure,
                Err(_) => Failure::Timeout(self.timeout),
            };
            let wait = self.backoff.get(attempts as usize - 1);
            match (failure.verdict(), wait) {
                (Verdict::Retry, Some(wait)) => {
                    tracing::debug!(host = %self.target.host, attempt = attempts, error = %failure,
                        "alert not delivered; retrying in {}s", wait.as_secs_f64());
                    tokio::time::sleep(*wait).await;
                }
                _ => return (attempts, Err(failure)),
            }
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), Failure> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.target.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("kube-reloader/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| Failure::Transport(causes(&e)))?;
        let status = response.status();
        if verdict(status) == Verdict::Delivered {
            return Ok(());
        }
        // The start of the answer says why (Slack answers `invalid_token`, `no_text`...).
        let said = Limited::new(response.into_body(), 4096)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(Failure::Status(status, excerpt(&said)))
    }
}

/// The first 200 characters of a receiver's answer, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// An error and its sources, joined: hyper's own message alone says only "client error".
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The controller's own Pod, for the `AlertFailed` Event: `POD_NAME` in `POD_NAMESPACE` (or
/// the controller namespace), as the downward API sets them; `None` outside a Pod.
pub fn own_pod(controller_namespace: &str) -> Option<ObjectReference> {
    let var = |name| std::env::var(name).ok();
    pod_reference(var("POD_NAME"), var("POD_NAMESPACE"), controller_namespace)
}

/// The reference to Pod `name` in `namespace` (else in `controller_namespace`); `None` without a
/// name.
pub fn pod_reference(
    name: Option<String>,
    namespace: Option<String>,
    controller_namespace: &str,
) -> Option<ObjectReference> {
    let name = name.filter(|n| !n.is_empty())?;
    let namespace = namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| controller_namespace.to_string());
    Some(ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        name: Some(name),
        namespace: Some(namespace),
        ..ObjectReference::default()
    })
}

/// What alerts are sent with, checked from the flags before anything else starts.
pub struct Config {
    poster: Poster,
    format: Format,
    cluster: String,
}

impl Config {
    /// The alert settings of `--alert-webhook-url`, `--alert-format` and `--cluster-name`;
    /// `None` without a URL.
    pub fn from_args(args: &Args) -> Result<Option<Self>, AlertError> {
        let Some(url) = &args.alert_webhook_url else {
            return Ok(None);
        };
        let target = Target::parse(url)?;
        Ok(Some(Self {
            poster: Poster::new(target, ATTEMPT_TIMEOUT, BACKOFF.to_vec())?,
            format: args.alert_format,
            cluster: args.cluster_name.clone(),
        }))
    }
}

/// The reconcile's end of the queue: offers alerts, never waits.
pub struct Alerts {
    queue: mpsc::Sender<Alert>,
    metrics: Arc<Metrics>,
    cluster: String,
    host: String,
}

impl Alerts {
    /// Starts the sender task; alert failures are Evented on the controller's own Pod, found in
    /// `controller_namespace` unless POD_NAMESPACE says otherwise.
    pub fn start(
        config: Config,
        controller_namespace: &str,
        recorder: Recorder,
        metrics: Arc<Metrics>,
    ) -> Self {
        let Config {
            poster,
            format,
            cluster,
        } = config;
        let host = poster.target().host().to_string();
        let pod = own_pod(controller_namespace);
        metrics.alerts_on();
        tracing::info!(host = %host, format = %format, cluster = %cluster,
            event_on = ?pod.as_ref().and_then(|p| p.name.as_deref()),
            "alerts on: one POST per rollout");
        if pod.is_none() {
            tracing::info!(
                "POD_NAME is not set: alert failures are logged and counted, without an Event"
            );
        }
        let (queue, receiver) = mpsc::channel(QUEUE);
        let sender = Sender {
            poster,
            format,
            recorder,
            pod,
            metrics: Arc::clone(&metrics),
            throttle: Throttle::new(EVENT_EVERY),
        };
        tokio::spawn(sender.run(receiver));
        Self {
            queue,
            metrics,
            cluster,
            host,
        }
    }

    /// Queues the alert about a rollout of `workload` made at `time` because `changed` changed.
    /// Never waits: with the queue full (the receiver far behind), the alert is dropped.
    pub fn rolled(&self, workload: &WorkloadRef, changed: &[String], time: Timestamp) {
        let alert = Alert {
            cluster: self.cluster.clone(),
            api_version: workload.kind.api_version(),
            kind: workload.kind.as_str().to_string(),
            namespace: workload.namespace.clone(),
            name: workload.name.clone(),
            changed: changed.to_vec(),
            time,
        };
        if let Err(e) = self.queue.try_send(alert) {
            self.metrics.alert("dropped");
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "the queue is full",
                mpsc::error::TrySendError::Closed(_) => "the sender stopped",
            };
            tracing::warn!(kind = %workload.kind, namespace = %workload.namespace, name = %workload.name,
                host = %self.host, "alert dropped: {why} ({QUEUE} alerts waiting for the receiver)");
        }
    }
}

/// The sender task: POSTs queued alerts one at a time, and reports each failure.
struct Sender {
    poster: Poster,
    format: Format,
    recorder: Recorder,
    pod: Option<ObjectReference>,
    metrics: Arc<Metrics>,
    throttle: Throttle,
}

impl Sender {
    async fn run(mut self, mut queue: mpsc::Receiver<Alert>) {
        let host = self.poster.target().host().to_string();
        let host = host.as_str();
        while let Some(alert) = queue.recv().await {
            let body = Bytes::from(body(self.format, &alert).to_string());
            let (attempts, result) = self.poster.deliver(&body).await;
            match result {
                Ok(()) => {
                    self.metrics.alert("sent");
                    tracing::debug!(kind = %alert.kind, namespace = %alert.namespace, name = %alert.name,
                        host, attempts, "alert sent");
                }
                Err(failure) => {
                    self.metrics.alert("failed");
                    tracing::warn!(kind = %alert.kind, namespace = %alert.namespace, name = %alert.name,
                        host, attempts, error = %failure, "alert not delivered; giving up on it");
                    self.report(host, attempts, &failure).await;
                }
            }
        }
    }

    /// The `AlertFailed` Warning Event on the controller's Pod, at most once per
    /// [`EVENT_EVERY`].
    async fn report(&mut self, host: &str, attempts: u32, failure: &Failure) {
        let Some(pod) = &self.pod else { return };
        if !self.throttle.allow(Instant::now()) {
            return;
        }
        let note = format!(
            "A rollout alert could not be delivered to {host} after {attempts} attempt(s): {failure}. Later failures within a minute are counted in kube_reloader_alerts_total{{result=\"failed\"}} and logged, without an Event."
        );
        let event = Event {
            type_: EventType::Warning,
            reason: "AlertFailed".to_string(),
            // An Event's note holds at most 1 kB.
            note: Some(note.chars().take(1000).collect()),
            action: "Alert".to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, pod).await {
            tracing::warn!(error = %e,
                "could not publish Event AlertFailed on the controller's Pod (the controller needs create and patch on events.k8s.io events in its namespace)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(cluster: &str, changed: &[&str]) -> Alert {
        Alert {
            cluster: cluster.to_string(),
            api_version: "apps/v1".to_string(),
            kind: "Deployment".to_string(),
            namespace: "shop".to_string(),
            name: "web".to_string(),
            changed: changed.iter().map(|s| s.to_string()).collect(),
            time: "2026-03-01T12:30:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn json_is_one_document_with_every_field() {
        let a = alert("prod-eu", &["ConfigMap/cfg", "Secret/creds"]);
        assert_eq!(
            body(Format::Json, &a),
            json!({
                "reason": "Reloaded",
                "cluster": "prod-eu",
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "namespace": "shop",
                "name": "web",
                "changed": [{"kind": "ConfigMap", "name": "cfg"}, {"kind": "Secret", "name": "creds"}],
                "time": "2026-03-01T12:30:00Z",
                "message": "kube-reloader rolled out Deployment shop/web in cluster prod-eu because ConfigMap/cfg, Secret/creds changed.",
            })
        );
        // No cluster name: the field is there, empty; the message leaves it out.
        let v = body(Format::Json, &alert("", &["ConfigMap/cfg"]));
        assert_eq!(v["cluster"], "");
        assert_eq!(
            v["message"],
            "kube-reloader rolled out Deployment shop/web because ConfigMap/cfg changed."
        );
        // Changed objects that cannot be named.
        let v = body(Format::Json, &alert("", &[]));
        assert_eq!(v["changed"], json!([]));
        assert_eq!(
            v["message"],
            "kube-reloader rolled out Deployment shop/web because its tracked configuration changed."
        );
    }

    /// Slack's incoming webhooks take `text` (required as the notification text once `blocks`
    /// are given) and `blocks`; a section block has a `text` or up to 10 `fields`, each a text
    /// object (`type` `mrkdwn` or `plain_text`), at most 3000 characters (2000 a field).
    #[test]
    fn slack_is_text_and_mrkdwn_sections() {
        let v = body(Format::Slack, &alert("prod <eu> & co", &["ConfigMap/cfg"]));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["blocks", "text"]);
        assert_eq!(
            v["text"],
            "kube-reloader rolled out Deployment shop/web in cluster prod &lt;eu&gt; &amp; co because ConfigMap/cfg changed."
        );
        assert_eq!(
            v["blocks"],
            json!([
                {"type": "section", "text": {"type": "mrkdwn", "text": "*Rolled out Deployment shop/web*"}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": "*Changed*\n`ConfigMap/cfg`"},
                    {"type": "mrkdwn", "text": "*Cluster*\nprod &lt;eu&gt; &amp; co"},
                    {"type": "mrkdwn", "text": "*Time*\n2026-03-01T12:30:00Z"},
                ]},
            ])
        );
        // No cluster: no field for it.
        let v = body(Format::Slack, &alert("", &["ConfigMap/cfg"]));
        assert_eq!(v["blocks"][1]["fields"].as_array().unwrap().len(), 2);
        for block in v["blocks"].as_array().unwrap() {
            assert_eq!(block["type"], "section");
        }
    }

    /// Teams' Workflows webhooks take a message whose attachments carry an Adaptive Card
    /// (contentType application/vnd.microsoft.card.adaptive), version 1.4 at most on Teams.
    #[test]
    fn teams_is_a_message_with_one_adaptive_card() {
        let v = body(
            Format::Teams,
            &alert("prod", &["ConfigMap/cfg", "Secret/creds"]),
        );
        assert_eq!(v["type"], "message");
        let attachments = v["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1);
        assert_eq!(
            attachments[0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachments[0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(
            card["$schema"],
            "http://adaptivecards.io/schemas/adaptive-card.json"
        );
        assert_eq!(
            card["body"],
            json!([
                {"type": "TextBlock", "text": "Rolled out Deployment shop/web", "weight": "Bolder", "size": "Medium", "wrap": true},
                {"type": "FactSet", "facts": [
                    {"title": "Cluster", "value": "prod"},
                    {"title": "Namespace", "value": "shop"},
                    {"title": "Deployment", "value": "web"},
                    {"title": "Changed", "value": "ConfigMap/cfg, Secret/creds"},
                    {"title": "Time", "value": "2026-03-01T12:30:00Z"},
                ]},
            ])
        );
        let v = body(Format::Teams, &alert("", &["ConfigMap/cfg"]));
        let facts = &v["attachments"][0]["content"]["body"][1]["facts"];
        assert_eq!(facts[0]["title"], "Namespace");
    }

    /// Google Chat's incoming webhooks take a message with `text`, formatted with `*bold*` and
    /// `` `monospace` ``.
    #[test]
    fn gchat_is_formatted_text() {
        let v = body(Format::Gchat, &alert("prod", &["ConfigMap/cfg"]));
        assert_eq!(
            v,
            json!({"text": "*Rolled out Deployment shop/web*\nChanged: `ConfigMap/cfg`\nCluster: prod\nTime: 2026-03-01T12:30:00Z"})
        );
        let v = body(Format::Gchat, &alert("", &["ConfigMap/cfg"]));
        assert!(!v["text"].as_str().unwrap().contains("Cluster"), "{v}");
    }

    #[test]
    fn long_lists_of_changed_objects_are_cut_in_chat_formats_only() {
        let names: Vec<String> = (0..100)
            .map(|i| format!("ConfigMap/{}-{i:03}", "x".repeat(60)))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let a = alert("", &refs);
        let slack = body(Format::Slack, &a);
        let changed = slack["blocks"][1]["fields"][0]["text"].as_str().unwrap();
        assert!(changed.len() < 2000, "{}", changed.len());
        assert!(changed.ends_with(" more"), "{changed}");
        for format in [Format::Teams, Format::Gchat] {
            let text = body(format, &a).to_string();
            assert!(text.len() < 2500, "{format:?}: {}", text.len());
            assert!(text.contains("more"), "{format:?}");
        }
        // JSON names every one.
        let json = body(Format::Json, &a);
        assert_eq!(json["changed"].as_array().unwrap().len(), 100);
        // The count is right.
        let shown = listed(&names, &|n| n.to_string());
        let kept = shown.matches("ConfigMap/").count();
        assert!(
            shown.ends_with(&format!(" and {} more", 100 - kept)),
            "{shown}"
        );
    }

    #[test]
    fn statuses_decide_whether_to_retry() {
        let cases = [
            (200, Verdict::Delivered),
            (202, Verdict::Delivered), // Teams Workflows
            (204, Verdict::Delivered),
            (301, Verdict::GiveUp), // redirects are not followed
            (400, Verdict::GiveUp),
            (403, Verdict::GiveUp),
            (404, Verdict::GiveUp),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
        ];
        for (code, want) in cases {
            assert_eq!(verdict(StatusCode::from_u16(code).unwrap()), want, "{code}");
        }
    }

    #[test]
    fn the_failure_event_is_throttled_to_one_per_period() {
        let mut t = Throttle::new(Duration::from_secs(60));
        let start = Instant::now();
        assert!(t.allow(start));
        assert!(!t.allow(start + Duration::from_secs(1)));
        assert!(!t.allow(start + Duration::from_secs(59)));
        assert!(t.allow(start + Duration::from_secs(60)));
        assert!(!t.allow(start + Duration::from_secs(61)));
    }

    #[test]
    fn the_url_is_checked_and_never_shown() {
        let url = |s: &str| WebhookUrl::from(s.to_string());
        let t = Target::parse(&url("https://hooks.slack.com/services/T0/B0/s3cr3t")).unwrap();
        assert_eq!(t.host(), "hooks.slack.com");
        assert_eq!(format!("{t:?}"), "Target(hooks.slack.com)");
        let t = Target::parse(&url("http://user:pw@127.0.0.1:8080/hook?token=s3cr3t")).unwrap();
        assert_eq!(t.host(), "127.0.0.1:8080");
        let secret = url("https://example.com/s3cr3t");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        for bad in [
            "",
            "hooks.slack.com/s3cr3t",
            "ftp://example.com/s3cr3t",
            "https://",
            "https:///s3cr3t",
            "not a url s3cr3t",
        ] {
            let e = Target::parse(&url(bad))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("--alert-webhook-url is not"), "{bad}: {e}");
            assert!(!e.contains("s3cr3t"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_pod_reference_comes_from_the_downward_api() {
        let s = |v: &str| Some(v.to_string());
        let pod = pod_reference(s("kr-7d9f"), s("ops"), "kube-reloader").unwrap();
        assert_eq!(
            (pod.api_version, pod.kind, pod.name, pod.namespace, pod.uid),
            (s("v1"), s("Pod"), s("kr-7d9f"), s("ops"), None)
        );
        let pod = pod_reference(s("kr-7d9f"), None, "kube-reloader").unwrap();
        assert_eq!(pod.namespace, s("kube-reloader"));
        let pod = pod_reference(s("kr-7d9f"), s(""), "kube-reloader").unwrap();
        assert_eq!(pod.namespace, s("kube-reloader"));
        assert_eq!(pod_reference(None, s("ops"), "kube-reloader"), None);
        assert_eq!(pod_reference(s(""), s("ops"), "kube-reloader"), None);
    }

    #[test]
    fn receivers_answers_are_cut_to_one_short_line() {
        assert_eq!(excerpt(b"invalid_token\n"), "invalid_token");
        assert_eq!(excerpt(b"a\n  b\tc"), "a b c");
        let long = "x".repeat(300);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
    }

    /// A receiver on 127.0.0.1 answering each connection with the next of `statuses` (the last
    /// one repeated; 0: accept and never answer), counting the requests.
    async fn receiver(statuses: Vec<u16>) -> (String, Arc<std::sync::atomic::AtomicU32>) {
        use std::sync::atomic::{AtomicU32, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let count = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&count);
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let n = seen.fetch_add(1, Ordering::SeqCst) as usize;
                let status = statuses[n.min(statuses.len() - 1)];
                let mut buf = vec![0; 65536];
                let _ = conn.read(&mut buf).await;
                if status == 0 {
                    held.push(conn);
                    continue;
                }
                let body = "nope";
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        (url, count)
    }

    fn poster(url: &str, timeout_ms: u64) -> Poster {
        let target = Target::parse(&WebhookUrl::from(url.to_string())).unwrap();
        let backoff = vec![Duration::from_millis(10); 3];
        Poster::new(target, Duration::from_millis(timeout_ms), backoff).unwrap()
    }

    #[tokio::test]
    async fn delivery_retries_failures_and_gives_up_on_a_refusal() {
        use std::sync::atomic::Ordering;
        let body = Bytes::from_static(b"{}");
        // Two failures, then accepted (202, as Teams answers).
        let (url, count) = receiver(vec![500, 429, 202]).await;
        assert_eq!(poster(&url, 2000).deliver(&body).await, (3, Ok(())));
        assert_eq!(count.load(Ordering::SeqCst), 3);
        // Failing for good: four attempts in all, the last failure reported with its answer.
        let (url, count) = receiver(vec![503]).await;
        let (attempts, result) = poster(&url, 2000).deliver(&body).await;
        assert_eq!(attempts, 4);
        assert_eq!(
            result,
            Err(Failure::Status(
                StatusCode::SERVICE_UNAVAILABLE,
                "nope".into()
            ))
        );
        assert_eq!(count.load(Ordering::SeqCst), 4);
        // A refusal is not retried.
        let (url, count) = receiver(vec![403]).await;
        let (attempts, result) = poster(&url, 2000).deliver(&body).await;
        assert_eq!(attempts, 1);
        assert_eq!(
            result.unwrap_err().to_string(),
            "HTTP 403 Forbidden: \"nope\""
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // A receiver that never answers: each attempt times out.
        let (url, count) = receiver(vec![0]).await;
        let start = Instant::now();
        let (attempts, result) = poster(&url, 200).deliver(&body).await;
        assert_eq!(
            (attempts, result),
            (4, Err(Failure::Timeout(Duration::from_millis(200))))
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(count.load(Ordering::SeqCst), 4);
        // Nothing listening: a transport failure naming the cause, retried.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let (attempts, result) = poster(&url, 2000).deliver(&body).await;
        assert_eq!(attempts, 4);
        let cause = result.unwrap_err().to_string();
        assert!(cause.contains("onnect"), "{cause}");
        assert!(!cause.contains("/hook"), "{cause}");
    }
}
