//! The validated policy: what the rest of dockfw sees of `policy.toml`.
//!
//! [`parse`] reads a file, [`parse_str`] is the pure core tests call. Raw serde
//! types live in `raw` and never leave this module; every error carries the
//! file, line and column, and all errors are reported, not only the first.

mod glob;
mod raw;

pub use crate::net::PortRange;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Serialize;

pub use glob::{Glob, GlobError};

use crate::net::Family;

/// The verdict for a new inbound connection no entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Default {
    Allow,
    Deny,
}

/// A validated policy (version 1, and the `[outbound]` and `[east_west]`
/// tables of version 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default: Default,
    /// `[[inbound.allow]]` entries, in file order.
    pub allow: Vec<Entry>,
    /// `[[inbound.deny]]` entries, in file order; a matching deny beats any allow.
    pub deny: Vec<Entry>,
    /// `[outbound]`; `None` (no table) means what dockfw did before it:
    /// nothing a container starts is judged, and no rule is written for it.
    pub outbound: Option<Outbound>,
    /// `[east_west]`; `None` (no table) means what dockfw did before it:
    /// no connection between containers is judged, and no rule is written
    /// for it.
    pub east_west: Option<EastWest>,
}

/// The `[east_west]` table: new connections from one container to another
/// (forwarded from a Docker bridge to a Docker bridge, the same one or
/// another), judged on the destination container's own address and port
/// (after Docker's DNAT). dockfw can only narrow what Docker allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EastWest {
    /// The verdict for a new connection no entry matches, to a container
    /// no isolate entry selects.
    pub default: Default,
    /// `[[east_west.isolate]]`: the containers these select accept from no
    /// other container, whatever `default` says, unless an allow entry
    /// admits it.
    pub isolate: Vec<EastWestEntry>,
    /// `[[east_west.allow]]`, in file order.
    pub allow: Vec<EastWestEntry>,
    /// `[[east_west.deny]]`, in file order; a matching deny beats any allow.
    pub deny: Vec<EastWestEntry>,
    /// 1-based line where the `[east_west]` table starts.
    pub line: usize,
}

impl EastWest {
    /// Whether some connection may start from deny: `default = "deny"`, or
    /// an isolate entry.
    pub fn restricts(&self) -> bool {
        self.default == Default::Deny || !self.isolate.is_empty()
    }

    /// Whether anything between containers may be dropped: a deny entry,
    /// or [`EastWest::restricts`]. Otherwise nothing is planned (allow
    /// entries alone admit what passes anyway).
    pub fn judged(&self) -> bool {
        !self.deny.is_empty() || self.restricts()
    }
}

/// One `[[east_west.*]]` table: the destination side (`to`: `containers`,
/// `labels`, `ports`, `proto`; never a `from` list of networks), the
/// source side (`from_containers`, `from_labels`) and the networks the
/// destination is reached over (`networks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EastWestEntry {
    /// The destination containers' selectors, the destination container's
    /// own ports and the protocol; `from` is always `None`.
    pub to: Entry,
    /// Source container-name globs; empty means any container.
    pub from_containers: Vec<Glob>,
    /// Labels a source container must all have with these values.
    pub from_labels: BTreeMap<String, String>,
    /// Network-name globs: the entry covers a destination container's
    /// addresses on these networks only; empty means on every network.
    pub networks: Vec<Glob>,
}

impl EastWestEntry {
    /// Whether the entry selects particular destinations (by container,
    /// label or network) and so must follow their addresses.
    pub fn selects_destinations(&self) -> bool {
        self.to.has_selector() || !self.networks.is_empty()
    }

    /// Whether the entry selects particular source containers.
    pub fn selects_sources(&self) -> bool {
        !self.from_containers.is_empty() || !self.from_labels.is_empty()
    }

    /// Whether the entry has any selector, on either side: an address no
    /// known container has meets it only if it has none.
    pub fn has_selector(&self) -> bool {
        self.selects_destinations() || self.selects_sources()
    }
}

/// The `[outbound]` table: new connections a container starts to anything
/// that is not a container (forwarded out of a Docker bridge), and to the
/// host itself (`to_host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The verdict for a new connection no entry matches, from a container
    /// no isolate entry selects.
    pub default: Default,
    /// The verdict for every new connection from a container to the host
    /// itself (INPUT from a Docker bridge).
    pub to_host: Default,
    /// `[[outbound.isolate]]`: the containers these select start from deny,
    /// whatever `default` says. Only `containers`, `labels` and `line` are
    /// set.
    pub isolate: Vec<Entry>,
    /// `[[outbound.allow]]`, in file order; an entry's `from` holds its `to`
    /// (destinations).
    pub allow: Vec<Entry>,
    /// `[[outbound.deny]]`, in file order; a matching deny beats any allow.
    pub deny: Vec<Entry>,
    /// 1-based line where the `[outbound]` table starts.
    pub line: usize,
}

impl Outbound {
    /// Whether some container may start from deny: `default = "deny"`, or
    /// an isolate entry.
    pub fn restricts(&self) -> bool {
        self.default == Default::Deny || !self.isolate.is_empty()
    }
}

/// One `[[inbound.allow]]` or `[[inbound.deny]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Published host ports; `None` means every port.
    pub ports: Option<Vec<PortRange>>,
    pub proto: ProtoMatch,
    /// Source networks (`from`; in an `[[outbound.*]]` entry, the
    /// destinations of its `to`); `None` means anywhere, in both families.
    pub from: Option<Vec<IpNet>>,
    /// Container-name globs; empty means any container.
    pub containers: Vec<Glob>,
    /// Labels that must all be present with these values.
    pub labels: BTreeMap<String, String>,
    /// 1-based line of the entry's table header, for "why" in status.
    pub line: usize,
}

/// The `proto` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtoMatch {
    Tcp,
    Udp,
    Any,
}

/// Which sources an entry admits in one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources<'a> {
    Anywhere,
    Nets(Vec<&'a IpNet>),
}

impl Entry {
    /// The entry's sources in `family`, or `None` when its `from` lists only
    /// networks of the other family (it then says nothing about this one).
    pub fn sources(&self, family: Family) -> Option<Sources<'_>> {
        let Some(from) = &self.from else {
            return Some(Sources::Anywhere);
        };
        let nets: Vec<&IpNet> = from
            .iter()
            .filter(|n| {
                matches!(
                    (family, n),
                    (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
                )
            })
            .collect();
        if nets.iter().any(|n| n.prefix_len() == 0) {
            // `0.0.0.0/0` or `::/0`: anywhere in this family, rendered with
            // no source match at all (as iptables itself prints it).
            return Some(Sources::Anywhere);
        }
        (!nets.is_empty()).then_some(Sources::Nets(nets))
    }

    /// Whether the entry's ports are matched as one set of port ranges
    /// (more than [`MAX_LISTED_PORTS`]) rather than one rule per range.
    pub fn ports_as_set(&self) -> bool {
        self.ports
            .as_ref()
            .is_some_and(|ranges| ranges.len() > MAX_LISTED_PORTS)
    }

    /// Whether `networks` networks of one family of the entry's `from` are
    /// matched as one set rather than one rule each: more than
    /// [`MAX_LISTED_SOURCES`], or more than one when the ports are a set
    /// too (a backend that writes each port range as a rule would
    /// otherwise write networks x ranges).
    pub fn sources_as_set(&self, networks: usize) -> bool {
        networks > MAX_LISTED_SOURCES || (networks > 1 && self.ports_as_set())
    }

    /// How many rules the entry writes in its larger family where the most
    /// are written (iptables, which has no set of original destination
    /// ports: one rule per port range), before selectors: source matches
    /// (one for a set) x protocols x port ranges.
    pub fn expansion(&self) -> usize {
        let sources = Family::ALL
            .iter()
            .filter_map(|f| match self.sources(*f)? {
                Sources::Anywhere => Some(1),
                Sources::Nets(nets) if self.sources_as_set(nets.len()) => Some(1),
                Sources::Nets(nets) => Some(nets.len()),
            })
            .max()
            .unwrap_or(0);
        let protos = match self.proto {
            ProtoMatch::Any if self.ports.is_some() => 3,
            _ => 1,
        };
        let ports = self.ports.as_ref().map_or(1, Vec::len);
        sources * protos * ports
    }

    /// The networks the entry's `from` lists in its larger family: the
    /// elements of its largest source set.
    pub fn networks(&self) -> usize {
        let count = |v4: bool| {
            self.from
                .iter()
                .flatten()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .count()
        };
        count(true).max(count(false))
    }

    /// Whether the entry selects particular containers (and so must follow
    /// their addresses) rather than every container.
    pub fn has_selector(&self) -> bool {
        !self.containers.is_empty() || !self.labels.is_empty()
    }
}

/// Most rules one entry may expand to ([`Entry::expansion`]); a larger
/// entry is refused by validation, so whatever `check` accepts applies in
/// a few seconds. Sources in a set do not multiply it: only protocols x
/// port ranges (iptables writes a rule per range), and listed sources of a
/// small entry.
pub const MAX_ENTRY_RULES: usize = 2_048;
/// Most rules all entries together may expand to.
pub const MAX_POLICY_RULES: usize = 20_000;
/// Most networks one entry's `from` may list in one family: the elements
/// of one set (ipset's default `maxelem`, 65,536).
pub const MAX_ENTRY_NETWORKS: usize = 65_536;
/// Most networks all entries' `from` lists may hold together (counted in
/// the larger family of each entry): set elements in all. nftables writes
/// every element again whenever its rules change (a network created), and
/// 65,536 already take seconds (`tests/bench.sh policy_scale`).
pub const MAX_POLICY_NETWORKS: usize = 65_536;
/// Most networks of one family a `from` list may have and still be written
/// one rule per network; a longer list is one set.
pub const MAX_LISTED_SOURCES: usize = 4;
/// Most port ranges an entry may have and still be written one rule per
/// range (and protocol); more are one set of port ranges, which nftables
/// matches in one rule.
pub const MAX_LISTED_PORTS: usize = 4;

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

/// One problem in a policy file, at a position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Read and validate the policy at `path`.
pub fn parse(path: &Path) -> Result<Policy, PolicyError> {
    parse_with_text(path).map(|(policy, _)| policy)
}

/// Read and validate the policy at `path`; also return the text read, so
/// that exactly what validated can be kept as the last good policy.
pub fn parse_with_text(path: &Path) -> Result<(Policy, String), PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let policy = parse_str(&text, path)?;
    Ok((policy, text))
}

/// The policy dockfw enforces when there is no valid one at all: every new
/// inbound connection to a container is dropped.
pub fn deny_all() -> Policy {
    Policy {
        default: Default::Deny,
        allow: Vec::new(),
        deny: Vec::new(),
        outbound: None,
        east_west: None,
    }
}

/// Something valid but probably not meant, with where it is: `dockfw
/// check` prints these and still exits 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line of the table it is about.
    pub line: usize,
    pub message: String,
}

/// What `dockfw check` warns about in a valid policy: outbound connections
/// restricted for some container while no `[[outbound.allow]]` entry
/// admits port 53, so that a container whose resolver is outside (the
/// default bridge's, or Docker's embedded resolver forwarding upstream)
/// cannot resolve names. dockfw allows nothing implicitly.
pub fn warnings(policy: &Policy) -> Vec<Warning> {
    let Some(outbound) = &policy.outbound else {
        return Vec::new();
    };
    let admits_dns = outbound.allow.iter().any(|e| {
        e.ports
            .as_ref()
            .is_none_or(|ranges| ranges.iter().any(|r| r.contains(53)))
    });
    if !outbound.restricts() || admits_dns {
        return Vec::new();
    }
    vec![Warning {
        line: outbound.line,
        message: "outbound connections are restricted and no [[outbound.allow]] entry admits \
                  port 53: containers whose DNS resolver is outside cannot resolve names \
                  (allow udp and tcp port 53 to your resolvers)"
            .to_owned(),
    }]
}

/// Validate policy text; `path` is only used in diagnostics.
pub fn parse_str(text: &str, path: &Path) -> Result<Policy, PolicyError> {
    raw::parse(text, path).map_err(PolicyError::Invalid)
}
