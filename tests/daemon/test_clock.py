"""A wall clock no journal record may carry (before 2000 or from 2200 on,
daemon/ingest.h): writes are refused at the door with 503, Retry-After and
a message naming the clock, /health fails for it, ticks are skipped and
the log says so once, nothing is journaled, and the daemon starts again on
the same state_dir once the clock is right. The clock is moved with
TARIFFD_TEST_CLOCK (daemon/clock.h).

usage: test_clock.py TARIFFD   (prints "N passed, N failed")"""
import glob
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, expect_within, fail, finish  # noqa: E402
from harness import Daemon  # noqa: E402

T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)
RECORD_SAMPLES, RECORD_TICK = 1, 2
LOGGED = "ticks and writes wait for it"


def lines(start, minutes, kw=40):
    return "".join(f"power,cluster=c1,meter=main kw={kw} {start + 60 * m}\n"
                   for m in range(minutes))


def journal(d):
    """(lsn, type) of every record in d's journal (storage/journal.h: u32
    length, u32 crc32, u8 type, payload, little-endian; a segment is named
    by the LSN of its first byte), and the LSN of its end."""
    records, end = [], 0
    for path in sorted(glob.glob(os.path.join(d.dir, "state", "journal", "*.seg"))):
        lsn = int(os.path.basename(path)[:-4], 16)
        data = open(path, "rb").read()
        off = 0
        while off + 9 <= len(data):
            length, _, kind = struct.unpack_from("<IIB", data, off)
            records.append((lsn + off, kind))
            off += 9 + length
        end = max(end, lsn + off)
    return records, end


def run_at(tariffd, clock_s, label):
    d = Daemon(tariffd)
    try:
        # A first start on the real clock leaves billed data and a journal.
        d.start()
        s, data, _ = d.write(lines(T0, 20))
        check(s == 204, f"{label}: a write on the real clock: {s} {data!r}")
        check(d.stop() == 0, f"{label}: clean stop")
        _, end = journal(d)

        d.start(env={"TARIFFD_TEST_CLOCK": str(clock_s)}, writable=False)
        for v2 in (True, False):
            s, data, headers = d.write(lines(T0 + 1200, 5), v2=v2)
            msg = json.loads(data).get("message" if v2 else "error", "")
            check(s == 503 and headers.get("Retry-After", "").isdigit()
                  and msg.startswith(f"the wall clock reads {label}")
                  and "outside 2000-01-01T00:00:00Z to 2200-01-01T00:00:00Z" in msg,
                  f"{label}: {'v2' if v2 else 'v1'} write refused at the door: {s} {headers} {msg}")
        s, data, _ = d.admin("GET", "/health")
        health = json.loads(data)
        check(s == 503 and health["status"] == "fail" and label in health["message"],
              f"{label}: /health fails naming the clock: {s} {health}")
        expect_within(lambda: LOGGED in d.read_log(), 10, f"{label}: the skipped ticks are logged")
        # The tick runs every 250 ms (grace 1s / 4): after 2 s, eight ticks
        # or so have been skipped, and the log still has one line for them.
        deadline = time.monotonic() + 2
        expect_within(lambda: time.monotonic() > deadline, 5, "ticks pass")
        check(d.read_log().count(LOGGED) == 1,
              f"{label}: said once, not per tick: {d.read_log().count(LOGGED)} times")
        check(d.alive(), f"{label}: the daemon runs on")
        check(d.stop() == 0, f"{label}: clean stop on the wrong clock")
        after = [k for lsn, k in journal(d)[0] if lsn >= end]
        check(RECORD_SAMPLES not in after and RECORD_TICK not in after,
              f"{label}: nothing journaled on the wrong clock: record types {after}")

        # The right clock again: the same state_dir replays and takes writes.
        d.start()
        s, data, _ = d.write(lines(T0 + 1200, 5))
        check(s == 204, f"{label}: restarted, a write is taken: {s} {data!r}")
        check(d.stop() == 0, f"{label}: clean stop after the restart")
    except Exception as e:  # noqa: BLE001
        fail(f"{label}: {e!r}", lambda: print(d.read_log()[-3000:]))
    finally:
        d.cleanup()


def main():
    tariffd = sys.argv[1]
    run_at(tariffd, 928195200, "1999-06-01T00:00:")   # 1999-06-01T00:00:00Z
    run_at(tariffd, 7258118400, "2200-01-01T00:00:")  # 2200-01-01T00:00:00Z, the first instant refused
    finish()


if __name__ == "__main__":
    main()
