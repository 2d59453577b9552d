# Shared by the proxy benchmarks (bench/proxy.sh, proxy-cost.sh, proxy-split.sh), sourced from the project root.
# Builds the proxy examples, gives the caller WORK (a temporary folder) and PIDS (every process started, stopped
# by PID and reaped on exit), wait_port, and haproxy_cfg, the one HAProxy configuration all three compare against.

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

# wait_port PORT: until 127.0.0.1:PORT accepts, at most 10 s.
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 did not open" >&2
    exit 1
}

# haproxy_cfg THREADS NAME:PORT:BACKEND_PORT...: HAProxy 2.6 in TCP mode with vipd's proxy settings (leastconn,
# 3 retries, 2 s connect timeout, splice, keepalive both sides), one frontend per NAME on 127.0.0.1:PORT.
haproxy_cfg() {
    local threads=$1 name port backend
    shift
    cat <<CFG
global
    nbthread $threads
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
CFG
    for f in "$@"; do
        IFS=: read -r name port backend <<<"$f"
        printf 'frontend %s\n    bind 127.0.0.1:%s\n    default_backend %s\nbackend %s\n    server s1 127.0.0.1:%s\n' \
            "$name" "$port" "$name" "$name" "$backend"
    done
}
