#!/usr/bin/env python3
"""HTTPS clients for tests/tls.sh, on real sockets, each printing one JSON
summary line for the shell to check:

  sticky HOST PORT CAFILE CLIENTS REQUESTS
      CLIENTS clients at once, each on its own kept-alive connection with its
      own cookies, REQUESTS GET / each: their answers, the internal IPs each
      client saw, and the Set-Cookie lines (Secure or not).
  load HOST PORT CAFILE CLIENTS STOPFILE
      GET / from CLIENTS clients until STOPFILE exists; every fifth request
      on a new connection, so handshakes go on throughout. A request that
      fails on a kept-alive connection before any byte of an answer is sent
      again once on a new one, as browsers and curl do (the server closed an
      idle connection: it never read that request). Counts answers, retries,
      failures, and the certificates seen.
  stall HOST PORT CAFILE STALLERS SECONDS
      STALLERS connections that start a TLS handshake and never finish it
      (half a ClientHello), while one client sends GET /healthz over https
      for SECONDS: how many of its requests got 2xx, and when the server
      closed each stalled connection.
  cert HOST PORT CAFILE
      the SHA-256 fingerprint of the certificate a new connection is shown.

usage: tests/tls_clients.py COMMAND ARGS...
"""

import hashlib
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time

TIMEOUT = 20


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    # The name in the URL is checked against the certificate's SAN.
    ctx.check_hostname = True
    return ctx


class Client:
    """One browser-like client: a kept-alive connection and a cookie jar."""

    def __init__(self, host, port, ctx):
        self.host, self.port, self.ctx = host, port, ctx
        self.conn = None
        self.cookies = {}
        self.retries = 0
        self.certs = set()

    def connect(self):
        if self.conn:
            self.conn.close()
        self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=TIMEOUT)
        self.conn.connect()
        self.certs.add(hashlib.sha256(self.conn.sock.getpeercert(binary_form=True)).hexdigest())

    def get(self, path):
        """(status, body, Set-Cookie values); one retry on a fresh connection
        when a kept-alive one turns out closed before answering."""
        fresh = self.conn is None
        if fresh:
            self.connect()
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        try:
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
            if fresh:
                raise
            self.retries += 1
            self.connect()
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
        body = response.read().decode()
        set_cookies = response.headers.get_all("Set-Cookie") or []
        for line in set_cookies:
            name, _, rest = line.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0].strip()
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return response.status, body.strip(), set_cookies

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


def run_threads(n, target):
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def sticky(host, port, cafile, clients, requests):
    ctx = context(cafile)
    seen = [None] * clients
    statuses = {}
    cookies = set()
    errors = []
    lock = threading.Lock()

    def one(i):
        client = Client(host, port, ctx)
        ips, codes, lines = [], [], []
        try:
            for _ in range(requests):
                status, body, set_cookies = client.get("/")
                codes.append(status)
                lines.extend(set_cookies)
                if status == 200:
                    ips.append(body)
        except Exception as e:  # reported, and the shell fails the check
            errors.append(f"client {i}: {e!r}")
        finally:
            client.close()
        with lock:
            seen[i] = sorted(set(ips))
            for code in codes:
                statuses[code] = statuses.get(code, 0) + 1
            cookies.update(line.split("=", 1)[0] + ("; Secure" if "secure" in line.lower() else "; not Secure")
                           for line in lines)

    run_threads(clients, one)
    print(json.dumps({"statuses": statuses, "ips_per_client": seen, "cookies": sorted(cookies), "errors": errors}))


def load(host, port, cafile, clients, stopfile):
    ctx = context(cafile)
    totals = {"ok": 0, "failed": 0, "retried": 0}
    certs = set()
    failures = []
    lock = threading.Lock()

    def one(i):
        client = Client(host, port, ctx)
        ok = failed = n = 0
        while not os.path.exists(stopfile):
            n += 1
            if n % 5 == 0:
                client.close()
            try:
                status, _, _ = client.get("/")
                if status == 200:
                    ok += 1
                else:
                    failed += 1
                    failures.append(f"client {i}: {status}")
            except Exception as e:
                failed += 1
                failures.append(f"client {i}: {e!r}")
                client.close()
        client.close()
        with lock:
            totals["ok"] += ok
            totals["failed"] += failed
            totals["retried"] += client.retries
            certs.update(client.certs)

    run_threads(clients, one)
    print(json.dumps({**totals, "certs": sorted(certs), "failures": failures[:10]}))


def client_hello_bytes(host):
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=host)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def stall(host, port, cafile, stallers, seconds):
    hello = client_hello_bytes(host)
    part = hello[: len(hello) // 2]
    start = time.monotonic()
    closed_after = [None] * stallers
    socks = []
    for _ in range(stallers):
        s = socket.create_connection((host, port), timeout=TIMEOUT)
        s.sendall(part)
        socks.append(s)

    def wait_closed(i):
        s = socks[i]
        s.settimeout(60)
        try:
            while s.recv(4096):
                pass
            closed_after[i] = time.monotonic() - start
        except OSError:
            closed_after[i] = time.monotonic() - start
        finally:
            s.close()

    watchers = [threading.Thread(target=wait_closed, args=(i,)) for i in range(stallers)]
    for t in watchers:
        t.start()
    ctx = context(cafile)
    statuses = {}
    errors = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client = Client(host, port, ctx)
        try:
            status, _, _ = client.get("/healthz")
            statuses[status] = statuses.get(status, 0) + 1
        except Exception as e:
            errors.append(repr(e))
        finally:
            client.close()
        time.sleep(0.05)
    for t in watchers:
        t.join()
    closed = [c for c in closed_after if c is not None]
    print(json.dumps({"statuses": statuses, "errors": errors[:10], "hello_bytes_sent": len(part),
                      "closed": len(closed), "first_closed_s": round(min(closed), 2) if closed else None,
                      "last_closed_s": round(max(closed), 2) if closed else None}))


def cert(host, port, cafile):
    with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
        with context(cafile).wrap_socket(raw, server_hostname=host) as s:
            print(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())


def main(argv):
    commands = {
        "sticky": (sticky, [str, int, str, int, int]),
        "load": (load, [str, int, str, int, str]),
        "stall": (stall, [str, int, str, int, float]),
        "cert": (cert, [str, int, str]),
    }
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != len(commands[argv[1]][1]):
        sys.exit(__doc__)
    function, kinds = commands[argv[1]]
    function(*(kind(arg) for kind, arg in zip(kinds, argv[2:])))


if __name__ == "__main__":
    main(sys.argv)
