# shellcheck shell=bash
# Shared by the emulator scripts (sourced, never run): install, pick ports,
# start, wait until healthy, stop. Everything listens on 127.0.0.1 only.
#
# A run directory (TIERD_EMU_RUN) holds one run's state:
#   s3.port, azurite.port        ports, kept so a restart reuses them
#   localstack.pid, azurite.pid  session leader = process group of each emulator
#   localstack.log, azurite.log  output, appended across restarts
#   localstack-data/, azurite-data/, env
#
# Installs live outside the git tree in $TIERD_EMU_HOME and are reused while
# their marker matches the pins below; see README.md for why each pin.

LOCALSTACK_VERSION=4.13.1
AZURITE_VERSION=3.35.0
LS_PIP_SPEC=("localstack-core[base-runtime]==$LOCALSTACK_VERSION" 'cbor2<6' 'pyopenssl<25'
  service-identity boto3 azure-storage-blob)
AZ_NPM_SPEC="azurite@$AZURITE_VERSION"

TIERD_EMU_HOME=${TIERD_EMU_HOME:-$HOME/.cache/tierd-emulators}
LS_VENV=$TIERD_EMU_HOME/localstack-venv
AZ_PREFIX=$TIERD_EMU_HOME/azurite
LS_MARKER=$LS_VENV/.tierd-installed
AZ_MARKER=$AZ_PREFIX/.tierd-installed
AZ_BIN=$AZ_PREFIX/node_modules/.bin/azurite-blob
# LocalStack builds a service catalog on its first start in a new data dir
# (about 5 s here); it is kept here and copied into each run.
LS_SEED=$TIERD_EMU_HOME/localstack-cache
# The first version of these scripts kept one marker for both installs.
LEGACY_MARKER=$TIERD_EMU_HOME/installed
LEGACY_WANT="localstack-core==$LOCALSTACK_VERSION azurite@$AZURITE_VERSION"

EMU_START_TIMEOUT=${TIERD_EMU_START_TIMEOUT:-120}
EMU_STOP_GRACE=${TIERD_EMU_STOP_GRACE:-10}
S3_DEFAULT_PORT=4566
AZURITE_DEFAULT_PORT=10000

# Azurite's well-known development account: public, documented by Microsoft,
# and compiled into Azurite itself.
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

# What identifies each emulator's processes (checked before signalling a
# process group named by a pid file, so a stale pid is never acted on).
LS_MATCH=localstack.runtime.main
AZ_MATCH=azurite-blob

log() { echo "emulators: $*" >&2; }
die() { log "error: $*"; exit 1; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
since() { local ms=$(($(now_ms) - $1)); printf '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100)); }

# ---------------------------------------------------------------- install

ls_ok() {
  [ -x "$LS_VENV/bin/python" ] || return 1
  "$LS_VENV/bin/python" - "$LOCALSTACK_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
major = lambda d: int(version(d).split(".")[0])
ok = version("localstack-core") == sys.argv[1] and major("cbor2") < 6 and major("pyopenssl") < 25
for d in ("service-identity", "hypercorn", "boto3", "azure-storage-blob"):
    version(d)
sys.exit(0 if ok else 1)
PY
}

ls_installed() {
  ls_ok || return 1
  [ -f "$LS_MARKER" ] && [ "$(<"$LS_MARKER")" = "${LS_PIP_SPEC[*]}" ] && return 0
  if [ -f "$LEGACY_MARKER" ] && [ "$(<"$LEGACY_MARKER")" = "$LEGACY_WANT" ]; then
    printf '%s\n' "${LS_PIP_SPEC[*]}" >"$LS_MARKER"
    return 0
  fi
  return 1
}

ls_install() {
  local py=${TIERD_EMU_PYTHON3:-python3} t0
  t0=$(now_ms)
  command -v "$py" >/dev/null || die "$py not found (LocalStack needs Python 3.10 or later)"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$py is $("$py" -V 2>&1); LocalStack $LOCALSTACK_VERSION needs Python 3.10 or later"
  log "LocalStack: installing ${LS_PIP_SPEC[*]} into $LS_VENV (PyPI; a few minutes the first time)"
  rm -rf "$LS_VENV" "$LS_SEED"
  "$py" -m venv "$LS_VENV" || die "could not create the venv $LS_VENV"
  "$LS_VENV/bin/python" -m pip install --quiet "${LS_PIP_SPEC[@]}" >&2 || die "pip install failed"
  ls_ok || die "LocalStack install in $LS_VENV does not have the pinned versions"
  printf '%s\n' "${LS_PIP_SPEC[*]}" >"$LS_MARKER"
  log "LocalStack: installed in $(since "$t0")"
}

az_installed() {
  [ -x "$AZ_BIN" ] && [ -f "$AZ_MARKER" ] && [ "$(<"$AZ_MARKER")" = "$AZ_NPM_SPEC" ] && return 0
  # Adopt an install made by the first version of these scripts.
  [ -x "$AZ_BIN" ] && [ -f "$LEGACY_MARKER" ] && [ "$(<"$LEGACY_MARKER")" = "$LEGACY_WANT" ] \
    && grep -q "\"version\": \"$AZURITE_VERSION\"" "$AZ_PREFIX/node_modules/azurite/package.json" 2>/dev/null \
    && echo "$AZ_NPM_SPEC" >"$AZ_MARKER"
}

az_install() {
  local t0
  t0=$(now_ms)
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    die "node and npm are needed for Azurite"
  fi
  log "Azurite: installing $AZ_NPM_SPEC into $AZ_PREFIX (npm)"
  rm -rf "$AZ_PREFIX"
  mkdir -p "$AZ_PREFIX"
  npm install --prefix "$AZ_PREFIX" --no-audit --no-fund --loglevel=error "$AZ_NPM_SPEC" >&2 \
    || die "npm install failed"
  [ -x "$AZ_BIN" ] || die "npm did not install $AZ_BIN"
  echo "$AZ_NPM_SPEC" >"$AZ_MARKER"
  log "Azurite: installed in $(since "$t0")"
}

# emu_install: installs whichever of the two is missing or not at its pins.
# A lock keeps two runs starting at once from installing into the same place.
emu_install() {
  mkdir -p "$TIERD_EMU_HOME"
  (
    flock -w 1800 9 || die "timed out waiting for another install in $TIERD_EMU_HOME"
    if ls_installed; then
      log "LocalStack $LOCALSTACK_VERSION: already installed in $LS_VENV"
    else
      ls_install
    fi
    if az_installed; then
      log "Azurite $AZURITE_VERSION: already installed in $AZ_PREFIX"
    else
      az_install
    fi
  ) 9>"$TIERD_EMU_HOME/.install.lock"
}

# ---------------------------------------------------------------- ports

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT.
port_in_use() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port_except PORT: a free port other than PORT.
free_port_except() {
  local p
  p=$(free_port) || return 1
  while [ "$p" = "$1" ]; do p=$(free_port) || return 1; done
  echo "$p"
}

# emu_port_file FILE VALUE DEFAULT NAME [AVOID]: makes sure FILE holds the
# port to use. An existing FILE wins (a restart keeps its port). VALUE is the
# user's setting: empty = DEFAULT, or a free port if DEFAULT is taken; 0 or
# auto = a free port (never AVOID, the other emulator's); a number = exactly
# that port.
emu_port_file() {
  local file=$1 value=$2 def=$3 name=$4 avoid=${5:-} port
  if [ -s "$file" ]; then return 0; fi
  case "$value" in
    0 | auto) port=$(free_port_except "$avoid") || return 1 ;;
    '')
      port=$def
      if port_in_use "$port" || [ "$port" = "$avoid" ]; then
        port=$(free_port_except "$avoid") || return 1
        log "$name: default port $def is in use, using free port $port instead"
      fi
      ;;
    *[!0-9]*) log "$name: port '$value' is not a number, 0 or auto"; return 1 ;;
    *) port=$value ;;
  esac
  echo "$port" >"$file"
}

# s3_port_file RUN, azurite_port_file RUN: record each emulator's port from
# TIERD_S3_PORT / TIERD_AZURITE_PORT unless the run already has one.
s3_port_file() {
  local other=
  [ -s "$1/azurite.port" ] && other=$(<"$1/azurite.port")
  emu_port_file "$1/s3.port" "${TIERD_S3_PORT:-}" "$S3_DEFAULT_PORT" LocalStack "$other"
}
azurite_port_file() {
  local other=
  [ -s "$1/s3.port" ] && other=$(<"$1/s3.port")
  emu_port_file "$1/azurite.port" "${TIERD_AZURITE_PORT:-}" "$AZURITE_DEFAULT_PORT" Azurite "$other"
}

read_port() {
  local p
  [ -s "$1" ] || die "no port recorded in $1 (start the run with up.sh)"
  p=$(<"$1")
  [[ $p =~ ^[0-9]+$ ]] || die "bad port '$p' in $1"
  echo "$p"
}

# ---------------------------------------------------------------- processes

# group_pids PGID: the live (not zombie) processes of a process group.
group_pids() {
  local f line state pgrp p
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    read -r state _ pgrp _ <<<"${line##*) }"
    if [ "$pgrp" = "$1" ] && [ "$state" != Z ] && [ "$state" != X ]; then
      p=${f#/proc/}
      echo "${p%/stat}"
    fi
  done
}

# group_is PGID MATCH: the group is alive and one of its processes has MATCH
# in its command line.
group_is() {
  local p
  for p in $(group_pids "$1"); do
    grep -qaF -- "$2" "/proc/$p/cmdline" 2>/dev/null && return 0
  done
  return 1
}

# group_gone_within PGID SECONDS [POKE_URL]: waits for the group to exit:
# returns 1 after SECONDS. With POKE_URL, requests it every half second
# meanwhile, and returns 2 once its port has refused connections for 3 s
# while the group still lives.
group_gone_within() {
  local end=$(($(now_ms) + $2 * 1000)) poke=${3:-} i=0 closed=0 rc
  while [ -n "$(group_pids "$1")" ]; do
    [ "$(now_ms)" -lt "$end" ] || return 1
    if [ -n "$poke" ] && [ $((i++ % 5)) = 0 ]; then
      rc=0
      curl -s --noproxy '*' --max-time 1 -o /dev/null "$poke" 2>/dev/null || rc=$?
      if [ "$rc" = 7 ]; then
        [ "$closed" != 0 ] || closed=$(now_ms)
        [ $(($(now_ms) - closed)) -lt 3000 ] || return 2
      else
        closed=0
      fi
    fi
    sleep 0.1
  done
}

pidfile_pid() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  echo "$pid"
}

# emu_running PIDFILE MATCH
emu_running() {
  local pid
  pid=$(pidfile_pid "$1") && group_is "$pid" "$2"
}

# emu_spawn DIR PIDFILE LOG CMD...: runs CMD in DIR in a session (and so a
# process group) of its own, detached from this shell and its process group,
# output appended to LOG. The session leader writes its pid to PIDFILE.
emu_spawn() {
  local dir=$1 pidfile=$2 logfile=$3
  shift 3
  rm -f "$pidfile"
  (
    cd "$dir" || exit 1
    # shellcheck disable=SC2016 # expanded by the inner bash
    setsid bash -c 'echo "$$" >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
      </dev/null >>"$logfile" 2>&1 &
  )
  for _ in $(seq 100); do
    [ -s "$pidfile" ] && return 0
    sleep 0.05
  done
  log "could not start ${1##*/} (no pid file $pidfile after 5 s)"
  return 1
}

# emu_wait NAME PIDFILE LOG URL [REGEX]: waits until URL answers HTTP (and its
# body matches REGEX, if given). Fails, showing the log's tail, if the process
# group dies or TIERD_EMU_START_TIMEOUT (120) seconds pass.
emu_wait() {
  local name=$1 pidfile=$2 logfile=$3 url=$4 want=${5:-} pid body code end
  pid=$(pidfile_pid "$pidfile") || { log "$name: no pid file $pidfile"; return 1; }
  end=$(($(now_ms) + EMU_START_TIMEOUT * 1000))
  while :; do
    if [ -z "$(group_pids "$pid")" ]; then
      log "$name exited while starting; last lines of $logfile:"
      tail -n 40 "$logfile" >&2
      return 1
    fi
    if [ -n "$want" ]; then
      body=$(curl -s --noproxy '*' --max-time 2 "$url" 2>/dev/null) || body=
      [[ $body =~ $want ]] && return 0
    else
      code=$(curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) || code=000
      [ "$code" != 000 ] && return 0
    fi
    if [ "$(now_ms)" -ge "$end" ]; then
      log "$name not healthy after ${EMU_START_TIMEOUT}s ($url); last lines of $logfile:"
      tail -n 40 "$logfile" >&2
      return 1
    fi
    sleep 0.2
  done
}

# emu_stop NAME PIDFILE MATCH [POKE_URL]: TERM to the whole process group,
# KILL after TIERD_EMU_STOP_GRACE (10) seconds. Idempotent.
emu_stop() {
  local name=$1 pidfile=$2 match=$3 poke=${4:-} pid t0 rc
  if ! pid=$(pidfile_pid "$pidfile"); then
    rm -f "$pidfile"
    log "$name: not running"
    return 0
  fi
  if ! group_is "$pid" "$match"; then
    rm -f "$pidfile"
    log "$name: not running (pid $pid is gone)"
    return 0
  fi
  t0=$(now_ms)
  kill -TERM -- "-$pid" 2>/dev/null || true
  rc=0
  group_gone_within "$pid" "$EMU_STOP_GRACE" "$poke" || rc=$?
  if [ "$rc" != 0 ]; then
    if [ "$rc" = 2 ]; then
      log "$name: closed its port after TERM but did not exit, sending KILL"
    else
      log "$name: still running ${EMU_STOP_GRACE}s after TERM, sending KILL"
    fi
    kill -KILL -- "-$pid" 2>/dev/null || true
    if ! group_gone_within "$pid" 5; then
      log "$name: process group $pid survived KILL: $(group_pids "$pid" | tr '\n' ' ')"
      return 1
    fi
  fi
  rm -f "$pidfile"
  log "$name: stopped (process group $pid) in $(since "$t0")"
}

# emu_precheck NAME PIDFILE MATCH PORT: before spawning. Returns 2 if the
# emulator already runs, 1 if its port is taken by something else.
emu_precheck() {
  local name=$1 pidfile=$2 match=$3 port=$4
  if emu_running "$pidfile" "$match"; then
    log "$name: already running (pid $(<"$pidfile")) on 127.0.0.1:$port"
    return 2
  fi
  rm -f "$pidfile"
  if port_in_use "$port"; then
    log "$name: 127.0.0.1:$port is already in use by another process"
    return 1
  fi
}

# ---------------------------------------------------------------- LocalStack S3

# s3_start RUN: starts LocalStack S3 on the port in RUN/s3.port and waits
# until its health endpoint shows s3 running.
s3_start() {
  local run=$1 port pidfile=$1/localstack.pid logfile=$1/localstack.log t0 rc=0
  port=$(read_port "$run/s3.port") || return 1
  emu_precheck LocalStack "$pidfile" "$LS_MATCH" "$port" || rc=$?
  [ "$rc" = 2 ] && return 0
  [ "$rc" = 0 ] || return 1
  [ -x "$LS_VENV/bin/python" ] || { log "LocalStack is not installed (run install.sh)"; return 1; }
  local cache=$run/localstack-data/var/lib/localstack/cache f
  mkdir -p "$cache"
  for f in "$LS_SEED"/service-catalog-*.dill; do
    [ -f "$f" ] && [ ! -e "$cache/${f##*/}" ] && cp "$f" "$cache/"
  done
  echo "=== $(date -Is) starting on 127.0.0.1:$port" >>"$logfile"
  t0=$(now_ms)
  # GATEWAY_LISTEN: the default binds 0.0.0.0. DNS_ADDRESS=0: otherwise it
  # starts a DNS server on port 53. The rest keeps it off the network and off
  # Docker, and puts its files in the run directory.
  emu_spawn "$run" "$pidfile" "$logfile" env \
    OVERRIDE_IN_DOCKER=0 SERVICES=s3 EAGER_SERVICE_LOADING=1 GATEWAY_SERVER=hypercorn \
    GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" DNS_ADDRESS=0 \
    DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 FILESYSTEM_ROOT="$run/localstack-data" \
    "$LS_VENV/bin/python" -m localstack.runtime.main || return 1
  if ! emu_wait LocalStack "$pidfile" "$logfile" "http://127.0.0.1:$port/_localstack/health" \
    '"s3": *"(running|available)"'; then
    s3_stop "$run" || true
    return 1
  fi
  log "LocalStack: S3 healthy on http://127.0.0.1:$port in $(since "$t0") (pid $(<"$pidfile"), log $logfile)"
  for f in "$cache"/service-catalog-*.dill; do
    if [ -f "$f" ] && [ ! -e "$LS_SEED/${f##*/}" ]; then
      mkdir -p "$LS_SEED" && cp "$f" "$LS_SEED/.${f##*/}.$$" && mv -f "$LS_SEED/.${f##*/}.$$" "$LS_SEED/${f##*/}"
    fi
  done
  return 0
}

# LocalStack's shutdown stops its asyncio loop from another thread without
# waking it, so an idle LocalStack can sit in select() after TERM for good.
# Any request wakes the loop, hence the poke while waiting; once its port is
# closed nothing can, and its state is in memory anyway: KILL it then.
s3_stop() {
  local url=
  [ -s "$1/s3.port" ] && url="http://127.0.0.1:$(<"$1/s3.port")/_localstack/health"
  emu_stop LocalStack "$1/localstack.pid" "$LS_MATCH" "$url"
}

# ---------------------------------------------------------------- Azurite

# azurite_start RUN: starts Azurite Blob on the port in RUN/azurite.port and
# waits until it answers HTTP.
azurite_start() {
  local run=$1 port pidfile=$1/azurite.pid logfile=$1/azurite.log t0 rc=0
  port=$(read_port "$run/azurite.port") || return 1
  emu_precheck Azurite "$pidfile" "$AZ_MATCH" "$port" || rc=$?
  [ "$rc" = 2 ] && return 0
  [ "$rc" = 0 ] || return 1
  [ -x "$AZ_BIN" ] || { log "Azurite is not installed (run install.sh)"; return 1; }
  mkdir -p "$run/azurite-data"
  echo "=== $(date -Is) starting on 127.0.0.1:$port" >>"$logfile"
  t0=$(now_ms)
  # --loose: azure_storage_blobs sends a CRC64 range header that strict mode
  # rejects with a 500. Telemetry is on unless disabled.
  emu_spawn "$run" "$pidfile" "$logfile" "$AZ_BIN" --blobHost 127.0.0.1 --blobPort "$port" \
    --location "$run/azurite-data" --loose --skipApiVersionCheck --disableTelemetry || return 1
  if ! emu_wait Azurite "$pidfile" "$logfile" "http://127.0.0.1:$port/$AZURITE_ACCOUNT?comp=list"; then
    emu_stop Azurite "$pidfile" "$AZ_MATCH" || true
    return 1
  fi
  log "Azurite: Blob answering on http://127.0.0.1:$port in $(since "$t0") (pid $(<"$pidfile"), log $logfile)"
}

azurite_stop() { emu_stop Azurite "$1/azurite.pid" "$AZ_MATCH"; }

# ---------------------------------------------------------------- env file

# emu_write_env RUN: writes RUN/env, the file to source for the endpoints.
emu_write_env() {
  local run=$1 s3_port az_port
  s3_port=$(read_port "$run/s3.port") || return 1
  az_port=$(read_port "$run/azurite.port") || return 1
  {
    printf 'export TIERD_EMU_RUN=%q\n' "$run"
    printf 'export TIERD_S3_ENDPOINT=http://127.0.0.1:%s\n' "$s3_port"
    printf 'export TIERD_AZURITE_ENDPOINT=http://127.0.0.1:%s/%s\n' "$az_port" "$AZURITE_ACCOUNT"
    printf 'export TIERD_AZURITE_ACCOUNT=%s\n' "$AZURITE_ACCOUNT"
    printf "export TIERD_AZURITE_KEY='%s'\n" "$AZURITE_KEY"
    printf 'export TIERD_EMU_PYTHON=%q\n' "$LS_VENV/bin/python"
    printf 'export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test\n'
    printf 'export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1\n'
  } >"$run/env.tmp"
  mv -f "$run/env.tmp" "$run/env"
}
