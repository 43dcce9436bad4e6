//! The nftables driver: dockfw's own `inet dockfw` table, for hosts where
//! Docker itself writes nftables (Docker 29's `"firewall-backend":
//! "nftables"` has no `DOCKER-USER`; Docker's docs ask operators to filter
//! in a table of their own, with base chains on the same hooks at a lower
//! priority number).
//!
//! What to write is decided by [`render`], whether to write it (the whole
//! table, or only the elements of its sets when nothing else changed) by
//! [`installed`]; this file makes the driver's [`Transaction`] (which
//! carries the plan its apply records) and runs `nft` from its fixed path:
//! [`apply`] one script, [`list`] the table. It touches no other table.

#[cfg(test)]
mod fixtures;
pub mod installed;
pub mod netlink;
pub mod render;

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use self::installed::{Applied, Reason, changed_sets, reason_to_apply};
use self::render::{TABLE_FAMILY, TABLE_NAME};
use super::programs::NFT;
use super::{Backend, Changes, DropCounter, FirewallError, Observation, run};
use crate::choice::BackendKind;
use crate::net::Family;
use crate::ruleset::{AddrSet, ElementChange, PortSet, Ruleset, SetElement};

/// The nftables [`Backend`]: one `inet dockfw` table, rewritten whole in
/// one transaction when the plan's rules changed or the table drifted; when
/// only set elements changed, one transaction gives those sets their new
/// elements and leaves the rules alone.
#[derive(Debug, Default)]
pub struct Nftables {
    /// What was last applied and how nft listed it right after: the
    /// reference drift is judged against. Behind a lock because `apply`
    /// records it through `&self`.
    applied: Mutex<Option<Applied>>,
}

/// One nftables transaction: one nft script (or, for set elements alone,
/// one netlink batch with the script as the way back), and what its apply
/// records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub changes: Changes,
    /// Why it is written; `None` for an uninstall.
    pub reason: Option<Reason>,
    write: Write,
}

/// What a [`Transaction`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    /// The whole table of `ruleset`, with `script`; listed right after, as
    /// the reference for drift.
    Table { script: String, ruleset: Ruleset },
    /// The changed sets' elements from `before`'s to `ruleset`'s, over
    /// netlink; nft's script ([`Write::elements_script`], which gives the
    /// sets exactly their elements whatever happened) is the way back,
    /// rendered only when it is needed: it lists every element of each
    /// changed set, so it grows with the host, and netlink writes only the
    /// difference. `before` is boxed: two plans inline would make every
    /// write the size of both.
    Elements {
        ruleset: Ruleset,
        before: Box<Ruleset>,
    },
    /// Set elements joining and leaving, known as such (an incremental
    /// plan's changes): `batch` over netlink, then made in the plan this
    /// process applied. Nothing here holds or walks a whole set; the way
    /// back (nft's script giving the changed sets their elements) is
    /// rendered only if netlink fails.
    Changes {
        batch: Vec<netlink::SetChange>,
        elements: Vec<ElementChange>,
    },
    /// The table goes, with `script`.
    Remove { script: String },
}

impl super::Transaction for Transaction {
    /// Both families: they share the one table.
    fn family(&self) -> Option<Family> {
        None
    }

    fn changes(&self) -> &Changes {
        &self.changes
    }

    fn summary(&self) -> String {
        match self.reason {
            Some(reason) => format!("{} ({})", self.changes, reason.as_str()),
            None => self.changes.to_string(),
        }
    }

    fn script(&self) -> String {
        match &self.write {
            Write::Table { script, .. } | Write::Remove { script } => script.clone(),
            Write::Elements { ruleset, before } => Write::elements_script(ruleset, before),
            Write::Changes { batch, .. } => render::changes_text(batch),
        }
    }
}

impl Write {
    /// nft's script that gives the sets changed from `before` to `ruleset`
    /// exactly `ruleset`'s elements.
    fn elements_script(ruleset: &Ruleset, before: &Ruleset) -> String {
        let changed = changed_sets(ruleset, Some(before));
        render::elements_text(&changed.sets, &changed.port_sets)
    }
}

/// The transaction that takes the table from `before` to `desired` for
/// `reason`: the changed sets' elements only ([`Reason::SetElements`]), or
/// the whole table. Pure.
fn transaction(
    reason: Reason,
    desired: &Ruleset,
    before: Option<&Ruleset>,
) -> Result<Transaction, FirewallError> {
    let changed = changed_sets(desired, before);
    let (elements_added, elements_removed) = (changed.added, changed.removed);
    let ((added, removed), write) = match before {
        Some(before) if reason == Reason::SetElements => (
            (0, 0),
            Write::Elements {
                ruleset: desired.clone(),
                before: Box::new(before.clone()),
            },
        ),
        _ => (
            rule_changes(desired, before),
            Write::Table {
                script: render::render(desired).map_err(FirewallError::Render)?,
                ruleset: desired.clone(),
            },
        ),
    };
    Ok(Transaction {
        changes: Changes {
            added,
            removed,
            elements_added,
            elements_removed,
            rewrote_rules: !matches!(write, Write::Elements { .. }),
        },
        reason: Some(reason),
        write,
    })
}

impl Transaction {
    /// The transaction that gives the table's sets `desired`'s elements,
    /// from `before`'s ([`Reason::SetElements`]). Pure.
    pub fn set_elements(desired: &Ruleset, before: &Ruleset) -> Result<Transaction, FirewallError> {
        transaction(Reason::SetElements, desired, Some(before))
    }
}

impl Nftables {
    pub fn new() -> Nftables {
        Nftables::default()
    }

    /// The way back of a [`Write::Changes`] whose batch netlink did not
    /// take: nft's script giving the sets `elements` touch the elements of
    /// the plan last applied with `elements` made.
    fn changes_script(&self, elements: &[ElementChange]) -> Result<String, FirewallError> {
        let applied = self.applied.lock().map_err(|_| FirewallError::Poisoned)?;
        let Some(applied) = applied.as_ref() else {
            return Err(FirewallError::Render(render::RenderError::NothingApplied));
        };
        let mut touched = Ruleset::default();
        for family in Family::ALL {
            let (had, into) = match family {
                Family::V4 => (&applied.ruleset().v4, &mut touched.v4),
                Family::V6 => (&applied.ruleset().v6, &mut touched.v6),
            };
            let names: BTreeSet<&SetElement> = (elements.iter())
                .map(|c| &c.element)
                .filter(|e| e.family() == family)
                .collect();
            let wanted = |name: &str| {
                names
                    .iter()
                    .any(|e| matches!(e, SetElement::Addr(_, n, _) if n == name))
            };
            into.sets = had
                .sets
                .iter()
                .filter(|s| wanted(&s.name))
                .cloned()
                .collect();
            let touched = |set: &PortSet| {
                (names.iter()).any(|e| had.port_set_of(e).is_some_and(|s| s.name == set.name))
            };
            into.port_sets = had
                .port_sets
                .iter()
                .filter(|s| touched(s))
                .cloned()
                .collect();
            into.drop_ports = had
                .drop_ports
                .iter()
                .filter(|s| touched(s))
                .cloned()
                .collect();
        }
        touched.apply_changes(elements);
        let (v4, v6) = (&touched.v4, &touched.v6);
        let sets: Vec<&AddrSet> = v4.sets.iter().chain(&v6.sets).collect();
        let ports: Vec<&PortSet> = (v4.port_sets.iter().chain(&v4.drop_ports))
            .chain(v6.port_sets.iter().chain(&v6.drop_ports))
            .collect();
        Ok(render::elements_text(&sets, &ports))
    }

    /// The sets now hold exactly `ruleset`'s elements; the rules are as
    /// listed after the last whole apply. Nothing to read back.
    fn elements_written(&self, ruleset: Ruleset) -> Result<(), FirewallError> {
        let mut applied = self.applied.lock().map_err(|_| FirewallError::Poisoned)?;
        *applied = applied.as_ref().map(|last| last.with_elements_of(ruleset));
        Ok(())
    }
}

/// Write the element changes from `before` to `desired` over netlink, off
/// the runtime's threads (a blocking exchange of well under a millisecond).
async fn write_elements(desired: &Ruleset, before: &Ruleset) -> Result<(), netlink::NetlinkError> {
    let changes = netlink::changes(desired, before)?;
    tokio::task::spawn_blocking(move || netlink::write(&changes))
        .await
        .map_err(|e| netlink::NetlinkError::Socket(std::io::Error::other(e.to_string())))?
}

/// Rules of `desired` not in `before` (per family and chain), as counts.
fn rule_changes(desired: &Ruleset, before: Option<&Ruleset>) -> (usize, usize) {
    let keyed = |r: &Ruleset| -> HashSet<String> {
        Family::ALL
            .iter()
            .flat_map(|f| {
                r.family(*f).chains.iter().flat_map(move |c| {
                    c.rules
                        .iter()
                        .map(move |rule| format!("{f:?} {} {rule:?}", c.name))
                })
            })
            .collect()
    };
    let want = keyed(desired);
    let have = before.map(keyed).unwrap_or_default();
    (
        want.difference(&have).count(),
        have.difference(&want).count(),
    )
}

impl Backend for Nftables {
    /// The table's listing; `None` when there is no table.
    type Observed = Option<String>;
    type Transaction = Transaction;

    fn kind(&self) -> BackendKind {
        BackendKind::Nftables
    }

    fn nothing_installed(&self) -> Option<String> {
        None
    }

    async fn observe(&self) -> Observation<Option<String>> {
        let mut observation = Observation {
            observed: None,
            unavailable: Vec::new(),
            failed: Vec::new(),
        };
        match list().await {
            Ok(listing) => observation.observed = listing,
            Err(e) => observation.failed.push(("table", e)),
        }
        observation
    }

    fn transactions(
        &self,
        desired: &Ruleset,
        observed: &Option<String>,
    ) -> Result<Vec<Transaction>, FirewallError> {
        let applied = self.applied.lock().map_err(|_| FirewallError::Poisoned)?;
        let Some(reason) = reason_to_apply(desired, applied.as_ref(), observed.as_deref()) else {
            return Ok(Vec::new());
        };
        let before = applied.as_ref().map(Applied::ruleset);
        Ok(vec![transaction(reason, desired, before)?])
    }

    fn element_update(
        &self,
        desired: &Ruleset,
        in_place: &Ruleset,
        _families: &[Family],
    ) -> Option<Vec<Transaction>> {
        if !desired.same_rules(in_place) {
            return None;
        }
        let applied = self.applied.lock().ok()?;
        // Only from the table this process applied last: its listing is
        // the reference the next observing pass compares with.
        if applied.as_ref().map(Applied::ruleset) != Some(in_place) {
            return None;
        }
        if desired == in_place {
            return Some(Vec::new());
        }
        Transaction::set_elements(desired, in_place)
            .ok()
            .map(|tx| vec![tx])
    }

    /// Only from the table this process applied last, kept in step: each
    /// change must turn an element of that plan over (one it lacks joins,
    /// one it has leaves), or the plans have parted and a comparison
    /// decides. Changes that write nothing to the table (drop endpoints
    /// alone) are recorded in that plan here, with no transaction.
    fn element_changes(
        &self,
        changes: &[ElementChange],
        desired: &Ruleset,
        _in_place: &Ruleset,
        _families: &[Family],
    ) -> Option<Vec<Transaction>> {
        let mut applied = self.applied.lock().ok()?;
        let applied = applied.as_mut()?;
        if !(changes.iter()).all(|c| applied.ruleset().has(&c.element) != c.present) {
            return None;
        }
        let batch = netlink::element_changes(changes, desired).ok()?;
        if batch.is_empty() {
            // Nothing of the table changes (drop endpoints alone, which
            // nftables does not hold): the plan it records follows at once,
            // or it would part from the plan in place.
            applied.apply_changes(changes);
            return Some(Vec::new());
        }
        let counted = |present: bool| {
            (changes.iter())
                .filter(|c| c.present == present && !matches!(c.element, SetElement::Endpoint(..)))
                .count()
        };
        Some(vec![Transaction {
            changes: Changes {
                elements_added: counted(true),
                elements_removed: counted(false),
                ..Changes::default()
            },
            reason: Some(Reason::SetElements),
            write: Write::Changes {
                batch,
                elements: changes.to_vec(),
            },
        }])
    }

    fn render(&self, desired: &Ruleset) -> String {
        render::render(desired).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The `inet dockfw` table with only this family's sets and rules
    /// (both families share the one table), without the preamble that
    /// replaces the table.
    fn render_family(&self, desired: &Ruleset, family: Family) -> String {
        let only = match family {
            Family::V4 => Ruleset {
                v4: desired.v4.clone(),
                ..Ruleset::default()
            },
            Family::V6 => Ruleset {
                v6: desired.v6.clone(),
                ..Ruleset::default()
            },
        };
        let text = self.render(&only);
        let preamble = render::uninstall_text();
        match text.strip_prefix(&preamble) {
            Some(rest) => rest.to_owned(),
            None => text,
        }
    }

    /// The table's elements alone are written straight to the kernel,
    /// with nft's script as the way back; a whole table is listed right
    /// after, as the reference for drift.
    async fn apply(&self, tx: &Transaction) -> Result<(), FirewallError> {
        match &tx.write {
            Write::Elements { ruleset, before } => {
                if let Err(e) = write_elements(ruleset, before).await {
                    tracing::warn!(
                        error = ?e,
                        "cannot write set elements over netlink; writing them with nft"
                    );
                    apply(&Write::elements_script(ruleset, before)).await?;
                }
                self.elements_written(ruleset.clone())
            }
            Write::Changes { batch, elements } => {
                let batch = batch.clone();
                let written = tokio::task::spawn_blocking(move || netlink::write(&batch)).await;
                let failed = match written {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(error) = failed {
                    tracing::warn!(
                        %error,
                        "cannot write set elements over netlink; writing them with nft"
                    );
                    apply(&self.changes_script(elements)?).await?;
                }
                let mut applied = self.applied.lock().map_err(|_| FirewallError::Poisoned)?;
                if let Some(applied) = applied.as_mut() {
                    applied.apply_changes(elements);
                }
                Ok(())
            }
            Write::Table { script, ruleset } => {
                apply(script).await?;
                let listing = list().await?.unwrap_or_default();
                *self.applied.lock().map_err(|_| FirewallError::Poisoned)? =
                    Some(Applied::new(ruleset.clone(), &listing));
                Ok(())
            }
            Write::Remove { script } => {
                apply(script).await?;
                // Nothing is installed: there is nothing to keep.
                *self.applied.lock().map_err(|_| FirewallError::Poisoned)? = None;
                Ok(())
            }
        }
    }

    fn uninstall(&self, observed: &Option<String>) -> Vec<Transaction> {
        observed
            .as_ref()
            .map(|_| Transaction {
                changes: Changes::default(),
                reason: None,
                write: Write::Remove {
                    script: render::uninstall_text(),
                },
            })
            .into_iter()
            .collect()
    }

    fn drop_counters(&self, observed: &Option<String>) -> Vec<DropCounter> {
        let listing = observed.as_deref().unwrap_or_default();
        let elements = installed::drop_port_counters(listing).into_iter().map(
            |(family, proto, port, packets)| DropCounter {
                scope: None,
                rule: DropCounter::element_rule(family, proto, port),
                origin: crate::ruleset::Origin::Port { proto, port },
                packets,
                shared_with: Vec::new(),
            },
        );
        installed::drop_counters(listing)
            .into_iter()
            .map(|(rule, origin, packets)| DropCounter {
                scope: None,
                rule,
                origin,
                packets,
                shared_with: Vec::new(),
            })
            .chain(elements)
            .collect()
    }

    fn variant(&self, _: Family) -> Option<&'static str> {
        Some("nftables")
    }

    fn announces_changes(&self) -> bool {
        true
    }

    /// Its sets are in the table, announced like its rules.
    fn has_unannounced_sets(&self, _: &Ruleset) -> bool {
        false
    }

    async fn sets_drifted(&self, _: &Ruleset, _: &[Family]) -> bool {
        false
    }
}

/// Apply `text` (from [`render::render`] or [`render::uninstall_text`]) as
/// one nftables transaction: all of it, or nothing if nft or the kernel
/// refuses any part.
pub async fn apply(text: &str) -> Result<(), FirewallError> {
    run(NFT, &["-f", "-"], Some(text)).await.map(drop)
}

/// dockfw's table as `nft list` prints it, with counter values (for the
/// drops; [`installed::normalise`] takes them out to judge drift); `None`
/// when there is no such table.
pub async fn list() -> Result<Option<String>, FirewallError> {
    let table = ["list", "table", TABLE_FAMILY, TABLE_NAME];
    match run(NFT, &table, None).await {
        Ok(listing) => Ok(Some(listing)),
        Err(err @ FirewallError::Failed { .. }) => {
            // nft's message for a missing table is strerror(ENOENT), in
            // the locale's words: ask for the list of tables instead.
            let tables = run(NFT, &["list", "tables", TABLE_FAMILY], None).await?;
            let ours = format!("table {TABLE_FAMILY} {TABLE_NAME}");
            if tables.lines().any(|line| line.trim() == ours) {
                Err(err)
            } else {
                Ok(None)
            }
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::installed::{Applied, Reason, reason_to_apply};
    use super::render::{render, uninstall_text};
    use super::*;
    use crate::firewall::Transaction as _;
    use crate::firewall::programs::{self, Variant, Xtables};
    use crate::net::Proto;
    use crate::ruleset::Ruleset;

    /// [`crate::testns`]: `nft` processes spawned from its thread inherit
    /// its namespace.
    fn in_private_netns<T: Send + 'static>(test: impl AsyncFnOnce() -> T + Send + 'static) -> T {
        crate::testns::block_on_in_private_netns(&[NFT], test)
    }

    fn golden_files() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-nft");
        let mut files: Vec<PathBuf> = std::fs::read_dir(root)
            .expect("tests/golden-nft exists")
            .map(|e| e.expect("readable entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "nft"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no nft golden files found");
        files
    }

    async fn apply_and_list(ruleset: &Ruleset) -> Applied {
        apply(&render(ruleset).expect("renders"))
            .await
            .expect("nft applies it");
        let listing = list().await.expect("lists").expect("the table is there");
        Applied::new(ruleset.clone(), &listing)
    }

    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn every_golden_file_is_accepted_by_nft() {
        in_private_netns(async || {
            for file in golden_files() {
                let path = file.to_str().expect("utf-8 path");
                if let Err(err) = run(NFT, &["-c", "-f", path], None).await {
                    panic!("{path}: {err}");
                }
            }
        });
    }

    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn applies_are_idempotent_and_uninstall_removes_the_table() {
        in_private_netns(async || {
            assert_eq!(list().await.expect("lists"), None);
            for case in fixtures::golden_cases() {
                let ruleset = fixtures::planned(&case);
                let first = apply_and_list(&ruleset).await;
                let second = apply_and_list(&ruleset).await;
                assert_eq!(first, second, "{}: listing changed", case.display());
                let now = list().await.expect("lists");
                assert_eq!(
                    reason_to_apply(&ruleset, Some(&second), now.as_deref()),
                    None
                );
            }
            apply(&uninstall_text()).await.expect("uninstalls");
            assert_eq!(list().await.expect("lists"), None);
            apply(&uninstall_text())
                .await
                .expect("uninstalling nothing is fine");
        });
    }

    /// With `--log-drops`, each golden plan's table is accepted, lists the
    /// same after a second apply, and its counters are read by origin.
    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn logged_drops_are_accepted_and_their_counters_read() {
        in_private_netns(async || {
            for case in fixtures::golden_cases() {
                let ruleset = crate::plan::with_drop_logging(fixtures::planned(&case));
                let first = apply_and_list(&ruleset).await;
                let second = apply_and_list(&ruleset).await;
                assert_eq!(first, second, "{}: listing changed", case.display());
                let listing = list().await.expect("lists").expect("table");
                // Each entry's drop jumps to the counting chain, logged first;
                // each published port is counted there by its set element,
                // as nft lists it, and not logged.
                let drops = listing.matches(" jump dropped comment \"dockfw ").count();
                let logs = listing.matches(" log prefix \"dockfw ").count();
                // The [outbound] and [east_west] tables' entries count
                // their drops where they drop, logged first too.
                let outbound = listing.matches(" drop comment \"dockfw ").count();
                assert!(drops > 0 && logs == drops + outbound, "{listing}");
                let ports: usize = (Family::ALL.iter())
                    .flat_map(|f| &ruleset.family(*f).drop_ports)
                    .map(|set| set.ports.len())
                    .sum();
                let counted = Nftables::new().drop_counters(&Some(listing));
                let elements = counted.iter().filter(|c| c.is_element()).count();
                assert_eq!(
                    counted.len(),
                    drops + outbound + ports,
                    "{}",
                    case.display()
                );
                assert_eq!(elements, ports, "{}", case.display());
            }
        });
    }

    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn drift_and_a_deleted_table_are_seen() {
        in_private_netns(async || {
            let ruleset = fixtures::planned(&fixtures::golden_cases()[0]);
            let applied = apply_and_list(&ruleset).await;
            apply(&format!(
                "add rule {TABLE_FAMILY} {TABLE_NAME} inbound drop\n"
            ))
            .await
            .expect("adds a rule");
            let now = list().await.expect("lists");
            assert_eq!(
                reason_to_apply(&ruleset, Some(&applied), now.as_deref()),
                Some(Reason::Drift)
            );
            apply(&format!("delete table {TABLE_FAMILY} {TABLE_NAME}\n"))
                .await
                .expect("deletes");
            let now = list().await.expect("lists");
            assert_eq!(
                reason_to_apply(&ruleset, Some(&applied), now.as_deref()),
                Some(Reason::TableMissing)
            );
        });
    }

    /// The plan of the golden case with sets.
    fn sets_case() -> Ruleset {
        let case = fixtures::golden_cases()
            .into_iter()
            .find(|c| c.ends_with("sets"))
            .expect("the sets case");
        fixtures::planned(&case)
    }

    /// `sets_case` with one more address in `allow-1-v4`.
    fn one_more_address(base: &Ruleset, address: &str) -> Ruleset {
        let mut more = base.clone();
        let selected = more.v4.sets.iter_mut().find(|s| s.name == "allow-1-v4");
        let selected = selected.expect("allow-1-v4");
        selected.elements.insert(address.parse().expect("net"));
        more
    }

    /// A transaction carries the plan its apply records: a first one
    /// writes the whole table of its own plan, and says why.
    #[test]
    fn a_first_transaction_writes_the_whole_table_of_its_plan() {
        let base = sets_case();
        let fw = Nftables::new();
        let txs = fw.transactions(&base, &None).expect("plans");
        let [tx] = txs.as_slice() else {
            panic!("one transaction: {txs:?}")
        };
        assert_eq!(tx.reason, Some(Reason::FirstApply));
        assert_eq!(
            tx.write,
            Write::Table {
                script: render(&base).expect("renders"),
                ruleset: base.clone(),
            }
        );
        assert!(tx.changes.rewrote_rules);
        assert_eq!(tx.family(), None);
        assert!(tx.summary().ends_with(" (first apply)"), "{}", tx.summary());
        assert_eq!(
            fw.element_update(&base, &base, &Family::ALL),
            None,
            "nothing applied by this process: no fast path"
        );
    }

    /// Two element transactions handed out one after the other each keep
    /// their own plans: applying the first records the first's elements
    /// (a side table of the last one handed out would not know it).
    #[test]
    fn each_element_transaction_carries_its_own_plans() {
        let base = sets_case();
        let fw = Nftables::new();
        *fw.applied.lock().expect("lock") = Some(Applied::new(base.clone(), ""));
        let first = one_more_address(&base, "172.17.0.9/32");
        let second = one_more_address(&base, "172.17.0.10/32");
        let txs = fw.element_update(&first, &base, &Family::ALL);
        let [tx] = txs.as_deref().expect("same rules") else {
            panic!("one transaction: {txs:?}")
        };
        let later = fw.element_update(&second, &base, &Family::ALL);
        assert_eq!(later.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            tx.write,
            Write::Elements {
                ruleset: first.clone(),
                before: Box::new(base.clone()),
            }
        );
        assert_eq!(
            tx.script(),
            "flush set inet dockfw allow_1_v4\n\
             add element inet dockfw allow_1_v4 { 172.17.0.2, 172.17.0.3, 172.17.0.9 }\n"
        );
        assert!(!tx.changes.rewrote_rules);
        assert_eq!(
            tx.summary(),
            "+0 -0 rules, +1 -0 set elements (set elements changed)"
        );
        assert_eq!(fw.element_update(&first, &first, &Family::ALL), None);
    }

    /// Known changes are taken only from the plan last applied, kept in
    /// step with them; changes the table does not hold (drop endpoints
    /// alone) write nothing and are recorded at once, so the next changes
    /// still find the two plans in step.
    #[test]
    fn known_changes_keep_the_applied_plan_in_step() {
        use crate::ruleset::DropEndpoint;
        let base = sets_case();
        let fw = Nftables::new();
        *fw.applied.lock().expect("lock") = Some(Applied::new(base.clone(), ""));
        let first = one_more_address(&base, "172.17.0.9/32");
        let changes = first.changes_from(&base);
        let txs = fw.element_changes(&changes, &first, &base, &Family::ALL);
        let [tx] = txs.as_deref().expect("in step") else {
            panic!("one transaction: {txs:?}")
        };
        assert!(matches!(&tx.write, Write::Changes { batch, .. } if batch.len() == 1));
        assert_eq!(
            tx.summary(),
            "+0 -0 rules, +1 -0 set elements (set elements changed)"
        );
        // Not applied: the same changes again still turn elements over.
        assert!(
            fw.element_changes(&changes, &first, &base, &Family::ALL)
                .is_some()
        );
        let endpoint = DropEndpoint {
            proto: Proto::Tcp,
            addr: "172.17.0.2".parse().expect("address"),
            port: 80,
            published: 8080,
        };
        let mut with_endpoint = base.clone();
        with_endpoint.v4.drop_endpoints.insert(endpoint);
        let only_endpoint = with_endpoint.changes_from(&base);
        assert_eq!(
            fw.element_changes(&only_endpoint, &with_endpoint, &base, &Family::ALL),
            Some(Vec::new()),
            "nothing to write"
        );
        let applied = fw.applied.lock().expect("lock");
        let recorded = applied.as_ref().expect("applied").ruleset();
        assert_eq!(*recorded, with_endpoint, "recorded at once");
        drop(applied);
        // Out of step (the endpoint joined already): a comparison decides.
        assert_eq!(
            fw.element_changes(&only_endpoint, &with_endpoint, &base, &Family::ALL),
            None
        );
    }

    /// A container coming or going changes set elements only: one
    /// transaction gives the changed sets their elements, and leaves the
    /// table exactly as writing it whole would.
    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn only_set_elements_are_written_when_only_they_differ() {
        in_private_netns(async || {
            let base = sets_case();
            let fw = Nftables::new();
            let apply_all = async |desired: &Ruleset| {
                let now = list().await.expect("lists");
                let txs = fw.transactions(desired, &now).expect("plans");
                for tx in &txs {
                    fw.apply(tx).await.expect("applies");
                }
                txs
            };
            apply_all(&base).await;
            let mut more = base.clone();
            let selected = more.v4.sets.iter_mut().find(|s| s.name == "allow-1-v4");
            let selected = selected.expect("allow-1-v4");
            selected
                .elements
                .insert("172.17.0.9/32".parse().expect("net"));
            let txs = apply_all(&more).await;
            assert_eq!(txs.len(), 1);
            assert_eq!(txs[0].reason, Some(Reason::SetElements));
            assert_eq!(
                txs[0].script(),
                "flush set inet dockfw allow_1_v4\n\
                 add element inet dockfw allow_1_v4 { 172.17.0.2, 172.17.0.3, 172.17.0.9 }\n"
            );
            assert!(apply_all(&more).await.is_empty(), "in place");
            let by_elements = list().await.expect("lists").expect("table");
            apply(&render(&more).expect("renders"))
                .await
                .expect("applies");
            let whole = list().await.expect("lists").expect("table");
            assert_eq!(
                installed::normalise(&by_elements),
                installed::normalise(&whole)
            );
            assert_eq!(
                installed::listed_elements(&by_elements),
                installed::listed_elements(&whole)
            );
            // An element taken out by someone else, after an element-only
            // write that read nothing back, is drift.
            apply_all(&base).await;
            apply_all(&more).await;
            apply("delete element inet dockfw allow_1_v4 { 172.17.0.9 }\n")
                .await
                .expect("deletes");
            let txs = apply_all(&more).await;
            assert_eq!(txs.len(), 1);
            assert_eq!(txs[0].reason, Some(Reason::Drift));
            assert!(apply_all(&more).await.is_empty(), "repaired");
        });
    }

    /// Elements written over netlink are what nft lists, adjacent hosts
    /// and removals included; a batch naming a set the table lacks is
    /// refused whole.
    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn set_elements_are_written_over_netlink() {
        in_private_netns(async || {
            let base = sets_case();
            apply(&render(&base).expect("renders"))
                .await
                .expect("applies");
            let mut more = base.clone();
            let selected = more.v4.sets.iter_mut().find(|s| s.name == "allow-1-v4");
            let selected = selected.expect("allow-1-v4");
            let first = *selected.elements.iter().next().expect("an element");
            selected.elements.remove(&first);
            for host in ["172.17.0.9/32", "172.17.0.10/32", "10.9.0.0/16"] {
                selected.elements.insert(host.parse().expect("net"));
            }
            if let Some(ports) = more.v4.port_sets.first_mut() {
                ports.ports.insert(8443);
            }
            let changes = netlink::changes(&more, &base).expect("changes");
            netlink::write(&changes).expect("written");
            let listed = list().await.expect("lists").expect("table");
            assert_eq!(
                installed::listed_elements(&listed),
                installed::planned_elements(&more)
            );
            // And back.
            netlink::write(&netlink::changes(&base, &more).expect("changes")).expect("written");
            let listed = list().await.expect("lists").expect("table");
            assert_eq!(
                installed::listed_elements(&listed),
                installed::planned_elements(&base)
            );
            let mut missing = changes.clone();
            missing[0].set = "no_such_set".to_owned();
            missing.extend(changes);
            assert!(netlink::write(&missing).is_err(), "refused");
            let listed = list().await.expect("lists").expect("table");
            assert_eq!(
                installed::listed_elements(&listed),
                installed::planned_elements(&base),
                "nothing of a refused batch is written"
            );
        });
    }

    /// A port published is an element written over netlink: it gets the
    /// set's counter from the kernel, at zero, and the elements already
    /// there keep what they counted.
    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn drop_port_elements_are_written_over_netlink_with_their_own_counters() {
        in_private_netns(async || {
            let base = sets_case();
            apply(&render(&base).expect("renders"))
                .await
                .expect("applies");
            let set = format!("{TABLE_FAMILY} {TABLE_NAME} dropped_tcp_v4");
            apply(&format!(
                "delete element {set} {{ 5432 }}\nadd element {set} {{ 5432 counter packets 5 bytes 300 }}\n"
            ))
            .await
            .expect("counts 5 for 5432");
            let mut more = base.clone();
            let ports = more
                .v4
                .drop_ports
                .iter_mut()
                .find(|s| s.name == "dropped-tcp-v4");
            ports.expect("dropped-tcp-v4").ports.insert(8443);
            netlink::write(&netlink::changes(&more, &base).expect("changes")).expect("written");
            let listed = list().await.expect("lists").expect("table");
            let counted = installed::drop_port_counters(&listed);
            assert!(
                counted.contains(&(Family::V4, Proto::Tcp, 5432, 5)),
                "{listed}"
            );
            assert!(
                counted.contains(&(Family::V4, Proto::Tcp, 8443, 0)),
                "{listed}"
            );
            assert_eq!(
                installed::listed_elements(&listed),
                installed::planned_elements(&more)
            );
        });
    }

    /// The kernel, not nft, refuses a jump to a base chain: the delete that
    /// came first in the same transaction must be undone with it.
    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn a_refused_transaction_leaves_the_table_as_it_was() {
        in_private_netns(async || {
            let ruleset = fixtures::planned(&fixtures::golden_cases()[0]);
            let applied = apply_and_list(&ruleset).await;
            let refused = render(&ruleset).expect("renders").replacen(
                "counter jump inbound",
                "counter jump input",
                1,
            );
            let err = apply(&refused).await.expect_err("the kernel refuses it");
            assert!(
                matches!(&err, FirewallError::Failed { stderr, .. } if stderr.contains("jump input")),
                "{err}"
            );
            let now = list().await.expect("lists");
            assert_eq!(
                reason_to_apply(&ruleset, Some(&applied), now.as_deref()),
                None
            );
        });
    }

    /// How long one apply takes, nft against iptables-nft-restore (one
    /// restore per family, as the iptables driver runs them), for a small
    /// and a large plan: into an empty namespace ("create") and over the
    /// same content ("replace"), and how long reading it back takes. Prints
    /// medians; asserts nothing about time. Run with
    /// `cargo test --lib nftables::tests::apply_times -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn apply_times() {
        in_private_netns(async || {
            for (containers, networks) in [(2, 1), (2400, 4)] {
                let ruleset = fixtures::synthetic(containers, networks);
                let rules = ruleset.v4.rule_count() + ruleset.v6.rule_count();
                let text = render(&ruleset).expect("renders");
                let nft_create = median(async || {
                    apply(&uninstall_text()).await.expect("uninstalls");
                    timed(apply(&text)).await
                })
                .await;
                let nft_replace = median(async || timed(apply(&text)).await).await;
                let nft_list = median(async || timed(list()).await).await;
                apply(&uninstall_text()).await.expect("uninstalls");

                let families = [
                    (Family::V4, iptables_text(&ruleset.v4)),
                    (Family::V6, iptables_text(&ruleset.v6)),
                ];
                let xtables = |family, tool| programs::xtables(family, Variant::Nft, tool);
                // The ipsets the rules name, made once: what is timed is
                // the rules' restore.
                let ipsets = programs::IPSET;
                for rules in [&ruleset.v4, &ruleset.v6] {
                    let none = Default::default();
                    let sets = crate::firewall::iptables::sets::update(rules, &none, false);
                    if let Some(text) = sets.before {
                        run(ipsets, &["restore"], Some(&text))
                            .await
                            .expect("ipset restores");
                    }
                }
                let restore = async || {
                    for (family, text) in &families {
                        run(
                            xtables(*family, Xtables::Restore),
                            &["--noflush"],
                            Some(text),
                        )
                        .await
                        .expect("restores");
                    }
                };
                let ipt_create = median(async || {
                    apply(IPTABLES_NFT_TABLES).await.expect("removes them");
                    timed(restore()).await
                })
                .await;
                let ipt_replace = median(async || timed(restore()).await).await;
                let ipt_save = median(async || {
                    timed(async {
                        for (family, _) in &families {
                            run(xtables(*family, Xtables::Save), &[], None)
                                .await
                                .expect("saves");
                        }
                    })
                    .await
                })
                .await;
                apply(IPTABLES_NFT_TABLES).await.expect("removes them");
                run(ipsets, &["destroy"], None)
                    .await
                    .expect("destroys the ipsets");
                println!(
                    "{rules} plan rules: nft -f create {nft_create:?} replace {nft_replace:?}, \
                     nft -s list {nft_list:?}; iptables-nft-restore v4+v6 create \
                     {ipt_create:?} replace {ipt_replace:?}, iptables-nft-save v4+v6 {ipt_save:?}"
                );
            }
        });
    }

    /// Removes the tables iptables-nft made, if any.
    const IPTABLES_NFT_TABLES: &str = "table ip filter {}\ndelete table ip filter\ntable ip6 filter {}\ndelete table ip6 filter\n";

    fn iptables_text(rules: &crate::ruleset::FamilyRules) -> String {
        let mut text = String::from("*filter\n");
        for chain in &rules.chains {
            text.push_str(&format!(":{} - [0:0]\n", chain.name));
        }
        text.push_str(&crate::firewall::iptables::render::rules_text(rules));
        text.push_str("COMMIT\n");
        text
    }

    async fn timed<T>(work: impl Future<Output = T>) -> Duration {
        let start = Instant::now();
        work.await;
        start.elapsed()
    }

    /// The median of 7 samples.
    async fn median(mut sample: impl AsyncFnMut() -> Duration) -> Duration {
        let mut times = Vec::with_capacity(7);
        for _ in 0..7 {
            times.push(sample().await);
        }
        times.sort();
        times[3]
    }
}
