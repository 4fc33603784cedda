#!/usr/bin/env bash
# Cold start and memory at scale (issue 10 §3). For each size N in SCALE_SIZES, builds (once,
# kept in SCALE_DIR) a file of N users each with one live API session with
# benches/scale/build_file.rs, then starts the release server on it and prints:
#   - the time from spawning `latchd serve` to its first answered GET /healthz (polled with
#     bash's /dev/tcp in a loop that forks nothing, up to 60 s);
#   - RSS right after start (idle), then after traffic: 200 logins of random users (curl),
#     SCALE_SECS of wrk logins of random users (rows read from all over the file), SCALE_SECS
#     of wrk verify with one token, and one refresh of each of the 200 sessions (curl);
#   - the peak RSS (VmHWM) over the run, and the file size.
# The file is in the OS page cache after it is built (warm start); nothing drops that cache.
#
# Env: SCALE_SIZES ("10000 1000000"), SCALE_DIR (target/scale), SCALE_SECS (5),
#      LATCHD_CACHE_MB (unset: the server's default), SCALE_RUNS (3: starts per size, each
#      start time printed), SCALE_BIN (a latchd binary to measure instead of this tree's
#      release build, e.g. a copy of an older one, to alternate old and new on the same files).
# Usage: benches/scale.sh   (the 1,000,000 file takes ~3-8 min to build on a 2-core VM, 1.3 GB)
set -euo pipefail

sizes="${SCALE_SIZES:-10000 1000000}"
secs="${SCALE_SECS:-5}"
runs="${SCALE_RUNS:-3}"
iterations=1000

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
dir="${SCALE_DIR:-$root/target/scale}"
mkdir -p "$dir"

cargo build --release --bin latchd --example scale_file
latchd="${SCALE_BIN:-$root/target/release/latchd}"

tmp="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k * 1024 / 1e6 }'; }

# healthy PORT: whether GET /healthz on PORT answers 200 (no fork: bash's /dev/tcp).
healthy() {
    local line
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 || {
        exec 3>&-
        return 1
    }
    IFS= read -r -t 2 line <&3 || line=""
    exec 3>&-
    [[ "$line" == "HTTP/1.1 200"* ]]
}

# start DB PORT: spawns the server on DB, polls until /healthz answers; sets $pid and $ms.
start() {
    local db="$1" port="$2" t0 t1 deadline
    t0="$EPOCHREALTIME"
    env LATCHD_LISTEN="127.0.0.1:$port" LATCHD_DB="$db" LATCHD_LOG=warn \
        LATCHD_PBKDF2_ITERATIONS="$iterations" LATCHD_COOKIE_SECURE=false \
        LATCHD_LOGIN_ACCOUNT_FAILURES=1000 LATCHD_LOGIN_ADDRESS_PER_MIN=1000000 \
        LATCHD_HASH_ADDRESS_PER_MIN=1000000 \
        "$latchd" serve 2>>"$tmp/server.log" &
    pid=$!
    deadline=$((${t0%.*} + 60))
    until healthy "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "latchd exited:" >&2
            cat "$tmp/server.log" >&2
            exit 1
        fi
        if [ "${EPOCHREALTIME%.*}" -ge "$deadline" ]; then
            echo "latchd did not answer /healthz within 60 s" >&2
            exit 1
        fi
    done
    t1="$EPOCHREALTIME"
    ms="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')"
}

stop() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
}

json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }

report=()
for n in $sizes; do
    db="$dir/scale-$n.redb"
    if [ ! -f "$db" ]; then
        echo "== building $db ($n users + $n live sessions)" >&2
        "$root/target/release/examples/scale_file" "$db" "$n" "$iterations" >"$dir/scale-$n.password"
    fi
    password="$(cat "$dir/scale-$n.password")"
    size="$(stat -c %s "$db")"
    port="$(free_port)"
    starts=()
    for _ in $(seq 1 "$runs"); do
        start "$db" "$port"
        starts+=("$ms")
        idle="$(rss_kib "$pid")"
        stop
    done
    start "$db" "$port"
    idle="$(rss_kib "$pid")"
    echo "== $n users: start ${starts[*]} ms, idle RSS $(mb "$idle")" >&2

    base="http://127.0.0.1:$port"
    : >"$tmp/pairs"
    for _ in $(seq 1 200); do
        i=$(((RANDOM * 32768 + RANDOM) % n))
        curl -fsS --max-time 30 -X POST -H 'Content-Type: application/json' \
            -d "{\"email\":\"user$i@example.com\",\"password\":\"$password\"}" \
            "$base/v1/auth/login" >>"$tmp/pairs"
        echo >>"$tmp/pairs"
    done
    SCALE_USERS="$n" SCALE_PASSWORD="$password" wrk -t1 -c8 -d"${secs}s" --timeout 30s \
        -s "$here/scale/login_random.lua" "$base/v1/auth/login" >"$tmp/logins.txt"
    logins="$(awk '$1 == "Requests/sec:" { print $2 }' "$tmp/logins.txt")"
    token="$(head -n 1 "$tmp/pairs" | json_field access_token)"
    wrk -t1 -c32 -d"${secs}s" -H "Authorization: Bearer $token" "$base/v1/auth/verify" \
        >"$tmp/verify.txt"
    verifies="$(awk '$1 == "Requests/sec:" { print $2 }' "$tmp/verify.txt")"
    if grep -q 'Non-2xx' "$tmp/verify.txt" "$tmp/logins.txt"; then
        echo "some answers were not 200:" >&2
        cat "$tmp/verify.txt" "$tmp/logins.txt" >&2
        exit 1
    fi
    refreshed=0
    while read -r pair; do
        refresh="$(printf '%s' "$pair" | json_field refresh_token)"
        curl -fsS --max-time 30 -o /dev/null -X POST -H 'Content-Type: application/json' \
            -d "{\"refresh_token\":\"$refresh\"}" "$base/v1/auth/refresh"
        refreshed=$((refreshed + 1))
    done <"$tmp/pairs"
    busy="$(rss_kib "$pid")"
    peak="$(hwm_kib "$pid")"
    stop
    report+=("$(printf '%-10s %8s MB %24s %12s %14s %12s   (%s logins/s, %s verify/s, %s refreshes)' \
        "$n" "$((size / 1000000))" "${starts[*]}" "$(mb "$idle")" "$(mb "$busy")" "$(mb "$peak")" \
        "$logins" "$verifies" "$refreshed")")
done

echo
echo "latchd ${SCALE_BIN:-$(git rev-parse --short HEAD)}, LATCHD_CACHE_MB=${LATCHD_CACHE_MB:-default}, $runs starts per size, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %11s %24s %12s %14s %12s\n' "users" "file" "first answer (ms)" "idle RSS" "RSS after load" "peak RSS"
printf '%s\n' "${report[@]}"
