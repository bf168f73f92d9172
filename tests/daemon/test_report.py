"""`tariffd report` (docs/design.md section 7) on a ledger the real daemon
wrote: two days of March 2025 for tenant t1's three clusters (c3 on a
contract tariff), a yearly cap, late samples after the month closed
(adjustment rows), and tenant t2 without a row. Then:

  totals      each page's total cells (id="total-FIELD", data-value) equal
              the sum of monthly_statements for its tenant and month, to the
              fen, and so does each cluster's row and the text shown
  compute     the cost per PFLOP-hour of each cluster equals tariffd price's
              cny_per_pflop_hour on the same telemetry, and the total the
              total net over the total PFLOP-hours of tariffd price's rows;
              with a chip without pflops, or a cluster gone from the
              config, that cluster and the total have none
  subsidy     the programme row equals subsidy_by_programme (this month,
              cap left) and the cap in programme_caps
  content     tariff versions, adjustments written after the month ended
              (count), each cluster's demand peak, the contract line, the
              bilingual headings, the A4 print stylesheet
  escaping    a tenant name with < > & " ' appears escaped, never raw
  offline     no external reference: no http:// or https://, no src= or
              href=, no @import or url(, no script
  empty       t2, without rows in March, gets a page saying so, all zeros
  errors      an unknown tenant exits 2, PostgreSQL unreachable exits 1
              ("cannot connect to PostgreSQL"), usage errors exit 2
  rendering   headless Chromium renders the page to a PNG that is not blank
              (many distinct colours, a fair share of non-white pixels) and
              prints it to a PDF on A4

Needs PostgreSQL (PGHOST; scripts/test starts one) and Chromium (Debian
package chromium, which scripts/test installs): without either it exits 77.

usage: test_report.py TARIFFD   (prints "N passed, N failed")"""
import csv
import html
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks  # noqa: E402
from harness import Daemon, free_port, need_postgres, psql  # noqa: E402

need_postgres()
TARIFFD = sys.argv[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    checks.skip("no Chromium (Debian package chromium; scripts/test installs it)")

T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)
MONTH = "2025-03"
MONTH_END = 1743436800  # 2025-04-01 00:00 local
NAME = "T1 <b>&amp; \"Co\" 'x'"  # the display name of t1, to be escaped
CAP = "500"
FIELDS = ["kwh", "energy_charge", "surcharge", "demand_charge", "subsidy", "net"]
PFLOPS = {"dom": Decimal("0.78125"), "for": Decimal("0.148")}  # etc/'s 910C and H20
# Each cluster's rated PFLOPS (its inventory does not change in March).
RATED = {"c1": 3 * PFLOPS["dom"] + PFLOPS["for"], "c2": PFLOPS["dom"] + PFLOPS["for"],
         "c3": 2 * PFLOPS["dom"]}
C3 = "\n[cluster c3]\ntenant = t1\nsite = s2\ninventory = dom*2\ncontract_kw = 30\n"

EXTRA = """
[site s2]
province = p1
tariff = tc

[tariff tc @ 2025-01-01]
utc_offset = +08:00
price.valley = 0.3
price.flat = 0.6
price.peak = 0.9
surcharge = 0.02
profile.base = 00:00 valley, 08:00 flat, 17:00 peak, 22:00 flat
months = jan-dec base
demand_basis = contract
demand.kw = 35
""" + C3


def check(ok, what, d=None):
    def tail():
        if d:
            print("  daemon log tail:\n" + "\n".join("  | " + x for x in d.read_log().splitlines()[-15:]))
    return checks.check(ok, what, tail)


def query(d, sql):
    out = psql(d.db, f"COPY ({sql}) TO STDOUT WITH CSV HEADER")
    return list(csv.DictReader(io.StringIO(out)))


def samples(day, hour, n):
    """c1 (two power meters), c2 (a counter) and c3 (power, above its
    contract of 30 kW) every 20 s from local `hour` of March `day`."""
    out = []
    t0 = T0 + (day - 1) * 86400 + hour * 3600
    for i in range(n):
        t = t0 + 20 * i
        out.append(f"power,cluster=c1,meter=a kw={40 + (i * 7) % 23} {t}")
        out.append(f"power,cluster=c1,meter=b w={15000 + (i * 131) % 9000} {t}")
        out.append(f"power,cluster=c2,meter=ctr kwh={1000 + (day * 540 + i) * 0.21:.2f} {t}")
        out.append(f"power,cluster=c3 kw={28 + (i * 5) % 9} {t}")
    return out


def send(d, body, what):
    deadline = time.time() + 15
    while True:
        s, data, _ = d.write(body)
        if s != 503 or time.time() > deadline:
            break
        time.sleep(0.05)
    return check(s == 204, f"{what}: got {s} {data[:200]!r}", d)


def report(*args, config=None):
    return subprocess.run([TARIFFD, "report", *args] if config is None
                          else [TARIFFD, "report", "-c", config, *args],
                          capture_output=True, text=True, timeout=120)


def price(config, body):
    """tariffd price's billing_rows, demand_charges and monthly_statements
    (t1's March) on body, priced under config."""
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([TARIFFD, "price", "-c", config, "--precision", "s", "--out", out],
                           input=body, text=True, capture_output=True, timeout=120)
        if r.returncode:
            raise RuntimeError(f"tariffd price exited {r.returncode}: {r.stderr[-500:]}")
        files = {}
        for name in ("billing_rows", "demand_charges", "monthly_statements"):
            with open(os.path.join(out, name + ".csv"), newline="") as f:
                files[name] = [x for x in csv.DictReader(f)
                               if x["tenant"] == "t1" and x["month"] == f"{MONTH}-01"]
        return files


def per_pflop_hour(files, clusters):
    """The net of clusters over their PFLOP-hours, from tariffd price's rows:
    every revision's 4-decimal net, and RATED x the hours of each revision-0
    interval row; half-even to 4 decimals (README, "Cost per unit of
    compute")."""
    net = sum((Decimal(x["net"]) for name in ("billing_rows", "demand_charges")
               for x in files[name] if x["cluster"] in clusters), Decimal(0))
    hours = sum((RATED[x["cluster"]] * Decimal(int((datetime.fromisoformat(x["interval_end"]) -
                                                    datetime.fromisoformat(x["interval_start"]))
                                                   .total_seconds())) / 3600
                 for x in files["billing_rows"] if x["cluster"] in clusters and x["revision"] == "0"),
                Decimal(0))
    return (net / hours).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)


def value(v):
    """A data-value: its decimal, None when empty (no figure)."""
    return Decimal(v) if v else None


def cells(page, attr, value_):
    """The data-value attributes of the table row marked attr="value_", in order."""
    m = re.search(rf'<tr[^>]* {attr}="{re.escape(html.escape(value_, quote=True))}"[^>]*>(.*?)</tr>', page, re.S)
    return [value(v) for v in re.findall(r'data-value="([-0-9.]*)"', m.group(1))] if m else None


def totals(page):
    return {k: value(v) for k, v in re.findall(r'id="total-(\w+)" data-value="([-0-9.]*)"', page)}


def shown_total(page, field):
    """The text of a total cell as a reader sees it, separators removed."""
    m = re.search(rf'id="total-{field}" data-value="[^"]*">([^<]*)<', page)
    return Decimal(m.group(1).replace(",", "")) if m else None


# ---------------------------------------------------------------- PNG

def png_pixels(path):
    """(width, height, rows of bytes, bytes per pixel) of an 8-bit RGB or
    RGBA PNG, unfiltered."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), f"PNG depth {depth} colour type {colour}"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def chromium(args, workdir):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={workdir}/profile", *args],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------- the scenario

def main():
    d = Daemon(TARIFFD)
    out = tempfile.mkdtemp(prefix="tariffd-report-")
    try:
        with open(d.config) as f:
            text = f.read()
        text = text.replace("[tenant t1]\n", f"[tenant t1]\nname = {NAME}\n")
        text = text.replace("[programme pa]\n", f"[programme pa]\ncap_cny_per_year = {CAP}\n")
        for chip, pflops in PFLOPS.items():
            text = text.replace(f"[chip {chip}]\n", f"[chip {chip}]\npflops = {pflops}\n")
        with open(d.config, "w") as f:
            f.write(text + EXTRA)
        d.start()
        lines = samples(1, 7, 540) + samples(3, 16, 360)  # 07:00-10:00 on the 1st, 16:00-18:00 on the 3rd
        for i in range(0, len(lines), 240):
            send(d, "\n".join(lines[i:i + 240]) + "\n", f"batch {i // 240}")

        def closed():
            return len(query(d, f"SELECT * FROM {d.schema}.demand_charges")) == 3, "fewer than 3 demand rows"
        checks.expect_within(closed, 30, "March closes for c1, c2 and c3")
        # Late samples into closed intervals of the closed month: adjustment rows.
        late = [f"power,cluster=c1,meter=a kw=4000 {T0 + 7 * 3600 + 910}",
                f"power,cluster=c3 kw=900 {T0 + 86400 * 2 + 16 * 3600 + 1810}"]
        send(d, "\n".join(late) + "\n", "late samples")

        def adjusted():
            n = query(d, f"SELECT count(*) AS n FROM {d.schema}.demand_charges WHERE kind = 'adjustment'")
            return int(n[0]["n"]) == 2, n
        checks.expect_within(adjusted, 30, "the late samples adjust the closed month of c1 and c3")
        check(d.stop() == 0, "SIGTERM exits 0", d)

        r = report("--month", MONTH, "--out", out, config=d.config)
        check(r.returncode == 0, f"tariffd report exits 0: {r.returncode} {r.stderr}")
        pages = {t: os.path.join(out, f"{t}-{MONTH}.html") for t in ("t1", "t2")}
        check(all(os.path.exists(p) for p in pages.values()) and sorted(os.listdir(out)) ==
              sorted(os.path.basename(p) for p in pages.values()),
              f"one page per tenant: {os.listdir(out)}")
        check(r.stdout.splitlines() == [pages["t1"], pages["t2"] + " (no ledger rows in this month)"],
              f"stdout names the pages: {r.stdout!r}")
        with open(pages["t1"], encoding="utf-8") as f:
            page = f.read()
        with open(pages["t2"], encoding="utf-8") as f:
            empty = f.read()

        # totals
        view = query(d, f"SELECT * FROM {d.schema}.monthly_statements WHERE tenant = 't1' "
                        f"AND month = '{MONTH}-01' ORDER BY cluster")
        want = {k: sum((Decimal(v[k]) for v in view), Decimal(0)) for k in FIELDS}
        got = {k: v for k, v in totals(page).items() if k in FIELDS}
        check(len(view) == 3 and got == want, f"t1's totals equal monthly_statements: page {got}, view {want}")
        check(all(shown_total(page, k) == want[k].quantize(Decimal("0.001") if k == "kwh" else Decimal("0.01"))
                  for k in FIELDS), "the totals as shown (kWh to 3 decimals, CNY to the fen)")
        for v in view:
            got = cells(page, "data-cluster", v["cluster"])
            check(got[:len(FIELDS)] == [Decimal(v[k]) for k in FIELDS],
                  f"cluster {v['cluster']}: page {got}, view {v}")

        # compute: tariffd price on the same telemetry, in time order (the
        # late samples are then on time, and every revision of the ledger
        # sums to what tariffd price writes once)
        body = "\n".join(sorted(lines + late, key=lambda x: int(x.rsplit(" ", 1)[1]))) + "\n"

        def compute(page_text, files, what):
            """Each cluster's figure on the page against tariffd price's
            cny_per_pflop_hour; returns the page's figures and total."""
            figures = {c: cells(page_text, "data-cluster", c)[len(FIELDS)] for c in RATED}
            off = {x["cluster"]: value(x["cny_per_pflop_hour"]) for x in files["monthly_statements"]}
            check(figures == off, f"{what}: the cost per PFLOP-hour equals tariffd price's: page {figures}, "
                  f"tariffd price {off}")
            return figures, totals(page_text).get("cny_per_pflop_hour", "missing")

        with open(d.config) as f:
            rated_text = f.read()
        files = price(d.config, body)
        figures, total = compute(page, files, "every chip rated")
        for c in RATED:
            check(figures[c] is not None and figures[c] == per_pflop_hour(files, {c}),
                  f"{c}: {figures[c]} is its net over its PFLOP-hours in tariffd price's rows "
                  f"({per_pflop_hour(files, {c})})")
        want_total = per_pflop_hour(files, set(RATED))
        check(total == want_total, f"the total is the total net over the total PFLOP-hours: page {total}, "
              f"tariffd price's rows {want_total}")
        check(shown_total(page, "cny_per_pflop_hour") == want_total, "the total as shown (4 decimals)")

        # The chip "for" without pflops: c1 and c2 have none, c3 keeps its
        # own, the total has none.
        partial = os.path.join(out, "partial.conf")
        with open(partial, "w") as f:
            f.write(rated_text.replace(f"pflops = {PFLOPS['for']}\n", ""))
        r = report("--month", MONTH, "--tenant", "t1", "--out", out + "/partial", config=partial)
        with open(os.path.join(out, "partial", f"t1-{MONTH}.html"), encoding="utf-8") as f:
            part = f.read()
        figures, total = compute(part, price(partial, body), "a chip without pflops")
        check(r.returncode == 0 and figures["c1"] is None and figures["c2"] is None and
              figures["c3"] is not None and total is None and
              re.search(r'id="total-cny_per_pflop_hour" data-value="">—<', part),
              f"c1 and c2 (a chip without pflops) and the total have none, c3 has {figures['c3']}: "
              f"{figures}, total {total!r}, {r.stderr!r}")

        # c3 gone from the config: its rating is unknown, so it and the
        # total have none; c1 and c2 keep theirs.
        gone = os.path.join(out, "gone.conf")
        with open(gone, "w") as f:
            f.write(rated_text.replace(C3, ""))
        r = report("--month", MONTH, "--tenant", "t1", "--out", out + "/gone", config=gone)
        ok = r.returncode == 0 and C3 in rated_text
        with open(os.path.join(out, "gone", f"t1-{MONTH}.html"), encoding="utf-8") as f:
            gone_page = f.read()
        got = {c: cells(gone_page, "data-cluster", c)[len(FIELDS)] for c in RATED}
        want_gone = {c: per_pflop_hour(files, {c}) for c in ("c1", "c2")} | {"c3": None}
        check(ok and got == want_gone and totals(gone_page).get("cny_per_pflop_hour", "missing") is None,
              f"c3, no longer in the config, and the total have none: {got}, "
              f"total {totals(gone_page).get('cny_per_pflop_hour', 'missing')!r}, {r.stderr!r}")

        # subsidy
        byp = query(d, f"SELECT * FROM {d.schema}.subsidy_by_programme WHERE tenant = 't1' "
                       f"AND month = '{MONTH}-01'")
        got = cells(page, "data-programme", "pa")
        check(len(byp) == 1 and got == [Decimal(byp[0]["subsidy"]), Decimal(byp[0]["subsidy"]),
                                        Decimal(CAP), Decimal(byp[0]["cap_remaining"])],
              f"programme pa: page {got}, subsidy_by_programme {byp}")

        # content
        versions = {x["tariff_version"] for x in query(
            d, f"SELECT DISTINCT tariff_version FROM {d.schema}.billing_rows WHERE tenant = 't1'")}
        check(len(versions) == 2 and all(html.escape(v) in page for v in versions),
              f"the page names the tariff versions {versions}")
        adj = query(d, f"SELECT (SELECT count(*) FROM {d.schema}.billing_rows WHERE tenant = 't1' AND "
                       f"kind = 'adjustment' AND created_at >= to_timestamp({MONTH_END})) + "
                       f"(SELECT count(*) FROM {d.schema}.demand_charges WHERE tenant = 't1' AND "
                       f"kind = 'adjustment' AND created_at >= to_timestamp({MONTH_END})) AS n")[0]["n"]
        shown = re.search(r'id="adjustments" data-rows="(\d+)"', page)
        check(int(adj) >= 4 and shown and shown.group(1) == adj,
              f"adjustments after the month ended: page {shown and shown.group(1)}, ledger {adj}")
        demand = query(d, f"SELECT DISTINCT ON (cluster) cluster, max_kw FROM {d.schema}.demand_charges "
                          "ORDER BY cluster, revision DESC")
        for row in demand:
            kw = f"{Decimal(row['max_kw']).quantize(Decimal('0.1')):,}"
            check(f"peak {kw} kW" in page, f"{row['cluster']}'s load curve marks its peak {kw} kW")
        check("contract 30 kW" in page and "105% " in page, "c3's curve has its contract line and threshold")
        check(page.count("<svg") == 5, f"five charts (daily, subsidy, three load curves): {page.count('<svg')}")
        for want_text in ("月度电费账单", "Monthly statement", "账单明细", "Statement", "计算方法",
                     "@page { size: A4", "@media print"):
            check(want_text in page, f"the page has {want_text!r}")

        # escaping
        check(NAME not in page and "<b>&amp;" not in page and
              html.escape(NAME, quote=True).replace("&#x27;", "&#39;") in page,
              "the tenant's name is escaped")

        # offline
        for p, name in ((page, "t1"), (empty, "t2")):
            low = p.lower()
            found = [s for s in ("http://", "https://", "src=", "href=", "@import", "url(", "<script",
                                 "<link", "<iframe", "<img") if s in low]
            check(not found, f"{name}'s page refers to nothing outside: found {found}")

        # empty
        check('id="no-rows"' in empty and totals(empty) == {k: Decimal(0) for k in FIELDS} |
              {"cny_per_pflop_hour": None} and "<svg" not in empty,
              f"t2's page says it has no rows, with zero totals and no cost per PFLOP-hour: {totals(empty)}")

        # errors
        r = report("--month", MONTH, "--tenant", "nobody", "--out", out, config=d.config)
        check(r.returncode == 2 and 'unknown tenant "nobody"' in r.stderr,
              f"an unknown tenant exits 2: {r.returncode} {r.stderr!r}")
        r = report("--month", MONTH, "--tenant", "t1", "--tenant", "t1", "--out", out + "/t1only",
                   config=d.config)
        check(r.returncode == 0 and os.listdir(out + "/t1only") == [f"t1-{MONTH}.html"],
              f"--tenant t1 writes t1's page only: {r.returncode} {r.stderr!r}")
        down = os.path.join(out, "down.conf")
        with open(down, "w") as f:
            f.write(re.sub(r"(?m)^conninfo = .*$",
                           f"conninfo = host=127.0.0.1 port={free_port()} dbname=x connect_timeout=2", text))
        r = report("--month", MONTH, "--out", out + "/down", config=down)
        check(r.returncode == 1 and r.stderr.startswith("tariffd report: cannot connect to PostgreSQL: "),
              f"PostgreSQL unreachable exits 1: {r.returncode} {r.stderr!r}")
        for args, what in ((["--month", MONTH], "no --out"), (["--out", out], "no --month"),
                           (["--month", "2025-3", "--out", out], "a month not YYYY-MM"),
                           (["--month", "2025-13", "--out", out], "month 13")):
            r = report(*args, config=d.config)
            check(r.returncode == 2, f"{what} is a usage error (2): {r.returncode} {r.stderr!r}")

        # rendering
        png = os.path.join(out, "t1.png")
        r = chromium([f"--screenshot={png}", "--window-size=1240,1754", "file://" + pages["t1"]], out)
        check(r.returncode == 0 and os.path.exists(png), f"Chromium takes a screenshot: {r.stderr[-500:]}")
        if os.path.exists(png):
            w, h, rows, bpp = png_pixels(png)
            colours = set()
            white = 0
            for row in rows:
                for x in range(0, len(row), bpp):
                    px = row[x:x + 3]
                    colours.add(px)
                    white += px == b"\xff\xff\xff"
            share = 1 - white / (w * h)
            check((w, h) == (1240, 1754) and len(colours) > 50 and share > 0.03,
                  f"the screenshot is not blank: {w}x{h}, {len(colours)} colours, {share:.1%} not white")
        pdf = os.path.join(out, "t1.pdf")
        r = chromium([f"--print-to-pdf={pdf}", "--no-pdf-header-footer", "file://" + pages["t1"]], out)
        ok = r.returncode == 0 and os.path.exists(pdf)
        boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([0-9.]+) ([0-9.]+)\s*\]", open(pdf, "rb").read()) if ok else []
        check(ok and boxes and all(abs(float(a) - 595.3) < 1 and abs(float(b) - 841.9) < 1 for a, b in boxes),
              f"printed on A4 (595x842 pt): {boxes[:3]} {r.stderr[-300:] if not ok else ''}")
    finally:
        d.cleanup()
        shutil.rmtree(out, ignore_errors=True)


try:
    main()
except Exception:
    import traceback
    checks.fail(traceback.format_exc())
checks.finish()
