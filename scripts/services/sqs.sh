#!/usr/bin/env bash
# Starts the SQS test server (moto 5.2.5's server mode, in memory) on 127.0.0.1:4566.
#
# Idempotent: exits 0 at once if something already answers on 127.0.0.1:4566. Otherwise
# installs moto[server] from PyPI into a virtualenv in a cache directory (once), starts it in
# the background bound to 127.0.0.1 only, and waits until it answers. Fails loudly (non-zero
# exit, log tail) if it does not come up.
#
# Environment:
#   FERROWAY_CACHE   cache root (default: ~/.cache/ferroway); the virtualenv goes to $FERROWAY_CACHE/moto
#   MOTO_LOG         server log file (default: $FERROWAY_CACHE/moto/moto.log)
set -euo pipefail

HOST=127.0.0.1
PORT=4566
SPEC="moto[server]==5.2.5"
CACHE="${FERROWAY_CACHE:-$HOME/.cache/ferroway}/moto"
VENV="$CACHE/venv"
LOG="${MOTO_LOG:-$CACHE/moto.log}"
WAIT_SECS=60

answers() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

if answers; then
  echo "sqs.sh: a server already answers on $HOST:$PORT"
  exit 0
fi

mkdir -p "$CACHE"
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "sqs.sh: installing $SPEC from PyPI into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SPEC"
fi

echo "sqs.sh: starting moto on $HOST:$PORT (log: $LOG)"
nohup setsid "$VENV/bin/moto_server" -H "$HOST" -p "$PORT" >>"$LOG" 2>&1 </dev/null &
pid=$!

for _ in $(seq 1 $((WAIT_SECS * 10))); do
  if answers; then
    echo "sqs.sh: moto is up (pid $pid)"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    break
  fi
  sleep 0.1
done

echo "sqs.sh: ERROR: moto did not answer on $HOST:$PORT within ${WAIT_SECS}s" >&2
tail -n 40 "$LOG" >&2 || true
exit 1
