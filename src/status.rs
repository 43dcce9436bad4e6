//! The daemon's status document (served over the control socket) and its
//! human-readable rendering for `dockfw status`.
//!
//! Pure data and formatting: the daemon fills it, the CLI prints it, and
//! `metrics` renders it for Prometheus (this module knows nothing of that one).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ruleset::Origin;

/// Everything `dockfw status` shows; `--json` prints it as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub policy: PolicyStatus,
    pub docker: DockerStatus,
    pub reconcile: ReconcileStatus,
    pub rules: RulesStatus,
    /// One row per published port of every running container.
    pub ports: Vec<PortStatus>,
    /// Containers using host networking: DOCKER-USER cannot protect them.
    pub host_network: Vec<String>,
    /// What Docker reported that dockfw refused or could not read (a
    /// hostile bridge name, an unreadable address); judged fail-closed.
    #[serde(default)]
    pub rejected: Vec<RejectedStatus>,
    /// Repairs of dockfw's rules after something else changed them.
    #[serde(default)]
    pub drift: DriftStatus,
    /// How the inventory follows the engine: objects inspected for events,
    /// full listings, and what the listings found that events had missed.
    #[serde(default)]
    pub inventory: InventoryStatus,
    /// Rules of other tools above `FORWARD -> DOCKER-USER` that may accept
    /// a connection before dockfw judges it (iptables backend): drift
    /// dockfw cannot repair without taking over `FORWARD`.
    #[serde(default)]
    pub forward_bypass: Vec<BypassStatus>,
    /// New connections dockfw's rules dropped, per policy entry.
    #[serde(default)]
    pub drops: DropsStatus,
    /// Bridge networks whose same-bridge traffic `[east_west]` cannot
    /// judge in a family: bridge netfilter is off for them and their own
    /// flag could not be read or set.
    #[serde(default)]
    pub east_west_not_enforced: Vec<NotEnforcedStatus>,
    /// The firewall backend the daemon drives and why (`auto`'s choice).
    #[serde(default)]
    pub backend: Option<crate::choice::Chosen>,
    /// The optional endpoints (control socket, metrics) and whether they
    /// serve; a failing one is retried, the firewall never waits for it.
    #[serde(default)]
    pub endpoints: Vec<EndpointStatus>,
    /// What [`Status::bounded`] left out to keep the document within
    /// [`MAX_DOCUMENT_BYTES`]; all zero when nothing was.
    #[serde(default)]
    pub omitted: Omitted,
    /// One row per running container (host networking aside): what the
    /// `[outbound]` table decides for the new connections it starts.
    /// Absent when the policy has no `[outbound]` table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Vec<OutboundStatus>>,
    /// One row per running container (host networking aside): what the
    /// `[east_west]` table decides for new connections other containers
    /// start to it, and the entries that name it. Absent when the policy
    /// has no `[east_west]` table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub east_west: Option<Vec<EastWestStatus>>,
}

/// What the `[east_west]` table decides for one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EastWestStatus {
    pub container: String,
    /// Per bridge network the container is on: whether another container
    /// may reach it there when no entry names the connection.
    pub networks: Vec<EastWestReach>,
    /// The entries that select the container as a destination, deny
    /// entries first, e.g. `allow from traefik to any container on backend
    /// tcp port 8080 (allow entry at line 12)`. Allow entries are listed
    /// only when it starts from deny on some network.
    pub entries: Vec<String>,
    /// The entries whose `from_containers`/`from_labels` select the
    /// container: what it may (or may not) start to others.
    pub as_source: Vec<String>,
}

/// One network of an [`EastWestStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EastWestReach {
    pub network: String,
    /// `allow` or `deny`: the verdict for a connection no entry names.
    pub default: String,
    /// That verdict and why: `allow by default`, `deny by default`,
    /// `isolated (isolate entry at line 5)`.
    pub why: String,
}

/// What the `[outbound]` table decides for one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundStatus {
    pub container: String,
    /// `allow` or `deny`: the verdict for a destination no entry names.
    pub default: String,
    /// That verdict and why: `allow by default`, `deny by default`,
    /// `isolated (isolate entry at line 5)`.
    pub why: String,
    /// The entries that select the container and decide some of its
    /// connections, deny entries first, e.g. `allow 192.0.2.10 tcp port
    /// 443 (allow entry at line 12)`. Allow entries are listed only when
    /// the container starts from deny.
    pub entries: Vec<String>,
    /// `allow` or `deny`: new connections to the host itself.
    pub to_host: String,
}

/// A bridge network whose same-bridge traffic is not judged in a family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotEnforcedStatus {
    pub network: String,
    pub bridge: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
    pub reason: String,
}

/// Entries left out of a status document too large to send whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Omitted {
    pub ports: usize,
    pub host_network: usize,
    pub rejected: usize,
    /// Entries of `drops.ports`.
    pub port_drops: usize,
    /// Rows of `outbound`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub outbound: usize,
    /// Rows of `east_west`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub east_west: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Omitted {
    fn any(&self) -> bool {
        *self != Omitted::default()
    }
}

/// One optional endpoint of the daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// `control` (the socket `dockfw status` asks) or `metrics`.
    pub name: String,
    /// The socket's path, or the metrics' `ADDR:PORT`.
    pub address: String,
    pub state: EndpointState,
    /// Why the last bind failed, while `failing`.
    pub error: Option<String>,
    /// Binds that failed since the daemon started.
    pub failures: u64,
}

/// Where an optional endpoint is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// Not bound yet: endpoints start after the first pass.
    #[default]
    Waiting,
    Listening,
    /// The last bind failed; retried with backoff.
    Failing,
}

impl EndpointStatus {
    pub fn waiting(name: &str, address: String) -> Self {
        EndpointStatus {
            name: name.to_owned(),
            address,
            ..EndpointStatus::default()
        }
    }
}

/// New connections dropped since the daemon started, per policy entry and
/// per published port, from the firewall's counters (read at every
/// observing pass): each entry's drop rules count per entry, and every drop
/// then passes `DOCKFW-DROP`, whose set elements count per published port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DropsStatus {
    /// RFC 3339 time counting began: the daemon's start.
    pub since: Option<String>,
    /// One per entry (and the default) with drop rules installed, in the
    /// order deny entries, default.
    pub entries: Vec<EntryDrops>,
    /// One per published port (protocol and port, both families together)
    /// that had a counting set element since the start, by port.
    #[serde(default)]
    pub ports: Vec<PortDrops>,
}

/// What was dropped on its way to one published port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortDrops {
    /// `tcp`, `udp` or `sctp`.
    pub proto: String,
    /// The published host port (the container port on a routed network).
    pub port: u16,
    pub dropped: u64,
    /// Other published ports of the protocol whose drops `dropped`
    /// includes too: with iptables, a connection Docker DNAT-ed is counted
    /// at the container endpoint it reaches, so ports published on one
    /// container port (`-p 8080:80 -p 8081:80`) share one count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<u16>,
}

/// What one policy entry's drop rules dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryDrops {
    /// `deny@33` (the deny entry at line 33), `default` (default deny) or
    /// `loopback` (connections first addressed to a loopback address): the
    /// label in rule comments, log prefixes and metrics.
    pub entry: String,
    /// The entry's line in the policy; none for the default.
    pub line: Option<usize>,
    /// New connections (packets of its drop rules) dropped.
    pub dropped: u64,
}

/// One object, or field, from Docker that dockfw did not use as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RejectedStatus {
    /// `network` or `container`.
    pub kind: String,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftStatus {
    /// How often dockfw re-applied rules it had installed before, with
    /// nothing in the policy or inventory changed: something else had
    /// changed them.
    pub repairs: u64,
    /// RFC 3339 time of the last repair.
    pub last_at: Option<String>,
    /// What the last repair found and fixed, e.g.
    /// `ipv4: +3 -0 rules, put dockfw's jumps first`.
    pub last_found: Option<String>,
}

/// The inventory is kept from events (each inspects the object it names)
/// and checked by a periodic full listing, which repairs what the events
/// missed (an event lost, an inspect that failed) and counts it here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryStatus {
    /// Containers and networks inspected for the events that named them.
    pub inspects: u64,
    /// Full listings of the engine (at start, after a reconnect, the
    /// periodic check, and instead of an inspect that could not be used).
    pub listings: u64,
    /// Listings that found the inventory kept from events different from
    /// the engine's (and took the engine's).
    pub repairs: u64,
    /// RFC 3339 time of the last repair.
    pub last_repair_at: Option<String>,
    /// What the last repair found, e.g. `containers: +1 -0 ~0`.
    pub last_repair: Option<String>,
    /// Periodic checks that found the plan kept up to date from events
    /// (one container at a time) different from the whole plan of the same
    /// inventory, and used the whole plan.
    #[serde(default)]
    pub incremental_repairs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    pub path: String,
    /// RFC 3339 time the policy in force was loaded.
    pub loaded_at: Option<String>,
    /// `allow` or `deny`.
    pub default: String,
    pub allow_entries: usize,
    pub deny_entries: usize,
    /// The last reload that was refused; the previous policy stays in force.
    pub last_error: Option<String>,
    /// Set when the policy file did not validate at start: what dockfw
    /// enforces instead (the last good policy, or deny all) and why.
    #[serde(default)]
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DockerStatus {
    pub endpoint: String,
    pub connected: bool,
    pub version: Option<String>,
    pub api_version: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileStatus {
    /// RFC 3339 time of the last reconcile attempt.
    pub last_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// `pending` (none yet), `unchanged`, `applied`, `degraded` (the rules
    /// planned are in place, something else failed: the engine, the fast
    /// path) or `failed` (the firewall could not be read or written).
    pub result: String,
    pub error: Option<String>,
    /// How many restore transactions the daemon has run since it started.
    pub applies: u64,
    /// What the last plan was made from: `engine`, or, while the engine does
    /// not answer, `last known inventory` or `boot (no engine yet)`.
    #[serde(default)]
    pub inventory: String,
    /// Pass counts and durations, for `/metrics`.
    #[serde(default)]
    pub passes: PassCounters,
}

/// Upper bounds (seconds) of the reconcile-duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Counts of reconcile passes, kept in the status document for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PassCounters {
    /// Passes that failed (firewall or engine).
    pub failures: u64,
    /// Per bucket of [`DURATION_BUCKETS`], passes that took at most that long
    /// (not cumulative); the last slot counts the rest.
    pub buckets: Vec<u64>,
    /// Sum of all pass durations, in seconds.
    pub sum_seconds: f64,
    pub count: u64,
}

impl PassCounters {
    /// Record one pass.
    pub fn observe(&mut self, duration: Duration, failed: bool) {
        if self.buckets.len() != DURATION_BUCKETS.len() + 1 {
            self.buckets = vec![0; DURATION_BUCKETS.len() + 1];
        }
        let secs = duration.as_secs_f64();
        let slot = DURATION_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum_seconds += secs;
        self.count += 1;
        self.failures += u64::from(failed);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RulesStatus {
    pub ipv4: FamilyStatus,
    pub ipv6: FamilyStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FamilyStatus {
    /// Rules in dockfw's chains, as planned.
    pub rules: usize,
    /// `nft` or `legacy`: the iptables variant that holds Docker's chains.
    pub variant: Option<String>,
}

/// How exposed one published port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// New connections from anywhere are let through.
    Open,
    /// Only some sources may connect.
    Restricted,
    /// No outside source may connect.
    Blocked,
    /// Bound to loopback: not reachable from outside at all.
    Local,
}

/// One published port of a running container and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    pub container: String,
    pub network: String,
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: String,
    pub verdict: Verdict,
    /// The verdict in words, e.g. `open to 192.0.2.16/28`.
    pub detail: String,
    /// Which part of the policy decided, e.g. `allow entry at line 6`.
    #[serde(default)]
    pub why: String,
    /// How Docker connects the port's network to the host in its family
    /// (Docker 28): `nat`, `nat-unprotected`, `routed` (no host port; the
    /// policy is matched on the container port) or a mode dockfw does not
    /// know, as Docker wrote it.
    #[serde(default)]
    pub gateway_mode: String,
}

impl Verdict {
    /// The lowercase word used in `--json` and as a fallback in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Open => "open",
            Verdict::Restricted => "restricted",
            Verdict::Blocked => "blocked",
            Verdict::Local => "local",
        }
    }
}

impl PortStatus {
    /// `host_ip:host_port`, with IPv6 addresses bracketed: `[::]:80`.
    pub fn host_addr(&self) -> String {
        if self.host_ip.contains(':') {
            format!("[{}]:{}", self.host_ip, self.host_port)
        } else {
            format!("{}:{}", self.host_ip, self.host_port)
        }
    }

    /// The verdict in words, or its bare name when the daemon gave none.
    fn verdict_text(&self) -> &str {
        if self.detail.is_empty() {
            self.verdict.as_str()
        } else {
            &self.detail
        }
    }
}

impl Status {
    /// One line for systemd's `STATUS=`: what is protected and how the last
    /// pass went, e.g. `3 containers, 7 ports (2 blocked); applied in 12 ms`.
    pub fn summary(&self) -> String {
        let containers: std::collections::BTreeSet<&str> =
            self.ports.iter().map(|p| p.container.as_str()).collect();
        let blocked = self
            .ports
            .iter()
            .filter(|p| p.verdict == Verdict::Blocked)
            .count();
        let r = &self.reconcile;
        let mut line = format!(
            "{} containers with published ports, {} ports ({blocked} blocked); last pass {}",
            containers.len(),
            self.ports.len(),
            r.result
        );
        if let Some(ms) = r.duration_ms {
            line.push_str(&format!(" in {ms} ms"));
        }
        if self.policy.fallback.is_some() {
            line.push_str("; POLICY FILE INVALID");
        }
        if !self.docker.connected {
            line.push_str("; docker not connected");
        }
        escape(&line).into_owned()
    }
}

/// The largest status document sent whole (one JSON line on the control
/// socket); the client reads no more.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Longest Docker-supplied name or text kept in a status document, in
/// characters; the rest is cut and replaced by a marker (`…+N`).
pub const MAX_NAME_CHARS: usize = 256;
/// Longest error text kept in a status document, in characters.
const MAX_ERROR_CHARS: usize = 64 * 1024;
/// How [`MAX_DOCUMENT_BYTES`] is shared by the lists that grow with the
/// engine (serialized bytes); the rest (a few error texts of at most
/// [`MAX_ERROR_CHARS`], counters) fits in what is left.
const PORTS_BUDGET: usize = 9 * 1024 * 1024;
const PORT_DROPS_BUDGET: usize = 2 * 1024 * 1024;
const HOST_NETWORK_BUDGET: usize = 1024 * 1024;
const REJECTED_BUDGET: usize = 1024 * 1024;
const OUTBOUND_BUDGET: usize = 1024 * 1024;
const EAST_WEST_BUDGET: usize = 1024 * 1024;

/// `text` cut to `max` characters, the cut marked `…+N` (N characters cut).
pub fn shorten(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((at, _)) => {
            let cut = text[at..].chars().count();
            std::borrow::Cow::Owned(format!("{}…+{cut}", &text[..at]))
        }
    }
}

fn shorten_in_place(text: &mut String, max: usize) {
    if let std::borrow::Cow::Owned(short) = shorten(text, max) {
        *text = short;
    }
}

/// Most entries listed for one container's outbound or east-west row (and
/// networks, for east-west).
const MAX_OUTBOUND_ENTRIES: usize = 16;

/// Most rules above `FORWARD -> DOCKER-USER` listed in a status document.
const MAX_BYPASSES: usize = 64;

/// Drops the second half of `list` (at least one entry of a non-empty
/// list); how many went.
fn halve<T>(list: &mut Vec<T>) -> usize {
    let before = list.len();
    list.truncate(before / 2);
    before - list.len()
}

/// The entries of `list` whose JSON fits in `budget` bytes, in order; the
/// number left out.
fn within_budget<T: Serialize>(list: &mut Vec<T>, budget: usize) -> usize {
    let mut used = 0;
    let kept = list
        .iter()
        .take_while(|entry| {
            used += serde_json::to_vec(entry).map_or(usize::MAX / 2, |json| json.len() + 1);
            used <= budget
        })
        .count();
    let omitted = list.len() - kept;
    list.truncate(kept);
    omitted
}

impl Status {
    /// This status made to fit [`MAX_DOCUMENT_BYTES`]: every name and text
    /// Docker supplied cut to [`MAX_NAME_CHARS`], error texts to 64 Ki
    /// characters, and the lists that grow with the engine cut to their
    /// share, what was left out counted in `omitted`.
    pub fn bounded(&self) -> Status {
        let mut status = self.clone();
        for port in &mut status.ports {
            for text in [
                &mut port.container,
                &mut port.network,
                &mut port.host_ip,
                &mut port.proto,
                &mut port.detail,
                &mut port.why,
                &mut port.gateway_mode,
            ] {
                shorten_in_place(text, MAX_NAME_CHARS);
            }
        }
        for name in &mut status.host_network {
            shorten_in_place(name, MAX_NAME_CHARS);
        }
        for row in status.outbound.iter_mut().flatten() {
            shorten_in_place(&mut row.container, MAX_NAME_CHARS);
            shorten_in_place(&mut row.default, MAX_NAME_CHARS);
            shorten_in_place(&mut row.why, MAX_NAME_CHARS);
            shorten_in_place(&mut row.to_host, MAX_NAME_CHARS);
            row.entries.truncate(MAX_OUTBOUND_ENTRIES);
            for entry in &mut row.entries {
                shorten_in_place(entry, MAX_NAME_CHARS);
            }
        }
        for row in status.east_west.iter_mut().flatten() {
            shorten_in_place(&mut row.container, MAX_NAME_CHARS);
            row.networks.truncate(MAX_OUTBOUND_ENTRIES);
            for reach in &mut row.networks {
                for text in [&mut reach.network, &mut reach.default, &mut reach.why] {
                    shorten_in_place(text, MAX_NAME_CHARS);
                }
            }
            for list in [&mut row.entries, &mut row.as_source] {
                list.truncate(MAX_OUTBOUND_ENTRIES);
                for entry in list {
                    shorten_in_place(entry, MAX_NAME_CHARS);
                }
            }
        }
        for r in &mut status.rejected {
            shorten_in_place(&mut r.kind, MAX_NAME_CHARS);
            shorten_in_place(&mut r.name, MAX_NAME_CHARS);
            shorten_in_place(&mut r.reason, MAX_NAME_CHARS);
        }
        for p in &mut status.drops.ports {
            shorten_in_place(&mut p.proto, MAX_NAME_CHARS);
        }
        for n in &mut status.east_west_not_enforced {
            shorten_in_place(&mut n.network, MAX_NAME_CHARS);
            shorten_in_place(&mut n.bridge, MAX_NAME_CHARS);
            shorten_in_place(&mut n.reason, MAX_NAME_CHARS);
        }
        for text in [
            status.policy.last_error.as_mut(),
            status.policy.fallback.as_mut(),
            status.docker.last_error.as_mut(),
            status.docker.version.as_mut(),
            status.docker.api_version.as_mut(),
            status.reconcile.error.as_mut(),
            status.drift.last_found.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            shorten_in_place(text, MAX_ERROR_CHARS);
        }
        for bypass in &mut status.forward_bypass {
            shorten_in_place(&mut bypass.rule, MAX_NAME_CHARS);
        }
        status.forward_bypass.truncate(MAX_BYPASSES);
        for endpoint in &mut status.endpoints {
            shorten_in_place(&mut endpoint.address, MAX_NAME_CHARS);
            if let Some(error) = endpoint.error.as_mut() {
                shorten_in_place(error, MAX_NAME_CHARS);
            }
        }
        status.omitted = Omitted {
            ports: within_budget(&mut status.ports, PORTS_BUDGET),
            host_network: within_budget(&mut status.host_network, HOST_NETWORK_BUDGET),
            rejected: within_budget(&mut status.rejected, REJECTED_BUDGET),
            port_drops: within_budget(&mut status.drops.ports, PORT_DROPS_BUDGET),
            outbound: (status.outbound.as_mut())
                .map_or(0, |rows| within_budget(rows, OUTBOUND_BUDGET)),
            east_west: (status.east_west.as_mut())
                .map_or(0, |rows| within_budget(rows, EAST_WEST_BUDGET)),
        };
        // The budgets count entries' JSON; escapes in the texts around them
        // (a control character is six bytes) can still push the whole past
        // the limit: halve the lists until it fits, counting what goes.
        while serde_json::to_vec(&status).map_or(usize::MAX, |json| json.len()) > MAX_DOCUMENT_BYTES
        {
            let halved = [
                (&mut status.omitted.ports, halve(&mut status.ports)),
                (&mut status.omitted.rejected, halve(&mut status.rejected)),
                (
                    &mut status.omitted.port_drops,
                    halve(&mut status.drops.ports),
                ),
                (
                    &mut status.omitted.host_network,
                    halve(&mut status.host_network),
                ),
                (
                    &mut status.omitted.outbound,
                    status.outbound.as_mut().map_or(0, halve),
                ),
                (
                    &mut status.omitted.east_west,
                    status.east_west.as_mut().map_or(0, halve),
                ),
            ];
            let mut any = false;
            for (omitted, cut) in halved {
                *omitted += cut;
                any |= cut > 0;
            }
            if !any {
                // Only fixed-size texts are left: cut them to a line each.
                for text in [
                    status.policy.last_error.as_mut(),
                    status.policy.fallback.as_mut(),
                    status.docker.last_error.as_mut(),
                    status.reconcile.error.as_mut(),
                    status.drift.last_found.as_mut(),
                ]
                .into_iter()
                .flatten()
                {
                    shorten_in_place(text, MAX_NAME_CHARS);
                }
                break;
            }
        }
        status
    }
}

/// One rule above `FORWARD -> DOCKER-USER` that may let connections
/// through unjudged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BypassStatus {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// The rule as `iptables-save` prints it, after `-A FORWARD `.
    pub rule: String,
}

/// Width of the label column of the header lines (`reconcile` plus a space).
const LABEL_WIDTH: usize = 10;

/// What `dockfw status` prints for humans: a header of labelled lines, the
/// ports table, then one warning per host-networked container.
pub fn render_text(status: &Status) -> String {
    let mut out = String::new();
    for (label, line) in header_lines(status) {
        out.push_str(&format!("{label:<LABEL_WIDTH$}{line}\n"));
    }
    out.push('\n');
    out.push_str(&ports_table(&status.ports));
    if let Some(rows) = &status.outbound {
        out.push_str(&outbound_table(rows));
    }
    if let Some(rows) = &status.east_west {
        out.push_str(&east_west_table(rows, &status.east_west_not_enforced));
    }
    if status.omitted.any() {
        out.push_str(&omitted_line(&status.omitted));
    }
    if !status.host_network.is_empty()
        || !status.rejected.is_empty()
        || !status.forward_bypass.is_empty()
        || !status.east_west_not_enforced.is_empty()
    {
        out.push('\n');
    }
    for n in &status.east_west_not_enforced {
        out.push_str(&format!(
            "warning: network \"{}\" ({}, {}): same-bridge east-west traffic is not judged: {}\n",
            escape(&n.network),
            escape(&n.bridge),
            escape(&n.family),
            escape(&n.reason)
        ));
    }
    for b in &status.forward_bypass {
        out.push_str(&format!(
            "BYPASSED: {} FORWARD rule \"{}\" sits above the jump to DOCKER-USER: \
             what it accepts is never judged by dockfw\n",
            escape(&b.family),
            escape(&b.rule)
        ));
    }
    for name in &status.host_network {
        out.push_str(&format!(
            "warning: container \"{}\" uses host networking; DOCKER-USER cannot protect it\n",
            escape(name)
        ));
    }
    for r in &status.rejected {
        out.push_str(&format!(
            "rejected: {} \"{}\": {}\n",
            escape(&r.kind),
            escape(&r.name),
            escape(&r.reason)
        ));
    }
    out
}

/// What a status too large to send whole left out, in words.
fn omitted_line(omitted: &Omitted) -> String {
    let parts: Vec<String> = [
        (omitted.ports, "port rows"),
        (omitted.host_network, "host-network containers"),
        (omitted.rejected, "rejected objects"),
        (omitted.port_drops, "per-port drop counts"),
        (omitted.outbound, "outbound rows"),
        (omitted.east_west, "east-west rows"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{} {what}", thousands(*n as u64)))
    .collect();
    format!(
        "… not shown (the status document is bounded to {} MiB): {}\n",
        MAX_DOCUMENT_BYTES / (1024 * 1024),
        parts.join(", ")
    )
}

/// `text` with every control character (ESC, newline, carriage return, ...)
/// and every invisible format character (bidi overrides and isolates, zero
/// widths, the line and paragraph separators: see [`is_format`]) written
/// as a visible escape (`\u{202e}`), so that a name Docker reports cannot
/// move the cursor, recolour the terminal, forge table rows or reorder what
/// the reader sees.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| c.is_control() || is_format(c);
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Unicode general category Cf (format: bidi embeddings, overrides and
/// isolates U+202A–U+202E and U+2066–U+2069, marks U+200E/U+200F and
/// U+061C, zero widths, the BOM, tag characters, ...; as of Unicode 16),
/// plus the line and paragraph separators U+2028/U+2029 (Zl, Zp), which
/// some terminals and viewers break lines at.
pub fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// The labelled lines above the table; an empty label continues the line above.
fn header_lines(status: &Status) -> Vec<(&'static str, String)> {
    let mut lines = vec![("policy", policy_line(&status.policy))];
    if let Some(fallback) = &status.policy.fallback {
        lines.push(("", format!("POLICY FILE INVALID: {fallback}")));
    }
    if let Some(error) = &status.policy.last_error {
        let what = if status.policy.fallback.is_some() {
            "errors"
        } else {
            "last reload refused"
        };
        let mut errors = error.lines();
        lines.push(("", format!("{what}: {}", errors.next().unwrap_or_default())));
        lines.extend(errors.map(|line| ("", format!("  {line}"))));
    }
    if let Some(chosen) = &status.backend {
        lines.push((
            "backend",
            format!("{} ({})", chosen.backend, escape(&chosen.why)),
        ));
    }
    lines.push(("docker", docker_line(&status.docker)));
    lines.push(("reconcile", reconcile_line(&status.reconcile)));
    lines.push(("rules", rules_line(&status.rules)));
    if status.drift.repairs > 0 {
        lines.push(("drift", drift_line(&status.drift)));
    }
    if status.inventory.repairs > 0 {
        lines.push(("inventory", inventory_line(&status.inventory)));
    }
    if let Some(line) = drops_line(&status.drops) {
        lines.push(("drops", line));
    }
    if let Some(line) = port_drops_line(&status.drops) {
        lines.push(("", line));
    }
    if let Some(line) = endpoints_line(&status.endpoints) {
        lines.push(("endpoints", line));
    }
    lines
        .into_iter()
        .map(|(label, line)| (label, escape(&line).into_owned()))
        .collect()
}

/// `control /run/dockfw/dockfw.sock listening; metrics 0.0.0.0:9469
/// FAILING (3 binds failed, retrying): cannot listen on ...`.
fn endpoints_line(endpoints: &[EndpointStatus]) -> Option<String> {
    let each: Vec<String> = endpoints
        .iter()
        .map(|e| {
            let state = match e.state {
                EndpointState::Waiting => "waiting for the first pass".to_owned(),
                EndpointState::Listening => "listening".to_owned(),
                EndpointState::Failing => format!(
                    "FAILING ({} bind{} failed, retrying): {}",
                    e.failures,
                    if e.failures == 1 { "" } else { "s" },
                    e.error.as_deref().unwrap_or("unknown error")
                ),
            };
            format!("{} {} {state}", e.name, e.address)
        })
        .collect();
    (!each.is_empty()).then(|| each.join("; "))
}

/// `2 repairs by the full listing, last 2026-…: containers: +1 -0 ~0`.
fn inventory_line(inventory: &InventoryStatus) -> String {
    let plural = if inventory.repairs == 1 { "" } else { "s" };
    let mut line = format!(
        "{} repair{plural} by the full listing (events missed something)",
        inventory.repairs
    );
    if let (Some(at), Some(found)) = (&inventory.last_repair_at, &inventory.last_repair) {
        line.push_str(&format!(", last {at}: {found}"));
    }
    line
}

fn drift_line(drift: &DriftStatus) -> String {
    let plural = if drift.repairs == 1 { "" } else { "s" };
    let mut line = format!("{} repair{plural}", drift.repairs);
    if let (Some(at), Some(found)) = (&drift.last_at, &drift.last_found) {
        line.push_str(&format!(", last {at}: {found}"));
    }
    line
}

/// `1,204 by deny entry at line 33, 17 by default deny (new connections
/// since 10:02 UTC)`; nothing when no drop rule is installed.
fn drops_line(drops: &DropsStatus) -> Option<String> {
    let loopback = Origin::Loopback.label();
    // The loopback drop is in every rule set: shown once it dropped something.
    let shown = |e: &&EntryDrops| e.dropped > 0 || e.entry != loopback;
    if !drops.entries.iter().any(|e| shown(&e)) {
        return None;
    }
    let counts: Vec<String> = drops
        .entries
        .iter()
        .filter(shown)
        .map(|e| {
            let what =
                Origin::from_label(&e.entry).map_or_else(|| e.entry.clone(), Origin::description);
            format!("{} by {what}", thousands(e.dropped))
        })
        .collect();
    // `2026-11-30T10:02:33Z` -> `10:02 UTC`.
    let since = drops
        .since
        .as_deref()
        .and_then(|at| at.get(11..16))
        .map(|hm| format!(" since {hm} UTC"))
        .unwrap_or_default();
    Some(format!("{} (new connections{since})", counts.join(", ")))
}

/// `by port: 1,204 to tcp/5432, 3 to udp/53`; nothing when no port had a
/// drop.
fn port_drops_line(drops: &DropsStatus) -> Option<String> {
    let counts: Vec<String> = drops
        .ports
        .iter()
        .filter(|p| p.dropped > 0)
        .map(|p| {
            let shared: Vec<String> = p.shared_with.iter().map(u16::to_string).collect();
            let shared = match shared.as_slice() {
                [] => String::new(),
                ports => format!(" (shared with {})", ports.join(", ")),
            };
            format!("{} to {}/{}{shared}", thousands(p.dropped), p.proto, p.port)
        })
        .collect();
    (!counts.is_empty()).then(|| format!("by port: {}", counts.join(", ")))
}

/// `1204` -> `1,204`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn policy_line(policy: &PolicyStatus) -> String {
    let loaded = match &policy.loaded_at {
        Some(at) => format!("loaded {at}"),
        None => "not loaded".to_string(),
    };
    format!(
        "{} (default {}, {} allow, {} deny), {loaded}",
        policy.path, policy.default, policy.allow_entries, policy.deny_entries
    )
}

fn docker_line(docker: &DockerStatus) -> String {
    if !docker.connected {
        return match &docker.last_error {
            Some(error) => format!("disconnected from {}: {error}", docker.endpoint),
            None => format!("disconnected from {}", docker.endpoint),
        };
    }
    match (&docker.version, &docker.api_version) {
        (Some(version), Some(api)) => {
            format!(
                "connected, engine {version} (API {api}) at {}",
                docker.endpoint
            )
        }
        (Some(version), None) => format!("connected, engine {version} at {}", docker.endpoint),
        (None, _) => format!("connected at {}", docker.endpoint),
    }
}

fn reconcile_line(reconcile: &ReconcileStatus) -> String {
    let Some(at) = &reconcile.last_at else {
        return "pending (no reconcile yet)".to_string();
    };
    let mut line = format!("{at}, {}", reconcile.result);
    if let Some(ms) = reconcile.duration_ms {
        line.push_str(&format!(" in {ms} ms"));
    }
    if let Some(error) = &reconcile.error {
        line.push_str(&format!(": {error}"));
    }
    let plural = if reconcile.applies == 1 {
        "apply"
    } else {
        "applies"
    };
    line.push_str(&format!(" ({} {plural} since start)", reconcile.applies));
    line
}

fn rules_line(rules: &RulesStatus) -> String {
    format!(
        "{}, {}",
        family_text("ipv4", &rules.ipv4),
        family_text("ipv6", &rules.ipv6)
    )
}

fn family_text(name: &str, family: &FamilyStatus) -> String {
    match &family.variant {
        Some(variant) => format!("{name} {} ({variant})", family.rules),
        None => format!("{name} {}", family.rules),
    }
}

const TABLE_HEADINGS: [&str; 7] = [
    "CONTAINER",
    "NETWORK",
    "HOST",
    "CONTAINER",
    "PROTO",
    "VERDICT",
    "WHY",
];

/// The ports table, columns as wide as their content, two spaces apart.
fn ports_table(ports: &[PortStatus]) -> String {
    if ports.is_empty() {
        return "no published ports\n".to_string();
    }
    let mut rows = vec![TABLE_HEADINGS.map(String::from)];
    rows.extend(ports.iter().map(port_row));
    let mut widths = [0; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter().map(|row| table_line(row, &widths)).collect()
}

/// The outbound verdicts, one line per container: `OUTBOUND` heading,
/// then `web  isolated (isolate entry at line 5); allow ...; to host:
/// allow`, names escaped and cut as in the ports table.
fn outbound_table(rows: &[OutboundStatus]) -> String {
    let mut out = String::from("\nOUTBOUND (new connections containers start)\n");
    if rows.is_empty() {
        out.push_str("no containers\n");
        return out;
    }
    let names: Vec<String> = (rows.iter())
        .map(|r| escape(&shorten(&r.container, TABLE_NAME_CHARS)).into_owned())
        .collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (row, name) in rows.iter().zip(&names) {
        let mut parts = vec![row.why.clone()];
        parts.extend(row.entries.iter().cloned());
        parts.push(format!("to host: {}", row.to_host));
        let line = format!("{name:<width$}  {}", parts.join("; "));
        out.push_str(&escape(&line));
        out.push('\n');
    }
    out
}

/// The east-west verdicts, one line per container: `EAST-WEST` heading,
/// then `api  on backend: isolated (isolate entry at line 5); allow from
/// ...; as source: ...`, names escaped and cut as in the ports table; then
/// the networks whose same-bridge traffic is not judged, in one line (each
/// has its warning, with why, under the tables).
fn east_west_table(rows: &[EastWestStatus], not_enforced: &[NotEnforcedStatus]) -> String {
    let mut out = String::from("\nEAST-WEST (new connections from other containers)\n");
    if rows.is_empty() {
        out.push_str("no containers\n");
    }
    let names: Vec<String> = (rows.iter())
        .map(|r| escape(&shorten(&r.container, TABLE_NAME_CHARS)).into_owned())
        .collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (row, name) in rows.iter().zip(&names) {
        let mut parts: Vec<String> = (row.networks.iter())
            .map(|n| {
                let network = shorten(&n.network, TABLE_NAME_CHARS);
                format!("on {network}: {}", n.why)
            })
            .collect();
        if parts.is_empty() {
            parts.push("on no bridge network: not judged".to_owned());
        }
        parts.extend(row.entries.iter().cloned());
        parts.extend(row.as_source.iter().map(|e| format!("as source: {e}")));
        let line = format!("{name:<width$}  {}", parts.join("; "));
        out.push_str(&escape(&line));
        out.push('\n');
    }
    if !not_enforced.is_empty() {
        let networks: Vec<String> = (not_enforced.iter())
            .map(|n| {
                let network = shorten(&n.network, TABLE_NAME_CHARS);
                format!(
                    "\"{}\" ({}, {})",
                    escape(&network),
                    escape(&n.bridge),
                    escape(&n.family)
                )
            })
            .collect();
        out.push_str(&format!(
            "same-bridge traffic not judged on {} (see the warnings below)\n",
            networks.join(", ")
        ));
    }
    out
}

/// Longest container or network name in the table, in characters; the
/// rest is cut, marked `…+N` (`--json` has up to [`MAX_NAME_CHARS`]).
const TABLE_NAME_CHARS: usize = 64;

fn port_row(port: &PortStatus) -> [String; 7] {
    [
        shorten(&port.container, TABLE_NAME_CHARS).into_owned(),
        shorten(&port.network, TABLE_NAME_CHARS).into_owned(),
        port.host_addr(),
        port.container_port.to_string(),
        port.proto.clone(),
        port.verdict_text().to_string(),
        port.why.clone(),
    ]
    .map(|cell| escape(&cell).into_owned())
}

/// One table line, columns padded to their widths; no line ends in spaces.
fn table_line(row: &[String; 7], widths: &[usize; 7]) -> String {
    let mut line = String::new();
    for (cell, width) in row.iter().zip(widths) {
        let pad = width - cell.chars().count();
        line.push_str(&format!("{cell}{:pad$}  ", ""));
    }
    let mut line = line.trim_end().to_owned();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(
        container: &str,
        host_ip: &str,
        port: u16,
        verdict: Verdict,
        detail: &str,
    ) -> PortStatus {
        PortStatus {
            container: container.to_string(),
            network: "bridge".to_string(),
            host_ip: host_ip.to_string(),
            host_port: port,
            container_port: port,
            proto: "tcp".to_string(),
            verdict,
            detail: detail.to_string(),
            why: String::new(),
            gateway_mode: "nat".to_string(),
        }
    }

    fn healthy() -> Status {
        let mut db = port(
            "db",
            "0.0.0.0",
            5432,
            Verdict::Restricted,
            "open to 192.0.2.16/28",
        );
        db.network = "shop".to_string();
        Status {
            policy: PolicyStatus {
                path: "/etc/dockfw/policy.toml".to_string(),
                loaded_at: Some("2026-11-30T09:12:03Z".to_string()),
                default: "deny".to_string(),
                allow_entries: 2,
                deny_entries: 1,
                last_error: None,
                fallback: None,
            },
            docker: DockerStatus {
                endpoint: "unix:///var/run/docker.sock".to_string(),
                connected: true,
                version: Some("20.10.24".to_string()),
                api_version: Some("1.41".to_string()),
                last_error: None,
            },
            reconcile: ReconcileStatus {
                last_at: Some("2026-11-30T09:12:04Z".to_string()),
                duration_ms: Some(23),
                result: "applied".to_string(),
                error: None,
                applies: 5,
                inventory: "engine".to_string(),
                passes: Default::default(),
            },
            rules: RulesStatus {
                ipv4: FamilyStatus {
                    rules: 9,
                    variant: Some("nft".to_string()),
                },
                ipv6: FamilyStatus {
                    rules: 9,
                    variant: Some("nft".to_string()),
                },
            },
            ports: vec![
                PortStatus {
                    why: "allow entry at line 6".to_string(),
                    ..port("web", "0.0.0.0", 80, Verdict::Open, "open to anywhere")
                },
                db,
                PortStatus {
                    why: "bound to loopback".to_string(),
                    ..port("cache", "127.0.0.1", 6379, Verdict::Local, "local only")
                },
            ],
            host_network: vec![],
            rejected: vec![],
            forward_bypass: vec![],
            east_west_not_enforced: vec![],
            drift: DriftStatus::default(),
            inventory: InventoryStatus::default(),
            drops: DropsStatus::default(),
            backend: None,
            endpoints: vec![],
            omitted: Omitted::default(),
            outbound: None,
            east_west: None,
        }
    }

    #[test]
    fn the_backend_and_why_are_a_line_before_docker() {
        let mut status = healthy();
        status.backend = Some(crate::choice::Chosen {
            backend: crate::choice::BackendKind::Nftables,
            why: "auto: the engine reports its nftables firewall\x1b[2J".to_string(),
        });
        let text = render_text(&status);
        assert!(
            text.contains(
                "\nbackend   nftables (auto: the engine reports its nftables firewall\\u{1b}[2J)\n\
                 docker    connected"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["backend"]["backend"], "nftables");
        assert_eq!(
            json["backend"]["why"],
            "auto: the engine reports its nftables firewall\x1b[2J"
        );
    }

    #[test]
    fn healthy_daemon_renders_header_and_aligned_table() {
        let expected = "\
policy    /etc/dockfw/policy.toml (default deny, 2 allow, 1 deny), loaded 2026-11-30T09:12:03Z
docker    connected, engine 20.10.24 (API 1.41) at unix:///var/run/docker.sock
reconcile 2026-11-30T09:12:04Z, applied in 23 ms (5 applies since start)
rules     ipv4 9 (nft), ipv6 9 (nft)

CONTAINER  NETWORK  HOST            CONTAINER  PROTO  VERDICT                WHY
web        bridge   0.0.0.0:80      80         tcp    open to anywhere       allow entry at line 6
db         shop     0.0.0.0:5432    5432       tcp    open to 192.0.2.16/28
cache      bridge   127.0.0.1:6379  6379       tcp    local only             bound to loopback
";
        assert_eq!(render_text(&healthy()), expected);
    }

    #[test]
    fn refused_reload_and_host_network_are_reported() {
        let mut status = healthy();
        status.policy.last_error =
            Some("/etc/dockfw/policy.toml:4:9: ports: port 0 is out of range 1-65535".to_string());
        status.ports.truncate(1);
        status.host_network = vec!["netdebug".to_string()];
        let expected = "\
policy    /etc/dockfw/policy.toml (default deny, 2 allow, 1 deny), loaded 2026-11-30T09:12:03Z
          last reload refused: /etc/dockfw/policy.toml:4:9: ports: port 0 is out of range 1-65535
docker    connected, engine 20.10.24 (API 1.41) at unix:///var/run/docker.sock
reconcile 2026-11-30T09:12:04Z, applied in 23 ms (5 applies since start)
rules     ipv4 9 (nft), ipv6 9 (nft)

CONTAINER  NETWORK  HOST        CONTAINER  PROTO  VERDICT           WHY
web        bridge   0.0.0.0:80  80         tcp    open to anywhere  allow entry at line 6

warning: container \"netdebug\" uses host networking; DOCKER-USER cannot protect it
";
        assert_eq!(render_text(&status), expected);
    }

    #[test]
    fn a_network_whose_same_bridge_traffic_is_not_judged_is_named() {
        let mut status = healthy();
        status.east_west_not_enforced = vec![NotEnforcedStatus {
            network: "shop\u{1b}[2J".to_string(),
            bridge: "br-0123456789ab".to_string(),
            family: "ipv6".to_string(),
            reason: "the global switch is off, and its own flag: cannot run /sbin/ip".to_string(),
        }];
        let text = render_text(&status);
        assert!(
            text.contains(
                "warning: network \"shop\\u{1b}[2J\" (br-0123456789ab, ipv6): same-bridge \
                 east-west traffic is not judged: the global switch is off, and its own flag: \
                 cannot run /sbin/ip\n"
            ),
            "{text}"
        );
        status.east_west_not_enforced[0].network = "n".repeat(4 * MAX_NAME_CHARS);
        let bounded = status.bounded();
        let network = &bounded.east_west_not_enforced[0].network;
        assert!(network.chars().count() < 2 * MAX_NAME_CHARS, "{network}");
    }

    #[test]
    fn docker_supplied_strings_cannot_forge_rows_or_move_the_cursor() {
        let mut status = healthy();
        status.ports.truncate(1);
        status.ports[0].container = "web\u{1b}[2J".to_string();
        status.ports[0].network = "evil\nweb        bridge   0.0.0.0:22".to_string();
        status.host_network = vec!["h\rx".to_string()];
        status.rejected = vec![RejectedStatus {
            kind: "network".to_string(),
            name: "\u{1b}]0;pwned\u{7}".to_string(),
            reason: "bridge interface name \"+\" is refused".to_string(),
        }];
        let text = render_text(&status);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with("web")).count(),
            1,
            "{text}"
        );
        assert!(text.contains("web\\u{1b}[2J  evil\\nweb"), "{text}");
        assert!(
            text.contains("rejected: network \"\\u{1b}]0;pwned\\u{7}\": bridge interface name")
        );
        assert!(text.contains("container \"h\\rx\""));
    }

    #[test]
    fn a_failing_endpoint_is_shown_with_why_and_how_often() {
        let mut status = healthy();
        status.endpoints = vec![
            EndpointStatus {
                state: EndpointState::Listening,
                ..EndpointStatus::waiting("control", "/run/dockfw/dockfw.sock".into())
            },
            EndpointStatus {
                state: EndpointState::Failing,
                error: Some("cannot listen on 0.0.0.0:9469: Address in use".into()),
                failures: 3,
                ..EndpointStatus::waiting("metrics", "0.0.0.0:9469".into())
            },
        ];
        let text = render_text(&status);
        assert!(
            text.contains(
                "endpoints control /run/dockfw/dockfw.sock listening; metrics 0.0.0.0:9469 \
                 FAILING (3 binds failed, retrying): cannot listen on 0.0.0.0:9469: Address in use\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["endpoints"][1]["state"], "failing");
        assert_eq!(json["endpoints"][1]["failures"], 3);
    }

    #[test]
    fn bidi_and_other_format_characters_in_docker_names_are_shown_escaped() {
        let mut status = healthy();
        // Renders as "web" then, right to left, a forged "22:0.0.0.0".
        status.ports[0].container = "web\u{202E}22:0.0.0.0\u{202C}".to_string();
        status.ports[1].network = "shop\u{2066}x\u{2069}\u{200E}\u{200F}\u{061C}".to_string();
        status.host_network = vec!["zero\u{200B}width\u{FEFF}\u{2028}sep".to_string()];
        status.rejected = vec![RejectedStatus {
            kind: "network".into(),
            name: "tag\u{E0041}\u{00AD}".into(),
            reason: "refused".into(),
        }];
        let text = render_text(&status);
        for c in text.chars() {
            assert!(!is_format(c), "raw U+{:04X} in:\n{text}", u32::from(c));
        }
        assert!(text.contains("web\\u{202e}22:0.0.0.0\\u{202c}"), "{text}");
        assert!(
            text.contains("shop\\u{2066}x\\u{2069}\\u{200e}\\u{200f}\\u{61c}"),
            "{text}"
        );
        assert!(
            text.contains("zero\\u{200b}width\\u{feff}\\u{2028}sep"),
            "{text}"
        );
        assert!(text.contains("tag\\u{e0041}\\u{ad}"), "{text}");
        // Letters of every script stay as they are.
        assert_eq!(
            escape("caf\u{e9}-\u{5e9}\u{5dc}\u{5d5}\u{5dd}-\u{65e5}"),
            "caf\u{e9}-\u{5e9}\u{5dc}\u{5d5}\u{5dd}-\u{65e5}"
        );
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn an_invalid_policy_at_start_is_shown_loudly() {
        let mut status = healthy();
        status.policy.fallback = Some("enforcing deny all inbound to containers".to_string());
        status.policy.last_error = Some("p.toml:2:11: a\np.toml:3:1: b".to_string());
        let text = render_text(&status);
        assert!(
            text.contains(
                "          POLICY FILE INVALID: enforcing deny all inbound to containers\n\
                 \x20         errors: p.toml:2:11: a\n\
                 \x20           p.toml:3:1: b\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_systemd_status_line_says_what_is_protected() {
        let mut status = healthy();
        status.ports[2].verdict = Verdict::Blocked;
        assert_eq!(
            status.summary(),
            "3 containers with published ports, 3 ports (1 blocked); last pass applied in 23 ms"
        );
        status.policy.fallback = Some("deny all".into());
        status.docker.connected = false;
        assert!(
            status
                .summary()
                .ends_with("; POLICY FILE INVALID; docker not connected")
        );
    }

    #[test]
    fn fresh_daemon_with_no_ports_says_so() {
        let status = Status {
            policy: PolicyStatus {
                path: "/etc/dockfw/policy.toml".to_string(),
                default: "deny".to_string(),
                ..PolicyStatus::default()
            },
            docker: DockerStatus {
                endpoint: "unix:///var/run/docker.sock".to_string(),
                last_error: Some("connection refused".to_string()),
                ..DockerStatus::default()
            },
            ..Status::default()
        };
        let expected = "\
policy    /etc/dockfw/policy.toml (default deny, 0 allow, 0 deny), not loaded
docker    disconnected from unix:///var/run/docker.sock: connection refused
reconcile pending (no reconcile yet)
rules     ipv4 0, ipv6 0

no published ports
";
        assert_eq!(render_text(&status), expected);
    }

    #[test]
    fn failed_reconcile_shows_error_and_singular_apply() {
        let reconcile = ReconcileStatus {
            last_at: Some("2026-11-30T09:12:04Z".to_string()),
            duration_ms: Some(4),
            result: "failed".to_string(),
            error: Some("iptables-restore exited with status 1".to_string()),
            applies: 1,
            inventory: "engine".to_string(),
            passes: Default::default(),
        };
        assert_eq!(
            reconcile_line(&reconcile),
            "2026-11-30T09:12:04Z, failed in 4 ms: iptables-restore exited with status 1 \
             (1 apply since start)"
        );
    }

    #[test]
    fn drops_are_shown_per_entry_since_the_start() {
        let mut status = healthy();
        assert!(!render_text(&status).contains("drops"), "none installed");
        status.drops.entries = vec![EntryDrops {
            entry: "loopback".to_string(),
            line: None,
            dropped: 0,
        }];
        assert!(
            !render_text(&status).contains("drops"),
            "the loopback drop, always there, is shown once it dropped something"
        );
        status.drops = DropsStatus {
            since: Some("2026-11-30T10:02:33Z".to_string()),
            entries: vec![
                EntryDrops {
                    entry: "deny@33".to_string(),
                    line: Some(33),
                    dropped: 1204,
                },
                EntryDrops {
                    entry: "default".to_string(),
                    line: None,
                    dropped: 17,
                },
                EntryDrops {
                    entry: "loopback".to_string(),
                    line: None,
                    dropped: 2,
                },
                EntryDrops {
                    entry: "out-deny@12".to_string(),
                    line: Some(12),
                    dropped: 4,
                },
                EntryDrops {
                    entry: "out-isolated".to_string(),
                    line: None,
                    dropped: 5,
                },
                EntryDrops {
                    entry: "to-host".to_string(),
                    line: None,
                    dropped: 6,
                },
            ],
            ports: vec![
                PortDrops {
                    proto: "tcp".to_string(),
                    port: 5432,
                    dropped: 1220,
                    shared_with: Vec::new(),
                },
                PortDrops {
                    proto: "tcp".to_string(),
                    port: 8080,
                    dropped: 5,
                    shared_with: vec![8081],
                },
                PortDrops {
                    proto: "udp".to_string(),
                    port: 53,
                    dropped: 0,
                    shared_with: Vec::new(),
                },
            ],
        };
        assert!(
            render_text(&status).contains(
                "\ndrops     1,204 by deny entry at line 33, 17 by default deny, 2 by \
                 loopback guard (addressed to 127.0.0.1 or ::1), 4 by outbound deny entry at \
                 line 12, 5 by outbound isolation, 6 by to_host deny (new connections since \
                 10:02 UTC)\n          by port: 1,220 to tcp/5432, \
                 5 to tcp/8080 (shared with 8081)\n"
            ),
            "{}",
            render_text(&status)
        );
        assert_eq!(
            [0, 999, 1000, 1234567].map(thousands),
            ["0", "999", "1,000", "1,234,567"]
        );
        let json = serde_json::to_value(&status).expect("serializes");
        assert_eq!(json["drops"]["entries"][0]["entry"], "deny@33");
        assert_eq!(json["drops"]["entries"][0]["dropped"], 1204);
        assert_eq!(json["drops"]["ports"][0]["port"], 5432);
        assert_eq!(json["drops"]["ports"][0]["dropped"], 1220);
        assert_eq!(json["drops"]["ports"][0].get("shared_with"), None);
        assert_eq!(json["drops"]["ports"][1]["shared_with"][0], 8081);
    }

    #[test]
    fn outbound_verdicts_are_shown_per_container_escaped_and_only_with_an_outbound_table() {
        let mut status = healthy();
        let v1 = render_text(&status);
        assert!(!v1.contains("OUTBOUND"), "{v1}");
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(
            json.get("outbound"),
            None,
            "a version 1 document is unchanged"
        );
        assert_eq!(json["omitted"].get("outbound"), None);
        status.outbound = Some(vec![
            OutboundStatus {
                container: "api\u{1b}[2J".into(),
                default: "deny".into(),
                why: "isolated (isolate entry at line 5)".into(),
                entries: vec!["allow 192.0.2.10 tcp port 443 (allow entry at line 12)".into()],
                to_host: "allow".into(),
            },
            OutboundStatus {
                container: "web".into(),
                default: "allow".into(),
                why: "allow by default".into(),
                entries: vec!["deny 169.254.169.254 any protocol (deny entry at line 20)".into()],
                to_host: "allow".into(),
            },
        ]);
        let text = render_text(&status);
        assert!(
            text.contains(
                "\nOUTBOUND (new connections containers start)\n\
                 api\\u{1b}[2J  isolated (isolate entry at line 5); allow 192.0.2.10 tcp port 443 \
                 (allow entry at line 12); to host: allow\n\
                 web           allow by default; deny 169.254.169.254 any protocol (deny entry at \
                 line 20); to host: allow\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["outbound"][1]["default"], "allow");
        assert_eq!(
            json["outbound"][0]["entries"][0],
            status.outbound.as_ref().unwrap()[0].entries[0]
        );
        let mut many = status.clone();
        many.outbound = Some(vec![
            OutboundStatus {
                container: "c".repeat(1000),
                entries: vec!["e".repeat(1000); 100],
                ..OutboundStatus::default()
            };
            3
        ]);
        let bounded = many.bounded();
        let row = &bounded.outbound.as_ref().expect("rows")[0];
        assert_eq!(row.entries.len(), MAX_OUTBOUND_ENTRIES);
        assert!(row.container.chars().count() < 1000 && row.entries[0].chars().count() < 1000);
    }

    #[test]
    fn east_west_verdicts_are_shown_per_container_and_network_escaped_and_bounded() {
        let mut status = healthy();
        assert!(!render_text(&status).contains("EAST-WEST"));
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json.get("east_west"), None, "no [east_west] table, no key");
        assert_eq!(json["omitted"].get("east_west"), None);
        let reach = |network: &str, default: &str, why: &str| EastWestReach {
            network: network.into(),
            default: default.into(),
            why: why.into(),
        };
        let allow =
            "allow from proxy to any container on back tcp port 8080 (allow entry at line 7)";
        status.east_west = Some(vec![
            EastWestStatus {
                container: "api".into(),
                networks: vec![
                    reach(
                        "back\u{1b}[2J",
                        "deny",
                        "isolated (isolate entry at line 4)",
                    ),
                    reach("front", "allow", "allow by default"),
                ],
                entries: vec![allow.into()],
                as_source: Vec::new(),
            },
            EastWestStatus {
                container: "proxy".into(),
                networks: vec![reach("back", "allow", "allow by default")],
                entries: Vec::new(),
                as_source: vec![allow.into()],
            },
        ]);
        status.east_west_not_enforced = vec![NotEnforcedStatus {
            network: "back".into(),
            bridge: "br-0123456789ab".into(),
            family: "ipv6".into(),
            reason: "bridge netfilter is not loaded".into(),
        }];
        let text = render_text(&status);
        let expected = format!(
            "\nEAST-WEST (new connections from other containers)\n\
             api    on back\\u{{1b}}[2J: isolated (isolate entry at line 4); on front: allow by \
             default; {allow}\n\
             proxy  on back: allow by default; as source: {allow}\n\
             same-bridge traffic not judged on \"back\" (br-0123456789ab, ipv6) (see the \
             warnings below)\n"
        );
        assert!(text.contains(&expected), "{text}");
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["east_west"][0]["networks"][0]["default"], "deny");
        assert_eq!(json["east_west"][1]["as_source"][0], allow);
        let mut many = status.clone();
        many.east_west = Some(vec![
            EastWestStatus {
                container: "c".repeat(1000),
                networks: vec![reach(&"n".repeat(1000), "deny", "x"); 100],
                entries: vec!["e".repeat(1000); 100],
                as_source: vec!["s".repeat(1000); 100],
            };
            3
        ]);
        let bounded = many.bounded();
        let row = &bounded.east_west.as_ref().expect("rows")[0];
        assert_eq!(row.entries.len(), MAX_OUTBOUND_ENTRIES);
        assert_eq!(row.as_source.len(), MAX_OUTBOUND_ENTRIES);
        assert_eq!(row.networks.len(), MAX_OUTBOUND_ENTRIES);
        assert!(row.networks[0].network.chars().count() < 1000);
        assert!(row.container.chars().count() < 1000 && row.as_source[0].chars().count() < 1000);
    }

    #[test]
    fn ipv6_host_address_is_bracketed() {
        let row = port("web", "::", 80, Verdict::Open, "");
        assert_eq!(row.host_addr(), "[::]:80");
        assert_eq!(port_row(&row)[5], "open");
    }

    #[test]
    fn names_are_cut_with_a_marker_counting_what_was_cut() {
        assert_eq!(shorten("short", 8), "short");
        assert_eq!(shorten("exactly8", 8), "exactly8");
        assert_eq!(shorten("ninechars", 8), "ninechar…+1");
        assert_eq!(shorten("\u{e9}\u{e9}\u{e9}\u{e9}", 2), "\u{e9}\u{e9}…+2");
        let mut status = healthy();
        status.ports[0].container = "c".repeat(1000);
        let text = render_text(&status);
        let expected = format!("{}…+936 ", "c".repeat(64));
        assert!(text.contains(&expected), "{text}");
        let bounded = status.bounded();
        assert_eq!(
            bounded.ports[0].container,
            format!("{}…+744", "c".repeat(MAX_NAME_CHARS))
        );
        assert_eq!(bounded.omitted, Omitted::default());
        assert!(!render_text(&bounded).contains("not shown"));
    }

    #[test]
    fn a_status_far_over_the_bound_is_cut_to_it_and_says_what_it_left_out() {
        // 4,000 ports of containers with 300-character names of control
        // characters (6 bytes each in JSON): about 30 MB unbounded.
        let long = "\u{1b}".repeat(300);
        let mut status = healthy();
        status.ports = (0..4_000u32)
            .map(|i| PortStatus {
                container: format!("{long}{i}"),
                network: long.clone(),
                why: long.clone(),
                ..port("x", "0.0.0.0", (i % 65535) as u16, Verdict::Blocked, &long)
            })
            .collect();
        status.host_network = vec![long.clone(); 2_000];
        status.rejected = vec![
            RejectedStatus {
                kind: "network".into(),
                name: long.clone(),
                reason: long.clone(),
            };
            2_000
        ];
        status.drops.ports = vec![PortDrops::default(); 100_000];
        status.outbound = Some(vec![
            OutboundStatus {
                container: long.clone(),
                entries: vec![long.clone(); 4],
                ..OutboundStatus::default()
            };
            4_000
        ]);
        status.policy.last_error = Some("e".repeat(10_000_000));
        let bounded = status.bounded();
        let json = serde_json::to_vec(&bounded).expect("json");
        assert!(json.len() < MAX_DOCUMENT_BYTES, "{} bytes", json.len());
        let o = &bounded.omitted;
        assert!(serde_json::to_vec(&status).expect("json").len() > 2 * MAX_DOCUMENT_BYTES);
        assert_eq!(o.ports + bounded.ports.len(), 4_000);
        assert!(
            o.ports > 0
                && o.host_network > 0
                && o.rejected > 0
                && o.port_drops > 0
                && o.outbound > 0,
            "{o:?}"
        );
        let text = render_text(&bounded);
        assert!(text.contains("… not shown (the status document is bounded to 16 MiB): "));
        assert!(text.contains(&format!("{} port rows", thousands(o.ports as u64))));
    }

    #[test]
    fn escaped_error_texts_and_unbudgeted_lists_still_fit_the_bound() {
        // Every error text at its cut length in control characters (six
        // bytes each in JSON), with the lists each filling their budget.
        let errors = "\u{1}".repeat(MAX_ERROR_CHARS);
        let mut status = healthy();
        for text in [
            &mut status.policy.last_error,
            &mut status.policy.fallback,
            &mut status.docker.last_error,
            &mut status.docker.version,
            &mut status.docker.api_version,
            &mut status.reconcile.error,
            &mut status.drift.last_found,
        ] {
            *text = Some(errors.clone());
        }
        let name = "\u{1}".repeat(MAX_NAME_CHARS);
        status.ports = (0..20_000u32)
            .map(|i| PortStatus {
                container: name.clone(),
                why: name.clone(),
                ..port("x", "0.0.0.0", (i % 65535) as u16, Verdict::Blocked, &name)
            })
            .collect();
        status.rejected = vec![
            RejectedStatus {
                kind: "network".into(),
                name: name.clone(),
                reason: name.clone(),
            };
            5_000
        ];
        status.host_network = vec![name.clone(); 5_000];
        status.forward_bypass = vec![
            BypassStatus {
                family: "ipv4".into(),
                rule: "\u{1}".repeat(100_000),
            };
            1_000
        ];
        let bounded = status.bounded();
        let json = serde_json::to_vec(&bounded).expect("json");
        assert!(json.len() <= MAX_DOCUMENT_BYTES, "{} bytes", json.len());
        assert_eq!(bounded.omitted.ports + bounded.ports.len(), 20_000);
        assert!(bounded.forward_bypass.len() <= MAX_BYPASSES);
    }

    #[test]
    fn json_has_documented_keys_and_lowercase_verdicts() {
        let json = serde_json::to_value(healthy()).expect("status serializes");
        for key in ["policy", "docker", "reconcile", "rules", "ports"] {
            assert!(json.get(key).is_some(), "missing key {key}");
        }
        let web = &json["ports"][0];
        for key in [
            "container",
            "host_ip",
            "host_port",
            "container_port",
            "proto",
            "gateway_mode",
        ] {
            assert!(web.get(key).is_some(), "missing port key {key}");
        }
        assert_eq!(web["verdict"], "open");
        assert_eq!(json["ports"][2]["verdict"], "local");
    }
}
