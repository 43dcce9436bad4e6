//! dockfw: a Docker-aware host firewall that keeps a minimal rule set behind
//! Docker's `DOCKER-USER` chain, driven by a declarative policy.
//!
//! # Layout
//! The pure core (no tokio, no bollard, no processes):
//! - [`net`]: shared value types (`Family`, `Proto`, `PortRange`, `Iface`).
//! - [`policy`]: parse and validate `policy.toml` into a [`policy::Policy`].
//! - [`inventory`]: plain data describing Docker's bridges and containers.
//! - [`plan`]: `plan(&Policy, &Inventory) -> Ruleset`, and the per-port verdicts.
//! - [`ruleset`]: the desired chains, rules and address sets of one address
//!   family.
//! - [`explain`]: for one source address, which published ports it reaches and why.
//! - [`status`]: the daemon's status document and its text rendering.
//! - [`drops`]: running totals of dropped connections per policy entry,
//!   across the rewrites that reset the firewall's counters.
//!
//! The edges, each behind a small trait:
//! - [`docker`]: the Docker source (inventory snapshots, inspects of the one
//!   container or network an event names, and the events).
//! - [`firewall`]: the firewall backends behind one trait: `firewall::iptables`
//!   (restore text, ipsets, its parsers of `iptables-save` and `ipset save`) and
//!   `firewall::nftables`, each with a transaction type of its own;
//!   `firewall::open` picks one, `firewall::programs` names what they run.
//! - [`nfmonitor`]: the netlink watch that reports nf_tables ruleset changes.
//! - [`links`]: which interfaces are Linux bridges now (rtnetlink), and a
//!   watch on changes to that.
//! - [`bridge_netfilter`]: whether same-bridge frames reach the IP hooks
//!   (the global switch, each bridge's own flag), and the flags `[east_west]`
//!   turns on where the global switch is off.
//! - [`metrics`]: the optional Prometheus endpoint.
//! - [`control`]: the Unix-socket control protocol (server and client).
//! - [`endpoints`]: starts the control socket and the metrics after the
//!   first pass, retries their binds and reports them; never a condition
//!   of protection.
//! - [`state`]: what survives a restart under `/var/lib/dockfw` (last good
//!   policy, bridges last seen, the engine's firewall last seen) and the lock
//!   against a second daemon.
//! - [`choice`]: which backend the daemon drives and why (pure).
//! - [`sdnotify`]: readiness for systemd (`Type=notify`).
//! - [`daemon`]: the reconcile loop tying the edges to the core, as a small
//!   controller: triggers, one pass, the state it carries, its schedule.

pub mod bridge_netfilter;
pub mod choice;
pub mod control;
pub mod daemon;
pub mod docker;
pub mod drops;
pub mod endpoints;
pub mod explain;
pub mod firewall;
pub mod inventory;
pub mod links;
pub mod metrics;
pub mod net;
pub mod nfmonitor;
pub mod plan;
pub mod policy;
pub mod ruleset;
pub mod sdnotify;
pub mod state;
pub mod status;
#[cfg(test)]
mod testns;
