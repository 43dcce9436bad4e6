//! Value types every part of dockfw shares: address [`Family`], transport
//! [`Proto`], [`PortRange`] and a validated interface name, [`Iface`]. Plain
//! data with no behaviour beyond validation; they live here so that
//! `policy`, `inventory`, `ruleset` and the firewall drivers need not import
//! each other for them.

use serde::{Deserialize, Serialize};

/// An IP address family; each has its own table and restore run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
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

/// An inclusive range of ports, `first <= last`, both in 1..=65535.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// The range of one port.
    pub fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    pub fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

/// A network interface name that is safe in rule text: a plain, literal
/// Linux name. Only [`Iface::new`] makes one, so no rule can carry a
/// wildcard (`+` matches every interface with that prefix), a quote or a
/// space that Docker (or whoever may create a network) chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iface(String);

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFACE_MAX_LEN: usize = 15;

impl Iface {
    /// `name` if it is 1 to 15 characters of letters, digits, `_`, `.` and
    /// `-`, and not `.` or `..`; otherwise why not.
    pub fn new(name: &str) -> Result<Iface, &'static str> {
        if name.is_empty() {
            return Err("empty");
        }
        if name.len() > IFACE_MAX_LEN {
            return Err("longer than 15 characters");
        }
        if name == "." || name == ".." {
            return Err("not a name");
        }
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if !name.chars().all(plain) {
            return Err("has characters other than letters, digits, '_', '.' and '-'");
        }
        Ok(Iface(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Iface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_literal_interface_names_are_accepted() {
        for good in [
            "docker0",
            "br-0123456789ab",
            "dfw_custom.0",
            "a",
            "x23456789012345",
        ] {
            assert_eq!(Iface::new(good).map(|i| i.to_string()), Ok(good.to_owned()));
        }
        for bad in [
            "+",
            "dfwt+",
            "br-+",
            "a\"b",
            "a b",
            "",
            ".",
            "..",
            "x234567890123456",
            "eth0\n",
            "a*",
            "\u{1b}[31m",
            "ä",
        ] {
            assert!(Iface::new(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
