#!/usr/bin/env bash
# Tiering data path against LocalStack S3, each figure beside a plain boto3
# client doing the same work in the same run:
#   - tiering a 1 GiB random volume        vs  parallel PUTs of the same 4 MiB chunks
#   - sequential nbdcopy of the tiered volume (cold, nothing cached)
#                                           vs  parallel GETs of the same objects
#   - 4 KiB random reads of cold data, QD1  vs  plain 4 KiB ranged GETs (p50, p99)
#   - the daemon's RSS while serving a 1 TiB sparse volume (262,144 extents)
# Usage: bench/tiering.sh [SIZE_MiB]
# TIERD_BIN=path measures that tierd build instead of the fresh release build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TIERD_S3_ENDPOINT:-}" ]; then
  scripts/deps.sh
  localstack/install.sh
  cargo build --release -p tiering --bin tierd >&2
  exec localstack/with-emulators.sh "$0" "$@"
fi
SIZE_MIB=${1:-1024}
OUT=bench/out; mkdir -p "$OUT"; rm -rf "$OUT/tiering"; mkdir -p "$OUT/tiering"
W="$OUT/tiering"
TIERD=${TIERD_BIN:-target/release/tierd}
PY=$TIERD_EMU_PYTHON
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NP=$(free_port); HP=$(free_port)
export TIERD_ENDPOINT=http://127.0.0.1:$HP
cat > "$W/tierd.toml" <<TOML
[server]
data_dir = "$W/data"
nbd_listen = "127.0.0.1:$NP"
http_listen = "127.0.0.1:$HP"
[tiering]
scan_interval = "1h"
[backends.s3]
kind = "s3"
bucket = "tierd-bench"
endpoint = "$TIERD_S3_ENDPOINT"
path_style = true
access_key_id = "test"
secret_access_key = "test"
create_bucket = true
[classes.cold]
tiering_policy = "all"
retrieval_policy = "never"
backend = "s3"
max_concurrent_uploads = 8
TOML
pid=""
start() { TIERD_LOG=warn "$TIERD" serve --config "$W/tierd.toml" 2>>"$W/log" & pid=$!; for _ in $(seq 200); do curl -sf "$TIERD_ENDPOINT/readyz" >/dev/null && return; sleep 0.05; done; echo "tierd did not start" >&2; exit 1; }
stop() { kill "$pid"; wait "$pid" || true; }
trap 'kill $pid 2>/dev/null || true' EXIT
. bench/cold_read.sh

head -c "$((SIZE_MIB << 20))" /dev/urandom > "$W/src.raw"
start
"$TIERD" volume create v --size "${SIZE_MIB}MiB" --class cold >/dev/null
nbdcopy "$W/src.raw" "nbd://127.0.0.1:$NP/v"
t0=$(now); "$TIERD" tier v --wait >&2; t1=$(now)
TIER=$(awk -v s="$SIZE_MIB" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", s/(b-a)}')
PUT=$("$PY" bench/plain_s3.py put "$W/src.raw" 8)
echo "tier ${TIER} MiB/s, plain PUT ${PUT} MiB/s" >&2

# Cold sequential read, like for like, median of RUNS (bench/cold_read.sh).
RUNS=${RUNS:-3}
restart() { stop; start; DAEMON_PID=$pid; }
cold_read_vs_plain restart "nbd://127.0.0.1:$NP/v" "$W/src.raw" "$SIZE_MIB" "$RUNS"
echo "cold read ${READS[*]} MiB/s (median $READ), to a file $TOFILE (verified); plain GET ${GETS[*]} (median $GET); run by run median $PAIRED; CPU s/GiB: $CPU" >&2

stop; start
LAT=$(fio --name=cold --ioengine=nbd --uri="nbd://127.0.0.1:$NP/v" --rw=randread --bs=4k --iodepth=1 \
      --size="${SIZE_MIB}M" --number_ios=300 --randrepeat=0 --output-format=json 2>/dev/null |
  python3 -c 'import json,sys; s=sys.stdin.read(); p=json.loads(s[s.index("{"):])["jobs"][0]["read"]["clat_ns"]["percentile"]; print("%.2f %.2f" % (p["50.000000"]/1e6, p["99.000000"]/1e6))')
PLAIN=$("$PY" bench/plain_s3.py ranged 300)
read -r P50 P99 <<<"$LAT"; read -r Q50 Q99 <<<"$PLAIN"
echo "cold 4K p50 ${P50} ms p99 ${P99} ms; plain ranged GET p50 ${Q50} ms p99 ${Q99} ms" >&2

# 1 TiB sparse volume: RSS after creating it, and after I/O at both ends.
"$TIERD" volume create huge --size 1TiB --class cold >/dev/null
qemu-io -f raw -c 'write -P 7 0 4M' -c 'write -P 8 1099507433472 4M' -c 'read -P 8 1099507433472 4M' "nbd://127.0.0.1:$NP/huge" >/dev/null
RSS=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$pid/status)
stop
{
  echo "| figure | tierd | plain boto3 | ratio (tierd ÷ plain) |"
  echo "|---|---:|---:|---:|"
  echo "| tier ${SIZE_MIB} MiB to S3 (MiB/s) | $TIER | $PUT (parallel PUT, 8) | $(ratio "$TIER" "$PUT") |"
  echo "| sequential read of the tiered volume, nbdcopy to null: (MiB/s, median of $RUNS) | $READ | $GET (parallel GET, 8, bodies dropped) | $(ratio "$READ" "$GET") |"
  echo "| the same read, median of each run's ratio | | | $PAIRED |"
  echo "| the same read to a file, checked (MiB/s, one run) | $TOFILE | $GET | $(ratio "$TOFILE" "$GET") |"
  echo "| cold 4 KiB random read p50 (ms) | $P50 | $Q50 (ranged GET) | $(ratio "$P50" "$Q50") |"
  echo "| cold 4 KiB random read p99 (ms) | $P99 | $Q99 (ranged GET) | $(ratio "$P99" "$Q99") |"
  echo
  echo "CPU seconds per GiB of the cold sequential read (medians): $CPU."
  echo
  echo "Peak RSS of the daemon after also serving a 1 TiB sparse volume (262,144 extents) with I/O at both ends: ${RSS} MiB."
  echo
  echo "LocalStack S3 on loopback, $(nproc) cores, $(date -u +%Y-%m-%d). Throughput and latency ratios: higher is better for MiB/s, lower is better for ms."
} | tee "$OUT/tiering.md"
