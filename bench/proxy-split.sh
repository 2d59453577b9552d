#!/usr/bin/env bash
# Where the CPU goes while a proxy is under load, and how much faster it could get: system-wide cpu-clock
# samples (perf record -a, software timer, kernel symbols; no hardware counters needed) split by process
# (the proxy, wrk, the origin, idle) and, for the proxy, by kernel and user space; TCP segments per request
# (OutSegs from /proc/net/snmp) and context switches per request (ctxt from /proc/stat).
# The last column is the most a proxy could gain by making its own code free: with the CPUs saturated, requests/s
# scale with 1 / (CPU per request of the whole chain: wrk, proxy, origin), so removing the proxy's user-space
# share U of the chain's share C gives at most C / (C - U). Everything else is the kernel's TCP work, which the
# same system calls and the same segments per request cost every proxy alike.
# Targets: HAProxy 2.6 (nbthread THREADS, the settings of bench/proxy.sh), vipd on a tokio runtime of THREADS
# workers (proxy.threads: 0) and vipd on THREADS threads of its own (proxy.threads: THREADS), each in front of
# proxy/examples/bench-http on loopback; loads: wrk -t1 -c$CONNS, `Connection: close` and keep-alive.
# Every process started here is stopped by PID on exit. About 1 min. Needs perf (Debian: linux-perf).
# Env: DUR (s sampled per run, default 3), CONNS (50), THREADS (2), BASE (first port, 23000), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-3}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
BASE=${BASE:-23000}
HTTP=$BASE HA=$((BASE + 10)) V=$((BASE + 20)) VO=$((BASE + 30))
command -v perf >/dev/null || { echo "perf not found on PATH: apt-get install linux-perf" >&2; exit 1; }

. bench/common.sh

"$BIN/bench-http" "127.0.0.1:$HTTP" 1 &
PIDS+=($!)
haproxy_cfg "$THREADS" "http:$HA:$HTTP" >"$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" &
PIDS+=($!)
"$BIN/bench-proxy" --threads "$THREADS" "127.0.0.1:$V=127.0.0.1:$HTTP" &
PIDS+=($!)
"$BIN/bench-proxy" --threads "$THREADS" --own-threads "127.0.0.1:$VO=127.0.0.1:$HTTP" &
PIDS+=($!)
for p in $HTTP $HA $V $VO; do wait_port "$p"; done

segs() { awk '/^Tcp: [0-9]/ {print $12}' /proc/net/snmp; }
ctxt() { awk '/^ctxt/ {print $2}' /proc/stat; }
TSV=$WORK/split.tsv
: >"$TSV"
# target port proxy-thread-names
run() {
    local out s0 s1 c0 c1 w n hdr=()
    [ "$4" = close ] && hdr=(-H 'Connection: close')
    s0=$(segs) c0=$(ctxt)
    wrk -t1 -c"$CONNS" -d"$((DUR + 2))s" ${hdr[@]+"${hdr[@]}"} "http://127.0.0.1:$2/" >"$WORK/wrk.txt" &
    w=$!
    sleep 1
    perf record -q -e cpu-clock -F 2000 -a -o "$WORK/perf.data" sleep "$DUR" >/dev/null 2>&1
    wait "$w"
    s1=$(segs) c1=$(ctxt)
    n=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
    perf report -i "$WORK/perf.data" --stdio --no-children --sort comm,dso -g none 2>/dev/null |
        awk -v t="$1" -v l="$4" -v procs="$3" -v rps="$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")" \
            -v segs="$(((s1 - s0) * 100 / n))" -v ctx="$(((c1 - c0) * 100 / n))" '
        BEGIN { split(procs, p, ",") ; for (i in p) is_proxy[p[i]] = 1 }
        /^ +[0-9.]+%/ {
            pct = $1; sub(/%/, "", pct); comm = $2; dso = $3
            if (comm in is_proxy) { if (dso ~ /kernel/) pk += pct; else pu += pct }
            else if (comm == "wrk") wrk += pct
            else if (comm == "bench-http") origin += pct
            else if (comm == "swapper") idle += pct
            else other += pct
        }
        END {
            chain = pk + pu + wrk + origin
            printf "%s\t%s\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%.3f\n", t, l, rps, pk, pu, wrk, origin, idle, other, segs / 100, ctx / 100, chain / (chain - pu)
        }' >>"$TSV"
}
for load in close ka; do
    run haproxy "$HA" haproxy "$load"
    run vipd "$V" bench-proxy "$load"
    run vipd-own "$VO" vipd-proxy,bench-proxy "$load"
done

{
    echo "| proxy | load | req/s | proxy kernel % | proxy user % | wrk % | origin % | idle % | other % | TCP segments / req | context switches / req | most gain with free proxy code |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.3fx |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12}' "$TSV"
    echo
    echo "Shares are of all CPU samples (2 CPUs = 100%). $(date -u +%FT%TZ) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), DUR=$DUR CONNS=$CONNS THREADS=$THREADS, $(haproxy -v | head -1 | cut -d' ' -f1-3), $(uname -r)"
} | tee "${OUT:-/dev/null}"
