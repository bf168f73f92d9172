"""Chaos: kill -9 of the daemon, restarts of PostgreSQL and reloads of a
changed config during one stream; the ledger comes out as if none of the
faults had happened (docs/design.md sections 6 and 7).

A known data set (three tenants, four clusters, seven power and counter
meters, 36 hours of 60 s samples from 2025-03-31 00:00 local, across the
March/April month boundary, with late and reversed batches, a counter
reset, a gap, exact and conflicting duplicates) is streamed by one client
that retries each batch on connection errors and 5xx until it gets 204, as
Telegraf does. At moments drawn from the seed (a batch index and a delay
after it) a fault thread SIGKILLs the daemon and restarts it on the same
state_dir, or restarts PostgreSQL ($TARIFFD_PG_CTL, fast or immediate).
At fixed batches the config changes and the daemon gets SIGHUP: a corrected
price and demand price in tariff version tf@2025-01-01, then a new subsidy
programme pb. Three runs, each on its own database:

  (a) reference   reloads, no faults
      chaos       reloads and faults: its ledger equals the reference's
                  exactly: the rows themselves (all columns but id and
                  created_at), the sums over revisions per cluster and
                  interval (kwh, money, missing_s) and per cluster and month
                  (demand), and the subsidy lines per row and programme
  (b) faults      faults, no reloads: the sums over revisions equal
                  `tariffd price` on the same samples, to the fen

In (a) grace is 60 s while streaming, so no interval closes on silence:
what closes, and under which config, is decided by the stream alone, the
same in both runs. A last reload (grace 1s, after the stream, the same in
both runs) closes everything. (b) keeps grace 1s, so kills and PostgreSQL
restarts also close intervals on silence, which a late batch then reopens.

The seed decides the fault schedule, the client's pace and which batches
are reversed; it is printed first, and the same seed gives the same
schedule (the threads' timing still varies). Bounded: KILLS kill -9 and
PG_RESTARTS PostgreSQL restarts per faulty run, each stream at most
STREAM_S seconds and each ledger at most SETTLE_S to settle. Without
PGHOST or TARIFFD_PG_CTL it exits 77 (SKIP).

usage: test_chaos.py TARIFFD [SEED] [a|b]...
  SEED defaults to $TARIFFD_CHAOS_SEED, else a random one
  KILLS and PG_RESTARTS come from $TARIFFD_CHAOS_KILLS (3) and
  $TARIFFD_CHAOS_PG_RESTARTS (2)   (prints "N passed, N failed")"""
import csv
import hashlib
import io
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
from harness import Daemon, metric, need_postgres, psql, read_csv, sums  # noqa: E402

need_postgres()
PG_CTL = os.environ.get("TARIFFD_PG_CTL")
if not PG_CTL:
    checks.skip("TARIFFD_PG_CTL is unset: the test restarts PostgreSQL (scripts/test sets it)")
TARIFFD = sys.argv[1]
args = sys.argv[2:]
seed_arg = args.pop(0) if args and args[0].isdigit() else os.environ.get("TARIFFD_CHAOS_SEED")
SEED = int(seed_arg) if seed_arg else random.SystemRandom().randrange(1, 10**6)
print(f"seed {SEED} (replay: test_chaos.py TARIFFD {SEED})", flush=True)
ONLY = set(args) or {"a", "b"}
KILLS = int(os.environ.get("TARIFFD_CHAOS_KILLS", "3"))
PG_RESTARTS = int(os.environ.get("TARIFFD_CHAOS_PG_RESTARTS", "2"))
STREAM_S = 45
SETTLE_S = 30

T_START = 1743350400  # 2025-03-31 00:00 local (+08:00)
STEP_S = 60
STEPS = 36 * 60  # until 2025-04-01 12:00 local
CHUNK = 20  # steps per chunk: 20 minutes, one batch per tenant
TOKENS = {"t1": "t1-secret", "t2": "t2-secret", "t3": "t3-secret"}

# Appended to tests/daemon/daemon.conf.in: a third tenant on a second site
# whose tariff has a new version on 2025-04-01, prices as floating x ratio +
# fixed and a capacity demand charge; its cluster's inventory changes on
# 2025-04-01; a programme on energy and demand.
EXTRA_CONFIG = f"""
[tenant t3]
token_sha256 = {hashlib.sha256(b"t3-secret").hexdigest()}

[site s2]
province = p2
tariff = tg

[cluster y1]
tenant = t3
site = s2
inventory = dom*2, for*2
inventory@2025-04-01 = dom*3, for*1
transformer_kva = 500

[tariff tg @ 2025-01-01]
utc_offset = +08:00
floating = 0.4
fixed = 0.05
ratio.valley = 0.5
ratio.flat = 1
ratio.peak = 1.6
surcharge = 0.025
profile.base = 00:00 valley, 08:00 flat, 17:00 peak, 22:00 flat
months = jan-dec base
demand_basis = capacity
demand.kva = 22.6

[tariff tg @ 2025-04-01]
utc_offset = +08:00
floating = 0.42
fixed = 0.05
ratio.valley = 0.5
ratio.flat = 1
ratio.peak = 1.7
surcharge = 0.025
profile.base = 00:00 valley, 08:00 flat, 17:00 peak, 22:00 flat
months = jan-dec base
demand_basis = capacity
demand.kva = 23.4

[programme pc]
provinces = p2
from = 2025-01-01
min_domestic_share = 0.5
rate = 0.3
basis = energy+demand
mode = all_or_nothing
"""

# The reloads of (a): (batch index after which it happens, what, change).
# A corrected price is a new text of the same version (a new label hash).
NEW_PROGRAMME = """
[programme pb]
provinces = p1, p2
from = 2025-03-15
min_domestic_share = 0.3
rate = 0.25
basis = energy
mode = all_or_nothing
"""


def corrected_price(text):
    assert "price.flat = 0.5\n" in text and "demand.kw = 30\n" in text
    return text.replace("price.flat = 0.5\n", "price.flat = 0.5125\n").replace(
        "demand.kw = 30\n", "demand.kw = 31.5\n")


def new_programme(text):
    return text + NEW_PROGRAMME


# ---------------------------------------------------------------- the data

def tenant_lines(tenant, steps):
    """The tenant's lines for these steps (time order)."""
    out = []
    for i in steps:
        t = T_START + STEP_S * i
        if tenant == "t1":
            out.append(f"power,cluster=c1,meter=a kw={40 + (i * 7) % 23} {t}")
            out.append(f"power,cluster=c1,meter=b w={15000 + (i * 131) % 9000} {t}")
            # A counter, reset (replaced) at step 1500.
            kwh = 1000 + i * 0.35 if i < 1500 else 2 + (i - 1500) * 0.33
            out.append(f"power,cluster=c2,meter=ctr kwh={kwh:.2f} {t}")
        elif tenant == "t2":
            out.append(f"power,cluster=x1,meter=m0 kw={30 + (i * 11) % 17}i {t}")
            if not 600 <= i < 612:  # a 12-minute gap: missing_s
                out.append(f"power,cluster=x1,meter=m1 kw={20 + (i * 5) % 13}.5 {t}")
        else:
            out.append(f"power,cluster=y1 kw={80 + (i * 13) % 37} {t}")
            out.append(f"power,cluster=y1,meter=aux w={5000 + (i * 17) % 3000} {t}")
    return out


def make_batches(rng):
    """[(tenant, body)] in the order they are sent."""
    chunks = []
    for c in range(STEPS // CHUNK):
        steps = range(c * CHUNK, (c + 1) * CHUNK)
        chunk = []
        for tenant in ("t1", "t2", "t3"):
            lines = tenant_lines(tenant, steps)
            if rng.random() < 0.3:
                lines.reverse()  # out of order within a batch
            chunk.append((tenant, "\n".join(lines) + "\n"))
        chunks.append(chunk)
    # Some chunks arrive after the next two: late samples into closed
    # intervals, adjustment rows.
    for c in range(4, len(chunks) - 3, 9):
        chunks[c], chunks[c + 2] = chunks[c + 2], chunks[c]
    out = [b for chunk in chunks for b in chunk]
    # 2025-04-01 02:00 local has been sent: samples between those of March
    # 31 23:40-00:00 arrive (a March interval and March's demand reopen),
    # one batch is sent again whole (duplicates), and three samples again
    # with other values (conflicts: the first value stays).
    at = out.index(chunks[78][2]) + 1
    late = [f"power,cluster=c1,meter=a kw={55 + k % 5} {T_START + (1420 + k) * STEP_S + 30}" for k in range(20)]
    late += [f"power,cluster=y1 kw={150 + k} {T_START + (1425 + k) * STEP_S + 30}" for k in range(10)]
    conflicts = [f"power,cluster=x1,meter=m0 kw={99 + k} {T_START + (300 + k) * STEP_S}" for k in range(3)]
    out[at:at] = [("t1", "\n".join(late[:20]) + "\n"), ("t3", "\n".join(late[20:]) + "\n"),
                  out[30], ("t2", "\n".join(conflicts) + "\n")]
    return out


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


def query(db, sql):
    out = psql(db, f"COPY ({sql}) TO STDOUT WITH CSV HEADER")
    return list(csv.DictReader(io.StringIO(out)))


# ---------------------------------------------------------------- one run

class Run:
    """One daemon streaming the batches, with or without reloads and faults."""

    def __init__(self, name, batches, reloads, faults):
        self.name = name
        self.batches = batches
        self.reloads = reloads  # {batch index: (what, change)}
        self.faults = faults  # {batch index: (kind, delay_s, pg mode)}
        self.lock = threading.Lock()  # a reload and a kill never overlap
        self.errors = []
        self.done = []  # faults as they happened: (kind, batch index, seconds)
        self.reloaded = 0
        self.retries = 0
        self.d = Daemon(TARIFFD)
        with open(self.d.config) as f:
            text = f.read() + EXTRA_CONFIG
        if reloads:
            assert "grace = 1s\n" in text
            text = text.replace("grace = 1s\n", "grace = 60s\n")
        with open(self.d.config, "w") as f:
            f.write(text)
        self.base_config = self.d.config + ".base"
        with open(self.base_config, "w") as f:
            f.write(text)

    def log_tail(self, n=20):
        try:
            return "\n".join("  | " + x for x in self.d.read_log().splitlines()[-n:])
        except OSError:
            return "  (no log)"

    def reload(self, change, what):
        """Writes the changed config and sends SIGHUP; returns once the
        daemon says it reloaded (tariffd_reloads_ok_total went up)."""
        with self.lock:
            before = metric(self.d, "tariffd_reloads_ok_total")
            with open(self.d.config) as f:
                text = f.read()
            with open(self.d.config, "w") as f:
                f.write(change(text))
            self.d.proc.send_signal(1)  # SIGHUP
            checks.wait_until(lambda: metric(self.d, "tariffd_reloads_ok_total") == before + 1, 10,
                              f"{self.name}: reload ({what}) applied")
            self.reloaded += 1

    def fault(self, i, kind, delay, mode):
        try:
            time.sleep(delay)  # into the next batches: the moment is what is under test
            t = time.monotonic()
            if kind == "kill":
                with self.lock:
                    self.d.kill()
                    self.d.start()
            else:
                pg_ctl(f"-m {mode} restart")
            self.done.append((kind if kind == "kill" else f"pg {mode} restart", i, time.monotonic() - t))
        except Exception as e:  # reported by the streaming thread
            self.errors.append(f"{kind} after batch {i}: {e!r}")

    def post(self, tenant, body, deadline):
        """Until 204, retrying connection errors and 5xx as Telegraf does."""
        while True:
            if self.errors or time.monotonic() > deadline:
                raise RuntimeError(f"stuck sending: {self.errors or 'stream time limit passed'}\n"
                                   f"{self.log_tail()}")
            try:
                status, data, _ = self.d.write(body, tenant=TOKENS[tenant])
            except OSError:
                status, data = None, b""
            if status == 204:
                return
            if status is not None and status < 500:
                raise RuntimeError(f"{self.name}: {status} {data[:300]!r}")
            self.retries += 1
            time.sleep(0.02)

    def stream(self, rng):
        self.d.start()
        t0 = time.monotonic()
        deadline = t0 + STREAM_S
        fault_thread = None
        try:
            for i, (tenant, body) in enumerate(self.batches):
                if i in self.faults:
                    if fault_thread:
                        fault_thread.join()
                    fault_thread = threading.Thread(target=self.fault, args=(i, *self.faults[i]))
                    fault_thread.start()
                self.post(tenant, body, deadline)
                if i in self.reloads:
                    self.reload(*self.reloads[i][::-1])
                time.sleep(rng.uniform(0, 0.01))  # the client's pace
        finally:
            if fault_thread:
                fault_thread.join()
        if self.errors:
            raise RuntimeError("; ".join(self.errors))
        self.stream_s = time.monotonic() - t0
        print(f"{self.name}: {len(self.batches)} batches in {self.stream_s:.1f}s, {self.retries} retries, "
              f"{self.reloaded} reloads, faults: "
              + (", ".join(f"{k} at batch {i} ({s:.1f}s)" for k, i, s in self.done) or "none"), flush=True)

    def settle(self, want_rows, want_demand):
        """Waits until every interval and month is in the ledger with the
        kWh of `tariffd price` (which no price or programme changes),
        nothing is queued for PostgreSQL and the ledger stays the same over
        two polls; returns the ledger."""
        if self.reloads:
            self.reload(lambda text: text.replace("grace = 60s\n", "grace = 1s\n"), "grace 1s: close all")
        key = ("cluster", "interval_start")
        want = sums(want_rows, key, ["kwh", "missing_s"])
        want_months = {(r["cluster"], r["month"]) for r in want_demand}
        last = {}

        def settled():
            try:
                led = ledger(self.d)
                queued = metric(self.d, "tariffd_ledger_rows_queued")
            except (OSError, subprocess.CalledProcessError) as e:
                return False, repr(e)
            got = sums(led["billing_rows"], key, ["kwh", "missing_s"])
            months = {(r["cluster"], r["month"]) for r in led["demand_charges"]}
            size = tuple(len(v) for v in led.values())
            stable = last.get("size") == size
            last["size"], last["ledger"] = size, led
            wrong = [k for k in set(got) | set(want) if got.get(k) != want.get(k)]
            return (not wrong and months == want_months and queued == 0 and stable,
                    f"{len(wrong)} intervals differ in kWh (first {sorted(wrong)[:2]}), months "
                    f"{sorted(months)} of {sorted(want_months)}, {queued} rows queued")
        checks.wait_until(settled, SETTLE_S, f"{self.name}: the ledger is complete", every=0.3)
        return last["ledger"]


def ledger(d):
    """billing_rows and demand_charges as in tariffd price's CSV, and each
    subsidy line with the cluster and interval or month of its row."""
    lines = query(d.db, f"""
        SELECT l.row_table, coalesce(b.cluster, m.cluster) AS cluster,
               coalesce(to_char(b.interval_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                        m.month::text) AS at,
               l.programme, l.tenant, l.year, l.amount
        FROM {d.schema}.subsidy_lines l
        LEFT JOIN {d.schema}.billing_rows b ON l.row_table = 'billing_rows' AND b.id = l.row_id
        LEFT JOIN {d.schema}.demand_charges m ON l.row_table = 'demand_charges' AND m.id = l.row_id""")
    mismatch = []
    for table in ("billing_rows", "demand_charges"):
        mismatch += query(d.db, f"""
            SELECT '{table}' AS row_table, r.id, r.cluster, r.subsidy, coalesce(sum(l.amount), 0) AS lines
            FROM {d.schema}.{table} r
            LEFT JOIN {d.schema}.subsidy_lines l ON l.row_table = '{table}' AND l.row_id = r.id
            GROUP BY r.id HAVING r.subsidy <> coalesce(sum(l.amount), 0)""")
    return {"billing_rows": d.table("billing_rows"), "demand_charges": d.table("demand_charges"),
            "subsidy_lines": lines, "subsidy_mismatch": mismatch}


def offline(config, text):
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([TARIFFD, "price", "-c", config, "--precision", "s", "--out", out],
                           input=text, text=True, capture_output=True, timeout=60)
        if r.returncode:
            raise RuntimeError(f"tariffd price exited {r.returncode}: {r.stderr[-500:]}")
        return read_csv(os.path.join(out, "billing_rows.csv")), read_csv(os.path.join(out, "demand_charges.csv"))


# ---------------------------------------------------------------- comparing

MONEY = ["kwh", "energy_charge", "surcharge", "subsidy", "net"]
DEMAND = ["charge", "subsidy", "net"]
# An adjustment row carries the month's max_kw and billing_kw as they now
# stand (design.md section 5), not a difference: those are compared on the
# latest revision, while the money is summed over revisions. How many
# revisions a month took depends on when each run happened to close it.
DEMAND_NOW = ["max_kw", "max_interval_start", "billing_kw"]


def demand_months(rows):
    """Per (cluster, month): the money summed over revisions and the kW of
    the latest revision."""
    out = sums(rows, ("cluster", "month"), DEMAND)
    latest = {}
    for r in rows:
        k = (r["cluster"], r["month"])
        if k not in latest or int(r["revision"]) > int(latest[k]["revision"]):
            latest[k] = r
    for k, r in latest.items():
        out[k].update({f: r[f] if f == "max_interval_start" else Decimal(r[f]) for f in DEMAND_NOW})
    return out


def differences(got, want, label, got_name, want_name):
    out = []
    for k in sorted(set(got) | set(want)):
        if got.get(k) != want.get(k):
            out.append(f"{label} {k}: {got_name} {got.get(k)} != {want_name} {want.get(k)}")
    return out


def report(diffs, what, limit=8):
    checks.check(not diffs, f"{what}: {len(diffs)} differences" + "".join(f"\n    {x}" for x in diffs[:limit]))


def consistent(name, led):
    """Within one ledger: each (cluster, interval or month, revision) once,
    and each row's subsidy lines add up to its subsidy."""
    keys = Counter((r["cluster"], r["interval_start"], r["revision"]) for r in led["billing_rows"])
    keys.update((r["cluster"], r["month"], r["revision"]) for r in led["demand_charges"])
    twice = [k for k, n in keys.items() if n > 1]
    checks.check(not twice, f"{name}: written twice: {twice[:5]}")
    bad = led["subsidy_mismatch"]
    checks.check(not bad, f"{name}: {len(bad)} rows whose subsidy_lines do not add up to their subsidy: {bad[:3]}")


def compare_exact(got, want):
    """(a): the chaos run's ledger against the reference's."""
    key = ("cluster", "interval_start")
    report(differences(sums(got["billing_rows"], key, MONEY + ["missing_s"]),
                       sums(want["billing_rows"], key, MONEY + ["missing_s"]), "interval", "chaos", "reference"),
           "(a) billing_rows summed over revisions per cluster and interval")
    report(differences(demand_months(got["demand_charges"]), demand_months(want["demand_charges"]),
                       "month", "chaos", "reference"),
           "(a) demand_charges summed over revisions per cluster and month")
    lkey = ("row_table", "cluster", "at", "programme")
    report(differences(sums(got["subsidy_lines"], lkey, ["amount"]), sums(want["subsidy_lines"], lkey, ["amount"]),
                       "subsidy line", "chaos", "reference"),
           "(a) subsidy_lines summed per row and programme")

    def rows(led, table):
        return Counter(tuple(sorted((k, v) for k, v in r.items() if k != "id")) for r in led[table])
    for table in ("billing_rows", "demand_charges"):
        g, w = rows(got, table), rows(want, table)
        only_g, only_w = list((g - w).elements()), list((w - g).elements())
        checks.check(not only_g and not only_w,
                     f"(a) {table}: the rows differ: {len(only_g)} only in chaos, {len(only_w)} only in the reference"
                     + "".join(f"\n    chaos     {dict(x)}" for x in only_g[:3])
                     + "".join(f"\n    reference {dict(x)}" for x in only_w[:3]))


def compare_offline(got, want_rows, want_demand):
    """(b): the faulty run's ledger against tariffd price."""
    key = ("cluster", "interval_start")
    report(differences(sums(got["billing_rows"], key, MONEY), sums(want_rows, key, MONEY),
                       "interval", "daemon", "offline"),
           "(b) billing_rows summed over revisions per cluster and interval equal tariffd price")
    report(differences(demand_months(got["demand_charges"]), demand_months(want_demand),
                       "month", "daemon", "offline"),
           "(b) demand_charges summed over revisions per cluster and month equal tariffd price")


# ---------------------------------------------------------------- the runs

def fault_schedule(rng, n):
    """{batch index: (kind, delay after it, PostgreSQL shutdown mode)}, in
    the middle 80% of the stream, at least three batches apart."""
    kinds = ["kill"] * KILLS + ["pg"] * PG_RESTARTS
    rng.shuffle(kinds)
    while True:
        at = sorted(rng.sample(range(n // 10, n * 9 // 10), len(kinds)))
        if all(b - a >= 3 for a, b in zip(at, at[1:])):
            break
    return {i: (k, round(rng.uniform(0, 0.3), 3), rng.choice(["fast", "immediate"])) for i, k in zip(at, kinds)}


rng = random.Random(SEED)
BATCHES = make_batches(rng)
TEXT = "".join(body for _, body in BATCHES)
RELOADS = {len(BATCHES) * 2 // 5: ("corrected price of tf@2025-01-01", corrected_price),
           len(BATCHES) * 7 // 10: ("new programme pb", new_programme)}
schedules = {"chaos": fault_schedule(rng, len(BATCHES)), "faults": fault_schedule(rng, len(BATCHES))}
paces = {name: random.Random(rng.random()) for name in ("reference", "chaos", "faults")}
for name, s in schedules.items():
    print(f"{name} schedule: " + ", ".join(f"{k} at batch {i} +{d}s" + (f" ({m})" if k == "pg" else "")
                                           for i, (k, d, m) in sorted(s.items())))
print(f"reloads after batches {sorted(RELOADS)} of {len(BATCHES)}", flush=True)


def run(name, reloads, faults):
    r = Run(name, BATCHES, reloads, faults)
    t = time.monotonic()
    try:
        r.stream(paces[name])
        base = offline(r.base_config, TEXT)
        led = r.settle(*base)
        consistent(name, led)
        if r.d.alive():
            checks.check(r.d.stop() == 0, f"{name}: SIGTERM exits 0", lambda: print(r.log_tail()))
        log = r.d.read_log()
        kills = sum(1 for k, _, _ in r.done if k == "kill")
        checks.check(log.count("<5>ready") == kills + 1, f"{name}: every start got ready")
        checks.check(not re.search(r"runtime error:|AddressSanitizer|LeakSanitizer", log),
                     f"{name}: a sanitizer report in the log", lambda: print(r.log_tail(60)))
        r.ledger, r.base = led, base
        print(f"{name}: {len(led['billing_rows'])} billing rows, {len(led['demand_charges'])} demand rows, "
              f"{len(led['subsidy_lines'])} subsidy lines; {time.monotonic() - t:.1f}s", flush=True)
        return r
    except Exception:
        checks.fail(f"{name}: {traceback.format_exc()}", lambda: print(r.log_tail()))
        return None
    finally:
        if not pg_up():
            pg_ctl("start")
        r.d.cleanup()


t_all = time.monotonic()
if "a" in ONLY:
    ref = run("reference", RELOADS, {})
    if ref:
        labels = {r["tariff_version"] for r in ref.ledger["billing_rows"]}
        progs = {p for r in ref.ledger["billing_rows"] for p in r["programme"].split(",") if p}
        checks.check(len([x for x in labels if x.startswith("tf@2025-01-01#")]) == 2 and "pb" in progs,
                     f"the reloads took effect in the reference: versions {sorted(labels)}, programmes {sorted(progs)}")
        adjustments = sum(1 for r in ref.ledger["billing_rows"] if r["kind"] == "adjustment")
        checks.check(adjustments > 0, "late batches made adjustment rows")
    chaos = run("chaos", RELOADS, schedules["chaos"])
    if ref and chaos:
        after_reload = [i for k, i, _ in chaos.done if k == "kill" and i > min(RELOADS)]
        print(f"(a) kills after the first reload: at batches {after_reload}")
        compare_exact(chaos.ledger, ref.ledger)
if "b" in ONLY:
    faults = run("faults", {}, schedules["faults"])
    if faults:
        compare_offline(faults.ledger, *faults.base)
print(f"seed {SEED}: total {time.monotonic() - t_all:.1f}s")
checks.finish()
