//! The desired firewall state of one address family: dockfw's own chains,
//! their rules, and the named address sets the rules match against, as
//! structured data.
//!
//! What grows with containers and sources (selected containers' addresses,
//! every known container address, long `from` lists, the host ports
//! docker-proxy may serve) is elements of an [`AddrSet`] or a [`PortSet`],
//! never rules: a container coming or going changes elements only, and a
//! backend can tell that apart ([`FamilyRules::same_rules`]). What grows
//! with an entry's `ports` is an [`OrigPortSet`]: a backend that can match
//! the port before DNAT in a set (nftables) writes one rule for it, one
//! that cannot (iptables) one rule per range.
//!
//! Produced by [`crate::plan`], turned into text by each backend of [`crate::firewall`]. It knows
//! nothing of processes or of what is installed now.

use std::collections::BTreeSet;
use std::net::IpAddr;

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
/// Where every drop ends, forwarded or to docker-proxy: per protocol, one
/// drop matching the published ports in a set whose every element counts
/// what it matched (so drops are read per port too, [`FamilyRules::drop_ports`],
/// or per container endpoint, [`FamilyRules::drop_endpoints`]), then a drop.
/// Only connections being dropped walk it, and they walk the same few rules
/// whatever the number of ports.
pub const DROP_CHAIN: &str = "DOCKFW-DROP";
/// Where new connections a container starts to anything not a container
/// are judged (`[outbound]`), jumped to from [`ENTRY_CHAIN`] for traffic
/// arriving from a Docker bridge; planned only with an `[outbound]` table.
pub const OUTBOUND_CHAIN: &str = "DOCKFW-OUTBOUND";
/// Where such a connection from an address no known container has is
/// judged by every selector deny (and as isolated, when some container
/// is): see `plan::outbound`.
pub const OUTBOUND_UNCLASSIFIED_CHAIN: &str = "DOCKFW-OUT-UNCLASSIFIED";
/// Where new connections from containers to the host itself are judged
/// (`to_host = "deny"`), jumped to from [`PROXY_CHAIN`] (INPUT).
pub const TO_HOST_CHAIN: &str = "DOCKFW-TO-HOST";
/// Where new connections between containers are judged (`[east_west]`),
/// jumped to from [`ENTRY_CHAIN`] for traffic arriving from a Docker
/// bridge: it picks out what goes to a container, for
/// [`EAST_WEST_JUDGE_CHAIN`]; planned only with an `[east_west]` table.
pub const EAST_WEST_CHAIN: &str = "DOCKFW-EAST-WEST";
/// Where a connection from a container to a container meets the
/// `[east_west]` entries: see `plan::east_west`.
pub const EAST_WEST_JUDGE_CHAIN: &str = "DOCKFW-EW-JUDGE";
/// Where such a connection with a source or destination no known
/// container has is judged by every selector deny (and as isolated).
pub const EAST_WEST_UNCLASSIFIED_CHAIN: &str = "DOCKFW-EW-UNCLASSIFIED";
/// Where a container's new connection to a port docker-proxy serves on
/// the host (a hairpin: INPUT, not DNAT-ed) meets the `[east_west]`
/// entries, on the published host ports whose container and container
/// port each entry covers; jumped to from [`PROXY_CHAIN`] for traffic
/// arriving from a Docker bridge.
pub const EAST_WEST_HAIRPIN_CHAIN: &str = "DOCKFW-EW-HAIRPIN";
/// Where such a hairpin from an address no known container has is judged
/// by every selector deny (and as isolated).
pub const EAST_WEST_HAIRPIN_UNCLASSIFIED_CHAIN: &str = "DOCKFW-EW-HP-UNCLASSIFIED";
/// Docker's chain for operators, jumped to first from `FORWARD`.
pub const DOCKER_USER: &str = "DOCKER-USER";
/// Every chain dockfw owns, in creation order.
pub const OWNED_CHAINS: [&str; 13] = [
    DROP_CHAIN,
    ENTRY_CHAIN,
    INBOUND_CHAIN,
    UNCLASSIFIED_CHAIN,
    PROXY_CHAIN,
    OUTBOUND_CHAIN,
    OUTBOUND_UNCLASSIFIED_CHAIN,
    TO_HOST_CHAIN,
    EAST_WEST_CHAIN,
    EAST_WEST_JUDGE_CHAIN,
    EAST_WEST_UNCLASSIFIED_CHAIN,
    EAST_WEST_HAIRPIN_CHAIN,
    EAST_WEST_HAIRPIN_UNCLASSIFIED_CHAIN,
];

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

    /// Whether both families have the same rules and sets as `other`, the
    /// sets' elements aside.
    pub fn same_rules(&self, other: &Ruleset) -> bool {
        Family::ALL
            .iter()
            .all(|f| self.family(*f).same_rules(other.family(*f)))
    }
}

/// One element of one of a plan's sets, named by the set it is in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetElement {
    /// An address in the named address set ([`FamilyRules::sets`]).
    Addr(Family, String, IpNet),
    /// A host port in the protocol's guard set ([`FamilyRules::port_sets`],
    /// named [`GUARD_PREFIX`]…).
    Guard(Family, Proto, u16),
    /// A host port in the named port set that is not a guard set (a
    /// hairpin's: `proxied-tcp-v4`, `ewh-allow-2-tcp-v4`).
    Port(Family, String, u16),
    /// A published port in the protocol's drop set ([`FamilyRules::drop_ports`]).
    Dropped(Family, Proto, u16),
    /// A container endpoint a published port leads to
    /// ([`FamilyRules::drop_endpoints`]).
    Endpoint(Family, DropEndpoint),
}

impl SetElement {
    pub fn family(&self) -> Family {
        match self {
            SetElement::Addr(family, ..)
            | SetElement::Guard(family, ..)
            | SetElement::Port(family, ..)
            | SetElement::Dropped(family, ..)
            | SetElement::Endpoint(family, _) => *family,
        }
    }
}

/// One set element that joins (`present`) or leaves its set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    pub element: SetElement,
    pub present: bool,
}

/// Where [`Ruleset::put`] wrote an element: the family and name of its set
/// (the drop endpoints as [`ENDPOINTS`]).
pub type SetRef = (Family, String);

/// The name [`Ruleset::put`] gives a family's drop endpoints.
pub const ENDPOINTS: &str = "drop-endpoints";

/// How the name of a guard set begins (`guard-tcp-v4`): of the port sets
/// that hold a protocol's ports, the one [`SetElement::Guard`] names.
pub const GUARD_PREFIX: &str = "guard-";

impl FamilyRules {
    /// The guard set of `proto`.
    pub fn guard_set(&self, proto: Proto) -> Option<&PortSet> {
        (self.port_sets.iter()).find(|s| s.proto == proto && s.name.starts_with(GUARD_PREFIX))
    }

    /// The set that holds `element` when it is a port (a guard set, a
    /// named port set or a drop set); `None` for addresses and endpoints.
    pub fn port_set_of(&self, element: &SetElement) -> Option<&PortSet> {
        match element {
            SetElement::Guard(_, proto, _) => self.guard_set(*proto),
            SetElement::Port(_, name, _) => self.port_set(name),
            SetElement::Dropped(_, proto, _) => self.drop_ports.iter().find(|s| s.proto == *proto),
            SetElement::Addr(..) | SetElement::Endpoint(..) => None,
        }
    }
}

impl Ruleset {
    /// Add (`present`) or remove `element` in its set; the set's family and
    /// name, or `None` when the plan has no such set (nothing is written).
    pub fn put(&mut self, element: &SetElement, present: bool) -> Option<SetRef> {
        fn put<T: Ord>(set: &mut BTreeSet<T>, value: T, present: bool) {
            if present {
                set.insert(value);
            } else {
                set.remove(&value);
            }
        }
        fn port(
            sets: &mut [PortSet],
            is: impl Fn(&PortSet) -> bool,
            port: u16,
            present: bool,
        ) -> Option<String> {
            let set = sets.iter_mut().find(|s| is(s))?;
            put(&mut set.ports, port, present);
            Some(set.name.clone())
        }
        let family = element.family();
        let rules = match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        let name = match element {
            SetElement::Addr(_, name, net) => {
                let sets = &mut rules.sets;
                let at = (sets.binary_search_by(|s| s.name.as_str().cmp(name))).ok()?;
                put(&mut sets[at].elements, *net, present);
                name.clone()
            }
            SetElement::Guard(_, proto, p) => {
                let guard = |s: &PortSet| s.proto == *proto && s.name.starts_with(GUARD_PREFIX);
                port(&mut rules.port_sets, guard, *p, present)?
            }
            SetElement::Port(_, name, p) => {
                port(&mut rules.port_sets, |s| s.name == *name, *p, present)?
            }
            SetElement::Dropped(_, proto, p) => {
                port(&mut rules.drop_ports, |s| s.proto == *proto, *p, present)?
            }
            SetElement::Endpoint(_, endpoint) => {
                put(&mut rules.drop_endpoints, *endpoint, present);
                ENDPOINTS.to_owned()
            }
        };
        Some((family, name))
    }

    /// Whether `element` is in its set (false when the plan has no such set).
    pub fn has(&self, element: &SetElement) -> bool {
        let rules = self.family(element.family());
        match element {
            SetElement::Addr(_, name, net) => {
                rules.set(name).is_some_and(|s| s.elements.contains(net))
            }
            SetElement::Endpoint(_, endpoint) => rules.drop_endpoints.contains(endpoint),
            SetElement::Guard(.., p) | SetElement::Port(.., p) | SetElement::Dropped(.., p) => {
                rules
                    .port_set_of(element)
                    .is_some_and(|s| s.ports.contains(p))
            }
        }
    }

    /// The element changes that take `before`'s sets to `self`'s, each
    /// element once, in [`SetElement`] order: what an incremental plan's
    /// changes must be. Both have the same sets ([`Ruleset::same_rules`]);
    /// a set `before` lacks counts as empty. For tests: it walks every set.
    #[cfg(test)]
    pub fn changes_from(&self, before: &Ruleset) -> Vec<ElementChange> {
        fn diff<T: Ord + Clone>(
            now: &BTreeSet<T>,
            had: Option<&BTreeSet<T>>,
            element: impl Fn(T) -> SetElement,
            out: &mut Vec<ElementChange>,
        ) {
            let empty = BTreeSet::new();
            let had = had.unwrap_or(&empty);
            let joined = now.difference(had).map(|v| (v, true));
            let left = had.difference(now).map(|v| (v, false));
            out.extend(joined.chain(left).map(|(v, present)| ElementChange {
                element: element(v.clone()),
                present,
            }));
        }
        let mut out = Vec::new();
        for family in Family::ALL {
            let (now, had) = (self.family(family), before.family(family));
            for set in &now.sets {
                let old = had.set(&set.name).map(|s| &s.elements);
                let name = &set.name;
                diff(
                    &set.elements,
                    old,
                    |n| SetElement::Addr(family, name.clone(), n),
                    &mut out,
                );
            }
            for set in &now.port_sets {
                let old = had.port_set(&set.name);
                let guard = set.name.starts_with(GUARD_PREFIX);
                let element = |p| match guard {
                    true => SetElement::Guard(family, set.proto, p),
                    false => SetElement::Port(family, set.name.clone(), p),
                };
                diff(&set.ports, old.map(|s| &s.ports), element, &mut out);
            }
            for set in &now.drop_ports {
                let old = had.drop_ports.iter().find(|s| s.proto == set.proto);
                let element = |p| SetElement::Dropped(family, set.proto, p);
                diff(&set.ports, old.map(|s| &s.ports), element, &mut out);
            }
            let element = |e| SetElement::Endpoint(family, e);
            diff(
                &now.drop_endpoints,
                Some(&had.drop_endpoints),
                element,
                &mut out,
            );
        }
        out.sort_unstable_by(|a, b| a.element.cmp(&b.element));
        out
    }

    /// Make each of `changes` in turn ([`Ruleset::put`]).
    pub fn apply_changes(&mut self, changes: &[ElementChange]) {
        for change in changes {
            self.put(&change.element, change.present);
        }
    }
}

/// dockfw's chains for one family, entry chain first, and the sets their
/// rules match against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyRules {
    pub chains: Vec<Chain>,
    /// Every address set a rule names, by name; no set no rule names.
    pub sets: Vec<AddrSet>,
    /// Every port set a rule names, by name; no set no rule names.
    pub port_sets: Vec<PortSet>,
    /// The published ports of the family, one set per protocol
    /// (`dropped-tcp-v4`), matched by [`Rule::orig_dport_set`] in
    /// [`DROP_CHAIN`]: each element counts the connections dropped to its
    /// port. They follow published ports, so a port published or gone is
    /// an element written, not a rule.
    pub drop_ports: Vec<PortSet>,
    /// Every set of original destination port ranges a rule names
    /// ([`Rule::orig_dport_ranges`]), by name; no set no rule names.
    pub orig_port_sets: Vec<OrigPortSet>,
    /// Where a forwarded connection to each published port of the family
    /// arrives after Docker's DNAT: the container's address and port (the
    /// ones a connection on a routed network is addressed to in the first
    /// place). Elements, like `drop_ports`, for a backend that can only
    /// match the packet's own destination (ipset) to count drops per port.
    pub drop_endpoints: BTreeSet<DropEndpoint>,
}

/// One container endpoint a published port leads to: a connection to
/// `proto`/`published` (before DNAT) arrives at `addr`:`port`. Several
/// published ports may lead to one endpoint (`-p 8080:80 -p 8081:80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DropEndpoint {
    pub proto: Proto,
    /// The container's address, of the family.
    pub addr: IpAddr,
    /// The container port.
    pub port: u16,
    /// The port a connection to it is addressed to: the host port, or on a
    /// routed network the container port ([`crate::inventory::PublishedPort::addressed_port`]).
    pub published: u16,
}

impl FamilyRules {
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    pub fn set(&self, name: &str) -> Option<&AddrSet> {
        self.sets.iter().find(|s| s.name == name)
    }

    pub fn port_set(&self, name: &str) -> Option<&PortSet> {
        self.port_sets.iter().find(|s| s.name == name)
    }

    pub fn drop_port_set(&self, name: &str) -> Option<&PortSet> {
        self.drop_ports.iter().find(|s| s.name == name)
    }

    pub fn orig_port_set(&self, name: &str) -> Option<&OrigPortSet> {
        self.orig_port_sets.iter().find(|s| s.name == name)
    }

    /// Whether `other` has the same chains and rules and the same sets (by
    /// name and family), whatever their elements: then taking one to the
    /// other changes set elements only. Sets of original destination ports
    /// are compared with their ranges: they come from the policy alone (so
    /// change only with it), and a backend may write each range as a rule.
    pub fn same_rules(&self, other: &FamilyRules) -> bool {
        fn shape(set: &AddrSet) -> (&str, Family) {
            (&set.name, set.family)
        }
        fn port_shape(set: &PortSet) -> (&str, Family, Proto) {
            (&set.name, set.family, set.proto)
        }
        self.chains == other.chains
            && self.sets.iter().map(shape).eq(other.sets.iter().map(shape))
            && (self.port_sets.iter().map(port_shape)).eq(other.port_sets.iter().map(port_shape))
            && (self.drop_ports.iter().map(port_shape)).eq(other.drop_ports.iter().map(port_shape))
            && self.orig_port_sets == other.orig_port_sets
    }
}

/// A named set of networks of one family (a host is a `/32` or `/128`),
/// matched by [`Rule::src_set`] and [`Rule::dst_set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSet {
    /// Lowercase letters, digits and `-`, derived only from what the set is
    /// for and its family (`known-v4`, `allow-2-v6`, `deny-1-src-v4`), so
    /// that every plan gives the same purpose the same name; at most 18
    /// characters (a policy has at most 20,000 entries: `allow-20000-src-v6`),
    /// which leaves a backend room for a prefix and suffix (ipset allows 31).
    pub name: String,
    pub family: Family,
    /// No element contains another, so a backend that refuses overlapping
    /// intervals takes them as they are.
    pub elements: BTreeSet<IpNet>,
}

impl AddrSet {
    /// The set `name` of the given networks: host bits cleared, and those
    /// contained in another left out (they match nothing more).
    pub fn new(name: String, family: Family, nets: impl IntoIterator<Item = IpNet>) -> AddrSet {
        // Sorted in a vector and built in one go (a set built node by node
        // costs several times more, and a plan builds sets of every
        // container address at each pass).
        let mut sorted: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut elements = Vec::with_capacity(sorted.len());
        let mut last: Option<IpNet> = None;
        // Sorted by address, then prefix: a network that contains another
        // comes before it, and CIDR networks either nest or are disjoint,
        // so the last one kept is the only one that can contain the next.
        for net in sorted {
            if last.is_some_and(|l| l.contains(&net)) {
                continue;
            }
            elements.push(net);
            last = Some(net);
        }
        AddrSet {
            name,
            family,
            elements: BTreeSet::from_iter(elements),
        }
    }
}

/// A named set of destination ports of one protocol, for the rules of one
/// family, matched by [`Rule::dport_set`] (with [`Rule::proto`]): the host
/// ports docker-proxy may serve that a policy entry covers (or that no
/// entry covers: `guard-tcp-v4`), or a hairpin to them reaches
/// (`proxied-tcp-v4`, `ewh-allow-2-tcp-v4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSet {
    /// As [`AddrSet::name`], with the protocol in it: `allow-2-tcp-v4`,
    /// `guard-udp-v6`; at most 23 characters (`ewh-allow-20000-sctp-v6`),
    /// 30 with the ipset prefix `dockfw-` (ipset allows 31).
    pub name: String,
    pub family: Family,
    pub proto: Proto,
    pub ports: BTreeSet<u16>,
}

/// A named set of port ranges, for the rules of one family, matched by
/// [`Rule::orig_dport_ranges`] against the destination port a connection
/// had before DNAT (the published host port; on a routed network the
/// container port): an entry's `ports`, when they are more than a few.
/// Elements come from the policy alone, never from Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrigPortSet {
    /// As [`AddrSet::name`]: `allow-3-ports-v4`; at most 20 characters
    /// (`allow-20000-ports-v6`).
    pub name: String,
    pub family: Family,
    /// Sorted, and no two overlap or touch ([`OrigPortSet::new`]), so a
    /// backend that refuses overlapping intervals takes them as they are.
    pub ranges: Vec<PortRange>,
}

impl OrigPortSet {
    /// The set `name` of the given ranges, merged where they overlap or
    /// touch (`80, 81-90` is `80-90`): the same ports, fewest ranges.
    pub fn new(
        name: String,
        family: Family,
        ranges: impl IntoIterator<Item = PortRange>,
    ) -> OrigPortSet {
        let mut sorted: Vec<PortRange> = ranges.into_iter().collect();
        sorted.sort();
        let mut merged: Vec<PortRange> = Vec::with_capacity(sorted.len());
        for range in sorted {
            match merged.last_mut() {
                Some(last) if u32::from(range.first) <= u32::from(last.last) + 1 => {
                    last.last = last.last.max(range.last);
                }
                _ => merged.push(range),
            }
        }
        OrigPortSet {
            name,
            family,
            ranges: merged,
        }
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
    /// The source is in the named [`AddrSet`] of the rule's family.
    pub src_set: Option<String>,
    /// The destination is in the named [`AddrSet`] of the rule's family.
    pub dst_set: Option<String>,
    /// The packet's own destination port is in the named [`PortSet`] of the
    /// rule's family; needs `proto`, the set's.
    pub dport_set: Option<String>,
    pub in_iface: Option<Iface>,
    pub out_iface: Option<Iface>,
    pub proto: Option<Proto>,
    /// The protocol and the destination port before DNAT are in the named
    /// [`FamilyRules::drop_ports`] set of the rule's family, whose element
    /// for the port counts the match; needs `proto`, the set's.
    pub orig_dport_set: Option<String>,
    /// The destination port before DNAT is in one of the ranges of the
    /// named [`OrigPortSet`] of the rule's family; needs `proto`. Only
    /// connections Docker DNAT-ed count when `conntrack` is
    /// [`Conntrack::Dnat`] (as [`Conntrack::OrigDstPort`]'s `dnat`).
    pub orig_dport_ranges: Option<String>,
    /// The packet's own destination port is in this range (`-m <proto>
    /// --dport`); needs `proto`.
    pub dport: Option<PortRange>,
    /// The packet is ICMPv6 of this type (IPv6 rules only, without
    /// `proto`): neighbour discovery, which always passes.
    pub icmpv6_type: Option<u8>,
    pub conntrack: Option<Conntrack>,
    pub target: Target,
    /// What part of the policy the rule comes from; carried into the
    /// rule's text as a comment, so that the firewall's counters map back.
    pub origin: Option<Origin>,
}

/// The part of the policy a rule carries out. Its text ([`Origin::label`])
/// is built from fixed words and numbers only, never from a string Docker
/// reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// The deny entry whose table header is on this line of the policy.
    Deny { line: usize },
    /// The allow entry whose table header is on this line of the policy.
    Allow { line: usize },
    /// `default = "deny"`: what no entry admits.
    DefaultDeny,
    /// One published port, counted by the elements of the drop sets of
    /// [`DROP_CHAIN`]: every drop of a connection to it, whatever entry
    /// decided it. No rule carries it.
    Port { proto: Proto, port: u16 },
    /// The drop of a forwarded connection first addressed to a loopback
    /// address: one to a port published on 127.0.0.1 that Docker DNAT-ed
    /// for a neighbour (engines before 28, moby#41872).
    Loopback,
    /// The `[[outbound.deny]]` entry whose table header is on this line.
    OutboundDeny { line: usize },
    /// `[outbound]`'s `default = "deny"`: what no allow entry admits.
    OutboundDefault,
    /// The drop of what an isolated container (or, when some container
    /// is isolated, a source no known container has) starts that no allow
    /// entry admits, under `default = "allow"`.
    OutboundIsolated,
    /// `to_host = "deny"`: a new connection from a container to the host.
    ToHost,
    /// The `[[east_west.deny]]` entry whose table header is on this line.
    EastWestDeny { line: usize },
    /// `[east_west]`'s `default = "deny"`: a new connection between
    /// containers no allow entry admits.
    EastWestDefault,
    /// The drop of a new connection to an isolated container (or, when
    /// some container is isolated, to or from an address no known
    /// container has) that no allow entry admits, under `default =
    /// "allow"`.
    EastWestIsolated,
}

/// How many drops a minute `--log-drops` logs per rule, after a burst of
/// five (both backends' default burst).
pub const LOG_LIMIT_PER_MINUTE: u32 = 10;

/// What every origin comment starts with.
pub const ORIGIN_PREFIX: &str = "dockfw ";

impl Origin {
    /// `deny@33`, `allow@7`, `default`: the name the counters and metrics
    /// use.
    pub fn label(self) -> String {
        match self {
            Origin::Deny { line } => format!("deny@{line}"),
            Origin::Allow { line } => format!("allow@{line}"),
            Origin::DefaultDeny => "default".to_owned(),
            Origin::Port { proto, port } => format!("port {}/{port}", proto.as_str()),
            Origin::Loopback => "loopback".to_owned(),
            Origin::OutboundDeny { line } => format!("out-deny@{line}"),
            Origin::OutboundDefault => "out-default".to_owned(),
            Origin::OutboundIsolated => "out-isolated".to_owned(),
            Origin::ToHost => "to-host".to_owned(),
            Origin::EastWestDeny { line } => format!("ew-deny@{line}"),
            Origin::EastWestDefault => "ew-default".to_owned(),
            Origin::EastWestIsolated => "ew-isolated".to_owned(),
        }
    }

    /// What dropped, in words: `deny entry at line 33`, `outbound default
    /// deny`, `to_host deny`.
    pub fn description(self) -> String {
        match self {
            Origin::Deny { line } => format!("deny entry at line {line}"),
            Origin::Allow { line } => format!("allow entry at line {line}"),
            Origin::DefaultDeny => "default deny".to_owned(),
            Origin::Port { proto, port } => format!("port {}/{port}", proto.as_str()),
            Origin::Loopback => "loopback guard (addressed to 127.0.0.1 or ::1)".to_owned(),
            Origin::OutboundDeny { line } => format!("outbound deny entry at line {line}"),
            Origin::OutboundDefault => "outbound default deny".to_owned(),
            Origin::OutboundIsolated => "outbound isolation".to_owned(),
            Origin::ToHost => "to_host deny".to_owned(),
            Origin::EastWestDeny { line } => format!("east-west deny entry at line {line}"),
            Origin::EastWestDefault => "east-west default deny".to_owned(),
            Origin::EastWestIsolated => "east-west isolation".to_owned(),
        }
    }

    /// The line of the policy entry behind it, if one is.
    pub fn line(self) -> Option<usize> {
        match self {
            Origin::Deny { line }
            | Origin::Allow { line }
            | Origin::OutboundDeny { line }
            | Origin::EastWestDeny { line } => Some(line),
            _ => None,
        }
    }

    /// The rule comment: `dockfw deny@33`.
    pub fn comment(self) -> String {
        format!("{ORIGIN_PREFIX}{}", self.label())
    }

    /// The prefix of a logged drop, `dockfw deny@33 `: short enough for
    /// iptables' 29 characters whatever the line (`dockfw allow@1000000 `
    /// is 21).
    pub fn log_prefix(self) -> String {
        format!("{} ", self.comment())
    }

    /// The origin a rule comment names, if it is one of dockfw's.
    pub fn from_comment(comment: &str) -> Option<Origin> {
        Origin::from_label(comment.strip_prefix(ORIGIN_PREFIX)?)
    }

    /// The origin of a [`Origin::label`] (not of a port's).
    pub fn from_label(label: &str) -> Option<Origin> {
        match label {
            "default" => return Some(Origin::DefaultDeny),
            "loopback" => return Some(Origin::Loopback),
            "out-default" => return Some(Origin::OutboundDefault),
            "out-isolated" => return Some(Origin::OutboundIsolated),
            "to-host" => return Some(Origin::ToHost),
            "ew-default" => return Some(Origin::EastWestDefault),
            "ew-isolated" => return Some(Origin::EastWestIsolated),
            _ => {}
        }
        let (kind, line) = label.split_once('@')?;
        if !line.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let line = line.parse().ok()?;
        match kind {
            "deny" => Some(Origin::Deny { line }),
            "allow" => Some(Origin::Allow { line }),
            "out-deny" => Some(Origin::OutboundDeny { line }),
            "ew-deny" => Some(Origin::EastWestDeny { line }),
            _ => None,
        }
    }
}

impl Rule {
    /// Whether the rule matches on an address or a set of addresses, which
    /// ties it to one family.
    pub fn names_addresses(&self) -> bool {
        self.src.is_some()
            || self.dst.is_some()
            || self.src_set.is_some()
            || self.dst_set.is_some()
            || matches!(self.conntrack, Some(Conntrack::OrigDst(_)))
    }

    /// Whether the rule belongs to one family: it names an address, or a
    /// set of that family's ports.
    pub fn of_one_family(&self) -> bool {
        self.names_addresses()
            || self.icmpv6_type.is_some()
            || self.dport_set.is_some()
            || self.orig_dport_set.is_some()
            || self.orig_dport_ranges.is_some()
    }
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
    /// `--ctorigdst`: the destination address before DNAT is in this
    /// network (of the rule's family).
    OrigDst(IpNet),
}

/// What happens to a packet that matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Target {
    /// Leave it to Docker's own rules.
    #[default]
    Return,
    Drop,
    Jump(&'static str),
    /// Log the packet (rate-limited, prefixed with the rule's origin) and
    /// go on to the next rule.
    Log,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_comments_read_back_and_nothing_else_does() {
        for origin in [
            Origin::Deny { line: 33 },
            Origin::Allow { line: 7 },
            Origin::DefaultDeny,
            Origin::Loopback,
            Origin::OutboundDeny { line: 12 },
            Origin::OutboundDefault,
            Origin::OutboundIsolated,
            Origin::ToHost,
            Origin::EastWestDeny { line: 20 },
            Origin::EastWestDefault,
            Origin::EastWestIsolated,
        ] {
            assert_eq!(Origin::from_comment(&origin.comment()), Some(origin));
        }
        assert_eq!(Origin::Deny { line: 33 }.log_prefix(), "dockfw deny@33 ");
        for other in [
            "dockfw",
            "dockfw-restored",
            "dockfw deny@",
            "dockfw deny@+3",
            "x deny@3",
            "dockfw port tcp/80",
        ] {
            assert_eq!(Origin::from_comment(other), None, "{other}");
        }
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    #[test]
    fn set_elements_contained_in_another_are_left_out() {
        let set = AddrSet::new(
            "allow-1-src-v4".to_owned(),
            Family::V4,
            nets(&[
                "10.1.0.0/16",
                "10.0.0.0/8",
                "10.0.0.0/8",
                "192.0.2.7/32",
                "192.0.2.6/32",
                "192.0.2.0/29",
                "198.51.100.0/24",
            ]),
        );
        let kept: Vec<String> = set.elements.iter().map(ToString::to_string).collect();
        assert_eq!(kept, ["10.0.0.0/8", "192.0.2.0/29", "198.51.100.0/24"]);
    }

    #[test]
    fn port_ranges_are_merged_and_a_change_of_them_is_a_change_of_rules() {
        let range = |first, last| PortRange { first, last };
        let ports = |ranges: Vec<PortRange>| FamilyRules {
            orig_port_sets: vec![OrigPortSet::new(
                "allow-1-ports-v4".to_owned(),
                Family::V4,
                ranges,
            )],
            ..FamilyRules::default()
        };
        let merged = ports(vec![
            range(90, 95),
            range(80, 80),
            range(81, 89),
            range(97, 97),
        ]);
        assert_eq!(
            merged.orig_port_sets[0].ranges,
            [range(80, 95), range(97, 97)],
            "touching and overlapping ranges merge, others stay"
        );
        let top = ports(vec![range(65535, 65535), range(1, 65534)]);
        assert_eq!(top.orig_port_sets[0].ranges, [range(1, 65535)]);
        assert!(merged.same_rules(&merged.clone()));
        assert!(
            !merged.same_rules(&ports(vec![range(80, 96)])),
            "iptables writes a rule per range"
        );
    }

    #[test]
    fn only_elements_differ_when_rules_and_set_names_agree() {
        let rules = |elements: &[&str]| FamilyRules {
            chains: vec![Chain {
                name: UNCLASSIFIED_CHAIN,
                rules: vec![Rule {
                    dst_set: Some("known-v4".to_owned()),
                    ..Rule::default()
                }],
            }],
            sets: vec![AddrSet::new(
                "known-v4".to_owned(),
                Family::V4,
                nets(elements),
            )],
            port_sets: Vec::new(),
            drop_ports: Vec::new(),
            orig_port_sets: Vec::new(),
            drop_endpoints: BTreeSet::new(),
        };
        let few = rules(&["172.17.0.2/32"]);
        let more = rules(&["172.17.0.2/32", "172.17.0.3/32"]);
        assert!(few.same_rules(&more) && few != more);
        let mut renamed = more.clone();
        renamed.sets[0].name = "known-v6".to_owned();
        assert!(!few.same_rules(&renamed));
        let mut dropped = more.clone();
        dropped.chains[0].rules[0].target = Target::Drop;
        assert!(!few.same_rules(&dropped));
    }
}
