#!/usr/bin/env bash
# Installs LocalStack (PyPI, into a venv, with boto3 and azure-storage-blob)
# and Azurite (npm) into $TIERD_EMU_HOME (default ~/.cache/tierd-emulators)
# unless they are already there at the pinned versions. Idempotent.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
emu_install
