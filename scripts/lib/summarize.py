"""Totals meson test logs: a Check test counts its checks, a script that
prints "N passed, N failed" its cases, any other test counts as one. A
skipped test (exit 77) counts as neither passed nor failed: it is reported
as skipped. Prints one closing line, "tests: N passed, N failed" (followed
by ", N skipped" when any test was skipped)."""
import json
import re
import sys

CHECK = re.compile(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)")
PLAIN = re.compile(r"^(\d+) passed, (\d+) failed$", re.M)
passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            t = json.loads(line)
            if t["result"] == "SKIP":
                skipped += 1
                continue
            ok = t["result"] in ("OK", "EXPECTEDFAIL")
            out = t.get("stdout", "") or ""
            m = CHECK.findall(out) or [(int(p) + int(f), f, 0) for p, f in PLAIN.findall(out)]
            if m:
                for checks, failures, errors in m:
                    bad = int(failures) + int(errors)
                    passed += int(checks) - bad
                    failed += bad
                if not ok and all(int(f) + int(e) == 0 for _, f, e in m):
                    failed += 1  # crashed or leaked after its checks passed
            elif ok:
                passed += 1
            else:
                failed += 1
print(f"tests: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
