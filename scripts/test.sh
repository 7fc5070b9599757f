#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every test: unit tests of each crate and
# the end-to-end tests that drive the real tierd binary with real NBD clients.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# The end-to-end tests run the binary, so build it before the test harness starts.
cargo build -p tiering --bin tierd
cargo test --workspace --no-fail-fast
