#!/usr/bin/env bash
# Single node vs cluster mode, one sitting: each workload runs on one
# in-process broker and on two in-process edges over a 3-node JetStream
# cluster (publishers on one edge, subscribers on the other), alternating,
# ROUNDS times; prints medians and the cluster/single ratio, and writes an
# HTML report per workload and round (target/bench-cluster/W-R.html).
# Then idle SSE connections: IDLE on one broker, and as many spread over two
# edges (separate processes, for their memory).
#   NATS_SERVER_BIN=... [WORKLOADS="e2e consume idle"] [IDLE=2000] ./scripts/bench-cluster.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
out=target/bench-cluster
mkdir -p "$out"
cargo build --release --quiet
bin=target/release/fanlog
./scripts/nats-cluster.sh stop "$out/nats" || true
rm -rf "$out/nats"
./scripts/nats-cluster.sh start "$out/nats" >/dev/null
trap './scripts/nats-cluster.sh stop "$out/nats"' EXIT
cluster=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
# fsync always: the cluster's servers sync before they ack, so both sides
# acknowledge only what is on disk.
declare -A args=(
  [publish]="--count 50000 --fsync always"
  [e2e]="--count 20000 --rate 5000 --fsync always"
  [fanout]="--count 5000 --consumers 100 --rate 1000 --fsync always"
  [consume]="--count 50000 --fsync always"
)
workloads=${WORKLOADS:-publish e2e fanout consume idle}
for w in $workloads; do
  [ "$w" = idle ] && continue
  for r in $(seq 1 "$rounds"); do
    for mode in single cluster; do
      extra=""
      if [ "$mode" = cluster ]; then
        # This round's single-node run beside it in one HTML report.
        extra="--cluster $cluster --compare $out/$w-single-$r.json --html $out/$w-$r.html"
      fi
      echo "== $w $mode round $r" >&2
      # shellcheck disable=SC2086
      "$bin" bench "$w" ${args[$w]} $extra --label "$mode" --save "$out/$w-$mode-$r.json" --json \
        > "$out/$w-$mode-$r.out" 2> "$out/$w-$mode-$r.err"
    done
  done
done
# Idle SSE connections: IDLE (default 2000) on one `fanlog serve`, then
# the same number spread over two `fanlog serve --cluster` edges (each
# gets every other one); memory per connection (both edges' RSS added up)
# and the latency of broadcasts to all of them.
idle=${IDLE:-2000}
ulimit -n 65536 2>/dev/null || true
serve() { # NAME ARGS...: starts `fanlog serve`, waits for its HTTP edge
  local name=$1; shift
  rm -rf "$out/$name"
  FANLOG_LIMITS__MAX_CONNECTIONS=100000 FANLOG_LIMITS__MAX_CONNECTIONS_PER_IP=100000 RUST_LOG=warn \
    "$bin" serve --data "$out/$name" --quic off "$@" > "$out/$name.out" 2> "$out/$name.err" &
  echo $! > "$out/$name.pid"
  for _ in $(seq 1 100); do
    grep -q "^listening http" "$out/$name.out" 2>/dev/null && return
    sleep 0.1
  done
  echo "$name did not start: $(cat "$out/$name.err")" >&2
  exit 1
}
addr() { grep "^listening $2 " "$out/$1.out" | awk '{print $3}'; }
if [ -z "${WORKLOADS:-}" ] || [[ " $WORKLOADS " == *" idle "* ]]; then
  for r in $(seq 1 "$rounds"); do
    echo "== idle sse single round $r ($idle connections)" >&2
    serve single --tcp 127.0.0.1:0 --http 127.0.0.1:0
    "$bin" bench idle --transport sse --consumers "$idle" --count 20 --label single \
      --server "$(addr single tcp)" --http "$(addr single http)" --broker-pid "$(cat "$out/single.pid")" \
      --save "$out/idle-single-$r.json" --json > "$out/idle-single-$r.out" 2> "$out/idle-single-$r.err"
    kill "$(cat "$out/single.pid")"; wait "$(cat "$out/single.pid")" 2>/dev/null || true
    echo "== idle sse cluster round $r ($idle connections over two edges)" >&2
    serve edge-a --tcp 127.0.0.1:0 --http 127.0.0.1:0 --cluster "$cluster"
    serve edge-b --tcp 127.0.0.1:0 --http 127.0.0.1:0 --cluster "$cluster"
    "$bin" bench idle --transport sse --consumers "$idle" --count 20 --label cluster \
      --server "$(addr edge-a tcp)" --http "$(addr edge-a http),$(addr edge-b http)" \
      --broker-pid "$(cat "$out/edge-a.pid"),$(cat "$out/edge-b.pid")" \
      --compare "$out/idle-single-$r.json" --html "$out/idle-$r.html" \
      --save "$out/idle-cluster-$r.json" --json > "$out/idle-cluster-$r.out" 2> "$out/idle-cluster-$r.err"
    for e in edge-a edge-b; do kill "$(cat "$out/$e.pid")"; wait "$(cat "$out/$e.pid")" 2>/dev/null || true; done
  done
fi
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def med(w, mode, key):
    vals = [json.load(open(f"{out}/{w}-{mode}-{r}.json"))[key] for r in range(1, rounds + 1)]
    return statistics.median(vals)
print(f"{'workload':10} {'figure':12} {'single':>12} {'cluster':>12} {'cluster/single':>15}")
import os
def idle_mem(mode):
    return statistics.median(json.load(open(f"{out}/idle-{mode}-{r}.json"))["memory"]["bytes_per_connection"] for r in range(1, rounds + 1))
for w in os.environ.get("WORKLOADS", "publish e2e fanout consume idle").split():
    keys = ["msgs_per_s"] + (["p50_us", "p99_us"] if w in ("e2e", "fanout", "idle") else [])
    if w == "idle":
        keys = ["p50_us", "p99_us"]
        s, c = idle_mem("single"), idle_mem("cluster")
        print(f"{w:10} {'B/conn':12} {s:12.0f} {c:12.0f} {c / s if s else float('nan'):15.2f}")
    for key in keys:
        s, c = med(w, "single", key), med(w, "cluster", key)
        print(f"{w:10} {key:12} {s:12.0f} {c:12.0f} {c / s if s else float('nan'):15.2f}")
PY
