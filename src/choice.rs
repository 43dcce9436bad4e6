//! Which firewall backend the daemon drives, and why: a pure function of the
//! choice asked for, what the engine says now (when it answers at start) and
//! what the engine used when last seen (kept in the state directory).
//!
//! At boot dockfw starts before the engine, so `auto` cannot ask it; on a
//! host whose engine runs in its nftables mode (Docker 29), the nftables
//! backend is what protects it, and the state directory remembers that
//! across the reboot. This module does no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A concrete backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Iptables,
    Nftables,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Iptables => "iptables",
            BackendKind::Nftables => "nftables",
        }
    }

    /// The word kept in the state directory, read back; `None` for
    /// anything else (a damaged file is as good as none).
    pub fn parse(text: &str) -> Option<BackendKind> {
        match text.trim() {
            "iptables" => Some(BackendKind::Iptables),
            "nftables" => Some(BackendKind::Nftables),
            _ => None,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was asked for (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    Auto,
    Explicit(BackendKind),
}

/// What the engine's firewall is, when it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineFirewall {
    /// `GET /info` reports the nftables firewall driver (Docker 29's mode).
    ReportsNftables,
    /// It answers, reports no nftables driver, and made no `DOCKER-USER`
    /// chain in either iptables variant.
    NoDockerUser,
    /// It answers and its rules are in iptables (`DOCKER-USER` exists).
    Iptables,
}

impl EngineFirewall {
    /// The backend that goes with it (and that is remembered for the next boot).
    pub fn backend(self) -> BackendKind {
        match self {
            EngineFirewall::ReportsNftables | EngineFirewall::NoDockerUser => BackendKind::Nftables,
            EngineFirewall::Iptables => BackendKind::Iptables,
        }
    }
}

/// The backend chosen and why, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chosen {
    pub backend: BackendKind,
    pub why: String,
}

/// The choice: an explicit one wins; `auto` follows the engine when it
/// answers, else what the engine used when last seen, else iptables (whose
/// `DOCKER-USER` chain dockfw makes itself before the engine starts).
pub fn choose(
    requested: Requested,
    now: Option<EngineFirewall>,
    remembered: Option<BackendKind>,
) -> Chosen {
    let (backend, why) = match (requested, now, remembered) {
        (Requested::Explicit(kind), _, _) => (kind, format!("--backend {kind} (explicit)")),
        (Requested::Auto, Some(EngineFirewall::ReportsNftables), _) => (
            BackendKind::Nftables,
            "auto: the engine reports its nftables firewall".to_owned(),
        ),
        (Requested::Auto, Some(EngineFirewall::NoDockerUser), _) => (
            BackendKind::Nftables,
            "auto: the engine answers and made no DOCKER-USER chain".to_owned(),
        ),
        (Requested::Auto, Some(EngineFirewall::Iptables), _) => (
            BackendKind::Iptables,
            "auto: the engine's rules are in iptables (DOCKER-USER)".to_owned(),
        ),
        (Requested::Auto, None, Some(kind)) => (
            kind,
            format!(
                "auto: the engine did not answer at start; it used {kind} when last seen \
                 (state directory)"
            ),
        ),
        (Requested::Auto, None, None) => (
            BackendKind::Iptables,
            "auto: the engine did not answer at start and was never seen before".to_owned(),
        ),
    };
    Chosen { backend, why }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackendKind::{Iptables, Nftables};

    const ENGINES: [Option<EngineFirewall>; 4] = [
        None,
        Some(EngineFirewall::ReportsNftables),
        Some(EngineFirewall::NoDockerUser),
        Some(EngineFirewall::Iptables),
    ];
    const MEMORIES: [Option<BackendKind>; 3] = [None, Some(Iptables), Some(Nftables)];

    #[test]
    fn an_explicit_choice_wins_whatever_the_engine_says_or_was() {
        for kind in [Iptables, Nftables] {
            for now in ENGINES {
                for remembered in MEMORIES {
                    let c = choose(Requested::Explicit(kind), now, remembered);
                    assert_eq!(c.backend, kind, "{now:?} {remembered:?}");
                    assert!(c.why.contains("explicit"), "{}", c.why);
                }
            }
        }
    }

    #[test]
    fn auto_follows_the_engine_when_it_answers_whatever_was_remembered() {
        for remembered in MEMORIES {
            let c = choose(
                Requested::Auto,
                Some(EngineFirewall::ReportsNftables),
                remembered,
            );
            assert_eq!(c.backend, Nftables);
            assert!(c.why.contains("reports its nftables"), "{}", c.why);
            let c = choose(
                Requested::Auto,
                Some(EngineFirewall::NoDockerUser),
                remembered,
            );
            assert_eq!(c.backend, Nftables);
            let c = choose(Requested::Auto, Some(EngineFirewall::Iptables), remembered);
            assert_eq!(c.backend, Iptables);
        }
    }

    #[test]
    fn auto_at_boot_follows_what_the_engine_used_last() {
        let c = choose(Requested::Auto, None, Some(Nftables));
        assert_eq!(c.backend, Nftables);
        assert!(c.why.contains("used nftables when last seen"), "{}", c.why);
        let c = choose(Requested::Auto, None, Some(Iptables));
        assert_eq!(c.backend, Iptables);
        let c = choose(Requested::Auto, None, None);
        assert_eq!(c.backend, Iptables);
        assert!(c.why.contains("never seen"), "{}", c.why);
    }

    #[test]
    fn the_remembered_word_reads_back_and_anything_else_is_none() {
        for kind in [Iptables, Nftables] {
            assert_eq!(BackendKind::parse(&format!("{kind}\n")), Some(kind));
        }
        for bad in ["", "nft", "IPTABLES", "nftables iptables"] {
            assert_eq!(BackendKind::parse(bad), None, "{bad:?}");
        }
        assert_eq!(EngineFirewall::NoDockerUser.backend(), Nftables);
        assert_eq!(EngineFirewall::Iptables.backend(), Iptables);
    }
}
