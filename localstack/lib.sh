#!/usr/bin/env bash
# Shared functions for the emulator scripts: install, start, wait, stop.
# Everything binds 127.0.0.1 only. Installs live outside the git tree in
# $TIERD_EMU_HOME (default ~/.cache/tierd-emulators) and are reused.

LOCALSTACK_VERSION=4.13.1
AZURITE_VERSION=3.35.0
TIERD_EMU_HOME=${TIERD_EMU_HOME:-$HOME/.cache/tierd-emulators}
LS_VENV="$TIERD_EMU_HOME/localstack-venv"
AZ_PREFIX="$TIERD_EMU_HOME/azurite"
MARKER="$TIERD_EMU_HOME/installed"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

log() { echo "emulators: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

emu_install() {
  mkdir -p "$TIERD_EMU_HOME"
  local want="localstack-core==$LOCALSTACK_VERSION azurite@$AZURITE_VERSION"
  if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$want" ] \
     && [ -x "$LS_VENV/bin/python" ] && [ -x "$AZ_PREFIX/node_modules/.bin/azurite-blob" ]; then
    return 0
  fi
  log "installing LocalStack $LOCALSTACK_VERSION (PyPI) into $LS_VENV"
  rm -rf "$LS_VENV"
  python3 -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install -q --upgrade pip >&2
  # cbor2 6 and pyOpenSSL 26 break this LocalStack line; boto3 and
  # azure-storage-blob are the plain clients the backend benchmark compares to.
  "$LS_VENV/bin/pip" install -q "localstack-core[base-runtime]==$LOCALSTACK_VERSION" 'cbor2<6' 'pyopenssl<25' \
    service-identity boto3 azure-storage-blob >&2
  log "installing Azurite $AZURITE_VERSION (npm) into $AZ_PREFIX"
  rm -rf "$AZ_PREFIX"
  mkdir -p "$AZ_PREFIX"
  npm install --silent --no-audit --no-fund --prefix "$AZ_PREFIX" "azurite@$AZURITE_VERSION" >&2
  echo "$want" > "$MARKER"
}

# wait_http URL SECONDS PIDFILE LOGFILE [GREP]
wait_http() {
  local url=$1 secs=$2 pidfile=$3 logfile=$4 want=${5:-}
  local deadline=$((SECONDS + secs)) body
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "process died while starting; last log lines:"; tail -n 30 "$logfile" >&2; return 1
    fi
    if body=$(curl -s --max-time 2 "$url" 2>/dev/null) && [ -n "$body" ]; then
      if [ -z "$want" ] || grep -Eq "$want" <<<"$body"; then return 0; fi
    fi
    sleep 0.3
  done
  log "$url not healthy after ${secs}s; last log lines:"; tail -n 30 "$logfile" >&2
  return 1
}

# stop_pidfile FILE: TERM the process group, KILL after 10 s.
stop_pidfile() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

# s3_start RUN_DIR: starts LocalStack S3 on the port in RUN_DIR/s3.port.
s3_start() {
  local run=$1 port
  port=$(cat "$run/s3.port")
  mkdir -p "$run/localstack-data"
  ( cd "$run" && exec setsid env OVERRIDE_IN_DOCKER=0 SERVICES=s3 EAGER_SERVICE_LOADING=1 \
      GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" \
      DNS_ADDRESS=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 FILESYSTEM_ROOT="$run/localstack-data" \
      "$LS_VENV/bin/python" -m localstack.runtime.main >>"$run/localstack.log" 2>&1 ) &
  echo $! > "$run/localstack.pid"
  wait_http "http://127.0.0.1:$port/_localstack/health" 120 "$run/localstack.pid" "$run/localstack.log" \
    '"s3": *"(running|available)"'
}

s3_stop() { stop_pidfile "$1/localstack.pid"; }

# azurite_start RUN_DIR: starts Azurite Blob on the port in RUN_DIR/azurite.port.
azurite_start() {
  local run=$1 port
  port=$(cat "$run/azurite.port")
  mkdir -p "$run/azurite-data"
  # --loose: azure_storage_blobs sends a CRC64 range header strict mode rejects.
  setsid "$AZ_PREFIX/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
    --location "$run/azurite-data" --loose --skipApiVersionCheck --disableTelemetry \
    >>"$run/azurite.log" 2>&1 &
  echo $! > "$run/azurite.pid"
  wait_http "http://127.0.0.1:$port/$AZURITE_ACCOUNT?comp=list" 60 "$run/azurite.pid" "$run/azurite.log"
}

azurite_stop() { stop_pidfile "$1/azurite.pid"; }
