//! The firewall edge: reads a family's `filter` table with `iptables-save`
//! and installs restore text with one `iptables-restore --noflush` run.
//!
//! It pipes text and parses nothing but the variant choice: what to write is
//! decided by [`crate::render`], what is installed by [`crate::installed`].
//! It uses the iptables variant (nft or legacy) that holds Docker's chains.

use std::future::Future;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::installed::Installed;
use crate::ruleset::Family;

/// Where Debian installs the iptables programs. They are run from here, not
/// found through `PATH`: whoever sets dockfw's environment must not choose
/// what parses and writes the firewall.
const SBIN: &str = "/usr/sbin";

/// How long one iptables process may run before dockfw gives up on it.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);

/// What the reconcile loop needs from a firewall.
pub trait Firewall: Send + Sync + 'static {
    /// What is installed now in `family`'s filter table.
    fn read(&self, family: Family)
    -> impl Future<Output = Result<Installed, FirewallError>> + Send;
    /// Install `text` atomically (`--noflush`).
    fn restore(
        &self,
        family: Family,
        text: &str,
    ) -> impl Future<Output = Result<(), FirewallError>> + Send;
    /// The variant in use for `family`, for status (`nft` or `legacy`).
    fn variant(&self, family: Family) -> Option<&'static str>;
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
    /// The kernel has no such family (IPv6 disabled): nothing to protect.
    #[error("{family} is disabled in this kernel")]
    Unavailable { family: &'static str },
}

/// An iptables implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Nft,
    Legacy,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Nft => "nft",
            Variant::Legacy => "legacy",
        }
    }

    fn program(self, family: Family, tool: &str) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        format!("{SBIN}/{base}-{}-{tool}", self.as_str())
    }
}

/// The real backend: `iptables-{nft,legacy}-{save,restore}` processes.
#[derive(Debug, Default)]
pub struct Iptables {
    /// The variant chosen per family ([v4, v6]); re-chosen whenever the
    /// chosen one stops showing Docker's chains (e.g. Docker switched).
    chosen: Mutex<[Option<Variant>; 2]>,
}

fn slot(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// Whether a save shows chains Docker makes.
fn has_docker_chains(installed: &Installed) -> bool {
    installed.has_chain("DOCKER") || installed.has_chain("DOCKER-USER")
}

impl Iptables {
    pub fn new() -> Iptables {
        Iptables::default()
    }

    fn cached(&self, family: Family) -> Option<Variant> {
        self.chosen.lock().map(|c| c[slot(family)]).unwrap_or(None)
    }

    fn remember(&self, family: Family, variant: Variant) {
        if let Ok(mut c) = self.chosen.lock() {
            c[slot(family)] = Some(variant);
        }
    }

    async fn save(&self, family: Family, variant: Variant) -> Result<Installed, FirewallError> {
        // All tables in one run: `filter` for the chains, `nat` for DNAT.
        let out = run(&variant.program(family, "save"), &[], None).await?;
        Ok(Installed::parse(&out))
    }

    /// Pick the variant holding Docker's chains, trying first the one the
    /// system's `iptables` is (the one Docker runs), so the other variant's
    /// tables are not even loaded on hosts where it is unused. With Docker's
    /// chains nowhere: the IPv4 choice (for IPv6), else that default.
    async fn choose(&self, family: Family) -> Result<(Variant, Installed), FirewallError> {
        let preferred = default_variant().await;
        let other = match preferred {
            Variant::Nft => Variant::Legacy,
            Variant::Legacy => Variant::Nft,
        };
        let first = self.save(family, preferred).await;
        if let Ok(st) = &first
            && has_docker_chains(st)
        {
            return first.map(|st| (preferred, st));
        }
        let second = self.save(family, other).await;
        if let Ok(st) = &second
            && has_docker_chains(st)
        {
            return second.map(|st| (other, st));
        }
        if family == Family::V6
            && let Some(variant) = self.cached(Family::V4)
        {
            return Ok((variant, self.save(family, variant).await?));
        }
        match first {
            Ok(st) => Ok((preferred, st)),
            Err(e) => second.map(|st| (other, st)).map_err(|_| e),
        }
    }
}

/// The variant the system's `iptables` is (`iptables -V` says `nf_tables` or
/// `legacy`); nft when it cannot tell.
async fn default_variant() -> Variant {
    match run(&format!("{SBIN}/iptables"), &["-V"], None).await {
        Ok(version) if version.contains("legacy") => Variant::Legacy,
        _ => Variant::Nft,
    }
}

impl Firewall for Iptables {
    async fn read(&self, family: Family) -> Result<Installed, FirewallError> {
        if family == Family::V6 && !std::path::Path::new("/proc/net/if_inet6").exists() {
            return Err(FirewallError::Unavailable {
                family: family.as_str(),
            });
        }
        if let Some(variant) = self.cached(family) {
            let st = self.save(family, variant).await?;
            if has_docker_chains(&st) {
                return Ok(st);
            }
        }
        let (variant, st) = self.choose(family).await?;
        self.remember(family, variant);
        Ok(st)
    }

    async fn restore(&self, family: Family, text: &str) -> Result<(), FirewallError> {
        let variant = match self.cached(family) {
            Some(v) => v,
            None => {
                let (v, _) = self.choose(family).await?;
                self.remember(family, v);
                v
            }
        };
        let program = variant.program(family, "restore");
        run(&program, &["--noflush", "--wait", "10"], Some(text))
            .await
            .map(drop)
    }

    fn variant(&self, family: Family) -> Option<&'static str> {
        self.cached(family).map(Variant::as_str)
    }
}

/// Run `program args`, feeding `stdin`, and return its standard output.
/// Writing, running and reading share one timeout, so a child that stops
/// reading cannot wedge the caller.
async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, FirewallError> {
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
