#!/usr/bin/env bash
# tariffd price end to end: the CSV files it writes equal hand-computed
# ones (tests/data/price/*/, arithmetic in tests/data/price/README.md), and every
# refusal says "line N: reason" and exits 2 without writing anything.
# Usage: cli_price.sh TARIFFD SOURCE_ROOT
set -uo pipefail
tariffd=$1
data=$2/tests/data/price
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL $*"
}

for case in basic late; do
    mkdir -p "$tmp/$case"
    if ! "$tariffd" price -c "$data/tariffd.conf" --precision s --out "$tmp/$case" \
        <"$data/$case.lp" >"$tmp/$case/stdout" 2>"$tmp/$case/stderr"; then
        fail "$case: exit status $?: $(cat "$tmp/$case/stderr")"
        continue
    fi
    for f in billing_rows demand_charges monthly_statements monthly_by_period; do
        if diff -u "$data/$case/$f.csv" "$tmp/$case/$f.csv"; then ok; else fail "$case/$f.csv"; fi
    done
done

# The same data in nanoseconds (the default precision) and in reverse order
# gives the same statements: reversed, the intervals close early and later
# samples arrive as adjustments, whose revisions add up to the same money.
awk '{ $NF = $NF "000000000"; print }' "$data/basic.lp" | tac >"$tmp/basic-ns-reversed.lp"
mkdir -p "$tmp/reversed"
"$tariffd" price -c "$data/tariffd.conf" --out "$tmp/reversed" <"$tmp/basic-ns-reversed.lp" >/dev/null
if diff -u "$data/basic/monthly_statements.csv" "$tmp/reversed/monthly_statements.csv"; then
    ok
else
    fail "reversed input: statements differ"
fi

# The printed table has the statement of each cluster.
if grep -q "^2025-03-01  t1            c1 .* 1205.09$" "$tmp/basic/stdout"; then
    ok
else
    fail "printed statement: $(cat "$tmp/basic/stdout")"
fi

# refuse NAME STATUS EXPECTED-STDERR INPUT [ARGS...]
refuse() {
    local name=$1 want_status=$2 want=$3 input=$4
    shift 4
    mkdir -p "$tmp/refused"
    local err status
    err=$(printf '%b' "$input" | "$tariffd" price -c "$data/tariffd.conf" --out "$tmp/refused" "$@" \
        2>&1 >/dev/null)
    status=$?
    if [ "$status" -eq "$want_status" ] && [ "$err" = "$want" ] &&
        [ -z "$(ls -A "$tmp/refused")" ]; then
        ok
    else
        fail "$name: status $status (want $want_status), stderr: $err (want: $want)"
    fi
}

refuse "unknown cluster" 2 'line 2: unknown cluster "zz"' \
    'power,cluster=c1 kw=40 1740786300\npower,cluster=zz kw=40 1740786360\n' --precision s
refuse "no timestamp" 2 'line 3: no timestamp (offline pricing needs one on every line)' \
    '# comment\npower,cluster=c1 kw=40 1740786300\npower,cluster=c1 kw=40\n' --precision s
refuse "meter switches kind" 2 \
    'line 2: meter "main" of cluster "c1" sends power (kw or w), not an energy counter' \
    'power,cluster=c1 kw=40 1740786300\npower,cluster=c1 kwh=40 1740786360\n' --precision s
refuse "malformed number" 2 'line 2: invalid number "4x0" in field "kw"' \
    'power,cluster=c1 kw=40 1740786300\npower,cluster=c1 kw=4x0 1740786360\n' --precision s
refuse "bad precision" 2 'tariffd: unknown precision "h" (expected ns, us, ms or s)' \
    'power,cluster=c1 kw=40 1740786300\n' --precision h

# A config error: FILE:LINE and status 1.
printf '[daemon]\ninterval = 7m\n' >"$tmp/bad.conf"
err=$(printf '' | "$tariffd" price -c "$tmp/bad.conf" 2>&1 >/dev/null)
status=$?
if [ $status -eq 1 ] && [ "$err" = "$tmp/bad.conf:2: interval must be 5m, 10m, 15m, 30m or 60m, not \"7m\"" ]; then
    ok
else
    fail "config error: status $status, $err"
fi

# An error far into a large input still names its absolute line (the
# reader works in chunks).
{
    for i in $(seq 0 29999); do echo "power,cluster=c1 kw=40 $((1740786300 + i))"; done
    echo "power,cluster=c1 kw=-1 1740900000"
} >"$tmp/long.lp"
err=$("$tariffd" price -c "$data/tariffd.conf" --precision s <"$tmp/long.lp" 2>&1 >/dev/null)
if [ "$err" = 'line 30001: field "kw" is negative' ]; then ok; else fail "long input: $err"; fi

# The input is read and parsed on one thread while the engine prices on
# another, the reader ahead: whichever error comes first in the input is
# the one reported, a refusal by the engine (unknown cluster, a meter that
# changes kind) or a line the parser refuses, however far apart they are.
long_refusal() { # NAME EXPECTED FIRST-BAD-LINE SECOND-BAD-LINE
    {
        for i in $(seq 0 29999); do echo "power,cluster=c1,meter=m$((i % 50)) kw=40 $((1740786300 + i))"; done
        echo "$3"
        for i in $(seq 30001 99999); do echo "power,cluster=c1,meter=m$((i % 50)) kw=40 $((1740786300 + i))"; done
        echo "$4"
    } >"$tmp/long2.lp"
    local err status
    err=$("$tariffd" price -c "$data/tariffd.conf" --precision s <"$tmp/long2.lp" 2>&1 >/dev/null)
    status=$?
    if [ $status -eq 2 ] && [ "$err" = "$2" ]; then ok; else fail "$1: status $status, $err"; fi
}
long_refusal "engine's refusal before a parse error" 'line 30001: unknown cluster "zz"' \
    'power,cluster=zz kw=40 1740900000' 'power,cluster=c1 kw=x 1740900000'
long_refusal "parse error before an engine's refusal" 'line 30001: invalid value "x" in field "kw"' \
    'power,cluster=c1 kw=x 1740900000' 'power,cluster=zz kw=40 1740900000'
long_refusal "a meter that changes kind" \
    'line 30001: meter "m7" of cluster "c1" sends power (kw or w), not an energy counter' \
    'power,cluster=c1,meter=m7 kwh=40 1740900000' 'power,cluster=c1 kw=x 1740900000'

# A read that fails (a socket the sender resets) is reported after the
# line its last piece refused, and its status 1 wins, whether the parser or
# the engine refused the line.
read_reset() { # NAME LAST-LINE EXPECTED-STDERR
    local out
    out=$(python3 - "$tariffd" "$data/tariffd.conf" "$2" <<'PY'
import socket, struct, subprocess, sys, threading, time
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
def serve():
    c, _ = srv.accept()
    c.sendall(b"power,cluster=c1 kw=40 1740786300\n" + sys.argv[3].encode())
    time.sleep(0.5)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # a reset, not an end of input
threading.Thread(target=serve).start()
client = socket.create_connection(srv.getsockname())
p = subprocess.run([sys.argv[1], "price", "-c", sys.argv[2], "--precision", "s"],
                   stdin=client.fileno(), capture_output=True)
print(p.returncode)
print(p.stderr.decode(), end="")
PY
)
    if [ "$out" = "$(printf '1\n%s\ntariffd: could not read the input: Connection reset by peer' "$3")" ]; then
        ok
    else
        fail "$1: $out"
    fi
}
read_reset "read error after a parse error" 'power,cluster=c1 kw=x' 'line 2: invalid value "x" in field "kw"'
read_reset "read error after an engine's refusal" 'power,cluster=zz kw=4 1740786360' \
    'line 2: unknown cluster "zz"'

# Input is read in 1 MiB pieces cut at a newline: a string field with a raw
# newline across a cut still belongs to its point (the pad before it moves
# the cut into the string), and the statements equal those without strings.
python3 - "$data/basic.lp" "$tmp/strings.lp" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
start = (1 << 20) - 40  # the point starts here; its string's newline falls before 1 MiB
out = ""
while len(out) < start - 2000:
    out += "# " + "x" * 1000 + "\n"
out += "#" + "x" * (start - len(out) - 2) + "\n"
first, rest = lines[0].split(" ", 1)
out += first + ' note="' + "y" * 5 + "\n" + "z" * 30 + '",' + rest + "\n"
assert out.index("\n", start) < (1 << 20) < out.index('",', start)
out += "\n".join(lines[1:]) + "\n"
open(sys.argv[2], "w").write(out)
PY
mkdir -p "$tmp/strings"
if "$tariffd" price -c "$data/tariffd.conf" --precision s --out "$tmp/strings" <"$tmp/strings.lp" \
    >/dev/null 2>"$tmp/strings.err" &&
    diff -u "$data/basic/monthly_statements.csv" "$tmp/strings/monthly_statements.csv"; then
    ok
else
    fail "a string field's newline on a 1 MiB cut: $(cat "$tmp/strings.err")"
fi

# One sample far ahead of its meter's others, then the rest in order: each
# later sample lands between two neighbours, and across a gap longer than
# max_gap nothing is integrated, so only the intervals near it are priced
# again (this took seconds a request before). The statements equal those of
# the same samples in time order.
python3 - "$tmp" <<'PY'
import sys
t0 = 1740758400
lines = [f"power,cluster=c1 kw={10 + i % 7} {t0 + 60 * i}" for i in range(1600)]
far = f"power,cluster=c1 kw=10 {t0 + 84 * 86400}"
open(sys.argv[1] + "/far-first.lp", "w").write("\n".join([far] + lines) + "\n")
open(sys.argv[1] + "/far-sorted.lp", "w").write("\n".join(lines + [far]) + "\n")
# The same with an energy counter, whose difference spreads over the whole
# segment: every closed month it spans is priced again once per request,
# not once per interval (this took 20 s for six samples before).
lines = [f"power,cluster=c2,meter=ctr kwh={1000 + 3 * i} {t0 + 60 * i}" for i in range(40)]
far = f"power,cluster=c2,meter=ctr kwh=90000 {t0 + 300 * 86400}"
open(sys.argv[1] + "/cfar-first.lp", "w").write("\n".join([lines[0], far] + lines[1:]) + "\n")
open(sys.argv[1] + "/cfar-sorted.lp", "w").write("\n".join(lines + [far]) + "\n")
PY
for f in far-first far-sorted cfar-first cfar-sorted; do
    mkdir -p "$tmp/$f"
    "$tariffd" price -c "$data/tariffd.conf" --precision s --out "$tmp/$f" <"$tmp/$f.lp" >/dev/null 2>&1
done
for f in far cfar; do
    if diff -u "$tmp/$f-sorted/monthly_statements.csv" "$tmp/$f-first/monthly_statements.csv"; then
        ok
    else
        fail "$f: a sample far ahead first: statements differ from time order"
    fi
done

# A counter that jumps by its largest reading (1e15 kWh) in several intervals
# of a month: each interval saturates at 1e9 kWh, and the month's sum stays
# inside int64 (it wrapped before; the sanitizer build catches a wrap).
printf 'power,cluster=c2,meter=k kwh=%s %s\n' 0 1740758400 1e15 1740758460 0 1740759360 \
    1e15 1740759420 0 1740760320 1e15 1740760380 0 1740761280 1e15 1740761340 >"$tmp/huge.lp"
mkdir -p "$tmp/huge"
if "$tariffd" price -c "$data/tariffd.conf" --precision s --out "$tmp/huge" <"$tmp/huge.lp" \
    >/dev/null 2>"$tmp/huge.err" &&
    grep -q '^t1,c2,p1,2025-03-01,4000000000.000000,' "$tmp/huge/monthly_statements.csv"; then
    ok
else
    fail "a counter at its limits: $(cat "$tmp/huge.err") $(cat "$tmp/huge/monthly_statements.csv")"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
