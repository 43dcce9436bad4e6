//! What the loop carries between passes: the inventory (from the boot
//! bridges until the engine answers), the kernel's word on which interfaces
//! are Linux bridges, the plan in place, drops, and the status they make.
//! Does no I/O to Docker or the firewall beyond reading what it is asked.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::docker::{DockerSource, Engine};
use crate::drops::DropTotals;
use crate::firewall::Backend;
use crate::inventory::{Bridge, Inventory, Rejected};
use crate::links;
use crate::net::Family;
use crate::plan::rejected_bridges;
use crate::ruleset::Origin;
use crate::state::StateDir;
use crate::status::{BypassStatus, EntryDrops, FamilyStatus, PortDrops, RejectedStatus, Status};

use super::reload::*;
use super::{BridgeCheck, Config, Reconciler, error_chain, now_rfc3339};

/// The inventory before the engine ever answered: the default bridge and
/// the bridges seen last time, no containers.
pub(super) fn boot_inventory(saved: Vec<Bridge>) -> Inventory {
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

/// What the loop knows of the engine, as the basis of its plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EngineState {
    /// It has not answered a listing since the start: plans come from the
    /// policy and the saved bridges.
    NeverAnswered,
    /// Its last listing succeeded: the inventory is its, kept up to date
    /// from its events.
    Answering,
    /// It answered once, but its last listing failed: the last inventory
    /// it gave stays the basis.
    Unreachable,
}

impl EngineState {
    /// Whether the inventory is the engine's, kept up to date from events.
    pub(super) fn answering(self) -> bool {
        self == EngineState::Answering
    }

    /// A listing failed.
    pub(super) fn failed(&mut self) {
        if *self == EngineState::Answering {
            *self = EngineState::Unreachable;
        }
    }

    /// What plans are made from, in words (status `reconcile.inventory`).
    pub(super) fn inventory_label(self) -> &'static str {
        match self {
            EngineState::NeverAnswered => "boot (no engine yet): policy and saved bridges only",
            EngineState::Answering => "engine",
            EngineState::Unreachable => "last known inventory (engine unreachable)",
        }
    }
}

/// The kernel's word on which interfaces are Linux bridges, as the loop
/// keeps it.
pub(super) enum BridgeFacts {
    /// Followed: read before each plan, and a change is a trigger.
    Watched(links::LinkWatch),
    /// The watch could not be set up or failed: the links are read at
    /// every pass, and only then.
    Read,
    /// [`BridgeCheck::Fixed`].
    Fixed(Option<BTreeSet<String>>),
}

impl BridgeFacts {
    pub(super) fn new(check: &BridgeCheck) -> BridgeFacts {
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
    pub(super) async fn changed(&mut self) -> Result<(), links::LinkError> {
        match self {
            BridgeFacts::Watched(watch) => watch.changed().await,
            _ => std::future::pending().await,
        }
    }

    /// Fill `inventory.not_bridges` with the kernel's word now; the bridge
    /// networks that are not taken as bridges, with why.
    pub(super) fn check(&mut self, inventory: &mut Inventory) -> Vec<links::NotABridge> {
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

impl<D: DockerSource, F: Backend> Reconciler<D, F> {
    pub(super) fn new(
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
            engine: EngineState::NeverAnswered,
            status,
            status_tx,
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

    /// Whether some family's rules change unannounced: no netlink watch,
    /// or Docker's chains live in iptables-legacy.
    pub(super) fn needs_drift_poll(&self) -> bool {
        !self.monitored.load(Ordering::SeqCst) || !self.firewall.announces_changes()
    }

    /// Whether the plan in place has sets whose changes nothing announces
    /// (ipsets), so that they are polled even where the rules are watched.
    pub(super) fn polls_sets(&self) -> bool {
        self.in_place
            .as_ref()
            .is_some_and(|r| self.firewall.has_unannounced_sets(r))
    }

    /// Whether the unannounced sets differ from the plan in place.
    pub(super) async fn sets_drifted(&self) -> bool {
        let Some(in_place) = &self.in_place else {
            return true;
        };
        self.firewall
            .sets_drifted(in_place, &self.available_families())
            .await
    }

    pub(super) fn available_families(&self) -> Vec<Family> {
        Family::ALL
            .into_iter()
            .filter(|f| !self.unavailable.contains(f))
            .collect()
    }

    /// Take a fresh inventory as the basis of plans; note what was refused
    /// in it and keep its bridges for the next boot.
    pub(super) fn note_snapshot(&mut self, engine: &Engine, inventory: Inventory) {
        let docker = &mut self.status.docker;
        self.engine = EngineState::Answering;
        docker.connected = true;
        docker.last_error = None;
        docker.version = Some(engine.version.clone());
        docker.api_version = Some(engine.api_version.clone());
        self.inventory = inventory;
        self.note_inventory();
    }

    /// What follows the inventory in hand: the host-network containers in
    /// status, and the bridges kept for the next boot.
    pub(super) fn note_inventory(&mut self) {
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
    pub(super) fn note_rejected(&mut self, not_bridges: Vec<links::NotABridge>) {
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
    pub(super) fn note_bypasses(&mut self, bypasses: Vec<(Family, String)>) {
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
    pub(super) fn note_drops(&mut self) {
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

    pub(super) fn family_status(&mut self, family: Family) -> &mut FamilyStatus {
        match family {
            Family::V4 => &mut self.status.rules.ipv4,
            Family::V6 => &mut self.status.rules.ipv6,
        }
    }

    pub(super) fn publish(&self) {
        self.status_tx.send_replace(self.status.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::EngineState;

    #[test]
    fn the_inventory_label_follows_the_engine_state_not_status() {
        let mut engine = EngineState::NeverAnswered;
        engine.failed();
        assert_eq!(engine, EngineState::NeverAnswered);
        assert!(engine.inventory_label().starts_with("boot"));
        engine = EngineState::Answering;
        assert!(engine.answering());
        assert_eq!(engine.inventory_label(), "engine");
        engine.failed();
        assert_eq!(engine, EngineState::Unreachable);
        assert!(!engine.answering());
        assert!(engine.inventory_label().starts_with("last known inventory"));
    }
}
