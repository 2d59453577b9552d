#!/usr/bin/env bash
# Fuzz the VRRPv3 and VRRPv2 decoders for a bounded time: `vrrp/fuzz/run.sh SECONDS` (default 30).
# Uses nightly with the address sanitizer when `cargo +nightly` works, else stable with `-s none`.
# Exits non-zero when the fuzzer finds a crash (the reproducer is left in vrrp/fuzz/artifacts/).
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-30}"
case "$secs" in
  ''|*[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if cargo +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  sanitizer=(-s address)
else
  toolchain=()
  sanitizer=(-s none)
fi

mkdir -p corpus/decode
# -max_total_time bounds the run; cargo fuzz exits non-zero if libFuzzer reports a crash or a leak.
# seeds/ holds the Keepalived vectors as whole IPv4 packets (selector byte 8), so runs start past the checksum.
exec cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" decode corpus/decode seeds -- \
  -max_total_time="$secs" -max_len=4096 -timeout=10
