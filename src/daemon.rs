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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::control::ReloadRequest;
use crate::docker::{DockerSource, Engine, Event, Inspected, Subject};
use crate::drops::DropTotals;
use crate::firewall::{Backend, DropCounter, FirewallError, Notice, Observation, Transaction};
use crate::inventory::{Bridge, Inventory, Rejected};
use crate::links;
use crate::net::Family;
use crate::nfmonitor;
use crate::plan::{exposures, plan, rejected_bridges, with_drop_logging};
use crate::policy::{self, Policy};
use crate::ruleset::{Origin, Ruleset};
use crate::sdnotify;
use crate::state::{self, StateDir};
use crate::status::{BypassStatus, EntryDrops, FamilyStatus, PortDrops, RejectedStatus, Status};

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
    /// followed as links change ([`links`]).
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

/// How long a pass triggered by `network connect` events alone waits for
/// the `container start` that follows them when a container starts (Docker
/// announces a start as the connect of each of its networks, then the start,
/// about 10 ms later; until then the container is not listed). Both are then
/// one pass, and the start does not wait for a whole pass of the connect
/// first. A connect with no start after it (`docker network connect` of a
/// running container) is this much later, no more; nothing is opened
/// meanwhile that the rules in place do not open already.
const CONNECT_HOLD: Duration = Duration::from_millis(50);

/// How many of an event burst's containers are inspected at once.
const INSPECT_CONCURRENCY: usize = 8;

/// How long a pass waits for the inspects of its events, all together:
/// what has not answered by then is judged unknown (denied) and the pass
/// lists everything instead.
const INSPECT_DEADLINE: Duration = Duration::from_secs(3);

/// What a pass asks the engine before it plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Refresh {
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
    fn merge(&mut self, other: Refresh) {
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

    fn lists_everything(&self) -> bool {
        matches!(self, Refresh::Everything { .. })
    }
}

/// A network's bridge, gateway modes and other-driver name, as the
/// inventory holds them.
type NetworkEntries = (
    Option<Bridge>,
    Option<crate::inventory::GatewayModes>,
    Option<String>,
);

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
    fn refresh(&self) -> Refresh {
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
    fn needs_observation(&self) -> bool {
        !matches!(self, Trigger::DockerEvent(_) | Trigger::LinksChanged)
    }

    /// A `network connect` event: at a container's start it comes before
    /// the `container start` (see [`CONNECT_HOLD`]).
    fn precedes_a_start(&self) -> bool {
        matches!(self, Trigger::DockerEvent(e) if e.is_connect())
    }
}

/// The policy the daemon starts with, and, when the file did not validate,
/// what it enforces instead and why.
#[derive(Debug)]
pub struct StartPolicy {
    pub policy: Policy,
    /// The text that validated, kept as the last good policy.
    pub text: Option<String>,
    /// Set when the file was refused: what is enforced instead.
    pub fallback: Option<String>,
    /// The file's errors, when it was refused.
    pub errors: Option<String>,
    /// A read of the file that had not finished in time: the loop applies
    /// its result, as a reload's, when it ends.
    pub unfinished: Option<UnfinishedRead>,
}

/// A policy read still running on a blocking thread.
#[derive(Debug)]
pub struct UnfinishedRead(tokio::task::JoinHandle<PolicyRead>);

/// The policy at `path`; if it does not validate, the last good one kept in
/// `state_dir`; if there is none, deny all inbound. Never "no policy".
pub fn starting_policy(path: &Path, state_dir: &Path) -> StartPolicy {
    starting_policy_from(policy::parse_with_text(path), state_dir)
}

/// How long the daemon waits at start for the policy file to be read: a
/// FIFO or a hung mount must not hold up protection.
pub const START_READ_LIMIT: Duration = Duration::from_secs(2);

/// [`starting_policy`], the file read off the runtime's threads and waited
/// for at most `limit`: a read that has not finished by then (a FIFO with
/// no writer, a hung mount) is a policy that could not be read, so the last
/// good one, or deny all, is enforced; the read goes on, and the loop
/// applies its result when it ends ([`StartPolicy::unfinished`]).
pub async fn starting_policy_within(path: &Path, state_dir: &Path, limit: Duration) -> StartPolicy {
    let file = path.to_owned();
    let mut read = tokio::task::spawn_blocking(move || policy::parse_with_text(&file));
    let parsed = match tokio::time::timeout(limit, &mut read).await {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(joined)) => Err(unreadable(path, std::io::Error::other(joined.to_string()))),
        Err(_) => {
            let slow = format!(
                "the read did not finish within {} (a FIFO, a hung mount?); \
                 it is applied if it ends",
                humantime::format_duration(limit)
            );
            let error = unreadable(
                path,
                std::io::Error::new(std::io::ErrorKind::TimedOut, slow),
            );
            let mut start = starting_policy_from(Err(error), state_dir);
            start.unfinished = Some(UnfinishedRead(read));
            return start;
        }
    };
    starting_policy_from(parsed, state_dir)
}

fn unreadable(path: &Path, source: std::io::Error) -> policy::PolicyError {
    policy::PolicyError::Read {
        path: path.to_owned(),
        source,
    }
}

/// [`starting_policy`] for a policy already read and validated (e.g. from
/// standard input by `dockfw check -`).
pub fn starting_policy_from(
    parsed: Result<(Policy, String), policy::PolicyError>,
    state_dir: &Path,
) -> StartPolicy {
    let errors = match parsed {
        Ok((policy, text)) => {
            return StartPolicy {
                policy,
                text: Some(text),
                fallback: None,
                errors: None,
                unfinished: None,
            };
        }
        Err(e) => error_chain(&e),
    };
    let last_good = state::last_good_policy(state_dir)
        .and_then(|kept| policy::parse(&kept).ok().map(|p| (kept, p)));
    let (policy, fallback) = match last_good {
        Some((kept, policy)) => (
            policy,
            format!("enforcing the last good policy, kept in {}", kept.display()),
        ),
        None => (
            policy::deny_all(),
            "enforcing deny all inbound to containers (no last good policy is kept)".to_owned(),
        ),
    };
    StartPolicy {
        policy,
        text: None,
        fallback: Some(fallback),
        errors: Some(errors),
        unfinished: None,
    }
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

/// Doubling delay between attempts, capped.
#[derive(Debug, Clone)]
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
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

/// A policy file read and validated, or why not.
type PolicyRead = Result<(Policy, String), policy::PolicyError>;

/// Most reload requests waiting for the read after the one in flight; more
/// are answered at once that a reload is already waiting.
const MAX_QUEUED_RELOADS: usize = 64;

/// The policy reads of reloads, off the loop: a read that blocks (a FIFO,
/// a hung mount) holds its requests, never the loop, which keeps repairing
/// and feeding the watchdog meanwhile.
#[derive(Debug, Default)]
struct PolicyReads {
    /// The read in flight, on a blocking thread.
    in_flight: Option<tokio::task::JoinHandle<PolicyRead>>,
    /// The requests the read in flight answers.
    answering: Vec<ReloadRequest>,
    /// Requests made after it started: they get a read of their own, so
    /// that each sees the file as it was when asked.
    queued: Vec<ReloadRequest>,
}

impl PolicyReads {
    /// Take a reload request; true when it started a read.
    fn request(&mut self, reply: ReloadRequest, path: &Path) -> bool {
        if self.in_flight.is_none() {
            self.answering.push(reply);
            self.start(path);
            return true;
        }
        if self.queued.len() >= MAX_QUEUED_RELOADS {
            let _ = reply.send(Err("a reload is already waiting for the policy file".into()));
        } else {
            self.queued.push(reply);
        }
        false
    }

    fn start(&mut self, path: &Path) {
        let path = path.to_owned();
        debug!(path = %path.display(), "reading the policy");
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            policy::parse_with_text(&path)
        }));
    }

    /// The result of the read in flight; never, while there is none.
    async fn done(&mut self) -> PolicyRead {
        let Some(read) = &mut self.in_flight else {
            return std::future::pending().await;
        };
        let joined = read.await;
        self.in_flight = None;
        joined.unwrap_or_else(|e| {
            Err(policy::PolicyError::Read {
                path: PathBuf::from("policy"),
                source: std::io::Error::other(format!("policy reader failed: {e}")),
            })
        })
    }

    /// The requests the finished read answers; starts the next read for
    /// those queued meanwhile.
    fn finish(&mut self, path: &Path) -> Vec<ReloadRequest> {
        let answered = std::mem::take(&mut self.answering);
        if !self.queued.is_empty() {
            self.answering = std::mem::take(&mut self.queued);
            self.start(path);
        }
        answered
    }
}

/// How long re-subscribing waits at most: a booting host's engine should
/// be noticed within seconds of answering.
const DOCKER_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Follow Docker's event stream, turning each event into a trigger, and
/// re-subscribe with backoff when it ends. Every (re)subscription is itself
/// a trigger, so a restarted engine gets a full resync. An event the full
/// channel cannot take sets `lost`: its object is unknown, so the next pass
/// lists everything.
async fn watch_events<D: DockerSource>(
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
async fn watch_ruleset(
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

/// Longest pass during which the watchdog is still fed.
const MAX_FED_PASS: Duration = Duration::from_secs(120);

fn feed_watchdog() {
    if let Err(e) = sdnotify::notify("WATCHDOG=1") {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// One plan against what is installed: the step the reconcile loop and
/// `dockfw plan` share.
pub struct Prepared<F: Backend> {
    pub ruleset: Ruleset,
    pub observation: Observation<F::Observed>,
    /// What would take the installed rules to `ruleset`; empty when in place.
    pub transactions: Result<Vec<F::Transaction>, FirewallError>,
}

/// Observe what is installed, plan, and compute the transactions.
pub async fn prepare<F: Backend>(
    firewall: &F,
    policy: &Policy,
    inventory: &Inventory,
) -> Prepared<F> {
    prepare_planned(firewall, plan(policy, inventory)).await
}

/// [`prepare`] for a plan already made (e.g. with drops logged).
pub async fn prepare_planned<F: Backend>(firewall: &F, ruleset: Ruleset) -> Prepared<F> {
    let observation = firewall.observe().await;
    let transactions = firewall.transactions(&ruleset, &observation.observed);
    Prepared {
        ruleset,
        observation,
        transactions,
    }
}

/// The inventory before the engine ever answered: the default bridge and
/// the bridges seen last time, no containers.
fn boot_inventory(saved: Vec<Bridge>) -> Inventory {
    let mut bridges = saved;
    if !bridges.iter().any(|b| b.interface == "docker0") {
        bridges.push(Bridge {
            id: String::new(),
            name: "bridge".to_owned(),
            interface: "docker0".to_owned(),
        });
    }
    Inventory {
        bridges,
        ..Inventory::default()
    }
}

/// The kernel's word on which interfaces are Linux bridges, as the loop
/// keeps it.
enum BridgeFacts {
    /// Followed: read before each plan, and a change is a trigger.
    Watched(links::LinkWatch),
    /// The watch could not be set up or failed: the links are read at
    /// every pass, and only then.
    Read,
    /// [`BridgeCheck::Fixed`].
    Fixed(Option<BTreeSet<String>>),
}

impl BridgeFacts {
    fn new(check: &BridgeCheck) -> BridgeFacts {
        match check {
            BridgeCheck::Fixed(names) => BridgeFacts::Fixed(names.clone()),
            BridgeCheck::Kernel => match links::watch() {
                Ok(watch) => BridgeFacts::Watched(watch),
                Err(e) => {
                    warn!(error = %error_chain(&e), "cannot watch network links; reading them at every pass instead");
                    BridgeFacts::Read
                }
            },
        }
    }

    /// Until the set of Linux bridges changes; never, unless watched.
    async fn changed(&mut self) -> Result<(), links::LinkError> {
        match self {
            BridgeFacts::Watched(watch) => watch.changed().await,
            _ => std::future::pending().await,
        }
    }

    /// Fill `inventory.not_bridges` with the kernel's word now; the bridge
    /// networks that are not taken as bridges, with why.
    fn check(&mut self, inventory: &mut Inventory) -> Vec<links::NotABridge> {
        let read = match self {
            BridgeFacts::Fixed(None) => {
                inventory.not_bridges.clear();
                return Vec::new();
            }
            BridgeFacts::Fixed(Some(names)) => {
                let links = links::Links::from_names(names.iter().map(|n| (n.as_str(), true)));
                return links::check_bridges(inventory, Ok(&links));
            }
            BridgeFacts::Watched(watch) => match watch.refresh() {
                Ok(links) => return links::check_bridges(inventory, Ok(links)),
                Err(e) => {
                    warn!(error = %error_chain(&e), "the network link watch failed; reading links at every pass instead");
                    *self = BridgeFacts::Read;
                    links::links()
                }
            },
            BridgeFacts::Read => links::links(),
        };
        match read {
            Ok(links) => links::check_bridges(inventory, Ok(&links)),
            Err(e) => links::check_bridges(inventory, Err(&error_chain(&e))),
        }
    }
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
    status: Status,
    /// Publishes `status` to the control socket after every change.
    status_tx: watch::Sender<Status>,
    retry: Backoff,
    /// The start's policy read, if it had not finished in time; taken by
    /// `run`, which applies it when it ends.
    unfinished_read: Option<UnfinishedRead>,
}

impl<D: DockerSource, F: Backend> Reconciler<D, F> {
    fn new(
        config: Config,
        start: StartPolicy,
        state: Option<StateDir>,
        docker: Arc<D>,
        firewall: F,
        status_tx: watch::Sender<Status>,
    ) -> Self {
        let saved_bridges = state.as_ref().map(StateDir::bridges).unwrap_or_default();
        let bridge_facts = BridgeFacts::new(&config.bridge_check);
        let mut status = Status::default();
        status.policy.path = config.policy_path.display().to_string();
        status.docker.endpoint = config.endpoint.clone();
        status.reconcile.result = "pending".to_owned();
        status.drops.since = Some(now_rfc3339());
        status.backend.clone_from(&config.backend);
        let mut this = Reconciler {
            config,
            policy: start.policy,
            state,
            docker,
            firewall,
            inventory: boot_inventory(saved_bridges.clone()),
            saved_bridges,
            in_place: None,
            unavailable: Vec::new(),
            monitored: Arc::new(AtomicBool::new(false)),
            ruleset_dirty: Arc::new(AtomicBool::new(false)),
            events_lost: Arc::new(AtomicBool::new(false)),
            drops: DropTotals::default(),
            bridge_facts,
            status,
            status_tx,
            retry: Backoff::new(Duration::from_millis(500), DOCKER_BACKOFF_MAX),
            unfinished_read: start.unfinished,
        };
        this.note_policy_loaded(start.text.as_deref());
        if let Some(fallback) = start.fallback {
            error!(
                path = %this.config.policy_path.display(),
                errors = %start.errors.as_deref().unwrap_or_default(),
                "POLICY FILE INVALID: {fallback}"
            );
            this.status.policy.fallback = Some(fallback);
            this.status.policy.last_error = start.errors;
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
        let mut next_check = Instant::now() + self.config.resync;
        let mut next_poll = Instant::now() + self.config.drift_poll;
        // The loop itself feeds systemd's watchdog, at half the interval: a
        // wedged loop stops feeding it and systemd restarts the service.
        let watchdog = sdnotify::watchdog_interval().map(|i| i / 2);
        let mut next_feed = Instant::now();
        let mut reads = PolicyReads {
            in_flight: self.unfinished_read.take().map(|read| read.0),
            ..PolicyReads::default()
        };
        loop {
            if let Some(first) = pending.take() {
                // Leading edge: no wait before the first change. Whatever
                // arrived meanwhile (and whatever arrives while this pass
                // runs, at the next turn) is coalesced into one pass.
                let mut refresh = first.refresh();
                let mut observe = first.needs_observation();
                let mut burst = 1;
                let mut connects_only = first.precedes_a_start();
                // The start pass stays engine-free: what queued meanwhile
                // (the subscription) is the next pass.
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
                        () = shutdown.cancelled() => return,
                        more = tokio::time::timeout_at(hold, triggers.recv()) => more,
                    };
                    let Ok(Some(more)) = more else { break };
                    refresh.merge(more.refresh());
                    observe |= more.needs_observation();
                    connects_only = more.precedes_a_start();
                    burst += 1;
                }
                // A change announced while the channel was full is not lost.
                observe |= self.ruleset_dirty.swap(false, Ordering::SeqCst);
                if first != Trigger::Start && self.events_lost.swap(false, Ordering::SeqCst) {
                    refresh.merge(Refresh::Everything { check: false });
                }
                let full = refresh.lists_everything();
                // The sets poll alone is one `ipset save`: a pass only if
                // the sets differ.
                let sets_check = first == Trigger::SetsPoll && burst == 1;
                debug!(trigger = ?first, burst, ?refresh, observe, "reconcile triggered");
                // A reconcile in flight is dropped on shutdown: its restore
                // is one atomic transaction, so it lands whole or not at all.
                // The watchdog is fed while a pass waits on the engine or a
                // firewall program (each bounded by its own timeout), but not
                // past MAX_FED_PASS: a pass stuck longer gets us restarted.
                let started = Instant::now();
                let outcome = {
                    let pass = self.reconcile(refresh, observe, sets_check);
                    tokio::pin!(pass);
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            outcome = &mut pass => break outcome,
                            () = tokio::time::sleep_until(next_feed), if watchdog.is_some() => {
                                if started.elapsed() < MAX_FED_PASS {
                                    feed_watchdog();
                                }
                                next_feed = Instant::now() + watchdog.unwrap_or(Duration::MAX);
                            }
                        }
                    }
                };
                // The full check is due `resync` after the last full pass that
                // read the firewall, the drift poll `drift_poll` after the last
                // read (passes of the fast path read nothing: however many
                // there are, they never hold these off); a failure of any
                // pass brings a full retry forward.
                match outcome {
                    Ok(observed) => {
                        if observed && full {
                            self.retry.reset();
                            next_check = Instant::now() + self.config.resync;
                        }
                        if observed || sets_check {
                            next_poll = Instant::now() + self.config.drift_poll;
                        }
                    }
                    Err(()) => {
                        next_check = Instant::now() + self.retry.next_delay();
                        next_poll = Instant::now() + self.config.drift_poll;
                    }
                }
                if first == Trigger::Start {
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
                parsed = reads.done() => {
                    let replies = reads.finish(&self.config.policy_path);
                    self.reload(parsed, replies)
                }
                () = tokio::time::sleep_until(next_check) => Some(if self.status.reconcile.error.is_some() {
                    Trigger::Retry
                } else {
                    Trigger::Periodic
                }),
                () = tokio::time::sleep_until(next_poll), if poll => Some(if rules_poll {
                    Trigger::DriftPoll
                } else {
                    Trigger::SetsPoll
                }),
                () = tokio::time::sleep_until(next_feed), if watchdog.is_some() => {
                    feed_watchdog();
                    next_feed = Instant::now() + watchdog.unwrap_or(Duration::MAX);
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

    /// Whether some family's rules change unannounced: no netlink watch,
    /// or Docker's chains live in iptables-legacy.
    fn needs_drift_poll(&self) -> bool {
        !self.monitored.load(Ordering::SeqCst) || !self.firewall.announces_changes()
    }

    /// Whether the plan in place has sets whose changes nothing announces
    /// (ipsets), so that they are polled even where the rules are watched.
    fn polls_sets(&self) -> bool {
        self.in_place
            .as_ref()
            .is_some_and(|r| self.firewall.has_unannounced_sets(r))
    }

    /// Whether the unannounced sets differ from the plan in place.
    async fn sets_drifted(&self) -> bool {
        let Some(in_place) = &self.in_place else {
            return true;
        };
        self.firewall
            .sets_drifted(in_place, &self.available_families())
            .await
    }

    fn available_families(&self) -> Vec<Family> {
        Family::ALL
            .into_iter()
            .filter(|f| !self.unavailable.contains(f))
            .collect()
    }

    /// Apply a policy read for the reload requests in `replies` (the old
    /// one stays if the new one is invalid) and answer them. Returns a
    /// trigger when the policy in force changed.
    fn reload(&mut self, parsed: PolicyRead, replies: Vec<ReloadRequest>) -> Option<Trigger> {
        let parsed = parsed.map_err(|e| error_chain(&e));
        let path = self.config.policy_path.display().to_string();
        let answer = match parsed {
            Ok((policy, text)) => {
                self.policy = policy;
                self.note_policy_loaded(Some(&text));
                info!(%path, "policy reloaded");
                Ok(format!("reloaded {path}"))
            }
            Err(message) => {
                warn!(error = %message, "policy reload refused; the policy in force stays");
                self.status.policy.last_error = Some(message.clone());
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

    /// Record a policy that validated (and keep its text as the last good
    /// policy, when given).
    fn note_policy_loaded(&mut self, text: Option<&str>) {
        if let (Some(state), Some(text)) = (&self.state, text)
            && let Err(e) = state.save_policy(text)
        {
            warn!(error = %error_chain(&e), "cannot keep the last good policy");
        }
        let p = &mut self.status.policy;
        p.loaded_at = Some(now_rfc3339());
        p.default = format!("{:?}", self.policy.default).to_lowercase();
        p.allow_entries = self.policy.allow.len();
        p.deny_entries = self.policy.deny.len();
        p.last_error = None;
        p.fallback = None;
    }

    /// One pass: the inventory brought up to date as `refresh` asks (see
    /// [`Reconciler::refresh_inventory`]); then, if
    /// the plan differs from the one in place in set elements only, those
    /// are written at once; then (when `observe`, or when nothing announces
    /// changes to the installed rules, or when the fast path does not
    /// apply) per family a read and at most one restore. `Err` means
    /// something failed and a retry is due; the rules are applied from the
    /// best inventory at hand even when the engine does not answer.
    ///
    /// `Ok(true)` when the pass read the firewall; `Ok(false)` when it did
    /// not (the fast path, or a `sets_check` that found the sets as
    /// planned, which does nothing else).
    async fn reconcile(
        &mut self,
        refresh: Refresh,
        observe: bool,
        sets_check: bool,
    ) -> Result<bool, ()> {
        if sets_check && !self.sets_drifted().await {
            return Ok(false);
        }
        let started = Instant::now();
        self.status.reconcile.last_at = Some(now_rfc3339());
        let mut errors = Vec::new();
        let events_only = matches!(refresh, Refresh::Objects(_)) && !observe;
        let moved = self.refresh_inventory(refresh, &mut errors).await;
        // Events whose objects are as the inventory had them (a `destroy`
        // after the `die` that took the container out): nothing to plan.
        if events_only
            && !moved
            && errors.is_empty()
            && self.in_place.is_some()
            && !self.needs_drift_poll()
        {
            return self
                .finish(started, Vec::new(), errors, false)
                .map(|()| false);
        }
        let not_bridges = self.bridge_facts.check(&mut self.inventory);
        self.note_rejected(not_bridges);
        let mut planned = plan(&self.policy, &self.inventory);
        if self.config.log_drops {
            planned = with_drop_logging(planned);
        }
        self.status.ports = exposures(&self.policy, &self.inventory);
        let mut changed = Vec::new();
        let observe = observe || self.needs_drift_poll();
        match self.elements_only(&planned, &mut changed).await {
            Ok(true) if !observe => {
                return self.finish(started, changed, errors, false).map(|()| false);
            }
            Ok(_) => {}
            // The observing pass below takes over from what is installed.
            Err(e) => errors.push(e),
        }
        let Prepared {
            ruleset,
            observation,
            transactions,
        } = prepare_planned(&self.firewall, planned).await;
        let counters = self.firewall.drop_counters(&observation.observed);
        let listed_elements: Vec<String> = counters
            .iter()
            .filter(|c| c.is_element())
            .map(|c| c.rule.clone())
            .collect();
        self.drops.observe(counters);
        // A family that could not be read says nothing either way.
        if observation.failed.is_empty() {
            let bypasses = self.firewall.forward_bypasses(&observation.observed);
            self.note_bypasses(bypasses);
        }
        self.unavailable.clone_from(&observation.unavailable);
        let mut firewall_failed = !observation.failed.is_empty();
        for (scope, e) in &observation.failed {
            errors.push(format!("{scope}: {}", error_chain(e)));
        }
        let transactions = transactions.unwrap_or_else(|e| {
            firewall_failed = true;
            errors.push(error_chain(&e));
            Vec::new()
        });
        for tx in transactions {
            match self.apply(&tx, &ruleset).await {
                Ok(()) => changed.push(tx),
                Err(e) => {
                    firewall_failed = true;
                    errors.push(format!("{}: {e}", tx.scope()));
                }
            }
        }
        if !firewall_failed {
            // Drop port elements the transactions removed: what they
            // counted stays counted (a table rewritten carried it already).
            let kept = drop_element_rules(&ruleset);
            for rule in listed_elements.iter().filter(|r| !kept.contains(*r)) {
                self.drops.removed(rule);
            }
        }
        for family in Family::ALL {
            *self.family_status(family) = if observation.unavailable.contains(&family) {
                FamilyStatus::default()
            } else {
                FamilyStatus {
                    rules: self.firewall.rule_count(ruleset.family(family)),
                    variant: self.firewall.variant(family).map(str::to_owned),
                }
            };
        }
        // What is installed is known only after a pass that wrote all of
        // it; after a failure, the next passes read it first.
        self.in_place = (!firewall_failed).then_some(ruleset);
        self.note_drops();
        self.finish(started, changed, errors, firewall_failed)
            .map(|()| true)
    }

    /// The fast path: when `planned` differs from the plan in place in set
    /// elements only, write those (recorded in `changed`; the drop sets'
    /// elements too, which count drops per port on both backends) and take
    /// `planned` as in place. False when there is no plan in place or other
    /// rules differ: a pass that observes decides.
    async fn elements_only(
        &mut self,
        planned: &Ruleset,
        changed: &mut Vec<F::Transaction>,
    ) -> Result<bool, String> {
        let Some(in_place) = &self.in_place else {
            return Ok(false);
        };
        let families = self.available_families();
        let Some(transactions) = self.firewall.element_update(planned, in_place, &families) else {
            return Ok(false);
        };
        let removed = removed_drop_elements(in_place, planned, &families);
        for tx in transactions {
            if let Err(e) = self.apply(&tx, planned).await {
                // What is installed is no longer known: observe from now on.
                self.in_place = None;
                return Err(format!("{}: {e}", tx.scope()));
            }
            changed.push(tx);
        }
        for rule in &removed {
            self.drops.removed(rule);
        }
        self.in_place = Some(planned.clone());
        Ok(true)
    }

    /// Bring the inventory up to date as `refresh` asks. The objects events
    /// named are inspected and updated in place, once the engine has given
    /// a whole inventory to update; an inspect that cannot be used takes
    /// its object out (fail closed) and the engine is listed instead. A
    /// failed listing is pushed to `errors`: the inventory in hand stays
    /// the basis. False when the inventory is known not to have changed
    /// (every object inspected was as the inventory had it).
    async fn refresh_inventory(&mut self, refresh: Refresh, errors: &mut Vec<String>) -> bool {
        let objects = match refresh {
            Refresh::Nothing => return false,
            Refresh::Everything { check } => {
                self.list_everything(check, errors).await;
                return true;
            }
            Refresh::Objects(objects) => objects,
        };
        if !self.status.docker.connected {
            self.list_everything(false, errors).await;
            return true;
        }
        let inspected = self.inspect(objects).await;
        self.note_inventory();
        match inspected {
            Ok(changed) => changed,
            Err(why) => {
                info!(%why, "an event's object could not be inspected; judged unknown (denied) and listing everything");
                self.list_everything(false, errors).await;
                true
            }
        }
    }

    /// Inspect each object and update the inventory with what it is now:
    /// networks first (a container may be on a new one), then containers,
    /// a few at a time, within [`INSPECT_DEADLINE`] in all. A container
    /// whose inspect fails, does not answer in time or names a network the
    /// inventory does not know is taken out of the inventory; `Err` then
    /// says why, and everything must be listed. `Ok(false)` when every
    /// object was as the inventory had it.
    async fn inspect(&mut self, objects: BTreeSet<Subject>) -> Result<bool, String> {
        let mut changed = false;
        let mut containers = Vec::new();
        for object in objects {
            match object {
                Subject::Container(id) => containers.push(id),
                Subject::Network(id) => {
                    self.status.inventory.inspects += 1;
                    let found =
                        tokio::time::timeout(INSPECT_DEADLINE, self.docker.inspect_network(&id));
                    match found.await {
                        Ok(Ok(found)) => {
                            let before = self.network_entries(&id);
                            self.inventory.put_network(&id, found);
                            changed |= self.network_entries(&id) != before;
                        }
                        Ok(Err(e)) => return Err(format!("network {id}: {}", error_chain(&e))),
                        Err(_) => {
                            return Err(format!(
                                "network {id}: no answer within {INSPECT_DEADLINE:?}"
                            ));
                        }
                    }
                }
                Subject::Unknown => return Err("an event named no object".to_owned()),
            }
        }
        self.status.inventory.inspects += containers.len() as u64;
        let (docker, known) = (&self.docker, &self.inventory);
        let answers: Vec<(String, Result<Inspected, String>)> = stream::iter(containers.clone())
            .map(|id| async move {
                let found = docker.inspect_container(&id, known).await;
                (id, found.map_err(|e| error_chain(&e)))
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .take_until(tokio::time::sleep(INSPECT_DEADLINE))
            .collect()
            .await;
        let mut failed = Vec::new();
        let mut unanswered: BTreeSet<String> = containers.into_iter().collect();
        for (id, found) in answers {
            unanswered.remove(&id);
            match found {
                Ok(Inspected::Running {
                    container,
                    rejected,
                }) => {
                    let known = self.inventory.containers.iter().find(|c| c.id == id);
                    changed |= known != Some(&container);
                    self.inventory.put_container(container, rejected);
                }
                Ok(Inspected::Gone) => {
                    changed |= self.inventory.remove_container(&id).is_some();
                }
                Ok(Inspected::UnknownNetwork(network)) => {
                    self.inventory.remove_container(&id);
                    failed.push(format!(
                        "container {id} is on network {network:?}, not listed"
                    ));
                }
                Err(e) => {
                    self.inventory.remove_container(&id);
                    failed.push(format!("container {id}: {e}"));
                }
            }
        }
        for id in unanswered {
            self.inventory.remove_container(&id);
            failed.push(format!(
                "container {id}: no answer within {INSPECT_DEADLINE:?}"
            ));
        }
        if failed.is_empty() {
            Ok(changed)
        } else {
            Err(failed.join("; "))
        }
    }

    /// What the inventory holds of the network with id `id`: its bridge,
    /// gateway modes and other-driver entry.
    fn network_entries(&self, id: &str) -> NetworkEntries {
        let inventory = &self.inventory;
        (
            inventory.bridges.iter().find(|b| b.id == id).cloned(),
            inventory.gateway_modes.get(id).cloned(),
            inventory.other_networks.get(id).cloned(),
        )
    }

    /// A full listing: the engine's inventory replaces the one in hand. As
    /// a `check` of an inventory kept from events, a difference is counted
    /// as a repair; a failure is pushed to `errors`.
    async fn list_everything(&mut self, check: bool, errors: &mut Vec<String>) {
        self.status.inventory.listings += 1;
        match self.docker.snapshot().await {
            Ok(snapshot) => {
                let kept_from_events = self.status.docker.connected;
                if check
                    && kept_from_events
                    && let Some(found) = self.inventory.differences(&snapshot.inventory)
                {
                    warn!(%found, "the full listing found what the events missed; repaired");
                    let inventory = &mut self.status.inventory;
                    inventory.repairs += 1;
                    inventory.last_repair_at = Some(now_rfc3339());
                    inventory.last_repair = Some(found);
                }
                self.note_snapshot(&snapshot.engine, snapshot.inventory);
            }
            Err(e) => {
                let message = error_chain(&e);
                self.status.docker.connected = false;
                self.status.docker.last_error = Some(message.clone());
                errors.push(format!("docker: {message}"));
            }
        }
    }

    /// Take a fresh inventory as the basis of plans; note what was refused
    /// in it and keep its bridges for the next boot.
    fn note_snapshot(&mut self, engine: &Engine, inventory: Inventory) {
        let docker = &mut self.status.docker;
        docker.connected = true;
        docker.last_error = None;
        docker.version = Some(engine.version.clone());
        docker.api_version = Some(engine.api_version.clone());
        self.status.reconcile.inventory = "engine".to_owned();
        self.inventory = inventory;
        self.note_inventory();
    }

    /// What follows the inventory in hand: the host-network containers in
    /// status, and the bridges kept for the next boot.
    fn note_inventory(&mut self) {
        let inventory = &self.inventory;
        self.status.host_network = inventory
            .containers
            .iter()
            .filter(|c| c.host_network)
            .map(|c| c.name.clone())
            .collect();
        if inventory.bridges != self.saved_bridges
            && let Some(state) = &self.state
        {
            match state.save_bridges(&inventory.bridges) {
                Ok(()) => self.saved_bridges = inventory.bridges.clone(),
                Err(e) => {
                    warn!(error = %error_chain(&e), "cannot keep the bridges for the next boot")
                }
            }
        }
    }

    /// What could not be used as reported, for status and (once each) the
    /// log: the inventory's refusals, bridges whose names are refused, and
    /// `not_bridges`, the bridge networks whose interface the kernel does
    /// not have as a Linux bridge now.
    fn note_rejected(&mut self, not_bridges: Vec<links::NotABridge>) {
        let reported: Vec<Rejected> = self
            .inventory
            .rejected
            .iter()
            .cloned()
            .chain(rejected_bridges(&self.inventory))
            .collect();
        let new = |r: &&Rejected| {
            !self
                .status
                .rejected
                .iter()
                .any(|s| s.name == r.name && s.reason == r.reason)
        };
        for r in reported.iter().filter(new) {
            warn!(kind = %r.kind, name = ?r.name, reason = ?r.reason, "refused part of what docker reported; judged fail-closed");
        }
        for n in not_bridges.iter().filter(|n| new(&&n.rejected)) {
            let r = &n.rejected;
            let message = "a bridge network's interface is not a Linux bridge now; not exempted, judged fail-closed";
            // A bridge the engine has not made yet (docker0 at every boot)
            // is the ordinary course of things; anything else is not.
            if n.kind == Some(links::LinkKind::Missing) {
                info!(name = ?r.name, reason = ?r.reason, "{message}");
            } else {
                warn!(name = ?r.name, reason = ?r.reason, "{message}");
            }
        }
        self.status.rejected = reported
            .into_iter()
            .chain(not_bridges.into_iter().map(|n| n.rejected))
            .map(|r| RejectedStatus {
                kind: r.kind,
                name: r.name,
                reason: r.reason,
            })
            .collect();
    }

    /// Rules of other tools that let connections past dockfw unjudged, for
    /// status and metrics, and (once per change) the log.
    fn note_bypasses(&mut self, bypasses: Vec<(Family, String)>) {
        let found: Vec<BypassStatus> = bypasses
            .into_iter()
            .map(|(family, rule)| BypassStatus {
                family: family.as_str().to_owned(),
                rule,
            })
            .collect();
        if found == self.status.forward_bypass {
            return;
        }
        for b in &found {
            warn!(family = %b.family, rule = ?b.rule, "a FORWARD rule above the jump to DOCKER-USER may accept connections dockfw never judges; dockfw cannot repair this without taking over FORWARD");
        }
        if found.is_empty() {
            info!("no FORWARD rule above the jump to DOCKER-USER any more");
        }
        self.status.forward_bypass = found;
    }

    /// The running drop totals, for status.
    fn note_drops(&mut self) {
        let (mut entries, mut ports) = (Vec::new(), Vec::new());
        let mut shared = self.drops.shared();
        for (origin, dropped) in self.drops.totals() {
            let (entry, line) = match origin {
                Origin::Port { proto, port } => {
                    let shared_with = shared.remove(&origin).unwrap_or_default();
                    ports.push(PortDrops {
                        proto: proto.as_str().to_owned(),
                        port,
                        dropped,
                        shared_with: shared_with.into_iter().collect(),
                    });
                    continue;
                }
                Origin::Deny { line } | Origin::Allow { line } => (origin.label(), Some(line)),
                Origin::DefaultDeny | Origin::Loopback => (origin.label(), None),
            };
            entries.push(EntryDrops {
                entry,
                line,
                dropped,
            });
        }
        self.status.drops.entries = entries;
        self.status.drops.ports = ports;
    }

    /// Apply one transaction; count it, and count it as a repair when the
    /// plan is the one already found in place before.
    async fn apply(&mut self, tx: &F::Transaction, desired: &Ruleset) -> Result<(), String> {
        self.firewall.apply(tx).await.map_err(|e| error_chain(&e))?;
        self.status.reconcile.applies += 1;
        if tx.changes().rewrote_rules {
            self.drops.rewritten(tx.family());
        }
        let scope = tx.scope();
        if self.in_place.as_ref() == Some(desired) {
            let found = format!("{scope}: {}", tx.summary());
            warn!(%found, "dockfw's rules had been changed by something else; repaired");
            let drift = &mut self.status.drift;
            drift.repairs += 1;
            drift.last_at = Some(now_rfc3339());
            drift.last_found = Some(found);
        }
        for notice in tx.notices() {
            match notice {
                Notice::Warning(message) => warn!(scope, "{message}"),
                Notice::Info(message) => info!(scope, "{message}"),
            }
        }
        Ok(())
    }

    fn family_status(&mut self, family: Family) -> &mut FamilyStatus {
        match family {
            Family::V4 => &mut self.status.rules.ipv4,
            Family::V6 => &mut self.status.rules.ipv6,
        }
    }

    /// Record the outcome, log it, publish status.
    fn finish(
        &mut self,
        started: Instant,
        changed: Vec<F::Transaction>,
        errors: Vec<String>,
        firewall_failed: bool,
    ) -> Result<(), ()> {
        let elapsed = started.elapsed();
        if !self.status.docker.connected {
            self.status.reconcile.inventory = if self.status.docker.version.is_some() {
                "last known inventory (engine unreachable)"
            } else {
                "boot (no engine yet): policy and saved bridges only"
            }
            .to_owned();
        }
        let r = &mut self.status.reconcile;
        r.passes.observe(elapsed, !errors.is_empty());
        let previous_error = r.error.take();
        r.duration_ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        r.result = if firewall_failed {
            "failed"
        } else if !errors.is_empty() {
            "degraded"
        } else if changed.is_empty() {
            "unchanged"
        } else {
            "applied"
        }
        .to_owned();
        r.error = (!errors.is_empty()).then(|| errors.join("; "));
        if !changed.is_empty() {
            let what: Vec<String> = changed
                .iter()
                .map(|tx| format!("{}: {}", tx.scope(), tx.summary()))
                .collect();
            info!(changes = %what.join("; "), duration_ms = elapsed.as_millis() as u64, "rules updated");
        }
        match (&r.error, &previous_error) {
            // Once per kind of trouble, not at every retry.
            (Some(error), Some(before)) if error == before => {
                debug!(%error, "reconcile still incomplete; retrying");
            }
            (Some(error), _) => {
                warn!(%error, "reconcile incomplete; retrying (rules in force stay, fail closed)");
            }
            (None, Some(_)) => info!("reconcile complete again"),
            (None, None) => {}
        }
        self.publish();
        if errors.is_empty() { Ok(()) } else { Err(()) }
    }

    fn publish(&self) {
        self.status_tx.send_replace(self.status.clone());
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The drop set elements of `families` ([`family_drop_elements`]) that
/// `in_place` has and `next` has not.
fn removed_drop_elements(in_place: &Ruleset, next: &Ruleset, families: &[Family]) -> Vec<String> {
    let kept = drop_element_rules(next);
    (families.iter())
        .flat_map(|&family| family_drop_elements(in_place, family))
        .filter(|r| !kept.contains(r))
        .collect()
}

/// The drop set elements of `ruleset` ([`family_drop_elements`]).
fn drop_element_rules(ruleset: &Ruleset) -> BTreeSet<String> {
    (Family::ALL.into_iter())
        .flat_map(|family| family_drop_elements(ruleset, family))
        .collect()
}

/// The [`DropCounter::rule`] of every drop set element of `family` in
/// `ruleset`, as a driver may count them: per published port
/// ([`DropCounter::element_rule`]) and per container endpoint
/// ([`DropCounter::endpoint_rule`]).
fn family_drop_elements(ruleset: &Ruleset, family: Family) -> impl Iterator<Item = String> + '_ {
    let rules = ruleset.family(family);
    let ports = rules.drop_ports.iter().flat_map(move |set| {
        (set.ports.iter()).map(move |&port| DropCounter::element_rule(family, set.proto, port))
    });
    let endpoints = (rules.drop_endpoints.iter())
        .map(move |endpoint| DropCounter::endpoint_rule(family, endpoint));
    ports.chain(endpoints)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use futures_util::stream::{self, BoxStream};
    use tokio::sync::oneshot;

    use super::*;
    use crate::docker::{DockerError, Snapshot};
    use crate::firewall::iptables::installed::{Installed, simulate};
    use crate::firewall::iptables::{self, Tables};
    use std::net::IpAddr;

    use crate::inventory::{Attachment, Bridge, Container, Inventory, Proto, PublishedPort};
    use crate::policy::Default;

    struct FakeDocker {
        inventory: Mutex<Inventory>,
        down: AtomicBool,
        /// Snapshots never complete (docker.socket held at boot).
        hang: AtomicBool,
        snapshots: AtomicUsize,
        /// Containers and networks inspected.
        inspects: AtomicUsize,
        /// Inspects fail (the engine answers listings only).
        failing_inspects: AtomicBool,
        /// Events the test injects, as their text (see [`fake_event`]);
        /// the first `events()` call takes it.
        events: Mutex<Option<mpsc::Receiver<String>>>,
    }

    /// An event as the test writes it: `container ACTION NAME` and
    /// `network ACTION NET container NAME` name container `NAME-id` (as
    /// [`selected`] makes them), `network create|destroy NAME` network
    /// `NAME-id` (as [`bridge`] makes them); anything else names nothing.
    fn fake_event(text: String) -> Event {
        let words: Vec<&str> = text.split(' ').collect();
        let subject = match words.as_slice() {
            ["container", _, name] | ["network", _, _, "container", name] => {
                Subject::Container(format!("{name}-id"))
            }
            ["network", "create" | "destroy", name] => Subject::Network(format!("{name}-id")),
            _ => Subject::Unknown,
        };
        Event { subject, text }
    }

    impl DockerSource for FakeDocker {
        async fn snapshot(&self) -> Result<Snapshot, DockerError> {
            self.snapshots.fetch_add(1, Ordering::SeqCst);
            if self.hang.load(Ordering::SeqCst) {
                // An engine that never answers (socket-activated, waiting for us).
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(DockerError::MissingVersion {
                    field: "fake engine is down",
                });
            }
            Ok(Snapshot {
                engine: Engine {
                    version: "20.10.24".into(),
                    api_version: "1.41".into(),
                },
                inventory: self.inventory.lock().unwrap().clone(),
            })
        }

        async fn inspect_container(
            &self,
            id: &str,
            known: &Inventory,
        ) -> Result<Inspected, DockerError> {
            self.inspects.fetch_add(1, Ordering::SeqCst);
            if self.failing_inspects.load(Ordering::SeqCst) || self.down.load(Ordering::SeqCst) {
                return Err(DockerError::NotListed);
            }
            let inventory = self.inventory.lock().unwrap();
            let Some(container) = inventory.containers.iter().find(|c| c.id == id) else {
                return Ok(Inspected::Gone);
            };
            let unknown = container.attachments.iter().find(|a| {
                !a.network_id.is_empty() && !known.bridges.iter().any(|b| b.id == a.network_id)
            });
            if let Some(attachment) = unknown {
                return Ok(Inspected::UnknownNetwork(attachment.network.clone()));
            }
            Ok(Inspected::Running {
                container: container.clone(),
                rejected: Vec::new(),
            })
        }

        async fn inspect_network(&self, id: &str) -> Result<Option<Inventory>, DockerError> {
            self.inspects.fetch_add(1, Ordering::SeqCst);
            if self.failing_inspects.load(Ordering::SeqCst) || self.down.load(Ordering::SeqCst) {
                return Err(DockerError::NotListed);
            }
            let inventory = self.inventory.lock().unwrap();
            Ok(inventory
                .bridges
                .iter()
                .find(|b| b.id == id)
                .map(|b| Inventory {
                    bridges: vec![b.clone()],
                    ..Inventory::default()
                }))
        }

        fn events(&self) -> BoxStream<'static, Result<Event, DockerError>> {
            match self.events.lock().unwrap().take() {
                Some(rx) => stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|e| (Ok(fake_event(e)), rx))
                })
                .boxed(),
                None => stream::pending().boxed(),
            }
        }
    }

    struct FakeFirewall {
        tables: Mutex<[Installed; 2]>,
        failing: AtomicBool,
        /// Behave like a kernel booted with IPv6 disabled.
        no_ipv6: AtomicBool,
        restores: AtomicUsize,
        /// Observations made (each a read of every family).
        observations: AtomicUsize,
        /// Polls of the sets alone.
        set_reads: AtomicUsize,
    }

    fn slot(family: Family) -> usize {
        match family {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }

    /// iptables' own pure transactions over simulated restores.
    impl Backend for Arc<FakeFirewall> {
        type Observed = Tables;
        type Transaction = iptables::Transaction;

        fn kind(&self) -> crate::choice::BackendKind {
            crate::choice::BackendKind::Iptables
        }

        fn nothing_installed(&self) -> Tables {
            Tables::default()
        }

        async fn observe(&self) -> Observation<Tables> {
            self.observations.fetch_add(1, Ordering::SeqCst);
            let tables = self.tables.lock().unwrap().clone();
            let mut observation = Observation {
                observed: Tables::default(),
                unavailable: Vec::new(),
                failed: Vec::new(),
            };
            for family in Family::ALL {
                if family == Family::V6 && self.no_ipv6.load(Ordering::SeqCst) {
                    observation.unavailable.push(family);
                } else {
                    observation
                        .observed
                        .set(family, tables[slot(family)].clone());
                }
            }
            observation
        }

        fn transactions(
            &self,
            desired: &Ruleset,
            observed: &Tables,
        ) -> Result<Vec<iptables::Transaction>, FirewallError> {
            Ok(iptables::transactions(desired, observed))
        }

        fn element_update(
            &self,
            desired: &Ruleset,
            in_place: &Ruleset,
            families: &[Family],
        ) -> Option<Vec<iptables::Transaction>> {
            iptables::element_update(desired, in_place, families)
        }

        fn render(&self, desired: &Ruleset) -> String {
            iptables::render_all(desired)
        }

        fn render_family(&self, desired: &Ruleset, family: Family) -> String {
            iptables::render::listing(desired.family(family))
        }

        fn has_unannounced_sets(&self, in_place: &Ruleset) -> bool {
            iptables::has_sets(in_place)
        }

        async fn sets_drifted(&self, in_place: &Ruleset, families: &[Family]) -> bool {
            self.set_reads.fetch_add(1, Ordering::SeqCst);
            let tables = self.tables.lock().unwrap().clone();
            let installed = tables.iter().flat_map(|t| t.sets.clone()).collect();
            iptables::sets_differ(in_place, families, &installed)
        }

        async fn apply(&self, tx: &iptables::Transaction) -> Result<(), FirewallError> {
            self.restores.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(FirewallError::Timeout {
                    program: "fake-restore".into(),
                });
            }
            let mut tables = self.tables.lock().unwrap();
            for (family, tx) in simulate::per_family(tx) {
                simulate::apply_transaction(&mut tables[slot(family)], &tx)
                    .map_err(|e| FirewallError::Timeout { program: e })?;
            }
            Ok(())
        }

        fn uninstall(&self, observed: &Tables) -> Vec<iptables::Transaction> {
            iptables::uninstall(observed)
        }

        fn drop_counters(&self, observed: &Tables) -> Vec<crate::firewall::DropCounter> {
            iptables::drop_counters(observed)
        }

        fn forward_bypasses(&self, observed: &Tables) -> Vec<(Family, String)> {
            iptables::forward_bypasses(observed)
        }

        fn variant(&self, _: Family) -> Option<&'static str> {
            Some("fake")
        }

        /// Like iptables-nft: whether changes are watched is the
        /// harness's `ruleset_watch`.
        fn announces_changes(&self) -> bool {
            true
        }
    }

    struct Harness {
        docker: Arc<FakeDocker>,
        firewall: Arc<FakeFirewall>,
        events: mpsc::Sender<String>,
        reload: mpsc::Sender<ReloadRequest>,
        status: watch::Receiver<Status>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn bridge(iface: &str) -> Bridge {
        Bridge {
            id: format!("{iface}-id"),
            name: iface.to_owned(),
            interface: iface.to_owned(),
        }
    }

    fn start(policy_path: PathBuf) -> Harness {
        // No netlink watch here: polling would interleave with what the
        // tests count, so it is off unless a test asks for it.
        start_with(policy_path, Duration::from_secs(3600))
    }

    fn start_with(policy_path: PathBuf, drift_poll: Duration) -> Harness {
        start_config(Config {
            drift_poll,
            bridge_check: BridgeCheck::Fixed(None),
            ..Config::new(policy_path, "unix:///fake.sock".into())
        })
    }

    fn start_config(config: Config) -> Harness {
        start_state(config, None)
    }

    fn start_state(config: Config, state: Option<StateDir>) -> Harness {
        let (events, events_rx) = mpsc::channel(256);
        let docker = Arc::new(FakeDocker {
            inventory: Mutex::new(Inventory {
                bridges: vec![bridge("docker0")],
                ..Inventory::default()
            }),
            down: AtomicBool::new(false),
            hang: AtomicBool::new(false),
            snapshots: AtomicUsize::new(0),
            inspects: AtomicUsize::new(0),
            failing_inspects: AtomicBool::new(false),
            events: Mutex::new(Some(events_rx)),
        });
        let v4 = "*nat\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 5432 -j DNAT --to-destination 172.17.0.2:5432\nCOMMIT\n\
                  *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
        let firewall = Arc::new(FakeFirewall {
            tables: Mutex::new([
                Installed::parse(v4),
                Installed::parse("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"),
            ]),
            failing: AtomicBool::new(false),
            no_ipv6: AtomicBool::new(false),
            restores: AtomicUsize::new(0),
            observations: AtomicUsize::new(0),
            set_reads: AtomicUsize::new(0),
        });
        let (reload, reload_rx) = mpsc::channel(4);
        let (status_tx, status) = watch::channel(Status::default());
        let shutdown = CancellationToken::new();
        let policy = Policy {
            default: Default::Deny,
            allow: Vec::new(),
            deny: Vec::new(),
        };
        let start = StartPolicy {
            policy,
            text: None,
            fallback: None,
            errors: None,
            unfinished: None,
        };
        let task = tokio::spawn(run(
            config,
            start,
            state,
            docker.clone(),
            firewall.clone(),
            Channels {
                reload: reload_rx,
                status: status_tx,
            },
            shutdown.clone(),
        ));
        Harness {
            docker,
            firewall,
            events,
            reload,
            status,
            shutdown,
            task,
        }
    }

    impl Harness {
        fn snapshots(&self) -> usize {
            self.docker.snapshots.load(Ordering::SeqCst)
        }
        fn inspects(&self) -> usize {
            self.docker.inspects.load(Ordering::SeqCst)
        }
        fn passes(&self) -> u64 {
            self.status.borrow().reconcile.passes.count
        }
        fn restores(&self) -> usize {
            self.firewall.restores.load(Ordering::SeqCst)
        }
        fn observations(&self) -> usize {
            self.firewall.observations.load(Ordering::SeqCst)
        }
        fn result(&self) -> String {
            self.status.borrow().reconcile.result.clone()
        }
    }

    async fn settle(secs: f64) {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn first_reconcile_installs_both_families_then_nothing_changes() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        settle(1.0).await;
        assert_eq!(h.restores(), 2, "one restore per family");
        // The subscription's own resync follows the first pass and finds
        // nothing to do.
        assert_eq!(h.result(), "unchanged");
        let st = h.status.borrow().clone();
        assert_eq!(st.reconcile.applies, 2);
        assert!(st.docker.connected);
        assert_eq!(st.rules.ipv4.rules, st.rules.ipv6.rules);

        settle(11.0).await;
        assert!(h.snapshots() >= 2, "the periodic check ran");
        assert_eq!(h.restores(), 2, "nothing changed, nothing ran");
        assert_eq!(h.result(), "unchanged");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_pass_protects_before_asking_the_engine_anything() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        h.docker.hang.store(true, Ordering::SeqCst);
        settle(1.0).await;
        assert_eq!(
            h.restores(),
            2,
            "protected although the engine never answers"
        );
        let st = h.status.borrow().clone();
        assert!(st.reconcile.inventory.starts_with("boot"), "{st:?}");
        assert_eq!(st.reconcile.result, "applied");
    }

    #[tokio::test(start_paused = true)]
    async fn at_boot_a_kept_bridge_that_is_not_a_bridge_now_is_not_exempted() {
        let dir = std::env::temp_dir().join(format!("dockfw-boot-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::lock(&dir).unwrap();
        state
            .save_bridges(&[bridge("wg0"), bridge("br-kept")])
            .unwrap();
        // wg0 is the uplink now; br-kept and docker0 are bridges.
        let bridges = ["docker0", "br-kept"].map(str::to_owned);
        let h = start_state(
            Config {
                bridge_check: BridgeCheck::Fixed(Some(BTreeSet::from(bridges))),
                drift_poll: Duration::from_secs(3600),
                ..Config::new(
                    PathBuf::from("/nonexistent/policy.toml"),
                    "unix:///fake.sock".into(),
                )
            },
            Some(state),
        );
        h.docker.hang.store(true, Ordering::SeqCst);
        settle(1.0).await;
        assert_eq!(h.restores(), 2, "protected before the engine answers");
        for table in h.firewall.tables.lock().unwrap().iter() {
            let entry = table.chain_rules("DOCKFW");
            let proxy = table.chain_rules("DOCKFW-PROXY");
            for exempt in ["docker0", "br-kept"] {
                let rule = format!("-i {exempt} -j RETURN");
                assert!(entry.contains(&rule) && proxy.contains(&rule), "{entry:?}");
            }
            assert!(
                !entry.iter().chain(proxy).any(|r| r.contains("-i wg0")),
                "the uplink kept in bridges.json is exempted: {entry:?} {proxy:?}"
            );
            assert!(entry.contains(&"-o wg0 -j DOCKFW-INBOUND".to_owned()));
        }
        let st = h.status.borrow().clone();
        assert!(st.reconcile.inventory.starts_with("boot"), "{st:?}");
        let rejected: Vec<_> = st.rejected.iter().map(|r| (&r.name, &r.reason)).collect();
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(rejected[0].0, "wg0");
        assert!(
            rejected[0].1.contains("nothing arriving on it is exempted"),
            "{rejected:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_rule_above_forward_to_docker_user_is_reported_until_removed() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        settle(1.0).await;
        assert!(h.status.borrow().forward_bypass.is_empty());
        let edit_forward = |edit: &dyn Fn(&mut Vec<String>)| {
            let mut tables = h.firewall.tables.lock().unwrap();
            edit(tables[0].rules.entry("FORWARD".to_owned()).or_default());
        };
        edit_forward(&|rules| rules.insert(0, "-i eth0 -j ACCEPT".to_owned()));
        settle(11.0).await;
        let st = h.status.borrow().clone();
        assert_eq!(
            st.forward_bypass,
            [BypassStatus {
                family: "ipv4".into(),
                rule: "-i eth0 -j ACCEPT".into()
            }]
        );
        assert!(
            crate::metrics::render(&st)
                .contains("dockfw_forward_bypass_rules{family=\"ipv4\"} 1\n")
        );
        assert!(
            crate::status::render_text(&st)
                .contains("BYPASSED: ipv4 FORWARD rule \"-i eth0 -j ACCEPT\"")
        );
        edit_forward(&|rules| rules.retain(|r| r != "-i eth0 -j ACCEPT"));
        settle(11.0).await;
        assert!(
            h.status.borrow().forward_bypass.is_empty(),
            "the report clears"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_is_one_reconcile() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        settle(1.0).await;
        let (snapshots, passes) = (h.snapshots(), h.passes());
        h.docker
            .inventory
            .lock()
            .unwrap()
            .bridges
            .push(bridge("br-0123456789ab"));
        h.events
            .send("network create br-0123456789ab".into())
            .await
            .unwrap();
        for i in 0..50 {
            h.events
                .send(format!("container start c{i}"))
                .await
                .unwrap();
        }
        settle(1.0).await;
        assert_eq!(h.passes() - passes, 1, "51 events, one pass");
        assert_eq!(h.inspects(), 51, "each object inspected once");
        assert_eq!(h.snapshots(), snapshots, "nothing listed");
        assert_eq!(h.restores(), 4, "the new bridge changed both families once");
        let v4 = h.firewall.tables.lock().unwrap()[0].clone();
        assert!(
            v4.chain_rules("DOCKFW")
                .contains(&"-o br-0123456789ab -j DOCKFW-INBOUND".to_owned())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connect_and_the_start_after_it_are_one_pass() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        settle(1.0).await;
        let before = h.passes();
        // `docker run`: the connect, then the start 10 ms later.
        h.events
            .send("network connect bridge container web".into())
            .await
            .unwrap();
        settle(0.01).await;
        h.events.send("container start web".into()).await.unwrap();
        settle(1.0).await;
        assert_eq!(h.passes() - before, 1, "connect + start, one pass");
        assert_eq!(h.inspects(), 1, "of the one container they name");
        // A connect no start follows (of a running container) still makes
        // its pass, within the hold.
        let before = h.passes();
        h.events
            .send("network connect other container web".into())
            .await
            .unwrap();
        settle(0.2).await;
        assert_eq!(h.passes() - before, 1, "a lone connect is one pass");
        // Any other event is not held: a start alone is one pass at once.
        let before = h.passes();
        h.events.send("container start db".into()).await.unwrap();
        settle(0.001).await;
        assert_eq!(h.passes() - before, 1, "a start is not held");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_apply_is_retried_with_backoff_and_reported() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        h.firewall.failing.store(true, Ordering::SeqCst);
        settle(0.5).await;
        assert_eq!(h.result(), "failed");
        assert!(
            h.status
                .borrow()
                .reconcile
                .error
                .as_deref()
                .unwrap()
                .contains("fake-restore")
        );
        // The start pass asks no engine; the subscription's pass snapshots
        // at once, then retries follow after 1 s and 2 s of backoff (the
        // 0.5 s step went to the start pass).
        settle(3.6).await;
        assert_eq!(
            h.snapshots(),
            3,
            "retried with backoff, not in a tight loop"
        );
        h.firewall.failing.store(false, Ordering::SeqCst);
        settle(5.0).await;
        assert_eq!(h.result(), "applied");
    }

    #[tokio::test(start_paused = true)]
    async fn an_engine_not_answering_at_start_still_gets_boot_protection() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        h.docker.down.store(true, Ordering::SeqCst);
        settle(0.5).await;
        let st = h.status.borrow().clone();
        assert!(!st.docker.connected);
        assert_eq!(st.reconcile.result, "degraded");
        assert!(st.reconcile.inventory.starts_with("boot"), "{st:?}");
        assert_eq!(h.restores(), 2, "both families protected before the engine");
        let v4 = h.firewall.tables.lock().unwrap()[0].clone();
        assert!(
            v4.chain_rules("DOCKFW")
                .contains(&"-o docker0 -j DOCKFW-INBOUND".to_owned())
        );
        assert_eq!(
            v4.chain_rules("DOCKFW-INBOUND").last().map(String::as_str),
            Some("-m comment --comment \"dockfw default\" -j DOCKFW-DROP")
        );
        h.docker.down.store(false, Ordering::SeqCst);
        settle(3.0).await;
        assert_eq!(h.status.borrow().reconcile.inventory, "engine");
        assert!(h.status.borrow().docker.connected);
    }

    #[tokio::test(start_paused = true)]
    async fn rules_changed_by_something_else_are_repaired_and_counted() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        settle(1.0).await;
        assert_eq!(h.status.borrow().drift.repairs, 0);
        simulate::apply(
            &mut h.firewall.tables.lock().unwrap()[0],
            "-F DOCKER-USER\n-F DOCKFW-INBOUND\n",
        )
        .unwrap();
        settle(10.0).await;
        let drift = h.status.borrow().drift.clone();
        assert_eq!(drift.repairs, 1, "{drift:?}");
        let found = drift.last_found.unwrap_or_default();
        assert!(found.starts_with("ipv4: +"), "{found}");
        let v4 = h.firewall.tables.lock().unwrap()[0].clone();
        assert_eq!(v4.hook_jumps(crate::ruleset::HOOKS[0]), (1, true));
    }

    #[tokio::test(start_paused = true)]
    async fn drops_keep_counting_across_a_rewrite_of_the_rules() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        settle(1.0).await;
        let default_drop = || {
            (
                "DOCKFW-INBOUND".to_owned(),
                "-m comment --comment \"dockfw default\" -j DROP".to_owned(),
            )
        };
        let count = |packets| {
            let mut tables = h.firewall.tables.lock().unwrap();
            let packets_of = &mut tables[0].packets;
            assert!(packets_of.contains_key(&default_drop()) || packets_of.is_empty());
            packets_of.insert(default_drop(), packets);
        };
        let dropped = || {
            let drops = h.status.borrow().drops.clone();
            assert!(drops.since.is_some());
            drops
                .entries
                .iter()
                .find(|e| e.entry == "default")
                .map(|e| e.dropped)
        };
        count(5);
        settle(11.0).await;
        assert_eq!(dropped(), Some(5), "read at the periodic pass");
        // A new bridge re-declares the chains: their counters start at 0.
        h.docker
            .inventory
            .lock()
            .unwrap()
            .bridges
            .push(bridge("br-0123456789ab"));
        h.events.send("network create".into()).await.unwrap();
        settle(1.0).await;
        let v4 = h.firewall.tables.lock().unwrap()[0].clone();
        assert!(v4.packets.is_empty(), "the rewrite reset the counters");
        count(2);
        settle(11.0).await;
        assert_eq!(dropped(), Some(7), "5 before the rewrite, 2 after");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_netlink_watch_drift_is_polled_without_asking_docker() {
        let h = start_with(
            PathBuf::from("/nonexistent/policy.toml"),
            Duration::from_millis(1500),
        );
        settle(1.0).await;
        let snapshots = h.snapshots();
        simulate::apply(
            &mut h.firewall.tables.lock().unwrap()[0],
            "-F DOCKER-USER\n",
        )
        .unwrap();
        settle(1.8).await;
        assert_eq!(h.status.borrow().drift.repairs, 1);
        assert_eq!(
            h.snapshots(),
            snapshots,
            "a drift check reads the rules only"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_event_stream_is_resubscribed_after_backoff_and_resyncs() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        settle(1.0).await;
        let before = h.snapshots();
        let Harness {
            docker,
            events,
            shutdown: _shutdown,
            task: _task,
            ..
        } = h;
        // Dropping the only sender ends the fake engine's event stream.
        drop(events);
        let snapshots = || docker.snapshots.load(Ordering::SeqCst);
        settle(0.8).await;
        assert_eq!(snapshots(), before, "no resync before the 1 s backoff");
        settle(0.5).await;
        assert_eq!(
            snapshots(),
            before + 1,
            "re-subscribing triggers one resync"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kernel_without_ipv6_is_not_a_failure() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        h.firewall.no_ipv6.store(true, Ordering::SeqCst);
        settle(1.0).await;
        assert_eq!(
            h.result(),
            "unchanged",
            "the second pass finds IPv4 in place"
        );
        assert_eq!(h.restores(), 1, "IPv4 only");
        assert_eq!(h.status.borrow().rules.ipv6.rules, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn every_published_port_is_guarded_at_input_too() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        h.docker
            .inventory
            .lock()
            .unwrap()
            .containers
            .push(Container {
                id: "c1".into(),
                name: "db".into(),
                labels: std::collections::BTreeMap::new(),
                host_network: false,
                attachments: vec![Attachment {
                    network_id: "docker0-id".into(),
                    network: "bridge".into(),
                    ipv4: Some("172.17.0.2".parse().unwrap()),
                    ipv6: Some("fd00::2".parse().unwrap()),
                }],
                ports: [any4, any6]
                    .map(|host_ip| PublishedPort {
                        host_ip,
                        host_port: 5432,
                        container_port: 5432,
                        proto: Proto::Tcp,
                    })
                    .to_vec(),
            });
        settle(1.0).await;
        let tables = h.firewall.tables.lock().unwrap().clone();
        // Whether the port is DNAT-ed (FORWARD) or ends at docker-proxy
        // (INPUT) is not guessed from the nat table: both are judged.
        for (table, family) in tables.iter().zip(["v4", "v6"]) {
            let guard = format!("dockfw-guard-tcp-{family}");
            let drop = format!(
                "-p tcp -m set --match-set {guard} dst,dst -m comment --comment \"dockfw default\" -j DOCKFW-DROP"
            );
            let dropped = format!("dockfw-dropped-tcp-{family}");
            let counted = format!("-p tcp -m set --match-set {dropped} dst,dst -j DROP");
            assert!(
                table.chain_rules("DOCKFW-DROP").contains(&counted),
                "{family}: the port's drops are counted"
            );
            let (endpoint, halves) = match family {
                "v4" => ("172.17.0.2", ["0.0.0.0/1", "128.0.0.0/1"]),
                _ => ("fd00::2", ["::/1", "8000::/1"]),
            };
            let counting = &table.sets.get(&dropped).expect("drop set").elements;
            for element in halves.iter().chain([&endpoint]) {
                let element = format!("{element},tcp:5432 comment \"5432\"");
                assert!(counting.contains(&element), "{family}: {counting:?}");
            }
            assert!(
                table.chain_rules("DOCKFW-PROXY").contains(&drop),
                "{family}"
            );
            let ports = &table.sets.get(&guard).expect("guard set").elements;
            let halves = match family {
                "v4" => ["0.0.0.0/1,tcp:5432", "128.0.0.0/1,tcp:5432"],
                _ => ["8000::/1,tcp:5432", "::/1,tcp:5432"],
            };
            assert_eq!(ports.iter().collect::<Vec<_>>(), halves, "{family}");
        }
    }

    /// A FIFO at a fresh path: reading it blocks until someone writes.
    fn fifo(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dockfw-fifo-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo keeps no pointer.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        path
    }

    /// Ends the read blocked on `fifo` with `text`, from a thread of its own.
    fn feed(fifo: &Path, text: &'static str) -> std::thread::JoinHandle<()> {
        let fifo = fifo.to_owned();
        std::thread::spawn(move || std::fs::write(&fifo, text).unwrap())
    }

    // Real time: a blocking read keeps tokio's paused clock from advancing.
    #[tokio::test]
    async fn a_reload_whose_read_blocks_leaves_the_loop_repairing_drift() {
        let path = fifo("reload");
        let h = start_with(path.clone(), Duration::from_millis(100));
        settle(0.5).await;
        let (tx, mut rx) = oneshot::channel();
        h.reload.send(tx).await.unwrap();
        settle(0.3).await;
        simulate::apply(
            &mut h.firewall.tables.lock().unwrap()[0],
            "-F DOCKER-USER\n-F DOCKFW-INBOUND\n",
        )
        .unwrap();
        let mut status = h.status.clone();
        let repaired = tokio::time::timeout(
            Duration::from_secs(5),
            status.wait_for(|s| s.drift.repairs >= 1),
        )
        .await
        .is_ok();
        let answered_early = rx.try_recv().is_ok();
        // Unblock the read whatever happened, so that the test ends.
        feed(&path, "[inbound]\ndefault = \"allow\"\n")
            .join()
            .unwrap();
        assert!(
            repaired,
            "drift was not repaired while the policy read blocked"
        );
        assert!(
            !answered_early,
            "the reload answered before its read finished"
        );
        let answer = tokio::time::timeout(Duration::from_secs(5), rx).await;
        assert!(matches!(answer, Ok(Ok(Ok(_)))), "{answer:?}");
        settle(0.2).await;
        assert_eq!(h.status.borrow().policy.default, "allow");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_policy_read_that_blocks_at_start_gives_deny_all_in_bounded_time_then_its_result() {
        let path = fifo("start");
        let state = path.with_file_name("state");
        let started = Instant::now();
        let start = starting_policy_within(&path, &state, Duration::from_millis(200)).await;
        let waited = started.elapsed();
        feed(&path, "[inbound]\ndefault = \"allow\"\n")
            .join()
            .unwrap();
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
        assert_eq!(start.policy, policy::deny_all());
        assert!(start.fallback.unwrap_or_default().contains("deny all"));
        let errors = start.errors.unwrap_or_default();
        assert!(errors.contains("did not finish within 200ms"), "{errors}");
        // The read went on; its result is there for the loop to apply.
        let read = start.unfinished.expect("the unfinished read is handed on");
        let (late, _) = read.0.await.expect("joined").expect("the policy validates");
        assert_eq!(late.default, Default::Allow);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_invalid_policy_at_start_falls_back_to_the_last_good_one_or_deny_all() {
        let dir = std::env::temp_dir().join(format!("dockfw-start-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::lock(&dir.join("state")).unwrap();
        let path = dir.join("policy.toml");
        std::fs::write(&path, "[inbound]\ndefault = \"allow\"\n").unwrap();
        let good = starting_policy(&path, &dir.join("state"));
        assert_eq!(good.fallback, None);
        assert_eq!(good.policy.default, Default::Allow);

        std::fs::write(&path, "[inbound]\ndefault = \"alow\"\n").unwrap();
        let none_kept = starting_policy(&path, &dir.join("state"));
        assert_eq!(none_kept.policy, policy::deny_all());
        assert!(none_kept.fallback.unwrap().contains("deny all"));
        assert!(none_kept.errors.unwrap().contains("policy.toml:2:"));

        state.save_policy(good.text.as_deref().unwrap()).unwrap();
        let kept = starting_policy(&path, &dir.join("state"));
        assert_eq!(kept.policy, good.policy);
        assert!(kept.fallback.unwrap().contains("last good policy"));

        let missing = starting_policy(&dir.join("missing.toml"), &dir.join("state"));
        assert_eq!(missing.policy, good.policy);
        assert!(
            missing.errors.unwrap().contains("No such file"),
            "the cause is part of the message"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_loop_and_leaves_rules_installed() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        settle(1.0).await;
        h.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), h.task)
            .await
            .expect("stops")
            .unwrap();
        let v4 = h.firewall.tables.lock().unwrap()[0].clone();
        assert_eq!(v4.hook_jumps(crate::ruleset::HOOKS[0]), (1, true));
        assert_eq!(v4.hook_jumps(crate::ruleset::HOOKS[1]), (1, true));
    }

    #[tokio::test(start_paused = true)]
    async fn reload_with_a_broken_policy_keeps_the_last_good_one() {
        let dir = std::env::temp_dir().join(format!("dockfw-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        std::fs::write(&path, "[inbound]\ndefault = \"allow\"\n").unwrap();
        let h = start(path.clone());
        settle(1.0).await;

        let (tx, rx) = oneshot::channel();
        h.reload.send(tx).await.unwrap();
        assert!(rx.await.unwrap().is_ok());
        settle(1.0).await;
        assert_eq!(h.status.borrow().policy.default, "allow");
        let v4 = h.firewall.tables.lock().unwrap()[0].clone();
        assert!(
            !v4.chain_rules("DOCKFW-INBOUND")
                .iter()
                .any(|r| r.ends_with("-j DROP")),
            "default allow now"
        );

        std::fs::write(&path, "[inbound]\ndefault = \"maybe\"\n").unwrap();
        let restores = h.restores();
        let (tx, rx) = oneshot::channel();
        h.reload.send(tx).await.unwrap();
        let err = rx.await.unwrap().unwrap_err();
        assert!(err.contains("policy.toml:2:"), "names the location: {err}");
        settle(1.0).await;
        assert_eq!(h.restores(), restores, "a refused policy changes no rule");
        let st = h.status.borrow().clone();
        assert_eq!(st.policy.default, "allow");
        assert_eq!(st.policy.last_error.as_deref(), Some(err.as_str()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn selected(name: &str, ipv4: &str) -> Container {
        Container {
            id: format!("{name}-id"),
            name: name.into(),
            labels: std::collections::BTreeMap::new(),
            host_network: false,
            attachments: vec![Attachment {
                network_id: "docker0-id".into(),
                network: "docker0".into(),
                ipv4: Some(ipv4.parse().unwrap()),
                ipv6: None,
            }],
            ports: vec![PublishedPort {
                host_ip: "0.0.0.0".parse().unwrap(),
                host_port: 5432,
                container_port: 80,
                proto: Proto::Tcp,
            }],
        }
    }

    /// A daemon whose rules are taken as watched, with the policy "allow
    /// 5432 to sel-*" reloaded from a file in its own directory (returned,
    /// for removal) and container sel-0 (172.17.0.9) in place.
    async fn selector_harness(tag: &str, drift_poll: Duration) -> (Harness, PathBuf) {
        let dir = std::env::temp_dir().join(format!("dockfw-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        let policy = "[inbound]\ndefault = \"deny\"\n[[inbound.allow]]\nports = [5432]\ncontainers = [\"sel-*\"]\n";
        std::fs::write(&path, policy).unwrap();
        let h = start_config(Config {
            ruleset_watch: RulesetWatch::Assumed,
            drift_poll,
            bridge_check: BridgeCheck::Fixed(None),
            ..Config::new(path, "unix:///fake.sock".into())
        });
        h.docker
            .inventory
            .lock()
            .unwrap()
            .containers
            .push(selected("sel-0", "172.17.0.9"));
        let (tx, rx) = oneshot::channel();
        h.reload.send(tx).await.unwrap();
        assert!(rx.await.unwrap().is_ok());
        settle(1.0).await;
        (h, dir)
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_endpoint_gone_and_back_keeps_what_its_element_counted() {
        let (h, dir) = selector_harness("endpoint", Duration::from_secs(3600)).await;
        let element = "172.17.0.9,tcp:80 comment \"5432\"";
        let count = |h: &Harness, packets: u64| {
            let mut tables = h.firewall.tables.lock().unwrap();
            let set = tables[0].sets.get_mut("dockfw-dropped-tcp-v4").unwrap();
            assert!(set.elements.contains(element), "{set:?}");
            set.packets.insert(element.to_owned(), packets);
        };
        let reload = async |h: &Harness| {
            let (tx, rx) = oneshot::channel();
            h.reload.send(tx).await.unwrap();
            assert!(rx.await.unwrap().is_ok());
            settle(1.0).await;
        };
        let dropped = |h: &Harness| {
            let status = h.status.borrow();
            let port = status.drops.ports.iter().find(|p| p.port == 5432);
            port.map(|p| p.dropped)
        };
        count(&h, 4);
        reload(&h).await;
        assert_eq!(dropped(&h), Some(4), "read at an observing pass");
        reload(&h).await;
        assert_eq!(dropped(&h), Some(4), "the same count read again");
        let sel_0 = || selected("sel-0", "172.17.0.9");
        h.docker
            .inventory
            .lock()
            .unwrap()
            .containers
            .retain(|c| c.name != "sel-0");
        h.events.send("container die sel-0".into()).await.unwrap();
        settle(1.0).await;
        let gone = !h.firewall.tables.lock().unwrap()[0].sets["dockfw-dropped-tcp-v4"]
            .elements
            .contains(element);
        assert!(gone, "removed on the fast path");
        h.docker.inventory.lock().unwrap().containers.push(sel_0());
        h.events.send("container start sel-0".into()).await.unwrap();
        settle(1.0).await;
        // Back at zero, and counting more than before by the next read.
        count(&h, 6);
        reload(&h).await;
        assert_eq!(dropped(&h), Some(4 + 6));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_coming_or_going_is_one_set_write_with_nothing_read_first() {
        let (h, dir) = selector_harness("fast", Duration::from_secs(3600)).await;
        let (observed, restores) = (h.observations(), h.restores());
        let set = |h: &Harness| {
            let tables = h.firewall.tables.lock().unwrap().clone();
            tables[0]
                .sets
                .get("dockfw-allow-1-v4")
                .map(|s| s.elements.clone())
                .unwrap_or_default()
        };
        assert_eq!(set(&h).into_iter().collect::<Vec<_>>(), ["172.17.0.9"]);

        h.docker
            .inventory
            .lock()
            .unwrap()
            .containers
            .push(selected("sel-1", "172.17.0.10"));
        h.events.send("container start sel-1".into()).await.unwrap();
        settle(1.0).await;
        assert_eq!(set(&h).len(), 2, "the new address is in the set");
        assert_eq!(h.observations(), observed, "nothing was read first");
        assert_eq!(h.restores(), restores + 1, "one write, of the set");
        assert_eq!(h.result(), "applied");

        h.docker
            .inventory
            .lock()
            .unwrap()
            .containers
            .retain(|c| c.name != "sel-0");
        h.events.send("container die sel-0".into()).await.unwrap();
        settle(1.0).await;
        assert_eq!(set(&h).into_iter().collect::<Vec<_>>(), ["172.17.0.10"]);
        assert_eq!(h.observations(), observed);

        // A new published port: the sets at once, its drop set elements
        // with the rest, in the same write, with nothing read first.
        let mut other = selected("sel-2", "172.17.0.11");
        other.ports[0].host_port = 8080;
        h.docker.inventory.lock().unwrap().containers.push(other);
        let restores = h.restores();
        h.events.send("container start sel-2".into()).await.unwrap();
        settle(1.0).await;
        assert_eq!(set(&h).len(), 2);
        assert_eq!(h.observations(), observed, "nothing read");
        assert_eq!(h.restores(), restores + 1, "one write");
        let counting = h.firewall.tables.lock().unwrap()[0].sets["dockfw-dropped-tcp-v4"]
            .elements
            .clone();
        for element in [
            "0.0.0.0/1,tcp:8080 comment \"8080\"",
            "172.17.0.11,tcp:80 comment \"8080\"",
        ] {
            assert!(counting.contains(element), "{element}: {counting:?}");
        }
        assert_eq!(h.status.borrow().drift.repairs, 0);
        let observed = h.observations();

        // A trigger that is not the engine's reads what is installed, and
        // repairs a set changed behind the daemon's back.
        h.firewall.tables.lock().unwrap()[0]
            .sets
            .get_mut("dockfw-allow-1-v4")
            .unwrap()
            .elements
            .insert("203.0.113.7".into());
        let (tx, rx) = oneshot::channel();
        h.reload.send(tx).await.unwrap();
        assert!(rx.await.unwrap().is_ok());
        settle(1.0).await;
        assert!(h.observations() > observed);
        assert_eq!(set(&h).len(), 2, "the address 203.0.113.7 is gone again");
        assert!(!set(&h).contains("203.0.113.7"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The addresses in the selector entry's v4 set.
    fn selector_set(h: &Harness) -> Vec<String> {
        let tables = h.firewall.tables.lock().unwrap().clone();
        tables[0]
            .sets
            .get("dockfw-allow-1-v4")
            .map(|s| s.elements.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_inspects_its_container_and_lists_nothing() {
        let (h, dir) = selector_harness("inspect", Duration::from_secs(3600)).await;
        let (snapshots, inspects) = (h.snapshots(), h.inspects());
        h.docker
            .inventory
            .lock()
            .unwrap()
            .containers
            .push(selected("sel-1", "172.17.0.10"));
        h.events.send("container start sel-1".into()).await.unwrap();
        settle(1.0).await;
        assert_eq!(selector_set(&h), ["172.17.0.10", "172.17.0.9"]);
        assert_eq!(h.inspects() - inspects, 1);
        assert_eq!(h.snapshots(), snapshots, "no listing");
        let status = h.status.borrow().inventory.clone();
        assert_eq!((status.repairs, status.inspects), (0, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn events_about_what_is_already_known_write_nothing() {
        let (h, dir) = selector_harness("known", Duration::from_secs(3600)).await;
        let (restores, observed, passes) = (h.restores(), h.observations(), h.passes());
        // A `destroy` after the `die` that took it out; a start of one in place.
        h.events
            .send("container destroy sel-7".into())
            .await
            .unwrap();
        h.events.send("container start sel-0".into()).await.unwrap();
        settle(1.0).await;
        assert_eq!(h.passes() - passes, 1);
        assert_eq!((h.restores(), h.observations()), (restores, observed));
        assert_eq!(h.result(), "unchanged");
        assert_eq!(selector_set(&h), ["172.17.0.9"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_whose_inspect_fails_is_denied_until_a_listing_places_it() {
        let (h, dir) = selector_harness("inspect-fails", Duration::from_secs(3600)).await;
        let snapshots = h.snapshots();
        // sel-0 is renamed out of the selector, and the engine answers no
        // inspect and no listing: what it is now is unknown.
        h.docker.inventory.lock().unwrap().containers[0].name = "other".into();
        h.docker.failing_inspects.store(true, Ordering::SeqCst);
        h.docker.down.store(true, Ordering::SeqCst);
        h.events
            .send("container rename sel-0".into())
            .await
            .unwrap();
        settle(0.1).await;
        assert_eq!(selector_set(&h), Vec::<String>::new(), "unknown: denied");
        assert!(h.snapshots() > snapshots, "a listing was tried instead");
        assert_eq!(h.result(), "degraded", "and its failure is reported");
        // The engine answers listings again: the retry places it as it is.
        h.docker.down.store(false, Ordering::SeqCst);
        h.docker.inventory.lock().unwrap().containers[0].name = "sel-0".into();
        settle(2.0).await;
        assert_eq!(selector_set(&h), ["172.17.0.9"]);
        assert_eq!(h.status.borrow().inventory.repairs, 0, "not a miss");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_periodic_listing_repairs_what_the_events_missed_and_counts_it() {
        let (h, dir) = selector_harness("repair", Duration::from_secs(3600)).await;
        // A container goes with no event (lost): the periodic check finds it.
        h.docker.inventory.lock().unwrap().containers.clear();
        settle(11.0).await;
        assert_eq!(selector_set(&h), Vec::<String>::new());
        let status = h.status.borrow().inventory.clone();
        assert_eq!(status.repairs, 1);
        assert_eq!(status.last_repair.as_deref(), Some("containers: +0 -1 ~0"));
        settle(11.0).await;
        assert_eq!(
            h.status.borrow().inventory.repairs,
            1,
            "nothing more to repair"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_on_a_network_nobody_listed_is_placed_by_a_listing() {
        let (h, dir) = selector_harness("unlisted", Duration::from_secs(3600)).await;
        let snapshots = h.snapshots();
        let mut on_new = selected("sel-1", "172.20.0.2");
        on_new.attachments[0].network_id = "br-0123456789ab-id".into();
        {
            let mut inventory = h.docker.inventory.lock().unwrap();
            inventory.bridges.push(bridge("br-0123456789ab"));
            inventory.containers.push(on_new);
        }
        // The network's create event was lost: the start names the container only.
        h.events.send("container start sel-1".into()).await.unwrap();
        settle(1.0).await;
        assert_eq!(h.snapshots(), snapshots + 1, "listed instead");
        assert_eq!(selector_set(&h), ["172.17.0.9", "172.20.0.2"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn sets_nothing_announces_are_polled_and_repaired_without_reading_the_rules() {
        let (h, dir) = selector_harness("setspoll", Duration::from_millis(1500)).await;
        let observed = h.observations();
        let reads = h.firewall.set_reads.load(Ordering::SeqCst);
        settle(5.0).await;
        assert!(
            h.firewall.set_reads.load(Ordering::SeqCst) >= reads + 3,
            "polled"
        );
        assert_eq!(h.observations(), observed, "sets as planned: no pass");

        h.firewall.tables.lock().unwrap()[0]
            .sets
            .get_mut("dockfw-allow-1-v4")
            .unwrap()
            .elements
            .clear();
        settle(2.0).await;
        let set = h.firewall.tables.lock().unwrap()[0].sets["dockfw-allow-1-v4"].clone();
        assert_eq!(set.elements.into_iter().collect::<Vec<_>>(), ["172.17.0.9"]);
        assert_eq!(h.status.borrow().drift.repairs, 1, "counted as a repair");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
