//! The iptables driver: reads each family's `filter` table with
//! `iptables-save` and installs restore text with one `iptables-restore
//! --noflush` per family, in the variant (nft or legacy) that holds
//! Docker's chains; dockfw's address sets are ipsets, read by name (`ipset
//! list -n`, then `save` of its own sets alone, never another tool's
//! elements) and written with `ipset restore` around the rules' restore. What
//! to write is decided by [`render`] and [`sets`], what is installed by
//! [`installed`]; this file makes the driver's [`Transaction`] of steps,
//! picks the variant and pipes.

pub mod installed;
pub mod render;
pub mod sets;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use self::installed::Installed;
use self::render::Jumps;
use self::sets::{SavedSet, Texts};
pub use super::programs::Variant;
use super::programs::{self, Xtables};
use super::{Backend, Changes, DropCounter, FirewallError, Notice, Observation, run};
use crate::choice::BackendKind;
use crate::net::Family;
use crate::ruleset::{ElementChange, FamilyRules, Ruleset};

/// One change of the iptables driver: its steps, each atomic on its own,
/// run in order (the sets the rules will name, the rules' restore, the
/// sets' final contents); a failed step ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The family whose restore program runs the rules; `None` for sets
    /// alone of both families, which ipset keeps without families.
    pub family: Option<Family>,
    pub steps: Vec<Step>,
    pub changes: Changes,
    pub jumps: Jumps,
}

/// One atomic run of one of the driver's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `ipset restore` input.
    Sets(String),
    /// `iptables-restore --noflush` input.
    Rules(String),
}

impl super::Transaction for Transaction {
    fn family(&self) -> Option<Family> {
        self.family
    }

    fn changes(&self) -> &Changes {
        &self.changes
    }

    fn summary(&self) -> String {
        format!("{}{}", self.changes, self.jumps)
    }

    fn notices(&self) -> Vec<Notice> {
        self.jumps.notices()
    }

    /// The steps' inputs, in order; each under a comment naming it when
    /// there is more than one.
    fn script(&self) -> String {
        match self.steps.as_slice() {
            [Step::Sets(text) | Step::Rules(text)] => text.clone(),
            steps => steps
                .iter()
                .map(|step| match step {
                    Step::Sets(text) => format!("# sets:\n{text}"),
                    Step::Rules(text) => format!("# rules:\n{text}"),
                })
                .collect(),
        }
    }
}

/// The real backend: `iptables-{nft,legacy}-{save,restore}` processes.
#[derive(Debug, Default)]
pub struct Iptables {
    /// The variant chosen per family ([v4, v6]); re-chosen whenever the
    /// chosen one stops showing Docker's chains (e.g. Docker switched).
    chosen: Mutex<[Option<Variant>; 2]>,
    /// How many ipset checks ran ([`Backend::sets_drifted`]): every
    /// [`CONTENTS_EVERY`]th compares elements, the others headers alone.
    set_checks: AtomicU32,
    /// dockfw's address and port sets as this process last read them
    /// (the drop sets aside: their counters only a read shows), with the
    /// element edits it ran since ([`sets::remember_edits`]): what an
    /// observation takes for a set whose header (type, number of entries)
    /// is as this says, rather than listing its elements again. A change
    /// that keeps the number of entries is found by the ipset check that
    /// compares elements ([`CONTENTS_EVERY`]), which refreshes this.
    known_sets: Mutex<BTreeMap<String, SavedSet>>,
    /// The plan's address set elements as ipset prints them, kept from
    /// one comparison with the installed sets to the next
    /// ([`sets::Texts`]): an observing pass beside 1,000 containers makes
    /// text of what changed, not of the 1,000.
    texts: Mutex<Texts>,
}

/// How often the ipset check compares the sets' elements: every tenth
/// check (15 s at the daemon's 1.5 s); the others read the sets' headers
/// alone, whose type and number of entries find a set destroyed, flushed,
/// remade or with an element added or removed, and cost the same whatever
/// the sets hold. What keeps the number (one element deleted and another
/// added between two checks) waits for the next comparison of elements.
const CONTENTS_EVERY: u32 = 10;

fn slot(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// Whether a save shows chains Docker makes.
fn has_docker_chains(installed: &Installed) -> bool {
    installed.has_chain("DOCKER") || installed.has_chain("DOCKER-USER")
}

impl Iptables {
    pub fn new() -> Iptables {
        Iptables::default()
    }

    fn cached(&self, family: Family) -> Option<Variant> {
        self.chosen.lock().map(|c| c[slot(family)]).unwrap_or(None)
    }

    fn remember(&self, family: Family, variant: Variant) {
        if let Ok(mut c) = self.chosen.lock() {
            c[slot(family)] = Some(variant);
        }
    }

    async fn save(&self, family: Family, variant: Variant) -> Result<Installed, FirewallError> {
        // The filter table only, where every chain dockfw reads lives;
        // with each rule's counters, for the drops.
        let out = run(
            programs::xtables(family, variant, Xtables::Save),
            &["-c", "-t", "filter"],
            None,
        )
        .await?;
        Ok(Installed::parse(&out))
    }

    /// Pick the variant holding Docker's chains, trying first the one the
    /// system's `iptables` is (the one Docker runs), so the other variant's
    /// tables are not even loaded on hosts where it is unused. With Docker's
    /// chains nowhere: the IPv4 choice (for IPv6), else that default.
    async fn choose(&self, family: Family) -> Result<(Variant, Installed), FirewallError> {
        let preferred = default_variant().await;
        let other = match preferred {
            Variant::Nft => Variant::Legacy,
            Variant::Legacy => Variant::Nft,
        };
        let first = self.save(family, preferred).await;
        if let Ok(st) = &first
            && has_docker_chains(st)
        {
            return first.map(|st| (preferred, st));
        }
        let second = self.save(family, other).await;
        if let Ok(st) = &second
            && has_docker_chains(st)
        {
            return second.map(|st| (other, st));
        }
        if family == Family::V6
            && let Some(variant) = self.cached(Family::V4)
        {
            return Ok((variant, self.save(family, variant).await?));
        }
        match first {
            Ok(st) => Ok((preferred, st)),
            Err(e) => second.map(|st| (other, st)).map_err(|_| e),
        }
    }
}

/// The variant the system's `iptables` is (`iptables -V` says `nf_tables` or
/// `legacy`); nft when it cannot tell.
async fn default_variant() -> Variant {
    match run(programs::IPTABLES, &["-V"], None).await {
        Ok(version) if version.contains("legacy") => Variant::Legacy,
        _ => Variant::Nft,
    }
}

impl Iptables {
    /// What is installed now in `family`'s filter table.
    pub async fn read(&self, family: Family) -> Result<Installed, FirewallError> {
        if family == Family::V6 && !std::path::Path::new("/proc/net/if_inet6").exists() {
            return Err(FirewallError::Unavailable {
                family: family.as_str(),
            });
        }
        if let Some(variant) = self.cached(family) {
            let st = self.save(family, variant).await?;
            if has_docker_chains(&st) {
                return Ok(st);
            }
        }
        let (variant, st) = self.choose(family).await?;
        self.remember(family, variant);
        Ok(st)
    }

    /// Install `text` atomically (`--noflush`).
    pub async fn restore(&self, family: Family, text: &str) -> Result<(), FirewallError> {
        let variant = match self.cached(family) {
            Some(v) => v,
            None => {
                let (v, _) = self.choose(family).await?;
                self.remember(family, v);
                v
            }
        };
        let program = programs::xtables(family, variant, Xtables::Restore);
        run(program, &["--noflush", "--wait", "10"], Some(text))
            .await
            .map(drop)
    }

    fn variant_of(&self, family: Family) -> Option<&'static str> {
        self.cached(family).map(Variant::as_str)
    }
}

impl Iptables {
    /// All of dockfw's ipsets now, and no other tool's: their names from
    /// `ipset list -n` (which reads no elements), their headers (`list NAME
    /// -t`: type, number of entries), then in one `ipset restore` of `save`
    /// commands those sets alone whose elements this process does not
    /// know already ([`Iptables::known_sets`]: what it read or edited
    /// last, with the header read now). `ipset save` would list every set
    /// on the host: a 100,000-element blocklist of another tool costs it
    /// tens of ms. A set of dockfw's destroyed between the runs fails a
    /// later one: listed again, once. None where `ipset` is not installed
    /// (a plan that needs sets then fails at its apply, saying so).
    async fn read_sets(&self) -> Result<BTreeMap<String, SavedSet>, FirewallError> {
        if !std::path::Path::new(programs::IPSET).exists() {
            return Ok(BTreeMap::new());
        }
        match self.list_and_read().await {
            Ok(saved) => Ok(saved),
            Err(_) => self.list_and_read().await,
        }
    }

    /// `ipset list -n`, then dockfw's sets among them: their headers, and
    /// the elements of those not known with that header.
    async fn list_and_read(&self) -> Result<BTreeMap<String, SavedSet>, FirewallError> {
        let list = run(programs::IPSET, &["list", "-n"], None).await?;
        let names = sets::own_names(&list);
        let Some(script) = sets::header_script(names.iter().copied()) else {
            return Ok(BTreeMap::new());
        };
        let headers =
            sets::parse_headers(&run(programs::IPSET, &["restore"], Some(&script)).await?);
        let mut read = self.known_as(&headers);
        let saved = save_sets(names.into_iter().filter(|n| !read.contains_key(*n))).await?;
        self.remember_sets(&saved);
        read.extend(saved);
        Ok(read)
    }

    /// The sets of [`Iptables::known_sets`] whose header is the one in
    /// `headers`; a set not there any more is forgotten.
    fn known_as(&self, headers: &BTreeMap<String, sets::SetHeader>) -> BTreeMap<String, SavedSet> {
        let Ok(mut known) = self.known_sets.lock() else {
            return BTreeMap::new();
        };
        known.retain(|name, _| headers.contains_key(name));
        let same = |name: &String, set: &SavedSet| {
            headers
                .get(name)
                .is_some_and(|h| h.kind == set.kind && h.entries == set.elements.len())
        };
        (known.iter())
            .filter(|(name, set)| same(name, set))
            .map(|(name, set)| (name.clone(), set.clone()))
            .collect()
    }

    /// Run `compare` with the kept [`Iptables::texts`] (with fresh ones
    /// if a panic poisoned them: the same answer, made whole).
    fn with_texts<T>(&self, compare: impl FnOnce(&mut Texts) -> T) -> T {
        match self.texts.lock() {
            Ok(mut texts) => compare(&mut texts),
            Err(_) => compare(&mut Texts::default()),
        }
    }

    /// Keep what was just read of dockfw's sets, but the drop sets (their
    /// counters move with every drop: only a read shows them).
    fn remember_sets(&self, saved: &BTreeMap<String, SavedSet>) {
        if let Ok(mut known) = self.known_sets.lock() {
            let kept = saved.iter().filter(|(name, _)| !sets::is_drop_set(name));
            known.extend(kept.map(|(name, set)| (name.clone(), set.clone())));
        }
    }

    /// Run one `ipset restore` of dockfw's and follow it in
    /// [`Iptables::known_sets`]; after a failure nothing is known (how
    /// far it ran is not).
    async fn restore_sets(&self, script: &str) -> Result<(), FirewallError> {
        let ran = run(programs::IPSET, &["restore"], Some(script)).await;
        if let Ok(mut known) = self.known_sets.lock() {
            match ran {
                Ok(_) => sets::remember_edits(&mut known, script),
                Err(_) => known.clear(),
            }
        }
        ran.map(drop)
    }

    /// Whether the elements of the ipsets `in_place` names in `families`
    /// differ from the plan's (they are saved, and remembered; a set
    /// missing fails it, a difference too).
    async fn contents_drifted(
        &self,
        in_place: &Ruleset,
        families: &[Family],
        names: &[String],
    ) -> bool {
        match save_sets(names.iter().map(String::as_str)).await {
            Ok(installed) => {
                self.remember_sets(&installed);
                self.with_texts(|texts| sets_differ_with(in_place, families, &installed, texts))
            }
            Err(_) => true,
        }
    }
}

/// The ipsets `names` as `ipset save` lists them, in one `ipset restore`
/// ([`sets::save_script`]); fails when one of them does not exist.
async fn save_sets<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, SavedSet>, FirewallError> {
    let Some(script) = sets::save_script(names) else {
        return Ok(BTreeMap::new());
    };
    Ok(sets::parse_save(
        &run(programs::IPSET, &["restore"], Some(&script)).await?,
    ))
}

/// Whether the headers of the ipsets `in_place` names in `families` differ
/// from the plan's (one `ipset restore` of `list NAME -t` lines; a set
/// missing fails it, a difference too).
async fn headers_drifted(in_place: &Ruleset, families: &[Family], names: &[String]) -> bool {
    let Some(script) = sets::header_script(names.iter().map(String::as_str)) else {
        return false;
    };
    match run(programs::IPSET, &["restore"], Some(&script)).await {
        Ok(list) => headers_differ(in_place, families, &sets::parse_headers(&list)),
        Err(_) => true,
    }
}

/// What is installed per family ([v4, v6]; `None` where unavailable or
/// unreadable).
#[derive(Debug, Clone, Default)]
pub struct Tables(pub [Option<Installed>; 2]);

impl Tables {
    pub fn get(&self, family: Family) -> Option<&Installed> {
        self.0[slot(family)].as_ref()
    }

    pub fn set(&mut self, family: Family, installed: Installed) {
        self.0[slot(family)] = Some(installed);
    }
}

/// One transaction per family whose installed rules or sets differ from
/// `desired`: the sets it will name, the rules' restore (only when rules
/// or jumps differ: a container coming or going changes set elements
/// only), then the sets' final contents and the destruction of sets no
/// rule names any more. Pure; shared with test doubles that simulate
/// restores.
pub fn transactions(desired: &Ruleset, observed: &Tables) -> Vec<Transaction> {
    transactions_with(desired, observed, &mut Texts::default())
}

/// [`transactions`], the plan's set elements made text as `texts` keeps
/// them ([`sets::update_with`]): what the backend runs at each observing
/// pass, whose cost then follows what changed, not what the sets hold.
pub fn transactions_with(
    desired: &Ruleset,
    observed: &Tables,
    texts: &mut Texts,
) -> Vec<Transaction> {
    Family::ALL
        .into_iter()
        .filter_map(|family| {
            let installed = observed.get(family)?;
            let wanted = desired.family(family);
            let restore = render::transaction(wanted, installed);
            let sets = sets::update_with(wanted, &installed.sets, restore.is_some(), texts);
            let (mut changes, jumps) = restore
                .as_ref()
                .map(|r| (r.changes.clone(), r.jumps))
                .unwrap_or_default();
            changes.elements_added = sets.added;
            changes.elements_removed = sets.removed;
            let steps = [
                sets.before.map(Step::Sets),
                restore.map(|r| Step::Rules(r.text)),
                sets.after.map(Step::Sets),
            ];
            family_transaction(family, steps, changes, jumps)
        })
        .collect()
}

/// The set-only transaction from `in_place` to `desired` in `families`,
/// when the rules of both are the same (see [`Backend::element_update`]):
/// the elements that change, added or removed, as [`sets::update`] writes
/// them for sets installed exactly as `in_place` has them
/// ([`sets::edits`]); both families' sets in one
/// `ipset restore` (ipset has no families; the transaction's scope is
/// `both`). Pure.
pub fn element_update(
    desired: &Ruleset,
    in_place: &Ruleset,
    families: &[Family],
) -> Option<Vec<Transaction>> {
    if !desired.same_rules(in_place) {
        return None;
    }
    let mut text = String::new();
    let mut changes = Changes::default();
    for &family in families {
        let (wanted, had) = (desired.family(family), in_place.family(family));
        let same_drops =
            wanted.drop_ports == had.drop_ports && wanted.drop_endpoints == had.drop_endpoints;
        if wanted.sets == had.sets && wanted.port_sets == had.port_sets && same_drops {
            continue;
        }
        let update = sets::edits(wanted, had);
        changes.elements_added += update.added;
        changes.elements_removed += update.removed;
        text.extend(update.before);
    }
    let transaction = (!text.is_empty()).then(|| Transaction {
        family: None,
        steps: vec![Step::Sets(text)],
        changes,
        jumps: Jumps::default(),
    });
    Some(transaction.into_iter().collect())
}

/// [`element_update`] from the element changes alone ([`sets::change_edits`]):
/// the same transaction, at the cost of the changes. Pure.
pub fn element_changes(
    changes: &[ElementChange],
    desired: &Ruleset,
    in_place: &Ruleset,
    families: &[Family],
) -> Vec<Transaction> {
    let mut text = String::new();
    let mut counts = Changes::default();
    for &family in families {
        let of_family: Vec<&ElementChange> = (changes.iter())
            .filter(|c| c.element.family() == family)
            .collect();
        if of_family.is_empty() {
            continue;
        }
        let update =
            sets::change_edits(&of_family, desired.family(family), in_place.family(family));
        counts.elements_added += update.added;
        counts.elements_removed += update.removed;
        text.extend(update.before);
    }
    let transaction = (!text.is_empty()).then(|| Transaction {
        family: None,
        steps: vec![Step::Sets(text)],
        changes: counts,
        jumps: Jumps::default(),
    });
    transaction.into_iter().collect()
}

/// Whether `ruleset` has any set, which ipset holds. Pure.
pub fn has_sets(ruleset: &Ruleset) -> bool {
    Family::ALL
        .into_iter()
        .any(|f| sets::names(ruleset.family(f)).next().is_some())
}

/// Whether the ipsets `installed` (all of dockfw's, both families) differ
/// from the sets of `in_place` in `families`: one missing, of another type,
/// or with other elements. Pure.
pub fn sets_differ(
    in_place: &Ruleset,
    families: &[Family],
    installed: &BTreeMap<String, SavedSet>,
) -> bool {
    sets_differ_with(in_place, families, installed, &mut Texts::default())
}

/// [`sets_differ`], the plan's elements made text as `texts` keeps them.
pub fn sets_differ_with(
    in_place: &Ruleset,
    families: &[Family],
    installed: &BTreeMap<String, SavedSet>,
    texts: &mut Texts,
) -> bool {
    families.iter().any(|&family| {
        sets::wanted_with(in_place.family(family), texts)
            .iter()
            .any(|want| {
                installed
                    .get(&want.name)
                    .is_none_or(|have| have.kind != want.kind || *have.elements != *want.elements)
            })
    })
}

/// Whether the headers of ipsets `installed` differ from those of the sets
/// of `in_place` in `families` ([`sets::headers`]): one missing, of another
/// type, or with another number of elements. Pure.
pub fn headers_differ(
    in_place: &Ruleset,
    families: &[Family],
    installed: &BTreeMap<String, sets::SetHeader>,
) -> bool {
    families.iter().any(|&family| {
        (sets::headers(in_place.family(family)).iter())
            .any(|(name, want)| installed.get(name) != Some(want))
    })
}

/// The rules above `FORWARD -> DOCKER-USER` that may accept a connection
/// before dockfw sees it, per family ([`Installed::forward_bypasses`]). Pure.
pub fn forward_bypasses(observed: &Tables) -> Vec<(Family, String)> {
    Family::ALL
        .into_iter()
        .filter_map(|family| Some((family, observed.get(family)?)))
        .flat_map(|(family, installed)| {
            installed
                .forward_bypasses()
                .into_iter()
                .map(move |rule| (family, rule.to_owned()))
        })
        .collect()
}

/// The counters of dockfw's drop rules in both families, and of the
/// elements of its drop sets ([`sets::drop_counters`]). Pure.
pub fn drop_counters(observed: &Tables) -> Vec<DropCounter> {
    Family::ALL
        .into_iter()
        .filter_map(|family| Some((family, observed.get(family)?)))
        .flat_map(|(family, installed)| {
            let rules =
                installed
                    .drop_counters()
                    .into_iter()
                    .map(move |(rule, origin, packets)| DropCounter {
                        scope: Some(family),
                        rule,
                        origin,
                        packets,
                        shared_with: Vec::new(),
                    });
            rules.chain(sets::drop_counters(&installed.sets))
        })
        .collect()
}

/// dockfw's sets and chains of both families ([`render::listing`]). Pure.
pub fn render_all(desired: &Ruleset) -> String {
    Family::ALL
        .iter()
        .map(|f| format!("# {}\n{}", f.as_str(), render::listing(desired.family(*f))))
        .collect()
}

/// A transaction of `family` from the steps that have something to run, in
/// order; `None` when none has.
fn family_transaction<const N: usize>(
    family: Family,
    steps: [Option<Step>; N],
    changes: Changes,
    jumps: Jumps,
) -> Option<Transaction> {
    let steps: Vec<Step> = steps.into_iter().flatten().collect();
    (!steps.is_empty()).then_some(Transaction {
        family: Some(family),
        steps,
        changes,
        jumps,
    })
}

/// One transaction per family that holds anything of dockfw's: its rules
/// and chains go, then its sets (in use until then). Pure.
pub fn uninstall(observed: &Tables) -> Vec<Transaction> {
    Family::ALL
        .into_iter()
        .filter_map(|family| {
            let installed = observed.get(family)?;
            let steps = [
                render::uninstall(installed).map(Step::Rules),
                sets::uninstall(&installed.sets).map(Step::Sets),
            ];
            family_transaction(family, steps, Changes::default(), Jumps::default())
        })
        .collect()
}

impl Backend for Iptables {
    type Observed = Tables;
    type Transaction = Transaction;

    fn kind(&self) -> BackendKind {
        BackendKind::Iptables
    }

    fn nothing_installed(&self) -> Tables {
        let empty = Some(Installed::default());
        Tables([empty.clone(), empty])
    }

    async fn observe(&self) -> Observation<Tables> {
        let mut observation = Observation {
            observed: Tables::default(),
            unavailable: Vec::new(),
            failed: Vec::new(),
        };
        // The three reads are independent: run at once, a pass waits for
        // the slowest rather than for the sum.
        let (saved, v4, v6) = tokio::join!(
            self.read_sets(),
            self.read(Family::V4),
            self.read(Family::V6)
        );
        // Unreadable sets count as none: rewriting them is harmless, and
        // the failure is reported.
        let mut saved = saved.unwrap_or_else(|e| {
            observation.failed.push(("ipset", e));
            BTreeMap::new()
        });
        for (family, read) in [(Family::V4, v4), (Family::V6, v6)] {
            match read {
                Ok(mut st) => {
                    st.sets = saved
                        .extract_if(.., |name, _| sets::owner(name) == family)
                        .collect();
                    observation.observed.set(family, st);
                }
                Err(FirewallError::Unavailable { .. }) => observation.unavailable.push(family),
                Err(e) => observation.failed.push((family.as_str(), e)),
            }
        }
        observation
    }

    fn transactions(
        &self,
        desired: &Ruleset,
        observed: &Tables,
    ) -> Result<Vec<Transaction>, FirewallError> {
        Ok(self.with_texts(|texts| transactions_with(desired, observed, texts)))
    }

    fn element_update(
        &self,
        desired: &Ruleset,
        in_place: &Ruleset,
        families: &[Family],
    ) -> Option<Vec<Transaction>> {
        element_update(desired, in_place, families)
    }

    fn element_changes(
        &self,
        changes: &[ElementChange],
        desired: &Ruleset,
        in_place: &Ruleset,
        families: &[Family],
    ) -> Option<Vec<Transaction>> {
        Some(element_changes(changes, desired, in_place, families))
    }

    fn render(&self, desired: &Ruleset) -> String {
        render_all(desired)
    }

    /// The family's ipsets and chains, as `plan` prints them under `# ipv4`.
    fn render_family(&self, desired: &Ruleset, family: Family) -> String {
        render::listing(desired.family(family))
    }

    /// A transaction of one family, or (sets only, which ipset keeps
    /// without families) of both.
    async fn apply(&self, tx: &Transaction) -> Result<(), FirewallError> {
        for step in &tx.steps {
            match step {
                Step::Sets(text) => self.restore_sets(text).await?,
                Step::Rules(text) => {
                    let family = tx.family.ok_or(FirewallError::Scope)?;
                    self.restore(family, text).await?
                }
            }
        }
        Ok(())
    }

    fn uninstall(&self, observed: &Tables) -> Vec<Transaction> {
        uninstall(observed)
    }

    fn drop_counters(&self, observed: &Tables) -> Vec<DropCounter> {
        drop_counters(observed)
    }

    fn forward_bypasses(&self, observed: &Tables) -> Vec<(Family, String)> {
        forward_bypasses(observed)
    }

    fn variant(&self, family: Family) -> Option<&'static str> {
        self.variant_of(family)
    }

    fn has_unannounced_sets(&self, in_place: &Ruleset) -> bool {
        has_sets(in_place)
    }

    /// One `ipset restore` reading the sets `in_place` names, and no other
    /// (a set missing, or `ipset` itself, fails it: a difference too): their
    /// headers, and every [`CONTENTS_EVERY`]th time (the first included)
    /// their elements.
    async fn sets_drifted(&self, in_place: &Ruleset, families: &[Family]) -> bool {
        let names: Vec<String> = families
            .iter()
            .flat_map(|&family| sets::names(in_place.family(family)))
            .collect();
        if names.is_empty() {
            return false;
        }
        if (self.set_checks.fetch_add(1, Ordering::Relaxed)).is_multiple_of(CONTENTS_EVERY) {
            self.contents_drifted(in_place, families, &names).await
        } else {
            headers_drifted(in_place, families, &names).await
        }
    }

    /// An entry's set of port ranges is one rule per range
    /// ([`render::chain_specs`]).
    fn rule_count(&self, rules: &FamilyRules) -> usize {
        let specs = rules
            .chains
            .iter()
            .map(|c| render::chain_specs(rules, c).len());
        specs.sum()
    }

    fn announces_changes(&self) -> bool {
        Family::ALL
            .iter()
            .all(|f| self.cached(*f) != Some(Variant::Legacy))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::installed::simulate;
    use super::*;
    use crate::firewall::Transaction as _;
    use crate::inventory::Inventory;

    const DOCKER_MADE: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\nCOMMIT\n";

    const POLICY: &str = "[inbound]\ndefault = \"deny\"\n\
        [[inbound.allow]]\nports = [5432]\ncontainers = [\"db-*\"]\n\
        [[inbound.deny]]\ncontainers = [\"secret\"]\n";

    fn ruleset(policy: &str, containers: &[&str]) -> Ruleset {
        let policy = crate::policy::parse_str(policy, Path::new("p.toml")).expect("valid");
        let containers: Vec<String> = containers
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    r#"{{"id": "c{i}", "name": "{name}", "ports": [], "attachments": [
                        {{"network_id": "b", "network": "bridge", "ipv4": "172.17.0.{}", "ipv6": "fd00::{}"}}]}}"#,
                    i + 2,
                    i + 2
                )
            })
            .collect();
        let inventory = format!(
            r#"{{"bridges": [{{"id": "b", "name": "bridge", "interface": "docker0"}}],
                "containers": [{}]}}"#,
            containers.join(",")
        );
        let inventory: Inventory = serde_json::from_str(&inventory).expect("inventory");
        crate::plan::plan(&policy, &inventory)
    }

    fn empty_tables() -> Tables {
        let mut tables = Tables::default();
        for family in Family::ALL {
            tables.set(family, Installed::parse(DOCKER_MADE));
        }
        tables
    }

    /// Apply every transaction to the simulated tables; then nothing is left
    /// to do.
    fn converge(tables: &mut Tables, txs: &[Transaction]) {
        for tx in txs {
            for (family, tx) in simulate::per_family(tx) {
                let mut installed = tables.get(family).expect("installed").clone();
                simulate::apply_transaction(&mut installed, &tx).expect("applies");
                tables.set(family, installed);
            }
        }
    }

    fn kinds(tx: &Transaction) -> Vec<&'static str> {
        tx.steps
            .iter()
            .map(|s| match s {
                Step::Sets(_) => "sets",
                Step::Rules(_) => "rules",
            })
            .collect()
    }

    #[test]
    fn a_new_selected_container_changes_set_elements_and_no_rule() {
        let mut tables = empty_tables();
        let first = ruleset(POLICY, &["db-1", "web"]);
        let txs = transactions(&first, &tables);
        assert_eq!(
            txs.iter().map(kinds).collect::<Vec<_>>(),
            [["sets", "rules"], ["sets", "rules"]],
            "the sets the rules name first"
        );
        converge(&mut tables, &txs);
        assert!(transactions(&first, &tables).is_empty());

        let more = ruleset(POLICY, &["db-1", "web", "db-2"]);
        let txs = transactions(&more, &tables);
        assert_eq!(
            txs.iter().map(kinds).collect::<Vec<_>>(),
            [["sets"], ["sets"]],
            "no iptables-restore"
        );
        let v4 = &txs[0];
        assert_eq!((v4.changes.added, v4.changes.removed), (0, 0));
        assert_eq!(
            (v4.changes.elements_added, v4.changes.elements_removed),
            (2, 0),
            "allow-1 and known each gain 172.17.0.4"
        );
        assert!(
            v4.script()
                .contains("add dockfw-allow-1-v4 172.17.0.4 -exist\n")
        );
        converge(&mut tables, &txs);
        assert!(transactions(&more, &tables).is_empty());
    }

    #[test]
    fn the_fast_path_writes_from_the_plan_in_place_what_an_observing_pass_would() {
        let mut tables = empty_tables();
        let first = ruleset(POLICY, &["db-1", "web"]);
        let txs = transactions(&first, &tables);
        converge(&mut tables, &txs);
        let more = ruleset(POLICY, &["db-1", "web", "db-2"]);
        let fast = element_update(&more, &first, &Family::ALL).expect("rules are the same");
        let observed = transactions(&more, &tables);
        let scripts: String = observed.iter().map(Transaction::script).collect();
        assert_eq!(fast.len(), 1, "one ipset restore for both families");
        assert_eq!(fast[0].script(), scripts, "as if observed");
        assert_eq!(kinds(&fast[0]), ["sets"]);
        assert_eq!(fast[0].family, None);
        let v4_only = element_update(&more, &first, &[Family::V4]).expect("same rules");
        assert_eq!(v4_only.len(), 1);
        assert!(
            !v4_only[0].script().contains("-v6"),
            "{}",
            v4_only[0].script()
        );
        // The same edits from the changes alone (in another order: per set
        // by name, tightening edits first as before).
        let changes = more.changes_from(&first);
        let known = element_changes(&changes, &more, &first, &Family::ALL);
        let lines = |script: String| {
            let mut lines: Vec<String> = script.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(known.len(), 1);
        assert_eq!(lines(known[0].script()), lines(fast[0].script()));
        assert_eq!(known[0].changes, fast[0].changes);
        assert!(element_changes(&[], &more, &first, &Family::ALL).is_empty());
        converge(&mut tables, &fast);
        assert!(transactions(&more, &tables).is_empty());
        assert_eq!(element_update(&more, &more, &Family::ALL), Some(Vec::new()));
        let other_policy = ruleset("[inbound]\ndefault = \"deny\"\n", &["db-1"]);
        assert_eq!(
            element_update(&other_policy, &more, &Family::ALL),
            None,
            "the rules differ: only an observing pass may change them"
        );
    }

    #[test]
    fn a_policy_change_writes_sets_then_rules_then_removes_what_no_rule_names() {
        let mut tables = empty_tables();
        let first = ruleset(POLICY, &["db-1", "secret"]);
        let txs = transactions(&first, &tables);
        converge(&mut tables, &txs);
        let changed = "[inbound]\ndefault = \"deny\"\n\
            [[inbound.allow]]\nports = [5432]\ncontainers = [\"db-*\", \"secret\"]\n\
            [[inbound.allow]]\nports = [6379]\ncontainers = [\"cache-*\"]\n";
        let second = ruleset(changed, &["db-1", "secret"]);
        let txs = transactions(&second, &tables);
        assert_eq!(kinds(&txs[0]), ["sets", "rules", "sets"]);
        let (Step::Sets(before), Step::Sets(after)) = (&txs[0].steps[0], &txs[0].steps[2]) else {
            panic!("sets first and last")
        };
        assert!(
            before.starts_with("create dockfw-allow-2-v4 "),
            "the new set, before a rule names it: {before}"
        );
        assert!(
            after.contains("add dockfw-allow-1-v4 172.17.0.3 -exist\n"),
            "a set that admits more, once the rules are in: {after}"
        );
        assert!(after.contains("destroy dockfw-deny-1-v4\n"), "{after}");
        assert!(after.contains("destroy dockfw-known-v4\n"), "{after}");
        converge(&mut tables, &txs);
        assert!(transactions(&second, &tables).is_empty());
        let v4 = tables.get(Family::V4).expect("v4");
        assert_eq!(
            v4.sets.keys().collect::<Vec<_>>(),
            [
                "dockfw-allow-1-v4",
                "dockfw-allow-2-v4",
                "dockfw-dropped-sctp-v4",
                "dockfw-dropped-tcp-v4",
                "dockfw-dropped-udp-v4",
                "dockfw-guard-sctp-v4",
                "dockfw-guard-tcp-v4",
                "dockfw-guard-udp-v4"
            ],
            "address sets, the drop sets, and the guard sets of host ports no entry covers"
        );
    }

    /// What a restore does to the jumps is the iptables driver's to say:
    /// in the summary, and as notices the daemon logs on lines of their own.
    #[test]
    fn the_summary_and_the_notices_say_what_happened_to_the_jumps() {
        let no_forward_jump = "*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
        let mut tables = Tables::default();
        tables.set(Family::V4, Installed::parse(no_forward_jump));
        let txs = transactions(&ruleset(POLICY, &["db-1"]), &tables);
        let [tx] = txs.as_slice() else {
            panic!("one transaction: {txs:?}")
        };
        assert!(tx.jumps.restored_forward_jump && tx.jumps.placed_jumps);
        let summary = tx.summary();
        assert!(
            summary.ends_with(
                " set elements, restored the missing FORWARD -> DOCKER-USER jump, \
                 put dockfw's jumps first"
            ),
            "{summary}"
        );
        assert_eq!(
            tx.notices(),
            [Notice::Warning(
                "FORWARD no longer jumped to DOCKER-USER; restored the jump"
            )]
        );
        let mut fresh = Tables::default();
        fresh.set(
            Family::V4,
            Installed::parse("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n"),
        );
        let txs = transactions(&ruleset(POLICY, &["db-1"]), &fresh);
        assert_eq!(
            txs[0].notices(),
            [Notice::Info(
                "no DOCKER-USER chain (yet); created it and its FORWARD jump"
            )]
        );
        assert!(
            txs[0]
                .summary()
                .contains(", created DOCKER-USER and its FORWARD jump"),
            "{}",
            txs[0].summary()
        );
    }

    #[test]
    fn uninstall_removes_the_rules_before_the_sets_they_name() {
        let mut tables = empty_tables();
        let planned = ruleset(POLICY, &["db-1", "secret"]);
        let txs = transactions(&planned, &tables);
        converge(&mut tables, &txs);
        let txs = uninstall(&tables);
        assert_eq!(kinds(&txs[0]), ["rules", "sets"]);
        converge(&mut tables, &txs);
        for family in Family::ALL {
            assert!(!tables.get(family).expect("read").has_anything_owned());
        }
        assert!(uninstall(&tables).is_empty());
    }

    /// [`crate::testns`]: ipsets are per network namespace.
    fn in_private_netns<T: Send + 'static>(test: impl AsyncFnOnce() -> T + Send + 'static) -> T {
        crate::testns::block_on_in_private_netns(&[programs::IPSET], test)
    }

    /// Run the set steps of what takes the ipsets in place to `desired`'s.
    async fn install_sets(desired: &Ruleset) {
        let mut installed = Iptables::new().read_sets().await.expect("reads");
        let mut tables = empty_tables();
        for family in Family::ALL {
            let mut st = tables.get(family).expect("installed").clone();
            st.sets = installed
                .extract_if(.., |name, _| sets::owner(name) == family)
                .collect();
            tables.set(family, st);
        }
        for tx in transactions(desired, &tables) {
            for step in &tx.steps {
                if let Step::Sets(text) = step {
                    run(programs::IPSET, &["restore"], Some(text))
                        .await
                        .expect("ipset restore");
                }
            }
        }
    }

    #[test]
    #[ignore = "needs root: a private network namespace and ipset (tests/run.sh runs it)"]
    fn only_dockfws_ipsets_are_read_and_their_drift_is_found() {
        in_private_netns(async || {
            let ipset_cmd = async |args: &[&str], stdin: Option<&str>| {
                run(programs::IPSET, args, stdin).await.expect("ipset")
            };
            // Another tool's sets, beside one whose name ipset reads as two
            // words, `dockfw-x` and `y`, and which is not dockfw's either.
            ipset_cmd(
                &["restore"],
                Some(
                    "create crowdsec hash:ip family inet\nadd crowdsec 10.0.0.1\n\
                     create \"dockfw-x y\" hash:ip family inet\nadd \"dockfw-x y\" 10.0.0.2\n",
                ),
            )
            .await;
            assert_eq!(
                Iptables::new().read_sets().await.expect("reads"),
                BTreeMap::new()
            );
            let planned = ruleset(POLICY, &["db-1", "secret"]);
            install_sets(&planned).await;
            let read = Iptables::new().read_sets().await.expect("reads");
            let mut names: Vec<String> = (Family::ALL.iter())
                .flat_map(|&f| sets::names(planned.family(f)))
                .collect();
            names.sort();
            assert_eq!(read.keys().cloned().collect::<Vec<_>>(), names);
            assert!(!sets_differ(&planned, &Family::ALL, &read));
            // Both checks, headers alone and elements, as (headers, elements).
            let drifted = async |families: &[Family]| {
                let names: Vec<String> = (families.iter())
                    .flat_map(|&f| sets::names(planned.family(f)))
                    .collect();
                (
                    headers_drifted(&planned, families, &names).await,
                    Iptables::new()
                        .contents_drifted(&planned, families, &names)
                        .await,
                )
            };
            assert_eq!(drifted(&Family::ALL).await, (false, false));
            let firewall = Iptables::new();
            assert!(!firewall.sets_drifted(&planned, &Family::ALL).await);
            assert!(!firewall.sets_drifted(&planned, &Family::ALL).await);

            ipset_cmd(&["flush", "dockfw-known-v4"], None).await;
            assert_eq!(drifted(&Family::ALL).await, (true, true), "flushed");
            install_sets(&planned).await;
            assert_eq!(drifted(&Family::ALL).await, (false, false), "repaired");
            // An empty set: only its absence differs.
            ipset_cmd(&["destroy", "dockfw-guard-tcp-v4"], None).await;
            assert_eq!(drifted(&Family::ALL).await, (true, true), "destroyed");
            assert!(
                firewall.sets_drifted(&planned, &Family::ALL).await,
                "destroyed, found by the headers"
            );
            install_sets(&planned).await;
            assert_eq!(drifted(&Family::ALL).await, (false, false), "repaired");
            ipset_cmd(&["del", "dockfw-known-v4", "172.17.0.2"], None).await;
            assert_eq!(
                drifted(&Family::ALL).await,
                (true, true),
                "an element removed"
            );
            ipset_cmd(&["add", "dockfw-known-v4", "172.17.0.99"], None).await;
            assert_eq!(
                drifted(&Family::ALL).await,
                (false, true),
                "one element for another: the same number, found by the elements alone"
            );
            ipset_cmd(&["del", "dockfw-known-v4", "172.17.0.99"], None).await;
            ipset_cmd(&["add", "dockfw-known-v4", "172.17.0.2"], None).await;
            ipset_cmd(&["add", "dockfw-known-v6", "fd00::99"], None).await;
            assert_eq!(
                drifted(&Family::ALL).await,
                (true, true),
                "an element added"
            );
            assert_eq!(
                drifted(&[Family::V4]).await,
                (false, false),
                "only the families asked for"
            );
            install_sets(&planned).await;
            assert_eq!(drifted(&Family::ALL).await, (false, false), "repaired");
            ipset_cmd(&["destroy", "dockfw-allow-1-v4"], None).await;
            ipset_cmd(
                &["create", "dockfw-allow-1-v4", "hash:ip", "family", "inet"],
                None,
            )
            .await;
            ipset_cmd(&["add", "dockfw-allow-1-v4", "172.17.0.2"], None).await;
            assert_eq!(
                drifted(&Family::ALL).await,
                (true, true),
                "another type with the same elements"
            );
            install_sets(&planned).await;
            assert_eq!(drifted(&Family::ALL).await, (false, false), "repaired");
            assert_eq!(
                ipset_cmd(&["list", "-n"], None)
                    .await
                    .lines()
                    .filter(|n| !n.starts_with("dockfw-"))
                    .count(),
                1,
                "crowdsec is still there"
            );
        });
    }

    #[test]
    #[ignore = "needs root: a private network namespace and ipset (tests/run.sh runs it)"]
    fn an_observation_lists_again_only_the_sets_whose_header_moved() {
        in_private_netns(async || {
            let ipset_cmd =
                async |args: &[&str]| run(programs::IPSET, args, None).await.expect("ipset");
            let firewall = Iptables::new();
            let fresh = async || Iptables::new().read_sets().await.expect("reads");
            let planned = ruleset(POLICY, &["db-1", "secret"]);
            install_sets(&planned).await;
            assert_eq!(firewall.read_sets().await.expect("reads"), fresh().await);
            // The fast path's edits, run through the driver: followed.
            let more = ruleset(POLICY, &["db-1", "secret", "db-2"]);
            for tx in element_update(&more, &planned, &Family::ALL).expect("same rules") {
                firewall.apply(&tx).await.expect("applies");
            }
            let known = firewall.known_sets.lock().expect("lock").clone();
            assert_eq!(
                known.get("dockfw-known-v4"),
                fresh().await.get("dockfw-known-v4")
            );
            assert_eq!(firewall.read_sets().await.expect("reads"), fresh().await);
            // Another number of entries: listed again.
            ipset_cmd(&["add", "dockfw-known-v4", "10.9.9.9"]).await;
            assert_eq!(firewall.read_sets().await.expect("reads"), fresh().await);
            // One element for another: the same header, so the known
            // elements stand until the check that compares elements.
            ipset_cmd(&["del", "dockfw-known-v4", "10.9.9.9"]).await;
            ipset_cmd(&["add", "dockfw-known-v4", "10.9.9.8"]).await;
            assert_ne!(firewall.read_sets().await.expect("reads"), fresh().await);
            let names: Vec<String> = (Family::ALL.iter())
                .flat_map(|&f| sets::names(more.family(f)))
                .collect();
            assert!(firewall.contents_drifted(&more, &Family::ALL, &names).await);
            assert_eq!(firewall.read_sets().await.expect("reads"), fresh().await);
            // A failed restore: nothing is known any more.
            let failed = firewall
                .restore_sets("add dockfw-nothing 10.0.0.1 -exist\n")
                .await;
            assert!(failed.is_err());
            assert!(firewall.known_sets.lock().expect("lock").is_empty());
        });
    }

    #[test]
    fn sets_are_owned_by_the_family_their_name_says() {
        let mut saved = sets::parse_save(
            "create dockfw-known-v6 hash:net family inet6\ncreate dockfw-known-v4 hash:net family inet\n",
        );
        let v6: BTreeMap<String, SavedSet> = saved
            .extract_if(.., |name, _| sets::owner(name) == Family::V6)
            .collect();
        assert_eq!(v6.keys().collect::<Vec<_>>(), ["dockfw-known-v6"]);
        assert_eq!(saved.keys().collect::<Vec<_>>(), ["dockfw-known-v4"]);
    }
}
