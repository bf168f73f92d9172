#!/usr/bin/env bash
# tariffd token end to end: exit 0 with exactly two lines on stdout, a
# base64url token of 32 random bytes and "token_sha256 = HEX" where HEX is
# the SHA-256 of the token's text; two calls differ; the line pasted into a
# [tenant] section passes --check-config; arguments are a usage error (2).
# Usage: cli_token.sh TARIFFD
set -uo pipefail
tariffd=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() {
    passed=$((passed + 1))
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $*"
}

# run NAME: runs `tariffd token` into $tmp/NAME.out and $tmp/NAME.err.
run() {
    "$tariffd" token >"$tmp/$1.out" 2>"$tmp/$1.err"
    local status=$?
    [ "$status" -eq 0 ] && ok || fail "$1: exit status $status: $(cat "$tmp/$1.err")"
}

# check_pair NAME: the two lines, their form, and the hash of the token.
check_pair() {
    local lines token line2 want
    lines=$(wc -l <"$tmp/$1.out")
    [ "$lines" -eq 2 ] && ok || fail "$1: $lines lines on stdout, want 2: $(cat "$tmp/$1.out")"
    token=$(sed -n 1p "$tmp/$1.out")
    line2=$(sed -n 2p "$tmp/$1.out")
    # 43 base64url characters without padding: 32 bytes, 256 bits.
    [[ $token =~ ^[A-Za-z0-9_-]{43}$ ]] && ok || fail "$1: token \"$token\" is not 43 base64url characters"
    local bytes
    bytes=$(printf '%s=' "$token" | tr -- '-_' '+/' | base64 -d 2>/dev/null | wc -c)
    [ "$bytes" -eq 32 ] && ok || fail "$1: token decodes to $bytes bytes, want 32"
    want=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
    [ "$line2" = "token_sha256 = $want" ] && ok || fail "$1: second line \"$line2\", want \"token_sha256 = $want\""
    # The advice on stderr never repeats the token.
    ! grep -qF -- "$token" "$tmp/$1.err" && ok || fail "$1: the token appears on stderr"
}

run a
check_pair a
run b
check_pair b
cmp -s "$tmp/a.out" "$tmp/b.out" && fail "two calls printed the same: $(cat "$tmp/a.out")" || ok
[ "$(sed -n 1p "$tmp/a.out")" != "$(sed -n 1p "$tmp/b.out")" ] && ok || fail "two calls gave the same token"

# The second line is what a [tenant] section takes, as is.
{
    printf '[tenant acme]\n'
    sed -n 2p "$tmp/a.out"
    sed -n 2p "$tmp/b.out"
} >"$tmp/t.conf"
out=$("$tariffd" --check-config -c "$tmp/t.conf" 2>&1)
status=$?
if [ "$status" -eq 0 ] && grep -q "tenants     1" <<<"$out"; then
    ok
else
    fail "the printed lines in a [tenant] section: status $status: $out"
fi

# Usage errors: anything after "token" is refused with a message and exit 2.
"$tariffd" token --length 64 >"$tmp/u.out" 2>"$tmp/u.err"
status=$?
first=$(head -n 1 "$tmp/u.err")
if [ "$status" -eq 2 ] && [ "$first" = 'tariffd: "tariffd token" takes no arguments (got "--length")' ] &&
    grep -q "^usage: tariffd" "$tmp/u.err" && [ ! -s "$tmp/u.out" ]; then
    ok
else
    fail "usage error: status $status, stdout $(cat "$tmp/u.out"), stderr $(cat "$tmp/u.err")"
fi
"$tariffd" token --help >"$tmp/h.out" 2>&1
status=$?
[ "$status" -eq 0 ] && grep -q "tariffd token" "$tmp/h.out" && ok || fail "token --help: status $status"

# A token is never written anywhere it cannot be read back by the caller:
# stdout that cannot be written is an error, not a token lost in silence.
if [ -w /dev/full ]; then
    "$tariffd" token >/dev/full 2>"$tmp/f.err"
    status=$?
    [ "$status" -eq 1 ] && grep -q "cannot write the token" "$tmp/f.err" && ok ||
        fail "stdout on /dev/full: status $status: $(cat "$tmp/f.err")"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
