//! Why a pass runs: [`Trigger`], what each asks of the engine
//! ([`Refresh`]), and the watchers that turn Docker's events and nf_tables'
//! notifications into triggers, re-subscribing with [`Backoff`]. Owns no
//! state of the loop and decides nothing about rules.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::docker::{DockerSource, Event, Subject};
use crate::nfmonitor;

use super::report::error_chain;

/// How long a pass triggered by `network connect` events alone waits for
/// the `container start` that follows them when a container starts (Docker
/// announces a start as the connect of each of its networks, then the start,
/// about 10 ms later; until then the container is not listed). Both are then
/// one pass, and the start does not wait for a whole pass of the connect
/// first. A connect with no start after it (`docker network connect` of a
/// running container) is this much later, no more; nothing is opened
/// meanwhile that the rules in place do not open already.
pub(super) const CONNECT_HOLD: Duration = Duration::from_millis(50);

/// What a pass asks the engine before it plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum Refresh {
    /// Nothing: the inventory in hand is the basis.
    #[default]
    Nothing,
    /// Inspect the objects events named, and update the inventory with
    /// what they are now.
    Objects(BTreeSet<Subject>),
    /// List everything. `check`: as the consistency check of an inventory
    /// kept from events, whose differences are repairs to count (not after
    /// a new subscription, which may follow a gap in the events).
    Everything { check: bool },
}

impl Refresh {
    /// Both asks in one pass.
    pub(super) fn merge(&mut self, other: Refresh) {
        *self = match (std::mem::take(self), other) {
            (Refresh::Everything { check: a }, Refresh::Everything { check: b }) => {
                Refresh::Everything { check: a && b }
            }
            (all @ Refresh::Everything { .. }, _) | (_, all @ Refresh::Everything { .. }) => all,
            (Refresh::Objects(mut a), Refresh::Objects(b)) => {
                a.extend(b);
                Refresh::Objects(a)
            }
            (Refresh::Nothing, other) | (other, Refresh::Nothing) => other,
        };
    }

    pub(super) fn lists_everything(&self) -> bool {
        matches!(self, Refresh::Everything { .. })
    }
}

/// Why a reconcile runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Start,
    /// A Docker event naming a container or network that may have changed.
    DockerEvent(Event),
    /// A (re)subscription to Docker's events: the engine may have changed
    /// anything meanwhile.
    Subscribed,
    PolicyReloaded,
    Periodic,
    Retry,
    /// nf_tables announced a ruleset change (someone's, or dockfw's own).
    RulesetChanged,
    /// The periodic check where no notification covers the rules.
    DriftPoll,
    /// The periodic check of sets no notification covers (ipsets), where
    /// the rules are announced: a pass only if they differ.
    SetsPoll,
    /// A Linux bridge appeared or went away (rtnetlink): what is exempted
    /// follows.
    LinksChanged,
}

impl Trigger {
    /// What the engine must be asked: the object an event names, everything,
    /// or nothing (what is installed is all that may have changed).
    ///
    /// The first pass (`Start`) asks the engine nothing: it installs
    /// protection from the policy and the saved bridges, then the daemon
    /// reports ready. At boot the engine is ordered after dockfw, and a
    /// socket-activated `docker.socket` would hold any call until it times
    /// out. The subscription that follows at once brings the full pass.
    pub(super) fn refresh(&self) -> Refresh {
        match self {
            Trigger::Start
            | Trigger::RulesetChanged
            | Trigger::DriftPoll
            | Trigger::SetsPoll
            | Trigger::LinksChanged => Refresh::Nothing,
            Trigger::DockerEvent(event) => match &event.subject {
                Subject::Unknown => Refresh::Everything { check: false },
                subject => Refresh::Objects(BTreeSet::from([subject.clone()])),
            },
            Trigger::Subscribed => Refresh::Everything { check: false },
            Trigger::PolicyReloaded | Trigger::Periodic | Trigger::Retry => {
                Refresh::Everything { check: true }
            }
        }
    }

    /// Whether what is installed must be read. A Docker event changes what
    /// runs, not the installed rules: where changes to those are announced
    /// (their own trigger), the pass writes what changed in the sets from
    /// the plan in place, without reading anything first.
    pub(super) fn needs_observation(&self) -> bool {
        !matches!(self, Trigger::DockerEvent(_) | Trigger::LinksChanged)
    }

    /// A `network connect` event: at a container's start it comes before
    /// the `container start` (see [`CONNECT_HOLD`]).
    pub(super) fn precedes_a_start(&self) -> bool {
        matches!(self, Trigger::DockerEvent(e) if e.is_connect())
    }
}

/// What one pass is asked to do: the triggers coalesced into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PassScope {
    /// The trigger that started the pass (its leading edge).
    pub(super) first: Trigger,
    /// How many triggers the pass covers.
    pub(super) burst: usize,
    /// What the engine is asked before the plan.
    pub(super) refresh: Refresh,
    /// Whether what is installed must be read, whatever the fast path
    /// could write.
    pub(super) observe: bool,
}

impl PassScope {
    /// The sets poll alone is one `ipset save`: a pass only if the sets
    /// differ.
    pub(super) fn sets_check(&self) -> bool {
        self.first == Trigger::SetsPoll && self.burst == 1
    }
}

/// The pass `first` starts. Leading edge: no wait before the first change.
/// Whatever arrived meanwhile (and whatever arrives while this pass runs,
/// at the next turn) is coalesced into it; connects alone wait up to
/// [`CONNECT_HOLD`] for the start that follows them. `dirty` and `lost`
/// (see [`watch_ruleset`], [`watch_events`]) are taken in too. `None` on
/// shutdown.
pub(super) async fn coalesce(
    first: Trigger,
    triggers: &mut mpsc::Receiver<Trigger>,
    dirty: &AtomicBool,
    lost: &AtomicBool,
    shutdown: &CancellationToken,
) -> Option<PassScope> {
    let mut refresh = first.refresh();
    let mut observe = first.needs_observation();
    let mut burst = 1;
    let mut connects_only = first.precedes_a_start();
    // The start pass stays engine-free: what queued meanwhile (the
    // subscription) is the next pass.
    while first != Trigger::Start
        && let Ok(more) = triggers.try_recv()
    {
        refresh.merge(more.refresh());
        observe |= more.needs_observation();
        connects_only &= more.precedes_a_start();
        burst += 1;
    }
    // Connects alone: the start that follows them is this pass too.
    let hold = Instant::now() + CONNECT_HOLD;
    while connects_only {
        let more = tokio::select! {
            () = shutdown.cancelled() => return None,
            more = tokio::time::timeout_at(hold, triggers.recv()) => more,
        };
        let Ok(Some(more)) = more else { break };
        refresh.merge(more.refresh());
        observe |= more.needs_observation();
        connects_only = more.precedes_a_start();
        burst += 1;
    }
    // A change announced while the channel was full is not lost.
    observe |= dirty.swap(false, Ordering::SeqCst);
    if first != Trigger::Start && lost.swap(false, Ordering::SeqCst) {
        refresh.merge(Refresh::Everything { check: false });
    }
    Some(PassScope {
        first,
        burst,
        refresh,
        observe,
    })
}

/// Doubling delay between attempts, capped.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(super) fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    pub(super) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(super) fn reset(&mut self) {
        self.next = self.first;
    }
}

/// How long re-subscribing waits at most: a booting host's engine should
/// be noticed within seconds of answering.
pub(super) const DOCKER_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Follow Docker's event stream, turning each event into a trigger, and
/// re-subscribe with backoff when it ends. Every (re)subscription is itself
/// a trigger, so a restarted engine gets a full resync. An event the full
/// channel cannot take sets `lost`: its object is unknown, so the next pass
/// lists everything.
pub(super) async fn watch_events<D: DockerSource>(
    docker: Arc<D>,
    triggers: mpsc::Sender<Trigger>,
    lost: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), DOCKER_BACKOFF_MAX);
    loop {
        let mut stream = docker.events();
        let subscribed = Instant::now();
        let _ = triggers.try_send(Trigger::Subscribed);
        loop {
            let item = tokio::select! {
                () = shutdown.cancelled() => return,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(event)) => {
                    debug!(event = %event.text, "docker event");
                    if triggers.try_send(Trigger::DockerEvent(event)).is_err() {
                        lost.store(true, Ordering::SeqCst);
                    }
                }
                Some(Err(e)) => {
                    debug!(error = %error_chain(&e), "docker event stream failed");
                    break;
                }
                None => {
                    debug!("docker event stream ended");
                    break;
                }
            }
        }
        if subscribed.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Turn nf_tables ruleset notifications into triggers. Where netlink cannot
/// be watched, `monitored` stays false and the loop polls instead.
pub(super) async fn watch_ruleset(
    triggers: mpsc::Sender<Trigger>,
    monitored: Arc<AtomicBool>,
    dirty: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut monitor = match nfmonitor::subscribe() {
        Ok(monitor) => monitor,
        Err(e) => {
            warn!(error = %error_chain(&e), "cannot watch nf_tables changes; polling for drift instead");
            return;
        }
    };
    monitored.store(true, Ordering::SeqCst);
    loop {
        let changed = tokio::select! {
            () = shutdown.cancelled() => return,
            changed = monitor.changed() => changed,
        };
        if let Err(e) = changed {
            warn!(error = %error_chain(&e), "nf_tables watch failed; polling for drift instead");
            monitored.store(false, Ordering::SeqCst);
            return;
        }
        dirty.store(true, Ordering::SeqCst);
        let _ = triggers.try_send(Trigger::RulesetChanged);
    }
}
