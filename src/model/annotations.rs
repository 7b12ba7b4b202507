//! Every annotation name kube-reloader reads or writes, and the names it signs its writes with.

/// Our annotations.
pub mod ours {
    pub const AUTO: &str = "kube-reloader.io/auto";
    pub const CONFIGMAPS: &str = "kube-reloader.io/configmaps";
    pub const SECRETS: &str = "kube-reloader.io/secrets";
    /// SecretProviderClasses by name (with `--enable-csi-integration`).
    pub const SECRET_PROVIDER_CLASSES: &str = "kube-reloader.io/secretproviderclasses";
    pub const IGNORE: &str = "kube-reloader.io/ignore";
    /// The workload's own debounce window.
    pub const DEBOUNCE: &str = "kube-reloader.io/debounce";
    /// On a workload: "true" puts it in the first wave of a progressive rollout.
    pub const CANARY: &str = "kube-reloader.io/canary";
    /// On a ConfigMap or Secret: "true" rolls its changes progressively (in waves, halting on a
    /// failure), "false" all at once whatever `--progressive` says.
    pub const PROGRESSIVE: &str = "kube-reloader.io/progressive";
    /// On a ConfigMap or Secret: the digest of a change whose halted rollout is to go on anyway
    /// (as a hold names it: `ConfigMap/app@<digest>`, or the digest alone).
    pub const RELEASE_HOLD: &str = "kube-reloader.io/release-hold";
    /// On a workload's metadata: when it may start a rollout (see `rules::restart_window`).
    pub const RESTART_WINDOW: &str = "kube-reloader.io/restart-window";
}

/// stakater Reloader's annotations.
pub mod reloader {
    use crate::model::kinds::ConfigKind;

    pub const AUTO: &str = "reloader.stakater.com/auto";
    pub const CONFIGMAP_AUTO: &str = "configmap.reloader.stakater.com/auto";
    pub const SECRET_AUTO: &str = "secret.reloader.stakater.com/auto";
    pub const CONFIGMAP_RELOAD: &str = "configmap.reloader.stakater.com/reload";
    pub const SECRET_RELOAD: &str = "secret.reloader.stakater.com/reload";
    /// The Secrets Store CSI driver's SecretProviderClasses (with `--enable-csi-integration`),
    /// as Reloader v1.4.13 and later read them.
    pub const SECRETPROVIDERCLASS_AUTO: &str = "secretproviderclass.reloader.stakater.com/auto";
    pub const SECRETPROVIDERCLASS_RELOAD: &str = "secretproviderclass.reloader.stakater.com/reload";
    pub const SEARCH: &str = "reloader.stakater.com/search";
    pub const MATCH: &str = "reloader.stakater.com/match";
    pub const IGNORE: &str = "reloader.stakater.com/ignore";
    pub const CONFIGMAPS_EXCLUDE: &str = "configmaps.exclude.reloader.stakater.com/reload";
    pub const SECRETS_EXCLUDE: &str = "secrets.exclude.reloader.stakater.com/reload";
    pub const SECRETPROVIDERCLASSES_EXCLUDE: &str =
        "secretproviderclasses.exclude.reloader.stakater.com/reload";
    /// Reloader pauses a Deployment this long to gather changes; kube-reloader takes it as the
    /// workload's debounce window (and never pauses anything).
    pub const PAUSE_PERIOD: &str = "deployment.reloader.stakater.com/pause-period";
    /// What Reloader itself writes: the pod-template annotation of its `annotations` reload
    /// strategy, and the mark of a Deployment it paused. Neither opts anything in.
    pub const LAST_RELOADED_FROM: &str = "reloader.stakater.com/last-reloaded-from";
    pub const PAUSED_AT: &str = "deployment.reloader.stakater.com/paused-at";
    /// Restart windows in the JSON form of Reloader's pull request #1214 (not renamed by any
    /// `--*-annotation` flag).
    pub const RESTART_WINDOW: &str = "reloader.stakater.com/restart-window";
    pub const WRITTEN: [&str; 2] = [LAST_RELOADED_FROM, PAUSED_AT];

    /// The names of Reloader's annotations that its `--*-annotation` flags rename (v1.4.22 has
    /// flags for eleven of them, its v2 branch for the exclude and SecretProviderClass ones too).
    /// [`Names::STAKATER`] holds its defaults. Every name lives as long as the process: the
    /// command line's are read once at start.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Names {
        pub auto: &'static str,
        pub configmap_auto: &'static str,
        pub secret_auto: &'static str,
        pub secretproviderclass_auto: &'static str,
        pub configmap_reload: &'static str,
        pub secret_reload: &'static str,
        pub secretproviderclass_reload: &'static str,
        pub search: &'static str,
        pub match_: &'static str,
        pub ignore: &'static str,
        pub configmaps_exclude: &'static str,
        pub secrets_exclude: &'static str,
        pub secretproviderclasses_exclude: &'static str,
        pub pause_period: &'static str,
        pub paused_at: &'static str,
    }

    impl Names {
        /// Reloader's own names, when no flag renames them.
        pub const STAKATER: Names = Names {
            auto: AUTO,
            configmap_auto: CONFIGMAP_AUTO,
            secret_auto: SECRET_AUTO,
            secretproviderclass_auto: SECRETPROVIDERCLASS_AUTO,
            configmap_reload: CONFIGMAP_RELOAD,
            secret_reload: SECRET_RELOAD,
            secretproviderclass_reload: SECRETPROVIDERCLASS_RELOAD,
            search: SEARCH,
            match_: MATCH,
            ignore: IGNORE,
            configmaps_exclude: CONFIGMAPS_EXCLUDE,
            secrets_exclude: SECRETS_EXCLUDE,
            secretproviderclasses_exclude: SECRETPROVIDERCLASSES_EXCLUDE,
            pause_period: PAUSE_PERIOD,
            paused_at: PAUSED_AT,
        };

        /// For each kind of object, the annotations that concern it: when none of them sits on
        /// the workload's metadata, Reloader reads them from the pod template's annotations
        /// instead.
        pub fn workload_level(&self, kind: ConfigKind) -> [&'static str; 4] {
            match kind {
                ConfigKind::ConfigMap => [
                    self.auto,
                    self.configmap_auto,
                    self.configmap_reload,
                    self.search,
                ],
                ConfigKind::Secret => {
                    [self.auto, self.secret_auto, self.secret_reload, self.search]
                }
                ConfigKind::SecretProviderClass => [
                    self.auto,
                    self.secretproviderclass_auto,
                    self.secretproviderclass_reload,
                    self.search,
                ],
            }
        }

        /// The exclude list of a kind of object.
        pub fn exclude(&self, kind: ConfigKind) -> &'static str {
            match kind {
                ConfigKind::ConfigMap => self.configmaps_exclude,
                ConfigKind::Secret => self.secrets_exclude,
                ConfigKind::SecretProviderClass => self.secretproviderclasses_exclude,
            }
        }

        /// Whether Reloader reads this annotation on workloads (under these names): the opt-in,
        /// exclude lists and pause period, the SecretProviderClass ones included.
        pub fn on_workloads(&self, key: &str) -> bool {
            [
                self.auto,
                self.configmap_auto,
                self.secret_auto,
                self.secretproviderclass_auto,
                self.configmap_reload,
                self.secret_reload,
                self.secretproviderclass_reload,
                self.search,
                self.configmaps_exclude,
                self.secrets_exclude,
                self.secretproviderclasses_exclude,
                self.pause_period,
            ]
            .contains(&key)
        }
    }

    impl Default for Names {
        fn default() -> Self {
            Names::STAKATER
        }
    }
}

/// Annotations kube-reloader writes.
pub mod written {
    /// On the workload's metadata: the digest it was last reconciled to (its baseline). On the pod
    /// template: the digest of the last rollout.
    pub const CONFIG_HASH: &str = "kube-reloader.io/config-hash";
    /// On the workload's metadata: a short digest per tracked object, to name what changed.
    pub const TRACKED: &str = "kube-reloader.io/tracked";
    /// On the workload's metadata: when the last rollout was made (RFC 3339).
    pub const RELOADED_AT: &str = "kube-reloader.io/reloaded-at";
    /// On the workload's metadata: the digest of the pod template (all of it but our own
    /// annotation) when the baseline was recorded, to tell someone else's template change.
    pub const TEMPLATE_HASH: &str = "kube-reloader.io/template-hash";
    /// On the workload's metadata: the config changes (`ConfigMap/app@<digest>`, comma-separated)
    /// its last progressive rollout rolled, so that its peers know it rolled them.
    pub const ROLLOUT: &str = "kube-reloader.io/rollout";
    /// On the workload's metadata: its rollout of a change failed, and why
    /// (`ConfigMap/app@<digest>; Deployment/web-0: why`).
    pub const ROLLOUT_FAILED: &str = "kube-reloader.io/rollout-failed";
    /// On the workload's metadata: the change it has not rolled because another workload's
    /// rollout of it failed (same form as [`ROLLOUT_FAILED`]).
    pub const HELD: &str = "kube-reloader.io/held";
    /// The progressive rollout's annotations, kept as they are by every other write.
    pub const PROGRESSIVE: [&str; 3] = [ROLLOUT, ROLLOUT_FAILED, HELD];
}

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "kube-reloader";

/// The reporting controller of every Event.
pub const REPORTER: &str = "kube-reloader";

/// The annotation (ours, and Reloader's) asking for an Argo Rollout to be restarted through
/// `spec.restartAt` rather than by a template change.
pub const ROLLOUT_STRATEGY: &str = "kube-reloader.io/rollout-strategy";
pub const RELOADER_ROLLOUT_STRATEGY: &str = "reloader.stakater.com/rollout-strategy";
