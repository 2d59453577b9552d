#!/usr/bin/env bash
# Checks systemd/vipd.service and systemd/vipd.sysusers offline, as CI does:
#  - `systemd-analyze verify` on the unmodified unit inside a scratch root (verify insists that ExecStart's
#    binary exists, and /usr/local/bin/vipd is not installed on a build machine), failing on ANY message,
#    because verify exits 0 on warnings such as an unknown or misspelled directive;
#  - `systemd-analyze security --offline` so the hardening cannot silently regress past MAX_EXPOSURE;
#  - `systemd-sysusers --root` creates the vipd user the unit runs as.
# Usage: systemd/check.sh [path/to/vipd]   (default: target/release/vipd, then target/debug/vipd)
# Needs: systemd >= 250 (Debian package `systemd`); no running systemd, no root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
unit="$here/vipd.service"
sysusers="$here/vipd.sysusers"
# Exposure is reported 0.0..10.0; --threshold takes it times ten. Today the unit scores 1.8.
max_exposure=${MAX_EXPOSURE:-20}

bin=${1:-}
if [[ -z $bin ]]; then
    for c in "$repo/target/release/vipd" "$repo/target/debug/vipd"; do
        if [[ -x $c ]]; then bin=$c; break; fi
    done
fi
if [[ -z $bin || ! -x $bin ]]; then
    echo "check.sh: no vipd binary; run 'cargo build -p vipd' or pass its path" >&2
    exit 2
fi
for tool in systemd-analyze systemd-sysusers; do
    command -v "$tool" >/dev/null || { echo "check.sh: $tool missing (apt-get install systemd)" >&2; exit 2; }
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# A minimal merged-/usr root: the stock units (sysinit.target etc. that the default dependencies name),
# the two binaries the unit executes, and the unit itself.
mkdir -p "$root/usr/local/bin" "$root/usr/bin" "$root/usr/lib/systemd" "$root/usr/lib/sysusers.d" \
    "$root/etc/systemd/system"
ln -s usr/bin "$root/bin"
ln -s usr/lib "$root/lib"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
install -m 0755 "$bin" "$root/usr/local/bin/vipd"
install -m 0755 /bin/kill "$root/usr/bin/kill"
install -m 0644 "$unit" "$root/etc/systemd/system/vipd.service"
install -m 0644 "$sysusers" "$root/usr/lib/sysusers.d/vipd.conf"

fail=0

out=$(systemd-analyze verify --man=no --root="$root" vipd.service 2>&1) || fail=1
if [[ -n $out ]]; then
    echo "$out" >&2
    fail=1
fi
[[ $fail == 0 ]] && echo "ok: systemd-analyze verify vipd.service: no messages"

if ! sec=$(systemd-analyze security --offline=true --root="$root" --threshold="$max_exposure" \
    vipd.service 2>&1); then
    echo "$sec" >&2
    echo "FAIL: exposure above $max_exposure/10" >&2
    fail=1
else
    echo "ok: $(echo "$sec" | grep -F 'Overall exposure level')"
fi

if ! out=$(systemd-sysusers --root="$root" 2>&1); then
    echo "$out" >&2
    fail=1
elif ! grep -q '^vipd:' "$root/etc/passwd" || ! grep -q '^vipd:' "$root/etc/group"; then
    echo "FAIL: vipd.sysusers did not create user and group vipd" >&2
    fail=1
else
    echo "ok: systemd-sysusers creates user vipd"
fi

user=$(sed -n 's/^User=//p' "$unit")
if [[ $user != vipd ]]; then
    echo "FAIL: unit runs as '$user', vipd.sysusers creates 'vipd'" >&2
    fail=1
fi

if [[ $fail != 0 ]]; then
    echo "FAIL: $unit" >&2
    exit 1
fi
echo "ok: $unit"
