#!/usr/bin/env bash
# nats-server with JetStream on 127.0.0.1:4222 for the ferroway-nats tests. The machine image
# runs one already; this starts it again if it has stopped (idempotent), and fails loudly
# where none is installed. The restart test starts a server of its own on port 14222.
set -euo pipefail
port_open() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if port_open; then
  exit 0
fi
bin="$(command -v nats-server || true)"
if [ -z "$bin" ]; then
  echo "nats-server is not running on 127.0.0.1:4222 and is not installed." >&2
  echo "Install it (Debian: apt-get install nats-server) or point FERROWAY_NATS_URL at a server." >&2
  exit 1
fi
echo "starting nats-server with JetStream on 127.0.0.1:4222" >&2
mkdir -p /var/lib/nats-server
start-stop-daemon --start --oknodo --background --exec "$bin" -- \
  -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
for _ in $(seq 1 60); do
  if port_open; then
    exit 0
  fi
  sleep 1
done
echo "nats-server did not start listening on 127.0.0.1:4222 within 60 s" >&2
exit 1
