"""Token rotation on a running daemon, as the README tells an operator to do
it, with tokens from `tariffd token`:

  1. tenant t1 has the old token only: it writes (204), the new one is 401;
  2. the new hash beside the old one (a comma list) + SIGHUP: both write,
     in every auth form, and the new one still gets 403 for t2's cluster;
  3. the old hash removed + SIGHUP: the old token is 401, the new one 204;
  4. a third hash as a repeated token_sha256 key + SIGHUP: both write;
  5. a reload where the operator pasted a token instead of its hash is
     rejected, the tokens in force keep working, and the log never shows it.

Then the rows of every accepted write reach the ledger, and the daemon's
log holds none of the tokens.

usage: test_tokens.py TARIFFD   (prints "N passed, N failed")"""
import hashlib
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, fail, finish, wait_until  # noqa: E402
from harness import Daemon, metric  # noqa: E402

T0 = 1740758400  # 2025-03-01 00:00 local (+08:00)


def new_token(tariffd):
    """A token and its hash, from `tariffd token`."""
    out = subprocess.run([tariffd, "token"], check=True, capture_output=True, text=True).stdout
    token, line = out.splitlines()
    digest = line.removeprefix("token_sha256 = ")
    check(digest == hashlib.sha256(token.encode()).hexdigest(), f"tariffd token's hash: {out!r}")
    return token, digest


def set_t1_hashes(d, lines):
    """Rewrites t1's token_sha256 lines in the daemon's config."""
    with open(d.config) as f:
        text = f.read()
    head, rest = text.split("[tenant t1]\n", 1)
    _, tail = rest.split("\n[tenant t2]\n", 1)
    with open(d.config, "w") as f:
        f.write(head + "[tenant t1]\n" + "".join(x + "\n" for x in lines) + "\n[tenant t2]\n" + tail)


def reload(d, counter="tariffd_reloads_ok_total"):
    """SIGHUP, and wait until the daemon counts the reload under counter."""
    before = metric(d, counter) or 0
    d.proc.send_signal(1)  # SIGHUP
    wait_until(lambda: (metric(d, counter) or 0) == before + 1, 10, f"{counter} goes up")


minute = 0


def write(d, token, cluster="c1", **kw):
    """One sample, a minute after the last one; the answer's status."""
    global minute
    minute += 1
    return d.write(f"power,cluster={cluster} kw=40 {T0 + 60 * minute}\n", tenant=token, **kw)[0]


accepted = 0  # samples answered 204


def expect(d, token, status, what, **kw):
    global accepted
    s = write(d, token, **kw)
    accepted += s == 204
    check(s == status, f"{what}: got {s}, want {status}")


tariffd = sys.argv[1]
old, old_hash = new_token(tariffd)
new, new_hash = new_token(tariffd)
third, third_hash = new_token(tariffd)
check(len({old, new, third}) == 3, "three calls of tariffd token differ")

d = Daemon(tariffd)
try:
    set_t1_hashes(d, [f"token_sha256 = {old_hash}"])
    d.start()

    # 1. The old token only.
    expect(d, old, 204, "old token before the rotation")
    expect(d, new, 401, "new token before its hash is configured")

    # 2. The new hash beside the old one.
    set_t1_hashes(d, [f"token_sha256 = {old_hash}, {new_hash}"])
    reload(d)
    expect(d, old, 204, "old token while both are configured")
    for auth in ("token", "bearer", "basic"):
        expect(d, new, 204, f"new token while both are configured ({auth})", auth=auth)
    expect(d, new, 204, "new token as v1 p=", auth="query", v2=False)
    expect(d, new, 403, "new token for t2's cluster", cluster="x1")

    # 3. The old hash removed: the clients have moved to the new token.
    set_t1_hashes(d, [f"token_sha256 = {new_hash}"])
    reload(d)
    expect(d, old, 401, "old token after its hash is removed")
    expect(d, old, 401, "old token after its hash is removed (v1 p=)", auth="query", v2=False)
    expect(d, new, 204, "new token after the old hash is removed")
    expect(d, "t2", 204, "t2's token, untouched by t1's rotation", cluster="x1")

    # 4. The repeated-key form.
    set_t1_hashes(d, [f"token_sha256 = {new_hash}", f"token_sha256 = {third_hash}"])
    reload(d)
    expect(d, new, 204, "new token beside a repeated key")
    expect(d, third, 204, "third token as a repeated key")

    # 5. A token pasted where its hash belongs: the reload is rejected and
    # the tokens in force still work.
    set_t1_hashes(d, [f"token_sha256 = {new_hash}, {old}"])
    reload(d, "tariffd_reloads_failed_total")
    expect(d, new, 204, "new token after a rejected reload")
    expect(d, third, 204, "third token after a rejected reload")
    expect(d, old, 401, "a token pasted as a hash does not authenticate")
    log = d.read_log()
    check("token_sha256 item 2 (43 characters, not shown: it may be a token)" in log,
          "the rejected reload names the item: " + log[-600:])

    # Every 204 across the reloads was a sample taken, and rows follow.
    n = metric(d, "tariffd_samples_accepted_total")
    check(n == accepted, f"samples accepted: {n}, want {accepted}")
    wait_until(lambda: (len(d.table("billing_rows")) > 0, "no rows"), 15, "rows reach the ledger")

    log = d.read_log()
    for name, secret in (("old", old), ("new", new), ("third", third), ("t2", "t2-secret")):
        check(secret not in log, f"the {name} token appears in the daemon's log")
    check(d.stop() == 0, "daemon stops with 0")
except Exception as e:  # noqa: BLE001
    fail(f"{type(e).__name__}: {e}", lambda: print(d.read_log()[-3000:]))
finally:
    d.cleanup()
finish()
