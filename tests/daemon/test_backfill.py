"""History and quarantined samples (docs/design.md section 7, "Corrections:
tariffd backfill and requeue"), through a running daemon's control socket,
against `tariffd price` on the same input. Each scenario starts its own
daemon on its own database (the PostgreSQL of PGHOST):

  history   a daemon taking live data (now) is sent 60 to 90 days old
            history (three meters, a sample a minute): --dry-run prints
            what the real run then prints and writes nothing; the real run
            shows its progress on stderr while live writes keep getting 204
            (their latency before and during is printed, not asserted); the
            ledger's rows of the history, summed per interval and per month
            (demand rows included), equal tariffd price on the same file,
            all of revision 0; the report's totals are the rows written; a
            second backfill of the same file makes no row and counts every
            interval and sample as already there; a live sample inside the
            backfilled span is quarantined, not billed
  shared    history that ends where live data began in the same month: the
            month gets one demand row over both (its peak is the
            history's), the backfilled intervals equal tariffd price
  left      history of the first days of a month whose live part is final
            in the ledger, demand row included: its intervals equal
            tariffd price on the history, and its demand, priced again over
            both, equals tariffd price on history and live data together
  requeue   samples before the first tariff version are quarantined; after
            a reload adds an earlier version, tariffd requeue bills them
            once (equal to tariffd price on them under the new config),
            records each release in quarantine_releases, and a second
            requeue releases nothing; samples that still cannot be billed
            stay quarantined
  crash     kill -9 after the backfill is journaled but before PostgreSQL
            committed its rows (the ledger's table locked): after a restart
            the rows are there, once, equal to tariffd price
  reload    a reload while a session takes lines ends it (404 after); a
            reload while a backfill waits for PostgreSQL leaves it to
            finish, equal to tariffd price
  errors    a malformed line (exit 2, "line N: ...", nothing written), an
            unknown session, bad requeue arguments, a second correction
            while a session is open (409), usage errors

usage: test_backfill.py TARIFFD [SCENARIO...]   (prints "N passed, N failed")"""
import difflib
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
from harness import (DEMAND, MONEY, Daemon, differences, metric, need_postgres,  # noqa: E402
                     price_offline, psql, run_scenarios, sums)

need_postgres()
TARIFFD = sys.argv[1]
ONLY = sys.argv[2:]

DAY = 86400
NOW = int(time.time())
# Local (+08:00) midnight, 90 days ago and 60 days ago, as the history's span.
LOCAL = 8 * 3600
MIDNIGHT = (NOW + LOCAL) // DAY * DAY - LOCAL
H_FROM = MIDNIGHT - 90 * DAY
H_TO = MIDNIGHT - 60 * DAY

daemons = []
from checks import daemon_check as check, daemon_wait as wait_until  # noqa: E402
from checks import log_tail, tail_once, tails_shown  # noqa: E402,F401


def new_daemon(**kw):
    d = Daemon(TARIFFD, **kw)
    daemons.append(d)
    return d


# ---------------------------------------------------------------- data

def history(t_from, t_to, step=60, prefix=""):
    """Two power meters on c1 (kW and W) and an energy counter on c2."""
    out = []
    for i, t in enumerate(range(t_from, t_to, step)):
        out.append(f"power,cluster=c1,meter={prefix}a kw={40 + (i * 7) % 23} {t}")
        out.append(f"power,cluster=c1,meter={prefix}b w={15000 + (i * 131) % 9000} {t}")
        out.append(f"power,cluster=c2,meter={prefix}ctr kwh={1000 + i * 0.21:.2f} {t}")
    return "\n".join(out) + "\n"


def live_lines(t0, n, step=10, base=0):
    out = []
    for i in range(n):
        t = t0 + step * i
        out.append(f"power,cluster=c1,meter=a kw={50 + (i % 5)} {t}")
        out.append(f"power,cluster=c1,meter=b kw={20 + (i % 3)} {t}")
        out.append(f"power,cluster=c2,meter=ctr kwh={5000 + base + i * 0.05:.2f} {t}")
    return "\n".join(out) + "\n"


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


def offline(config, text):
    return price_offline(TARIFFD, config, text)


def ledger(d):
    return d.table("billing_rows"), d.table("demand_charges")


def in_history(r):
    return r["interval_start"] < iso(H_TO)


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def history_equals(d, want, what, months):
    """The ledger's rows of the history span, and the demand of `months`,
    summed over revisions, against tariffd price."""
    rows, demand = ledger(d)
    got_i = sums([r for r in rows if in_history(r)], ("cluster", "interval_start"), MONEY)
    want_i = sums(want["billing_rows"], ("cluster", "interval_start"), MONEY)
    got_m = sums([r for r in demand if r["month"] in months], ("cluster", "month"), DEMAND)
    want_m = sums([r for r in want["demand_charges"] if r["month"] in months], ("cluster", "month"),
                  DEMAND)
    diff = differences(got_i, want_i, "interval") + differences(got_m, want_m, "demand")
    check(not diff and want_i and want_m,
          f"{what}: {len(diff)} differences ({len(want_i)} intervals, {len(want_m)} months), "
          f"first: {diff[:3]}", d)
    return rows, demand


def backfill(d, text, *args, timeout=300):
    return subprocess.run([TARIFFD, "backfill", "-c", d.config, "--precision", "s", *args],
                          input=text, capture_output=True, text=True, timeout=timeout)


def requeue(d, *args, timeout=120):
    return subprocess.run([TARIFFD, "requeue", "-c", d.config, *args], capture_output=True,
                          text=True, timeout=timeout)


def report(text):
    """The report's table as {(cluster, month): {column: text}}; the total
    keyed ("total", "")."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("cluster "))
    header = lines[at].split()
    out = {}
    for line in lines[at + 1:]:
        f = line.split()
        if not f or f[0].startswith("demand"):
            break
        if f[0] == "total":
            f[1:1] = ["", ""]
        out[(f[0], f[1])] = dict(zip(header, f))
    return out


def months_of(t_from, t_to):
    out = set()
    for t in range(t_from, t_to, DAY):
        out.add(time.strftime("%Y-%m-01", time.gmtime(t + LOCAL)))
    return out


def backfill_uncommitted(d, text, hold_s):
    """Live rows written, then the ledger's table locked against writes (not
    reads) for hold_s: starts `tariffd backfill` of text and returns (the
    lock's psql, the backfill) once the backfill is applied and journaled,
    its rows waiting for PostgreSQL."""
    send(d, live_lines(NOW - 300, 20), "live data")
    wait_until(lambda: (len(ledger(d)[0]) > 0, "no live rows"), 20, "the live rows are written", d)
    time.sleep(3)
    lock = subprocess.Popen(["psql", "-X", "-q", "-d", d.db, "-c",
                             f"BEGIN; LOCK TABLE {d.schema}.billing_rows IN EXCLUSIVE MODE; "
                             f"SELECT pg_sleep({hold_s});"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    p = subprocess.Popen([TARIFFD, "backfill", "-c", d.config, "--precision", "s", "--quiet"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdin.write(text)
    p.stdin.close()
    wait_until(lambda: ("intervals billed" in d.read_log(), "not yet"), 30, "the backfill is applied", d)
    return lock, p


# ---------------------------------------------------------------- scenarios

def scenario_history():
    d = new_daemon()
    d.start()
    # Live data: the last 10 minutes, then on while the backfill runs.
    send(d, live_lines(NOW - 600, 60), "live data")
    text = history(H_FROM, H_TO)
    n_lines = text.count("\n")
    want = offline(d.config, text)
    months = months_of(H_FROM, H_TO)

    dry = backfill(d, text, "--dry-run")
    check(dry.returncode == 0 and dry.stdout.startswith("dry run: nothing written\n"),
          f"dry run: exit {dry.returncode}, {dry.stderr[-300:]!r} {dry.stdout[:200]!r}", d)
    check(not [r for r in ledger(d)[0] if in_history(r)], "the dry run wrote rows", d)

    # Live writes keep going during the backfill.
    statuses, latencies = [], {"before": [], "during": []}
    stop = threading.Event()
    phase = ["before"]

    def writer():
        t = NOW
        i = 0
        while not stop.is_set():
            body = live_lines(t + i * 10, 1, base=10 + i)
            started = time.time()
            try:
                s = d.write(body)[0]
            except OSError:
                s = None
            latencies[phase[0]].append(time.time() - started)
            statuses.append(s)
            i += 1
            time.sleep(0.02)
    th = threading.Thread(target=writer)
    th.start()
    time.sleep(1)
    phase[0] = "during"
    started = time.time()
    r = backfill(d, text)
    took = time.time() - started
    phase[0] = "after"
    latencies["after"] = []
    time.sleep(0.5)
    stop.set()
    th.join()
    check(r.returncode == 0, f"backfill: exit {r.returncode}, stderr {r.stderr[-500:]!r}", d)
    check("MB sent, lines" in r.stderr and "all sent" in r.stderr,
          f"backfill shows no progress on stderr: {r.stderr[:300]!r}", d)
    check(r.stdout == dry.stdout.partition("\n")[2],
          "the dry run's report differs from the real run's:\n" + "\n".join(
              difflib.unified_diff(dry.stdout.splitlines(), r.stdout.splitlines(), lineterm="")), d)
    check(statuses and all(s == 204 for s in statuses),
          f"live writes during the backfill: {[s for s in statuses if s != 204][:5]} of {len(statuses)}", d)

    def med(v):
        return sorted(v)[len(v) // 2] * 1000 if v else float("nan")
    print(f"  backfill of {n_lines} lines took {took:.1f} s; live writes: median "
          f"{med(latencies['before']):.1f} ms before, {med(latencies['during']):.1f} ms during "
          f"({len(latencies['during'])} writes)")

    rows, demand = history_equals(d, want, "the backfilled ledger equals tariffd price", months)
    check(all(r["revision"] == "0" for r in rows if in_history(r)),
          "a backfilled row is not revision 0", d)
    t = report(r.stdout)[("total", "", )] if ("total", "") in report(r.stdout) else None
    hist_rows = [x for x in rows if in_history(x)]
    hist_demand = [x for x in demand if x["month"] in months]
    check(t is not None and int(t["billing_rows"]) == len(hist_rows)
          and int(t["demand_rows"]) == len(hist_demand)
          and Decimal(t["net"]) == sum(Decimal(x["net"]) for x in hist_rows + hist_demand),
          f"the report's totals are not the rows written: {t}", d)
    check(int(metric(d, "tariffd_backfills_total")) == 1, "tariffd_backfills_total is not 1", d)

    # Twice: nothing new.
    before = (len(rows), len(demand))
    again = backfill(d, text)
    rows2, demand2 = ledger(d)
    check(again.returncode == 0 and (len(rows2), len(demand2)) == before,
          f"a second backfill: exit {again.returncode}, rows {before} -> {(len(rows2), len(demand2))}", d)
    want_left = f"left out: {len(want['billing_rows'])} intervals ({n_lines} samples)"
    check(want_left in again.stdout, f"the second backfill's report: {again.stdout[:300]!r} "
          f"(want {want_left!r})", d)

    # A live sample inside the backfilled span is quarantined, not billed.
    q0 = len(d.table("quarantined_samples"))
    send(d, f"power,cluster=c1,meter=a kw=999 {H_TO - 3600}\n", "a live sample in history")
    wait_until(lambda: (len(d.table("quarantined_samples")) == q0 + 1, "not yet"), 10,
               "the live sample in the backfilled span is quarantined", d)
    check(len(ledger(d)[0]) == len(rows2), "the live sample in the backfilled span was billed", d)


def scenario_shared():
    # Live data began at local midnight 20 days ago; the history ends there.
    d = new_daemon()
    d.start()
    live_from = MIDNIGHT - 20 * DAY
    send(d, live_lines(live_from, 60, step=60), "live data")
    text = history(live_from - 10 * DAY, live_from, step=120)
    want = offline(d.config, text)
    r = backfill(d, text, "--quiet")
    check(r.returncode == 0 and r.stderr == "", f"backfill: exit {r.returncode} {r.stderr!r}", d)
    rows, demand = ledger(d)
    got_i = sums([x for x in rows if x["interval_start"] < iso(live_from)],
                 ("cluster", "interval_start"), MONEY)
    want_i = sums(want["billing_rows"], ("cluster", "interval_start"), MONEY)
    diff = differences(got_i, want_i, "interval")
    check(not diff, f"shared: {len(diff)} interval differences, first {diff[:3]}", d)
    fates = {(k[0], k[1]): v["demand"] for k, v in report(r.stdout).items() if k[0] != "total"}
    print(f"  fates: {fates}")
    check(all(f in ("whole", "merged") for f in fates.values()), f"fates {fates}", d)


def scenario_left():
    """History of the first days of a month whose live data (later in it)
    is final in the ledger, demand row included: the month is "left", its
    intervals are billed, and its demand is priced again from the ledger
    over both, as tariffd price prices the month from both."""
    import calendar
    lt = time.gmtime(NOW - 75 * DAY + LOCAL)
    month_start = calendar.timegm((lt.tm_year, lt.tm_mon, 1, 0, 0, 0)) - LOCAL
    # Live data from the 16th into the next month, so that the month is
    # final and gone from the daemon's engine once late_window has passed.
    live = live_lines(month_start + 15 * DAY, 17 * 288, step=300)
    d = new_daemon()
    d.start()
    send(d, live, "live data in the month")
    month = time.strftime("%Y-%m-01", time.gmtime(month_start + LOCAL))
    wait_until(lambda: (len([r for r in ledger(d)[1] if r["month"] == month]) == 2, "not yet"), 60,
               "the live month closes", d)
    check(d.stop() == 0, "SIGTERM exits 0", d)
    d.start(env={"TARIFFD_TEST_CLOCK": str(NOW + 7 * 3600)})
    # The first ticks make the month final (the live data's last interval,
    # in the next month, closes now and is not final yet).
    wait_until(lambda: ((n := metric(d, "tariffd_samples_kept")) <= 12, f"{n} samples kept"), 10,
               "the live intervals are final", d)
    time.sleep(2)

    text = history(month_start, month_start + 10 * DAY, step=300, prefix="h")
    want_hist = offline(d.config, text)
    want_all = offline(d.config, text + live)
    before = len(ledger(d)[1])
    r = backfill(d, text, "--quiet")
    check(r.returncode == 0 and " left " in r.stdout
          and "the demand of the 2 months left, priced again over the backfilled intervals: 2 "
              "demand rows" in r.stdout,
          f"backfill into a final month: exit {r.returncode} {r.stderr!r}\n{r.stdout}", d)
    rows, demand = ledger(d)
    got_i = sums([x for x in rows if x["interval_start"] < iso(month_start + 10 * DAY)],
                 ("cluster", "interval_start"), MONEY)
    diff = differences(got_i, sums(want_hist["billing_rows"], ("cluster", "interval_start"), MONEY),
                       "interval")
    got_m = sums([x for x in demand if x["month"] == month], ("cluster", "month"), DEMAND)
    want_m = sums([x for x in want_all["demand_charges"] if x["month"] == month], ("cluster", "month"),
                  DEMAND)
    diff += differences(got_m, want_m, "demand")
    check(not diff and len(demand) == before + 2,
          f"the left month: {len(diff)} differences {diff[:3]}; demand rows {before} -> {len(demand)}", d)
    again = backfill(d, text, "--quiet")
    check(again.returncode == 0 and ledger(d)[1] == demand and len(ledger(d)[0]) == len(rows),
          f"a second backfill into the left month made rows: {again.stdout[-300:]!r}", d)


def scenario_requeue():
    d = new_daemon()
    d.start()
    # 2024-12-31 local: before the tariff's first version (2025-01-01).
    t0 = 1735574400  # 2024-12-30 16:00Z = 2024-12-31 00:00 local
    text = history(t0, t0 + 6 * 3600, step=60)
    n = text.count("\n")
    send(d, text, "samples before the tariff")
    wait_until(lambda: (len(d.table("quarantined_samples")) == n, len(d.table("quarantined_samples"))),
               20, f"{n} samples quarantined", d)
    reasons = {r["reason"] for r in d.table("quarantined_samples")}
    check(reasons == {"no tariff version in force"}, f"reasons {reasons}", d)

    # Nothing to bill yet: every sample stays.
    r = requeue(d)
    check(r.returncode == 0 and f"{n} quarantined samples read; 0 released, {n} stay quarantined" in r.stdout,
          f"requeue before the fix: {r.returncode} {r.stderr!r} {r.stdout[:300]!r}", d)
    check(not ledger(d)[0], "requeue before the fix billed something", d)

    # The missing version, added by a reload.
    with open(d.config) as f:
        conf = f.read()
    block = conf[conf.index("[tariff tf @ 2025-01-01]"):]
    block = block[:block.index("\n\n")] if "\n\n" in block else block
    conf = conf.replace("[tariff tf @ 2025-01-01]", block.replace("@ 2025-01-01", "@ 2024-12-01")
                        + "\n\n[tariff tf @ 2025-01-01]", 1)
    with open(d.config, "w") as f:
        f.write(conf)
    before = d.read_log().count("reloaded ")
    d.proc.send_signal(1)
    wait_until(lambda: (d.read_log().count("reloaded ") > before, "not yet"), 10, "reloaded", d)

    dry = requeue(d, "--reason", "no tariff version in force", "--dry-run")
    r = requeue(d, "--reason", "no tariff version in force")
    check(r.returncode == 0 and f"{n} quarantined samples read; {n} released, 0 stay quarantined" in r.stdout,
          f"requeue: {r.returncode} {r.stderr!r} {r.stdout[:400]!r}", d)
    check(dry.returncode == 0 and dry.stdout.partition("\n")[2] == r.stdout,
          f"requeue --dry-run differs:\n{dry.stdout[:400]}\n---\n{r.stdout[:400]}", d)
    want = offline(d.config, text)
    rows, demand = ledger(d)
    diff = (differences(sums(rows, ("cluster", "interval_start"), MONEY),
                        sums(want["billing_rows"], ("cluster", "interval_start"), MONEY), "interval")
            + differences(sums(demand, ("cluster", "month"), DEMAND),
                          sums(want["demand_charges"], ("cluster", "month"), DEMAND), "demand"))
    check(rows and not diff, f"requeued samples billed as tariffd price: {len(diff)} differences {diff[:3]}", d)
    released = d.table("quarantine_releases")
    check(len(released) == n and len({x["quarantined_id"] for x in released}) == n,
          f"quarantine_releases has {len(released)} rows, want {n}", d)
    again = requeue(d)
    check(again.returncode == 0 and "0 quarantined samples read; 0 released" in again.stdout
          and len(ledger(d)[0]) == len(rows),
          f"a second requeue: {again.stdout[:300]!r}", d)

    bad = requeue(d, "--from", "2025-01-02", "--to", "2025-01-01")
    check(bad.returncode == 1 and bad.stderr == "tariffd requeue: from 2025-01-02 is not before to "
          "2025-01-01: the range [from, to) is empty\n", f"bad dates: {bad.returncode} {bad.stderr!r}", d)


def scenario_crash():
    d = new_daemon()
    d.start()
    text = history(H_FROM, H_FROM + 3 * DAY, step=120)
    want = offline(d.config, text)
    lock, p = backfill_uncommitted(d, text, 60)
    d.kill()
    p.wait(timeout=30)
    lock.kill()
    lock.wait()
    psql(d.db, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{d.db}' "
               "AND pid <> pg_backend_pid()")
    check(not [r for r in ledger(d)[0] if in_history(r)], "rows committed despite the lock", d)
    d.start()
    wait_until(lambda: (len([r for r in ledger(d)[0] if in_history(r)]) == len(want["billing_rows"]),
                        "not yet"), 30, "the replay writes the backfilled rows", d)
    history_equals(d, want, "after kill -9 and a restart", months_of(H_FROM, H_FROM + 3 * DAY))
    again = backfill(d, text)
    check(again.returncode == 0 and "billing_rows" in again.stdout
          and report(again.stdout)[("total", "")]["billing_rows"] == "0",
          f"a backfill again after the crash made rows: {again.stdout[-400:]!r}", d)


def scenario_errors():
    d = new_daemon()
    d.start()
    good = history(H_FROM, H_FROM + 3600)
    bad = good + "power,cluster=c1,meter=a kw=abc 1700000000\n"
    r = backfill(d, bad)
    line = good.count("\n") + 1
    check(r.returncode == 2 and f"tariffd backfill: line {line}: " in r.stderr
          and "nothing was written" in r.stderr,
          f"a malformed line: exit {r.returncode}, stderr {r.stderr[-300:]!r}", d)
    r = backfill(d, "power,cluster=nope,meter=a kw=1 1700000000\n")
    check(r.returncode == 2 and "line 1: " in r.stderr and "nope" in r.stderr,
          f"an unknown cluster: exit {r.returncode}, stderr {r.stderr!r}", d)
    r = backfill(d, "power,cluster=c1,meter=a kw=1\n")
    check(r.returncode == 2 and "line 1: no timestamp" in r.stderr, f"no timestamp: {r.stderr!r}", d)
    check(not ledger(d)[0] and not d.table("quarantined_samples"), "a refused backfill wrote rows", d)

    sock = os.path.join(d.dir, "state", "control.sock")

    def control(path):
        out = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", sock,
                              "-X", "POST", "http://localhost" + path], capture_output=True, text=True)
        body, _, code = out.stdout.rpartition("\n")
        return int(code), body.strip()
    code, body = control("/backfill/lines?session=12345")
    check(code == 404 and body.startswith("no backfill session 12345"), f"unknown session: {code} {body!r}", d)
    code, body = control("/backfill?precision=hours")
    check(code == 400 and "unknown precision" in body, f"bad precision: {code} {body!r}", d)
    code, body = control("/backfill?precision=s")
    check(code == 200 and body.startswith("session "), f"begin: {code} {body!r}", d)
    session = body.split()[1]
    r = subprocess.run([TARIFFD, "reprice", "-c", d.config, "--from", "2025-01-01", "--to", "2025-01-02"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "another correction is running" in r.stderr,
          f"reprice while a session is open: {r.returncode} {r.stderr!r}", d)
    code, body = control(f"/backfill/abort?session={session}")
    check(code == 200 and "aborted" in body, f"abort: {code} {body!r}", d)
    for path, want in (
            ("/backfill?precision=s&dry_run=yes", 'dry_run "yes" must be 1 or 0'),
            ("/backfill?session=1", "a session begins without one: no session parameter"),
            ("/backfill/lines?session=abc", "session=ID is required"),
            ("/backfill/commit", "session=ID is required"),
            ("/backfill/lines?session=1&precision=s", "precision and dry_run go with POST /backfill"),
            ("/requeue?from=2025-02-30&to=2025-03-01", 'from "2025-02-30" '),
            ("/requeue?reason=", "reason is empty (leave it out for every reason)"),
            ("/requeue?dry_run=1&dry_run=1", 'parameter "dry_run" is given twice')):
        code, body = control(path)
        check(code == 400 and body.startswith(want), f"{path}: {code} {body!r} (want 400 {want!r})", d)
    code, body = control("/requeue?from=2025-01-01")
    check(code == 400 and "from and to go together" in body, f"requeue from alone: {code} {body!r}", d)
    code, body = control("/requeue?colour=red")
    check(code == 400 and 'unknown parameter "colour"' in body, f"requeue unknown: {code} {body!r}", d)
    r = subprocess.run([TARIFFD, "backfill", "-c", d.config, "extra"], capture_output=True, text=True)
    check(r.returncode == 2 and "unexpected argument" in r.stderr, f"usage: {r.stderr!r}", d)
    r = subprocess.run([TARIFFD, "requeue", "-c", d.config, "--from", "2025-01-01"],
                       capture_output=True, text=True)
    check(r.returncode == 2 and "--from and --to go together" in r.stderr, f"usage: {r.stderr!r}", d)


def scenario_reload():
    """A reload while a session takes lines ends it (404 after); one while a
    backfill waits for PostgreSQL to commit leaves it to finish (the daemon
    keeps nothing of the old config for it)."""
    d = new_daemon()
    d.start()
    sock = os.path.join(d.dir, "state", "control.sock")

    def control(path, data=None):
        cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", sock, "-X", "POST",
               "http://localhost" + path]
        if data is not None:
            cmd += ["--data-binary", "@-"]
        out = subprocess.run(cmd, input=data, capture_output=True, text=True)
        body, _, code = out.stdout.rpartition("\n")
        return int(code), body.strip()

    def sighup():
        before = d.read_log().count("reloaded ")
        d.proc.send_signal(1)
        wait_until(lambda: (d.read_log().count("reloaded ") > before, "not yet"), 10, "reloaded", d)

    code, body = control("/backfill?precision=s")
    session = body.split()[1] if code == 200 else "0"
    text = history(H_FROM, H_FROM + 6 * 3600, step=120)
    code, body = control(f"/backfill/lines?session={session}", text)
    check(code == 200, f"lines: {code} {body!r}", d)
    sighup()
    code, body = control(f"/backfill/lines?session={session}", text)
    check(code == 404 and "no backfill session" in body, f"lines after a reload: {code} {body!r}", d)

    lock, p = backfill_uncommitted(d, text, 4)
    sighup()
    p.wait(timeout=60)
    out, err = p.stdout.read(), p.stderr.read()
    lock.wait()
    check(p.returncode == 0 and d.alive() and "billing_rows" in out,
          f"a backfill across a reload: exit {p.returncode} {err!r}, daemon alive {d.alive()}", d)
    want = offline(d.config, text)
    history_equals(d, want, "the backfill across a reload", months_of(H_FROM, H_FROM + DAY))


SCENARIOS = [("history", scenario_history), ("shared", scenario_shared),
             ("requeue", scenario_requeue), ("left", scenario_left), ("crash", scenario_crash),
             ("reload", scenario_reload), ("errors", scenario_errors)]
run_scenarios(SCENARIOS, ONLY, daemons)
