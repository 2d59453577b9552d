#!/usr/bin/env bash
# Cost per proxied connection and per keep-alive request, in units that do not depend on the machine's load:
# user-space instructions (valgrind --tool=callgrind, counters zeroed after start-up and dumped after the load)
# and system calls (strace -c -f), for vipd's proxy (proxy/examples/bench-proxy) and HAProxy 2.6 with the
# settings of bench/proxy.sh, in front of proxy/examples/bench-http on loopback; vipd twice, on a tokio runtime
# (proxy.threads: 0) and on threads of its own (vipd-own, the default proxy.threads: auto).
# The load is wrk (-t1 -c$CONNS -d${DUR}s), `Connection: close` for connections, keep-alive for requests;
# every figure is divided by what the proxy itself counted (accept4 calls that returned a socket for
# connections, wrk's completed requests for requests), so the client's speed under valgrind does not matter.
# Every process started here is stopped by PID on exit. About 1 min with the defaults.
# Env: DUR (s per load, default 4), CONNS (wrk connections, default 20), THREADS (proxy threads, 2),
#      BASE (first port, default 22000), OUT (also write the table there).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-4}
CONNS=${CONNS:-20}
THREADS=${THREADS:-2}
BASE=${BASE:-22000}
HTTP=$BASE HA=$((BASE + 10)) V=$((BASE + 20))

. bench/common.sh

"$BIN/bench-http" "127.0.0.1:$HTTP" 1 &
PIDS+=($!)
haproxy_cfg "$THREADS" "http:$HA:$HTTP" >"$WORK/haproxy.cfg"

# start NAME TOOL...: runs one proxy under TOOL, sets STARTED to the traced process's PID.
start() {
    local name=$1
    shift
    case $name in
    haproxy) "$@" haproxy -db -f "$WORK/haproxy.cfg" & ;;
    vipd) "$@" "$BIN/bench-proxy" --threads "$THREADS" "127.0.0.1:$V=127.0.0.1:$HTTP" & ;;
    vipd-own) "$@" "$BIN/bench-proxy" --threads "$THREADS" --own-threads "127.0.0.1:$V=127.0.0.1:$HTTP" & ;;
    esac
    STARTED=$!
    PIDS+=("$STARTED")
}
port() { if [ "$1" = haproxy ]; then echo "$HA"; else echo "$V"; fi; }
load() { # name kind(close|ka) -> completed requests
    local hdr=()
    [ "$2" = close ] && hdr=(-H 'Connection: close')
    wrk -t1 -c"$CONNS" -d"${DUR}s" "${hdr[@]}" "http://127.0.0.1:$(port "$1")/" |
        awk '/requests in/ {print $1}'
}
stop() { # pid: stops the tool, which writes its report
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

TSV=$WORK/cost.tsv
: >"$TSV"
wait_port "$HTTP"
for name in haproxy vipd vipd-own; do
    for kind in close ka; do
        # Instructions: callgrind, counters zeroed once the proxy listens.
        start "$name" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$name.$kind.%p" -q
        wait_port "$(port "$name")"
        sleep 1
        callgrind_control -z "$STARTED" &>/dev/null
        n=$(load "$name" "$kind")
        callgrind_control -d "$STARTED" &>/dev/null
        ir=$(cat "$WORK"/cg."$name"."$kind".*.1 | awk '/^summary:/ {print $2}')
        stop "$STARTED"
        printf '%s\t%s\tinstr\t%s\t%s\n' "$name" "$kind" "$ir" "$n" >>"$TSV"
        # System calls: strace -c, whole run (start-up is a few hundred calls against tens of thousands).
        start "$name" strace -f -c -o "$WORK/st.$name.$kind"
        wait_port "$(port "$name")"
        n=$(load "$name" "$kind")
        for c in $(pgrep -P "$STARTED"); do kill -TERM "$c" 2>/dev/null || true; done
        wait "$STARTED" 2>/dev/null || true
        printf '%s\t%s\tsyscalls\t%s\t%s\n' "$name" "$kind" "$WORK/st.$name.$kind" "$n" >>"$TSV"
    done
done

{
    python3 - "$TSV" <<'PY'
import re, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def strace(path):
    calls = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and re.match(r"^[0-9.]+$", f[0]) and f[-1] != "total":
            calls[f[-1]] = (int(f[3]), int(f[4]) if len(f) == 6 else 0)
    return calls
res = {}
for name, kind, what, val, n in rows:
    res[name, kind, what] = (val, int(n))
NAMES = ["haproxy", "vipd", "vipd-own"]
print("| per unit | HAProxy | vipd (proxy.threads: 0) | vipd-own (own threads) | vipd / HAProxy | vipd-own / HAProxy |")
print("|---|---|---|---|---|---|")
detail = {}
for kind, unit in [("close", "connection"), ("ka", "keep-alive request")]:
    ir = {}
    sc = {}
    for name in NAMES:
        v, n = res[name, kind, "instr"]
        ir[name] = int(v) / n
        path, n2 = res[name, kind, "syscalls"]
        calls = strace(path)
        if kind == "close":
            ok = calls.get("accept4", (0, 0))
            n2 = ok[0] - ok[1]
        sc[name] = sum(c for c, _ in calls.values()) / n2
        detail[name, kind] = {k: c / n2 for k, (c, _) in calls.items() if c / n2 >= 0.05}
    h = ir["haproxy"]
    print(f"| user-space instructions per {unit} | {h:.0f} | {ir['vipd']:.0f} | {ir['vipd-own']:.0f} | {ir['vipd'] / h:.2f} | {ir['vipd-own'] / h:.2f} |")
    h = sc["haproxy"]
    print(f"| system calls per {unit} | {h:.1f} | {sc['vipd']:.1f} | {sc['vipd-own']:.1f} | {sc['vipd'] / h:.2f} | {sc['vipd-own'] / h:.2f} |")
print()
for kind in ["close", "ka"]:
    print(f"system calls per {'connection' if kind == 'close' else 'request'} ({'Connection: close' if kind == 'close' else 'keep-alive'}), by call:")
    for name in NAMES:
        d = detail[name, kind]
        print(f"  {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(d.items(), key=lambda x: -x[1])))
PY
    echo
    echo "$(date -u +%FT%TZ) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), DUR=$DUR CONNS=$CONNS THREADS=$THREADS, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
} | tee "${OUT:-/dev/null}"
