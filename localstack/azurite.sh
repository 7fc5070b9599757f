#!/usr/bin/env bash
# Stops or (re)starts only Azurite of a run, on the same port and data.
# Usage: azurite.sh start|stop [RUN_DIR]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=${2:-${TIERD_EMU_RUN:?set TIERD_EMU_RUN}}
case "${1:-}" in
  start) azurite_start "$RUN" ;;
  stop) azurite_stop "$RUN" ;;
  *) echo "usage: azurite.sh start|stop [RUN_DIR]" >&2; exit 2 ;;
esac
