//! The systemd notification protocol (`sd_notify`): one datagram to the
//! socket named by `NOTIFY_SOCKET`. With `Type=notify`, `READY=1` tells
//! systemd that dockfw's protection is installed, so units ordered after
//! it (`docker.service`) start only then. Without `NOTIFY_SOCKET` (not
//! started by systemd) every call does nothing.
//!
//! Not the `sd-notify` crate: its newest version when this was written
//! (0.5.0; 0.4.5 alike) connects to `NOTIFY_SOCKET` as a path, so a socket
//! in the abstract namespace (`@name`, which systemd may hand out) is never
//! reached. `READY=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1` and
//! `RELOADING=1` it would send as this does.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The watchdog interval systemd asked for (`WatchdogSec=`, passed as
/// `WATCHDOG_USEC`), if it is meant for this process.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let pid_ok = std::env::var("WATCHDOG_PID")
        .ok()
        .is_none_or(|pid| pid.parse::<u32>().ok() == Some(std::process::id()));
    (pid_ok && usec > 0).then(|| std::time::Duration::from_micros(usec))
}

/// `RELOADING=1` with the monotonic timestamp systemd wants next to it.
pub fn reloading() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// Send `state` (e.g. `READY=1`) to systemd, if it asked for notifications.
pub fn notify(state: &str) -> io::Result<()> {
    send(std::env::var_os("NOTIFY_SOCKET").as_deref(), state)
}

/// Send `state` to the socket `NOTIFY_SOCKET` names, if it names one.
fn send(socket: Option<&OsStr>, state: &str) -> io::Result<()> {
    let Some(socket) = socket else {
        return Ok(());
    };
    // A leading '@' names a socket in the abstract namespace.
    let addr = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(listener: &UnixDatagram) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        buf[..n].to_vec()
    }

    #[test]
    fn ready_reaches_the_socket_systemd_names() {
        let dir = std::env::temp_dir().join(format!("dockfw-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(Some(path.as_os_str()), "READY=1").expect("send");
        assert_eq!(received(&listener), b"READY=1");
        send(None, "READY=1").expect("without NOTIFY_SOCKET it does nothing");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn an_at_sign_names_a_socket_in_the_abstract_namespace() {
        let name = format!("dockfw-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind");
        let socket = format!("@{name}");
        send(Some(OsStr::new(&socket)), "WATCHDOG=1").expect("send");
        assert_eq!(received(&listener), b"WATCHDOG=1");
    }
}
