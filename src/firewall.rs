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
        format!("{base}-{}-{tool}", self.as_str())
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
        let out = run(&variant.program(family, "save"), &["-t", "filter"], None).await?;
        Ok(Installed::parse(&out))
    }

    /// Pick the variant holding Docker's chains; with none anywhere, the
    /// IPv4 choice (for IPv6), else nft when it works, else legacy.
    async fn choose(&self, family: Family) -> Result<(Variant, Installed), FirewallError> {
        let nft = self.save(family, Variant::Nft).await;
        if let Ok(st) = &nft
            && has_docker_chains(st)
        {
            return nft.map(|st| (Variant::Nft, st));
        }
        let legacy = self.save(family, Variant::Legacy).await;
        if let Ok(st) = &legacy
            && has_docker_chains(st)
        {
            return legacy.map(|st| (Variant::Legacy, st));
        }
        if family == Family::V6
            && let Some(variant) = self.cached(Family::V4)
        {
            return Ok((variant, self.save(family, variant).await?));
        }
        match nft {
            Ok(st) => Ok((Variant::Nft, st)),
            Err(e) => legacy.map(|st| (Variant::Legacy, st)).map_err(|_| e),
        }
    }
}

impl Firewall for Iptables {
    async fn read(&self, family: Family) -> Result<Installed, FirewallError> {
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
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.map_err(spawn_err)?;
    }
    let out = tokio::time::timeout(PROCESS_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| FirewallError::Timeout {
            program: program.to_owned(),
        })?
        .map_err(spawn_err)?;
    if !out.status.success() {
        return Err(FirewallError::Failed {
            program: program.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
