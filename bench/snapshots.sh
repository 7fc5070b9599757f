#!/usr/bin/env bash
# Snapshot benchmarks, each beside a baseline in the same run (loopback only):
#  1. Snapshot create on a 1 TiB sparse volume of 4 MiB extents (262,144
#     extents): the time of `tierd snapshot create`, and the p99 of 4 KiB
#     random reads (fio nbd engine, QD1) while snapshots are taken, beside the
#     same reads with no snapshot taken.
#  2. 4 KiB random writes (fio nbd engine, QD16) on a volume just snapshotted,
#     divided by the same on a twin volume with no snapshot: the first pass
#     over the data (each block written once, random order) and the steady
#     state (a second pass).
#  3. Space: a volume with 24 hourly snapshots, 5% of its blocks rewritten
#     each hour: local plus remote bytes ÷ (volume + bytes rewritten).
# Prints a Markdown table (also bench/out/snapshots.md).
# Usage: bench/snapshots.sh [SIZE_MiB] [RUNS]   TIERD_BIN=path to use a build.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
OUT=bench/out/snapshots
rm -rf "$OUT"; mkdir -p "$OUT"

scripts/deps.sh
if [ -z "${TIERD_BIN:-}" ]; then cargo build --release -p tiering --bin tierd >&2; fi
TIERD=${TIERD_BIN:-target/release/tierd}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

NP=$(free_port); HP=$(free_port)
cat > "$OUT/tierd.toml" <<TOML
[server]
data_dir = "$OUT/data"
nbd_listen = "127.0.0.1:$NP"
http_listen = "127.0.0.1:$HP"
[backends.local]
kind = "fs"
root = "$OUT/objects"
[classes.default]
tiering_policy = "none"
TOML
TIERD_LOG=warn "$TIERD" serve --config "$OUT/tierd.toml" 2> "$OUT/log" & pids+=($!)
wait_port "$HP"
export TIERD_ENDPOINT="http://127.0.0.1:$HP"
uri() { echo "nbd://127.0.0.1:$NP/$1"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
now() { date +%s.%N; }

# --- 1. snapshot create on 1 TiB, and read latency during it -------------
"$TIERD" volume create big --size 1TiB >/dev/null
# Some data to read: the first 256 MiB.
head -c $((256 << 20)) /dev/urandom > "$OUT/head.raw"
nbdcopy "$OUT/head.raw" "$(uri big)"
fio_p99() { # uri seconds -> p99 read latency in microseconds
  fio --name=lat --ioengine=nbd --uri="$1" --rw=randread --bs=4k --iodepth=1 \
      --size=256M --runtime="$2" --time_based --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; s=sys.stdin.read(); j=json.loads(s[s.index("{"):]); print(round(j["jobs"][0]["read"]["clat_ns"]["percentile"]["99.000000"]/1000,1))'
}
CREATE=(); P99_BASE=(); P99_SNAP=()
for r in $(seq "$RUNS"); do
  P99_BASE+=("$(fio_p99 "$(uri big)" 8)")
  # The same reads while a snapshot is taken every second.
  (
    for i in $(seq 8); do
      t0=$(now); "$TIERD" snapshot create big "r$r-$i" >/dev/null; t1=$(now)
      echo "$t0 $t1" | awk '{printf "%.1f\n", ($2-$1)*1000}' >> "$OUT/create_ms"
      sleep 0.8
    done
  ) &
  P99_SNAP+=("$(fio_p99 "$(uri big)" 8)")
  wait $!
  for i in $(seq 8); do "$TIERD" snapshot delete big "r$r-$i" >/dev/null; done
  echo "   run $r: p99 $(tail -c 100 <<<"${P99_BASE[*]}") / $(tail -c 100 <<<"${P99_SNAP[*]}") us" >&2
done
CREATE_MS=$(median < "$OUT/create_ms")
CREATE_MAX=$(sort -g "$OUT/create_ms" | tail -1)
P99B=$(printf '%s\n' "${P99_BASE[@]}" | median)
P99S=$(printf '%s\n' "${P99_SNAP[@]}" | median)
"$TIERD" volume delete big >/dev/null

# --- 2. random writes after a snapshot, against a twin without ----------
head -c $((SIZE_MIB << 20)) /dev/urandom > "$OUT/src.raw"
fio_w() { # uri -> IOPS of one pass of 4 KiB random writes over the volume
  fio --name=rw --ioengine=nbd --uri="$1" --rw=randwrite --bs=4k --iodepth=16 \
      --size="${SIZE_MIB}M" --io_size="${SIZE_MIB}M" --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; s=sys.stdin.read(); print(round(json.loads(s[s.index("{"):])["jobs"][0]["write"]["iops"]))'
}
declare -a F_SNAP F_BASE S_SNAP S_BASE
for r in $(seq "$RUNS"); do
  for v in "base$r" "snap$r"; do
    "$TIERD" volume create "$v" --size "${SIZE_MIB}MiB" >/dev/null
    nbdcopy "$OUT/src.raw" "$(uri "$v")"
  done
  "$TIERD" snapshot create "snap$r" s >/dev/null
  F_BASE+=("$(fio_w "$(uri "base$r")")"); F_SNAP+=("$(fio_w "$(uri "snap$r")")")
  S_BASE+=("$(fio_w "$(uri "base$r")")"); S_SNAP+=("$(fio_w "$(uri "snap$r")")")
  echo "   run $r: first pass ${F_SNAP[-1]} vs ${F_BASE[-1]} IOPS, steady ${S_SNAP[-1]} vs ${S_BASE[-1]}" >&2
  # The snapshot still reads the data it was taken of.
  cmp <(nbdcopy "$(uri "snap$r@s")" -) "$OUT/src.raw" >/dev/null || { echo "snapshot snap$r@s differs" >&2; exit 1; }
  "$TIERD" volume delete "base$r" >/dev/null; "$TIERD" volume delete "snap$r" >/dev/null
done
FB=$(printf '%s\n' "${F_BASE[@]}" | median); FS=$(printf '%s\n' "${F_SNAP[@]}" | median)
SB=$(printf '%s\n' "${S_BASE[@]}" | median); SS=$(printf '%s\n' "${S_SNAP[@]}" | median)

# --- 3. space after 24 hourly snapshots, 5% rewritten each hour --------
"$TIERD" volume create hourly --size "${SIZE_MIB}MiB" >/dev/null
nbdcopy "$OUT/src.raw" "$(uri hourly)"
CHUNK=$(( (SIZE_MIB << 20) / 20 ))
for h in $(seq 24); do
  "$TIERD" snapshot create hourly "h$h" >/dev/null
  fio --name=hour --ioengine=nbd --uri="$(uri hourly)" --rw=randwrite --bs=4k --iodepth=16 \
      --size="${SIZE_MIB}M" --io_size="$CHUNK" --randseed="$h" --output-format=json >/dev/null 2>&1
done
# A clean stop flushes everything; then count what is on disk and in the bucket.
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()
LOCAL=$(du -B1 -s "$OUT/data/volumes" | cut -f1)
REMOTE=$( [ -d "$OUT/objects" ] && du -B1 -s "$OUT/objects" | cut -f1 || echo 0)
META=$(du -B1 -s "$OUT/data/db" | cut -f1)
WANT=$(( (SIZE_MIB << 20) + 24 * CHUNK ))
SPACE=$(ratio $((LOCAL + REMOTE)) "$WANT")

{
  echo "| measure | with snapshots | baseline (same run, no snapshot) | ratio | target |"
  echo "|---|---:|---:|---:|---|"
  echo "| snapshot create on 1 TiB (262,144 extents), ms (median; max ${CREATE_MAX}) | ${CREATE_MS} | - | - | metadata only |"
  echo "| 4K random read QD1 p99 while snapshotting every second, µs | ${P99S} | ${P99B} | $(ratio "$P99S" "$P99B") | - |"
  echo "| 4K random write QD16, first pass over the data, IOPS | ${FS} | ${FB} | $(ratio "$FS" "$FB") | ≥ 0.5 |"
  echo "| 4K random write QD16, steady state (second pass), IOPS | ${SS} | ${SB} | $(ratio "$SS" "$SB") | ≥ 0.95 |"
  echo "| space after 24 hourly snapshots, 5% rewritten each hour: (local + remote) ÷ (volume + rewritten) | $((LOCAL + REMOTE)) B | ${WANT} B | ${SPACE} | ≤ 1.1 |"
  echo
  echo "Volume ${SIZE_MIB} MiB of random data; median of ${RUNS} runs; metadata (RocksDB) ${META} B besides; $(nproc) cores; $(date -u +%Y-%m-%d)."
} | tee "$OUT/../snapshots.md"
