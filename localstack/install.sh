#!/usr/bin/env bash
# Installs LocalStack (PyPI, in a venv) and Azurite (npm) if they are missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
emu_install
log "installed in $TIERD_EMU_HOME"
