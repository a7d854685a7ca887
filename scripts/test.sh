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

exec cargo test --workspace --locked "$@"
