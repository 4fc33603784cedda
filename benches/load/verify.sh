#!/usr/bin/env bash
# Load test for GET /v1/auth/verify (issue 4 §4 and §7). Prints requests/s and p99 for
#   1. latchd verify, quiet;
#   2. a bare hyper server answering the same route with an empty 200 (benches/load/bare_hyper.rs);
#   3. latchd verify while a second wrk floods POST /v1/auth/login with a wrong password;
# then latchd/bare throughput and flood/quiet p99.
#
# Pinning: every server runs under `taskset -c 0`, every wrk under `taskset -c 1`, so the load
# generators never take CPU from the server they measure and latchd and bare hyper get the same
# single core. Both load generators of phase 3 share CPU 1 with each other, not with latchd.
# A process pinned to one core sees available_parallelism() = 1: tokio starts one worker and
# latchd's LATCHD_HASH_CONCURRENCY default max(1, cores - 1) is 1. So in phase 3 the one
# spawn_blocking hash thread and the one async worker time-share CPU 0; no core is left free
# for verification as it would be on an unpinned 2-core host. This is the pessimistic case for
# issue 4's "flood p99 <= 1.5x quiet p99" target; LOAD_SERVER_CPUS=0,1 measures the other one
# (then the load generators share a core with the server).
#
# Env: LOAD_SECS (10) per phase, LOAD_CONNECTIONS (32) for verify, LOAD_ITERATIONS (else
# LATCHD_PBKDF2_ITERATIONS, else 600000: the production default, so each login costs what it
# would in production), LOAD_SERVER_CPUS (0), LOAD_WRK_CPUS (1).
# Usage: benches/load/verify.sh        (installs wrk with apt-get if it is missing)
set -euo pipefail

secs="${LOAD_SECS:-10}"
conns="${LOAD_CONNECTIONS:-32}"
iterations="${LOAD_ITERATIONS:-${LATCHD_PBKDF2_ITERATIONS:-600000}}"
server_cpus="${LOAD_SERVER_CPUS:-0}"
wrk_cpus="${LOAD_WRK_CPUS:-1}"
flood_conns=8
# login.lua sends this email with a different password. The password must pass the policy:
# it may not contain the email's local part ("load").
email="load@example.com"
password="quiet-harbor-$$-bench-secret"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if ! command -v wrk >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update && $sudo apt-get install -y wrk
fi

cargo build --release --bin latchd --example bare_hyper

tmp="$(mktemp -d)"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME CMD...: runs CMD pinned to the server CPUs, waits (at most 10 s) for its
# `listening on <addr>` line and sets $addr.
start() {
    local name="$1" pid i
    shift
    taskset -c "$server_cpus" "$@" 2>"$tmp/$name.log" &
    pid=$!
    pids+=("$pid")
    addr=""
    for i in $(seq 1 100); do
        addr="$(sed -n 's/^listening on \([0-9.]*:[0-9]*\)$/\1/p' "$tmp/$name.log" | head -n 1)"
        if [ -n "$addr" ]; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "$name did not start:" >&2
    cat "$tmp/$name.log" >&2
    exit 1
}

# warm URL [ARGS...]: two unrecorded seconds of the same load, so each measured run starts with
# the server's threads, allocator and connections already warm.
warm() {
    taskset -c "$wrk_cpus" wrk -t1 -c"$conns" -d2s "$@" >/dev/null
}

# bench NAME URL [ARGS...]: one wrk run pinned to the load CPUs; output kept in $tmp/NAME.txt.
bench() {
    local name="$1" url="$2"
    shift 2
    echo "== $name: wrk -t1 -c$conns -d${secs}s $url" >&2
    taskset -c "$wrk_cpus" wrk -t1 -c"$conns" -d"${secs}s" --latency "$@" "$url" \
        >"$tmp/$name.txt"
    cat "$tmp/$name.txt" >&2
    if grep -q 'Non-2xx' "$tmp/$name.txt"; then
        echo "$name: some answers were not 200" >&2
        exit 1
    fi
}

rps() { awk '$1 == "Requests/sec:" { print $2 }' "$tmp/$1.txt"; }
p99() { awk '$1 == "99%" { print $2 }' "$tmp/$1.txt"; }
# wrk prints latencies as 812.00us, 1.25ms or 1.02s; ratios need one unit.
micros() {
    awk -v t="$1" 'BEGIN {
        n = t + 0
        if (t ~ /us$/) print n; else if (t ~ /ms$/) print n * 1000;
        else if (t ~ /m$/) print n * 60000000; else print n * 1000000
    }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# The login limits and the per-address hashing budget are raised out of reach: the flood must
# cost real hashes, not cheap 429s (at 600,000 iterations it makes far fewer than 1000 attempts).
start latchd env \
    LATCHD_LISTEN=127.0.0.1:0 \
    LATCHD_DB="$tmp/latchd.redb" \
    LATCHD_PBKDF2_ITERATIONS="$iterations" \
    LATCHD_COOKIE_SECURE=false \
    LATCHD_LOG=warn \
    LATCHD_LOGIN_ACCOUNT_FAILURES=1000 \
    LATCHD_LOGIN_ADDRESS_PER_MIN=1000000 \
    LATCHD_HASH_ADDRESS_PER_MIN=1000000 \
    target/release/latchd serve
latchd="$addr"

body="{\"email\":\"$email\",\"password\":\"$password\"}"
curl -sS --fail-with-body --max-time 60 -X POST -H 'Content-Type: application/json' \
    -d "$body" "http://$latchd/v1/users" >&2
echo >&2
token="$(curl -fsS --max-time 60 -X POST -H 'Content-Type: application/json' \
    -d "$body" "http://$latchd/v1/auth/login" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
if [ -z "$token" ]; then
    echo "login returned no access_token" >&2
    exit 1
fi
auth="Authorization: Bearer $token"
curl -fsS --max-time 10 -o /dev/null -H "$auth" "http://$latchd/v1/auth/verify"

warm -H "$auth" "http://$latchd/v1/auth/verify"
bench latchd_quiet "http://$latchd/v1/auth/verify" -H "$auth"

start bare_hyper target/release/examples/bare_hyper
warm -H "$auth" "http://$addr/v1/auth/verify"
bench bare_hyper "http://$addr/v1/auth/verify" -H "$auth"
kill -TERM "${pids[-1]}"

# The flood starts a second early, so the hashing pool is busy for the whole verify run, and
# waits up to 60 s per login: queued logins wait on the pool's semaphore, not in error.
echo "== login flood: wrk -t1 -c$flood_conns -d$((secs + 2))s -s login.lua" >&2
taskset -c "$wrk_cpus" wrk -t1 -c"$flood_conns" -d"$((secs + 2))s" --timeout 60s \
    -s "$here/login.lua" "http://$latchd/v1/auth/login" >"$tmp/flood.txt" &
flood=$!
pids+=("$flood")
sleep 1
bench latchd_flood "http://$latchd/v1/auth/verify" -H "$auth"
wait "$flood"
cat "$tmp/flood.txt" >&2

quiet_p99="$(p99 latchd_quiet)"
flood_p99="$(p99 latchd_flood)"
echo
echo "GET /v1/auth/verify, wrk -t1 -c$conns -d${secs}s, server on CPU $server_cpus, wrk on CPU $wrk_cpus"
echo "PBKDF2 iterations: $iterations; login flood: wrk -t1 -c$flood_conns, wrong password"
printf '%-28s %12s %10s\n' "" "requests/s" "p99"
printf '%-28s %12s %10s\n' "latchd verify, quiet" "$(rps latchd_quiet)" "$quiet_p99"
printf '%-28s %12s %10s\n' "bare hyper, empty 200" "$(rps bare_hyper)" "$(p99 bare_hyper)"
printf '%-28s %12s %10s\n' "latchd verify, login flood" "$(rps latchd_flood)" "$flood_p99"
printf '%-28s %12s\n' "logins/s during the flood" "$(rps flood)"
echo "throughput latchd/bare:      $(ratio "$(rps latchd_quiet)" "$(rps bare_hyper)")  (target >= 0.6)"
echo "verify p99 flood/quiet:      $(ratio "$(micros "$flood_p99")" "$(micros "$quiet_p99")")  (target <= 1.5)"
