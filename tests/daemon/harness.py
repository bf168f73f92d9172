"""Starts and stops a real tariffd daemon for the integration tests, on a
free loopback port with a private state_dir, and talks HTTP to it."""
import gzip as gzip_module
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections import defaultdict
from decimal import Decimal

import re
import time
import traceback

import checks
from checks import Timeout, skip, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = {"t1": "t1-secret", "t2": "t2-secret"}

# The columns of `tariffd price`'s CSV files, as the ledger holds them.
TS = "to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS {0}"
QUERIES = {
    "billing_rows": "SELECT id, tenant, cluster, site, province, " + TS.format("interval_start") + ", "
                    + TS.format("interval_end") + ", month, kind, revision, period, kwh, price, "
                    "surcharge_rate, energy_charge, surcharge, subsidy, net, domestic_share, "
                    "programme, tariff_version, missing_s FROM {schema}.billing_rows ORDER BY id",
    "demand_charges": "SELECT id, tenant, cluster, site, province, month, basis, max_kw, "
                      + TS.format("max_interval_start") + ", billing_kw, charge, subsidy, net, "
                      "programme, tariff_version, kind, revision, days_in_service, proration "
                      "FROM {schema}.demand_charges ORDER BY id",
}


def postgres_accepts():
    """Whether the test's PostgreSQL (PGHOST, PGPORT) accepts connections now."""
    return subprocess.run(["pg_isready", "-q"], stdin=subprocess.DEVNULL).returncode == 0


def need_postgres():
    if not os.environ.get("PGHOST"):
        skip("no PostgreSQL (PGHOST is unset; scripts/test starts one)")


def psql(db, sql, *args):
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, *args, "-c", sql],
                          check=True, capture_output=True, text=True).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, tariffd, state=None, port=None, extra="", db=None, schema="tariffd"):
        need_postgres()
        self.tariffd = tariffd
        self.dir = state or tempfile.mkdtemp(prefix="tariffd-test-")
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.proc = None
        self.schema = schema
        self.own_db = db is None
        self.db = db or f"tariffd_test_{self.port}"
        if self.own_db:
            psql("postgres", f'DROP DATABASE IF EXISTS "{self.db}"')
            psql("postgres", f'CREATE DATABASE "{self.db}"')
        conninfo = (f"host={os.environ['PGHOST']} port={os.environ.get('PGPORT', '5432')} "
                    f"user={os.environ.get('PGUSER', 'postgres')} dbname={self.db} connect_timeout=2")
        with open(os.path.join(HERE, "daemon.conf.in")) as f:
            text = f.read()
        text = (text.replace("@PORT@", str(self.port)).replace("@MPORT@", str(self.metrics_port)).replace("@STATE@", self.dir + "/state")
                .replace("@T1@", hashlib.sha256(b"t1-secret").hexdigest())
                .replace("@T2@", hashlib.sha256(b"t2-secret").hexdigest()))
        text = text.replace("[daemon]\n", "[daemon]\n" + extra)
        text += f"\n[postgres]\nconninfo = {conninfo}\nschema = {schema}\n"
        self.config = os.path.join(self.dir, "tariffd.conf")
        with open(self.config, "w") as f:
            f.write(text)

    def start(self, env=None, writable=True, connected=True):
        """Starts the daemon (env: variables to add to its environment) and
        waits until it answers /ping and, when writable, takes writes and,
        when connected and PostgreSQL accepts connections, has connected to
        it (a daemon takes writes before it connects)."""
        self.log = open(os.path.join(self.dir, "daemon.log"), "ab")
        self.proc = subprocess.Popen([self.tariffd, "-c", self.config], stderr=self.log,
                                     env={**os.environ, **env} if env else None)

        def answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"tariffd exited with {self.proc.returncode}: {self.read_log()}")
            try:
                return self.request("GET", "/ping")[0] == 204, "no 204"
            except OSError as e:
                return False, repr(e)
        wait_until(answers, 15, "tariffd answers /ping")
        if not writable:
            return self
        self.wait_writable()
        if connected and postgres_accepts():
            try:
                wait_until(self.connected, 15, "tariffd connects to PostgreSQL (or stands by)")
            except Timeout as e:
                raise Timeout(f"{e}\n{self.read_log()[-2000:]}") from None
        return self

    def connected(self):
        """(True, ...) once the daemon writes the ledger or stands by."""
        if metric(self, "tariffd_postgres_up") == 1:
            return True, "connected"
        health = json.loads(self.admin("GET", "/health")[1])
        return "standby" in health["message"], health

    def wait_writable(self, timeout=15):
        """Until /health stops saying "fail", says the daemon stands by, or fails only for rows in dead_letters while an empty
        write gets 204; raises Timeout with the last answer and the log tail
        when none of these comes in time."""
        def writable():
            try:
                health = json.loads(self.admin("GET", "/health")[1])
                if health["status"] != "fail" or "standby" in health["message"]:
                    return True, health
                if "dead_letters" not in health["message"]:
                    return False, health
                s = self.write("")[0]
            except (OSError, ValueError) as e:
                return False, repr(e)
            return s == 204, (s, health)
        try:
            wait_until(writable, timeout, "tariffd takes writes")
        except Timeout as e:
            raise Timeout(f"{e}\n{self.read_log()[-2000:]}") from None
        return self

    def read_log(self):
        with open(os.path.join(self.dir, "daemon.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def alive(self):
        return self.proc.poll() is None

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.own_db:
            psql("postgres", f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    def table(self, name):
        """The ledger's rows as dicts of text, columns as in tariffd price's CSV."""
        import csv
        import io
        sql = QUERIES.get(name, "SELECT * FROM {schema}." + name + " ORDER BY id").format(schema=self.schema)
        try:
            out = psql(self.db, f"COPY ({sql}) TO STDOUT WITH CSV HEADER")
        except subprocess.CalledProcessError:
            return []  # not migrated yet
        return list(csv.DictReader(io.StringIO(out)))

    def admin(self, method, path):
        """A request to metrics_listen: /metrics and the detailed /health."""
        return self.request(method, path, port=self.metrics_port)

    def request(self, method, path, body=None, headers=None, host="127.0.0.1", chunked=False,
                port=None):
        conn = http.client.HTTPConnection(host, port or self.port, timeout=30)
        try:
            if chunked:
                conn.putrequest(method, path)
                for k, v in (headers or {}).items():
                    conn.putheader(k, v)
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for i in range(0, len(body), 7):
                    piece = body[i:i + 7]
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.send(b"0\r\n\r\n")
            else:
                conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, data, dict(r.getheaders())
        finally:
            conn.close()

    def write(self, lines, tenant="t1", v2=True, precision="s", gzip=False, auth="token",
              chunked=False, extra_query=""):
        body = lines.encode() if isinstance(lines, str) else lines
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        token = TOKENS.get(tenant, tenant)
        if auth == "token":
            headers["Authorization"] = "Token " + token
        elif auth == "bearer":
            headers["Authorization"] = "Bearer " + token
        elif auth == "basic":
            import base64
            headers["Authorization"] = "Basic " + base64.b64encode(b"user:" + token.encode()).decode()
        if gzip:
            body = gzip_module.compress(body)
            headers["Content-Encoding"] = "gzip"
        if v2:
            path = f"/api/v2/write?org=o&bucket=b&precision={precision}{extra_query}"
        else:
            path = f"/write?db=telegraf&precision={precision}{extra_query}"
            if auth == "query":
                path += "&u=user&p=" + token
        return self.request("POST", path, body, headers, chunked=chunked)


def metric(d, name):
    """The value of a metric without labels in d's /metrics; None when absent."""
    s, data, _ = d.admin("GET", "/metrics")
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def sums(rows, key, fields):
    """Decimal sums of fields per key (a tuple of columns) over rows of text."""
    total = defaultdict(lambda: defaultdict(Decimal))
    for r in rows:
        for f in fields:
            total[tuple(r[k] for k in key)][f] += Decimal(r[f])
    return {k: dict(v) for k, v in total.items()}


def read_csv(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# Columns a ledger row's money sums over revisions (billing_rows, and
# demand_charges), as the views sum them.
MONEY = ["kwh", "energy_charge", "surcharge", "subsidy", "net", "missing_s"]
DEMAND = ["charge", "subsidy", "net"]


def price_offline(tariffd, config, text, timeout=120):
    """`tariffd price --precision s --out` on text: its billing_rows,
    demand_charges and monthly_statements CSV as lists of dicts."""
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([tariffd, "price", "-c", config, "--precision", "s", "--out", out],
                           input=text, text=True, capture_output=True, timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"tariffd price exited {r.returncode}: {r.stderr[-500:]}")
        return {n: read_csv(os.path.join(out, n + ".csv"))
                for n in ("billing_rows", "demand_charges", "monthly_statements")}


def differences(got, want, label):
    """The keys where two sums differ, each as one line."""
    out = []
    for k in sorted(set(got) | set(want)):
        if got.get(k) != want.get(k):
            out.append(f"{label} {k}: ledger {got.get(k)} != offline {want.get(k)}")
    return out


def run_scenarios(scenarios, only, daemons, restore=None, after=None):
    """Runs each (name, fn) of scenarios (all of them, or those named in
    only), then ends the test with checks.finish(). After each: an
    exception is a failure with every daemon's log tail; restore() brings
    back what the scenario stopped (PostgreSQL: the cleanup needs it); a
    sanitizer report in a daemon's log is a failure (UBSan does not stop
    the daemon); the daemons are cleaned up and daemons emptied; then
    after() runs, the daemons gone."""
    start = time.time()
    for name, fn in scenarios:
        if only and name not in only:
            continue
        t = time.time()
        print(f"scenario {name}")
        try:
            fn()
        except Exception:
            checks.fail(f"{name}: {traceback.format_exc()}")
            for d in daemons:
                print(f"  daemon on port {d.port}, log tail:\n{checks.log_tail(d)}")
        finally:
            checks.tails_shown.clear()
            try:
                if restore:
                    restore()
            except Exception as e:
                checks.fail(f"{name}: could not bring back what it stopped: {e!r}")
            for d in daemons:
                try:
                    log = d.read_log()
                    checks.daemon_check(not re.search(r"runtime error:|AddressSanitizer|LeakSanitizer", log),
                                        f"{name}: a sanitizer report in the log", d)
                except OSError:
                    pass  # never started: no log, nothing to report
                try:
                    d.cleanup()
                except Exception as e:
                    checks.fail(f"{name}: cleanup: {e!r}")
            daemons.clear()
            try:
                if after:
                    after()
            except Exception as e:
                checks.fail(f"{name}: cleanup: {e!r}")
        print(f"{name}: {time.time() - t:.1f}s")
    print(f"total {time.time() - start:.1f}s")
    checks.finish()
