#!/usr/bin/env bash
# Starts, stops or restarts only Azurite (Blob) of a run, on the run's port and
# data directory: tests use it to take one backend away mid-test. start
# without a recorded port picks one as up.sh does (but writes no env file).
# reset restarts it empty (its stored blobs deleted): Azurite keeps the data of
# deleted blobs on disk for a while, which benchmarks must not pile up.
# Usage: azurite.sh start|stop|restart|reset|status [RUN_DIR]   (default $TIERD_EMU_RUN)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
usage() { echo "usage: azurite.sh start|stop|restart|reset|status [RUN_DIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
RUN=${2:-${TIERD_EMU_RUN:-}}
[ -n "$RUN" ] || { echo "azurite.sh: give RUN_DIR or set TIERD_EMU_RUN" >&2; exit 2; }
case "$1" in
  start)
    mkdir -p "$RUN"
    azurite_port_file "$RUN"
    azurite_start "$RUN"
    ;;
  stop) azurite_stop "$RUN" ;;
  restart)
    azurite_stop "$RUN"
    azurite_start "$RUN"
    ;;
  reset)
    azurite_stop "$RUN"
    rm -rf "${RUN:?}/azurite-data"
    azurite_start "$RUN"
    ;;
  status)
    if emu_running "$RUN/azurite.pid" "$AZ_MATCH"; then
      echo "Azurite running on 127.0.0.1:$(<"$RUN/azurite.port")"
    else
      echo "Azurite not running"
      exit 1
    fi
    ;;
  *) usage ;;
esac
