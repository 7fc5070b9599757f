#!/usr/bin/env bash
# Installs what building and testing tierd needs on Debian, skipping what is present.
# RocksDB and Snappy come from Debian (librocksdb-dev 7.8.3), so no 16-minute
# RocksDB compile; libclang-dev lets bindgen generate the RocksDB C bindings.
set -euo pipefail

PKGS=(librocksdb-dev libsnappy-dev libclang-dev pkg-config qemu-utils libnbd-bin nbdkit fio)
# `--test` adds what only the tests need: a real Prometheus (and promtool) to
# scrape tierd, and headless Chromium to load its /ui page.
if [ "${1:-}" = "--test" ]; then
  PKGS+=(prometheus chromium)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  echo "deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo not found. Install a Rust toolchain (1.80 or newer) with rustup, then re-run." >&2
  exit 1
fi

# The emulators need Python 3 (venv), Node.js with npm, and curl for health checks.
for tool in python3 npm curl; do
  command -v "$tool" >/dev/null || { echo "deps: $tool not found; install it (Debian: python3-venv, nodejs, npm, curl)" >&2; exit 1; }
done
