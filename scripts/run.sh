#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the tierd daemon on its embedded
# defaults (data in ./tierd-data, NBD on 127.0.0.1:10809, API on 127.0.0.1:9464).
# Extra arguments go to `tierd serve`, e.g. `--config tierd.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -p tiering --bin tierd
exec target/release/tierd serve "$@"
