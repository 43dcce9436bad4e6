//! What the `[east_west]` table decides, in words: for one container, what
//! other containers meet when they start a connection to it, per network,
//! and the entries that name it (status); and the verdict for one new
//! connection from one container to another's address (`dockfw explain
//! --from-container A --to-container B`). Pure, and it matches as the rules
//! of [`super::east_west`] do, with its own selection functions: a deny
//! entry that selects the source, the destination on that network, the
//! protocol and the port drops it; otherwise, when the destination is
//! isolated there (or `default = "deny"`), only an allow entry that covers
//! it admits it; otherwise `default` applies. An end no known container
//! has ([`Peer::Unclassified`]) is judged as `DOCKFW-EW-UNCLASSIFIED`
//! judges it: every deny entry meets it, only allow entries without
//! selectors admit it, and under `default = "allow"` with isolate entries
//! an unclassified destination counts as isolated (by the first isolate
//! entry), a known one as what it is.

use crate::inventory::{Attachment, Container, Inventory, Proto};
use crate::policy::{Default, EastWest, EastWestEntry, Glob, Policy, PortRange, ProtoMatch};
use crate::status::{EastWestReach, EastWestStatus};

use super::east_west::{covers_destination, selects_source};
use super::outbound_verdict::Kind;
use super::{Decider, Peer};

/// Most names of a selector listed in an entry's description; the rest
/// are counted.
const DESCRIBED_NAMES: usize = 4;

/// One new connection between two containers (or addresses on Docker
/// bridges no known container has): to the destination's address on one
/// network, a protocol and, when known, the destination's own port.
#[derive(Debug, Clone, Copy)]
pub struct EastWestConnection<'a> {
    pub from: Peer<'a>,
    pub to: Peer<'a>,
    /// The network of the destination's address.
    pub network: &'a str,
    pub proto: Proto,
    /// `None`: no port given; entries limited to ports do not match.
    pub port: Option<u16>,
}

/// The verdict `[east_west]` gives `connection`.
pub fn decide_east_west(east_west: &EastWest, connection: EastWestConnection) -> Decider {
    let covers = |kind| move |e: &&EastWestEntry| covers(e, connection, kind);
    if let Some(deny) = east_west.deny.iter().find(covers(Kind::Deny)) {
        return Decider::Deny { line: deny.to.line };
    }
    let restricted = restricted(east_west, connection.to, connection.network);
    if restricted == Decider::DefaultAllow {
        return restricted;
    }
    match east_west.allow.iter().find(covers(Kind::Allow)) {
        Some(allow) => Decider::Allow {
            line: allow.to.line,
        },
        None => restricted,
    }
}

/// The lines of the entries that would cover `connection` on some port
/// but name ports: what a question without a port leaves unanswered.
pub fn east_west_port_limited(east_west: &EastWest, connection: EastWestConnection) -> Vec<usize> {
    let any_port = |kind| {
        move |e: &&EastWestEntry| {
            e.to.ports.is_some() && {
                let mut unported = (*e).clone();
                unported.to.ports = None;
                covers(&unported, connection, kind)
            }
        }
    };
    let denies = east_west.deny.iter().filter(any_port(Kind::Deny));
    let allows = east_west.allow.iter().filter(any_port(Kind::Allow));
    let mut lines: Vec<usize> = denies.chain(allows).map(|e| e.to.line).collect();
    lines.sort_unstable();
    lines
}

/// What a connection to `to` on `network` meets when no entry names it:
/// the first isolate entry that covers it there, else `default`. An
/// unclassified destination counts as isolated (by the first isolate
/// entry) where any container may be under `default = "allow"`; under
/// `default = "deny"`, the default drops it.
fn restricted(east_west: &EastWest, to: Peer, network: &str) -> Decider {
    let isolated = match to {
        Peer::Known(container) => {
            (east_west.isolate.iter()).find(|e| covers_destination(e, container, network))
        }
        Peer::Unclassified if east_west.default == Default::Deny => None,
        Peer::Unclassified => east_west.isolate.first(),
    };
    match (isolated, east_west.default) {
        (Some(isolate), _) => Decider::Isolated {
            line: isolate.to.line,
        },
        (None, Default::Deny) => Decider::DefaultDeny,
        (None, Default::Allow) => Decider::DefaultAllow,
    }
}

/// Whether an entry of `kind` covers the connection: its source
/// selectors, its destination selectors and networks, its protocol and
/// ports. Where an end is unclassified, every deny entry and the allow
/// entries without selectors cover it, on their protocol and ports.
fn covers(entry: &EastWestEntry, connection: EastWestConnection, kind: Kind) -> bool {
    let proto = match entry.to.proto {
        ProtoMatch::Tcp => connection.proto == Proto::Tcp,
        ProtoMatch::Udp => connection.proto == Proto::Udp,
        ProtoMatch::Any => true,
    };
    let port = match (&entry.to.ports, connection.port) {
        (None, _) => true,
        (Some(ranges), Some(port)) => ranges.iter().any(|r| r.contains(port)),
        (Some(_), None) => false,
    };
    let selected = match (connection.from, connection.to) {
        (Peer::Known(from), Peer::Known(to)) => {
            selects_source(entry, from) && covers_destination(entry, to, connection.network)
        }
        (Peer::Unclassified, _) | (_, Peer::Unclassified) => {
            kind.meets_unclassified(entry.has_selector())
        }
    };
    proto && port && selected
}

/// Whether an attachment is to a bridge network (or to a network no
/// listing named, which the rules cover by address all the same): only
/// there is traffic between containers forwarded from bridge to bridge.
pub fn on_a_bridge(inventory: &Inventory, attachment: &Attachment) -> bool {
    !inventory
        .other_networks
        .contains_key(&attachment.network_id)
}

/// One row per running container not on the host's network, by name: what
/// other containers meet when they start a connection to it, per network,
/// and the entries that name it. `None` without an `[east_west]` table.
pub fn east_west_verdicts(policy: &Policy, inventory: &Inventory) -> Option<Vec<EastWestStatus>> {
    let east_west = policy.east_west.as_ref()?;
    let mut rows: Vec<EastWestStatus> = (inventory.containers.iter())
        .filter(|c| !c.host_network)
        .map(|c| verdict(east_west, inventory, c))
        .collect();
    rows.sort_by(|a, b| a.container.cmp(&b.container));
    Some(rows)
}

fn verdict(east_west: &EastWest, inventory: &Inventory, container: &Container) -> EastWestStatus {
    let mut networks: Vec<&str> = (container.attachments.iter())
        .filter(|a| on_a_bridge(inventory, a))
        .map(|a| a.network.as_str())
        .collect();
    networks.sort_unstable();
    networks.dedup();
    let reach: Vec<(&str, Decider)> = (networks.iter())
        .map(|n| (*n, restricted(east_west, Peer::Known(container), n)))
        .collect();
    let on_some = |e: &EastWestEntry, starts_from_deny: bool| {
        (reach.iter()).any(|(n, otherwise)| {
            (!starts_from_deny || *otherwise != Decider::DefaultAllow)
                && covers_destination(e, container, n)
        })
    };
    let denies = (east_west.deny.iter())
        .filter(|e| on_some(e, false))
        .map(|e| describe("deny", e));
    // Allow entries matter only where something starts from deny.
    let allows = (east_west.allow.iter())
        .filter(|e| on_some(e, true))
        .map(|e| describe("allow", e));
    let as_source = (east_west.deny.iter().map(|e| ("deny", e)))
        .chain(east_west.allow.iter().map(|e| ("allow", e)))
        .filter(|(_, e)| e.selects_sources() && selects_source(e, container))
        .map(|(kind, e)| describe(kind, e));
    EastWestStatus {
        container: container.name.clone(),
        networks: (reach.iter())
            .map(|(network, otherwise)| EastWestReach {
                network: (*network).to_owned(),
                default: if otherwise.passes() { "allow" } else { "deny" }.to_owned(),
                why: otherwise.summary(),
            })
            .collect(),
        entries: denies.chain(allows).collect(),
        as_source: as_source.collect(),
    }
}

/// `allow from traefik to api-* on backend tcp port 8080 (allow entry at
/// line 12)`, `deny from any container to tier=db tcp port 9187 (deny
/// entry at line 20)`.
fn describe(kind: &str, entry: &EastWestEntry) -> String {
    let from = selector(&entry.from_containers, &entry.from_labels);
    let to = selector(&entry.to.containers, &entry.to.labels);
    let on = if entry.networks.is_empty() {
        String::new()
    } else {
        format!(" on {}", names(&entry.networks))
    };
    let proto = match entry.to.proto {
        ProtoMatch::Tcp => "tcp",
        ProtoMatch::Udp => "udp",
        ProtoMatch::Any => "any protocol",
    };
    let ports = match entry.to.ports.as_deref() {
        None => String::new(),
        Some([one]) if one.first == one.last => format!(" port {}", one.first),
        Some(ranges) => format!(" ports {}", ports(ranges)),
    };
    format!(
        "{kind} from {from} to {to}{on} {proto}{ports} ({kind} entry at line {})",
        entry.to.line
    )
}

/// `traefik, api-*`, `tier=db`, `any container`.
fn selector(globs: &[Glob], labels: &std::collections::BTreeMap<String, String>) -> String {
    let mut parts = Vec::new();
    if !globs.is_empty() {
        parts.push(names(globs));
    }
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !labels.is_empty() {
        parts.push(labels.join(" "));
    }
    if parts.is_empty() {
        return "any container".to_owned();
    }
    parts.join(" with ")
}

fn names(globs: &[Glob]) -> String {
    let mut named: Vec<String> = (globs.iter().take(DESCRIBED_NAMES))
        .map(|g| g.as_str().to_owned())
        .collect();
    if globs.len() > DESCRIBED_NAMES {
        named.push(format!("+{} more", globs.len() - DESCRIBED_NAMES));
    }
    named.join(", ")
}

fn ports(ranges: &[PortRange]) -> String {
    let mut named: Vec<String> = (ranges.iter().take(DESCRIBED_NAMES))
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}-{}", r.first, r.last)
            }
        })
        .collect();
    if ranges.len() > DESCRIBED_NAMES {
        named.push(format!("+{} more", ranges.len() - DESCRIBED_NAMES));
    }
    named.join(", ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const POLICY: &str = "\
[east_west]
default = \"allow\"

[[east_west.isolate]]
networks = [\"back\"]

[[east_west.allow]]
from_containers = [\"proxy\"]
networks = [\"back\"]
ports = [8080]

[[east_west.deny]]
labels = { tier = \"db\" }
ports = [9187]
proto = \"any\"
";

    fn container(name: &str, labels: &[(&str, &str)], networks: &[&str]) -> Container {
        Container {
            id: name.into(),
            name: name.into(),
            labels: (labels.iter())
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            host_network: false,
            attachments: (networks.iter().enumerate())
                .map(|(i, n)| Attachment {
                    network_id: (*n).to_owned(),
                    network: (*n).to_owned(),
                    ipv4: Some(format!("172.18.{i}.2").parse().expect("addr")),
                    ipv6: None,
                })
                .collect(),
            ports: Vec::new(),
        }
    }

    fn east_west(text: &str) -> EastWest {
        let policy = crate::policy::parse_str(text, Path::new("p.toml")).expect("valid");
        policy.east_west.expect("an [east_west] table")
    }

    fn ask(
        east_west: &EastWest,
        (from, to, network): (&Container, &Container, &str),
        proto: Proto,
        port: Option<u16>,
    ) -> Decider {
        let connection = EastWestConnection {
            from: Peer::Known(from),
            to: Peer::Known(to),
            network,
            proto,
            port,
        };
        decide_east_west(east_west, connection)
    }

    #[test]
    fn an_isolated_network_admits_only_what_an_allow_entry_covers_there() {
        let east_west = east_west(POLICY);
        let proxy = container("proxy", &[], &["front", "back"]);
        let api = container("api", &[], &["front", "back"]);
        let worker = container("worker", &[], &["back"]);
        let tcp = Proto::Tcp;
        assert_eq!(
            ask(&east_west, (&proxy, &api, "back"), tcp, Some(8080)),
            Decider::Allow { line: 7 }
        );
        assert_eq!(
            ask(&east_west, (&proxy, &api, "back"), tcp, Some(80)),
            Decider::Isolated { line: 4 },
            "the allow entry names port 8080 only"
        );
        assert_eq!(
            ask(&east_west, (&worker, &api, "back"), tcp, Some(8080)),
            Decider::Isolated { line: 4 },
            "the allow entry names the proxy as source only"
        );
        assert_eq!(
            ask(&east_west, (&worker, &api, "front"), tcp, Some(80)),
            Decider::DefaultAllow,
            "front is not isolated"
        );
        assert!(!Decider::Isolated { line: 4 }.passes());
    }

    #[test]
    fn a_deny_entry_beats_the_default_and_any_allow_entry() {
        let east_west = east_west(POLICY);
        let proxy = container("proxy", &[], &["back"]);
        let db = container("db", &[("tier", "db")], &["back", "front"]);
        assert_eq!(
            ask(&east_west, (&proxy, &db, "front"), Proto::Udp, Some(9187)),
            Decider::Deny { line: 12 }
        );
        let allowing = east_west.clone();
        let mut wide = allowing;
        wide.allow[0].to.ports = None;
        assert_eq!(
            ask(&wide, (&proxy, &db, "back"), Proto::Tcp, Some(9187)),
            Decider::Deny { line: 12 },
            "deny beats an allow entry that covers the same connection"
        );
        assert_eq!(
            ask(&east_west, (&proxy, &db, "front"), Proto::Tcp, Some(5432)),
            Decider::DefaultAllow
        );
    }

    #[test]
    fn default_deny_admits_only_allow_entries_and_a_missing_port_is_noted() {
        let east_west = east_west(&POLICY.replace("\"allow\"", "\"deny\""));
        let proxy = container("proxy", &[], &["front", "back"]);
        let api = container("api", &[], &["front", "back"]);
        assert_eq!(
            ask(&east_west, (&api, &proxy, "front"), Proto::Tcp, Some(80)),
            Decider::DefaultDeny
        );
        let question = EastWestConnection {
            from: Peer::Known(&proxy),
            to: Peer::Known(&api),
            network: "back",
            proto: Proto::Tcp,
            port: None,
        };
        assert_eq!(
            decide_east_west(&east_west, question),
            Decider::Isolated { line: 4 }
        );
        assert_eq!(east_west_port_limited(&east_west, question), [7]);
    }

    #[test]
    fn status_rows_name_each_network_the_entries_and_what_a_source_may_start() {
        let policy = crate::policy::parse_str(POLICY, Path::new("p.toml")).expect("valid");
        let mut inventory = Inventory {
            containers: vec![
                container("proxy", &[], &["front", "back"]),
                container("db", &[("tier", "db")], &["back", "mv"]),
                Container {
                    host_network: true,
                    ..container("host", &[], &[])
                },
            ],
            ..Inventory::default()
        };
        inventory
            .other_networks
            .insert("mv".to_owned(), "mv".to_owned());
        let rows = east_west_verdicts(&policy, &inventory).expect("a table");
        type Row<'a> = (&'a str, Vec<String>, Vec<&'a str>, Vec<&'a str>);
        let got: Vec<Row> = (rows.iter())
            .map(|r| {
                let reach = (r.networks.iter())
                    .map(|n| format!("{} {} {}", n.network, n.default, n.why))
                    .collect();
                let entries = r.entries.iter().map(String::as_str).collect();
                let source = r.as_source.iter().map(String::as_str).collect();
                (r.container.as_str(), reach, entries, source)
            })
            .collect();
        let deny = "deny from any container to tier=db any protocol port 9187 \
                    (deny entry at line 12)";
        let allow = "allow from proxy to any container on back tcp port 8080 \
                     (allow entry at line 7)";
        assert_eq!(
            got,
            [
                (
                    "db",
                    vec!["back deny isolated (isolate entry at line 4)".to_owned()],
                    vec![deny, allow],
                    vec![]
                ),
                (
                    "proxy",
                    vec![
                        "back deny isolated (isolate entry at line 4)".to_owned(),
                        "front allow allow by default".to_owned()
                    ],
                    vec![allow],
                    vec![allow]
                ),
            ]
        );
        let v1 = crate::policy::parse_str("[inbound]\n", Path::new("p.toml")).expect("valid");
        assert_eq!(east_west_verdicts(&v1, &inventory), None);
    }
}
