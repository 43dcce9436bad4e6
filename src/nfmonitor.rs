//! A watch on nf_tables ruleset changes: the kernel's answer to "did anyone
//! touch the firewall?", so that drift (a firewalld reload, an operator's
//! `iptables -F DOCKER-USER`) is repaired within a reconcile, not a resync
//! interval.
//!
//! It owns one `NETLINK_NETFILTER` socket subscribed to the
//! `NFNLGRP_NFTABLES` multicast group, the stream `nft monitor` prints. It
//! parses nothing: a message means "a change happened", and the daemon
//! re-reads the installed rules. Changes made through `iptables-nft` and
//! `nft` are seen (dockfw's own restores and Docker's writes included; a
//! reconcile that finds nothing to do applies nothing, so the echo stops
//! there). Reading the rules (`iptables-save`, `nft list`) is silent.
//! `iptables-legacy` never passes through nf_tables and is not seen at all:
//! the daemon keeps its periodic resync for that.
//!
//! The socket watches the network namespace of the process that opens it.
//! Idle, it costs one file descriptor registered with the runtime's epoll: no
//! timer, no wake-up, zero CPU. Kernel memory is only spent on messages
//! queued and not yet drained, bounded by the receive buffer.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// The netfilter multicast group carrying nf_tables ruleset changes.
const GROUP: libc::c_int = libc::NFNLGRP_NFTABLES;

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
/// Its size is not critical: an overflow is reported as `ENOBUFS`, which
/// counts as a change like any message.
const RECEIVE_BUFFER: libc::c_int = 1 << 20;

/// How much of each message is read. Nothing is parsed, and the kernel
/// discards the rest of a longer message, so a small buffer is enough.
const READ_CHUNK: usize = 512;

/// Why the watch could not be set up, or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot open a netfilter netlink socket")]
    Open { source: io::Error },
    #[error("cannot bind the netfilter netlink socket")]
    Bind { source: io::Error },
    #[error("cannot join netfilter netlink group {group} (nf_tables changes)")]
    Join {
        group: libc::c_int,
        source: io::Error,
    },
    #[error("cannot set the netfilter netlink receive buffer to {bytes} bytes")]
    ReceiveBuffer {
        bytes: libc::c_int,
        source: io::Error,
    },
    #[error("the nf_tables watch needs a tokio runtime")]
    NoRuntime,
    #[error("cannot register the netfilter netlink socket with the runtime")]
    Register { source: io::Error },
    #[error("cannot wait for nf_tables changes")]
    Wait { source: io::Error },
    #[error("cannot read nf_tables changes")]
    Receive { source: io::Error },
}

/// A subscription to nf_tables ruleset changes in the caller's network
/// namespace.
#[derive(Debug)]
pub struct NfMonitor {
    /// The netlink socket, registered with the runtime so that
    /// [`NfMonitor::changed`] sleeps until the kernel queues a message.
    socket: AsyncFd<OwnedFd>,
}

/// Open a netlink socket on the caller's network namespace and subscribe it
/// to nf_tables changes. Needs `CAP_NET_ADMIN`, and a tokio runtime with
/// I/O enabled (outside any runtime this is [`MonitorError::NoRuntime`]).
pub fn subscribe() -> Result<NfMonitor, MonitorError> {
    // Registering panics outside a runtime; say so instead.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(MonitorError::NoRuntime);
    }
    let socket = open().map_err(|source| MonitorError::Open { source })?;
    bind(socket.as_fd()).map_err(|source| MonitorError::Bind { source })?;
    set_option(
        socket.as_fd(),
        libc::SOL_NETLINK,
        libc::NETLINK_ADD_MEMBERSHIP,
        GROUP,
    )
    .map_err(|source| MonitorError::Join {
        group: GROUP,
        source,
    })?;
    set_option(
        socket.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        RECEIVE_BUFFER,
    )
    .map_err(|source| MonitorError::ReceiveBuffer {
        bytes: RECEIVE_BUFFER,
        source,
    })?;
    // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, so the descriptor
    // stays open and the same for as long as the registration lives.
    let socket = unsafe { AsyncFd::register(socket) }.map_err(|e| MonitorError::Register {
        source: e.into_parts().1,
    })?;
    Ok(NfMonitor { socket })
}

impl NfMonitor {
    /// Wait until the ruleset changed at least once since the last call (or
    /// since [`subscribe`]), then drain everything queued, so one burst of
    /// messages is one wake-up. A receive queue that overflowed counts as a
    /// change.
    ///
    /// Cancel-safe: dropping the future loses nothing, queued messages stay
    /// for the next call.
    pub async fn changed(&mut self) -> Result<(), MonitorError> {
        loop {
            let mut ready = self
                .socket
                .readable()
                .await
                .map_err(|source| MonitorError::Wait { source })?;
            let seen = drain(ready.get_inner().as_fd())?;
            // `drain` stopped at EAGAIN. A message queued since then carries a
            // newer readiness event, which this does not clear.
            ready.clear_ready();
            if seen {
                return Ok(());
            }
        }
    }
}

/// Read every queued message without blocking. True if there was at least
/// one, or the queue had overflowed.
fn drain(socket: BorrowedFd<'_>) -> Result<bool, MonitorError> {
    let mut chunk = [0u8; READ_CHUNK];
    let mut seen = false;
    loop {
        // SAFETY: `chunk` is writable for `chunk.len()` bytes for the whole
        // call, and `socket` is an open descriptor.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                chunk.as_mut_ptr().cast(),
                chunk.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            seen = true;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOBUFS) => seen = true,
            Some(libc::EINTR) => {}
            _ if e.kind() == io::ErrorKind::WouldBlock => return Ok(seen),
            _ => return Err(MonitorError::Receive { source: e }),
        }
    }
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; no memory is passed.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by `socket` and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bind with a kernel-assigned port id and no legacy group mask: groups are
/// joined with `NETLINK_ADD_MEMBERSHIP`.
fn bind(socket: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: all-zero is a valid `sockaddr_nl` (port id 0: kernel picks).
    let mut address: libc::sockaddr_nl = unsafe { mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `address` is a valid `sockaddr_nl` that outlives the call, and
    // the length passed is its size.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast(),
            mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_option(
    socket: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a `c_int` that outlives the call, and the length
    // passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! These run the real socket against real ruleset changes, each in a
    //! private network namespace of its own thread, so the machine's own
    //! firewall is never watched nor touched. They need root and `nft`, and
    //! are skipped with a note otherwise.

    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::*;

    const NFT: &str = "/usr/sbin/nft";
    const IPTABLES_NFT: &str = "/usr/sbin/iptables-nft";

    /// The generous "it arrived at all" bound.
    const ARRIVES: Duration = Duration::from_secs(2);
    /// How long to listen before concluding that nothing came.
    const QUIET: Duration = Duration::from_millis(300);

    /// Run `test` on a thread of its own inside a fresh network namespace,
    /// with a current-thread runtime. Processes spawned from that thread
    /// inherit its namespace. `None` (and a note) if this host cannot.
    fn in_private_netns<T: Send + 'static>(
        tools: &[&str],
        test: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        if let Some(missing) = tools.iter().find(|tool| !Path::new(tool).exists()) {
            eprintln!("skipped: {missing} is not installed");
            return None;
        }
        let thread = std::thread::spawn(move || {
            // SAFETY: plain syscall; CLONE_NEWNET moves only this thread
            // into a new network namespace, which ends with the thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = io::Error::last_os_error();
                eprintln!("skipped: cannot create a network namespace (needs root): {e}");
                return None;
            }
            Some(test())
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Feed `script` to `nft -f -`.
    fn nft(script: &str) {
        let mut child = Command::new(NFT)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn nft");
        let mut stdin = child.stdin.take().expect("nft stdin");
        stdin.write_all(script.as_bytes()).expect("write to nft");
        drop(stdin);
        assert!(child.wait().expect("wait for nft").success(), "nft failed");
    }

    fn run(program: &str, args: &[&str]) {
        let status = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("spawn");
        assert!(status.success(), "{program} {args:?} failed");
    }

    async fn arrives(monitor: &mut NfMonitor) -> bool {
        match tokio::time::timeout(ARRIVES, monitor.changed()).await {
            Ok(result) => {
                result.expect("changed");
                true
            }
            Err(_) => false,
        }
    }

    /// Whether a message is still waiting in the socket, unread.
    fn left_queued(monitor: &NfMonitor) -> bool {
        drain(monitor.socket.get_ref().as_fd()).expect("drain")
    }

    async fn stays_quiet(monitor: &mut NfMonitor) -> bool {
        tokio::time::timeout(QUIET, monitor.changed())
            .await
            .is_err()
    }

    #[test]
    fn subscribing_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(subscribe(), Err(MonitorError::NoRuntime)));
    }

    #[test]
    fn an_nft_change_wakes_the_monitor() {
        in_private_netns(&[NFT], || {
            runtime().block_on(async {
                let mut monitor = subscribe().expect("subscribe");
                nft("add table inet dockfw_monitor_test\n");
                assert!(arrives(&mut monitor).await, "no change seen");
            })
        });
    }

    #[test]
    fn nothing_arrives_when_nothing_changes() {
        in_private_netns(&[NFT], || {
            runtime().block_on(async {
                let mut monitor = subscribe().expect("subscribe");
                nft("list ruleset\n");
                assert!(stays_quiet(&mut monitor).await, "woke with no change");
            })
        });
    }

    #[test]
    fn a_burst_of_changes_is_one_wake_up() {
        in_private_netns(&[NFT], || {
            runtime().block_on(async {
                let mut monitor = subscribe().expect("subscribe");
                nft("add table inet dockfw_monitor_test\n");
                nft("add chain inet dockfw_monitor_test input\n");
                nft("add rule inet dockfw_monitor_test input tcp dport 9 drop\n");
                assert!(arrives(&mut monitor).await, "no change seen");
                assert!(!left_queued(&monitor), "burst not drained");
                assert!(stays_quiet(&mut monitor).await, "woke twice for one burst");
            })
        });
    }

    #[test]
    fn an_overflowed_queue_counts_as_a_change() {
        in_private_netns(&[NFT], || {
            runtime().block_on(async {
                let mut monitor = subscribe().expect("subscribe");
                let socket = monitor.socket.get_ref().as_fd();
                // The kernel rounds this up to its minimum, a few KiB.
                set_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, 1).expect("shrink");
                let mut script = "add table inet dockfw_monitor_test\n\
                                  add chain inet dockfw_monitor_test input\n"
                    .to_owned();
                for port in 1..=500 {
                    script +=
                        &format!("add rule inet dockfw_monitor_test input tcp dport {port} drop\n");
                }
                nft(&script);
                assert!(arrives(&mut monitor).await, "overflow not seen as a change");
                assert!(!left_queued(&monitor), "overflow not drained");
            })
        });
    }

    #[test]
    fn an_iptables_nft_change_wakes_the_monitor() {
        in_private_netns(&[IPTABLES_NFT], || {
            runtime().block_on(async {
                let mut monitor = subscribe().expect("subscribe");
                run(IPTABLES_NFT, &["-w", "-N", "DOCKER-USER"]);
                assert!(arrives(&mut monitor).await, "chain creation not seen");
                run(IPTABLES_NFT, &["-w", "-A", "DOCKER-USER", "-j", "RETURN"]);
                assert!(arrives(&mut monitor).await, "rule append not seen");
                run(IPTABLES_NFT, &["-w", "-S"]);
                assert!(stays_quiet(&mut monitor).await, "a read woke the monitor");
                run(IPTABLES_NFT, &["-w", "-F", "DOCKER-USER"]);
                assert!(arrives(&mut monitor).await, "flush not seen");
            })
        });
    }
}
