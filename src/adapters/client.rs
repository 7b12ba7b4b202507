//! The Kubernetes client, made to notice dead connections. kube's client speaks HTTP/1.1, so
//! there are no HTTP/2 pings to find a connection that a load balancer or NAT stopped
//! forwarding, or whose peer died without closing it: such a connection stays open and silent, a
//! watch on it looks alive while delivering nothing, and a request on it waits for ever (TCP
//! keepalive would not see it either: a middlebox that keeps the flow half-open answers its
//! probes). So every request is bounded:
//!
//! - a watch that receives nothing, no event and no bookmark, for [`Timeouts::watch`] fails with
//!   [`Silence::Watch`], and its watcher starts it again; the API server is asked to end every
//!   watch before that ([`Timeouts::watch_server_seconds`]; it sends a bookmark 2 s before), so a
//!   live one is never silent that long;
//! - any other request (get, list, patch, apply, the Lease's) fails with [`Silence::Request`]
//!   when it has no answer, or its answer stops arriving, for [`Timeouts::request`];
//! - either failure also drops the idle connections of every client of the [`Connector`]: those
//!   pooled beside the dead one most likely went with it (a dropped NAT mapping, a dead peer),
//!   and a retry must not wait on them one after another. Requests in flight are left to finish
//!   or time out.
//!
//! kube's `Config::read_timeout` is no substitute: it applies to every request alike, and a
//! read timeout short enough to catch a dead write would end every live watch between two events.
//!
//! The API server's warnings (`Warning` response headers: a deprecated API, an unknown field,
//! …), which kube's client drops, are logged once each ([`Warnings`]).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use kube::api::{Api, WatchEvent, WatchParams};
use kube::client::Body;
use kube::{Client, Config};

use crate::locked;
use crate::rules::faults::{Silence, refuses_streaming};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long the client waits on the API server before taking a connection for dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A request without an answer within this fails; so does one whose answer stops arriving
    /// for this long.
    pub request: Duration,
    /// A watch that receives nothing for this long fails (and is started again).
    pub watch: Duration,
}

/// How much sooner than [`Timeouts::watch`] the API server is asked to end a watch: a live watch
/// ends (after a bookmark 2 s before) this long before the client would take it for dead, and
/// kube-runtime's own idle bound (the server's timeout plus 5 s) comes after ours.
const SERVER_END_MARGIN: Duration = Duration::from_secs(3);

impl Timeouts {
    /// The `timeoutSeconds` to ask of the API server for every watch ([`SERVER_END_MARGIN`]
    /// before [`Timeouts::watch`]).
    pub fn watch_server_seconds(&self) -> u32 {
        let secs = self.watch.saturating_sub(SERVER_END_MARGIN).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX).max(1)
    }
}

/// How a watch reads what exists before it watches (`--initial-list`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialList {
    /// Streaming where the API server serves it, paged where it refuses it: asked once at start
    /// ([`InitialList::resolve`]).
    #[default]
    Auto,
    /// Paged lists (`limit` and `continue`), then a watch from the list's resourceVersion: every
    /// release serves them.
    Paged,
    /// One watch that first streams every object (`sendInitialEvents`, the WatchList feature,
    /// on by default since Kubernetes 1.34's API server) and closes the list with a bookmark.
    /// The API server serves it from its watch cache instead of building list pages.
    Streaming,
}

impl InitialList {
    /// A watch configuration that reads its initial state this way.
    pub fn watch_config(self, timeouts: Timeouts) -> kube::runtime::watcher::Config {
        let config =
            kube::runtime::watcher::Config::default().timeout(timeouts.watch_server_seconds());
        match self {
            Self::Paged | Self::Auto => config,
            Self::Streaming => config.streaming_lists(),
        }
    }

    /// `Auto` made `Streaming` or `Paged`: a streaming watch of objects of kind `K` in
    /// `namespace` (all when `None`) is started, for one name no object has, so that nothing is
    /// read; the API server's refusal means `Paged`. Any other failure (unreachable, forbidden)
    /// also means `Paged`, which every release serves; said in the log, as the choice is.
    pub async fn resolve<K>(self, client: &Client, namespace: Option<&str>) -> InitialList
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        if self != Self::Auto {
            return self;
        }
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let params = WatchParams::streaming_lists()
            .fields("metadata.name=kube-reloader.initial-list-probe")
            .timeout(10);
        // Served: its first event (the bookmark that ends the empty list); closed without one:
        // unknown.
        let answer: Result<bool, kube::Error> = match api.watch_metadata(&params, "0").await {
            Ok(events) => match Box::pin(events).try_next().await {
                Ok(Some(WatchEvent::Error(status))) => Err(kube::Error::Api(status)),
                Ok(first) => Ok(first.is_some()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let why = match answer {
            Ok(true) => {
                tracing::info!(target: "kube_reloader::controller",
                    "the API server serves streaming lists: watches read what exists through them (--initial-list=auto)");
                return Self::Streaming;
            }
            Err(e) if refuses_streaming(&e) => {
                tracing::info!(target: "kube_reloader::controller", answer = %e,
                    "the API server refuses streaming lists (its WatchList feature is off): watches read what exists through paged lists (--initial-list=auto)");
                return Self::Paged;
            }
            Ok(false) => "the probe's watch closed without a bookmark".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(target: "kube_reloader::controller", error = %why,
            "could not ask the API server whether it serves streaming lists: watches read what exists through paged lists (--initial-list=auto; set --initial-list=streaming to insist)");
        Self::Paged
    }
}

/// Makes the clients of one API server. A dead connection found by any of them drops the idle
/// connections of all: they reach the API server by the same path.
#[derive(Clone)]
pub struct Connector {
    config: Config,
    /// How many times a connection was found dead; a pool made before the last one is replaced.
    deaths: Arc<AtomicU64>,
    /// The API server warnings logged by any of its clients.
    warnings: Arc<Warnings>,
}

impl Connector {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            deaths: Arc::default(),
            warnings: Arc::default(),
        }
    }

    /// A client whose requests are bounded by `timeouts`.
    pub fn client(&self, timeouts: Timeouts) -> Result<Client, kube::Error> {
        let default_namespace = self.config.default_namespace.clone();
        let service = Bounded {
            pool: Arc::new(Pool::new(self.clone())?),
            timeouts,
            warnings: Arc::clone(&self.warnings),
        };
        Ok(Client::new(service, default_namespace))
    }
}

/// The connection pool in use: kube's own client (TLS, credentials, retries of 429 and 5xx
/// answers), replaced by a fresh one once a connection was found dead.
struct Pool {
    connector: Connector,
    /// The client, and the count of deaths when it was made.
    current: Mutex<(u64, Client)>,
}

impl Pool {
    fn new(connector: Connector) -> Result<Self, kube::Error> {
        let deaths = connector.deaths.load(Ordering::Acquire);
        let client = Client::try_from(connector.config.clone())?;
        Ok(Self {
            connector,
            current: Mutex::new((deaths, client)),
        })
    }

    /// The client to send a request with, and its generation (for [`Pool::dead`]): a fresh one
    /// if a connection was found dead since the current one was made.
    fn get(&self) -> (u64, Client) {
        let mut current = locked(&self.current);
        let deaths = self.connector.deaths.load(Ordering::Acquire);
        if current.0 < deaths {
            match Client::try_from(self.connector.config.clone()) {
                Ok(client) => {
                    *current = (deaths, client);
                    tracing::debug!(target: "kube_reloader::client",
                        "dropped the idle connections to the API server: a connection was found dead"
                    );
                }
                Err(e) => {
                    tracing::warn!(target: "kube_reloader::client", error = %e, "could not make a fresh API client; keeping the old one")
                }
            }
        }
        current.clone()
    }

    /// A connection of the client of `generation` was found dead: every pool is replaced before
    /// its next request (once, however many requests of that generation report it).
    fn dead(&self, generation: u64) {
        let deaths = &self.connector.deaths;
        let _ = deaths.compare_exchange(
            generation,
            generation + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// The warnings the API server sent in `Warning` headers (RFC 9111's `code agent "text"`; the
/// API server sends code 299), their text unquoted. A header that does not parse is given whole.
pub fn server_warnings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            let mut parts = v.splitn(3, ' ');
            let code = parts
                .next()
                .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()));
            let quoted = code.and(parts.next()).and(parts.next());
            quoted.and_then(unquote).unwrap_or_else(|| v.to_string())
        })
        .collect()
}

/// The text of a quoted string at the start of `s` (`"a \"b\""` is `a "b"`), if it is one.
fn unquote(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut text = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?),
            '"' => return Some(text),
            c => text.push(c),
        }
    }
    None
}

/// The API server warnings already logged: each is logged once per process (a deprecated API
/// warns on every request), up to [`Warnings::MAX`] distinct ones.
#[derive(Default)]
struct Warnings(Mutex<BTreeSet<String>>);

impl Warnings {
    const MAX: usize = 100;

    fn log(&self, what: &str, headers: &HeaderMap) {
        for warning in server_warnings(headers) {
            let mut seen = locked(&self.0);
            if seen.len() >= Self::MAX || !seen.insert(warning.clone()) {
                continue;
            }
            drop(seen);
            tracing::warn!(target: "kube_reloader::client", request = %what, "the API server warns: {warning}");
        }
    }
}

/// The service under the [`Client`]: each request sent through the current [`Pool`], bounded.
#[derive(Clone)]
struct Bounded {
    pool: Arc<Pool>,
    timeouts: Timeouts,
    warnings: Arc<Warnings>,
}

impl tower_service::Service<Request<Body>> for Bounded {
    type Response = Response<Idle<Body>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The pool's client has a buffer of its own.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let watch = is_watch(request.uri());
        let what = if watch {
            format!("of {}", request.uri().path())
        } else {
            format!("{} {}", request.method(), request.uri().path())
        };
        let (generation, client) = self.pool.get();
        let pool = Arc::clone(&self.pool);
        let warnings = Arc::clone(&self.warnings);
        let Timeouts { request: bound, .. } = self.timeouts;
        let idle = if watch { self.timeouts.watch } else { bound };
        Box::pin(async move {
            let response = match tokio::time::timeout(bound, client.send(request)).await {
                Ok(response) => response?,
                Err(_) => {
                    pool.dead(generation);
                    let what = if watch {
                        format!("the watch {what}")
                    } else {
                        what
                    };
                    return Err(Box::new(Silence::Request {
                        what,
                        waited: bound,
                    }) as BoxError);
                }
            };
            warnings.log(&what, response.headers());
            let silence = if watch {
                Silence::Watch { what, idle }
            } else {
                Silence::Request { what, waited: idle }
            };
            let on_silence = Box::new(move || pool.dead(generation));
            Ok(response.map(|body| Idle::new(body, idle, silence, on_silence)))
        })
    }
}

/// Whether a request is a watch (`?watch=true`, or `1`).
fn is_watch(uri: &Uri) -> bool {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1")
}

/// A response body that fails with `silence` when nothing arrives for `bound` while it is being
/// read. Time the reader spends elsewhere does not count: a busy reader is not a dead connection.
struct Idle<B> {
    inner: B,
    bound: Duration,
    /// Armed while waiting for the next frame.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    silence: Option<Silence>,
    on_silence: Option<Box<dyn FnOnce() + Send>>,
}

impl<B> Idle<B> {
    fn new(
        inner: B,
        bound: Duration,
        silence: Silence,
        on_silence: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Self {
            inner,
            bound,
            timer: None,
            silence: Some(silence),
            on_silence: Some(on_silence),
        }
    }
}

impl<B> HttpBody for Idle<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(silence) = this.silence.as_ref() else {
            // Failed already.
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let bound = this.bound;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(bound)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let error = Box::new(silence.clone());
        this.silence = None;
        if let Some(renew) = this.on_silence.take() {
            renew();
        }
        Poll::Ready(Some(Err(error)))
    }

    fn is_end_stream(&self) -> bool {
        self.silence.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn the_server_ends_a_watch_before_the_client_would_take_it_for_dead() {
        let t = |watch| Timeouts {
            request: Duration::from_secs(20),
            watch: Duration::from_secs(watch),
        };
        assert_eq!(t(45).watch_server_seconds(), 42);
        assert_eq!(t(10).watch_server_seconds(), 7);
        assert_eq!(t(2).watch_server_seconds(), 1);
    }

    #[tokio::test]
    async fn a_dead_connection_renews_every_pool_of_the_connector_once() {
        let connector = Connector::new(Config::new("https://127.0.0.1:1".parse().unwrap()));
        let (a, b) = (
            Pool::new(connector.clone()).unwrap(),
            Pool::new(connector.clone()).unwrap(),
        );
        let (generation, _) = a.get();
        assert_eq!(generation, 0);
        // Two requests of that generation found dead: one renewal.
        a.dead(generation);
        a.dead(generation);
        assert_eq!(connector.deaths.load(Ordering::Acquire), 1);
        assert_eq!(a.get().0, 1);
        assert_eq!(b.get().0, 1);
        // A late report from an older generation changes nothing.
        b.dead(0);
        assert_eq!(b.get().0, 1);
    }

    #[test]
    fn the_api_servers_warnings_are_read_unquoted() {
        let mut headers = HeaderMap::new();
        for v in [
            r#"299 - "batch/v1beta1 CronJob is deprecated in v1.21+, unavailable in v1.25+""#,
            r#"299 - "unknown field \"spec.foo\"" "Sat, 01 Jan 2000 00:00:00 GMT""#,
            "not the usual form",
        ] {
            headers.append(http::header::WARNING, v.parse().unwrap());
        }
        assert_eq!(
            server_warnings(&headers),
            [
                "batch/v1beta1 CronJob is deprecated in v1.21+, unavailable in v1.25+",
                r#"unknown field "spec.foo""#,
                "not the usual form",
            ]
        );
        assert!(server_warnings(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn watches_are_told_by_their_query() {
        let w = |uri: &str| is_watch(&uri.parse().unwrap());
        assert!(w("/api/v1/configmaps?watch=true&resourceVersion=5"));
        assert!(w("/api/v1/configmaps?resourceVersion=5&watch=1"));
        assert!(!w("/api/v1/configmaps?limit=10"));
        assert!(!w("/api/v1/configmaps?watch=false"));
        assert!(!w("/apis/apps/v1/namespaces/watch/deployments"));
    }

    /// A body that yields `frames` chunks, `every` apart, then stays silent.
    fn trickle(frames: usize, every: Duration) -> impl HttpBody<Data = Bytes, Error = BoxError> {
        let stream = futures::stream::unfold(0, move |n| async move {
            if n < frames {
                tokio::time::sleep(every).await;
                Some((Ok(Frame::data(Bytes::from("x"))), n + 1))
            } else {
                futures::future::pending::<()>().await;
                None
            }
        });
        http_body_util::StreamBody::new(stream)
    }

    fn silence() -> Silence {
        Silence::Watch {
            what: "of /api/v1/configmaps".into(),
            idle: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_fails_once_nothing_arrives_for_its_bound() {
        let renewed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&renewed);
        let body = Idle::new(
            Box::pin(trickle(3, Duration::from_secs(9))),
            Duration::from_secs(10),
            silence(),
            Box::new(move || flag.store(true, Ordering::SeqCst)),
        );
        let start = tokio::time::Instant::now();
        let mut body = body;
        for _ in 0..3 {
            let frame = body.frame().await.expect("a frame").expect("data");
            assert!(frame.is_data());
        }
        // Frames 9 s apart never trip a 10 s bound; then 10 s of nothing does.
        let error = body.frame().await.expect("an error").expect_err("silence");
        assert_eq!(start.elapsed(), Duration::from_secs(37));
        assert_eq!(error.downcast_ref::<Silence>(), Some(&silence()));
        assert!(renewed.load(Ordering::SeqCst));
        // And it ends there.
        assert!(body.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_reader_spends_elsewhere_does_not_count() {
        let mut body = Idle::new(
            Box::pin(trickle(2, Duration::from_secs(1))),
            Duration::from_secs(10),
            silence(),
            Box::new(|| {}),
        );
        body.frame().await.expect("a frame").expect("data");
        // The reader is busy for longer than the bound; the next frame was there all along.
        tokio::time::sleep(Duration::from_secs(30)).await;
        body.frame().await.expect("a frame").expect("data");
    }
}
