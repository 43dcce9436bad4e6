//! A watch on nf_tables ruleset changes: the kernel's answer to "did anyone
//! touch the firewall?", so that drift (a firewalld reload, an operator's
//! `iptables -F DOCKER-USER`) is repaired within a reconcile, not a resync
//! interval.
//!
//! It owns one `NETLINK_NETFILTER` socket subscribed to the
//! `NFNLGRP_NFTABLES` multicast group, the stream `nft monitor` prints. Of
//! each message it reads only the table and chain it names
//! ([`concerns_dockfw`]): a change to the rules of the `filter` table's
//! `FORWARD`, `INPUT`, `DOCKER-USER` or `DOCKFW…` chains, any chain of
//! `filter` made, renamed or deleted, or any change to dockfw's own
//! `dockfw` table, means "re-read the installed rules"; rules in Docker's
//! own chains (`DOCKER`, `nat`, the isolation chains), which it rewrites on
//! every container start, are none of dockfw's business and wake nothing. A
//! message it cannot read counts as a change. Changes made through
//! `iptables-nft` and `nft` are seen, except dockfw's own: every
//! transaction ends with a `NEWGEN` message naming the process that
//! committed it, and a transaction committed by a writer dockfw started
//! ([`expect_own_write`]) is its own echo, already known, and wakes
//! nothing. Reading the rules (`iptables-save`, `nft list`) is silent.
//! `iptables-legacy` never passes through nf_tables and is not seen at all:
//! the daemon keeps its periodic resync for that.
//!
//! The socket watches the network namespace of the process that opens it.
//! Idle, it costs one file descriptor registered with the runtime's epoll: no
//! timer, no wake-up, zero CPU. Kernel memory is only spent on messages
//! queued and not yet drained, bounded by the receive buffer.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netlink_sys::{AsyncSocket, AsyncSocketExt, Socket, SocketAddr, TokioSocket};

/// The netfilter multicast group carrying nf_tables ruleset changes.
const GROUP: u32 = libc::NFNLGRP_NFTABLES as u32;

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
/// Its size is not critical: an overflow is reported as `ENOBUFS`, which
/// counts as a change like any message.
const RECEIVE_BUFFER: libc::c_int = 1 << 20;

/// How much of each datagram is read: the kernel packs a transaction's
/// messages into datagrams of up to a page or so; one longer than this
/// (read with `MSG_TRUNC`, which reports the real length; the first of a
/// wake-up is read without it, and counts when it fills the buffer) counts
/// as a change, unread.
const READ_CHUNK: usize = 64 * 1024;

/// How long a change to dockfw's rules may wait for the `NEWGEN` that
/// ends its transaction (the kernel sends it right after) before it counts
/// as a change whoever made it.
const GENERATION_WAIT: Duration = Duration::from_millis(50);

/// The writers dockfw started ([`expect_own_write`]) whose transaction has
/// not been seen yet, with when they started.
static OWN_WRITERS: Mutex<Vec<(u32, Instant)>> = Mutex::new(Vec::new());

/// How long a started writer is remembered if its transaction is not seen
/// (it failed, or wrote nothing of dockfw's): its `NEWGEN` is queued
/// before it exits, and read within milliseconds; short, so that its pid
/// is not reused by someone else's writer meanwhile.
const OWN_WRITER_MEMORY: Duration = Duration::from_secs(5);

/// The initial pid namespace (`PROC_PID_INIT_INO`): `NEWGEN` names pids as
/// that namespace numbers them.
const INITIAL_PID_NAMESPACE: &str = "pid:[4026531836]";

/// Note that the process `pid`, started by dockfw, is about to write
/// dockfw's rules: the transaction it commits is dockfw's own, and is not
/// reported as a change. Call it after spawning and before handing the
/// writer its input, so that the note is there before the commit.
pub fn expect_own_write(pid: u32) {
    // In a pid namespace of its own dockfw's pids are not the kernel's:
    // then every transaction counts, dockfw's own included.
    let initial = std::fs::read_link("/proc/self/ns/pid")
        .is_ok_and(|ns| ns.as_os_str() == INITIAL_PID_NAMESPACE);
    if !initial {
        return;
    }
    if let Ok(mut writers) = OWN_WRITERS.lock() {
        let now = Instant::now();
        writers.retain(|(_, since)| now.duration_since(*since) < OWN_WRITER_MEMORY);
        writers.push((pid, now));
    }
}

/// The writer `pid` failed: what it may have committed is not dockfw's.
pub fn forget_own_write(pid: u32) {
    own_write(pid);
}

/// Whether `pid` is a writer dockfw started; it is forgotten, as each
/// writer commits one transaction.
fn own_write(pid: u32) -> bool {
    let Ok(mut writers) = OWN_WRITERS.lock() else {
        return false;
    };
    let before = writers.len();
    writers.retain(|(p, _)| *p != pid);
    writers.len() != before
}

/// Why the watch could not be set up, or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot open a netfilter netlink socket")]
    Open { source: io::Error },
    #[error("cannot bind the netfilter netlink socket")]
    Bind { source: io::Error },
    #[error("cannot join netfilter netlink group {group} (nf_tables changes)")]
    Join { group: u32, source: io::Error },
    #[error("cannot set the netfilter netlink receive buffer to {bytes} bytes")]
    ReceiveBuffer {
        bytes: libc::c_int,
        source: io::Error,
    },
    #[error("the nf_tables watch needs a tokio runtime")]
    NoRuntime,
    #[error("cannot read nf_tables changes")]
    Receive { source: io::Error },
}

/// A subscription to nf_tables ruleset changes in the caller's network
/// namespace.
pub struct NfMonitor {
    /// The netlink socket, non-blocking and registered with the runtime,
    /// so that [`NfMonitor::changed`] sleeps until the kernel queues a
    /// message.
    socket: TokioSocket,
    /// A change that concerns dockfw was read, and not yet the `NEWGEN`
    /// that says who made it.
    unclaimed: bool,
}

impl std::fmt::Debug for NfMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NfMonitor")
            .field("socket", self.socket.socket_ref())
            .field("unclaimed", &self.unclaimed)
            .finish()
    }
}

/// Open a netlink socket on the caller's network namespace and subscribe it
/// to nf_tables changes. Needs `CAP_NET_ADMIN`, and a tokio runtime with
/// I/O enabled (outside any runtime this is [`MonitorError::NoRuntime`]).
pub fn subscribe() -> Result<NfMonitor, MonitorError> {
    // Registering panics outside a runtime; say so instead.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(MonitorError::NoRuntime);
    }
    let mut socket = TokioSocket::new(netlink_sys::protocols::NETLINK_NETFILTER)
        .map_err(|source| MonitorError::Open { source })?;
    bind(socket.socket_mut()).map_err(|source| MonitorError::Bind { source })?;
    let socket_ref = socket.socket_ref();
    socket_ref
        .add_membership(GROUP)
        .map_err(|source| MonitorError::Join {
            group: GROUP,
            source,
        })?;
    socket_ref
        .set_rx_buf_sz(RECEIVE_BUFFER)
        .map_err(|source| MonitorError::ReceiveBuffer {
            bytes: RECEIVE_BUFFER,
            source,
        })?;
    Ok(NfMonitor {
        socket,
        unclaimed: false,
    })
}

impl NfMonitor {
    /// Wait until the ruleset changed at least once since the last call (or
    /// since [`subscribe`]), then drain everything queued, so one burst of
    /// messages is one wake-up. A receive queue that overflowed counts as a
    /// change.
    ///
    /// Cancel-safe: dropping the future loses nothing, queued messages stay
    /// for the next call (a datagram is read only when the future
    /// completes it, and what was read is settled before the next wait).
    pub async fn changed(&mut self) -> Result<(), MonitorError> {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let mut unread = &mut chunk[..];
            let read = self.socket.recv(&mut unread);
            let first = if self.unclaimed {
                // A change whose transaction's end has not come: give it a
                // moment, then count it whoever made it.
                match tokio::time::timeout(GENERATION_WAIT, read).await {
                    Ok(first) => first,
                    Err(_) => {
                        self.unclaimed = false;
                        return Ok(());
                    }
                }
            } else {
                read.await
            };
            let len = READ_CHUNK - unread.len();
            let mut seen = match first {
                // Read without `MSG_TRUNC`: a full buffer may have been cut
                // short, and what was not read may concern dockfw.
                Ok(()) => len >= READ_CHUNK || self.scan(&chunk[..len]),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => true,
                Err(source) => return Err(MonitorError::Receive { source }),
            };
            // The rest of the burst, without waiting. The runtime still
            // holds the socket readable: the next wait reads `EAGAIN` once
            // and then sleeps.
            seen |= drain(self.socket.socket_ref(), &mut chunk, &mut self.unclaimed)?;
            if seen {
                return Ok(());
            }
        }
    }

    fn scan(&mut self, datagram: &[u8]) -> bool {
        scan(datagram, &mut self.unclaimed, &mut own_write)
    }
}

/// Read every queued message without blocking. True if one of them is a
/// change that concerns dockfw made by someone else ([`scan`]), or the
/// queue had overflowed. `unclaimed` carries a change whose `NEWGEN` is
/// still to come from one call to the next.
fn drain(socket: &Socket, chunk: &mut [u8], unclaimed: &mut bool) -> Result<bool, MonitorError> {
    let mut seen = false;
    loop {
        match receive(socket, chunk, libc::MSG_DONTWAIT) {
            // Cut short: what was not read may concern dockfw.
            Ok(len) => seen |= len > chunk.len() || scan(&chunk[..len], unclaimed, &mut own_write),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => seen = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(seen),
            Err(e) => return Err(MonitorError::Receive { source: e }),
        }
    }
}

/// One datagram of `socket` into `chunk`, `EINTR` retried: its whole length,
/// which is more than `chunk.len()` when it was cut short (`MSG_TRUNC`).
pub(crate) fn receive(socket: &Socket, chunk: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    loop {
        match socket.recv(&mut &mut chunk[..], flags | libc::MSG_TRUNC) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => return read,
        }
    }
}

/// nfnetlink's subsystem of nf_tables, the high byte of a message's type.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// nf_tables message types (the low byte), from `linux/netfilter/nf_tables.h`.
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWGEN: u16 = 15;
/// `NEWGEN`'s attribute with the pid of the process that committed the
/// transaction (big-endian u32).
const ATTR_GEN_PROC_PID: u16 = 2;
/// The first attribute of every object message is its table's name; a
/// rule message names its chain in attribute 2.
const ATTR_TABLE: u16 = 1;
const ATTR_RULE_CHAIN: u16 = 2;

/// The chains of iptables-nft's `filter` table whose changes dockfw must
/// see: its jumps' parents and its own chains.
fn watched_chain(name: &[u8]) -> bool {
    matches!(name, b"FORWARD" | b"INPUT" | b"DOCKER-USER") || name.starts_with(b"DOCKFW")
}

/// Whether a datagram from the nf_tables group may concern dockfw's rules:
/// any change to its `dockfw` table, a change to a watched chain of a
/// `filter` table (or to such a table as a whole), and anything it cannot
/// read, whoever made it. Docker's own chains and tables, and the
/// end-of-transaction (`NEWGEN`) markers, do not. Pure.
pub fn concerns_dockfw(datagram: &[u8]) -> bool {
    let mut unclaimed = false;
    scan(datagram, &mut unclaimed, &mut |_| false) || unclaimed
}

/// Read a datagram's messages in order: a change that concerns dockfw
/// ([`concerns_dockfw`]) sets `unclaimed`; the `NEWGEN` that ends its
/// transaction settles it: a change by someone else (`own` says no to the
/// committing pid) makes the result true, dockfw's own is forgotten. A
/// message from outside nf_tables, or a datagram with nothing readable,
/// makes it true at once. Pure but for what `own` does.
fn scan(datagram: &[u8], unclaimed: &mut bool, own: &mut impl FnMut(u32) -> bool) -> bool {
    let mut rest = datagram;
    let mut any = false;
    let mut foreign = false;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        // A message cut short by the read buffer is read as far as it goes.
        let message = &rest[..len.clamp(16, rest.len())];
        let body = &message[16..];
        any = true;
        if kind >> 8 == NFNL_SUBSYS_NFTABLES && kind & 0xff == NFT_MSG_NEWGEN {
            if std::mem::take(unclaimed) {
                let pid = body
                    .get(4..)
                    .and_then(|attributes| attribute_raw(attributes, ATTR_GEN_PROC_PID))
                    .and_then(|p| <[u8; 4]>::try_from(p).ok())
                    .map(u32::from_be_bytes);
                foreign |= !pid.is_some_and(&mut *own);
            }
        } else if kind >> 8 != NFNL_SUBSYS_NFTABLES {
            foreign = true;
        } else if message_concerns_dockfw(kind, body) {
            *unclaimed = true;
        }
        let step = (len + 3) & !3;
        if step < 16 || step >= rest.len() {
            break;
        }
        rest = &rest[step..];
    }
    // Nothing readable: count it as a change.
    foreign || !any
}

fn message_concerns_dockfw(kind: u16, body: &[u8]) -> bool {
    if kind >> 8 != NFNL_SUBSYS_NFTABLES {
        return true;
    }
    let kind = kind & 0xff;
    if kind == NFT_MSG_NEWGEN {
        return false;
    }
    // After the 4-byte nfgenmsg (family, version, resource id): attributes.
    let Some(attributes) = body.get(4..) else {
        return true;
    };
    let table = attribute(attributes, ATTR_TABLE);
    match table {
        Some(b"dockfw") => true,
        Some(b"filter") => {
            let chain = match kind {
                // Rare, and a rename names only the new name: any chain
                // made, renamed or deleted counts.
                NFT_MSG_NEWTABLE | NFT_MSG_DELTABLE | NFT_MSG_NEWCHAIN | NFT_MSG_DELCHAIN => {
                    return true;
                }
                NFT_MSG_NEWRULE | NFT_MSG_DELRULE => attribute(attributes, ATTR_RULE_CHAIN),
                // Sets, objects, flowtables of the filter table: not dockfw's.
                _ => return false,
            };
            chain.is_none_or(watched_chain)
        }
        // Another table (nat, Docker's or firewalld's own): not dockfw's.
        Some(_) => false,
        None => true,
    }
}

/// The payload of the first attribute of `kind` (a name: without its NUL).
pub(crate) fn attribute(attributes: &[u8], kind: u16) -> Option<&[u8]> {
    let payload = attribute_raw(attributes, kind)?;
    Some(payload.split(|b| *b == 0).next().unwrap_or(payload))
}

/// The whole payload of the first attribute of `kind`.
pub(crate) fn attribute_raw(mut attributes: &[u8], kind: u16) -> Option<&[u8]> {
    while attributes.len() >= 4 {
        let len = u16::from_ne_bytes([attributes[0], attributes[1]]) as usize;
        let typ = u16::from_ne_bytes([attributes[2], attributes[3]]) & 0x3fff;
        if len < 4 {
            return None;
        }
        let payload = attributes.get(4..len)?;
        if typ == kind {
            return Some(payload);
        }
        attributes = attributes.get((len + 3) & !3..)?;
    }
    None
}

/// Bind `socket` with a kernel-assigned port id and no legacy group mask:
/// groups are joined with `NETLINK_ADD_MEMBERSHIP`.
pub(crate) fn bind(socket: &mut Socket) -> io::Result<()> {
    socket.bind(&SocketAddr::new(0, 0))
}

#[cfg(test)]
mod tests {
    //! These run the real socket against real ruleset changes, each in a
    //! private network namespace of its own thread, so the machine's own
    //! firewall is never watched nor touched. They need root and `nft`: they
    //! are `#[ignore]`d in a plain `cargo test` and fail where they cannot run.

    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::*;
    use crate::testns::in_private_netns;

    const NFT: &str = "/usr/sbin/nft";
    const IPTABLES_NFT: &str = "/usr/sbin/iptables-nft";

    /// The generous "it arrived at all" bound.
    const ARRIVES: Duration = Duration::from_secs(2);
    /// How long to listen before concluding that nothing came.
    const QUIET: Duration = Duration::from_millis(300);

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
        let mut unclaimed = false;
        let mut chunk = vec![0u8; READ_CHUNK];
        drain(monitor.socket.socket_ref(), &mut chunk, &mut unclaimed).expect("drain") || unclaimed
    }

    async fn stays_quiet(monitor: &mut NfMonitor) -> bool {
        tokio::time::timeout(QUIET, monitor.changed())
            .await
            .is_err()
    }

    /// One nf_tables message as the kernel sends it: header, nfgenmsg, and
    /// string attributes.
    fn message(kind: u16, attributes: &[(u16, &str)]) -> Vec<u8> {
        let attributes: Vec<(u16, Vec<u8>)> = attributes
            .iter()
            .map(|(typ, value)| (*typ, [value.as_bytes(), &[0]].concat()))
            .collect();
        message_raw(kind, &attributes)
    }

    /// The same with attribute payloads as given.
    fn message_raw(kind: u16, attributes: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![libc::NFPROTO_IPV4 as u8, 0, 0, 0];
        for (typ, payload) in attributes {
            body.extend(((payload.len() + 4) as u16).to_ne_bytes());
            body.extend(typ.to_ne_bytes());
            body.extend(payload);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut out = ((body.len() + 16) as u32).to_ne_bytes().to_vec();
        out.extend(((NFNL_SUBSYS_NFTABLES << 8) | kind).to_ne_bytes());
        out.extend([0u8; 10]);
        out.extend(body);
        out
    }

    #[test]
    fn only_changes_to_dockfws_chains_and_table_concern_it() {
        let rule = |table, chain| message(NFT_MSG_NEWRULE, &[(1, table), (2, chain)]);
        let chain = |kind, table, name| message(kind, &[(1, table), (2, "7"), (3, name)]);
        for yes in [
            rule("filter", "DOCKER-USER"),
            rule("filter", "FORWARD"),
            rule("filter", "INPUT"),
            rule("filter", "DOCKFW-INBOUND"),
            message(NFT_MSG_DELRULE, &[(1, "filter"), (2, "DOCKFW")]),
            chain(NFT_MSG_DELCHAIN, "filter", "DOCKER-USER"),
            message(NFT_MSG_DELTABLE, &[(1, "filter")]),
            rule("dockfw", "forward"),
            message(12, &[(1, "dockfw"), (2, "guard_tcp_v4")]),
            message(NFT_MSG_DELTABLE, &[(1, "dockfw")]),
            message(NFT_MSG_NEWRULE, &[]),
            vec![1, 2, 3],
        ] {
            assert!(concerns_dockfw(&yes), "{yes:?}");
        }
        for no in [
            rule("filter", "DOCKER"),
            rule("filter", "DOCKER-ISOLATION-STAGE-1"),
            rule("nat", "DOCKER"),
            rule("nat", "POSTROUTING"),
            message(NFT_MSG_NEWGEN, &[(1, "4711")]),
            rule("docker-bridges", "filter-forward"),
        ] {
            assert!(!concerns_dockfw(&no), "{no:?}");
        }
        let both = [rule("nat", "DOCKER"), rule("filter", "FORWARD")].concat();
        assert!(
            concerns_dockfw(&both),
            "the second message of a datagram counts"
        );
        // A datagram of many messages (the kernel packs a transaction's):
        // one that concerns dockfw far past the first 512 bytes counts.
        let mut long: Vec<u8> = (0..20).flat_map(|_| rule("filter", "DOCKER")).collect();
        assert!(long.len() > 512 && !concerns_dockfw(&long));
        long.extend(rule("filter", "DOCKER-USER"));
        assert!(concerns_dockfw(&long));
        assert!(
            concerns_dockfw(&chain(NFT_MSG_NEWCHAIN, "filter", "RENAMED")),
            "a rename names only the new name: any chain change counts"
        );
    }

    /// The end of a transaction committed by `pid`, as the kernel sends it.
    fn newgen(pid: u32) -> Vec<u8> {
        message_raw(
            NFT_MSG_NEWGEN,
            &[
                (1, 7u32.to_be_bytes().to_vec()),
                (ATTR_GEN_PROC_PID, pid.to_be_bytes().to_vec()),
                (3, b"nft\0".to_vec()),
            ],
        )
    }

    #[test]
    fn dockfws_own_transactions_are_not_changes() {
        let ours = |pid: u32| pid == 42;
        let change = message(NFT_MSG_NEWRULE, &[(1, "dockfw"), (2, "forward")]);
        let mut unclaimed = false;
        assert!(!scan(
            &[change.clone(), newgen(42)].concat(),
            &mut unclaimed,
            &mut { ours }
        ));
        assert!(!unclaimed, "settled by its NEWGEN");
        assert!(
            scan(
                &[change.clone(), newgen(7)].concat(),
                &mut unclaimed,
                &mut { ours }
            ),
            "someone else's change to dockfw's table"
        );
        // The NEWGEN may come in the next datagram.
        assert!(!scan(&change, &mut unclaimed, &mut { ours }));
        assert!(unclaimed, "waits for its NEWGEN");
        assert!(!scan(&newgen(42), &mut unclaimed, &mut { ours }));
        assert!(!unclaimed);
        assert!(!scan(&change, &mut unclaimed, &mut { ours }));
        assert!(scan(&newgen(7), &mut unclaimed, &mut { ours }));
        // A transaction that touched nothing of dockfw's is not a change,
        // whoever made it; one whose NEWGEN names no pid is someone else's.
        let docker = message(NFT_MSG_NEWRULE, &[(1, "filter"), (2, "DOCKER")]);
        assert!(!scan(&[docker, newgen(7)].concat(), &mut unclaimed, &mut {
            ours
        }));
        let anonymous = message(NFT_MSG_NEWGEN, &[(1, "4711")]);
        assert!(scan(&[change, anonymous].concat(), &mut unclaimed, &mut {
            ours
        }));
        assert!(!unclaimed);
    }

    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn a_write_by_a_process_dockfw_started_wakes_nothing() {
        in_private_netns(&[NFT], || {
            runtime().block_on(async {
                nft("add table inet dockfw\n");
                let mut monitor = subscribe().expect("subscribe");
                let mut child = Command::new(NFT)
                    .args(["-f", "-"])
                    .stdin(Stdio::piped())
                    .spawn()
                    .expect("spawn nft");
                expect_own_write(child.id());
                let mut stdin = child.stdin.take().expect("nft stdin");
                stdin
                    .write_all(b"add chain inet dockfw input\n")
                    .expect("write to nft");
                drop(stdin);
                assert!(child.wait().expect("wait for nft").success(), "nft failed");
                assert!(stays_quiet(&mut monitor).await, "woke for its own write");
                nft("add chain inet dockfw forward\n");
                assert!(arrives(&mut monitor).await, "someone else's write not seen");
            })
        });
    }

    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn changes_to_dockers_chains_wake_nothing() {
        in_private_netns(&[IPTABLES_NFT], || {
            runtime().block_on(async {
                // The tables and their base chains exist, as on a Docker host.
                run(IPTABLES_NFT, &["-w", "-N", "DOCKER"]);
                run(IPTABLES_NFT, &["-w", "-t", "nat", "-N", "DOCKER"]);
                let mut monitor = subscribe().expect("subscribe");
                run(IPTABLES_NFT, &["-w", "-A", "DOCKER", "-j", "RETURN"]);
                run(
                    IPTABLES_NFT,
                    &["-w", "-t", "nat", "-A", "DOCKER", "-j", "RETURN"],
                );
                assert!(
                    stays_quiet(&mut monitor).await,
                    "woke for Docker's own chains"
                );
                run(IPTABLES_NFT, &["-w", "-I", "FORWARD", "-j", "DOCKER"]);
                assert!(arrives(&mut monitor).await, "a change to FORWARD not seen");
            })
        });
    }

    #[test]
    fn subscribing_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(subscribe(), Err(MonitorError::NoRuntime)));
    }

    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn an_nft_change_wakes_the_monitor() {
        in_private_netns(&[NFT], || {
            runtime().block_on(async {
                let mut monitor = subscribe().expect("subscribe");
                nft("add table inet dockfw\n");
                assert!(arrives(&mut monitor).await, "no change seen");
            })
        });
    }

    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
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
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn a_burst_of_changes_is_one_wake_up() {
        in_private_netns(&[NFT], || {
            runtime().block_on(async {
                let mut monitor = subscribe().expect("subscribe");
                nft("add table inet dockfw\n");
                nft("add chain inet dockfw input\n");
                nft("add rule inet dockfw input tcp dport 9 drop\n");
                assert!(arrives(&mut monitor).await, "no change seen");
                assert!(!left_queued(&monitor), "burst not drained");
                assert!(stays_quiet(&mut monitor).await, "woke twice for one burst");
            })
        });
    }

    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
    fn an_overflowed_queue_counts_as_a_change() {
        in_private_netns(&[NFT], || {
            runtime().block_on(async {
                let mut monitor = subscribe().expect("subscribe");
                // The kernel rounds this up to its minimum, a few KiB.
                let one: libc::c_int = 1;
                monitor
                    .socket
                    .socket_ref()
                    .set_rx_buf_sz(one)
                    .expect("shrink");
                let mut script = "add table inet dockfw\n\
                                  add chain inet dockfw input\n"
                    .to_owned();
                for port in 1..=500 {
                    script += &format!("add rule inet dockfw input tcp dport {port} drop\n");
                }
                nft(&script);
                assert!(arrives(&mut monitor).await, "overflow not seen as a change");
                assert!(!left_queued(&monitor), "overflow not drained");
            })
        });
    }

    #[test]
    #[ignore = "needs root: a private network namespace and nft (tests/run.sh runs it)"]
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
