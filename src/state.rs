//! What dockfw keeps across restarts under its state directory
//! (`/var/lib/dockfw`): the last policy that validated, the Docker bridges
//! it last saw, the firewall backend that went with the engine when last
//! seen (`auto` at boot follows it), the bridge-netfilter flags it turned
//! on, and the lock that keeps a second daemon out.
//!
//! Those two files let dockfw protect a booting host before the engine
//! exists (see `daemon`): a typo in the policy falls back to the last good
//! one, and the bridges Docker will recreate are known by name. Writes are
//! atomic (temporary file + rename). This module plans nothing and touches
//! no firewall.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::bridge_netfilter::Turned;
use crate::choice::BackendKind;
use crate::inventory::Bridge;

/// Where the state lives unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dockfw";
const LOCK_FILE: &str = "lock";
const LAST_GOOD_POLICY: &str = "last-good-policy.toml";
const BRIDGES: &str = "bridges.json";
const ENGINE_FIREWALL: &str = "engine-firewall";
const BRIDGE_FLAGS: &str = "bridge-flags.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open lock file {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "another dockfw daemon is running on this host (it holds {path}); stop it first \
         (systemctl stop dockfw)"
    )]
    AlreadyRunning { path: PathBuf },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The state directory, locked for this daemon for as long as it lives.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// Holds the exclusive `flock`; the kernel releases it when the daemon
    /// exits, however it exits.
    _lock: File,
}

impl StateDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Create the directory (0700) if needed and take the daemon lock.
    pub fn lock(dir: &Path) -> Result<StateDir, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        let path = dir.join(LOCK_FILE);
        let lock_error = |source| StateError::Lock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(lock_error)?;
        // An exclusive flock(2), not waited for: std's File::try_lock.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StateError::AlreadyRunning { path }),
            Err(TryLockError::Error(error)) => return Err(lock_error(error)),
        }
        Ok(StateDir {
            dir: dir.to_owned(),
            _lock: file,
        })
    }

    /// Keep `text` as the last policy that validated.
    pub fn save_policy(&self, text: &str) -> Result<(), StateError> {
        write_atomic(&self.dir.join(LAST_GOOD_POLICY), text.as_bytes())
    }

    /// Keep the bridges Docker has now, for the next boot.
    pub fn save_bridges(&self, bridges: &[Bridge]) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(bridges).unwrap_or_default();
        write_atomic(&self.dir.join(BRIDGES), text.as_bytes())
    }

    /// The bridges saved last; empty when there are none or the file is
    /// unreadable (the names in it are validated again when planned).
    pub fn bridges(&self) -> Vec<Bridge> {
        fs::read_to_string(self.dir.join(BRIDGES))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }
}

/// The bridge-netfilter flags dockfw turned on (see
/// [`crate::bridge_netfilter`]), kept in the state directory `dir` so that
/// `dockfw uninstall` and the next daemon turn them off again; empty when
/// none were kept. A file that cannot be read or parsed is an error (the
/// flags in it would otherwise stay on, forgotten). Read without the lock.
pub fn bridge_flags(dir: &Path) -> Result<Turned, StateError> {
    let path = dir.join(BRIDGE_FLAGS);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Turned::default()),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    serde_json::from_str(&text).map_err(|source| StateError::Parse { path, source })
}

/// Keep `turned` as the flags dockfw turned on (none: the file goes).
pub fn save_bridge_flags(dir: &Path, turned: &Turned) -> Result<(), StateError> {
    let path = dir.join(BRIDGE_FLAGS);
    if turned.0.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StateError::Write { path, source: e })
            }
            _ => Ok(()),
        };
    }
    let text = serde_json::to_string_pretty(turned).map_err(|e| StateError::Write {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    write_atomic(&path, text.as_bytes())
}

/// Where the last good policy of the state directory `dir` is kept, and
/// whether there is one. Read without the lock (`dockfw check` does).
pub fn last_good_policy(dir: &Path) -> Option<PathBuf> {
    let path = dir.join(LAST_GOOD_POLICY);
    path.is_file().then_some(path)
}

/// Keep the backend that goes with the engine's firewall as it answered
/// (`nftables` for Docker 29's nftables mode) in the state directory `dir`,
/// for `auto` at the next boot. Only the daemon that holds the lock
/// ([`StateDir::lock`]) writes it; the write is atomic.
pub fn save_engine_firewall(dir: &Path, kind: BackendKind) -> Result<(), StateError> {
    write_atomic(&dir.join(ENGINE_FIREWALL), format!("{kind}\n").as_bytes())
}

/// The backend that went with the engine when last seen (see
/// [`save_engine_firewall`]); `None` when none was kept or the file
/// holds anything else. Read without the lock (`plan`, `uninstall`).
pub fn engine_firewall(dir: &Path) -> Option<BackendKind> {
    let text = fs::read_to_string(dir.join(ENGINE_FIREWALL)).ok()?;
    BackendKind::parse(&text)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let write_error = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_error)?;
    file.write_all(bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    fs::rename(&tmp, path).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dockfw-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn bridge_flags_kept_read_back_and_a_broken_file_is_an_error() {
        use crate::net::Family;
        let dir = temp_dir("flags");
        fs::create_dir_all(&dir).expect("dir");
        assert_eq!(bridge_flags(&dir).expect("none kept"), Turned::default());
        let turned = Turned([("br-a".to_owned(), Family::V6)].into_iter().collect());
        save_bridge_flags(&dir, &turned).expect("saved");
        assert_eq!(bridge_flags(&dir).expect("read"), turned);
        fs::write(dir.join(BRIDGE_FLAGS), "{not json").expect("write");
        let err = bridge_flags(&dir).expect_err("broken");
        assert!(matches!(err, StateError::Parse { .. }), "{err:?}");
        save_bridge_flags(&dir, &Turned::default()).expect("removed");
        assert!(!dir.join(BRIDGE_FLAGS).exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_daemon_is_refused_while_the_first_holds_the_lock() {
        let dir = temp_dir("lock");
        let first = StateDir::lock(&dir).expect("first");
        let err = StateDir::lock(&dir).expect_err("second");
        assert!(matches!(err, StateError::AlreadyRunning { .. }), "{err}");
        assert!(err.to_string().contains("another dockfw daemon is running"));
        drop(first);
        StateDir::lock(&dir).expect("free again once the first is gone");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn policy_and_bridges_survive_a_restart() {
        let dir = temp_dir("keep");
        let state = StateDir::lock(&dir).unwrap();
        assert_eq!(last_good_policy(&dir), None);
        assert!(state.bridges().is_empty());
        state.save_policy("[inbound]\n").unwrap();
        let bridges = vec![Bridge {
            id: "1".into(),
            name: "bridge".into(),
            interface: "docker0".into(),
        }];
        state.save_bridges(&bridges).unwrap();
        drop(state);
        let state = StateDir::lock(&dir).unwrap();
        let path = last_good_policy(&dir).expect("kept");
        assert_eq!(fs::read_to_string(path).unwrap(), "[inbound]\n");
        assert_eq!(state.bridges(), bridges);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_engine_firewall_survives_a_restart_and_garbage_is_none() {
        let dir = temp_dir("engine-firewall");
        let state = StateDir::lock(&dir).unwrap();
        assert_eq!(engine_firewall(&dir), None);
        save_engine_firewall(&dir, BackendKind::Nftables).unwrap();
        drop(state);
        assert_eq!(engine_firewall(&dir), Some(BackendKind::Nftables));
        fs::write(dir.join(ENGINE_FIREWALL), "nft; drop\n").unwrap();
        assert_eq!(engine_firewall(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
