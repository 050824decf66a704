#!/usr/bin/env bash
# Redis on 127.0.0.1:6379 for the ferroway-redis tests. Idempotent: does nothing if it answers.
set -euo pipefail
up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
up && exit 0
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
mkdir -p /var/lib/redis /var/log/redis
redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
  --dir /var/lib/redis --logfile /var/log/redis/ci.log
for _ in $(seq 1 50); do up && exit 0; sleep 0.2; done
echo "Redis did not start on 127.0.0.1:6379; see /var/log/redis/ci.log" >&2
exit 1
