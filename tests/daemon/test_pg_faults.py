"""PostgreSQL stuck or bouncing while a client writes: ingestion never waits
for it, and once it is back the ledger is complete, nothing lost or written
twice (docs/design.md sections 5 and 6: "PostgreSQL being down neither
loses data nor stops ingestion"; "Ingestion never waits for PostgreSQL").

  lock      a psql session holds ACCESS EXCLUSIVE on billing_rows for
            LOCK_S seconds (the ledger writer's INSERT waits on it) while a
            client keeps writing: every write gets 204 within REQUEST_S (the
            worst latency is printed, not asserted), the daemon's RSS stays
            under a bound (below), the writer's queue grows while blocked;
            after the lock is released the queue drains
            (tariffd_ledger_rows_queued 0) and the ledger equals `tariffd
            price` on the same samples
  restarts  PostgreSQL restarted RESTARTS times ($TARIFFD_PG_CTL restart,
            fast and immediate in turn) while a client writes: every write
            gets 204 at once, without a retry, and after the drain the
            ledger equals `tariffd price`, each row once

LOCK_S is $TARIFFD_LOCK_S, else 60 with TARIFFD_LONG=1, else 20 (the
suite). The restarts are RESTART_GAP_S apart: $TARIFFD_PG_RESTART_GAP_S,
else 12 with TARIFFD_LONG=1 (five in a minute), else 3.

The RSS bound: while the writer is blocked the daemon holds what it always
holds (every sample of the last late_window of wall-clock time, for late
arrivals) and the rows waiting for PostgreSQL. Both are proportional to
what was sent, so the bound is the RSS before the lock plus 64 MiB plus
256 bytes per sample sent during the test (the engine keeps a few dozen
bytes for one) plus 4 KiB per row produced (a row is a few hundred bytes of
text parameters). Growth past it means memory that does not come from either,
for example requests or rows held more than once.

Without PGHOST or TARIFFD_PG_CTL it exits 77 (SKIP).

usage: test_pg_faults.py TARIFFD [lock|restarts]...   (prints "N passed, N failed")"""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
from harness import Daemon, metric, need_postgres, psql, read_csv, sums  # noqa: E402

need_postgres()
PG_CTL = os.environ.get("TARIFFD_PG_CTL")
if not PG_CTL:
    checks.skip("TARIFFD_PG_CTL is unset: the test restarts PostgreSQL (scripts/test sets it)")
TARIFFD = sys.argv[1]
ONLY = set(sys.argv[2:]) or {"lock", "restarts"}
LONG = os.environ.get("TARIFFD_LONG") == "1"
LOCK_S = float(os.environ.get("TARIFFD_LOCK_S", "60" if LONG else "20"))
RESTARTS = 5
RESTART_GAP_S = float(os.environ.get("TARIFFD_PG_RESTART_GAP_S", "12" if LONG else "3"))
REQUEST_S = 10  # a write not answered within this is a failure
T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)
STEP_S = 10
STEPS_PER_BATCH = 60  # ten minutes of 10 s samples per batch
MONEY = ["kwh", "energy_charge", "surcharge", "subsidy", "net"]
DEMAND = ["charge", "subsidy", "net"]


def batch(k):
    """Batch k of the stream: (tenant, body). Even batches are t1's (two
    power meters on c1, a counter on c2), odd ones t2's (x1), each ten
    minutes of 10 s samples, consecutive per tenant."""
    tenant = "t1" if k % 2 == 0 else "t2"
    out = []
    for i in range(k // 2 * STEPS_PER_BATCH, (k // 2 + 1) * STEPS_PER_BATCH):
        t = T0 + STEP_S * i
        if tenant == "t1":
            out.append(f"power,cluster=c1,meter=a kw={40 + (i * 7) % 23} {t}")
            out.append(f"power,cluster=c1,meter=b w={15000 + (i * 131) % 9000} {t}")
            out.append(f"power,cluster=c2,meter=ctr kwh={1000 + i * 0.06:.2f} {t}")
        else:
            out.append(f"power,cluster=x1,meter=m0 kw={30 + (i * 11) % 17} {t}")
            out.append(f"power,cluster=x1,meter=m1 kw={20 + (i * 5) % 13} {t}")
    return tenant, "\n".join(out) + "\n"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def pg_ctl(action):
    r = subprocess.run(f"{PG_CTL} {action}", shell=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)
    if r.returncode:
        raise RuntimeError(f"pg_ctl {action}: {r.stderr}")


def pg_up():
    try:
        psql("postgres", "SELECT 1")
        return True
    except subprocess.CalledProcessError:
        return False


def log_tail(d, n=20):
    try:
        return "\n".join("  | " + x for x in d.read_log().splitlines()[-n:])
    except OSError:
        return "  (no log)"


class Writer(threading.Thread):
    """One client writing batch after batch, each once, until stopped;
    records each answer's status and latency."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.stop = threading.Event()
        self.sent = []  # bodies, in order
        self.bad = []  # (batch, status, detail)
        self.latencies = []
        self.samples = 0

    def run(self):
        k = 0
        while not self.stop.is_set():
            tenant, body = batch(k)
            t = time.monotonic()
            try:
                status, data, _ = self.d.request(
                    "POST", "/api/v2/write?org=o&bucket=b&precision=s", body.encode(),
                    {"Authorization": "Token " + tenant + "-secret"})
            except OSError as e:
                status, data = None, repr(e).encode()
            took = time.monotonic() - t
            self.latencies.append(took)
            self.sent.append(body)
            self.samples += body.count("\n")
            if status != 204 or took > REQUEST_S:
                self.bad.append((k, status, data[:200], round(took, 2)))
            k += 1
            self.stop.wait(0.02)  # the client's pace

    def finish(self):
        self.stop.set()
        self.join(REQUEST_S + 5)
        lat = sorted(self.latencies)
        print(f"  {len(self.sent)} writes ({self.samples} samples), latency max {lat[-1]:.3f}s, "
              f"p99 {lat[int(len(lat) * 0.99)]:.3f}s, median {lat[len(lat) // 2]:.3f}s", flush=True)
        checks.check(not self.bad, f"every write 204 within {REQUEST_S}s: {len(self.bad)} not: {self.bad[:5]}")


def offline(d, text):
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([TARIFFD, "price", "-c", d.config, "--precision", "s", "--out", out],
                           input=text, text=True, capture_output=True, timeout=120)
        if r.returncode:
            raise RuntimeError(f"tariffd price exited {r.returncode}: {r.stderr[-500:]}")
        return read_csv(os.path.join(out, "billing_rows.csv")), read_csv(os.path.join(out, "demand_charges.csv"))


def drained_and_equal(d, text, timeout=60):
    """Waits until nothing is queued and the ledger equals tariffd price
    (sums over revisions per cluster and interval, per cluster and month);
    then each row key once."""
    want_rows, want_demand = offline(d, text)
    key = ("cluster", "interval_start")
    want, want_d = sums(want_rows, key, MONEY), sums(want_demand, ("cluster", "month"), DEMAND)
    state = {}

    def probe():
        try:
            queued = metric(d, "tariffd_ledger_rows_queued")
            rows, demand = d.table("billing_rows"), d.table("demand_charges")
        except (OSError, subprocess.CalledProcessError) as e:
            return False, repr(e)
        state["rows"], state["demand"] = rows, demand
        got, got_d = sums(rows, key, MONEY), sums(demand, ("cluster", "month"), DEMAND)
        wrong = [k for k in set(got) | set(want) if got.get(k) != want.get(k)]
        return (queued == 0 and not wrong and got_d == want_d,
                f"{queued} rows queued, {len(wrong)} of {len(want)} intervals differ "
                f"(first {[(k, got.get(k), want.get(k)) for k in sorted(wrong)[:1]]}), "
                f"months {got_d} vs {want_d}")
    t = time.monotonic()
    ok, detail = checks.expect_within(probe, timeout, "the backlog drains and the ledger equals tariffd price",
                                      lambda: print(log_tail(d)), every=0.5)
    if ok:
        print(f"  drained and equal to tariffd price {time.monotonic() - t:.1f}s after the fault: "
              f"{len(state['rows'])} billing rows, {len(state['demand'])} demand rows", flush=True)
    keys = [(r["cluster"], r["interval_start"], r["revision"]) for r in state.get("rows", [])]
    keys += [(r["cluster"], r["month"], r["revision"]) for r in state.get("demand", [])]
    checks.check(len(keys) == len(set(keys)), "each (cluster, interval or month, revision) once")
    checks.check(len(want_rows) > 100, f"tariffd price made {len(want_rows)} rows")


def scenario_lock():
    d = Daemon(TARIFFD)
    try:
        d.start()
        pid = d.proc.pid
        w = Writer(d)
        w.start()
        checks.wait_until(lambda: len(d.table("billing_rows")) > 0, 15, "first rows committed")
        rss0 = rss_kib(pid)
        table = f"{d.schema}.billing_rows"
        locker = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", d.db],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, env=dict(os.environ, PGAPPNAME="tariffd-test-locker"))
        locker.stdin.write(f"BEGIN;\nLOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n"
                           f"SELECT pg_sleep({LOCK_S});\nCOMMIT;\n")
        locker.stdin.close()
        t_lock = time.monotonic()
        # The writer is really stuck: its INSERT waits for the lock.
        checks.expect_within(lambda: psql(d.db, f"SELECT count(*) FROM pg_locks WHERE relation = "
                                                f"'{table}'::regclass AND NOT granted", "-At").strip() != "0",
                             min(10, LOCK_S), "the ledger writer waits for the lock", every=0.1)
        peak = {"rss": rss0, "queued": 0}
        while locker.poll() is None and time.monotonic() - t_lock < LOCK_S + 30:
            peak["rss"] = max(peak["rss"], rss_kib(pid))
            peak["queued"] = max(peak["queued"], metric(d, "tariffd_ledger_rows_queued") or 0)
            time.sleep(0.5)
        checks.check(locker.poll() == 0, f"the lock was held and released: psql {locker.poll()} "
                                         f"{locker.stderr.read() if locker.poll() is not None else ''}")
        held = time.monotonic() - t_lock
        w.finish()
        produced = metric(d, "tariffd_intervals_closed_total") + metric(d, "tariffd_adjustments_total") \
            + metric(d, "tariffd_demand_rows_total")
        bound = rss0 + 64 * 1024 + w.samples // 4 + 4 * int(produced)
        print(f"  lock held {held:.1f}s; RSS {rss0 / 1024:.1f} MiB before, peak {peak['rss'] / 1024:.1f} MiB "
              f"(bound {bound / 1024:.1f} MiB); rows queued at most {peak['queued']:.0f} of {produced:.0f} "
              f"produced", flush=True)
        checks.check(peak["rss"] < bound, f"RSS {peak['rss']} KiB under {bound} KiB")
        checks.check(peak["queued"] > 0, "rows waited for PostgreSQL while the lock was held")
        drained_and_equal(d, "".join(w.sent))
        checks.check(d.stop() == 0, "SIGTERM exits 0")
    finally:
        d.cleanup()


def scenario_restarts():
    d = Daemon(TARIFFD)
    try:
        d.start()
        w = Writer(d)
        w.start()
        checks.wait_until(lambda: len(d.table("billing_rows")) > 0, 15, "first rows committed")
        t = time.monotonic()
        for n in range(RESTARTS):
            mode = "fast" if n % 2 == 0 else "immediate"
            pg_ctl(f"-m {mode} restart")
            if n < RESTARTS - 1:
                time.sleep(RESTART_GAP_S)  # the schedule of the fault, not a wait for a condition
        print(f"  {RESTARTS} restarts of PostgreSQL in {time.monotonic() - t:.1f}s", flush=True)
        w.finish()
        s, data, _ = d.admin("GET", "/metrics")
        m = re.search(r'tariffd_postgres_errors_total\{class="transient"\} (\d+)', data.decode())
        transient = int(m.group(1)) if m else None
        print(f"  transient PostgreSQL errors the writer saw: {transient}")
        drained_and_equal(d, "".join(w.sent))
        checks.check(d.stop() == 0, "SIGTERM exits 0")
    finally:
        if not pg_up():
            pg_ctl("start")
        d.cleanup()


for name, fn in (("lock", scenario_lock), ("restarts", scenario_restarts)):
    if name not in ONLY:
        continue
    t = time.monotonic()
    print(f"{name}:", flush=True)
    try:
        fn()
    except Exception:
        checks.fail(f"{name}: {traceback.format_exc()}")
    print(f"{name}: {time.monotonic() - t:.1f}s", flush=True)
checks.finish()
