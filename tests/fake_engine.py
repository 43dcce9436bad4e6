#!/usr/bin/env python3
"""A fake Docker API on a Unix socket, for e2e cases a real engine will not produce.

Usage: fake_engine.py LISTEN_SOCKET UPSTREAM_SOCKET NETWORKS_JSON

Every request is forwarded to the real engine at UPSTREAM_SOCKET, one request per
connection (the answer says `Connection: close`), streams (`GET /events`) included.
The answer to `GET /networks` (the listing, any API version prefix, any query) gets
the networks in the file NETWORKS_JSON (a JSON list of Docker network objects)
appended: a hostile inventory, such as a bridge network whose
`com.docker.network.bridge.name` option names the host's uplink. The file is read
at every listing, so a case may change it while the fake runs. Nothing else is
changed. It serves until killed.
"""

import json
import os
import re
import socket
import sys
import threading

LISTING = re.compile(rb"^GET (/v[0-9.]+)?/networks(\?[^ ]*)? HTTP/1\.[01]$")


def read_head(conn):
    """The request or response head (up to and with the blank line), and what
    followed it in the same reads."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("connection closed before the head ended")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def header(head, name):
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def with_connection_close(head):
    lines = [
        line
        for line in head.split(b"\r\n")
        if line.partition(b":")[0].strip().lower()
        not in (b"connection", b"keep-alive", b"content-length", b"transfer-encoding")
    ]
    return lines


def read_all(conn, rest):
    data = rest
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk


def dechunk(body):
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2:]
    return out


def relay(src, dst):
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            dst.sendall(chunk)
    except OSError:
        pass


def serve(client, upstream_path, networks_path):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        head, rest = read_head(client)
        length = int(header(head, b"content-length") or b"0")
        while len(rest) < length:
            chunk = client.recv(65536)
            if not chunk:
                break
            rest += chunk
        request_line = head.split(b"\r\n", 1)[0]
        lines = with_connection_close(head)
        if length:
            lines.append(b"Content-Length: %d" % length)
        lines.append(b"Connection: close")
        upstream.connect(upstream_path)
        upstream.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + rest)
        if not LISTING.match(request_line):
            relay(upstream, client)
            return
        answer_head, answer_rest = read_head(upstream)
        body = read_all(upstream, answer_rest)
        if (header(answer_head, b"transfer-encoding") or b"").lower() == b"chunked":
            body = dechunk(body)
        status = answer_head.split(b"\r\n", 1)[0]
        if b" 200 " in status + b" ":
            with open(networks_path, encoding="utf-8") as f:
                extra = json.load(f)
            body = json.dumps(json.loads(body) + extra).encode()
        out = with_connection_close(answer_head)
        out += [b"Content-Length: %d" % len(body), b"Connection: close"]
        client.sendall(b"\r\n".join(out) + b"\r\n\r\n" + body)
    except (OSError, EOFError, ValueError) as e:
        print(f"fake_engine: {e}", file=sys.stderr, flush=True)
    finally:
        upstream.close()
        client.close()


def main():
    listen_path, upstream_path, networks_path = sys.argv[1:4]
    if os.path.exists(listen_path):
        os.unlink(listen_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(listen_path)
    server.listen(64)
    while True:
        client, _ = server.accept()
        threading.Thread(
            target=serve, args=(client, upstream_path, networks_path), daemon=True
        ).start()


if __name__ == "__main__":
    main()
