#!/usr/bin/env bash
# How the cost of a message grows: with its size, the room's size, the
# number of peers and the backlog. One `works-bench` run per point,
# then one table (BENCHMARKS.md, "How cost grows").
#
#   bash tests/bench/scaling.sh
#
# Knobs (environment):
#   SIZES="10 100 1000 10000"   --body-bytes, direct room, N messages
#   ROOMS="3 10 50"             --group-members, group room over 3 companies
#   PEERS="1 3 10"              --peers, one room per peer, all at once
#   BACKLOGS="10000 30000"      --messages queued while the recipient is down
#   N=5000 GROUP_N=1000         load-phase messages (group: per run)
#   OUT=<dir>                   logs of every run (default a new /tmp dir)
# Each row: the point, throughput and latency (the bench's last line), and
# CPU microseconds per message of every node (its summary line).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SIZES="${SIZES:-10 100 1000 10000}"
ROOMS="${ROOMS:-3 10 50}"
PEERS="${PEERS:-1 3 10}"
BACKLOGS="${BACKLOGS:-10000 30000}"
N="${N:-5000}"
GROUP_N="${GROUP_N:-1000}"
OUT="${OUT:-$(mktemp -d /tmp/scaling-XXXXXX)}"
mkdir -p "$OUT"

(cd "$ROOT" && cargo build --release -p works-tests --bin works-bench --bin node-under-test --quiet)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/works-bench"
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -m), logs in $OUT" >&2

rows=()
point() {
  local name="$1"
  shift
  local log
  log="$OUT/$(echo "$name" | tr ' =' '__').log"
  echo "== $name: works-bench $*" >&2
  if ! "$BIN" "$@" >"$log" 2>"$log.err"; then
    rows+=("$name | failed, see $log.err")
    return
  fi
  local last cpu extra=""
  last="$(tail -n 1 "$log")"
  cpu="$(grep '^idle_p50_ms=' "$log" | tr ' ' '\n' | grep '^cpu_us_per_msg_' |
    sed 's/^cpu_us_per_msg_//' | paste -sd ' ' -)"
  extra="$(grep -E '^backlog: enqueue' "$log" | tr ' ' '\n' | grep -E '^(drain_msgs_per_s|queue_empty_s)=' | paste -sd ' ' - || true)"
  rows+=("$name | $last | $cpu${extra:+ | $extra}")
}

for b in $SIZES; do point "body_bytes=$b" --messages "$N" --body-bytes "$b"; done
for m in $ROOMS; do point "group_members=$m" --variant group --group-members "$m" --messages "$GROUP_N"; done
for p in $PEERS; do point "peers=$p" --variant peers --peers "$p" --messages "$N"; done
for q in $BACKLOGS; do point "backlog=$q" --variant backlog --messages "$q"; done

echo "== point | throughput and latency | cpu_us_per_msg per node [| backlog]"
printf '%s\n' "${rows[@]}"
