"""Overload: far more write load than the machine can take. tariffd sheds
what it cannot take in time instead of queueing it (docs/design.md section
3: "503 + Retry-After: backpressure"), and stays observable meanwhile.

CLIENTS threads (default 256) post big bodies (about BODY_KIB KiB of line
protocol each; client k writes cluster o<k % 32>, half the clusters
gzip-compressed, each of its BODIES bodies once and then again as
duplicates) as fast as the daemon answers, for OVERLOAD_S seconds, with
durability = fsync on the state_dir. Every client keeps one request in
flight and gives up on it after REQUEST_S seconds (Telegraf's default
timeout), then sends the next on a new connection. Meanwhile another
thread polls /ping and /health.

Asserted:
  - every write is answered within REQUEST_S, with 204, or with 503 and a
    Retry-After of whole seconds; nothing else
  - /ping and /health answer every poll within PROBE_S
  - the daemon sheds: when writes wait longer than SHED_S (the median
    latency over the overload), some are answered 503 rather than all
    queued (admission control)
  - RSS stays under: the RSS before + 64 MiB + 2 x max_body per client
    (each client's request in flight, before and after gzip) + 256 bytes
    per distinct sample (kept for late_window)
  - afterwards the daemon takes writes again, and every sample a 204
    acknowledged is counted as accepted

Printed: writes, 204s and 503s, latency percentiles and max, probe
latency max, RSS before and peak, connections and journal at their peak.
Exits 77 (SKIP) without PGHOST.

usage: test_overload.py TARIFFD   (prints "N passed, N failed")
  $TARIFFD_OVERLOAD_CLIENTS, $TARIFFD_OVERLOAD_S, $TARIFFD_OVERLOAD_BODY_KIB
  and $TARIFFD_OVERLOAD_REQUEST_S override CLIENTS, OVERLOAD_S, BODY_KIB and
  REQUEST_S ($TARIFFD_OVERLOAD_PROBE_S: PROBE_S). The suite runs 128 clients
  with a 15 s bound for writes and 10 s for probes: a check that no
  write hangs, not a timing benchmark (RELIABILITY.md has the 5 s runs)."""
import gzip
import http.client
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
from harness import Daemon, metric, need_postgres  # noqa: E402

need_postgres()
TARIFFD = sys.argv[1]
CLIENTS = int(os.environ.get("TARIFFD_OVERLOAD_CLIENTS", "256"))
CLUSTERS = min(CLIENTS, 32)  # client k writes cluster o<k % CLUSTERS>
OVERLOAD_S = float(os.environ.get("TARIFFD_OVERLOAD_S", "20"))
BODY_KIB = int(os.environ.get("TARIFFD_OVERLOAD_BODY_KIB", "900"))
BODIES = 2  # distinct bodies per client; then they repeat (duplicates)
REQUEST_S = float(os.environ.get("TARIFFD_OVERLOAD_REQUEST_S", "5"))  # Telegraf's default timeout
PROBE_S = float(os.environ.get("TARIFFD_OVERLOAD_PROBE_S", "2"))
SHED_S = 1
MAX_BODY_MIB = 1  # tests/daemon/daemon.conf.in
T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def bodies(k):
    """Client k's bodies: its own cluster o<k>, 1 s samples, each body the
    next stretch of time; half the clients gzip them."""
    line = len(f"power,cluster=o{k} kw=40.5 {T0}\n")
    n = BODY_KIB * 1024 // line
    out = []
    for b in range(BODIES):
        t = T0 + b * n
        text = "".join(f"power,cluster=o{k} kw={40 + (i % 23)}.5 {t + i}\n" for i in range(n))
        out.append((gzip.compress(text.encode(), 1) if k % 2 else text.encode(), n))
    return out


class Client(threading.Thread):
    def __init__(self, d, k, stop, bodies):
        super().__init__(daemon=True)
        self.d, self.k, self.stop = d, k, stop
        self.bodies = bodies
        self.results = []  # (status, seconds, samples, retry_after)
        self.errors = []

    def run(self):
        headers = {"Authorization": "Token t1-secret"}
        if self.k % CLUSTERS % 2:
            headers["Content-Encoding"] = "gzip"
        conn = None
        i = 0
        while not self.stop.is_set():
            body, n = self.bodies[i % BODIES]
            i += 1
            t = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=REQUEST_S)
                conn.request("POST", "/api/v2/write?org=o&bucket=b&precision=s", body, headers)
                r = conn.getresponse()
                r.read()
                self.results.append((r.status, time.monotonic() - t, n, r.getheader("Retry-After")))
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.results.append((None, time.monotonic() - t, n, None))
                self.errors.append(repr(e))
                if conn:
                    conn.close()
                conn = None  # a timed-out request stays queued at the daemon; a new connection
        if conn:
            conn.close()


class Prober(threading.Thread):
    """Polls /ping and /health; records each answer's latency."""

    def __init__(self, d, stop):
        super().__init__(daemon=True)
        self.d, self.stop = d, stop
        self.results = []  # (path, status, seconds)
        self.peak = {"connections": 0, "journal": 0, "rss": 0}

    def run(self):
        while not self.stop.is_set():
            for path in ("/ping", "/health"):
                t = time.monotonic()
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=PROBE_S * 5)
                    conn.request("GET", path)
                    r = conn.getresponse()
                    r.read()
                    conn.close()
                    status = r.status
                except (OSError, http.client.HTTPException):
                    status = None
                self.results.append((path, status, time.monotonic() - t))
            self.peak["rss"] = max(self.peak["rss"], rss_kib(self.d.proc.pid))
            self.stop.wait(0.2)


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else 0


d = Daemon(TARIFFD)
try:
    # Each client its own cluster, and grace 2m (the default): no client's
    # samples land in intervals that another client's samples, or its own
    # silence while it waits for an answer, closed meanwhile. Those the
    # engine re-prices sample by sample, a cost of its own that this test
    # does not measure.
    with open(d.config) as f:
        text = f.read().replace("grace = 1s\n", "grace = 2m\n")
    with open(d.config, "w") as f:
        f.write(text + "".join(f"\n[cluster o{k}]\ntenant = t1\nsite = s1\ninventory = dom*1\n"
                               for k in range(CLUSTERS)))
    d.start()
    pid = d.proc.pid
    rss0 = rss_kib(pid)
    stop = threading.Event()
    t = time.monotonic()
    per_cluster = [bodies(c) for c in range(CLUSTERS)]
    clients = [Client(d, k, stop, per_cluster[k % CLUSTERS]) for k in range(CLIENTS)]
    print(f"{CLIENTS} clients on {CLUSTERS} clusters, {BODIES} bodies of {BODY_KIB} KiB each "
          f"({len(per_cluster[1][0][0]) // 1024} KiB gzipped), made in {time.monotonic() - t:.1f}s", flush=True)
    prober = Prober(d, stop)
    t = time.monotonic()
    for c in clients:
        c.start()
    prober.start()
    peak_conns = peak_journal = 0
    while time.monotonic() - t < OVERLOAD_S:
        try:
            s, data, _ = d.admin("GET", "/metrics")
            text = data.decode()
            conns = float(re.search(r"^tariffd_connections (\S+)", text, re.M).group(1))
            journal = float(re.search(r"^tariffd_journal_bytes (\S+)", text, re.M).group(1))
            peak_conns, peak_journal = max(peak_conns, conns), max(peak_journal, journal)
        except (OSError, AttributeError):
            pass
        stop.wait(0.5)
    stop.set()
    for c in clients:
        c.join(REQUEST_S + 5)
    prober.join(PROBE_S * 5 + 5)
    elapsed = time.monotonic() - t

    results = [r for c in clients for r in c.results]
    by_status = {}
    for status, _, _, _ in results:
        by_status[status] = by_status.get(status, 0) + 1
    lat = [x for _, x, _, _ in results]
    first = [x for c in clients for _, x, _, _ in c.results[:3]]
    last = [x for c in clients for _, x, _, _ in c.results[-3:]]
    print(f"{len(results)} writes in {elapsed:.1f}s: {by_status}; latency median {quantile(lat, 0.5):.2f}s, "
          f"p90 {quantile(lat, 0.9):.2f}s, p99 {quantile(lat, 0.99):.2f}s, max {max(lat):.2f}s "
          f"(first three per client: median {quantile(first, 0.5):.2f}s; last three: {quantile(last, 0.5):.2f}s)")
    probe = {p: [x for q, _, x in prober.results if q == p] for p in ("/ping", "/health")}
    print("probes: " + ", ".join(f"{p} {len(xs)} polls, max {max(xs):.2f}s, median {quantile(xs, 0.5):.3f}s"
                                 for p, xs in probe.items()))
    print(f"peak: {peak_conns:.0f} connections, journal {peak_journal / 1048576:.0f} MiB, "
          f"RSS {rss0 / 1024:.1f} MiB before, {prober.peak['rss'] / 1024:.1f} MiB at most", flush=True)

    bad = [(s, round(x, 2), ra) for s, x, _, ra in results
           if not ((s == 204 or (s == 503 and ra is not None and ra.isdigit())) and x <= REQUEST_S)]
    errors = [e for c in clients for e in c.errors]
    checks.check(not bad, f"every write answered within {REQUEST_S}s with 204 or 503 + Retry-After: "
                          f"{len(bad)} not, first {bad[:5]}; client errors {errors[:3]}")
    slow = [(p, s, round(x, 2)) for p, s, x in prober.results if s not in (200, 204, 503) or x > PROBE_S]
    checks.check(not slow, f"/ping and /health answered within {PROBE_S}s: {len(slow)} not, first {slow[:5]}")
    shed = by_status.get(503, 0)
    checks.check(quantile(lat, 0.5) <= SHED_S or shed > 0,
                 f"overloaded (median write latency {quantile(lat, 0.5):.2f}s > {SHED_S}s), the daemon "
                 f"sheds load: {shed} answered 503")
    distinct = CLUSTERS * BODIES * clients[0].bodies[0][1]
    bound = rss0 + 64 * 1024 + CLIENTS * 2 * MAX_BODY_MIB * 1024 + distinct // 4
    checks.check(prober.peak["rss"] < bound, f"RSS {prober.peak['rss']} KiB under {bound} KiB")

    # Afterwards: quiet, a write goes through at once, and every sample a
    # 204 acknowledged was accepted (duplicates are not counted again).
    def quiet():
        s = d.write(f"power,cluster=c2 kw=1 {T0}\n")[0]
        return s == 204, s
    checks.expect_within(quiet, 60, "a write after the overload gets 204")
    accepted = metric(d, "tariffd_samples_accepted_total")
    acked = set()
    for c in clients:
        for b, (s, _, n, _) in enumerate(c.results):
            if s == 204:
                acked.add((c.k % CLUSTERS, b % BODIES, n))
    want = sum(n for _, _, n in acked) + 1
    checks.check(accepted is not None and accepted >= want,
                 f"samples accepted {accepted}, at least the {want} distinct ones acknowledged")
    health = json.loads(d.admin("GET", "/health")[1])
    print(f"after: /health {health}")
    checks.check(d.stop() == 0, "SIGTERM exits 0")
finally:
    d.cleanup()
checks.finish()
