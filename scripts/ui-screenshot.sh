#!/usr/bin/env bash
# Regenerates docs/heatmap.png, the README's picture of the /ui page: a daemon
# on loopback with two volumes, some data tiered to a local-directory backend,
# some read often, then headless Chromium takes the screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p tiering --bin tierd
T=target/debug/tierd
DIR=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
cat > "$DIR/tierd.toml" <<TOML
[server]
data_dir = "$DIR/data"
nbd_listen = "127.0.0.1:21809"
http_listen = "127.0.0.1:21464"
[tiering]
scan_interval = "1h"
[backends.archive]
kind = "fs"
[classes.standard]
backend = "archive"
tiering_policy = "all"
compression = "zstd"
[classes.gold]
tiering_policy = "none"
TOML
$T serve --config "$DIR/tierd.toml" 2>"$DIR/log" & PID=$!
export TIERD_ENDPOINT=http://127.0.0.1:21464
for _ in $(seq 50); do curl -sf $TIERD_ENDPOINT/readyz >/dev/null && break; sleep 0.1; done
$T volume create pg-data --size 768MiB --class standard >/dev/null
$T volume create pg-wal --size 256MiB --class gold >/dev/null
NBD=nbd://127.0.0.1:21809
head -c 400M /dev/urandom > "$DIR/img"
qemu-img convert -n -f raw -O raw "$DIR/img" $NBD/pg-data
head -c 120M /dev/urandom > "$DIR/img"
qemu-img convert -n -f raw -O raw "$DIR/img" $NBD/pg-wal
$T tier pg-data --wait >/dev/null
# A hot working set: the last 60 MiB written again and read often.
qemu-io -f raw $NBD/pg-data -c "write -P 3 340M 60M" >/dev/null
args=(); for i in $(seq 0 59); do for _ in $(seq 1 $(( (i % 7) + 1 ))); do args+=(-c "read $((340 + i))M 64k"); done; done
qemu-io -f raw $NBD/pg-data "${args[@]}" >/dev/null
# Random reads of a few cold extents (brought back under the all policy? no: all keeps them remote).
for off in 12 48 96 200; do qemu-io -f raw $NBD/pg-data -c "read ${off}M 4k" >/dev/null; done
args=(); for i in $(seq 0 29); do args+=(-c "read $((i * 4))M 1M"); done
qemu-io -f raw $NBD/pg-wal "${args[@]}" >/dev/null
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=5000 \
  --user-data-dir="$DIR/chromium" --window-size=1200,720 --screenshot=docs/heatmap.png \
  "$TIERD_ENDPOINT/ui" 2>/dev/null
echo "docs/heatmap.png written"
