//! What the loop knows and remembers between passes, as plain data
//! ([`LoopState`]): the policy in force, the inventory (from the boot
//! bridges until the engine answers) and what the engine is, the plan in
//! place, drops, drift and inventory repairs, and what was last reported
//! (so that the log says each thing once). The status document is built
//! from it in one function, [`LoopState::status`], and never read back.
//! Holds no channel, handle or lock, and does no I/O; its only side effect
//! is the log.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

use crate::bridge_netfilter::NotEnforced;
use crate::choice::Chosen;
use crate::docker::Engine;
use crate::drops::DropTotals;
use crate::inventory::{Bridge, Inventory, Rejected};
use crate::links::{LinkKind, NotABridge};
use crate::net::Family;
use crate::plan::{
    IncrementalPlan, differences, east_west_verdicts, outbound_verdicts, plan, rejected_bridges,
    with_drop_logging,
};
use crate::policy::Policy;
use crate::ruleset::{Origin, Ruleset};
use crate::status::{
    BypassStatus, DockerStatus, DriftStatus, DropsStatus, EntryDrops, FamilyStatus,
    InventoryStatus, NotEnforcedStatus, Omitted, PassCounters, PolicyStatus, PortDrops, PortStatus,
    ReconcileStatus, RejectedStatus, RulesStatus, Status,
};

use super::config::Config;
use super::report::{Change, Outcome};

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

/// A count of repairs, and the last one: when, and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Repairs<T> {
    pub(super) count: u64,
    pub(super) last: Option<(SystemTime, T)>,
}

impl<T> Default for Repairs<T> {
    fn default() -> Self {
        Repairs {
            count: 0,
            last: None,
        }
    }
}

impl<T> Repairs<T> {
    pub(super) fn record(&mut self, at: SystemTime, found: T) {
        self.count += 1;
        self.last = Some((at, found));
    }
}

/// How the last pass went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LastPass {
    pub(super) started: SystemTime,
    pub(super) took: Duration,
    pub(super) outcome: Outcome,
    /// Its errors with their causes, `; `-joined.
    pub(super) error: Option<String>,
    /// What its plan was made from.
    pub(super) basis: EngineState,
}

/// One family's plan, as the backend counts it, at the last observing pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PlannedFamily {
    /// Rules in dockfw's chains.
    pub(super) rules: usize,
    /// `nft` or `legacy`: the iptables variant that holds Docker's chains.
    pub(super) variant: Option<&'static str>,
}

/// What the loop carries between passes. Plain data: the loop's edges
/// (the engine, the firewall, the channels) live beside it, in the
/// `Reconciler`. Passes change it; [`LoopState::status`] shows it.
#[derive(Debug, Clone)]
pub(super) struct LoopState {
    /// The policy file's path, as status shows it.
    pub(super) policy_path: String,
    /// The Docker endpoint, as status shows it.
    pub(super) endpoint: String,
    /// The backend driven and why.
    pub(super) backend: Option<Chosen>,
    /// When the daemon started: drops are counted from then.
    pub(super) started: SystemTime,

    /// The last policy that validated; a refused reload never replaces it.
    pub(super) policy: Policy,
    pub(super) policy_loaded_at: SystemTime,
    /// Why the policy file was last refused (at start, or at a reload),
    /// until a policy validates.
    pub(super) policy_refused: Option<String>,
    /// What is enforced instead of a file refused at start (the last good
    /// policy, or deny all), until a policy validates.
    pub(super) policy_fallback: Option<String>,

    /// Whether the inventory is the engine's, kept from events.
    pub(super) engine: EngineState,
    /// The engine as its last listing that succeeded gave it.
    pub(super) engine_seen: Option<Engine>,
    /// Why the last listing failed, until one succeeds.
    pub(super) engine_error: Option<String>,
    /// What plans are made from: the engine's last answer, or the boot
    /// inventory before it ever answered.
    pub(super) inventory: Inventory,
    /// The bridges last kept for the next boot, to write only on change.
    pub(super) saved_bridges: Vec<Bridge>,
    /// Containers and networks inspected for the events that named them.
    pub(super) inspects: u64,
    /// Full listings of the engine.
    pub(super) listings: u64,
    /// Listings that found what the events had missed.
    pub(super) inventory_repairs: Repairs<String>,
    /// What could not be used as reported, at the last plan: logged once
    /// each.
    pub(super) rejected: Vec<Rejected>,

    /// The plan of the policy and inventory in hand, kept up to date one
    /// container at a time on the fast path; `None` until the first plan,
    /// and after the periodic check found it off (the whole plan wins).
    pub(super) incremental: Option<IncrementalPlan>,
    /// Periodic checks that found the incremental plan different from the
    /// whole plan of the same inventory (and used the whole plan).
    pub(super) incremental_repairs: Repairs<String>,

    /// The plan last found in place: re-applying the same plan means
    /// something else changed dockfw's rules (drift).
    pub(super) in_place: Option<Ruleset>,
    /// The families the kernel lacked at the last observation.
    pub(super) unavailable: Vec<Family>,
    /// Per family the kernel has, the last observing pass's plan; a family
    /// it lacked has none.
    pub(super) planned: BTreeMap<Family, PlannedFamily>,
    /// The published ports and their verdicts under the last plan.
    pub(super) exposed: Vec<PortStatus>,
    /// Rules of other tools that let connections past dockfw unjudged, at
    /// the last observation that read every family: logged once per change.
    pub(super) bypasses: Vec<(Family, String)>,
    /// Bridges whose same-bridge traffic `[east_west]` cannot judge, from
    /// the last pass (see [`crate::bridge_netfilter`]).
    pub(super) same_bridge_gaps: Vec<NotEnforced>,
    /// Transactions applied since the start.
    pub(super) applies: u64,
    /// Re-applies of the plan in place: something else had changed it.
    pub(super) drift: Repairs<Change>,
    /// Drops per entry since the start, across rewrites of the rules.
    pub(super) drops: DropTotals,
    /// Pass counts and durations.
    pub(super) passes: PassCounters,
    /// None before the first pass.
    pub(super) last_pass: Option<LastPass>,
}

impl LoopState {
    /// The state at `now`, before the first pass: `policy` in force (see
    /// [`LoopState::policy_loaded`]), plans from the boot inventory.
    pub(super) fn new(
        config: &Config,
        policy: Policy,
        saved_bridges: Vec<Bridge>,
        now: SystemTime,
    ) -> LoopState {
        LoopState {
            policy_path: config.policy_path.display().to_string(),
            endpoint: config.endpoint.clone(),
            backend: config.backend.clone(),
            started: now,
            policy,
            policy_loaded_at: now,
            policy_refused: None,
            policy_fallback: None,
            engine: EngineState::NeverAnswered,
            engine_seen: None,
            engine_error: None,
            inventory: boot_inventory(saved_bridges.clone()),
            saved_bridges,
            inspects: 0,
            listings: 0,
            inventory_repairs: Repairs::default(),
            rejected: Vec::new(),
            incremental: None,
            incremental_repairs: Repairs::default(),
            in_place: None,
            unavailable: Vec::new(),
            planned: BTreeMap::new(),
            exposed: Vec::new(),
            bypasses: Vec::new(),
            same_bridge_gaps: Vec::new(),
            applies: 0,
            drift: Repairs::default(),
            drops: DropTotals::default(),
            passes: PassCounters::default(),
            last_pass: None,
        }
    }

    /// `policy` validated at `at` and is in force now.
    pub(super) fn policy_loaded(&mut self, policy: Policy, at: SystemTime) {
        self.policy = policy;
        self.policy_loaded_at = at;
        self.policy_refused = None;
        self.policy_fallback = None;
    }

    pub(super) fn available_families(&self) -> Vec<Family> {
        Family::ALL
            .into_iter()
            .filter(|f| !self.unavailable.contains(f))
            .collect()
    }

    /// The periodic check of the incremental plan at `now`: it must be the
    /// whole plan of the inventory in hand. When it is not, the whole plan
    /// wins (the incremental plan is dropped, so the pass plans whole), and
    /// it is counted and logged (warned the first time). True when it was
    /// off.
    pub(super) fn check_incremental(&mut self, now: SystemTime) -> bool {
        let Some(incremental) = &self.incremental else {
            return false;
        };
        if !incremental.made_from(&self.policy, &self.inventory) {
            return false;
        }
        let mut whole = plan(&self.policy, &self.inventory);
        if incremental.drop_logging() {
            whole = with_drop_logging(whole);
        }
        if *incremental.ruleset() == whole {
            return false;
        }
        let found = differences(incremental.ruleset(), &whole);
        if self.incremental_repairs.count == 0 {
            warn!(%found, "the incremental plan differed from the whole plan; the whole plan is used");
        } else {
            debug!(%found, "the incremental plan differed from the whole plan again");
        }
        self.incremental_repairs.record(now, found);
        self.incremental = None;
        true
    }

    /// A listing that succeeded: its inventory is the basis of plans now.
    pub(super) fn listed(&mut self, engine: Engine, inventory: Inventory) {
        self.engine = EngineState::Answering;
        self.engine_seen = Some(engine);
        self.engine_error = None;
        self.inventory = inventory;
    }

    /// A listing that failed, with why: the inventory in hand stays.
    pub(super) fn listing_failed(&mut self, why: String) {
        self.engine.failed();
        self.engine_error = Some(why);
    }

    /// What could not be used as reported, logged once each: the
    /// inventory's refusals, bridges whose names are refused, and
    /// `not_bridges`, the bridge networks whose interface the kernel does
    /// not have as a Linux bridge now.
    pub(super) fn note_rejected(&mut self, not_bridges: Vec<NotABridge>) {
        let reported: Vec<Rejected> = (self.inventory.rejected.iter().cloned())
            .chain(rejected_bridges(&self.inventory))
            .collect();
        let new = |r: &&Rejected| {
            !(self.rejected.iter()).any(|s| s.name == r.name && s.reason == r.reason)
        };
        for r in reported.iter().filter(new) {
            warn!(kind = %r.kind, name = ?r.name, reason = ?r.reason, "refused part of what docker reported; judged fail-closed");
        }
        for n in not_bridges.iter().filter(|n| new(&&n.rejected)) {
            let r = &n.rejected;
            let message = "a bridge network's interface is not a Linux bridge now; not exempted, judged fail-closed";
            // A bridge the engine has not made yet (docker0 at every boot)
            // is the ordinary course of things; anything else is not.
            if n.kind == Some(LinkKind::Missing) {
                info!(name = ?r.name, reason = ?r.reason, "{message}");
            } else {
                warn!(name = ?r.name, reason = ?r.reason, "{message}");
            }
        }
        self.rejected = (reported.into_iter())
            .chain(not_bridges.into_iter().map(|n| n.rejected))
            .collect();
    }

    /// Rules of other tools that let connections past dockfw unjudged,
    /// logged once per change.
    pub(super) fn note_bypasses(&mut self, found: Vec<(Family, String)>) {
        if found == self.bypasses {
            return;
        }
        for (family, rule) in &found {
            warn!(family = %family.as_str(), rule = ?rule, "a FORWARD rule above the jump to DOCKER-USER may accept connections dockfw never judges; dockfw cannot repair this without taking over FORWARD");
        }
        if found.is_empty() {
            info!("no FORWARD rule above the jump to DOCKER-USER any more");
        }
        self.bypasses = found;
    }

    /// The status document: the one function that writes a [`Status`]
    /// field, from this state alone. Every field is named here, with no
    /// `..Default::default()`, so a field added to `Status` fails to
    /// compile until it is filled here (and what it shows, if the loop did
    /// not know it yet, is a field of `LoopState`). Only the endpoints
    /// (`endpoints`, filled by [`crate::endpoints`]) and the size bound
    /// (`omitted`, [`Status::bounded`]) are added where the document is
    /// served.
    pub(super) fn status(&self) -> Status {
        Status {
            policy: PolicyStatus {
                path: self.policy_path.clone(),
                loaded_at: Some(rfc3339(self.policy_loaded_at)),
                default: format!("{:?}", self.policy.default).to_lowercase(),
                allow_entries: self.policy.allow.len(),
                deny_entries: self.policy.deny.len(),
                last_error: self.policy_refused.clone(),
                fallback: self.policy_fallback.clone(),
            },
            docker: DockerStatus {
                endpoint: self.endpoint.clone(),
                connected: self.engine.answering(),
                version: self.engine_seen.as_ref().map(|e| e.version.clone()),
                api_version: self.engine_seen.as_ref().map(|e| e.api_version.clone()),
                last_error: self.engine_error.clone(),
            },
            reconcile: self.reconcile_status(),
            rules: RulesStatus {
                ipv4: self.family_status(Family::V4),
                ipv6: self.family_status(Family::V6),
            },
            ports: self.exposed.clone(),
            host_network: (self.inventory.containers.iter())
                .filter(|c| c.host_network)
                .map(|c| c.name.clone())
                .collect(),
            rejected: (self.rejected.iter())
                .map(|r| RejectedStatus {
                    kind: r.kind.clone(),
                    name: r.name.clone(),
                    reason: r.reason.clone(),
                })
                .collect(),
            drift: DriftStatus {
                repairs: self.drift.count,
                last_at: self.drift.last.as_ref().map(|(at, _)| rfc3339(*at)),
                last_found: self.drift.last.as_ref().map(|(_, c)| c.to_string()),
            },
            inventory: InventoryStatus {
                inspects: self.inspects,
                listings: self.listings,
                repairs: self.inventory_repairs.count,
                last_repair_at: (self.inventory_repairs.last.as_ref()).map(|(at, _)| rfc3339(*at)),
                last_repair: (self.inventory_repairs.last.as_ref()).map(|(_, f)| f.clone()),
                incremental_repairs: self.incremental_repairs.count,
            },
            forward_bypass: (self.bypasses.iter())
                .map(|(family, rule)| BypassStatus {
                    family: family.as_str().to_owned(),
                    rule: rule.clone(),
                })
                .collect(),
            drops: self.drops_status(),
            east_west_not_enforced: self.east_west_not_enforced(),
            backend: self.backend.clone(),
            endpoints: Vec::new(),
            omitted: Omitted::default(),
            outbound: outbound_verdicts(&self.policy, &self.inventory),
            east_west: east_west_verdicts(&self.policy, &self.inventory),
        }
    }

    /// Per bridge network (by the bridges' interface names), where
    /// same-bridge east-west traffic is not judged.
    fn east_west_not_enforced(&self) -> Vec<NotEnforcedStatus> {
        let mut rows = Vec::new();
        for gap in &self.same_bridge_gaps {
            let networks = (self.inventory.bridges.iter()).filter(|b| b.interface == gap.bridge);
            rows.extend(networks.map(|b| NotEnforcedStatus {
                network: b.name.clone(),
                bridge: gap.bridge.clone(),
                family: gap.family.as_str().to_owned(),
                reason: gap.reason.clone(),
            }));
        }
        rows
    }

    fn reconcile_status(&self) -> ReconcileStatus {
        let last = self.last_pass.as_ref();
        ReconcileStatus {
            last_at: last.map(|p| rfc3339(p.started)),
            duration_ms: last.map(|p| u64::try_from(p.took.as_millis()).unwrap_or(u64::MAX)),
            result: last.map_or("pending", |p| p.outcome.word()).to_owned(),
            error: last.and_then(|p| p.error.clone()),
            applies: self.applies,
            inventory: last.map_or("", |p| p.basis.inventory_label()).to_owned(),
            passes: self.passes.clone(),
        }
    }

    fn family_status(&self, family: Family) -> FamilyStatus {
        let planned = self.planned.get(&family).copied().unwrap_or_default();
        FamilyStatus {
            rules: planned.rules,
            variant: planned.variant.map(str::to_owned),
        }
    }

    /// The running drop totals, per entry and per port.
    fn drops_status(&self) -> DropsStatus {
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
                _ => (origin.label(), origin.line()),
            };
            entries.push(EntryDrops {
                entry,
                line,
                dropped,
            });
        }
        DropsStatus {
            since: Some(rfc3339(self.started)),
            entries,
            ports,
        }
    }
}

/// `at` as status shows times: RFC 3339, to the second.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    use super::{EngineState, LastPass, LoopState, PlannedFamily};
    use crate::daemon::config::Config;
    use crate::daemon::report::{Change, Outcome, Written};
    use crate::docker::Engine;
    use crate::firewall::Changes;
    use crate::inventory::{Container, Inventory, Rejected};
    use crate::net::Family;
    use crate::plan::IncrementalPlan;
    use crate::policy;
    use crate::status::{DockerStatus, DropsStatus, ReconcileStatus, Status};

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

    /// 2026-01-02T03:04:05Z plus `secs`.
    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045 + secs)
    }

    fn fixture() -> LoopState {
        let config = Config::new(
            PathBuf::from("/etc/dockfw/policy.toml"),
            "unix:///run/docker.sock".to_owned(),
        );
        LoopState::new(&config, policy::deny_all(), Vec::new(), at(0))
    }

    #[test]
    fn an_incremental_plan_off_the_whole_plan_is_dropped_counted_and_shown() {
        let mut state = fixture();
        let web = Container {
            id: "web-id".to_owned(),
            name: "web".to_owned(),
            labels: BTreeMap::new(),
            host_network: false,
            attachments: vec![crate::inventory::Attachment {
                network_id: "bridge-id".to_owned(),
                network: "bridge".to_owned(),
                ipv4: Some("172.17.0.2".parse().unwrap()),
                ipv6: None,
            }],
            ports: Vec::new(),
        };
        let mut inventory = Inventory::default();
        state.incremental = Some(IncrementalPlan::new(&state.policy, &inventory, false));
        assert!(!state.check_incremental(at(1)), "the same inventory");
        assert!(state.incremental.is_some());
        // Kept for an inventory without the container: off by its address.
        inventory.containers.push(web);
        state.inventory = inventory;
        assert!(state.check_incremental(at(2)));
        assert!(state.incremental.is_none(), "the whole plan wins");
        let status = state.status();
        assert_eq!(status.inventory.incremental_repairs, 1);
        // No incremental plan (or one of another policy): nothing to check.
        assert!(!state.check_incremental(at(3)));
        assert_eq!(state.status().inventory.incremental_repairs, 1);
    }

    #[test]
    fn status_before_the_first_pass_is_pending_with_the_policy_and_the_start() {
        let status = fixture().status();
        assert_eq!(status.policy.path, "/etc/dockfw/policy.toml");
        assert_eq!(
            status.policy.loaded_at.as_deref(),
            Some("2026-01-02T03:04:05Z")
        );
        assert_eq!(status.policy.default, "deny");
        assert_eq!(status.docker.endpoint, "unix:///run/docker.sock");
        assert!(!status.docker.connected);
        assert_eq!(status.reconcile.result, "pending");
        assert_eq!(status.reconcile.inventory, "");
        assert_eq!(status.drops.since.as_deref(), Some("2026-01-02T03:04:05Z"));
        let expected = Status {
            policy: status.policy.clone(),
            docker: DockerStatus {
                endpoint: status.docker.endpoint.clone(),
                ..DockerStatus::default()
            },
            reconcile: ReconcileStatus {
                result: "pending".to_owned(),
                ..ReconcileStatus::default()
            },
            drops: DropsStatus {
                since: status.drops.since.clone(),
                ..DropsStatus::default()
            },
            ..Status::default()
        };
        assert_eq!(status, expected, "nothing else is known yet");
    }

    #[test]
    fn status_is_built_from_the_loop_state_alone() {
        let mut state = fixture();
        state.policy_refused = Some("policy.toml:3:1: unknown field".to_owned());
        state.listed(
            Engine {
                version: "28.5.2".to_owned(),
                api_version: "1.51".to_owned(),
            },
            Inventory {
                containers: vec![Container {
                    id: "host-web-id".to_owned(),
                    name: "host-web".to_owned(),
                    labels: BTreeMap::new(),
                    host_network: true,
                    attachments: Vec::new(),
                    ports: Vec::new(),
                }],
                ..Inventory::default()
            },
        );
        state.rejected = vec![Rejected {
            kind: "network".to_owned(),
            name: "shop".to_owned(),
            reason: "unreadable address".to_owned(),
        }];
        state.bypasses = vec![(Family::V4, "-A FORWARD -j ACCEPT".to_owned())];
        state.planned.insert(
            Family::V4,
            PlannedFamily {
                rules: 12,
                variant: Some("nft"),
            },
        );
        state.applies = 3;
        let change = Change {
            family: Some(Family::V4),
            written: Written::Repair,
            counts: Changes {
                added: 3,
                ..Changes::default()
            },
            summary: "+3 -0 rules".to_owned(),
        };
        state.drift.record(at(60), change);
        state
            .inventory_repairs
            .record(at(70), "containers: +1 -0 ~0".to_owned());
        state.last_pass = Some(LastPass {
            started: at(90),
            took: Duration::from_millis(12),
            outcome: Outcome::Degraded,
            error: Some("docker: gone".to_owned()),
            basis: EngineState::Unreachable,
        });
        state.engine.failed();

        let status = state.status();
        assert_eq!(
            status.policy.last_error.as_deref(),
            Some("policy.toml:3:1: unknown field")
        );
        assert!(!status.docker.connected, "the last listing failed");
        assert_eq!(status.docker.version.as_deref(), Some("28.5.2"));
        assert_eq!(status.host_network, ["host-web"]);
        assert_eq!(status.rejected[0].name, "shop");
        assert_eq!(status.forward_bypass[0].family, "ipv4");
        assert_eq!(status.rules.ipv4.rules, 12);
        assert_eq!(status.rules.ipv4.variant.as_deref(), Some("nft"));
        assert_eq!(status.rules.ipv6.rules, 0, "a family not planned");
        assert_eq!(status.drift.repairs, 1);
        assert_eq!(
            status.drift.last_at.as_deref(),
            Some("2026-01-02T03:05:05Z")
        );
        assert_eq!(
            status.drift.last_found.as_deref(),
            Some("ipv4: +3 -0 rules")
        );
        assert_eq!(status.inventory.repairs, 1);
        assert_eq!(
            status.inventory.last_repair.as_deref(),
            Some("containers: +1 -0 ~0")
        );
        let r = &status.reconcile;
        assert_eq!(r.result, "degraded");
        assert_eq!(r.duration_ms, Some(12));
        assert_eq!(r.last_at.as_deref(), Some("2026-01-02T03:05:35Z"));
        assert_eq!(r.error.as_deref(), Some("docker: gone"));
        assert_eq!(r.applies, 3);
        assert!(r.inventory.starts_with("last known inventory"));
        assert_eq!(status.outbound, None, "no [outbound] table");
        let text = "[outbound]\ndefault = \"deny\"\n";
        let policy = policy::parse_str(text, std::path::Path::new("p.toml")).expect("valid");
        state.policy_loaded(policy, at(100));
        state.inventory.containers[0].host_network = false;
        let outbound = state.status().outbound.expect("an [outbound] table");
        assert_eq!(outbound.len(), 1);
        assert_eq!(
            (outbound[0].container.as_str(), outbound[0].why.as_str()),
            ("host-web", "deny by default")
        );
    }
}
