#!/usr/bin/env python3
"""tests/dns_answer.py — a DNS server that knows one name, for the e2e lab.

Usage: dns_answer.py LOG NAME IPV4 IPV6

Listens on port 53, UDP and TCP, IPv4 and IPv6 (every address of the network
namespace it runs in: the lab runs it in an outside client's namespace, never
in the machine's own). A query for NAME, or for any name ending in ".NAME",
gets IPV4 as its A record and IPV6 as its AAAA record (other types: no
answer, no error); any other name gets NXDOMAIN. One line per query goes to
LOG, written as it comes: "PROTO SOURCE_ADDRESS QNAME QTYPE" (QTYPE a number:
1 = A, 28 = AAAA), so that a test can say from which address a query came.
Runs until killed.
"""

import ipaddress
import socket
import struct
import sys
import threading

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1


def question(msg):
    """(qname, qtype, end offset of the question) of a query, or None."""
    if len(msg) < 12 or struct.unpack("!H", msg[4:6])[0] != 1:
        return None
    labels, i = [], 12
    while i < len(msg):
        n = msg[i]
        if n == 0:
            break
        if n & 0xC0 or i + 1 + n > len(msg):
            return None
        labels.append(msg[i + 1 : i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    if i + 5 > len(msg):
        return None
    qtype, qclass = struct.unpack("!HH", msg[i + 1 : i + 5])
    return ".".join(labels), qtype, qclass, i + 5


def answer(msg, name, v4, v6):
    """The reply to query msg, or None for what is not a query."""
    q = question(msg)
    if q is None or msg[2] & 0x80:
        return None
    qname, qtype, qclass, end = q
    known = qname == name or qname.endswith("." + name)
    rdata = b""
    if known and qclass == CLASS_IN and qtype == TYPE_A:
        rdata = v4.packed
    elif known and qclass == CLASS_IN and qtype == TYPE_AAAA:
        rdata = v6.packed
    flags = 0x8400 | (msg[2] & 0x01) << 8  # response, authoritative, RD copied
    if not known:
        flags |= 3  # NXDOMAIN
    header = msg[0:2] + struct.pack("!HHHHH", flags, 1, 1 if rdata else 0, 0, 0)
    reply = header + msg[12:end]
    if rdata:
        # The name as a pointer to the question (offset 12), TTL 0: nothing caches it.
        reply += struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, 0, len(rdata)) + rdata
    return reply


class Log:
    def __init__(self, path):
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def query(self, proto, source, msg):
        q = question(msg)
        with self.lock:
            self.file.write(f"{proto} {source} {q[0] if q else '?'} {q[1] if q else 0}\n")


def plain(addr):
    """An address as the socket gives it, without an IPv4-mapped prefix."""
    ip = ipaddress.ip_address(addr.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def serve_udp(sock, log, name, v4, v6):
    while True:
        msg, peer = sock.recvfrom(4096)
        log.query("udp", plain(peer[0]), msg)
        reply = answer(msg, name, v4, v6)
        if reply:
            sock.sendto(reply, peer)


def serve_tcp_client(conn, peer, log, name, v4, v6):
    with conn:
        conn.settimeout(5)
        try:
            while True:
                head = conn.recv(2, socket.MSG_WAITALL)
                if len(head) < 2:
                    return
                msg = conn.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                log.query("tcp", plain(peer[0]), msg)
                reply = answer(msg, name, v4, v6)
                if not reply:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return


def serve_tcp(sock, log, name, v4, v6):
    while True:
        conn, peer = sock.accept()
        threading.Thread(
            target=serve_tcp_client, args=(conn, peer, log, name, v4, v6), daemon=True
        ).start()


def dual_stack(kind):
    """A socket on [::]:53 that takes IPv4 too."""
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 53))
    return sock


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    log = Log(sys.argv[1])
    name = sys.argv[2].lower().rstrip(".")
    v4, v6 = ipaddress.IPv4Address(sys.argv[3]), ipaddress.IPv6Address(sys.argv[4])
    udp = dual_stack(socket.SOCK_DGRAM)
    tcp = dual_stack(socket.SOCK_STREAM)
    tcp.listen(16)
    threading.Thread(target=serve_tcp, args=(tcp, log, name, v4, v6), daemon=True).start()
    serve_udp(udp, log, name, v4, v6)


if __name__ == "__main__":
    main()
