#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets: the NBD handshake and request
# header, the frame codec, the configuration loader, the trace readers) for
# a bounded time each, with cargo-fuzz on the stable toolchain (no
# sanitizer: Rust's own checks catch panics, overflows and bad slices).
# New interesting inputs land in fuzz/corpus/<target>/ (commit them: the
# replay test in scripts/test.sh runs every one); a crash stops the run and
# leaves its input in fuzz/artifacts/<target>/.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 1800, all)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-1800}
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then TARGETS=(nbd codec config trace); fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -s none -O
for t in "${TARGETS[@]}"; do
  echo "fuzz: $t for ${SECS}s" >&2
  cargo fuzz run "$t" -s none -O "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=4096 -timeout=10 2>&1 |
    tee "/tmp/fuzz-$t.log" | grep -E "^#[0-9]+.*(DONE|pulse)|^Done|SUMMARY|panicked" || true
  tail -3 "/tmp/fuzz-$t.log" >&2
done
