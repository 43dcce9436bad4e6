#!/usr/bin/env python3
"""tests/syn_probe.py — does a TCP SYN sent as a raw frame get a SYN-ACK?

Usage: syn_probe.py IFACE NEXT_HOP_MAC SRC_IP DST_IP PORT [SECONDS]

Sends an IPv4 TCP SYN from SRC_IP to DST_IP:PORT as an Ethernet frame on
IFACE, addressed to NEXT_HOP_MAC, whatever the routing table says: this is how
a neighbour on the link reaches an address its own stack would never send out,
such as 127.0.0.1 (a port Docker publishes on 127.0.0.1 only, moby#41872). The
SYN is sent again every 0.5 s; the answer is read from the link as it arrives
(the local stack would drop a reply from 127.0.0.1 as a martian, so no RST
follows it). Prints and exits:

    synack SPORT  0   the handshake's second step came back
    rst SPORT     1   a reset came back: the SYN got through to a closed port
    none SPORT    1   nothing within SECONDS (default 2): the SYN, or its
                      answer, was dropped on the way

SPORT is the SYN's source port, so that the caller can look for the SYN at
the other end (e.g. a half-open connection in the receiver's /proc/net/tcp).

Run as root in the sending namespace (`ip netns exec NS …`). Only frames to
NEXT_HOP_MAC are sent, at most 2 per second.
"""

import random
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
SYN, RST, ACK = 0x02, 0x04, 0x10


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_frame(src_mac, dst_mac, src, dst, sport, dport, seq) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, SYN, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.randrange(65536), 0x4000,
        64, socket.IPPROTO_TCP, 0, src, dst,
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + tcp


def answer(frame: bytes, src: bytes, dst: bytes, sport: int, dport: int):
    """The TCP flags of a reply from dst:dport to src:sport, else None."""
    if len(frame) < 14 + 20 + 14 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != socket.IPPROTO_TCP or ip[12:16] != dst or ip[16:20] != src:
        return None
    tcp = ip[ihl:]
    if len(tcp) < 14:
        return None
    their_port, our_port = struct.unpack("!HH", tcp[:4])
    if (their_port, our_port) != (dport, sport):
        return None
    return tcp[13]


def main() -> int:
    if len(sys.argv) not in (6, 7):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    iface, mac, src_ip, dst_ip, port = sys.argv[1:6]
    seconds = float(sys.argv[6]) if len(sys.argv) == 7 else 2.0
    dst_mac = bytes.fromhex(mac.replace(":", ""))
    with open(f"/sys/class/net/{iface}/address") as f:
        src_mac = bytes.fromhex(f.read().strip().replace(":", ""))
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    dport, sport = int(port), random.randrange(40000, 60000)
    frame = syn_frame(src_mac, dst_mac, src, dst, sport, dport, random.randrange(1 << 32))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sock.bind((iface, ETH_P_IP))
    deadline = time.monotonic() + seconds
    next_send = 0.0
    while (now := time.monotonic()) < deadline:
        if now >= next_send:
            sock.send(frame)
            next_send = now + 0.5
        sock.settimeout(max(0.01, min(deadline, next_send) - now))
        try:
            flags = answer(sock.recv(65535), src, dst, sport, dport)
        except socket.timeout:
            continue
        if flags is None:
            continue
        if flags & (SYN | ACK) == SYN | ACK:
            print("synack", sport)
            return 0
        if flags & RST:
            print("rst", sport)
            return 1
    print("none", sport)
    return 1


if __name__ == "__main__":
    sys.exit(main())
