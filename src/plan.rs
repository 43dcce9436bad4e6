//! `plan(&Policy, &Inventory) -> Ruleset`: the whole of dockfw's firewall
//! logic, and [`exposures`], the same policy read back as one verdict per
//! published port for `dockfw status`. [`IncrementalPlan`] keeps the same
//! plan up to date one container at a time (`plan` is its reference).
//!
//! Pure: no I/O, no clock. The shape of the rules, per family:
//!
//! ```text
//! DOCKFW          established/related             -> RETURN
//!                 --ctorigdst 127.0.0.0/8 (::1)   -> DROP*    (loopback-only ports)
//!                 -i <each known Docker bridge that is a Linux bridge now> -> RETURN
//!                                                             (from containers)
//!                 -o <each known Docker bridge>   -> DOCKFW-INBOUND
//!                 -d <container on a refused bridge, or one not a bridge now> -> DOCKFW-INBOUND
//!                 any other DNAT-ed connection    -> DOCKFW-INBOUND
//! DOCKFW-INBOUND  (selector denies) -> DOCKFW-UNCLASSIFIED
//!                 deny entries                    -> DROP*    (selectors: -d @deny-N)
//!                 allow entries (DNAT-ed only)    -> RETURN   (default deny only; -d @allow-N)
//!                 -o <each routed bridge> allow entries with ports -> RETURN (idem)
//!                 everything else                 -> DROP*    (default deny only)
//! DOCKFW-UNCLASSIFIED  -d @known (every container address) -> RETURN
//!                 selector deny entries, any destination -> DROP*
//! DOCKFW-PROXY    established/related, from lo    -> RETURN   (jumped to from INPUT)
//!                 -i <each known Docker bridge that is a Linux bridge now> -> RETURN
//!                 per port a deny entry or an allow entry with `from` covers, or
//!                 published on one address: the same verdict, on (-d and) --dport
//!                 -p P -m set guard-P (every other port no entry admits) -> DROP* (default deny)
//! DOCKFW-DROP     per protocol P: -p P, port before DNAT in @dropped-P -> DROP
//!                                 (each element of the set counts its port)
//!                 anything else                   -> DROP
//! ```
//!
//! `DROP*` is a jump to `DOCKFW-DROP`: the entry's rule counts the drop for
//! the entry, the set element of the drop chain for the port.
//!
//! With an `[outbound]` table, what containers start is judged first: the
//! entry chain jumps to `DOCKFW-OUTBOUND` for what arrives from a bridge
//! (before its `-i <bridge> -> RETURN`), and `DOCKFW-PROXY` to
//! `DOCKFW-TO-HOST` under `to_host = "deny"`; see [`outbound`]. With an
//! `[east_west]` table, the entry chain first jumps to `DOCKFW-EAST-WEST`
//! for what arrives from a bridge, where what goes to a container is
//! judged; see [`east_west`]; and `DOCKFW-PROXY` first jumps to
//! `DOCKFW-EW-HAIRPIN` for it, where a hairpin to a port docker-proxy
//! serves is judged the same way; see [`hairpin`].
//!
//! Ports are matched with `--ctorigdstport`, the destination port before
//! Docker's DNAT, i.e. the published host port. Allow entries with ports
//! also require `--ctstate DNAT`: a connection routed straight to a
//! container address has no published port, so only port-less entries
//! admit it.
//!
//! What grows with containers or sources goes into named address sets
//! ([`AddrSet`]), never into rules: an entry with container selectors has
//! one rule per (protocol, port range) matching the set of its selected
//! containers' addresses (`allow-N-v4`: allow entry N, 1-based, in that
//! family; a set with no element matches nothing, and the rule stays, so
//! that a container coming or going changes elements only); the known
//! container addresses are the set `known-v4`; a `from` list of more than
//! [`MAX_LISTED_SOURCES`] networks in a family is the set `allow-N-src-v4`;
//! `ports` of more than [`MAX_LISTED_PORTS`] ranges are the set of port
//! ranges ([`OrigPortSet`]) `allow-N-ports-v4`, matched against the port
//! before DNAT, with the sources then a set too (unless just one network),
//! so that an entry is at most one rule per protocol whatever the number of
//! its sources and ports (iptables, which cannot match that port in a set,
//! writes one rule per range: sources never multiply it); the host ports
//! docker-proxy may serve that no entry covers are the port set
//! ([`PortSet`]) `guard-tcp-v4`. Set names come only from the entry's
//! kind, place and family (and a guard set's protocol). The ports
//! published are the elements of the drop port sets (`dropped-tcp-v4`),
//! with the container endpoints they lead to. So the rules depend
//! on the policy and the bridges, not on the containers (apart from the
//! host ports a deny entry or an allow entry with `from` covers, ports
//! published on one address, and the addresses of containers on refused
//! bridges, which keep rules of their own).
//!
//! Every rule an entry or the default deny makes carries its [`Origin`]
//! (the entry's kind and line), which the backends write as a comment, so
//! that the firewall's counters map back to the policy; two entries'
//! identical rules are one rule, the first entry's. [`with_drop_logging`]
//! is the separate pass that puts a log rule before each drop.
//!
//! Gateway modes (Docker 28): on a bridge whose mode is `routed` in a family
//! nothing is DNAT-ed; a published port opens its container port to
//! connections routed straight to container addresses, and Docker reports
//! it without a host port. There an entry's `ports` are the container port
//! (see [`routed_rules`]); deny entries match such connections already.
//! `nat-unprotected` changes nothing here (direct connections are judged as
//! on `nat`), `isolated` networks publish nothing, and a mode dockfw does
//! not know is planned like `nat`.
//!
//! Fail closed: an interface name from Docker reaches a rule only as an
//! [`Iface`] (plain and literal); a DNAT-ed connection that did not come
//! from a known bridge is inbound whatever interface it leaves by (a bridge
//! created an instant ago, or one whose name was refused); and an address
//! no known container has is judged by every selector deny entry until a
//! re-plan classifies it. Docker's word that a network's interface is a
//! bridge is a claim (a bridge-name option may name an uplink): traffic
//! arriving on an interface is exempted only when the kernel has it as a
//! Linux bridge now ([`Inventory::not_bridges`], filled by the daemon);
//! otherwise that bridge is treated like a refused one.

mod east_west;
mod east_west_verdict;
mod hairpin;
mod incremental;
mod outbound;
mod outbound_verdict;

pub use east_west_verdict::{
    EastWestConnection, decide_east_west, east_west_port_limited, east_west_verdicts, on_a_bridge,
};
pub use outbound_verdict::{Connection, Decider, Peer, decide, outbound_verdicts, port_limited};

pub use east_west::{
    contributions as east_west_contributions, same_bridge_interfaces, same_bridge_refused,
};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::inventory::{
    Attachment, Container, GatewayMode, Inventory, Proto, PublishedPort, Rejected,
};
use crate::policy::{Default, Entry, Policy, PortRange, ProtoMatch, Sources};
#[cfg(doc)]
use crate::policy::{MAX_LISTED_PORTS, MAX_LISTED_SOURCES};
use crate::ruleset::{
    AddrSet, Chain, Conntrack, DROP_CHAIN, DropEndpoint, ENTRY_CHAIN, Family, FamilyRules,
    INBOUND_CHAIN, Iface, OrigPortSet, Origin, PROXY_CHAIN, PortSet, Rule, Ruleset, Target,
    UNCLASSIFIED_CHAIN,
};
use crate::status::{PortStatus, Verdict};

pub use incremental::{Applied, ContainerChange, IncrementalPlan, Replan, differences};

/// The complete desired rule set for both families.
pub fn plan(policy: &Policy, inventory: &Inventory) -> Ruleset {
    Ruleset {
        v4: plan_family(policy, inventory, Family::V4),
        v6: plan_family(policy, inventory, Family::V6),
    }
}

fn plan_family(policy: &Policy, inventory: &Inventory, family: Family) -> FamilyRules {
    let (proxy, port_sets) = proxy_chain(policy, inventory, family);
    let mut chains = vec![
        entry_chain(
            inventory,
            family,
            (east_west::forward_jumps(policy, inventory, family).into_iter())
                .chain(outbound::forward_jumps(policy, inventory, family))
                .collect(),
        ),
        inbound_chain(policy, inventory, family),
        unclassified_chain(policy, family),
        proxy,
    ];
    // Every drop passes the counting chain, which drops.
    for rule in chains.iter_mut().flat_map(|c| c.rules.iter_mut()) {
        if rule.target == Target::Drop {
            rule.target = Target::Jump(DROP_CHAIN);
        }
    }
    let drop = drop_chain(inventory, family);
    chains.push(drop.chain);
    let outbound = outbound::plan(policy, inventory, family);
    chains.extend(outbound.chains);
    let east_west = east_west::plan(policy, inventory, family);
    chains.extend(east_west.chains);
    let hairpin = hairpin::plan(policy, family);
    chains.extend(hairpin.chains);
    let mut sets = address_sets(policy, inventory, family, &chains);
    sets.extend(outbound.sets);
    sets.extend(east_west.sets);
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut port_sets = port_sets;
    port_sets.extend(hairpin::port_sets(policy, inventory, family, &chains));
    let mut orig_port_sets = orig_port_sets(policy, family, &chains);
    orig_port_sets.extend(outbound.orig_port_sets);
    orig_port_sets.sort_by(|a, b| a.name.cmp(&b.name));
    FamilyRules {
        chains,
        sets,
        port_sets,
        drop_ports: drop.ports,
        orig_port_sets,
        drop_endpoints: drop.endpoints,
    }
}

/// `DOCKFW-DROP`: per protocol, a drop of connections to a published port
/// of `family` (the port a connection to it carries before DNAT: the host
/// port, or on a routed network the container port), matched in the
/// protocol's drop port set, each of whose elements counts its port; then
/// a drop for anything else. The rules are the same whatever is published:
/// the ports are the sets' elements, and so are the container endpoints
/// they lead to ([`FamilyRules::drop_endpoints`]). Only connections being
/// dropped come here.
fn drop_chain(inventory: &Inventory, family: Family) -> DropChain {
    let mut published = BTreeSet::new();
    let mut endpoints = BTreeSet::new();
    for container in inventory.containers.iter().filter(|c| !c.host_network) {
        let ports = (container.ports.iter())
            .filter(|p| !p.host_ip.is_loopback() && family_of(p.host_ip) == family);
        for port in ports {
            published.insert((port.proto, port.addressed_port()));
            let addrs = container.attachments.iter().filter_map(|a| match family {
                Family::V4 => a.ipv4.map(IpAddr::V4),
                Family::V6 => a.ipv6.map(IpAddr::V6),
            });
            endpoints.extend(addrs.map(|addr| DropEndpoint {
                proto: port.proto,
                addr,
                port: port.container_port,
                published: port.addressed_port(),
            }));
        }
    }
    let mut rules = Vec::new();
    let mut sets = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
        let name = format!("dropped-{}-{}", proto.as_str(), family_tag(family));
        rules.push(Rule {
            proto: Some(proto),
            orig_dport_set: Some(name.clone()),
            target: Target::Drop,
            ..Rule::default()
        });
        let ports = published
            .iter()
            .filter(|(p, _)| *p == proto)
            .map(|(_, port)| *port)
            .collect();
        sets.push(PortSet {
            name,
            family,
            proto,
            ports,
        });
    }
    rules.push(Rule {
        target: Target::Drop,
        ..Rule::default()
    });
    DropChain {
        chain: Chain {
            name: DROP_CHAIN,
            rules,
        },
        ports: sets,
        endpoints,
    }
}

/// What [`drop_chain`] plans: the chain, and the elements it counts by.
struct DropChain {
    chain: Chain,
    ports: Vec<PortSet>,
    endpoints: BTreeSet<DropEndpoint>,
}

/// `ruleset` with a rate-limited log rule (same matches, same origin, target
/// [`Target::Log`]) before each drop, so that the kernel log names the
/// entry behind every dropped connection: `dockfw --log-drops`. Pure.
pub fn with_drop_logging(mut ruleset: Ruleset) -> Ruleset {
    for family in [&mut ruleset.v4, &mut ruleset.v6] {
        for chain in family.chains.iter_mut().filter(|c| c.name != DROP_CHAIN) {
            let mut rules = Vec::with_capacity(chain.rules.len() * 2);
            for rule in chain.rules.drain(..) {
                // An entry's drop: to the counting chain (inbound), or a
                // plain drop that names its origin (`[outbound]`).
                let named_drop = rule.target == Target::Drop && rule.origin.is_some();
                if rule.target == Target::Jump(DROP_CHAIN) || named_drop {
                    rules.push(Rule {
                        target: Target::Log,
                        ..rule.clone()
                    });
                }
                rules.push(rule);
            }
            chain.rules = rules;
        }
    }
    ruleset
}

/// The bridges whose interface name may appear in rule text, by network
/// id (names are not identities: two networks may share one). A bridge
/// with any other interface name is never rendered (see
/// [`rejected_bridges`]).
fn known_bridges(inventory: &Inventory) -> BTreeMap<&str, Iface> {
    inventory
        .bridges
        .iter()
        .filter(|b| !inventory.unreadable_subnets.contains(&b.id))
        .filter_map(|b| Some((b.id.as_str(), Iface::new(&b.interface).ok()?)))
        .collect()
}

/// Whether the rules judge what goes to the bridge network with id
/// `network_id` by its interface (a known bridge the kernel has as a
/// Linux bridge now): only then does a connection to an address on it
/// leave the outbound rules, whether or not a known container has the
/// address. Any other bridge is covered by address: by its subnets for
/// the east-west rules, by its known containers' addresses alone for the
/// outbound ones.
pub fn judged_by_interface(inventory: &Inventory, network_id: &str) -> bool {
    verified_bridges(inventory).contains_key(network_id)
}

fn bridge_interfaces(inventory: &Inventory) -> BTreeSet<Iface> {
    known_bridges(inventory).into_values().collect()
}

/// The known bridges whose interface the kernel has as a Linux bridge now
/// (not in [`Inventory::not_bridges`]), by network id: the only ones
/// traffic arriving on is exempted as "from a container". A bridge-name
/// option naming an uplink (`wg0`), or a bridge kept from a previous boot
/// that is something else now, exempts nothing.
fn verified_bridges(inventory: &Inventory) -> BTreeMap<&str, Iface> {
    known_bridges(inventory)
        .into_iter()
        .filter(|(_, iface)| !inventory.not_bridges.contains(iface.as_str()))
        .collect()
}

/// One `RETURN` per verified bridge ([`verified_interfaces`]): traffic
/// arriving from containers, which neither the forward nor the proxy chain
/// judges.
fn from_containers(inventory: &Inventory) -> impl Iterator<Item = Rule> {
    verified_interfaces(inventory)
        .into_iter()
        .map(|iface| Rule {
            in_iface: Some(iface),
            ..Rule::default()
        })
}

fn verified_interfaces(inventory: &Inventory) -> BTreeSet<Iface> {
    verified_bridges(inventory).into_values().collect()
}

/// Bridges whose interface name is not a plain, literal Linux name
/// ([`Iface::new`]): a `+` would be a wildcard in rule text, a quote would
/// break the restore. They are never rendered; their containers are
/// judged by address instead.
pub fn rejected_bridges(inventory: &Inventory) -> Vec<Rejected> {
    inventory
        .bridges
        .iter()
        .filter_map(|b| {
            let why = Iface::new(&b.interface).err()?;
            Some(Rejected {
                kind: "network".to_owned(),
                name: b.name.clone(),
                reason: format!(
                    "bridge interface name {:?} is refused ({why}); its containers are judged by address",
                    b.interface
                ),
            })
        })
        .collect()
}

/// The shape of the entry chain:
///
/// - replies are not judged;
/// - a new connection first addressed to a loopback address is dropped,
///   whatever interface it came from or leaves by: Docker (before 28)
///   DNATs a neighbour's packet to 127.0.0.1 to a port published on
///   127.0.0.1 only (moby#41872), which status calls local only;
/// - traffic from containers on known bridges the kernel has as Linux
///   bridges now ([`verified_bridges`]) is not judged;
/// - new connections into a known bridge, or to the address of a container
///   on a bridge whose name was refused or whose interface is not a bridge
///   now, are inbound;
/// - so is every DNAT-ed connection that did not come from a verified
///   bridge, whatever interface it leaves by (a bridge created an instant
///   ago, or one whose name was refused): fail closed.
///
/// A known bridge that is not a bridge now keeps its `-o` rule: it can only
/// send more connections to judgement, never fewer (the inbound chain
/// returns or drops, it accepts nothing), and it covers a bridge the
/// engine is about to make (`docker0` at boot) from the instant it exists.
/// Its cost is that connections forwarded out by such an interface (an
/// uplink a network's bridge-name option names) are judged as inbound to
/// containers too.
fn entry_chain(inventory: &Inventory, family: Family, outbound: Vec<Rule>) -> Chain {
    let bridges = bridge_interfaces(inventory);
    let mut rules = vec![
        Rule {
            conntrack: Some(Conntrack::Established),
            ..Rule::default()
        },
        Rule {
            conntrack: Some(Conntrack::OrigDst(loopback(family))),
            target: Target::Drop,
            origin: Some(Origin::Loopback),
            ..Rule::default()
        },
    ];
    // What containers start is judged before it is let through.
    rules.extend(outbound);
    rules.extend(from_containers(inventory));
    rules.extend(bridges.into_iter().map(|iface| Rule {
        out_iface: Some(iface),
        target: Target::Jump(INBOUND_CHAIN),
        ..Rule::default()
    }));
    rules.extend(
        addresses_off_known_bridges(inventory, family)
            .into_iter()
            .map(|addr| Rule {
                dst: Some(IpNet::from(addr)),
                target: Target::Jump(INBOUND_CHAIN),
                ..Rule::default()
            }),
    );
    rules.push(Rule {
        conntrack: Some(Conntrack::Dnat),
        target: Target::Jump(INBOUND_CHAIN),
        ..Rule::default()
    });
    Chain {
        name: ENTRY_CHAIN,
        rules,
    }
}

/// The loopback network of `family`: `127.0.0.0/8`, `::1/128`.
fn loopback(family: Family) -> IpNet {
    const V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8);
    const V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128);
    match family {
        Family::V4 => IpNet::V4(V4),
        Family::V6 => IpNet::V6(V6),
    }
}

/// Addresses, in `family`, of containers attached to a bridge network
/// (by id) whose interface is not known by a name dockfw may render, or is
/// not a Linux bridge now, or to a network Docker did not identify.
fn addresses_off_known_bridges(inventory: &Inventory, family: Family) -> BTreeSet<IpAddr> {
    let known = verified_bridges(inventory);
    inventory
        .containers
        .iter()
        .flat_map(|c| c.attachments.iter())
        .filter(|a| !known.contains_key(a.network_id.as_str()))
        .filter_map(|a| address_in(a, family))
        .collect()
}

fn address_in(attachment: &Attachment, family: Family) -> Option<IpAddr> {
    match family {
        Family::V4 => attachment.ipv4.map(IpAddr::V4),
        Family::V6 => attachment.ipv6.map(IpAddr::V6),
    }
}

fn inbound_chain(policy: &Policy, inventory: &Inventory, family: Family) -> Chain {
    let mut rules = Vec::new();
    if selector_denies(policy, family).next().is_some() {
        rules.push(Rule {
            target: Target::Jump(UNCLASSIFIED_CHAIN),
            ..Rule::default()
        });
    }
    for (id, entry) in deny_entries(policy) {
        rules.extend(entry_rules(id, entry, family, Target::Drop));
    }
    if policy.default == Default::Deny {
        for (id, entry) in allow_entries(policy) {
            rules.extend(entry_rules(id, entry, family, Target::Return));
        }
        rules.extend(routed_rules(policy, inventory, family));
        rules.push(Rule {
            target: Target::Drop,
            origin: Some(Origin::DefaultDeny),
            ..Rule::default()
        });
    }
    Chain {
        name: INBOUND_CHAIN,
        rules: without_repeats(rules),
    }
}

/// The allow entries with `ports` once more for each known bridge that is
/// `routed` in `family`: the same rules, limited to connections leaving by
/// that bridge and without the DNAT condition. Nothing is DNAT-ed there;
/// a connection is addressed to the container port itself, which is what
/// the entry's ports are then matched against (`-p 8080:80` on a routed
/// network opens port 80, and Docker reports no host port). The RETURN
/// leaves the rest to Docker, which on a routed network accepts only
/// published container ports. Deny entries need no counterpart: they match
/// the original destination port with or without DNAT. A bridge whose name
/// is refused, or whose interface is not a Linux bridge now, gets none
/// (fail closed), nor does a mode dockfw does not know,
/// nor a `routed` bridge on which no container has a routed binding in
/// `family`: the mode is an option, Docker reporting a binding without a
/// host port is the fact (an engine before 28 stores the option and NATs).
fn routed_rules(policy: &Policy, inventory: &Inventory, family: Family) -> Vec<Rule> {
    let routed: Vec<Iface> = verified_bridges(inventory)
        .into_iter()
        .filter(|(network, _)| *inventory.gateway_mode(network, family) == GatewayMode::Routed)
        .filter(|(network, _)| has_routed_binding(inventory, network, family))
        .map(|(_, iface)| iface)
        .collect();
    let mut rules = Vec::new();
    for (id, entry) in allow_entries(policy).filter(|(_, e)| e.ports.is_some()) {
        let dnat_only = entry_rules(id, entry, family, Target::Return);
        for iface in &routed {
            rules.extend(dnat_only.iter().map(|rule| Rule {
                out_iface: Some(iface.clone()),
                conntrack: rule.conntrack.and_then(|c| match c {
                    Conntrack::OrigDstPort { ports, .. } => {
                        Some(Conntrack::OrigDstPort { ports, dnat: false })
                    }
                    // The DNAT condition of a set of port ranges.
                    Conntrack::Dnat => None,
                    other => Some(other),
                }),
                ..rule.clone()
            }));
        }
    }
    rules
}

/// Whether a container attached to the network `network_id` has a binding
/// without a host port (routed) in `family`.
fn has_routed_binding(inventory: &Inventory, network_id: &str, family: Family) -> bool {
    inventory
        .containers
        .iter()
        .filter(|c| !c.host_network)
        .filter(|c| c.attachments.iter().any(|a| a.network_id == network_id))
        .flat_map(|c| c.ports.iter())
        .any(|p| p.is_routed() && family_of(p.host_ip) == family)
}

/// Deny entries with `containers`/`labels` in `family`: they follow
/// container addresses, so a container dockfw has not classified yet would
/// escape them.
fn selector_denies(policy: &Policy, family: Family) -> impl Iterator<Item = (EntryId, &Entry)> {
    deny_entries(policy).filter(move |(_, e)| e.has_selector() && e.sources(family).is_some())
}

/// Destinations dockfw has not classified yet (an address no container in
/// the inventory has: a container started an instant ago, or one whose
/// address Docker reported unreadably) get the most restrictive verdict:
/// every selector deny entry applies to them as if it selected them. Known
/// addresses (the set [`known_set`]) return at once; empty when the policy
/// has no selector denies.
fn unclassified_chain(policy: &Policy, family: Family) -> Chain {
    let mut rules = Vec::new();
    if selector_denies(policy, family).next().is_some() {
        rules.push(Rule {
            dst_set: Some(known_set(family)),
            ..Rule::default()
        });
        for (id, entry) in selector_denies(policy, family) {
            rules.extend(entry_rules_to(id, entry, family, None, Target::Drop));
        }
    }
    Chain {
        name: UNCLASSIFIED_CHAIN,
        rules: without_repeats(rules),
    }
}

/// Rules for the ports `docker-proxy` may serve on the host itself: there no
/// DNAT happens, the connection ends at the proxy (INPUT) and never passes
/// DOCKER-USER. That is a port published on an address family the container
/// has no address in, one Docker does not DNAT in that family (IPv6 without
/// `"ip6tables": true`), or one whose DNAT an odd network's rules skip (a
/// bridge named `+` makes Docker write `-i + -j RETURN` in `nat`). Rather
/// than guess from the `nat` table, every published, non-loopback port gets
/// the policy's verdict here too, on its own destination port; where the
/// port is DNAT-ed these rules are simply never reached. Fail closed. A
/// routed binding (no host port) has nothing on the host to guard.
///
/// A port published on every address (the usual `-p 5432:80`) that no
/// entry covers is, under default deny, an element of the port set
/// `guard-tcp-v4` (per protocol), dropped by one rule; one that an entry
/// admits from anywhere (and no deny entry covers) needs nothing. Only a
/// port that a deny entry, or an allow entry limited by `from`, covers
/// keeps rules of its own, as does a port published on one address. So a
/// container coming or going with ports the policy only names in `allow`
/// entries without `from` changes set elements only. Each port meets the
/// same verdict as with a rule per port.
fn proxy_chain(policy: &Policy, inventory: &Inventory, family: Family) -> (Chain, Vec<PortSet>) {
    let mut rules = vec![
        Rule {
            conntrack: Some(Conntrack::Established),
            ..Rule::default()
        },
        Rule {
            in_iface: Iface::new("lo").ok(),
            ..Rule::default()
        },
    ];
    // A hairpin to a port docker-proxy serves is east-west, judged first.
    rules.extend(hairpin::input_jumps(policy, inventory, family));
    // `to_host = "deny"` judges connections from containers to the host.
    rules.extend(outbound::input_jumps(policy, inventory, family));
    // From a container to the host's proxy is container-to-container.
    rules.extend(from_containers(inventory));
    let published = inventory
        .containers
        .iter()
        .filter(|c| !c.host_network)
        .flat_map(|c| c.ports.iter().map(move |p| (c, p)))
        .filter(|(_, p)| !p.is_routed())
        .filter(|(_, p)| !p.host_ip.is_loopback() && family_of(p.host_ip) == family);
    let guarded = policy.default == Default::Deny;
    let mut guard: BTreeMap<Proto, BTreeSet<u16>> = BTreeMap::new();
    for (container, port) in published {
        let plain = port.host_ip.is_unspecified()
            && covering(deny_entries(policy), container, port, family).is_empty();
        let allowed = covering(allow_entries(policy), container, port, family);
        if plain && allowed.is_empty() && guarded {
            guard.entry(port.proto).or_default().insert(port.host_port);
        } else if !(plain && allowed.iter().any(|(.., s)| *s == Sources::Anywhere)) {
            rules.extend(proxy_port_rules(policy, container, port, family));
        }
    }
    let mut sets = Vec::new();
    if guarded {
        for proto in ALL_PROTOS {
            let set = PortSet {
                name: format!("guard-{}-{}", proto.as_str(), family_tag(family)),
                family,
                proto,
                ports: guard.remove(&proto).unwrap_or_default(),
            };
            rules.push(Rule {
                proto: Some(proto),
                dport_set: Some(set.name.clone()),
                target: Target::Drop,
                origin: Some(Origin::DefaultDeny),
                ..Rule::default()
            });
            sets.push(set);
        }
    }
    let chain = Chain {
        name: PROXY_CHAIN,
        rules: without_repeats(rules),
    };
    (chain, sets)
}

/// Every protocol Docker publishes, in the order rules are written.
const ALL_PROTOS: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Sctp];

fn family_of(ip: IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

fn proxy_port_rules(
    policy: &Policy,
    container: &Container,
    port: &PublishedPort,
    family: Family,
) -> Vec<Rule> {
    let dst = (!port.host_ip.is_unspecified()).then(|| IpNet::from(port.host_ip));
    let rule = |src: &Source, target: Target, origin: Origin| {
        src.on(Rule {
            dst,
            proto: Some(port.proto),
            dport: Some(PortRange::single(port.host_port)),
            target,
            origin: Some(origin),
            ..Rule::default()
        })
    };
    let mut rules = Vec::new();
    for (id, entry, sources) in covering(deny_entries(policy), container, port, family) {
        let sources = source_matches(id, entry, &sources, family);
        rules.extend(sources.iter().map(|s| rule(s, Target::Drop, id.origin())));
    }
    let allowed = covering(allow_entries(policy), container, port, family);
    if policy.default == Default::Deny && !allowed.iter().any(|(.., s)| *s == Sources::Anywhere) {
        for (id, entry, sources) in allowed {
            let sources = source_matches(id, entry, &sources, family);
            rules.extend(sources.iter().map(|s| rule(s, Target::Return, id.origin())));
        }
        rules.push(rule(&Source::Anywhere, Target::Drop, Origin::DefaultDeny));
    }
    rules
}

/// The entries that cover a published port, with their sources in
/// `family`.
fn covering<'a>(
    entries: impl Iterator<Item = (EntryId, &'a Entry)>,
    container: &Container,
    port: &PublishedPort,
    family: Family,
) -> Vec<(EntryId, &'a Entry, Sources<'a>)> {
    entries
        .filter(|(_, e)| applies_to(e, container, port))
        .filter_map(|(id, e)| Some((id, e, e.sources(family)?)))
        .collect()
}

/// Drop rules that match what an earlier one does: they can never match
/// anything the earlier one did not already decide (whatever entry they
/// came from; the earlier one's origin is the one that counts).
fn without_repeats(mut rules: Vec<Rule>) -> Vec<Rule> {
    let mut seen = HashSet::with_capacity(rules.len());
    rules.retain(|rule| {
        seen.insert(Rule {
            origin: None,
            ..rule.clone()
        })
    });
    rules
}

/// The rules one policy entry expands to: sources x (protocol, port
/// range), to the set of the containers it selects, or to any destination
/// when it has no selectors. A long `from` list is one source (its set),
/// many port ranges one port match per protocol (their set), so an entry
/// is never more than [`MAX_LISTED_SOURCES`] x [`MAX_LISTED_PORTS`] rules
/// per protocol.
fn entry_rules(id: EntryId, entry: &Entry, family: Family, target: Target) -> Vec<Rule> {
    let selected = entry.has_selector().then(|| id.selected_set(family));
    entry_rules_to(id, entry, family, selected, target)
}

/// An entry's rules for destinations in the named set (`None`: any).
fn entry_rules_to(
    id: EntryId,
    entry: &Entry,
    family: Family,
    dst_set: Option<String>,
    target: Target,
) -> Vec<Rule> {
    let Some(sources) = entry.sources(family) else {
        return Vec::new();
    };
    let services = services(id, entry, family);
    // Allow entries with ports admit only connections Docker DNAT-ed.
    let dnat = target == Target::Return;
    let mut rules = Vec::new();
    for src in source_matches(id, entry, &sources, family) {
        for (proto, ports) in &services {
            let (conntrack, orig_dport_ranges) = match ports {
                PortMatch::Any => (None, None),
                PortMatch::Range(ports) => {
                    let ports = *ports;
                    (Some(Conntrack::OrigDstPort { ports, dnat }), None)
                }
                PortMatch::Set(name) => (dnat.then_some(Conntrack::Dnat), Some(name.clone())),
            };
            rules.push(src.on(Rule {
                dst_set: dst_set.clone(),
                proto: *proto,
                conntrack,
                orig_dport_ranges,
                target: target.clone(),
                origin: Some(id.origin()),
                ..Rule::default()
            }));
        }
    }
    rules
}

/// A policy entry by its kind and 1-based place among the entries of that
/// kind: what its address sets are named after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntryId {
    kind: &'static str,
    number: usize,
    /// The line of the entry's table header in the policy.
    line: usize,
}

impl EntryId {
    /// The entry as the origin of its rules.
    fn origin(self) -> Origin {
        match self.kind {
            "deny" => Origin::Deny { line: self.line },
            _ => Origin::Allow { line: self.line },
        }
    }

    /// The set of the addresses the entry's selectors select:
    /// `allow-2-v4`.
    fn selected_set(self, family: Family) -> String {
        format!("{}-{}-{}", self.kind, self.number, family_tag(family))
    }

    /// The set of the entry's sources, when they are too many to list:
    /// `deny-1-src-v6`.
    fn source_set(self, family: Family) -> String {
        format!("{}-{}-src-{}", self.kind, self.number, family_tag(family))
    }

    /// The set of the entry's port ranges, when they are too many to list:
    /// `allow-3-ports-v4`.
    fn port_set(self, family: Family) -> String {
        format!("{}-{}-ports-{}", self.kind, self.number, family_tag(family))
    }
}

/// The set of every address a known container has: `known-v4`.
fn known_set(family: Family) -> String {
    format!("known-{}", family_tag(family))
}

fn family_tag(family: Family) -> &'static str {
    match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

fn allow_entries(policy: &Policy) -> impl Iterator<Item = (EntryId, &Entry)> {
    numbered(&policy.allow, "allow")
}

fn deny_entries(policy: &Policy) -> impl Iterator<Item = (EntryId, &Entry)> {
    numbered(&policy.deny, "deny")
}

fn numbered<'a>(
    entries: &'a [Entry],
    kind: &'static str,
) -> impl Iterator<Item = (EntryId, &'a Entry)> {
    entries.iter().enumerate().map(move |(i, entry)| {
        let id = EntryId {
            kind,
            number: i + 1,
            line: entry.line,
        };
        (id, entry)
    })
}

/// What one rule of an entry matches of its sources.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Anywhere,
    Net(IpNet),
    /// The named set of all the entry's networks in the family.
    Set(String),
}

impl Source {
    /// `rule`, limited to this source.
    fn on(&self, rule: Rule) -> Rule {
        match self {
            Source::Anywhere => rule,
            Source::Net(net) => Rule {
                src: Some(*net),
                ..rule
            },
            Source::Set(name) => Rule {
                src_set: Some(name.clone()),
                ..rule
            },
        }
    }
}

/// One [`Source`] per rule: anywhere, each network of a short `from`
/// list, or the set of a long one ([`Entry::sources_as_set`]).
fn source_matches(
    id: EntryId,
    entry: &Entry,
    sources: &Sources<'_>,
    family: Family,
) -> Vec<Source> {
    match sources {
        Sources::Anywhere => vec![Source::Anywhere],
        Sources::Nets(nets) if entry.sources_as_set(nets.len()) => {
            vec![Source::Set(id.source_set(family))]
        }
        Sources::Nets(nets) => nets.iter().map(|n| Source::Net(**n)).collect(),
    }
}

/// The names of the address sets the rules of `chains` match, as source
/// or destination.
fn named_address_sets(chains: &[Chain]) -> BTreeSet<&str> {
    (chains.iter().flat_map(|c| c.rules.iter()))
        .flat_map(|r| [&r.src_set, &r.dst_set])
        .filter_map(|name| name.as_deref())
        .collect()
}

/// The names of the port-range sets the rules of `chains` match.
fn named_port_sets(chains: &[Chain]) -> BTreeSet<&str> {
    (chains.iter().flat_map(|c| c.rules.iter()))
        .filter_map(|r| r.orig_dport_ranges.as_deref())
        .collect()
}

/// The sets of port ranges the rules of `chains` name, by name: each of an
/// entry whose ports are a set ([`Entry::ports_as_set`]), with its ports.
fn orig_port_sets(policy: &Policy, family: Family, chains: &[Chain]) -> Vec<OrigPortSet> {
    let named = named_port_sets(chains);
    let mut sets: Vec<OrigPortSet> = allow_entries(policy)
        .chain(deny_entries(policy))
        .filter(|(id, _)| named.contains(id.port_set(family).as_str()))
        .map(|(id, entry)| {
            let ranges = entry.ports.iter().flatten().copied();
            OrigPortSet::new(id.port_set(family), family, ranges)
        })
        .collect();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    sets
}

/// The sets the rules of `chains` name, each with its elements now, by
/// name. Only what a rule names is made, so a set exists exactly as long
/// as a rule matching it does.
fn address_sets(
    policy: &Policy,
    inventory: &Inventory,
    family: Family,
    chains: &[Chain],
) -> Vec<AddrSet> {
    let named = named_address_sets(chains);
    let mut sets = Vec::new();
    let mut add = |name: String, elements: &dyn Fn() -> Vec<IpNet>| {
        if named.contains(name.as_str()) {
            sets.push(AddrSet::new(name, family, elements()));
        }
    };
    add(known_set(family), &|| {
        let addresses = inventory
            .containers
            .iter()
            .flat_map(|c| c.attachments.iter());
        addresses
            .filter_map(|a| address_in(a, family))
            .map(IpNet::from)
            .collect()
    });
    for (id, entry) in allow_entries(policy).chain(deny_entries(policy)) {
        add(id.selected_set(family), &|| {
            selected_addresses(entry, inventory, family)
        });
        add(id.source_set(family), &|| match entry.sources(family) {
            Some(Sources::Nets(nets)) => nets.into_iter().copied().collect(),
            _ => Vec::new(),
        });
    }
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    sets
}

/// What one rule of an entry matches of the destination port before DNAT.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PortMatch {
    Any,
    Range(PortRange),
    /// The named [`OrigPortSet`] of all the entry's ranges.
    Set(String),
}

/// The (protocol, port match) pairs an entry matches; `None` is any
/// protocol.
fn services(id: EntryId, entry: &Entry, family: Family) -> Vec<(Option<Proto>, PortMatch)> {
    let protos: Vec<Proto> = match entry.proto {
        ProtoMatch::Tcp => vec![Proto::Tcp],
        ProtoMatch::Udp => vec![Proto::Udp],
        ProtoMatch::Any => vec![Proto::Tcp, Proto::Udp, Proto::Sctp],
    };
    match (&entry.ports, entry.proto) {
        (None, ProtoMatch::Any) => vec![(None, PortMatch::Any)],
        (None, _) => protos
            .into_iter()
            .map(|p| (Some(p), PortMatch::Any))
            .collect(),
        (Some(_), _) if entry.ports_as_set() => {
            let set = PortMatch::Set(id.port_set(family));
            protos.into_iter().map(|p| (Some(p), set.clone())).collect()
        }
        (Some(ranges), _) => protos
            .iter()
            .flat_map(|p| ranges.iter().map(move |r| (Some(*p), PortMatch::Range(*r))))
            .collect(),
    }
}

/// Whether an entry's `containers` and `labels` select this container.
fn selects(entry: &Entry, container: &Container) -> bool {
    let named =
        entry.containers.is_empty() || entry.containers.iter().any(|g| g.matches(&container.name));
    let labelled = entry
        .labels
        .iter()
        .all(|(k, v)| container.labels.get(k) == Some(v));
    named && labelled
}

/// The addresses, in one family, of every container an entry selects.
fn selected_addresses(entry: &Entry, inventory: &Inventory, family: Family) -> Vec<IpNet> {
    inventory
        .containers
        .iter()
        .filter(|c| selects(entry, c))
        .flat_map(|c| c.attachments.iter())
        .filter_map(|a| address_in(a, family))
        .map(IpNet::from)
        .collect()
}

/// One row per published port of every running container, with the verdict
/// the policy gives a new connection to it. Sorted by container and port.
pub fn exposures(policy: &Policy, inventory: &Inventory) -> Vec<PortStatus> {
    let mut rows: Vec<PortStatus> = inventory
        .containers
        .iter()
        .filter(|c| !c.host_network)
        .flat_map(|c| {
            c.ports
                .iter()
                .map(move |p| exposure(policy, inventory, c, p))
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.container, a.host_port, &a.proto, &a.host_ip).cmp(&(
            &b.container,
            b.host_port,
            &b.proto,
            &b.host_ip,
        ))
    });
    rows
}

fn exposure(
    policy: &Policy,
    inventory: &Inventory,
    container: &Container,
    port: &PublishedPort,
) -> PortStatus {
    let networks: Vec<&str> = container
        .attachments
        .iter()
        .map(|a| a.network.as_str())
        .collect();
    let (verdict, detail, mut why) = verdict(policy, container, port);
    let (gateway_mode, notes) = gateway(inventory, container, port);
    for note in notes {
        why.push_str("; ");
        why.push_str(&note);
    }
    PortStatus {
        container: container.name.clone(),
        network: networks.join(","),
        host_ip: port.host_ip.to_string(),
        host_port: port.host_port,
        container_port: port.container_port,
        proto: port.proto.as_str().to_owned(),
        verdict,
        detail,
        why,
        gateway_mode,
    }
}

/// The gateway mode a published port is reached through, as status shows
/// it, and what it adds to the row's WHY. A binding without a host port is
/// `routed`, and its entries were matched on the container port; one with
/// a host port goes through a network that NATs in its family (normally
/// the container has one). A mode dockfw does not know is named: it is
/// planned like `nat`, so only DNAT-ed connections match entries' ports.
fn gateway(
    inventory: &Inventory,
    container: &Container,
    port: &PublishedPort,
) -> (String, Vec<String>) {
    let family = family_of(port.host_ip);
    let modes: BTreeSet<&GatewayMode> = container
        .attachments
        .iter()
        .map(|a| inventory.gateway_mode(&a.network_id, family))
        .filter(|mode| match mode {
            GatewayMode::Nat | GatewayMode::NatUnprotected => !port.is_routed(),
            GatewayMode::Routed => port.is_routed(),
            GatewayMode::Isolated => false,
            GatewayMode::Other(_) => true,
        })
        .collect();
    let mut notes = Vec::new();
    if port.is_routed() {
        notes.push(format!(
            "routed: judged on container port {}",
            port.container_port
        ));
    }
    for mode in &modes {
        if let GatewayMode::Other(name) = mode {
            notes.push(format!("unknown gateway mode \"{name}\": planned as nat"));
        }
    }
    let names: Vec<&str> = modes.iter().map(|m| m.as_str()).collect();
    let shown = match names.as_slice() {
        [] if port.is_routed() => GatewayMode::Routed.to_string(),
        [] => GatewayMode::Nat.to_string(),
        _ => names.join(","),
    };
    (shown, notes)
}

/// The verdict for a new connection to a published port, in words, and
/// which entries (by line) or default decided it.
fn verdict(
    policy: &Policy,
    container: &Container,
    port: &PublishedPort,
) -> (Verdict, String, String) {
    if port.host_ip.is_loopback() {
        return (
            Verdict::Local,
            "local only".to_owned(),
            "bound to loopback".to_owned(),
        );
    }
    let family = family_of(port.host_ip);
    let denied = matching(&policy.deny, container, port, family);
    if let Some((entry, _)) = denied.iter().find(|(_, s)| *s == Sources::Anywhere) {
        return (
            Verdict::Blocked,
            "blocked by policy".to_owned(),
            lines("deny", &[entry]),
        );
    }
    let deny_nets = nets_of(&denied);
    let deny_why =
        (!denied.is_empty()).then(|| format!("; {}", lines("deny", &entries_of(&denied))));
    let deny_why = deny_why.unwrap_or_default();
    let allowed = matching(&policy.allow, container, port, family);
    if policy.default == Default::Allow {
        let detail = format!("open to anywhere{}", except(&deny_nets));
        return (Verdict::Open, detail, format!("default allow{deny_why}"));
    }
    if let Some((entry, _)) = allowed.iter().find(|(_, s)| *s == Sources::Anywhere) {
        let detail = format!("open to anywhere{}", except(&deny_nets));
        return (
            Verdict::Open,
            detail,
            format!("{}{deny_why}", lines("allow", &[entry])),
        );
    }
    let allow_nets = nets_of(&allowed);
    if allow_nets.is_empty() {
        return (
            Verdict::Blocked,
            "blocked by policy".to_owned(),
            "default deny".to_owned(),
        );
    }
    let overlapping: Vec<IpNet> = deny_nets
        .into_iter()
        .filter(|d| allow_nets.iter().any(|a| a.contains(d) || d.contains(a)))
        .collect();
    let listed: Vec<String> = allow_nets.iter().map(ToString::to_string).collect();
    let detail = format!("open to {}{}", listed.join(", "), except(&overlapping));
    (
        Verdict::Restricted,
        detail,
        format!("{}{deny_why}", lines("allow", &entries_of(&allowed))),
    )
}

fn entries_of<'a>(matches: &[(&'a Entry, Sources<'a>)]) -> Vec<&'a Entry> {
    matches.iter().map(|(e, _)| *e).collect()
}

/// `allow entry at line 6`, `deny entries at lines 9, 12`.
fn lines(kind: &str, entries: &[&Entry]) -> String {
    let numbers: Vec<String> = entries.iter().map(|e| e.line.to_string()).collect();
    match numbers.as_slice() {
        [one] => format!("{kind} entry at line {one}"),
        many => format!("{kind} entries at lines {}", many.join(", ")),
    }
}

fn except(nets: &[IpNet]) -> String {
    if nets.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = nets.iter().map(ToString::to_string).collect();
    format!(" except {}", listed.join(", "))
}

/// The sources, in `family`, of the entries that cover a published port.
fn matching<'a>(
    entries: &'a [Entry],
    container: &Container,
    port: &PublishedPort,
    family: Family,
) -> Vec<(&'a Entry, Sources<'a>)> {
    entries
        .iter()
        .filter(|e| applies_to(e, container, port))
        .filter_map(|e| e.sources(family).map(|s| (e, s)))
        .collect()
}

/// Whether an entry's ports, protocol and selectors cover a published port.
pub(crate) fn applies_to(entry: &Entry, container: &Container, port: &PublishedPort) -> bool {
    let proto_ok = match entry.proto {
        ProtoMatch::Tcp => port.proto == Proto::Tcp,
        ProtoMatch::Udp => port.proto == Proto::Udp,
        ProtoMatch::Any => true,
    };
    let port_ok = entry
        .ports
        .as_ref()
        .is_none_or(|ranges| ranges.iter().any(|r| r.contains(port.addressed_port())));
    proto_ok && port_ok && selects(entry, container)
}

fn nets_of(matches: &[(&Entry, Sources<'_>)]) -> Vec<IpNet> {
    let nets: BTreeSet<IpNet> = matches
        .iter()
        .flat_map(|(_, s)| match s {
            Sources::Anywhere => Vec::new(),
            Sources::Nets(nets) => nets.iter().map(|n| **n).collect(),
        })
        .collect();
    nets.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Bridge, GatewayModes};

    fn bridge(name: &str, interface: &str) -> Bridge {
        Bridge {
            id: format!("{name}-id"),
            name: name.to_owned(),
            interface: interface.to_owned(),
        }
    }

    #[test]
    fn drop_rules_carry_their_entry_and_logging_precedes_each_drop() {
        let text = "[inbound]\ndefault = \"deny\"\n\
            [[inbound.allow]]\nports = [80]\n\
            [[inbound.deny]]\nports = [5432]\n\
            [[inbound.deny]]\nports = [5432]\n";
        let policy = crate::policy::parse_str(text, std::path::Path::new("p.toml")).unwrap();
        let inventory = Inventory {
            bridges: vec![bridge("bridge", "docker0")],
            ..Inventory::default()
        };
        let ruleset = plan(&policy, &inventory);
        let inbound = chain(&ruleset, Family::V4, INBOUND_CHAIN);
        let origins: Vec<_> = inbound
            .iter()
            .map(|r| (r.target.clone(), r.origin))
            .collect();
        assert_eq!(
            origins,
            [
                (Target::Jump(DROP_CHAIN), Some(Origin::Deny { line: 5 })),
                (Target::Return, Some(Origin::Allow { line: 3 })),
                (Target::Jump(DROP_CHAIN), Some(Origin::DefaultDeny)),
            ],
            "the repeated deny entry adds no rule; the first one's origin counts"
        );
        let logged = with_drop_logging(ruleset.clone());
        let inbound = chain(&logged, Family::V4, INBOUND_CHAIN);
        let targets: Vec<_> = inbound.iter().map(|r| r.target.clone()).collect();
        assert_eq!(
            targets,
            [
                Target::Log,
                Target::Jump(DROP_CHAIN),
                Target::Return,
                Target::Log,
                Target::Jump(DROP_CHAIN)
            ]
        );
        assert_eq!(
            chain(&logged, Family::V4, DROP_CHAIN),
            chain(&ruleset, Family::V4, DROP_CHAIN),
            "the counting drops are not logged again"
        );
        assert_eq!(inbound[0].origin, inbound[1].origin);
        let entry = chain(&ruleset, Family::V4, ENTRY_CHAIN);
        let logged_entry = chain(&logged, Family::V4, ENTRY_CHAIN);
        assert_eq!(logged_entry.len(), entry.len() + 1, "one drop, one log");
        assert_eq!(
            (&logged_entry[1].target, logged_entry[1].origin),
            (&Target::Log, Some(Origin::Loopback))
        );
    }

    #[test]
    fn an_outbound_drop_is_logged_with_its_entry_and_an_unnamed_drop_is_not() {
        let text = "[outbound]\ndefault = \"deny\"\n\n[[outbound.deny]]\nto = [\"192.0.2.1\"]\n";
        let policy = crate::policy::parse_str(text, std::path::Path::new("p.toml")).unwrap();
        let inventory = Inventory {
            bridges: vec![bridge("bridge", "docker0")],
            ..Inventory::default()
        };
        let ruleset = plan(&policy, &inventory);
        let logged = with_drop_logging(ruleset.clone());
        let outbound = |r: &Ruleset| -> Vec<(Target, Option<Origin>)> {
            (chain(r, Family::V4, crate::ruleset::OUTBOUND_CHAIN).iter())
                .filter(|r| r.target != Target::Return)
                .map(|r| (r.target.clone(), r.origin))
                .collect()
        };
        let deny = Some(Origin::OutboundDeny { line: 4 });
        let default = Some(Origin::OutboundDefault);
        assert_eq!(
            outbound(&logged),
            [
                (Target::Log, deny),
                (Target::Drop, deny),
                (Target::Log, default),
                (Target::Drop, default)
            ]
        );
        let rules = |r: &Ruleset| -> Vec<Rule> {
            (r.v4.chains.iter().flat_map(|c| c.rules.clone())).collect()
        };
        assert!(
            (rules(&ruleset).iter()).any(|r| r.target == Target::Drop && r.origin.is_none()),
            "the plan has a drop that names no entry (the entry chain's)"
        );
        assert!(
            (rules(&logged).iter())
                .filter(|r| r.target == Target::Log)
                .all(|r| r.origin.is_some()),
            "a drop that names no entry is not logged"
        );
    }

    #[test]
    fn hostile_bridge_names_are_rejected_and_never_rendered() {
        let inventory = Inventory {
            bridges: vec![
                bridge("bridge", "docker0"),
                bridge("plus", "+"),
                bridge("prefix", "dfwt+"),
                bridge("quote", "a\"b"),
            ],
            ..Inventory::default()
        };
        let rejected: Vec<String> = rejected_bridges(&inventory)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(rejected, ["plus", "prefix", "quote"]);
        let policy = crate::policy::parse_str("", std::path::Path::new("p.toml")).unwrap();
        let ruleset = plan(&policy, &inventory);
        for family in Family::ALL {
            let text = crate::firewall::iptables::render::rules_text(ruleset.family(family));
            let docker_text = text
                .replace("\"dockfw default\"", "")
                .replace("\"dockfw loopback\"", "");
            assert!(
                !docker_text.contains('+') && !docker_text.contains('"'),
                "{text}"
            );
            assert!(
                text.contains("-A DOCKFW -m conntrack --ctstate DNAT -j DOCKFW-INBOUND\n"),
                "every DNAT-ed connection not from a known bridge is inbound:\n{text}"
            );
        }
    }

    #[test]
    fn an_interface_that_is_not_a_bridge_now_is_never_exempted() {
        let mut inventory = routed_inventory("routed", "routed");
        inventory.bridges.push(bridge("vpn", "wg0"));
        inventory.not_bridges = BTreeSet::from(["br-shop".to_owned(), "wg0".to_owned()]);
        let policy = crate::policy::parse_str(
            "[inbound]\n[[inbound.allow]]\nports = [80]\n",
            std::path::Path::new("p.toml"),
        )
        .unwrap();
        let ruleset = plan(&policy, &inventory);
        for family in Family::ALL {
            let text = crate::firewall::iptables::render::rules_text(ruleset.family(family));
            for iface in ["wg0", "br-shop"] {
                assert!(
                    !text.contains(&format!("-i {iface} ")),
                    "{iface} exempted:\n{text}"
                );
                assert!(
                    text.contains(&format!("-A DOCKFW -o {iface} -j DOCKFW-INBOUND\n")),
                    "sending to {iface} stays inbound:\n{text}"
                );
            }
            assert!(text.contains("-A DOCKFW -i docker0 -j RETURN\n"), "{text}");
            assert!(
                text.contains("-A DOCKFW-PROXY -i docker0 -j RETURN\n"),
                "{text}"
            );
            assert!(
                !text.contains("-o br-shop -p tcp"),
                "no routed allow on an interface that is not a bridge:\n{text}"
            );
        }
        let v4 = crate::firewall::iptables::render::rules_text(&ruleset.v4);
        assert!(
            v4.contains("-A DOCKFW -d 172.18.0.2/32 -j DOCKFW-INBOUND\n"),
            "its containers are judged by address:\n{v4}"
        );
    }

    fn routed_inventory(ipv4: &str, ipv6: &str) -> Inventory {
        let port = |host_ip: &str, container_port| PublishedPort {
            host_ip: host_ip.parse().unwrap(),
            host_port: 0,
            container_port,
            proto: Proto::Tcp,
        };
        Inventory {
            bridges: vec![bridge("bridge", "docker0"), bridge("shop", "br-shop")],
            gateway_modes: BTreeMap::from([(
                "shop-id".to_owned(),
                GatewayModes {
                    ipv4: GatewayMode::from(ipv4.to_owned()),
                    ipv6: GatewayMode::from(ipv6.to_owned()),
                },
            )]),
            containers: vec![Container {
                id: "c1".to_owned(),
                name: "web".to_owned(),
                labels: BTreeMap::new(),
                host_network: false,
                attachments: vec![Attachment {
                    network_id: "shop-id".to_owned(),
                    network: "shop".to_owned(),
                    ipv4: Some("172.18.0.2".parse().unwrap()),
                    ipv6: Some("fd00:d0c:2::2".parse().unwrap()),
                }],
                ports: vec![port("0.0.0.0", 80), port("0.0.0.0", 5432)],
            }],
            ..Inventory::default()
        }
    }

    #[test]
    fn networks_sharing_a_name_are_each_rendered_and_matched_by_id() {
        let mut inventory = routed_inventory("nat", "nat");
        inventory.bridges = vec![
            bridge("bridge", "docker0"),
            Bridge {
                id: "dup-1".to_owned(),
                name: "dup".to_owned(),
                interface: "br-dup1".to_owned(),
            },
            Bridge {
                id: "dup-2".to_owned(),
                name: "dup".to_owned(),
                interface: "br-dup2".to_owned(),
            },
        ];
        inventory.gateway_modes.clear();
        inventory.containers[0].attachments[0].network_id = "dup-2".to_owned();
        inventory.containers[0].attachments[0].network = "dup".to_owned();
        let ruleset = plan(&allow_80(), &inventory);
        let entry = chain(&ruleset, Family::V4, ENTRY_CHAIN);
        for iface in ["br-dup1", "br-dup2"] {
            let inbound = Rule {
                out_iface: Iface::new(iface).ok(),
                target: Target::Jump(INBOUND_CHAIN),
                ..Rule::default()
            };
            assert!(entry.contains(&inbound), "{iface}: {entry:?}");
        }
        assert!(entry.iter().all(|r| r.dst.is_none()), "on a known bridge");
        let rows = exposures(&allow_80(), &inventory);
        assert!(rows.iter().all(|r| r.network == "dup"), "names are shown");
    }

    #[test]
    fn an_address_on_no_identified_network_is_judged_by_address() {
        let mut inventory = routed_inventory("nat", "nat");
        inventory.containers[0].attachments[0].network_id = String::new();
        let ruleset = plan(&allow_80(), &inventory);
        for (family, addr) in [(Family::V4, "172.18.0.2"), (Family::V6, "fd00:d0c:2::2")] {
            let by_address = Rule {
                dst: Some(IpNet::from(addr.parse::<IpAddr>().unwrap())),
                target: Target::Jump(INBOUND_CHAIN),
                ..Rule::default()
            };
            assert!(chain(&ruleset, family, ENTRY_CHAIN).contains(&by_address));
        }
    }

    #[test]
    fn a_routed_mode_without_routed_bindings_opens_nothing_without_dnat() {
        let mut inventory = routed_inventory("routed", "routed");
        for port in &mut inventory.containers[0].ports {
            port.host_port = 8080;
        }
        let ruleset = plan(&allow_80(), &inventory);
        for family in Family::ALL {
            let inbound = chain(&ruleset, family, INBOUND_CHAIN);
            assert!(!inbound.contains(&routed_80("br-shop")), "{inbound:?}");
        }
    }

    #[test]
    fn connections_first_addressed_to_loopback_are_dropped_whatever_the_policy() {
        let allow_all = crate::policy::parse_str(
            "[inbound]\ndefault = \"allow\"\n",
            std::path::Path::new("p.toml"),
        )
        .unwrap();
        for policy in [allow_80(), allow_all] {
            let ruleset = plan(&policy, &routed_inventory("nat", "nat"));
            for (family, net) in [(Family::V4, "127.0.0.0/8"), (Family::V6, "::1/128")] {
                let entry = chain(&ruleset, family, ENTRY_CHAIN);
                let drop = Rule {
                    conntrack: Some(Conntrack::OrigDst(net.parse().unwrap())),
                    target: Target::Jump(DROP_CHAIN),
                    origin: Some(Origin::Loopback),
                    ..Rule::default()
                };
                assert_eq!(entry[1], drop, "right after replies: {entry:?}");
            }
        }
    }

    fn allow_80() -> Policy {
        let text = "[inbound]\ndefault = \"deny\"\n[[inbound.allow]]\nports = [80]\n";
        crate::policy::parse_str(text, std::path::Path::new("p.toml")).unwrap()
    }

    fn chain<'a>(ruleset: &'a Ruleset, family: Family, name: &str) -> &'a [Rule] {
        let chains = &ruleset.family(family).chains;
        &chains.iter().find(|c| c.name == name).unwrap().rules
    }

    /// The rule that admits a connection routed to port 80 of `iface`.
    fn routed_80(iface: &str) -> Rule {
        Rule {
            out_iface: Iface::new(iface).ok(),
            proto: Some(Proto::Tcp),
            conntrack: Some(Conntrack::OrigDstPort {
                ports: PortRange {
                    first: 80,
                    last: 80,
                },
                dnat: false,
            }),
            origin: Some(Origin::Allow { line: 3 }),
            ..Rule::default()
        }
    }

    #[test]
    fn a_routed_bridge_admits_allowed_ports_without_dnat_in_its_routed_family_only() {
        let ruleset = plan(&allow_80(), &routed_inventory("routed", "nat"));
        let inbound = chain(&ruleset, Family::V4, INBOUND_CHAIN);
        let routed = inbound.iter().position(|r| *r == routed_80("br-shop"));
        assert_eq!(routed, Some(inbound.len() - 2), "{inbound:?}");
        assert!(!inbound.contains(&routed_80("docker0")));
        assert!(!chain(&ruleset, Family::V6, INBOUND_CHAIN).contains(&routed_80("br-shop")));
        for mode in ["nat", "nat-unprotected", "isolated", "teleport"] {
            let ruleset = plan(&allow_80(), &routed_inventory(mode, mode));
            let inbound = chain(&ruleset, Family::V4, INBOUND_CHAIN);
            assert!(!inbound.contains(&routed_80("br-shop")), "{mode}");
        }
    }

    /// An allow entry of `ports` ports and `sources` IPv4 and IPv6 hosts.
    fn big_entry(ports: u16, sources: u16, proto: &str) -> Policy {
        let ports: Vec<String> = (0..ports).map(|p| (1000 + 7 * p).to_string()).collect();
        let from: Vec<String> = (0..sources)
            .flat_map(|i| {
                [
                    format!("\"10.0.{}.{}\"", i / 250, i % 250),
                    format!("\"2001:db8::{i:x}\""),
                ]
            })
            .collect();
        let text = format!(
            "[inbound]\ndefault = \"deny\"\n[[inbound.allow]]\nports = [{}]\nfrom = [{}]\nproto = \"{proto}\"\n",
            ports.join(", "),
            from.join(", ")
        );
        crate::policy::parse_str(&text, std::path::Path::new("p.toml")).unwrap()
    }

    #[test]
    fn an_entry_of_many_sources_and_ports_is_one_rule_per_protocol() {
        let inventory = routed_inventory("nat", "nat");
        let small = plan(&big_entry(5, 2, "any"), &inventory);
        let big = plan(&big_entry(300, 300, "any"), &inventory);
        for family in Family::ALL {
            let (a, b) = (small.family(family), big.family(family));
            assert_eq!(a.chains, b.chains, "{family:?}: the same rules");
            let entry: Vec<&Rule> = chain(&big, family, INBOUND_CHAIN)
                .iter()
                .filter(|r| r.origin == Some(Origin::Allow { line: 3 }))
                .collect();
            assert_eq!(entry.len(), 3, "tcp, udp, sctp: {entry:?}");
            let tag = family_tag(family);
            for rule in entry {
                assert_eq!(rule.src_set, Some(format!("allow-1-src-{tag}")));
                assert_eq!(rule.orig_dport_ranges, Some(format!("allow-1-ports-{tag}")));
                assert_eq!(rule.conntrack, Some(Conntrack::Dnat), "allow: DNAT-ed only");
            }
            let ports = b.orig_port_set(&format!("allow-1-ports-{tag}")).unwrap();
            assert_eq!(ports.ranges.len(), 300);
            let sources = b.set(&format!("allow-1-src-{tag}")).unwrap();
            assert_eq!(sources.elements.len(), 300);
        }
        assert!(
            !small.same_rules(&big),
            "other ports are other rules where a backend writes a rule per range"
        );
    }

    #[test]
    fn two_sources_of_an_entry_with_a_port_set_are_a_set_and_a_few_ports_stay_rules() {
        let inventory = routed_inventory("nat", "nat");
        let rules = |ports, sources| {
            let ruleset = plan(&big_entry(ports, sources, "tcp"), &inventory);
            let inbound = chain(&ruleset, Family::V4, INBOUND_CHAIN).to_vec();
            inbound
                .into_iter()
                .filter(|r| r.origin == Some(Origin::Allow { line: 3 }))
                .collect::<Vec<_>>()
        };
        let listed = rules(4, 2);
        assert_eq!(listed.len(), 8, "2 sources x 4 ports");
        assert!(
            listed
                .iter()
                .all(|r| r.src.is_some() && r.orig_dport_ranges.is_none())
        );
        let one = rules(5, 1);
        assert_eq!(one.len(), 1);
        assert!(one[0].src.is_some() && one[0].orig_dport_ranges.is_some());
        let two = rules(5, 2);
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].src_set.as_deref(), Some("allow-1-src-v4"));
    }

    #[test]
    fn a_routed_bridge_matches_an_entrys_port_set_without_the_dnat_condition() {
        let inventory = routed_inventory("routed", "nat");
        let ruleset = plan(&big_entry(300, 300, "tcp"), &inventory);
        let inbound = chain(&ruleset, Family::V4, INBOUND_CHAIN);
        let routed: Vec<&Rule> = inbound.iter().filter(|r| r.out_iface.is_some()).collect();
        assert_eq!(routed.len(), 1, "{routed:?}");
        assert_eq!(routed[0].out_iface, Iface::new("br-shop").ok());
        assert_eq!(routed[0].conntrack, None);
        assert_eq!(
            routed[0].orig_dport_ranges.as_deref(),
            Some("allow-1-ports-v4")
        );
        assert_eq!(routed[0].src_set.as_deref(), Some("allow-1-src-v4"));
    }

    #[test]
    fn a_routed_port_is_judged_on_its_container_port_and_never_guarded_on_the_host() {
        let inventory = routed_inventory("routed", "routed");
        let rows = exposures(&allow_80(), &inventory);
        let seen: Vec<_> = rows
            .iter()
            .map(|r| (r.container_port, r.verdict, r.gateway_mode.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (80, Verdict::Open, "routed"),
                (5432, Verdict::Blocked, "routed")
            ]
        );
        assert!(
            rows[0]
                .why
                .ends_with("; routed: judged on container port 80")
        );
        let ruleset = plan(&allow_80(), &inventory);
        let proxy = chain(&ruleset, Family::V4, PROXY_CHAIN);
        assert!(proxy.iter().all(|r| r.dport.is_none()), "{proxy:?}");
    }
}
