//! What a failed request to the API server means for the user (a watch, the digest key's read):
//! its cause told apart (the API server unreachable, credentials refused, RBAC, an API not
//! served, the server failing, a connection gone silent), with what to do about it. One message
//! per cause, so a connection error is never blamed on RBAC.

use std::time::Duration;

use kube::runtime::watcher;

/// The API server did not answer within a bound: the connection is taken for dead (a load
/// balancer or NAT dropped it without closing it, its peer died without a FIN), or the API server
/// is not answering. Raised by the bounded client of the adapters layer, told apart here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Silence {
    /// An open watch received nothing, no event and no bookmark, for `idle`.
    #[error(
        "the watch {what} received nothing (no event, no bookmark) for {}s: its connection is taken for dead",
        .idle.as_secs()
    )]
    Watch { what: String, idle: Duration },
    /// A request had no answer (or its answer stopped arriving) within `waited`.
    #[error(
        "{what} got no answer within {}s: its connection is taken for dead, or the API server is not answering",
        .waited.as_secs()
    )]
    Request { what: String, waited: Duration },
}

impl Silence {
    /// The silence somewhere in `error`'s chain of causes.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Silence> {
        let mut at = Some(error);
        while let Some(e) = at {
            if let Some(silence) = e.downcast_ref::<Silence>() {
                return Some(silence);
            }
            // An io::Error's source() is its inner error's source, not the inner error itself.
            at = match e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            };
        }
        None
    }
}

/// Whole seconds, as a [`Cause`] holds them (a cause stays as small as a status code).
fn secs(d: Duration) -> u16 {
    u16::try_from(d.as_secs()).unwrap_or(u16::MAX)
}

/// Why a watch (or a list) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// No answer: the connection failed, was refused or broke.
    Unreachable,
    /// 401: the credentials were refused.
    Unauthorized,
    /// 403: RBAC does not allow it.
    Forbidden,
    /// 404: the API server does not serve the resource (a CRD removed, an API this version lacks).
    NotServed,
    /// 5xx or 429: the API server answered, but failed or is overloaded.
    ServerError(u16),
    /// An open watch received nothing for this many seconds ([`Silence::Watch`]).
    Stalled(u16),
    /// A request had no answer within this many seconds ([`Silence::Request`]).
    TimedOut(u16),
    /// Anything else (a malformed answer, an expired watch).
    Other,
}

impl Cause {
    /// The cause of a watcher error.
    pub fn of(error: &watcher::Error) -> Cause {
        match error {
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e) => Self::of_client(e),
            watcher::Error::WatchError(status) => Self::of_code(status.code),
            watcher::Error::NoResourceVersion => Cause::Other,
        }
    }

    /// The cause of a client error.
    pub fn of_client(error: &kube::Error) -> Cause {
        match Silence::find(error) {
            Some(Silence::Watch { idle, .. }) => return Cause::Stalled(secs(*idle)),
            Some(Silence::Request { waited, .. }) => return Cause::TimedOut(secs(*waited)),
            None => {}
        }
        match error {
            kube::Error::Api(status) => Self::of_code(status.code),
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                Cause::Unreachable
            }
            _ => Cause::Other,
        }
    }

    fn of_code(code: u16) -> Cause {
        match code {
            401 => Cause::Unauthorized,
            403 => Cause::Forbidden,
            404 => Cause::NotServed,
            429 | 500..=599 => Cause::ServerError(code),
            _ => Cause::Other,
        }
    }

    /// A short, stable name (a log field).
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Unreachable => "unreachable",
            Cause::Unauthorized => "unauthorized",
            Cause::Forbidden => "forbidden",
            Cause::NotServed => "not_served",
            Cause::ServerError(_) => "server_error",
            Cause::Stalled(_) => "stalled",
            Cause::TimedOut(_) => "timeout",
            Cause::Other => "other",
        }
    }

    /// Whether the same request may succeed later without anyone changing anything: the API
    /// server unreachable, failing, overloaded or not answering.
    pub fn transient(self) -> bool {
        matches!(
            self,
            Cause::Unreachable | Cause::ServerError(_) | Cause::Stalled(_) | Cause::TimedOut(_)
        )
    }

    /// What happened and what to do, as one clause, for a request that RBAC allows with
    /// `rbac_needs` (`list and watch on ConfigMaps`) and that a 404 would answer as `not_found`
    /// says; `None` for [`Cause::Other`], where only the error itself can tell.
    pub fn explain(self, rbac_needs: &str, not_found: &str) -> Option<String> {
        let clause = match self {
            Cause::Unreachable => {
                "the API server could not be reached (the connection failed or broke); \
                 check that it is up and reachable from the controller"
                    .to_string()
            }
            Cause::Unauthorized => "the API server refused the controller's credentials (401); \
                 check its ServiceAccount token or kubeconfig"
                .to_string(),
            Cause::Forbidden => format!(
                "forbidden (403); the controller's RBAC needs {rbac_needs} (see docs/rbac.md)"
            ),
            Cause::NotServed => not_found.to_string(),
            Cause::ServerError(code) => {
                format!("the API server answered {code} (failing or overloaded)")
            }
            Cause::Stalled(secs) => format!(
                "nothing arrived (no event, no bookmark) for {secs}s, so its connection is taken \
                 for dead (a load balancer or NAT dropped it without closing it, or the API \
                 server stopped answering)"
            ),
            Cause::TimedOut(secs) => format!(
                "the API server did not answer within {secs}s (a dead connection, or the API \
                 server is not answering)"
            ),
            Cause::Other => return None,
        };
        Some(clause)
    }

    /// What happened and what to do, for a watch of `what` (`ConfigMaps`, `Deployments`).
    pub fn advice(self, what: &str) -> String {
        if let Cause::Stalled(_) = self
            && let Some(clause) = self.explain("", "")
        {
            return format!(
                "watching {what} stalled: {clause}. Restarting the watch on a fresh connection; changes made meanwhile are delivered by it"
            );
        }
        let not_served =
            format!("the API server does not serve {what} (404; was its CRD removed?)");
        match self.explain(&format!("list and watch on {what}"), &not_served) {
            Some(clause) => format!("watching {what} failed: {clause}. Retrying with backoff"),
            None => format!("watching {what} failed. Retrying with backoff"),
        }
    }
}

/// An error and its sources, joined: many errors' own message says little ("client error")
/// and leave the cause ("Connection refused") to their sources.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
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

/// Whether an API server's answer refuses a streaming list (a watch with `sendInitialEvents`):
/// its WatchList feature is off (Kubernetes 1.33's default, or turned off by an admin), and it
/// says so with a validation error naming the parameter.
pub fn refuses_streaming(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            matches!(status.code, 400 | 422) && status.message.contains("sendInitialEvents")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure("no", "Reason").with_code(code)))
    }

    #[test]
    fn a_refused_streaming_list_is_told_from_other_failures() {
        let refusal = |code: u16, message: &str| {
            kube::Error::Api(Box::new(
                Status::failure(message, "Invalid").with_code(code),
            ))
        };
        // What 1.33's API server answers (apimachinery's validation of the watch's options).
        let off = "ConfigMap \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled";
        assert!(refuses_streaming(&refusal(422, off)));
        assert!(refuses_streaming(&refusal(400, off)));
        assert!(!refuses_streaming(&refusal(403, off)));
        assert!(!refuses_streaming(&refusal(422, "name: Invalid value")));
        assert!(!refuses_streaming(&api(503)));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!refuses_streaming(&kube::Error::Service(Box::new(refused))));
    }

    #[test]
    fn each_failure_is_named_by_its_cause() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let cases = [
            (
                watcher::Error::InitialListFailed(kube::Error::Service(Box::new(refused))),
                Cause::Unreachable,
            ),
            (
                watcher::Error::WatchFailed(kube::Error::ReadEvents(std::io::Error::other(
                    "reset",
                ))),
                Cause::Unreachable,
            ),
            (
                watcher::Error::InitialListFailed(api(401)),
                Cause::Unauthorized,
            ),
            (watcher::Error::WatchStartFailed(api(403)), Cause::Forbidden),
            (
                watcher::Error::InitialListFailed(api(404)),
                Cause::NotServed,
            ),
            (
                watcher::Error::WatchStartFailed(api(503)),
                Cause::ServerError(503),
            ),
            (
                watcher::Error::WatchStartFailed(api(429)),
                Cause::ServerError(429),
            ),
            (
                watcher::Error::WatchError(Box::new(
                    Status::failure("gone", "Expired").with_code(410),
                )),
                Cause::Other,
            ),
            (watcher::Error::NoResourceVersion, Cause::Other),
            // A watch gone silent: the client's error inside the body's io::Error.
            (
                watcher::Error::WatchFailed(kube::Error::ReadEvents(std::io::Error::other(
                    Silence::Watch {
                        what: "of /api/v1/configmaps".into(),
                        idle: std::time::Duration::from_secs(45),
                    },
                ))),
                Cause::Stalled(45),
            ),
            // A request unanswered: the client's error as the service's.
            (
                watcher::Error::WatchStartFailed(kube::Error::Service(Box::new(
                    Silence::Request {
                        what: "GET /api/v1/configmaps".into(),
                        waited: std::time::Duration::from_secs(20),
                    },
                ))),
                Cause::TimedOut(20),
            ),
        ];
        for (error, want) in cases {
            assert_eq!(Cause::of(&error), want, "{error}");
        }
    }

    /// The watch messages, word for word (they are what users search their logs for).
    #[test]
    fn watch_advice_reads_in_full() {
        let cases = [
            (
                Cause::Unreachable,
                "watching ConfigMaps failed: the API server could not be reached (the connection failed or broke); check that it is up and reachable from the controller. Retrying with backoff",
            ),
            (
                Cause::Unauthorized,
                "watching ConfigMaps failed: the API server refused the controller's credentials (401); check its ServiceAccount token or kubeconfig. Retrying with backoff",
            ),
            (
                Cause::Forbidden,
                "watching ConfigMaps failed: forbidden (403); the controller's RBAC needs list and watch on ConfigMaps (see docs/rbac.md). Retrying with backoff",
            ),
            (
                Cause::NotServed,
                "watching ConfigMaps failed: the API server does not serve ConfigMaps (404; was its CRD removed?). Retrying with backoff",
            ),
            (
                Cause::ServerError(503),
                "watching ConfigMaps failed: the API server answered 503 (failing or overloaded). Retrying with backoff",
            ),
            (
                Cause::Stalled(45),
                "watching ConfigMaps stalled: nothing arrived (no event, no bookmark) for 45s, so its connection is taken for dead (a load balancer or NAT dropped it without closing it, or the API server stopped answering). Restarting the watch on a fresh connection; changes made meanwhile are delivered by it",
            ),
            (
                Cause::TimedOut(20),
                "watching ConfigMaps failed: the API server did not answer within 20s (a dead connection, or the API server is not answering). Retrying with backoff",
            ),
            (
                Cause::Other,
                "watching ConfigMaps failed. Retrying with backoff",
            ),
        ];
        for (cause, want) in cases {
            assert_eq!(cause.advice("ConfigMaps"), want);
        }
        let waits = [
            Cause::Unreachable,
            Cause::ServerError(429),
            Cause::Stalled(45),
            Cause::TimedOut(20),
        ];
        for cause in waits {
            assert!(cause.transient(), "{cause:?}");
        }
        for cause in [
            Cause::Unauthorized,
            Cause::Forbidden,
            Cause::NotServed,
            Cause::Other,
        ] {
            assert!(!cause.transient(), "{cause:?}");
        }
    }

    #[test]
    fn only_a_403_is_blamed_on_rbac() {
        for cause in [
            Cause::Unreachable,
            Cause::Unauthorized,
            Cause::NotServed,
            Cause::ServerError(500),
            Cause::Stalled(45),
            Cause::TimedOut(20),
            Cause::Other,
        ] {
            assert!(!cause.advice("ConfigMaps").contains("RBAC"), "{cause:?}");
        }
        let forbidden = Cause::Forbidden.advice("ConfigMaps");
        assert!(forbidden.contains("RBAC") && forbidden.contains("list and watch on ConfigMaps"));
        assert!(
            Cause::Unreachable
                .advice("Deployments")
                .contains("could not be reached")
        );
    }

    #[test]
    fn a_silent_watch_is_named_with_how_long_it_was_silent() {
        let advice = Cause::Stalled(45).advice("ConfigMaps");
        assert!(advice.contains("watching ConfigMaps stalled"), "{advice}");
        assert!(advice.contains("for 45s"), "{advice}");
        let silence = Silence::Watch {
            what: "of /api/v1/namespaces/shop/configmaps".into(),
            idle: std::time::Duration::from_secs(45),
        };
        assert_eq!(
            silence.to_string(),
            "the watch of /api/v1/namespaces/shop/configmaps received nothing (no event, no bookmark) for 45s: its connection is taken for dead"
        );
        assert_eq!(Cause::Stalled(45).as_str(), "stalled");
        assert_eq!(Cause::TimedOut(20).as_str(), "timeout");
    }
}
