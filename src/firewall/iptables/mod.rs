//! The iptables driver: reads each family's `filter` table with
//! `iptables-save` and installs restore text with one `iptables-restore
//! --noflush` per family, in the variant (nft or legacy) that holds
//! Docker's chains. What to write is decided by [`render`], what is
//! installed by [`installed`]; this file only picks the variant and pipes.

pub mod installed;
pub mod render;

use std::sync::Mutex;

use self::installed::Installed;
use super::{Backend, FirewallError, Observation, SBIN, Transaction, run};
use crate::net::Family;
use crate::ruleset::Ruleset;

/// An iptables implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Nft,
    Legacy,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Nft => "nft",
            Variant::Legacy => "legacy",
        }
    }

    fn program(self, family: Family, tool: &str) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        format!("{SBIN}/{base}-{}-{tool}", self.as_str())
    }
}

/// The real backend: `iptables-{nft,legacy}-{save,restore}` processes.
#[derive(Debug, Default)]
pub struct Iptables {
    /// The variant chosen per family ([v4, v6]); re-chosen whenever the
    /// chosen one stops showing Docker's chains (e.g. Docker switched).
    chosen: Mutex<[Option<Variant>; 2]>,
}

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
        // All tables in one run: `filter` for the chains, `nat` for DNAT.
        let out = run(&variant.program(family, "save"), &[], None).await?;
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
    match run(&format!("{SBIN}/iptables"), &["-V"], None).await {
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
        let program = variant.program(family, "restore");
        run(&program, &["--noflush", "--wait", "10"], Some(text))
            .await
            .map(drop)
    }

    fn variant_of(&self, family: Family) -> Option<&'static str> {
        self.cached(family).map(Variant::as_str)
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

/// One restore per family whose installed rules differ from `desired`.
/// Pure; shared with test doubles that simulate restores.
pub fn transactions(desired: &Ruleset, observed: &Tables) -> Vec<Transaction> {
    Family::ALL
        .into_iter()
        .filter_map(|family| {
            let restore = render::transaction(desired.family(family), observed.get(family)?)?;
            Some(Transaction {
                family: Some(family),
                text: restore.text,
                changes: restore.changes,
            })
        })
        .collect()
}

/// dockfw's chains of both families as `-A CHAIN spec` lines. Pure.
pub fn render_all(desired: &Ruleset) -> String {
    Family::ALL
        .iter()
        .map(|f| {
            format!(
                "# {}\n{}",
                f.as_str(),
                render::rules_text(desired.family(*f))
            )
        })
        .collect()
}

/// One restore per family that holds anything of dockfw's. Pure.
pub fn uninstall(observed: &Tables) -> Vec<Transaction> {
    Family::ALL
        .into_iter()
        .filter_map(|family| {
            Some(Transaction {
                family: Some(family),
                text: render::uninstall(observed.get(family)?)?,
                changes: Default::default(),
            })
        })
        .collect()
}

impl Backend for Iptables {
    type Observed = Tables;

    async fn observe(&self) -> Observation<Tables> {
        let mut observation = Observation {
            observed: Tables::default(),
            unavailable: Vec::new(),
            failed: Vec::new(),
        };
        for family in Family::ALL {
            match self.read(family).await {
                Ok(st) => observation.observed.set(family, st),
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
        Ok(transactions(desired, observed))
    }

    fn render(&self, desired: &Ruleset) -> String {
        render_all(desired)
    }

    async fn apply(&self, tx: &Transaction) -> Result<(), FirewallError> {
        match tx.family {
            Some(family) => self.restore(family, &tx.text).await,
            None => Err(FirewallError::Scope),
        }
    }

    fn uninstall(&self, observed: &Tables) -> Vec<Transaction> {
        uninstall(observed)
    }

    fn variant(&self, family: Family) -> Option<&'static str> {
        self.variant_of(family)
    }

    fn announces_changes(&self) -> bool {
        Family::ALL
            .iter()
            .all(|f| self.cached(*f) != Some(Variant::Legacy))
    }
}
