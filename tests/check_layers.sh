#!/usr/bin/env bash
# The layers, as the build keeps them: tariff/ (the pure core) includes only
# its own headers; storage/ includes its own and the core's; daemon/ may
# include anything. A quoted include that reaches up a layer fails here,
# naming the file and line. System headers (<...>) are the core's business
# too: tariff/ may not include libevent, libpq, systemd or OpenSSL's SSL.
# usage: check_layers.sh SOURCE_ROOT   (prints "N passed, N failed")
set -uo pipefail
cd "${1:?usage: check_layers.sh SOURCE_ROOT}"
passed=0 failed=0
check_dir() {
    local dir=$1 allowed=$2 f line inc
    for f in "$dir"/*.c "$dir"/*.h; do
        while IFS= read -r line; do
            inc=${line#*:}
            inc=${inc#*\"}
            inc=${inc%%\"*}
            # A bare name is a header of the same folder.
            if [[ $inc != */* ]] || [[ $inc =~ ^($allowed)/[a-z0-9_]+\.h$ ]]; then
                passed=$((passed + 1))
            else
                failed=$((failed + 1))
                echo "FAIL $f:${line%%:*}: includes \"$inc\", above the $dir/ layer (allowed: $allowed/)"
            fi
        done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f")
    done
}
check_dir tariff 'tariff'
check_dir storage 'storage|tariff'
# The core does no I/O of the daemon's kinds.
while IFS= read -r hit; do
    failed=$((failed + 1))
    echo "FAIL $hit: the core includes an I/O library"
done < <(grep -nE '#[[:space:]]*include[[:space:]]*<(event2/|libpq-fe\.h|systemd/|openssl/ssl\.h)' tariff/*.c tariff/*.h)
passed=$((passed + 1))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
