#!/usr/bin/env bash
# NBD data-path benchmark: the same random-data raw image served by
#   qemu-nbd -f raw -t -e 8   (baseline named by the issue),
#   nbdkit file plugin        (the faster server to beat),
#   tierd with heat tracking on, and off,
# all on loopback in one run. Measures sequential 1 GiB write and read with
# nbdcopy and 4 KiB random reads at queue depth 16 with fio's nbd engine, then
# prints a Markdown table of throughputs and ratios (also written to
# bench/out/nbd.md). Usage: bench/nbd.sh [SIZE_MiB] [FIO_SECONDS] [RUNS]
# TIERD_BIN=path serves this tierd instead of the fresh release build;
# TIERD_BEFORE=path adds an earlier tierd build (heat on) as one more server,
# so a change is measured against the build before it in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
FIO_SECS=${2:-10}
RUNS=${3:-5}
OUT=bench/out
mkdir -p "$OUT"
rm -rf "$OUT"/tierd-* "$OUT"/*.raw

scripts/deps.sh
cargo build --release -p tiering --bin tierd >&2
TIERD=${TIERD_BIN:-target/release/tierd}
BEFORE=${TIERD_BEFORE:-}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "creating ${SIZE_MIB} MiB random image" >&2
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$OUT/src.raw"
cp "$OUT/src.raw" "$OUT/qemu.raw"
cp "$OUT/src.raw" "$OUT/nbdkit.raw"

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

declare -A URI
p=$(free_port)
qemu-nbd -f raw -t -e 8 -x vol --bind 127.0.0.1 -p "$p" "$OUT/qemu.raw" & pids+=($!)
wait_port "$p"; URI[qemu-nbd]="nbd://127.0.0.1:$p/vol"
p=$(free_port)
nbdkit -f -i 127.0.0.1 -p "$p" -e vol file "$OUT/nbdkit.raw" & pids+=($!)
wait_port "$p"; URI[nbdkit]="nbd://127.0.0.1:$p/vol"

start_tierd() { # name heat_enabled [binary]
  local dir="$OUT/tierd-$1" np hp bin=${3:-$TIERD}
  np=$(free_port); hp=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/tierd.toml" <<TOML
[server]
data_dir = "$dir/data"
nbd_listen = "127.0.0.1:$np"
http_listen = "127.0.0.1:$hp"
[heat]
enabled = $2
TOML
  TIERD_LOG=warn "$bin" serve --config "$dir/tierd.toml" 2> "$dir/log" & pids+=($!)
  wait_port "$hp"
  "$bin" volume create vol --size "${SIZE_MIB}MiB" --endpoint "http://127.0.0.1:$hp" >/dev/null
  URI[$1]="nbd://127.0.0.1:$np/vol"
}
start_tierd tierd-heat true
start_tierd tierd-noheat false

SERVERS=(qemu-nbd nbdkit tierd-heat tierd-noheat)
if [ -n "$BEFORE" ]; then
  start_tierd tierd-before true "$BEFORE"
  SERVERS+=(tierd-before)
fi
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t0 $t1" | awk -v mib="$SIZE_MIB" '{printf "%.1f\n", mib/($2-$1)}'; }

# Runs are interleaved (run 1 of every server, then run 2, ...), so that a
# drift of the machine over the minutes of the benchmark lands on all servers
# alike instead of on whichever ran last.
fio_iops() {
  fio --name=rr --ioengine=nbd --uri="$1" --rw=randread --bs=4k --iodepth=16 \
      --size="${SIZE_MIB}M" --runtime="$FIO_SECS" --time_based --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; s=sys.stdin.read(); print(round(json.loads(s[s.index("{"):])["jobs"][0]["read"]["iops"]))'
}
# One untimed write into every server first: qemu-nbd's and nbdkit's images
# are fully allocated copies, tierd's volume starts sparse, and a first write
# that allocates the file's blocks is not what the runs compare.
for s in "${SERVERS[@]}"; do nbdcopy "$OUT/src.raw" "${URI[$s]}"; done
declare -A WRITE READ IOPS WS RS IS
for r in $(seq "$RUNS"); do
  for s in "${SERVERS[@]}"; do
    u=${URI[$s]}
    w=$(timed nbdcopy "$OUT/src.raw" "$u"); rd=$(timed nbdcopy "$u" null:); io=$(fio_iops "$u")
    WS[$s]+="$w "; RS[$s]+="$rd "; IS[$s]+="$io "
    echo "   run $r $s: write $w MiB/s, read $rd MiB/s, randread $io IOPS" >&2
  done
done
for s in "${SERVERS[@]}"; do
  WRITE[$s]=$(tr ' ' '\n' <<<"${WS[$s]}" | grep . | median)
  READ[$s]=$(tr ' ' '\n' <<<"${RS[$s]}" | grep . | median)
  IOPS[$s]=$(tr ' ' '\n' <<<"${IS[$s]}" | grep . | median)
done

# Every server must hand back the image it was given.
cmp <(nbdcopy "${URI[tierd-heat]}" - ) "$OUT/src.raw" >/dev/null && echo "tierd image verified" >&2

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
{
  echo "| server | seq write MiB/s | seq read MiB/s | 4K randread QD16 IOPS | write ÷ qemu-nbd | read ÷ qemu-nbd | IOPS ÷ qemu-nbd | IOPS ÷ nbdkit |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for s in "${SERVERS[@]}"; do
    echo "| $s | ${WRITE[$s]} | ${READ[$s]} | ${IOPS[$s]} | $(ratio "${WRITE[$s]}" "${WRITE[qemu-nbd]}") | $(ratio "${READ[$s]}" "${READ[qemu-nbd]}") | $(ratio "${IOPS[$s]}" "${IOPS[qemu-nbd]}") | $(ratio "${IOPS[$s]}" "${IOPS[nbdkit]}") |"
  done
  echo
  echo "Heat tracking cost (tierd heat on ÷ off): write $(ratio "${WRITE[tierd-heat]}" "${WRITE[tierd-noheat]}"), read $(ratio "${READ[tierd-heat]}" "${READ[tierd-noheat]}"), random read $(ratio "${IOPS[tierd-heat]}" "${IOPS[tierd-noheat]}")."
  echo "Random read heat on ÷ off, run by run (each pair back to back): $(paste -d' ' <(tr ' ' '\n' <<<"${IS[tierd-heat]}" | grep .) <(tr ' ' '\n' <<<"${IS[tierd-noheat]}" | grep .) | awk '{printf "%s%.2f", sep, $1/$2; sep=", "}')."
  if [ -n "$BEFORE" ]; then
    echo "This build ÷ the earlier build (heat on both): write $(ratio "${WRITE[tierd-heat]}" "${WRITE[tierd-before]}"), read $(ratio "${READ[tierd-heat]}" "${READ[tierd-before]}"), random read $(ratio "${IOPS[tierd-heat]}" "${IOPS[tierd-before]}")."
  fi
  echo
  echo "Image ${SIZE_MIB} MiB of random data; median of ${RUNS} runs; fio ${FIO_SECS} s per run; $(nproc) cores; $(date -u +%Y-%m-%d)."
} | tee "$OUT/nbd.md"
