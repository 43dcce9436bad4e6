//! `dockfw explain`: for one source address, which published ports it can
//! reach and which policy entry (or default) decides each; the question an
//! operator asks before and after every policy change. With
//! `--from-container`, the other direction: whether a new connection that
//! container starts to one address gets out, and what decides
//! ([`explain_outbound`]).
//!
//! Pure: it reads the same [`Policy`] and [`Inventory`] the planner does and
//! decides with the planner's own matching ([`crate::plan::applies_to`],
//! [`crate::plan::decide`]), so the answer is what the rules do: a matching
//! deny beats any allow; else `default = "allow"` lets it in (outbound: for
//! a container no isolate entry selects); else an allow entry must cover it.

use std::net::IpAddr;

use serde::Serialize;

use crate::inventory::{Attachment, Container, Inventory, Proto, PublishedPort};
use crate::net::Family;
use crate::plan::{
    Connection, EastWestConnection, applies_to, decide_east_west, east_west_port_limited,
    on_a_bridge, port_limited,
};
use crate::policy::{Default, Entry, Policy, Sources};

/// A question `explain` cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no running container is named {name:?}")]
    UnknownContainer { name: String },
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
            let (passes, why, note) = east_west_answer(policy, inventory, question);
            answer.passes = passes;
            answer.why = format!(
                "to container {:?} on network {:?}: not outbound; east-west: {why}",
                peer.name, on.network
            );
            answer.note = note;
        }
        (None, None) => answer.why = "no [outbound] table".to_owned(),
        (Some(outbound), None) => {
            let decider = crate::plan::decide(outbound, found, connection);
            answer.passes = decider.passes();
            answer.why = decider.why();
            let limited = port_limited(outbound, found, connection.to);
            if connection.port.is_none() && !limited.is_empty() {
                let lines: Vec<String> = limited.iter().map(usize::to_string).collect();
                answer.note = Some(format!(
                    "entries limited to ports (line {}) were not considered: give --port",
                    lines.join(", ")
                ));
            }
        }
    }
    Ok(answer)
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
            let (passes, why, note) = east_west_answer(policy, inventory, question);
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

/// The east-west verdict for one question: whether it passes, why, and a
/// note on what the answer leaves out.
fn east_west_answer(
    policy: &Policy,
    inventory: &Inventory,
    question: EastWestQuestion,
) -> (bool, String, Option<String>) {
    let from_a_bridge = (question.from.attachments.iter()).any(|a| on_a_bridge(inventory, a));
    let east_west = match &policy.east_west {
        _ if question.from.host_network => return (true, HOST_NETWORK.to_owned(), None),
        None => return (true, "no [east_west] table".to_owned(), None),
        Some(_) if !from_a_bridge => {
            let why = "not from a Docker bridge: [east_west] does not judge it";
            return (true, why.to_owned(), None);
        }
        Some(east_west) => east_west,
    };
    let connection = EastWestConnection {
        from: question.from,
        to: question.to,
        network: &question.on.network,
        proto: question.proto,
        port: question.port,
    };
    let decider = decide_east_west(east_west, connection);
    let mut notes = Vec::new();
    let limited = east_west_port_limited(east_west, connection);
    if question.port.is_none() && !limited.is_empty() {
        let lines: Vec<String> = limited.iter().map(usize::to_string).collect();
        notes.push(format!(
            "entries limited to ports (line {}) were not considered: give --port",
            lines.join(", ")
        ));
    }
    let same_network =
        (question.from.attachments.iter()).any(|a| a.network_id == question.on.network_id);
    if same_network && east_west.judged() {
        notes.push(
            "same network: judged where bridge netfilter reaches the bridge \
             (dockfw status names any network where it does not)"
                .to_owned(),
        );
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    (decider.passes(), decider.why(), note)
}

fn addresses(attachment: &crate::inventory::Attachment) -> [Option<IpAddr>; 2] {
    [
        attachment.ipv4.map(IpAddr::V4),
        attachment.ipv6.map(IpAddr::V6),
    ]
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
}
