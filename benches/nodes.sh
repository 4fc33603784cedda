#!/usr/bin/env bash
# Durable rotations/s and logins/s on PostgreSQL beside the redb file, in one run (issue 15):
#   redb      one latchd on its redb file
#   pg-1      one latchd on PostgreSQL
#   pg-2      two latchd on one PostgreSQL database, the load split over both
# PostgreSQL is a throw-away cluster of this script (initdb into a temp dir, a free loopback port,
# fsync and synchronous_commit on: every answer durable, as on redb), stopped at the end.
#
# Refresh: ../shared/bench/load.sh refresh (one rotation chain per connection, logins before the
# run), per node. Login: wrk POSTs a correct password with LATCHD_PBKDF2_ITERATIONS=1000, so the
# figure is the storage side of a login (a session opened, an audit row), not PBKDF2 (at 600,000
# rounds, one core does ~5 logins/s whatever the backend).
#
# On a 2-core machine the nodes, PostgreSQL and wrk share both cores (no pinning): compare the
# rows with each other, not with sitting.sh's pinned figures.
#
# Usage: benches/nodes.sh path/to/latchd-built-with---features-postgres
# Env: NODES_SECS (10) per run, NODES_CONNS (32) per run (split over the nodes).
set -euo pipefail

latchd=$(realpath "${1:?usage: benches/nodes.sh path/to/latchd (built with --features postgres)}")
secs=${NODES_SECS:-10}
conns=${NODES_CONNS:-32}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
load="$here/../../shared/bench/load.sh"
[ -x "$load" ] || load="$(realpath "$here/../..")/shared/bench/load.sh"
[ -x "$load" ] || { echo "nodes.sh: ../shared/bench/load.sh not found" >&2; exit 2; }
for tool in wrk jq curl; do
  command -v $tool >/dev/null || { echo "nodes.sh: $tool missing: apt-get install -y $tool" >&2; exit 2; }
done
bindir=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bindir/initdb" ] || { echo "nodes.sh: PostgreSQL's initdb not found (apt-get install -y postgresql)" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- PostgreSQL ------------------------------------------------------------------------------
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres "$tmp"
  as_pg=(setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --clear-groups)
fi
"${as_pg[@]}" "$bindir/initdb" -D "$tmp/pg" -A trust -U postgres --no-sync >/dev/null
pg_port=$(free_port)
"${as_pg[@]}" "$bindir/postgres" -D "$tmp/pg" -p "$pg_port" -k "$tmp" -c listen_addresses=127.0.0.1 \
  -c fsync=on -c synchronous_commit=on -c max_connections=200 >"$tmp/pg.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  psql -q "postgres://postgres@127.0.0.1:$pg_port/postgres" -c 'select 1' >/dev/null 2>&1 && break
  sleep 0.1
done

# --- one configuration -----------------------------------------------------------------------
common=(LATCHD_PBKDF2_ITERATIONS=1000 LATCHD_LOGIN_ACCOUNT_FAILURES=1000
  LATCHD_LOGIN_ADDRESS_PER_MIN=1000000 LATCHD_HASH_ADDRESS_PER_MIN=1000000
  LATCHD_MAX_SESSIONS_PER_USER=100000 LATCHD_LOG=warn)
bases=()
start() { # $1 label, $2 database URL or "": starts a node, appends its base URL to bases
  local port dir
  port=$(free_port) dir="$tmp/$1.$port"
  mkdir -p "$dir"
  env "${common[@]}" LATCHD_LISTEN="127.0.0.1:$port" LATCHD_DB="$dir/latchd.redb" \
    ${2:+LATCHD_DATABASE_URL="$2"} "$latchd" serve >"$dir/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.05
  done
  bases+=("http://127.0.0.1:$port")
}
login_load() { # $1 base, $2 conns, $3 label
  local body
  body=$(jq -cn '{email:"bench@example.com",password:"correct horse battery staple 7"}')
  curl -s -o /dev/null -H 'Content-Type: application/json' -d "$body" "$1/v1/users" || true
  cat >"$tmp/login.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
EOF
  wrk -t1 -c"$2" -d"${secs}s" --timeout 5s -s "$tmp/login.lua" "$1/v1/auth/login" >"$tmp/wrk.$3" 2>&1
  awk -v label="$3" '/Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$NF} END {printf "login label=%s rps=%.0f non2xx=%d\n", label, rps, bad}' "$tmp/wrk.$3"
}
run() { # $1 label, $2 database URL or "", $3 nodes
  local i jobs=() servers
  bases=()
  servers=${#pids[@]}
  for i in $(seq "$3"); do start "$1" "$2"; done
  local per=$((conns / $3))
  for i in "${!bases[@]}"; do
    "$load" refresh "${bases[$i]}" "bench$i@example.com:correct horse battery staple 7" \
      -d "$secs" -c "$per" -l "$1-node$i" &
    jobs+=($!)
  done
  for j in "${jobs[@]}"; do wait "$j"; done
  jobs=()
  for i in "${!bases[@]}"; do login_load "${bases[$i]}" "$per" "$1-node$i" & jobs+=($!); done
  for j in "${jobs[@]}"; do wait "$j"; done
  # What the nodes logged above info (a failed write, a lost connection), counted.
  cat "$tmp/$1".*/log | grep -E ' (WARN|ERROR) ' | grep -v LATCHD_PBKDF2_ITERATIONS \
    | sed -E 's/^[^ ]+ +//; s/ (peer|micros|error)=.*//' | sort | uniq -c | sort -rn | head -5 \
    | sed "s/^/logged label=$1 /" || true
  for p in "${pids[@]:$servers}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=("${pids[@]:0:$servers}")
}

echo "# nodes.sh: $(date -u +%FT%TZ) secs=$secs conns=$conns latchd=$latchd postgres=$("$bindir/postgres" --version)"
[ -z "${NODES_SKIP_REDB:-}" ] && run redb "" 1
psql -q "postgres://postgres@127.0.0.1:$pg_port/postgres" -c 'CREATE DATABASE one' -c 'CREATE DATABASE two'
run pg-1 "postgres://postgres@127.0.0.1:$pg_port/one?sslmode=disable" 1
run pg-2 "postgres://postgres@127.0.0.1:$pg_port/two?sslmode=disable" 2
