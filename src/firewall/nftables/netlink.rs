//! Set elements written straight to nf_tables over netlink: the fast path
//! of a container coming or going, with no `nft` process (each one loads
//! libnftables and reads the ruleset first, several milliseconds of CPU).
//!
//! It owns one thing: turning "these elements leave, these join" for
//! dockfw's sets into one nf_tables batch ([`batch`], pure) and sending it
//! ([`write`]): one transaction, all of it or nothing. Only elements of
//! sets the table already has are written; anything else (rules, sets,
//! the table) is the `nft -f` script's job, and so is any batch this
//! refuses or the kernel rejects: the caller then runs the script, which
//! gives the sets exactly their elements whatever this did.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_NETFILTER;

use super::render::{TABLE_NAME, set_name};
use crate::ruleset::{ElementChange, Family, Ruleset, SetElement};

/// nfnetlink's batch markers and nf_tables' subsystem and messages, from
/// `linux/netfilter/nfnetlink.h` and `linux/netfilter/nf_tables.h`.
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NFPROTO_INET: u8 = 1;

/// At most this many elements change in one batch (about 75 KB of IPv6
/// intervals, well inside a netlink socket's default send buffer); more (a
/// first fill of a long `from` list) is left to the script.
const MAX_ELEMENTS: usize = 1024;

/// How long [`write`] waits for each datagram of acknowledgements.
const ACK_WAIT: Duration = Duration::from_secs(1);

/// At most this many elements go in one message: a netlink attribute's
/// length is 16 bits, and an IPv6 interval takes 72 bytes of the element
/// list (two elements), so 256 of them stay far below it.
const ELEMENTS_PER_MESSAGE: usize = 256;

/// Why a batch was not written; the caller falls back to the script.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("a set of the plan is not in the table as last applied: {set}")]
    UnknownSet { set: String },
    #[error("{count} elements change, more than one batch carries ({MAX_ELEMENTS})")]
    TooMany { count: usize },
    #[error("element {element} of set {set} reaches the end of the address space")]
    OpenInterval { set: String, element: String },
    #[error("cannot talk to nf_tables over netlink")]
    Socket(#[source] io::Error),
    #[error("nf_tables refused the element batch")]
    Refused(#[source] io::Error),
}

/// One set's change: elements that leave and that join, as netlink keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetChange {
    /// The set's nft name (`allow_1_v4`).
    pub set: String,
    pub remove: Vec<Key>,
    pub add: Vec<Key>,
}

/// A set element as nf_tables stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// An element of an interval set (dockfw's address sets): its first
    /// address, and the first address after it (an interval-end element).
    Interval { start: Vec<u8>, end: Vec<u8> },
    /// An element of a plain set (dockfw's port sets): a port, big-endian.
    Value(Vec<u8>),
}

/// The element changes that take the sets of `before` to `desired`'s.
/// Both plans have the same rules and sets ([`Ruleset::same_rules`]); a
/// set `before` lacks is an error.
pub fn changes(desired: &Ruleset, before: &Ruleset) -> Result<Vec<SetChange>, NetlinkError> {
    let mut out = Vec::new();
    let mut count = 0;
    for family in Family::ALL {
        let (want, had) = (desired.family(family), before.family(family));
        for set in &want.sets {
            let unknown = || NetlinkError::UnknownSet {
                set: set.name.clone(),
            };
            let old = had.set(&set.name).ok_or_else(unknown)?;
            if old.elements == set.elements {
                continue;
            }
            let key = |net: &IpNet| interval(&set.name, net);
            let remove = old.elements.difference(&set.elements).map(key);
            let add = set.elements.difference(&old.elements).map(key);
            let change = SetChange {
                set: set_name(&set.name),
                remove: remove.collect::<Result<_, _>>()?,
                add: add.collect::<Result<_, _>>()?,
            };
            count += change.remove.len() + change.add.len();
            out.push(change);
        }
        let port_sets = want.port_sets.iter().map(|s| (s, had.port_set(&s.name)));
        let drop_ports = want
            .drop_ports
            .iter()
            .map(|s| (s, had.drop_port_set(&s.name)));
        for (set, old) in port_sets.chain(drop_ports) {
            // A counting set's new element gets the set's counter from
            // the kernel, starting at zero; the others keep theirs.
            let old = old.ok_or(NetlinkError::UnknownSet {
                set: set.name.clone(),
            })?;
            if old.ports == set.ports {
                continue;
            }
            let key = |port: &u16| Key::Value(port.to_be_bytes().to_vec());
            let change = SetChange {
                set: set_name(&set.name),
                remove: old.ports.difference(&set.ports).map(key).collect(),
                add: set.ports.difference(&old.ports).map(key).collect(),
            };
            count += change.remove.len() + change.add.len();
            out.push(change);
        }
    }
    if count > MAX_ELEMENTS {
        return Err(NetlinkError::TooMany { count });
    }
    Ok(out)
}

/// The element changes of `changes` (each element once, joining or leaving
/// its set), for the sets of `desired` they name, grouped per set: the
/// same batch as [`changes`] of the two plans, computed from the changes
/// alone. A drop endpoint is no element of the table (nftables counts
/// drops per published port): left out.
pub fn element_changes(
    changes: &[ElementChange],
    desired: &Ruleset,
) -> Result<Vec<SetChange>, NetlinkError> {
    let mut by_set: BTreeMap<String, SetChange> = BTreeMap::new();
    for change in changes {
        let (name, key) = match &change.element {
            SetElement::Addr(_, name, net) => (name.clone(), interval(name, net)?),
            SetElement::Guard(family, _, port)
            | SetElement::Port(family, _, port)
            | SetElement::Dropped(family, _, port) => {
                let set = desired.family(*family).port_set_of(&change.element);
                let set = set.ok_or_else(|| NetlinkError::UnknownSet {
                    set: format!("{:?}", change.element),
                })?;
                (set.name.clone(), Key::Value(port.to_be_bytes().to_vec()))
            }
            SetElement::Endpoint(..) => continue,
        };
        let set = set_name(&name);
        let entry = by_set.entry(set.clone()).or_insert_with(|| SetChange {
            set,
            remove: Vec::new(),
            add: Vec::new(),
        });
        match change.present {
            true => entry.add.push(key),
            false => entry.remove.push(key),
        }
    }
    let count: usize = (by_set.values())
        .map(|c| c.add.len() + c.remove.len())
        .sum();
    if count > MAX_ELEMENTS {
        return Err(NetlinkError::TooMany { count });
    }
    Ok(by_set.into_values().collect())
}

/// A network as an interval element: its first address and the one after
/// its last.
fn interval(set: &str, net: &IpNet) -> Result<Key, NetlinkError> {
    let net = net.trunc();
    let open = || NetlinkError::OpenInterval {
        set: set.to_owned(),
        element: net.to_string(),
    };
    let (start, end) = match (net.network(), net.broadcast()) {
        (IpAddr::V4(first), IpAddr::V4(last)) => {
            let after = u32::from(last).checked_add(1).ok_or_else(open)?;
            (first.octets().to_vec(), after.to_be_bytes().to_vec())
        }
        (IpAddr::V6(first), IpAddr::V6(last)) => {
            let after = u128::from(last).checked_add(1).ok_or_else(open)?;
            (first.octets().to_vec(), after.to_be_bytes().to_vec())
        }
        _ => return Err(open()),
    };
    Ok(Key::Interval { start, end })
}

/// The nf_tables batch that makes `changes`, with sequence numbers from
/// `seq`: begin, one delete and one add message per set (each asking for
/// an acknowledgement), end. Returns the bytes and how many
/// acknowledgements to expect. Pure.
pub fn batch(changes: &[SetChange], seq: u32) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut seq = seq;
    let mut acks = 0;
    let marker = |kind: u16, seq: u32, out: &mut Vec<u8>| {
        // AF_UNSPEC, version 0, resource id: the subsystem (big-endian).
        let mut body = vec![0u8, 0];
        body.extend(NFNL_SUBSYS_NFTABLES.to_be_bytes());
        message(kind, libc::NLM_F_REQUEST as u16, seq, &body, out);
    };
    marker(NFNL_MSG_BATCH_BEGIN, seq, &mut out);
    for change in changes {
        for (kind, keys) in [
            (NFT_MSG_DELSETELEM, &change.remove),
            (NFT_MSG_NEWSETELEM, &change.add),
        ] {
            for keys in keys.chunks(ELEMENTS_PER_MESSAGE) {
                seq = seq.wrapping_add(1);
                acks += 1;
                let mut body = vec![NFPROTO_INET, 0, 0, 0];
                attribute(NFTA_SET_ELEM_LIST_TABLE, &c_string(TABLE_NAME), &mut body);
                attribute(NFTA_SET_ELEM_LIST_SET, &c_string(&change.set), &mut body);
                let mut list = Vec::new();
                for key in keys {
                    match key {
                        Key::Value(value) => element(value, false, &mut list),
                        Key::Interval { start, end } => {
                            element(start, false, &mut list);
                            element(end, true, &mut list);
                        }
                    }
                }
                attribute(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &list, &mut body);
                let mut flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
                if kind == NFT_MSG_NEWSETELEM {
                    flags |= libc::NLM_F_CREATE;
                }
                let kind = (NFNL_SUBSYS_NFTABLES << 8) | kind;
                message(kind, flags as u16, seq, &body, &mut out);
            }
        }
    }
    marker(NFNL_MSG_BATCH_END, seq.wrapping_add(1), &mut out);
    (out, acks)
}

/// One element of an element list: its key, and the interval-end flag.
fn element(key: &[u8], interval_end: bool, out: &mut Vec<u8>) {
    let mut value = Vec::new();
    attribute(NFTA_DATA_VALUE, key, &mut value);
    let mut elem = Vec::new();
    attribute(NFTA_SET_ELEM_KEY | NLA_F_NESTED, &value, &mut elem);
    if interval_end {
        let flags = NFT_SET_ELEM_INTERVAL_END.to_be_bytes();
        attribute(NFTA_SET_ELEM_FLAGS, &flags, &mut elem);
    }
    attribute(NFTA_LIST_ELEM | NLA_F_NESTED, &elem, out);
}

fn c_string(s: &str) -> Vec<u8> {
    [s.as_bytes(), &[0]].concat()
}

/// A netlink attribute, padded to 4 bytes.
fn attribute(kind: u16, payload: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(payload.len() + 4).unwrap_or(u16::MAX);
    out.extend(len.to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    pad(out);
}

/// A netlink message (header, then `body`), padded to 4 bytes.
fn message(kind: u16, flags: u16, seq: u32, body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len() + 16).unwrap_or(u32::MAX);
    out.extend(len.to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(flags.to_ne_bytes());
    out.extend(seq.to_ne_bytes());
    out.extend(0u32.to_ne_bytes());
    out.extend(body);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Send the batch of `changes` to nf_tables in the caller's network
/// namespace and wait for every acknowledgement: one transaction,
/// committed whole or refused whole. Blocking (a second at most); the
/// transaction is noted as dockfw's own, so the nf_tables watch does not
/// take it for drift.
pub fn write(changes: &[SetChange]) -> Result<(), NetlinkError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NetlinkError::Socket)?;
    crate::nfmonitor::bind(&mut socket).map_err(NetlinkError::Socket)?;
    socket2::SockRef::from(&socket)
        .set_read_timeout(Some(ACK_WAIT))
        .map_err(NetlinkError::Socket)?;
    // Error acknowledgements carry only the header of the refused message,
    // not all of it. Best effort: without it they are longer, no less true.
    let _ = socket.set_cap_ack(true);
    let (bytes, acks) = batch(changes, 1);
    // The kernel commits within this send, on this thread: the NEWGEN
    // names this thread's id.
    // SAFETY: plain syscall, no arguments.
    let tid = u32::try_from(unsafe { libc::gettid() }).unwrap_or_default();
    crate::nfmonitor::expect_own_write(tid);
    let result = exchange(&socket, &bytes, acks);
    if result.is_err() {
        // Whatever it committed, if anything, is not to pass for dockfw's.
        crate::nfmonitor::forget_own_write(tid);
    }
    result
}

/// Send `bytes` and wait for `acks` acknowledgements, each a success.
fn exchange(socket: &Socket, bytes: &[u8], mut acks: usize) -> Result<(), NetlinkError> {
    let sent = socket.send(bytes, 0).map_err(NetlinkError::Socket)?;
    if sent != bytes.len() {
        return Err(NetlinkError::Socket(io::Error::other("batch sent in part")));
    }
    let mut buffer = vec![0u8; 8192];
    while acks > 0 {
        let n = socket
            .recv(&mut &mut buffer[..], 0)
            .map_err(NetlinkError::Socket)?;
        for error in acknowledgements(&buffer[..n.min(buffer.len())]) {
            if error != 0 {
                return Err(NetlinkError::Refused(io::Error::from_raw_os_error(
                    error.saturating_neg(),
                )));
            }
            acks = acks.saturating_sub(1);
        }
    }
    Ok(())
}

/// The error codes of the acknowledgements (`NLMSG_ERROR`, 0: success) in
/// a datagram. Pure.
fn acknowledgements(mut datagram: &[u8]) -> Vec<i32> {
    let mut out = Vec::new();
    while datagram.len() >= 20 {
        let len = u32::from_ne_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]) as usize;
        let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
        if kind == libc::NLMSG_ERROR as u16 {
            out.push(i32::from_ne_bytes([
                datagram[16],
                datagram[17],
                datagram[18],
                datagram[19],
            ]));
        }
        let step = (len + 3) & !3;
        if step < 16 || step >= datagram.len() {
            break;
        }
        datagram = &datagram[step..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Proto;
    use crate::ruleset::{AddrSet, PortSet};

    fn plan(addresses: &[&str], ports: &[u16]) -> Ruleset {
        let mut r = Ruleset::default();
        let nets = addresses.iter().map(|a| a.parse::<IpNet>().expect("net"));
        r.v4.sets = vec![AddrSet::new("allow-1-v4".to_owned(), Family::V4, nets)];
        r.v4.port_sets = vec![PortSet {
            name: "guard-tcp-v4".to_owned(),
            family: Family::V4,
            proto: Proto::Tcp,
            ports: ports.iter().copied().collect(),
        }];
        r
    }

    #[test]
    fn changes_are_the_elements_that_leave_and_join_as_intervals_and_ports() {
        let before = plan(&["172.17.0.2/32", "10.0.0.0/8"], &[80]);
        let after = plan(&["172.17.0.3/32", "10.0.0.0/8"], &[80, 443]);
        let got = changes(&after, &before).expect("changes");
        assert_eq!(
            got,
            [
                SetChange {
                    set: "allow_1_v4".to_owned(),
                    remove: vec![Key::Interval {
                        start: vec![172, 17, 0, 2],
                        end: vec![172, 17, 0, 3]
                    }],
                    add: vec![Key::Interval {
                        start: vec![172, 17, 0, 3],
                        end: vec![172, 17, 0, 4]
                    }],
                },
                SetChange {
                    set: "guard_tcp_v4".to_owned(),
                    remove: vec![],
                    add: vec![Key::Value(vec![1, 187])],
                },
            ]
        );
        assert!(changes(&before, &before).expect("none").is_empty());
        let top = plan(&["255.255.255.255/32"], &[80]);
        assert!(matches!(
            changes(&top, &before),
            Err(NetlinkError::OpenInterval { .. })
        ));
        let mut unknown = after.clone();
        unknown.v4.sets[0].name = "allow-2-v4".to_owned();
        assert!(matches!(
            changes(&unknown, &before),
            Err(NetlinkError::UnknownSet { .. })
        ));
    }

    #[test]
    fn a_published_port_is_one_element_of_its_drop_port_set() {
        let with_drop_ports = |ports: &[u16]| {
            let mut r = plan(&[], &[]);
            r.v6.drop_ports = vec![PortSet {
                name: "dropped-udp-v6".to_owned(),
                family: Family::V6,
                proto: Proto::Udp,
                ports: ports.iter().copied().collect(),
            }];
            r
        };
        let got = changes(&with_drop_ports(&[53, 5353]), &with_drop_ports(&[53, 80]));
        assert_eq!(
            got.expect("changes"),
            [SetChange {
                set: "dropped_udp_v6".to_owned(),
                remove: vec![Key::Value(vec![0, 80])],
                add: vec![Key::Value(vec![20, 233])],
            }],
            "53 is kept, and so is its counter"
        );
    }

    #[test]
    fn the_changes_alone_give_the_batch_the_two_plans_give() {
        let with_drop_ports = |mut r: Ruleset, ports: &[u16]| {
            r.v6.drop_ports = vec![PortSet {
                name: "dropped-udp-v6".to_owned(),
                family: Family::V6,
                proto: Proto::Udp,
                ports: ports.iter().copied().collect(),
            }];
            r
        };
        let before = with_drop_ports(plan(&["172.17.0.2/32", "10.0.0.0/8"], &[80]), &[53, 80]);
        let after = with_drop_ports(plan(&["172.17.0.3/32", "10.0.0.0/8"], &[80, 443]), &[53]);
        let sorted = |mut c: Vec<SetChange>| {
            c.sort_by(|a, b| a.set.cmp(&b.set));
            c
        };
        let from_changes = element_changes(&after.changes_from(&before), &after);
        let from_plans = changes(&after, &before).expect("changes");
        assert_eq!(sorted(from_changes.expect("changes")), sorted(from_plans));
        assert!(element_changes(&[], &after).expect("none").is_empty());
    }

    #[test]
    fn a_batch_is_framed_and_asks_one_acknowledgement_per_message() {
        let before = plan(&["172.17.0.2/32"], &[80]);
        let after = plan(&["172.17.0.3/32"], &[443]);
        let (bytes, acks) = batch(&changes(&after, &before).expect("changes"), 7);
        assert_eq!(acks, 4, "a delete and an add for each of two sets");
        let mut kinds = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[..4].try_into().expect("4")) as usize;
            kinds.push(u16::from_ne_bytes([rest[4], rest[5]]));
            assert_eq!(len % 4, 0);
            rest = &rest[len..];
        }
        let nft = |k| (NFNL_SUBSYS_NFTABLES << 8) | k;
        assert_eq!(
            kinds,
            [
                NFNL_MSG_BATCH_BEGIN,
                nft(NFT_MSG_DELSETELEM),
                nft(NFT_MSG_NEWSETELEM),
                nft(NFT_MSG_DELSETELEM),
                nft(NFT_MSG_NEWSETELEM),
                NFNL_MSG_BATCH_END
            ]
        );
    }

    #[test]
    fn a_long_change_is_split_so_no_attribute_overflows() {
        let hosts: Vec<String> = (1..=MAX_ELEMENTS)
            .map(|i| format!("fd00::{i:x}/128"))
            .collect();
        let mut after = Ruleset::default();
        let nets = hosts.iter().map(|h| h.parse::<IpNet>().expect("net"));
        after.v6.sets = vec![AddrSet::new("allow-1-v6".to_owned(), Family::V6, nets)];
        let mut before = after.clone();
        before.v6.sets[0].elements.clear();
        let (bytes, acks) = batch(&changes(&after, &before).expect("changes"), 1);
        assert_eq!(acks, MAX_ELEMENTS.div_ceil(ELEMENTS_PER_MESSAGE));
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[..4].try_into().expect("4")) as usize;
            assert!(len < 65_000, "a message of {len} bytes");
            rest = &rest[len..];
        }
        after.v6.sets[0]
            .elements
            .insert("fd01::1/128".parse().expect("net"));
        assert!(matches!(
            changes(&after, &before),
            Err(NetlinkError::TooMany { .. })
        ));
    }

    #[test]
    fn acknowledgements_are_read_with_their_error_codes() {
        let mut datagram = Vec::new();
        for code in [0i32, -2] {
            let mut body = code.to_ne_bytes().to_vec();
            body.extend([0u8; 16]);
            message(libc::NLMSG_ERROR as u16, 0, 1, &body, &mut datagram);
        }
        assert_eq!(acknowledgements(&datagram), [0, -2]);
    }
}
