//! The firewall edge: a [`Backend`] observes what is installed, computes the
//! smallest transaction that takes it to the desired [`Ruleset`] (one atomic
//! step, or a few in order where a driver keeps address sets apart from
//! rules), and applies it. One driver per folder owns its syntax, its parser
//! of the installed state and its golden files: [`iptables`]
//! (`iptables-restore --noflush` behind `DOCKER-USER`, sets in ipset) and
//! [`nftables`] (dockfw's own `inet` table, sets in it).
//!
//! Each driver's transaction is a type of its own ([`Backend::Transaction`]),
//! carrying everything its apply needs from `transactions` to `apply`; the
//! daemon sees it through [`Transaction`]: its scope, generic counts
//! ([`Changes`]), a summary, notices for the log, and its text.
//!
//! [`open`] picks the driver for the daemon and `dockfw plan`/`uninstall`
//! alike, which then only speak [`Backend`]; the drivers share the process
//! runner here, which runs the programs of [`programs`] with one timeout
//! for writing, running and reading.

pub mod iptables;
pub mod nftables;
pub mod programs;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::choice::{BackendKind, EngineFirewall, Requested};
use crate::net::{Family, Proto};
use crate::ruleset::{DropEndpoint, ElementChange, FamilyRules, Origin, Ruleset};

/// How long one firewall process may run before dockfw gives up on it.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);

/// What the reconcile loop needs from a firewall.
pub trait Backend: Send + Sync + 'static {
    /// What is installed, as the driver reads it.
    type Observed: Send + Sync + 'static;

    /// One atomic change as the driver writes it: what [`Backend::apply`]
    /// runs, and what it records once it has.
    type Transaction: Transaction;

    /// Which driver this is, for `dockfw plan --json`.
    fn kind(&self) -> BackendKind;

    /// Read what is installed now. A family the kernel lacks is not an
    /// error; a family that cannot be read is reported in [`Observation`].
    fn observe(&self) -> impl Future<Output = Observation<Self::Observed>> + Send;

    /// What a host holding nothing of dockfw's looks like, with every
    /// family available: what `dockfw plan --inventory` plans against.
    fn nothing_installed(&self) -> Self::Observed;

    /// The transactions (one per atomic unit: a family's table, or the one
    /// table of both) that take `observed` to `desired`; empty when nothing
    /// differs. Pure.
    fn transactions(
        &self,
        desired: &Ruleset,
        observed: &Self::Observed,
    ) -> Result<Vec<Self::Transaction>, FirewallError>;

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
    ) -> Option<Vec<Self::Transaction>>;

    /// [`Backend::element_update`] where the changes are known: the
    /// transactions that write `changes` (each element once, joining or
    /// leaving its set), taking sets installed as `in_place` has them to
    /// `desired`'s (`in_place` with `changes` made, the same rules), in
    /// `families`. They cost what the changes are, not what the sets hold:
    /// nothing compares or copies whole sets. `None` when the driver cannot
    /// tell from these alone (then the caller compares the two plans).
    /// Pure.
    fn element_changes(
        &self,
        changes: &[ElementChange],
        desired: &Ruleset,
        in_place: &Ruleset,
        families: &[Family],
    ) -> Option<Vec<Self::Transaction>>;

    /// The desired sets and rules in the driver's own syntax, for `dockfw
    /// plan`.
    fn render(&self, desired: &Ruleset) -> String;

    /// The part of [`Backend::render`] that is `family`'s, for `dockfw plan
    /// --json`.
    fn render_family(&self, desired: &Ruleset, family: Family) -> String;

    /// Apply one transaction: its steps in order, each atomically.
    fn apply(
        &self,
        tx: &Self::Transaction,
    ) -> impl Future<Output = Result<(), FirewallError>> + Send;

    /// The transactions that remove everything dockfw owns. Pure.
    fn uninstall(&self, observed: &Self::Observed) -> Vec<Self::Transaction>;

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

/// What the daemon, its log and status, and `dockfw plan` see of a
/// driver's transaction. The driver's own type carries the rest: the text
/// it runs and whatever it records after an apply.
pub trait Transaction: fmt::Debug + Send + Sync + 'static {
    /// The family it applies to; `None` when it covers both at once.
    fn family(&self) -> Option<Family>;

    /// What it changes, in counts every driver has.
    fn changes(&self) -> &Changes;

    /// What it changes, for the log, drift reports and `dockfw plan`: the
    /// counts, then what the driver has to say of it.
    fn summary(&self) -> String {
        self.changes().to_string()
    }

    /// What it does that the log says on a line of its own once it is
    /// applied (a jump another program took away, put back).
    fn notices(&self) -> Vec<Notice> {
        Vec::new()
    }

    /// What the driver runs, in order, for `dockfw plan`.
    fn script(&self) -> String;

    /// `ipv4`, `ipv6`, or `both` for the log and status.
    fn scope(&self) -> &'static str {
        self.family().map_or("both", Family::as_str)
    }
}

/// One line for the log about an applied transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Something else had changed the firewall, and the transaction put
    /// it back.
    Warning(&'static str),
    /// Plain news.
    Info(&'static str),
}

/// What a transaction changes, in counts every driver has.
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

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{} -{} rules", self.added, self.removed)?;
        if self.elements_added + self.elements_removed > 0 {
            let (added, removed) = (self.elements_added, self.elements_removed);
            write!(f, ", +{added} -{removed} set elements")?;
        }
        Ok(())
    }
}

/// What runs with the driver [`open`] picks: generic over [`Backend`], so
/// that each driver's observations and transactions stay types of its own
/// (an enum over the drivers would have to match an observation or a
/// transaction of one with the other, and forward every method).
pub trait WithBackend {
    type Output;

    fn run<F: Backend>(self, firewall: F) -> impl Future<Output = Self::Output>;
}

/// Run `work` with the driver of `kind`.
pub async fn open<W: WithBackend>(kind: BackendKind, work: W) -> W::Output {
    match kind {
        BackendKind::Iptables => work.run(iptables::Iptables::new()).await,
        BackendKind::Nftables => work.run(nftables::Nftables::new()).await,
    }
}

/// What the engine's firewall is, given the firewall driver it reports
/// (`GET /info`; `None` before Docker 28): nftables where it says so, or
/// where its rules made no `DOCKER-USER` chain in either iptables variant;
/// iptables otherwise.
pub async fn engine_firewall(reported_driver: Option<&str>) -> EngineFirewall {
    if reported_driver.is_some_and(|d| d.starts_with("nftables")) {
        return EngineFirewall::ReportsNftables;
    }
    match iptables::Iptables::new().read(Family::V4).await {
        Ok(st) if !st.has_chain(crate::ruleset::DOCKER_USER) => EngineFirewall::NoDockerUser,
        _ => EngineFirewall::Iptables,
    }
}

/// Rules of other tools, per family, that may let a connection through
/// before dockfw's rules see it, as the driver of `kind` reads them now
/// (for `dockfw explain`). Only iptables has any, so nothing is read for
/// nftables (see [`Backend::forward_bypasses`]).
pub async fn forward_bypasses(kind: BackendKind) -> Vec<(Family, String)> {
    match kind {
        BackendKind::Iptables => {
            let firewall = iptables::Iptables::new();
            let observation = firewall.observe().await;
            firewall.forward_bypasses(&observation.observed)
        }
        BackendKind::Nftables => Vec::new(),
    }
}

/// The drivers whose leftovers `dockfw uninstall` removes, in order: the
/// one asked for; with `auto` both, nftables only where `nft` is installed
/// (without it there is no table of dockfw's to remove).
pub fn to_uninstall(requested: Requested) -> Vec<BackendKind> {
    match requested {
        Requested::Explicit(kind) => vec![kind],
        Requested::Auto if Path::new(programs::NFT).exists() => {
            vec![BackendKind::Iptables, BackendKind::Nftables]
        }
        Requested::Auto => vec![BackendKind::Iptables],
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
    #[error("{program} timed out after {after:?}")]
    Timeout { program: String, after: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("an iptables transaction applies to one family, not both")]
    Scope,
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
    run_within(program, args, stdin, PROCESS_TIMEOUT).await
}

/// [`run`] with a timeout of the caller's: past `limit` the child is
/// killed (it is dropped, and killed on drop) and the error says
/// [`FirewallError::Timeout`].
pub(crate) async fn run_within(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
    limit: Duration,
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
        .filter(|_| stdin.is_some() && program != programs::IPSET);
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
    let (fed, out) =
        tokio::time::timeout(limit, both)
            .await
            .map_err(|_| FirewallError::Timeout {
                program: program.to_owned(),
                after: limit,
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

    #[test]
    fn uninstall_visits_the_driver_asked_for_or_every_installed_one() {
        for kind in [BackendKind::Iptables, BackendKind::Nftables] {
            assert_eq!(to_uninstall(Requested::Explicit(kind)), [kind]);
        }
        let mut both = vec![BackendKind::Iptables];
        if Path::new(programs::NFT).exists() {
            both.push(BackendKind::Nftables);
        }
        assert_eq!(to_uninstall(Requested::Auto), both);
    }

    /// [`open`] hands over the driver of the kind asked for.
    #[tokio::test]
    async fn open_runs_the_work_with_the_driver_asked_for() {
        struct Kind;
        impl WithBackend for Kind {
            type Output = BackendKind;
            async fn run<F: Backend>(self, firewall: F) -> BackendKind {
                firewall.kind()
            }
        }
        for kind in [BackendKind::Iptables, BackendKind::Nftables] {
            assert_eq!(open(kind, Kind).await, kind);
        }
    }

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
