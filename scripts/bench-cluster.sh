#!/usr/bin/env bash
# Single node vs cluster mode, one sitting: each workload runs on one
# in-process broker and on two in-process edges over a 3-node JetStream
# cluster (publishers on one edge, subscribers on the other), alternating,
# ROUNDS times; prints medians and the cluster/single ratio, and writes an
# HTML report per workload and round (target/bench-cluster/W-R.html).
#   NATS_SERVER_BIN=... [WORKLOADS="e2e consume"] ./scripts/bench-cluster.sh [ROUNDS]
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
  [fanout]="--count 5000 --consumers 20 --rate 2000 --fsync always"
  [consume]="--count 50000 --fsync always"
)
workloads=${WORKLOADS:-publish e2e fanout consume}
for w in $workloads; do
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
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def med(w, mode, key):
    vals = [json.load(open(f"{out}/{w}-{mode}-{r}.json"))[key] for r in range(1, rounds + 1)]
    return statistics.median(vals)
print(f"{'workload':10} {'figure':12} {'single':>12} {'cluster':>12} {'cluster/single':>15}")
import os
for w in os.environ.get("WORKLOADS", "publish e2e fanout consume").split():
    keys = ["msgs_per_s"] + (["p50_us", "p99_us"] if w in ("e2e", "fanout") else [])
    for key in keys:
        s, c = med(w, "single", key), med(w, "cluster", key)
        print(f"{w:10} {key:12} {s:12.0f} {c:12.0f} {c / s if s else float('nan'):15.2f}")
PY
