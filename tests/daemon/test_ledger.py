"""The PostgreSQL ledger of a running daemon (docs/design.md sections 5 and 6), against
`tariffd price` on the same data. Each scenario starts its own daemon(s)
on its own database (the PostgreSQL of PGHOST):

  offline     the ledger equals offline pricing: for every (cluster, interval)
              the sums over revisions of kWh and money, for every (cluster,
              month) the demand charge, monthly_statements, monthly_by_period
  cap         a yearly cap shared by two clusters runs out mid-stream: the
              tenant's total is the cap, and never went over it
  outage      PostgreSQL stops mid-stream: writes still get 204, /health warns;
              once it is back, nothing lost or duplicated
  restart     rows unwritten (PostgreSQL down) across SIGTERM and kill -9
  standby     two daemons on one schema: one writes, the other answers 503
              "standby" and takes over when the first stops
  notify      a consumer polling id > last sees every id once, in order;
              LISTEN tariffd_billing gets committed max ids
  late        a late sample makes an adjustment row; the views include it
  capstate    a yearly cap across kill -9, and a daemon on a new empty
              state_dir recovers it from subsidy_lines
  capswait    a first start with PostgreSQL down takes every write; with a
              cap, closing waits for the caps and then pays what the cap
              has left; without one, rows close at once
  poison      invalid UTF-8 in a meter (also of a sample that would be
              quarantined), a surrogate, an overlong form, a field key, a
              measurement: 400 naming line and column, nothing accepted;
              both tenants' valid stream then billed exactly, /health pass,
              also after a restart and a kill -9
  refused     PostgreSQL refuses one row (a CHECK constraint): the rest is
              committed, the row waits in dead_letters, /health fails with
              the SQLSTATE, a replay keeps it once, resubmit_dead_letter
              puts it in once the cause is gone
  burst       a meter sends the hour it buffered, in one request and in
              four: at most one adjustment per interval per request, the
              sums equal offline
  recount     a dead letter resolved while the writer is never idle:
              /health stops failing within the recount period
  backoff     PostgreSQL down: a handful of attempts, /health warn throughout
  oldjournal  a journal of an older version holding a non-UTF-8 meter:
              the daemon replays it, that one row goes to dead_letters,
              the rest is billed, /health fails until it is resolved

The outage, restart and capswait scenarios stop and start PostgreSQL with
$TARIFFD_PG_CTL (scripts/lib/common.sh start_postgres): they are part of
the test, so without PGHOST or TARIFFD_PG_CTL the test exits 77 (SKIP)
rather than pass without them. Every wait has a deadline and fails loudly;
a failure prints the daemon's log tail.

usage: test_ledger.py TARIFFD [SCENARIO...]   (prints "N passed, N failed")"""
import calendar
import csv
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
from harness import HERE, Daemon, metric, need_postgres, psql, read_csv, run_scenarios, sums  # noqa: E402

need_postgres()
TARIFFD = sys.argv[1]
ONLY = sys.argv[2:]
PG_CTL = os.environ.get("TARIFFD_PG_CTL")
if not PG_CTL and (not ONLY or {"outage", "restart", "capswait"} & set(ONLY)):
    checks.skip("TARIFFD_PG_CTL is unset: the outage and restart scenarios need to stop and "
                "start PostgreSQL (scripts/test sets it)")
MIGRATIONS = sorted(f for f in os.listdir(os.path.join(HERE, "..", "..", "storage", "sql"))
                    if f.endswith(".sql"))

T0 = 1740758400  # 2025-03-01 00:00 local (+08:00), valley until 08:00
T_APR = T0 + 31 * 86400  # 2025-04-01 00:00 local

daemons = []  # of the running scenario, for log tails and cleanup
after = []  # run once the scenario's daemons are gone
from checks import daemon_check as check, daemon_wait as wait_until  # noqa: E402
from checks import log_tail, tail_once, tails_shown  # noqa: E402,F401


# ---------------------------------------------------------------- data

def samples(i0, n, t0=T0, step=20):
    """Two power meters on c1 (kW and W) and an energy counter on c2."""
    out = []
    for i in range(i0, i0 + n):
        t = t0 + step * i
        out.append(f"power,cluster=c1,meter=a kw={40 + (i * 7) % 23} {t}")
        out.append(f"power,cluster=c1,meter=b w={15000 + (i * 131) % 9000} {t}")
        out.append(f"power,cluster=c2,meter=ctr kwh={1000 + i * 0.21:.2f} {t}")
    return out


def batches(lines, size, rng, late=True):
    """Batches of `size` lines; some reversed (out of order within a
    batch), and with late=True some sent after the next three (late samples
    into closed intervals: adjustment rows)."""
    bs = [lines[k:k + size] for k in range(0, len(lines), size)]
    bs = [list(reversed(b)) if rng.random() < 0.3 else b for b in bs]
    if late:
        for k in range(2, len(bs) - 3, 7):
            bs[k], bs[k + 3] = bs[k + 3], bs[k]
    return ["\n".join(b) + "\n" for b in bs]


# ---------------------------------------------------------------- daemons

def new_daemon(**kw):
    d = Daemon(TARIFFD, **kw)
    daemons.append(d)
    return d


def set_cap(d, cap):
    """Gives programme pa a yearly cap (before start); keeps the config
    without it as d.uncapped for offline totals."""
    with open(d.config) as f:
        text = f.read()
    d.uncapped = d.config + ".uncapped"
    with open(d.uncapped, "w") as f:
        f.write(text)
    assert "[programme pa]\n" in text
    with open(d.config, "w") as f:
        f.write(text.replace("[programme pa]\n", f"[programme pa]\ncap_cny_per_year = {cap}\n"))


def health(d):
    """/health's JSON, with its HTTP status as "http" (503 when it fails)."""
    try:
        s, data, _ = d.admin("GET", "/health")
        return dict(json.loads(data), http=s)
    except (OSError, ValueError) as e:
        return {"status": "unreachable", "message": repr(e)}


def try_write(d, body):
    try:
        return d.write(body)
    except OSError as e:
        return None, repr(e).encode(), {}


def send(d, body, what, timeout=15):
    """Writes a batch, retrying on 503 (as Telegraf does) until the deadline."""
    deadline = time.time() + timeout
    while True:
        s, data, _ = try_write(d, body)
        if s == 204 or s not in (None, 503) or time.time() > deadline:
            break
        time.sleep(0.05)
    return check(s == 204, f"{what}: got {s} {data[:200]!r}", d)


def send_now(d, body, what, max_s=5):
    """Writes a batch that must get 204 at once (no retry), within max_s."""
    t = time.time()
    s, data, _ = try_write(d, body)
    took = time.time() - t
    return check(s == 204 and took < max_s, f"{what}: got {s} {data[:200]!r} after {took:.2f}s", d)


def writable(d, timeout=15):
    """Until an empty write gets 204 (a daemon that just started, or one
    that stands by, refuses it)."""
    return wait_until(lambda: ((s := try_write(d, "")[0]) == 204, f"empty write got {s}; health {health(d)}"),
                      timeout, "daemon takes writes", d, every=0.05)[0]


# ---------------------------------------------------------------- PostgreSQL

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


def ensure_pg_up():
    if PG_CTL and not pg_up():
        pg_ctl("start")


def query(db, sql):
    """Rows of a query as dicts of text (NULL as an empty string)."""
    out = psql(db, f"COPY ({sql}) TO STDOUT WITH CSV HEADER")
    return list(csv.DictReader(io.StringIO(out)))


def ledger(d):
    return d.table("billing_rows"), d.table("demand_charges")


def offline(config, text):
    """tariffd price's four CSV files on the same data, in the same order."""
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([TARIFFD, "price", "-c", config, "--precision", "s", "--out", out],
                           input=text, text=True, capture_output=True, timeout=60)
        if r.returncode:
            raise RuntimeError(f"tariffd price exited {r.returncode}: {r.stderr[-500:]}")
        return {n: read_csv(os.path.join(out, n + ".csv"))
                for n in ("billing_rows", "demand_charges", "monthly_statements", "monthly_by_period")}


# ---------------------------------------------------------------- comparing

MONEY = ["kwh", "energy_charge", "surcharge", "subsidy", "net"]
NO_SUBSIDY = ["kwh", "energy_charge", "surcharge"]


def differences(got, want, label):
    out = []
    for k in sorted(set(got) | set(want)):
        if k not in got:
            out.append(f"{label} {k}: missing in the ledger (offline {want[k]})")
        elif k not in want:
            out.append(f"{label} {k}: in the ledger {got[k]}, not offline")
        elif got[k] != want[k]:
            out.append(f"{label} {k}: ledger {got[k]} != offline {want[k]}")
    return out


def ledger_vs_offline(got_rows, got_demand, want, subsidy=True):
    """Per (cluster, interval) and per (cluster, month), summed over
    revisions; with subsidy=False (a cap shared by clusters) subsidy and
    net are left out."""
    fields = MONEY if subsidy else NO_SUBSIDY
    dfields = ["charge", "subsidy", "net"] if subsidy else ["charge"]
    key = ("cluster", "interval_start")
    return (differences(sums(got_rows, key, fields), sums(want["billing_rows"], key, fields), "interval")
            + differences(sums(got_demand, ("cluster", "month"), dfields),
                          sums(want["demand_charges"], ("cluster", "month"), dfields), "demand"))


def wait_ledger(d, want, timeout=20, subsidy=True, rows_filter=None):
    """Waits until the ledger equals offline (every interval and month
    closed and committed); one check. Returns the ledger."""
    state = {}

    def probe():
        rows, demand = ledger(d)
        if rows_filter:
            rows, demand = [r for r in rows if rows_filter(r)], [r for r in demand if rows_filter(r)]
        state["ledger"] = (rows, demand)
        diff = ledger_vs_offline(rows, demand, want, subsidy)
        return not diff, f"{len(diff)} differences, first: {diff[:3]}"
    wait_until(probe, timeout, "ledger equals tariffd price", d)
    return state["ledger"]


def unique_keys(d, rows, demand):
    keys = [(r["cluster"], r["interval_start"], r["revision"]) for r in rows]
    dkeys = [(r["cluster"], r["month"], r["revision"]) for r in demand]
    check(len(keys) == len(set(keys)) and len(dkeys) == len(set(dkeys)),
          f"a (cluster, interval/month, revision) was written twice: {len(keys)} rows, "
          f"{len(set(keys))} keys", d)


def views_vs_offline(d, want):
    got = query(d.db, f"SELECT * FROM {d.schema}.monthly_statements")
    key = ("tenant", "cluster", "province", "month")
    fields = ["kwh", "energy_charge", "surcharge", "demand_charge", "subsidy", "net"]
    diff = differences(sums(got, key, fields), sums(want["monthly_statements"], key, fields), "statement")
    check(len(got) == len(want["monthly_statements"]) and not diff,
          f"monthly_statements differ from offline: {diff[:3]} ({len(got)} rows, "
          f"{len(want['monthly_statements'])} offline)", d)
    got = query(d.db, f"SELECT * FROM {d.schema}.monthly_by_period")
    key = ("tenant", "cluster", "month", "period")
    diff = differences(sums(got, key, ["kwh", "energy_charge"]),
                       sums(want["monthly_by_period"], key, ["kwh", "energy_charge"]), "by period")
    check(len(got) == len(want["monthly_by_period"]) and not diff,
          f"monthly_by_period differs from offline: {diff[:3]}", d)
    return got


def subsidy_total(rows):
    return sum((Decimal(r["subsidy"]) for r in rows), Decimal(0))


# ---------------------------------------------------------------- scenarios

def scenario_offline():
    rng = random.Random(1)
    # 07:00-10:00 local: valley, then flat from 08:00.
    bs = batches(samples(0, 540, t0=T0 + 7 * 3600), 60, rng)
    d = new_daemon().start()
    writable(d)
    for i, b in enumerate(bs):
        send(d, b, f"batch {i}")
        time.sleep(0.01)
    want = offline(d.config, "".join(bs))
    check(len({r["period"] for r in want["billing_rows"]}) == 2 and len(want["billing_rows"]) > 20,
          "offline: two periods, more than 20 intervals")
    rows, demand = wait_ledger(d, want)
    check(any(r["kind"] == "adjustment" for r in rows), "late batches made adjustment rows", d)
    unique_keys(d, rows, demand)
    views_vs_offline(d, want)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_cap():
    rng = random.Random(2)
    cap = Decimal("8.0000")
    bs = batches(samples(0, 360, t0=T0 + 7 * 3600), 45, rng)  # 07:00-09:00 local
    d = new_daemon()
    set_cap(d, cap)
    text = "".join(bs)
    uncapped = subsidy_total(offline(d.uncapped, text)["billing_rows"])
    want = offline(d.config, text)
    check(uncapped > 2 * cap, f"the cap runs out mid-stream: {uncapped} uncapped")
    offline_total = subsidy_total(want["billing_rows"]) + subsidy_total(want["demand_charges"])
    check(offline_total == cap, f"offline total subsidy {offline_total} is the cap {cap}")
    d.start()
    writable(d)
    for i, b in enumerate(bs):
        send(d, b, f"batch {i}")
        time.sleep(0.01)
    rows, demand = wait_ledger(d, want, subsidy=False)
    unique_keys(d, rows, demand)
    total = subsidy_total(rows) + subsidy_total(demand)
    check(total == cap, f"the tenant's subsidy for 2025 is {total}, the cap is {cap}", d)
    paid = {c: subsidy_total([r for r in rows if r["cluster"] == c]) for c in ("c1", "c2")}
    check(all(v > 0 for v in paid.values()), f"both clusters were paid before the cap ran out: {paid}", d)
    lines = query(d.db, f"SELECT programme, tenant, year, amount FROM {d.schema}.subsidy_lines ORDER BY id")
    running, top = Decimal(0), Decimal(0)
    for line in lines:
        running += Decimal(line["amount"])
        top = max(top, running)
    check(running == cap and top <= cap and {(x["programme"], x["tenant"], x["year"]) for x in lines}
          == {("pa", "t1", "2025")}, f"subsidy_lines: total {running}, highest running total {top}", d)
    byp = query(d.db, f"SELECT * FROM {d.schema}.subsidy_by_programme ORDER BY month")
    check([(r["programme"], r["subsidy"], r["cap_remaining"]) for r in byp] == [("pa", "8.00", "0.00")],
          f"subsidy_by_programme: {byp}", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_outage():
    rng = random.Random(3)
    bs = batches(samples(0, 540), 45, rng)
    parts = [bs[:12], bs[12:24], bs[24:]]
    d = new_daemon().start()
    writable(d)
    for i, b in enumerate(parts[0]):
        send_now(d, b, f"before the outage, batch {i}")
    wait_until(lambda: (len(d.table("billing_rows")) > 0, "no row yet"), 10, "first rows committed", d)
    pg_ctl("-m fast stop")
    stopped = time.time()
    for i, b in enumerate(parts[1]):
        send_now(d, b, f"PostgreSQL down, batch {i}")
        time.sleep(0.02)
    wait_until(lambda: ((h := health(d))["status"] == "warn" and h["http"] == 200
                        and "PostgreSQL" in h["message"], h), 10,
               "/health warns while PostgreSQL is down", d)
    # The writer retries and fails again: it is backing off, as it should.
    wait_until(lambda: ((n := d.read_log().count("postgres: cannot connect")) >= 2,
                        f"{n} failed connection attempts"), 15,
               "the writer retries while PostgreSQL is down", d)
    pg_ctl("start")
    print(f"outage: PostgreSQL down {time.time() - stopped:.1f}s")
    for i, b in enumerate(parts[2]):
        send_now(d, b, f"after the outage, batch {i}")
    want = offline(d.config, "".join(bs))
    rows, demand = wait_ledger(d, want, timeout=25)
    unique_keys(d, rows, demand)
    views_vs_offline(d, want)
    wait_until(lambda: ((h := health(d))["status"] == "pass", h), 10, "/health passes again", d)
    log = d.read_log()
    check("postgres: writing rows failed" in log or "postgres: cannot connect" in log,
          "the outage is logged", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def reload_price(d, old, new):
    """Edits the config and sends SIGHUP; waits until the daemon logged it."""
    with open(d.config) as f:
        text = f.read()
    assert old in text
    with open(d.config, "w") as f:
        f.write(text.replace(old, new))
    before = d.read_log().count("reloaded ")
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: (d.read_log().count("reloaded ") > before, "not yet"), 10, "reloaded", d)


def scenario_reloadcrash():
    """A reload (a corrected valley price) is journaled where it happened:
    a kill -9 after it, before any checkpoint, replays the records before
    it under the price they had. Then a late sample re-prices a closed
    interval under the new price; the adjustment is the difference from
    what the ledger holds. The ledger equals, exactly, that of the same
    stream on a daemon never killed."""
    first = "".join(f"power,cluster=c2 kw=40 {T0 + 60 * m}\n" for m in range(32))  # 00:00-00:31
    late = f"power,cluster=c2 kw=100 {T0 + 900 + 450}\n"  # 00:22:30, in the closed 00:15 interval
    ledgers = []
    for crash in (False, True):
        d = new_daemon().start()
        writable(d)
        send(d, first, "the first half hour")
        wait_until(lambda: (len(d.table("billing_rows")) == 2, d.table("billing_rows")), 15,
                   "00:00 and 00:15 closed and committed", d)
        reload_price(d, "price.valley = 0.25", "price.valley = 0.3")
        if crash:
            d.kill()
            d.start()
            writable(d)
        send(d, late, "the late sample")

        def adjusted():
            rs = d.table("billing_rows")
            return any(r["revision"] == "1" for r in rs), rs
        wait_until(adjusted, 15, "an adjustment row", d)
        ledgers.append((d.table("billing_rows"), d.table("demand_charges")))
        check(d.stop() == 0, "SIGTERM exits 0", d)
    (rows, demand), (crows, cdemand) = ledgers
    key = ("cluster", "interval_start", "revision")
    got, want = sums(crows, key, MONEY), sums(rows, key, MONEY)
    check(got == want, f"killed after the reload: the same rows as without the kill: "
          f"{differences(got, want, 'row')[:3]}")
    adj = [r for r in crows if r["revision"] == "1"]
    # 10.5 kWh at the corrected 0.3 (3.1500) less the 10 kWh at 0.25 billed (2.5000).
    check(len(adj) == 1 and adj[0]["energy_charge"] == "0.6500", f"the adjustment bills the correction: {adj}")
    check(sums(cdemand, ("cluster", "month", "revision"), ["charge"])
          == sums(demand, ("cluster", "month", "revision"), ["charge"]), "the same demand rows")


def scenario_stop():
    """SIGTERM: the ledger catches up, then the final checkpoint, and the
    log says so; the next start replays nothing. With PostgreSQL down the
    flush times out, the log says that, and the next start replays the
    journal into an exact ledger."""
    rng = random.Random(9)
    bs = batches(samples(0, 180), 45, rng, late=False)
    d = new_daemon().start()
    writable(d)
    for i, b in enumerate(bs[:6]):
        send_now(d, b, f"batch {i}")
    check(d.stop() == 0, "SIGTERM exits 0", d)
    log = d.read_log()
    check("stop: the ledger caught up; final checkpoint" in log, "the log says the ledger caught up", d)
    d.start()
    check("checkpoint loaded, 0 journal records replayed" in d.read_log(),
          "the next start replays nothing", d)
    pg_ctl("-m fast stop")
    for i, b in enumerate(bs[6:]):
        send_now(d, b, f"batch {i + 6} (PostgreSQL down)")
    t = time.time()
    check(d.stop() == 0 and time.time() - t < 15, f"SIGTERM exits 0 ({time.time() - t:.1f}s)", d)
    check("stop: the flush timed out after 5000 ms" in d.read_log(), "the log says the flush timed out", d)
    pg_ctl("start")
    d.start()
    want = offline(d.config, "".join(bs))
    rows, demand = wait_ledger(d, want)
    unique_keys(d, rows, demand)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_restart():
    rng = random.Random(4)
    bs = batches(samples(0, 540), 45, rng)
    parts = [bs[:9], bs[9:18], bs[18:27], bs[27:]]
    d = new_daemon().start()
    writable(d)
    for i, b in enumerate(parts[0]):
        send_now(d, b, f"part 1, batch {i}")
    wait_until(lambda: (len(d.table("billing_rows")) > 0, "no row yet"), 10, "first rows committed", d)
    pg_ctl("-m fast stop")
    for i, b in enumerate(parts[1]):
        send_now(d, b, f"part 2 (PostgreSQL down), batch {i}")
    t = time.time()
    check(d.stop() == 0 and time.time() - t < 10,
          f"SIGTERM with rows unwritten exits 0 ({time.time() - t:.1f}s)", d)
    d.start()
    for i, b in enumerate(parts[2]):
        send_now(d, b, f"part 3 (after SIGTERM, PostgreSQL down), batch {i}")
    d.kill()
    d.start()
    for i, b in enumerate(parts[3]):
        send_now(d, b, f"part 4 (after kill -9, PostgreSQL down), batch {i}")
    pg_ctl("start")
    want = offline(d.config, "".join(bs))
    rows, demand = wait_ledger(d, want, timeout=25)
    unique_keys(d, rows, demand)
    views_vs_offline(d, want)
    check(d.read_log().count("<5>ready") == 3, "three starts, each ready", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_standby():
    db = f"tariffd_test_ledger_{os.getpid()}"
    psql("postgres", f'DROP DATABASE IF EXISTS "{db}"')
    psql("postgres", f'CREATE DATABASE "{db}"')
    after.append(lambda: psql("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    ds = [new_daemon(db=db), new_daemon(db=db)]
    errors = []

    def start(x):
        try:
            x.start()
        except Exception as e:  # reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=start, args=(x,)) for x in ds]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    if not check(not errors and all(x.alive() for x in ds), f"both daemons started: {errors}"):
        return

    def roles():
        hs = [health(x) for x in ds]
        ok = (sorted((h["status"], h["http"]) for h in hs) == [("fail", 503), ("pass", 200)]
              and any("standby" in h["message"] for h in hs))
        return ok, hs
    ok, hs = wait_until(roles, 15, "one daemon writes, the other stands by", ds[0])
    if not ok:
        return
    w, s = (ds[0], ds[1]) if hs[0]["status"] == "pass" else (ds[1], ds[0])
    got = query(db, "SELECT name, count(*) AS n FROM tariffd.schema_migrations GROUP BY name ORDER BY name")
    check([(r["name"], r["n"]) for r in got] == [(m, "1") for m in MIGRATIONS],
          f"schema_migrations has each migration once: {got}, want {MIGRATIONS}")
    applied = sum(x.read_log().count("applied migration") for x in ds)
    check(applied == len(MIGRATIONS), f"{applied} migrations applied by the two daemons")
    send_now(w, "\n".join(samples(0, 91)) + "\n", "the writer takes a write")
    st, data, hdr = try_write(s, "\n".join(samples(180, 10)) + "\n")
    msg = json.loads(data).get("message", "") if st == 503 else ""
    check(st == 503 and "standby" in msg and hdr.get("Retry-After"),
          f"the standby answers 503 standby with Retry-After: {st} {data!r} {hdr}", s)
    wait_until(lambda: (len(query(db, "SELECT id FROM tariffd.billing_rows")) >= 4, "fewer than 4 rows"),
               10, "the writer's rows committed", w)
    check(w.stop() == 0, "the writer exits 0 on SIGTERM", w)
    t = time.time()
    body = "\n".join(samples(180, 91)) + "\n"  # 01:00-01:30 local
    while True:
        st, data, _ = try_write(s, body)
        if st != 503 or time.time() - t > 10:
            break
        time.sleep(0.05)
    took = time.time() - t
    check(st == 204, f"the standby takes over within 10s: {st} {data[:200]!r} after {took:.1f}s", s)
    print(f"standby: took over {took:.1f}s after the writer stopped")
    check(re.search(r"recovered \d+ yearly cap totals", s.read_log()) is not None,
          "the standby read the caps back", s)
    wait_until(lambda: (any(r["interval_start"] == "2025-02-28T17:00:00Z" for r in s.table("billing_rows")),
                        "no 01:00 row"), 15, "the new writer's rows committed", s)
    rows = s.table("billing_rows")
    keys = [(r["cluster"], r["interval_start"], r["revision"]) for r in rows]
    check(len(keys) == len(set(keys)), "no row twice", s)
    check(s.stop() == 0, "SIGTERM exits 0", s)
    for x in ds:
        check("<3>" not in x.read_log(), "no error in the log", x)


def scenario_notify():
    rng = random.Random(6)
    bs = batches(samples(0, 270), 30, rng, late=False)
    d = new_daemon().start()
    writable(d)
    seen, done, errors = [], threading.Event(), []
    # The listener LISTENs, then waits (at most a minute) until the test says
    # the ledger is complete; psql prints the notifications it received when
    # that wait ends.
    psql(d.db, "CREATE TABLE public.listener_control AS SELECT false AS done")
    wait_sql = ("DO $$ BEGIN FOR i IN 1..1200 LOOP EXIT WHEN (SELECT done FROM public.listener_control); "
                "PERFORM pg_sleep(0.05); END LOOP; END $$")
    listener = subprocess.Popen(["psql", "-X", "-d", d.db, "-c", "LISTEN tariffd_billing", "-c", wait_sql],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PGAPPNAME="tariffd-test-listener"))
    try:
        wait_until(lambda: (query(d.db, "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = "
                                        "'tariffd-test-listener' AND query LIKE 'DO %'")[0]["n"] == "1",
                            "not yet"),
                   5, "the listener is listening", d, every=0.05)

        def consume():
            last = 0
            try:
                while True:
                    stop = done.is_set()  # one more read after the last commit
                    out = psql(d.db, f"SELECT id FROM {d.schema}.billing_rows WHERE id > {last} ORDER BY id", "-At")
                    ids = [int(x) for x in out.split()]
                    seen.extend(ids)
                    if ids:
                        last = ids[-1]
                    if stop:
                        return
                    time.sleep(0.01)
            except Exception as e:  # reported below
                errors.append(repr(e))
        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        for i, b in enumerate(bs):
            send(d, b, f"batch {i}")
            time.sleep(0.03)
        want = offline(d.config, "".join(bs))
        rows, demand = wait_ledger(d, want)
        psql(d.db, "UPDATE public.listener_control SET done = true")
        done.set()
        consumer.join(30)
        check(not consumer.is_alive() and not errors, f"the consumer ran: {errors}", d)
        ids = [int(r["id"]) for r in rows]
        check(seen == sorted(set(seen)) and sorted(seen) == sorted(ids),
              f"the consumer saw every id once and in order: {len(seen)} seen, {len(set(seen))} distinct, "
              f"{len(ids)} rows, missed {sorted(set(ids) - set(seen))[:5]}", d)
        try:
            out, _ = listener.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            listener.kill()
            out, _ = listener.communicate()
        payloads = [int(p) for p in re.findall(r'Asynchronous notification "tariffd_billing" with payload "(\d+)"', out)]
        check(payloads and all(p in set(ids) for p in payloads) and payloads == sorted(payloads),
              f"every NOTIFY payload is a committed id, increasing: {payloads[:10]} (psql said {out[-300:]!r})", d)
        print(f"notify: the consumer read {len(seen)} ids, the listener got {len(payloads)} notifications")
        check(payloads and payloads[-1] == max(ids),
              f"the last NOTIFY names the largest id: {payloads[-1:]} vs {max(ids)}", d)
        check(d.stop() == 0, "SIGTERM exits 0", d)
    finally:
        done.set()
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def scenario_late():
    d = new_daemon().start()
    writable(d)
    first = "".join(f"power,cluster=c2 kw=40 {T0 + 60 * m}\n" for m in range(32))  # 00:00-00:31
    late = f"power,cluster=c2 kw=100 {T0 + 900 + 450}\n"  # 00:22:30, in the closed 00:15 interval
    send(d, first, "the first half hour")
    wait_until(lambda: (len(d.table("demand_charges")) == 1, "no demand row"), 15,
               "March closes once c2 is silent", d)
    send(d, late, "the late sample")

    def adjusted():
        rows = d.table("billing_rows")
        return any(r["revision"] == "1" for r in rows), rows
    ok, rows = wait_until(adjusted, 10, "an adjustment row", d)
    adj = [r for r in rows if r["revision"] == "1"]
    # 00:22 and 00:23 at 40 kW, 00:22:30 now 100: +0.5 kWh at the valley price 0.25.
    check(len(adj) == 1 and adj[0]["kind"] == "adjustment" and adj[0]["interval_start"] == "2025-02-28T16:15:00Z"
          and adj[0]["kwh"] == "0.500000" and adj[0]["energy_charge"] == "0.1250", f"adjustment {adj}", d)
    want = offline(d.config, first + late)
    rows, demand = wait_ledger(d, want)
    dadj = [r for r in demand if r["revision"] == "1"]
    # 00:15-00:30 now 10.5 kWh: 42 kW, 2 kW more at 30 CNY/kW.
    check(len(dadj) == 1 and dadj[0]["kind"] == "adjustment" and dadj[0]["max_kw"] == "42.000000"
          and dadj[0]["charge"] == "60.0000", f"demand adjustment {dadj}", d)
    stm = query(d.db, f"SELECT * FROM {d.schema}.monthly_statements")
    kwh = sum((Decimal(r["kwh"]) for r in rows), Decimal(0))
    # 31 minutes at 40 kW, and the late 0.5 kWh.
    check(len(stm) == 1 and Decimal(stm[0]["kwh"]) == kwh == Decimal("21.166667"),
          f"monthly_statements includes the adjustment: {stm}, rows sum to {kwh}", d)
    views_vs_offline(d, want)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_capstate():
    rng = random.Random(8)
    cap = Decimal("6.0000")
    part1 = batches(samples(0, 90), 45, rng, late=False)  # 00:00-00:30 local
    part2 = batches(samples(90, 90), 45, rng, late=False)  # 00:30-01:00
    april = batches(samples(0, 90, t0=T_APR), 45, rng, late=False)
    a = new_daemon()
    set_cap(a, cap)
    text = "".join(part1 + part2)
    want = offline(a.config, text)
    s1 = subsidy_total(offline(a.uncapped, "".join(part1))["billing_rows"])
    sa = subsidy_total(offline(a.uncapped, text)["billing_rows"])
    check(s1 < cap < sa, f"the cap {cap} runs out after the kill -9: {s1} before, {sa} in all")
    a.start()
    writable(a)
    for i, b in enumerate(part1):
        send(a, b, f"part 1, batch {i}")
    a.kill()
    a.start()
    for i, b in enumerate(part2):
        send(a, b, f"part 2 (after kill -9), batch {i}")
    rows, demand = wait_ledger(a, want, subsidy=False)
    total = subsidy_total(rows) + subsidy_total(demand)
    check(total == cap, f"across kill -9: the tenant's subsidy is {total}, the cap {cap}", a)
    check(a.stop() == 0, "SIGTERM exits 0", a)

    b = new_daemon(db=a.db)  # a new, empty state_dir
    set_cap(b, cap)
    b.start()
    writable(b)
    log = b.read_log()
    m = re.search(r"recovered (\d+) yearly cap totals", log)
    check(m is not None and int(m.group(1)) >= 1, "the new daemon recovered the caps from subsidy_lines", b)
    for i, x in enumerate(april):
        send(b, x, f"April, batch {i}")
    want_apr = offline(b.config, "".join(april))
    check(subsidy_total(want_apr["billing_rows"]) > 0, "offline, April alone would be subsidised")
    rows, demand = wait_ledger(b, want_apr, subsidy=False, rows_filter=lambda r: r["month"] == "2025-04-01")
    check(rows and all(r["subsidy"] == "0.0000" and r["programme"] == "" for r in rows + demand),
          f"nothing paid beyond the cap in April: {[r['subsidy'] for r in rows]}", b)
    all_rows, all_demand = ledger(b)
    total = subsidy_total(all_rows) + subsidy_total(all_demand)
    check(total == cap, f"the tenant's subsidy for 2025 is {total}, the cap {cap}", b)
    lines = query(b.db, f"SELECT sum(amount) AS s FROM {b.schema}.subsidy_lines WHERE year = 2025")
    check(Decimal(lines[0]["s"]) == cap, f"subsidy_lines sum to {lines[0]['s']}", b)
    byp = query(b.db, f"SELECT * FROM {b.schema}.subsidy_by_programme ORDER BY month")
    check(byp and byp[-1]["cap_remaining"] == "0.00", f"subsidy_by_programme: {byp}", b)
    check(b.stop() == 0, "SIGTERM exits 0", b)


def scenario_capswait():
    """A first start while PostgreSQL is down takes every write (204 at
    once). With a capped programme, closing waits until the caps are read
    back and then pays exactly what the cap has left; without one, rows
    close at once and wait in the journal."""
    rng = random.Random(16)
    cap = Decimal("6.0000")
    march = batches(samples(0, 90), 45, rng, late=False)  # 00:00-00:30 local
    april = batches(samples(0, 180, t0=T_APR), 45, rng, late=False)  # 00:00-01:00
    a = new_daemon()
    set_cap(a, cap)
    a.start()
    for i, b in enumerate(march):
        send(a, b, f"March, batch {i}")
    wait_ledger(a, offline(a.config, "".join(march)), subsidy=False)
    check(a.stop() == 0, "SIGTERM exits 0", a)
    consumed = sum((subsidy_total(t) for t in ledger(a)), Decimal(0))
    left = cap - consumed
    uncapped = subsidy_total(offline(a.uncapped, "".join(april))["billing_rows"])
    check(Decimal(0) < left < uncapped, f"{consumed} of the cap was consumed in March, {left} is "
          f"left, April alone would be paid {uncapped}")

    b = new_daemon(db=a.db)  # empty state_dir, the ledger with March in it
    set_cap(b, cap)
    c = new_daemon()  # no capped programme
    pg_ctl("-m fast stop")
    try:
        b.start()
        c.start()
        for i, x in enumerate(april):
            send_now(b, x, f"PostgreSQL down, capped, batch {i}")
            send_now(c, x, f"PostgreSQL down, uncapped, batch {i}")
        check(metric(b, "tariffd_waiting_for_caps") == 1 and metric(b, "tariffd_held_calls") > 0,
              f"the capped daemon waits for the caps: waiting {metric(b, 'tariffd_waiting_for_caps')}, "
              f"{metric(b, 'tariffd_held_calls')} calls held", b)
        check(metric(c, "tariffd_waiting_for_caps") == 0 and metric(c, "tariffd_held_calls") == 0,
              "the uncapped daemon does not wait", c)
        wait_until(lambda: ((n := metric(c, "tariffd_ledger_rows_queued")) > 0, f"{n} rows queued"), 10,
                   "without a cap, rows close while PostgreSQL is down", c)
        time.sleep(1.5)  # ticks pass: the capped daemon still closes nothing
        check(metric(b, "tariffd_ledger_rows_queued") == 0,
              f"closing waits for the caps: {metric(b, 'tariffd_ledger_rows_queued')} rows queued", b)
        h = health(b)
        check(h["status"] == "warn" and h["http"] == 200, f"/health warns, writes are taken: {h}", b)
    finally:
        pg_ctl("start")
    want = offline(b.config, "".join(april))
    rows, demand = wait_ledger(b, want, timeout=30, subsidy=False,
                               rows_filter=lambda r: r["month"] == "2025-04-01")
    paid = subsidy_total(rows) + subsidy_total(demand)
    check(paid == left, f"April is paid {paid}, what the cap had left ({left})", b)
    all_rows, all_demand = ledger(b)
    unique_keys(b, all_rows, all_demand)
    total = subsidy_total(all_rows) + subsidy_total(all_demand)
    check(total == cap, f"the tenant's subsidy for 2025 is {total}, the cap {cap}", b)
    wait_until(lambda: ((w := metric(b, "tariffd_waiting_for_caps")) == 0, f"waiting {w}"), 10,
               "the wait ended", b)
    check(re.search(r"recovered \d+ yearly cap totals", b.read_log()) is not None,
          "the caps were read back from subsidy_lines", b)
    rows, demand = wait_ledger(c, offline(c.config, "".join(april)), timeout=30)
    unique_keys(c, rows, demand)
    check(b.stop() == 0 and c.stop() == 0, "SIGTERM exits 0", b)


def epoch_of(iso):
    """Seconds since the epoch of the ledger's "2025-03-01T00:15:00Z"."""
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def scenario_burst():
    """One meter of c1 loses its link for an hour and then sends the hour it
    buffered (360 samples at 10 s), in one request and, on a second daemon,
    in 4 requests back to back: every interval it changes is adjusted at
    most once per request (not once per sample), and the ledger's sums over
    revisions equal `tariffd price` on the same samples."""
    t0 = T0 + 8 * 3600  # 08:00 local, flat
    outage, back, end = t0 + 600, t0 + 4200, t0 + 5400

    def line(meter, t, kw):
        return f"power,cluster=c1,meter={meter} kw={kw} {t}"
    live = []
    for t in range(t0, end + 1, 10):
        live.append(line("a", t, 40))
        if t <= outage or t > back:
            live.append(line("b", t, 60))
    hour = [line("b", outage + k * 10, 60) for k in range(1, 361)]
    everything = sorted(live + hour, key=lambda x: (int(x.split()[-1]), x))
    for requests in (1, 4):
        d = new_daemon().start()
        writable(d)
        for k in range(0, len(live), 60):
            send(d, "\n".join(live[k:k + 60]) + "\n", f"live batch {k // 60}")
        wait_ledger(d, offline(d.config, "\n".join(live) + "\n"))
        per = 360 // requests
        touched = {}  # interval start -> requests whose samples' segments reach into it
        for r in range(requests):
            part = hour[r * per:(r + 1) * per]
            first, last = int(part[0].split()[-1]) - 10, int(part[-1].split()[-1]) + 10
            for start in range(first - first % 900, last, 900):
                touched[start] = touched.get(start, 0) + 1
            send_now(d, "\n".join(part) + "\n", f"the buffered hour, request {r + 1} of {requests}")
        rows, demand = wait_ledger(d, offline(d.config, "\n".join(everything) + "\n"))
        unique_keys(d, rows, demand)
        adjusted = {}
        for r in rows:
            if r["kind"] == "adjustment":
                adjusted[r["interval_start"]] = adjusted.get(r["interval_start"], 0) + 1
        over = {k: n for k, n in adjusted.items() if n > touched.get(epoch_of(k), 0)}
        check(adjusted and not over,
              f"{requests} request(s): adjustments per interval {sorted(adjusted.items())}, "
              f"over the requests that reach each: {over}", d)
        if requests == 1:
            check(len(adjusted) == 5 and set(adjusted.values()) == {1},
                  f"one request: 08:00 to 09:00 adjusted once each: {adjusted}", d)
            check(metric(d, "tariffd_late_samples_total") == 360
                  and metric(d, "tariffd_intervals_reopened_total") == 5,
                  f"/metrics: {metric(d, 'tariffd_late_samples_total')} late samples, "
                  f"{metric(d, 'tariffd_intervals_reopened_total')} intervals reopened", d)
        check(d.stop() == 0, "SIGTERM exits 0", d)


HUBEI = """
; Hubei, January 2026, 110 kV two-part (docs/tariffs.md section 3 A), once
; per demand basis; each site bills under one of them.
[site wuhan-d]
province = hubei
tariff = hubei-max-demand

[site wuhan-k]
province = hubei
tariff = hubei-capacity

[site wuhan-c]
province = hubei
tariff = hubei-contract
"""
HUBEI_VERSION = """
[tariff {name} @ 2026-01-01]
utc_offset = +08:00
price.critical = 1.012099
price.peak = 0.809061
price.flat = 0.613986
price.valley = 0.395024
surcharge = 0.0452
profile.base = 00:00 valley, 06:00 flat, 12:00 valley, 14:00 flat, 16:00 peak, 18:00 critical, 20:00 peak
profile.summer = 00:00 valley, 06:00 flat, 12:00 valley, 14:00 flat, 16:00 peak, 20:00 critical, 22:00 peak
months = jan-jun base, jul-aug summer, sep-dec base
demand_basis = {basis}
demand.kw = 39.0
demand.kva = 24.4
"""
# cluster: (site, extra keys, days of telemetry as (first, last) local dates,
# month, the demand charge by hand, days_in_service or "" for a whole month)
SERVICE = {
    # 15/30 x 10000 kW x 39.0 = 15/30 x 390000 = 195000
    "hf": ("wuhan-d", "service_from = 2026-01-17", ("2026-01-16", "2026-01-31"), "2026-01-01",
           "195000.0000", "15"),
    # 10/30 x 12500 kVA x 24.4 = 10/30 x 305000 = 101666.6666.. -> 101666.6667
    "hu": ("wuhan-k", "service_until = 2026-01-10", ("2026-01-01", "2026-01-11"), "2026-01-01",
           "101666.6667", "10"),
    # 15/30 x (9000 + 2 x (10000 - 9450)) x 39.0 = 15/30 x 393900 = 196950
    "hc": ("wuhan-c", "service_from = 2026-01-17", ("2026-01-17", "2026-01-31"), "2026-01-01",
           "196950.0000", "15"),
    # April: 15/30 x 12500 x 24.4 + 15/30 x 15000 x 24.4 = 152500 + 183000
    "hk": ("wuhan-k", "transformer_kva@2026-04-16 = 15000", ("2026-04-01", "2026-04-30"),
           "2026-04-01", "335500.0000", "30"),
    # no service dates, telemetry from 17 January: the whole month, 390000
    "hw": ("wuhan-d", "", ("2026-01-17", "2026-01-31"), "2026-01-01", "390000.0000", ""),
    # a 31-day month in service all month: one month, not 31/30 of it
    "ha": ("wuhan-d", "service_from = 2026-01-01", ("2026-01-01", "2026-01-31"), "2026-01-01",
           "390000.0000", ""),
}


def local_midnight(date):
    return calendar.timegm(time.strptime(date, "%Y-%m-%d")) - 8 * 3600


def scenario_service():
    """Service dates through the daemon: clusters entering and leaving service,
    and changing capacity, on the Hubei January 2026 tables at 10,000 kW.
    The ledger equals tariffd price (charges per month, days_in_service and
    proration row by row), each charge equals the hand arithmetic, samples
    outside the service dates are quarantined with their reason, and
    monthly_statements shows the days."""
    d = new_daemon()
    with open(d.config) as f:
        text = f.read()
    text += HUBEI + "".join(HUBEI_VERSION.format(name=f"hubei-{b.replace('_', '-')}", basis=b)
                            for b in ("max_demand", "capacity", "contract"))
    for c, (site, extra, _, _, _, _) in SERVICE.items():
        text += (f"\n[cluster {c}]\ntenant = t1\nsite = {site}\ninventory = dom*1\n"
                 f"transformer_kva = 12500\ncontract_kw = 9000\n{extra}\n")
    with open(d.config, "w") as f:
        f.write(text)
    lines = []
    for c, (_, _, (first, last), _, _, _) in SERVICE.items():
        # every 5 minutes (max_gap), up to the midnight that ends the last day
        for t in range(local_midnight(first), local_midnight(last) + 86400 + 1, 300):
            lines.append(f"power,cluster={c},meter=main kw=10000 {t}")
    # hu's last reading at the midnight ending 10 January is in service; the
    # readings of 11 January and hf's of 16 January are not.
    outside = sum(1 for x in lines
                  if "cluster=hu," in x and int(x.split()[-1]) > local_midnight("2026-01-11")
                  or "cluster=hf," in x and int(x.split()[-1]) < local_midnight("2026-01-17"))
    d.start()
    writable(d)
    for k in range(0, len(lines), 4000):
        send(d, "\n".join(lines[k:k + 4000]) + "\n", f"batch {k // 4000}", timeout=60)
    body = "\n".join(lines) + "\n"
    want = offline(d.config, body)
    # Each prorated charge is its proration evaluated (Decimal, independently).
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([TARIFFD, "price", "-c", d.config, "--precision", "s", "--out", out],
                       input=body, text=True, capture_output=True, check=True, timeout=60)
        v = subprocess.run([sys.executable, os.path.join(HERE, "..", "verify_ledger.py"), out, "0.5"],
                           capture_output=True, text=True, timeout=60)
        check(v.returncode == 0, f"verify_ledger.py on tariffd price's files: {v.stdout[-500:]}", d)
    rows, demand = wait_ledger(d, want, timeout=60)
    unique_keys(d, rows, demand)
    views_vs_offline(d, want)
    # days_in_service and proration, row by row, as tariffd price has them
    key = ("cluster", "month", "revision")
    got = {tuple(r[k] for k in key): (r["days_in_service"], r["proration"]) for r in demand}
    off = {tuple(r[k] for k in key): (r["days_in_service"], r["proration"]) for r in want["demand_charges"]}
    check(got == off, f"days_in_service and proration equal tariffd price's: {got} vs {off}", d)
    total = sums(demand, ("cluster", "month"), ["charge"])
    for c, (_, _, _, month, charge, days) in SERVICE.items():
        check(str(total.get((c, month), {}).get("charge")) == charge,
              f"{c} {month}: charge {total.get((c, month))}, by hand {charge}", d)
        last = [r for r in demand if r["cluster"] == c and r["month"] == month][-1]
        check(last["days_in_service"] == days, f"{c}: days_in_service {last['days_in_service']!r}, "
              f"want {days!r}", d)
    hk = [r for r in demand if r["cluster"] == "hk"][-1]
    check(hk["proration"] == "15/30 x 305000.0000 (2026-04-01..2026-04-15; billing_kw 12500.000000)"
          " + 15/30 x 366000.0000 (2026-04-16..2026-04-30; billing_kw 15000.000000)",
          f"hk's proration explains its charge: {hk['proration']}", d)
    q = query(d.db, f"SELECT cluster, count(*) AS n FROM {d.schema}.quarantined_samples "
                    f"WHERE reason = 'outside the cluster''s service dates' GROUP BY cluster ORDER BY cluster")
    check(sum(int(r["n"]) for r in q) == outside and {r["cluster"] for r in q} == {"hf", "hu"},
          f"the {outside} samples outside the service dates are quarantined: {q}", d)
    stm = query(d.db, f"SELECT cluster, month, demand_charge, demand_days FROM {d.schema}.monthly_statements "
                      f"WHERE cluster IN ('hf', 'hw') ORDER BY cluster")
    check([(r["cluster"], r["demand_charge"], r["demand_days"]) for r in stm]
          == [("hf", "195000.00", "15"), ("hw", "390000.00", "")]
          and [(r["cluster"], r["demand_charge"], r["demand_days"]) for r in stm]
          == [(r["cluster"], r["demand_charge"], r["demand_days"]) for r in want["monthly_statements"]
              if r["cluster"] in ("hf", "hw")],
          f"monthly_statements shows the days, as tariffd price does: {stm}", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_poison():
    """Poison pills: each is refused at the door with 400 naming the line and
    column, nothing of it reaches the journal or PostgreSQL, and a valid
    stream from both tenants afterwards is billed exactly, before and after
    a restart and a kill -9."""
    ahead = int(time.time()) + 30 * 86400  # would be quarantined (max_future)
    poisons = [
        (b"power,cluster=c1,meter=m\xff kw=1 %d\n" % ahead, "line 1: invalid UTF-8 at column 25",
         "non-UTF-8 meter of a quarantined sample"),
        (b"power,cluster=c1,meter=m\xed\xa0\x80 kw=1 %d\n" % T0, "line 1: invalid UTF-8 at column 25",
         "encoded surrogate"),
        (b"power,cluster=c1,meter=m\xc0\xaf kw=1 %d\n" % T0, "line 1: invalid UTF-8 at column 25",
         "overlong form"),
        (b"power,cluster=c1,meter=m\xf4\x90\x80\x80 kw=1 %d\n" % T0,
         "line 1: invalid UTF-8 at column 25", "past U+10FFFF"),
        (b"power,cluster=c1 kw=1,f\xffx=2 %d\n" % T0, "line 1: invalid UTF-8 at column 24",
         "non-UTF-8 field key"),
        (b"pow\xe9r,cluster=c1 kw=1 %d\n" % T0, "line 1: invalid UTF-8 at column 4",
         "non-UTF-8 measurement"),
        (b"power,cluster=c1 kw=1 %d\npower,cluster=c\xff1 kw=1 %d\n" % (T0, T0),
         "line 2: invalid UTF-8 at column 16", "a good line, then a poisoned one"),
    ]
    rng = random.Random(9)
    t1 = batches(samples(0, 180, t0=T0 + 7 * 3600), 45, rng)
    t2 = ["".join(f"power,cluster=x1,meter=m{k} kw={30 + (i * 11 + k) % 17} {T0 + 7 * 3600 + 20 * i}\n"
                  for i in range(j, j + 45) for k in range(2)) for j in range(0, 180, 45)]
    d = new_daemon().start()
    writable(d)
    for body, message, what in poisons:
        for v2 in (True, False):
            s, data, _ = d.write(body, v2=v2)
            got = json.loads(data).get("message" if v2 else "error") if s != 204 else None
            check(s == 400 and got == message, f"{what} ({'v2' if v2 else 'v1'}): {s} {got!r}", d)
    for i, a in enumerate(t1):
        send(d, a, f"t1 batch {i}")
        if i < len(t2):
            check(d.write(t2[i], tenant="t2")[0] == 204, f"t2 batch {i}", d)
    want = offline(d.config, "".join(t1) + "".join(t2))
    check({r["tenant"] for r in want["billing_rows"]} == {"t1", "t2"}, "both tenants billed offline")
    rows, demand = wait_ledger(d, want)
    wait_until(lambda: (health(d)["status"] == "pass", health(d)), 10, "/health pass", d)
    quarantined = query(d.db, f"SELECT count(*) AS n FROM {d.schema}.quarantined_samples")
    check(quarantined[0]["n"] == "0", f"nothing of the poisons quarantined: {quarantined}", d)
    check(b"invalid byte sequence" not in d.read_log().encode(), "PostgreSQL never saw a poison", d)
    for how in ("restart", "kill -9"):
        if how == "restart":
            check(d.stop() == 0, "SIGTERM exits 0", d)
        else:
            d.kill()
        d.start()
        writable(d)
        s, data, _ = d.write(poisons[0][0])
        check(s == 400, f"after a {how}: the poison is still refused: {s}", d)
        again, again_demand = wait_ledger(d, want)
        check(len(again) == len(rows) and len(again_demand) == len(demand),
              f"after a {how}: the same rows, none twice", d)
        wait_until(lambda: (health(d)["status"] == "pass", health(d)), 10, f"/health pass after a {how}", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def journal_record(rtype, payload):
    """A journal record as storage/journal.h lays it out (little-endian)."""
    import struct
    import zlib
    return struct.pack("<IIB", len(payload), zlib.crc32(bytes([rtype]) + payload), rtype) + payload


def samples_record(now_ns, samples_):
    """A RECORD_SAMPLES payload (daemon/ingest.h): (cluster, meter, kind, ts_ns, value)."""
    import struct
    out = struct.pack("<qI", now_ns, len(samples_))
    for cluster, meter, kind, ts_ns, value in samples_:
        out += struct.pack("<H", len(cluster)) + cluster + struct.pack("<H", len(meter)) + meter
        out += struct.pack("<Bqd", kind, ts_ns, value)
    return out


def scenario_oldjournal():
    """A journal written by an older version, which took a non-UTF-8 meter
    (of a sample it quarantined) before validation existed: the daemon
    starts and replays it, PostgreSQL refuses that one row, it goes to
    dead_letters, every other row is written, and /health fails naming the
    SQLSTATE until an operator resolves it."""
    d = new_daemon()
    journal = os.path.join(d.dir, "state", "journal")
    os.makedirs(journal)
    now_ns = int(time.time()) * 10**9
    good = [(b"c1", b"a", 0, (T0 + 7 * 3600 + 60 * i) * 10**9, 40.0 + i) for i in range(40)]
    poison = [(b"c1", b"m\xff", 0, now_ns + 30 * 86400 * 10**9, 1.0)]
    with open(os.path.join(journal, "0000000000000000.seg"), "wb") as f:
        f.write(journal_record(1, samples_record(now_ns, good[:20] + poison + good[20:])))
    d.start()
    text = "".join(f"power,cluster=c1,meter=a kw={v} {ts // 10**9}\n" for _, _, _, ts, v in good)
    want = offline(d.config, text)
    wait_ledger(d, want)
    dead = wait_until(lambda: (len(q := query(d.db, f"SELECT sqlstate, row_table, encode(params[2], 'hex') AS meter FROM {d.schema}.dead_letters"))
                               == 1, q), 20, "the poisoned row in dead_letters", d)[1]
    check(dead and dead[0]["sqlstate"] == "22021" and dead[0]["row_table"] == "quarantined_samples"
          and dead[0]["meter"] == "6dff", f"refused with 22021, the raw meter kept: {dead}", d)
    h = health(d)
    check(h["status"] == "fail" and "22021" in h["message"], f"/health fails naming it: {h}", d)
    s, _, _ = d.write(f"power,cluster=c1,meter=a kw=1 {T0 + 9 * 3600}\n")
    check(s == 204, f"writes are still taken: {s}", d)
    psql(d.db, f"UPDATE {d.schema}.dead_letters SET resolved_at = now()")
    wait_until(lambda: ((h := health(d))["status"] == "pass", h), 30, "/health pass once resolved", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_refused():
    """PostgreSQL refuses one row (a CHECK constraint added for the test):
    every other row is committed, the refused one waits in dead_letters
    with its raw values, /health fails naming the SQLSTATE and /metrics
    counts it, writes are still taken; a kill -9 and replay do not add it
    twice; once the constraint is gone, resubmit_dead_letter puts it in and
    the ledger equals tariffd price to the fen, /health passes again."""
    rng = random.Random(5)
    bs = batches(samples(0, 360, t0=T0 + 7 * 3600), 45, rng, late=False)  # 07:00-09:00 local
    d = new_daemon().start()
    writable(d)
    refused_at = "2025-02-28T23:30:00Z"  # c1's 07:30 local interval
    psql(d.db, f"ALTER TABLE {d.schema}.billing_rows ADD CONSTRAINT refuse_one "
               f"CHECK (cluster <> 'c1' OR interval_start <> '{refused_at}')")
    for i, b in enumerate(bs):
        send(d, b, f"batch {i}")
    want = offline(d.config, "".join(bs))
    check(any(r["cluster"] == "c1" and r["interval_start"] == refused_at for r in want["billing_rows"]),
          "offline bills the interval PostgreSQL will refuse")
    others = dict(want, billing_rows=[r for r in want["billing_rows"]
                                      if not (r["cluster"] == "c1" and r["interval_start"] == refused_at)])
    wait_ledger(d, others)
    letters = f"SELECT id, row_table, sqlstate, convert_from(params[2], 'UTF8') AS cluster, " \
              f"convert_from(params[5], 'UTF8') AS start, resolved_at FROM {d.schema}.dead_letters"
    dead = wait_until(lambda: (len(q := query(d.db, letters)) == 1, q), 20, "one row in dead_letters", d)[1]
    check(dead and dead[0]["row_table"] == "billing_rows" and dead[0]["sqlstate"] == "23514"
          and dead[0]["cluster"] == "c1" and dead[0]["start"] == refused_at, f"the letter: {dead}", d)
    h = wait_until(lambda: ((h := health(d))["status"] == "fail", h), 15, "/health fails", d)[1]
    check(h.get("http") == 503 and "23514" in h.get("message", "") and "refuse_one" in h.get("message", ""),
          f"/health names the SQLSTATE and the constraint: {h}", d)
    check(metric(d, "tariffd_rows_dead_lettered_total") == 1
          and metric(d, "tariffd_dead_letters_unresolved") == 1,
          "/metrics counts the dead letter", d)
    check(d.write(f"power,cluster=c1,meter=a kw=1 {T0 + 7 * 3600 + 20 * 359}\n")[0] == 204,
          "writes are still taken", d)
    # A kill -9 replays the journal since the last checkpoint: the refused
    # row comes again and is refused again, but kept once.
    d.kill()
    d.start()
    writable(d)
    wait_ledger(d, others)
    check(len(query(d.db, letters)) == 1, "still one dead letter after a kill -9 and replay", d)
    # The operator fixes the cause and re-submits it.
    psql(d.db, f"ALTER TABLE {d.schema}.billing_rows DROP CONSTRAINT refuse_one")
    psql(d.db, f"SELECT {d.schema}.resubmit_dead_letter({dead[0]['id']})")
    rows, demand = wait_ledger(d, want)
    unique_keys(d, rows, demand)
    views_vs_offline(d, want)
    wait_until(lambda: ((h := health(d))["status"] == "pass", h), 30, "/health passes once resolved", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_failing():
    """Errors that are no row's fault: a trigger on billing_rows raising
    (SQLSTATE P0001, named on a row's statement), then dead_letters itself
    refusing (its own trigger) while a CHECK refuses a row. Nothing is
    dead-lettered or dropped: every row waits, /health warns naming the
    error, and once the triggers are gone the ledger equals tariffd price
    (and the refused row is a dead letter)."""
    rng = random.Random(6)
    bs = batches(samples(0, 180, t0=T0 + 7 * 3600), 45, rng, late=False)
    d = new_daemon().start()
    writable(d)
    psql(d.db, f"CREATE FUNCTION {d.schema}.refuse_all() RETURNS trigger LANGUAGE plpgsql AS "
               f"$$BEGIN RAISE EXCEPTION 'maintenance: no inserts'; END$$")
    psql(d.db, f"CREATE TRIGGER refuse_all BEFORE INSERT ON {d.schema}.billing_rows "
               f"FOR EACH ROW EXECUTE FUNCTION {d.schema}.refuse_all()")
    for i, b in enumerate(bs):
        send(d, b, f"batch {i}")
    h = wait_until(lambda: ((h := health(d))["status"] == "warn", h), 20, "/health warns", d)[1]
    check("maintenance: no inserts" in h.get("message", ""), f"/health names the error: {h}", d)
    check(metric(d, "tariffd_rows_dead_lettered_total") == 0, "nothing dead-lettered", d)
    check(len(d.table("billing_rows")) == 0 and metric(d, "tariffd_ledger_rows_queued") > 0,
          "the rows wait", d)
    # Now one row is refused (a CHECK) while dead_letters cannot take it.
    refused_at = "2025-02-28T23:15:00Z"
    psql(d.db, f"ALTER TABLE {d.schema}.billing_rows ADD CONSTRAINT refuse_one "
               f"CHECK (cluster <> 'c1' OR interval_start <> '{refused_at}')")
    psql(d.db, f"CREATE TRIGGER refuse_all BEFORE INSERT ON {d.schema}.dead_letters "
               f"FOR EACH ROW EXECUTE FUNCTION {d.schema}.refuse_all()")
    psql(d.db, f"DROP TRIGGER refuse_all ON {d.schema}.billing_rows")

    def kept_waiting():
        h = health(d)
        return "cannot be kept in dead_letters" in h.get("message", ""), h
    wait_until(kept_waiting, 20, "/health: the refused row cannot be kept", d)
    check(metric(d, "tariffd_rows_dead_lettered_total") == 0, "still nothing dead-lettered (or dropped)", d)
    psql(d.db, f"DROP TRIGGER refuse_all ON {d.schema}.dead_letters")
    want = offline(d.config, "".join(bs))
    others = dict(want, billing_rows=[r for r in want["billing_rows"]
                                      if not (r["cluster"] == "c1" and r["interval_start"] == refused_at)])
    rows, demand = wait_ledger(d, others, timeout=30)
    unique_keys(d, rows, demand)
    dead = query(d.db, f"SELECT sqlstate FROM {d.schema}.dead_letters")
    check(dead == [{"sqlstate": "23514"}], f"the refused row is a dead letter, once: {dead}", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_recount():
    """A dead letter resolved while the writer is never idle (every
    transaction takes 0.4 s, and rows come faster): /health stops failing
    within the recount period, not only once the load stops."""
    d = new_daemon().start()
    writable(d)
    refused_at = "2025-02-28T23:30:00Z"  # c1's 07:30 local interval
    psql(d.db, f"ALTER TABLE {d.schema}.billing_rows ADD CONSTRAINT refuse_one "
               f"CHECK (cluster <> 'c1' OR interval_start <> '{refused_at}')")
    send(d, "\n".join(samples(0, 180, t0=T0 + 7 * 3600)) + "\n", "07:00-08:00")
    wait_until(lambda: ((h := health(d))["status"] == "fail", h), 15, "/health fails for the dead letter", d)
    psql(d.db, f"""CREATE FUNCTION {d.schema}.slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF current_setting('test.slept', true) IS DISTINCT FROM txid_current()::text THEN
                PERFORM pg_sleep(0.4);
                PERFORM set_config('test.slept', txid_current()::text, true);
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER slow BEFORE INSERT ON {d.schema}.billing_rows
            FOR EACH ROW EXECUTE FUNCTION {d.schema}.slow()""")
    stop = threading.Event()
    sent = []

    def load():  # 15 minutes of samples (an interval closes) every 0.1 s
        t0 = T0 + 8 * 3600
        while not stop.is_set() and len(sent) < 400:
            s_, _, _ = try_write(d, "\n".join(samples(len(sent) * 15, 15, t0=t0, step=60)) + "\n")
            sent.append(s_)
            time.sleep(0.1)
    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_until(lambda: ((q := metric(d, "tariffd_ledger_rows_queued")) > 0, q), 10, "rows queue up", d)
        psql(d.db, f"UPDATE {d.schema}.dead_letters SET resolved_at = now()")
        queued = []

        def probe():
            h = health(d)
            queued.append(metric(d, "tariffd_ledger_rows_queued"))
            return h["status"] != "fail", h
        wait_until(probe, 25, "/health stops failing under load once the letter is resolved", d)
        check(queued and min(queued) > 0, f"the writer was never idle meanwhile: queued {queued}", d)
    finally:
        stop.set()
        loader.join()
    check(sent and all(x == 204 for x in sent), f"every load batch 204: {set(sent)}", d)
    psql(d.db, f"DROP TRIGGER slow ON {d.schema}.billing_rows")
    wait_until(lambda: ((h := health(d))["status"] == "pass", h), 30, "/health passes", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_backoff():
    """While PostgreSQL is down the writer retries with backoff, not in a
    loop: a handful of attempts in 8 s, and /health stays warn (never
    flapping to pass) until rows commit again."""
    d = new_daemon().start()
    writable(d)
    send(d, "\n".join(samples(0, 30, t0=T0 + 7 * 3600)) + "\n", "a batch")
    pg_ctl("stop")
    try:
        statuses = []
        t = time.time()
        while time.time() - t < 8:
            send_now(d, "\n".join(samples(30 + len(statuses), 1, t0=T0 + 7 * 3600)) + "\n",
                     "a write while PostgreSQL is down")
            statuses.append(health(d)["status"])
            time.sleep(0.1)
        attempts = d.read_log().count("postgres: cannot connect") + \
            d.read_log().count("writing rows failed")
        check(2 <= attempts <= 8, f"{attempts} attempts in 8 s (backoff from 250 ms, doubling)", d)
        # pass while nothing waits (the writer learns of the outage from its
        # next write), then warn for good: no flapping between retries.
        first = statuses.index("warn") if "warn" in statuses else len(statuses)
        check(first < len(statuses) and all(x == "warn" for x in statuses[first:]),
              f"/health while down: {statuses}", d)
    finally:
        pg_ctl("start")
    wait_until(lambda: ((h := health(d))["status"] == "pass", h), 60, "/health passes once back", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


SCENARIOS = [("offline", scenario_offline), ("cap", scenario_cap), ("outage", scenario_outage),
             ("restart", scenario_restart), ("standby", scenario_standby), ("notify", scenario_notify),
             ("late", scenario_late), ("capstate", scenario_capstate), ("poison", scenario_poison),
             ("oldjournal", scenario_oldjournal), ("refused", scenario_refused),
             ("backoff", scenario_backoff), ("reloadcrash", scenario_reloadcrash),
             ("stop", scenario_stop), ("failing", scenario_failing), ("capswait", scenario_capswait),
             ("recount", scenario_recount), ("burst", scenario_burst),
             ("service", scenario_service)]



def after_scenario():
    try:
        for fn in after:
            fn()
    finally:
        after.clear()


run_scenarios(SCENARIOS, ONLY, daemons, restore=ensure_pg_up, after=after_scenario)
