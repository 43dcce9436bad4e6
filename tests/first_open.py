#!/usr/bin/env python3
"""tests/first_open.py — when does HOST:PORT first answer with HTTP 200?

Usage: first_open.py HOST PORT SECONDS [INTERVAL_MS]

Starts a new TCP connection every INTERVAL_MS (default 2) for at most SECONDS,
without waiting for earlier ones: a SYN a firewall drops is only retried by the
kernel after a second, so a probe that waits for its own answer measures its
timeout, not the firewall. The first connection that completes is sent
`GET / HTTP/1.0` and must answer `HTTP/1.x 200`; then the script prints the
wall-clock time that connection was started, in microseconds since the epoch,
and how many connections it started, and exits 0. With no 200 before the bound
it prints `timeout N` and exits 1.

Every connection is to HOST:PORT only; at most SECONDS * 1000 / INTERVAL_MS are
started, and a pending one is closed after 300 ms (its SYN was dropped; later
ones cover the time after it), so few are open at once.
"""

import selectors
import socket
import sys
import time

GIVE_UP_MS = 300


def http_ok(sock):
    sock.setblocking(True)
    sock.settimeout(1.0)
    try:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        head = sock.recv(64)
    except OSError:
        return False
    return head.startswith(b"HTTP/1.") and head[9:12] == b"200"


def main():
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    interval = (float(sys.argv[4]) if len(sys.argv) > 4 else 2.0) / 1000
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sel = selectors.DefaultSelector()
    end = time.monotonic() + seconds
    next_start = time.monotonic()
    started = 0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_start:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            wall_us = time.time_ns() // 1000
            try:
                sock.connect((host, port))
            except BlockingIOError:
                pass
            except OSError:
                sock.close()
                sock = None
            if sock is not None:
                sel.register(sock, selectors.EVENT_WRITE, (now, wall_us))
            started += 1
            next_start = now + interval
        timeout = max(0.0, next_start - time.monotonic())
        for key, _ in sel.select(timeout):
            sock = key.fileobj
            sel.unregister(sock)
            began, wall_us = key.data
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and http_ok(sock):
                sock.close()
                print(wall_us, started)
                return 0
            sock.close()
        cutoff = time.monotonic() - GIVE_UP_MS / 1000
        for key in list(sel.get_map().values()):
            if key.data[0] < cutoff:
                sel.unregister(key.fileobj)
                key.fileobj.close()
    print("timeout", started)
    return 1


if __name__ == "__main__":
    sys.exit(main())
