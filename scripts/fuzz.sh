#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 15: a CI smoke run).
# Long runs: `bash scripts/fuzz.sh 1800`. The toolchain is stable, so
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz use its sanitizer flags.
set -euo pipefail
secs=${1:-15}
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
for target in $(cargo fuzz list); do
  echo "== fuzz $target (${secs}s)"
  log=$(mktemp)
  if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$secs" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $target FAILED (crash input under fuzz/artifacts/$target/)"
    exit 1
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true
  rm -f "$log"
done
