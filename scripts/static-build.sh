#!/usr/bin/env bash
# Builds vipd as one statically linked executable (glibc, +crt-static, static-pie) for a FROM-scratch
# container image or for copying onto a node, and proves it: `file` and `ldd` must both say static, and
# `vipd --version` must run, also inside an empty chroot (as root) where no shared library could be found.
# Usage: scripts/static-build.sh        -> target/x86_64-unknown-linux-gnu/release/vipd
# Needs: the glibc static archives (Debian: libc6-dev), file, ldd. See docs/static-build.md.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
# --target keeps RUSTFLAGS off build scripts and proc macros, which must stay dynamic host binaries.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p vipd
bin="target/$target/release/vipd"

fail() { echo "static-build: FAIL: $*" >&2; exit 1; }

desc=$(file -b "$bin")
echo "file: $desc"
case $desc in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) fail "$bin is not static: $desc" ;;
esac
[[ $desc == *"dynamically linked"* ]] && fail "$bin is dynamically linked"
# ldd exits 1 on a static executable; its message is what matters.
ldd_out=$(ldd "$bin" 2>&1 || true)
echo "ldd: $ldd_out"
case $ldd_out in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) fail "ldd lists shared libraries: $ldd_out" ;;
esac
if readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
    fail "$bin has NEEDED entries: $(readelf -d "$bin" | grep NEEDED)"
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out=$("$bin" --version)
echo "run: $out"
[[ $out == "vipd $version"* ]] || fail "'vipd --version' printed '$out', expected 'vipd $version'"

# What a FROM-scratch image gives it: nothing but the binary.
if [[ $(id -u) == 0 ]]; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    cp "$bin" "$root/vipd"
    out=$(chroot "$root" /vipd --version) || fail "vipd does not run in an empty root"
    [[ $out == "vipd $version"* ]] || fail "in an empty root 'vipd --version' printed '$out'"
    echo "run in an empty root: $out"
else
    echo "not root: skipped the empty-root run"
fi

echo "ok: $bin ($(du -h "$bin" | cut -f1)) is static and runs"
