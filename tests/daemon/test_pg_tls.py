"""The ledger over TLS with SCRAM, as an operator configures it through
`conninfo` alone (README, "[postgres]"). A throwaway PostgreSQL of its own:
a CA and a server certificate for localhost made with the openssl CLI,
`ssl = on`, listening on 127.0.0.1 only, and a pg_hba.conf whose only TCP
line is `hostssl all all 127.0.0.1/32 scram-sha-256`; a role with a
password (stored as SCRAM).

  tls        conninfo host=localhost ... password=... sslmode=verify-full
             sslrootcert=CA: samples written over HTTP become rows; the
             daemon's session is TLS (pg_stat_ssl) and the server logged it
             as authenticated by scram-sha-256; psql without TLS is refused
  wrong CA   sslrootcert names another CA: writes still get 204, the log
             says "certificate verify failed" (also when an earlier host of
             the conninfo failed otherwise), so does the detailed /health on
             metrics_listen (a tenant's /health only warns), the rows wait
  passfile   the right CA again, the password in a passfile instead: the
             rows that waited arrive, and every write is billed

The daemon's log never shows the password, in any phase.

Skips (77) unless root (initdb runs as the postgres OS user) with
PostgreSQL's server binaries and the openssl CLI. It ignores PGHOST: the
server is its own.

usage: test_pg_tls.py TARIFFD   (prints "N passed, N failed")"""
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, fail, finish, skip, wait_until  # noqa: E402

T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)
TARIFFD = sys.argv[1]

bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
if os.geteuid() != 0:
    skip("not root: initdb runs as the postgres OS user through runuser")
if not bindirs or not shutil.which("openssl"):
    skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin) or no openssl CLI")
BIN = bindirs[-1]

import harness  # noqa: E402  (after the skips: it needs nothing, but reads the environment)


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def as_postgres(*cmd):
    return run("runuser", "-u", "postgres", "--", *cmd)


def make_ca(d, name):
    key, pem = f"{d}/{name}.key", f"{d}/{name}.pem"
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", pem, "-days", "2", "-subj", f"/CN=tariffd test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    return key, pem


def make_server_cert(d, ca_key, ca_pem):
    """server.crt for localhost (and 127.0.0.1), signed by the CA."""
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr", "-subj", "/CN=localhost")
    with open(f"{d}/server.ext", "w") as f:
        f.write("subjectAltName = DNS:localhost, IP:127.0.0.1\n"
                "basicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature, keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n")
    run("openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", ca_pem, "-CAkey", ca_key,
        "-CAcreateserial", "-days", "2", "-out", f"{d}/server.crt", "-extfile", f"{d}/server.ext")


class Server:
    """A PostgreSQL cluster on 127.0.0.1:port with TLS, run as postgres."""

    def __init__(self, d):
        self.d, self.port = d, harness.free_port()
        as_postgres(f"{BIN}/initdb", "-D", f"{d}/data", "-U", "postgres", "-A", "trust")
        # Local superuser for the test's own psql; over TCP only TLS with
        # SCRAM, nothing else.
        with open(f"{d}/data/pg_hba.conf", "w") as f:
            f.write("local all all trust\n"
                    "hostssl all all 127.0.0.1/32 scram-sha-256\n")
        opts = (f"-p {self.port} -k {d} -c listen_addresses=127.0.0.1 -c ssl=on "
                f"-c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key "
                f"-c password_encryption=scram-sha-256 -c log_connections=on -c fsync=off")
        self.ctl = [f"{BIN}/pg_ctl", "-D", f"{d}/data", "-l", f"{d}/server.log", "-w", "-o", opts]
        as_postgres(*self.ctl, "start")

    def stop(self):
        subprocess.run(["runuser", "-u", "postgres", "--", f"{BIN}/pg_ctl", "-D", f"{self.d}/data",
                        "-m", "immediate", "stop"], capture_output=True)

    def log(self):
        with open(f"{self.d}/server.log", errors="replace") as f:
            return f.read()


minute = 0
expected = set()  # interval_start of the rows the bursts must produce


def write_burst(d, n=30):
    """n samples of cluster c1, a minute apart, an hour after the last burst."""
    global minute
    body = "".join(f"power,cluster=c1 kw=40 {T0 + 60 * (minute + i)}\n" for i in range(n))
    for m in range(minute, minute + n - 1, 15):
        expected.add(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 60 * m)))
    minute += n + 60
    return d.write(body)[0]


def ledger_intervals(d):
    return {r["interval_start"] for r in d.table("billing_rows")}


tmp = tempfile.mkdtemp(prefix="tariffd-pgtls-")
os.chmod(tmp, 0o755)
shutil.chown(tmp, "postgres", "postgres")
server = d = None
password = "Tls-" + secrets.token_hex(12)
try:
    ca_key, ca_pem = make_ca(tmp, "ca")
    _, other_pem = make_ca(tmp, "other-ca")
    make_server_cert(tmp, ca_key, ca_pem)
    for name in ("server.crt", "server.key"):
        shutil.chown(f"{tmp}/{name}", "postgres", "postgres")
    os.chmod(f"{tmp}/server.key", 0o600)
    server = Server(tmp)

    # The test's psql (harness.psql, Daemon.table) goes over the socket as
    # the superuser; the daemon over TCP as tariffd_tls.
    os.environ.update(PGHOST=tmp, PGPORT=str(server.port), PGUSER="postgres")
    harness.psql("postgres", f"CREATE ROLE tariffd_tls LOGIN PASSWORD '{password}'")
    harness.psql("postgres", "CREATE DATABASE tariffd_tls OWNER tariffd_tls")
    stored = harness.psql("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = 'tariffd_tls'",
                          "-At")
    check(stored.startswith("SCRAM-SHA-256$"), f"the role's password is stored as SCRAM: {stored[:20]!r}")
    plain = subprocess.run(["psql", "-X", "-At", "-c", "SELECT 1",
                            f"host=127.0.0.1 port={server.port} dbname=tariffd_tls user=tariffd_tls "
                            f"password={password} sslmode=disable"],
                           capture_output=True, text=True)
    check(plain.returncode != 0 and "no pg_hba.conf entry" in plain.stderr,
          f"psql without TLS is refused: {plain.returncode} {plain.stderr.strip()}")

    base = f"host=localhost port={server.port} dbname=tariffd_tls user=tariffd_tls connect_timeout=5"
    d = harness.Daemon(TARIFFD, db="tariffd_tls")

    def set_conninfo(conninfo):
        """Replaces the config's conninfo, one option per line: with the
        certificates' paths it is longer than a config line may be, and
        continuation lines are joined with a space, as libpq wants."""
        out, skipping = [], False
        with open(d.config) as f:
            for x in f.read().splitlines():
                if skipping and x[:1].isspace():
                    continue
                skipping = x.startswith("conninfo = ")
                if skipping:
                    first, *rest = conninfo.split()
                    out += ["conninfo = " + first] + ["    " + o for o in rest]
                else:
                    out.append(x)
        with open(d.config, "w") as f:
            f.write("\n".join(out) + "\n")

    def password_not_logged(phase):
        check(password not in d.read_log(), f"{phase}: the password appears in the daemon's log")

    # --- tls: verify-full against the right CA, password in conninfo.
    set_conninfo(f"{base} password={password} sslmode=verify-full sslrootcert={ca_pem}")
    d.start()
    wait_until(lambda: harness.metric(d, "tariffd_postgres_up") == 1, 15, "the daemon connects over TLS")
    check(write_burst(d) == 204, "tls: a write")
    wait_until(lambda: (expected <= ledger_intervals(d), ledger_intervals(d)), 15, "tls: rows in the ledger")
    first = ledger_intervals(d)
    ssl = harness.psql("postgres", "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a "
                       "USING (pid) WHERE a.usename = 'tariffd_tls'", "-At").split()
    check(ssl and all(x.startswith("t|TLSv1.") for x in ssl), f"tls: the daemon's sessions use TLS: {ssl}")
    check('identity="tariffd_tls" method=scram-sha-256' in server.log(),
          "tls: the server authenticated the daemon by scram-sha-256")
    password_not_logged("tls")
    check(d.stop() == 0, "tls: the daemon stops with 0")

    # --- wrong CA: the server's certificate does not verify. The first
    # host of this conninfo is a closed port, as when "localhost" resolves
    # to ::1 first: the log must still name the certificate.
    closed = harness.free_port()
    set_conninfo(f"host=localhost,localhost port={closed},{server.port} dbname=tariffd_tls "
                 f"user=tariffd_tls connect_timeout=5 password={password} sslmode=verify-full "
                 f"sslrootcert={other_pem}")
    d.start(connected=False)  # it cannot connect: that is the point
    check(write_burst(d) == 204, "wrong CA: a write still gets 204")
    wait_until(lambda: "certificate verify failed" in d.read_log(), 15,
               "wrong CA: the log names the failed verification")
    line = next(x for x in d.read_log().splitlines() if "certificate verify failed" in x)
    check(line.startswith("<4>postgres: cannot connect") and f"port {server.port} failed" in line,
          f"wrong CA: the logged line: {line}")
    health = json.loads(d.admin("GET", "/health")[1])
    check(health["status"] == "warn" and "certificate verify failed" in health["message"],
          f"wrong CA: the detailed /health (metrics_listen) warns with the cause: {health}")
    health = json.loads(d.request("GET", "/health")[1])
    check(health["status"] == "warn" and "certificate" not in health["message"],
          f"wrong CA: a tenant's /health warns without the error text: {health}")
    check(harness.metric(d, "tariffd_postgres_up") == 0, "wrong CA: tariffd_postgres_up is 0")
    wait_until(lambda: (harness.metric(d, "tariffd_ledger_rows_queued") or 0) > 0, 15,
               "wrong CA: rows close and wait for the ledger")
    check(ledger_intervals(d) == first, "wrong CA: no row reached the ledger")
    password_not_logged("wrong CA")
    d.stop()

    # --- passfile: the right CA, the password out of conninfo.
    passfile = f"{tmp}/pgpass"
    with open(passfile, "w") as f:
        f.write(f"localhost:{server.port}:tariffd_tls:tariffd_tls:{password}\n")
    os.chmod(passfile, 0o600)
    set_conninfo(f"{base} passfile={passfile} sslmode=verify-full sslrootcert={ca_pem}")
    d.start()
    check(write_burst(d) == 204, "passfile: a write")
    wait_until(lambda: (expected <= ledger_intervals(d) and
                        harness.metric(d, "tariffd_ledger_rows_queued") == 0,
                        sorted(expected - ledger_intervals(d))),
               20, "passfile: the rows that waited arrive")
    rows = d.table("billing_rows")
    check(len(rows) == len({(r["cluster"], r["interval_start"], r["revision"]) for r in rows}),
          "passfile: each row once")
    check(first < ledger_intervals(d), "passfile: the first rows are still there, and more")
    password_not_logged("passfile")
    check(d.stop() == 0, "passfile: the daemon stops with 0")
except Exception as e:  # noqa: BLE001
    fail(f"{type(e).__name__}: {e}")
    if d and d.proc:
        print(d.read_log()[-3000:])
    if server:
        print(server.log()[-2000:])
finally:
    if d:
        d.cleanup()
    if server:
        server.stop()
    shutil.rmtree(tmp, ignore_errors=True)
finish()
