//! What a pass did, as data: [`PassReport`] with the [`Change`]s it wrote,
//! its typed [`PassError`]s and its [`Outcome`]; the loop decides what
//! comes next from it, and the log and status show it. Does no I/O.

use std::fmt;

use crate::docker::DockerError;
use crate::firewall::{Changes, FirewallError, Transaction};
use crate::net::Family;

/// An error and all its causes, `: `-separated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// How a pass ended, as the status's `reconcile.result` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Everything planned was in place already.
    Unchanged,
    /// Everything planned is in place now: something was written.
    Applied,
    /// The rules planned from the inventory at hand are in place, but
    /// something else failed (the engine, the fast path): a retry is due.
    Degraded,
    /// The firewall could not be read or written: the rules in force stay,
    /// and a retry is due.
    Failed,
}

impl Outcome {
    /// The outcome of a pass that wrote `changed` transactions with
    /// `errors`.
    pub(super) fn of(changed: usize, errors: &[PassError]) -> Outcome {
        if errors.iter().any(PassError::is_firewall) {
            Outcome::Failed
        } else if !errors.is_empty() {
            Outcome::Degraded
        } else if changed == 0 {
            Outcome::Unchanged
        } else {
            Outcome::Applied
        }
    }

    /// The word in status.
    pub(super) fn word(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::Applied => "applied",
            Outcome::Degraded => "degraded",
            Outcome::Failed => "failed",
        }
    }
}

/// What went wrong in a pass. Each is shown as its chain of causes; all of
/// a pass's, `; `-joined, are the status's `reconcile.error`.
#[derive(Debug, thiserror::Error)]
pub(super) enum PassError {
    /// The engine could not be listed: the inventory in hand stays the
    /// basis.
    #[error("docker")]
    Docker(#[source] DockerError),
    /// The fast path could not write a family's set elements: an observing
    /// pass took over in the same pass.
    #[error("{scope}")]
    Elements {
        scope: &'static str,
        #[source]
        source: FirewallError,
    },
    /// A family's installed rules could not be read.
    #[error("{scope}")]
    Observe {
        scope: &'static str,
        #[source]
        source: FirewallError,
    },
    /// What would take the installed rules to the plan could not be worked
    /// out.
    #[error(transparent)]
    Transactions(FirewallError),
    /// A family's transaction could not be applied.
    #[error("{scope}")]
    Apply {
        scope: &'static str,
        #[source]
        source: FirewallError,
    },
}

impl PassError {
    /// Whether the firewall failed: what is installed is not known to be
    /// the plan.
    pub(super) fn is_firewall(&self) -> bool {
        matches!(
            self,
            PassError::Observe { .. } | PassError::Transactions(_) | PassError::Apply { .. }
        )
    }
}

/// Why a transaction was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// The fast path: set elements from the plan in place, nothing read.
    Elements,
    /// The plan changed: what an observing pass found differs from it.
    Plan,
    /// The plan in place was found changed by something else (drift), and
    /// written back.
    Repair,
}

/// One transaction a pass applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    /// The family written; `None`: both at once (one nftables table).
    pub(super) family: Option<Family>,
    pub(super) written: Written,
    /// What it changed, in counts every driver has.
    pub(super) counts: Changes,
    /// The driver's summary of it: the counts, then what the driver has to
    /// say of it (a jump put back, why a table was written whole).
    pub(super) summary: String,
}

impl Change {
    /// The change `tx` makes, applied for `written`.
    pub(super) fn of(tx: &impl Transaction, written: Written) -> Change {
        Change {
            family: tx.family(),
            written,
            counts: tx.changes().clone(),
            summary: tx.summary(),
        }
    }

    /// `ipv4`, `ipv6` or `both`.
    pub(super) fn scope(&self) -> &'static str {
        self.family.map_or("both", Family::as_str)
    }
}

/// `scope: summary`, as the log and drift reports show it.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.scope(), self.summary)
    }
}

/// What a pass did, for the loop to decide what comes next.
#[derive(Debug)]
pub(super) struct PassReport {
    /// What was written, one per transaction applied, in order.
    pub(super) changed: Vec<Change>,
    pub(super) errors: Vec<PassError>,
    pub(super) outcome: Outcome,
    /// Whether the pass read what is installed: not on the fast path, nor
    /// a sets check that found the sets as planned.
    pub(super) observed: bool,
}

impl PassReport {
    /// The pass's errors as status shows them: each with its causes,
    /// `; `-joined; `None` without errors.
    pub(super) fn error_text(&self) -> Option<String> {
        let each: Vec<String> = self.errors.iter().map(|e| error_chain(e)).collect();
        (!each.is_empty()).then(|| each.join("; "))
    }

    /// What was written, `; `-joined, for the log; `None` when nothing was.
    pub(super) fn changed_text(&self) -> Option<String> {
        let each: Vec<String> = self.changed.iter().map(Change::to_string).collect();
        (!each.is_empty()).then(|| each.join("; "))
    }
}
