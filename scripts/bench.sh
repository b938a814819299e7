#!/usr/bin/env bash
# make bench: each pg_stress figure side by side with its baseline, in one run, as ratios — every
# area of scripts/bench/ in turn on one throwaway cluster, then the floor table (floors.sh) and the
# cost curve (curve.sh). BENCH_ONLY="query load" runs only those.
set -euo pipefail
source "$(dirname "$0")/bench/lib.sh"
for area in ${BENCH_ONLY:-query generate integrity load target capacity caller verdict floors curve}; do
  source "scripts/bench/$area.sh"
done
echo
echo "SUMMARY generate_orders/SQL=${gen_ratio:-n/a} checksum_speedup=${ck_speedup:-n/a}x orders_memory_mb=${grow_mb:-n/a}"
echo "        per table: ${summary[*]:-n/a}  dataset=${ds:-n/a}s dataset_workers2=${ds_par:-n/a}s trades_memory_mb=${trade_growth:-n/a}"
echo "        load run_load/pgbench: ${load_ratios[*]:-n/a}  timeline on/off: ${timeline_ratio:-n/a}"
echo "        target (loopback TCP): ${target_rows[*]:-n/a}"
echo "        capacity (ops/s at p99 <= ${CAPACITY_P99_MS:-20} ms): built-in mix ${capacities[0]:-n/a}, tpcb-like ${capacities[1]:-n/a} (pgbench closed loop: ${capacity_pgbench_tps:-n/a} tps)"
echo "        caller (blocking / detached): ${caller_summary:-n/a}"
echo "        verdict: ${verdict_summary:-n/a}"
echo "        query: SELECT 1 p50 ${select1:-n/a} ms, pgbench -S latency ${pgbench_lat:-n/a} ms; concurrency 2 benchmark/pgbench -S ${conc_ratio:-n/a}"
# The floor table last, where it is read: every figure against what the server itself cannot beat.
if [ -n "${floor_rows:-}" ]; then print_floor_table; fi

# The goals of the tables (a row's goal column), then every goal missed: make bench fails on any.
echo
for row in ${caller_rows[@]+"${caller_rows[@]}"}; do
  IFS='|' read -r what a b r g <<<"$row"
  [ "$r" = - ] && r=$a
  [ "$g" != - ] && goal "caller: $what" "$r" ${g% *} ${g#* }
done
for row in ${floor_rows[@]+"${floor_rows[@]}"}; do
  IFS='|' read -r what ours fl r g limit <<<"$row"
  [ "$g" != - ] && goal "floor: ${what# }" "$r" ${g% *} ${g#* }
done
if [ -n "${verdict_summary:-}" ]; then
  goal "verdict: A/A pairs that alarm (of $VERDICT_PAIRS), against one run" "$false_alarms" "<=" 1
  goal "verdict: slowed pairs detected (of $VERDICT_PAIRS), against one run" "$detected" ">=" $((VERDICT_PAIRS - 1))
  goal "verdict: A/A pairs that alarm (of $pooled_n), against the last 5 runs" "$pooled_false" "<=" 1
  goal "verdict: slowed pairs detected (of $VERDICT_PAIRS), against the last 5 runs" "$pooled_detected" ">=" $((VERDICT_PAIRS - 1))
fi
if [ ${#goals_missed[@]} -gt 0 ]; then
  echo "make bench: ${#goals_missed[@]} goal(s) missed:" >&2
  printf '  %s\n' "${goals_missed[@]}" >&2
  exit 1
fi
echo "make bench: every goal met"
