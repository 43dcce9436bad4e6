//! Which network interfaces are Linux bridges now, in dockfw's own network
//! namespace, and a watch that says when that changes: the kernel's word
//! behind exempting traffic from containers (`-i <bridge> -j RETURN`), which
//! a bridge network's `com.docker.network.bridge.name` option, or the
//! bridges kept in `bridges.json` from a previous boot, only claim.
//!
//! It asks rtnetlink (`NETLINK_ROUTE`): one `RTM_GETLINK` dump, then the
//! `RTNLGRP_LINK` multicast group, applied link by link (by interface
//! index, so a rename is followed). A link is a bridge when its
//! `IFLA_LINKINFO` kind is `bridge`, the same fact `/sys/class/net/IF/bridge`
//! shows. sysfs is not read: `/sys/class/net` lists the network namespace
//! of whoever mounted `/sys`, not necessarily the caller's (`nsenter --net`
//! keeps the host's), while a netlink socket always speaks for the
//! namespace of the process that opens it. The socket pieces are
//! [`crate::nfmonitor`]'s.
//!
//! Only messages of the generic link family (`AF_UNSPEC`) count: the
//! bridge module's own `AF_BRIDGE` link messages (a port joining or leaving
//! a bridge) carry no link kind, and a port leaving is not a link deleted.
//! This module plans nothing and touches no firewall.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;

use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{AsyncSocket, AsyncSocketExt, Socket, TokioSocket};

use crate::inventory::{Inventory, Rejected};
use crate::net::Iface;
use crate::nfmonitor::{attribute, attribute_raw, bind};

/// How much of each datagram is read; a longer one (the kernel sizes dump
/// datagrams by the reader's buffer, a page or so) is an error.
const READ_CHUNK: usize = 64 * 1024;

/// Receive buffer asked for the watch; an overflow (`ENOBUFS`) is answered
/// with a fresh dump.
const RECEIVE_BUFFER: libc::c_int = 1 << 20;

/// The link kind of a Linux bridge (`ip link add NAME type bridge`).
const BRIDGE_KIND: &[u8] = b"bridge";

/// Why the links could not be read or followed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open an rtnetlink socket")]
    Open { source: io::Error },
    #[error("cannot join the rtnetlink link group")]
    Join { source: io::Error },
    #[error("cannot ask rtnetlink for the links")]
    Send { source: io::Error },
    #[error("cannot read links from rtnetlink")]
    Receive { source: io::Error },
    #[error("rtnetlink refused the link dump (errno {errno})")]
    Refused { errno: i32 },
    #[error("rtnetlink sent a datagram of {len} bytes, more than {READ_CHUNK}")]
    Truncated { len: usize },
    #[error("the link watch needs a tokio runtime")]
    NoRuntime,
}

/// What the kernel has under an interface name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A Linux bridge.
    Bridge,
    /// Some other link (a physical NIC, a veth, a WireGuard device, …).
    Other,
    /// No link of that name.
    Missing,
}

/// The links of one network namespace, by interface index, and by name
/// (kept with every change, so a question about one name or about the
/// bridges costs what they are, not every veth of the host).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    by_index: BTreeMap<i32, Link>,
    /// Per name, how many links under it are bridges (few).
    bridges: HashMap<String, usize>,
    /// Per name, how many links under it are not bridges (a veth each
    /// container).
    others: HashMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    name: String,
    bridge: bool,
}

impl Links {
    /// What the kernel has under `name` now. Two links under one name (only
    /// ever for an instant, between a rename and the next) make a bridge
    /// only if both are.
    pub fn kind(&self, name: &str) -> LinkKind {
        if self.others.contains_key(name) {
            LinkKind::Other
        } else if self.bridges.contains_key(name) {
            LinkKind::Bridge
        } else {
            LinkKind::Missing
        }
    }

    /// The names of every Linux bridge.
    pub fn bridges(&self) -> BTreeSet<String> {
        self.bridges.keys().cloned().collect()
    }

    fn insert(&mut self, index: i32, link: Link) {
        self.remove(index);
        match link.bridge {
            true => *self.bridges.entry(link.name.clone()).or_default() += 1,
            false => *self.others.entry(link.name.clone()).or_default() += 1,
        }
        self.by_index.insert(index, link);
    }

    fn remove(&mut self, index: i32) {
        let Some(link) = self.by_index.remove(&index) else {
            return;
        };
        match link.bridge {
            true => count_down(&mut self.bridges, &link.name),
            false => count_down(&mut self.others, &link.name),
        }
    }

    /// Links as a test describes them: `(name, is a bridge)`.
    pub fn from_names<'a>(links: impl IntoIterator<Item = (&'a str, bool)>) -> Links {
        let mut out = Links::default();
        for ((name, bridge), index) in links.into_iter().zip(1..) {
            let name = name.to_owned();
            out.insert(index, Link { name, bridge });
        }
        out
    }

    /// Apply the messages of one datagram (a dump's part or a
    /// notification): a new or changed link is recorded, a deleted one
    /// forgotten. `Ok(true)` once the dump's end (`NLMSG_DONE`) is read.
    /// Pure.
    fn apply(&mut self, datagram: &[u8]) -> Result<bool, LinkError> {
        let mut rest = datagram;
        let mut done = false;
        while rest.len() >= HEADER {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            let message = &rest[..len.clamp(HEADER, rest.len())];
            let body = &message[HEADER..];
            match libc::c_int::from(kind) {
                libc::NLMSG_DONE => done = true,
                libc::NLMSG_ERROR => {
                    let errno = body
                        .get(..4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map_or(0, i32::from_ne_bytes);
                    if errno != 0 {
                        return Err(LinkError::Refused { errno: -errno });
                    }
                }
                _ if kind == libc::RTM_NEWLINK || kind == libc::RTM_DELLINK => {
                    self.apply_link(kind == libc::RTM_NEWLINK, body);
                }
                _ => {}
            }
            let step = (len + 3) & !3;
            if step < HEADER || step >= rest.len() {
                break;
            }
            rest = &rest[step..];
        }
        Ok(done)
    }

    /// One `RTM_NEWLINK` (`new`) or `RTM_DELLINK` body: `ifinfomsg`, then
    /// attributes.
    fn apply_link(&mut self, new: bool, body: &[u8]) {
        let Some(info) = body.get(..IFINFOMSG) else {
            return;
        };
        if i32::from(info[0]) != libc::AF_UNSPEC {
            return;
        }
        let index = i32::from_ne_bytes([info[4], info[5], info[6], info[7]]);
        if !new {
            self.remove(index);
            return;
        }
        let attributes = &body[IFINFOMSG..];
        let Some(name) = attribute(attributes, libc::IFLA_IFNAME) else {
            return;
        };
        let bridge = attribute_raw(attributes, libc::IFLA_LINKINFO)
            .and_then(|info| attribute(info, libc::IFLA_INFO_KIND))
            == Some(BRIDGE_KIND);
        let name = String::from_utf8_lossy(name).into_owned();
        self.insert(index, Link { name, bridge });
    }
}

/// One link fewer under `name` in `names` (the name goes at zero).
fn count_down(names: &mut HashMap<String, usize>, name: &str) {
    if let Some(n) = names.get_mut(name) {
        *n -= 1;
        if *n == 0 {
            names.remove(name);
        }
    }
}

/// A bridge network whose interface is not taken as a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotABridge {
    /// What the kernel has under the name; `None` when it could not be
    /// asked. `Missing` is the ordinary state of a booting host (`docker0`
    /// before dockerd makes it); `Other` means the option names something
    /// else, an uplink say.
    pub kind: Option<LinkKind>,
    /// The line for status and the log.
    pub rejected: Rejected,
}

/// Take the kernel's word on each bridge network's interface: every one
/// that `links` does not show as a Linux bridge now goes into
/// `inventory.not_bridges` (all of them when the kernel could not be asked,
/// `Err` with why), with a line for status and the log per such network.
/// Names the plan refuses anyway ([`crate::plan::rejected_bridges`]) are
/// left to it. Pure.
pub fn check_bridges(inventory: &mut Inventory, links: Result<&Links, &str>) -> Vec<NotABridge> {
    let mut rejected = Vec::new();
    inventory.not_bridges.clear();
    for bridge in &inventory.bridges {
        if Iface::new(&bridge.interface).is_err() {
            continue;
        }
        let kind = links.map(|links| links.kind(&bridge.interface));
        let what = match kind {
            Ok(LinkKind::Bridge) => continue,
            Ok(LinkKind::Other) => format!(
                "interface {:?} is not a Linux bridge in dockfw's network namespace",
                bridge.interface
            ),
            Ok(LinkKind::Missing) => format!(
                "no interface {:?} in dockfw's network namespace (yet)",
                bridge.interface
            ),
            Err(why) => format!(
                "cannot ask the kernel whether {:?} is a Linux bridge ({why})",
                bridge.interface
            ),
        };
        inventory.not_bridges.insert(bridge.interface.clone());
        rejected.push(NotABridge {
            kind: kind.ok(),
            rejected: Rejected {
                kind: "network".to_owned(),
                name: bridge.name.clone(),
                reason: format!(
                    "{what}: nothing arriving on it is exempted, its containers are judged by address"
                ),
            },
        });
    }
    rejected
}

/// `nlmsghdr`'s size.
const HEADER: usize = 16;
/// `ifinfomsg`'s size: family, pad, type, index, flags, change.
const IFINFOMSG: usize = 16;

/// Every link of the caller's network namespace, now.
pub fn links() -> Result<Links, LinkError> {
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|source| LinkError::Open { source })?;
    bind(&mut socket).map_err(|source| LinkError::Open { source })?;
    request_dump(&socket)?;
    let mut links = Links::default();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let len = receive(&socket, &mut chunk, 0)?;
        if links.apply(&chunk[..len])? {
            return Ok(links);
        }
    }
}

/// Send `RTM_GETLINK` with `NLM_F_DUMP`: every link, for any family.
fn request_dump(socket: &Socket) -> Result<(), LinkError> {
    let mut request = [0u8; HEADER + IFINFOMSG];
    request[..4].copy_from_slice(&((HEADER + IFINFOMSG) as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    request[6..8].copy_from_slice(&flags.to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    socket
        .send(&request, 0)
        .map_err(|source| LinkError::Send { source })?;
    Ok(())
}

/// One datagram into `chunk`; its length. `EINTR` is retried.
fn receive(socket: &Socket, chunk: &mut [u8], flags: libc::c_int) -> Result<usize, LinkError> {
    match crate::nfmonitor::receive(socket, chunk, flags) {
        Ok(len) if len > chunk.len() => Err(LinkError::Truncated { len }),
        Ok(len) => Ok(len),
        Err(source) => Err(LinkError::Receive { source }),
    }
}

/// A subscription to link changes in the caller's network namespace, with
/// the links as they stand.
pub struct LinkWatch {
    /// The `RTNLGRP_LINK` socket, non-blocking and registered with the
    /// runtime, so that [`LinkWatch::changed`] sleeps until the kernel
    /// queues a message.
    socket: TokioSocket,
    links: Links,
    /// The bridges as last taken by [`LinkWatch::refresh`] or reported by
    /// [`LinkWatch::changed`]: what a change is measured against.
    seen: BTreeSet<String>,
}

impl std::fmt::Debug for LinkWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkWatch")
            .field("socket", self.socket.socket_ref())
            .field("links", &self.links)
            .field("seen", &self.seen)
            .finish()
    }
}

/// Subscribe to link changes, then read every link: a change between the
/// two is queued and applied after the dump, in order, so nothing is lost.
/// Needs a tokio runtime with I/O enabled.
pub fn watch() -> Result<LinkWatch, LinkError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(LinkError::NoRuntime);
    }
    let mut socket =
        TokioSocket::new(NETLINK_ROUTE).map_err(|source| LinkError::Open { source })?;
    bind(socket.socket_mut()).map_err(|source| LinkError::Open { source })?;
    socket
        .socket_ref()
        .add_membership(libc::RTNLGRP_LINK)
        .map_err(|source| LinkError::Join { source })?;
    // A smaller buffer than asked for only makes an overflow likelier, which
    // is answered with a dump.
    let _ = socket.socket_ref().set_rx_buf_sz(RECEIVE_BUFFER);
    let links = links()?;
    let seen = links.bridges();
    Ok(LinkWatch {
        socket,
        links,
        seen,
    })
}

impl LinkWatch {
    /// The links as last read.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Apply what the kernel has queued by now, without waiting (a bridge
    /// made an instant ago is known before a plan is made), and take the
    /// links as they stand.
    pub fn refresh(&mut self) -> Result<&Links, LinkError> {
        let mut chunk = vec![0u8; READ_CHUNK];
        if drain(self.socket.socket_ref(), &mut chunk, &mut self.links)? {
            self.links = links()?;
        }
        self.seen = self.links.bridges();
        Ok(&self.links)
    }

    /// Wait until the set of Linux bridges differs from the one last taken
    /// ([`LinkWatch::refresh`]) or reported here. Links that are not
    /// bridges coming and going (a container's veth) change nothing and
    /// wake nothing. A queue that overflowed is answered with a fresh dump.
    ///
    /// Cancel-safe: messages not yet read stay queued, and a change read
    /// stays a change until reported or taken.
    pub async fn changed(&mut self) -> Result<(), LinkError> {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let now = self.links.bridges();
            if now != self.seen {
                self.seen = now;
                return Ok(());
            }
            let mut unread = &mut chunk[..];
            let first = self.socket.recv(&mut unread).await;
            let len = READ_CHUNK - unread.len();
            let mut overflowed = match first {
                // Read without `MSG_TRUNC`: a full buffer may have been cut
                // short, and what was not read is lost.
                Ok(()) if len >= READ_CHUNK => true,
                Ok(()) => {
                    self.links.apply(&chunk[..len])?;
                    false
                }
                Err(source) if source.raw_os_error() == Some(libc::ENOBUFS) => true,
                Err(source) => return Err(LinkError::Receive { source }),
            };
            // The rest, without waiting. The runtime still holds the socket
            // readable: the next wait reads `EAGAIN` once and then sleeps.
            overflowed |= drain(self.socket.socket_ref(), &mut chunk, &mut self.links)?;
            if overflowed {
                self.links = links()?;
            }
        }
    }
}

/// Apply every queued notification without blocking. True if the queue had
/// overflowed (some were lost).
fn drain(socket: &Socket, chunk: &mut [u8], links: &mut Links) -> Result<bool, LinkError> {
    let mut overflowed = false;
    loop {
        match receive(socket, chunk, libc::MSG_DONTWAIT) {
            Ok(len) => {
                links.apply(&chunk[..len])?;
            }
            Err(LinkError::Receive { source }) => match source.raw_os_error() {
                Some(libc::ENOBUFS) => overflowed = true,
                _ if source.kind() == io::ErrorKind::WouldBlock => return Ok(overflowed),
                _ => return Err(LinkError::Receive { source }),
            },
            // Lost in part: read everything again.
            Err(LinkError::Truncated { .. }) => overflowed = true,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The parser runs on messages built here; the socket runs against
    //! real links in a private network namespace of a thread of its own
    //! (root and `ip` needed: that test is ignored in a plain `cargo test`
    //! and fails where it cannot run; `tests/run.sh` runs it as root).

    use std::process::Command;
    use std::time::Duration;

    use super::*;

    const IP: &str = "/usr/sbin/ip";

    /// One link message as the kernel sends it.
    fn link_message(
        kind: u16,
        family: u8,
        index: i32,
        name: &str,
        link_kind: Option<&str>,
    ) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0];
        body.extend(index.to_ne_bytes());
        body.extend([0u8; 8]);
        let mut attribute = |typ: u16, payload: &[u8]| {
            body.extend(((payload.len() + 4) as u16).to_ne_bytes());
            body.extend(typ.to_ne_bytes());
            body.extend(payload);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        };
        attribute(libc::IFLA_IFNAME, &[name.as_bytes(), &[0]].concat());
        if let Some(link_kind) = link_kind {
            let mut nested = Vec::new();
            let kind_payload = [link_kind.as_bytes(), &[0]].concat();
            nested.extend(((kind_payload.len() + 4) as u16).to_ne_bytes());
            nested.extend(libc::IFLA_INFO_KIND.to_ne_bytes());
            nested.extend(&kind_payload);
            while nested.len() % 4 != 0 {
                nested.push(0);
            }
            attribute(libc::IFLA_LINKINFO | 0x8000, &nested);
        }
        let mut out = ((body.len() + HEADER) as u32).to_ne_bytes().to_vec();
        out.extend(kind.to_ne_bytes());
        out.extend([0u8; 10]);
        out.extend(body);
        out
    }

    fn done() -> Vec<u8> {
        let mut out = (HEADER as u32 + 4).to_ne_bytes().to_vec();
        out.extend((libc::NLMSG_DONE as u16).to_ne_bytes());
        out.extend([0u8; 14]);
        out
    }

    #[test]
    fn only_links_of_kind_bridge_are_bridges() {
        let mut links = Links::default();
        let dump = [
            link_message(libc::RTM_NEWLINK, 0, 1, "lo", None),
            link_message(libc::RTM_NEWLINK, 0, 2, "docker0", Some("bridge")),
            link_message(libc::RTM_NEWLINK, 0, 3, "wg0", Some("wireguard")),
            link_message(libc::RTM_NEWLINK, 0, 4, "veth1", Some("veth")),
            done(),
        ]
        .concat();
        assert!(
            links.apply(&dump).expect("parses"),
            "the dump's end is seen"
        );
        assert_eq!(links.bridges(), BTreeSet::from(["docker0".to_owned()]));
        assert_eq!(links.kind("docker0"), LinkKind::Bridge);
        assert_eq!(links.kind("wg0"), LinkKind::Other);
        assert_eq!(links.kind("eth9"), LinkKind::Missing);
        assert_eq!(std::mem::size_of::<libc::nlmsghdr>(), HEADER);
        assert_eq!(std::mem::size_of::<libc::ifinfomsg>(), IFINFOMSG);
    }

    #[test]
    fn a_renamed_or_deleted_bridge_is_no_longer_one() {
        let mut links = Links::default();
        links
            .apply(&link_message(
                libc::RTM_NEWLINK,
                0,
                7,
                "br-x",
                Some("bridge"),
            ))
            .unwrap();
        links
            .apply(&link_message(
                libc::RTM_NEWLINK,
                0,
                7,
                "br-y",
                Some("bridge"),
            ))
            .unwrap();
        assert_eq!(links.kind("br-x"), LinkKind::Missing, "renamed away");
        assert_eq!(links.kind("br-y"), LinkKind::Bridge);
        links
            .apply(&link_message(
                libc::RTM_DELLINK,
                0,
                7,
                "br-y",
                Some("bridge"),
            ))
            .unwrap();
        assert!(links.bridges().is_empty());
    }

    #[test]
    fn the_bridge_modules_own_port_messages_change_nothing() {
        let mut links = Links::default();
        links
            .apply(&link_message(
                libc::RTM_NEWLINK,
                0,
                2,
                "docker0",
                Some("bridge"),
            ))
            .unwrap();
        let af_bridge = libc::AF_BRIDGE as u8;
        // The bridge itself, as the bridge module reports it: no link kind.
        links
            .apply(&link_message(
                libc::RTM_NEWLINK,
                af_bridge,
                2,
                "docker0",
                None,
            ))
            .unwrap();
        links
            .apply(&link_message(
                libc::RTM_DELLINK,
                af_bridge,
                2,
                "docker0",
                None,
            ))
            .unwrap();
        assert_eq!(links.kind("docker0"), LinkKind::Bridge);
    }

    #[test]
    fn a_refused_dump_is_an_error() {
        let mut error = (HEADER as u32 + 4).to_ne_bytes().to_vec();
        error.extend((libc::NLMSG_ERROR as u16).to_ne_bytes());
        error.extend([0u8; 10]);
        error.extend((-libc::EPERM).to_ne_bytes());
        assert!(matches!(
            Links::default().apply(&error),
            Err(LinkError::Refused { errno }) if errno == libc::EPERM
        ));
    }

    fn bridge(name: &str, interface: &str) -> crate::inventory::Bridge {
        crate::inventory::Bridge {
            id: format!("{name}-id"),
            name: name.to_owned(),
            interface: interface.to_owned(),
        }
    }

    #[test]
    fn only_interfaces_the_kernel_has_as_bridges_are_taken_as_bridges() {
        let mut inventory = Inventory {
            bridges: vec![
                bridge("bridge", "docker0"),
                bridge("vpn", "wg0"),
                bridge("gone", "br-gone"),
                bridge("plus", "dfwt+"),
            ],
            ..Inventory::default()
        };
        let links = Links::from_names([("docker0", true), ("wg0", false), ("dfwt+", true)]);
        let rejected = check_bridges(&mut inventory, Ok(&links));
        assert_eq!(
            inventory.not_bridges,
            BTreeSet::from(["wg0".to_owned(), "br-gone".to_owned()])
        );
        let kinds: Vec<_> = rejected.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Some(LinkKind::Other), Some(LinkKind::Missing)]);
        let reasons: Vec<_> = rejected
            .iter()
            .map(|r| (r.rejected.name.as_str(), r.rejected.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].0 == "vpn" && reasons[0].1.contains("\"wg0\" is not a Linux bridge"));
        assert!(reasons[1].0 == "gone" && reasons[1].1.contains("no interface \"br-gone\""));
        // The kernel could not be asked: nothing is taken as a bridge.
        let rejected = check_bridges(&mut inventory, Err("no rtnetlink"));
        assert_eq!(inventory.not_bridges.len(), 3);
        assert!(rejected[0].rejected.reason.contains("(no rtnetlink)"));
        assert_eq!(rejected[0].kind, None);
        // Asked again with the bridge back: the fact follows.
        let links = Links::from_names([("docker0", true), ("wg0", true), ("br-gone", true)]);
        assert!(check_bridges(&mut inventory, Ok(&links)).is_empty());
        assert!(inventory.not_bridges.is_empty());
    }

    fn ip(args: &[&str]) {
        let status = Command::new(IP).args(args).status().expect("spawn ip");
        assert!(status.success(), "ip {args:?} failed");
    }

    fn in_private_netns<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
        crate::testns::in_private_netns(&[IP], test)
    }

    #[test]
    #[ignore = "needs root: a private network namespace and ip (tests/run.sh runs it)"]
    fn the_kernel_says_which_links_are_bridges_and_when_that_changes() {
        in_private_netns(|| {
            ip(&["link", "add", "br-real", "type", "bridge"]);
            ip(&[
                "link", "add", "wg0", "type", "veth", "peer", "name", "wg0-peer",
            ]);
            let links = links().expect("dump");
            assert_eq!(links.kind("br-real"), LinkKind::Bridge);
            assert_eq!(links.kind("wg0"), LinkKind::Other);
            assert_eq!(links.kind("lo"), LinkKind::Other);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut watch = watch().expect("watch");
                ip(&["link", "add", "br-early", "type", "bridge"]);
                let now = watch.refresh().expect("refresh");
                assert_eq!(
                    now.kind("br-early"),
                    LinkKind::Bridge,
                    "refresh reads what is queued"
                );
                let arrives = Duration::from_secs(2);
                ip(&[
                    "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
                ]);
                ip(&["link", "set", "veth-a", "master", "br-real"]);
                ip(&["link", "add", "br-new", "type", "bridge"]);
                tokio::time::timeout(arrives, watch.changed())
                    .await
                    .expect("a new bridge is a change")
                    .expect("watch");
                assert_eq!(watch.links().kind("br-new"), LinkKind::Bridge);
                assert_eq!(watch.links().kind("veth-a"), LinkKind::Other);
                assert_eq!(
                    watch.links().kind("br-real"),
                    LinkKind::Bridge,
                    "a port joining keeps it a bridge"
                );
                ip(&["link", "set", "veth-b", "up"]);
                assert!(
                    tokio::time::timeout(Duration::from_millis(300), watch.changed())
                        .await
                        .is_err(),
                    "a veth changing woke the watch"
                );
                ip(&["link", "del", "br-new"]);
                ip(&[
                    "link",
                    "add",
                    "br-new",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "br-new-peer",
                ]);
                tokio::time::timeout(arrives, watch.changed())
                    .await
                    .expect("a bridge replaced by another link is a change")
                    .expect("watch");
                assert_eq!(watch.links().kind("br-new"), LinkKind::Other);
            });
        });
    }
}
