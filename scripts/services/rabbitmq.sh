#!/usr/bin/env bash
# RabbitMQ on 127.0.0.1:5672 (guest/guest) for the ferroway-amqp tests. The machine image
# runs one already; this starts it again if it has stopped (idempotent), and fails loudly
# where none is installed.
set -euo pipefail
port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if port_open; then
  exit 0
fi
if ! command -v rabbitmq-server >/dev/null; then
  echo "RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed." >&2
  echo "Install it (Debian: apt-get install rabbitmq-server) or point FERROWAY_AMQP_URI at a broker." >&2
  exit 1
fi
echo "starting RabbitMQ (rabbitmq-server -detached)" >&2
rabbitmq-server -detached
for _ in $(seq 1 120); do
  if port_open && rabbitmqctl -q status >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "RabbitMQ did not start listening on 127.0.0.1:5672 within 120 s" >&2
exit 1
