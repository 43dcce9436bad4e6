//! The `[east_west]` table for a hairpin through docker-proxy: a
//! container's new connection to a port published on the host that Docker
//! does not DNAT for it, so that its userland proxy serves it (INPUT, from
//! a Docker bridge, to a host address and the published host port; the
//! proxy then connects to the container from the host itself). It is
//! judged as east-west on the destination container and its container
//! port, as a hairpin through DNAT is in FORWARD ([`super::east_west`]):
//! the same verdict either way. Pure, like the rest of [`crate::plan`];
//! without an `[east_west]` table that can drop something it plans nothing.
//!
//! The shape, per family:
//!
//! ```text
//! DOCKFW-PROXY    (after established/related and lo, before the to_host jumps)
//!                 the source side, as for outbound -> DOCKFW-EW-HAIRPIN
//! DOCKFW-EW-HAIRPIN  (selector denies, or restricted) -> DOCKFW-EW-HP-UNCLASSIFIED
//!                 per entry and protocol: deny   -> DROP   (-s @ewf-deny-N, dport @ewh-deny-N-tcp)
//!                                         allow  -> RETURN (when restricted)
//!                 per protocol: dport @proxied-tcp      -> DROP (default deny)
//!                               dport @ewh-isolated-tcp -> DROP (default allow, isolates)
//! DOCKFW-EW-HP-UNCLASSIFIED  -s @known            -> RETURN
//!                 selector deny entries, any source -> DROP
//!                 selector-less allow entries     -> RETURN (when restricted)
//!                 per protocol: dport @ewh-isolated-tcp -> DROP (default allow, isolates)
//!                               dport @proxied-tcp      -> DROP (default deny)
//! DOCKFW-TO-HOST  per protocol: dport @proxied-tcp -> RETURN (a hairpin is east-west)
//! ```
//!
//! The destination is a published host port, so the sets are of ports:
//! `ewh-allow-2-tcp-v4` holds the host ports published on every address of
//! the family whose container allow entry 2 selects as a destination (on
//! its `networks`) with a container port and protocol the entry covers;
//! `ewh-isolated-tcp-v4` those whose container an isolate selects;
//! `proxied-tcp-v4` every host port published on every address. A
//! container coming or going changes elements, never rules: an entry is
//! one rule per protocol. A port published on one host address only is
//! left out: it is judged as `to_host` is, as before.

use std::collections::{BTreeMap, BTreeSet};

use super::east_west::{
    covers, needs_unclassified, numbered, protos, restricted_origin, source_set,
};
use super::outbound::from_containers_to;
use super::{family_of, family_tag, known_set, without_repeats};
use crate::inventory::{Container, Inventory, Proto, PublishedPort};
use crate::policy::{Default, EastWest, EastWestEntry, Policy};
use crate::ruleset::{
    Chain, EAST_WEST_HAIRPIN_CHAIN, EAST_WEST_HAIRPIN_UNCLASSIFIED_CHAIN, Family, Origin, PortSet,
    Rule, Target,
};

/// Every protocol Docker publishes, in the order rules are written.
const ALL_PROTOS: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Sctp];

/// What a hairpin adds to one family's plan: its chains (its sets are
/// [`port_sets`]', made once every chain that names them is planned).
#[derive(Debug, Default)]
pub(super) struct HairpinRules {
    pub chains: Vec<Chain>,
}

/// The jumps `DOCKFW-PROXY` makes for what arrives from a container, before
/// the `to_host` jumps: none unless the `[east_west]` table can drop
/// something.
pub(super) fn input_jumps(policy: &Policy, inventory: &Inventory, family: Family) -> Vec<Rule> {
    match &policy.east_west {
        Some(east_west) if east_west.judged() => {
            from_containers_to(inventory, family, EAST_WEST_HAIRPIN_CHAIN)
        }
        _ => Vec::new(),
    }
}

/// The chains of a hairpin in `family`.
pub(super) fn plan(policy: &Policy, family: Family) -> HairpinRules {
    let Some(east_west) = policy.east_west.as_ref().filter(|e| e.judged()) else {
        return HairpinRules::default();
    };
    let mut chains = vec![judge_chain(east_west, family)];
    if needs_unclassified(east_west) {
        chains.push(unclassified_chain(east_west, family));
    }
    HairpinRules { chains }
}

/// The set of every host port published on every address of `family` in
/// `proto`: `proxied-tcp-v4`.
pub(super) fn proxied_set(proto: Proto, family: Family) -> String {
    format!("proxied-{}-{}", proto.as_str(), family_tag(family))
}

/// One rule per protocol, to the `proxied-*` set of each: what a hairpin
/// may be addressed to.
pub(super) fn per_proxied_port(family: Family, target: Target) -> Vec<Rule> {
    ALL_PROTOS
        .map(|proto| Rule {
            proto: Some(proto),
            dport_set: Some(proxied_set(proto, family)),
            target: target.clone(),
            ..Rule::default()
        })
        .to_vec()
}

/// Every port set a hairpin's rules in `chains` name (the `proxied-*`
/// ones, which `to_host` names too, and the entries'), each with its
/// ports: the sets of [`contributions`], gathered over every container.
pub(super) fn port_sets(
    policy: &Policy,
    inventory: &Inventory,
    family: Family,
    chains: &[Chain],
) -> Vec<PortSet> {
    let mut sets: BTreeMap<&str, (Proto, BTreeSet<u16>)> = BTreeMap::new();
    for rule in chains.iter().flat_map(|c| c.rules.iter()) {
        if let (Some(name), Some(proto)) = (rule.dport_set.as_deref(), rule.proto)
            && is_hairpin_set(name)
        {
            sets.entry(name).or_insert_with(|| (proto, BTreeSet::new()));
        }
    }
    for container in &inventory.containers {
        for (name, port) in contributions(policy, container, family) {
            if let Some((_, ports)) = sets.get_mut(name.as_str()) {
                ports.insert(port);
            }
        }
    }
    let mut out: Vec<PortSet> = (sets.into_iter())
        .map(|(name, (proto, ports))| PortSet {
            name: name.to_owned(),
            family,
            proto,
            ports,
        })
        .collect();
    // The `proxied-*` sets first, by protocol, then the entries', by name.
    let rank = |p: Proto| ALL_PROTOS.iter().position(|q| *q == p);
    out.sort_by_key(|set| {
        let proxied = set.name.starts_with("proxied-");
        (!proxied, proxied.then(|| rank(set.proto)), set.name.clone())
    });
    out
}

/// Whether a port set is a hairpin's (and not a guard set).
pub(super) fn is_hairpin_set(name: &str) -> bool {
    name.starts_with("proxied-") || name.starts_with("ewh-")
}

/// What one container adds, in `family`, to the port sets of a hairpin:
/// (set name, host port) pairs, for each port it publishes on every
/// address: the `proxied-*` set of its protocol, the isolated containers'
/// set when an isolate covers it, and the set of each entry that covers
/// it and its container port. The sets are these, gathered over every
/// container (only those a rule names exist); an incremental planner can
/// add or remove one container's pairs alone.
pub fn contributions(policy: &Policy, container: &Container, family: Family) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    let east_west = policy.east_west.as_ref().filter(|e| e.judged());
    let entries: Vec<_> = (east_west.iter())
        .flat_map(|e| numbered(&e.allow, "ew-allow").chain(numbered(&e.deny, "ew-deny")))
        .collect();
    for port in proxied_bindings(container, family) {
        let (proto, host_port) = (port.proto, port.host_port);
        out.push((proxied_set(proto, family), host_port));
        if east_west.is_some_and(|e| e.isolate.iter().any(|i| covers(i, container))) {
            out.push((isolated_set(proto, family), host_port));
        }
        for (id, entry) in &entries {
            if covers(entry, container) && covers_port(entry, port) {
                out.push((entry_set(*id, proto, family), host_port));
            }
        }
    }
    out
}

/// The container's bindings docker-proxy may serve in `family` on every
/// host address: not routed, not on one address (loopback included).
fn proxied_bindings(container: &Container, family: Family) -> impl Iterator<Item = &PublishedPort> {
    (container.ports.iter())
        .filter(move |_| !container.host_network)
        .filter(|p| !p.is_routed() && p.host_ip.is_unspecified())
        .filter(move |p| family_of(p.host_ip) == family)
}

fn judge_chain(east_west: &EastWest, family: Family) -> Chain {
    let mut rules = Vec::new();
    if needs_unclassified(east_west) {
        rules.push(Rule {
            target: Target::Jump(EAST_WEST_HAIRPIN_UNCLASSIFIED_CHAIN),
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
        rules.extend(restricted_drops(east_west, family));
    }
    Chain {
        name: EAST_WEST_HAIRPIN_CHAIN,
        rules: without_repeats(rules),
    }
}

/// A source no known container has: judged by every deny with a selector,
/// admitted only by allow entries without one, and dropped where the
/// destination may be isolated. The destination is always known: a port a
/// known container publishes.
fn unclassified_chain(east_west: &EastWest, family: Family) -> Chain {
    let mut rules = vec![Rule {
        src_set: Some(known_set(family)),
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
        rules.extend(restricted_drops(east_west, family));
    }
    Chain {
        name: EAST_WEST_HAIRPIN_UNCLASSIFIED_CHAIN,
        rules: without_repeats(rules),
    }
}

/// What is dropped when nothing admitted it: every proxied port under
/// default deny, the isolated containers' ports under default allow.
/// They count as the default's drops (`ew-default`) or isolation's
/// (`ew-isolated`), as east-west's own.
fn restricted_drops(east_west: &EastWest, family: Family) -> Vec<Rule> {
    let mut rules = match east_west.default {
        Default::Deny => per_proxied_port(family, Target::Drop),
        Default::Allow => ALL_PROTOS
            .map(|proto| Rule {
                proto: Some(proto),
                dport_set: Some(isolated_set(proto, family)),
                target: Target::Drop,
                ..Rule::default()
            })
            .to_vec(),
    };
    for rule in &mut rules {
        rule.origin = Some(restricted_origin(east_west));
    }
    rules
}

/// An entry's rules: one per protocol, to the set of the published host
/// ports it covers, from the set of its source containers when `selected`
/// (and it selects them).
fn entry_rules(
    id: super::EntryId,
    entry: &EastWestEntry,
    family: Family,
    selected: bool,
    target: Target,
) -> Vec<Rule> {
    let src_set = (selected && entry.selects_sources()).then(|| source_set(id, family));
    let origin = match target {
        Target::Drop => Origin::EastWestDeny { line: id.line },
        _ => Origin::Allow { line: id.line },
    };
    protos(entry)
        .into_iter()
        .map(|proto| Rule {
            src_set: src_set.clone(),
            proto: Some(proto),
            dport_set: Some(entry_set(id, proto, family)),
            target: target.clone(),
            origin: Some(origin),
            ..Rule::default()
        })
        .collect()
}

/// `ewh-allow-2-tcp-v4`: the published host ports an entry covers.
fn entry_set(id: super::EntryId, proto: Proto, family: Family) -> String {
    let kind = id.kind.trim_start_matches("ew-");
    let (p, f) = (proto.as_str(), family_tag(family));
    format!("ewh-{kind}-{}-{p}-{f}", id.number)
}

/// `ewh-isolated-tcp-v4`: the published host ports of isolated containers.
fn isolated_set(proto: Proto, family: Family) -> String {
    format!("ewh-isolated-{}-{}", proto.as_str(), family_tag(family))
}

/// Whether an entry covers a binding of a container it selects as a
/// destination: its protocol, and its container port among the entry's.
fn covers_port(entry: &EastWestEntry, port: &PublishedPort) -> bool {
    protos(entry).contains(&port.proto)
        && (entry.to.ports.as_ref())
            .is_none_or(|ranges| ranges.iter().any(|r| r.contains(port.container_port)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::inventory::{Attachment, Bridge, Container, Inventory, Proto, PublishedPort};
    use crate::net::Family;
    use crate::policy::Policy;

    fn policy(text: &str) -> Policy {
        crate::policy::parse_str(text, Path::new("p.toml")).expect("valid")
    }

    fn port(host_ip: &str, host_port: u16, container_port: u16) -> PublishedPort {
        PublishedPort {
            host_ip: host_ip.parse().expect("addr"),
            host_port,
            container_port,
            proto: Proto::Tcp,
        }
    }

    fn inventory() -> Inventory {
        let container = |name: &str, ipv4: &str, ports| Container {
            id: name.to_owned(),
            name: name.to_owned(),
            attachments: vec![Attachment {
                network_id: "net".to_owned(),
                network: "net".to_owned(),
                ipv4: Some(ipv4.parse().expect("addr")),
                ipv6: None,
            }],
            labels: Default::default(),
            host_network: false,
            ports,
        };
        Inventory {
            bridges: vec![Bridge {
                id: "net".to_owned(),
                name: "net".to_owned(),
                interface: "br-net".to_owned(),
            }],
            containers: vec![
                container("client", "172.18.0.2", Vec::new()),
                container(
                    "api",
                    "172.18.0.3",
                    vec![
                        port("0.0.0.0", 8080, 80),
                        port("0.0.0.0", 9090, 9000),
                        port("192.0.2.1", 8081, 80),
                    ],
                ),
            ],
            ..Inventory::default()
        }
    }

    fn ports(plan: &crate::ruleset::Ruleset, set: &str) -> Vec<u16> {
        let set = plan.family(Family::V4).port_set(set).expect(set);
        set.ports.iter().copied().collect()
    }

    #[test]
    fn an_entry_covers_the_host_ports_published_on_every_address_to_its_container_ports() {
        let text = "[east_west]\n[[east_west.isolate]]\ncontainers = [\"api\"]\n\
                    [[east_west.allow]]\nfrom_containers = [\"client\"]\n\
                    containers = [\"api\"]\nports = [80]\n";
        let plan = super::super::plan(&policy(text), &inventory());
        assert_eq!(
            ports(&plan, "ewh-allow-1-tcp-v4"),
            [8080],
            "not 9090, not 8081"
        );
        assert_eq!(ports(&plan, "ewh-isolated-tcp-v4"), [8080, 9090]);
    }

    #[test]
    fn a_hairpin_is_judged_before_to_host_and_to_host_leaves_it() {
        let text = "[outbound]\nto_host = \"deny\"\n[east_west]\n\
                    [[east_west.isolate]]\ncontainers = [\"api\"]\n";
        let plan = super::super::plan(&policy(text), &inventory());
        let v4 = plan.family(Family::V4);
        let proxy = v4
            .chains
            .iter()
            .find(|c| c.name == crate::ruleset::PROXY_CHAIN);
        let targets: Vec<_> = (proxy.expect("proxy chain").rules.iter())
            .filter_map(|r| match r.target {
                crate::ruleset::Target::Jump(chain) if chain != crate::ruleset::DROP_CHAIN => {
                    Some(chain)
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            targets,
            [
                crate::ruleset::EAST_WEST_HAIRPIN_CHAIN,
                crate::ruleset::TO_HOST_CHAIN
            ]
        );
        let to_host = v4
            .chains
            .iter()
            .find(|c| c.name == crate::ruleset::TO_HOST_CHAIN);
        let first = &to_host.expect("to_host chain").rules[0];
        assert_eq!(first.dport_set.as_deref(), Some("proxied-tcp-v4"));
        assert_eq!(first.target, crate::ruleset::Target::Return);
        assert_eq!(ports(&plan, "proxied-tcp-v4"), [8080, 9090], "not 8081");
    }
}
