//! The loop with a fake Docker source and a fake backend.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::reload::{PolicyRead, PolicyReads};
use super::report::{Outcome, PassError, PassReport};
use super::triggers::Backoff;
use super::{
    BridgeCheck, Channels, Config, RulesetWatch, StartPolicy, run, starting_policy,
    starting_policy_within,
};
use crate::control::ReloadRequest;
use crate::docker::DockerSource;
use crate::docker::{DockerError, Snapshot};
use crate::docker::{Engine, Event, Inspected, Subject};
use crate::firewall::Backend;
use crate::firewall::iptables::installed::{Installed, simulate};
use crate::firewall::iptables::{self, Tables};
use crate::firewall::{FirewallError, Observation};
use crate::net::Family;
use crate::policy;
use crate::policy::Policy;
use crate::ruleset::{ElementChange, Ruleset};
use crate::state::StateDir;
use crate::status::BypassStatus;
use crate::status::Status;
use std::net::IpAddr;
use std::path::Path;

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

    fn element_changes(
        &self,
        changes: &[ElementChange],
        desired: &Ruleset,
        in_place: &Ruleset,
        families: &[Family],
    ) -> Option<Vec<iptables::Transaction>> {
        Some(iptables::element_changes(
            changes, desired, in_place, families,
        ))
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
                after: Duration::from_secs(20),
            });
        }
        let mut tables = self.tables.lock().unwrap();
        for (family, tx) in simulate::per_family(tx) {
            simulate::apply_transaction(&mut tables[slot(family)], &tx).map_err(|e| {
                FirewallError::Timeout {
                    program: e,
                    after: Duration::from_secs(20),
                }
            })?;
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
        outbound: None,
        east_west: None,
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
        crate::metrics::render(&st).contains("dockfw_forward_bypass_rules{family=\"ipv4\"} 1\n")
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
    assert_eq!(set(&h).iter().collect::<Vec<_>>(), ["172.17.0.9"]);

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
    assert_eq!(set(&h).iter().collect::<Vec<_>>(), ["172.17.0.10"]);
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
        .elements_mut()
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
    // The periodic listing checks the plan kept from the event against
    // the whole plan: the same.
    let listings = status.listings;
    settle(11.0).await;
    let status = h.status.borrow().inventory.clone();
    assert!(status.listings > listings, "the periodic check ran");
    assert_eq!((status.repairs, status.incremental_repairs), (0, 0));
    assert_eq!(selector_set(&h), ["172.17.0.10", "172.17.0.9"]);
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
        .elements_mut()
        .clear();
    settle(2.0).await;
    let set = h.firewall.tables.lock().unwrap()[0].sets["dockfw-allow-1-v4"].clone();
    assert_eq!(set.elements.iter().collect::<Vec<_>>(), ["172.17.0.9"]);
    assert_eq!(h.status.borrow().drift.repairs, 1, "counted as a repair");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_policy_reader_that_failed_is_reported_with_the_policy_path() {
    let broken = tokio::task::spawn_blocking(|| -> PolicyRead { panic!("the reader broke") });
    let mut reads = PolicyReads {
        in_flight: Some(broken),
        ..PolicyReads::default()
    };
    let path = Path::new("/etc/dockfw/policy.toml");
    match reads.done(path).await {
        Err(policy::PolicyError::Read { path: read, .. }) => assert_eq!(read, path),
        other => panic!("expected a read error, got {other:?}"),
    }
}

fn apply_failed(scope: &'static str) -> PassError {
    PassError::Apply {
        scope,
        source: FirewallError::Timeout {
            program: "iptables-restore".to_owned(),
            after: Duration::from_secs(20),
        },
    }
}

#[test]
fn a_pass_outcome_follows_from_what_it_wrote_and_what_failed() {
    assert_eq!(Outcome::of(0, &[]), Outcome::Unchanged);
    assert_eq!(Outcome::of(2, &[]), Outcome::Applied);
    let engine_down = PassError::Docker(DockerError::NotListed);
    assert_eq!(Outcome::of(1, &[engine_down]), Outcome::Degraded);
    let fast_path = PassError::Elements {
        scope: "ipv4",
        source: FirewallError::Poisoned,
    };
    assert_eq!(Outcome::of(1, &[fast_path]), Outcome::Degraded);
    let engine_down = PassError::Docker(DockerError::NotListed);
    assert_eq!(
        Outcome::of(1, &[engine_down, apply_failed("ipv6")]),
        Outcome::Failed
    );
    let words: Vec<&str> = [
        Outcome::Unchanged,
        Outcome::Applied,
        Outcome::Degraded,
        Outcome::Failed,
    ]
    .into_iter()
    .map(Outcome::word)
    .collect();
    assert_eq!(words, ["unchanged", "applied", "degraded", "failed"]);
}

#[test]
fn a_pass_error_text_is_each_error_with_its_causes_joined() {
    let report = PassReport {
        changed: Vec::new(),
        errors: vec![
            PassError::Docker(DockerError::NotListed),
            apply_failed("ipv4"),
        ],
        outcome: Outcome::Failed,
        observed: true,
    };
    assert_eq!(
        report.error_text().as_deref(),
        Some(
            "docker: no engine version known yet: list before inspecting; \
             ipv4: iptables-restore timed out after 20s"
        )
    );
    let clean = PassReport {
        errors: Vec::new(),
        outcome: Outcome::Unchanged,
        ..report
    };
    assert_eq!(clean.error_text(), None);
}
