//! `dockfw explain`: for one source address, which published ports it can
//! reach and which policy entry (or default) decides each; the question an
//! operator asks before and after every policy change. With
//! `--from-container`, the other direction: whether a new connection that
//! container starts to one address gets out, and what decides
//! ([`explain_outbound`]); with `--from ADDR --to ADDR`, the same for two
//! addresses, either of which may be one on a Docker bridge that no known
//! container has, judged as the rules judge it: as unclassified until the
//! re-plan ([`explain_between`]).
//!
//! Pure: it reads the same [`Policy`] and [`Inventory`] the planner does and
//! decides with the planner's own matching ([`crate::plan::applies_to`],
//! [`crate::plan::decide`]), so the answer is what the rules do: a matching
//! deny beats any allow; else `default = "allow"` lets it in (outbound: for
//! a container no isolate entry selects); else an allow entry must cover it.

use std::net::IpAddr;

use serde::Serialize;

use crate::inventory::{Attachment, Bridge, Container, Inventory, Proto, PublishedPort};
use crate::net::Family;
use crate::plan::{
    Connection, EastWestConnection, Peer, applies_to, decide_east_west, east_west_port_limited,
    judged_by_interface, on_a_bridge, port_limited,
};
use crate::policy::{Default, Entry, Policy, Sources};

/// A question `explain` cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no running container is named {name:?}")]
    UnknownContainer { name: String },
    #[error("{from} and {to} are not of one address family")]
    MixedFamilies { from: IpAddr, to: IpAddr },
}

/// The answer for one new connection a container starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboundExplanation {
    pub container: String,
    pub to: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub proto: String,
    /// Whether the connection gets through dockfw's `[outbound]` rules.
    pub passes: bool,
    /// What decided, e.g. `deny entry at line 9`, `isolate entry at line
    /// 5`, `default allow`, `no [outbound] table`; for a container's
    /// address, `to container "db" on network "back": not outbound;
    /// east-west: deny entry at line 20`.
    pub why: String,
    /// What the answer leaves out: entries limited to ports when no port
    /// was given; for a container's address (east-west, said in `why`),
    /// that same-network traffic needs bridge netfilter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `allow` or `deny`: what `to_host` decides for a connection from the
    /// container to the host itself (any of the host's addresses), which
    /// dockfw judges apart from outbound connections.
    pub to_host: String,
}

/// Whether a new connection `container` (a running container's name)
/// starts, as `connection` describes it, gets out through dockfw, and what
/// decides. Host-networked containers and connections to another
/// container are not outbound: they pass, and the answer says why.
pub fn explain_outbound(
    policy: &Policy,
    inventory: &Inventory,
    container: &str,
    connection: Connection,
) -> Result<OutboundExplanation, ExplainError> {
    let found = (inventory.containers.iter())
        .find(|c| c.name == container)
        .ok_or_else(|| ExplainError::UnknownContainer {
            name: container.to_owned(),
        })?;
    let to_host = policy
        .outbound
        .as_ref()
        .map_or(Default::Allow, |o| o.to_host);
    let mut answer = OutboundExplanation {
        container: found.name.clone(),
        to: connection.to,
        port: connection.port,
        proto: connection.proto.as_str().to_owned(),
        passes: true,
        why: String::new(),
        note: None,
        to_host: format!("{to_host:?}").to_lowercase(),
    };
    let to_container = (inventory.containers.iter()).find_map(|c| {
        let on = (c.attachments.iter()).find(|a| addresses(a).contains(&Some(connection.to)))?;
        Some((c, on))
    });
    match (&policy.outbound, to_container) {
        _ if found.host_network => {
            answer.why = HOST_NETWORK.to_owned();
        }
        (_, Some((peer, on))) => {
            let question = EastWestQuestion {
                from: found,
                to: peer,
                on,
                proto: connection.proto,
                port: connection.port,
            };
            let (passes, why, note) = container_answer(policy, inventory, question);
            answer.passes = passes;
            answer.why = format!(
                "to container {:?} on network {:?}: not outbound; east-west: {why}",
                peer.name, on.network
            );
            answer.note = note;
        }
        (None, None) => answer.why = "no [outbound] table".to_owned(),
        (Some(outbound), None) => {
            let (passes, why, note) = outbound_answer(outbound, Peer::Known(found), connection);
            (answer.passes, answer.why, answer.note) = (passes, why, note);
        }
    }
    Ok(answer)
}

/// The outbound verdict for one connection from `from`: whether it
/// passes, why, and a note on what the answer leaves out.
fn outbound_answer(
    outbound: &crate::policy::Outbound,
    from: Peer,
    connection: Connection,
) -> (bool, String, Option<String>) {
    let decider = crate::plan::decide(outbound, from, connection);
    let limited = port_limited(outbound, from, connection.to);
    let note = (connection.port.is_none() && !limited.is_empty()).then(|| port_note(&limited));
    (decider.passes(), decider.why(), note)
}

fn port_note(lines: &[usize]) -> String {
    let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
    format!(
        "entries limited to ports (line {}) were not considered: give --port",
        lines.join(", ")
    )
}

const HOST_NETWORK: &str = "host networking: dockfw does not judge what it starts";

/// The answer for one new connection a container starts to another
/// container's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EastWestExplanation {
    pub container: String,
    pub to_container: String,
    /// The network of the destination's address.
    pub network: String,
    pub to: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub proto: String,
    /// Whether the connection gets through dockfw's `[east_west]` rules.
    pub passes: bool,
    /// What decided, e.g. `deny entry at line 9`, `isolate entry at line
    /// 5`, `default allow`, `no [east_west] table`.
    pub why: String,
    /// What the answer leaves out: entries limited to ports when no port
    /// was given; that same-bridge traffic needs bridge netfilter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One connection between two containers, to one address of the second.
#[derive(Debug, Clone, Copy)]
struct EastWestQuestion<'a> {
    from: &'a Container,
    to: &'a Container,
    on: &'a Attachment,
    proto: Proto,
    port: Option<u16>,
}

/// Whether a new connection `from` (a running container's name) starts to
/// each address of the running container `to` on a bridge network gets
/// through dockfw, and what decides: one answer per address.
pub fn explain_east_west(
    policy: &Policy,
    inventory: &Inventory,
    (from, to): (&str, &str),
    proto: Proto,
    port: Option<u16>,
) -> Result<Vec<EastWestExplanation>, ExplainError> {
    let named = |name: &str| {
        (inventory.containers.iter())
            .find(|c| c.name == name)
            .ok_or_else(|| ExplainError::UnknownContainer {
                name: name.to_owned(),
            })
    };
    let (from, to) = (named(from)?, named(to)?);
    let mut answers = Vec::new();
    for on in (to.attachments.iter()).filter(|a| on_a_bridge(inventory, a)) {
        let question = EastWestQuestion {
            from,
            to,
            on,
            proto,
            port,
        };
        for addr in addresses(on).into_iter().flatten() {
            let (passes, why, note) = container_answer(policy, inventory, question);
            answers.push(EastWestExplanation {
                container: from.name.clone(),
                to_container: to.name.clone(),
                network: on.network.clone(),
                to: addr,
                port,
                proto: proto.as_str().to_owned(),
                passes,
                why,
                note,
            });
        }
    }
    Ok(answers)
}

/// The east-west verdict for one question between two known containers:
/// whether it passes, why, and a note on what the answer leaves out.
fn container_answer(
    policy: &Policy,
    inventory: &Inventory,
    question: EastWestQuestion,
) -> (bool, String, Option<String>) {
    let from_a_bridge = (question.from.attachments.iter()).any(|a| on_a_bridge(inventory, a));
    if question.from.host_network {
        return (true, HOST_NETWORK.to_owned(), None);
    }
    if policy.east_west.is_some() && !from_a_bridge {
        let why = "not from a Docker bridge: [east_west] does not judge it";
        return (true, why.to_owned(), None);
    }
    let connection = EastWestConnection {
        from: Peer::Known(question.from),
        to: Peer::Known(question.to),
        network: &question.on.network,
        proto: question.proto,
        port: question.port,
    };
    let same_network =
        (question.from.attachments.iter()).any(|a| a.network_id == question.on.network_id);
    east_west_answer(policy, connection, same_network)
}

/// The east-west verdict for one connection from a Docker bridge:
/// whether it passes, why, and a note on what the answer leaves out
/// (`same_network`: both ends are on the destination's network).
fn east_west_answer(
    policy: &Policy,
    connection: EastWestConnection,
    same_network: bool,
) -> (bool, String, Option<String>) {
    let Some(east_west) = &policy.east_west else {
        return (true, "no [east_west] table".to_owned(), None);
    };
    let decider = decide_east_west(east_west, connection);
    let mut notes = Vec::new();
    let limited = east_west_port_limited(east_west, connection);
    if connection.port.is_none() && !limited.is_empty() {
        notes.push(port_note(&limited));
    }
    if same_network && east_west.judged() {
        notes.push(
            "same network: judged where bridge netfilter reaches the bridge \
             (dockfw status names any network where it does not)"
                .to_owned(),
        );
    }
    (decider.passes(), decider.why(), joined(notes))
}

/// Notes as one answer's `note`: joined with `; `, none when there are none.
fn joined(notes: impl IntoIterator<Item = String>) -> Option<String> {
    let notes: Vec<String> = notes.into_iter().collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

fn addresses(attachment: &crate::inventory::Attachment) -> [Option<IpAddr>; 2] {
    [
        attachment.ipv4.map(IpAddr::V4),
        attachment.ipv6.map(IpAddr::V6),
    ]
}

/// What dockfw takes one end of a connection for, by its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum End {
    /// An address of a running container, on this network.
    Container { name: String, network: String },
    /// An address on this Docker bridge network (in one of its subnets)
    /// that no known container has: a container an instant old, which the
    /// rules judge as unclassified until the re-plan classifies it.
    Unclassified { network: String },
    /// An address on no Docker bridge network dockfw knows.
    Outside,
}

impl End {
    /// `container "web" on network "front"`, `unknown address on network
    /// "front": judged as unclassified until the re-plan`, `on no Docker
    /// bridge`. Names are quoted as Rust debug strings (escaped); print
    /// them through [`crate::status::escape`] all the same.
    pub fn describe(&self) -> String {
        match self {
            End::Container { name, network } => {
                format!("container {name:?} on network {network:?}")
            }
            End::Unclassified { network } => format!(
                "unknown address on network {network:?}: judged as unclassified until the re-plan"
            ),
            End::Outside => "on no Docker bridge".to_owned(),
        }
    }
}

/// The answer for one new connection between two addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressExplanation {
    pub from: IpAddr,
    pub to: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub proto: String,
    pub source: End,
    pub destination: End,
    /// Whether the connection gets through dockfw's `[outbound]` and
    /// `[east_west]` rules; absent when they do not judge it (a source on
    /// no Docker bridge: the inbound rules do, as `explain --from` says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passes: Option<bool>,
    /// What decided, e.g. `outbound: isolate entry at line 5`,
    /// `east-west: deny entry at line 20`, `not from a container: …`.
    pub why: String,
    /// What the answer leaves out (as in [`OutboundExplanation::note`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For a source on a Docker bridge: `allow` or `deny`, what `to_host`
    /// decides for a connection to the host itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_host: Option<String>,
}

/// The text `dockfw explain --from ADDR --to ADDR` prints, every name
/// Docker supplied escaped for the terminal.
pub fn render_between(answer: &AddressExplanation) -> String {
    use crate::status::escape;
    let to = match (answer.port, answer.to) {
        (Some(port), IpAddr::V6(addr)) => format!("[{addr}]:{port}"),
        (Some(port), addr) => format!("{addr}:{port}"),
        (None, addr) => addr.to_string(),
    };
    let verdict = match answer.passes {
        Some(true) => "passes",
        Some(false) => "blocked",
        None => "not judged here",
    };
    let mut out = format!(
        "from {} to {to}/{}: {verdict} ({})\n",
        answer.from,
        answer.proto,
        escape(&answer.why)
    );
    out.push_str(&format!("  from: {}\n", escape(&answer.source.describe())));
    out.push_str(&format!(
        "  to: {}\n",
        escape(&answer.destination.describe())
    ));
    if let Some(note) = &answer.note {
        out.push_str(&format!("  note: {}\n", escape(note)));
    }
    if let Some(to_host) = &answer.to_host {
        out.push_str(&format!(
            "  to the host itself (any of its addresses): to_host = {to_host}\n"
        ));
    }
    out
}

/// Where an address is: a container's (on one of its attachments), in a
/// subnet of a bridge network no known container has it on, or neither.
#[derive(Debug, Clone, Copy)]
enum Place<'a> {
    Container(&'a Container, &'a Attachment),
    Unclassified(&'a Bridge),
    Outside,
}

impl Place<'_> {
    fn end(&self) -> End {
        match self {
            Place::Container(c, on) => End::Container {
                name: c.name.clone(),
                network: on.network.clone(),
            },
            Place::Unclassified(bridge) => End::Unclassified {
                network: bridge.name.clone(),
            },
            Place::Outside => End::Outside,
        }
    }

    fn peer(&self) -> Peer<'_> {
        match self {
            Place::Container(c, _) => Peer::Known(c),
            _ => Peer::Unclassified,
        }
    }

    /// Whether this end is on the network with id `network_id`.
    fn on(&self, network_id: &str) -> bool {
        match self {
            Place::Container(c, _) => c.attachments.iter().any(|a| a.network_id == network_id),
            Place::Unclassified(bridge) => bridge.id == network_id,
            Place::Outside => false,
        }
    }
}

fn place(inventory: &Inventory, addr: IpAddr) -> Place<'_> {
    let container = (inventory.containers.iter()).find_map(|c| {
        let on = (c.attachments.iter()).find(|a| addresses(a).contains(&Some(addr)))?;
        Some(Place::Container(c, on))
    });
    let subnet = || {
        (inventory.bridges.iter()).find(|b| {
            (inventory.subnets.get(&b.id))
                .is_some_and(|nets| nets.iter().any(|n| n.contains(&addr)))
        })
    };
    container
        .or_else(|| subnet().map(Place::Unclassified))
        .unwrap_or(Place::Outside)
}

/// Whether a new connection from the address `from` to `connection.to`
/// gets through dockfw's `[outbound]` and `[east_west]` rules, and what
/// decides, with either end a known container's address, an address on a
/// Docker bridge no known container has (judged as the rules judge it:
/// unclassified, until the re-plan classifies it), or neither (a source
/// there is not from a container: the inbound rules judge it).
pub fn explain_between(
    policy: &Policy,
    inventory: &Inventory,
    from: IpAddr,
    connection: Connection,
) -> Result<AddressExplanation, ExplainError> {
    if from.is_ipv4() != connection.to.is_ipv4() {
        return Err(ExplainError::MixedFamilies {
            from,
            to: connection.to,
        });
    }
    let (source, destination) = (place(inventory, from), place(inventory, connection.to));
    let mut answer = AddressExplanation {
        from,
        to: connection.to,
        port: connection.port,
        proto: connection.proto.as_str().to_owned(),
        source: source.end(),
        destination: destination.end(),
        passes: None,
        why: String::new(),
        note: None,
        to_host: None,
    };
    if let Place::Outside = source {
        answer.why = format!(
            "not from a container: the inbound rules judge it (dockfw explain --from {from})"
        );
        return Ok(answer);
    }
    let to_host = (policy.outbound.as_ref()).map_or(Default::Allow, |o| o.to_host);
    answer.to_host = Some(format!("{to_host:?}").to_lowercase());
    let (passes, why, note) = match destination {
        Place::Container(peer, on) => {
            between_containers(policy, inventory, source, (peer, on), connection)
        }
        Place::Unclassified(bridge) => {
            to_unclassified(policy, inventory, source, bridge, connection)
        }
        Place::Outside => match &policy.outbound {
            None => (true, "no [outbound] table".to_owned(), None),
            Some(outbound) => {
                let (passes, why, note) = outbound_answer(outbound, source.peer(), connection);
                (passes, format!("outbound: {why}"), note)
            }
        },
    };
    let inbound_too = match (source, destination) {
        (_, Place::Outside) => None,
        (Place::Container(_, on), _) => Some((on.network_id.as_str(), on.network.as_str())),
        (Place::Unclassified(bridge), _) => Some((bridge.id.as_str(), bridge.name.as_str())),
        (Place::Outside, _) => None,
    };
    let notes = note.into_iter().chain(
        inbound_too
            .filter(|(id, _)| !judged_by_interface(inventory, id))
            .map(|(_, network)| {
                format!(
                    "network {network:?} is covered by address, not by its bridge: \
                     what it sends to a container meets the inbound rules too, \
                     which this answer leaves out"
                )
            }),
    );
    answer.note = joined(notes);
    (answer.passes, answer.why) = (Some(passes), why);
    Ok(answer)
}

/// East-west, to a known container's address: for a known source, as
/// `--from-container A --to-container B` answers.
fn between_containers(
    policy: &Policy,
    inventory: &Inventory,
    source: Place,
    (peer, on): (&Container, &Attachment),
    connection: Connection,
) -> (bool, String, Option<String>) {
    let (passes, why, note) = match source {
        Place::Container(from, _) => {
            let question = EastWestQuestion {
                from,
                to: peer,
                on,
                proto: connection.proto,
                port: connection.port,
            };
            container_answer(policy, inventory, question)
        }
        _ => {
            let east_west = EastWestConnection {
                from: Peer::Unclassified,
                to: Peer::Known(peer),
                network: &on.network,
                proto: connection.proto,
                port: connection.port,
            };
            east_west_answer(policy, east_west, source.on(&on.network_id))
        }
    };
    (passes, format!("east-west: {why}"), note)
}

/// East-west, to an address on `bridge` no known container has; where
/// that bridge is covered by address rather than by its interface (a
/// refused name, not a Linux bridge now), what passes there meets the
/// outbound rules too.
fn to_unclassified(
    policy: &Policy,
    inventory: &Inventory,
    source: Place,
    bridge: &Bridge,
    connection: Connection,
) -> (bool, String, Option<String>) {
    if let Place::Container(from, _) = source {
        let from_a_bridge = (from.attachments.iter()).any(|a| on_a_bridge(inventory, a));
        if policy.east_west.is_some() && !from_a_bridge {
            let why = "not from a Docker bridge: [east_west] does not judge it";
            return (true, why.to_owned(), None);
        }
    }
    let east_west = EastWestConnection {
        from: source.peer(),
        to: Peer::Unclassified,
        network: &bridge.name,
        proto: connection.proto,
        port: connection.port,
    };
    let (passes, why, note) = east_west_answer(policy, east_west, source.on(&bridge.id));
    let why = format!("east-west: {why}");
    let outbound = policy.outbound.as_ref();
    match outbound {
        Some(outbound) if passes && !judged_by_interface(inventory, &bridge.id) => {
            let (passes, also, also_note) = outbound_answer(outbound, source.peer(), connection);
            let why = format!(
                "{why}; outbound: {also} (network {:?} is covered by address, not by its bridge)",
                bridge.name
            );
            (passes, why, joined(note.into_iter().chain(also_note)))
        }
        _ => (passes, why, note),
    }
}

/// The answer for one published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub container: String,
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: String,
    /// Whether a new connection from the source gets through dockfw.
    pub reachable: bool,
    /// What decided, e.g. `deny entry at line 9`, `default deny`.
    pub why: String,
    /// Set when another tool's rule above `FORWARD -> DOCKER-USER` may
    /// accept the connection before dockfw judges it (iptables backend):
    /// the rule. `reachable` is then dockfw's verdict, not the host's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypassed_by: Option<String>,
}

/// Mark the rows of a family with a rule above `FORWARD -> DOCKER-USER`
/// (`bypasses`: family and rule, as [`crate::firewall::Backend::forward_bypasses`]
/// gives them) as possibly bypassed: dockfw cannot tell which sources such
/// a rule accepts (it may match on interfaces, marks, anything), so every
/// row of that family may be. Rows bound to loopback are not forwarded.
pub fn mark_bypassed(rows: &mut [Explanation], bypasses: &[(Family, String)]) {
    for row in rows.iter_mut().filter(|r| r.why != LOOPBACK) {
        let family = if row.host_ip.contains(':') {
            Family::V6
        } else {
            Family::V4
        };
        if let Some((_, rule)) = bypasses.iter().find(|(f, _)| *f == family) {
            row.bypassed_by = Some(rule.clone());
        }
    }
}

const LOOPBACK: &str = "bound to loopback";

/// Every published port of running containers (only `container`'s, if
/// given; only `port`, if given) that `from` could address, with dockfw's
/// verdict for a new connection from it.
pub fn explain(
    policy: &Policy,
    inventory: &Inventory,
    from: IpAddr,
    port: Option<u16>,
    container: Option<&str>,
) -> Vec<Explanation> {
    let mut rows: Vec<Explanation> = inventory
        .containers
        .iter()
        .filter(|c| !c.host_network && container.is_none_or(|name| c.name == name))
        .flat_map(|c| c.ports.iter().map(move |p| (c, p)))
        .filter(|(_, p)| port.is_none_or(|port| p.addressed_port() == port))
        .filter(|(_, p)| p.host_ip.is_ipv4() == from.is_ipv4())
        .map(|(c, p)| {
            let (reachable, why) = decide(policy, c, p, from);
            Explanation {
                container: c.name.clone(),
                host_ip: p.host_ip.to_string(),
                host_port: p.host_port,
                container_port: p.container_port,
                proto: p.proto.as_str().to_owned(),
                reachable,
                why,
                bypassed_by: None,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.container, a.host_port, &a.proto).cmp(&(&b.container, b.host_port, &b.proto))
    });
    rows
}

fn decide(
    policy: &Policy,
    container: &Container,
    port: &PublishedPort,
    from: IpAddr,
) -> (bool, String) {
    if port.host_ip.is_loopback() {
        return (from.is_loopback(), LOOPBACK.to_owned());
    }
    let covers = |e: &&Entry| applies_to(e, container, port) && admits(e, from);
    if let Some(deny) = policy.deny.iter().find(covers) {
        return (false, format!("deny entry at line {}", deny.line));
    }
    if policy.default == Default::Allow {
        return (true, "default allow".to_owned());
    }
    match policy.allow.iter().find(covers) {
        Some(allow) => (true, format!("allow entry at line {}", allow.line)),
        None => (false, "default deny".to_owned()),
    }
}

/// Whether an entry's `from` includes the address.
fn admits(entry: &Entry, from: IpAddr) -> bool {
    let family = if from.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    match entry.sources(family) {
        None => false,
        Some(Sources::Anywhere) => true,
        Some(Sources::Nets(nets)) => nets.iter().any(|n| n.contains(&from)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Attachment;
    use crate::net::Proto;

    fn container(name: &str, ports: &[(u16, &str)]) -> Container {
        Container {
            id: name.into(),
            name: name.into(),
            labels: std::collections::BTreeMap::new(),
            host_network: false,
            attachments: vec![Attachment {
                network_id: "bridge-id".into(),
                network: "bridge".into(),
                ipv4: Some("172.17.0.2".parse().unwrap()),
                ipv6: None,
            }],
            ports: ports
                .iter()
                .map(|(p, ip)| PublishedPort {
                    host_ip: ip.parse().unwrap(),
                    host_port: *p,
                    container_port: 80,
                    proto: Proto::Tcp,
                })
                .collect(),
        }
    }

    #[test]
    fn each_port_names_the_entry_that_decides_it() {
        let policy = crate::policy::parse_str(
            "[inbound]\ndefault = \"deny\"\n\n[[inbound.allow]]\nports = [80]\n\n\
             [[inbound.allow]]\nports = [5432]\nfrom = [\"192.0.2.0/24\"]\n\n\
             [[inbound.deny]]\nports = [80]\nfrom = [\"192.0.2.66\"]\n",
            std::path::Path::new("p.toml"),
        )
        .unwrap();
        let inventory = Inventory {
            containers: vec![
                container("web", &[(80, "0.0.0.0"), (80, "::")]),
                container("db", &[(5432, "0.0.0.0"), (6379, "127.0.0.1")]),
            ],
            ..Inventory::default()
        };
        let from: IpAddr = "192.0.2.7".parse().unwrap();
        let got: Vec<(String, u16, bool, String)> = explain(&policy, &inventory, from, None, None)
            .into_iter()
            .map(|e| (e.container, e.host_port, e.reachable, e.why))
            .collect();
        assert_eq!(
            got,
            [
                ("db".into(), 5432, true, "allow entry at line 7".into()),
                ("db".into(), 6379, false, "bound to loopback".into()),
                ("web".into(), 80, true, "allow entry at line 4".into()),
            ]
        );
        let denied = explain(
            &policy,
            &inventory,
            "192.0.2.66".parse().unwrap(),
            Some(80),
            Some("web"),
        );
        assert_eq!(denied.len(), 1);
        assert_eq!(
            (denied[0].reachable, denied[0].why.as_str()),
            (false, "deny entry at line 11")
        );
        let outside = explain(
            &policy,
            &inventory,
            "203.0.113.9".parse().unwrap(),
            Some(5432),
            None,
        );
        assert_eq!(
            (outside[0].reachable, outside[0].why.as_str()),
            (false, "default deny")
        );
    }

    fn outbound_policy() -> Policy {
        crate::policy::parse_str(
            "[outbound]\ndefault = \"deny\"\nto_host = \"deny\"\n\n\
             [[outbound.isolate]]\ncontainers = [\"db\"]\n\n\
             [[outbound.allow]]\nto = [\"192.0.2.0/24\", \"2001:db8::/32\"]\nports = [443]\n\n\
             [[outbound.deny]]\nto = [\"192.0.2.66\"]\nproto = \"any\"\n",
            std::path::Path::new("p.toml"),
        )
        .unwrap()
    }

    fn ask(
        policy: &Policy,
        from: &str,
        to: &str,
        port: Option<u16>,
        proto: Proto,
    ) -> (bool, String) {
        let inventory = Inventory {
            containers: vec![container("web", &[]), container("db", &[])],
            ..Inventory::default()
        };
        let connection = Connection {
            to: to.parse().unwrap(),
            proto,
            port,
        };
        let answer = explain_outbound(policy, &inventory, from, connection).unwrap();
        (answer.passes, answer.why)
    }

    #[test]
    fn outbound_names_the_entry_or_default_that_decides() {
        let policy = outbound_policy();
        let yes = |line: usize| (true, format!("allow entry at line {line}"));
        assert_eq!(
            ask(&policy, "web", "192.0.2.7", Some(443), Proto::Tcp),
            yes(8)
        );
        assert_eq!(
            ask(&policy, "web", "192.0.2.66", Some(443), Proto::Tcp),
            (false, "deny entry at line 12".to_owned()),
            "deny beats allow"
        );
        assert_eq!(
            ask(&policy, "web", "192.0.2.7", Some(443), Proto::Udp),
            (false, "default deny".to_owned())
        );
        assert_eq!(
            ask(&policy, "db", "198.51.100.1", Some(443), Proto::Tcp),
            (false, "isolate entry at line 5".to_owned())
        );
        assert_eq!(
            ask(&policy, "db", "2001:db8::1", Some(443), Proto::Tcp),
            yes(8),
            "an allow entry admits an isolated container"
        );
        assert_eq!(
            ask(&policy, "web", "2001:db9::1", Some(443), Proto::Tcp),
            (false, "default deny".to_owned()),
            "family: the IPv6 entry names 2001:db8::/32 only"
        );
        assert_eq!(
            ask(&policy, "web", "172.17.0.2", Some(443), Proto::Tcp),
            (
                true,
                "to container \"web\" on network \"bridge\": not outbound; east-west: \
                 no [east_west] table"
                    .to_owned()
            )
        );
        let v1 = crate::policy::parse_str("[inbound]\n", std::path::Path::new("p.toml")).unwrap();
        assert_eq!(
            ask(&v1, "web", "192.0.2.66", None, Proto::Tcp),
            (true, "no [outbound] table".to_owned())
        );
    }

    #[test]
    fn outbound_for_an_unknown_container_is_a_clear_error_and_a_missing_port_is_noted() {
        let policy = outbound_policy();
        let inventory = Inventory {
            containers: vec![container("web", &[])],
            ..Inventory::default()
        };
        let connection = Connection {
            to: "192.0.2.7".parse().unwrap(),
            proto: Proto::Tcp,
            port: None,
        };
        let error = explain_outbound(&policy, &inventory, "nope", connection).unwrap_err();
        assert_eq!(error.to_string(), "no running container is named \"nope\"");
        let answer = explain_outbound(&policy, &inventory, "web", connection).unwrap();
        assert_eq!(
            (answer.passes, answer.why.as_str()),
            (false, "default deny")
        );
        assert_eq!(
            answer.note.as_deref(),
            Some("entries limited to ports (line 8) were not considered: give --port")
        );
        assert_eq!(answer.to_host, "deny");
    }

    #[test]
    fn east_west_names_the_entry_per_address_and_a_container_address_is_not_outbound() {
        let policy = crate::policy::parse_str(
            "[outbound]\ndefault = \"deny\"\n\n[east_west]\ndefault = \"deny\"\n\n\
             [[east_west.allow]]\nfrom_containers = [\"proxy\"]\nports = [80]\n",
            std::path::Path::new("p.toml"),
        )
        .unwrap();
        let mut api = container("api", &[]);
        api.attachments[0].ipv6 = Some("fd00::2".parse().unwrap());
        let mut proxy = container("proxy", &[]);
        proxy.attachments[0].ipv4 = Some("172.17.0.3".parse().unwrap());
        let inventory = Inventory {
            containers: vec![api, proxy, container("web", &[])],
            ..Inventory::default()
        };
        let ask = |from: &str, to: &str, port| {
            explain_east_west(&policy, &inventory, (from, to), Proto::Tcp, port)
                .unwrap()
                .into_iter()
                .map(|a| (a.to.to_string(), a.passes, a.why, a.note.is_some()))
                .collect::<Vec<_>>()
        };
        let allowed = |addr: &str| {
            (
                addr.to_owned(),
                true,
                "allow entry at line 7".to_owned(),
                true,
            )
        };
        assert_eq!(
            ask("proxy", "api", Some(80)),
            [allowed("172.17.0.2"), allowed("fd00::2")],
            "one answer per address; the note: same network, bridge netfilter"
        );
        assert_eq!(
            ask("web", "api", Some(80))[0],
            (
                "172.17.0.2".to_owned(),
                false,
                "default deny".to_owned(),
                true
            )
        );
        let unported =
            explain_east_west(&policy, &inventory, ("proxy", "api"), Proto::Tcp, None).unwrap();
        assert!(!unported[0].passes);
        assert!(
            (unported[0].note.as_deref()).is_some_and(|n| n.contains("(line 7)")),
            "{unported:?}"
        );
        let error = explain_east_west(&policy, &inventory, ("proxy", "nope"), Proto::Tcp, None)
            .unwrap_err();
        assert_eq!(error.to_string(), "no running container is named \"nope\"");
        let connection = Connection {
            to: "172.17.0.2".parse().unwrap(),
            proto: Proto::Tcp,
            port: Some(80),
        };
        let answer = explain_outbound(&policy, &inventory, "web", connection).unwrap();
        assert_eq!(
            (answer.passes, answer.why.as_str()),
            (
                false,
                "to container \"api\" on network \"bridge\": not outbound; east-west: \
                 default deny"
            ),
            "[east_west] judges it, not [outbound]"
        );
    }

    #[test]
    fn a_rule_above_docker_user_marks_its_family_as_bypassed() {
        let policy =
            crate::policy::parse_str("[inbound]\n", std::path::Path::new("p.toml")).unwrap();
        let inventory = Inventory {
            containers: vec![container(
                "db",
                &[(5432, "0.0.0.0"), (5432, "::"), (6379, "127.0.0.1")],
            )],
            ..Inventory::default()
        };
        let mut rows = explain(
            &policy,
            &inventory,
            "192.0.2.7".parse().unwrap(),
            None,
            None,
        );
        let rule = "-i eth0 -j ACCEPT".to_owned();
        mark_bypassed(&mut rows, &[(Family::V4, rule.clone())]);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.host_port, r.reachable, r.bypassed_by.clone()))
            .collect();
        assert_eq!(got, [(5432, false, Some(rule)), (6379, false, None)]);
        let mut v6 = explain(
            &policy,
            &inventory,
            "2001:db8::7".parse().unwrap(),
            None,
            None,
        );
        mark_bypassed(&mut v6, &[(Family::V4, "-j ACCEPT".into())]);
        assert!(v6.iter().all(|r| r.bypassed_by.is_none()), "{v6:?}");
    }

    /// Docker bridges `front` and `back` (judged by their interfaces) and
    /// `plus` (a refused interface name: covered by address), each with a
    /// subnet; `proxy` on front, `api` on front and back, `db` on back.
    fn bridged() -> Inventory {
        let bridge = |name: &str, interface: &str| Bridge {
            id: format!("{name}-id"),
            name: name.to_owned(),
            interface: interface.to_owned(),
        };
        let on = |network: &str, ipv4: &str| Attachment {
            network_id: format!("{network}-id"),
            network: network.to_owned(),
            ipv4: Some(ipv4.parse().unwrap()),
            ipv6: None,
        };
        let mut api = container("api", &[]);
        api.attachments = vec![on("front", "172.18.0.3"), on("back", "172.19.0.3")];
        let mut db = container("db", &[]);
        db.labels.insert("tier".into(), "db".into());
        db.attachments = vec![on("back", "172.19.0.4")];
        let mut proxy = container("proxy", &[]);
        proxy.attachments = vec![on("front", "172.18.0.2")];
        let subnet = |name: &str, net: &str| (format!("{name}-id"), vec![net.parse().unwrap()]);
        Inventory {
            bridges: vec![
                bridge("front", "br-front"),
                bridge("back", "br-back"),
                bridge("plus", "+"),
            ],
            subnets: [
                subnet("front", "172.18.0.0/16"),
                subnet("back", "172.19.0.0/16"),
                subnet("plus", "172.20.0.0/16"),
            ]
            .into(),
            containers: vec![api, db, proxy],
            ..Inventory::default()
        }
    }

    const OUTBOUND: &str = "[inbound]\ndefault = \"deny\"\n\n[outbound]\ndefault = \"allow\"\n\
        to_host = \"deny\"\n\n[[outbound.isolate]]\nlabels = { tier = \"db\" }\n\n\
        [[outbound.allow]]\ncontainers = [\"db\"]\nto = [\"203.0.113.7\"]\nports = [443]\n\n\
        [[outbound.allow]]\nto = [\"192.0.2.53\"]\nports = [53]\nproto = \"udp\"\n\n\
        [[outbound.deny]]\ncontainers = [\"proxy\"]\nto = [\"198.51.100.0/24\"]\n\n\
        [[outbound.deny]]\nto = [\"169.254.169.254\"]\nproto = \"any\"\n";

    const EAST_WEST: &str = "[inbound]\ndefault = \"deny\"\n\n[east_west]\ndefault = \"allow\"\n\n\
        [[east_west.isolate]]\nnetworks = [\"back\"]\n\n\
        [[east_west.allow]]\nfrom_containers = [\"proxy\"]\nports = [8080]\n\n\
        [[east_west.allow]]\nports = [80]\n\n\
        [[east_west.deny]]\nlabels = { tier = \"db\" }\nports = [9187]\nproto = \"any\"\n";

    fn between(policy: &Policy, from: &str, to: &str, port: u16, proto: Proto) -> (bool, String) {
        let connection = Connection {
            to: to.parse().unwrap(),
            proto,
            port: Some(port),
        };
        let answer =
            explain_between(policy, &bridged(), from.parse().unwrap(), connection).unwrap();
        (answer.passes.expect("judged"), answer.why)
    }

    #[test]
    fn an_unknown_source_on_a_bridge_is_judged_as_unclassified_outbound() {
        let policy = crate::policy::parse_str(OUTBOUND, std::path::Path::new("p.toml")).unwrap();
        let tcp = Proto::Tcp;
        let answer = |to, port, proto| between(&policy, "172.18.0.9", to, port, proto);
        assert_eq!(
            answer("198.51.100.1", 80, tcp),
            (false, "outbound: deny entry at line 21".to_owned()),
            "a deny entry with selectors meets it"
        );
        assert_eq!(
            answer("203.0.113.7", 443, tcp),
            (false, "outbound: isolate entry at line 8".to_owned()),
            "isolated while some container may be; an allow entry with selectors does not admit it"
        );
        assert_eq!(
            answer("192.0.2.53", 53, Proto::Udp),
            (true, "outbound: allow entry at line 16".to_owned()),
            "an allow entry without selectors admits it"
        );
        assert_eq!(
            between(&policy, "172.18.0.2", "203.0.113.9", 443, tcp),
            (true, "outbound: default allow".to_owned()),
            "the proxy, known, is not isolated"
        );
        let deny = OUTBOUND.replace("default = \"allow\"", "default = \"deny\"");
        let deny = crate::policy::parse_str(&deny, std::path::Path::new("p.toml")).unwrap();
        assert_eq!(
            between(&deny, "172.18.0.9", "203.0.113.7", 443, tcp),
            (false, "outbound: default deny".to_owned())
        );
        let connection = Connection {
            to: "203.0.113.7".parse().unwrap(),
            proto: tcp,
            port: Some(443),
        };
        let answer = explain_between(
            &policy,
            &bridged(),
            "172.18.0.9".parse().unwrap(),
            connection,
        )
        .unwrap();
        assert_eq!(
            answer.source.describe(),
            "unknown address on network \"front\": judged as unclassified until the re-plan"
        );
        assert_eq!(answer.destination, End::Outside);
        assert_eq!(answer.to_host.as_deref(), Some("deny"));
    }

    #[test]
    fn a_network_whose_interface_is_no_bridge_now_is_covered_by_address() {
        let policy = crate::policy::parse_str(EAST_WEST, std::path::Path::new("p.toml")).unwrap();
        let ask = |inventory: &Inventory| {
            let connection = Connection {
                to: "172.18.0.3".parse().unwrap(),
                proto: Proto::Tcp,
                port: Some(80),
            };
            let from = "172.19.0.8".parse().unwrap();
            let answer = explain_between(&policy, inventory, from, connection).unwrap();
            answer.note.unwrap_or_default()
        };
        let mut checked = bridged();
        assert!(!ask(&checked).contains("covered by address"));
        // What `links::check_bridges` notes when the kernel has br-back as
        // no Linux bridge (the CLI reads the inventory through it).
        checked.not_bridges.insert("br-back".to_owned());
        let note = ask(&checked);
        assert!(
            note.contains("network \"back\" is covered by address"),
            "{note}"
        );
    }

    #[test]
    fn unknown_ends_between_containers_meet_every_deny_and_selectorless_allows_only() {
        let policy = crate::policy::parse_str(EAST_WEST, std::path::Path::new("p.toml")).unwrap();
        let tcp = Proto::Tcp;
        assert_eq!(
            between(&policy, "172.18.0.9", "172.19.0.3", 9187, tcp),
            (false, "east-west: deny entry at line 17".to_owned()),
            "the deny entry selects db, and meets every unknown source"
        );
        assert_eq!(
            between(&policy, "172.18.0.2", "172.19.0.3", 8080, tcp),
            (true, "east-west: allow entry at line 10".to_owned()),
            "the proxy, known, to api on the isolated back"
        );
        assert_eq!(
            between(&policy, "172.18.0.9", "172.19.0.3", 8080, tcp),
            (false, "east-west: isolate entry at line 7".to_owned()),
            "the proxy's allow entry does not admit an unknown source"
        );
        assert_eq!(
            between(&policy, "172.18.0.9", "172.19.0.3", 80, tcp),
            (true, "east-west: allow entry at line 14".to_owned())
        );
        assert_eq!(
            between(&policy, "172.18.0.9", "172.18.0.3", 8080, tcp),
            (true, "east-west: default allow".to_owned()),
            "api on front is not isolated"
        );
        assert_eq!(
            between(&policy, "172.18.0.2", "172.18.0.9", 8080, tcp),
            (false, "east-west: isolate entry at line 7".to_owned()),
            "an unknown destination counts as isolated"
        );
        let connection = Connection {
            to: "172.19.0.9".parse().unwrap(),
            proto: tcp,
            port: None,
        };
        let answer = explain_between(
            &policy,
            &bridged(),
            "172.19.0.8".parse().unwrap(),
            connection,
        )
        .unwrap();
        assert_eq!(answer.passes, Some(false));
        let note = answer.note.unwrap_or_default();
        assert!(
            note.contains("(line 14, 17)"),
            "the proxy's entry (line 10) cannot admit an unknown source: {note}"
        );
        assert!(note.contains("same network"), "{note}");
    }

    #[test]
    fn a_source_on_no_docker_bridge_is_not_from_a_container() {
        let policy = crate::policy::parse_str(EAST_WEST, std::path::Path::new("p.toml")).unwrap();
        let connection = Connection {
            to: "172.19.0.3".parse().unwrap(),
            proto: Proto::Tcp,
            port: Some(80),
        };
        let from = "192.0.2.7".parse().unwrap();
        let answer = explain_between(&policy, &bridged(), from, connection).unwrap();
        assert_eq!(answer.passes, None);
        assert_eq!(answer.source, End::Outside);
        assert_eq!(
            answer.why,
            "not from a container: the inbound rules judge it (dockfw explain --from 192.0.2.7)"
        );
        assert_eq!(answer.to_host, None);
        let v6 = "2001:db8::1".parse().unwrap();
        let error = explain_between(&policy, &bridged(), v6, connection).unwrap_err();
        assert_eq!(
            error.to_string(),
            "2001:db8::1 and 172.19.0.3 are not of one address family"
        );
    }

    #[test]
    fn the_network_name_of_an_unknown_address_is_escaped_in_the_text() {
        let policy = crate::policy::parse_str(EAST_WEST, std::path::Path::new("p.toml")).unwrap();
        let mut inventory = bridged();
        inventory.bridges[1].name = "back\u{1b}[2J\u{202e}".into();
        let connection = Connection {
            to: "172.19.0.9".parse().unwrap(),
            proto: Proto::Tcp,
            port: Some(80),
        };
        let from = "172.18.0.2".parse().unwrap();
        let answer = explain_between(&policy, &inventory, from, connection).unwrap();
        let text = render_between(&answer);
        assert!(
            !text.chars().any(|c| c == '\u{1b}' || c == '\u{202e}'),
            "{text}"
        );
        assert!(
            text.contains("  to: unknown address on network \"back\\u{1b}[2J\\u{202e}\": judged as unclassified until the re-plan\n"),
            "{text}"
        );
        assert!(
            text.starts_with(
                "from 172.18.0.2 to 172.19.0.9:80/tcp: passes (east-west: allow entry at line 14)\n"
            ),
            "{text}"
        );
    }

    /// A new connection, not DNAT-ed, as the FORWARD hook sees it.
    struct Packet<'a> {
        src: IpAddr,
        dst: IpAddr,
        in_iface: &'a str,
        out_iface: &'a str,
        proto: Proto,
        dport: u16,
    }

    /// Whether the planned rules drop `p`: walked rule by rule from the
    /// entry chain, as the kernel walks them.
    fn dropped(rules: &crate::ruleset::FamilyRules, chain: &str, p: &Packet) -> bool {
        use crate::ruleset::{Conntrack, DROP_CHAIN, Target};
        let chain = rules
            .chains
            .iter()
            .find(|c| c.name == chain)
            .expect("chain");
        let in_set = |set: &Option<String>, addr: IpAddr| {
            set.as_ref().is_none_or(|name| {
                let set = rules.set(name).expect("a set the rule names");
                set.elements.iter().any(|net| net.contains(&addr))
            })
        };
        for r in &chain.rules {
            assert!(
                r.dport_set.is_none()
                    && r.orig_dport_set.is_none()
                    && r.orig_dport_ranges.is_none(),
                "not modelled: {r:?}"
            );
            let conntrack = match r.conntrack {
                None => true,
                Some(Conntrack::Established | Conntrack::Dnat) => false,
                Some(Conntrack::OrigDstPort { ports, dnat }) => !dnat && ports.contains(p.dport),
                Some(Conntrack::OrigDst(net)) => net.contains(&p.dst),
            };
            let matched = conntrack
                && r.src.is_none_or(|net| net.contains(&p.src))
                && r.dst.is_none_or(|net| net.contains(&p.dst))
                && in_set(&r.src_set, p.src)
                && in_set(&r.dst_set, p.dst)
                && r.in_iface.as_ref().is_none_or(|i| i.as_str() == p.in_iface)
                && r.out_iface
                    .as_ref()
                    .is_none_or(|i| i.as_str() == p.out_iface)
                && r.proto.is_none_or(|proto| proto == p.proto)
                && r.dport.is_none_or(|range| range.contains(p.dport))
                && r.icmpv6_type.is_none();
            if !matched {
                continue;
            }
            match &r.target {
                Target::Return => return false,
                Target::Drop => return true,
                Target::Log => {}
                Target::Jump(DROP_CHAIN) => return true,
                Target::Jump(next) => {
                    if dropped(rules, next, p) {
                        return true;
                    }
                }
            }
        }
        false
    }

    #[test]
    fn explain_between_addresses_says_what_the_planned_rules_do() {
        let inventory = bridged();
        let iface = |addr: IpAddr| match place(&inventory, addr) {
            Place::Container(_, on) => format!("br-{}", on.network),
            Place::Unclassified(bridge) => format!("br-{}", bridge.name),
            Place::Outside => "eth0".to_owned(),
        };
        let iface = |addr| match iface(addr) {
            plus if plus == "br-plus" => "+".to_owned(),
            other => other,
        };
        let sources = [
            "172.18.0.9",
            "172.19.0.9",
            "172.20.0.9",
            "172.18.0.2",
            "172.19.0.4",
            "172.19.0.3",
        ];
        let destinations = [
            "203.0.113.7",
            "192.0.2.53",
            "198.51.100.1",
            "169.254.169.254",
            "192.0.2.99",
            "172.19.0.3",
            "172.19.0.4",
            "172.18.0.3",
            "172.18.0.2",
            "172.19.0.9",
            "172.18.0.9",
            "172.20.0.9",
        ];
        let tables = [
            OUTBOUND.to_owned(),
            OUTBOUND.replace("default = \"allow\"", "default = \"deny\""),
            EAST_WEST.to_owned(),
            EAST_WEST.replace("default = \"allow\"", "default = \"deny\""),
            format!(
                "{EAST_WEST}\n{}",
                &OUTBOUND[OUTBOUND.find("[outbound]").unwrap()..]
            ),
        ];
        let inbound_allows = |t: &String| {
            t.replacen(
                "[inbound]\ndefault = \"deny\"",
                "[inbound]\ndefault = \"allow\"",
                1,
            )
        };
        let policies: Vec<String> = (tables.iter().cloned())
            .chain(tables.iter().map(inbound_allows))
            .collect();
        let mut checked = 0;
        for text in &policies {
            let policy = crate::policy::parse_str(text, std::path::Path::new("p.toml")).unwrap();
            let plan = crate::plan::plan(&policy, &inventory);
            let rules = plan.family(Family::V4);
            for from in sources {
                for to in destinations {
                    for (proto, port) in [
                        (Proto::Tcp, 443),
                        (Proto::Tcp, 80),
                        (Proto::Tcp, 8080),
                        (Proto::Tcp, 9187),
                        (Proto::Udp, 53),
                    ] {
                        let (src, dst): (IpAddr, IpAddr) =
                            (from.parse().unwrap(), to.parse().unwrap());
                        if src == dst {
                            continue;
                        }
                        let connection = Connection {
                            to: dst,
                            proto,
                            port: Some(port),
                        };
                        let answer = explain_between(&policy, &inventory, src, connection).unwrap();
                        let (in_iface, out_iface) = (iface(src), iface(dst));
                        let packet = Packet {
                            src,
                            dst,
                            in_iface: &in_iface,
                            out_iface: &out_iface,
                            proto,
                            dport: port,
                        };
                        let rules_pass = !dropped(rules, crate::ruleset::ENTRY_CHAIN, &packet);
                        let on_plus = in_iface == "+";
                        if on_plus && out_iface != "eth0" {
                            let note = answer.note.as_deref().unwrap_or_default();
                            assert!(note.contains("meets the inbound rules too"), "{answer:?}");
                            if policy.default == crate::policy::Default::Deny {
                                continue;
                            }
                        }
                        assert_eq!(
                            answer.passes,
                            Some(rules_pass),
                            "{from} -> {to} {proto:?}/{port} under\n{text}\nexplain: {answer:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }
}
