//! Plain data describing what Docker runs: bridge networks and containers.
//!
//! Built by the Docker edge ([`crate::docker`]) and by test fixtures (serde);
//! read by [`crate::plan`]. It holds no handles and does no I/O.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::ruleset::Family;

/// One snapshot of the engine: everything a plan needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Bridge-driver networks, with the Linux interface each one uses.
    pub bridges: Vec<Bridge>,
    /// Running containers.
    pub containers: Vec<Container>,
    /// Whether Docker publishes IPv4 ports with DNAT rules (its `DOCKER`
    /// chain exists in iptables). Where it does not, `docker-proxy` on the
    /// host serves every published port of that family.
    #[serde(default = "yes")]
    pub nat_ipv4: bool,
    /// The same for IPv6 (`"ip6tables": true` in the engine's config).
    #[serde(default = "yes")]
    pub nat_ipv6: bool,
}

fn yes() -> bool {
    true
}

/// A Docker network using the `bridge` driver.
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
    /// Docker's network name.
    pub network: String,
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
}

/// A transport protocol Docker can publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One `-p host_ip:host_port:container_port/proto` binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// `0.0.0.0` / `::` for all addresses.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl Inventory {
    /// Record whether Docker writes DNAT rules in `family`.
    pub fn set_nat(&mut self, family: Family, nat: bool) {
        match family {
            Family::V4 => self.nat_ipv4 = nat,
            Family::V6 => self.nat_ipv6 = nat,
        }
    }
}

impl Default for Inventory {
    fn default() -> Inventory {
        Inventory {
            bridges: Vec::new(),
            containers: Vec::new(),
            nat_ipv4: true,
            nat_ipv6: true,
        }
    }
}
