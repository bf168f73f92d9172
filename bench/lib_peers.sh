# Shared by bench/run_peers, bench/run_peers_ab, bench/run_scaling and
# bench/run_scaling_ab: free ports, small HTTP probes, the sender, and
# tariffd started on a fresh state_dir and PostgreSQL database. Source it
# after scripts/lib/common.sh; it defines functions only. Callers set WORK
# (a temporary directory) and call start_postgres first.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# http_status URL [METHOD [BODY]]: prints the status code (000 if no answer).
http_status() {
    python3 - "$@" <<'PY' 2>/dev/null || echo 000
import sys, urllib.request, urllib.error
url, method = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "GET"
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
try:
    print(urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
}

# http_body URL [METHOD [BODY]]: prints the body of a 2xx answer.
http_body() {
    python3 - "$@" <<'PY'
import sys, urllib.request
url, method = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "GET"
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
sys.stdout.write(urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=30).read().decode())
PY
}

# wait_status URL CODE PID LOG: waits up to 60 s for URL to answer CODE
# while PID lives; otherwise prints LOG and fails.
wait_status() {
    for _ in $(seq 600); do
        [ "$(http_status "$1")" = "$2" ] && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    echo "error: $1 did not answer $2" >&2
    cat "$4" >&2
    return 1
}

# metric TEXT NAME: the value of the sample whose name and labels are NAME.
metric() {
    awk -v n="$2" '$1 == n {print $2}' <<<"$1"
}

# send PATH [TOKEN] [--conns N]: bench/send_lp.py sends $WORK/telemetry.lp
# to 127.0.0.1:$port; prints samples/s, and fails unless it sent $samples.
send() {
    local out n rate
    out=$(python3 bench/send_lp.py "$WORK/telemetry.lp" "$port" "$@")
    read -r n _ rate _ <<<"$out"
    if [ "$n" != "$samples" ]; then
        echo "error: sent $n samples, expected $samples" >&2
        return 1
    fi
    echo "$rate"
}

# tariffd_kept_all SAMPLES: fails, saying so, unless the tariffd at
# $TARIFFD_METRICS accepted exactly SAMPLES samples and holds no calls.
tariffd_kept_all() {
    local m
    m=$(http_body "$TARIFFD_METRICS")
    if [ "$(metric "$m" tariffd_samples_accepted_total)" != "$1" ] ||
        [ "$(metric "$m" tariffd_held_calls)" != 0 ]; then
        echo "error: tariffd accepted $(metric "$m" tariffd_samples_accepted_total) of $1 samples and holds $(metric "$m" tariffd_held_calls) calls" >&2
        return 1
    fi
}

rss_kib() { awk "/^$2:/ {print \$2}" "/proc/$1/status"; }

# stop_pid PID: SIGTERM, then wait for it.
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# start_tariffd CONF PORT DB: a fresh state_dir ($WORK/state) and a new
# PostgreSQL database DB, $TARIFFD_BIN (else build-bench/tariffd); returns
# once tariffd answers /ping, is connected to PostgreSQL and has its
# yearly caps (so it closes and prices as it takes writes, instead of
# holding every close until the caps come). Sets
# TARIFFD_PID and TARIFFD_METRICS (the URL of /metrics: on the listener
# where a tree has no metrics_listen, else on metrics_listen, which gets a
# free port of its own). When it does not come up, stops it and fails.
start_tariffd() {
    local conf=$1 port=$2 db=$3
    rm -rf "$WORK/state"
    createdb "$db"
    sed -i "s|^listen = .*|listen = 127.0.0.1:$port|; s|^state_dir = .*|state_dir = $WORK/state|; s|^conninfo = .*|conninfo = host=$PGHOST port=$PGPORT user=$PGUSER dbname=$db|" \
        "$conf"
    TARIFFD_METRICS=http://127.0.0.1:$port/metrics
    if grep -q '^metrics_listen *=' "$conf"; then
        local mport
        mport=$(free_port)
        sed -i "s|^metrics_listen *=.*|metrics_listen = 127.0.0.1:$mport|" "$conf"
        TARIFFD_METRICS=http://127.0.0.1:$mport/metrics
    fi
    "${TARIFFD_BIN:-build-bench/tariffd}" -c "$conf" 2>"$WORK/tariffd.log" &
    TARIFFD_PID=$!
    # Stopped here when it does not come up: the caller's cleanup only
    # knows the daemon once this returns.
    if ! wait_status "http://127.0.0.1:$port/ping" 204 "$TARIFFD_PID" "$WORK/tariffd.log"; then
        stop_pid "$TARIFFD_PID"
        return 1
    fi
    for _ in $(seq 600); do
        if grep -q "postgres: connected" "$WORK/tariffd.log" &&
            [ "$(metric "$(http_body "$TARIFFD_METRICS")" tariffd_waiting_for_caps)" = 0 ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "error: tariffd did not connect to PostgreSQL" >&2
    cat "$WORK/tariffd.log" >&2
    stop_pid "$TARIFFD_PID"
    return 1
}
