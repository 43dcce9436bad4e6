//! One pass of the loop: bring the inventory up to date, plan, write set
//! elements on the fast path or read what is installed and apply at most
//! one transaction per family, then record the result. The only place that
//! calls the backend's `apply`.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::docker::{DockerError, DockerSource, Inspected, Subject};
use crate::firewall::{Backend, DropCounter, FirewallError, Notice, Observation, Transaction};
use crate::inventory::Inventory;
use crate::net::Family;
use crate::plan::{exposures, plan, with_drop_logging};
use crate::policy::Policy;
use crate::ruleset::Ruleset;
use crate::status::FamilyStatus;

use super::triggers::*;
use super::{Reconciler, error_chain, now_rfc3339};

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

/// How many of an event burst's containers are inspected at once.
pub(super) const INSPECT_CONCURRENCY: usize = 8;

/// How long a pass waits for the inspects of its events, all together:
/// what has not answered by then is judged unknown (denied) and the pass
/// lists everything instead.
pub(super) const INSPECT_DEADLINE: Duration = Duration::from_secs(3);

/// How a pass ended, as the status's `reconcile.result` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Everything planned was in place already.
    Unchanged,
    /// Everything planned is in place now: something was written.
    Applied,
    /// The rules planned from the inventory at hand are in place, but
    /// something else failed (the engine, the fast path): a retry is due.
    Degraded,
    /// The firewall could not be read or written: the rules in force stay,
    /// and a retry is due.
    Failed,
}

impl Outcome {
    /// The outcome of a pass that wrote `changed` transactions with
    /// `errors`.
    pub(super) fn of(changed: usize, errors: &[PassError]) -> Outcome {
        if errors.iter().any(PassError::is_firewall) {
            Outcome::Failed
        } else if !errors.is_empty() {
            Outcome::Degraded
        } else if changed == 0 {
            Outcome::Unchanged
        } else {
            Outcome::Applied
        }
    }

    /// The word in status.
    pub(super) fn word(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::Applied => "applied",
            Outcome::Degraded => "degraded",
            Outcome::Failed => "failed",
        }
    }
}

/// What went wrong in a pass. Each is shown as its chain of causes; all of
/// a pass's, `; `-joined, are the status's `reconcile.error`.
#[derive(Debug, thiserror::Error)]
pub(super) enum PassError {
    /// The engine could not be listed: the inventory in hand stays the
    /// basis.
    #[error("docker")]
    Docker(#[source] DockerError),
    /// The fast path could not write a family's set elements: an observing
    /// pass took over in the same pass.
    #[error("{scope}")]
    Elements {
        scope: &'static str,
        #[source]
        source: FirewallError,
    },
    /// A family's installed rules could not be read.
    #[error("{scope}")]
    Observe {
        scope: &'static str,
        #[source]
        source: FirewallError,
    },
    /// What would take the installed rules to the plan could not be worked
    /// out.
    #[error(transparent)]
    Transactions(FirewallError),
    /// A family's transaction could not be applied.
    #[error("{scope}")]
    Apply {
        scope: &'static str,
        #[source]
        source: FirewallError,
    },
}

impl PassError {
    /// Whether the firewall failed: what is installed is not known to be
    /// the plan.
    pub(super) fn is_firewall(&self) -> bool {
        matches!(
            self,
            PassError::Observe { .. } | PassError::Transactions(_) | PassError::Apply { .. }
        )
    }
}

/// What a pass did, for the loop to decide what comes next.
#[derive(Debug)]
pub(super) struct PassReport {
    /// What was written, one `scope: summary` per transaction applied.
    pub(super) changed: Vec<String>,
    pub(super) errors: Vec<PassError>,
    pub(super) outcome: Outcome,
    /// Whether the pass read what is installed: not on the fast path, nor
    /// a sets check that found the sets as planned.
    pub(super) observed: bool,
}

impl PassReport {
    /// The pass's errors as status shows them: each with its causes,
    /// `; `-joined; `None` without errors.
    pub(super) fn error_text(&self) -> Option<String> {
        let each: Vec<String> = self.errors.iter().map(|e| error_chain(e)).collect();
        (!each.is_empty()).then(|| each.join("; "))
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

impl<D: DockerSource, F: Backend> Reconciler<D, F> {
    /// One pass: the inventory brought up to date as `refresh` asks (see
    /// [`Reconciler::refresh_inventory`]); then, if
    /// the plan differs from the one in place in set elements only, those
    /// are written at once; then (when `observe`, or when nothing announces
    /// changes to the installed rules, or when the fast path does not
    /// apply) per family a read and at most one restore. Errors in the
    /// report mean a retry is due; the rules are applied from the best
    /// inventory at hand even when the engine does not answer. A
    /// [`PassScope::sets_check`] that finds the sets as planned does
    /// nothing else.
    pub(super) async fn pass(&mut self, scope: PassScope) -> PassReport {
        if scope.sets_check() && !self.sets_drifted().await {
            return PassReport {
                changed: Vec::new(),
                errors: Vec::new(),
                outcome: Outcome::Unchanged,
                observed: false,
            };
        }
        let PassScope {
            refresh, observe, ..
        } = scope;
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
            return self.finish(started, Vec::new(), errors, Read::Nothing);
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
                return self.finish(started, changed, errors, Read::Nothing);
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
        for (scope, source) in observation.failed {
            errors.push(PassError::Observe { scope, source });
        }
        let transactions = transactions.unwrap_or_else(|e| {
            firewall_failed = true;
            errors.push(PassError::Transactions(e));
            Vec::new()
        });
        for tx in transactions {
            match self.apply(&tx, &ruleset).await {
                Ok(()) => changed.push(tx),
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
        self.finish(started, changed, errors, Read::Firewall)
    }

    /// The fast path: when `planned` differs from the plan in place in set
    /// elements only, write those (recorded in `changed`; the drop sets'
    /// elements too, which count drops per port on both backends) and take
    /// `planned` as in place. False when there is no plan in place or other
    /// rules differ: a pass that observes decides.
    pub(super) async fn elements_only(
        &mut self,
        planned: &Ruleset,
        changed: &mut Vec<F::Transaction>,
    ) -> Result<bool, PassError> {
        let Some(in_place) = &self.in_place else {
            return Ok(false);
        };
        let families = self.available_families();
        let Some(transactions) = self.firewall.element_update(planned, in_place, &families) else {
            return Ok(false);
        };
        let removed = removed_drop_elements(in_place, planned, &families);
        for tx in transactions {
            if let Err(source) = self.apply(&tx, planned).await {
                // What is installed is no longer known: observe from now on.
                self.in_place = None;
                let scope = tx.scope();
                return Err(PassError::Elements { scope, source });
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
    pub(super) async fn refresh_inventory(
        &mut self,
        refresh: Refresh,
        errors: &mut Vec<PassError>,
    ) -> bool {
        let objects = match refresh {
            Refresh::Nothing => return false,
            Refresh::Everything { check } => {
                self.list_everything(check, errors).await;
                return true;
            }
            Refresh::Objects(objects) => objects,
        };
        if !self.engine.answering() {
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
    pub(super) async fn inspect(&mut self, objects: BTreeSet<Subject>) -> Result<bool, String> {
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
    pub(super) async fn list_everything(&mut self, check: bool, errors: &mut Vec<PassError>) {
        self.status.inventory.listings += 1;
        match self.docker.snapshot().await {
            Ok(snapshot) => {
                let kept_from_events = self.engine.answering();
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
                self.engine.failed();
                self.status.docker.connected = false;
                self.status.docker.last_error = Some(message.clone());
                errors.push(PassError::Docker(e));
            }
        }
    }

    /// Apply one transaction; count it, and count it as a repair when the
    /// plan is the one already found in place before.
    pub(super) async fn apply(
        &mut self,
        tx: &F::Transaction,
        desired: &Ruleset,
    ) -> Result<(), FirewallError> {
        self.firewall.apply(tx).await?;
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

    /// Record the outcome, log it, publish status; `read`: whether the
    /// pass read what is installed.
    pub(super) fn finish(
        &mut self,
        started: Instant,
        changed: Vec<F::Transaction>,
        errors: Vec<PassError>,
        read: Read,
    ) -> PassReport {
        let changed: Vec<String> = changed
            .iter()
            .map(|tx| format!("{}: {}", tx.scope(), tx.summary()))
            .collect();
        let outcome = Outcome::of(changed.len(), &errors);
        let report = PassReport {
            changed,
            errors,
            outcome,
            observed: read == Read::Firewall,
        };
        let elapsed = started.elapsed();
        self.status.reconcile.inventory = self.engine.inventory_label().to_owned();
        let r = &mut self.status.reconcile;
        r.passes.observe(elapsed, !report.errors.is_empty());
        let previous_error = r.error.take();
        r.duration_ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        r.result = report.outcome.word().to_owned();
        r.error = report.error_text();
        if !report.changed.is_empty() {
            let what = report.changed.join("; ");
            info!(changes = %what, duration_ms = elapsed.as_millis() as u64, "rules updated");
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
        report
    }
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
