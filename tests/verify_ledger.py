"""Checks a directory of `tariffd price --out` CSV files against the money
rules of docs/design.md section 5, recomputed independently with Python's Decimal:

- every billing row of kind interval: energy_charge = round(kwh x price, 4),
  surcharge = round(kwh x surcharge_rate, 4), net = energy + surcharge -
  subsidy, 0 <= subsidy <= round(max_subsidy x energy, 4);
- every demand row: net = charge - subsidy; a month billed by days
  (docs/design.md section 5) charges in all, over its revisions, its latest
  proration evaluated: the sum of D/30 x MONTHLY, rounded half-even to 4,
  with D summing to days_in_service;
- monthly_statements: the 4-decimal amounts of both files summed per
  tenant, cluster and month, rounded half-even to 0.01;
- monthly_by_period likewise per period.

usage: verify_ledger.py DIR MAX_SUBSIDY   (prints "N passed, N failed")"""
import csv
import os
import re
import sys
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "daemon"))
from checks import check, finish  # noqa: E402

out, max_subsidy = sys.argv[1], Decimal(sys.argv[2])
Q4, Q2 = Decimal("0.0001"), Decimal("0.01")

def rows(name):
    with open(f"{out}/{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


D = Decimal
statements = defaultdict(lambda: defaultdict(Decimal))
by_period = defaultdict(lambda: defaultdict(Decimal))
for r in rows("billing_rows"):
    kwh, price, rate = D(r["kwh"]), D(r["price"]), D(r["surcharge_rate"])
    energy, surcharge, subsidy, net = (D(r[k]) for k in ("energy_charge", "surcharge", "subsidy", "net"))
    where = f"{r['cluster']} {r['interval_start']} rev {r['revision']}"
    if r["kind"] == "interval":
        check(energy == (kwh * price).quantize(Q4, ROUND_HALF_EVEN), f"{where}: energy_charge")
        check(surcharge == (kwh * rate).quantize(Q4, ROUND_HALF_EVEN), f"{where}: surcharge")
        check(0 <= subsidy <= (max_subsidy * energy).quantize(Q4, ROUND_HALF_EVEN), f"{where}: subsidy")
        check((subsidy == 0) == (r["programme"] == ""), f"{where}: programme")
    check(net == energy + surcharge - subsidy, f"{where}: net")
    key = (r["tenant"], r["cluster"], r["month"])
    s = statements[key]
    s["province"] = r["province"]
    for k in ("kwh", "energy_charge", "surcharge", "subsidy", "net"):
        s[k] += D(r[k])
    p = by_period[key + (r["period"],)]
    p["kwh"] += kwh
    p["energy_charge"] += energy
months = defaultdict(Decimal)  # (cluster, month) -> charge over the revisions
latest = {}  # (cluster, month) -> the last revision's row
for r in rows("demand_charges"):
    charge, subsidy, net = D(r["charge"]), D(r["subsidy"]), D(r["net"])
    check(net == charge - subsidy, f"{r['cluster']} {r['month']}: demand net")
    months[(r["cluster"], r["month"])] += charge
    latest[(r["cluster"], r["month"])] = r
    s = statements[(r["tenant"], r["cluster"], r["month"])]
    s["demand_charge"] += charge
    s["subsidy"] += subsidy
    s["net"] += net

TERM = re.compile(r"(\d+)/30 x (-?\d+\.\d{4}) \((\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d); "
                  r"billing_kw (-?\d+\.\d{6})\)")
for (cluster, month), r in latest.items():
    check((r["days_in_service"] == "") == (r["proration"] == ""), f"{cluster} {month}: days and proration")
    if r["proration"] == "":
        continue
    terms = r["proration"].split(" + ") if r["proration"] != "0" else []
    parsed = [TERM.fullmatch(t) for t in terms]
    check(all(parsed), f"{cluster} {month}: proration {r['proration']!r}")
    days = sum(int(m.group(1)) for m in parsed if m)
    total = sum((int(m.group(1)) * D(m.group(2)) for m in parsed if m), D(0)) / 30
    check(days == int(r["days_in_service"]), f"{cluster} {month}: {days} days in the proration")
    check(months[(cluster, month)] == total.quantize(Q4, ROUND_HALF_EVEN),
          f"{cluster} {month}: charge {months[(cluster, month)]} != proration {total}")

seen = set()
for r in rows("monthly_statements"):
    key = (r["tenant"], r["cluster"], r["month"])
    seen.add(key)
    s = statements.get(key)
    check(s is not None, f"statement {key} has no rows")
    if s is None:
        continue
    check(D(r["kwh"]) == s["kwh"], f"statement {key}: kwh")
    for k in ("energy_charge", "surcharge", "demand_charge", "subsidy", "net"):
        check(D(r[k]) == s[k].quantize(Q2, ROUND_HALF_EVEN), f"statement {key}: {k} {r[k]} != {s[k]}")
check(seen == set(statements), "a cluster-month has rows but no statement")
for r in rows("monthly_by_period"):
    p = by_period[(r["tenant"], r["cluster"], r["month"], r["period"])]
    check(D(r["kwh"]) == p["kwh"], f"by_period {r}: kwh")
    check(D(r["energy_charge"]) == p["energy_charge"].quantize(Q2, ROUND_HALF_EVEN), f"by_period {r}")
finish()
