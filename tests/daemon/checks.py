"""The one pass/fail counter of the Python tests, their skip and their waits.

A test calls check(ok, what) for each thing it verifies and finish() at the
end, which prints the closing "N passed, N failed" line that
scripts/lib/summarize.py counts, and exits 1 if anything failed.

A test that cannot run (no PostgreSQL, no way to stop it) calls skip(why):
exit status 77, which meson shows as SKIP. It never passes instead.

Waits poll a condition until a deadline and fail loudly when it passes:
wait_until raises Timeout, expect_within records a failed check. Neither
ever returns as if the condition held."""
import sys
import time

passed = 0
failed = 0


def check(ok, what, on_fail=None):
    """Counts one check; on failure prints "FAIL what" and calls on_fail()
    (for more detail, such as a daemon's log tail). Returns ok."""
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)
        if on_fail:
            on_fail()
    return bool(ok)


def fail(what, on_fail=None):
    """A failure that is not a comparison (an exception, a broken cleanup)."""
    return check(False, what, on_fail)


def finish():
    """Prints the closing line and exits: 0 when nothing failed, else 1."""
    print(f"{passed} passed, {failed} failed")
    sys.stdout.flush()
    sys.exit(1 if failed else 0)


def skip(why):
    """The test cannot run here: exit 77 (meson's SKIP)."""
    print(f"skipped: {why}")
    sys.stdout.flush()
    sys.exit(77)


# Daemon tests: a failed check shows the daemon's log tail, once per daemon
# until tails_shown is cleared (a scenario's start).
tails_shown = []


def log_tail(d, n=20):
    try:
        lines = d.read_log().splitlines()[-n:]
    except OSError:
        return "  (no log)"
    return "\n".join("  | " + line for line in lines)


def tail_once(d):
    """On a failure: d's log tail, once per daemon."""
    def show():
        if d and d not in tails_shown:
            tails_shown.append(d)
            print(f"  daemon on port {d.port}, log tail:\n{log_tail(d)}")
    return show


def daemon_check(ok, what, d=None):
    """check, showing d's log tail on a failure."""
    return check(ok, what, tail_once(d))


def daemon_wait(probe, timeout, what, d=None, every=0.1):
    """expect_within, showing d's log tail on a failure: records one check,
    returns (ok, the last detail)."""
    return expect_within(probe, timeout, what, tail_once(d), every)


class Timeout(AssertionError):
    """A wait's deadline passed."""


def _poll(probe, timeout, every):
    """Calls probe() until it is true or returns (True, detail), or the
    deadline passes; returns (ok, detail) of the last call."""
    deadline = time.monotonic() + timeout
    while True:
        r = probe()
        ok, detail = r if isinstance(r, tuple) else (bool(r), r)
        if ok or time.monotonic() > deadline:
            return ok, detail
        time.sleep(every)


def wait_until(probe, timeout, what, every=0.05):
    """Polls probe() (a value, or (ok, detail)) until it holds; returns its
    detail. Raises Timeout naming `what` and the last detail when the
    deadline passes."""
    ok, detail = _poll(probe, timeout, every)
    if not ok:
        raise Timeout(f"{what}: not within {timeout}s: {detail}")
    return detail


def expect_within(probe, timeout, what, on_fail=None, every=0.05):
    """Like wait_until, but records the outcome as one check instead of
    raising. Returns (ok, detail)."""
    ok, detail = _poll(probe, timeout, every)
    check(ok, f"{what}: not within {timeout}s: {detail}", on_fail)
    return ok, detail
