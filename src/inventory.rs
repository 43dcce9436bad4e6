//! Plain data describing what Docker runs: bridge networks and containers.
//!
//! Built by the Docker edge ([`crate::docker`]) and by test fixtures (serde);
//! read by [`crate::plan`]. It holds no handles and does no I/O.

pub use crate::net::Proto;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// One snapshot of the engine: everything a plan needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Bridge-driver networks, with the Linux interface each one uses.
    pub bridges: Vec<Bridge>,
    /// Running containers.
    pub containers: Vec<Container>,
    /// What Docker reported that could not be used as given (an unreadable
    /// address, port or attachment). The rest of the object, and every other
    /// object, is still planned; what is missing fails closed.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
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

/// One `-p host_ip:host_port:container_port/proto` binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// `0.0.0.0` / `::` for all addresses.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}
