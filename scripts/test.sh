#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (once), then runs every test.
#
#   scripts/test.sh               # as root: apt-get installs whatever of PACKAGES is missing, then cargo test
#   scripts/test.sh -- --nocapture   # further arguments go to `cargo test --workspace --locked --no-fail-fast`
#
# The network-namespace tests need root. Installing is idempotent: when every package is already there, apt is
# not touched at all (so the command also works offline). --no-fail-fast: a failing test binary does not stop
# the others, so one run shows every failure; the exit status and the last lines are cargo's (its summary
# names each failed target).
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests run besides cargo, in one place (.ci/run uses this script too).
#   iproute2 (ip), iputils-ping (ping), procps (ps), util-linux (setpriv, nsenter), libcap2-bin (getpcaps),
#   systemd (systemd-analyze verify), file + binutils + libc6-dev (the static build check),
#   keepalived + haproxy (interop and side-by-side runs), tcpdump (captures), curl, iperf3 + wrk (proxy tests),
#   nftables (packet loss and partitions), prometheus (promtool, for the alert-rule tests).
PACKAGES=(
  iproute2 iputils-ping procps util-linux libcap2-bin systemd file binutils libc6-dev
  keepalived haproxy tcpdump curl iperf3 wrk nftables prometheus
)

# sudo resets PATH, and rustup puts cargo in the user's ~/.cargo/bin.
if ! command -v cargo >/dev/null; then
  echo "scripts/test.sh: cargo not found on PATH (under sudo, keep yours: sudo env \"PATH=\$PATH\" scripts/test.sh)" >&2
  exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: missing packages: ${missing[*]}" >&2
    echo "run as root (the tests need root for network namespaces too), e.g. sudo env \"PATH=\$PATH\" scripts/test.sh" >&2
    exit 2
  fi
  if ! command -v apt-get >/dev/null; then
    echo "scripts/test.sh: no apt-get here; install these Debian packages (or your system's equivalents): ${missing[*]}" >&2
    exit 2
  fi
  echo "scripts/test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # Only the missing ones: naming an installed package to apt-get install would upgrade it.
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: the network-namespace tests need root; run as root (e.g. sudo env \"PATH=\$PATH\" scripts/test.sh)" >&2
  exit 2
fi

exec cargo test --workspace --locked --no-fail-fast "$@"
