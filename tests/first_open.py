#!/usr/bin/env python3
"""tests/first_open.py — when does HOST:PORT first answer with HTTP 200?

Usage: first_open.py HOST PORT SECONDS [INTERVAL_MS]
       FIRST_OPEN_WAIT=1 first_open.py …   start probing only on SIGUSR1

With FIRST_OPEN_WAIT=1 it starts (quietly: it is already running) and waits
for SIGUSR1 before the first connection, so the caller chooses the instant
probing begins without paying for the interpreter's start; SECONDS counts
from then. Probing before a container exists changes what is measured: a
SYN sent to an address with no interface behind it yet leaves a failed
neighbour entry, and the kernel resolves it again only after a while.

Starts a new TCP connection every INTERVAL_MS (default 2) for at most SECONDS,
without waiting for earlier ones: a SYN a firewall drops is only retried by the
kernel after a second, so a probe that waits for its own answer measures its
timeout, not the firewall. Each connection that completes is sent
`GET / HTTP/1.0` and read, also without waiting: nothing a slow answer does
(a proxy holding a connection open, say) delays the next probe. When a
connection's answer starts `HTTP/1.x 200`, the script prints the wall-clock
time that connection was started, in microseconds since the epoch, and how many
connections it started, and exits 0. With no 200 before the bound it prints
`timeout N` and exits 1.

Every connection is to HOST:PORT only; at most SECONDS * 1000 / INTERVAL_MS are
started, and one still unanswered after 300 ms is closed (its SYN was dropped,
or its answer is late; later ones cover the time after it), so few are open at
once.
"""

import os
import selectors
import signal
import socket
import sys
import time

GIVE_UP_MS = 300
REQUEST = b"GET / HTTP/1.0\r\n\r\n"


def main():
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    interval = (float(sys.argv[4]) if len(sys.argv) > 4 else 2.0) / 1000
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if os.environ.get("FIRST_OPEN_WAIT") == "1":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        print("ready", flush=True, file=sys.stderr)
        signal.sigwait({signal.SIGUSR1})
    sel = selectors.DefaultSelector()
    end = time.monotonic() + seconds
    next_start = time.monotonic()
    started = 0

    def close(sock):
        sel.unregister(sock)
        sock.close()

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
                # data: (monotonic start, wall-clock start, answer so far or None
                # while connecting)
                sel.register(sock, selectors.EVENT_WRITE, [now, wall_us, None])
            started += 1
            next_start = now + interval
        timeout = max(0.0, next_start - time.monotonic())
        for key, _ in sel.select(timeout):
            sock, data = key.fileobj, key.data
            if data[2] is None:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    close(sock)
                    continue
                try:
                    sock.send(REQUEST)
                except OSError:
                    close(sock)
                    continue
                data[2] = b""
                sel.modify(sock, selectors.EVENT_READ, data)
                continue
            try:
                chunk = sock.recv(64)
            except OSError:
                chunk = b""
            data[2] += chunk
            answer = data[2]
            if len(answer) >= 12 and answer.startswith(b"HTTP/1.") and answer[9:12] == b"200":
                print(data[1], started)
                return 0
            if not chunk or len(answer) >= 12:
                close(sock)
        cutoff = time.monotonic() - GIVE_UP_MS / 1000
        for key in list(sel.get_map().values()):
            if key.data[0] < cutoff:
                close(key.fileobj)
    print("timeout", started)
    return 1


if __name__ == "__main__":
    sys.exit(main())
