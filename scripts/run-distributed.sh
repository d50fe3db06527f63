#!/usr/bin/env bash
# The docker-compose topology without Docker: two (or more) `bpmn-collab serve` processes on
# their own ports, sharing one Postgres, one Redis and one blob store, optionally with nginx
# (deploy/nginx.conf) in front. Migrates first, waits until every process answers /healthz,
# prints the URLs, and stops everything on Ctrl-C / TERM, or when any process exits.
#
# Everything comes from the environment; the defaults suit services on this machine:
#   BPMN_PORTS        ports of the serve processes              "8001 8002"
#   BPMN_DB           database name, when DATABASE_URL is unset  bpmn_collab (created if missing)
#   DATABASE_URL      postgresql://postgres@127.0.0.1:5432/$BPMN_DB
#   REDIS_URL         redis://127.0.0.1:6379/0
#   SERVER_DATA_DIR   shared data folder (blobs when no S3_*)    data/distributed
#   AUTH_JWT_SECRET   shared token secret; unset: kept in $SERVER_DATA_DIR/jwt-secret
#   S3_*              S3_ENDPOINT_URL, S3_BUCKET, ...: blobs in a bucket instead of the folder
#   BPMN_NGINX_PORT   also run nginx on this port in front of the processes (needs nginx)
#   BPMN_COLLAB       the command                                .venv/bin/bpmn-collab
# Any other setting (WS_*, SNAPSHOT_*, ...) is passed on to every process as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

BPMN_COLLAB=${BPMN_COLLAB:-.venv/bin/bpmn-collab}
BPMN_PORTS=${BPMN_PORTS:-"8001 8002"}
BPMN_DB=${BPMN_DB:-bpmn_collab}
export SERVER_DATA_DIR=${SERVER_DATA_DIR:-data/distributed}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
BIND=${SERVER_HOST:-127.0.0.1}  # where the processes (and nginx) listen
HOST=$BIND                      # where this script reaches them
[[ $HOST == 0.0.0.0 || $HOST == :: ]] && HOST=127.0.0.1

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run-distributed: %s\n' "$*" >&2; exit 1; }

[[ -x $BPMN_COLLAB ]] || die "$BPMN_COLLAB not found: run 'make install' first (or set BPMN_COLLAB)"
read -r -a ports <<<"$BPMN_PORTS"
((${#ports[@]} >= 1)) || die "BPMN_PORTS names no port"

hide_password() { sed -E 's#(://[^/@]*:)[^/@]*@#\1***@#' <<<"$1"; }

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

http_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -fs -o /dev/null --max-time 2 "$1"
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" \
      2>/dev/null
  fi
}

for port in "${ports[@]}" ${BPMN_NGINX_PORT:-}; do
  port_in_use "$port" && die "port $port is already in use on $HOST"
done

# --- the database ---------------------------------------------------------------------------
if [[ -z ${DATABASE_URL:-} ]]; then
  export DATABASE_URL="postgresql://postgres@127.0.0.1:5432/$BPMN_DB"
  if command -v psql >/dev/null 2>&1; then
    exists=$(psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$BPMN_DB'") \
      || die "cannot reach Postgres on 127.0.0.1:5432 as user postgres (or set DATABASE_URL)"
    if [[ $exists != 1 ]]; then
      log "creating database $BPMN_DB"
      createdb -h 127.0.0.1 -p 5432 -U postgres "$BPMN_DB"
    fi
  fi
fi

# --- one token secret for every process -----------------------------------------------------
mkdir -p "$SERVER_DATA_DIR"
if [[ -z ${AUTH_JWT_SECRET:-} ]]; then
  secret_file="$SERVER_DATA_DIR/jwt-secret"
  if [[ ! -s $secret_file ]]; then
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(48))' >"$secret_file")
  fi
  AUTH_JWT_SECRET=$(<"$secret_file")
  token_hint="SERVER_DATA_DIR=$SERVER_DATA_DIR $BPMN_COLLAB token --user ada --org acme"
else
  token_hint="AUTH_JWT_SECRET=... $BPMN_COLLAB token --user ada --org acme   (the same secret)"
fi
export AUTH_JWT_SECRET

# --- start ------------------------------------------------------------------------------------
log "migrating $DATABASE_URL"
"$BPMN_COLLAB" migrate

pids=()
stopping=0
nginx_dir=""

stop_all() {
  stopping=1
  trap - INT TERM
  log "stopping"
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n $nginx_dir ]] && rm -rf "$nginx_dir"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

# Each process's output goes to this terminal, every line prefixed with its name. Each runs in
# a session of its own, so Ctrl-C reaches only this script, which then stops each process once
# (a second signal would make uvicorn skip its graceful shutdown); the prefixing sed ignores
# Ctrl-C so the shutdown logs still show.
start() {
  local name=$1
  shift
  setsid "$@" > >(trap '' INT && exec sed -u "s/^/[$name] /") 2>&1 &
  pids+=("$!")
}

for port in "${ports[@]}"; do
  start "$port" "$BPMN_COLLAB" serve --port "$port"
done

wait_healthy() {
  local url=$1 deadline=$((SECONDS + 60)) pid
  until http_ok "$url"; do
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { stop_all; die "a process exited while starting (see above)"; }
    done
    ((SECONDS < deadline)) || { stop_all; die "$url did not answer within 60 s"; }
    sleep 0.3
  done
}

for port in "${ports[@]}"; do
  wait_healthy "http://$HOST:$port/healthz"
done

# --- nginx (optional) -------------------------------------------------------------------------
if [[ -n ${BPMN_NGINX_PORT:-} ]]; then
  command -v nginx >/dev/null 2>&1 || { stop_all; die "BPMN_NGINX_PORT is set but nginx is not installed"; }
  nginx_dir=$(mktemp -d)
  chmod 755 "$nginx_dir"  # nginx's workers drop root, and must reach their temp folders
  # The compose file's nginx.conf, with these processes as the upstream servers, Docker's DNS
  # lines dropped, and everything nginx writes kept in the temporary folder.
  while IFS= read -r line; do
    case $line in
      *"# docker-dns") ;;
      *"# upstream-servers")
        for port in "${ports[@]}"; do printf '        server %s:%s;\n' "$HOST" "$port"; done ;;
      *"listen 80;")
        printf '        listen %s:%s;\n' "$BIND" "$BPMN_NGINX_PORT" ;;
      "http {")
        printf '%s\n' "$line"
        for temp in client_body proxy fastcgi uwsgi scgi; do
          printf '    %s_temp_path %s/%s;\n' "$temp" "$nginx_dir" "$temp"
        done ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <deploy/nginx.conf >"$nginx_dir/nginx.conf"
  nginx -t -q -e stderr -p "$nginx_dir" -c "$nginx_dir/nginx.conf" -g "pid $nginx_dir/nginx.pid;" \
    || { stop_all; die "nginx rejected the generated $nginx_dir/nginx.conf"; }
  start nginx nginx -e stderr -p "$nginx_dir" -c "$nginx_dir/nginx.conf" \
    -g "pid $nginx_dir/nginx.pid; daemon off;"
  wait_healthy "http://$HOST:$BPMN_NGINX_PORT/healthz"
fi

# --- running ----------------------------------------------------------------------------------
{
  echo
  echo "bpmn-collab, distributed: ${#ports[@]} processes sharing"
  echo "  database  $(hide_password "$DATABASE_URL")"
  echo "  redis     $(hide_password "$REDIS_URL")"
  if [[ -n ${S3_BUCKET:-} ]]; then
    echo "  blobs     s3 bucket $S3_BUCKET at ${S3_ENDPOINT_URL:-AWS}"
  else
    echo "  blobs     $SERVER_DATA_DIR/blobs"
  fi
  for port in "${ports[@]}"; do echo "  http://$HOST:$port"; done
  [[ -n ${BPMN_NGINX_PORT:-} ]] && echo "  http://$HOST:$BPMN_NGINX_PORT   (nginx in front of them)"
  echo "tokens: $token_hint"
  echo "Ctrl-C stops them all."
  echo
} >&2

# Run until interrupted, or until any process ends (then stop the others too).
set +e
wait -n "${pids[@]}"
status=$?
set -e
if ((!stopping)); then
  log "a process exited (status $status); stopping the others"
  stop_all
  exit 1
fi
