#!/usr/bin/env bash
# Runs a command with LocalStack S3 and Azurite up, their endpoints in the
# environment, and always brings them down afterwards (failures and signals
# included). Exits with the command's status. Usage: with-emulators.sh CMD ARGS...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || { echo "usage: with-emulators.sh CMD ARGS..." >&2; exit 2; }
export TIERD_EMU_RUN=${TIERD_EMU_RUN:-$(mktemp -d -t tierd-emu.XXXXXX)}
cleanup() { "$here/down.sh" "$TIERD_EMU_RUN" || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$here/up.sh" >/dev/null
# shellcheck disable=SC1091
source "$TIERD_EMU_RUN/env"
set +e
"$@"
status=$?
set -e
exit $status
