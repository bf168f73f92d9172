"""Corrections (docs/design.md section 7, "Corrections: tariffd reprice"):
`tariffd reprice` through a running daemon's control socket, against
`tariffd price` on the same telemetry under the corrected config. Each
scenario starts its own daemon(s) on its own database (the PostgreSQL of
PGHOST):

  price      valley and demand prices corrected for a month that closed:
             --dry-run prints what the real run then prints (after its
             first line) and writes nothing; a range of one day reprices
             its intervals and its month's demand, not the month before;
             then the ledger summed over revisions per (cluster, interval)
             and per (cluster, month), and monthly_statements, equal
             tariffd price under the corrected config; the report's totals
             are the rows written; a second run makes no rows and reports
             zero changes
  final      the same once the intervals are final (the daemon restarted
             with its clock past late_window): priced from the ledger's
             sums alone, the engine holding nothing of them
  programme  a programme added retroactively: its subsidy appears with
             subsidy_lines and equals offline pricing; with a yearly cap
             the cap is paid exactly, never exceeded at any row, in the
             documented order (months, then clusters by id)
  crash      kill -9 while the correction waits for the ledger, after it
             journaled its rows but before PostgreSQL committed them (the
             ledger's table locked), and at a random moment; after a
             restart, running it again gives the ledger of an
             uninterrupted run, none of its rows twice
  errors     bad dates, from >= to, an unknown cluster, an unknown
             parameter, a second correction while one runs (409), the
             ledger behind (503 after 30 s), PostgreSQL down (503), the
             daemon not running (the connect message), usage errors
             (exit 2): each its exact message, no row written; the socket
             is 0600 and gone after a stop; a state_dir too long for a
             socket address is a config error

usage: test_reprice.py TARIFFD [SCENARIO...]   (prints "N passed, N failed")"""
import http.client
import os
import random
import re
import socket
import stat
import subprocess
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
from harness import (DEMAND, MONEY, Daemon, differences, metric, need_postgres,  # noqa: E402
                     price_offline, psql, run_scenarios, sums)

need_postgres()
TARIFFD = sys.argv[1]
ONLY = sys.argv[2:]
PG_CTL = os.environ.get("TARIFFD_PG_CTL")
if not PG_CTL and (not ONLY or "errors" in ONLY):
    checks.skip("TARIFFD_PG_CTL is unset: the errors scenario stops PostgreSQL (scripts/test "
                "sets it)")

T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)
START = T0 - 2 * 3600  # 2025-02-28 22:00 local: peak, flat from 23:00, valley from 00:00

daemons = []
from checks import daemon_check as check, daemon_wait as wait_until  # noqa: E402
from checks import log_tail, tail_once, tails_shown  # noqa: E402,F401


# ---------------------------------------------------------------- data

def samples(i0, n, t0=START, step=20):
    """Two power meters on c1 (kW and W) and an energy counter on c2, from
    22:00 local on the last day of February into March."""
    out = []
    for i in range(i0, i0 + n):
        t = t0 + step * i
        out.append(f"power,cluster=c1,meter=a kw={40 + (i * 7) % 23} {t}")
        out.append(f"power,cluster=c1,meter=b w={15000 + (i * 131) % 9000} {t}")
        out.append(f"power,cluster=c2,meter=ctr kwh={1000 + i * 0.21:.2f} {t}")
    return out


def batches(lines, size=90):
    return ["\n".join(lines[k:k + size]) + "\n" for k in range(0, len(lines), size)]


STREAM = batches(samples(0, 720))  # 22:00 to 02:00 local
TEXT = "".join(STREAM)

# The corrections: valley from 0.25 to 0.3 CNY/kWh, demand from 30 to 33
# CNY/kW-month.
CORRECTED = [("price.valley = 0.25", "price.valley = 0.3"), ("demand.kw = 30", "demand.kw = 33")]


# ---------------------------------------------------------------- daemons and the ledger

def new_daemon(**kw):
    d = Daemon(TARIFFD, **kw)
    daemons.append(d)
    return d


def send(d, body, what):
    deadline = time.time() + 15
    while True:
        try:
            s, data, _ = d.write(body)
        except OSError as e:
            s, data = None, repr(e).encode()
        if s == 204 or s not in (None, 503) or time.time() > deadline:
            break
        time.sleep(0.05)
    return check(s == 204, f"{what}: got {s} {data[:200]!r}", d)


def stream(d, batches_=STREAM):
    for i, b in enumerate(batches_):
        send(d, b, f"batch {i}")


def edit(path, pairs):
    with open(path) as f:
        text = f.read()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)


def reload(d, pairs, keep=None):
    """Edits the config (keeping a copy of the old one as keep) and sends
    SIGHUP; waits until the daemon logged the reload."""
    if keep:
        with open(d.config) as f, open(keep, "w") as g:
            g.write(f.read())
    edit(d.config, pairs)
    before = d.read_log().count("reloaded ")
    d.proc.send_signal(1)
    wait_until(lambda: (d.read_log().count("reloaded ") > before, "not yet"), 10, "SIGHUP reloaded", d)


def query(d, sql):
    import csv
    import io
    out = psql(d.db, f"COPY ({sql}) TO STDOUT WITH CSV HEADER")
    return list(csv.DictReader(io.StringIO(out)))


def ledger(d):
    return d.table("billing_rows"), d.table("demand_charges")


def offline(config, text=TEXT):
    return price_offline(TARIFFD, config, text)


def interval_sums(rows, keep=lambda r: True):
    return sums([r for r in rows if keep(r)], ("cluster", "interval_start"), MONEY)


def month_sums(demand, keep=lambda r: True):
    return sums([r for r in demand if keep(r)], ("cluster", "month"), DEMAND)


def latest_demand(demand):
    """max_kw and billing_kw of each (cluster, month) as it stands: its
    latest revision's."""
    out = {}
    for r in sorted(demand, key=lambda r: int(r["revision"])):
        out[(r["cluster"], r["month"])] = (r["max_kw"], r["billing_kw"])
    return out


def ledger_equals(d, want, what, rows_keep=lambda r: True, month_keep=lambda r: True):
    rows, demand = ledger(d)
    diff = (differences(interval_sums(rows, rows_keep), interval_sums(want["billing_rows"], rows_keep),
                        "interval")
            + differences(month_sums(demand, month_keep), month_sums(want["demand_charges"], month_keep),
                          "demand"))
    check(not diff, f"{what}: {len(diff)} differences, first: {diff[:3]}", d)
    return rows, demand


def wait_ledger(d, want, what, timeout=30):
    def probe():
        rows, demand = ledger(d)
        diff = (differences(interval_sums(rows), interval_sums(want["billing_rows"]), "interval")
                + differences(month_sums(demand), month_sums(want["demand_charges"]), "demand"))
        return not diff, f"{len(diff)} differences, first: {diff[:3]}"
    wait_until(probe, timeout, what, d, every=0.2)


def statements_equal(d, want, what):
    got = query(d, f"SELECT * FROM {d.schema}.monthly_statements")
    key = ("tenant", "cluster", "province", "month")
    fields = ["kwh", "energy_charge", "surcharge", "demand_charge", "subsidy", "net"]
    diff = differences(sums(got, key, fields), sums(want["monthly_statements"], key, fields), "statement")
    check(len(got) == len(want["monthly_statements"]) and not diff,
          f"{what}: monthly_statements differ from offline: {diff[:3]}", d)


def unique_keys(d):
    rows, demand = ledger(d)
    keys = [(r["cluster"], r["interval_start"], r["revision"]) for r in rows]
    dkeys = [(r["cluster"], r["month"], r["revision"]) for r in demand]
    check(len(keys) == len(set(keys)) and len(dkeys) == len(set(dkeys)),
          f"a (cluster, interval or month, revision) twice: {len(keys)} rows, {len(set(keys))} keys", d)


def count_rows(d):
    return {t: len(d.table(t)) for t in ("billing_rows", "demand_charges", "subsidy_lines")}


# ---------------------------------------------------------------- tariffd reprice

def reprice(d, *args, config=None, timeout=120):
    return subprocess.run([TARIFFD, "reprice", "-c", config or d.config, *args], capture_output=True,
                          text=True, timeout=timeout)


def reprice_bg(d, *args):
    return subprocess.Popen([TARIFFD, "reprice", "-c", d.config, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def report(text):
    """The report's lines as {(cluster, month): {column: text}}, "total" keyed
    ("total", "")."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("cluster "))
    header = lines[at].split()
    out = {}
    for line in lines[at + 1:]:
        f = line.split()
        if f[0] == "total":
            f.insert(1, "")
        out[(f[0], f[1])] = dict(zip(header, f))
    return out


def ok_run(d, r, what):
    check(r.returncode == 0 and r.stderr == "",
          f"{what}: exit {r.returncode}, stderr {r.stderr!r}, stdout {r.stdout[:300]!r}", d)
    return r.stdout


def refused(d, r, message, what, status=1):
    check(r.returncode == status and r.stdout == "" and r.stderr == message + "\n",
          f"{what}: exit {r.returncode}, stderr {r.stderr!r} (want {message!r}), stdout {r.stdout!r}", d)


def new_rows_total(d, since_billing, since_demand):
    rows, demand = ledger(d)
    new_b = [r for r in rows if int(r["id"]) > since_billing]
    new_d = [r for r in demand if int(r["id"]) > since_demand]
    total = {f: sum((Decimal(r[f]) for r in new_b), Decimal(0))
             for f in ("energy_charge", "surcharge", "subsidy", "net")}
    total["demand_charge"] = sum((Decimal(r["charge"]) for r in new_d), Decimal(0))
    total["subsidy"] += sum((Decimal(r["subsidy"]) for r in new_d), Decimal(0))
    total["net"] += sum((Decimal(r["net"]) for r in new_d), Decimal(0))
    return new_b, new_d, total


def max_ids(d):
    rows, demand = ledger(d)
    return (max((int(r["id"]) for r in rows), default=0), max((int(r["id"]) for r in demand), default=0))


def report_matches_rows(d, text, since, what):
    """The report's totals are what the rows written since `since` add up to."""
    new_b, new_d, total = new_rows_total(d, *since)
    t = report(text)[("total", "")]
    got = {f: Decimal(t[f]) for f in ("energy_charge", "surcharge", "demand_charge", "subsidy", "net")}
    check(got == total and int(t["billing_rows"]) == len(new_b) and int(t["demand_rows"]) == len(new_d),
          f"{what}: report totals {t} != the rows written {total}, {len(new_b)} + {len(new_d)} rows", d)
    check(all(Decimal(r["kwh"]) == 0 and r["missing_s"] == "0" and r["kind"] == "adjustment"
              for r in new_b), f"{what}: a correction row has kWh or missing_s, or is no adjustment", d)


def zero_report(d, text, what):
    t = report(text)[("total", "")]
    check(t["billing_rows"] == "0" and t["demand_rows"] == "0"
          and all(t[f] == "0.0000" for f in ("energy_charge", "surcharge", "demand_charge", "subsidy", "net")),
          f"{what}: the report's totals are not zero: {t}", d)


def streamed(d, config_for_offline=None):
    """Starts d, streams the telemetry and waits until the ledger holds it
    all (as tariffd price has it under the config in force)."""
    d.start()
    stream(d)
    wait_ledger(d, offline(config_for_offline or d.config), "the stream is in the ledger")


# ---------------------------------------------------------------- scenarios

def corrected_price(final):
    d = new_daemon()
    streamed(d)
    old = d.config + ".old"
    if final:
        # Past late_window (6 h) the intervals are final: the engine forgets
        # them and a correction has the ledger's sums alone.
        check(d.stop() == 0, "SIGTERM exits 0", d)
        with open(d.config) as f, open(old, "w") as g:
            g.write(f.read())
        edit(d.config, CORRECTED)
        d.start(env={"TARIFFD_TEST_CLOCK": str(int(time.time()) + 7 * 3600)})
        # At the first ticks every interval becomes final: the engine keeps
        # one neighbouring sample a meter and none of the intervals' money.
        wait_until(lambda: ((n := metric(d, "tariffd_samples_kept")) <= 3, f"{n} samples kept"), 10,
                   "the intervals are final", d)
    else:
        reload(d, CORRECTED, keep=old)
    want_old, want = offline(old), offline(d.config)
    check(want_old["demand_charges"] != want["demand_charges"], "the correction changes demand")
    before = count_rows(d)

    # --dry-run: the real run's report after a first line, nothing written.
    dry = ok_run(d, reprice(d, "--from", "2025-03-01", "--to", "2025-03-02", "--dry-run"), "dry run")
    check(dry.startswith("dry run: nothing written\n"), f"dry run's first line: {dry[:60]!r}", d)
    check(count_rows(d) == before, f"a dry run wrote rows: {count_rows(d)} != {before}", d)
    check(metric(d, "tariffd_reprices_total") == 0, "a dry run is not counted as a correction", d)

    # One day: its intervals and its month's demand; February untouched.
    since = max_ids(d)
    real = ok_run(d, reprice(d, "--from", "2025-03-01", "--to", "2025-03-02"), "one day")
    check(real == dry[len("dry run: nothing written\n"):],
          f"dry run and real run differ:\n{dry}\n---\n{real}", d)
    rep = report(real)
    check(set(rep) == {("c1", "2025-03"), ("c2", "2025-03"), ("total", "")},
          f"one day touches March of c1 and c2: {sorted(rep)}", d)
    check(int(rep[("total", "")]["intervals"]) == len(
        [r for r in want["billing_rows"] if r["month"] == "2025-03-01"]),
        f"intervals priced again: {rep[('total', '')]}", d)
    report_matches_rows(d, real, since, "one day")
    march = lambda r: r["month"] == "2025-03-01"  # noqa: E731
    feb = lambda r: r["month"] == "2025-02-01"  # noqa: E731
    ledger_equals(d, want, "March as tariffd price has it under the corrected config", march, march)
    ledger_equals(d, want_old, "February as it was", feb, feb)
    check(metric(d, "tariffd_reprices_total") == 1, "one correction counted", d)

    # The rest: then the whole ledger is the corrected config's.
    since = max_ids(d)
    text = ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), "two months")
    report_matches_rows(d, text, since, "two months")
    ledger_equals(d, want, "the ledger equals tariffd price under the corrected config")
    rows, demand = ledger(d)
    got_kw = latest_demand(demand)
    want_kw = {(r["cluster"], r["month"]): (r["max_kw"], r["billing_kw"]) for r in want["demand_charges"]}
    check(got_kw == want_kw, f"max_kw and billing_kw as they stand: {got_kw} != {want_kw}", d)
    statements_equal(d, want, "after the correction")
    unique_keys(d)
    check(metric(d, "tariffd_reprice_rows_total") == len(
        [r for r in rows if r["kwh"] == "0.000000" and r["kind"] == "adjustment"])
        + len([r for r in demand if r["kind"] == "adjustment"]),
        f"tariffd_reprice_rows_total {metric(d, 'tariffd_reprice_rows_total')}", d)

    # Twice: nothing more.
    before = count_rows(d)
    again = ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), "second run")
    zero_report(d, again, "second run")
    time.sleep(0.3)
    check(count_rows(d) == before, f"a second run wrote rows: {count_rows(d)} != {before}", d)
    log = d.read_log()
    check(re.search(r"<6>reprice from 2025-02-01 to 2025-04-01, 3 clusters: 4 cluster-months, \d+ "
                    r"intervals priced again \(0 skipped\), 0 billing and 0 demand rows, subsidy 0.0000, "
                    r"net 0.0000 CNY", log), "one info line per reprice with its totals", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)

    # The corrections survive a restart (replayed from the journal or the
    # checkpoint): one more run still changes nothing.
    d.start()
    again = ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), "after a restart")
    zero_report(d, again, "after a restart")
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_price():
    corrected_price(final=False)


def scenario_final():
    corrected_price(final=True)


PB = ("[programme pa]", "[programme pb]\nprovinces = p1\nfrom = 2025-01-01\nmin_domestic_share = 0.5\n"
      "rate = 0.1\nbasis = energy+demand\nmode = all_or_nothing\n{cap}\n[programme pa]")


def pb_lines(d):
    """pb's subsidy_lines in id order, with their row's table, cluster, month
    and interval (empty for a demand row)."""
    return query(d, f"SELECT l.id, l.row_table, r.cluster, r.month, r.interval_start, l.amount "
                    f"FROM {d.schema}.subsidy_lines AS l JOIN ("
                    f"SELECT 'billing_rows' AS t, id, cluster, month, interval_start::text FROM "
                    f"{d.schema}.billing_rows UNION ALL SELECT 'demand_charges', id, cluster, month, '' "
                    f"FROM {d.schema}.demand_charges) AS r ON r.t = l.row_table AND r.id = l.row_id "
                    f"WHERE l.programme = 'pb' ORDER BY l.id")


def scenario_programme():
    # Uncapped: every row as tariffd price has it.
    d = new_daemon()
    base = d.config + ".base"
    streamed(d)
    reload(d, [(PB[0], PB[1].format(cap=""))], keep=base)
    want = offline(d.config)
    since = max_ids(d)
    text = ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), "programme added")
    report_matches_rows(d, text, since, "programme added")
    ledger_equals(d, want, "a retroactive programme: the ledger equals tariffd price")
    statements_equal(d, want, "a retroactive programme")
    lines = pb_lines(d)
    check(sum((Decimal(x["amount"]) for x in lines), Decimal(0)) > 0
          and {x["row_table"] for x in lines} == {"billing_rows", "demand_charges"},
          f"pb's subsidy_lines on interval and demand rows: {lines[:3]}", d)
    byp = query(d, f"SELECT programme, sum(subsidy) AS subsidy FROM {d.schema}.subsidy_by_programme GROUP BY 1")
    check(any(r["programme"] == "pb" and Decimal(r["subsidy"]) > 0 for r in byp),
          f"subsidy_by_programme has pb: {byp}", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)

    # What pb pays per interval and month without a cap: the subsidy with it
    # less the subsidy without it (max_subsidy does not bind here).
    without = offline(base)
    paid = {}
    for kind, key in (("billing_rows", "interval_start"), ("demand_charges", "month")):
        a, b = sums(want[kind], ("cluster", key), ["subsidy"]), sums(without[kind], ("cluster", key), ["subsidy"])
        for k in a:
            paid[(kind,) + k] = a[k]["subsidy"] - b[k]["subsidy"]

    # Capped below what it would pay: the cap exactly, in the documented
    # order: February before March, c1 before c2, a cluster's intervals
    # before its month's demand.
    cap = Decimal("120")
    d = new_daemon()
    streamed(d)
    reload(d, [(PB[0], PB[1].format(cap=f"cap_cny_per_year = {cap}"))])
    ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), "capped programme")
    lines = pb_lines(d)
    running, top = Decimal(0), Decimal(0)
    for x in lines:
        running += Decimal(x["amount"])
        top = max(top, running)
    check(sum(paid.values()) > cap and running == cap and top <= cap,
          f"pb paid {running} in all, at most {top} at a time; the cap is {cap}, uncapped "
          f"{sum(paid.values())}", d)
    order = [(x["month"], x["cluster"], x["row_table"] == "demand_charges") for x in lines]
    check(order == sorted(order), f"pb's lines in month, cluster, intervals-then-demand order: {order}", d)
    c1_feb = [x for x in lines if x["cluster"] == "c1" and x["month"] == "2025-02-01"
              and x["row_table"] == "billing_rows"]
    want_c1_feb = {k[2]: v for k, v in paid.items() if k[:2] == ("billing_rows", "c1")
                   and v and k[2] < "2025-02-28T16:00:00Z"}  # March starts 16:00 UTC
    got_c1_feb = {x["interval_start"]: Decimal(x["amount"]) for x in c1_feb}
    check(len(got_c1_feb) == len(want_c1_feb) and sorted(got_c1_feb.values()) == sorted(want_c1_feb.values()),
          f"c1's February intervals were paid in full first: {got_c1_feb} against {want_c1_feb}", d)
    rest = [x for x in lines if not (x["cluster"] == "c1" and x["month"] == "2025-02-01")]
    check(not rest, f"nothing was left for the rows after c1's February: {rest[:3]}", d)
    again = ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), "capped, twice")
    zero_report(d, again, "capped, twice")
    unique_keys(d)
    check(d.stop() == 0, "SIGTERM exits 0", d)


# ---------------------------------------------------------------- crash

class Lock:
    """An open transaction holding billing_rows in EXCLUSIVE mode: the
    writer's INSERTs wait, a reader's SELECTs do not."""

    def __init__(self, d):
        self.d = d
        self.p = subprocess.Popen(["psql", "-X", "-q", "-d", d.db], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        self.p.stdin.write(f"BEGIN; LOCK TABLE {d.schema}.billing_rows IN EXCLUSIVE MODE;\n")
        self.p.stdin.flush()
        wait_until(lambda: (query(d, "SELECT count(*) AS n FROM pg_locks l JOIN pg_class c ON c.oid = "
                                     "l.relation WHERE c.relname = 'billing_rows' AND l.mode = "
                                     "'ExclusiveLock' AND l.granted")[0]["n"] == "1", "not granted"),
                   10, "billing_rows locked", d)

    def release(self):
        self.p.stdin.write("COMMIT;\n")
        self.p.stdin.close()
        self.p.wait(timeout=10)


def reference():
    """An uninterrupted run: the stream, the correction, the ledger."""
    d = new_daemon()
    streamed(d)
    reload(d, CORRECTED)
    ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), "reference run")
    rows, demand = ledger(d)
    check(d.stop() == 0, "SIGTERM exits 0", d)
    return rows, demand


def made_by_reprice(rows):
    """The rows a correction made, without ids, revisions and times."""
    return sorted((r["cluster"], r["interval_start"], r["kwh"], r["energy_charge"], r["surcharge"], r["subsidy"],
                   r["net"], r["programme"], r["tariff_version"]) for r in rows
                  if r["kind"] == "adjustment" and r["kwh"] == "0.000000")


def same_as_reference(d, ref, what, rows_too=True):
    """Once the intervals still open at the kill have closed (by silence,
    at the ticks after the restart) and their rows are committed."""
    ref_rows, ref_demand = ref

    def probe():
        rows, demand = ledger(d)
        diff = (differences(interval_sums(rows), interval_sums(ref_rows), "interval")
                + differences(month_sums(demand), month_sums(ref_demand), "demand"))
        return not diff, f"{len(diff)} differences, first: {diff[:3]}"
    wait_until(probe, 15, f"{what}: the ledger of an uninterrupted run", d, every=0.2)
    rows, demand = ledger(d)
    if rows_too:
        got, want = made_by_reprice(rows), made_by_reprice(ref_rows)
        check(got == want, f"{what}: the correction's rows differ: {len(got)} against {len(want)}", d)
    unique_keys(d)


def restart_and_finish(d, ref, what, rows_too=True):
    d.start()
    ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), f"{what}: run again")
    same_as_reference(d, ref, what, rows_too)
    again = ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), f"{what}: once more")
    zero_report(d, again, f"{what}: once more")
    check(d.stop() == 0, "SIGTERM exits 0", d)


def scenario_crash():
    ref = reference()

    # While it waits for the ledger: nothing applied.
    d = new_daemon()
    d.start()
    stream(d, STREAM[:-3])
    wait_until(lambda: (len(d.table("billing_rows")) > 0, "no row"), 15, "rows committed", d)
    reload(d, CORRECTED)
    lock = Lock(d)
    stream(d, STREAM[-3:])  # closes intervals: rows wait behind the lock
    p = reprice_bg(d, "--from", "2025-02-01", "--to", "2025-04-01")
    wait_until(lambda: (p.poll() is None and metric(d, "tariffd_ledger_rows_queued") > 0, "no rows queued"),
               10, "the correction waits for the ledger", d)
    time.sleep(0.5)
    d.kill()
    p.wait(timeout=10)
    check(p.returncode == 1, f"the killed correction exits 1: {p.returncode} {p.stderr.read()!r}", d)
    lock.release()
    restart_and_finish(d, ref, "killed while waiting for the ledger", rows_too=False)

    # After journaling its rows, before PostgreSQL committed them.
    d = new_daemon()
    streamed(d, config_for_offline=d.config)
    reload(d, CORRECTED)
    lock = Lock(d)
    p = reprice_bg(d, "--from", "2025-02-01", "--to", "2025-04-01")
    wait_until(lambda: (metric(d, "tariffd_reprices_total") == 1 and metric(d, "tariffd_ledger_rows_queued") > 0,
                        "not yet"), 15, "the correction is journaled, its rows wait", d)
    check(p.poll() is None, "the correction waits for PostgreSQL to commit its rows", d)
    d.kill()
    p.wait(timeout=10)
    lock.release()
    restart_and_finish(d, ref, "killed before its rows were committed")

    # At a random moment.
    seed = random.randrange(1 << 30)
    delay = random.Random(seed).uniform(0, 0.3)
    print(f"crash: kill -9 {delay * 1000:.0f} ms after the command (seed {seed})")
    d = new_daemon()
    streamed(d)
    reload(d, CORRECTED)
    p = reprice_bg(d, "--from", "2025-02-01", "--to", "2025-04-01")
    time.sleep(delay)
    d.kill()
    p.wait(timeout=10)
    restart_and_finish(d, ref, f"killed {delay * 1000:.0f} ms in")


# ---------------------------------------------------------------- errors

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.path)


def control(d, method, target):
    c = UnixHTTPConnection(os.path.join(d.dir, "state", "control.sock"))
    try:
        c.request(method, target)
        r = c.getresponse()
        return r.status, r.read().decode(), r.getheader("Content-Type")
    finally:
        c.close()


def scenario_errors():
    d = new_daemon()
    streamed(d)
    sock = os.path.join(d.dir, "state", "control.sock")
    mode = os.stat(sock).st_mode
    check(stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, f"the control socket's mode is {oct(mode)}", d)
    reload(d, CORRECTED)
    before = count_rows(d)

    for args, message in [
        (["--from", "2025-02-30", "--to", "2025-04-01"], 'from "2025-02-30" is not a valid date'),
        (["--from", "2025-03", "--to", "2025-04-01"], 'from "2025-03" is not a date (expected YYYY-MM-DD)'),
        (["--from", "2025-03-01", "--to", "01/04/2025"], 'to "01/04/2025" is not a date (expected YYYY-MM-DD)'),
        (["--from", "2025-04-01", "--to", "2025-04-01"],
         "from 2025-04-01 is not before to 2025-04-01: the range [from, to) is empty"),
        (["--from", "2025-04-01", "--to", "2025-03-01"],
         "from 2025-04-01 is not before to 2025-03-01: the range [from, to) is empty"),
        (["--from", "2025-03-01", "--to", "2025-04-01", "--cluster", "c1", "--cluster", "x9"],
         'cluster "x9" is not in the config'),
    ]:
        refused(d, reprice(d, *args), "tariffd reprice: " + message, " ".join(args))
    for args, message in [
        (["--from", "2025-03-01"], "tariffd reprice: --from and --to are required"),
        (["--to", "2025-03-01"], "tariffd reprice: --from and --to are required"),
        (["--from", "2025-03-01", "--to", "2025-04-01", "extra"], 'tariffd reprice: unexpected argument "extra"'),
    ]:
        r = reprice(d, *args)
        check(r.returncode == 2 and r.stderr.startswith(message + "\n") and "usage:" in r.stderr,
              f"usage error {args}: exit {r.returncode}, {r.stderr[:200]!r}", d)
    r = reprice(d, "--from", "2025-03-01", "--to", "2025-04-01", "--frobnicate")
    check(r.returncode == 2, f"an unknown option is a usage error: {r.returncode}", d)

    # The socket, as curl --unix-socket would use it.
    status, body, ctype = control(d, "POST", "/reprice?from=2025-03-01&to=2025-04-01&frob=1")
    check((status, body) == (400, 'unknown parameter "frob" (expected from, to, cluster and dry_run)\n')
          and ctype == "text/plain; charset=utf-8", f"unknown parameter: {status} {body!r} {ctype}", d)
    status, body, _ = control(d, "POST", "/reprice?from=2025-03-01&to=2025-04-01&dry_run=yes")
    check((status, body) == (400, 'dry_run "yes" must be 1 or 0\n'), f"dry_run=yes: {status} {body!r}", d)
    status, body, _ = control(d, "POST", "/reprice?to=2025-04-01")
    check((status, body) == (400, "from and to are required (from=YYYY-MM-DD&to=YYYY-MM-DD)\n"),
          f"no from: {status} {body!r}", d)
    status, body, _ = control(d, "POST", "/reprice?from=2025-03-01&from=2025-03-02&to=2025-04-01")
    check((status, body) == (400, 'parameter "from" is given twice\n'), f"from twice: {status} {body!r}", d)
    status, body, _ = control(d, "GET", "/reprice?from=2025-03-01&to=2025-04-01")
    check(status == 405 and body == "method not allowed on /reprice (allowed: POST)\n",
          f"GET: {status} {body!r}", d)
    status, body, _ = control(d, "POST", "/write")
    check(status == 404, f"another path: {status} {body!r}", d)
    status, body, _ = control(d, "POST", "/reprice?from=2025-03-01&to=2025-04-01&cluster=c1&dry_run=1")
    check(status == 200 and body.startswith("dry run: nothing written\n"), f"a dry run over the socket: {status}", d)
    check(count_rows(d) == before, f"refused corrections wrote rows: {count_rows(d)} != {before}", d)

    # One at a time; the ledger behind (rows held by a lock): 503 after 30 s.
    lock = Lock(d)
    more = batches(samples(720, 90))
    stream(d, more)
    wait_until(lambda: (metric(d, "tariffd_ledger_rows_queued") > 0, "none"), 15, "rows wait behind the lock", d)
    started = time.time()
    first = reprice_bg(d, "--from", "2025-02-01", "--to", "2025-04-01")
    time.sleep(0.5)
    second = reprice(d, "--from", "2025-02-01", "--to", "2025-04-01")
    refused(d, second, "tariffd reprice: another correction is running; retry once it has answered", "409")
    status, body, _ = control(d, "POST", "/reprice?from=2025-03-01&to=2025-04-01")
    check(status == 409, f"409 over the socket: {status} {body!r}", d)
    out, err = first.communicate(timeout=60)
    took = time.time() - started
    check(first.returncode == 1 and re.fullmatch(r"tariffd reprice: the ledger is behind: \d+ rows queued for "
                                                 r"PostgreSQL\n", err) and 29 < took < 40,
          f"the ledger behind: exit {first.returncode} after {took:.1f}s, {err!r}", d)
    lock.release()
    wait_until(lambda: (metric(d, "tariffd_ledger_rows_queued") == 0, "rows queued"), 15, "the ledger catches up", d)

    # PostgreSQL down.
    subprocess.run(f"{PG_CTL} -m fast stop", shell=True, check=True, capture_output=True)
    try:
        # The writer learns of the outage from its next write.
        stream(d, batches(samples(810, 90)))
        wait_until(lambda: (metric(d, "tariffd_postgres_up") == 0, "up"), 15, "the daemon sees PostgreSQL go", d)
        r = reprice(d, "--from", "2025-02-01", "--to", "2025-04-01")
        check(r.returncode == 1 and r.stderr.startswith("tariffd reprice: PostgreSQL is not connected"),
              f"PostgreSQL down: {r.returncode} {r.stderr!r}", d)
    finally:
        subprocess.run(f"{PG_CTL} start", shell=True, check=True, capture_output=True)
    wait_until(lambda: (metric(d, "tariffd_postgres_up") == 1, "down"), 30, "connected again", d)
    ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), "once PostgreSQL is back")

    # Not running: the socket is gone, and the command says where it looked.
    check(d.stop() == 0, "SIGTERM exits 0", d)
    check(not os.path.exists(sock), "the control socket is removed at stop", d)
    before = count_rows(d)
    refused(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"),
            f"tariffd reprice: is the daemon running? cannot connect to {sock}: No such file or directory",
            "daemon not running")
    check(count_rows(d) == before, "nothing written while the daemon is down", d)
    # A stale socket (kill -9) is replaced at start.
    d.start()
    d.kill()
    check(os.path.exists(sock), "kill -9 leaves the socket behind", d)
    refused(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"),
            f"tariffd reprice: is the daemon running? cannot connect to {sock}: Connection refused",
            "a stale socket")
    d.start()
    ok_run(d, reprice(d, "--from", "2025-02-01", "--to", "2025-04-01"), "after a stale socket")
    check(d.stop() == 0, "SIGTERM exits 0", d)

    # A state_dir too long for a socket address: a config error.
    long_dir = os.path.join(d.dir, "x" * 100)
    with open(d.config) as f:
        text = f.read()
    bad = os.path.join(d.dir, "long.conf")
    with open(bad, "w") as f:
        f.write(re.sub(r"state_dir = .*", f"state_dir = {long_dir}", text))
    want = (f'{bad}: state_dir "{long_dir}" is too long for the control socket: its path would be '
            f"{len(long_dir) + 13} bytes, a socket address holds 107")
    r = subprocess.run([TARIFFD, "--check-config", "-c", bad], capture_output=True, text=True)
    check(r.returncode == 1 and r.stderr == want + "\n", f"--check-config: {r.returncode} {r.stderr!r}")
    r = subprocess.run([TARIFFD, "-c", bad], capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and want in r.stderr and not os.path.exists(long_dir),
          f"at start: {r.returncode} {r.stderr[-300:]!r}")


def scenario_reload():
    """A reload that drops an asked cluster while the ledger is read: the
    correction is refused naming it, nothing is written, the daemon goes on
    (it used to read the dropped cluster's config again and crash)."""
    d = new_daemon()
    streamed(d)
    lock = Lock(d)
    stream(d, batches(samples(720, 90)))
    wait_until(lambda: (metric(d, "tariffd_ledger_rows_queued") > 0, "none queued"), 15,
               "rows wait behind the lock", d)
    p = reprice_bg(d, "--from", "2025-02-01", "--to", "2025-04-01")
    time.sleep(1)
    reload(d, [("[cluster x1]\ntenant = t2\nsite = s1\ninventory = dom*1\n", "")])
    lock.release()
    out, err = p.communicate(timeout=60)
    check(p.returncode == 1 and out == "" and err == 'tariffd reprice: cluster "x1" is not in the config\n',
          f"a cluster dropped while the ledger was read: exit {p.returncode}, {err!r}", d)
    time.sleep(0.5)
    check(d.proc.poll() is None, "the daemon still runs after a reload during the read", d)
    wait_until(lambda: (metric(d, "tariffd_ledger_rows_queued") == 0, "rows queued"), 15,
               "the held rows committed", d)
    check(metric(d, "tariffd_reprices_total") == 0 and metric(d, "tariffd_reprice_rows_total") == 0,
          "the refused correction applied nothing", d)


SCENARIOS = [("price", scenario_price), ("final", scenario_final), ("programme", scenario_programme),
             ("crash", scenario_crash), ("reload", scenario_reload),
             ("errors", scenario_errors)]



def pg_back():
    if PG_CTL and subprocess.run(["pg_isready", "-q"]).returncode != 0:
        subprocess.run(f"{PG_CTL} start", shell=True, capture_output=True)


run_scenarios(SCENARIOS, ONLY, daemons, restore=pg_back)
