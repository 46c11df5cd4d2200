#!/usr/bin/env bash
# Make sure a Redis server answers on 127.0.0.1:6379 (the tests use a real one).
set -euo pipefail
host=127.0.0.1
port=6379
ping() { redis-cli -h "$host" -p "$port" ping 2>/dev/null | grep -q PONG; }
if command -v redis-cli >/dev/null && ping; then
  echo "redis: up at $host:$port"
  exit 0
fi
if ! command -v redis-server >/dev/null; then
  echo "redis: redis-server not found, installing Debian's redis-server package"
  if [ "$(id -u)" -ne 0 ]; then
    echo "redis: need root to install redis-server; install it or start Redis on $host:$port" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no
for _ in $(seq 1 50); do
  if ping; then echo "redis: started at $host:$port"; exit 0; fi
  sleep 0.1
done
echo "redis: could not start a server on $host:$port" >&2
exit 1
