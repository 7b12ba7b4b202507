//! Alerts on rollout: one POST to `--alert-webhook-url` per rollout, in the body of the
//! `--alert-format` chosen (see docs/alerts.md).
//!
//! The pure part builds each format's body from an [`Alert`]. The shell is a bounded queue and
//! one sender task: a reconcile only offers an alert to the queue (never waiting: a full queue
//! drops it, counted), and the task POSTs each in turn, with a timeout and retries. Every alert
//! ends up counted in `kube_reloader_alerts_total` as sent, failed or dropped; a failure is also
//! a log line and (at most once a minute) a Warning Event `AlertFailed` on the controller's own
//! Pod. The URL is a secret (it carries the receiver's token): only its host is ever shown.
//!
//! The HTTP client is reqwest, with rustls on ring and Mozilla's roots compiled in; the attempts
//! are backon's. Alerts go directly, through the proxy the environment names, or through
//! `--alert-proxy` ([`Route`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use http::{StatusCode, Uri};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder};
use reqwest::Url;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::model::kinds::WorkloadRef;
use crate::rules::faults::causes;
use crate::state::metrics::Metrics;

/// The body an alert is POSTed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// kube-reloader's own JSON document (docs/alerts.md lists its fields). Reloader's sinks
    /// `webhook` and `raw` are taken as this.
    #[value(alias = "webhook", alias = "raw")]
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
    /// An alert about a halted progressive rollout (`RolloutHalted`): why this workload's
    /// rollout of the change named in `changed` failed. The workloads still to roll it are held.
    pub halted: Option<String>,
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
    match &a.halted {
        Some(why) => format!(
            "kube-reloader halted the rollout of {changed}{cluster}: the rollout of {} failed ({why}). The workloads still to roll it are held until the config changes again.",
            workload(a)
        ),
        None => format!(
            "kube-reloader rolled out {}{cluster} because {changed} changed.",
            workload(a)
        ),
    }
}

/// The title of an alert: what happened to which workload.
fn title(a: &Alert) -> String {
    match a.halted {
        Some(_) => format!("Rollout halted: {} failed", workload(a)),
        None => format!("Rolled out {}", workload(a)),
    }
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
    let mut doc = json!({
        "reason": if a.halted.is_some() { "RolloutHalted" } else { "Reloaded" },
        "cluster": a.cluster,
        "apiVersion": a.api_version,
        "kind": a.kind,
        "namespace": a.namespace,
        "name": a.name,
        "changed": changed,
        "time": a.time.to_string(),
        "message": sentence(a),
    });
    if let Some(why) = &a.halted {
        doc["why"] = json!(why);
    }
    doc
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
    let summary = format!("*{}*", slack_escape(&title(a)));
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
                    {"type": "TextBlock", "text": title(a),
                     "weight": "Bolder", "size": "Medium", "wrap": true},
                    {"type": "FactSet", "facts": facts},
                ],
            },
        }],
    })
}

/// A Google Chat incoming webhook message: `text`, in Chat's own formatting.
fn gchat(a: &Alert) -> Value {
    let mut text = format!("*{}*\n", title(a));
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

/// A URL given as a flag that is a secret: the webhook's carries the receiver's token, a proxy's
/// may carry credentials. It never shows in Debug output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl From<String> for SecretUrl {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretUrl(<secret>)")
    }
}

#[derive(Debug, Error)]
pub enum AlertError {
    #[error(
        "--alert-webhook-url is not an http:// or https:// URL with a host (the value is not shown: it is a secret): {0}"
    )]
    Url(&'static str),
    #[error(
        "--alert-proxy is not an http:// or https:// URL with a host (the value is not shown: it may carry credentials): {0}"
    )]
    ProxyUrl(&'static str),
    #[error("cannot set up TLS for alerts: {0}")]
    Tls(#[source] rustls::Error),
    #[error("cannot set up the HTTP client for alerts: {0}")]
    Client(String),
}

/// `url` checked as an http:// or https:// URL with a host: the URL, and its host (with the
/// port, if it names one); else what is wrong with it, never quoting it.
fn checked(url: &str) -> Result<(Url, String), &'static str> {
    let url = url.trim();
    // `http::Uri` first: stricter than `Url`, which reads `https:///x` as host `x`.
    let uri: Uri = url.parse().map_err(|_| "it does not parse as a URL")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the scheme must be http or https"),
    }
    let host = match uri.host() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => return Err("it has no host"),
    };
    let host = match uri.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let url = Url::parse(url).map_err(|_| "it does not parse as a URL")?;
    Ok((url, host))
}

/// Where alerts go: the URL, and its host (the only part that is ever shown).
#[derive(Clone)]
pub struct Target {
    url: Url,
    host: String,
}

impl Target {
    pub fn parse(url: &SecretUrl) -> Result<Self, AlertError> {
        if url.0.trim().is_empty() {
            return Err(AlertError::Url(
                "it is empty (leave it unset to send no alerts)",
            ));
        }
        let (url, host) = checked(&url.0).map_err(AlertError::Url)?;
        Ok(Self { url, host })
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

/// The variables that name a proxy, as curl reads them (`NO_PROXY` only exempts hosts).
pub const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// How alerts reach the receiver.
#[derive(Clone)]
pub enum Route {
    /// As the environment says, read at start as curl reads it: `HTTPS_PROXY` for an https://
    /// URL, `HTTP_PROXY` for an http:// one, `ALL_PROXY` for both (or their lower-case names),
    /// directly to a host that `NO_PROXY` names; directly when none is set.
    Environment,
    /// Through this proxy (`--alert-proxy`), whatever the environment says. An https:// URL
    /// goes through a CONNECT tunnel, so the proxy never sees the URL or the body.
    Proxy { url: Url, host: String },
}

impl Route {
    /// The route `--alert-proxy` gives: through it when set (and not empty, as an empty variable
    /// means unset), else the environment's.
    pub fn from_flag(proxy: Option<&SecretUrl>) -> Result<Self, AlertError> {
        match proxy.filter(|p| !p.0.trim().is_empty()) {
            None => Ok(Route::Environment),
            Some(p) => {
                let (url, host) = checked(&p.0).map_err(AlertError::ProxyUrl)?;
                Ok(Route::Proxy { url, host })
            }
        }
    }
}

impl fmt::Display for Route {
    /// For the start log: the proxy's host (never its credentials), `environment` when a proxy
    /// variable is set, else `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Proxy { host, .. } => f.write_str(host),
            Route::Environment
                if PROXY_VARIABLES
                    .iter()
                    .any(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty())) =>
            {
                f.write_str("environment")
            }
            Route::Environment => f.write_str("none"),
        }
    }
}

/// Alerts waiting to be sent, at most; beyond, new ones are dropped (and counted).
pub const QUEUE: usize = 1024;
/// Each attempt's bound, from connecting to the end of the answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The waits before the second, third and fourth attempts: 1 s, 2 s, 4 s.
pub const BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_secs(1))
    .with_factor(2.0)
    .with_max_times(3);
/// At most one `AlertFailed` Event per this period.
pub const EVENT_EVERY: Duration = Duration::from_secs(60);
/// How much of a receiver's refusal is read, to say why.
const ANSWER_READ: usize = 4096;

/// Why an alert was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The receiver answered with this status (and the start of its body, if any).
    Status(StatusCode, String),
    /// No answer within the attempt's timeout.
    Timeout(Duration),
    /// Connecting (to the receiver or the proxy), TLS or the exchange failed.
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
    http: reqwest::Client,
    target: Target,
    route: Route,
    timeout: Duration,
    backoff: ExponentialBuilder,
}

impl Poster {
    /// A poster going by `route`, with the given timeout per attempt and waits between attempts.
    /// HTTPS is verified against Mozilla's roots (webpki-roots), compiled in: the image has no
    /// CA bundle.
    pub fn new(
        target: Target,
        route: Route,
        timeout: Duration,
        backoff: ExponentialBuilder,
    ) -> Result<Self, AlertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(AlertError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // Not followed: the token would go to another place. A redirect is a refusal.
            .redirect(reqwest::redirect::Policy::none())
            // Every retry is ours (below), counted as an attempt.
            .retry(reqwest::retry::never())
            // No pooling: alerts are rare, and an idle connection would only hold memory (and go
            // stale on the receiver's side).
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .user_agent(concat!("kube-reloader/", env!("CARGO_PKG_VERSION")));
        if let Route::Proxy { url, .. } = &route {
            // Replaces the environment's proxies, NO_PROXY included.
            let proxy = reqwest::Proxy::all(url.clone())
                .map_err(|_| AlertError::ProxyUrl("reqwest does not take it as a proxy"))?;
            http = http.proxy(proxy);
        }
        let http = http
            .build()
            .map_err(|e| AlertError::Client(causes(&e.without_url())))?;
        Ok(Self {
            http,
            target,
            route,
            timeout,
            backoff,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Delivers `body`: attempts until one succeeds, one fails for good, or the backoff is used
    /// up. The number of attempts made, with the last failure if none succeeded.
    pub async fn deliver(&self, body: &str) -> (u32, Result<(), Failure>) {
        let attempts = AtomicU32::new(0);
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.post(body)
        })
        .retry(self.backoff)
        .sleep(tokio::time::sleep)
        .when(|failure| failure.verdict() == Verdict::Retry)
        .notify(|failure, wait| {
            tracing::debug!(host = %self.target.host, attempt = attempts.load(Ordering::Relaxed),
                error = %failure, "alert not delivered; retrying in {}s", wait.as_secs_f64());
        })
        .await;
        (attempts.into_inner(), result)
    }

    async fn post(&self, body: &str) -> Result<(), Failure> {
        let response = self
            .http
            .post(self.target.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| self.failure(e))?;
        let status = response.status();
        if verdict(status) == Verdict::Delivered {
            return Ok(());
        }
        // The start of the answer says why (Slack answers `invalid_token`, `no_text`...).
        Err(Failure::Status(status, excerpt(&start_of(response).await)))
    }

    fn failure(&self, e: reqwest::Error) -> Failure {
        if e.is_timeout() {
            Failure::Timeout(self.timeout)
        } else {
            // Without the URL: it is a secret.
            Failure::Transport(causes(&e.without_url()))
        }
    }
}

/// The first [`ANSWER_READ`] bytes of an answer's body, or what came before it broke off.
async fn start_of(mut response: reqwest::Response) -> Vec<u8> {
    let mut said = Vec::new();
    while said.len() < ANSWER_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => said.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    said
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
    /// The alert settings of `--alert-webhook-url`, `--alert-proxy`, `--alert-format` and
    /// `--cluster-name`; `None` without a URL.
    pub fn new(
        url: Option<&SecretUrl>,
        proxy: Option<&SecretUrl>,
        format: Format,
        cluster: &str,
    ) -> Result<Option<Self>, AlertError> {
        let Some(url) = url else {
            return Ok(None);
        };
        let target = Target::parse(url)?;
        let route = Route::from_flag(proxy)?;
        Ok(Some(Self {
            poster: Poster::new(target, route, ATTEMPT_TIMEOUT, BACKOFF)?,
            format,
            cluster: cluster.to_string(),
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
        tracing::info!(host = %host, format = %format, cluster = %cluster, proxy = %poster.route(),
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
            halted: None,
        };
        self.send(alert);
    }

    /// Queues the alert about a halted progressive rollout: `workload`'s rollout of `change`
    /// failed, for `why`.
    pub fn halted(&self, workload: &WorkloadRef, change: &str, why: &str, time: Timestamp) {
        self.send(Alert {
            cluster: self.cluster.clone(),
            api_version: workload.kind.api_version(),
            kind: workload.kind.as_str().to_string(),
            namespace: workload.namespace.clone(),
            name: workload.name.clone(),
            changed: vec![change.to_string()],
            time,
            halted: Some(why.to_string()),
        });
    }

    fn send(&self, alert: Alert) {
        let (kind, namespace, name) = (
            alert.kind.clone(),
            alert.namespace.clone(),
            alert.name.clone(),
        );
        if let Err(e) = self.queue.try_send(alert) {
            self.metrics.alert("dropped");
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "the queue is full",
                mpsc::error::TrySendError::Closed(_) => "the sender stopped",
            };
            tracing::warn!(%kind, %namespace, %name,
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
            let body = body(self.format, &alert).to_string();
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
            halted: None,
        }
    }

    #[test]
    fn a_halted_rollout_says_which_workload_failed_and_why() {
        let a = Alert {
            halted: Some("its new pods crash-loop".into()),
            ..alert("", &["ConfigMap/cfg"])
        };
        let doc = body(Format::Json, &a);
        assert_eq!(doc["reason"], "RolloutHalted");
        assert_eq!(doc["why"], "its new pods crash-loop");
        assert_eq!(
            doc["message"],
            "kube-reloader halted the rollout of ConfigMap/cfg: the rollout of Deployment shop/web failed (its new pods crash-loop). The workloads still to roll it are held until the config changes again."
        );
        let slack = body(Format::Slack, &a);
        assert_eq!(
            slack["blocks"][0]["text"]["text"],
            "*Rollout halted: Deployment shop/web failed*"
        );
        assert!(
            body(Format::Gchat, &a)["text"]
                .as_str()
                .unwrap()
                .starts_with("*Rollout halted")
        );
        assert!(body(Format::Json, &alert("", &[])).get("why").is_none());
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
        let url = |s: &str| SecretUrl::from(s.to_string());
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
    fn the_proxy_flag_is_checked_and_only_its_host_shown() {
        let flag = |s: &str| SecretUrl::from(s.to_string());
        // Unset or empty (an empty variable means unset): the environment's proxy, if any.
        assert!(matches!(Route::from_flag(None), Ok(Route::Environment)));
        assert!(matches!(
            Route::from_flag(Some(&flag(" "))),
            Ok(Route::Environment)
        ));
        for (given, host) in [
            ("http://proxy.corp:3128", "proxy.corp:3128"),
            ("https://me:pr0xypw@proxy.corp", "proxy.corp"),
            ("http://10.0.0.1:8080/", "10.0.0.1:8080"),
        ] {
            let route = Route::from_flag(Some(&flag(given))).unwrap();
            assert_eq!(route.to_string(), host, "{given}");
        }
        for bad in [
            "proxy.corp:3128",
            "socks5://proxy.corp:1080",
            "http://",
            "http:///pr0xypw",
            "pr0xypw at proxy",
        ] {
            let e = Route::from_flag(Some(&flag(bad)))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("--alert-proxy is not"), "{bad}: {e}");
            assert!(!e.contains("pr0xypw"), "{bad}: {e}");
        }
    }

    #[test]
    fn attempts_wait_one_two_then_four_seconds() {
        use backon::BackoffBuilder;
        let waits: Vec<Duration> = BACKOFF.build().collect();
        assert_eq!(
            waits,
            [1, 2, 4].map(Duration::from_secs),
            "docs/alerts.md states these"
        );
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
        let target = Target::parse(&SecretUrl::from(url.to_string())).unwrap();
        let backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(10))
            .with_factor(1.0)
            .with_max_times(3);
        let timeout = Duration::from_millis(timeout_ms);
        Poster::new(target, Route::Environment, timeout, backoff).unwrap()
    }

    #[tokio::test]
    async fn delivery_retries_failures_and_gives_up_on_a_refusal() {
        use std::sync::atomic::Ordering;
        let body = "{}";
        // Two failures, then accepted (202, as Teams answers).
        let (url, count) = receiver(vec![500, 429, 202]).await;
        assert_eq!(poster(&url, 2000).deliver(body).await, (3, Ok(())));
        assert_eq!(count.load(Ordering::SeqCst), 3);
        // Failing for good: four attempts in all, the last failure reported with its answer.
        let (url, count) = receiver(vec![503]).await;
        let (attempts, result) = poster(&url, 2000).deliver(body).await;
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
        let (attempts, result) = poster(&url, 2000).deliver(body).await;
        assert_eq!(attempts, 1);
        assert_eq!(
            result.unwrap_err().to_string(),
            "HTTP 403 Forbidden: \"nope\""
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // A receiver that never answers: each attempt times out.
        let (url, count) = receiver(vec![0]).await;
        let start = Instant::now();
        let (attempts, result) = poster(&url, 200).deliver(body).await;
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
        let (attempts, result) = poster(&url, 2000).deliver(body).await;
        assert_eq!(attempts, 4);
        let cause = result.unwrap_err().to_string();
        assert!(cause.contains("onnect"), "{cause}");
        assert!(!cause.contains("/hook"), "{cause}");
    }
}
