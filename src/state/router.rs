//! The debounce router: delivers config changes to the controllers of the workloads they concern,
//! after each workload's debounce window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc;
use tokio::sync::mpsc as tokio_mpsc;
use tokio_util::time::DelayQueue;

use crate::locked;
use crate::model::kinds::{WorkloadKind, WorkloadRef};
use crate::rules::decision::Window;
use crate::state::configs::ConfigKey;
use crate::state::index::Index;

/// The kube-runtime trigger type is per kind; the router carries (namespace, name) for any kind.
pub type Trigger = (String, String);

pub type Senders = HashMap<(WorkloadKind, Option<String>), mpsc::UnboundedSender<Trigger>>;

/// Delivers config changes to the controllers of the workloads they concern, after the debounce
/// window, and keeps each workload's window. The window is fixed from the first change, not
/// extended by later ones, so a config rewritten continuously still gets rolled out. While no
/// controllers run (a standby), changes are dropped: a new leader reconciles every workload from
/// the cluster state anyway.
pub struct TriggerRouter {
    debounce: Duration,
    senders: Mutex<Senders>,
    /// When each workload's open (or passed, not yet decided) window opened.
    windows: Mutex<HashMap<WorkloadRef, Instant>>,
    /// The workloads with a window of their own length (`kube-reloader.io/debounce`, Reloader's
    /// pause-period) instead of `--debounce`.
    lengths: Mutex<HashMap<WorkloadRef, Duration>>,
    /// The windows' ends, to the task that reconciles each workload at its window's end (one
    /// task for all windows, started with the first).
    ends: OnceLock<tokio_mpsc::UnboundedSender<(WorkloadRef, Instant)>>,
}

impl TriggerRouter {
    pub fn new(debounce: Duration) -> Self {
        Self {
            debounce,
            senders: Mutex::default(),
            windows: Mutex::default(),
            lengths: Mutex::default(),
            ends: OnceLock::new(),
        }
    }

    /// Sets a workload's own window length (`None`: `--debounce`).
    pub fn set_length(&self, workload: &WorkloadRef, length: Option<Duration>) {
        let mut lengths = locked(&self.lengths);
        match length {
            Some(l) if l != self.debounce => {
                lengths.insert(workload.clone(), l);
            }
            _ => {
                lengths.remove(workload);
            }
        }
    }

    /// The length of a workload's window.
    fn length(&self, workload: &WorkloadRef) -> Duration {
        locked(&self.lengths)
            .get(workload)
            .copied()
            .unwrap_or(self.debounce)
    }

    pub fn set_senders(&self, senders: Senders) {
        *locked(&self.senders) = senders;
    }

    /// Opens the window of every workload the changed objects concern (unless it is open
    /// already); each is reconciled when its window ends.
    pub fn changed(self: &Arc<Self>, keys: Vec<ConfigKey>, index: &Index) {
        for key in keys {
            for workload in index.affected(&key) {
                self.open(&workload);
            }
        }
    }

    /// Opens a workload's debounce window, unless one is open; at its end the workload is
    /// reconciled. A window that has passed but was not decided yet (say, a rollout waiting for
    /// its cooldown) is opened anew, so that a change seen now is reconciled after it.
    pub fn open(self: &Arc<Self>, workload: &WorkloadRef) {
        let now = Instant::now();
        let length = self.length(workload);
        {
            let mut windows = locked(&self.windows);
            if windows
                .get(workload)
                .is_some_and(|opened| now < *opened + length)
            {
                return;
            }
            windows.insert(workload.clone(), now);
        }
        let ends = self.ends.get_or_init(|| {
            let (tx, rx) = tokio_mpsc::unbounded_channel();
            tokio::spawn(reconcile_at_ends(Arc::downgrade(self), rx));
            tx
        });
        let _ = ends.send((workload.clone(), now + length));
    }

    /// Reconciles a workload now, outside any window (something it reads besides its configs
    /// changed: the Deployment holding its pod template).
    pub fn now(&self, workload: &WorkloadRef) {
        self.send(workload);
    }

    fn send(&self, workload: &WorkloadRef) {
        let senders = locked(&self.senders);
        let sender = senders
            .get(&(workload.kind, Some(workload.namespace.clone())))
            .or_else(|| senders.get(&(workload.kind, None)));
        if let Some(tx) = sender {
            let _ = tx.unbounded_send((workload.namespace.clone(), workload.name.clone()));
        }
    }

    /// The state of a workload's window, and when it opened. With no debounce at all, every
    /// change is decided at once.
    pub fn window(&self, workload: &WorkloadRef) -> (Window, Option<Instant>) {
        let length = self.length(workload);
        match locked(&self.windows).get(workload) {
            None if length.is_zero() => (Window::Passed, None),
            None => (Window::Closed, None),
            Some(opened) if Instant::now() < *opened + length => (Window::Open, Some(*opened)),
            Some(opened) => (Window::Passed, Some(*opened)),
        }
    }

    /// Closes the window that opened at `opened`, once what it held was decided. A window opened
    /// since (by a change announced meanwhile) stays, and brings its own reconcile.
    pub fn close(&self, workload: &WorkloadRef, opened: Option<Instant>) {
        let mut windows = locked(&self.windows);
        if opened.is_some() && windows.get(workload) == opened.as_ref() {
            windows.remove(workload);
        }
    }

    /// Forgets a workload's window (the workload is gone, or no longer opted in).
    pub fn forget(&self, workload: &WorkloadRef) {
        locked(&self.windows).remove(workload);
        locked(&self.lengths).remove(workload);
    }

    /// The workloads with a window.
    pub fn workloads(&self) -> Vec<WorkloadRef> {
        locked(&self.windows).keys().cloned().collect()
    }
}

/// Reconciles each workload at the end of its window, the ends kept in one timer queue. Ends with
/// the router.
async fn reconcile_at_ends(
    router: Weak<TriggerRouter>,
    mut ends: tokio_mpsc::UnboundedReceiver<(WorkloadRef, Instant)>,
) {
    let mut queue = DelayQueue::new();
    loop {
        tokio::select! {
            end = ends.recv() => match end {
                Some((workload, at)) => {
                    queue.insert_at(workload, tokio::time::Instant::from_std(at));
                }
                None => return,
            },
            Some(ended) = queue.next(), if !queue.is_empty() => {
                let Some(router) = router.upgrade() else {
                    return;
                };
                router.send(ended.get_ref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> WorkloadRef {
        WorkloadRef {
            kind: WorkloadKind::DEPLOYMENT,
            namespace: "shop".into(),
            name: "web".into(),
        }
    }

    #[tokio::test]
    async fn a_window_opens_once_passes_and_closes_only_as_decided() {
        let router = Arc::new(TriggerRouter::new(Duration::from_millis(500)));
        let w = web();
        assert_eq!(router.window(&w), (Window::Closed, None));
        router.open(&w);
        let (state, opened) = router.window(&w);
        assert_eq!(state, Window::Open);
        // A second change inside the window does not move it.
        router.open(&w);
        assert_eq!(router.window(&w), (Window::Open, opened));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(router.window(&w), (Window::Passed, opened));
        // A change after the window passed, before it was decided, opens a new one, which the
        // decision of the old one leaves alone.
        router.open(&w);
        let (state, reopened) = router.window(&w);
        assert_eq!(state, Window::Open);
        assert_ne!(reopened, opened);
        router.close(&w, opened);
        assert_eq!(router.window(&w).0, Window::Open);
        router.close(&w, reopened);
        assert_eq!(router.window(&w), (Window::Closed, None));
        // Without a debounce, every change is decided at once.
        let at_once = TriggerRouter::new(Duration::ZERO);
        assert_eq!(at_once.window(&w), (Window::Passed, None));
        // Unless the workload sets a window of its own; and one may set none.
        at_once.set_length(&w, Some(Duration::from_secs(60)));
        assert_eq!(at_once.window(&w), (Window::Closed, None));
        router.set_length(&w, Some(Duration::ZERO));
        assert_eq!(router.window(&w), (Window::Passed, None));
        router.set_length(&w, None);
        assert_eq!(router.window(&w), (Window::Closed, None));
    }

    /// On paused time: the trigger of a window comes at its end, once, and one per window.
    #[tokio::test(start_paused = true)]
    async fn a_workload_is_reconciled_at_the_end_of_its_window() {
        use tokio::time::timeout;
        let router = Arc::new(TriggerRouter::new(Duration::from_secs(10)));
        let (tx, mut rx) = mpsc::unbounded();
        router.set_senders(Senders::from([((WorkloadKind::DEPLOYMENT, None), tx)]));
        let (w, mut other) = (web(), web());
        other.name = "api".into();
        router.set_length(&other, Some(Duration::from_secs(2)));
        router.open(&w);
        router.open(&other);
        router.open(&w);
        let trigger = |name: &str| Some(("shop".to_string(), name.to_string()));
        // The shorter window ends first; nothing comes before its end.
        let early = timeout(Duration::from_millis(1900), rx.next()).await;
        assert!(
            early.is_err(),
            "a trigger before the window ended: {early:?}"
        );
        assert_eq!(
            timeout(Duration::from_millis(200), rx.next()).await,
            Ok(trigger("api"))
        );
        let early = timeout(Duration::from_secs(7), rx.next()).await;
        assert!(
            early.is_err(),
            "a trigger before the window ended: {early:?}"
        );
        assert_eq!(
            timeout(Duration::from_secs(2), rx.next()).await,
            Ok(trigger("web"))
        );
        // One trigger per window, however many changes it held.
        let more = timeout(Duration::from_secs(60), rx.next()).await;
        assert!(more.is_err(), "a second trigger for one window: {more:?}");
        // A window opened after the last was decided brings its own. (The windows are kept in
        // real time, which paused time leaves where it was: the decision closes it here.)
        let (_, opened) = router.window(&other);
        router.close(&other, opened);
        router.open(&other);
        assert_eq!(
            timeout(Duration::from_secs(3), rx.next()).await,
            Ok(trigger("api"))
        );
    }
}
