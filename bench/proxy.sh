#!/usr/bin/env bash
# Proxy benchmark on loopback, one run: vipd's proxy (proxy/examples/bench-proxy) vs HAProxy 2.6 (TCP mode,
# same settings, option splice-auto) vs a direct connection.
#   bulk throughput (iperf3 -t $DUR), new connections/s (wrk, Connection: close), keep-alive req/s and p50/p99
#   latency (wrk --latency), proxy CPU seconds per GB moved (utime+stime from /proc/PID/stat during iperf3),
#   proxy CPU microseconds per connection and per keep-alive request (the same, during the wrk runs).
# Each figure is the median of ROUNDS runs, the targets interleaved (order rotated every round), so load from
# other work on the machine hits all targets alike. Every process started here is stopped by PID on exit.
# Whole run: about 2.5 min with the defaults.
# Env: DUR (s per run, default 5), ROUNDS (default 3), THREADS (proxy threads, default 2), CONNS (wrk conns, 50),
#      BASE (first port, default 21000), COPY=1 (force vipd's copy path), OUT (also write the table there),
#      BASELINE=path (another bench-proxy build, e.g. from an older commit, run as target `vipd-base` in the
#      same interleaved rounds: before and after under the same load).
# vipd runs twice, in the same rounds: `vipd` on a tokio runtime of THREADS workers (proxy.threads: 0) and
# `vipd-own` on THREADS threads of the proxy's own (proxy.threads: THREADS; the daemon's default, auto, is one
# per CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
BASE=${BASE:-21000}
HTTP=$BASE IPERF=$((BASE + 1))
HA_HTTP=$((BASE + 10)) HA_IPERF=$((BASE + 11))
V_HTTP=$((BASE + 20)) V_IPERF=$((BASE + 21))
B_HTTP=$((BASE + 30)) B_IPERF=$((BASE + 31))
O_HTTP=$((BASE + 40)) O_IPERF=$((BASE + 41))

. bench/common.sh

"$BIN/bench-http" "127.0.0.1:$HTTP" 1 &
PIDS+=($!)
iperf3 -s -B 127.0.0.1 -p "$IPERF" >/dev/null 2>&1 &
PIDS+=($!)

haproxy_cfg "$THREADS" "http:$HA_HTTP:$HTTP" "iperf:$HA_IPERF:$IPERF" >"$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" &
HA_PID=$!
PIDS+=($HA_PID)

VARGS=(--threads "$THREADS")
[ "${COPY:-0}" = 1 ] && VARGS+=(--copy)
[ -n "${OWN_THREADS:-}" ] && { echo "OWN_THREADS is gone: both modes run in every round (vipd, vipd-own)" >&2; exit 2; }
"$BIN/bench-proxy" "${VARGS[@]}" "127.0.0.1:$V_HTTP=127.0.0.1:$HTTP" "127.0.0.1:$V_IPERF=127.0.0.1:$IPERF" &
V_PID=$!
PIDS+=($V_PID)
"$BIN/bench-proxy" "${VARGS[@]}" --own-threads "127.0.0.1:$O_HTTP=127.0.0.1:$HTTP" "127.0.0.1:$O_IPERF=127.0.0.1:$IPERF" &
O_PID=$!
PIDS+=($O_PID)
PORTS=($HTTP $IPERF $HA_HTTP $HA_IPERF $V_HTTP $V_IPERF $O_HTTP $O_IPERF)
if [ -n "${BASELINE:-}" ]; then
    "$BASELINE" "${VARGS[@]}" "127.0.0.1:$B_HTTP=127.0.0.1:$HTTP" "127.0.0.1:$B_IPERF=127.0.0.1:$IPERF" &
    B_PID=$!
    PIDS+=($B_PID)
    PORTS+=($B_HTTP $B_IPERF)
fi

for p in "${PORTS[@]}"; do wait_port "$p"; done

TCK=$(getconf CLK_TCK)
cpu() { if [ -n "$1" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }

TSV=$WORK/results.tsv
: >"$TSV"
bulk() { # name port pid
    local c0 c1
    c0=$(cpu "$3")
    iperf3 -c 127.0.0.1 -p "$2" -t "$DUR" -J >"$WORK/iperf.json"
    c1=$(cpu "$3")
    python3 - "$WORK/iperf.json" "$1" "$c0" "$c1" "$TCK" >>"$TSV" <<'PY'
import json, sys
f, name, c0, c1, tck = sys.argv[1:]
s = json.load(open(f))["end"]["sum_received"]
print(f"{name}\tgbps\t{s['bits_per_second'] / 1e9:.2f}")
if name != "direct":
    print(f"{name}\tcpu\t{((int(c1) - int(c0)) / int(tck)) / (s['bytes'] / 1e9):.3f}")
PY
}
ms() { # wrk latency (us/ms/s) -> ms
    awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}' <<<"$1"
}
wrk_run() { # name port kind(close|ka); also the proxy's CPU time (utime+stime) per 1000 requests
    local out c0 c1 n
    c0=$(cpu "${PID[$1]}")
    if [ "$3" = close ]; then
        out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" -H 'Connection: close' "http://127.0.0.1:$2/")
        printf '%s\tcps\t%s\n' "$1" "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")" >>"$TSV"
    else
        out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$2/")
        printf '%s\trps\t%s\n' "$1" "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")" >>"$TSV"
        printf '%s\tp50\t%s\n' "$1" "$(ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")" >>"$TSV"
        printf '%s\tp99\t%s\n' "$1" "$(ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")" >>"$TSV"
    fi
    c1=$(cpu "${PID[$1]}")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    if [ "$1" != direct ] && [ "${n:-0}" -gt 0 ]; then
        printf '%s\tcpu_%s\t%s\n' "$1" "$3" "$(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="$n" 'BEGIN {printf "%.1f", d / t * 1e6 / n}')" >>"$TSV"
    fi
    if grep -q 'Socket errors' <<<"$out"; then
        echo "$1 ($3): $(grep 'Socket errors' <<<"$out" | sed 's/^ *//')" >>"$WORK/errors"
    fi
}

declare -A PORT_HTTP=([direct]=$HTTP [haproxy]=$HA_HTTP [vipd]=$V_HTTP [vipd-own]=$O_HTTP [vipd-base]=$B_HTTP)
declare -A PORT_IPERF=([direct]=$IPERF [haproxy]=$HA_IPERF [vipd]=$V_IPERF [vipd-own]=$O_IPERF [vipd-base]=$B_IPERF)
declare -A PID=([direct]="" [haproxy]=$HA_PID [vipd]=$V_PID [vipd-own]=$O_PID [vipd-base]=${B_PID:-})
TARGETS=(direct haproxy vipd vipd-own)
[ -n "${BASELINE:-}" ] && TARGETS+=(vipd-base)
for r in $(seq "$ROUNDS"); do
    # The order rotates every round.
    k=$(((r - 1) % ${#TARGETS[@]}))
    NAMES=("${TARGETS[@]:$k}" "${TARGETS[@]:0:$k}")
    for n in "${NAMES[@]}"; do bulk "$n" "${PORT_IPERF[$n]}" "${PID[$n]}"; done
    for n in "${NAMES[@]}"; do wrk_run "$n" "${PORT_HTTP[$n]}" close; done
    for n in "${NAMES[@]}"; do wrk_run "$n" "${PORT_HTTP[$n]}" ka; done
done

{
    python3 - "$TSV" <<'PY'
import sys, statistics
from collections import defaultdict
v = defaultdict(list)
for line in open(sys.argv[1]):
    n, k, x = line.split("\t")
    v[n, k].append(float(x))
def m(n, k, fmt):
    xs = v.get((n, k))
    return fmt.format(statistics.median(xs)) if xs else "-"
print("| target | bulk Gbit/s | proxy CPU s/GB | new conn/s | proxy CPU µs/conn | keep-alive req/s | proxy CPU µs/req | p50 ms | p99 ms |")
print("|---|---|---|---|---|---|---|---|---|")
for n in ["direct", "haproxy", "vipd", "vipd-own", "vipd-base"]:
    if not any(k[0] == n for k in v):
        continue
    print(f"| {n} | {m(n,'gbps','{:.2f}')} | {m(n,'cpu','{:.3f}')} | {m(n,'cps','{:.0f}')} | {m(n,'cpu_close','{:.1f}')} | "
          f"{m(n,'rps','{:.0f}')} | {m(n,'cpu_ka','{:.1f}')} | {m(n,'p50','{:.2f}')} | {m(n,'p99','{:.2f}')} |")
# Ratios per round (the targets of one round ran back to back), then their median: steadier under load than
# a ratio of medians.
rounds = len(v.get(("vipd", "cps"), []))
def ratio(k, a="vipd", b="haproxy"):
    xs = [x / y for x, y in zip(v.get((a, k), []), v.get((b, k), [])) if y]
    return "{:.2f}".format(statistics.median(xs)) if xs else "-"
def ratios(a, b):
    print()
    print(f"{a} / {b}, median of the {rounds} per-round ratios: new conn/s {ratio('cps', a, b)}, keep-alive req/s "
          f"{ratio('rps', a, b)}, p99 {ratio('p99', a, b)}, bulk {ratio('gbps', a, b)}, CPU per conn "
          f"{ratio('cpu_close', a, b)}, CPU per req {ratio('cpu_ka', a, b)}")
ratios("vipd", "haproxy")
ratios("vipd-own", "haproxy")
if ("vipd-base", "cps") in v:
    ratios("vipd-base", "haproxy")
    ratios("vipd", "vipd-base")
print()
print("all runs (target metric: values):")
for (n, k), xs in sorted(v.items()):
    print(f"  {n} {k}: {' '.join(f'{x:g}' for x in xs)}")
PY
    if [ -s "$WORK/errors" ]; then echo "wrk socket errors:"; sed 's/^/  /' "$WORK/errors"; fi
    echo
    echo "$(date -u +%FT%TZ) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), DUR=$DUR ROUNDS=$ROUNDS THREADS=$THREADS CONNS=$CONNS COPY=${COPY:-0}${BASELINE:+ BASELINE=$BASELINE}, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
} | tee "${OUT:-/dev/null}"
