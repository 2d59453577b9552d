#!/usr/bin/env bash
# Proxy benchmark on loopback, one run: vipd's proxy (proxy/examples/bench-proxy) vs HAProxy 2.6 (TCP mode,
# same settings, option splice-auto) vs a direct connection.
#   bulk throughput (iperf3 -t $DUR), new connections/s (wrk, Connection: close), keep-alive req/s and p50/p99
#   latency (wrk --latency), proxy CPU seconds per GB moved (utime+stime from /proc/PID/stat during iperf3).
# Every process started here is stopped by PID on exit. Whole run: about 1 min with DUR=5.
# Env: DUR (s, default 5), THREADS (proxy threads, default 2), CONNS (wrk connections, default 50),
#      BASE (first port, default 21000), COPY=1 (force vipd's copy path), OUT (also write the table there).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-5}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
BASE=${BASE:-21000}
HTTP=$BASE IPERF=$((BASE + 1))
HA_HTTP=$((BASE + 10)) HA_IPERF=$((BASE + 11))
V_HTTP=$((BASE + 20)) V_IPERF=$((BASE + 21))

cargo build --release -p proxy --examples -q
BIN=target/release/examples
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 did not open" >&2
    exit 1
}

"$BIN/bench-http" "127.0.0.1:$HTTP" 1 &
PIDS+=($!)
iperf3 -s -B 127.0.0.1 -p "$IPERF" >/dev/null 2>&1 &
PIDS+=($!)

cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread $THREADS
    maxconn 4000
defaults
    mode tcp
    balance leastconn
    retries 3
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    option splice-auto
    option clitcpka
    option srvtcpka
frontend http
    bind 127.0.0.1:$HA_HTTP
    default_backend http
backend http
    server s1 127.0.0.1:$HTTP
frontend iperf
    bind 127.0.0.1:$HA_IPERF
    default_backend iperf
backend iperf
    server s1 127.0.0.1:$IPERF
EOF
haproxy -db -f "$WORK/haproxy.cfg" &
HA_PID=$!
PIDS+=($HA_PID)

VARGS=(--threads "$THREADS")
[ "${COPY:-0}" = 1 ] && VARGS+=(--copy)
"$BIN/bench-proxy" "${VARGS[@]}" "127.0.0.1:$V_HTTP=127.0.0.1:$HTTP" "127.0.0.1:$V_IPERF=127.0.0.1:$IPERF" &
V_PID=$!
PIDS+=($V_PID)

for p in $HTTP $IPERF $HA_HTTP $HA_IPERF $V_HTTP $V_IPERF; do wait_port "$p"; done

TCK=$(getconf CLK_TCK)
cpu() { if [ -n "$1" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }

declare -A R
bulk() { # name port pid
    local c0 c1
    c0=$(cpu "$3")
    iperf3 -c 127.0.0.1 -p "$2" -t "$DUR" -J >"$WORK/iperf.json"
    c1=$(cpu "$3")
    read -r gbps bytes < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["end"]["sum_received"]; print("%.2f %d" % (s["bits_per_second"]/1e9, s["bytes"]))' "$WORK/iperf.json")
    R[$1,gbps]=$gbps
    if [ -n "$3" ]; then
        R[$1,cpu]=$(python3 -c "print('%.2f' % ((($c1 - $c0) / $TCK) / ($bytes / 1e9)))")
    else
        R[$1,cpu]=-
    fi
}
wrk_run() { # name port kind(close|ka)
    local out
    if [ "$3" = close ]; then
        out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" -H 'Connection: close' "http://127.0.0.1:$2/")
        R[$1,cps]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
        R[$1,cerr]=$(awk '/Socket errors/ {print $0}' <<<"$out" | sed 's/^ *//')
    else
        out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$2/")
        R[$1,rps]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
        R[$1,p50]=$(awk '$1 == "50%" {print $2}' <<<"$out")
        R[$1,p99]=$(awk '$1 == "99%" {print $2}' <<<"$out")
        R[$1,kerr]=$(awk '/Socket errors/ {print $0}' <<<"$out" | sed 's/^ *//')
    fi
}

NAMES=(direct haproxy vipd)
declare -A PORT_HTTP=([direct]=$HTTP [haproxy]=$HA_HTTP [vipd]=$V_HTTP)
declare -A PORT_IPERF=([direct]=$IPERF [haproxy]=$HA_IPERF [vipd]=$V_IPERF)
declare -A PID=([direct]="" [haproxy]=$HA_PID [vipd]=$V_PID)

for n in "${NAMES[@]}"; do bulk "$n" "${PORT_IPERF[$n]}" "${PID[$n]}"; done
for n in "${NAMES[@]}"; do wrk_run "$n" "${PORT_HTTP[$n]}" close; done
for n in "${NAMES[@]}"; do wrk_run "$n" "${PORT_HTTP[$n]}" ka; done

{
    echo "| target | bulk Gbit/s | proxy CPU s/GB | new conn/s | keep-alive req/s | p50 | p99 |"
    echo "|---|---|---|---|---|---|---|"
    for n in "${NAMES[@]}"; do
        echo "| $n | ${R[$n,gbps]} | ${R[$n,cpu]} | ${R[$n,cps]} | ${R[$n,rps]} | ${R[$n,p50]} | ${R[$n,p99]} |"
    done
    for n in "${NAMES[@]}"; do
        if [ -n "${R[$n,cerr]:-}${R[$n,kerr]:-}" ]; then echo "($n wrk: ${R[$n,cerr]:-} ${R[$n,kerr]:-})"; fi
    done
    echo
    echo "$(date -u +%FT%TZ) $(nproc) cpus, DUR=$DUR THREADS=$THREADS CONNS=$CONNS COPY=${COPY:-0}, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
} | tee "${OUT:-/dev/null}"
