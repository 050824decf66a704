#!/usr/bin/env bash
# Starts the Google Cloud Pub/Sub emulator (Java, from the machine image's
# google-cloud-cli-pubsub-emulator package; in memory) on 127.0.0.1:8085.
#
# Idempotent: exits 0 at once if something already answers on 127.0.0.1:8085. Otherwise
# starts the emulator in the background bound to 127.0.0.1 only and waits until it answers.
# Fails loudly (non-zero exit, log tail) if the emulator is not installed or does not come
# up. No registry ships it: on a machine without it, install Debian's
# google-cloud-cli-pubsub-emulator from Google's apt repository.
#
# Environment:
#   FERROWAY_CACHE   cache root (default: ~/.cache/ferroway); logs go to $FERROWAY_CACHE/pubsub
#   PUBSUB_LOG       emulator log file (default: $FERROWAY_CACHE/pubsub/emulator.log)
set -euo pipefail

HOST=127.0.0.1
PORT=8085
CACHE="${FERROWAY_CACHE:-$HOME/.cache/ferroway}/pubsub"
LOG="${PUBSUB_LOG:-$CACHE/emulator.log}"
WAIT_SECS=90

answers() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

if answers; then
  echo "pubsub.sh: a server already answers on $HOST:$PORT"
  exit 0
fi

EMULATOR=""
if command -v dpkg >/dev/null 2>&1; then
  EMULATOR="$(dpkg -L google-cloud-cli-pubsub-emulator 2>/dev/null | grep '/bin/cloud-pubsub-emulator$' || true)"
fi
if [ -z "$EMULATOR" ] || [ ! -x "$EMULATOR" ]; then
  echo "pubsub.sh: ERROR: the Pub/Sub emulator is not installed (Debian package google-cloud-cli-pubsub-emulator, with a Java runtime)" >&2
  exit 1
fi

mkdir -p "$CACHE"
echo "pubsub.sh: starting the Pub/Sub emulator on $HOST:$PORT (log: $LOG)"
nohup setsid "$EMULATOR" --host="$HOST" --port="$PORT" >>"$LOG" 2>&1 </dev/null &
pid=$!

for _ in $(seq 1 $((WAIT_SECS * 10))); do
  if answers; then
    echo "pubsub.sh: the emulator is up (pid $pid)"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    break
  fi
  sleep 0.1
done

echo "pubsub.sh: ERROR: the Pub/Sub emulator did not answer on $HOST:$PORT within ${WAIT_SECS}s" >&2
tail -n 40 "$LOG" >&2 || true
exit 1
