//! What the `[outbound]` table decides for one container, in words: its
//! verdict for a destination no entry names and why (status), and the
//! verdict for one new connection it starts (`dockfw explain
//! --from-container`). Pure, and it matches as the rules of
//! [`super::outbound`] do: a deny entry that selects the container and
//! covers the destination, protocol and port drops it; otherwise, when the
//! container is isolated (or `default = "deny"`), only an allow entry that
//! selects and covers it admits it; otherwise `default` applies. A `to`
//! list of one family says nothing about the other. A source no known
//! container has ([`Peer::Unclassified`]) is judged as the rules of
//! `DOCKFW-OUT-UNCLASSIFIED` judge it: every deny entry meets it, only
//! allow entries without selectors admit it, and it counts as isolated
//! where some isolate entry exists under `default = "allow"`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{family_of, selects};
use crate::inventory::{Container, Inventory, Proto};
use crate::policy::{Default, Entry, Outbound, Policy, PortRange, ProtoMatch, Sources};
use crate::status::OutboundStatus;

/// Most destinations of an entry named in its description; the rest are
/// counted.
const DESCRIBED_DESTINATIONS: usize = 4;

/// What decides a new connection a container starts to the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decider {
    /// The `[[outbound.deny]]` entry at this line.
    Deny { line: usize },
    /// The `[[outbound.allow]]` entry at this line.
    Allow { line: usize },
    /// The `[[outbound.isolate]]` entry at this line selects the container
    /// and no allow entry admits the connection.
    Isolated { line: usize },
    /// `default = "deny"`, no allow entry admits it.
    DefaultDeny,
    /// `default = "allow"` (or no `[outbound]` table at all).
    DefaultAllow,
}

impl Decider {
    /// Whether the connection gets through dockfw.
    pub fn passes(self) -> bool {
        matches!(self, Decider::Allow { .. } | Decider::DefaultAllow)
    }

    /// `deny entry at line 9`, `isolate entry at line 5`, `default deny`.
    pub fn why(self) -> String {
        match self {
            Decider::Deny { line } => format!("deny entry at line {line}"),
            Decider::Allow { line } => format!("allow entry at line {line}"),
            Decider::Isolated { line } => format!("isolate entry at line {line}"),
            Decider::DefaultDeny => "default deny".to_owned(),
            Decider::DefaultAllow => "default allow".to_owned(),
        }
    }

    /// A container's verdict for a destination no entry names, in words:
    /// `allow by default`, `deny by default`, `isolated (isolate entry at
    /// line 5)`.
    pub(super) fn summary(self) -> String {
        match self {
            Decider::Isolated { .. } => format!("isolated ({})", self.why()),
            Decider::DefaultDeny => "deny by default".to_owned(),
            _ => "allow by default".to_owned(),
        }
    }
}

/// One end of a connection as the rules see it.
#[derive(Debug, Clone, Copy)]
pub enum Peer<'a> {
    /// A running container dockfw knows (an address of it).
    Known(&'a Container),
    /// An address on a Docker bridge that no known container has (a
    /// container an instant old): the rules judge it as unclassified until
    /// the re-plan classifies it. Every deny entry meets it, with or
    /// without selectors; only allow entries without selectors admit it.
    Unclassified,
}

/// Which list an entry is on: what an unclassified end meets of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Deny,
    Allow,
}

impl Kind {
    /// Whether an entry of this kind meets an unclassified end, as the
    /// unclassified chains judge it: every deny entry does, and only the
    /// allow entries without selectors.
    pub(super) fn meets_unclassified(self, has_selector: bool) -> bool {
        self == Kind::Deny || !has_selector
    }
}

/// One new connection a container starts: to an address, a protocol and,
/// when known, a destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub to: IpAddr,
    pub proto: Proto,
    /// `None`: no port given; entries limited to ports do not match.
    pub port: Option<u16>,
}

/// The verdict `[outbound]` gives `connection` from `from`.
pub fn decide(outbound: &Outbound, from: Peer, connection: Connection) -> Decider {
    let covers = |kind| move |e: &&Entry| meets(from, kind, e) && covers(e, connection);
    if let Some(deny) = outbound.deny.iter().find(covers(Kind::Deny)) {
        return Decider::Deny { line: deny.line };
    }
    let restricted = restricted(outbound, from);
    if restricted == Decider::DefaultAllow {
        return restricted;
    }
    match outbound.allow.iter().find(covers(Kind::Allow)) {
        Some(allow) => Decider::Allow { line: allow.line },
        None => restricted,
    }
}

/// Whether an entry of `kind` applies to the source: its selectors select
/// a known one; for an unclassified one, see [`Kind::meets_unclassified`].
fn meets(from: Peer, kind: Kind, entry: &Entry) -> bool {
    match from {
        Peer::Known(container) => selects(entry, container),
        Peer::Unclassified => kind.meets_unclassified(entry.has_selector()),
    }
}

/// The verdict for a destination no entry names: the first isolate entry
/// that selects the container, else `default`. An unclassified source
/// counts as isolated (by the first isolate entry) where any container
/// may be under `default = "allow"`; under `default = "deny"`, the default
/// drops it.
fn restricted(outbound: &Outbound, from: Peer) -> Decider {
    let isolated = match from {
        Peer::Known(container) => outbound.isolate.iter().find(|e| selects(e, container)),
        Peer::Unclassified if outbound.default == Default::Deny => None,
        Peer::Unclassified => outbound.isolate.first(),
    };
    match (isolated, outbound.default) {
        (Some(isolate), _) => Decider::Isolated { line: isolate.line },
        (None, Default::Deny) => Decider::DefaultDeny,
        (None, Default::Allow) => Decider::DefaultAllow,
    }
}

/// Whether an entry's destinations, protocol and ports cover the
/// connection (its selectors aside).
fn covers(entry: &Entry, connection: Connection) -> bool {
    let to = match entry.sources(family_of(connection.to)) {
        None => false,
        Some(Sources::Anywhere) => true,
        Some(Sources::Nets(nets)) => nets.iter().any(|n| n.contains(&connection.to)),
    };
    let proto = match entry.proto {
        ProtoMatch::Tcp => connection.proto == Proto::Tcp,
        ProtoMatch::Udp => connection.proto == Proto::Udp,
        ProtoMatch::Any => true,
    };
    let port = match (&entry.ports, connection.port) {
        (None, _) => true,
        (Some(ranges), Some(port)) => ranges.iter().any(|r| r.contains(port)),
        (Some(_), None) => false,
    };
    to && proto && port
}

/// The lines of the entries that apply to `from` and would cover a
/// connection to `to` on some port, but name ports: what a question
/// without a port leaves unanswered.
pub fn port_limited(outbound: &Outbound, from: Peer, to: IpAddr) -> Vec<usize> {
    let any_port = |kind| {
        move |e: &&Entry| {
            e.ports.is_some()
                && meets(from, kind, e)
                && covers(
                    &Entry {
                        ports: None,
                        ..(*e).clone()
                    },
                    Connection {
                        to,
                        proto: Proto::Tcp,
                        port: None,
                    },
                )
        }
    };
    let denies = outbound.deny.iter().filter(any_port(Kind::Deny));
    let allows = outbound.allow.iter().filter(any_port(Kind::Allow));
    let mut lines: Vec<usize> = denies.chain(allows).map(|e| e.line).collect();
    lines.sort_unstable();
    lines
}

/// One row per running container not on the host's network, by name: its
/// outbound verdict and why, and the entries that name its connections.
/// `None` without an `[outbound]` table (status then shows nothing of it).
pub fn outbound_verdicts(policy: &Policy, inventory: &Inventory) -> Option<Vec<OutboundStatus>> {
    let outbound = policy.outbound.as_ref()?;
    let mut rows: Vec<OutboundStatus> = (inventory.containers.iter())
        .filter(|c| !c.host_network)
        .map(|c| verdict(outbound, c))
        .collect();
    rows.sort_by(|a, b| a.container.cmp(&b.container));
    Some(rows)
}

fn verdict(outbound: &Outbound, container: &Container) -> OutboundStatus {
    let otherwise = restricted(outbound, Peer::Known(container));
    let denies = (outbound.deny.iter())
        .filter(|e| selects(e, container))
        .map(|e| describe("deny", e));
    // Allow entries matter only where something starts from deny.
    let allows = (outbound.allow.iter())
        .filter(|e| otherwise != Decider::DefaultAllow && selects(e, container))
        .map(|e| describe("allow", e));
    OutboundStatus {
        container: container.name.clone(),
        default: if otherwise.passes() { "allow" } else { "deny" }.to_owned(),
        why: otherwise.summary(),
        entries: denies.chain(allows).collect(),
        to_host: word(outbound.to_host).to_owned(),
    }
}

fn word(verdict: Default) -> &'static str {
    match verdict {
        Default::Allow => "allow",
        Default::Deny => "deny",
    }
}

/// `allow 192.0.2.10, 2001:db8:5::/48 tcp port 443 (allow entry at line
/// 12)`, `deny 169.254.169.254 any protocol (deny entry at line 20)`.
fn describe(kind: &str, entry: &Entry) -> String {
    let to = match &entry.from {
        None => "anywhere".to_owned(),
        Some(nets) => destinations(nets),
    };
    let proto = match entry.proto {
        ProtoMatch::Tcp => "tcp",
        ProtoMatch::Udp => "udp",
        ProtoMatch::Any => "any protocol",
    };
    let ports = match entry.ports.as_deref() {
        None => String::new(),
        Some([one]) if one.first == one.last => format!(" port {}", one.first),
        Some(ranges) => format!(" ports {}", ports(ranges)),
    };
    format!(
        "{kind} {to} {proto}{ports} ({kind} entry at line {})",
        entry.line
    )
}

fn destinations(nets: &[IpNet]) -> String {
    let mut named: Vec<String> = (nets.iter().take(DESCRIBED_DESTINATIONS))
        .map(|n| {
            if n.prefix_len() == n.max_prefix_len() {
                n.addr().to_string()
            } else {
                n.to_string()
            }
        })
        .collect();
    if nets.len() > DESCRIBED_DESTINATIONS {
        named.push(format!("+{} more", nets.len() - DESCRIBED_DESTINATIONS));
    }
    named.join(", ")
}

fn ports(ranges: &[PortRange]) -> String {
    let mut named: Vec<String> = (ranges.iter().take(DESCRIBED_DESTINATIONS))
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}-{}", r.first, r.last)
            }
        })
        .collect();
    if ranges.len() > DESCRIBED_DESTINATIONS {
        named.push(format!("+{} more", ranges.len() - DESCRIBED_DESTINATIONS));
    }
    named.join(", ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory::Attachment;

    const POLICY: &str = "\
[outbound]
default = \"allow\"
to_host = \"deny\"

[[outbound.isolate]]
labels = { \"com.docker.compose.project\" = \"shop\" }

[[outbound.allow]]
labels = { \"com.docker.compose.service\" = \"api\" }
to = [\"192.0.2.10\", \"2001:db8:5::/48\"]
ports = [443]

[[outbound.deny]]
to = [\"169.254.169.254\"]
proto = \"any\"

[[outbound.allow]]
to = [\"0.0.0.0/0\"]
proto = \"any\"
";

    fn container(name: &str, labels: &[(&str, &str)]) -> Container {
        Container {
            id: name.into(),
            name: name.into(),
            labels: (labels.iter())
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            host_network: false,
            attachments: vec![Attachment {
                network_id: "n".into(),
                network: "bridge".into(),
                ipv4: Some("172.17.0.2".parse().expect("addr")),
                ipv6: None,
            }],
            ports: Vec::new(),
        }
    }

    fn outbound(text: &str) -> Outbound {
        let policy = crate::policy::parse_str(text, Path::new("p.toml")).expect("valid");
        policy.outbound.expect("an [outbound] table")
    }

    fn to(addr: &str, proto: Proto, port: Option<u16>) -> Connection {
        Connection {
            to: addr.parse().expect("addr"),
            proto,
            port,
        }
    }

    #[test]
    fn a_deny_entry_beats_an_allow_entry_that_covers_the_same_connection() {
        let outbound = outbound(POLICY);
        let web = container("web", &[]);
        let metadata = to("169.254.169.254", Proto::Tcp, Some(80));
        assert_eq!(
            decide(&outbound, Peer::Known(&web), metadata),
            Decider::Deny { line: 13 }
        );
        assert_eq!(
            decide(
                &outbound,
                Peer::Known(&web),
                to("198.51.100.1", Proto::Udp, Some(53))
            ),
            Decider::DefaultAllow,
            "not isolated: the default decides, allow entries need not"
        );
    }

    #[test]
    fn an_isolated_container_gets_out_only_where_an_allow_entry_admits_it() {
        let outbound = outbound(POLICY);
        let api = container(
            "shop-api",
            &[
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "api"),
            ],
        );
        let db = container("shop-db", &[("com.docker.compose.project", "shop")]);
        let api_443 = to("192.0.2.10", Proto::Tcp, Some(443));
        assert_eq!(
            decide(&outbound, Peer::Known(&api), api_443),
            Decider::Allow { line: 8 }
        );
        assert_eq!(
            decide(
                &outbound,
                Peer::Known(&api),
                to("192.0.2.10", Proto::Tcp, Some(80))
            ),
            Decider::Allow { line: 17 },
            "the selector-less allow of 0.0.0.0/0"
        );
        assert_eq!(
            decide(
                &outbound,
                Peer::Known(&db),
                to("2001:db8:5::1", Proto::Tcp, Some(443))
            ),
            Decider::Isolated { line: 5 },
            "the api's entry does not select the db, and 0.0.0.0/0 says nothing of IPv6"
        );
        assert!(!Decider::Isolated { line: 5 }.passes());
        assert_eq!(
            Decider::Isolated { line: 5 }.why(),
            "isolate entry at line 5"
        );
    }

    #[test]
    fn a_destination_list_of_one_family_says_nothing_of_the_other() {
        let outbound = outbound(
            "[outbound]\ndefault = \"deny\"\n\n[[outbound.allow]]\nto = [\"192.0.2.10\"]\n\n\
             [[outbound.deny]]\nto = [\"2001:db8::/32\"]\n",
        );
        let web = container("web", &[]);
        assert_eq!(
            decide(
                &outbound,
                Peer::Known(&web),
                to("192.0.2.10", Proto::Tcp, Some(22))
            ),
            Decider::Allow { line: 4 }
        );
        assert_eq!(
            decide(
                &outbound,
                Peer::Known(&web),
                to("2001:db8:1::10", Proto::Tcp, Some(22))
            ),
            Decider::Deny { line: 7 }
        );
        assert_eq!(
            decide(
                &outbound,
                Peer::Known(&web),
                to("2001:db9::10", Proto::Tcp, Some(22))
            ),
            Decider::DefaultDeny,
            "neither entry names this IPv6 address"
        );
        assert_eq!(
            decide(
                &outbound,
                Peer::Known(&web),
                to("192.0.2.11", Proto::Udp, None)
            ),
            Decider::DefaultDeny
        );
    }

    #[test]
    fn an_entry_with_ports_does_not_match_a_question_without_one_and_says_so() {
        let outbound = outbound(POLICY);
        let api = container(
            "api",
            &[
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "api"),
            ],
        );
        let addr: IpAddr = "2001:db8:5::7".parse().expect("addr");
        assert_eq!(
            decide(
                &outbound,
                Peer::Known(&api),
                to("2001:db8:5::7", Proto::Tcp, None)
            ),
            Decider::Isolated { line: 5 }
        );
        assert_eq!(port_limited(&outbound, Peer::Known(&api), addr), [8]);
        assert!(port_limited(&outbound, Peer::Known(&container("web", &[])), addr).is_empty());
    }

    #[test]
    fn status_rows_name_the_verdict_the_reason_and_the_entries_of_each_container() {
        let policy = crate::policy::parse_str(POLICY, Path::new("p.toml")).expect("valid");
        let inventory = Inventory {
            containers: vec![
                container("web", &[]),
                container(
                    "api",
                    &[
                        ("com.docker.compose.project", "shop"),
                        ("com.docker.compose.service", "api"),
                    ],
                ),
                Container {
                    host_network: true,
                    ..container("host", &[])
                },
            ],
            ..Inventory::default()
        };
        let rows = outbound_verdicts(&policy, &inventory).expect("a table");
        let got: Vec<(&str, &str, &str, Vec<&str>, &str)> = (rows.iter())
            .map(|r| {
                let entries = r.entries.iter().map(String::as_str).collect();
                (
                    r.container.as_str(),
                    r.default.as_str(),
                    r.why.as_str(),
                    entries,
                    r.to_host.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "api",
                    "deny",
                    "isolated (isolate entry at line 5)",
                    vec![
                        "deny 169.254.169.254 any protocol (deny entry at line 13)",
                        "allow 192.0.2.10, 2001:db8:5::/48 tcp port 443 (allow entry at line 8)",
                        "allow 0.0.0.0/0 any protocol (allow entry at line 17)",
                    ],
                    "deny"
                ),
                (
                    "web",
                    "allow",
                    "allow by default",
                    vec!["deny 169.254.169.254 any protocol (deny entry at line 13)"],
                    "deny"
                ),
            ]
        );
        let v1 = crate::policy::parse_str("[inbound]\n", Path::new("p.toml")).expect("valid");
        assert_eq!(outbound_verdicts(&v1, &inventory), None);
    }
}
