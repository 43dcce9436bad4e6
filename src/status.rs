//! The daemon's status document (served over the control socket) and its
//! human-readable rendering for `dockfw status`.
//!
//! Pure data and formatting: the daemon fills it, the CLI prints it.

use serde::{Deserialize, Serialize};

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
    /// `pending` (none yet), `unchanged`, `applied` or `failed`.
    pub result: String,
    pub error: Option<String>,
    /// How many restore transactions the daemon has run since it started.
    pub applies: u64,
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
}
