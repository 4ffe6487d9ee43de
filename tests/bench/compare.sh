#!/usr/bin/env bash
# Cross-company relay benchmark, ours beside the XMPP server-to-server
# baseline, in one run on one machine, and the ratios between them.
#
#   bash tests/bench/compare.sh
#
# Builds the bench and the node in release mode, runs `works-bench` RUNS times
# for each SQLite synchronous mode in SYNC, then the XMPP baseline
# (shared/bench/xmpp/xmpp_s2s_bench.sh, which installs its Debian packages
# on first use, appends a.test/b.test to /etc/hosts and needs root) for each
# SERVER:MODE in BASELINES, all with the same workload, and prints medians
# and ratios (ours / baseline). Compare within one run: the machine is noisy.
#
# Knobs (environment), shared by both sides:
#   N=20000 WINDOW=100 IDLE_N=500 BODY=100 RUNS=3
#   SYNC="normal full"        ours: SQLite synchronous modes to report
#   VARIANT=direct            ours: direct|group|peers|backlog|idle-clients
#   SENDER=host               ours: host|replica (which node the sender is on)
#   BASELINES="ejabberd:mem ejabberd:mam"   SERVER:MODE pairs (prosody too)
#   XMPP_BENCH=<repo>/../shared/bench/xmpp/xmpp_s2s_bench.sh
#   SKIP_XMPP=1               ours only
#   BENCH_EXTRA=""            more `works-bench` flags
#   PIN=0                     1: each server on a core of its own, as if
#                             each company ran its own machine: ours with
#                             `--pin-cores`, each ejabberd's beam.smp bound
#                             with taskset once its pid file appears (the
#                             load clients stay unbound)
# Output: one line per run, then a table of medians and ratios. Logs of
# every run are kept under OUT (default a new directory in /tmp).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
N="${N:-20000}"
WINDOW="${WINDOW:-100}"
IDLE_N="${IDLE_N:-500}"
BODY="${BODY:-100}"
RUNS="${RUNS:-3}"
SYNC="${SYNC:-normal full}"
VARIANT="${VARIANT:-direct}"
SENDER="${SENDER:-host}"
BASELINES="${BASELINES:-ejabberd:mem ejabberd:mam}"
XMPP_BENCH="${XMPP_BENCH:-$ROOT/../shared/bench/xmpp/xmpp_s2s_bench.sh}"
SKIP_XMPP="${SKIP_XMPP:-0}"
BENCH_EXTRA="${BENCH_EXTRA:-}"
PIN="${PIN:-0}"
[ "$PIN" = 1 ] && BENCH_EXTRA="$BENCH_EXTRA --pin-cores"
OUT="${OUT:-$(mktemp -d /tmp/relay-compare-XXXXXX)}"
mkdir -p "$OUT"

echo "== building works-bench and the node (release)"
(cd "$ROOT" && cargo build --release -p works-tests --bin works-bench --bin node-under-test --quiet)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/works-bench"

med() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{ if(NR==0){print "nan"} else if(NR%2){print a[(NR+1)/2]} else {printf "%.3f\n",(a[NR/2]+a[NR/2+1])/2} }'; }
field() { sed -nE "s/.*(^| )$1=([-0-9.naif]+).*/\2/p" <<<"$2" | tail -n 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0 > 0 && b+0 > 0) printf "%.2f", a/b; else print "n/a" }'; }

declare -A TP P50 P99 IP50
NAMES=()

# ---- ours -------------------------------------------------------------------------
for sync in $SYNC; do
  name="ours:$sync"
  tps=() p50s=() p99s=() ip50s=()
  for r in $(seq "$RUNS"); do
    log="$OUT/ours-$sync-$r.log"
    # shellcheck disable=SC2086
    if ! "$BIN" --variant "$VARIANT" --sender "$SENDER" --synchronous "$sync" \
        --messages "$N" --in-flight "$WINDOW" --idle "$IDLE_N" --body-bytes "$BODY" \
        $BENCH_EXTRA >"$log" 2>&1; then
      echo "run $r ($name): failed: $(grep -m1 '^error' "$log" || tail -n 1 "$log")"
      continue
    fi
    last=$(tail -n 1 "$log"); summary=$(grep '^idle_p50_ms=' "$log" | tail -n 1)
    echo "run $r ($name): $last $summary"
    tps+=("$(field msgs_per_s "$last")"); p50s+=("$(field p50_ms "$last")")
    p99s+=("$(field p99_ms "$last")"); ip50s+=("$(field idle_p50_ms "$summary")")
  done
  [ ${#tps[@]} -gt 0 ] || continue
  NAMES+=("$name")
  TP[$name]=$(med "${tps[@]}"); P50[$name]=$(med "${p50s[@]}")
  P99[$name]=$(med "${p99s[@]}"); IP50[$name]=$(med "${ip50s[@]}")
done

# ---- XMPP baseline --------------------------------------------------------------------
# Binds server a's beam.smp to core 0 and b's to core 1, each time a run
# starts them afresh (their pid files name them).
pin_ejabberd() {
  local wd="$1" seen_a="" seen_b="" pid
  while sleep 0.05; do
    pid=$(cat "$wd/a/ejabberd.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$pid" != "$seen_a" ] && taskset -a -p -c 0 "$pid" >/dev/null 2>&1; then seen_a=$pid; fi
    pid=$(cat "$wd/b/ejabberd.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$pid" != "$seen_b" ] && taskset -a -p -c 1 "$pid" >/dev/null 2>&1; then seen_b=$pid; fi
  done
}
BASE_NAMES=()
if [ "$SKIP_XMPP" != 1 ]; then
  [ -f "$XMPP_BENCH" ] || { echo "XMPP baseline not found at $XMPP_BENCH (set XMPP_BENCH)" >&2; exit 1; }
  for b in $BASELINES; do
    server="${b%%:*}"; mode="${b#*:}"
    log="$OUT/xmpp-$server-$mode.log"
    echo "== XMPP baseline: $server, $mode"
    pinner=""
    if [ "$PIN" = 1 ]; then
      pin_ejabberd "${WORKDIR:-/tmp/xmpp_s2s_bench_$server}" & pinner=$!
    fi
    ok=1
    SERVER="$server" MODE="$mode" N="$N" WINDOW="$WINDOW" IDLE_N="$IDLE_N" BODY="$BODY" RUNS="$RUNS" \
        bash "$XMPP_BENCH" >"$log" 2>&1 || ok=0
    [ -n "$pinner" ] && kill "$pinner" 2>/dev/null
    if [ "$ok" = 0 ]; then
      echo "$server:$mode failed; see $log"; tail -n 5 "$log"; continue
    fi
    grep '^run ' "$log" || true
    last=$(tail -n 1 "$log"); summary=$(grep '^server=' "$log" | tail -n 1)
    name="$server:$mode"
    BASE_NAMES+=("$name")
    TP[$name]=$(field msgs_per_s "$last"); P50[$name]=$(field p50_ms "$last")
    P99[$name]=$(field p99_ms "$last"); IP50[$name]=$(field idle_p50_ms "$summary")
  done
fi

# ---- table ----------------------------------------------------------------------------
echo
echo "== medians of $RUNS runs: N=$N window=$WINDOW idle=$IDLE_N body=$BODY variant=$VARIANT sender=$SENDER pin=$PIN (logs in $OUT)"
printf '%-16s %10s %10s %10s %12s\n' config msgs_per_s p50_ms p99_ms idle_p50_ms
for name in "${NAMES[@]}" "${BASE_NAMES[@]}"; do
  printf '%-16s %10s %10s %10s %12s\n' "$name" "${TP[$name]}" "${P50[$name]}" "${P99[$name]}" "${IP50[$name]}"
done
if [ ${#BASE_NAMES[@]} -gt 0 ] && [ ${#NAMES[@]} -gt 0 ]; then
  echo
  echo "== ratios, ours / baseline (throughput: higher is better; latency: lower is better)"
  printf '%-16s %-16s %12s %10s %10s %12s\n' ours baseline msgs_per_s p50_ms p99_ms idle_p50_ms
  for o in "${NAMES[@]}"; do
    for b in "${BASE_NAMES[@]}"; do
      printf '%-16s %-16s %12s %10s %10s %12s\n' "$o" "$b" \
        "$(ratio "${TP[$o]}" "${TP[$b]}")" "$(ratio "${P50[$o]}" "${P50[$b]}")" \
        "$(ratio "${P99[$o]}" "${P99[$b]}")" "$(ratio "${IP50[$o]}" "${IP50[$b]}")"
    done
  done
fi
