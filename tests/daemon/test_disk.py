"""A full disk under state_dir, on a small tmpfs the test fills (as root;
exit 77 without the right to mount).

1. Nearly full (less free than two requests and a checkpoint's margin):
   writes get 503 with Retry-After, /health says why; once the filler is
   gone writes are taken again, without a restart.
2. Completely full, so the journal itself fails (ENOSPC on an append):
   the requests it could not make durable get 503 with Retry-After,
   /health says the journal cannot be written, and once space returns the
   daemon rebuilds its engine from the journal by itself and takes writes
   again; no torn record is left behind.
3. Read-only: state_dir on an ext4 loop device mounted errors=remount-ro;
   the test triggers a filesystem error (/sys/fs/ext4/DEV/trigger_fs_error)
   and the kernel makes it read-only under the running daemon (a chmod
   does not stop root, and a remount is refused while files are open):
   the journal fails with EROFS, writes get 503 naming it, /health says
   so; the operator repairs the filesystem and mounts it again in place,
   and the daemon goes on by itself. Skipped (and said) without a loop
   device.
Throughout, a client retries every batch until 204 (as Telegraf does); at
the end the ledger equals `tariffd price` on every batch, to the fen, none
billed twice: nothing acknowledged was lost.

usage: test_disk.py TARIFFD   (prints "N passed, N failed")"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, expect_within, finish, skip  # noqa: E402
from harness import Daemon, need_postgres, read_csv, sums  # noqa: E402

T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)
MIB = 1 << 20
MONEY = ["kwh", "energy_charge", "surcharge", "subsidy", "net"]


def batch(k):
    """Batch k: 30 minutes of two meters on c1, one sample a minute."""
    return "".join(f"power,cluster=c1,meter={m} kw={40 + (i * 7 + k) % 23} {T0 + 1800 * k + 60 * i}\n"
                   for i in range(30) for m in ("a", "b"))


def health(d):
    s, data, _ = d.admin("GET", "/health")
    return s, json.loads(data)


def send(d, body, what, timeout=60):
    """Retries on 503 until 204 (the retrying client); one check."""
    def probe():
        try:
            s, data, h = d.write(body)
        except OSError as e:
            return False, repr(e)
        return s == 204, (s, data[:200], h.get("Retry-After"))
    return expect_within(probe, timeout, what, every=0.2)[0]


def fill(path, leave):
    """Writes a filler file until about `leave` bytes are free (0: until
    ENOSPC)."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    chunk = b"\0" * MIB
    with open(os.path.join(path, "filler"), "wb") as f:
        todo = free - leave
        try:
            while todo > 0 or leave == 0:
                n = f.write(chunk[:min(MIB, todo)] if leave else chunk)
                todo -= n
                f.flush()
        except OSError:
            pass  # ENOSPC: full
        try:
            os.fsync(f.fileno())
        except OSError:
            pass


def readonly(tariffd):
    """Part 3, on its own daemon."""
    d = Daemon(tariffd)
    text = open(d.config).read().replace("grace = 1s", "grace = 0s")
    open(d.config, "w").write(text)
    state = os.path.join(d.dir, "state")
    image = os.path.join(d.dir, "ext4.img")
    os.makedirs(state)
    with open(image, "wb") as f:
        f.truncate(160 * MIB)
    subprocess.run(["mkfs.ext4", "-q", image], check=True, capture_output=True)
    mount = ["mount", "-o", "loop,errors=remount-ro", image, state]
    r = subprocess.run(mount, capture_output=True)
    if r.returncode:
        print(f"# read-only part skipped: cannot mount a loop device: {r.stderr.decode().strip()}")
        d.cleanup()
        return
    try:
        d.start()
        sent = []
        for k in range(0, 8):
            sent.append(batch(k))
            send(d, sent[-1], f"batch {k}, state_dir writable")
        dev = os.path.basename(subprocess.run(["findmnt", "-n", "-o", "SOURCE", state], check=True,
                                              capture_output=True, text=True).stdout.strip())
        with open(f"/sys/fs/ext4/{dev}/trigger_fs_error", "w") as f:
            f.write("tariffd test\n")
        ok, got = expect_within(lambda: ("Read-only file system" in health(d)[1]["message"], health(d)),
                                30, "/health: the journal cannot be written (read-only)", every=0.2)
        s, data, h = d.write(batch(8))
        check(s == 503 and h.get("Retry-After") == "1" and b"Read-only file system" in data,
              f"a write on a read-only state_dir: 503 naming EROFS: {s} {data!r} {h}")
        # The operator's repair: unmount (lazily: the daemon holds files),
        # check the filesystem, mount it again in place.
        subprocess.run(["umount", "-l", state], check=True, capture_output=True)
        subprocess.run(["e2fsck", "-fy", image], capture_output=True)
        subprocess.run(mount, check=True, capture_output=True)
        for k in range(8, 16):
            sent.append(batch(k))
            send(d, sent[-1], f"batch {k}, after state_dir was writable again")
        log = d.read_log()
        check("journal: writable again" in log and log.count("<5>ready") == 1,
              "read-only: the daemon went on by itself (no restart)")
        ledger_equals_price(d, sent)
        check(d.stop() == 0, "SIGTERM exits 0")
    finally:
        if d.proc and d.alive():
            d.kill()
        subprocess.run(["umount", "-l", state], capture_output=True)
        d.cleanup()


def ledger_equals_price(d, sent):
    """Every batch billed once, exactly as tariffd price bills them."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([d.tariffd, "price", "-c", d.config, "--precision", "s", "--out", out],
                       input="".join(sent), text=True, check=True, capture_output=True)
        want = read_csv(os.path.join(out, "billing_rows.csv"))
    key = ("cluster", "interval_start")

    def equal():
        got = sums(d.table("billing_rows"), key, MONEY)
        return got == sums(want, key, MONEY), f"{len(got)} intervals in the ledger"
    expect_within(equal, 30, "the ledger equals tariffd price, every batch once", every=0.5)


def main(tariffd):
    need_postgres()
    if os.geteuid() != 0:
        skip("mounting a tmpfs needs root")
    d = Daemon(tariffd)
    text = open(d.config).read().replace("grace = 1s", "grace = 0s")  # ticks every 100 ms
    open(d.config, "w").write(text)
    state = os.path.join(d.dir, "state")
    os.makedirs(state)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", state], capture_output=True)
    if r.returncode:
        d.cleanup()
        skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    try:
        run(d, state)
    finally:
        if d.proc and d.alive():
            d.kill()
        subprocess.run(["umount", "-l", state], capture_output=True)
        d.cleanup()


def run(d, state):
    d.start()
    sent = []
    for k in range(0, 8):
        sent.append(batch(k))
        send(d, sent[-1], f"batch {k}, disk with room")

    # 1. Nearly full: the door refuses.
    fill(state, 40 * MIB)  # under 2 x max_body (1 MiB) + 64 MiB
    s, data, h = d.write(batch(8))
    check(s == 503 and h.get("Retry-After") == "1" and b"disk of state_dir nearly full" in data,
          f"nearly full: 503 with Retry-After: {s} {data!r} {h}")
    s, body = health(d)
    check(s == 503 and body["status"] == "fail" and "nearly full" in body["message"],
          f"/health says why: {s} {body}")
    os.unlink(os.path.join(state, "filler"))
    for k in range(8, 16):
        sent.append(batch(k))
        send(d, sent[-1], f"batch {k}, after the disk had room again")

    # 2. Completely full: the journal's own append fails (the clock's
    # records need a few bytes every 100 ms, past the door).
    fill(state, 0)

    def journal_failed():
        s, body = health(d)
        return "journal cannot be written" in body["message"], (s, body)
    ok, got = expect_within(journal_failed, 90, "/health: the journal cannot be written", every=0.2)
    if ok:
        s, data, h = d.write(batch(16))
        check(s == 503 and h.get("Retry-After") == "1"
              and b"journal cannot be written" in data and b"No space left on device" in data,
              f"a write while the journal fails: 503 naming ENOSPC: {s} {data!r} {h}")
        check(got[0] == 503 and got[1]["status"] == "fail", f"/health fails: {got}")
    os.unlink(os.path.join(state, "filler"))
    for k in range(16, 24):
        sent.append(batch(k))
        send(d, sent[-1], f"batch {k}, after the journal could be written again")
    log = d.read_log()
    check("journal: writable again" in log, "the daemon rebuilt its engine by itself (no restart)")
    check(log.count("<5>ready") == 1, "one start: no restart")
    check("torn" not in log, "no torn journal record was cut")

    ledger_equals_price(d, sent)
    check(d.stop() == 0, "SIGTERM exits 0")


main(sys.argv[1])
readonly(sys.argv[1])
finish()
