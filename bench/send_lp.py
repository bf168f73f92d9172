"""Sends a line-protocol file to an InfluxDB write endpoint the way a
Telegraf fleet would, and times it: bench/run_peers's sender.

usage: send_lp.py FILE PORT PATH [TOKEN] [--conns N] [--lines N] [--retry-503]

PATH is the request target with its query, e.g.
/api/v2/write?org=o&bucket=b&precision=s or /write?db=bench&precision=s.
With TOKEN each request carries "Authorization: Token TOKEN".

Each series (the text before a line's first space: measurement and tags,
one meter here) goes to one connection, round-robin by first appearance,
so every meter's samples arrive in file order on one connection. Each
connection's lines go in requests of --lines lines (default 5,000,
Telegraf's metric_batch_size) over --conns keep-alive http.client
connections (default 2), one thread each. All request bodies are built in
memory before the clock starts. Every answer must be 204: anything else
stops the run with the answer on stderr and exit status 1. With
--retry-503, a 503 (a server shedding load) is instead waited out for its
Retry-After seconds (1 without one) on that connection and the same
request sent again, as a well-behaved client would; the clock keeps
running and the retries are counted.

Prints: samples SECONDS samples_per_second requests retries"""
import argparse
import http.client
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("port", type=int)
    ap.add_argument("path")
    ap.add_argument("token", nargs="?")
    ap.add_argument("--conns", type=int, default=2)
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--retry-503", action="store_true")
    a = ap.parse_args()

    with open(a.file, "rb") as f:
        lines = f.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    per_conn = [[] for _ in range(a.conns)]
    owner = {}
    for line in lines:
        key = line[: line.find(b" ")]
        c = owner.get(key)
        if c is None:
            c = owner[key] = len(owner) % a.conns
        per_conn[c].append(line)
    samples = len(lines)
    del lines, owner
    bodies = []
    for mine in per_conn:
        bodies.append([b"\n".join(mine[i : i + a.lines]) + b"\n" for i in range(0, len(mine), a.lines)])
    del per_conn
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if a.token:
        headers["Authorization"] = "Token " + a.token

    start = threading.Barrier(a.conns + 1)
    failed = []
    retries = []

    def send(mine):
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=300)
        conn.connect()
        start.wait()
        try:
            for body in mine:
                while True:
                    if failed:
                        return
                    conn.request("POST", a.path, body, headers)
                    r = conn.getresponse()
                    answer = r.read()
                    if r.status == 503 and a.retry_503:
                        retries.append(1)
                        time.sleep(float(r.getheader("Retry-After") or 1))
                        continue
                    if r.status != 204:
                        failed.append(f"{r.status} {r.reason}: {answer[:300]!r}")
                        return
                    break
        except Exception as e:  # a reset or a timeout is a failure too
            failed.append(repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=send, args=(mine,)) for mine in bodies]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    if failed:
        print(f"send_lp: {a.path} on port {a.port}: {failed[0]}", file=sys.stderr)
        sys.exit(1)
    print(f"{samples} {secs:.3f} {samples / secs:.0f} {sum(len(b) for b in bodies)} {len(retries)}")


main()
