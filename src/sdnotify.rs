//! The systemd notification protocol (`sd_notify`): one datagram to the
//! socket named by `NOTIFY_SOCKET`. With `Type=notify`, `READY=1` tells
//! systemd that dockfw's protection is installed, so units ordered after
//! it (`docker.service`) start only then. Without `NOTIFY_SOCKET` (not
//! started by systemd) every call does nothing.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Send `state` (e.g. `READY=1`) to systemd, if it asked for notifications.
pub fn notify(state: &str) -> io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let path = path.to_string_lossy().into_owned();
    // A leading '@' names a socket in the abstract namespace.
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(&path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_the_socket_systemd_names() {
        let dir = std::env::temp_dir().join(format!("dockfw-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        // SAFETY (of the test): no other test reads or writes NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        notify("READY=1").unwrap();
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        notify("READY=1").expect("without NOTIFY_SOCKET it does nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
