//! What a failed watch means for the user: its cause told apart (the API server unreachable,
//! credentials refused, RBAC, an API not served, the server failing), with what to do about it.
//! One message per cause, so a connection error is never blamed on RBAC.

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

    /// What happened and what to do, for a watch of `what` (`ConfigMaps`, `Deployments`).
    pub fn advice(self, what: &str) -> String {
        match self {
            Cause::Unreachable => format!(
                "watching {what} failed: the API server could not be reached (the connection failed or broke); check that it is up and reachable from the controller. Retrying with backoff"
            ),
            Cause::Unauthorized => format!(
                "watching {what} failed: the API server refused the controller's credentials (401); check its ServiceAccount token or kubeconfig. Retrying with backoff"
            ),
            Cause::Forbidden => format!(
                "watching {what} failed: forbidden (403); the controller's RBAC needs list and watch on {what} (see docs/rbac.md). Retrying with backoff"
            ),
            Cause::NotServed => format!(
                "watching {what} failed: the API server does not serve {what} (404; was its CRD removed?). Retrying with backoff"
            ),
            Cause::ServerError(code) => format!(
                "watching {what} failed: the API server answered {code} (failing or overloaded). Retrying with backoff"
            ),
            Cause::Other => format!("watching {what} failed. Retrying with backoff"),
        }
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
