#!/usr/bin/env bash
# Server CPU per request of two or more latchd builds, alternated: how README "Binary size"
# compared opt-level "s" with "z". For each round and each build: a fresh data directory, the
# server started under `taskset -c 1` (as the founders' load.sh expects), one durable refresh
# run and one verify run of ../shared/bench/load.sh, and the server's own CPU time over each run
# (utime + stime from /proc/PID/stat) divided by the requests it answered. CPU per request holds
# far steadier than requests/s on a shared machine; compare medians of the same sitting only.
#
# Logins run at LATCHD_PBKDF2_ITERATIONS=1000 so that the logins load.sh makes before a refresh
# run (one per connection) do not count as refresh CPU.
#
# Usage: benches/cpu_ab.sh ROUNDS path/to/latchd-a path/to/latchd-b ...
# Env: BENCH (../shared/bench), AB_SECS (10), AB_PORT (18090).
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
rounds=$1
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="${BENCH:-$here/../../shared/bench}"
load="$bench/load.sh"
[ -x "$load" ] || { echo "cpu_ab.sh: no $load (set BENCH)" >&2; exit 2; }
secs="${AB_SECS:-10}"
port="${AB_PORT:-18090}"
base="http://127.0.0.1:$port"
user="ab@example.com"
password="a long enough passphrase 42"
tick=$(getconf CLK_TCK)

pid="" dir=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    [ -z "$dir" ] || rm -rf "$dir"
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One load.sh run; prints its line with the server's CPU per answered request in front.
measure() {
    local mode=$1 label=$2 before after line rps
    shift 2
    before=$(cpu_ticks "$pid")
    line=$("$load" "$mode" "$base" "$@" -d "$secs" -p "$pid" -l "$label" | tail -1)
    after=$(cpu_ticks "$pid")
    rps=$(grep -o 'ok_rps=[0-9]*' <<<"$line" | cut -d= -f2)
    awk -v c=$((after - before)) -v t="$tick" -v r="$rps" -v s="$secs" -v m="$mode" -v l="$line" \
        'BEGIN { printf "%s cpu_us_per_req=%s %s\n", m, (r > 0 ? sprintf("%.1f", c / t * 1e6 / (r * s)) : "nan"), l }'
}

for round in $(seq 1 "$rounds"); do
    for latchd in "$@"; do
        dir=$(mktemp -d)
        LATCHD_PBKDF2_ITERATIONS=1000 LATCHD_HASH_ADDRESS_PER_MIN=100000 \
            LATCHD_DB="$dir/latchd.redb" LATCHD_LISTEN="127.0.0.1:$port" \
            taskset -c 1 "$latchd" serve >"$dir/log" 2>&1 &
        pid=$!
        for _ in $(seq 1 100); do
            curl -s -o /dev/null "$base/healthz" && break
            sleep 0.1
        done
        label="round$round-$(basename "$latchd")"
        measure refresh "$label" "$user:$password" -c 32 -w 0
        token=$(curl -s -X POST "$base/v1/auth/login" -H 'content-type: application/json' \
            -d "{\"email\":\"$user\",\"password\":\"$password\"}" | jq -r .access_token)
        measure verify "$label" "$token" -c 64 -w 0
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
        pid=""
        rm -rf "$dir"
        dir=""
    done
done
