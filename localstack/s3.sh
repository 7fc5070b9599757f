#!/usr/bin/env bash
# Stops or (re)starts only LocalStack S3 of a run, on the same port and data:
# tests use it to take the backend away mid-test. Usage: s3.sh start|stop [RUN_DIR]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN=${2:-${TIERD_EMU_RUN:?set TIERD_EMU_RUN}}
case "${1:-}" in
  start) s3_start "$RUN" ;;
  stop) s3_stop "$RUN" ;;
  *) echo "usage: s3.sh start|stop [RUN_DIR]" >&2; exit 2 ;;
esac
