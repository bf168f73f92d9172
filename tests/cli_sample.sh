#!/usr/bin/env bash
# The shipped sample day (etc/sample/generate.py) through tariffd price with
# the shipped etc/ configuration: every row obeys the money rules (checked
# by tests/verify_ledger.py with Python's Decimal) and the statements are
# those recorded in tests/data/sample/ (a fen of change is a failure).
# Usage: cli_sample.sh TARIFFD SOURCE_ROOT
set -euo pipefail
tariffd=$1
root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$root/etc/sample/generate.py" >"$tmp/day.lp"
"$tariffd" price -c "$root/etc/tariffd.conf" --out "$tmp" <"$tmp/day.lp" >"$tmp/stdout"
grep -q "31652 samples priced, 10 duplicates ignored (0 with another value), 0 quarantined; 480 interval rows, 1 adjustments, 5 demand rows" "$tmp/stdout"
python3 "$root/tests/verify_ledger.py" "$tmp" 0.5
diff -u "$root/tests/data/sample/monthly_statements.csv" "$tmp/monthly_statements.csv"
echo "2 passed, 0 failed"
