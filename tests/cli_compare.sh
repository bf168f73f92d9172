#!/usr/bin/env bash
# tariffd price --compare end to end:
# - it equals two separate tariffd price runs, CONF on the input and ALT on
#   the input with every value multiplied by F (a scaled file made here), in
#   every CSV file, and its comparison.csv repeats their statements;
# - its break-even scale on tiny configs computed by hand (below);
# - its refusals: clusters in one config only, a bad --scale, a line that
#   only ALT's scale puts out of range.
# Usage: cli_compare.sh TARIFFD SOURCE_ROOT
set -uo pipefail
tariffd=$1
root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL $*"
}

# scale F IN OUT: every energy field's value times F, as the double Python
# and tariffd's parser both read, written back with repr (which reads back
# as the same double); integer values (123i) become floats.
scale() {
    python3 - "$@" <<'PY'
import re, sys
f, src, dst = float(sys.argv[1]), sys.argv[2], sys.argv[3]
field = re.compile(r" (kw|w|kwh|wh)=([0-9.eE+-]+)[iu]?(?= |$)")
with open(src) as i, open(dst, "w") as o:
    for line in i:
        line = line.rstrip("\n")
        m = field.search(line)
        if m:
            line = f"{line[:m.start()]} {m.group(1)}={float(m.group(2)) * f!r}{line[m.end():]}"
        o.write(line + "\n")
PY
}

# same_as_separate_runs NAME CONF ALT F INPUT [ARGS...]
same_as_separate_runs() {
    local name=$1 conf=$2 alt=$3 f=$4 input=$5
    shift 5
    local d="$tmp/$name"
    mkdir -p "$d/compare" "$d/conf" "$d/alt"
    if ! "$tariffd" price -c "$conf" --compare "$alt" --scale "$f" --out "$d/compare" "$@" \
        <"$input" >"$d/stdout" 2>"$d/stderr"; then
        fail "$name: --compare exit status $?: $(cat "$d/stderr")"
        return
    fi
    scale "$f" "$input" "$d/scaled.lp"
    "$tariffd" price -c "$conf" --out "$d/conf" "$@" <"$input" >/dev/null 2>&1
    "$tariffd" price -c "$alt" --out "$d/alt" "$@" <"$d/scaled.lp" >/dev/null 2>&1
    for side in conf alt; do
        for f in billing_rows demand_charges monthly_statements monthly_by_period; do
            if cmp -s "$d/$side/$f.csv" "$d/compare/$side/$f.csv"; then
                ok
            else
                fail "$name: $side/$f.csv differs from a separate run"
                diff -u "$d/$side/$f.csv" "$d/compare/$side/$f.csv" | head -20
            fi
        done
    done
    # comparison.csv: its conf and alt rows are the statements of each run,
    # and a difference row is alt minus conf, column by column.
    if python3 - "$d" <<'PY'; then ok; else fail "$name: comparison.csv"; fi
import csv, sys
from decimal import Decimal
d = sys.argv[1]
cols = ["kwh", "energy_charge", "surcharge", "demand_charge", "subsidy", "net", "cny_per_pflop_hour"]
rows = list(csv.DictReader(open(f"{d}/compare/comparison.csv")))
by = {(r["cluster"], r["month"], r["config"]): r for r in rows}
for side in ("conf", "alt"):
    stm = list(csv.DictReader(open(f"{d}/{side}/monthly_statements.csv")))
    assert len(stm) * 3 == len(rows), (side, len(stm), len(rows))
    for s in stm:
        r = by[(s["cluster"], s["month"], side)]
        assert r["tenant"] == s["tenant"], (r, s)
        for c in cols:
            assert r[c] == s[c], (side, c, r, s)
for (cluster, month, side), r in by.items():
    if side != "difference":
        continue
    a, c = by[(cluster, month, "alt")], by[(cluster, month, "conf")]
    for col in cols:
        if a[col] and c[col]:
            assert Decimal(r[col]) == Decimal(a[col]) - Decimal(c[col]), (col, r, a, c)
        else:
            assert r[col] == "", (col, r)
PY
}

# The sample day under etc/ against etc/ with qy-t01's 1024 H20 replaced by
# 1024 Ascend 910C (the README's example) drawing 1.4 times the power:
# power in kW and W, counters in kWh and integer Wh, a retried batch and
# a late sample.
python3 "$root/etc/sample/generate.py" >"$tmp/day.lp"
cp -r "$root/etc" "$tmp/alt"
sed -i 's/^inventory = h20\*1024$/inventory = ascend-910c*1024/' "$tmp/alt/conf.d/40-clusters.conf"
if grep -q '^inventory = ascend-910c\*1024$' "$tmp/alt/conf.d/40-clusters.conf"; then
    ok
else
    fail "the sample's qy-t01 no longer has inventory = h20*1024"
fi
same_as_separate_runs sample "$root/etc/tariffd.conf" "$tmp/alt/tariffd.conf" 1.4 "$tmp/day.lp"
# The price tests' data (adjustments, a counter in Wh) against its own
# config at 0.7, in seconds.
price=$root/tests/data/price
cat "$price/basic.lp" "$price/late.lp" >"$tmp/price.lp"
same_as_separate_runs price "$price/tariffd.conf" "$price/tariffd.conf" 0.7 "$tmp/price.lp" \
    --precision s

# --- Break-even on configs computed by hand ------------------------------
# One cluster draws 40 kW for an hour (a sample a minute, 00:00-01:00 local
# on 2025-03-01): four 15-minute intervals of 10 kWh, 40 kW of max demand;
# at scale F, 10 F kWh and 40 F kW. The search reports the smallest F on
# the 0.001 grid at which ALT's net reaches CONF's.
for i in $(seq 0 60); do echo "power,cluster=c1 kw=40 $((1740758400 + 60 * i))"; done >"$tmp/hour.lp"

# conf NAME TARIFF-LINES [CLUSTER-LINES]
conf() {
    cat >"$tmp/$1.conf" <<EOF
[daemon]
interval = 15m
[tenant t1]
token_sha256 = 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
[chip x]
vendor = X
domestic = no
rated_kw = 1
[site s1]
province = p1
tariff = tf
[cluster c1]
tenant = t1
site = s1
inventory = x*40
${3:-}
[tariff tf @ 2025-01-01]
utc_offset = +08:00
surcharge = 0
profile.base = 00:00 flat
months = jan-dec base
$2
EOF
}
conf energy $'price.flat = 0.5\ndemand_basis = max_demand\ndemand.kw = 0'
conf energy-alt $'price.flat = 0.3\ndemand_basis = max_demand\ndemand.kw = 0'
conf energy-cheap $'price.flat = 0.001\ndemand_basis = max_demand\ndemand.kw = 0'
conf demand $'price.flat = 0.5\ndemand_basis = max_demand\ndemand.kw = 30'
conf demand-alt $'price.flat = 0.5\ndemand_basis = contract\ndemand.kw = 30' 'contract_kw = 20'
conf capacity-alt $'price.flat = 0.5\ndemand_basis = capacity\ndemand.kva = 24' \
    'transformer_kva = 100'

# break_even NAME CONF ALT EXPECTED-LINE EXPECTED-CSV-ROW
break_even() {
    local name=$1 want_line=$4 want_csv=$5
    mkdir -p "$tmp/be-$name"
    local out
    out=$("$tariffd" price -c "$tmp/$2.conf" --compare "$tmp/$3.conf" --precision s \
        --out "$tmp/be-$name" <"$tmp/hour.lp" 2>&1)
    local status=$?
    local line
    line=$(grep '^break-even' <<<"$out")
    if [ $status -eq 0 ] && [ "$line" = "$want_line" ] &&
        [ "$(sed -n 2p "$tmp/be-$name/break_even.csv")" = "$want_csv" ]; then
        ok
    else
        fail "$name: status $status, line: $line (want: $want_line)," \
            "csv: $(sed -n 2p "$tmp/be-$name/break_even.csv") (want: $want_csv)"
    fi
}

# Energy only (no demand charge). CONF at 0.5 CNY/kWh: 40 x 0.5 = 20. ALT
# at 0.3 costs 40 F x 0.3 = 12 F (12 at F = 1): F = 20 / 12 = 1.66667, so
# 1.667. Each quarter's kWh is rounded before it is charged: at 1.667,
# 16.67 kWh x 0.3 = 5.001, 20.004 in all; at 1.666, 16.66 x 0.3 = 4.998,
# 19.992 in all.
break_even energy energy energy-alt \
    "break-even at power x1.667: ALT's net is 19.9920 at x1.666 and 20.0040 at x1.667, CONF's 20.0000 (searched to 0.001 in (0, 10], 15 pricings of ALT)" \
    "1,20.0000,12.0000,found,1.667,19.9920,20.0040"
# A demand charge, on a contract. CONF: 20 of energy + 40 kW x 30 CNY =
# 1220. ALT: the same energy price, billed on a 20 kW contract whose
# excess above 1.05 x 20 = 21 kW counts twice: 20 F + 30 x (20 + 2 x (40 F
# - 21)) = 2420 F - 660 (1760 at F = 1), and 2420 F - 660 = 1220 at F =
# 0.77686, so 0.777. At 0.777: 7.77 kWh a quarter, max 31.08 kW, billing
# 20 + 2 x 10.08 = 40.16 kW, 40.16 x 30 = 1204.80 + 15.54 of energy =
# 1220.34; at 0.776: 40.08 x 30 = 1202.40 + 15.52 = 1217.92.
break_even demand demand demand-alt \
    "break-even at power x0.777: ALT's net is 1217.9200 at x0.776 and 1220.3400 at x0.777, CONF's 1220.0000 (searched to 0.001 in (0, 10], 15 pricings of ALT)" \
    "1,1220.0000,1760.0000,found,0.777,1217.9200,1220.3400"
# A capacity charge of 100 kVA x 24 = 2400 whatever ALT draws: at 0.001 it
# already pays 2400 + 0.04 kWh x 0.5 = 2400.02 > 1220 (2420 at F = 1).
break_even capacity demand capacity-alt \
    "break-even: none in (0, 10]: ALT's net at x0.001 is 2400.0200, already at or above CONF's 1220.0000" \
    "1,1220.0000,2420.0000,alt_dearer_throughout,,,2400.0200"
# At 0.001 CNY/kWh even 10 times the power is 400 kWh x 0.001 = 0.40 < 20.
break_even cheap energy energy-cheap \
    "break-even: none in (0, 10]: ALT's net at x10 is 0.4000, still below CONF's 20.0000" \
    "1,20.0000,0.0400,alt_cheaper_throughout,,,0.4000"

# --- Refusals ---------------------------------------------------------------
# refuse NAME STATUS EXPECTED-STDERR INPUT ARGS...: nothing is written.
refuse() {
    local name=$1 want_status=$2 want=$3 input=$4
    shift 4
    rm -rf "$tmp/refused"
    mkdir -p "$tmp/refused"
    local err status
    err=$(printf '%b' "$input" | "$tariffd" price --out "$tmp/refused" "$@" 2>&1 >/dev/null)
    status=$?
    if [ "$status" -eq "$want_status" ] && [ "$err" = "$want" ] &&
        [ -z "$(ls -A "$tmp/refused")" ]; then
        ok
    else
        fail "$name: status $status (want $want_status), stderr: $err (want: $want)"
    fi
}

sed 's/^\[cluster c1\]$/[cluster c9]/' "$tmp/energy-alt.conf" >"$tmp/renamed.conf"
refuse "clusters differ" 1 "tariffd: cluster \"c1\" is in $tmp/energy.conf but not in $tmp/renamed.conf (--compare needs the same clusters in both)
tariffd: cluster \"c9\" is in $tmp/renamed.conf but not in $tmp/energy.conf (--compare needs the same clusters in both)" \
    '' -c "$tmp/energy.conf" --compare "$tmp/renamed.conf"
refuse "scale zero" 2 'tariffd: --scale "0" must be greater than 0 and at most 1000' '' \
    -c "$tmp/energy.conf" --compare "$tmp/energy-alt.conf" --scale 0
refuse "scale too large" 2 'tariffd: --scale "1000.5" must be greater than 0 and at most 1000' '' \
    -c "$tmp/energy.conf" --compare "$tmp/energy-alt.conf" --scale 1000.5
refuse "scale exponent" 2 'tariffd: --scale "1e1" is not a number' '' \
    -c "$tmp/energy.conf" --compare "$tmp/energy-alt.conf" --scale 1e1
refuse "scale decimals" 2 'tariffd: --scale "1.0000001" has more than 6 decimals' '' \
    -c "$tmp/energy.conf" --compare "$tmp/energy-alt.conf" --scale 1.0000001
refuse "scale without compare" 2 "tariffd: --scale scales ALT's power: it needs --compare ALT" '' \
    -c "$tmp/energy.conf" --scale 2
printf '[daemon]\ninterval = 7m\n' >"$tmp/bad.conf"
refuse "ALT config error" 1 "$tmp/bad.conf:2: interval must be 5m, 10m, 15m, 30m or 60m, not \"7m\"" \
    '' -c "$tmp/energy.conf" --compare "$tmp/bad.conf"
# A malformed line is CONF's refusal, as tariffd price words it; a value
# only ALT's scale puts out of range (a counter reads at most 1e15 kWh)
# names ALT and its scale.
refuse "malformed line" 2 'line 2: invalid number "4x0" in field "kw"' \
    'power,cluster=c1 kw=40 1740758400\npower,cluster=c1 kw=4x0 1740758460\n' \
    -c "$tmp/energy.conf" --compare "$tmp/energy-alt.conf" --precision s
refuse "out of range at ALT's scale" 2 \
    'ALT x10: line 2: value 2e+15 is out of range (a counter reads at most 1e+15)' \
    'power,cluster=c1,meter=k kwh=1 1740758400\npower,cluster=c1,meter=k kwh=2e14 1740758460\n' \
    -c "$tmp/energy.conf" --compare "$tmp/energy-alt.conf" --precision s --scale 10

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
