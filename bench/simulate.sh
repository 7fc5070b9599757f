#!/usr/bin/env bash
# Replay speed of `tierd simulate` on a 10-million-event synthetic trace
# (MSR/SNIA CSV, 64 GiB disk over 30 days; tiering/examples/gen_trace.rs),
# with peak memory. Baseline in the same run: `wc -l` over the same file,
# the cost of just reading its bytes. Results go to bench/out/simulate.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-10000000}
OUT=bench/out
mkdir -p "$OUT"
TRACE=${TRACE_DIR:-/tmp}/tierd-bench-trace.csv
cargo build --release -p tiering --bin tierd --example gen_trace
[ -s "$TRACE" ] && [ "$(wc -l < "$TRACE")" = "$EVENTS" ] || target/release/examples/gen_trace "$EVENTS" "$TRACE"
ls -l "$TRACE"
secs() { /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1; }
# Warm the page cache so every run reads the file from memory.
cat "$TRACE" >/dev/null
{
  echo "events: $EVENTS  file: $(du -h "$TRACE" | cut -f1)"
  read -r wc_s wc_kb < <(secs wc -l "$TRACE")
  echo "baseline wc -l: ${wc_s}s  peak RSS ${wc_kb} KiB"
  for classes in "--class auto" "--class auto --class auto:7d/on-read --class all"; do
    # shellcheck disable=SC2086
    read -r s kb < <(secs target/release/tierd simulate --trace "$TRACE" $classes --scan-interval 10m)
    n=$(echo "$classes" | grep -o -- --class | wc -l)
    awk -v e="$EVENTS" -v s="$s" -v w="$wc_s" -v kb="$kb" -v n="$n" 'BEGIN {
      printf "simulate, %d policies + optimum: %.2fs  %.2f M events/s  %.1fx the wc -l time  peak RSS %.0f MiB\n",
        n, s, e / s / 1e6, s / w, kb / 1024 }'
  done
} | tee "$OUT/simulate.txt"
