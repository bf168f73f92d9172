"""scripts/demo's second half: streams the sample day through a running
tariffd over the InfluxDB v2 write API (each tenant with its demo token, in
batches of 5,000 lines, as Telegraf would), waits for every interval and
month to close, and prints the monthly_statements view of the PostgreSQL
ledger next to the statements of `tariffd price`.

usage: stream_demo.py PORT DATABASE DAY.LP OFFLINE_STATEMENTS.CSV"""
import csv
import http.client
import io
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal

port, db, day, offline = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


def query(sql):
    out = subprocess.run(["psql", "-X", "-q", "-d", db, "-c", f"COPY ({sql}) TO STDOUT WITH CSV HEADER"],
                         check=True, capture_output=True, text=True).stdout
    return list(csv.DictReader(io.StringIO(out)))
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
# December (long past on the wall clock) close and reach the ledger.
deadline = time.time() + 30
while time.time() < deadline:
    try:
        if len(query("SELECT * FROM tariffd.demand_charges")) >= len(tenant_of):
            break
    except subprocess.CalledProcessError:
        pass  # not migrated yet
    time.sleep(0.5)

statements = query("SELECT * FROM tariffd.monthly_statements ORDER BY month, tenant, cluster")
with open(offline) as f:
    want = {(r["tenant"], r["cluster"], r["month"]): r for r in csv.DictReader(f)}

print(f"\n{'month':<10}  {'tenant':<10}  {'cluster':<9}  {'kwh':>14}  {'energy':>10}  "
      f"{'demand':>10}  {'subsidy':>9}  {'net':>10}  same as tariffd price")
same = len(statements) == len(want)
for r in statements:
    w = want.get((r["tenant"], r["cluster"], r["month"]), {})
    ok = all(Decimal(r[k]) == Decimal(w.get(k, "NaN")) for k in
             ("kwh", "energy_charge", "surcharge", "demand_charge", "subsidy", "net"))
    same &= ok
    print(f"{r['month']:<10}  {r['tenant']:<10}  {r['cluster']:<9}  {r['kwh']:>14}  "
          f"{r['energy_charge']:>10}  {r['demand_charge']:>10}  {r['subsidy']:>9}  {r['net']:>10}  "
          f"{'yes' if ok else 'NO'}")
sys.exit(0 if same else 1)
