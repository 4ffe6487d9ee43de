#!/usr/bin/env bash
# Runs every fuzz target (or the ones named as arguments) for FUZZ_SECONDS
# (default 60) each, starting from the committed seeds. An input that
# crashes a target (or times out, or runs out of memory) is copied to
# fuzz/regressions/<target>/, where
# tests/it/properties.rs replays it, and the script fails once all have run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# libfuzzer-sys compiles libFuzzer, which is C++.
if ! command -v c++ >/dev/null; then
  apt-get update -qq && apt-get install -y -qq g++
fi

# cargo-fuzz passes nightly-only flags to rustc (-Zsanitizer, coverage
# instrumentation); stable rustc accepts them when told it is bootstrapping.
# The toolchain stays the same stable one as for the rest of the workspace.
export RUSTC_BOOTSTRAP=1
# fuzz/target unless the caller names another target directory.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/fuzz/target}"

if [ "$#" -gt 0 ]; then
  targets=("$@")
  for target in "${targets[@]}"; do cargo fuzz build "$target"; done
else
  cargo fuzz build
  mapfile -t targets < <(cargo fuzz list)
fi

failed=()
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  rm -f "$artifacts"/*
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
  log="$CARGO_TARGET_DIR/$target.log"
  if cargo fuzz run "$target" "$corpus" "${seeds[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "fuzz $target: ${runs:-?} executions in ${seconds}s, $status"
  found=false
  for input in "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* "$artifacts"/leak-*; do
    [ -e "$input" ] || continue
    mkdir -p "fuzz/regressions/$target"
    cp "$input" "fuzz/regressions/$target/"
    echo "  kept fuzz/regressions/$target/$(basename "$input")"
    found=true
  done
  if [ "$status" = FAILED ]; then
    if [ "$found" = false ]; then
      echo "  no crash input was written; see $log"
    fi
    tail -n 40 "$log" | sed 's/^/  | /'
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
