#!/usr/bin/env bash
# A slow reader slows only itself: a good client's sequential read of a
# 256 MiB local volume (nbdcopy), alone and while two clients pipeline 32 MiB
# reads they never read the replies of (python sockets), in the same run;
# the ratio is the good client's speed with them ÷ without. Also the
# daemon's peak RSS with the two hogs attached (the budgets bound it).
# Loopback only. Usage: bench/hostile.sh   TIERD_BIN=path to use a build.
set -euo pipefail
cd "$(dirname "$0")/.."
TIERD=${TIERD_BIN:-target/release/tierd}
if [ -z "${TIERD_BIN:-}" ]; then cargo build --release -p tiering --bin tierd >&2; fi
W=bench/out/hostile; rm -rf "$W"; mkdir -p "$W"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NP=$(free_port); HP=$(free_port)
export TIERD_ENDPOINT=http://127.0.0.1:$HP
cat > "$W/tierd.toml" <<TOML
[server]
data_dir = "$W/data"
nbd_listen = "127.0.0.1:$NP"
http_listen = "127.0.0.1:$HP"
TOML
TIERD_LOG=warn "$TIERD" serve --config "$W/tierd.toml" 2>>"$W/log" & pid=$!
hogs=()
trap 'kill $pid "${hogs[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 200); do curl -sf "$TIERD_ENDPOINT/readyz" >/dev/null && break; sleep 0.05; done
"$TIERD" volume create v --size 256MiB >/dev/null
head -c $((256 << 20)) /dev/urandom > "$W/src.raw"
nbdcopy "$W/src.raw" "nbd://127.0.0.1:$NP/v"
now() { date +%s.%N; }
read_mibs() {
  local t0 t1; t0=$(now); nbdcopy "nbd://127.0.0.1:$NP/v" "$W/back.raw"; t1=$(now)
  cmp "$W/back.raw" "$W/src.raw"
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", 256/(b-a)}'
}
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$pid/status"; }
ALONE1=$(read_mibs)
cat > "$W/hog.py" <<'PY'
import socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(18); s.sendall(struct.pack(">I", 1))
name = b"v"
s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, len(name)) + name)
s.recv(10)
req = b"".join(struct.pack(">IHHQQI", 0x25609513, 0, 0, i, (i % 8) << 25, 32 << 20) for i in range(200))
s.sendall(req)
time.sleep(3600)
PY
for _ in 1 2; do python3 "$W/hog.py" "$NP" & hogs+=($!); done
sleep 2
WITH=$(read_mibs)
PEAK=$(rss_mib)
kill "${hogs[@]}"; hogs=()
sleep 1
ALONE2=$(read_mibs)
ALONE=$(awk -v a="$ALONE1" -v b="$ALONE2" 'BEGIN {printf "%.1f", (a+b)/2}')
{
  echo "| figure | with two clients not reading | alone (mean of before and after) | ratio |"
  echo "|---|---:|---:|---:|"
  echo "| nbdcopy read of a 256 MiB volume (MiB/s) | $WITH | $ALONE ($ALONE1, $ALONE2) | $(awk -v a="$WITH" -v b="$ALONE" 'BEGIN {printf "%.2f", a/b}') |"
  echo
  echo "Daemon RSS with the two clients attached: ${PEAK} MiB (budgets: 32 MiB per connection, 512 MiB in total). Loopback, $(nproc) cores, $(date -u +%Y-%m-%d)."
} | tee bench/out/hostile.md
