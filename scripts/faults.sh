#!/usr/bin/env bash
# The fault suite in one command, bounded in time (a few minutes on 2
# cores): kill -9 under load in every fsync mode, clients vanishing
# mid-frame and connection churn (tests/faults.rs), a full disk
# (tests/disk_full.rs; mounts a tmpfs, so run as root), and hook receivers
# that fail, hang, rate-limit or vanish across a broker kill -9
# (tests/webhooks.rs). Prints each figure it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --test faults --test disk_full --test webhooks -- --nocapture 2>&1 |
  grep -E "^(test |test result)|fsync |vanishing|disk full after|sent again|panicked" 
