"""The daemon's limits over real sockets: meters per tenant (the config's
limit and a tenant's own, refused whole, kept across a restart), request
headers over 64 KiB, idle and stalled connections closed after
idle_timeout, and max_connections.

usage: test_limits.py TARIFFD   (prints "N passed, N failed")"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, expect_within, finish  # noqa: E402
from harness import Daemon, metric, need_postgres  # noqa: E402


def wait_until(cond, timeout, what):
    return expect_within(cond, timeout, what)[0]


T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)


def meters(cluster, first, count, ts=T0):
    return "".join(f"power,cluster={cluster},meter=m{first + i} kw=1 {ts}\n" for i in range(count))


def test_meters(tariffd):
    d = Daemon(tariffd, extra="max_meters_per_tenant = 1000\nidle_timeout = 60s\n")
    # t2 has a limit of its own.
    text = open(d.config).read().replace("[tenant t2]\n", "[tenant t2]\nmax_meters = 5\n")
    open(d.config, "w").write(text)
    try:
        d.start()
        s, data, _ = d.write(meters("c1", 0, 600))
        check(s == 204, f"600 new meters: {s} {data!r}")
        s, data, _ = d.write(meters("c2", 0, 400))
        check(s == 204, f"400 more (1000 in all, the limit): {s} {data!r}")
        # 2,000 invented meters against the limit of 1,000: refused whole,
        # naming the first line past it.
        s, data, _ = d.write(meters("c2", 1000, 2000))
        msg = json.loads(data).get("message", "")
        check(s == 400 and msg == 'line 1: meter "m1000" of cluster "c2" would exceed the limit '
              'of 1000 meters of tenant "t1" (max_meters)', f"past the limit: {s} {msg}")
        check(metric(d, "tariffd_meters") == 1000, "nothing of the refused request was accepted")
        # Existing meters keep working, also in a request with a refused one.
        s, _, _ = d.write(meters("c1", 0, 600, T0 + 60))
        check(s == 204, f"known meters still write: {s}")
        s, data, _ = d.write(meters("c1", 0, 10, T0 + 120) + meters("c1", 5000, 1, T0 + 120))
        check(s == 400 and b"line 11:" in data, f"a new one among known ones: {s} {data!r}")
        # The other tenant: its own max_meters = 5; the line decides.
        s, data, _ = d.write(meters("x1", 0, 6), tenant="t2", v2=False)
        check(s == 400 and json.loads(data)["error"].startswith('line 6: meter "m5" of cluster "x1" '
              'would exceed the limit of 5 meters of tenant "t2"'), f"tenant limit: {s} {data!r}")
        s, _, _ = d.write(meters("x1", 0, 5), tenant="t2")
        check(s == 204, "t2 up to its limit")
        # The count survives a restart (meters are in the checkpoint and the journal).
        check(d.stop() == 0, "clean stop")
        d.start()
        s, data, _ = d.write(meters("c2", 3000, 1, T0 + 180))
        check(s == 400 and b"limit of 1000 meters" in data, f"after a restart: {s} {data!r}")
        d.kill()
        d.start()
        s, data, _ = d.write(meters("x1", 77, 1, T0 + 180), tenant="t2")
        check(s == 400 and b"limit of 5 meters" in data, f"after kill -9: {s} {data!r}")
    finally:
        d.cleanup()


def raw(port, data, timeout=10):
    """Sends data on a fresh connection; returns what came back before the
    server closed it (b"" when closed without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(data)
        out = b""
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def test_connections(tariffd):
    d = Daemon(tariffd, extra="idle_timeout = 2s\nmax_connections = 60\n")
    try:
        d.start()
        # Headers over 64 KiB are refused with 400 and the connection closed
        # (raw() reads until the daemon closes it); never 2xx.
        big = b"X-Pad: " + b"a" * (100 * 1024) + b"\r\n"
        req = (b"POST /api/v2/write?bucket=b&precision=s HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Token t1-secret\r\n" + big + b"Content-Length: 0\r\n\r\n")
        out = raw(d.port, req)
        status = int(out.split(b" ")[1]) if out.startswith(b"HTTP/1.1 ") else 0
        check(status == 400, f"100 KiB header: {out[:60]!r}")
        out = raw(d.port, b"GET /ping?" + b"a" * (100 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status = int(out.split(b" ")[1]) if out.startswith(b"HTTP/1.1 ") else 0
        check(status == 400, f"100 KiB request line: {out[:60]!r}")
        check(d.write("power,cluster=c1 kw=1 %d\n" % T0)[0] == 204, "a normal write after them")

        # 50 slow connections: idle, and stalled mid-request; all closed
        # after idle_timeout (2 s), without an answer.
        conns = []
        for i in range(50):
            c = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            if i % 2:
                c.sendall(b"POST /api/v2/write?bucket=b HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npower")
            conns.append(c)
        wait_until(lambda: metric(d, "tariffd_connections") >= 50, 5, "50 connections counted")
        start = time.time()
        closed = 0
        for c in conns:
            try:
                got = c.recv(100)
            except (ConnectionResetError, socket.timeout):
                got = None
            closed += got == b""
            c.close()
        took = time.time() - start
        check(closed == 50, f"{closed} of 50 slow connections closed by the daemon")
        check(took < 9, f"closed within idle_timeout and some slack ({took:.1f} s)")
        wait_until(lambda: metric(d, "tariffd_connections") == 0, 5,
                   "the count goes back to 0 (scrapes on metrics_listen are not counted)")

        # max_connections = 60: the 61st waits (not accepted) until one closes.
        conns = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(60)]
        extra = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        extra.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        extra.settimeout(0.5)
        try:
            early = extra.recv(100)
        except socket.timeout:
            early = None
        check(early is None, f"the 61st connection is not served at the limit: {early!r}")
        # The operator is never shut out: metrics_listen is outside the limit.
        at_limit = metric(d, "tariffd_connections")
        s_health = d.admin("GET", "/health")[0]
        check(at_limit == 60 and s_health == 200,
              f"at the limit /metrics and /health answer on metrics_listen: {at_limit} {s_health}")
        for c in conns[:5]:
            c.close()
        extra.settimeout(10)
        late = extra.recv(100)
        check(late.startswith(b"HTTP/1.1 204"), f"served once others closed: {late[:40]!r}")
        extra.close()
        for c in conns[5:]:
            c.close()
        check("max_connections" in d.read_log(), "the pause is logged")
    finally:
        d.cleanup()


def main():
    need_postgres()
    tariffd = sys.argv[1]
    test_meters(tariffd)
    test_connections(tariffd)
    finish()


if __name__ == "__main__":
    main()
