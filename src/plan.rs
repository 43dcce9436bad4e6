//! `plan(&Policy, &Inventory) -> Ruleset`: the whole of dockfw's firewall
//! logic, and [`exposures`], the same policy read back as one verdict per
//! published port for `dockfw status`.
//!
//! Pure: no I/O, no clock. The shape of the rules, per family:
//!
//! ```text
//! DOCKFW          established/related             -> RETURN
//!                 -i <each known Docker bridge>   -> RETURN   (from containers)
//!                 -o <each known Docker bridge>   -> DOCKFW-INBOUND
//!                 -d <container on a refused bridge> -> DOCKFW-INBOUND
//!                 any other DNAT-ed connection    -> DOCKFW-INBOUND
//! DOCKFW-INBOUND  (selector denies) -> DOCKFW-UNCLASSIFIED
//!                 deny entries                    -> DROP
//!                 allow entries (DNAT-ed only)    -> RETURN   (default deny only)
//!                 everything else                 -> DROP     (default deny only)
//! DOCKFW-UNCLASSIFIED  -d <each known container>  -> RETURN
//!                 selector deny entries, any destination -> DROP
//! DOCKFW-PROXY    established/related, from lo    -> RETURN   (jumped to from INPUT)
//!                 -i <each known Docker bridge>   -> RETURN
//!                 per port docker-proxy serves: the same verdict, on --dport
//! ```
//!
//! Ports are matched with `--ctorigdstport`, the destination port before
//! Docker's DNAT, i.e. the published host port. Allow entries with ports
//! also require `--ctstate DNAT`: a connection routed straight to a
//! container address has no published port, so only port-less entries
//! admit it. Only entries with container selectors name container
//! addresses, so a selector-free policy yields rules that do not grow with
//! the number of containers.
//!
//! Fail closed: an interface name from Docker reaches a rule only as an
//! [`Iface`] (plain and literal); a DNAT-ed connection that did not come
//! from a known bridge is inbound whatever interface it leaves by (a bridge
//! created an instant ago, or one whose name was refused); and an address
//! no known container has is judged by every selector deny entry until a
//! re-plan classifies it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::inventory::{Attachment, Container, Inventory, Proto, PublishedPort, Rejected};
use crate::policy::{Default, Entry, Policy, PortRange, ProtoMatch, Sources};
use crate::ruleset::{
    Chain, Conntrack, ENTRY_CHAIN, Family, FamilyRules, INBOUND_CHAIN, Iface, PROXY_CHAIN, Rule,
    Ruleset, Target, UNCLASSIFIED_CHAIN,
};
use crate::status::{PortStatus, Verdict};

/// The complete desired rule set for both families.
pub fn plan(policy: &Policy, inventory: &Inventory) -> Ruleset {
    Ruleset {
        v4: plan_family(policy, inventory, Family::V4),
        v6: plan_family(policy, inventory, Family::V6),
    }
}

fn plan_family(policy: &Policy, inventory: &Inventory, family: Family) -> FamilyRules {
    FamilyRules {
        chains: vec![
            entry_chain(inventory, family),
            inbound_chain(policy, inventory, family),
            unclassified_chain(policy, inventory, family),
            proxy_chain(policy, inventory, family),
        ],
    }
}

/// The bridges whose interface name may appear in rule text, by network
/// name. A bridge with any other name is never rendered (see
/// [`rejected_bridges`]).
fn known_bridges(inventory: &Inventory) -> BTreeMap<&str, Iface> {
    inventory
        .bridges
        .iter()
        .filter_map(|b| Some((b.name.as_str(), Iface::new(&b.interface).ok()?)))
        .collect()
}

fn bridge_interfaces(inventory: &Inventory) -> BTreeSet<Iface> {
    known_bridges(inventory).into_values().collect()
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
/// - replies, and traffic from containers on known bridges, are not judged;
/// - new connections into a known bridge, or to the address of a container
///   on a bridge whose name was refused, are inbound;
/// - so is every DNAT-ed connection that did not come from a known bridge,
///   whatever interface it leaves by (a bridge created an instant ago, or
///   one whose name was refused): fail closed.
fn entry_chain(inventory: &Inventory, family: Family) -> Chain {
    let bridges = bridge_interfaces(inventory);
    let mut rules = vec![Rule {
        conntrack: Some(Conntrack::Established),
        ..Rule::default()
    }];
    rules.extend(bridges.iter().map(|iface| Rule {
        in_iface: Some(iface.clone()),
        ..Rule::default()
    }));
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

/// Addresses, in `family`, of containers attached to a bridge network whose
/// interface is not known by a name dockfw may render.
fn addresses_off_known_bridges(inventory: &Inventory, family: Family) -> BTreeSet<IpAddr> {
    let known = known_bridges(inventory);
    inventory
        .containers
        .iter()
        .flat_map(|c| c.attachments.iter())
        .filter(|a| !known.contains_key(a.network.as_str()))
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
    for entry in &policy.deny {
        rules.extend(entry_rules(entry, inventory, family, Target::Drop));
    }
    if policy.default == Default::Deny {
        for entry in &policy.allow {
            rules.extend(entry_rules(entry, inventory, family, Target::Return));
        }
        rules.push(Rule {
            target: Target::Drop,
            ..Rule::default()
        });
    }
    Chain {
        name: INBOUND_CHAIN,
        rules: without_repeats(rules),
    }
}

/// Deny entries with `containers`/`labels` in `family`: they follow
/// container addresses, so a container dockfw has not classified yet would
/// escape them.
fn selector_denies(policy: &Policy, family: Family) -> impl Iterator<Item = &Entry> {
    policy
        .deny
        .iter()
        .filter(move |e| e.has_selector() && e.sources(family).is_some())
}

/// Destinations dockfw has not classified yet (an address no container in
/// the inventory has: a container started an instant ago, or one whose
/// address Docker reported unreadably) get the most restrictive verdict:
/// every selector deny entry applies to them as if it selected them. Known
/// addresses return at once; empty when the policy has no selector denies.
fn unclassified_chain(policy: &Policy, inventory: &Inventory, family: Family) -> Chain {
    let mut rules = Vec::new();
    if selector_denies(policy, family).next().is_some() {
        let known: BTreeSet<IpAddr> = inventory
            .containers
            .iter()
            .flat_map(|c| c.attachments.iter())
            .filter_map(|a| address_in(a, family))
            .collect();
        rules.extend(known.into_iter().map(|addr| Rule {
            dst: Some(IpNet::from(addr)),
            ..Rule::default()
        }));
        for entry in selector_denies(policy, family) {
            rules.extend(entry_rules_to(entry, family, &[None], Target::Drop));
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
/// port is DNAT-ed these rules are simply never reached. Fail closed.
fn proxy_chain(policy: &Policy, inventory: &Inventory, family: Family) -> Chain {
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
    // From a container to the host's proxy is container-to-container.
    rules.extend(bridge_interfaces(inventory).into_iter().map(|iface| Rule {
        in_iface: Some(iface),
        ..Rule::default()
    }));
    let published = inventory
        .containers
        .iter()
        .filter(|c| !c.host_network)
        .flat_map(|c| c.ports.iter().map(move |p| (c, p)))
        .filter(|(_, p)| !p.host_ip.is_loopback() && family_of(p.host_ip) == family);
    for (container, port) in published {
        rules.extend(proxy_port_rules(policy, container, port, family));
    }
    Chain {
        name: PROXY_CHAIN,
        rules: without_repeats(rules),
    }
}

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
    let rule = |src: Option<IpNet>, target: Target| Rule {
        src,
        dst,
        proto: Some(port.proto),
        dport: Some(port.host_port),
        target,
        ..Rule::default()
    };
    let mut rules = Vec::new();
    for (_, sources) in matching(&policy.deny, container, port, family) {
        rules.extend(
            source_list(&sources)
                .into_iter()
                .map(|s| rule(s, Target::Drop)),
        );
    }
    let allowed = matching(&policy.allow, container, port, family);
    if policy.default == Default::Deny && !allowed.iter().any(|(_, s)| *s == Sources::Anywhere) {
        for (_, sources) in allowed {
            rules.extend(
                source_list(&sources)
                    .into_iter()
                    .map(|s| rule(s, Target::Return)),
            );
        }
        rules.push(rule(None, Target::Drop));
    }
    rules
}

fn source_list(sources: &Sources<'_>) -> Vec<Option<IpNet>> {
    match sources {
        Sources::Anywhere => vec![None],
        Sources::Nets(nets) => nets.iter().map(|n| Some(**n)).collect(),
    }
}

/// Drop rules identical to an earlier one: they can never match anything
/// the earlier one did not already decide.
fn without_repeats(mut rules: Vec<Rule>) -> Vec<Rule> {
    let mut seen = HashSet::with_capacity(rules.len());
    rules.retain(|rule| seen.insert(rule.clone()));
    rules
}

/// The rules one policy entry expands to: sources x destinations x
/// (protocol, port range).
fn entry_rules(entry: &Entry, inventory: &Inventory, family: Family, target: Target) -> Vec<Rule> {
    let destinations: Vec<Option<IpNet>> = if entry.has_selector() {
        selected_addresses(entry, inventory, family)
            .into_iter()
            .map(|a| Some(IpNet::from(a)))
            .collect()
    } else {
        vec![None]
    };
    entry_rules_to(entry, family, &destinations, target)
}

/// An entry's rules for the given destinations (`None`: any).
fn entry_rules_to(
    entry: &Entry,
    family: Family,
    destinations: &[Option<IpNet>],
    target: Target,
) -> Vec<Rule> {
    let Some(sources) = entry.sources(family) else {
        return Vec::new();
    };
    let sources = source_list(&sources);
    let services = services(entry);
    let mut rules = Vec::new();
    for src in &sources {
        for dst in destinations {
            for (proto, ports) in &services {
                rules.push(Rule {
                    src: *src,
                    dst: *dst,
                    proto: *proto,
                    conntrack: ports.map(|ports| Conntrack::OrigDstPort {
                        ports,
                        dnat: target == Target::Return,
                    }),
                    target: target.clone(),
                    ..Rule::default()
                });
            }
        }
    }
    rules
}

/// The (protocol, port range) pairs an entry matches; `None` is "any".
fn services(entry: &Entry) -> Vec<(Option<Proto>, Option<PortRange>)> {
    let protos: Vec<Proto> = match entry.proto {
        ProtoMatch::Tcp => vec![Proto::Tcp],
        ProtoMatch::Udp => vec![Proto::Udp],
        ProtoMatch::Any => vec![Proto::Tcp, Proto::Udp, Proto::Sctp],
    };
    match (&entry.ports, entry.proto) {
        (None, ProtoMatch::Any) => vec![(None, None)],
        (None, _) => protos.into_iter().map(|p| (Some(p), None)).collect(),
        (Some(ranges), _) => protos
            .iter()
            .flat_map(|p| ranges.iter().map(move |r| (Some(*p), Some(*r))))
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
fn selected_addresses(entry: &Entry, inventory: &Inventory, family: Family) -> BTreeSet<IpAddr> {
    inventory
        .containers
        .iter()
        .filter(|c| selects(entry, c))
        .flat_map(|c| c.attachments.iter())
        .filter_map(|a| address_in(a, family))
        .collect()
}

/// One row per published port of every running container, with the verdict
/// the policy gives a new connection to it. Sorted by container and port.
pub fn exposures(policy: &Policy, inventory: &Inventory) -> Vec<PortStatus> {
    let mut rows: Vec<PortStatus> = inventory
        .containers
        .iter()
        .filter(|c| !c.host_network)
        .flat_map(|c| c.ports.iter().map(move |p| exposure(policy, c, p)))
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

fn exposure(policy: &Policy, container: &Container, port: &PublishedPort) -> PortStatus {
    let networks: Vec<&str> = container
        .attachments
        .iter()
        .map(|a| a.network.as_str())
        .collect();
    let (verdict, detail, why) = verdict(policy, container, port);
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
    }
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
fn applies_to(entry: &Entry, container: &Container, port: &PublishedPort) -> bool {
    let proto_ok = match entry.proto {
        ProtoMatch::Tcp => port.proto == Proto::Tcp,
        ProtoMatch::Udp => port.proto == Proto::Udp,
        ProtoMatch::Any => true,
    };
    let port_ok = entry
        .ports
        .as_ref()
        .is_none_or(|ranges| ranges.iter().any(|r| r.contains(port.host_port)));
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
    use crate::inventory::Bridge;

    fn bridge(name: &str, interface: &str) -> Bridge {
        Bridge {
            id: format!("{name}-id"),
            name: name.to_owned(),
            interface: interface.to_owned(),
        }
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
            assert!(!text.contains('+') && !text.contains('"'), "{text}");
            assert!(
                text.contains("-A DOCKFW -m conntrack --ctstate DNAT -j DOCKFW-INBOUND\n"),
                "every DNAT-ed connection not from a known bridge is inbound:\n{text}"
            );
        }
    }
}
