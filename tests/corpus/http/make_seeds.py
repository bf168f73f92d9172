#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz_http.c into this directory: raw HTTP
as a client sends it on one connection (several requests when pipelined),
for the config of tests/fuzz_common.h (tenants t1 "t1-secret" and t2
"t2-secret", clusters c1 c2 of t1 and x1 of t2, max_meters 50 and 3 for t2,
max_body 64 KiB).

usage: python3 make_seeds.py   (run once; the outputs are committed, and
crash-* files, which the fuzzer found, are never written here)"""
import base64
import gzip
import os

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = 1740758400  # 2025-03-01 00:00 +08:00


def req(method, target, body=b"", headers=(), version="HTTP/1.1", length=True):
    head = [f"{method} {target} {version}", "Host: tariffd"]
    head += list(headers)
    if length and (body or method in ("POST", "PUT")):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def lines(cluster, first, count, ts=T0, field="kw", value="40", meter=None):
    out = []
    for i in range(count):
        m = meter if meter is not None else f"m{first + i}"
        out.append(f"power,cluster={cluster},meter={m} {field}={value} {ts + 60 * i}\n")
    return "".join(out).encode()


def v2(body, token="t1-secret", precision="s", headers=()):
    return req("POST", f"/api/v2/write?org=o&bucket=b&precision={precision}", body,
               [f"Authorization: Token {token}"] + list(headers))


def v1(body, query="db=d&precision=s", headers=()):
    return req("POST", f"/write?{query}", body, list(headers))


def chunked(method, target, body, headers=(), size=17):
    head = [f"{method} {target} HTTP/1.1", "Host: tariffd", "Transfer-Encoding: chunked"]
    head += list(headers)
    out = ("\r\n".join(head) + "\r\n\r\n").encode()
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


def basic(user, password):
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GZ = ["Content-Encoding: gzip"]
seeds = {
    # Auth forms.
    "v2_token": v2(lines("c1", 0, 3)),
    "v2_bearer": req("POST", "/api/v2/write?bucket=b&precision=ms",
                     lines("c2", 0, 2, ts=T0 * 1000), ["Authorization: Bearer t1-second"]),
    "v1_basic": v1(lines("c1", 0, 2), headers=[basic("telegraf", "t1-secret")]),
    "v1_query_password": v1(lines("x1", 0, 2), "db=d&u=x&p=t2-secret&precision=s"),
    "v1_precision_m_h": v1(lines("c1", 0, 1, ts=T0 // 60), "db=d&p=t1-secret&precision=m")
    + v1(lines("c1", 1, 1, ts=T0 // 3600), "db=d&p=t1-secret&precision=h"),
    "bad_token": v2(lines("c1", 0, 1), token="wrong"),
    "bad_basic_padding": v1(lines("c1", 0, 1), headers=["Authorization: Basic dDE6dDEtc2VjcmV0="]),
    "bad_no_auth": v1(lines("c1", 0, 1)),
    "bad_auth_scheme": req("POST", "/api/v2/write?bucket=b", lines("c1", 0, 1),
                           ["Authorization: Digest t1-secret"]),
    # Bodies.
    "chunked_v2": chunked("POST", "/api/v2/write?bucket=b&precision=s", lines("c1", 0, 4),
                          ["Authorization: Token t1-secret"]),
    "gzip_v2": v2(gzip.compress(lines("c1", 0, 5), mtime=0), headers=GZ),
    "gzip_chunked_v1": chunked("POST", "/write?db=d&p=t1-secret&precision=s",
                               gzip.compress(lines("c2", 0, 3), mtime=0), GZ, size=9),
    "gzip_bomb": v2(gzip.compress(b"#" * (1 << 20), mtime=0), headers=GZ),
    "gzip_truncated": v2(gzip.compress(lines("c1", 0, 5), mtime=0)[:-9], headers=GZ),
    "gzip_not_gzip": v2(lines("c1", 0, 1), headers=GZ),
    "encoding_identity": v2(lines("c1", 0, 1), headers=["Content-Encoding: identity"]),
    "encoding_br": v2(lines("c1", 0, 1), headers=["Content-Encoding: br"]),
    "body_too_large": v2(b"#" * (70 * 1024)),
    "empty_body": v2(b""),
    "other_measurements": v2(b"cpu,host=a usage=1 1\n# comment\n\npower,cluster=c1 kwh=5i "
                             + str(T0).encode() + b"\n"),
    "fields_w_wh_kwh": v2(lines("c1", 0, 2, field="w", value="4000")
                          + lines("c1", 2, 2, field="wh", value="1000u")
                          + lines("c2", 0, 2, field="kwh", value="1.5e3")),
    "bad_kind_switch": v2(lines("c1", 0, 1, meter="a") + lines("c1", 0, 1, field="kwh", meter="a")),
    "bad_line": v2(b"power,cluster=c1 kw=-1 1\n"),
    # Endpoints and methods.
    "ping": req("GET", "/ping"),
    "ping_head": req("HEAD", "/ping"),
    "health": req("GET", "/health"),
    "health_degraded_refused": req("GET", "/health", headers=["X-Fuzz-Degraded: 1",
                                                               "X-Fuzz-Refuse: 1"]),
    "query": req("GET", "/query?q=SHOW+DATABASES") + req("POST", "/query", b"q=CREATE+DATABASE+x"),
    "metrics": v2(lines("c1", 0, 2)) + req("GET", "/metrics"),
    "method_not_allowed": req("GET", "/write") + req("DELETE", "/ping")
    + req("PUT", "/api/v2/write", b"x"),
    "not_found": req("GET", "/nope/\xff\xfe%00") + req("GET", "/api/v2/nope"),
    "bad_method": b"BREW /ping HTTP/1.1\r\nHost: x\r\n\r\n",
    "http10_close": req("GET", "/ping", version="HTTP/1.0")
    + req("GET", "/health"),
    "connection_close": req("GET", "/ping", headers=["Connection: close"]) + req("GET", "/ping"),
    "expect_continue": v2(lines("c1", 0, 1), headers=["Expect: 100-continue"]),
    "absolute_uri": req("POST", "http://tariffd/api/v2/write?bucket=b&precision=s",
                        lines("c1", 0, 1), ["Authorization: Token t1-secret"]),
    # Query strings and precision.
    "bad_precision_v2": v2(lines("c1", 0, 1), precision="m"),
    "bad_precision_v1": v1(lines("c1", 0, 1), "db=d&p=t1-secret&precision=\xff%22"),
    "bad_query_string": req("POST", "/write?p=t1-secret&&=&%zz", lines("c1", 0, 1)),
    # Clusters and tenants.
    "unknown_cluster": v2(lines("c9", 0, 1)),
    "other_tenant_cluster": v2(lines("c1", 0, 1), token="t2-secret"),
    "other_tenant_v1": v1(lines("x1", 0, 1), "db=d&p=t1-secret&precision=s"),
    # UTF-8 in tags: valid, and the forms RFC 3629 forbids.
    "utf8_valid_meter": v2("power,cluster=c1,meter=机柜-Ω-😀 kw=1 {}\n".format(T0).encode()),
    "non_utf8_meter_surrogate": v2(b"power,cluster=c1,meter=\xed\xa0\x80 kw=1 1740758400\n"),
    "non_utf8_meter_overlong": v2(b"power,cluster=c1,meter=\xc0\xaf kw=1 1740758400\n"),
    "non_utf8_cluster": v2(b"power,cluster=c\xff kw=1 1740758400\n"),
    "long_meter": v2(b"power,cluster=c1,meter=" + b"m" * 256 + b" kw=1 1740758400\n")
    + v2(b"power,cluster=c1,meter=" + b"m" * 257 + b" kw=1 1740758400\n"),
    "escaped_meter": v2(b"power,cluster=c1,meter=a\\ b\\,c\\=d kw=1 1740758400\n"),
    # Limits.
    "oversize_header": req("POST", "/api/v2/write?bucket=b&precision=s", lines("c1", 0, 1),
                           ["Authorization: Token t1-secret", "X-Pad: " + "a" * (100 * 1024)]),
    "oversize_request_line": req("GET", "/ping?" + "a" * (100 * 1024)),
    "too_many_meters_t1": v2(lines("c1", 0, 30)) + v2(lines("c2", 0, 21)) + v2(lines("c1", 0, 30)),
    "too_many_meters_t2": v2(lines("x1", 0, 4), token="t2-secret")
    + v2(lines("x1", 0, 3), token="t2-secret") + v2(lines("x1", 9, 1), token="t2-secret"),
    "incomplete_body": req("POST", "/api/v2/write?bucket=b", b"power",
                           ["Authorization: Token t1-secret", "Content-Length: 100"], length=False),
    "garbage": b"\x00\x01\x02 / HTTP/9.9\r\n\r\n",
    # The daemon's own states.
    "refused_503": v2(lines("c1", 0, 1), headers=["X-Fuzz-Refuse: 1"]),
    "deferred_pipelined": v2(lines("c1", 0, 2), headers=["X-Fuzz-Defer: 1"])
    + v2(lines("c1", 0, 2, ts=T0 + 900), headers=["X-Fuzz-Defer: 1"]) + req("GET", "/ping"),
    # Samples the engine quarantines or adjusts: far in the future, late.
    "future_and_late": v2(lines("c1", 0, 1, ts=4102444800)) + v2(lines("c1", 0, 20, ts=T0))
    + v2(lines("c1", 0, 1, ts=T0)),
    # The largest values the parser takes: 1e9 kW, counters up to 1e15 kWh (and resets).
    "huge_values": v2(lines("c1", 0, 40, value="1e9", meter="main")
                      + "".join(f"power,cluster=c2,meter=k kwh={v} {T0 + 60 * i}\n"
                                for i, v in enumerate(["0", "1e12", "1e15", "0", "1e15", "0.5"]))
                      .encode()),
    # A counter over several intervals, with a reset.
    "counter_intervals": v2("".join(f"power,cluster=c2,meter=k kwh={v} {T0 + t}\n" for t, v in
                                    [(0, 100), (300, 110), (960, 140), (1800, 3), (2700, 9),
                                     (3600, 12)]).encode()),
    "two_days_of_data": v2("".join(f"power,cluster=c1 kw={10 + i % 7} {T0 + 900 * i}\n"
                                for i in range(200)).encode()),
}

for name, data in seeds.items():
    with open(os.path.join(HERE, name + ".http"), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds written")
