#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every test: unit tests of each crate,
# the object-store conformance suite against the local directory, LocalStack S3
# and Azurite (both started on loopback by localstack/, installed on first use,
# always stopped afterwards), and the end-to-end tests that drive the real
# tierd binary with real NBD clients.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
localstack/install.sh
# Guard rails: formatting, and clippy with warnings as errors (the crates'
# clippy.toml keeps the system clock and thread sleeps out of core code).
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests run the binary, so build it before the test harness starts.
cargo build -p tiering --bin tierd
# With the emulators up, a test that cannot find them fails instead of skipping.
export TIERD_REQUIRE_EMULATORS=1
exec localstack/with-emulators.sh cargo test --workspace --no-fail-fast
