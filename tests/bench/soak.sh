#!/usr/bin/env bash
# Soak: two nodes under a steady cross-company load for a set time, then
# the verdict (zero loss, zero duplicates, order kept, bounded memory, flat
# queues). See RELIABILITY.md, "Load held: soak".
#
#   bash tests/bench/soak.sh
#
# Builds the bench and the node in release mode and runs
# `works-bench --variant soak`: messages at RATE per second (both
# ways together) across an external direct room for DURATION, memory and
# queue depth sampled every SAMPLE_EVERY. Memory after WARMUP is the
# baseline.
#
# Knobs (environment):
#   DURATION=600s RATE=200 WARMUP=60s SAMPLE_EVERY=5s
#   PROFILE=release           or debug (no build optimisation, slower nodes)
#   SOAK_EXTRA=""             more `works-bench` flags (--keep, --json, ...)
# Output: the samples and the summary on stdout, progress on stderr; both
# are also kept in OUT (default a new directory in /tmp). The last line is
# `soak=pass` or `soak=fail reason=...`; the exit status is non-zero on fail.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DURATION="${DURATION:-600s}"
RATE="${RATE:-200}"
WARMUP="${WARMUP:-60s}"
SAMPLE_EVERY="${SAMPLE_EVERY:-5s}"
PROFILE="${PROFILE:-release}"
SOAK_EXTRA="${SOAK_EXTRA:-}"
OUT="${OUT:-$(mktemp -d /tmp/soak-XXXXXX)}"
mkdir -p "$OUT"

echo "== building works-bench and the node ($PROFILE)"
if [ "$PROFILE" = release ]; then
  (cd "$ROOT" && cargo build --release -p works-tests --bin works-bench --bin node-under-test --quiet)
else
  (cd "$ROOT" && cargo build -p works-tests --bin works-bench --bin node-under-test --quiet)
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/works-bench"

echo "== soak: $RATE msgs/s for $DURATION (warm-up $WARMUP), logs in $OUT"
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME")"
status=0
# shellcheck disable=SC2086
"$BIN" --variant soak --duration "$DURATION" --rate "$RATE" \
  --warmup-for "$WARMUP" --sample-every "$SAMPLE_EVERY" $SOAK_EXTRA \
  >"$OUT/soak.out" 2> >(tee "$OUT/soak.err" >&2) || status=$?
cat "$OUT/soak.out"
exit "$status"
