//! The `[outbound]` table as rules: new connections a container starts to
//! anything that is not a container (FORWARD, from a Docker bridge to any
//! other interface, judged on the plain destination address and port), and
//! to the host itself (`to_host`: INPUT from a Docker bridge). Pure, like
//! the rest of [`crate::plan`]; without an `[outbound]` table it plans
//! nothing at all, so a version 1 policy gives the rules it always gave.
//!
//! The shape, per family:
//!
//! ```text
//! DOCKFW          (after established/related and the loopback drop)
//!                 -i <each verified bridge> -> DOCKFW-OUTBOUND
//!                 -s <subnet of a bridge network not verified: a refused name, not a bridge now> -> DOCKFW-OUTBOUND
//!                 -s <container on such a bridge, outside its subnets> -> DOCKFW-OUTBOUND
//! DOCKFW-OUTBOUND -o <each verified bridge>, -d <container off them> -> RETURN
//!                                                             (to a container: not outbound)
//!                 (selector denies, or isolates under default allow) -> DOCKFW-OUT-UNCLASSIFIED
//!                 deny entries                    -> DROP     (selectors: -s @ob-deny-N)
//!                 allow entries                   -> RETURN   (when something is restricted)
//!                 everything else                 -> DROP     (default deny)
//!                 -s @ob-isolated                 -> DROP     (default allow, isolates)
//! DOCKFW-OUT-UNCLASSIFIED  -s @known (every container address) -> RETURN
//!                 selector deny entries, any source -> DROP
//!                 selector-less allow entries     -> RETURN   (isolates under default allow)
//!                 everything else                 -> DROP     (idem)
//! DOCKFW-PROXY    (after established/related and lo)
//!                 the same jumps as DOCKFW makes  -> DOCKFW-TO-HOST
//! DOCKFW-TO-HOST  ICMPv6 neighbour discovery      -> RETURN   (IPv6)
//!                 per protocol: dport @proxied-tcp -> RETURN  (a hairpin: east-west)
//!                 everything else                 -> DROP     (to_host = "deny" only)
//! ```
//!
//! Replies pass: the entry chain returns established and related traffic
//! before any of this. Sources follow containers as the elements of sets
//! (`ob-allow-2-v4`: the addresses of the containers `[[outbound.allow]]`
//! number 2 selects), never as rules. Fail closed: a source no known
//! container has (a container an instant old) is judged by every selector
//! deny, and, when any container is isolated, as isolated (only allow
//! entries without selectors admit it), until a re-plan classifies it. A
//! `to` list of one family says nothing about the other. Drops here are
//! plain drops, not counted per published port (`DOCKFW-DROP` counts
//! drops per published port, which these are not): each carries its
//! [`Origin`] (`out-deny@12`, `out-default`, `out-isolated`, `to-host`),
//! so the firewall's rule counters count them per entry, with as many
//! counting rules as the entry has rules, however many containers it
//! selects.

use std::collections::BTreeSet;

use super::{
    EntryId, PortMatch, addresses_off_known_bridges, known_set, selected_addresses, services,
    verified_bridges, verified_interfaces, without_repeats,
};
use crate::inventory::Inventory;
use crate::policy::{Default, Entry, Outbound, Policy, Sources};
use crate::ruleset::{
    AddrSet, Chain, Conntrack, Family, Iface, OUTBOUND_CHAIN, OUTBOUND_UNCLASSIFIED_CHAIN,
    OrigPortSet, Origin, Rule, TO_HOST_CHAIN, Target,
};

use ipnet::IpNet;

/// ICMPv6 neighbour discovery: router solicitation and advertisement,
/// neighbour solicitation and advertisement, redirect (RFC 4861).
pub(super) const NEIGHBOUR_DISCOVERY: [u8; 5] = [133, 134, 135, 136, 137];

/// What the `[outbound]` table adds to one family's plan.
#[derive(Debug, Default)]
pub(super) struct OutboundRules {
    pub chains: Vec<Chain>,
    pub sets: Vec<AddrSet>,
    pub orig_port_sets: Vec<OrigPortSet>,
}

/// The jumps the forward entry chain makes, before it lets traffic from
/// containers through: none without an `[outbound]` table.
pub(super) fn forward_jumps(policy: &Policy, inventory: &Inventory, family: Family) -> Vec<Rule> {
    match &policy.outbound {
        Some(outbound) if judged(outbound) => from_containers_to(inventory, family, OUTBOUND_CHAIN),
        _ => Vec::new(),
    }
}

/// The jumps the INPUT chain makes, before it lets traffic from containers
/// through: only under `to_host = "deny"`.
pub(super) fn input_jumps(policy: &Policy, inventory: &Inventory, family: Family) -> Vec<Rule> {
    match &policy.outbound {
        Some(outbound) if outbound.to_host == Default::Deny => {
            from_containers_to(inventory, family, TO_HOST_CHAIN)
        }
        _ => Vec::new(),
    }
}

/// A jump to `chain` for what arrives on each verified bridge (or on a
/// bridge whose subnets could not all be read, when the kernel has it as a
/// Linux bridge now: judged by interface, exempted by none); for what
/// comes from a subnet of any other bridge network (a refused name, an
/// interface that is not a Linux bridge now), covered by address whether
/// or not a known container has the address; and for what comes from the
/// address of a known container on such a bridge that no subnet covers.
pub(super) fn from_containers_to(
    inventory: &Inventory,
    family: Family,
    chain: &'static str,
) -> Vec<Rule> {
    containers_on(inventory, family, Side::From, chain)
}

/// Which side of a connection a jump of [`containers_on`] matches: where
/// it comes from (`-i`, `-s`) or where it goes (`-o`, `-d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    From,
    To,
}

/// A jump to `chain` for what comes from (or goes to) a container on a
/// Docker bridge, on `side`: by interface for each verified bridge and each
/// bridge whose subnets could not all be read; by address for each subnet
/// of any other bridge network, and for each known container on such a
/// bridge that no subnet covers ([`from_containers_to`]).
pub(super) fn containers_on(
    inventory: &Inventory,
    family: Family,
    side: Side,
    chain: &'static str,
) -> Vec<Rule> {
    let jump = |iface: Option<Iface>, net: Option<IpNet>| {
        let rule = Rule {
            target: Target::Jump(chain),
            ..Rule::default()
        };
        match side {
            Side::From => Rule {
                in_iface: iface,
                src: net,
                ..rule
            },
            Side::To => Rule {
                out_iface: iface,
                dst: net,
                ..rule
            },
        }
    };
    let subnets = unverified_subnets(inventory, family);
    let by_addr = addresses_off_known_bridges(inventory, family)
        .into_iter()
        .map(IpNet::from)
        .filter(|addr| !subnets.iter().any(|net| net.contains(addr)));
    let by_iface = verified_interfaces(inventory)
        .into_iter()
        .chain(unread_bridge_interfaces(inventory));
    (by_iface.map(|iface| jump(Some(iface), None)))
        .chain(subnets.iter().map(|net| jump(None, Some(*net))))
        .chain(by_addr.map(|addr| jump(None, Some(addr))))
        .collect()
}

/// The subnets in `family` of every bridge network dockfw does not judge
/// by its interface ([`super::verified_interfaces`]), without repeats.
pub(super) fn unverified_subnets(inventory: &Inventory, family: Family) -> Vec<IpNet> {
    let verified = verified_bridges(inventory);
    let nets: BTreeSet<IpNet> = (inventory.subnets.keys())
        .filter(|id| !verified.contains_key(id.as_str()))
        .flat_map(|id| inventory.subnets_of(id, family))
        .collect();
    nets.into_iter().collect()
}

/// The interfaces of bridges whose subnets could not all be read, when
/// their name is one dockfw renders and the kernel has them as Linux
/// bridges now: what arrives on them is judged (never exempted), so that
/// a subnet dockfw could not read is covered all the same.
pub(super) fn unread_bridge_interfaces(inventory: &Inventory) -> Vec<Iface> {
    (inventory.bridges.iter())
        .filter(|b| inventory.unreadable_subnets.contains(&b.id))
        .filter(|b| !inventory.not_bridges.contains(&b.interface))
        .filter_map(|b| Iface::new(&b.interface).ok())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The chains and sets of the `[outbound]` table in `family`.
pub(super) fn plan(policy: &Policy, inventory: &Inventory, family: Family) -> OutboundRules {
    let Some(outbound) = &policy.outbound else {
        return OutboundRules::default();
    };
    let mut chains = Vec::new();
    if judged(outbound) {
        chains.push(outbound_chain(outbound, inventory, family));
    }
    if judged(outbound) && needs_unclassified(outbound, family) {
        chains.push(unclassified_chain(outbound, family));
    }
    if outbound.to_host == Default::Deny {
        chains.push(to_host_chain(family));
    }
    let sets = sets(outbound, inventory, family, &chains);
    let orig_port_sets = orig_port_sets(outbound, family, &chains);
    OutboundRules {
        chains,
        sets,
        orig_port_sets,
    }
}

/// Whether anything a container starts to the outside may be dropped: a
/// deny entry, `default = "deny"` or an isolate entry. Otherwise nothing
/// is planned for it (allow entries alone admit what passes anyway).
fn judged(outbound: &Outbound) -> bool {
    !outbound.deny.is_empty() || outbound.restricts()
}

/// Whether a source no known container has needs judging apart: some deny
/// entry selects containers (and has destinations in `family`), or some
/// container is isolated while the default allows (an unknown source then
/// counts as isolated; under default deny it meets the default anyway).
fn needs_unclassified(outbound: &Outbound, family: Family) -> bool {
    selector_denies(outbound, family).next().is_some()
        || (outbound.default == Default::Allow && !outbound.isolate.is_empty())
}

fn selector_denies(outbound: &Outbound, family: Family) -> impl Iterator<Item = (EntryId, &Entry)> {
    numbered(&outbound.deny, "ob-deny")
        .filter(move |(_, e)| e.has_selector() && e.sources(family).is_some())
}

/// Only a bridge the kernel has as a Linux bridge now is exempted as "to a
/// container" by interface: a bridge-name option naming the uplink must
/// not exempt everything that leaves by it. A container on any other
/// known bridge is exempted by its address.
fn outbound_chain(outbound: &Outbound, inventory: &Inventory, family: Family) -> Chain {
    let mut rules: Vec<Rule> = verified_interfaces(inventory)
        .into_iter()
        .map(|iface| Rule {
            out_iface: Some(iface),
            ..Rule::default()
        })
        .collect();
    rules.extend(
        addresses_off_known_bridges(inventory, family)
            .into_iter()
            .map(|addr| Rule {
                dst: Some(IpNet::from(addr)),
                ..Rule::default()
            }),
    );
    if needs_unclassified(outbound, family) {
        rules.push(Rule {
            target: Target::Jump(OUTBOUND_UNCLASSIFIED_CHAIN),
            ..Rule::default()
        });
    }
    for (id, entry) in numbered(&outbound.deny, "ob-deny") {
        let from = entry.has_selector().then(|| id.selected_set(family));
        rules.extend(entry_rules(id, entry, family, from, Target::Drop));
    }
    if outbound.restricts() {
        for (id, entry) in numbered(&outbound.allow, "ob-allow") {
            let from = entry.has_selector().then(|| id.selected_set(family));
            rules.extend(entry_rules(id, entry, family, from, Target::Return));
        }
        let isolates_only = outbound.default == Default::Allow;
        rules.push(Rule {
            src_set: isolates_only.then(|| isolated_set(family)),
            target: Target::Drop,
            origin: Some(if isolates_only {
                Origin::OutboundIsolated
            } else {
                Origin::OutboundDefault
            }),
            ..Rule::default()
        });
    }
    Chain {
        name: OUTBOUND_CHAIN,
        rules: without_repeats(rules),
    }
}

/// Sources no known container has: every selector deny applies to them,
/// and where some container is isolated under default allow, they are
/// isolated too.
fn unclassified_chain(outbound: &Outbound, family: Family) -> Chain {
    let mut rules = vec![Rule {
        src_set: Some(known_set(family)),
        ..Rule::default()
    }];
    for (id, entry) in selector_denies(outbound, family) {
        rules.extend(entry_rules(id, entry, family, None, Target::Drop));
    }
    if outbound.default == Default::Allow && !outbound.isolate.is_empty() {
        let selectorless = numbered(&outbound.allow, "ob-allow").filter(|(_, e)| !e.has_selector());
        for (id, entry) in selectorless {
            rules.extend(entry_rules(id, entry, family, None, Target::Return));
        }
        rules.push(Rule {
            target: Target::Drop,
            origin: Some(Origin::OutboundIsolated),
            ..Rule::default()
        });
    }
    Chain {
        name: OUTBOUND_UNCLASSIFIED_CHAIN,
        rules: without_repeats(rules),
    }
}

/// `to_host = "deny"`: every new connection from a container to the host
/// is dropped, but IPv6 neighbour discovery (which a container needs to
/// reach its gateway at all) passes, and so does a hairpin to a port
/// docker-proxy serves on every address: that is east-west
/// ([`super::hairpin`]), as it is when Docker DNATs it.
fn to_host_chain(family: Family) -> Chain {
    let mut rules = Vec::new();
    if family == Family::V6 {
        rules.extend(NEIGHBOUR_DISCOVERY.map(|icmpv6_type| Rule {
            icmpv6_type: Some(icmpv6_type),
            ..Rule::default()
        }));
    }
    // A hairpin to a port docker-proxy serves is east-west, not to_host
    // (through DNAT it never reaches INPUT at all).
    rules.extend(super::hairpin::per_proxied_port(family, Target::Return));
    rules.push(Rule {
        target: Target::Drop,
        origin: Some(Origin::ToHost),
        ..Rule::default()
    });
    Chain {
        name: TO_HOST_CHAIN,
        rules,
    }
}

/// An outbound entry's rules: destinations (`to`) x (protocol, port
/// range), from the set of the containers it selects (`from_set`) or any
/// source. Ports are the destination port the container addressed (the
/// original one in conntrack: nothing is DNAT-ed on this path).
fn entry_rules(
    id: EntryId,
    entry: &Entry,
    family: Family,
    from_set: Option<String>,
    target: Target,
) -> Vec<Rule> {
    let Some(destinations) = entry.sources(family) else {
        return Vec::new();
    };
    let to: Vec<(Option<IpNet>, Option<String>)> = match destinations {
        Sources::Anywhere => vec![(None, None)],
        Sources::Nets(nets) if entry.sources_as_set(nets.len()) => {
            vec![(None, Some(destination_set(id, family)))]
        }
        Sources::Nets(nets) => nets.into_iter().map(|n| (Some(*n), None)).collect(),
    };
    let mut rules = Vec::new();
    for (dst, dst_set) in &to {
        for (proto, ports) in services(id, entry, family) {
            let (conntrack, orig_dport_ranges) = match ports {
                PortMatch::Any => (None, None),
                PortMatch::Range(ports) => {
                    (Some(Conntrack::OrigDstPort { ports, dnat: false }), None)
                }
                PortMatch::Set(name) => (None, Some(name)),
            };
            rules.push(Rule {
                src_set: from_set.clone(),
                dst: *dst,
                dst_set: dst_set.clone(),
                proto,
                conntrack,
                orig_dport_ranges,
                target: target.clone(),
                origin: (target == Target::Drop).then_some(Origin::OutboundDeny { line: id.line }),
                ..Rule::default()
            });
        }
    }
    rules
}

/// `ob-allow-2`, `ob-deny-1`: outbound entries by kind and place, so that
/// their sets never share a name with an inbound entry's.
fn numbered<'a>(
    entries: &'a [Entry],
    kind: &'static str,
) -> impl Iterator<Item = (EntryId, &'a Entry)> {
    super::numbered(entries, kind)
}

/// The set of an entry's destinations, when they are too many to list:
/// `ob-allow-2-to-v4`.
fn destination_set(id: EntryId, family: Family) -> String {
    format!("{}-{}-to-{}", id.kind, id.number, super::family_tag(family))
}

/// The set of the addresses of every container an isolate entry selects.
pub(super) fn isolated_set(family: Family) -> String {
    format!("ob-isolated-{}", super::family_tag(family))
}

/// The address sets the rules of `chains` name, each with its elements,
/// apart from `known-v4`, which the inbound plan makes when any rule names
/// it.
fn sets(
    outbound: &Outbound,
    inventory: &Inventory,
    family: Family,
    chains: &[Chain],
) -> Vec<AddrSet> {
    let named = super::named_address_sets(chains);
    let mut sets = Vec::new();
    let mut add = |name: String, elements: &dyn Fn() -> Vec<IpNet>| {
        if named.contains(name.as_str()) && !sets.iter().any(|s: &AddrSet| s.name == name) {
            sets.push(AddrSet::new(name, family, elements()));
        }
    };
    add(isolated_set(family), &|| {
        (outbound.isolate.iter())
            .flat_map(|e| selected_addresses(e, inventory, family))
            .collect()
    });
    let entries = numbered(&outbound.allow, "ob-allow").chain(numbered(&outbound.deny, "ob-deny"));
    for (id, entry) in entries {
        add(id.selected_set(family), &|| {
            selected_addresses(entry, inventory, family)
        });
        add(
            destination_set(id, family),
            &|| match entry.sources(family) {
                Some(Sources::Nets(nets)) => nets.into_iter().copied().collect(),
                _ => Vec::new(),
            },
        );
    }
    sets
}

/// The sets of port ranges the rules of `chains` name: those of entries
/// with more ports than are written one rule each.
fn orig_port_sets(outbound: &Outbound, family: Family, chains: &[Chain]) -> Vec<OrigPortSet> {
    let named = super::named_port_sets(chains);
    let entries = numbered(&outbound.allow, "ob-allow").chain(numbered(&outbound.deny, "ob-deny"));
    entries
        .filter(|(id, _)| named.contains(id.port_set(family).as_str()))
        .map(|(id, entry)| {
            let ranges = entry.ports.iter().flatten().copied();
            OrigPortSet::new(id.port_set(family), family, ranges)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::inventory::{Attachment, Bridge, Container, Inventory};
    use crate::net::Family;
    use crate::ruleset::{OUTBOUND_CHAIN, Rule, Target};

    fn policy(text: &str) -> crate::policy::Policy {
        crate::policy::parse_str(text, Path::new("p.toml")).expect("valid")
    }

    fn inventory(not_bridges: &[&str]) -> Inventory {
        let bridge = |id: &str, interface: &str| Bridge {
            id: id.to_owned(),
            name: id.to_owned(),
            interface: interface.to_owned(),
        };
        Inventory {
            bridges: vec![bridge("n1", "docker0"), bridge("n2", "eth0")],
            containers: vec![Container {
                id: "c1".to_owned(),
                name: "c".to_owned(),
                attachments: vec![Attachment {
                    network_id: "n2".to_owned(),
                    network: "n2".to_owned(),
                    ipv4: Some("172.18.0.2".parse().expect("addr")),
                    ipv6: None,
                }],
                labels: Default::default(),
                host_network: false,
                ports: Vec::new(),
            }],
            not_bridges: not_bridges.iter().map(|s| (*s).to_owned()).collect(),
            ..Inventory::default()
        }
    }

    fn outbound_rules(policy: &crate::policy::Policy, inventory: &Inventory) -> Vec<Rule> {
        let plan = super::super::plan(policy, inventory);
        let chain = plan
            .family(Family::V4)
            .chains
            .iter()
            .find(|c| c.name == OUTBOUND_CHAIN);
        chain.map(|c| c.rules.clone()).unwrap_or_default()
    }

    #[test]
    fn an_interface_that_is_not_a_bridge_now_exempts_nothing_that_leaves_by_it() {
        let policy = policy("[outbound]\ndefault = \"deny\"\n");
        let exempted = |rules: &[Rule]| -> Vec<String> {
            rules
                .iter()
                .filter(|r| r.target == Target::Return)
                .filter_map(|r| r.out_iface.as_ref().map(ToString::to_string))
                .collect()
        };
        assert_eq!(
            exempted(&outbound_rules(&policy, &inventory(&[]))),
            ["docker0", "eth0"]
        );
        let rules = outbound_rules(&policy, &inventory(&["eth0"]));
        assert_eq!(
            exempted(&rules),
            ["docker0"],
            "the uplink a bridge option names"
        );
        assert!(
            rules
                .iter()
                .any(|r| r.dst == Some("172.18.0.2/32".parse().expect("net"))),
            "its container is exempted by address"
        );
    }

    #[test]
    fn a_subnet_of_a_bridge_not_judged_by_interface_is_judged_by_address() {
        let policy = policy("[outbound]\ndefault = \"deny\"\n");
        let mut inventory = inventory(&["eth0"]);
        inventory.bridges[0].interface = "+".to_owned();
        inventory.subnets = [("n1", "172.17.0.0/16"), ("n2", "172.18.0.0/24")]
            .map(|(id, net)| (id.to_owned(), vec![net.parse().expect("net")]))
            .into();
        inventory.containers[0].attachments[0].ipv4 = Some("10.9.0.2".parse().expect("addr"));
        let plan = super::super::plan(&policy, &inventory);
        let entry = &plan.family(Family::V4).chains[0];
        let jumped: Vec<String> = (entry.rules.iter())
            .filter(|r| r.target == Target::Jump(OUTBOUND_CHAIN))
            .filter_map(|r| r.src.map(|s| s.to_string()))
            .collect();
        assert_eq!(jumped, ["172.17.0.0/16", "172.18.0.0/24", "10.9.0.2/32"]);
        inventory.containers[0].attachments[0].ipv4 = Some("172.18.0.2".parse().expect("addr"));
        inventory.bridges[0].interface = "docker0".to_owned();
        inventory.not_bridges.clear();
        inventory.unreadable_subnets.insert("n2".to_owned());
        let plan = super::super::plan(&policy, &inventory);
        let jumps: Vec<String> = (plan.family(Family::V4).chains[0].rules.iter())
            .filter(|r| r.target == Target::Jump(OUTBOUND_CHAIN))
            .map(|r| format!("{:?} {:?}", r.in_iface.as_ref().map(|i| i.as_str()), r.src))
            .collect();
        assert_eq!(
            jumps,
            [
                "Some(\"docker0\") None",
                "Some(\"eth0\") None",
                "None Some(172.18.0.0/24)",
            ],
            "an unreadable subnet's bridge is judged by interface too, and its container is covered by its subnet"
        );
    }

    #[test]
    fn each_drop_counts_for_its_entry_with_as_many_rules_however_many_containers() {
        use crate::ruleset::Origin;
        let policy = policy(
            "[outbound]\nto_host = \"deny\"\n\n[[outbound.isolate]]\ncontainers = [\"c*\"]\n\n\
             [[outbound.deny]]\ncontainers = [\"c*\"]\nto = [\"169.254.169.254\"]\nports = [80, 443]\n",
        );
        let origins = |inventory: &Inventory| -> Vec<(String, Origin)> {
            let plan = super::super::plan(&policy, inventory);
            (plan.family(Family::V4).chains.iter())
                .flat_map(|c| c.rules.iter().map(move |r| (c.name, r)))
                .filter(|(chain, _)| chain.contains("OUT") || chain.contains("TO-HOST"))
                .filter(|(_, r)| r.target == Target::Drop)
                .map(|(chain, r)| {
                    (
                        chain.to_owned(),
                        r.origin.expect("every drop names its origin"),
                    )
                })
                .collect()
        };
        let one = inventory(&[]);
        let mut three = one.clone();
        for n in 2..4 {
            let mut c = three.containers[0].clone();
            c.name = format!("c{n}");
            c.attachments[0].ipv4 = Some(format!("172.18.0.{n}").parse().expect("addr"));
            three.containers.push(c);
        }
        let deny = Origin::OutboundDeny { line: 7 };
        let expected = [
            (OUTBOUND_CHAIN, deny),
            (OUTBOUND_CHAIN, deny),
            (OUTBOUND_CHAIN, Origin::OutboundIsolated),
            ("DOCKFW-OUT-UNCLASSIFIED", deny),
            ("DOCKFW-OUT-UNCLASSIFIED", deny),
            ("DOCKFW-OUT-UNCLASSIFIED", Origin::OutboundIsolated),
            ("DOCKFW-TO-HOST", Origin::ToHost),
        ]
        .map(|(chain, origin)| (chain.to_owned(), origin));
        assert_eq!(origins(&one), expected);
        assert_eq!(origins(&three), expected, "containers are set elements");
    }

    #[test]
    fn an_outbound_table_that_restricts_nothing_plans_nothing() {
        let plain = super::super::plan(&policy("[inbound]\n"), &inventory(&[]));
        for text in [
            "[outbound]\n",
            "[outbound]\n[[outbound.allow]]\nto = [\"10.0.0.1\"]\n",
        ] {
            assert_eq!(
                super::super::plan(&policy(text), &inventory(&[])),
                plain,
                "{text}"
            );
        }
    }
}
