#!/usr/bin/env bash
# Stops both emulators of a run (default: $TIERD_EMU_RUN). Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=${1:-${TIERD_EMU_RUN:?usage: down.sh RUN_DIR (or set TIERD_EMU_RUN)}}
s3_stop "$RUN"
azurite_stop "$RUN"
log "stopped emulators of $RUN"
