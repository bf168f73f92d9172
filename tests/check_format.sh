#!/usr/bin/env bash
# Fails when a C file differs from what the root .clang-format makes of it.
# Usage: check_format.sh CLANG_FORMAT SOURCE_ROOT (CLANG_FORMAT empty: not
# installed, exit 77)
set -euo pipefail
if [ -z "$1" ]; then
    echo "skipped: clang-format is not installed (Debian package clang-format)"
    exit 77
fi
cd "$2"
mapfile -t files < <(find tariff daemon storage tests bench -name '*.[ch]' 2>/dev/null | sort)
"$1" --dry-run --Werror "${files[@]}"
echo "${#files[@]} passed, 0 failed"
