//! Turns a [`Ruleset`] into `nft -f` input: one transaction that replaces
//! dockfw's whole `inet dockfw` table ([`render`]), one that only gives its
//! sets new elements ([`elements_text`]), and the one that removes it.
//!
//! Pure: it owns the nftables spelling of dockfw's chains, matches and
//! verdicts, and refuses (with a [`RenderError`]) any rule it cannot express
//! exactly rather than write something that means less. Running `nft` is
//! the job of the parent module.
//!
//! Both families share the one `inet` table. A rule that names an address
//! is limited to its family by that match (`ip saddr`, `ip6 daddr`); one
//! that names none carries `meta nfproto ipv4|ipv6`, except where both
//! families' chains begin or end with the same address-free rules: those
//! are written once, for both. Rules of different families never match the
//! same packet, so putting one family's rules after the other's keeps each
//! family's order, and so its meaning. The plan's sets are named sets of
//! the table (`known-v4` is `known_v4`, with `flags interval` so that
//! networks and hosts mix), each of one family, matched as
//! `ip daddr @known_v4`; an entry's set of port ranges is matched against
//! the port before DNAT, `ct original proto-dst @allow_3_ports_v4`, so
//! that an entry is one rule per protocol whatever its ports.

use std::fmt::Write as _;

use ipnet::IpNet;

use crate::inventory::Proto;
use crate::net::PortRange;
use crate::ruleset::{
    AddrSet, Conntrack, DROP_CHAIN, EAST_WEST_CHAIN, EAST_WEST_HAIRPIN_CHAIN,
    EAST_WEST_HAIRPIN_UNCLASSIFIED_CHAIN, EAST_WEST_JUDGE_CHAIN, EAST_WEST_UNCLASSIFIED_CHAIN,
    ENTRY_CHAIN, Family, INBOUND_CHAIN, LOG_LIMIT_PER_MINUTE, ORIGIN_PREFIX, OUTBOUND_CHAIN,
    OUTBOUND_UNCLASSIFIED_CHAIN, OrigPortSet, PROXY_CHAIN, PortSet, Rule, Ruleset, TO_HOST_CHAIN,
    Target, UNCLASSIFIED_CHAIN,
};

/// The address family of dockfw's table: `inet` holds IPv4 and IPv6.
pub const TABLE_FAMILY: &str = "inet";
/// dockfw's table; dockfw owns all of it and nothing outside it.
pub const TABLE_NAME: &str = "dockfw";

/// Priority of dockfw's base chains on the `forward` and `input` hooks. A
/// lower number runs first: this is before iptables-nft's `filter` chains
/// and Docker 29's own nftables chains (both at `filter`, 0), so a `drop`
/// here is final, while an `accept` only ends dockfw's chain and Docker's
/// rules still judge the packet. Docker's docs ask for `filter - 1` or
/// lower; -10 leaves room for tools that place themselves just before
/// Docker.
pub const BASE_CHAIN_PRIORITY: i32 = -10;

/// The nft name of the plan's [`crate::ruleset::DROP_CHAIN`], where every
/// drop ends: a rule jumping there drops.
pub const DROP_CHAIN_NAME: &str = "dropped";

/// How one chain of the plan is written in nftables.
struct ChainName {
    /// The plan's (iptables-style) name, see [`crate::ruleset`].
    plan: &'static str,
    /// The name in dockfw's table.
    nft: &'static str,
    /// The hook of a base chain; `None` for a chain reached by `jump`.
    hook: Option<&'static str>,
}

/// Every chain of the plan, in the order they are written (the `[outbound]`
/// ones only when the plan has them). The plan's `DOCKFW` hangs from `DOCKER-USER`
/// (forwarded traffic) and `DOCKFW-PROXY` from `INPUT` (what docker-proxy
/// serves, and what containers send the host); here they are base chains.
const CHAINS: [ChainName; 13] = [
    ChainName {
        plan: ENTRY_CHAIN,
        nft: "forward",
        hook: Some("forward"),
    },
    ChainName {
        plan: INBOUND_CHAIN,
        nft: "inbound",
        hook: None,
    },
    ChainName {
        plan: UNCLASSIFIED_CHAIN,
        nft: "unclassified",
        hook: None,
    },
    ChainName {
        plan: PROXY_CHAIN,
        nft: "input",
        hook: Some("input"),
    },
    ChainName {
        plan: DROP_CHAIN,
        nft: DROP_CHAIN_NAME,
        hook: None,
    },
    ChainName {
        plan: OUTBOUND_CHAIN,
        nft: "outbound",
        hook: None,
    },
    ChainName {
        plan: OUTBOUND_UNCLASSIFIED_CHAIN,
        nft: "outbound_unclassified",
        hook: None,
    },
    ChainName {
        plan: TO_HOST_CHAIN,
        nft: "to_host",
        hook: None,
    },
    ChainName {
        plan: EAST_WEST_CHAIN,
        nft: "east_west",
        hook: None,
    },
    ChainName {
        plan: EAST_WEST_JUDGE_CHAIN,
        nft: "east_west_judge",
        hook: None,
    },
    ChainName {
        plan: EAST_WEST_UNCLASSIFIED_CHAIN,
        nft: "east_west_unclassified",
        hook: None,
    },
    ChainName {
        plan: EAST_WEST_HAIRPIN_CHAIN,
        nft: "east_west_hairpin",
        hook: None,
    },
    ChainName {
        plan: EAST_WEST_HAIRPIN_UNCLASSIFIED_CHAIN,
        nft: "east_west_hairpin_unclassified",
        hook: None,
    },
];

/// The chains written only when the plan has them.
const OPTIONAL_CHAINS: [&str; 8] = [
    OUTBOUND_CHAIN,
    OUTBOUND_UNCLASSIFIED_CHAIN,
    TO_HOST_CHAIN,
    EAST_WEST_CHAIN,
    EAST_WEST_JUDGE_CHAIN,
    EAST_WEST_UNCLASSIFIED_CHAIN,
    EAST_WEST_HAIRPIN_CHAIN,
    EAST_WEST_HAIRPIN_UNCLASSIFIED_CHAIN,
];

fn chain_name(plan: &str) -> Option<&'static ChainName> {
    CHAINS.iter().find(|c| c.plan == plan)
}

/// A rule of the plan that nftables cannot express with the same meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("chain {chain} has no nftables counterpart")]
    UnknownChain { chain: &'static str },
    #[error("no table this process applied to take the sets' elements from")]
    NothingApplied,
    #[error("{chain} jumps to {target}, which is not a chain nftables can jump to")]
    Jump {
        chain: &'static str,
        target: &'static str,
    },
    #[error("{chain}: address {net} in the {family} rules")]
    WrongFamily {
        chain: &'static str,
        family: &'static str,
        net: IpNet,
    },
    #[error("{chain}: destination port {port} without a protocol")]
    PortWithoutProtocol { chain: &'static str, port: u16 },
    #[error("{chain}: original destination port without a protocol")]
    OriginalPortWithoutProtocol { chain: &'static str },
    #[error("{chain}: empty port range {first}-{last}")]
    EmptyPortRange {
        chain: &'static str,
        first: u16,
        last: u16,
    },
    #[error("{chain}: a rule matching an original destination address must be of one family")]
    OrigDstOfNoFamily { chain: &'static str },
    #[error("{chain}: a rule matching a port set must be of one family")]
    PortSetOfNoFamily { chain: &'static str },
    #[error("{chain}: no set {set} (of the rule's protocol) in the {family} rules")]
    UnknownSet {
        chain: &'static str,
        family: &'static str,
        set: String,
    },
    #[error("{chain}: an icmpv6 type match outside the IPv6 rules, or with a protocol")]
    Icmpv6OutsideIpv6 { chain: &'static str },
    #[error("set {set}: not of the {family} rules it is in, or holds another family's address")]
    SetFamily { set: String, family: &'static str },
}

/// The name in dockfw's table of the plan's set `name`: `known_v4`.
pub fn set_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The `nft -f` input that makes dockfw's table exactly `ruleset`, in one
/// atomic transaction: create the table if it is missing (so that the
/// delete cannot fail), delete it with everything in it, define it anew.
/// `flush table` would keep chains the plan no longer has.
pub fn render(ruleset: &Ruleset) -> Result<String, RenderError> {
    for family in Family::ALL {
        if let Some(chain) = ruleset
            .family(family)
            .chains
            .iter()
            .find(|c| chain_name(c.name).is_none())
        {
            return Err(RenderError::UnknownChain { chain: chain.name });
        }
    }
    let mut out = uninstall_text();
    let _ = writeln!(out, "table {TABLE_FAMILY} {TABLE_NAME} {{");
    for family in Family::ALL {
        for set in &ruleset.family(family).sets {
            set_text(set, family, &mut out)?;
            out.push('\n');
        }
        for set in &ruleset.family(family).port_sets {
            port_set_text(set, family, "type inet_service", &mut out)?;
            out.push('\n');
        }
        for set in &ruleset.family(family).drop_ports {
            // Each element counts what it matches: drops per port.
            port_set_text(set, family, "type inet_service\n\t\tcounter", &mut out)?;
            out.push('\n');
        }
        for set in &ruleset.family(family).orig_port_sets {
            orig_port_set_text(set, family, &mut out)?;
            out.push('\n');
        }
    }
    // The `[outbound]` and `[east_west]` chains only when planned; the
    // others always.
    let planned = |chain: &&ChainName| {
        !OPTIONAL_CHAINS.contains(&chain.plan)
            || (Family::ALL.iter()).any(|f| {
                ruleset
                    .family(*f)
                    .chains
                    .iter()
                    .any(|c| c.name == chain.plan)
            })
    };
    for (i, chain) in CHAINS.iter().filter(planned).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        chain_text(ruleset, chain, &mut out)?;
    }
    out.push_str("}\n");
    Ok(out)
}

/// The `nft -f` input that gives each of `sets` and `port_sets` exactly
/// its elements, in one transaction that leaves every rule as it is.
pub fn elements_text(sets: &[&AddrSet], port_sets: &[&PortSet]) -> String {
    let mut out = String::new();
    let lists = sets
        .iter()
        .map(|set| (&set.name, elements_list(set)))
        .chain(port_sets.iter().map(|set| (&set.name, ports_list(set))));
    for (name, elements) in lists {
        let name = set_name(name);
        let _ = writeln!(out, "flush set {TABLE_FAMILY} {TABLE_NAME} {name}");
        if !elements.is_empty() {
            let _ = writeln!(
                out,
                "add element {TABLE_FAMILY} {TABLE_NAME} {name} {{ {elements} }}"
            );
        }
    }
    out
}

/// What a netlink batch of element changes does, as nft script comments
/// (the batch is no script; `dockfw plan` and the log show this).
pub fn changes_text(batch: &[super::netlink::SetChange]) -> String {
    let mut out = String::new();
    for change in batch {
        let (added, removed) = (change.add.len(), change.remove.len());
        let _ = writeln!(
            out,
            "# over netlink: set {TABLE_FAMILY} {TABLE_NAME} {}: +{added} -{removed} elements",
            change.set
        );
    }
    out
}

/// One named set of ports of the table, in `family`'s rules.
fn port_set_text(
    set: &PortSet,
    family: Family,
    header: &str,
    out: &mut String,
) -> Result<(), RenderError> {
    if set.family != family {
        return Err(RenderError::SetFamily {
            set: set.name.clone(),
            family: family.as_str(),
        });
    }
    set_block(&set.name, header, &ports_list(set), out);
    Ok(())
}

/// `set NAME { HEADER; elements = { … } }` as nft lists it, the elements
/// line only when there are any.
fn set_block(name: &str, header: &str, elements: &str, out: &mut String) {
    let _ = writeln!(out, "\tset {} {{", set_name(name));
    let _ = writeln!(out, "\t\t{header}");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {elements} }}");
    }
    out.push_str("\t}\n");
}

/// One named set of port ranges of the table, in `family`'s rules.
fn orig_port_set_text(
    set: &OrigPortSet,
    family: Family,
    out: &mut String,
) -> Result<(), RenderError> {
    if set.family != family {
        return Err(RenderError::SetFamily {
            set: set.name.clone(),
            family: family.as_str(),
        });
    }
    let ranges: Vec<String> = set.ranges.iter().map(|r| range_text(*r)).collect();
    let header = "type inet_service\n\t\tflags interval";
    set_block(&set.name, header, &ranges.join(", "), out);
    Ok(())
}

/// A port range as nft lists an element of an interval set: `80`,
/// `8000-8100`.
pub fn range_text(range: PortRange) -> String {
    if range.first == range.last {
        range.first.to_string()
    } else {
        format!("{}-{}", range.first, range.last)
    }
}

fn ports_list(set: &PortSet) -> String {
    let ports: Vec<String> = set.ports.iter().map(u16::to_string).collect();
    ports.join(", ")
}

/// One named set of the table, in `family`'s rules.
fn set_text(set: &AddrSet, family: Family, out: &mut String) -> Result<(), RenderError> {
    let of_family = |net: &IpNet| {
        matches!(
            (net, family),
            (IpNet::V4(_), Family::V4) | (IpNet::V6(_), Family::V6)
        )
    };
    if set.family != family || !set.elements.iter().all(of_family) {
        return Err(RenderError::SetFamily {
            set: set.name.clone(),
            family: family.as_str(),
        });
    }
    let kind = match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    };
    let header = format!("type {kind}\n\t\tflags interval");
    set_block(&set.name, &header, &elements_list(set), out);
    Ok(())
}

fn elements_list(set: &AddrSet) -> String {
    let elements: Vec<String> = set.elements.iter().map(host_or_net).collect();
    elements.join(", ")
}

/// The `nft -f` input that removes dockfw's table if it is there, and does
/// nothing otherwise.
pub fn uninstall_text() -> String {
    format!("table {TABLE_FAMILY} {TABLE_NAME} {{}}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n")
}

fn chain_text(ruleset: &Ruleset, chain: &ChainName, out: &mut String) -> Result<(), RenderError> {
    let rules = |family: Family| {
        ruleset
            .family(family)
            .chains
            .iter()
            .find(|c| c.name == chain.plan)
            .map_or(&[][..], |c| c.rules.as_slice())
    };
    let _ = writeln!(out, "\tchain {} {{", chain.nft);
    if let Some(hook) = chain.hook {
        let _ = writeln!(
            out,
            "\t\ttype filter hook {hook} priority {BASE_CHAIN_PRIORITY}; policy accept;"
        );
    }
    for (family, rule) in merged(rules(Family::V4), rules(Family::V6)) {
        let _ = writeln!(out, "\t\t{}", rule_text(ruleset, rule, family, chain)?);
    }
    out.push_str("\t}\n");
    Ok(())
}

/// Both families' rules of one chain, each with the family it is limited
/// to, or `None` for the common address-free head and tail written once.
/// In the head, a pair of rules that differ only in the original
/// destination each family spells its own way (the loopback drop) is
/// written as the two rules, IPv4's first: each is limited to its family by
/// its match, so each family's order is kept.
fn merged<'a>(v4: &'a [Rule], v6: &'a [Rule]) -> Vec<(Option<Family>, &'a Rule)> {
    let shared = |(a, b): &(&Rule, &Rule)| a == b && !a.of_one_family();
    let paired = |(a, b): &(&Rule, &Rule)| {
        let by_orig_dst = |r: &Rule| {
            matches!(r.conntrack, Some(Conntrack::OrigDst(_)))
                && !(r.src.is_some() || r.dst.is_some() || r.src_set.is_some())
                && r.dst_set.is_none()
                && r.dport_set.is_none()
                && r.orig_dport_ranges.is_none()
        };
        let rest = |r: &Rule| Rule {
            conntrack: None,
            ..(*r).clone()
        };
        by_orig_dst(a) && by_orig_dst(b) && rest(a) == rest(b)
    };
    let head = v4
        .iter()
        .zip(v6)
        .take_while(|pair| shared(pair) || paired(pair))
        .count();
    let (rest4, rest6) = (&v4[head..], &v6[head..]);
    let tail = rest4
        .iter()
        .rev()
        .zip(rest6.iter().rev())
        .take_while(shared)
        .count();
    let (only4, only6) = (&rest4[..rest4.len() - tail], &rest6[..rest6.len() - tail]);
    let mut out = Vec::with_capacity(v4.len() + v6.len());
    for (a, b) in v4[..head].iter().zip(&v6[..head]) {
        if a.of_one_family() {
            out.extend([(Some(Family::V4), a), (Some(Family::V6), b)]);
        } else {
            out.push((None, a));
        }
    }
    out.extend(only4.iter().map(|r| (Some(Family::V4), r)));
    out.extend(only6.iter().map(|r| (Some(Family::V6), r)));
    out.extend(rest4[rest4.len() - tail..].iter().map(|r| (None, r)));
    out
}

/// One rule as `nft` reads it: matches, `counter`, verdict.
fn rule_text(
    ruleset: &Ruleset,
    rule: &Rule,
    family: Option<Family>,
    chain: &ChainName,
) -> Result<String, RenderError> {
    let name = chain.plan;
    let mut out = String::new();
    if let Some(family) = family {
        if !rule.names_addresses() {
            let _ = write!(out, "meta nfproto {} ", family.as_str());
        }
        for (net, dir) in [(&rule.src, "saddr"), (&rule.dst, "daddr")] {
            if let Some(net) = net {
                let ip = address_match(net, family, name)?;
                let _ = write!(out, "{ip} {dir} {} ", host_or_net(net));
            }
        }
        for (set, dir) in [(&rule.src_set, "saddr"), (&rule.dst_set, "daddr")] {
            let Some(set) = set else { continue };
            if ruleset.family(family).set(set).is_none() {
                return Err(RenderError::UnknownSet {
                    chain: name,
                    family: family.as_str(),
                    set: set.clone(),
                });
            }
            let ip = match family {
                Family::V4 => "ip",
                Family::V6 => "ip6",
            };
            let _ = write!(out, "{ip} {dir} @{} ", set_name(set));
        }
    }
    if let Some(iface) = &rule.in_iface {
        let _ = write!(out, "iifname \"{iface}\" ");
    }
    if let Some(iface) = &rule.out_iface {
        let _ = write!(out, "oifname \"{iface}\" ");
    }
    if let Some(icmpv6_type) = rule.icmpv6_type {
        if family != Some(Family::V6) || rule.proto.is_some() {
            return Err(RenderError::Icmpv6OutsideIpv6 { chain: name });
        }
        let _ = write!(out, "icmpv6 type {icmpv6_type} ");
    }
    if let Some(set) = &rule.dport_set {
        let Some(family) = family else {
            return Err(RenderError::PortSetOfNoFamily { chain: name });
        };
        let known = ruleset.family(family).port_set(set);
        match (known, rule.proto) {
            (Some(known), Some(proto)) if known.proto == proto && rule.dport.is_none() => {
                let _ = write!(out, "{} dport @{} ", proto.as_str(), set_name(set));
            }
            _ => {
                return Err(RenderError::UnknownSet {
                    chain: name,
                    family: family.as_str(),
                    set: set.clone(),
                });
            }
        }
    }
    if let Some(set) = &rule.orig_dport_set {
        let family = family.ok_or(RenderError::PortSetOfNoFamily { chain: name })?;
        let known = ruleset.family(family).drop_port_set(set);
        match (known, rule.proto) {
            (Some(known), Some(proto)) if known.proto == proto && rule.conntrack.is_none() => {
                write_orig_port_set_match(&mut out, proto, set);
            }
            _ => {
                return Err(RenderError::UnknownSet {
                    chain: name,
                    family: family.as_str(),
                    set: set.clone(),
                });
            }
        }
    }
    if let Some(set) = &rule.orig_dport_ranges {
        let family = family.ok_or(RenderError::PortSetOfNoFamily { chain: name })?;
        let known = ruleset.family(family).orig_port_set(set).is_some();
        let port_match =
            rule.dport.is_some() || matches!(rule.conntrack, Some(Conntrack::OrigDstPort { .. }));
        match rule.proto {
            Some(proto) if known && !port_match => {
                write_orig_port_set_match(&mut out, proto, set);
            }
            _ => {
                return Err(RenderError::UnknownSet {
                    chain: name,
                    family: family.as_str(),
                    set: set.clone(),
                });
            }
        }
    }
    match (rule.proto, rule.dport) {
        _ if rule.dport_set.is_some()
            || rule.orig_dport_set.is_some()
            || rule.orig_dport_ranges.is_some() => {}
        (Some(proto), Some(ports)) if ports.first == ports.last => {
            let _ = write!(out, "{} dport {} ", proto.as_str(), ports.first);
        }
        (Some(proto), Some(ports)) => {
            let (first, last) = (ports.first, ports.last);
            let _ = write!(out, "{} dport {first}-{last} ", proto.as_str());
        }
        (Some(proto), None) => {
            let _ = write!(out, "meta l4proto {} ", proto.as_str());
        }
        (None, Some(ports)) => {
            return Err(RenderError::PortWithoutProtocol {
                chain: name,
                port: ports.first,
            });
        }
        (None, None) => {}
    }
    if let Some(conntrack) = rule.conntrack {
        out.push_str(&conntrack_text(conntrack, rule.proto, family, name)?);
    }
    if rule.target == Target::Log {
        let _ = write!(out, "limit rate {LOG_LIMIT_PER_MINUTE}/minute ");
    }
    out.push_str("counter ");
    out.push_str(&verdict(rule, chain)?);
    // Fixed words and numbers only ([`Origin`]).
    if let Some(origin) = rule.origin {
        let _ = write!(out, " comment \"{}\"", origin.comment());
    }
    Ok(out)
}

/// `ip` or `ip6` for an address of `family`.
fn address_match(
    net: &IpNet,
    family: Family,
    chain: &'static str,
) -> Result<&'static str, RenderError> {
    match (net, family) {
        (IpNet::V4(_), Family::V4) => Ok("ip"),
        (IpNet::V6(_), Family::V6) => Ok("ip6"),
        _ => Err(RenderError::WrongFamily {
            chain,
            family: family.as_str(),
            net: *net,
        }),
    }
}

/// A network as nft lists it: host bits cleared, a host without its length.
fn host_or_net(net: &IpNet) -> String {
    let net = net.trunc();
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn conntrack_text(
    conntrack: Conntrack,
    proto: Option<Proto>,
    family: Option<Family>,
    chain: &'static str,
) -> Result<String, RenderError> {
    Ok(match conntrack {
        Conntrack::Established => "ct state established,related ".to_owned(),
        Conntrack::Dnat => "ct status dnat ".to_owned(),
        Conntrack::OrigDst(net) => {
            // The rule names an address, so it is of one family.
            let Some(family) = family else {
                return Err(RenderError::OrigDstOfNoFamily { chain });
            };
            let ip = address_match(&net, family, chain)?;
            format!("ct original {ip} daddr {} ", host_or_net(&net))
        }
        Conntrack::OrigDstPort { ports, dnat } => {
            // nft needs the protocol to read a port; iptables' port-only
            // `--ctorigdstport` matches any protocol's tuple.
            if proto.is_none() {
                return Err(RenderError::OriginalPortWithoutProtocol { chain });
            }
            if ports.first > ports.last {
                return Err(RenderError::EmptyPortRange {
                    chain,
                    first: ports.first,
                    last: ports.last,
                });
            }
            let dnat = if dnat { "ct status dnat " } else { "" };
            if ports.first == ports.last {
                format!("{dnat}ct original proto-dst {} ", ports.first)
            } else {
                format!(
                    "{dnat}ct original proto-dst {}-{} ",
                    ports.first, ports.last
                )
            }
        }
    })
}

/// The verdict of `target` in `chain`. Leaving a base chain is `accept`:
/// it ends dockfw's chain on this hook and nothing more, so Docker's base
/// chains (at higher priority numbers) still judge the packet, exactly as
/// after iptables' `RETURN` from `DOCKER-USER`.
fn verdict(rule: &Rule, chain: &ChainName) -> Result<String, RenderError> {
    Ok(match &rule.target {
        Target::Log => {
            let prefix = rule
                .origin
                .map_or_else(|| ORIGIN_PREFIX.to_owned(), |origin| origin.log_prefix());
            format!("log prefix \"{prefix}\"")
        }
        Target::Return if chain.hook.is_some() => "accept".to_owned(),
        Target::Return => "return".to_owned(),
        Target::Drop => "drop".to_owned(),
        Target::Jump(to) => match chain_name(to) {
            Some(ChainName {
                nft, hook: None, ..
            }) => format!("jump {nft}"),
            _ => {
                return Err(RenderError::Jump {
                    chain: chain.plan,
                    target: to,
                });
            }
        },
    })
}

/// `proto`'s connections whose port before DNAT is in the port set `set`.
fn write_orig_port_set_match(out: &mut String, proto: Proto, set: &str) {
    let _ = write!(
        out,
        "meta l4proto {} ct original proto-dst @{} ",
        proto.as_str(),
        set_name(set)
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::PortRange;
    use crate::ruleset::{Chain, FamilyRules, Iface};

    fn family(chains: Vec<Chain>) -> FamilyRules {
        FamilyRules {
            chains,
            sets: Vec::new(),
            port_sets: Vec::new(),
            drop_ports: Vec::new(),
            orig_port_sets: Vec::new(),
            drop_endpoints: Default::default(),
        }
    }

    fn chain(name: &'static str, rules: Vec<Rule>) -> Chain {
        Chain { name, rules }
    }

    /// The rule lines of `chain` (nft name) in `render`'s output.
    fn chain_lines(text: &str, chain: &str) -> Vec<String> {
        let start = format!("\tchain {chain} {{");
        text.lines()
            .skip_while(|l| *l != start)
            .skip(1)
            .take_while(|l| *l != "\t}")
            .filter(|l| !l.contains("type filter hook"))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    fn v4(net: &str) -> Option<IpNet> {
        Some(net.parse().expect("net"))
    }

    #[test]
    fn every_match_has_its_nft_spelling() {
        let rules = vec![
            Rule {
                src: v4("192.0.2.16/28"),
                dst: v4("172.18.0.2/32"),
                proto: Some(Proto::Tcp),
                conntrack: Some(Conntrack::OrigDstPort {
                    ports: PortRange {
                        first: 8000,
                        last: 8100,
                    },
                    dnat: true,
                }),
                ..Rule::default()
            },
            Rule {
                in_iface: Iface::new("docker0").ok(),
                out_iface: Iface::new("br-0123").ok(),
                proto: Some(Proto::Udp),
                conntrack: Some(Conntrack::OrigDstPort {
                    ports: PortRange {
                        first: 53,
                        last: 53,
                    },
                    dnat: false,
                }),
                target: Target::Drop,
                ..Rule::default()
            },
            Rule {
                src: v4("10.1.2.3/8"),
                proto: Some(Proto::Sctp),
                dport: Some(PortRange::single(9)),
                conntrack: Some(Conntrack::Dnat),
                target: Target::Jump(UNCLASSIFIED_CHAIN),
                ..Rule::default()
            },
        ];
        let ruleset = Ruleset {
            v4: family(vec![chain(INBOUND_CHAIN, rules)]),
            v6: FamilyRules::default(),
        };
        let text = render(&ruleset).expect("renders");
        assert_eq!(
            chain_lines(&text, "inbound"),
            [
                "ip saddr 192.0.2.16/28 ip daddr 172.18.0.2 meta l4proto tcp ct status dnat \
                 ct original proto-dst 8000-8100 counter return",
                "meta nfproto ipv4 iifname \"docker0\" oifname \"br-0123\" meta l4proto udp \
                 ct original proto-dst 53 counter drop",
                "ip saddr 10.0.0.0/8 sctp dport 9 ct status dnat counter jump unclassified",
            ]
        );
    }

    #[test]
    fn a_set_of_port_ranges_is_matched_on_the_port_before_dnat() {
        let range = |first, last| PortRange { first, last };
        let rule = Rule {
            src_set: Some("allow-1-src-v6".to_owned()),
            proto: Some(Proto::Tcp),
            orig_dport_ranges: Some("allow-1-ports-v6".to_owned()),
            conntrack: Some(Conntrack::Dnat),
            ..Rule::default()
        };
        let mut v6 = FamilyRules {
            chains: vec![chain(INBOUND_CHAIN, vec![rule.clone()])],
            sets: vec![AddrSet::new(
                "allow-1-src-v6".to_owned(),
                Family::V6,
                ["2001:db8::/64".parse().expect("net")],
            )],
            orig_port_sets: vec![OrigPortSet::new(
                "allow-1-ports-v6".to_owned(),
                Family::V6,
                [range(80, 80), range(81, 90), range(65535, 65535)],
            )],
            ..FamilyRules::default()
        };
        let ruleset = |v6: &FamilyRules| Ruleset {
            v4: FamilyRules::default(),
            v6: v6.clone(),
        };
        let text = render(&ruleset(&v6)).expect("renders");
        assert_eq!(
            chain_lines(&text, "inbound"),
            [
                "ip6 saddr @allow_1_src_v6 meta l4proto tcp ct original proto-dst @allow_1_ports_v6 \
              ct status dnat counter return"
            ]
        );
        assert!(
            text.contains(
                "\tset allow_1_ports_v6 {\n\t\ttype inet_service\n\t\tflags interval\n\
                 \t\telements = { 80-90, 65535 }\n\t}\n"
            ),
            "{text}"
        );
        v6.orig_port_sets.clear();
        assert!(matches!(
            render(&ruleset(&v6)),
            Err(RenderError::UnknownSet { .. })
        ));
        v6.chains[0].rules[0].proto = None;
        assert!(render(&ruleset(&v6)).is_err(), "a port needs its protocol");
    }

    #[test]
    fn return_accepts_in_a_base_chain_and_returns_in_a_jumped_one() {
        let allow = Rule {
            conntrack: Some(Conntrack::Established),
            ..Rule::default()
        };
        let ruleset = Ruleset {
            v4: family(vec![
                chain(ENTRY_CHAIN, vec![allow.clone()]),
                chain(INBOUND_CHAIN, vec![allow.clone()]),
                chain(PROXY_CHAIN, vec![allow]),
            ]),
            v6: FamilyRules::default(),
        };
        let text = render(&ruleset).expect("renders");
        let accept = ["meta nfproto ipv4 ct state established,related counter accept"];
        assert_eq!(chain_lines(&text, "forward"), accept);
        assert_eq!(chain_lines(&text, "input"), accept);
        assert_eq!(
            chain_lines(&text, "inbound"),
            ["meta nfproto ipv4 ct state established,related counter return"]
        );
        assert!(text.contains("type filter hook forward priority -10; policy accept;"));
        assert!(text.contains("type filter hook input priority -10; policy accept;"));
    }

    /// A rule of one family only must not judge the other family: a v4
    /// `-j DROP` without addresses becomes `meta nfproto ipv4 ... drop`.
    #[test]
    fn address_free_rules_are_shared_only_at_the_common_head_and_tail() {
        let drop = Rule {
            target: Target::Drop,
            ..Rule::default()
        };
        let jump = Rule {
            target: Target::Jump(UNCLASSIFIED_CHAIN),
            ..Rule::default()
        };
        let port = |target| Rule {
            proto: Some(Proto::Tcp),
            dport: Some(PortRange::single(22)),
            target,
            ..Rule::default()
        };
        let ruleset = Ruleset {
            v4: family(vec![chain(
                INBOUND_CHAIN,
                vec![jump.clone(), port(Target::Drop), drop.clone()],
            )]),
            v6: family(vec![chain(
                INBOUND_CHAIN,
                vec![jump, port(Target::Return), drop.clone()],
            )]),
        };
        let text = render(&ruleset).expect("renders");
        assert_eq!(
            chain_lines(&text, "inbound"),
            [
                "counter jump unclassified",
                "meta nfproto ipv4 tcp dport 22 counter drop",
                "meta nfproto ipv6 tcp dport 22 counter return",
                "counter drop",
            ]
        );
        let only_v4 = Ruleset {
            v4: family(vec![chain(INBOUND_CHAIN, vec![drop])]),
            v6: FamilyRules::default(),
        };
        let text = render(&only_v4).expect("renders");
        assert_eq!(
            chain_lines(&text, "inbound"),
            ["meta nfproto ipv4 counter drop"]
        );
    }

    #[test]
    fn the_transaction_creates_deletes_and_defines_the_whole_table() {
        let text = render(&Ruleset::default()).expect("renders");
        assert!(text.starts_with(&uninstall_text()), "{text}");
        assert_eq!(
            uninstall_text(),
            "table inet dockfw {}\ndelete table inet dockfw\n"
        );
        for name in ["forward", "inbound", "unclassified", "input"] {
            assert!(text.contains(&format!("\tchain {name} {{\n")), "{text}");
        }
    }

    #[test]
    fn what_nft_cannot_express_is_refused() {
        let refused = |name: &'static str, rule: Rule| {
            let ruleset = Ruleset {
                v4: family(vec![chain(name, vec![rule])]),
                v6: FamilyRules::default(),
            };
            render(&ruleset).expect_err("refused")
        };
        let unknown_set = Rule {
            dst_set: Some("known-v4".to_owned()),
            ..Rule::default()
        };
        assert_eq!(
            refused(UNCLASSIFIED_CHAIN, unknown_set),
            RenderError::UnknownSet {
                chain: UNCLASSIFIED_CHAIN,
                family: "ipv4",
                set: "known-v4".to_owned()
            }
        );
        let v6_set = Ruleset {
            v4: FamilyRules {
                chains: Vec::new(),
                sets: vec![AddrSet::new(
                    "known-v4".to_owned(),
                    Family::V4,
                    v4("fd00::2/128"),
                )],
                port_sets: Vec::new(),
                drop_ports: Vec::new(),
                orig_port_sets: Vec::new(),
                drop_endpoints: Default::default(),
            },
            v6: FamilyRules::default(),
        };
        assert!(matches!(
            render(&v6_set),
            Err(RenderError::SetFamily { family: "ipv4", .. })
        ));
        assert_eq!(
            refused("DOCKER-USER", Rule::default()),
            RenderError::UnknownChain {
                chain: "DOCKER-USER"
            }
        );
        for to in [ENTRY_CHAIN, PROXY_CHAIN, "DOCKER"] {
            let jump = Rule {
                target: Target::Jump(to),
                ..Rule::default()
            };
            assert_eq!(
                refused(INBOUND_CHAIN, jump),
                RenderError::Jump {
                    chain: INBOUND_CHAIN,
                    target: to
                }
            );
        }
        let v6_in_v4 = Rule {
            dst: Some("fd00::2/128".parse().expect("net")),
            ..Rule::default()
        };
        assert!(matches!(
            refused(ENTRY_CHAIN, v6_in_v4),
            RenderError::WrongFamily { family: "ipv4", .. }
        ));
        let port_alone = Rule {
            dport: Some(PortRange::single(80)),
            ..Rule::default()
        };
        assert!(matches!(
            refused(ENTRY_CHAIN, port_alone),
            RenderError::PortWithoutProtocol { port: 80, .. }
        ));
        let original = |first, last, proto| Rule {
            proto,
            conntrack: Some(Conntrack::OrigDstPort {
                ports: PortRange { first, last },
                dnat: true,
            }),
            ..Rule::default()
        };
        assert!(matches!(
            refused(INBOUND_CHAIN, original(80, 80, None)),
            RenderError::OriginalPortWithoutProtocol { .. }
        ));
        assert!(matches!(
            refused(INBOUND_CHAIN, original(90, 80, Some(Proto::Tcp))),
            RenderError::EmptyPortRange {
                first: 90,
                last: 80,
                ..
            }
        ));
    }

    /// Each `tests/golden/<case>/` plan, rendered, against
    /// `tests/golden-nft/<case>.nft`. `UPDATE_GOLDEN=1` rewrites the files
    /// after a deliberate change; review the diff before committing it.
    #[test]
    fn golden_plans_render_as_expected() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-nft");
        let update = std::env::var_os("UPDATE_GOLDEN").is_some();
        let mut failures = Vec::new();
        for case in super::super::fixtures::golden_cases() {
            let name = case.file_name().expect("case name").to_string_lossy();
            let actual = render(&super::super::fixtures::planned(&case)).expect("renders");
            let path = out.join(format!("{name}.nft"));
            if update {
                std::fs::create_dir_all(&out).expect("create tests/golden-nft");
                std::fs::write(&path, &actual).expect("write golden");
                continue;
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if expected != actual {
                failures.push(format!(
                    "{}:\n--- expected\n{expected}--- actual\n{actual}",
                    path.display()
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
