#!/usr/bin/env bash
# Builds every fuzz target (lineproto, config, http, journal) with clang's
# libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer, and runs each
# for a bounded time over a copy of its corpus (tests/corpus/TARGET), with
# a dictionary where there is one (tests/fuzz_TARGET.dict).
#
# usage: fuzz_run.sh SOURCE_ROOT BUILD_ROOT [TARGET...]
#   FUZZ_SECONDS  time per target (default FUZZ_DEFAULT_SECONDS, else 20;
#                 meson test sets FUZZ_DEFAULT_SECONDS=15)
#   FUZZ_TIMEOUT  seconds one input may take (default 25: the instrumented
#                 engine is slow on some inputs, see RELIABILITY.md)
#   FUZZ_MAX_LEN  largest input tried (default 4096: some HTTP inputs of
#                 16 KiB take 25 s instrumented, see RELIABILITY.md; longer
#                 seeds are cut to it here, the regression runners run them
#                 whole)
#   FUZZ_ARGS     more libFuzzer options (e.g. -jobs=2)
#   FUZZ_OUT      where binaries, corpus copies and logs go (default
#                 BUILD_ROOT/fuzz); a crash leaves its input there as
#                 crash-*, to be copied into tests/corpus/TARGET.
# Prints one line per target and "N passed, N failed"; exits 77 (skipped)
# when clang or libFuzzer is missing.
set -uo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(lineproto config http journal)
seconds=${FUZZ_SECONDS:-${FUZZ_DEFAULT_SECONDS:-20}}
timeout=${FUZZ_TIMEOUT:-25}
max_len=${FUZZ_MAX_LEN:-4096}
read -r -a extra <<<"${FUZZ_ARGS:-}"
out=${FUZZ_OUT:-$build/fuzz}
cc=${FUZZ_CC:-clang}

if ! command -v "$cc" >/dev/null ||
    ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
    "$cc" -x c -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
    echo "fuzz_run: $cc with libFuzzer not found (packages clang, libclang-rt-14-dev); skipped"
    exit 77
fi

mkdir -p "$out/obj"
# Every sanitizer check halts.
cflags=(-g -O1 -std=c17 -D_GNU_SOURCE -fsanitize=address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer
    -I"$src" -I"$src/tariff" -I"$build")
# The whole core (every tariff/*.c, as meson.build's tariff library), so
# that a file added to it is never missing here.
tariff=()
for f in "$src"/tariff/*.c; do
    f=${f##*/}
    tariff+=("${f%.c}")
done

# Objects built with other flags (or another compiler) are rebuilt.
stamp="$cc ${cflags[*]}"
if [ "$(cat "$out/obj/flags" 2>/dev/null)" != "$stamp" ]; then
    rm -f "$out"/obj/*.o
    printf '%s' "$stamp" >"$out/obj/flags"
fi

# Compiles src/$1 (instrumented for coverage) unless its object is newer
# than it and than every header.
newest_header=$(find "$src/tariff" "$src/daemon" "$src/storage" "$src/tests" -name '*.h' \
    -printf '%T@\n' | sort -n | tail -n 1)
object() {
    local c=$1 o="$out/obj/${1//\//_}.o"
    if [ ! -f "$o" ] || [ "$src/$c" -nt "$o" ] ||
        [ "$(stat -c %Y "$o")" -lt "${newest_header%.*}" ]; then
        "$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link -c "$src/$c" -o "$o" || return 1
    fi
    echo "$o"
}

sources() {
    case $1 in
    lineproto) echo tests/fuzz_lineproto.c daemon/lineproto.c tariff/utf8.c ;;
    config) echo tests/fuzz_config.c ;;
    http)
        echo tests/fuzz_http.c daemon/http.c daemon/clock.c daemon/connections.c daemon/ingest.c \
            daemon/loader.c daemon/lineproto.c daemon/metrics.c daemon/log.c storage/ledger_rows.c \
            storage/csv.c storage/columns.c
        ;;
    journal)
        echo tests/fuzz_journal.c storage/journal.c daemon/ingest.c daemon/loader.c daemon/lineproto.c \
            storage/ledger_rows.c storage/csv.c storage/columns.c
        ;;
    esac
}

libs() {
    case $1 in
    lineproto) echo -lm ;;
    config) echo -linih -lcrypto -lm ;;
    http) echo -levent -levent_openssl -lssl -lz -linih -lcrypto -lm ;;
    journal) echo -lz -linih -lcrypto -lm ;;
    esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
passed=0
failed=0
for t in "${targets[@]}"; do
    objs=()
    ok=1
    for c in $(sources "$t"); do
        o=$(object "$c") || { ok=0; break; }
        objs+=("$o")
    done
    if [ "$t" != lineproto ]; then
        for f in "${tariff[@]}"; do
            o=$(object "tariff/$f.c") || { ok=0; break; }
            objs+=("$o")
        done
    fi
    bin="$out/fuzz_$t"
    # shellcheck disable=SC2046
    if [ $ok = 0 ] || ! "$cc" "${cflags[@]}" -fsanitize=fuzzer "${objs[@]}" $(libs "$t") -o "$bin"; then
        echo "fuzz $t: build failed"
        failed=$((failed + 1))
        continue
    fi
    corpus="$out/corpus-$t"
    rm -rf "$corpus"
    mkdir -p "$corpus"
    find "$src/tests/corpus/$t" -maxdepth 1 -type f ! -name '*.py' ! -name 'README.md' \
        -exec cp {} "$corpus/" \;
    dict=()
    [ -f "$src/tests/fuzz_$t.dict" ] && dict=(-dict="$src/tests/fuzz_$t.dict")
    log="$out/fuzz_$t.log"
    start=$(date +%s)
    (cd "$out" && "$bin" "${dict[@]}" -max_total_time="$seconds" -timeout="$timeout" \
        -rss_limit_mb=2048 -max_len="$max_len" "${extra[@]}" -print_final_stats=1 -artifact_prefix="$out/$t-" "$corpus" >"$log" 2>&1)
    rc=$?
    took=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ $rc = 0 ]; then
        echo "fuzz $t: ok, ${runs:-?} executions in $took s"
        passed=$((passed + 1))
    else
        echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} executions in $took s; log $log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*invariant broken|.*runtime error|artifact_prefix|Test unit written)' \
            "$log" | head -n 20
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ $failed = 0 ]
