# Shared by scripts/test and scripts/demo: Debian packages, the build, and a
# throwaway PostgreSQL cluster. Source it; it defines functions only.

# What building, testing and the demo need from Debian 12 (chromium and a CJK
# font render tariffd report's pages in tests/daemon/test_report.py).
TARIFFD_PACKAGES=(
    gcc libc6-dev pkg-config meson ninja-build python3 clang-format
    libinih-dev check libssl-dev libevent-dev zlib1g-dev libpq-dev libsystemd-dev
    postgresql systemd clang libclang-rt-14-dev curl openssl python3-influxdb
    chromium fonts-wqy-microhei
)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "error: need root to run: $*" >&2
        return 1
    fi
}

# Installs whichever of TARIFFD_PACKAGES are missing (apt-get update first).
ensure_packages() {
    local missing=()
    for p in "${TARIFFD_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# build_into DIR [meson options...]: configure (once) and build.
build_into() {
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" --werror "$@" >/dev/null
    fi
    local log
    if ! log=$(ninja -C "$dir" 2>&1); then
        printf '%s\n' "$log" >&2
        return 1
    fi
}

# A throwaway PostgreSQL cluster on a private socket directory and port,
# run as the postgres OS user (initdb refuses root). Exports PGHOST, PGPORT
# and PGUSER for the tests; stop_postgres removes it all.
PG_DIR=""
start_postgres() {
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bindir" ]; then
        echo "error: PostgreSQL server binaries not found" >&2
        return 1
    fi
    PG_DIR=$(mktemp -d /tmp/tariffd-pg.XXXXXX)
    local run=()
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$PG_DIR"
        run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bindir/initdb" -D "$PG_DIR/data" -U postgres -A trust >"$PG_DIR/initdb.log" 2>&1 ||
        { cat "$PG_DIR/initdb.log" >&2; return 1; }
    PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${run[@]}" "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
        -o "-k $PG_DIR -p $PGPORT -c listen_addresses='' -c fsync=off" start >/dev/null ||
        { cat "$PG_DIR/server.log" >&2; return 1; }
    export PGHOST=$PG_DIR PGPORT PGUSER=postgres
    PG_CTL=("${run[@]}" "$bindir/pg_ctl")
    # For tests that stop and start the server (a PostgreSQL outage):
    # "$TARIFFD_PG_CTL stop|start" does it with the same options.
    export TARIFFD_PG_CTL="${run[*]} $bindir/pg_ctl -D $PG_DIR/data -l $PG_DIR/server.log -w -o '-k $PG_DIR -p $PGPORT -c listen_addresses= -c fsync=off'"
}

stop_postgres() {
    [ -n "$PG_DIR" ] || return 0
    "${PG_CTL[@]}" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_DIR=""
}
