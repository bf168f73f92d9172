"""Writes a day of power telemetry for the example clusters in etc/conf.d as
InfluxDB line protocol (nanosecond timestamps), the way a fleet of PDUs and
Telegraf would send it: every meter every 30 s, in arrival order.

The day is 2025-12-01 in local time (+08:00), i.e. from 2025-11-30T16:00:00Z.
Each cluster's load is its rated accelerator power x PUE 1.3 x a utilisation
that follows the day (training by night, inference peaks in the evening),
split over two or three meters. It also has what real telemetry has:
- ga-t01's meters are cumulative energy counters (field kwh), one in Wh;
- wlcb-b01's second PDU reports in watts (field w);
- qy-t01's meter b drops out for 20 minutes (longer than max_gap: missing_s);
- a retried batch (duplicates, ignored) and a late sample (an adjustment).

Deterministic: the same file every run. usage: generate.py > day.lp"""
import math
import random
import sys

START = 1764518400  # 2025-11-30T16:00:00Z = 2025-12-01 00:00 +08:00
STEP = 30
rng = random.Random(20251201)

# cluster: (rated kW of its accelerators, meters, field)
clusters = {
    "qy-a01": (3072 * 0.31, ["a", "b", "c"], "kw"),
    "qy-t01": (1024 * 0.40, ["a", "b"], "kw"),
    "ga-t01": (2048 * 0.31 + 1024 * 0.40, ["a", "b"], "kwh"),
    "wlcb-b01": (2048 * 0.31 + 1024 * 0.40, ["a", "b"], "kw"),
    "wlcb-t01": (2048 * 0.35, ["a", "b"], "kw"),
}

def utilisation(t):
    hour = ((t - START) / 3600) % 24
    evening = math.exp(-((hour - 20.5) ** 2) / 6)
    return 0.72 + 0.18 * evening + 0.04 * math.sin(hour / 24 * 2 * math.pi)

counters = {(c, m): 1_000_000.0 for c in clusters for m in clusters[c][1]}
out = sys.stdout
pending_retry = []
for step in range(0, 86400 // STEP + 1):
    t = START + step * STEP
    batch = []
    for name, (rated, meters, field) in clusters.items():
        load = rated * 1.3 * utilisation(t) * (1 + rng.uniform(-0.02, 0.02))
        for m in meters:
            kw = load / len(meters)
            if name == "qy-t01" and m == "b" and 3600 * 10 <= t - START < 3600 * 10 + 1200:
                continue  # a PDU drops out for 20 minutes
            if field == "kwh":
                counters[(name, m)] += kw * STEP / 3600
                if m == "b":
                    line = f"power,cluster={name},meter={m} wh={counters[(name, m)] * 1000:.0f}i"
                else:
                    line = f"power,cluster={name},meter={m} kwh={counters[(name, m)]:.3f}"
            elif name == "wlcb-b01" and m == "b":
                line = f"power,cluster={name},meter={m} w={kw * 1000:.0f}"
            else:
                line = f"power,cluster={name},meter={m} kw={kw:.3f}"
            batch.append(f"{line} {t * 10**9}")
    if step == 1200:
        pending_retry = batch[:]  # this batch will be sent again later
    if step == 1203:
        batch += pending_retry  # a client retry: duplicates, ignored
    if step == 1500:
        # A sample of qy-a01 meter a held up in a buffer since 12:09:45:
        # it lands between two samples already billed, an adjustment.
        late_t = START + 1459 * STEP + 15
        batch.append(f"power,cluster=qy-a01,meter=a kw=420.000 {late_t * 10**9}")
    out.write("\n".join(batch) + "\n")
