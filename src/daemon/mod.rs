//! The reconcile loop: turns triggers (Docker events, reloads, nf_tables
//! ruleset changes, Linux bridges appearing or going away, the resync
//! timer, retries) into fresh plans and at most
//! one restore per family, and publishes the resulting [`Status`].
//!
//! Events name what changed; the listing is the check. A Docker event
//! names a container or a network: the pass inspects that one object and
//! updates the inventory by its id, so an event costs the same on a host
//! with 5 containers or 1,000. What is inspected but cannot be used (the
//! call fails or times out, the container is on a network nobody listed)
//! is taken out of the inventory, so it is admitted nowhere (fail closed),
//! and the pass lists everything instead. A full listing runs at the
//! start, after every (re)subscription to the events, and periodically as
//! the consistency check: what it finds that the events missed is repaired
//! and counted (`inventory.repairs` in status). A ruleset change only
//! re-reads what is installed. A failure never ends the loop: the rules already
//! installed stay in force, status says what failed, and the reconcile is
//! retried with backoff. Shutdown is passed in, so tests can start and stop
//! a daemon.
//!
//! Fail closed from the first instant: before the engine ever answers (a
//! booting host), dockfw plans from the policy and the bridges it last saw
//! (kept in [`StateDir`]), so its chains and jumps exist before Docker
//! publishes a port; selector entries follow once the engine answers. While
//! the engine is away later, the last inventory it gave stays the basis.
//!
//! # Layout
//! - `mod.rs`: [`run`], its [`Config`], and the loop that waits for the
//!   next trigger and runs a pass.
//! - `triggers`: why a pass runs, and the watchers that say so.
//! - `pass`: one pass, from the inventory to the transactions applied.
//! - `state`: what the loop carries between passes.
//! - `schedule`: when it checks again.
//! - `reload`: the policy file, at start and on reload.

mod pass;
mod reload;
mod schedule;
mod state;
#[cfg(test)]
mod tests;
mod triggers;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::control::ReloadRequest;
use crate::docker::DockerSource;
use crate::drops::DropTotals;
use crate::firewall::Backend;
use crate::inventory::{Bridge, Inventory};
use crate::net::Family;
use crate::policy::Policy;
use crate::ruleset::Ruleset;
use crate::sdnotify;
use crate::state::StateDir;
use crate::status::Status;

pub use self::pass::{Prepared, prepare, prepare_planned};
use self::reload::*;
pub use self::reload::{
    START_READ_LIMIT, StartPolicy, UnfinishedRead, starting_policy, starting_policy_from,
    starting_policy_within,
};
use self::schedule::*;
use self::state::*;
pub use self::triggers::Trigger;
use self::triggers::*;

/// Settings of one daemon run.
#[derive(Debug, Clone)]
pub struct Config {
    pub policy_path: PathBuf,
    /// The Docker endpoint, shown in status.
    pub endpoint: String,
    /// How often to re-check everything with no trigger at all.
    pub resync: Duration,
    /// How often to re-check the installed rules when no netlink
    /// notification covers them (iptables-legacy, or no monitor): the
    /// bound on how long drift goes unrepaired there.
    pub drift_poll: Duration,
    /// How changes to the installed rules are noticed.
    pub ruleset_watch: RulesetWatch,
    /// Log each drop to the kernel log, rate-limited, prefixed with the
    /// entry behind it (`dockfw deny@33 `): `--log-drops`.
    pub log_drops: bool,
    /// The backend driven and why, for status (the daemon does not choose).
    pub backend: Option<crate::choice::Chosen>,
    /// Who says which interfaces are Linux bridges.
    pub bridge_check: BridgeCheck,
}

/// Where the daemon learns which of the interfaces bridge networks name are
/// Linux bridges now: only those are exempted as "from a container".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeCheck {
    /// The kernel, over rtnetlink in the daemon's network namespace,
    /// followed as links change ([`crate::links`]).
    Kernel,
    /// A fixed answer, for tests whose fake engines' interfaces exist
    /// nowhere: these names are bridges, no other; `None`: every interface
    /// a bridge network names.
    Fixed(Option<BTreeSet<String>>),
}

/// How the daemon learns that the installed rules changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesetWatch {
    /// Not at all: they are read again every `drift_poll`.
    Off,
    /// nf_tables changes on netlink (the real daemon); where that cannot be
    /// set up, or the backend's rules are not in nf_tables, polled.
    Netlink,
    /// Nothing changes them but the daemon (tests' fake firewalls): as if
    /// watched, with no watch.
    Assumed,
}

impl Config {
    pub fn new(policy_path: PathBuf, endpoint: String) -> Config {
        Config {
            policy_path,
            endpoint,
            resync: Duration::from_secs(10),
            drift_poll: Duration::from_millis(1500),
            ruleset_watch: RulesetWatch::Off,
            log_drops: false,
            backend: None,
            bridge_check: BridgeCheck::Kernel,
        }
    }
}

/// The channels between the loop and the outside world.
pub struct Channels {
    /// Reload requests from SIGHUP and the control socket; each carries
    /// where to send the answer.
    pub reload: mpsc::Receiver<ReloadRequest>,
    /// Where the loop publishes status for the control socket.
    pub status: watch::Sender<Status>,
}

/// An error and all its causes, `: `-separated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Run the daemon until `shutdown` is cancelled. Rules stay installed.
pub async fn run<D: DockerSource, F: Backend>(
    config: Config,
    start: StartPolicy,
    state: Option<StateDir>,
    docker: Arc<D>,
    firewall: F,
    channels: Channels,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let (trigger_tx, trigger_rx) = mpsc::channel(64);
    let events_lost = Arc::new(AtomicBool::new(false));
    tracker.spawn(watch_events(
        docker.clone(),
        trigger_tx.clone(),
        events_lost.clone(),
        shutdown.clone(),
    ));
    let assumed = config.ruleset_watch == RulesetWatch::Assumed;
    let monitored = Arc::new(AtomicBool::new(assumed));
    let dirty = Arc::new(AtomicBool::new(false));
    if config.ruleset_watch == RulesetWatch::Netlink {
        tracker.spawn(watch_ruleset(
            trigger_tx,
            monitored.clone(),
            dirty.clone(),
            shutdown.clone(),
        ));
    }
    tracker.close();
    let mut reconciler = Reconciler::new(config, start, state, docker, firewall, channels.status);
    reconciler.monitored = monitored;
    reconciler.ruleset_dirty = dirty;
    reconciler.events_lost = events_lost;
    reconciler
        .run(trigger_rx, channels.reload, shutdown.clone())
        .await;
    shutdown.cancel();
    tracker.wait().await;
    info!("stopped; installed rules stay in force");
}

/// The state the loop carries between reconciles.
struct Reconciler<D, F> {
    config: Config,
    /// The last policy that validated; a refused reload never replaces it.
    policy: Policy,
    /// Where the last good policy and the bridges are kept; holds the lock.
    state: Option<StateDir>,
    docker: Arc<D>,
    firewall: F,
    /// What plans are made from: the engine's last answer, or the boot
    /// inventory before it ever answered.
    inventory: Inventory,
    /// The bridges last written to `state`, to write only on change.
    saved_bridges: Vec<Bridge>,
    /// The plan last found in place: re-applying the same plan means
    /// something else changed dockfw's rules (drift).
    in_place: Option<Ruleset>,
    /// The families the kernel lacked at the last observation.
    unavailable: Vec<Family>,
    /// Set by the netlink watch while it runs; without it, drift is polled.
    monitored: Arc<AtomicBool>,
    /// Set by the netlink watch at every change it reports, before its
    /// trigger (which a full channel may drop): the next pass reads the
    /// firewall whatever triggered it.
    ruleset_dirty: Arc<AtomicBool>,
    /// Set by the event watch when the channel could not take an event:
    /// the next pass lists everything, as it cannot know what moved.
    events_lost: Arc<AtomicBool>,
    /// Drops per entry since the start, across rewrites of the rules.
    drops: DropTotals,
    /// Which interfaces are Linux bridges now; a watch on it, whose
    /// changes are triggers.
    bridge_facts: BridgeFacts,
    /// Whether the inventory is the engine's, kept from events: decided
    /// here, never read back from status.
    engine: EngineState,
    status: Status,
    /// Publishes `status` to the control socket after every change.
    status_tx: watch::Sender<Status>,
    /// The start's policy read, if it had not finished in time; taken by
    /// `run`, which applies it when it ends.
    unfinished_read: Option<UnfinishedRead>,
}

impl<D: DockerSource, F: Backend> Reconciler<D, F> {
    async fn run(
        &mut self,
        mut triggers: mpsc::Receiver<Trigger>,
        mut reloads: mpsc::Receiver<ReloadRequest>,
        shutdown: CancellationToken,
    ) {
        let mut pending = Some(Trigger::Start);
        // The loop itself feeds systemd's watchdog, at half the interval: a
        // wedged loop stops feeding it and systemd restarts the service.
        let mut schedule = Schedule::new(
            self.config.resync,
            self.config.drift_poll,
            sdnotify::watchdog_interval(),
            Instant::now(),
        );
        let mut reads = PolicyReads {
            in_flight: self.unfinished_read.take().map(|read| read.0),
            ..PolicyReads::default()
        };
        loop {
            if let Some(first) = pending.take() {
                let Some(scope) = coalesce(
                    first,
                    &mut triggers,
                    &self.ruleset_dirty,
                    &self.events_lost,
                    &shutdown,
                )
                .await
                else {
                    return;
                };
                debug!(trigger = ?scope.first, burst = scope.burst, refresh = ?scope.refresh, observe = scope.observe, "reconcile triggered");
                let (full, sets_check, start) = (
                    scope.refresh.lists_everything(),
                    scope.sets_check(),
                    scope.first == Trigger::Start,
                );
                // A reconcile in flight is dropped on shutdown: its restore
                // is one atomic transaction, so it lands whole or not at all.
                // The watchdog is fed while a pass waits on the engine or a
                // firewall program (each bounded by its own timeout), but not
                // past MAX_FED_PASS: a pass stuck longer gets us restarted.
                let started = Instant::now();
                let report = {
                    let pass = self.pass(scope);
                    tokio::pin!(pass);
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            report = &mut pass => break report,
                            () = tokio::time::sleep_until(schedule.next_feed), if schedule.feeds() => {
                                schedule.feed(Instant::now(), Some(started));
                            }
                        }
                    }
                };
                schedule.after(&report, full, sets_check, Instant::now());
                if start {
                    self.notify("READY=1");
                }
                self.notify(&format!("STATUS={}", self.status.summary()));
            }
            let rules_poll = self.needs_drift_poll();
            let poll = rules_poll || self.polls_sets();
            pending = tokio::select! {
                () = shutdown.cancelled() => return,
                Some(trigger) = triggers.recv() => Some(trigger),
                Some(reply) = reloads.recv() => {
                    if reads.request(reply, &self.config.policy_path) {
                        self.notify(&sdnotify::reloading());
                    }
                    None
                }
                parsed = reads.done(&self.config.policy_path) => {
                    let replies = reads.finish(&self.config.policy_path);
                    self.reload(parsed, replies)
                }
                () = tokio::time::sleep_until(schedule.next_check) => Some(schedule.check()),
                () = tokio::time::sleep_until(schedule.next_poll), if poll => Some(if rules_poll {
                    Trigger::DriftPoll
                } else {
                    Trigger::SetsPoll
                }),
                () = tokio::time::sleep_until(schedule.next_feed), if schedule.feeds() => {
                    schedule.feed(Instant::now(), None);
                    None
                }
                changed = self.bridge_facts.changed() => match changed {
                    Ok(()) => Some(Trigger::LinksChanged),
                    Err(e) => {
                        warn!(error = %error_chain(&e), "the network link watch failed; reading links at every pass instead");
                        self.bridge_facts = BridgeFacts::Read;
                        Some(Trigger::LinksChanged)
                    }
                },
            };
        }
    }

    /// Tell systemd something: after the first pass `READY=1` (protection
    /// is installed, or status says why not, so the engine may start),
    /// `STATUS=` after every pass, `RELOADING=1` around a reload.
    fn notify(&self, state: &str) {
        if let Err(e) = sdnotify::notify(state) {
            warn!(error = %e, "cannot notify systemd");
        }
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
