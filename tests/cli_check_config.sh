#!/usr/bin/env bash
# tariffd --check-config end to end: the shipped etc/ passes; bad configs
# print exactly "FILE:LINE: message" and exit 1; usage errors exit 2.
# Usage: cli_check_config.sh TARIFFD SOURCE_ROOT
set -uo pipefail
tariffd=$1
root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

# expect NAME STATUS STDERR-FILE-CONTENT -- ARGS...
expect() {
    local name=$1 want_status=$2 want_err=$3
    shift 4
    local out err status
    out=$("$tariffd" "$@" 2>"$tmp/stderr")
    status=$?
    err=$(cat "$tmp/stderr")
    if [ "$status" -eq "$want_status" ] && [ "$err" = "$want_err" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: status $status (want $want_status)"
        echo "  stderr: $err"
        echo "  want:   $want_err"
    fi
    LAST_OUT=$out
}

# The shipped example passes and its summary counts what etc/ holds.
expect "shipped etc/ passes" 0 "" -- --check-config -c "$root/etc/tariffd.conf"
if grep -q "configuration ok (8 files)" <<<"$LAST_OUT" && grep -q "clusters    5" <<<"$LAST_OUT" &&
    grep -q "tariffs     3 (6 versions)" <<<"$LAST_OUT"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL shipped summary: $LAST_OUT"
fi

# A copy of etc/ with one mistake in an included file: the message names
# that file and line, and nothing else is reported.
cp -r "$root/etc" "$tmp/etc"
sed -i '0,/^rate = 0.5 /s//rate = 0.75 /' "$tmp/etc/conf.d/50-programmes.conf"
line=$(grep -n '^rate = 0.75' "$tmp/etc/conf.d/50-programmes.conf" | head -n 1 | cut -d: -f1)
expect "rate above max_subsidy in an included file" 1 \
    "$tmp/etc/conf.d/50-programmes.conf:$line: rate 0.75 is above max_subsidy 0.5" \
    -- --check-config -c "$tmp/etc/tariffd.conf"

# Bad service dates and dated changes on two shipped clusters: each mistake
# at its own line, all reported at once, section by section.
cp -r "$root/etc" "$tmp/svc"
clusters=$tmp/svc/conf.d/40-clusters.conf
sed -i '/^\[cluster qy-a01\]$/a service_from = 2026-01-17\nservice_until = 2026-01-10\ntransformer_kva@2026-02-30 = 2500' \
    "$clusters"
sed -i '/^\[cluster wlcb-t01\]$/a contract_kw@2026-04-16 = 900\nservice_from = 17 January' "$clusters"
l() { grep -n "^$1" "$clusters" | head -n 1 | cut -d: -f1; }
expect "bad service dates" 1 \
    "$clusters:$(l 'transformer_kva@2026-02-30'): transformer_kva date \"2026-02-30\" is not a valid date
$clusters:$(l 'service_until'): service_until 2026-01-10 is before service_from 2026-01-17
$clusters:$(l 'service_from = 17'): service_from \"17 January\" is not a date (expected YYYY-MM-DD)
$clusters:$(l 'contract_kw@'): contract_kw@2026-04-16 needs an undated contract_kw, in force before it" \
    -- --check-config -c "$tmp/svc/tariffd.conf"

# A missing include directory.
printf '[daemon]\ninclude = nowhere.d\n' >"$tmp/inc.conf"
expect "missing include directory" 1 \
    "$tmp/inc.conf:2: include directory \"$tmp/nowhere.d\" could not be read: No such file or directory" \
    -- --check-config -c "$tmp/inc.conf"

# include inside an included file.
mkdir -p "$tmp/a.d"
printf '[daemon]\ninclude = a.d\n' >"$tmp/a.conf"
printf '; nested\n[daemon]\ninclude = b.d\n' >"$tmp/a.d/x.conf"
expect "nested include" 1 "$tmp/a.d/x.conf:3: include is only allowed in the main file" \
    -- --check-config -c "$tmp/a.conf"

# An unreadable main file.
expect "missing file" 1 "$tmp/none.conf: could not open: No such file or directory" \
    -- --check-config -c "$tmp/none.conf"

# A line longer than inih's buffer.
{ printf '[tenant x]\nname = '; head -c 300 /dev/zero | tr '\0' 'x'; printf '\n'; } >"$tmp/long.conf"
expect "over-long line" 1 "$tmp/long.conf:2: line is longer than 198 bytes" \
    -- --check-config -c "$tmp/long.conf"

# A conninfo libpq cannot parse is a config error here, with libpq's reason
# (the daemon's log only says it is malformed: the reason may quote a
# password).
printf '[postgres]\nconninfo = host=db password=abc def\n' >"$tmp/pg.conf"
expect "malformed conninfo" 1 \
    "$tmp/pg.conf: [postgres] conninfo is not a valid libpq connection string: missing \"=\" after \"def\" in connection info string" \
    -- --check-config -c "$tmp/pg.conf"

# TLS: the certificate and key are read as the daemon reads them.
{
    echo "[daemon]"
    echo "listen_tls = 127.0.0.1:8443"
    echo "tls_cert = $tmp/none.pem"
    echo "tls_key = $tmp/none.key"
    echo "[tenant t]"
    echo "token_sha256 = $(printf '%064d' 0)"
} >"$tmp/tls.conf"
err=$("$tariffd" --check-config -c "$tmp/tls.conf" 2>&1 >/dev/null)
status=$?
if [ "$status" -eq 1 ] && [[ $err == "tls_cert $tmp/none.pem: "*"No such file"* ]]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL a missing tls_cert: status $status, stderr: $err"
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/a.key" \
    -out "$tmp/a.pem" -days 1 -subj /CN=a 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/b.key" \
    -out "$tmp/b.pem" -days 1 -subj /CN=b 2>/dev/null
sed -i "s|^tls_cert = .*|tls_cert = $tmp/a.pem|; s|^tls_key = .*|tls_key = $tmp/b.key|" "$tmp/tls.conf"
expect "a key that does not match its certificate" 1 \
    "tls_key $tmp/b.key does not match the certificate in tls_cert $tmp/a.pem" \
    -- --check-config -c "$tmp/tls.conf"
sed -i "s|^tls_key = .*|tls_key = $tmp/a.key|" "$tmp/tls.conf"
expect "a matching certificate and key" 0 "" -- --check-config -c "$tmp/tls.conf"

# Usage.
expect "version" 0 "" -- --version
usage_err=$("$tariffd" --bogus 2>&1 >/dev/null)
expect "unknown option" 2 "$usage_err" -- --bogus
if grep -q "unrecognized option '--bogus'" <<<"$usage_err" && grep -q "^usage: tariffd" <<<"$usage_err"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL unknown option message"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
