#!/usr/bin/env bash
# Runs CMD with LocalStack S3 and Azurite up and their endpoints in the
# environment (up.sh's env file sourced), then always brings both down: on
# success, failure, Ctrl-C and TERM; a watchdog also stops them if this
# script is killed outright. Exits with CMD's status.
# Usage: with-emulators.sh CMD [ARGS...]
# The run directory is removed afterwards if this script made it and CMD
# succeeded; otherwise it is kept for its logs (TIERD_EMU_KEEP=1 always keeps it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"
[ $# -gt 0 ] || { echo "usage: with-emulators.sh CMD [ARGS...]" >&2; exit 2; }

own_run=0
if [ -z "${TIERD_EMU_RUN:-}" ]; then
  TIERD_EMU_RUN=$(mktemp -d "${TMPDIR:-/tmp}/tierd-emu.XXXXXX")
  own_run=1
fi
mkdir -p "$TIERD_EMU_RUN"
TIERD_EMU_RUN=$(cd "$TIERD_EMU_RUN" && pwd)
export TIERD_EMU_RUN

# shellcheck disable=SC2317 # called by the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  emu_stop watchdog "$TIERD_EMU_RUN/watchdog.pid" tierd-emu-watchdog 2>/dev/null || true
  "$here/down.sh" "$TIERD_EMU_RUN" || true
  if [ "$own_run" = 1 ] && [ "$rc" = 0 ] && [ "${TIERD_EMU_KEEP:-0}" != 1 ]; then
    rm -rf "$TIERD_EMU_RUN"
  else
    log "emulator logs kept in $TIERD_EMU_RUN"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Watchdog, in a session of its own: if this script dies without running
# cleanup (SIGKILL), it stops the emulators once this script is gone.
# shellcheck disable=SC2016 # expanded by the inner bash
emu_spawn "$TIERD_EMU_RUN" "$TIERD_EMU_RUN/watchdog.pid" /dev/null bash -c \
  'while kill -0 "$1" 2>/dev/null; do sleep 2; done; exec "$2" "$3"' \
  tierd-emu-watchdog "$$" "$here/down.sh" "$TIERD_EMU_RUN"

"$here/up.sh" >&2
# shellcheck source=/dev/null
source "$TIERD_EMU_RUN/env"
status=0
"$@" || status=$?
exit "$status"
