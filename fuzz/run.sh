#!/usr/bin/env bash
# Coverage-guided fuzzing of every target on stable Rust (libFuzzer with
# LLVM sanitizer-coverage), each for a bounded time.
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] (default 60); FUZZ_TARGETS="a b"
# picks targets (default: all).
# seeds/TARGET (kept in the repository) is the minimized corpus of earlier
# runs; new finds go to corpus/TARGET (not kept). `fuzz/run.sh merge`
# minimizes both into seeds/ again.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# --target keeps the flags off build scripts.
cargo build --release --target "$target" --target-dir target/cov
targets=${FUZZ_TARGETS:-frame_decode record_parse segment_recovery cloudevents_parse edge_inputs}
if [ "$secs" = merge ]; then
  for t in $targets; do
    mkdir -p "corpus/$t" "seeds/$t"
    rm -rf "seeds/$t.new" && mkdir "seeds/$t.new"
    "target/cov/$target/release/$t" -merge=1 "seeds/$t.new" "seeds/$t" "corpus/$t" 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true
    rm -rf "seeds/$t" && mv "seeds/$t.new" "seeds/$t"
  done
  exit 0
fi
for t in $targets; do
  mkdir -p "corpus/$t" "seeds/$t" artifacts
  echo "fuzzing $t for ${secs}s" >&2
  "target/cov/$target/release/$t" "corpus/$t" "seeds/$t" -max_total_time="$secs" -max_len=65536 \
    -artifact_prefix=artifacts/ -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|Done)|panicked|ERROR" || true
  if ls artifacts/crash-* >/dev/null 2>&1; then
    echo "crash found: see fuzz/artifacts/" >&2
    exit 1
  fi
done
