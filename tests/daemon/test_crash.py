"""kill -9 at random moments: every acknowledged sample is billed exactly
once. A client streams a known data set in batches and retries each batch
until it gets 204 (as Telegraf and the client libraries do); a killer
thread SIGKILLs the daemon at random moments and restarts it on the same
state_dir. At the end, for every (cluster, interval) the sums over
revisions of kWh and money in the PostgreSQL ledger equal `tariffd price`
on the same data, to the fen; and for every (cluster, month) the demand
charges.

usage: test_crash.py TARIFFD [KILLS] [SEED]   (prints "N passed, N failed")"""
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, expect_within, finish  # noqa: E402
from harness import Daemon, read_csv, sums  # noqa: E402

tariffd = sys.argv[1]
kills = int(sys.argv[2]) if len(sys.argv) > 2 else 5
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 42)
T0 = 1740758400  # 2025-03-01 00:00 local

# Nine hours of two power meters on c1 and a counter on c2, every 20 s.
samples = []
for i in range(1620):
    t = T0 + 20 * i
    samples.append(f"power,cluster=c1,meter=a kw={40 + (i * 7) % 23} {t}")
    samples.append(f"power,cluster=c1,meter=b w={15000 + (i * 131) % 9000} {t}")
    samples.append(f"power,cluster=c2,meter=ctr kwh={1000 + i * 0.21:.2f} {t}")
batches = []
for k in range(0, len(samples), 45):
    b = samples[k:k + 45]
    if rng.random() < 0.3:
        b = list(reversed(b))  # out of order within a batch
    batches.append("\n".join(b) + "\n")
# Some batches arrive late, after the next few (late samples, adjustments).
for k in range(2, len(batches) - 3, 9):
    batches[k], batches[k + 3] = batches[k + 3], batches[k]

d = Daemon(tariffd).start()
done = threading.Event()
restarts = 0


killer_error = []


def killer():
    global restarts
    try:
        for _ in range(kills):
            # The moment of the kill is what is under test: a random one.
            time.sleep(rng.uniform(0.05, 0.4))
            if done.is_set():
                return
            d.kill()
            d.start()
            restarts += 1
    except Exception as e:  # reported by the main thread
        killer_error.append(repr(e))


MONEY = ["kwh", "energy_charge", "surcharge", "subsidy", "net"]
DEMAND = ["charge", "subsidy", "net"]


try:
    thread = threading.Thread(target=killer)
    thread.start()
    retries = 0
    deadline = time.time() + 120
    for b in batches:
        while True:
            if killer_error or time.time() > deadline:
                raise RuntimeError(f"stuck: {killer_error} {d.read_log()[-2000:]}")
            try:
                status = d.write(b)[0]
            except OSError:
                status = None
            if status == 204:
                break
            check(status in (None, 503), f"unexpected status {status}")
            retries += 1
            time.sleep(0.02)  # a retrying client pauses
        time.sleep(rng.uniform(0, 0.08))  # the client's pace, not a wait
    done.set()
    thread.join()
    print(f"{len(batches)} batches, {retries} retries, {restarts} kill -9 and restarts")

    with tempfile.TemporaryDirectory() as out:
        with tempfile.NamedTemporaryFile("w", suffix=".lp") as lp:
            lp.write("".join(batches))
            lp.flush()
            with open(lp.name) as inp:
                subprocess.run([tariffd, "price", "-c", d.config, "--precision", "s", "--out", out],
                               stdin=inp, stdout=subprocess.DEVNULL, check=True)
        want_rows = read_csv(os.path.join(out, "billing_rows.csv"))
        want_demand = read_csv(os.path.join(out, "demand_charges.csv"))
    want = sums(want_rows, ("cluster", "interval_start"), MONEY)
    want_d = sums(want_demand, ("cluster", "month"), DEMAND)

    # Meters fall silent (grace 1s): every interval and March close, and
    # their rows reach PostgreSQL.
    def settled():
        got = sums(d.table("billing_rows"), ("cluster", "interval_start"), MONEY)
        got_d = sums(d.table("demand_charges"), ("cluster", "month"), DEMAND)
        return got == want and got_d == want_d, (f"{len(got)} of {len(want)} intervals, "
                                                 f"{len(got_d)} of {len(want_d)} months in the ledger")
    expect_within(settled, 30, "every row committed", every=0.2)
    check(d.stop() == 0, "SIGTERM exits 0")
    got_rows = d.table("billing_rows")
    got_demand = d.table("demand_charges")
    got = sums(got_rows, ("cluster", "interval_start"), MONEY)
    check(len(want) > 20, f"offline priced {len(want)} intervals")
    check(set(got) == set(want), f"intervals differ: {sorted(set(got) ^ set(want))[:5]}")
    for k in sorted(set(got) & set(want)):
        check(got[k] == want[k], f"{k}: daemon {got[k]} != offline {want[k]}")
    check(sums(got_demand, ("cluster", "month"), DEMAND) == want_d, "demand charges differ")
    # Each (cluster, interval, revision) appears once: nothing written twice.
    keys = [(r["cluster"], r["interval_start"], r["revision"]) for r in got_rows]
    check(len(keys) == len(set(keys)), "a row was written twice")
    log = d.read_log()
    check(log.count("<5>ready") == restarts + 1, "every start got ready")
finally:
    done.set()
    d.cleanup()
finish()
