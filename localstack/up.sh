#!/usr/bin/env bash
# Brings LocalStack S3 and Azurite Blob up on 127.0.0.1 (installing them on
# first use), waits until both are healthy, writes $TIERD_EMU_RUN/env and
# prints it on stdout (progress goes to stderr).
#   TIERD_S3_PORT       default 4566 (a free port if 4566 is taken); 0 or auto: a free port
#   TIERD_AZURITE_PORT  default 10000 (likewise)
#   TIERD_EMU_RUN       state and log directory (default: a new temp dir);
#                       a run directory that already has ports keeps them
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
emu_install
RUN=${TIERD_EMU_RUN:-$(mktemp -d "${TMPDIR:-/tmp}/tierd-emu.XXXXXX")}
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
s3_port_file "$RUN"
azurite_port_file "$RUN"
if ! s3_start "$RUN" || ! azurite_start "$RUN"; then
  log "start failed; stopping what was started (logs in $RUN)"
  s3_stop "$RUN" || true
  azurite_stop "$RUN" || true
  exit 1
fi
emu_write_env "$RUN"
log "up: S3 on 127.0.0.1:$(<"$RUN/s3.port"), Blob on 127.0.0.1:$(<"$RUN/azurite.port"); source $RUN/env"
cat "$RUN/env"
