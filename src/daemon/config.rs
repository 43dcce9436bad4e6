//! The settings of one daemon run: [`Config`], with who says which
//! interfaces are Linux bridges ([`BridgeCheck`]) and how changes to the
//! installed rules are noticed ([`RulesetWatch`]). Plain data.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one daemon run.
#[derive(Debug, Clone)]
pub struct Config {
    pub policy_path: PathBuf,
    /// The Docker endpoint, shown in status.
    pub endpoint: String,
    /// How often to re-check everything with no trigger at all.
    pub resync: Duration,
    /// How often to re-check the installed rules when no netlink
    /// notification covers them (iptables-legacy, or no monitor): the
    /// bound on how long drift goes unrepaired there.
    pub drift_poll: Duration,
    /// How changes to the installed rules are noticed.
    pub ruleset_watch: RulesetWatch,
    /// Log each drop to the kernel log, rate-limited, prefixed with the
    /// entry behind it (`dockfw deny@33 `): `--log-drops`.
    pub log_drops: bool,
    /// The backend driven and why, for status (the daemon does not choose).
    pub backend: Option<crate::choice::Chosen>,
    /// Who says which interfaces are Linux bridges.
    pub bridge_check: BridgeCheck,
}

/// Where the daemon learns which of the interfaces bridge networks name are
/// Linux bridges now: only those are exempted as "from a container".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeCheck {
    /// The kernel, over rtnetlink in the daemon's network namespace,
    /// followed as links change ([`crate::links`]).
    Kernel,
    /// A fixed answer, for tests whose fake engines' interfaces exist
    /// nowhere: these names are bridges, no other; `None`: every interface
    /// a bridge network names.
    Fixed(Option<BTreeSet<String>>),
}

/// How the daemon learns that the installed rules changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesetWatch {
    /// Not at all: they are read again every `drift_poll`.
    Off,
    /// nf_tables changes on netlink (the real daemon); where that cannot be
    /// set up, or the backend's rules are not in nf_tables, polled.
    Netlink,
    /// Nothing changes them but the daemon (tests' fake firewalls): as if
    /// watched, with no watch.
    Assumed,
}

impl Config {
    pub fn new(policy_path: PathBuf, endpoint: String) -> Config {
        Config {
            policy_path,
            endpoint,
            resync: Duration::from_secs(10),
            drift_poll: Duration::from_millis(1500),
            ruleset_watch: RulesetWatch::Off,
            log_drops: false,
            backend: None,
            bridge_check: BridgeCheck::Kernel,
        }
    }
}
