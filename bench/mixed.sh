#!/usr/bin/env bash
# The mixed load of bench/README.md: 1,000 locust REST users for 110 s and, from 20 s in,
# `bench rooms` with 1,000 editors over 100 rooms for 60 s, against ours on the embedded
# default. Server on core 0, both load generators on core 1 (SERVER_CPUS / LOAD_CPUS).
#
#   bench/mixed.sh OUT_DIR
#
# Writes OUT_DIR/mixed-locust_*.csv, locust.log, mixed-rooms.json and server.log.
set -euo pipefail

out=${1:?usage: bench/mixed.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$repo/.venv/bin
port=${PORT:-8765}
server_cpus=${SERVER_CPUS:-0}
load_cpus=${LOAD_CPUS:-1}
target=http://127.0.0.1:$port

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d -t bench-mixed-XXXXXX)
secret=$("$venv/python" -c 'import secrets; print(secrets.token_urlsafe(32))')

server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null && wait "$server_pid" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The settings `bench ... --server ours --spawn` gives ours (bench/servers.py): nothing of
# the caller's configuration, a throw-away data folder, limits that let 1,000 clients in.
(
    cd "$work"
    for name in $(compgen -e); do
        case $name in
        SERVER_* | AUTH_* | DATABASE_* | REDIS_* | S3_* | LIMITS_* | WS_* | SNAPSHOT_* | OUTBOX_* | BPMN_COLLAB_*)
            unset "$name" ;;
        esac
    done
    export AUTH_JWT_SECRET=$secret SERVER_DATA_DIR=$work/data WS_CLIENTS_PER_ROOM=2000 \
        LIMITS_WRITE_BURST=1000 LIMITS_WRITE_RATE_PER_S=100
    exec taskset --cpu-list "$server_cpus" "$venv/bpmn-collab" serve --port "$port"
) >"$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    curl -fs "$target/healthz" >/dev/null && break
    kill -0 "$server_pid" || { echo "the server did not start: $out/server.log" >&2; exit 1; }
    sleep 0.2
done

AUTH_JWT_SECRET=$secret taskset --cpu-list "$load_cpus" "$venv/locust" -f "$repo/bench/locustfile.py" --headless \
    -u 1000 -r 200 -t 110s --ws-editors 1 --think 5 --host "$target" \
    --csv "$out/mixed-locust" >"$out/locust.log" 2>&1 &
locust_pid=$!
sleep 20
AUTH_JWT_SECRET=$secret taskset --cpu-list "$load_cpus" "$venv/bpmn-collab" bench rooms --target "$target" \
    --editors 1000 --rooms 100 --rate 1 --duration 60 --quiet \
    --out "$out/mixed-rooms.json" | tee "$out/rooms.log"
# locust exits 1 when any request failed: the figures are still the run's.
wait "$locust_pid" || true
# Locust's last table: response time percentiles, its last line all requests together.
grep -E "^Type +Name +50%" "$out/locust.log" | tail -n 1
grep "Aggregated" "$out/locust.log" | tail -n 1
