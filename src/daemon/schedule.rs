//! When the loop checks again: the watchdog feed and its bound on a pass.

use std::time::Duration;

use tracing::warn;

use crate::sdnotify;

/// Longest pass during which the watchdog is still fed.
pub(super) const MAX_FED_PASS: Duration = Duration::from_secs(120);

pub(super) fn feed_watchdog() {
    if let Err(e) = sdnotify::notify("WATCHDOG=1") {
        warn!(error = %e, "cannot notify systemd");
    }
}
