#!/usr/bin/env bash
# meson install into a scratch DESTDIR, four times:
#   1. tariffd.conf is the shipped template: no tenant, no token, and
#      --check-config accepts it with a note that writes would get 401; the
#      demo configuration is in the documentation's examples, not in etc/;
#   2. again, unchanged: nothing else appears;
#   3. after an operator's edit: the edit survives and the shipped file
#      lands beside it as tariffd.conf.dist;
#   4. again: still the edit, still the same .dist.
# No file under any etc/ of the DESTDIR holds a token_sha256 with a hex
# value. Then the install script alone with an absolute configuration
# directory (prefix /usr gives /etc/tariffd) and DESTDIR.
# usage: install.sh BUILD_ROOT SOURCE_ROOT TARIFFD CONFDIR EXAMPLES_DIR
#   (CONFDIR and EXAMPLES_DIR absolute, as meson resolves them from the prefix)
set -uo pipefail
build=$1
src=$2
tariffd=$3
confdir=$4
examples=$5
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

dest=$tmp/dest
conf=$dest$confdir/tariffd.conf
shipped=$build/tariffd.conf
hex_token='token_sha256[[:space:]]*=[[:space:]]*[0-9A-Fa-f]{64}'

# install N: meson install into $dest, its output in $tmp/install-N.log.
install() {
    if meson install -C "$build" --destdir "$dest" --no-rebuild >"$tmp/install-$1.log" 2>&1; then
        ok
    else
        fail "meson install #$1:"
        cat "$tmp/install-$1.log"
    fi
}

# no_token_in_etc WHEN: no file under an etc/ directory of $dest has a hash.
no_token_in_etc() {
    local etcs hits
    etcs=$(find "$dest" -type d -name etc)
    if [ -z "$etcs" ]; then
        fail "$1: no etc/ directory in $dest"
        return
    fi
    # shellcheck disable=SC2086
    hits=$(grep -rlE "$hex_token" $etcs)
    [ -z "$hits" ] && ok || fail "$1: token hashes installed under etc/: $hits"
}

# --- 1. A first install.
install 1
[ -f "$conf" ] && cmp -s "$shipped" "$conf" && ok || fail "first install: $conf is not the shipped file"
[ ! -e "$conf.dist" ] && ok || fail "first install: $conf.dist exists"
[ "$(stat -c %a "$conf")" = 644 ] && ok || fail "first install: mode $(stat -c %a "$conf"), want 644"
grep -q '^\[tenant' "$conf" && fail "the installed tariffd.conf has a [tenant] section" || ok
no_token_in_etc "first install"
[ ! -e "$dest$confdir/conf.d" ] && ok || fail "the demo's conf.d was installed to $confdir"

out=$("$tariffd" --check-config -c "$conf" 2>&1)
status=$?
if [ "$status" -eq 0 ] && grep -q "^  tenants     0$" <<<"$out" &&
    grep -q '^note: no \[tenant\] section, so every write would get 401' <<<"$out"; then
    ok
else
    fail "--check-config on the installed template: status $status: $out"
fi
grep -q "tariffd --check-config -c $confdir/tariffd.conf" "$conf" && grep -q "is in $examples/" "$conf" &&
    ok || fail "the template does not name its own path and the examples directory"

# The demo configuration is the documentation's example, whole and valid.
[ -f "$dest$examples/tariffd.conf" ] && cmp -s "$src/etc/conf.d/10-tenants.conf" "$dest$examples/conf.d/10-tenants.conf" &&
    ok || fail "the demo configuration is not in $examples"
grep -qE "$hex_token" "$dest$examples/conf.d/10-tenants.conf" && ok ||
    fail "the pattern finds no hash in the demo's tenants (the check above would be blind)"
out=$("$tariffd" --check-config -c "$dest$examples/tariffd.conf" 2>&1)
status=$?
[ "$status" -eq 0 ] && grep -q "^  tenants     2$" <<<"$out" && ok ||
    fail "--check-config on the installed example: status $status: $out"

# --- 2. Again, unchanged.
install 2
cmp -s "$shipped" "$conf" && [ ! -e "$conf.dist" ] && ok || fail "second install changed something"

# --- 3. An operator's edit survives.
sed -i 's/^listen = 127.0.0.1:8086 /listen = 127.0.0.1:9999 /' "$conf"
printf '\n[tenant acme]\ntoken_sha256 = %s\n' "$(printf x | sha256sum | cut -d' ' -f1)" >>"$conf"
cp "$conf" "$tmp/edited"
install 3
cmp -s "$tmp/edited" "$conf" && ok || fail "third install: the operator's edit was overwritten"
cmp -s "$shipped" "$conf.dist" && ok || fail "third install: $conf.dist is not the shipped file"
[ "$(stat -c %a "$conf.dist")" = 644 ] && ok || fail "$conf.dist: mode $(stat -c %a "$conf.dist")"
ls "$dest$confdir" | grep -q 'tmp' && fail "a temporary file was left: $(ls "$dest$confdir")" || ok

# --- 4. Again: nothing moves.
install 4
cmp -s "$tmp/edited" "$conf" && cmp -s "$shipped" "$conf.dist" && ok || fail "fourth install changed something"
[ "$(ls "$dest$confdir" | wc -l)" -eq 2 ] && ok || fail "files in $confdir: $(ls "$dest$confdir")"

# --- The script alone: an absolute configuration directory under DESTDIR.
abs=$tmp/abs
DESTDIR=$abs sh "$src/install/install_config.sh" "$shipped" /etc/tariffd >/dev/null &&
    cmp -s "$shipped" "$abs/etc/tariffd/tariffd.conf" && ok || fail "absolute confdir: not installed under DESTDIR"
echo edited >>"$abs/etc/tariffd/tariffd.conf"
msg=$(DESTDIR=$abs sh "$src/install/install_config.sh" "$shipped" /etc/tariffd) &&
    tail -n 1 "$abs/etc/tariffd/tariffd.conf" | grep -qx edited && cmp -s "$shipped" "$abs/etc/tariffd/tariffd.conf.dist" &&
    ok || fail "absolute confdir: the edit or the .dist"
# meson 1.0 shows an install script's output only when it fails; run by
# hand, the script says what it did.
want="Keeping $abs/etc/tariffd/tariffd.conf (it differs from the shipped one); the shipped one is $abs/etc/tariffd/tariffd.conf.dist"
[ "$msg" = "$want" ] && ok || fail "the script's message: \"$msg\", want \"$want\""

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
