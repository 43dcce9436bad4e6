//! The firewall edge: a [`Backend`] observes what is installed, computes the
//! smallest transaction that takes it to the desired [`Ruleset`] (one atomic
//! [`Step`], or a few in order where a driver keeps address sets apart from
//! rules), and applies it. One driver per folder owns its syntax, its parser
//! of the installed state and its golden files: [`iptables`]
//! (`iptables-restore --noflush` behind `DOCKER-USER`, sets in ipset) and
//! [`nftables`] (dockfw's own `inet` table, sets in it).
//!
//! The daemon and `dockfw plan`/`uninstall` only speak [`Backend`]; the
//! drivers share the process runner here, which runs programs from fixed
//! system paths with one timeout for writing, running and reading.

pub mod iptables;
pub mod nftables;

use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::net::{Family, Proto};
use crate::ruleset::{DropEndpoint, FamilyRules, Origin, Ruleset};

/// Where Debian installs the firewall programs. They are run from here, not
/// found through `PATH`: whoever sets dockfw's environment must not choose
/// what parses and writes the firewall.
pub const SBIN: &str = "/usr/sbin";

/// How long one firewall process may run before dockfw gives up on it.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);

/// What the reconcile loop needs from a firewall.
pub trait Backend: Send + Sync + 'static {
    /// What is installed, as the driver reads it.
    type Observed: Send + Sync + 'static;

    /// Read what is installed now. A family the kernel lacks is not an
    /// error; a family that cannot be read is reported in [`Observation`].
    fn observe(&self) -> impl Future<Output = Observation<Self::Observed>> + Send;

    /// The transactions (one per atomic unit: a family's table, or the one
    /// table of both) that take `observed` to `desired`; empty when nothing
    /// differs. Pure.
    fn transactions(
        &self,
        desired: &Ruleset,
        observed: &Self::Observed,
    ) -> Result<Vec<Transaction>, FirewallError>;

    /// The transactions that take the sets of `in_place` (the ruleset this
    /// process last applied, or found installed, in full) to `desired`'s,
    /// written from the two plans alone, with nothing read from the
    /// kernel; `None` when the rules differ and only a pass that observes
    /// may change them. Empty when nothing differs. Only the families in
    /// `families` are written. Pure.
    ///
    /// This is the fast path of a container coming or going: a set element
    /// added or removed, with no `*-save` or `nft list` first. Drift in
    /// between is not missed: rules changed by someone else are announced
    /// (or polled) and checked by an observing pass right after.
    fn element_update(
        &self,
        desired: &Ruleset,
        in_place: &Ruleset,
        families: &[Family],
    ) -> Option<Vec<Transaction>>;

    /// The desired sets and rules in the driver's own syntax, for `dockfw
    /// plan`.
    fn render(&self, desired: &Ruleset) -> String;

    /// Apply one transaction: its steps in order, each atomically.
    fn apply(&self, tx: &Transaction) -> impl Future<Output = Result<(), FirewallError>> + Send;

    /// The transactions that remove everything dockfw owns. Pure.
    fn uninstall(&self, observed: &Self::Observed) -> Vec<Transaction>;

    /// The counters of dockfw's drop rules that carry an [`Origin`], as
    /// observed. Pure.
    fn drop_counters(&self, observed: &Self::Observed) -> Vec<DropCounter>;

    /// What drives `family` now, for status: `nft`, `legacy`, `nftables`.
    fn variant(&self, family: Family) -> Option<&'static str>;

    /// Rules of other tools, per family, that may let a connection through
    /// before dockfw's rules see it, as observed: with iptables, `FORWARD`
    /// rules above the jump to `DOCKER-USER`. None by default: nftables
    /// base chains all see every packet (an accept ends only its own chain)
    /// and dockfw's run at priority -10, before iptables-nft's and Docker's
    /// own at 0. Pure.
    fn forward_bypasses(&self, _observed: &Self::Observed) -> Vec<(Family, String)> {
        Vec::new()
    }

    /// How many rules the driver writes for `rules`, for status and `dockfw
    /// plan`: the plan's own count unless the driver expands a rule.
    fn rule_count(&self, rules: &FamilyRules) -> usize {
        rules.rule_count()
    }

    /// Whether changes to the installed rules are announced on netlink
    /// (nf_tables), so drift needs no polling.
    fn announces_changes(&self) -> bool;

    /// Whether the driver keeps, for `in_place`, state that nf_tables does
    /// not announce changes to even where it announces the rules' (ipsets):
    /// then [`Backend::sets_drifted`] is polled.
    fn has_unannounced_sets(&self, in_place: &Ruleset) -> bool;

    /// Whether the unannounced sets of `families` differ from `in_place`'s
    /// (one cheap read; a read that fails counts as a difference, so that
    /// an observing pass reports it).
    fn sets_drifted(
        &self,
        in_place: &Ruleset,
        families: &[Family],
    ) -> impl Future<Output = bool> + Send;
}

/// What one observation found: the installed state, the families the kernel
/// does not have, and what could not be read (`ipv4`, `ipv6`, `ipset`,
/// `table`).
#[derive(Debug)]
pub struct Observation<O> {
    pub observed: O,
    pub unavailable: Vec<Family>,
    pub failed: Vec<(&'static str, FirewallError)>,
}

/// One change and a summary of it: one atomic step, or a few run in order
/// when the driver keeps address sets apart from rules (ipset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The family it applies to; `None` when it covers both at once.
    pub family: Option<Family>,
    /// What the driver runs, in order; each step is atomic on its own, and
    /// a failed step ends the transaction.
    pub steps: Vec<Step>,
    pub changes: Changes,
}

/// One atomic run of one of the driver's programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Address sets kept by a program of their own (`ipset restore`).
    Sets(String),
    /// The driver's rules (`iptables-restore --noflush` text, an nft
    /// script).
    Rules(String),
}

impl Transaction {
    /// `ipv4`, `ipv6`, or `both` for the log and status.
    pub fn scope(&self) -> &'static str {
        self.family.map_or("both", Family::as_str)
    }

    /// The steps' inputs, in order, for `dockfw plan`; each under a comment
    /// naming it when there is more than one.
    pub fn script(&self) -> String {
        match self.steps.as_slice() {
            [Step::Sets(text) | Step::Rules(text)] => text.clone(),
            steps => steps
                .iter()
                .map(|step| match step {
                    Step::Sets(text) => format!("# sets:\n{text}"),
                    Step::Rules(text) => format!("# rules:\n{text}"),
                })
                .collect(),
        }
    }
}

/// What a transaction changes, for the log, drift reports and `dockfw plan`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Rules in dockfw's chains that are new.
    pub added: usize,
    /// Installed rules in dockfw's chains that go away.
    pub removed: usize,
    /// Elements of dockfw's address sets that are new.
    pub elements_added: usize,
    /// Installed elements of dockfw's address sets that go away.
    pub elements_removed: usize,
    /// `DOCKER-USER` did not exist and is created (with its `FORWARD` jump).
    pub created_docker_user: bool,
    /// `DOCKER-USER` existed but `FORWARD` no longer jumped to it.
    pub restored_forward_jump: bool,
    /// The `FORWARD -> DOCKER-USER` jump was not first (or not alone).
    pub moved_forward_jump: bool,
    /// One of dockfw's jumps was missing, duplicated or not first.
    pub placed_jumps: bool,
    /// The engine now jumps to a `DOCKER-USER` dockfw made; dockfw's own
    /// `FORWARD` jump to it went.
    pub handed_over_docker_user: bool,
    /// Why the whole table is rewritten (nftables), e.g. `table missing`.
    pub reason: Option<&'static str>,
    /// dockfw's rules are written anew: their counters start again at zero.
    pub rewrote_rules: bool,
}

/// The packet counter of one of dockfw's drop rules, as the firewall keeps
/// it: every packet a drop rule counts is a new connection refused, since
/// replies return before any drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCounter {
    /// Where the rule is written: its family's transaction, or `None` where
    /// one transaction writes both families (nftables); see
    /// [`Transaction::family`].
    pub scope: Option<Family>,
    /// The rule as the driver lists it, counters aside: which rule it is,
    /// from one read to the next.
    pub rule: String,
    pub origin: Origin,
    /// Packets dropped since the rule was written.
    pub packets: u64,
    /// The other ports of the origin's protocol (an [`Origin::Port`]) whose
    /// drops this counter counts too: a set element keyed by the container
    /// endpoint a connection arrives at after DNAT counts for every port
    /// published on it ([`DropCounter::endpoint_rule`]). Empty otherwise.
    pub shared_with: Vec<u16>,
}

impl DropCounter {
    /// The [`DropCounter::rule`] of the element for `proto`/`port` in the
    /// drop port set of `family`, where a driver counts per port in set
    /// elements: the same for every driver, so that the daemon can name an
    /// element it removed ([`crate::drops::DropTotals::removed`]).
    pub fn element_rule(family: Family, proto: Proto, port: u16) -> String {
        format!("element {} {}/{port}", family.as_str(), proto.as_str())
    }

    /// The [`DropCounter::rule`] of the element for `endpoint` in the drop
    /// set of `family`, where a driver counts per container endpoint (ipset,
    /// which matches the packet after DNAT): one per port published on it.
    pub fn endpoint_rule(family: Family, endpoint: &DropEndpoint) -> String {
        let DropEndpoint {
            proto,
            addr,
            port,
            published,
        } = endpoint;
        let at = std::net::SocketAddr::new(*addr, *port);
        let proto = proto.as_str();
        format!("element {} {proto}/{published} at {at}", family.as_str())
    }

    /// Whether this counts a drop set element ([`DropCounter::element_rule`],
    /// [`DropCounter::endpoint_rule`]).
    pub fn is_element(&self) -> bool {
        self.rule.starts_with("element ")
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "+{} -{} rules", self.added, self.removed)?;
        if self.elements_added + self.elements_removed > 0 {
            let (added, removed) = (self.elements_added, self.elements_removed);
            write!(f, ", +{added} -{removed} set elements")?;
        }
        let notes = [
            (
                self.created_docker_user,
                ", created DOCKER-USER and its FORWARD jump",
            ),
            (
                self.restored_forward_jump,
                ", restored the missing FORWARD -> DOCKER-USER jump",
            ),
            (
                self.moved_forward_jump,
                ", moved the FORWARD -> DOCKER-USER jump back to the top",
            ),
            (self.placed_jumps, ", put dockfw's jumps first"),
            (
                self.handed_over_docker_user,
                ", left DOCKER-USER to the engine's own FORWARD jump",
            ),
        ];
        for (set, note) in notes {
            if set {
                f.write_str(note)?;
            }
        }
        if let Some(reason) = self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} timed out after {}s", PROCESS_TIMEOUT.as_secs())]
    Timeout { program: String },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("an iptables transaction applies to one family, not both")]
    Scope,
    #[error("an nftables transaction is one nft script")]
    NotOneScript,
    #[error("a lock of the firewall driver was poisoned")]
    Poisoned,
    #[error("cannot write the nftables ruleset")]
    Render(#[source] nftables::render::RenderError),
    /// The kernel has no such family (IPv6 disabled): nothing to protect.
    #[error("{family} is disabled in this kernel")]
    Unavailable { family: &'static str },
}

/// Run `program args`, feeding `stdin`, and return its standard output.
/// Writing, running and reading share one timeout, so a child that stops
/// reading cannot wedge the caller.
pub(crate) async fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, FirewallError> {
    let spawn_err = |source| FirewallError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    // A writer through nf_tables (not ipset, which nf_tables does not
    // announce): the transaction it commits is dockfw's own, not drift.
    let writer = child
        .id()
        .filter(|_| stdin.is_some() && !program.ends_with("/ipset"));
    if let Some(pid) = writer {
        crate::nfmonitor::expect_own_write(pid);
    }
    let pipe = child.stdin.take();
    let feed = async move {
        if let (Some(text), Some(mut pipe)) = (stdin, pipe) {
            pipe.write_all(text.as_bytes()).await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let both = async { tokio::join!(feed, child.wait_with_output()) };
    let (fed, out) = tokio::time::timeout(PROCESS_TIMEOUT, both)
        .await
        .map_err(|_| FirewallError::Timeout {
            program: program.to_owned(),
        })?;
    let out = out.map_err(spawn_err)?;
    // A refused restore closes its stdin early: its stderr says why, the
    // broken pipe does not.
    if !out.status.success() {
        if let Some(pid) = writer {
            crate::nfmonitor::forget_own_write(pid);
        }
        return Err(FirewallError::Failed {
            program: program.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    fed.map_err(spawn_err)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_child_reports_its_stderr_not_the_broken_pipe() {
        let big = "x".repeat(1 << 20);
        let err = run("sh", &["-c", "echo refused >&2; exit 4"], Some(&big))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FirewallError::Failed { stderr, .. } if stderr == "refused"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn output_and_input_round_trip() {
        let out = run("cat", &[], Some("*filter\nCOMMIT\n")).await.unwrap();
        assert_eq!(out, "*filter\nCOMMIT\n");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = run("/nonexistent/iptables-save", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(err, FirewallError::Spawn { .. }), "{err}");
    }
}
