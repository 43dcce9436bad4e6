//! The desired firewall state of one address family: dockfw's own chains and
//! their rules, as structured data.
//!
//! Produced by [`crate::plan`], turned into text by [`crate::render`]. It knows
//! nothing of processes or of what is installed now.

use ipnet::IpNet;
use serde::Serialize;

use crate::inventory::Proto;
use crate::policy::PortRange;

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

/// An IP address family; each has its own table and restore run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
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

/// A network interface name that is safe in rule text: a plain, literal
/// Linux name. Only [`Iface::new`] makes one, so no rule can carry a
/// wildcard (`+` matches every interface with that prefix), a quote or a
/// space that Docker (or whoever may create a network) chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iface(String);

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFACE_MAX_LEN: usize = 15;

impl Iface {
    /// `name` if it is 1 to 15 characters of letters, digits, `_`, `.` and
    /// `-`, and not `.` or `..`; otherwise why not.
    pub fn new(name: &str) -> Result<Iface, &'static str> {
        if name.is_empty() {
            return Err("empty");
        }
        if name.len() > IFACE_MAX_LEN {
            return Err("longer than 15 characters");
        }
        if name == "." || name == ".." {
            return Err("not a name");
        }
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if !name.chars().all(plain) {
            return Err("has characters other than letters, digits, '_', '.' and '-'");
        }
        Ok(Iface(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Iface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_literal_interface_names_are_accepted() {
        for good in [
            "docker0",
            "br-0123456789ab",
            "dfw_custom.0",
            "a",
            "x23456789012345",
        ] {
            assert_eq!(Iface::new(good).map(|i| i.to_string()), Ok(good.to_owned()));
        }
        for bad in [
            "+",
            "dfwt+",
            "br-+",
            "a\"b",
            "a b",
            "",
            ".",
            "..",
            "x234567890123456",
            "eth0\n",
            "a*",
            "\u{1b}[31m",
            "ä",
        ] {
            assert!(Iface::new(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
