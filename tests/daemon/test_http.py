"""The daemon over real HTTP: every endpoint and status code, every auth
form, gzip (and a gzip bomb), body limits, malformed lines with their exact
messages, cross-tenant writes, atomic batches, duplicates, out-of-order
batches and late samples (adjustment rows in the ledger).

usage: test_http.py TARIFFD   (prints "N passed, N failed")"""
import gzip
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, wait_until  # noqa: E402
from harness import Daemon, metric  # noqa: E402


def expect(resp, status, body=None, what=""):
    s, data, headers = resp
    ok = s == status and (body is None or json.loads(data) == body)
    if s >= 400 and s != 413:
        ok = ok and headers.get("Content-Type") == "application/json"
    check(ok, f"{what}: got {s} {data[:200]!r}, want {status} {body}")


T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)


def lines(cluster, start, minutes, kw=40, meter="main", field="kw"):
    return "".join(f"power,cluster={cluster},meter={meter} {field}={kw} {start + 60 * m}\n"
                   for m in range(minutes))


def wait_rows(d, pred, what, timeout=10):
    """The ledger's billing rows once pred(rows) holds; raises Timeout."""
    def probe():
        rows = d.table("billing_rows")
        return pred(rows), rows
    return wait_until(probe, timeout, what, every=0.1)


d = Daemon(sys.argv[1]).start()
try:
    # Endpoints.
    s, data, h = d.request("GET", "/ping")
    check(s == 204 and h.get("X-Influxdb-Version", "").startswith("tariffd-"), "ping")
    s, data, h = d.request("HEAD", "/ping")
    check(s == 204, "ping HEAD")
    s, data, h = d.admin("GET", "/health")
    check(s == 200 and json.loads(data)["status"] == "pass" and
          h["Content-Type"] == "application/json", f"health {s} {data!r}")
    for method in ("GET", "POST"):
        s, data, h = d.request(method, "/query?q=CREATE+DATABASE+%22telegraf%22")
        check(s == 200 and json.loads(data) == {"results": [{"statement_id": 0}]}, "query")
    expect(d.request("GET", "/nope"), 404, {"error": "no such endpoint: /nope"}, "404 v1")
    expect(d.request("GET", "/api/v2/nope"), 404,
           {"code": "not found", "message": "no such endpoint: /api/v2/nope"}, "404 v2")
    s, data, h = d.request("GET", "/api/v2/write")
    check(s == 405 and h.get("Allow") == "POST" and json.loads(data)["code"] == "method not allowed",
          f"405 {s} {data!r}")
    s, data, h = d.request("DELETE", "/ping")
    check(s == 405 and h.get("Allow") == "GET, HEAD", f"405 ping {s}")
    # Over IPv6 too: the daemon listens on [::1] (daemon.conf.in), so it
    # could not have started without an IPv6 loopback.
    s, _, _ = d.request("GET", "/ping", host="::1")
    check(s == 204, "ping over IPv6")

    # Auth.
    one = f"power,cluster=c1 kw=40 {T0 + 3600}\n"
    expect(d.write(one, auth="none"), 401, {"code": "unauthorized", "message": "unauthorized access"},
           "no token v2")
    expect(d.write(one, auth="none", v2=False), 401, {"error": "unauthorized access"}, "no token v1")
    expect(d.write(one, tenant="wrong"), 401, None, "wrong token")
    for auth in ("token", "bearer", "basic"):
        expect(d.write(one, auth=auth), 204, None, f"auth {auth}")
    expect(d.write(one, auth="query", v2=False), 204, None, "v1 p=")
    expect(d.write(one, auth="query", v2=True), 401, None, "p= is v1 only")

    # Cross-tenant, and the first offending line decides.
    expect(d.write(one, tenant="t2"), 403,
           {"code": "forbidden", "message": 'line 1: cluster "c1" belongs to another tenant'}, "403")
    expect(d.write(f"power,cluster=zz kw=1 {T0}\n" + one, tenant="t2"), 400,
           {"code": "invalid", "message": 'line 1: unknown cluster "zz"'}, "400 before 403")
    expect(d.write(one, tenant="t2", v2=False), 403,
           {"error": 'line 1: cluster "c1" belongs to another tenant'}, "403 v1")

    # Malformed lines, each with its message.
    bad = [
        (f"power,cluster=c1 kw=4x0 {T0}", 'line 1: invalid number "4x0" in field "kw"'),
        (f"power kw=40 {T0}", 'line 1: missing tag "cluster"'),
        (f"power,cluster=c1 kw=1,kwh=2 {T0}", 'line 1: fields "kw" and "kwh" both given; send one'),
        (f"power,cluster=c1 kw=-1 {T0}", 'line 1: field "kw" is negative'),
        (f"power,cluster=c1 kw=\"x\" {T0}", 'line 1: field "kw" is not a number'),
        (f"power,cluster=c1 other=1 {T0}", "line 1: no field kw, w, kwh or wh"),
        (f"power,cluster=c1 kw=1 12x", 'line 1: timestamp "12x" is not an integer'),
        (f"power,cluster=c1 kw=1 99999999999", 'line 1: timestamp "99999999999" out of range for precision "s"'),
        (f"power,cluster= kw=1 {T0}", 'line 1: expected value for tag "cluster", found " "'),
        (f"\n# comment\npower,cluster=c1 kw=1 {T0}\npower,cluster=c1 kw {T0}",
         'line 4: expected "=" after field key "kw", found " "'),
    ]
    for body, msg in bad:
        expect(d.write(body + "\n"), 400, {"code": "invalid", "message": msg}, f"bad line {body!r}")
    expect(d.write(one, v2=False, precision="x"), 400,
           {"error": 'unknown precision "x" (expected n, u, ms, s, m or h)'}, "bad precision v1")
    expect(d.write(one, precision="h"), 400,
           {"code": "invalid", "message": 'unknown precision "h" (expected ns, us, ms or s)'},
           "v2 has no h")
    expect(d.write(f"power,cluster=c1 kw=40 {(T0 + 7200) // 60}\n", v2=False, precision="m"), 204,
           None, "v1 precision m")
    expect(d.write(f"power,cluster=c1,meter=ctr kw=1 {T0 + 60}\npower,cluster=c1,meter=ctr kwh=1 {T0 + 120}\n"),
           400, {"code": "invalid", "message":
                 'line 2: meter "ctr" of cluster "c1" sends both power and an energy counter in this request'},
           "kind switch in a batch")

    # Bodies: empty, comments, other measurements, unknown parameters, gzip, chunked.
    expect(d.write(""), 204, None, "empty body")
    expect(d.write("# only a comment\n\n"), 204, None, "comments only")
    expect(d.write(f"cpu,host=a usage=1 {T0}\n"), 204, None, "other measurement")
    expect(d.write(one, extra_query="&rp=autogen&consistency=any"), 204, None, "unknown params")
    expect(d.write(one, gzip=True), 204, None, "gzip")
    expect(d.write(one, chunked=True), 204, None, "chunked")
    bomb = gzip.compress(b"#" * (8 << 20))
    s, data, h = d.request("POST", "/api/v2/write?precision=s", bomb,
                           {"Authorization": "Token t1-secret", "Content-Encoding": "gzip"})
    check(s == 413 and json.loads(data)["code"] == "request too large", f"gzip bomb {s} {data!r}")
    # Larger than max_body: libevent answers 413 from the headers alone.
    import socket
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v2/write?precision=s HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Token t1-secret\r\nContent-Length: 2097152\r\n\r\n")
        status_line = sock.recv(4096).split(b"\r\n")[0]
    check(status_line.startswith(b"HTTP/1.1 413"), f"body over max_body {status_line!r}")
    s, data, h = d.request("POST", "/api/v2/write?precision=s", b"not gzip",
                           {"Authorization": "Token t1-secret", "Content-Encoding": "gzip"})
    check(s == 400 and json.loads(data)["message"] == "request body is not valid gzip", "bad gzip")

    # Atomic: a batch whose last line is bad changes nothing. c2's samples
    # for 00:00-00:14 are refused, then 00:15-00:31 accepted: no row for 00:00.
    expect(d.write(lines("c2", T0, 15) + f"power,cluster=c2 kw=bad {T0 + 900}\n"), 400, None,
           "partial batch refused")
    # Duplicates: the same batch twice; out of order: reversed.
    batch = lines("c2", T0 + 900, 17)
    expect(d.write(batch), 204, None, "batch")
    expect(d.write(batch), 204, None, "retry of the batch")
    expect(d.write("".join(reversed(batch.splitlines(True)))), 204, None, "reversed batch")
    rows = wait_rows(d, lambda rs: any(r["cluster"] == "c2" and r["interval_start"] == "2025-02-28T16:30:00Z"
                                       for r in rs), "c2's 00:30 row")
    c2 = {(r["interval_start"], r["revision"]): r for r in rows if r["cluster"] == "c2"}
    check(("2025-02-28T16:00:00Z", "0") not in c2, f"refused batch left a row: {sorted(c2)}")
    first = c2.get(("2025-02-28T16:15:00Z", "0"))
    check(first is not None and first["kwh"] == "10.000000" and first["energy_charge"] == "2.5000",
          f"c2 00:15 row {first}")
    # A late sample in the closed 00:15 interval: an adjustment.
    expect(d.write(f"power,cluster=c2 kw=100 {T0 + 900 + 450}\n"), 204, None, "late sample")
    rows = wait_rows(d, lambda rs: any(r["cluster"] == "c2" and r["revision"] == "1" for r in rs),
                     "c2's adjustment row")
    adj = [r for r in rows if r["cluster"] == "c2" and r["revision"] == "1"]
    # 00:07:00 and 00:08:00 at 40 kW, 00:07:30 now 100: +2 x (40+100)/2 x 0.5/60 - 40 x 1/60 = +0.5 kWh
    check(len(adj) == 1 and adj[0]["kind"] == "adjustment" and adj[0]["kwh"] == "0.500000" and
          adj[0]["energy_charge"] == "0.1250", f"adjustment {adj}")
    check(d.alive(), "daemon survived the bad input")
    check(d.stop() == 0, "SIGTERM exits 0")
    log = d.read_log()
    check("<5>ready" in log and "<5>stopped" in log, f"log lines: {log[-500:]}")
    check("t1-secret" not in log and "t2-secret" not in log, "no token in the log")
finally:
    d.cleanup()

# A torn journal tail (a crash in the middle of a write) is cut, and logged
# with its place, at the next start; what was acknowledged before it stays.
d = Daemon(sys.argv[1]).start()
try:
    expect(d.write(lines("c1", T0, 20)), 204, None, "before the tear")
    d.kill()
    seg_dir = os.path.join(d.dir, "state", "journal")
    last = sorted(os.listdir(seg_dir))[-1]
    with open(os.path.join(seg_dir, last), "ab") as f:
        f.write(b"\x40\x00\x00\x00\x12\x34")  # half a record header
    d.start()
    log = d.read_log()
    check("journal: cut a torn or corrupt tail at offset" in log, f"torn tail logged: {log[-400:]}")
    expect(d.write(lines("c1", T0 + 1200, 20)), 204, None, "after the tear")
    rows = wait_rows(d, lambda rs: len([r for r in rs if r["cluster"] == "c1"]) >= 3, "c1's rows after the tear")
    check(any(r["interval_start"] == "2025-02-28T16:00:00Z" and r["kwh"] == "10.000000" for r in rows),
          f"samples from before the tear are billed: {rows}")
    d.stop()
finally:
    d.cleanup()

# Backpressure: the journal after the last checkpoint (not yet known to be
# in PostgreSQL) over max_backlog: writes get 503 with Retry-After and
# change nothing. With PostgreSQL healthy the checkpoints keep it under the
# limit however long the daemon runs; with PostgreSQL down it grows.
PG_CTL = os.environ.get("TARIFFD_PG_CTL")
d = Daemon(sys.argv[1], extra="max_backlog = 2MiB\n")
try:
    d.start()
    big = "m" * 200  # 900 samples of it: a record of 0.2 MiB
    for k in range(20):  # 4 MiB in all, twice max_backlog, under a healthy ledger:
        body = lines("c1", T0 + 60 * 900 * k, 900, meter=big)  # a burst may be told to
        wait_until(lambda: ((s := d.write(body)[0]) == 204, s), 30,  # retry, never for long
                   f"write {k} under a healthy ledger")
    if PG_CTL:
        # The last checkpoint written (it waits for the ledger to commit what
        # it covers): the backlog starts from under half the limit, so the
        # first writes fit.
        wait_until(lambda: ((b := metric(d, "tariffd_journal_backlog_bytes")) < 1024 * 1024, b), 30,
                   "a checkpoint covers the backlog before PostgreSQL goes down")
        subprocess.run(f"{PG_CTL} -m fast stop", shell=True, check=True, capture_output=True)
        try:
            statuses = [d.write(lines("c1", T0 + 60 * 900 * (20 + k), 900, meter=big))[0]
                        for k in range(16)]
            check(statuses[0] == 204 and 503 in statuses, f"PostgreSQL down: 204 until the backlog "
                  f"passes max_backlog, then 503: {statuses}")
            s, data, h = d.write(lines("c1", T0 + 60 * 900 * 40, 5))
            check(s == 503 and h.get("Retry-After") == "1" and json.loads(data)["code"] == "unavailable",
                  f"503 over max_backlog: {s} {data!r} {h}")
            s, data, h = d.admin("GET", "/health")
            check(s == 503 and json.loads(data)["status"] == "fail" and
                  "max_backlog" in json.loads(data)["message"], f"health says why: {s} {data!r}")
        finally:
            subprocess.run(f"{PG_CTL} start", shell=True, check=True, capture_output=True)
        wait_until(lambda: (d.write("")[0] == 204, "still 503"), 30,
                   "writes taken again once PostgreSQL is back and a checkpoint covers the backlog")
    d.stop()
finally:
    d.cleanup()
finish()
