#!/usr/bin/env bash
# Stops both emulators of a run: TERM to each process group, KILL after 10 s.
# Idempotent: fine if one or both are already gone.
# Usage: down.sh [RUN_DIR]   (default $TIERD_EMU_RUN)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
RUN=${1:-${TIERD_EMU_RUN:-}}
[ -n "$RUN" ] || { echo "usage: down.sh RUN_DIR (or set TIERD_EMU_RUN)" >&2; exit 2; }
if [ ! -d "$RUN" ]; then
  log "no run directory $RUN: nothing to stop"
  exit 0
fi
rc=0
s3_stop "$RUN" || rc=1
azurite_stop "$RUN" || rc=1
exit $rc
