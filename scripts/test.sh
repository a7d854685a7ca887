#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first.
# Usage: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# System packages the tests drive. None yet beyond the Rust toolchain; the
# browser-edge tests will add chromium here.
for pkg in "${FANLOG_TEST_APT:-}"; do
  [ -n "$pkg" ] && ! dpkg -s "$pkg" >/dev/null 2>&1 && need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

exec cargo test --workspace --locked "$@"
