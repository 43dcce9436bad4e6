//! Plain data describing what Docker runs: bridge networks and containers.
//!
//! Built by the Docker edge ([`crate::docker`]) and by test fixtures (serde);
//! read by [`crate::plan`]. It holds no handles and does no I/O.

pub use crate::net::{Family, Proto};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One snapshot of the engine: everything a plan needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Bridge-driver networks, with the Linux interface each one uses.
    pub bridges: Vec<Bridge>,
    /// Docker 28's gateway modes of the bridge networks that set one, by
    /// network id; every other network is `nat` in both families (the only
    /// mode of older engines, whose options are not taken as modes: see
    /// [`crate::docker`]). See [`Inventory::gateway_mode`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_modes: BTreeMap<String, GatewayModes>,
    /// Networks of other drivers (`host`, `none`, `macvlan`, …) by id, with
    /// their names: known, so that an attachment to one is no bridge rather
    /// than an attachment to a network nobody listed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other_networks: BTreeMap<String, String>,
    /// The IPAM subnets (both families) of the bridge networks that have
    /// any, by network id, as Docker reported them and dockfw read them:
    /// what covers, by address, what comes from a bridge dockfw does not
    /// judge by its interface (a refused name, not a Linux bridge now).
    /// See [`Inventory::subnets_of`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subnets: BTreeMap<String, Vec<IpNet>>,
    /// Bridge networks, by id, with a subnet dockfw could not read: what
    /// they hold is not all known, so they are judged as bridges whose
    /// name was refused (their interface is neither rendered nor exempted;
    /// their containers are judged by address, and by the subnets that
    /// could be read).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unreadable_subnets: BTreeSet<String>,
    /// Running containers, in (name, id) order.
    pub containers: Vec<Container>,
    /// Interfaces that bridge networks name but the kernel does not have as
    /// a Linux bridge now (missing, or a NIC, a WireGuard device, … named by
    /// `com.docker.network.bridge.name` or kept from a previous boot): a fact
    /// the daemon reads in its own network namespace before each plan
    /// ([`crate::links::check_bridges`]), not Docker's claim. Nothing
    /// arriving on them is exempted; their containers are judged by
    /// address. Empty in fixtures: every bridge as Docker reports it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub not_bridges: BTreeSet<String>,
    /// What Docker reported that could not be used as given (an unreadable
    /// address, port or attachment). The rest of the object, and every other
    /// object, is still planned; what is missing fails closed.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

impl Inventory {
    /// Take `container` as it is now, in place of what was known of the
    /// container with its id (its notes too), keeping (name, id) order.
    pub fn put_container(&mut self, container: Container, notes: Vec<Rejected>) {
        self.remove_container(&container.id);
        let key = |c: &Container| (c.name.clone(), c.id.clone());
        let at = self
            .containers
            .partition_point(|c| key(c) < key(&container));
        self.containers.insert(at, container);
        self.add_notes(notes);
    }

    /// Forget the container with id `id` and its notes: a container that is
    /// not known is not admitted anywhere.
    pub fn remove_container(&mut self, id: &str) -> Option<Container> {
        let at = self.containers.iter().position(|c| c.id == id)?;
        let gone = self.containers.remove(at);
        self.rejected
            .retain(|r| !(r.kind == "container" && r.name == gone.name));
        Some(gone)
    }

    /// Take the network with id `id` as `found` has it (the inventory of
    /// that one network: its bridge and gateway modes, or its entry in
    /// `other_networks`, and its notes), or as gone when `found` is `None`.
    pub fn put_network(&mut self, id: &str, found: Option<Inventory>) {
        let old_name = self
            .bridges
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.name.clone())
            .or_else(|| self.other_networks.get(id).cloned());
        self.bridges.retain(|b| b.id != id);
        self.gateway_modes.remove(id);
        self.other_networks.remove(id);
        self.subnets.remove(id);
        self.unreadable_subnets.remove(id);
        if let Some(name) = old_name {
            self.rejected
                .retain(|r| !(r.kind == "network" && r.name == name));
        }
        let Some(found) = found else { return };
        for bridge in found.bridges.into_iter().filter(|b| b.id == id) {
            let key = |b: &Bridge| (b.name.clone(), b.id.clone());
            let at = self.bridges.partition_point(|b| key(b) < key(&bridge));
            self.bridges.insert(at, bridge);
        }
        self.gateway_modes
            .extend(found.gateway_modes.into_iter().filter(|(n, _)| n == id));
        self.other_networks
            .extend(found.other_networks.into_iter().filter(|(n, _)| n == id));
        self.subnets
            .extend(found.subnets.into_iter().filter(|(n, _)| n == id));
        self.unreadable_subnets
            .extend(found.unreadable_subnets.into_iter().filter(|n| n == id));
        self.add_notes(found.rejected);
    }

    fn add_notes(&mut self, notes: Vec<Rejected>) {
        self.rejected.extend(notes);
        self.rejected
            .sort_by(|a, b| (&a.kind, &a.name, &a.reason).cmp(&(&b.kind, &b.name, &b.reason)));
    }

    /// How `listed` (a listing of everything) differs from this inventory
    /// in what Docker runs: bridges, gateway modes, other networks and
    /// containers (notes and the kernel's `not_bridges` are not compared);
    /// `None` when it does not. E.g. `containers: +1 -0 ~0`.
    pub fn differences(&self, listed: &Inventory) -> Option<String> {
        let mut found = Vec::new();
        let ours: BTreeMap<&str, &Container> =
            self.containers.iter().map(|c| (c.id.as_str(), c)).collect();
        let theirs: BTreeMap<&str, &Container> = listed
            .containers
            .iter()
            .map(|c| (c.id.as_str(), c))
            .collect();
        let added = theirs.keys().filter(|id| !ours.contains_key(*id)).count();
        let removed = ours.keys().filter(|id| !theirs.contains_key(*id)).count();
        let changed = theirs
            .iter()
            .filter(|(id, c)| ours.get(*id).is_some_and(|ours| ours != *c))
            .count();
        if added + removed + changed > 0 {
            found.push(format!("containers: +{added} -{removed} ~{changed}"));
        }
        if self.bridges != listed.bridges
            || self.gateway_modes != listed.gateway_modes
            || self.subnets != listed.subnets
            || self.unreadable_subnets != listed.unreadable_subnets
        {
            found.push("bridges".to_owned());
        }
        if self.other_networks != listed.other_networks {
            found.push("other networks".to_owned());
        }
        (!found.is_empty()).then(|| found.join(", "))
    }

    /// The subnets in `family` of the bridge network with id `network_id`.
    pub fn subnets_of(&self, network_id: &str, family: Family) -> impl Iterator<Item = IpNet> {
        let subnets = self.subnets.get(network_id).map_or(&[][..], Vec::as_slice);
        subnets.iter().copied().filter(move |net| {
            matches!(
                (net, family),
                (IpNet::V4(_), Family::V4) | (IpNet::V6(_), Family::V6)
            )
        })
    }

    /// How Docker connects the bridge network with id `network_id` to the
    /// host in `family`: what it set, else `nat`.
    pub fn gateway_mode(&self, network_id: &str, family: Family) -> &GatewayMode {
        static NAT: GatewayMode = GatewayMode::Nat;
        self.gateway_modes
            .get(network_id)
            .map_or(&NAT, |modes| modes.get(family))
    }
}

/// One object, or one field of it, that dockfw could not use. Every string
/// here comes from Docker: it is data for status and logs, escaped there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// `network` or `container`.
    pub kind: String,
    /// The object's name (or short id when it has none).
    pub name: String,
    /// Why, e.g. `unreadable ipv6 address "fd00::x" on network shop`.
    pub reason: String,
}

/// A Docker network using the `bridge` driver. Known by its id: Docker
/// 20.10 lets two networks have one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bridge {
    /// Docker's network id (full).
    pub id: String,
    /// Docker's network name, e.g. `bridge` or `shop_default`.
    pub name: String,
    /// The Linux bridge interface: `docker0`, `br-<12 hex of id>`, or the
    /// `com.docker.network.bridge.name` option.
    pub interface: String,
}

/// A bridge network's gateway mode in each family: the network options
/// `com.docker.network.bridge.gateway_mode_ipv4` and `..._ipv6`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayModes {
    #[serde(default)]
    pub ipv4: GatewayMode,
    #[serde(default)]
    pub ipv6: GatewayMode,
}

impl GatewayModes {
    pub fn get(&self, family: Family) -> &GatewayMode {
        match family {
            Family::V4 => &self.ipv4,
            Family::V6 => &self.ipv6,
        }
    }
}

/// How Docker (28 and later) connects a bridge network to the host in one
/// address family. Written as Docker spells it (`nat-unprotected`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum GatewayMode {
    /// Published ports are DNAT-ed from the host; Docker drops connections
    /// routed straight to a container address. The default, and the only
    /// mode before Docker 28.
    #[default]
    Nat,
    /// As `Nat`, but Docker lets connections routed straight to a container
    /// address reach every container port.
    NatUnprotected,
    /// No NAT: container addresses are routed, and a published port opens
    /// its container port to them (`-p 8080:80` opens 80 and nothing listens
    /// on the host; Docker reports the binding without a host port).
    Routed,
    /// No gateway address on the bridge; Docker allows it only on internal
    /// networks, which publish nothing and take no traffic from outside.
    Isolated,
    /// A mode this dockfw does not know, as Docker wrote it. Planned like
    /// `Nat`: allow entries with `ports` admit only DNAT-ed connections.
    Other(String),
}

impl GatewayMode {
    pub fn as_str(&self) -> &str {
        match self {
            GatewayMode::Nat => "nat",
            GatewayMode::NatUnprotected => "nat-unprotected",
            GatewayMode::Routed => "routed",
            GatewayMode::Isolated => "isolated",
            GatewayMode::Other(mode) => mode,
        }
    }
}

impl From<String> for GatewayMode {
    fn from(mode: String) -> Self {
        match mode.as_str() {
            "nat" => GatewayMode::Nat,
            "nat-unprotected" => GatewayMode::NatUnprotected,
            "routed" => GatewayMode::Routed,
            "isolated" => GatewayMode::Isolated,
            _ => GatewayMode::Other(mode),
        }
    }
}

impl From<GatewayMode> for String {
    fn from(mode: GatewayMode) -> Self {
        mode.as_str().to_owned()
    }
}

impl fmt::Display for GatewayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// True for `--network host`: DOCKER-USER cannot protect it.
    #[serde(default)]
    pub host_network: bool,
    /// Bridge networks the container is attached to, with its addresses there.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Ports published on the host (`-p`).
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
}

/// A container's membership in one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Docker's network id: what the attachment is matched to a
    /// [`Bridge`] by. Empty when Docker did not say which network it is
    /// (then no bridge is it, and the address is judged as one on a bridge
    /// dockfw does not render).
    pub network_id: String,
    /// Docker's network name, for display only: names are not unique.
    pub network: String,
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
}

/// One `-p host_ip:host_port:container_port/proto` binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// `0.0.0.0` / `::` for all addresses.
    pub host_ip: IpAddr,
    /// `0` when Docker bound no host port, as on a network whose gateway
    /// mode is `routed` in this family (`docker ps`: `0.0.0.0:0->80/tcp`):
    /// see [`PublishedPort::is_routed`].
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PublishedPort {
    /// True for a binding without a host port: nothing listens on the host
    /// and nothing is DNAT-ed; the container port is open to connections
    /// routed straight to the container's address (gateway mode `routed`).
    pub fn is_routed(&self) -> bool {
        self.host_port == 0
    }

    /// The destination port a new connection to this binding carries
    /// before any DNAT, which a policy entry's `ports` are matched against:
    /// the host port, or for a routed binding the container port.
    pub fn addressed_port(&self) -> u16 {
        if self.is_routed() {
            self.container_port
        } else {
            self.host_port
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, name: &str) -> Container {
        Container {
            id: id.into(),
            name: name.into(),
            labels: BTreeMap::new(),
            host_network: false,
            attachments: Vec::new(),
            ports: Vec::new(),
        }
    }

    fn note(name: &str) -> Rejected {
        Rejected {
            kind: "container".into(),
            name: name.into(),
            reason: "unreadable".into(),
        }
    }

    #[test]
    fn a_container_put_again_replaces_itself_and_its_notes_in_name_order() {
        let mut inventory = Inventory::default();
        inventory.put_container(container("2", "web"), vec![note("web")]);
        inventory.put_container(container("1", "api"), Vec::new());
        inventory.put_container(container("3", "web"), Vec::new());
        let ids = |i: &Inventory| {
            i.containers
                .iter()
                .map(|c| c.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&inventory), ["1", "2", "3"]);
        inventory.put_container(container("2", "zz"), Vec::new());
        assert_eq!(
            ids(&inventory),
            ["1", "3", "2"],
            "renamed: (name, id) order"
        );
        assert_eq!(inventory.rejected, [], "its old notes went with it");
        assert!(inventory.remove_container("3").is_some());
        assert!(inventory.remove_container("3").is_none());
        assert_eq!(ids(&inventory), ["1", "2"]);
    }

    #[test]
    fn a_network_put_takes_its_bridge_or_its_other_driver_and_gone_removes_both() {
        let bridge = |id: &str, name: &str| Bridge {
            id: id.into(),
            name: name.into(),
            interface: format!("br-{id}"),
        };
        let mut inventory = Inventory {
            bridges: vec![bridge("a", "alpha"), bridge("c", "gamma")],
            ..Inventory::default()
        };
        let found = Inventory {
            bridges: vec![bridge("b", "beta")],
            gateway_modes: BTreeMap::from([("b".into(), GatewayModes::default())]),
            ..Inventory::default()
        };
        inventory.put_network("b", Some(found));
        let names: Vec<_> = inventory.bridges.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta", "gamma"]);
        assert!(inventory.gateway_modes.contains_key("b"));
        inventory.put_network("b", None);
        assert_eq!(inventory.bridges.len(), 2);
        assert!(inventory.gateway_modes.is_empty());
        let host = Inventory {
            other_networks: BTreeMap::from([("h".into(), "host".into())]),
            ..Inventory::default()
        };
        inventory.put_network("h", Some(host));
        assert_eq!(inventory.other_networks["h"], "host");
    }

    #[test]
    fn differences_count_containers_added_removed_and_changed() {
        let mut ours = Inventory::default();
        ours.put_container(container("1", "a"), Vec::new());
        ours.put_container(container("2", "b"), Vec::new());
        let mut listed = ours.clone();
        assert_eq!(ours.differences(&listed), None);
        listed.remove_container("1");
        listed.put_container(container("2", "renamed"), Vec::new());
        listed.put_container(container("3", "c"), Vec::new());
        listed.put_container(container("4", "d"), vec![note("d")]);
        assert_eq!(
            ours.differences(&listed).as_deref(),
            Some("containers: +2 -1 ~1")
        );
        listed = ours.clone();
        listed.rejected.push(note("a"));
        assert_eq!(ours.differences(&listed), None, "notes are not compared");
    }
}
