//! When the loop checks again, as one value computed from the reports of
//! its passes: the full check (or the retry after a failure), the drift
//! poll, and systemd's watchdog feed. Reads
//! no status and does no I/O but the watchdog's notification.

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::sdnotify;

use super::report::PassReport;
use super::triggers::{Backoff, DOCKER_BACKOFF_MAX, Trigger};

/// Longest pass during which the watchdog is still fed.
pub(super) const MAX_FED_PASS: Duration = Duration::from_secs(120);

/// The loop's timers.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    resync: Duration,
    drift_poll: Duration,
    /// Half systemd's watchdog interval, when it has one.
    watchdog: Option<Duration>,
    /// The full check: `resync` after the last full pass that read the
    /// firewall, sooner (with backoff) after a failed pass.
    pub(super) next_check: Instant,
    /// Whether the last pass failed, so that the check is a retry.
    retrying: bool,
    retry: Backoff,
    /// The drift poll: `drift_poll` after the last read of the firewall.
    pub(super) next_poll: Instant,
    pub(super) next_feed: Instant,
}

impl Schedule {
    /// The timers at `now`, before the first pass; `watchdog`: systemd's
    /// watchdog interval, if any (fed at half of it).
    pub(super) fn new(
        resync: Duration,
        drift_poll: Duration,
        watchdog: Option<Duration>,
        now: Instant,
    ) -> Schedule {
        Schedule {
            resync,
            drift_poll,
            watchdog: watchdog.map(|i| i / 2),
            next_check: now + resync,
            retrying: false,
            retry: Backoff::new(Duration::from_millis(500), DOCKER_BACKOFF_MAX),
            next_poll: now + drift_poll,
            next_feed: now,
        }
    }

    /// The timers after a pass that ended at `now` with `report`; `full`:
    /// whether it listed everything. Passes of the fast path read nothing:
    /// however many there are, they never hold the check or the poll off; a
    /// failure of any pass brings a full retry forward.
    pub(super) fn after(&mut self, report: &PassReport, full: bool, now: Instant) {
        self.retrying = !report.errors.is_empty();
        if self.retrying {
            self.next_check = now + self.retry.next_delay();
            self.next_poll = now + self.drift_poll;
            return;
        }
        if report.observed && full {
            self.retry.reset();
            self.next_check = now + self.resync;
        }
        if report.observed {
            self.next_poll = now + self.drift_poll;
        }
    }

    /// The timers after the sets poll, at `now`, found the sets as planned
    /// (no pass ran): the poll moves, nothing else.
    pub(super) fn sets_as_planned(&mut self, now: Instant) {
        self.next_poll = now + self.drift_poll;
    }

    /// What the full check is when it is due.
    pub(super) fn check(&self) -> Trigger {
        if self.retrying {
            Trigger::Retry
        } else {
            Trigger::Periodic
        }
    }

    /// Whether the watchdog is fed at all.
    pub(super) fn feeds(&self) -> bool {
        self.watchdog.is_some()
    }

    /// The feed is due at `now`: feed systemd's watchdog unless a pass
    /// started at `pass_started` has run past [`MAX_FED_PASS`] (a pass
    /// stuck that long gets us restarted), and set the next feed.
    pub(super) fn feed(&mut self, now: Instant, pass_started: Option<Instant>) {
        if pass_started.is_none_or(|started| now - started < MAX_FED_PASS)
            && let Err(e) = sdnotify::notify("WATCHDOG=1")
        {
            warn!(error = %e, "cannot notify systemd");
        }
        self.next_feed = now + self.watchdog.unwrap_or(Duration::MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Schedule;
    use crate::daemon::report::{Outcome, PassError, PassReport};
    use crate::daemon::triggers::Trigger;
    use crate::firewall::FirewallError;

    const RESYNC: Duration = Duration::from_secs(10);
    const POLL: Duration = Duration::from_millis(1500);

    fn report(outcome: Outcome, observed: bool) -> PassReport {
        let errors = match outcome {
            Outcome::Failed => vec![PassError::Apply {
                scope: "ipv4",
                source: FirewallError::Poisoned,
            }],
            Outcome::Degraded => vec![PassError::Elements {
                scope: "ipv4",
                source: FirewallError::Poisoned,
            }],
            Outcome::Unchanged | Outcome::Applied => Vec::new(),
        };
        PassReport {
            changed: Vec::new(),
            errors,
            outcome,
            observed,
        }
    }

    #[test]
    fn a_failed_apply_brings_a_retry_forward_with_backoff_until_a_full_pass_succeeds() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new(RESYNC, POLL, None, t0);
        assert_eq!(schedule.check(), Trigger::Periodic);
        schedule.after(&report(Outcome::Failed, true), true, t0);
        assert_eq!(schedule.check(), Trigger::Retry);
        assert_eq!(schedule.next_check, t0 + Duration::from_millis(500));
        assert_eq!(schedule.next_poll, t0 + POLL);
        schedule.after(&report(Outcome::Failed, true), true, t0);
        assert_eq!(schedule.next_check, t0 + Duration::from_secs(1));
        schedule.after(&report(Outcome::Applied, true), true, t0);
        assert_eq!(schedule.check(), Trigger::Periodic);
        assert_eq!(schedule.next_check, t0 + RESYNC);
        schedule.after(&report(Outcome::Failed, true), true, t0);
        assert_eq!(schedule.next_check, t0 + Duration::from_millis(500));
    }

    #[test]
    fn a_degraded_pass_is_retried_too() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new(RESYNC, POLL, None, t0);
        schedule.after(&report(Outcome::Degraded, true), true, t0);
        assert_eq!(schedule.check(), Trigger::Retry);
        assert_eq!(schedule.next_check, t0 + Duration::from_millis(500));
    }

    #[test]
    fn fast_path_passes_never_hold_the_check_or_the_poll_off() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new(RESYNC, POLL, None, t0);
        let later = t0 + Duration::from_secs(1);
        schedule.after(&report(Outcome::Applied, false), false, later);
        assert_eq!(schedule.next_check, t0 + RESYNC);
        assert_eq!(schedule.next_poll, t0 + POLL);
        // A sets check that found the sets as planned moves the poll only.
        schedule.sets_as_planned(later);
        assert_eq!(schedule.next_check, t0 + RESYNC);
        assert_eq!(schedule.next_poll, later + POLL);
    }
}
