//! The desired firewall state of one address family: dockfw's own chains and
//! their rules, as structured data.
//!
//! Produced by [`crate::plan`], turned into text by each backend of [`crate::firewall`]. It knows
//! nothing of processes or of what is installed now.

pub use crate::net::{Family, IFACE_MAX_LEN, Iface};
use ipnet::IpNet;

use crate::net::{PortRange, Proto};

/// dockfw's entry chain, jumped to from the top of `DOCKER-USER`.
pub const ENTRY_CHAIN: &str = "DOCKFW";
/// Where new inbound connections to containers are judged.
pub const INBOUND_CHAIN: &str = "DOCKFW-INBOUND";
/// Where new inbound connections to an address no known container has are
/// judged by every selector deny entry (see `plan::unclassified_chain`).
pub const UNCLASSIFIED_CHAIN: &str = "DOCKFW-UNCLASSIFIED";
/// Where new connections to ports `docker-proxy` serves on the host itself
/// (INPUT, not FORWARD) are judged: ports published on an address family
/// the container has no address in.
pub const PROXY_CHAIN: &str = "DOCKFW-PROXY";
/// Docker's chain for operators, jumped to first from `FORWARD`.
pub const DOCKER_USER: &str = "DOCKER-USER";
/// Every chain dockfw owns, in creation order.
pub const OWNED_CHAINS: [&str; 4] = [ENTRY_CHAIN, INBOUND_CHAIN, UNCLASSIFIED_CHAIN, PROXY_CHAIN];

/// A jump dockfw keeps as the first rule of a chain it does not own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// The chain holding the jump.
    pub parent: &'static str,
    /// dockfw's chain it jumps to.
    pub chain: &'static str,
}

/// dockfw's jumps: `DOCKER-USER -> DOCKFW` for forwarded traffic and
/// `INPUT -> DOCKFW-PROXY` for what docker-proxy serves.
pub const HOOKS: [Hook; 2] = [
    Hook {
        parent: DOCKER_USER,
        chain: ENTRY_CHAIN,
    },
    Hook {
        parent: "INPUT",
        chain: PROXY_CHAIN,
    },
];

impl Hook {
    /// The jump's rule spec, as `iptables-save` prints it.
    pub fn spec(self) -> String {
        format!("-j {}", self.chain)
    }
}

/// The complete desired state: one rule set per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub v4: FamilyRules,
    pub v6: FamilyRules,
}

impl Ruleset {
    pub fn family(&self, family: Family) -> &FamilyRules {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// dockfw's chains for one family, entry chain first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyRules {
    pub chains: Vec<Chain>,
}

impl FamilyRules {
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }
}

/// One chain dockfw owns and all of its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    pub rules: Vec<Rule>,
}

/// One iptables rule. Unset fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    pub in_iface: Option<Iface>,
    pub out_iface: Option<Iface>,
    pub proto: Option<Proto>,
    /// The packet's own destination port (`-m <proto> --dport`); needs `proto`.
    pub dport: Option<u16>,
    pub conntrack: Option<Conntrack>,
    pub target: Target,
}

/// The one conntrack condition a rule may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conntrack {
    /// `--ctstate RELATED,ESTABLISHED`: replies and related flows.
    Established,
    /// `--ctstate DNAT`: the connection's destination was rewritten.
    Dnat,
    /// `--ctorigdstport`: the destination port before DNAT, i.e. the
    /// published host port; with `dnat`, only connections Docker DNAT-ed
    /// (`--ctstate DNAT`), so a connection routed straight to a container
    /// address is not mistaken for one to a published port.
    OrigDstPort { ports: PortRange, dnat: bool },
}

/// What happens to a packet that matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Target {
    /// Leave it to Docker's own rules.
    #[default]
    Return,
    Drop,
    Jump(&'static str),
}
