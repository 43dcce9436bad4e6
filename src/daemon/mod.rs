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
//! - `mod.rs`: [`run`], and the loop that waits for the next trigger, runs
//!   a pass and publishes the status built from its state.
//! - `config`: the settings of a run, [`Config`].
//! - `triggers`: why a pass runs, and the watchers that say so.
//! - `pass`: one pass, from the inventory to the transactions applied, and
//!   the edges it reaches (engine, firewall, state directory).
//! - `report`: what a pass did, as data: changes, errors, outcome.
//! - `state`: what the loop knows and remembers between passes, as plain
//!   data, and the one function that builds the status from it.
//! - `bridges`: the kernel's word on which interfaces are Linux bridges.
//! - `schedule`: when it checks again.
//! - `reload`: the policy file, at start and on reload.
//!
//! Modules import one way: `mod.rs` uses all of them; `pass` uses
//! `state`, `report`, `triggers` and `bridges`; `state` uses `report` and
//! `config`; `schedule` uses `report` and `triggers`; the rest use
//! `report` at most (for [`error_chain`]).

mod bridges;
mod config;
mod pass;
mod reload;
mod report;
mod schedule;
mod state;
#[cfg(test)]
mod tests;
mod triggers;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::bridge_netfilter::{Assumed, Kernel, Switches, Turned};
use crate::control::ReloadRequest;
use crate::docker::DockerSource;
use crate::firewall::Backend;
use crate::sdnotify;
use crate::state::{StateDir, bridge_flags};
use crate::status::Status;

use self::bridges::BridgeFacts;
pub use self::config::{BridgeCheck, Config, RulesetWatch};
use self::pass::Edges;
pub use self::pass::{Prepared, prepare, prepare_planned};
use self::reload::{PolicyRead, PolicyReads};
pub use self::reload::{
    START_READ_LIMIT, StartPolicy, UnfinishedRead, starting_policy, starting_policy_from,
    starting_policy_within,
};
pub use self::report::error_chain;
use self::schedule::Schedule;
use self::state::LoopState;
pub use self::triggers::Trigger;
use self::triggers::{coalesce, watch_events, watch_ruleset};

/// The channels between the loop and the outside world.
pub struct Channels {
    /// Reload requests from SIGHUP and the control socket; each carries
    /// where to send the answer.
    pub reload: mpsc::Receiver<ReloadRequest>,
    /// Where the loop publishes status for the control socket.
    pub status: watch::Sender<Status>,
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
    let switches: Box<dyn Switches> = match config.bridge_check {
        BridgeCheck::Kernel => Box::new(Kernel::default()),
        BridgeCheck::Fixed(_) => Box::new(Assumed),
    };
    let turned = match state.as_ref().map(|s| bridge_flags(s.path())) {
        Some(Ok(turned)) => turned,
        Some(Err(e)) => {
            warn!(
                error = %error_chain(&e),
                "cannot read the bridge-netfilter flags dockfw turned on; this daemon will not turn those off again"
            );
            Turned::default()
        }
        None => Turned::default(),
    };
    let edges = Edges {
        docker,
        firewall,
        state_dir: state,
        bridges: BridgeFacts::new(&config.bridge_check),
        monitored,
        log_drops: config.log_drops,
        switches,
        turned,
    };
    let mut reconciler = Reconciler::new(config, start, edges, channels.status);
    reconciler.ruleset_dirty = dirty;
    reconciler.events_lost = events_lost;
    reconciler
        .run(trigger_rx, channels.reload, shutdown.clone())
        .await;
    shutdown.cancel();
    tracker.wait().await;
    info!("stopped; installed rules stay in force");
}

/// The loop: its state, the edges its passes reach, and the channels it
/// is told and tells through.
struct Reconciler<D, F> {
    config: Config,
    /// What a pass reaches outside the loop's state.
    edges: Edges<D, F>,
    /// What the loop knows and remembers; status is built from it alone.
    state: LoopState,
    /// Publishes the status built from `state` to the control socket after
    /// every pass and reload.
    status_tx: watch::Sender<Status>,
    /// Set by the netlink watch at every change it reports, before its
    /// trigger (which a full channel may drop): the next pass reads the
    /// firewall whatever triggered it.
    ruleset_dirty: Arc<AtomicBool>,
    /// Set by the event watch when the channel could not take an event:
    /// the next pass lists everything, as it cannot know what moved.
    events_lost: Arc<AtomicBool>,
    /// The start's policy read, if it had not finished in time; taken by
    /// `run`, which applies it when it ends.
    unfinished_read: Option<UnfinishedRead>,
}

impl<D: DockerSource, F: Backend> Reconciler<D, F> {
    fn new(
        config: Config,
        start: StartPolicy,
        edges: Edges<D, F>,
        status_tx: watch::Sender<Status>,
    ) -> Self {
        let saved_bridges = (edges.state_dir.as_ref())
            .map(StateDir::bridges)
            .unwrap_or_default();
        let state = LoopState::new(&config, start.policy, saved_bridges, SystemTime::now());
        let mut this = Reconciler {
            config,
            edges,
            state,
            status_tx,
            ruleset_dirty: Arc::new(AtomicBool::new(false)),
            events_lost: Arc::new(AtomicBool::new(false)),
            unfinished_read: start.unfinished,
        };
        this.keep_policy(start.text.as_deref());
        if let Some(fallback) = start.fallback {
            error!(
                path = %this.config.policy_path.display(),
                errors = %start.errors.as_deref().unwrap_or_default(),
                "POLICY FILE INVALID: {fallback}"
            );
            this.state.policy_fallback = Some(fallback);
            this.state.policy_refused = start.errors;
        }
        this.publish();
        this
    }

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
                let (full, start) = (
                    scope.refresh.lists_everything(),
                    scope.first == Trigger::Start,
                );
                // A reconcile in flight is dropped on shutdown: its restore
                // is one atomic transaction, so it lands whole or not at all.
                // The watchdog is fed while a pass waits on the engine or a
                // firewall program (each bounded by its own timeout), but not
                // past MAX_FED_PASS: a pass stuck longer gets us restarted.
                let started = Instant::now();
                let report = {
                    let pass = self.edges.pass(&mut self.state, scope);
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
                let summary = match report {
                    Some(report) => {
                        schedule.after(&report, full, Instant::now());
                        Some(self.publish())
                    }
                    None => {
                        schedule.sets_as_planned(Instant::now());
                        None
                    }
                };
                if start {
                    self.notify("READY=1");
                }
                if let Some(summary) = summary {
                    self.notify(&format!("STATUS={summary}"));
                }
            }
            let rules_poll = self.edges.needs_drift_poll();
            let poll = rules_poll || self.edges.polls_sets(&self.state);
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
                changed = self.edges.bridges.changed() => match changed {
                    Ok(()) => Some(Trigger::LinksChanged),
                    Err(e) => {
                        warn!(error = %error_chain(&e), "the network link watch failed; reading links at every pass instead");
                        self.edges.bridges = BridgeFacts::Read;
                        Some(Trigger::LinksChanged)
                    }
                },
            };
        }
    }

    /// Apply a policy read for the reload requests in `replies` (the old
    /// one stays if the new one is invalid) and answer them. Returns a
    /// trigger when the policy in force changed.
    fn reload(&mut self, parsed: PolicyRead, replies: Vec<ReloadRequest>) -> Option<Trigger> {
        let parsed = parsed.map_err(|e| error_chain(&e));
        let path = self.config.policy_path.display().to_string();
        let answer = match parsed {
            Ok((policy, text)) => {
                self.state.policy_loaded(policy, SystemTime::now());
                self.keep_policy(Some(&text));
                info!(%path, "policy reloaded");
                Ok(format!("reloaded {path}"))
            }
            Err(message) => {
                warn!(error = %message, "policy reload refused; the policy in force stays");
                self.state.policy_refused = Some(message.clone());
                Err(message)
            }
        };
        let changed = answer.is_ok();
        for reply in replies {
            let _ = reply.send(answer.clone());
        }
        self.publish();
        self.notify("READY=1");
        changed.then_some(Trigger::PolicyReloaded)
    }

    /// Keep the text of a policy that validated, when given, as the last
    /// good policy.
    fn keep_policy(&self, text: Option<&str>) {
        if let (Some(dir), Some(text)) = (&self.edges.state_dir, text)
            && let Err(e) = dir.save_policy(text)
        {
            warn!(error = %error_chain(&e), "cannot keep the last good policy");
        }
    }

    /// Publish the status built from the loop's state; its summary, for
    /// systemd's `STATUS=`.
    fn publish(&self) -> String {
        let status = self.state.status();
        let summary = status.summary();
        self.status_tx.send_replace(status);
        summary
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
