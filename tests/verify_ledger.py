"""Checks a directory of `tariffd price --out` CSV files against the money
rules of docs/design.md section 5, recomputed independently with Python's Decimal:

- every billing row of kind interval: energy_charge = round(kwh x price, 4),
  surcharge = round(kwh x surcharge_rate, 4), net = energy + surcharge -
  subsidy, 0 <= subsidy <= round(max_subsidy x energy, 4);
- every demand row: net = charge - subsidy;
- monthly_statements: the 4-decimal amounts of both files summed per
  tenant, cluster and month, rounded half-even to 0.01;
- monthly_by_period likewise per period.

usage: verify_ledger.py DIR MAX_SUBSIDY   (prints "N passed, N failed")"""
import csv
import os
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
for r in rows("demand_charges"):
    charge, subsidy, net = D(r["charge"]), D(r["subsidy"]), D(r["net"])
    check(net == charge - subsidy, f"{r['cluster']} {r['month']}: demand net")
    s = statements[(r["tenant"], r["cluster"], r["month"])]
    s["demand_charge"] += charge
    s["subsidy"] += subsidy
    s["net"] += net

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
