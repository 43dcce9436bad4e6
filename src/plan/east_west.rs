//! The `[east_west]` table as rules: new connections from one container to
//! another, forwarded from a Docker bridge to a Docker bridge (the same one
//! or another), judged on the destination container's own address and port
//! (after Docker's DNAT, so a hairpin through a published port is judged
//! like a direct connection). Pure, like the rest of [`crate::plan`];
//! without an `[east_west]` table, or with one that can drop nothing, it
//! plans nothing at all.
//!
//! The shape, per family:
//!
//! ```text
//! DOCKFW          (after established/related and the loopback drop, before the outbound jumps)
//!                 the source side, as for outbound: -i <each verified bridge>,
//!                 -s <subnet of a bridge not verified>, -s <container off them> -> DOCKFW-EAST-WEST
//! DOCKFW-EAST-WEST  the destination side: -o <each verified bridge>,
//!                 -d <subnet of a bridge not verified>, -d <container off them> -> DOCKFW-EW-JUDGE
//! DOCKFW-EW-JUDGE ICMPv6 neighbour discovery      -> RETURN   (IPv6)
//!                 (selector denies, or restricted) -> DOCKFW-EW-UNCLASSIFIED
//!                 deny entries                    -> DROP     (-s @ewf-deny-N, -d @ew-deny-N)
//!                 allow entries                   -> RETURN   (when something is restricted)
//!                 everything else                 -> DROP     (default deny)
//!                 -d @ew-isolated                 -> DROP     (default allow, isolates)
//! DOCKFW-EW-UNCLASSIFIED  -s @known -d @known     -> RETURN
//!                 selector deny entries, any address -> DROP
//!                 selector-less allow entries     -> RETURN   (when restricted)
//!                 -d @ew-isolated -> DROP, -d @known -> RETURN (default allow, isolates)
//!                 everything else                 -> DROP     (when restricted)
//! ```
//!
//! Every drop carries its origin, so the firewall's rule counters count
//! it per entry: a deny entry's `ew-deny@LINE`, the drop of what no allow
//! entry admits `ew-default` (`default = "deny"`) or `ew-isolated`
//! (`default = "allow"` with isolates), with as many counting rules as the
//! entries have rules, however many containers they select. Allow entries'
//! rules carry `allow@LINE`. Drops are plain drops, not through
//! `DOCKFW-DROP`, whose counters are per published port.
//!
//! Replies pass: the entry chain returns established and related traffic
//! before any of this, and neighbour discovery is never judged. Ports are
//! the packet's own destination port here: the destination container's
//! port, after any DNAT. Containers follow as set elements
//! ([`contributions`] says what one container adds to which set), never
//! as rules. `networks` limits an entry to the destination container's
//! addresses on those networks. Fail closed: an address no known container
//! has, as source or destination (a container an instant old), meets every
//! deny and isolate with a selector, and only allow entries without one.
//! Same-bridge traffic reaches these chains only when bridge netfilter
//! calls the IP hooks for that bridge (see [`crate::bridge_netfilter`]).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::outbound::{
    NEIGHBOUR_DISCOVERY, Side, containers_on, from_containers_to, unread_bridge_interfaces,
};
use super::{EntryId, address_in, known_set, verified_interfaces, without_repeats};
use crate::inventory::{Container, Inventory, Proto};
use crate::policy::{Default, EastWest, EastWestEntry, Glob, Policy, ProtoMatch};
use crate::ruleset::{
    AddrSet, Chain, EAST_WEST_CHAIN, EAST_WEST_JUDGE_CHAIN, EAST_WEST_UNCLASSIFIED_CHAIN, Family,
    Iface, Origin, Rule, Target,
};

/// What the `[east_west]` table adds to one family's plan.
#[derive(Debug, Default)]
pub(super) struct EastWestRules {
    pub chains: Vec<Chain>,
    pub sets: Vec<AddrSet>,
}

/// The jumps the forward entry chain makes for what arrives from a
/// container, before anything lets it through: none unless the table can
/// drop something.
pub(super) fn forward_jumps(policy: &Policy, inventory: &Inventory, family: Family) -> Vec<Rule> {
    match &policy.east_west {
        Some(east_west) if east_west.judged() => {
            from_containers_to(inventory, family, EAST_WEST_CHAIN)
        }
        _ => Vec::new(),
    }
}

/// The bridges whose same-bridge traffic the `[east_west]` table judges:
/// every bridge judged by its interface (see [`to_containers`]) when the
/// table can drop something, none otherwise. Their frames reach the
/// chains only when bridge netfilter calls the IP hooks for them
/// ([`crate::bridge_netfilter`]).
pub fn same_bridge_interfaces(policy: &Policy, inventory: &Inventory) -> BTreeSet<Iface> {
    if !policy.east_west.as_ref().is_some_and(EastWest::judged) {
        return BTreeSet::new();
    }
    verified_interfaces(inventory)
        .into_iter()
        .chain(unread_bridge_interfaces(inventory))
        .collect()
}

/// The interface names of the bridges whose names dockfw refuses, when
/// the `[east_west]` table can drop something: their same-bridge traffic
/// is judged only where the global bridge-netfilter switch is on (dockfw
/// never passes such a name to `ip` to set the bridge's own flag).
pub fn same_bridge_refused(policy: &Policy, inventory: &Inventory) -> BTreeSet<String> {
    if !policy.east_west.as_ref().is_some_and(EastWest::judged) {
        return BTreeSet::new();
    }
    (inventory.bridges.iter())
        .filter(|b| Iface::new(&b.interface).is_err())
        .map(|b| b.interface.clone())
        .collect()
}

/// The chains and sets of the `[east_west]` table in `family`.
pub(super) fn plan(policy: &Policy, inventory: &Inventory, family: Family) -> EastWestRules {
    let Some(east_west) = policy.east_west.as_ref().filter(|e| e.judged()) else {
        return EastWestRules::default();
    };
    let mut chains = vec![
        to_containers(inventory, family),
        judge_chain(east_west, family),
    ];
    if needs_unclassified(east_west) {
        chains.push(unclassified_chain(east_west, family));
    }
    let sets = sets(east_west, inventory, family, &chains);
    EastWestRules { chains, sets }
}

/// `DOCKFW-EAST-WEST`: what leaves by a verified bridge (or one whose
/// subnets could not all be read), or goes to a subnet of any other bridge
/// network, or to a known container's address off them, is judged.
fn to_containers(inventory: &Inventory, family: Family) -> Chain {
    let rules = containers_on(inventory, family, Side::To, EAST_WEST_JUDGE_CHAIN);
    Chain {
        name: EAST_WEST_CHAIN,
        rules: without_repeats(rules),
    }
}

/// Whether an address no known container has needs judging apart: some
/// deny entry has a selector, or something is restricted (an allow entry
/// with a selector must not admit it).
pub(super) fn needs_unclassified(east_west: &EastWest) -> bool {
    east_west.restricts() || east_west.deny.iter().any(EastWestEntry::has_selector)
}

fn judge_chain(east_west: &EastWest, family: Family) -> Chain {
    let mut rules = neighbour_discovery(family);
    if needs_unclassified(east_west) {
        rules.push(Rule {
            target: Target::Jump(EAST_WEST_UNCLASSIFIED_CHAIN),
            ..Rule::default()
        });
    }
    for (id, entry) in numbered(&east_west.deny, "ew-deny") {
        rules.extend(entry_rules(id, entry, family, true, Target::Drop));
    }
    if east_west.restricts() {
        for (id, entry) in numbered(&east_west.allow, "ew-allow") {
            rules.extend(entry_rules(id, entry, family, true, Target::Return));
        }
        let default_allow = east_west.default == Default::Allow;
        rules.push(Rule {
            dst_set: default_allow.then(|| isolated_set(family)),
            target: Target::Drop,
            origin: Some(restricted_origin(east_west)),
            ..Rule::default()
        });
    }
    Chain {
        name: EAST_WEST_JUDGE_CHAIN,
        rules: without_repeats(rules),
    }
}

/// ICMPv6 neighbour discovery is never judged: without it no address on a
/// bridge is reachable at all, allowed or not.
fn neighbour_discovery(family: Family) -> Vec<Rule> {
    match family {
        Family::V4 => Vec::new(),
        Family::V6 => NEIGHBOUR_DISCOVERY
            .map(|icmpv6_type| Rule {
                icmpv6_type: Some(icmpv6_type),
                ..Rule::default()
            })
            .to_vec(),
    }
}

/// What a drop of what no allow entry admits counts as: the default's
/// (`ew-default`) under `default = "deny"`, isolation's (`ew-isolated`)
/// under `default = "allow"`, where only isolates restrict.
pub(super) fn restricted_origin(east_west: &EastWest) -> Origin {
    match east_west.default {
        Default::Deny => Origin::EastWestDefault,
        Default::Allow => Origin::EastWestIsolated,
    }
}

/// A source or a destination no known container has: judged by every
/// deny with a selector, admitted only by allow entries without one, and
/// (under default allow) dropped when it may be isolated.
fn unclassified_chain(east_west: &EastWest, family: Family) -> Chain {
    let mut rules = vec![Rule {
        src_set: Some(known_set(family)),
        dst_set: Some(known_set(family)),
        ..Rule::default()
    }];
    let selector_denies = numbered(&east_west.deny, "ew-deny").filter(|(_, e)| e.has_selector());
    for (id, entry) in selector_denies {
        rules.extend(entry_rules(id, entry, family, false, Target::Drop));
    }
    if east_west.restricts() {
        let selectorless =
            numbered(&east_west.allow, "ew-allow").filter(|(_, e)| !e.has_selector());
        for (id, entry) in selectorless {
            rules.extend(entry_rules(id, entry, family, false, Target::Return));
        }
        if east_west.default == Default::Allow {
            rules.push(Rule {
                dst_set: Some(isolated_set(family)),
                target: Target::Drop,
                origin: Some(Origin::EastWestIsolated),
                ..Rule::default()
            });
            // A known destination no isolate entry selects: only the
            // source is unknown, and nothing restricts it.
            rules.push(Rule {
                dst_set: Some(known_set(family)),
                ..Rule::default()
            });
        }
        rules.push(Rule {
            target: Target::Drop,
            origin: Some(restricted_origin(east_west)),
            ..Rule::default()
        });
    }
    Chain {
        name: EAST_WEST_UNCLASSIFIED_CHAIN,
        rules: without_repeats(rules),
    }
}

/// An entry's rules: (protocol, port range) of the destination container's
/// own port, from the set of its source containers and to the set of its
/// destination addresses when `selected` (and it selects them), else from
/// and to any address.
fn entry_rules(
    id: EntryId,
    entry: &EastWestEntry,
    family: Family,
    selected: bool,
    target: Target,
) -> Vec<Rule> {
    let src_set = (selected && entry.selects_sources()).then(|| source_set(id, family));
    let dst_set = (selected && entry.selects_destinations()).then(|| id.selected_set(family));
    let protos = protos(entry);
    let services: Vec<(Option<Proto>, Option<_>)> = match (&entry.to.ports, entry.to.proto) {
        (None, ProtoMatch::Any) => vec![(None, None)],
        (None, _) => protos.into_iter().map(|p| (Some(p), None)).collect(),
        (Some(ranges), _) => protos
            .iter()
            .flat_map(|p| ranges.iter().map(move |r| (Some(*p), Some(*r))))
            .collect(),
    };
    let origin = match target {
        Target::Drop => Origin::EastWestDeny { line: id.line },
        _ => Origin::Allow { line: id.line },
    };
    services
        .into_iter()
        .map(|(proto, dport)| Rule {
            src_set: src_set.clone(),
            dst_set: dst_set.clone(),
            proto,
            dport,
            target: target.clone(),
            origin: Some(origin),
            ..Rule::default()
        })
        .collect()
}

/// The protocols an entry covers.
pub(super) fn protos(entry: &EastWestEntry) -> Vec<Proto> {
    match entry.to.proto {
        ProtoMatch::Tcp => vec![Proto::Tcp],
        ProtoMatch::Udp => vec![Proto::Udp],
        ProtoMatch::Any => vec![Proto::Tcp, Proto::Udp, Proto::Sctp],
    }
}

/// `ew-allow-2`, `ew-deny-1`: east-west entries by kind and place, so that
/// their sets never share a name with another table's.
pub(super) fn numbered<'a>(
    entries: &'a [EastWestEntry],
    kind: &'static str,
) -> impl Iterator<Item = (EntryId, &'a EastWestEntry)> {
    entries.iter().enumerate().map(move |(i, entry)| {
        let id = EntryId {
            kind,
            number: i + 1,
            line: entry.to.line,
        };
        (id, entry)
    })
}

/// The set of the addresses of an entry's source containers:
/// `ewf-allow-2-v4` (east-west, from).
pub(super) fn source_set(id: EntryId, family: Family) -> String {
    let kind = id.kind.trim_start_matches("ew-");
    format!("ewf-{kind}-{}-{}", id.number, super::family_tag(family))
}

/// The set of the addresses of every container an isolate entry selects,
/// on the entry's networks.
fn isolated_set(family: Family) -> String {
    format!("ew-isolated-{}", super::family_tag(family))
}

/// What one container adds, in `family`, to the sets of the `[east_west]`
/// table: (set name, address) pairs. The sets are these, gathered over
/// every container; an incremental planner can add or remove one
/// container's pairs alone.
pub fn contributions(
    east_west: &EastWest,
    container: &Container,
    family: Family,
) -> Vec<(String, IpNet)> {
    let mut out = Vec::new();
    let to = |entry: &EastWestEntry| destination_addresses(entry, container, family);
    for entry in &east_west.isolate {
        out.extend(to(entry).into_iter().map(|a| (isolated_set(family), a)));
    }
    let entries =
        numbered(&east_west.allow, "ew-allow").chain(numbered(&east_west.deny, "ew-deny"));
    for (id, entry) in entries {
        if entry.selects_destinations() {
            out.extend(to(entry).into_iter().map(|a| (id.selected_set(family), a)));
        }
        if entry.selects_sources() && selects_source(entry, container) {
            let addrs = container
                .attachments
                .iter()
                .filter_map(|a| address_in(a, family));
            out.extend(addrs.map(|a| (source_set(id, family), IpNet::from(a))));
        }
    }
    out
}

/// The container's addresses in `family` an entry covers as destinations:
/// none unless its `containers`/`labels` select it; those on the entry's
/// `networks`, or all of them.
fn destination_addresses(
    entry: &EastWestEntry,
    container: &Container,
    family: Family,
) -> Vec<IpNet> {
    (container.attachments.iter())
        .filter(|a| covers_destination(entry, container, &a.network))
        .filter_map(|a| address_in(a, family))
        .map(IpNet::from)
        .collect()
}

/// Whether an entry (or an isolate) covers a container as a destination:
/// its `containers`/`labels` select it, and it is on one of the entry's
/// `networks` (or the entry names none).
pub(super) fn covers(entry: &EastWestEntry, container: &Container) -> bool {
    super::selects(&entry.to, container)
        && (entry.networks.is_empty()
            || (container.attachments.iter()).any(|a| matches_any(&entry.networks, &a.network)))
}

/// Whether an entry covers `container`'s address on `network` as a
/// destination: its `containers`/`labels` select the container, and its
/// `networks` name the network (or are omitted).
pub(super) fn covers_destination(
    entry: &EastWestEntry,
    container: &Container,
    network: &str,
) -> bool {
    super::selects(&entry.to, container)
        && (entry.networks.is_empty() || matches_any(&entry.networks, network))
}

/// Whether an entry's `from_containers`/`from_labels` select `container`
/// (every container when both are omitted).
pub(super) fn selects_source(entry: &EastWestEntry, container: &Container) -> bool {
    let named =
        entry.from_containers.is_empty() || matches_any(&entry.from_containers, &container.name);
    let labelled = (entry.from_labels.iter()).all(|(k, v)| container.labels.get(k) == Some(v));
    named && labelled
}

fn matches_any(globs: &[Glob], name: &str) -> bool {
    globs.iter().any(|g| g.matches(name))
}

/// The address sets the rules of `chains` name, each with its elements,
/// apart from `known-v4`, which the inbound plan makes when any rule names
/// it. A set named by a rule and selecting no container is empty.
fn sets(
    east_west: &EastWest,
    inventory: &Inventory,
    family: Family,
    chains: &[Chain],
) -> Vec<AddrSet> {
    let named = super::named_address_sets(chains);
    let mut elements: BTreeMap<String, Vec<IpNet>> = named
        .iter()
        .filter(|name| **name != known_set(family))
        .map(|name| ((*name).to_owned(), Vec::new()))
        .collect();
    let containers = inventory.containers.iter().filter(|c| !c.host_network);
    for (name, addr) in containers.flat_map(|c| contributions(east_west, c, family)) {
        if let Some(set) = elements.get_mut(&name) {
            set.push(addr);
        }
    }
    elements
        .into_iter()
        .map(|(name, nets)| AddrSet::new(name, family, nets))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::inventory::{Attachment, Bridge, Container, Inventory};
    use crate::net::Family;
    use crate::policy::Policy;

    fn policy(text: &str) -> Policy {
        crate::policy::parse_str(text, Path::new("p.toml")).expect("valid")
    }

    fn attachment(network: &str, ipv4: &str) -> Attachment {
        Attachment {
            network_id: network.to_owned(),
            network: network.to_owned(),
            ipv4: Some(ipv4.parse().expect("addr")),
            ipv6: None,
        }
    }

    fn inventory() -> Inventory {
        let bridge = |id: &str, interface: &str| Bridge {
            id: id.to_owned(),
            name: id.to_owned(),
            interface: interface.to_owned(),
        };
        let container = |name: &str, attachments| Container {
            id: name.to_owned(),
            name: name.to_owned(),
            attachments,
            labels: Default::default(),
            host_network: false,
            ports: Vec::new(),
        };
        Inventory {
            bridges: vec![bridge("front", "br-front"), bridge("back", "br-back")],
            containers: vec![
                container("proxy", vec![attachment("front", "172.18.0.2")]),
                container(
                    "api",
                    vec![
                        attachment("front", "172.18.0.3"),
                        attachment("back", "172.19.0.3"),
                    ],
                ),
            ],
            ..Inventory::default()
        }
    }

    #[test]
    fn a_table_that_can_drop_nothing_plans_nothing() {
        let plain = super::super::plan(&policy("[inbound]\n"), &inventory());
        for text in [
            "[east_west]\n",
            "[east_west]\n[[east_west.allow]]\nfrom_containers = [\"proxy\"]\n",
        ] {
            assert_eq!(
                super::super::plan(&policy(text), &inventory()),
                plain,
                "{text}"
            );
        }
    }

    #[test]
    fn every_drop_names_its_entry_and_more_containers_add_no_counting_rule() {
        use crate::ruleset::{Origin, Target};
        let text = "[east_west]\ndefault = \"deny\"\n\n[[east_west.isolate]]\n\
                    containers = [\"api\"]\n\n[[east_west.allow]]\n\
                    from_containers = [\"proxy\"]\nports = [80]\n\n[[east_west.deny]]\n\
                    from_containers = [\"proxy\"]\nports = [9187]\n";
        let denying = policy(text);
        let drops = |inventory: &Inventory| -> Vec<Option<Origin>> {
            let plan = super::super::plan(&denying, inventory);
            let east_west = (plan.family(Family::V4).chains.iter())
                .filter(|c| c.name.starts_with("DOCKFW-EW-"))
                .flat_map(|c| c.rules.iter().map(move |r| (c.name, r)))
                .filter(|(_, r)| r.target == Target::Drop);
            // The hairpin's chains (DOCKFW-EW-HAIRPIN, DOCKFW-EW-HP-…) name
            // their entries too; they are proved in plan::hairpin.
            let (hairpin, judged): (Vec<_>, Vec<_>) =
                east_west.partition(|(name, _)| name.starts_with("DOCKFW-EW-H"));
            assert!(
                hairpin.iter().all(|(_, r)| r.origin.is_some()),
                "{hairpin:?}"
            );
            judged.into_iter().map(|(_, r)| r.origin).collect()
        };
        let two = drops(&inventory());
        let deny = Some(Origin::EastWestDeny { line: 11 });
        let default = Some(Origin::EastWestDefault);
        assert_eq!(
            two,
            [deny, default, deny, default],
            "judge, then unclassified"
        );
        let mut many = inventory();
        for i in 0..50 {
            let name = format!("api-{i}");
            let mut c = many.containers[1].clone();
            (c.id, c.name) = (name.clone(), name);
            c.attachments = vec![attachment("back", &format!("172.19.1.{i}"))];
            many.containers.push(c);
        }
        assert_eq!(drops(&many), two, "sets, not rules, follow containers");
        let isolates = policy(&text.replace("default = \"deny\"", "default = \"allow\""));
        let plan = super::super::plan(&isolates, &inventory());
        let origins: Vec<Option<Origin>> = (plan.family(Family::V6).chains.iter())
            .filter(|c| c.name.starts_with("DOCKFW-EW-"))
            .flat_map(|c| c.rules.iter())
            .filter(|r| r.target == Target::Drop && r.origin != deny)
            .map(|r| r.origin)
            .collect();
        assert!(!origins.is_empty());
        assert!(
            origins.iter().all(|o| *o == Some(Origin::EastWestIsolated)),
            "under default allow, what isolation drops counts as isolation: {origins:?}"
        );
    }

    #[test]
    fn networks_limit_an_entry_to_the_destination_addresses_on_them() {
        let text = "[east_west]\ndefault = \"deny\"\n[[east_west.allow]]\n\
                    from_containers = [\"proxy\"]\ncontainers = [\"api\"]\nnetworks = [\"back\"]\n";
        let policy = policy(text);
        let east_west = policy.east_west.as_ref().expect("east_west");
        let inventory = inventory();
        let of = |name: &str| {
            let container = inventory.containers.iter().find(|c| c.name == name);
            super::contributions(east_west, container.expect("container"), Family::V4)
                .into_iter()
                .map(|(set, addr)| format!("{set} {addr}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(of("api"), ["ew-allow-1-v4 172.19.0.3/32"]);
        assert_eq!(of("proxy"), ["ewf-allow-1-v4 172.18.0.2/32"]);
        let plan = super::super::plan(&policy, &inventory);
        let set = plan.family(Family::V4).set("ew-allow-1-v4").expect("set");
        assert_eq!(set.elements.len(), 1, "only api's address on back");
    }
}
