#!/usr/bin/env bash
# Starts, stops or restarts only LocalStack (S3) of a run, on the run's port and
# data directory: tests use it to take one backend away mid-test. start
# without a recorded port picks one as up.sh does (but writes no env file).
# Usage: s3.sh start|stop|restart|status [RUN_DIR]   (default $TIERD_EMU_RUN)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
usage() { echo "usage: s3.sh start|stop|restart|status [RUN_DIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
RUN=${2:-${TIERD_EMU_RUN:-}}
[ -n "$RUN" ] || { echo "s3.sh: give RUN_DIR or set TIERD_EMU_RUN" >&2; exit 2; }
case "$1" in
  start)
    mkdir -p "$RUN"
    s3_port_file "$RUN"
    s3_start "$RUN"
    ;;
  stop) s3_stop "$RUN" ;;
  restart)
    s3_stop "$RUN"
    s3_start "$RUN"
    ;;
  status)
    if emu_running "$RUN/localstack.pid" "$LS_MATCH"; then
      echo "LocalStack running on 127.0.0.1:$(<"$RUN/s3.port")"
    else
      echo "LocalStack not running"
      exit 1
    fi
    ;;
  *) usage ;;
esac
