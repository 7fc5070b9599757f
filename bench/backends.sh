#!/usr/bin/env bash
# Object-store throughput: PUT and GET of 4 MiB objects at concurrency 1, 8 and
# 32 against LocalStack S3 and Azurite, through tierd's backend stack and
# through the plain client (boto3, azure-storage-blob) in the same run.
# Usage: bench/backends.sh [OBJECTS] [RUNS]   (inside or outside the emulators)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TIERD_S3_ENDPOINT:-}" ]; then
  scripts/deps.sh
  localstack/install.sh
  cargo build --release -p backends --example throughput >&2
  # The emulators' data on tmpfs when there is one: disk writeback of the
  # GBs written would land on whichever client happens to run then.
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
  exec localstack/with-emulators.sh "$0" "$@"
fi
N=${1:-48}
RUNS=${2:-5}
SIZE=$((4 << 20))
OUT=bench/out
mkdir -p "$OUT"
TP=target/release/examples/throughput
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
# Every client run meets an empty Azurite: it keeps deleted blobs' data, and a
# growing store slows later runs down. (LocalStack frees deleted objects.)
fresh() { if [ "$1" = azure ]; then localstack/azurite.sh reset >/dev/null 2>&1; fi; }
{
  echo "| backend | concurrency | tierd PUT MiB/s | plain PUT MiB/s | PUT ratio | tierd GET MiB/s | plain GET MiB/s | GET ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  # azure-md5: the same tierd runs against a plain client that also sends a
  # Content-MD5 for Azurite to verify (tierd always does).
  for variant in ${KINDS:-s3 azure azure-md5}; do
    kind=${variant%-md5}
    md5=$([ "$variant" = azure-md5 ] && echo 1 || echo 0)
    plain=$(case $variant in s3) echo boto3;; azure) echo azure-storage-blob;; *) echo "azure-storage-blob + Content-MD5";; esac)
    for c in 1 8 32; do
      tp=(); tg=(); pp=(); pg=()
      for _ in $(seq "$RUNS"); do
        fresh "$kind"; r=$("$TP" "$kind" "$c" "$N" "$SIZE"); tp+=("$(field put_mib_s <<<"$r")"); tg+=("$(field get_mib_s <<<"$r")")
        fresh "$kind"; r=$(PLAIN_MD5=$md5 "$TIERD_EMU_PYTHON" bench/plain_clients.py "$kind" "$c" "$N" "$SIZE"); pp+=("$(field put_mib_s <<<"$r")"); pg+=("$(field get_mib_s <<<"$r")")
      done
      TPm=$(printf '%s\n' "${tp[@]}" | median); TGm=$(printf '%s\n' "${tg[@]}" | median)
      PPm=$(printf '%s\n' "${pp[@]}" | median); PGm=$(printf '%s\n' "${pg[@]}" | median)
      echo "| $kind (vs $plain) | $c | $TPm | $PPm | $(ratio "$TPm" "$PPm") | $TGm | $PGm | $(ratio "$TGm" "$PGm") |"
    done
  done
  echo
  echo "$N objects of 4 MiB per run, median of $RUNS runs, alternating tierd and plain client, each Azure run on a freshly reset Azurite; emulator data in ${TMPDIR:-/tmp}; $(nproc) cores; $(date -u +%Y-%m-%d)."
} | tee "$OUT/backends.md"
