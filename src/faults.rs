//! What a failed request to the API server means for the user (a watch, the digest key's read):
//! its cause told apart (the API server unreachable, credentials refused, RBAC, an API not
//! served, the server failing), with what to do about it. One message per cause, so a connection
//! error is never blamed on RBAC.

use kube::runtime::watcher;

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
            Cause::Other => "other",
        }
    }

    /// Whether the same request may succeed later without anyone changing anything: the API
    /// server unreachable, failing or overloaded.
    pub fn transient(self) -> bool {
        matches!(self, Cause::Unreachable | Cause::ServerError(_))
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
            Cause::Other => return None,
        };
        Some(clause)
    }

    /// What happened and what to do, for a watch of `what` (`ConfigMaps`, `Deployments`).
    pub fn advice(self, what: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure("no", "Reason").with_code(code)))
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
                Cause::Other,
                "watching ConfigMaps failed. Retrying with backoff",
            ),
        ];
        for (cause, want) in cases {
            assert_eq!(cause.advice("ConfigMaps"), want);
        }
        let waits = [Cause::Unreachable, Cause::ServerError(429)];
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
}
