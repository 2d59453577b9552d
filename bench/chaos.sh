#!/usr/bin/env bash
# The long chaos run (issue 17): the same seeded fault schedule against vipd and against Keepalived 2.2 +
# HAProxy 2.6 in the namespace lab (examples/chaos.rs; needs root, keepalived, haproxy, nft), each history
# checked by vipd_lab::chaos::check, drawn as an SVG timeline, and summed up side by side in
# bench/RESULTS-chaos.md.
#   bench/chaos.sh --minutes 60 [--seed N]       (default 60 minutes per implementation, seed 17)
# Histories (JSON lines), reports and timelines go to bench/chaos/; the vipd timeline is bench/chaos-timeline.svg.
# Bounded: each driver is killed after 2 x minutes + 20 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=60
SEED=17
REPORT_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) MINUTES=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        # Write the results file from the histories already in bench/chaos/{vipd,pair}/ (runs made by hand).
        --report-only) REPORT_ONLY=1; shift ;;
        *) echo "usage: $0 [--minutes M] [--seed N] [--report-only]" >&2; exit 2 ;;
    esac
done
OUTDIR=bench/chaos
OUT=bench/RESULTS-chaos.md
REV=$(git describe --always --dirty)
LIMIT=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", (2 * m + 20) * 60 }')

# CHAOS_BIN: a chaos driver built already (skips the release build; fake-apiserver must sit next to it).
BIN=${CHAOS_BIN:-target/release/examples/chaos}
if [ -z "${CHAOS_BIN:-}" ]; then
    cargo build --release -q -p vipd -p vipd-lab --bins
    cargo build --release -q -p vipd --example chaos
fi
mkdir -p "$OUTDIR"
START=$(date +%s)
if [ "$REPORT_ONLY" = 0 ]; then
# The machine's load while the drivers run: the 1-minute load average every 30 s.
: > "$OUTDIR/load.txt"
( while :; do cut -d' ' -f1 /proc/loadavg >> "$OUTDIR/load.txt"; sleep 30; done ) &
LOADPID=$!
trap 'kill "$LOADPID" 2>/dev/null || true' EXIT
# Both implementations at once, each in its own lab (namespaces chsv-*, chsk-*): the same schedule under the
# same machine load. Then one check of both histories writes the side-by-side table.
PIDS=()
for imp in vipd pair; do
    mkdir -p "$OUTDIR/$imp"
    timeout -k 30 "$LIMIT" "$BIN" --minutes "$MINUTES" --seed "$SEED" --imp "$imp" \
        --out "$OUTDIR/$imp" --vipd target/release/vipd 2> "$OUTDIR/$imp/driver.log" &
    PIDS+=($!)
done
RC=0
for p in "${PIDS[@]}"; do wait "$p" || RC=$?; done
kill "$LOADPID" 2>/dev/null || true
[ "$RC" = 0 ] || { echo "a chaos driver failed (exit $RC); see $OUTDIR/*/driver.log" >&2; exit "$RC"; }
fi
END=$(date +%s)
mv "$OUTDIR"/vipd/vipd-"$SEED".* "$OUTDIR"/pair/keepalived-haproxy-"$SEED".* "$OUTDIR"/
"$BIN" --check "$OUTDIR/vipd-$SEED.jsonl" "$OUTDIR/keepalived-haproxy-$SEED.jsonl" \
    > "$OUTDIR/summary.md" 2> "$OUTDIR/violations.txt" || true
cp "$OUTDIR/vipd-$SEED.svg" bench/chaos-timeline.svg
cp "$OUTDIR/keepalived-haproxy-$SEED.svg" bench/chaos-timeline-keepalived.svg

{
    echo "# Chaos run: vipd vs Keepalived + HAProxy under the same seeded faults"
    echo
    if [ "$REPORT_ONLY" = 0 ]; then
        LOAD=$(awk '{ s += $1; if (NR == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 } END { if (NR) printf "%.1f / %.1f / %.1f", lo, s / NR, hi }' "$OUTDIR/load.txt")
        echo "**Written by \`bench/chaos.sh --minutes $MINUTES --seed $SEED\`: $MINUTES minutes of faults per implementation,"
        echo "seed $SEED, revision \`$REV\`,** $(date -u -d "@$START" +'%Y-%m-%d %H:%M')-$(date -u -d "@$END" +%H:%M) UTC"
        echo "($(( (END - START) / 60 )) min wall clock; both implementations ran at the same time, each in its own lab, release"
        echo "builds). Load: the 1-minute load average of the $(nproc)-core machine (shared with other builds and tests)"
        echo "was $LOAD (min / mean / max, sampled every 30 s) during the run."
    else
        echo "Histories recorded by \`examples/chaos --minutes $MINUTES --seed $SEED --imp {vipd,pair}\` (both at the same"
        echo "time, each in its own lab), report by \`bench/chaos.sh --report-only\`, revision \`$REV\`, $(date -u +%Y-%m-%d)."
    fi
    echo "The issue's hour-long figures: \`bench/chaos.sh --minutes 60 --seed $SEED\` (about 65 minutes); the seed fixes"
    echo "the schedule, so a run is replayed exactly."
    echo
    echo "Machine: $(nproc) cores, $(uname -r); $(keepalived --version 2>&1 | head -1); $(haproxy -v 2>&1 | head -1 | cut -d' ' -f1-3)."
    echo
    cat "$OUTDIR/summary.md"
    echo
    echo "Timelines (rows: VIP holders, the client's neighbour entry (red = names a node without the VIP),"
    echo "faults, failed requests): vipd ![vipd timeline](chaos-timeline.svg), Keepalived + HAProxy"
    echo "![keepalived timeline](chaos-timeline-keepalived.svg)."
    echo
    if [ -f bench/RESULTS-chaos.notes.md ]; then cat bench/RESULTS-chaos.notes.md; echo; fi
    echo "## Violations of the checker's invariants"
    echo
    echo "The bounds are in \`lab/src/chaos/check.rs\` (RFC timers of each fault kind plus 2.5 s of slack); the first"
    echo "20 per implementation:"
    echo
    for f in "$OUTDIR"/*-"$SEED".json; do
        echo "- $(basename "$f" .json): $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(len(r["violations"]), "violation(s)"); [print("  -", v) for v in r["violations"][:20]]' "$f")"
    done
} > "$OUT"
echo "wrote $OUT"
