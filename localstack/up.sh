#!/usr/bin/env bash
# Brings LocalStack S3 and Azurite Blob up on 127.0.0.1, installing them on
# first use, waits until both are healthy and prints the env file to source.
#   TIERD_S3_PORT, TIERD_AZURITE_PORT: ports (default: free ports)
#   TIERD_EMU_RUN: state and log directory (default: a new temp dir)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
emu_install
RUN=${TIERD_EMU_RUN:-$(mktemp -d -t tierd-emu.XXXXXX)}
mkdir -p "$RUN"
s3_port=${TIERD_S3_PORT:-auto}; [ "$s3_port" = auto ] || [ "$s3_port" = 0 ] && s3_port=$(free_port)
az_port=${TIERD_AZURITE_PORT:-auto}; [ "$az_port" = auto ] || [ "$az_port" = 0 ] && az_port=$(free_port)
echo "$s3_port" > "$RUN/s3.port"
echo "$az_port" > "$RUN/azurite.port"
if ! s3_start "$RUN" || ! azurite_start "$RUN"; then
  s3_stop "$RUN"; azurite_stop "$RUN"
  exit 1
fi
cat > "$RUN/env" <<ENV
export TIERD_EMU_RUN=$RUN
export TIERD_S3_ENDPOINT=http://127.0.0.1:$s3_port
export TIERD_AZURITE_ENDPOINT=http://127.0.0.1:$az_port/$AZURITE_ACCOUNT
export TIERD_AZURITE_ACCOUNT=$AZURITE_ACCOUNT
export TIERD_AZURITE_KEY='$AZURITE_KEY'
export TIERD_EMU_PYTHON=$LS_VENV/bin/python
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
ENV
log "S3 (LocalStack) on 127.0.0.1:$s3_port, Blob (Azurite) on 127.0.0.1:$az_port; env in $RUN/env"
cat "$RUN/env"
