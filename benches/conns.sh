#!/usr/bin/env bash
# Durable refresh rotations by connection count: latchd beside the axum + Redis peer with
# `appendfsync always` (the same durability), alternated at each count so drift hits both.
# Servers pinned as ../shared/bench/sitting.sh pins them (server side on CPU 1, wrk on CPU 0);
# one line per run from the founders' load.sh. Logins (one per connection, before wrk starts)
# use LATCHD_PBKDF2_ITERATIONS=1000 and are not measured; LATCHD_MAX_SESSIONS_PER_USER=1000
# keeps 129 sessions of the one load user live.
#
# Usage: benches/conns.sh path/to/latchd [RUNS]
# Env: BENCH (../shared/bench), BENCH_TARGET (/tmp/latchd-bench-target, where the peer was
#      built as ../shared/bench/README.md says), CONNS ("1 8 32 128"), SECS (10).
set -euo pipefail

latchd=$(realpath "${1:?usage: benches/conns.sh path/to/latchd [RUNS]}")
runs=${2:-2}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench=$(realpath "${BENCH:-$here/../../shared/bench}")
peer_bin=${BENCH_TARGET:-/tmp/latchd-bench-target}/release/axum-peer
[ -x "$peer_bin" ] || { echo "conns.sh: build the peer first ($peer_bin)" >&2; exit 2; }
key=$(head -c 32 /dev/urandom | basenc --base64url | tr -d '=\n')
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$bench/axum-peer/redis.sh" stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

start() { # NAME BINARY ARG [ENV=VAL...] -> "pid port"
  local name=$1 bin=$2 arg=$3; shift 3
  env LATCHD_LISTEN=127.0.0.1:0 "$@" taskset -c 1 "$bin" $arg >/dev/null 2>"$dir/$name.err" &
  local pid=$! port=""
  for _ in $(seq 300); do
    port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$dir/$name.err" | head -1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$dir/$name.err" >&2; echo "$name did not start" >&2; exit 1; }
  echo "$pid $port"
}

common=(LATCHD_SIGNING_KEY="$key" LATCHD_ACCESS_TTL=3600 LATCHD_COOKIE_SECURE=false)
"$bench/axum-peer/redis.sh" start always 1 >/dev/null
redis_pid=$("$bench/axum-peer/redis.sh" pid)
read -r peer_pid peer_port < <(start axum-peer "$peer_bin" "" "${common[@]}" \
  PEER_REDIS_URL="redis://127.0.0.1:${PEER_REDIS_PORT:-6390}/")
pids+=("$peer_pid")
read -r l_pid l_port < <(start latchd "$latchd" serve "${common[@]}" LATCHD_DB="$dir/latchd.redb" \
  LATCHD_LOG=warn LATCHD_PBKDF2_ITERATIONS=1000 LATCHD_MAX_SESSIONS_PER_USER=1000 \
  LATCHD_HASH_ADDRESS_PER_MIN=100000)
pids+=("$l_pid")
cred="load@example.test:correct horse battery staple"
echo "# conns.sh $(date -u +%FT%TZ) latchd=$latchd runs=$runs"
for c in ${CONNS:-1 8 32 128}; do
  for i in $(seq "$runs"); do
    "$bench/quiet.sh" 600 90 >/dev/null || { echo "machine never got quiet" >&2; exit 1; }
    "$bench/load.sh" refresh "http://127.0.0.1:$l_port" "$cred" -d "${SECS:-10}" -c "$c" \
      -p "$l_pid" -l "latchd-c$c#$i"
    "$bench/quiet.sh" 600 90 >/dev/null || { echo "machine never got quiet" >&2; exit 1; }
    "$bench/load.sh" refresh "http://127.0.0.1:$peer_port" "$cred" -d "${SECS:-10}" -c "$c" \
      -p "$peer_pid,$redis_pid" -l "peer-always-c$c#$i"
  done
done
