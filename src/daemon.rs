//! The reconcile loop: turns triggers (Docker events, reloads, the resync
//! timer, retries) into fresh snapshots, plans and at most one restore per
//! family, and publishes the resulting [`Status`].
//!
//! Events are triggers, not data: every reconcile re-reads the whole
//! inventory. A failure never ends the loop: the rules already installed stay
//! in force, status says what failed, and the reconcile is retried with
//! backoff. Shutdown is passed in, so tests can start and stop a daemon.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::control::ReloadRequest;
use crate::docker::{DockerSource, Engine};
use crate::firewall::{Firewall, FirewallError};
use crate::installed::Installed;
use crate::inventory::Inventory;
use crate::plan::{exposures, plan};
use crate::policy::{self, Policy};
use crate::render::{self, Changes};
use crate::ruleset::{Family, FamilyRules};
use crate::status::{FamilyStatus, Status};

/// Settings of one daemon run.
#[derive(Debug, Clone)]
pub struct Config {
    pub policy_path: PathBuf,
    /// The Docker endpoint, shown in status.
    pub endpoint: String,
    /// How long to wait after a trigger for more of the same burst.
    pub debounce: Duration,
    /// How often to re-check the installed rules with no trigger at all, so
    /// that a firewalld reload or a hand edit is repaired.
    pub resync: Duration,
}

impl Config {
    pub fn new(policy_path: PathBuf, endpoint: String) -> Config {
        Config {
            policy_path,
            endpoint,
            debounce: Duration::from_millis(100),
            resync: Duration::from_secs(10),
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
pub async fn run<D: DockerSource, F: Firewall>(
    config: Config,
    policy: Policy,
    docker: Arc<D>,
    firewall: F,
    channels: Channels,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let (trigger_tx, trigger_rx) = mpsc::channel(64);
    tracker.spawn(watch_events(docker.clone(), trigger_tx, shutdown.clone()));
    tracker.close();
    let mut reconciler = Reconciler::new(config, policy, docker, firewall, channels.status);
    reconciler
        .run(trigger_rx, channels.reload, shutdown.clone())
        .await;
    shutdown.cancel();
    tracker.wait().await;
    info!("stopped; installed rules stay in force");
}

/// Follow Docker's event stream, turning each event into a trigger, and
/// re-subscribe with backoff when it ends. Every (re)subscription is itself
/// a trigger, so a restarted engine gets a full resync.
async fn watch_events<D: DockerSource>(
    docker: Arc<D>,
    triggers: mpsc::Sender<String>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let mut stream = docker.events();
        let subscribed = Instant::now();
        let _ = triggers.try_send("subscribed to docker events".to_owned());
        loop {
            let item = tokio::select! {
                () = shutdown.cancelled() => return,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(event)) => {
                    debug!(%event, "docker event");
                    let _ = triggers.try_send(event);
                }
                Some(Err(e)) => {
                    warn!(error = %e, "docker event stream failed");
                    break;
                }
                None => {
                    warn!("docker event stream ended");
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

/// Read what is installed in each family, noting in `inventory` which
/// ports Docker DNATs there (the rest are docker-proxy's). Shared by the
/// reconcile loop and `dockfw plan`, so both plan from the same facts.
pub async fn read_installed<F: Firewall>(
    firewall: &F,
    inventory: &mut Inventory,
) -> Vec<(Family, Result<Installed, FirewallError>)> {
    let mut reads = Vec::new();
    for family in Family::ALL {
        let read = firewall.read(family).await;
        if let Ok(st) = &read {
            inventory.set_dnat(family, st.dnat.clone());
        }
        reads.push((family, read));
    }
    reads
}

/// The state the loop carries between reconciles.
struct Reconciler<D, F> {
    config: Config,
    /// The last policy that validated; a refused reload never replaces it.
    policy: Policy,
    docker: Arc<D>,
    firewall: F,
    status: Status,
    /// Publishes `status` to the control socket after every change.
    status_tx: watch::Sender<Status>,
    retry: Backoff,
}

impl<D: DockerSource, F: Firewall> Reconciler<D, F> {
    fn new(
        config: Config,
        policy: Policy,
        docker: Arc<D>,
        firewall: F,
        status_tx: watch::Sender<Status>,
    ) -> Self {
        let mut status = Status::default();
        status.policy.path = config.policy_path.display().to_string();
        status.docker.endpoint = config.endpoint.clone();
        status.reconcile.result = "pending".to_owned();
        let mut this = Reconciler {
            config,
            policy,
            docker,
            firewall,
            status,
            status_tx,
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        };
        this.note_policy_loaded();
        this.publish();
        this
    }

    async fn run(
        &mut self,
        mut triggers: mpsc::Receiver<String>,
        mut reloads: mpsc::Receiver<ReloadRequest>,
        shutdown: CancellationToken,
    ) {
        let mut pending: Option<String> = Some("start".to_owned());
        let mut next_check = Instant::now() + self.config.resync;
        loop {
            if let Some(reason) = pending.take() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(self.config.debounce) => {}
                }
                let mut burst = 1;
                while triggers.try_recv().is_ok() {
                    burst += 1;
                }
                debug!(%reason, burst, "reconcile triggered");
                // A reconcile in flight is dropped on shutdown: its restore
                // is one atomic transaction, so it lands whole or not at all.
                let outcome = tokio::select! {
                    () = shutdown.cancelled() => return,
                    outcome = self.reconcile() => outcome,
                };
                next_check = match outcome {
                    Ok(()) => {
                        self.retry.reset();
                        Instant::now() + self.config.resync
                    }
                    Err(()) => Instant::now() + self.retry.next_delay(),
                };
            }
            pending = tokio::select! {
                () = shutdown.cancelled() => return,
                Some(reason) = triggers.recv() => Some(reason),
                Some(reply) = reloads.recv() => self.reload(reply),
                () = tokio::time::sleep_until(next_check) => Some("periodic check".to_owned()),
            };
        }
    }

    /// Re-read the policy; keep the old one if the new one is invalid.
    /// Returns a trigger when the policy in force changed.
    fn reload(&mut self, reply: ReloadRequest) -> Option<String> {
        let path = self.config.policy_path.clone();
        let answer = match policy::parse(&path) {
            Ok(policy) => {
                self.policy = policy;
                self.note_policy_loaded();
                info!(path = %path.display(), "policy reloaded");
                Ok(format!("reloaded {}", path.display()))
            }
            Err(e) => {
                let message = format!("{e:#}");
                warn!(error = %message, "policy reload refused; the previous policy stays in force");
                self.status.policy.last_error = Some(message.clone());
                Err(message)
            }
        };
        let changed = answer.is_ok();
        let _ = reply.send(answer);
        self.publish();
        changed.then(|| "policy reload".to_owned())
    }

    fn note_policy_loaded(&mut self) {
        let p = &mut self.status.policy;
        p.loaded_at = Some(now_rfc3339());
        p.default = format!("{:?}", self.policy.default).to_lowercase();
        p.allow_entries = self.policy.allow.len();
        p.deny_entries = self.policy.deny.len();
        p.last_error = None;
    }

    /// One full pass: snapshot, plan, and per family read + at most one
    /// restore. `Err` means something failed and a retry is due.
    async fn reconcile(&mut self) -> Result<(), ()> {
        let started = Instant::now();
        self.status.reconcile.last_at = Some(now_rfc3339());
        let snapshot = match self.docker.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                self.status.docker.connected = false;
                self.status.docker.last_error = Some(e.to_string());
                return self.finish(started, Vec::new(), vec![format!("docker: {e}")]);
            }
        };
        let mut inventory = snapshot.inventory;
        let mut installed = Vec::new();
        let mut errors = Vec::new();
        for (family, read) in read_installed(&self.firewall, &mut inventory).await {
            match read {
                Ok(st) => installed.push((family, st)),
                Err(FirewallError::Unavailable { .. }) => {
                    *self.family_status(family) = FamilyStatus::default();
                }
                Err(e) => errors.push(format!("{}: {e}", family.as_str())),
            }
        }
        self.note_snapshot(&snapshot.engine, &inventory);
        let ruleset = plan(&self.policy, &inventory);
        let mut changed = Vec::new();
        for (family, st) in installed {
            match self.apply(family, ruleset.family(family), &st).await {
                Ok(Some(changes)) => changed.push((family, changes)),
                Ok(None) => {}
                Err(e) => errors.push(format!("{}: {e}", family.as_str())),
            }
            *self.family_status(family) = FamilyStatus {
                rules: ruleset.family(family).rule_count(),
                variant: self.firewall.variant(family).map(str::to_owned),
            };
        }
        self.finish(started, changed, errors)
    }

    fn note_snapshot(&mut self, engine: &Engine, inventory: &Inventory) {
        let docker = &mut self.status.docker;
        docker.connected = true;
        docker.last_error = None;
        docker.version = Some(engine.version.clone());
        docker.api_version = Some(engine.api_version.clone());
        self.status.ports = exposures(&self.policy, inventory);
        self.status.host_network = inventory
            .containers
            .iter()
            .filter(|c| c.host_network)
            .map(|c| c.name.clone())
            .collect();
    }

    async fn apply(
        &mut self,
        family: Family,
        desired: &FamilyRules,
        installed: &Installed,
    ) -> Result<Option<Changes>, FirewallError> {
        let Some(tx) = render::transaction(desired, installed) else {
            return Ok(None);
        };
        self.firewall.restore(family, &tx.text).await?;
        self.status.reconcile.applies += 1;
        if tx.changes.restored_forward_jump {
            warn!(
                family = family.as_str(),
                "FORWARD no longer jumped to DOCKER-USER; restored the jump"
            );
        }
        if tx.changes.moved_forward_jump {
            warn!(
                family = family.as_str(),
                "rules were inserted above FORWARD -> DOCKER-USER; moved the jump back on top"
            );
        }
        if tx.changes.created_docker_user {
            warn!(
                family = family.as_str(),
                "engine made no DOCKER-USER chain; created it and its FORWARD jump"
            );
        }
        Ok(Some(tx.changes))
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
        changed: Vec<(Family, Changes)>,
        errors: Vec<String>,
    ) -> Result<(), ()> {
        let elapsed = started.elapsed();
        let r = &mut self.status.reconcile;
        r.duration_ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        r.result = match (errors.is_empty(), changed.is_empty()) {
            (false, _) => "failed",
            (true, true) => "unchanged",
            (true, false) => "applied",
        }
        .to_owned();
        r.error = (!errors.is_empty()).then(|| errors.join("; "));
        if !changed.is_empty() {
            let what: Vec<String> = changed
                .iter()
                .map(|(f, c)| format!("{}: {c}", f.as_str()))
                .collect();
            info!(changes = %what.join("; "), duration_ms = elapsed.as_millis() as u64, "rules updated");
        }
        if let Some(error) = &r.error {
            warn!(%error, "reconcile failed; installed rules stay in force, retrying");
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use futures_util::stream::{self, BoxStream};
    use tokio::sync::oneshot;

    use super::*;
    use crate::docker::{DockerError, Snapshot};
    use crate::installed::{Installed, simulate};
    use std::net::IpAddr;

    use crate::inventory::{Attachment, Bridge, Container, Inventory, Proto, PublishedPort};
    use crate::policy::Default;

    struct FakeDocker {
        inventory: Mutex<Inventory>,
        down: AtomicBool,
        snapshots: AtomicUsize,
        /// Events the test injects; the first `events()` call takes it.
        events: Mutex<Option<mpsc::Receiver<String>>>,
    }

    impl DockerSource for FakeDocker {
        async fn snapshot(&self) -> Result<Snapshot, DockerError> {
            self.snapshots.fetch_add(1, Ordering::SeqCst);
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

        fn events(&self) -> BoxStream<'static, Result<String, DockerError>> {
            match self.events.lock().unwrap().take() {
                Some(rx) => {
                    stream::unfold(
                        rx,
                        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
                    )
                    .boxed()
                }
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
    }

    fn slot(family: Family) -> usize {
        match family {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }

    impl Firewall for Arc<FakeFirewall> {
        async fn read(&self, family: Family) -> Result<Installed, FirewallError> {
            if family == Family::V6 && self.no_ipv6.load(Ordering::SeqCst) {
                return Err(FirewallError::Unavailable { family: "ipv6" });
            }
            Ok(self.tables.lock().unwrap()[slot(family)].clone())
        }

        async fn restore(&self, family: Family, text: &str) -> Result<(), FirewallError> {
            self.restores.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(FirewallError::Timeout {
                    program: "fake-restore".into(),
                });
            }
            let mut tables = self.tables.lock().unwrap();
            simulate::apply(&mut tables[slot(family)], text)
                .map_err(|e| FirewallError::Timeout { program: e })
        }

        fn variant(&self, _: Family) -> Option<&'static str> {
            Some("fake")
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
        let (events, events_rx) = mpsc::channel(256);
        let docker = Arc::new(FakeDocker {
            inventory: Mutex::new(Inventory {
                bridges: vec![bridge("docker0")],
                ..Inventory::default()
            }),
            down: AtomicBool::new(false),
            snapshots: AtomicUsize::new(0),
            events: Mutex::new(Some(events_rx)),
        });
        // Docker publishes tcp/5432 by DNAT in IPv4 only (20.10 without ip6tables).
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
        });
        let (reload, reload_rx) = mpsc::channel(4);
        let (status_tx, status) = watch::channel(Status::default());
        let shutdown = CancellationToken::new();
        let policy = Policy {
            default: Default::Deny,
            allow: Vec::new(),
            deny: Vec::new(),
        };
        let task = tokio::spawn(run(
            Config::new(policy_path, "unix:///fake.sock".into()),
            policy,
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
        fn restores(&self) -> usize {
            self.firewall.restores.load(Ordering::SeqCst)
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
        assert_eq!(h.result(), "applied");
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
    async fn a_burst_of_events_is_one_reconcile() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        settle(1.0).await;
        let before = h.snapshots();
        h.docker
            .inventory
            .lock()
            .unwrap()
            .bridges
            .push(bridge("br-0123456789ab"));
        for i in 0..50 {
            h.events
                .send(format!("container start c{i}"))
                .await
                .unwrap();
        }
        settle(1.0).await;
        assert_eq!(h.snapshots() - before, 1, "50 events, one snapshot");
        assert_eq!(h.restores(), 4, "the new bridge changed both families once");
        let v4 = h.firewall.tables.lock().unwrap()[0].clone();
        assert!(
            v4.chain_rules("DOCKFW")
                .contains(&"-o br-0123456789ab -j DOCKFW-INBOUND".to_owned())
        );
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
        // attempts at ~0.1s, then after 1s, 2s, 4s of backoff
        settle(4.0).await;
        assert_eq!(
            h.snapshots(),
            3,
            "retried at 1s and 2s backoff, not in a tight loop"
        );
        h.firewall.failing.store(false, Ordering::SeqCst);
        settle(5.0).await;
        assert_eq!(h.result(), "applied");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_engine_marks_docker_disconnected_and_touches_nothing() {
        let h = start(PathBuf::from("/nonexistent/policy.toml"));
        h.docker.down.store(true, Ordering::SeqCst);
        settle(0.5).await;
        let st = h.status.borrow().clone();
        assert!(!st.docker.connected);
        assert_eq!(st.reconcile.result, "failed");
        assert_eq!(h.restores(), 0);
        h.docker.down.store(false, Ordering::SeqCst);
        settle(3.0).await;
        assert_eq!(h.result(), "applied");
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
        assert_eq!(h.result(), "applied");
        assert_eq!(h.restores(), 1, "IPv4 only");
        assert_eq!(h.status.borrow().rules.ipv6.rules, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ports_docker_does_not_dnat_are_guarded_at_input() {
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
        let drop = "-p tcp -m tcp --dport 5432 -j DROP".to_owned();
        assert!(
            !tables[0].chain_rules("DOCKFW-PROXY").contains(&drop),
            "IPv4 is DNAT-ed: FORWARD judges it"
        );
        assert!(
            tables[1].chain_rules("DOCKFW-PROXY").contains(&drop),
            "IPv6 ends at docker-proxy"
        );
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
                .contains(&"-j DROP".to_owned()),
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
}
