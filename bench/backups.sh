#!/usr/bin/env bash
# Backup and restore benchmarks, each beside a baseline in the same run
# (loopback only):
#  1. Incremental backup: a 1 GiB random volume is backed up to LocalStack
#     S3, 10% of its extents are rewritten with random data, and it is
#     backed up again: bytes the second backup uploaded ÷ bytes changed
#     (the least any incremental backup must send).
#  2. Restore to first byte: a 10 GiB random volume backed up to a local
#     directory is restored on a fresh node (empty data directory); the time
#     from `tierd volume restore` to the first 4 KiB read served, beside the
#     time a copy-based restore needs before it could serve anything: reading
#     all 10 GiB of objects with 8 parallel readers.
#  3. Restored sequential read: the volume of (1), restored on a fresh node,
#     read end to end with nbdcopy (every byte fetched from S3), ÷ a plain
#     boto3 client doing parallel GETs (8) of the same bytes; both discard
#     what they read, median of RUNS (default 3) alternating runs; one more
#     read to a file is checked against the source.
# Prints a Markdown table (also bench/out/backups.md).
# Usage: bench/backups.sh [SIZE_MiB] [BIG_GiB]   TIERD_BIN=path to use a build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TIERD_S3_ENDPOINT:-}" ]; then
  scripts/deps.sh
  localstack/install.sh
  if [ -z "${TIERD_BIN:-}" ]; then cargo build --release -p tiering --bin tierd >&2; fi
  exec localstack/with-emulators.sh "$0" "$@"
fi
SIZE_MIB=${1:-1024}
BIG_GIB=${2:-10}
W=bench/out/backups
rm -rf "$W"; mkdir -p "$W"
TIERD=${TIERD_BIN:-target/release/tierd}
PY=$TIERD_EMU_PYTHON
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
. bench/cold_read.sh
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT

# node NAME BACKEND_TOML -> starts a daemon with its own data directory;
# sets NBD_<NAME> and API_<NAME>.
node() {
  local name=$1 backend=$2 np hp
  np=$(free_port); hp=$(free_port)
  cat > "$W/$name.toml" <<TOML
[server]
data_dir = "$W/$name"
nbd_listen = "127.0.0.1:$np"
http_listen = "127.0.0.1:$hp"
[tiering]
scan_interval = "1h"
$backend
[classes.keep]
tiering_policy = "none"
retrieval_policy = "never"
backend = "store"
TOML
  eval "NBD_$name=$np; API_$name=http://127.0.0.1:$hp"
  start "$name"
}
# start NAME -> (re)starts node NAME's daemon from its configuration file
# (same ports) and waits until it is ready.
start() {
  local name=$1 api
  api=$(eval echo "\$API_$name")
  TIERD_LOG=warn "$TIERD" serve --config "$W/$name.toml" 2>>"$W/$name.log" & pids+=($!)
  for _ in $(seq 200); do curl -sf "$api/readyz" >/dev/null && break; sleep 0.05; done
}
S3="[backends.store]
kind = \"s3\"
bucket = \"tierd-backups\"
endpoint = \"$TIERD_S3_ENDPOINT\"
path_style = true
access_key_id = \"test\"
secret_access_key = \"test\"
create_bucket = true"
FS="[backends.store]
kind = \"fs\"
root = \"$W/objects\""

# --- 1. incremental backup ------------------------------------------------
node a "$S3"
export TIERD_ENDPOINT=$API_a
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$W/src.raw"
"$TIERD" volume create v --size "${SIZE_MIB}MiB" --class keep >/dev/null
nbdcopy "$W/src.raw" "nbd://127.0.0.1:$NBD_a/v"
"$TIERD" backup create v --json > "$W/b1.json"
EXTENTS=$((SIZE_MIB / 4)); CHANGED_EXTENTS=$((EXTENTS / 10))
head -c $((4 << 20)) /dev/urandom > "$W/chunk.raw"
for e in $(shuf -i 0-$((EXTENTS - 1)) -n "$CHANGED_EXTENTS"); do
  head -c $((4 << 20)) /dev/urandom > "$W/chunk.raw"
  qemu-io -f raw -c "write -s $W/chunk.raw $((e << 22)) 4M" "nbd://127.0.0.1:$NBD_a/v" >/dev/null
  dd if="$W/chunk.raw" of="$W/src.raw" bs=4M seek="$e" conv=notrunc status=none
done
"$TIERD" backup create v --json > "$W/b2.json"
UPLOADED=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_uploaded"])' "$W/b2.json")
CHANGED=$((CHANGED_EXTENTS << 22))
INC=$(ratio "$UPLOADED" "$CHANGED")
echo "incremental: uploaded $UPLOADED for $CHANGED changed: $INC" >&2

# --- 3. restored sequential read (node b restores v from S3) --------------
# Like for like, median of RUNS (bench/cold_read.sh).
RUNS=${RUNS:-3}
node b "$S3"
TIERD_ENDPOINT=$API_b "$TIERD" volume restore --backend store --volume v >/dev/null
"$PY" bench/plain_s3.py put "$W/src.raw" 8 >/dev/null
# The same configuration file, so the same ports: the URI stays valid.
restart_b() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; start b; DAEMON_PID=${pids[-1]}; }
cold_read_vs_plain restart_b "nbd://127.0.0.1:$NBD_b/v" "$W/src.raw" "$SIZE_MIB" "$RUNS"
echo "restored sequential read ${READS[*]} MiB/s (median $READ), to a file $TOFILE (verified); plain GET ${GETS[*]} (median $GET); run by run median $PAIRED; CPU s/GiB: $CPU" >&2
rm -f "$W/src.raw" "$W/chunk.raw"

# --- 2. restore to first byte of a 10 GiB volume (fs backend) -------------
node c "$FS"
TIERD_ENDPOINT=$API_c "$TIERD" volume create big --size "${BIG_GIB}GiB" --class keep >/dev/null
head -c "$((BIG_GIB << 30))" /dev/urandom | nbdcopy - "nbd://127.0.0.1:$NBD_c/big"
TIERD_ENDPOINT=$API_c "$TIERD" backup create big >/dev/null
TIERD_ENDPOINT=$API_c "$TIERD" volume delete big >/dev/null
node d "$FS"
t0=$(now)
TIERD_ENDPOINT=$API_d "$TIERD" volume restore --backend store --volume big >/dev/null
t1=$(now)
qemu-io -f raw -r -c "read 0 4k" "nbd://127.0.0.1:$NBD_d/big" >/dev/null
t2=$(now)
TTFB=$(awk -v a="$t0" -v b="$t2" 'BEGIN {printf "%.2f", b-a}')
RESTORE=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b-a}')
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now)
find "$W/objects/data" -type f -print0 | xargs -0 -P 8 -n 64 cat > /dev/null
t1=$(now)
COPY=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b-a}')
echo "restore to first byte ${TTFB} s (restore ${RESTORE} s); reading every object ${COPY} s" >&2

{
  echo "| figure | tierd | baseline | ratio |"
  echo "|---|---:|---:|---:|"
  echo "| incremental backup of ${SIZE_MIB} MiB, 10% of extents rewritten: bytes uploaded | $UPLOADED | $CHANGED (bytes changed) | $INC |"
  echo "| restore of a ${BIG_GIB} GiB volume to its first 4 KiB read served (s) | $TTFB (restore $RESTORE) | $COPY (read all objects, 8 parallel: a copy-based restore's minimum) | $(ratio "$TTFB" "$COPY") |"
  echo "| sequential read of the restored ${SIZE_MIB} MiB volume, nbdcopy to null: (MiB/s, median of $RUNS) | $READ | $GET (boto3 parallel GET, 8, bodies dropped) | $(ratio "$READ" "$GET") |"
  echo "| the same read, median of each run's ratio | | | $PAIRED |"
  echo "| the same read to a file, checked (MiB/s, one run) | $TOFILE | $GET | $(ratio "$TOFILE" "$GET") |"
  echo
  echo "CPU seconds per GiB read (medians): $CPU."
  echo
  echo "LocalStack S3 (1, 3) and a local directory (2) on loopback, $(nproc) cores, $(date -u +%Y-%m-%d)."
} | tee bench/out/backups.md
