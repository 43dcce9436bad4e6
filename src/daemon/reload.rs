//! The policy file as the loop reads it: at start (bounded in time, with
//! the last good policy or deny all as fallback) and on reload, off the
//! loop's task, so a read that blocks (a FIFO, a hung mount) never holds the
//! loop. A refused file never replaces the policy in force.

use std::path::Path;
use std::time::Duration;

use tracing::debug;

use crate::control::ReloadRequest;
use crate::policy::{self, Policy};
use crate::state;

use super::report::error_chain;

/// The policy the daemon starts with, and, when the file did not validate,
/// what it enforces instead and why.
#[derive(Debug)]
pub struct StartPolicy {
    pub policy: Policy,
    /// The text that validated, kept as the last good policy.
    pub text: Option<String>,
    /// Set when the file was refused: what is enforced instead.
    pub fallback: Option<String>,
    /// The file's errors, when it was refused.
    pub errors: Option<String>,
    /// A read of the file that had not finished in time: the loop applies
    /// its result, as a reload's, when it ends.
    pub unfinished: Option<UnfinishedRead>,
}

/// A policy read still running on a blocking thread.
#[derive(Debug)]
pub struct UnfinishedRead(pub(super) tokio::task::JoinHandle<PolicyRead>);

/// The policy at `path`; if it does not validate, the last good one kept in
/// `state_dir`; if there is none, deny all inbound. Never "no policy".
pub fn starting_policy(path: &Path, state_dir: &Path) -> StartPolicy {
    starting_policy_from(policy::parse_with_text(path), state_dir)
}

/// How long the daemon waits at start for the policy file to be read: a
/// FIFO or a hung mount must not hold up protection.
pub const START_READ_LIMIT: Duration = Duration::from_secs(2);

/// [`starting_policy`], the file read off the runtime's threads and waited
/// for at most `limit`: a read that has not finished by then (a FIFO with
/// no writer, a hung mount) is a policy that could not be read, so the last
/// good one, or deny all, is enforced; the read goes on, and the loop
/// applies its result when it ends ([`StartPolicy::unfinished`]).
pub async fn starting_policy_within(path: &Path, state_dir: &Path, limit: Duration) -> StartPolicy {
    let file = path.to_owned();
    let mut read = tokio::task::spawn_blocking(move || policy::parse_with_text(&file));
    let parsed = match tokio::time::timeout(limit, &mut read).await {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(joined)) => Err(unreadable(path, std::io::Error::other(joined.to_string()))),
        Err(_) => {
            let slow = format!(
                "the read did not finish within {} (a FIFO, a hung mount?); \
                 it is applied if it ends",
                humantime::format_duration(limit)
            );
            let error = unreadable(
                path,
                std::io::Error::new(std::io::ErrorKind::TimedOut, slow),
            );
            let mut start = starting_policy_from(Err(error), state_dir);
            start.unfinished = Some(UnfinishedRead(read));
            return start;
        }
    };
    starting_policy_from(parsed, state_dir)
}

pub(super) fn unreadable(path: &Path, source: std::io::Error) -> policy::PolicyError {
    policy::PolicyError::Read {
        path: path.to_owned(),
        source,
    }
}

/// [`starting_policy`] for a policy already read and validated (e.g. from
/// standard input by `dockfw check -`).
pub fn starting_policy_from(
    parsed: Result<(Policy, String), policy::PolicyError>,
    state_dir: &Path,
) -> StartPolicy {
    let errors = match parsed {
        Ok((policy, text)) => {
            return StartPolicy {
                policy,
                text: Some(text),
                fallback: None,
                errors: None,
                unfinished: None,
            };
        }
        Err(e) => error_chain(&e),
    };
    let last_good = state::last_good_policy(state_dir)
        .and_then(|kept| policy::parse(&kept).ok().map(|p| (kept, p)));
    let (policy, fallback) = match last_good {
        Some((kept, policy)) => (
            policy,
            format!("enforcing the last good policy, kept in {}", kept.display()),
        ),
        None => (
            policy::deny_all(),
            "enforcing deny all inbound to containers (no last good policy is kept)".to_owned(),
        ),
    };
    StartPolicy {
        policy,
        text: None,
        fallback: Some(fallback),
        errors: Some(errors),
        unfinished: None,
    }
}

/// A policy file read and validated, or why not.
pub(super) type PolicyRead = Result<(Policy, String), policy::PolicyError>;

/// Most reload requests waiting for the read after the one in flight; more
/// are answered at once that a reload is already waiting.
pub(super) const MAX_QUEUED_RELOADS: usize = 64;

/// The policy reads of reloads, off the loop: a read that blocks (a FIFO,
/// a hung mount) holds its requests, never the loop, which keeps repairing
/// and feeding the watchdog meanwhile.
#[derive(Debug, Default)]
pub(super) struct PolicyReads {
    /// The read in flight, on a blocking thread.
    pub(super) in_flight: Option<tokio::task::JoinHandle<PolicyRead>>,
    /// The requests the read in flight answers.
    pub(super) answering: Vec<ReloadRequest>,
    /// Requests made after it started: they get a read of their own, so
    /// that each sees the file as it was when asked.
    pub(super) queued: Vec<ReloadRequest>,
}

impl PolicyReads {
    /// Take a reload request; true when it started a read.
    pub(super) fn request(&mut self, reply: ReloadRequest, path: &Path) -> bool {
        if self.in_flight.is_none() {
            self.answering.push(reply);
            self.start(path);
            return true;
        }
        if self.queued.len() >= MAX_QUEUED_RELOADS {
            let _ = reply.send(Err("a reload is already waiting for the policy file".into()));
        } else {
            self.queued.push(reply);
        }
        false
    }

    pub(super) fn start(&mut self, path: &Path) {
        let path = path.to_owned();
        debug!(path = %path.display(), "reading the policy");
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            policy::parse_with_text(&path)
        }));
    }

    /// The result of the read in flight, of the file at `path`; never,
    /// while there is none.
    pub(super) async fn done(&mut self, path: &Path) -> PolicyRead {
        let Some(read) = &mut self.in_flight else {
            return std::future::pending().await;
        };
        let joined = read.await;
        self.in_flight = None;
        joined.unwrap_or_else(|e| {
            Err(policy::PolicyError::Read {
                path: path.to_owned(),
                source: std::io::Error::other(format!("policy reader failed: {e}")),
            })
        })
    }

    /// The requests the finished read answers; starts the next read for
    /// those queued meanwhile.
    pub(super) fn finish(&mut self, path: &Path) -> Vec<ReloadRequest> {
        let answered = std::mem::take(&mut self.answering);
        if !self.queued.is_empty() {
            self.answering = std::mem::take(&mut self.queued);
            self.start(path);
        }
        answered
    }
}
