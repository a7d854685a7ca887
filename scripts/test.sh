#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first.
# Usage: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# System packages the tests drive: Chromium for the browser-edge tests
# (tests/browser.rs drives real EventSource/WebSocket pages in it).
for cmd_pkg in chromium:chromium; do
  cmd=${cmd_pkg%%:*} pkg=${cmd_pkg##*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# Third-party clients the interoperability tests drive, pinned.
# tests/cloudevents_sdk.rs: the official CloudEvents Python SDK.
if ! python3 -c 'import sys, cloudevents; sys.exit(cloudevents.__version__ != "1.11.1")' 2>/dev/null; then
  echo "installing test dependencies: cloudevents==1.11.1 (PyPI)" >&2
  python3 -m pip install --quiet --disable-pip-version-check cloudevents==1.11.1
fi

exec cargo test --workspace --locked "$@"
