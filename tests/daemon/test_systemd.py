"""The daemon as systemd runs it: the sd_notify sequence on a real
NOTIFY_SOCKET (start, reload with a good and a bad config, watchdog pings,
stop), SIGHUP while telemetry streams (no request fails, no sample lost),
socket activation (LISTEN_FDS/LISTEN_PID), and /metrics checked against
what was sent.

usage: test_systemd.py TARIFFD   (prints "N passed, N failed")"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, expect_within, finish  # noqa: E402
from harness import Daemon  # noqa: E402

tariffd = sys.argv[1]
T0 = 1740758400  # 2025-03-01 00:00 local


def lines(cluster, start, n, step=60):
    return "".join(f"power,cluster={cluster} kw=40 {start + step * i}\n" for i in range(n))


class Notify:
    """An AF_UNIX datagram socket standing in for systemd's."""

    def __init__(self):
        self.path = tempfile.mktemp(prefix="tariffd-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []

    def until(self, pred, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred(self.messages):
                return True
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return pred(self.messages)

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def has(word):
    return lambda ms: any(word in m for m in ms)


# 1. The notification sequence, with the watchdog on.
n = Notify()
d = Daemon(tariffd)
env_backup = dict(os.environ)
os.environ["NOTIFY_SOCKET"] = n.path
os.environ["WATCHDOG_USEC"] = "400000"
os.environ["WATCHDOG_PID"] = ""
try:
    # WATCHDOG_PID must be the daemon's pid; sd_watchdog_enabled also
    # accepts it unset, so leave it out.
    del os.environ["WATCHDOG_PID"]
    d.start()
    check(n.until(has("READY=1")), f"READY=1 at start: {n.messages}")
    check(n.until(lambda ms: sum("WATCHDOG=1" in m for m in ms) >= 2, 3),
          f"watchdog pings every 200 ms: {n.messages}")
    check(n.until(has("STATUS="), 8), "STATUS= sent")
    n.messages.clear()
    d.proc.send_signal(signal.SIGHUP)
    check(n.until(lambda ms: any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for m in ms)
                  and any("READY=1" in m for m in ms)), f"good reload: {n.messages}")
    check("reloaded" in d.read_log(), "a good reload is logged")
    # A bad config: rejected, the old one stays, READY=1 all the same.
    good = open(d.config).read()
    with open(d.config, "w") as f:
        f.write(good.replace("rate = 0.5", "rate = 0.9"))
    n.messages.clear()
    d.proc.send_signal(signal.SIGHUP)
    check(n.until(lambda ms: any("RELOADING=1" in m for m in ms) and any("READY=1" in m for m in ms)),
          f"bad reload still ends in READY=1: {n.messages}")
    # READY=1 comes after the log lines: they are there by now.
    log = d.read_log()
    check(re.search(r"<3>reload: .*tariffd.conf:\d+: rate 0.9 is above max_subsidy 0.5", log) is not None
          and "reload rejected" in log, f"bad reload logged with FILE:LINE: {log[-600:]}")
    check(d.write(lines("c1", T0, 3))[0] == 204, "the old config still serves")
    with open(d.config, "w") as f:
        f.write(good)
    n.messages.clear()
    d.proc.send_signal(signal.SIGTERM)
    check(n.until(has("STOPPING=1")), f"STOPPING=1: {n.messages}")
    check(d.proc.wait(timeout=30) == 0, "exit 0 after SIGTERM")
finally:
    os.environ.clear()
    os.environ.update(env_backup)
    n.close()
    d.cleanup()

# 2. SIGHUP several times while telemetry streams: no request fails, no
# sample is lost (kWh in the ledger equal the data's).
d = Daemon(tariffd).start()
try:
    errors = []
    stop = threading.Event()

    def hupper():
        while not stop.wait(0.15):  # a reload every 150 ms: the load under test
            d.proc.send_signal(signal.SIGHUP)

    t = threading.Thread(target=hupper)
    t.start()
    for k in range(60):  # an hour of c1, a batch a minute of 60 samples a second apart
        r = d.write(lines("c1", T0 + 60 * k, 60, step=1))
        if r[0] != 204:
            errors.append(r[:2])
        time.sleep(0.02)  # the client's pace, not a wait
    stop.set()
    t.join()
    check(not errors, f"every write during reloads answered 204: {errors[:3]}")
    check(d.read_log().count("reloaded") >= 3, "several reloads happened")

    # 40 kW from 00:00 to 00:59:59: 4 intervals; the last one ends a second
    # short: 3 x 10 + 40 x (899/3600) = 39.988889 kWh.
    def all_billed():
        rows = d.table("billing_rows")
        total = sum(float(r["kwh"]) for r in rows)
        return len(rows) >= 4 and abs(total - 39.988889) < 1e-6, f"{total} kWh in {len(rows)} rows"
    expect_within(all_billed, 10, "no sample lost across reloads", every=0.2)
    d.stop()
finally:
    d.cleanup()

# 3. Socket activation: a pre-bound socket passed as fd 3.
d = Daemon(tariffd)
try:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    fd = lsock.detach()
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    log = open(os.path.join(d.dir, "daemon.log"), "ab")
    # LISTEN_PID must be the daemon's own pid: set it from the shell that execs it.
    d.proc = subprocess.Popen(["sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -c "$1"', tariffd, d.config],
                              pass_fds=(3,), stderr=log)
    os.close(3)
    d.port = port

    def answers():
        try:
            return d.request("GET", "/ping")[0] == 204, "no 204"
        except OSError as e:
            return False, repr(e)
    expect_within(answers, 10, "answers on the inherited socket", every=0.1)
    d.wait_writable()
    check("serving inherited socket 3" in d.read_log(), "says it serves the inherited socket")
    r = d.write(lines("c2", T0, 2))
    check(r[0] == 204, f"writes over the inherited socket: {r[:2]} {d.read_log()[-300:]}")
    d.stop()
finally:
    d.cleanup()

# 4. /metrics against what was sent.
d = Daemon(tariffd).start()
try:
    d.write(lines("c1", T0, 20))            # 20 samples
    d.write(lines("c1", T0, 20))            # 20 duplicates
    d.write("power,cluster=c1 kw=x 1\n")    # 400
    d.write(lines("c1", T0, 1), tenant="t2")  # 403
    d.request("GET", "/ping")
    s, data, h = d.admin("GET", "/metrics")
    text = data.decode()
    check(s == 200 and h.get("Content-Type", "").startswith("text/plain"), "metrics answer")

    def value(name):
        m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    check(value("tariffd_samples_accepted_total") == 20, "accepted 20")
    check(value("tariffd_samples_duplicate_total") == 20, "duplicates 20")
    check(value('tariffd_write_requests_rejected_total{code="400"}') == 1, "one 400")
    check(value('tariffd_write_requests_rejected_total{code="403"}') == 1, "one 403")
    check(value('tariffd_http_requests_total{endpoint="/api/v2/write",code="204"}') == 2, "two 204")
    check(value('tariffd_http_requests_total{endpoint="/ping",code="204"}') >= 1, "ping counted")
    check(value("tariffd_write_duration_seconds_count") == 2, "latency histogram counts writes")
    check(value("tariffd_postgres_up") == 1, "postgres up")
    for line in text.splitlines():
        if not line.startswith("#") and line:
            check(re.match(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$', line)
                  is not None, f"exposition line: {line}")
            break
    d.stop()
finally:
    d.cleanup()

finish()
