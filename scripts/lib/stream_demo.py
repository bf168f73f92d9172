"""scripts/demo's second half: streams the sample day through a running
tariffd over the InfluxDB v2 write API (each tenant with its demo token, in
batches of 5,000 lines, as Telegraf would), waits for every interval and
month to close, and prints the statements from the daemon's row files next
to those of `tariffd price`.

usage: stream_demo.py PORT STATE_DIR DAY.LP OFFLINE_STATEMENTS.CSV"""
import csv
import http.client
import os
import sys
import time
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal

port, state, day, offline = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
tenant_of = {"qy-a01": "bytedance", "wlcb-b01": "bytedance",
             "qy-t01": "tencent", "ga-t01": "tencent", "wlcb-t01": "tencent"}
by_tenant = defaultdict(list)
with open(day) as f:
    for line in f:
        cluster = line.split(",", 2)[1].split("=", 1)[1]
        by_tenant[tenant_of[cluster]].append(line)

conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
start, requests = time.time(), 0
for tenant, lines in by_tenant.items():
    for i in range(0, len(lines), 5000):
        conn.request("POST", "/api/v2/write?org=demo&bucket=demo&precision=ns",
                     body="".join(lines[i:i + 5000]).encode(),
                     headers={"Authorization": f"Token {tenant}-demo-token"})
        r = conn.getresponse()
        r.read()
        if r.status != 204:
            sys.exit(f"tariffd answered {r.status}")
        requests += 1
print(f"streamed {sum(map(len, by_tenant.values()))} lines in {requests} requests "
      f"({time.time() - start:.2f} s), every one answered 204")

# The meters fall silent (grace 2s in the demo config): intervals, then
# December (long past on the wall clock) close.
deadline = time.time() + 30
while time.time() < deadline:
    with open(os.path.join(state, "demand.csv")) as f:
        if len(list(csv.DictReader(f))) >= len(tenant_of):
            break
    time.sleep(0.5)

totals = defaultdict(lambda: defaultdict(Decimal))
with open(os.path.join(state, "rows.csv")) as f:
    for r in csv.DictReader(f):
        t = totals[(r["tenant"], r["cluster"], r["month"])]
        for k in ("kwh", "energy_charge", "surcharge", "subsidy", "net"):
            t[k] += Decimal(r[k])
with open(os.path.join(state, "demand.csv")) as f:
    for r in csv.DictReader(f):
        t = totals[(r["tenant"], r["cluster"], r["month"])]
        t["demand_charge"] += Decimal(r["charge"])
        t["subsidy"] += Decimal(r["subsidy"])
        t["net"] += Decimal(r["net"])
with open(offline) as f:
    want = {(r["tenant"], r["cluster"], r["month"]): r for r in csv.DictReader(f)}

fen = lambda v: v.quantize(Decimal("0.01"), ROUND_HALF_EVEN)
print(f"\n{'month':<10}  {'tenant':<10}  {'cluster':<9}  {'kwh':>14}  {'energy':>10}  "
      f"{'demand':>10}  {'subsidy':>9}  {'net':>10}  same as tariffd price")
same = True
for key in sorted(totals, key=lambda k: (k[2], k[0], k[1])):
    t = totals[key]
    w = want.get(key, {})
    ok = all(fen(t[k]) == Decimal(w.get(k, "NaN")) for k in
             ("energy_charge", "surcharge", "demand_charge", "subsidy", "net")) and \
        t["kwh"] == Decimal(w.get("kwh", "NaN"))
    same &= ok
    print(f"{key[2]:<10}  {key[0]:<10}  {key[1]:<9}  {t['kwh']:>14}  {fen(t['energy_charge']):>10}  "
          f"{fen(t['demand_charge']):>10}  {fen(t['subsidy']):>9}  {fen(t['net']):>10}  "
          f"{'yes' if ok else 'NO'}")
sys.exit(0 if same else 1)
