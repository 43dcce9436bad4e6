//! One pass of the loop: bring the inventory up to date, plan, write set
//! elements on the fast path or read what is installed and apply at most
//! one transaction per family, then record the result in the loop's state
//! and report it ([`Edges::pass`]). The only place that calls the
//! backend's `apply`; it publishes nothing (the loop does, from the state).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::stream;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::bridge_netfilter::{NotEnforced, Reading, Switches, Turned, carry_out, decide};
use crate::docker::{DockerSource, Inspected, Subject};
use crate::firewall::{Backend, DropCounter, FirewallError, Notice, Observation, Transaction};
use crate::inventory::{Container, Inventory};
use crate::net::Family;
use crate::plan::{
    ContainerChange, IncrementalPlan, exposures, plan, same_bridge_interfaces, same_bridge_refused,
};
use crate::policy::Policy;
use crate::ruleset::{ElementChange, Ruleset, SetElement};
use crate::state::{StateDir, save_bridge_flags};

use super::bridges::BridgeFacts;
use super::report::{Change, Outcome, PassError, PassReport, Written, error_chain};
use super::state::{LastPass, LoopState, PlannedFamily};
use super::triggers::{PassScope, Refresh};

/// What a pass read of the firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// Everything installed, then wrote what differed.
    Firewall,
    /// Nothing: the fast path wrote set elements from the plan in place,
    /// or the events' objects were as the inventory had them.
    Nothing,
}

/// A network's bridge, gateway modes and other-driver name, as the
/// inventory holds them.
type NetworkEntries = (
    Option<crate::inventory::Bridge>,
    Option<crate::inventory::GatewayModes>,
    Option<String>,
);

/// What a refresh of the inventory changed.
#[derive(Debug, Default)]
struct Refreshed {
    /// False when the inventory is known not to have changed.
    moved: bool,
    /// The containers put (as they are now) or removed (`None`), when
    /// these (and networks) are all that changed; `None` when the
    /// inventory was listed whole.
    containers: Option<Vec<(String, Option<Container>)>>,
}

/// How many of an event burst's containers are inspected at once.
pub(super) const INSPECT_CONCURRENCY: usize = 8;

/// How long a pass waits for the inspects of its events, all together:
/// what has not answered by then is judged unknown (denied) and the pass
/// lists everything instead.
pub(super) const INSPECT_DEADLINE: Duration = Duration::from_secs(3);

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

/// What a pass reaches outside the loop's state: the engine, the firewall,
/// the state directory and the kernel's word on bridges.
pub(super) struct Edges<D, F> {
    /// The engine, shared with the event watch.
    pub(super) docker: Arc<D>,
    /// The backend: the only writer of dockfw's rules.
    pub(super) firewall: F,
    /// Where the last good policy and the bridges are kept; holds the lock.
    pub(super) state_dir: Option<StateDir>,
    /// Which interfaces are Linux bridges now; a watch on it, whose
    /// changes are triggers.
    pub(super) bridges: BridgeFacts,
    /// Set by the netlink watch while it runs; without it, drift is polled.
    pub(super) monitored: Arc<AtomicBool>,
    /// Log each drop (`--log-drops`).
    pub(super) log_drops: bool,
    /// The bridge-netfilter switches: the global ones, each bridge's flag.
    pub(super) switches: Box<dyn Switches>,
    /// The bridge flags dockfw turned on (kept in the state directory).
    pub(super) turned: Turned,
}

/// When a pass started, by the loop's clock and the wall's.
#[derive(Debug, Clone, Copy)]
struct Started {
    at: Instant,
    wall: SystemTime,
}

impl<D: DockerSource, F: Backend> Edges<D, F> {
    /// Whether some family's rules change unannounced: no netlink watch,
    /// or Docker's chains live in iptables-legacy.
    pub(super) fn needs_drift_poll(&self) -> bool {
        !self.monitored.load(Ordering::SeqCst) || !self.firewall.announces_changes()
    }

    /// Whether the plan in place has sets whose changes nothing announces
    /// (ipsets), so that they are polled even where the rules are watched.
    pub(super) fn polls_sets(&self, state: &LoopState) -> bool {
        (state.in_place.as_ref()).is_some_and(|r| self.firewall.has_unannounced_sets(r))
    }

    /// Whether the unannounced sets differ from the plan in place.
    async fn sets_drifted(&self, state: &LoopState) -> bool {
        let Some(in_place) = &state.in_place else {
            return true;
        };
        (self.firewall)
            .sets_drifted(in_place, &state.available_families())
            .await
    }

    /// One pass over `state`: the inventory brought up to date as `refresh`
    /// asks (see [`Edges::refresh_inventory`]); then, if
    /// the plan differs from the one in place in set elements only, those
    /// are written at once; then (when `observe`, or when nothing announces
    /// changes to the installed rules, or when the fast path does not
    /// apply) per family a read and at most one restore. Errors in the
    /// report mean a retry is due; the rules are applied from the best
    /// inventory at hand even when the engine does not answer. `None`: the
    /// scope was a [`PassScope::sets_check`] that found the sets as
    /// planned, and no pass ran.
    pub(super) async fn pass(
        &mut self,
        state: &mut LoopState,
        scope: PassScope,
    ) -> Option<PassReport> {
        if scope.sets_check() && !self.sets_drifted(state).await {
            return None;
        }
        let PassScope {
            refresh, observe, ..
        } = scope;
        let started = Started {
            at: Instant::now(),
            wall: SystemTime::now(),
        };
        let mut errors = Vec::new();
        let events_only = matches!(refresh, Refresh::Objects(_)) && !observe;
        let refreshed = self.refresh_inventory(state, refresh, &mut errors).await;
        let moved = refreshed.moved;
        // Events whose objects are as the inventory had them (a `destroy`
        // after the `die` that took the container out): nothing to plan.
        if events_only
            && !moved
            && errors.is_empty()
            && state.in_place.is_some()
            && !self.needs_drift_poll()
        {
            return Some(finish(state, started, Vec::new(), errors, Read::Nothing));
        }
        let not_bridges = self.bridges.check(&mut state.inventory);
        state.note_rejected(not_bridges);
        state.same_bridge_gaps = self.same_bridge(state).await;
        let changes = self.plan(state, refreshed.containers);
        state.exposed = exposures(&state.policy, &state.inventory);
        let mut changed = Vec::new();
        let observe = observe || self.needs_drift_poll();
        // The fast path where the plan's element changes are known: they
        // are written, and made in the plan in place, with no whole plan
        // compared or copied.
        let written = match &changes {
            Some(changes) => self.written_changes(state, changes, &mut changed).await,
            None => Ok(false),
        };
        let written = match written {
            Ok(true) if !observe => {
                return Some(finish(state, started, changed, errors, Read::Nothing));
            }
            Ok(written) => written,
            // The observing pass below takes over from what is installed.
            Err(e) => {
                errors.push(e);
                true
            }
        };
        let planned =
            (state.incremental.as_ref()).map_or_else(Ruleset::default, |i| i.ruleset().clone());
        if !written && state.in_place.is_some() {
            match self.elements_only(state, &planned, &mut changed).await {
                // The plan written is the plan in place (moved, not copied:
                // a copy costs what the sets hold).
                Ok(true) if !observe => {
                    state.in_place = Some(planned);
                    return Some(finish(state, started, changed, errors, Read::Nothing));
                }
                Ok(true) => state.in_place = Some(planned.clone()),
                Ok(false) => {}
                // The observing pass below takes over from what is installed.
                Err(e) => errors.push(e),
            }
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
        state.drops.observe(counters);
        // A family that could not be read says nothing either way.
        if observation.failed.is_empty() {
            let bypasses = self.firewall.forward_bypasses(&observation.observed);
            state.note_bypasses(bypasses);
        }
        state.unavailable.clone_from(&observation.unavailable);
        let mut firewall_failed = !observation.failed.is_empty();
        // What was read is not needed past here: let go of it before the
        // applies, so that what it shares with the driver (ipset elements
        // it knows) is edited in place, not copied.
        drop(observation.observed);
        for (scope, source) in observation.failed {
            errors.push(PassError::Observe { scope, source });
        }
        let transactions = transactions.unwrap_or_else(|e| {
            firewall_failed = true;
            errors.push(PassError::Transactions(e));
            Vec::new()
        });
        for tx in transactions {
            match self.apply(state, &tx, Some(&ruleset), Written::Plan).await {
                Ok(change) => changed.push(change),
                Err(source) => {
                    firewall_failed = true;
                    let scope = tx.scope();
                    errors.push(PassError::Apply { scope, source });
                }
            }
        }
        if !firewall_failed {
            // Drop port elements the transactions removed: what they
            // counted stays counted (a table rewritten carried it already).
            let kept = drop_element_rules(&ruleset);
            for rule in listed_elements.iter().filter(|r| !kept.contains(*r)) {
                state.drops.removed(rule);
            }
        }
        state.planned = (Family::ALL.into_iter())
            .filter(|family| !observation.unavailable.contains(family))
            .map(|family| {
                let planned = PlannedFamily {
                    rules: self.firewall.rule_count(ruleset.family(family)),
                    variant: self.firewall.variant(family),
                };
                (family, planned)
            })
            .collect();
        // What is installed is known only after a pass that wrote all of
        // it; after a failure, the next passes read it first.
        state.in_place = (!firewall_failed).then_some(ruleset);
        Some(finish(state, started, changed, errors, Read::Firewall))
    }

    /// Plan the policy and inventory in hand (the plan is
    /// `state.incremental`'s ruleset): the incremental plan brought up to
    /// date with `containers` (the containers an event refresh put or
    /// removed), or a whole plan when the inventory was listed, or there
    /// is none yet. The set element changes since the last pass's plan,
    /// when they are known ([`IncrementalPlan::take_changes`]).
    fn plan(
        &self,
        state: &mut LoopState,
        containers: Option<Vec<(String, Option<Container>)>>,
    ) -> Option<Vec<ElementChange>> {
        let (policy, inventory) = (&state.policy, &state.inventory);
        match (&mut state.incremental, containers) {
            (Some(incremental), Some(containers))
                if incremental.drop_logging() == self.log_drops =>
            {
                incremental.sync(policy, inventory);
                for (id, found) in &containers {
                    let change = match found {
                        Some(container) => ContainerChange::Put(container),
                        None => ContainerChange::Removed(id),
                    };
                    let applied = incremental.apply(policy, inventory, change);
                    debug!(container = %id, ?applied, "incremental plan");
                }
                incremental.take_changes()
            }
            (incremental, _) => {
                let made = IncrementalPlan::new(policy, inventory, self.log_drops);
                // None: a whole plan's changes are not known; from here on
                // they are.
                incremental.insert(made).take_changes()
            }
        }
    }

    /// Make same-bridge frames of the bridges `[east_west]` judges reach
    /// the IP hooks where the global switch does not (each bridge's own
    /// flag), and turn off the flags dockfw turned on that nothing needs
    /// now; the bridges where neither holds. Reads nothing when no table
    /// needs a bridge and no flag is dockfw's. The flags are few process
    /// runs (`ip`, each killed past [`crate::bridge_netfilter::IP_TIMEOUT`]),
    /// made only where the global switch is off.
    async fn same_bridge(&mut self, state: &LoopState) -> Vec<NotEnforced> {
        let needed = same_bridge_interfaces(&state.policy, &state.inventory);
        let refused = same_bridge_refused(&state.policy, &state.inventory);
        if needed.is_empty() && refused.is_empty() && self.turned.0.is_empty() {
            return Vec::new();
        }
        let read = Reading::now(self.switches.as_ref(), !self.turned.0.is_empty()).await;
        let decision = decide(&needed, &refused, &read, &self.turned);
        let before = self.turned.clone();
        let gaps = carry_out(decision, self.switches.as_ref(), &mut self.turned).await;
        if self.turned != before {
            info!(flags = ?self.turned.0, "bridge netfilter flags dockfw turned on");
            let saved =
                (self.state_dir.as_ref()).map(|d| save_bridge_flags(d.path(), &self.turned));
            if let Some(Err(e)) = saved {
                warn!(error = %error_chain(&e), "cannot keep the bridge flags dockfw turned on");
            }
        }
        for gap in &gaps {
            warn!(bridge = %gap.bridge, family = gap.family.as_str(), reason = %gap.reason, "same-bridge east-west traffic is not judged");
        }
        gaps
    }

    /// The fast path of known changes: `changes` (the incremental plan's
    /// since the last pass, whose plan is the plan in place) written as the
    /// driver makes them (recorded in `changed`), and made in the plan in
    /// place. False when there is no plan in place or the driver cannot
    /// take them alone ([`Backend::element_changes`]).
    async fn written_changes(
        &self,
        state: &mut LoopState,
        changes: &[ElementChange],
        changed: &mut Vec<Change>,
    ) -> Result<bool, PassError> {
        let (Some(in_place), Some(incremental)) = (&state.in_place, &state.incremental) else {
            return Ok(false);
        };
        let families = state.available_families();
        let desired = incremental.ruleset();
        let Some(transactions) =
            (self.firewall).element_changes(changes, desired, in_place, &families)
        else {
            return Ok(false);
        };
        self.write_elements(state, transactions, changed).await?;
        if let Some(in_place) = &mut state.in_place {
            in_place.apply_changes(changes);
        }
        for rule in removed_drop_changes(changes, &families) {
            state.drops.removed(&rule);
        }
        Ok(true)
    }

    /// Apply the element transactions of a fast path in turn (recorded in
    /// `changed`). On a failure what is installed is no longer known: the
    /// plan in place is dropped, so the next passes observe.
    async fn write_elements(
        &self,
        state: &mut LoopState,
        transactions: Vec<F::Transaction>,
        changed: &mut Vec<Change>,
    ) -> Result<(), PassError> {
        for tx in transactions {
            match self.apply(state, &tx, None, Written::Elements).await {
                Ok(change) => changed.push(change),
                Err(source) => {
                    state.in_place = None;
                    let scope = tx.scope();
                    return Err(PassError::Elements { scope, source });
                }
            }
        }
        Ok(())
    }

    /// The fast path: when `planned` differs from the plan in place in set
    /// elements only, write those (recorded in `changed`; the drop sets'
    /// elements too, which count drops per port on both backends); the
    /// caller then takes `planned` as in place. False when there is no plan
    /// in place or other rules differ: a pass that observes decides.
    async fn elements_only(
        &self,
        state: &mut LoopState,
        planned: &Ruleset,
        changed: &mut Vec<Change>,
    ) -> Result<bool, PassError> {
        let Some(in_place) = &state.in_place else {
            return Ok(false);
        };
        let families = state.available_families();
        let Some(transactions) = self.firewall.element_update(planned, in_place, &families) else {
            return Ok(false);
        };
        let removed = removed_drop_elements(in_place, planned, &families);
        self.write_elements(state, transactions, changed).await?;
        for rule in &removed {
            state.drops.removed(rule);
        }
        Ok(true)
    }

    /// Bring the inventory up to date as `refresh` asks. The objects events
    /// named are inspected and updated in place, once the engine has given
    /// a whole inventory to update; an inspect that cannot be used takes
    /// its object out (fail closed) and the engine is listed instead. A
    /// failed listing is pushed to `errors`: the inventory in hand stays
    /// the basis. False when the inventory is known not to have changed
    /// (every object inspected was as the inventory had it).
    async fn refresh_inventory(
        &self,
        state: &mut LoopState,
        refresh: Refresh,
        errors: &mut Vec<PassError>,
    ) -> Refreshed {
        let listed = Refreshed {
            moved: true,
            containers: None,
        };
        let objects = match refresh {
            Refresh::Nothing => {
                return Refreshed {
                    moved: false,
                    containers: Some(Vec::new()),
                };
            }
            Refresh::Everything { check } => {
                if check {
                    state.check_incremental(SystemTime::now());
                }
                self.list_everything(state, check, errors).await;
                return listed;
            }
            Refresh::Objects(objects) => objects,
        };
        if !state.engine.answering() {
            self.list_everything(state, false, errors).await;
            return listed;
        }
        let inspected = self.inspect(state, objects).await;
        self.keep_bridges(state);
        match inspected {
            Ok((moved, containers)) => Refreshed {
                moved,
                containers: Some(containers),
            },
            Err(why) => {
                info!(%why, "an event's object could not be inspected; judged unknown (denied) and listing everything");
                self.list_everything(state, false, errors).await;
                listed
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
    async fn inspect(
        &self,
        state: &mut LoopState,
        objects: BTreeSet<Subject>,
    ) -> Result<(bool, Vec<(String, Option<Container>)>), String> {
        let mut changed = false;
        let mut moved = Vec::new();
        let mut containers = Vec::new();
        for object in objects {
            match object {
                Subject::Container(id) => containers.push(id),
                Subject::Network(id) => {
                    state.inspects += 1;
                    let found =
                        tokio::time::timeout(INSPECT_DEADLINE, self.docker.inspect_network(&id));
                    match found.await {
                        Ok(Ok(found)) => {
                            let before = network_entries(&state.inventory, &id);
                            state.inventory.put_network(&id, found);
                            changed |= network_entries(&state.inventory, &id) != before;
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
        state.inspects += containers.len() as u64;
        let (docker, known) = (&self.docker, &state.inventory);
        let answers: Vec<(String, Result<Inspected, String>)> = stream::iter(containers.clone())
            .map(|id| async move {
                let found = docker.inspect_container(&id, known).await;
                (id, found.map_err(|e| error_chain(&e)))
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .take_until(tokio::time::sleep(INSPECT_DEADLINE))
            .collect()
            .await;
        let inventory = &mut state.inventory;
        let mut failed = Vec::new();
        let mut unanswered: BTreeSet<String> = containers.into_iter().collect();
        for (id, found) in answers {
            unanswered.remove(&id);
            match found {
                Ok(Inspected::Running {
                    container,
                    rejected,
                }) => {
                    let known = inventory.containers.iter().find(|c| c.id == id);
                    if known != Some(&container) {
                        changed = true;
                        moved.push((id, Some(container.clone())));
                    }
                    inventory.put_container(container, rejected);
                }
                Ok(Inspected::Gone) => {
                    if inventory.remove_container(&id).is_some() {
                        changed = true;
                        moved.push((id, None));
                    }
                }
                Ok(Inspected::UnknownNetwork(network)) => {
                    inventory.remove_container(&id);
                    failed.push(format!(
                        "container {id} is on network {network:?}, not listed"
                    ));
                }
                Err(e) => {
                    inventory.remove_container(&id);
                    failed.push(format!("container {id}: {e}"));
                }
            }
        }
        for id in unanswered {
            inventory.remove_container(&id);
            failed.push(format!(
                "container {id}: no answer within {INSPECT_DEADLINE:?}"
            ));
        }
        if failed.is_empty() {
            Ok((changed, moved))
        } else {
            Err(failed.join("; "))
        }
    }

    /// A full listing: the engine's inventory replaces the one in hand. As
    /// a `check` of an inventory kept from events, a difference is counted
    /// as a repair; a failure is pushed to `errors`.
    async fn list_everything(
        &self,
        state: &mut LoopState,
        check: bool,
        errors: &mut Vec<PassError>,
    ) {
        state.listings += 1;
        match self.docker.snapshot().await {
            Ok(snapshot) => {
                let kept_from_events = state.engine.answering();
                if check
                    && kept_from_events
                    && let Some(found) = state.inventory.differences(&snapshot.inventory)
                {
                    warn!(%found, "the full listing found what the events missed; repaired");
                    state.inventory_repairs.record(SystemTime::now(), found);
                }
                state.listed(snapshot.engine, snapshot.inventory);
                self.keep_bridges(state);
            }
            Err(e) => {
                state.listing_failed(error_chain(&e));
                errors.push(PassError::Docker(e));
            }
        }
    }

    /// Keep the inventory's bridges for the next boot, when they changed.
    fn keep_bridges(&self, state: &mut LoopState) {
        let bridges = &state.inventory.bridges;
        if *bridges != state.saved_bridges
            && let Some(dir) = &self.state_dir
        {
            match dir.save_bridges(bridges) {
                Ok(()) => state.saved_bridges = bridges.clone(),
                Err(e) => {
                    warn!(error = %error_chain(&e), "cannot keep the bridges for the next boot")
                }
            }
        }
    }

    /// Apply one transaction, written for `written`; count it, and count it
    /// as a drift repair when the plan `desired` is the one already found
    /// in place before (set elements written from the plans or their
    /// changes, `None`, never are: they differ from the plan in place).
    async fn apply(
        &self,
        state: &mut LoopState,
        tx: &F::Transaction,
        desired: Option<&Ruleset>,
        written: Written,
    ) -> Result<Change, FirewallError> {
        self.firewall.apply(tx).await?;
        state.applies += 1;
        if tx.changes().rewrote_rules {
            state.drops.rewritten(tx.family());
        }
        let scope = tx.scope();
        let repair = desired.is_some_and(|d| state.in_place.as_ref() == Some(d));
        let change = Change::of(tx, if repair { Written::Repair } else { written });
        if repair {
            warn!(found = %change, "dockfw's rules had been changed by something else; repaired");
            state.drift.record(SystemTime::now(), change.clone());
        }
        for notice in tx.notices() {
            match notice {
                Notice::Warning(message) => warn!(scope, "{message}"),
                Notice::Info(message) => info!(scope, "{message}"),
            }
        }
        Ok(change)
    }
}

/// What the inventory holds of the network with id `id`: its bridge,
/// gateway modes and other-driver entry.
fn network_entries(inventory: &Inventory, id: &str) -> NetworkEntries {
    (
        inventory.bridges.iter().find(|b| b.id == id).cloned(),
        inventory.gateway_modes.get(id).cloned(),
        inventory.other_networks.get(id).cloned(),
    )
}

/// Record the pass's outcome in `state` and log it; `read`: whether the
/// pass read what is installed.
fn finish(
    state: &mut LoopState,
    started: Started,
    changed: Vec<Change>,
    errors: Vec<PassError>,
    read: Read,
) -> PassReport {
    let report = PassReport {
        outcome: Outcome::of(changed.len(), &errors),
        changed,
        errors,
        observed: read == Read::Firewall,
    };
    let took = started.at.elapsed();
    state.passes.observe(took, !report.errors.is_empty());
    let error = report.error_text();
    let previous = state.last_pass.take().and_then(|p| p.error);
    if let Some(what) = report.changed_text() {
        info!(changes = %what, duration_ms = took.as_millis() as u64, "rules updated");
    }
    match (&error, &previous) {
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
    state.last_pass = Some(LastPass {
        started: started.wall,
        took,
        outcome: report.outcome,
        error,
        basis: state.engine,
    });
    report
}

/// The drop set elements of `families` ([`family_drop_elements`]) that
/// `in_place` has and `next` has not.
pub(super) fn removed_drop_elements(
    in_place: &Ruleset,
    next: &Ruleset,
    families: &[Family],
) -> Vec<String> {
    let kept = drop_element_rules(next);
    (families.iter())
        .flat_map(|&family| family_drop_elements(in_place, family))
        .filter(|r| !kept.contains(r))
        .collect()
}

/// The drop set elements of `families` that `changes` remove, as
/// [`family_drop_elements`] names them.
fn removed_drop_changes(changes: &[ElementChange], families: &[Family]) -> Vec<String> {
    (changes.iter())
        .filter(|c| !c.present && families.contains(&c.element.family()))
        .filter_map(|c| match &c.element {
            SetElement::Dropped(family, proto, port) => {
                Some(DropCounter::element_rule(*family, *proto, *port))
            }
            SetElement::Endpoint(family, endpoint) => {
                Some(DropCounter::endpoint_rule(*family, endpoint))
            }
            _ => None,
        })
        .collect()
}

/// The drop set elements of `ruleset` ([`family_drop_elements`]).
pub(super) fn drop_element_rules(ruleset: &Ruleset) -> BTreeSet<String> {
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
