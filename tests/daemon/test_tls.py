"""TLS on the tenants' listener, and /metrics and the detailed /health on
metrics_listen only (docs/design.md section 3), with certificates this test
makes with the openssl CLI:

  - a write over TLS with curl and with the InfluxDB client library
    (Debian's python3-influxdb, run by /usr/bin/python3) gets 204, and the
    sample is in the ledger;
  - plain HTTP on the TLS port gets no HTTP answer and is not accepted;
    a client offering only TLS 1.1 is refused by the server (a protocol
    version alert), TLS 1.2 and 1.3 are served;
  - as under systemd (the TLS socket passed in by socket activation with
    the name "tls", the key read from $CREDENTIALS_DIRECTORY, `listen`
    empty) and with tls_client_ca: a client without a certificate is
    refused, one with a certificate the CA signed writes;
  - SIGHUP reads the certificate and key again: a new connection sees the
    new certificate, without a restart; a key that does not match its
    certificate rejects the reload, and the certificate in use stays;
  - /metrics is 404 on the plain and TLS listeners and served on
    metrics_listen; while PostgreSQL is down /health on a tenant listener
    says "warn" with no error text, and on metrics_listen names the cause.

usage: test_tls.py TARIFFD   (prints "N passed, N failed")"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, expect_within, finish, skip  # noqa: E402
from harness import Daemon, free_port, need_postgres  # noqa: E402

need_postgres()
TARIFFD = sys.argv[1]
PG_CTL = os.environ.get("TARIFFD_PG_CTL")
if not PG_CTL:
    skip("TARIFFD_PG_CTL is unset: /health is checked with PostgreSQL stopped")
for tool in ("openssl", "curl"):
    if not shutil.which(tool):
        skip(f"no {tool} (scripts/test installs it)")

WORK = tempfile.mkdtemp(prefix="tariffd-tls-")
T0 = 1740790800  # 2025-03-01 09:00 local
LINE = "power,cluster=c1,meter=tls kw=40 {}\n"
# 40 kW over 09:00-09:25: the 09:00 interval closes once the meter is silent.
HALF_HOUR = "".join(LINE.format(T0 + k * 300) for k in range(6))


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], cwd=WORK, input=input, capture_output=True,
                          text=True, timeout=60)


def make_cert(name, subject, ext):
    """A P-256 key and a certificate the test CA signs, with extensions ext."""
    r = openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(WORK, f"{name}.ext"), "w") as f:
        f.write(ext)
    r = openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext")
    assert r.returncode == 0, r.stderr


def path(name):
    return os.path.join(WORK, name)


def install(cert, key):
    """The files the config names: cert.pem and key.pem."""
    shutil.copy(path(cert), path("cert.pem"))
    shutil.copy(path(key), path("key.pem"))


def fingerprint(name):
    der = subprocess.run(["openssl", "x509", "-in", path(name), "-outform", "DER"],
                         capture_output=True, timeout=30, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def served_fingerprint(port):
    """The SHA-256 of the certificate a new TLS connection is shown."""
    ctx = ssl.create_default_context(cafile=path("ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def tls_request(port, method, url, body=None, headers=None, cert=None):
    ctx = ssl.create_default_context(cafile=path("ca.pem"))
    if cert:
        ctx.load_cert_chain(path(cert + ".pem"), path(cert + ".key"))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=15)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def curl_write(port, line, cert=None):
    """curl's HTTP status for a v2 write over TLS (000 when it could not
    connect), and its exit status."""
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", path("ca.pem"),
            "-H", "Authorization: Token t1-secret", "--data-binary", line,
            f"https://localhost:{port}/api/v2/write?org=o&bucket=b&precision=s"]
    if cert:
        args[1:1] = ["--cert", path(cert + ".pem"), "--key", path(cert + ".key")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return r.stdout.strip(), r.returncode, r.stderr.strip()


def influx_client_write(port, ts):
    """A write with the InfluxDB 1.x client library over TLS (Basic auth,
    the token as the password), run by Debian's python3."""
    script = f"""
import sys
from influxdb import InfluxDBClient
c = InfluxDBClient(host="localhost", port={port}, username="t1", password="t1-secret",
                   database="telegraf", ssl=True, verify_ssl={path("ca.pem")!r}, timeout=15)
ok = c.write_points([{{"measurement": "power", "tags": {{"cluster": "c1", "meter": "client"}},
                       "time": {ts}, "fields": {{"kw": 40.0}}}}], time_precision="s")
print("written" if ok else "refused")
"""
    r = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).strip()


def s_client(port, version):
    """openssl s_client offering only `version` (and every cipher, so it is
    the server that refuses TLS 1.1); returns (handshake done, output)."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", f"-{version}",
                        "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", path("ca.pem"),
                        "-servername", "localhost"],
                       input="", capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    return r.returncode == 0 and "Cipher is (NONE)" not in out, out


def kwh(d, start_s):
    """c1's kWh for the interval starting at start_s, summed over revisions."""
    return subprocess.run(["psql", "-X", "-At", "-d", d.db, "-c",
                           f"SELECT sum(kwh) FROM {d.schema}.billing_rows WHERE cluster = 'c1' "
                           f"AND interval_start = to_timestamp({start_s})"],
                          capture_output=True, text=True).stdout.strip()


def reload(d, marker):
    before = d.read_log().count(marker)
    d.proc.send_signal(signal.SIGHUP)
    expect_within(lambda: (d.read_log().count(marker) > before, d.read_log()[-400:]), 10,
                  f"the log says {marker!r} after SIGHUP")


# ---------------------------------------------------------------- certificates

r = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tariffd test CA")
assert r.returncode == 0, r.stderr
SERVER_EXT = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
make_cert("server1", "/CN=localhost", SERVER_EXT)
make_cert("server2", "/CN=localhost", SERVER_EXT)
make_cert("agent", "/CN=tenant t1 agent", "extendedKeyUsage=clientAuth\n")
install("server1.pem", "server1.key")

# ---------------------------------------------------------------- plain + TLS

tls_port = free_port()
tls_conf = (f"listen_tls = 127.0.0.1:{tls_port}\ntls_cert = {path('cert.pem')}\n"
            f"tls_key = {path('key.pem')}\n")
d = Daemon(TARIFFD, extra=tls_conf)
daemons = [d]
try:
    d.start()
    status, rc, err = curl_write(tls_port, HALF_HOUR)
    check(status == "204", f"curl over TLS: HTTP {status} (exit {rc}) {err}")
    rc, out = influx_client_write(tls_port, T0 + 60)
    check(rc == 0 and out.endswith("written"), f"the InfluxDB client library over TLS: {out[-300:]}")

    # Plain HTTP on the TLS port: no HTTP answer, nothing accepted.
    conn = http.client.HTTPConnection("127.0.0.1", tls_port, timeout=10)
    try:
        conn.request("POST", "/api/v2/write?precision=s", body=LINE.format(T0 + 120),
                     headers={"Authorization": "Token t1-secret"})
        answer = f"HTTP {conn.getresponse().status}"
    except (OSError, http.client.HTTPException) as e:
        answer = repr(e)
    finally:
        conn.close()
    check(not answer.startswith("HTTP"), f"plain HTTP on the TLS port gets no HTTP answer: {answer}")

    ok11, out11 = s_client(tls_port, "tls1_1")
    check(not ok11 and "protocol version" in out11,
          f"TLS 1.1 refused by the server with a protocol version alert: {out11[-300:]}")
    for v in ("tls1_2", "tls1_3"):
        ok, out = s_client(tls_port, v)
        check(ok, f"{v} is served: {out[-200:]}")

    # /metrics: never on a tenant listener, on metrics_listen only.
    s_plain = d.request("GET", "/metrics")[0]
    s_tls = tls_request(tls_port, "GET", "/metrics")[0]
    s_admin, body, _ = d.admin("GET", "/metrics")
    check(s_plain == 404 and s_tls == 404 and s_admin == 200 and b"tariffd_energy_kwh_total" in body,
          f"/metrics: plain {s_plain}, TLS {s_tls}, metrics_listen {s_admin}")
    s_write = d.admin("POST", "/api/v2/write")[0]
    check(s_write == 404, f"metrics_listen takes no writes: {s_write}")

    # curl's half hour reaches the ledger: 40 kW x 15 min = 10 kWh.
    expect_within(lambda: ((k := kwh(d, T0)) == "10.000000", f"kWh {k!r}"), 20,
                  "what came over TLS is billed")

    # Rotation: new certificate, SIGHUP, a new connection sees it.
    check(served_fingerprint(tls_port) == fingerprint("server1.pem"), "server1 is served at start")
    install("server2.pem", "server2.key")
    reload(d, "TLS certificate and key read again")
    check(served_fingerprint(tls_port) == fingerprint("server2.pem"),
          "after SIGHUP a new connection is shown the new certificate (no restart)")
    status, rc, err = curl_write(tls_port, LINE.format(T0 + 180))
    check(status == "204", f"a write with the rotated certificate: HTTP {status} {err}")

    # A key that does not match: the reload is rejected, server2 stays.
    install("server1.pem", "agent.key")
    reload(d, "reload rejected")
    log = d.read_log()
    check("does not match the certificate" in log, f"the log says the key does not match: {log[-600:]}")
    check(served_fingerprint(tls_port) == fingerprint("server2.pem"),
          "after a bad key, the certificate in use stays")
    status, rc, err = curl_write(tls_port, LINE.format(T0 + 240))
    check(status == "204", f"writes still taken over TLS: HTTP {status} {err}")
    install("server2.pem", "server2.key")

    # /health while PostgreSQL is down: a tenant sees only the status.
    subprocess.run(f"{PG_CTL} -m fast stop", shell=True, check=True, capture_output=True)
    try:
        def down():
            h = json.loads(d.admin("GET", "/health")[1])
            return h["status"] == "warn" and "PostgreSQL" in h["message"], h
        expect_within(down, 15, "metrics_listen's /health names PostgreSQL while it is down")
        for name, (s, raw) in (("plain", d.request("GET", "/health")[:2]),
                               ("TLS", tls_request(tls_port, "GET", "/health"))):
            h = json.loads(raw)
            check(s == 200 and h["status"] == "warn" and h["message"] == "degraded",
                  f"{name} /health says warn and no more: {s} {h}")
    finally:
        subprocess.run(f"{PG_CTL} start", shell=True, check=True, capture_output=True)
    check(d.stop() == 0, "SIGTERM exits 0")

    # ------------------------------------------------------------ client certificates, TLS only
    # As under systemd: the TLS socket passed in by socket activation
    # (FileDescriptorName=tls), the key read from a credential
    # ($CREDENTIALS_DIRECTORY, LoadCredential=), listen empty.
    creds = path("creds")
    os.mkdir(creds, 0o700)
    shutil.copy(path("server1.key"), os.path.join(creds, "tls.key"))
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    tls2 = lsock.getsockname()[1]
    e = Daemon(TARIFFD, extra=f"listen_tls = 127.0.0.1:{tls2}\n"
                              f"tls_cert = {path('server1.pem')}\n"
                              "tls_key = $CREDENTIALS_DIRECTORY/tls.key\n"
                              f"tls_client_ca = {path('ca.pem')}\n")
    daemons.append(e)
    with open(e.config) as f:
        text = f.read()
    with open(e.config, "w") as f:  # TLS only: listen is empty
        f.write(text.replace(f"listen = 127.0.0.1:{e.port}, [::1]:{e.port}\n", "listen =\n"))
    fd = lsock.detach()
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
    e.log = open(os.path.join(e.dir, "daemon.log"), "ab")
    # LISTEN_PID must be the daemon's own pid: set it from the shell that execs it.
    e.proc = subprocess.Popen(
        ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=tls exec "$0" -c "$1"', TARIFFD,
         e.config], pass_fds=(3,), stderr=e.log, env={**os.environ, "CREDENTIALS_DIRECTORY": creds})
    os.close(3)
    e.port = e.metrics_port  # /ping and /health are served there too
    def answers():
        try:
            return e.request("GET", "/ping")[0] == 204, "no 204"
        except OSError as x:
            return False, f"{x!r} {e.read_log()[-300:]}"
    expect_within(answers, 10, "the TLS-only daemon answers on metrics_listen", every=0.1)
    e.wait_writable()
    log = e.read_log()
    check("serving inherited socket 3 (tls)" in log and "(http)" not in log,
          f"the inherited socket serves TLS, nothing listens in plain HTTP: {log[-400:]}")
    status, rc, err = curl_write(tls2, LINE.format(T0))
    check(status != "204" and rc != 0, f"without a client certificate: refused (curl exit {rc}: {err})")
    status, rc, err = curl_write(tls2, LINE.format(T0), cert="agent")
    check(status == "204", f"with a certificate the CA signed: HTTP {status} {err}")
    check(e.stop() == 0, "SIGTERM exits 0")
except Exception as ex:  # noqa: BLE001
    check(False, f"{type(ex).__name__}: {ex}")
    for x in daemons:
        print(x.read_log()[-1500:])
finally:
    for x in daemons:
        x.cleanup()
    shutil.rmtree(WORK, ignore_errors=True)
finish()
