#!/usr/bin/env bash
# make bench, load (run_load vs pgbench, the open model, commit accounting).
# Side by side with the baseline, as ratios; run alone, or by scripts/bench.sh with every area.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

echo "== load: the execute_trade transaction through pgbench (bench/execute_trade.pgbench, -M prepared) and"
echo "   through run_load, same SQL, same concurrency, ${LOAD_SECONDS:=10} s each, on 1,000,000 orders"
sql "DROP SCHEMA IF EXISTS stress_data CASCADE" >/dev/null
sql "SELECT count(*) FROM stress.generate_dataset(orders => 1000000, seed => 1, workers => 2)" >/dev/null
# Plenty of OPEN orders to fill: each execute_trade fills one.
sql "UPDATE stress_data.orders SET status = 'OPEN' WHERE status IN ('CANCELLED', 'REJECTED')" >/dev/null
sql "DROP TABLE IF EXISTS public.bench_open; CREATE TABLE public.bench_open AS SELECT id FROM stress_data.orders WHERE status = 'OPEN'" >/dev/null
sql "VACUUM ANALYZE" >/dev/null
accounts=$(sql "SELECT max(id) FROM stress_data.accounts")
# Every measured run starts from the same OPEN orders: the ones an earlier run filled are reopened
# (otherwise later runs find more accounts with nothing to fill, and no-op transactions are cheap).
reopen() {
  sql "UPDATE stress_data.orders o SET status = 'OPEN' FROM public.bench_open b WHERE o.id = b.id AND o.status <> 'OPEN'" >/dev/null
  sql "VACUUM stress_data.orders" >/dev/null
  sql "CHECKPOINT" >/dev/null
}
load_ratios=()
# pgbench's tps and run_load's ops/s for concurrency $1, with synchronous_commit $2 for both (a
# database setting: pgbench's sessions and run_load's workers both take it).
compare_load() {
  local conc=$1 sync=$2 tps run ops
  sql "ALTER DATABASE $db SET synchronous_commit = $sync" >/dev/null
  reopen
  tps=$("$pgbench" -n -M prepared -c "$conc" -j 2 -T "$LOAD_SECONDS" -D accounts="$accounts" \
          -f bench/execute_trade.pgbench "$db" 2>&1 | awk '/^tps = / { print $3 }')
  reopen
  run=$(call_run "CALL stress.run_load_proc('$LOAD_SECONDS seconds', workers => $conc, mix => '{\"execute_trade\": 1}')")
  ops=$(sql "SELECT round(ops_per_sec::numeric, 1) FROM stress.results WHERE run_id = $run AND name = 'total'")
  load_ratios+=("c$conc/sync_$sync=$(ratio "$ops" "$tps")")
  echo "   concurrency $conc, synchronous_commit $sync: pgbench $tps tps, run_load $ops ops/s  -> RATIO run_load / pgbench = $(ratio "$ops" "$tps")"
  goal "run_load / pgbench, execute_trade, concurrency $conc, synchronous_commit $sync" "$(ratio "$ops" "$tps")" ">=" 1.3
}
for conc in 2 8; do compare_load "$conc" on; done
for conc in 2 8; do compare_load "$conc" off; done
sql "ALTER DATABASE $db RESET synchronous_commit" >/dev/null

echo "== load: the timeline's cost: run_load (execute_trade, 2 workers, ${LOAD_SECONDS} s) with stress.timeline on and off, 4 rounds each"
# Which goes first alternates: the first run after reopen() was measured up to 10% slower, whichever
# setting it had.
timeline_on=() timeline_off=()
for ((i = 1; i <= 4; i++)); do
  order="on off"; [ $((i % 2)) = 0 ] && order="off on"
  for setting in $order; do
    reopen
    run=$(PGOPTIONS="-c client_min_messages=warning -c stress.progress_interval=0 -c stress.timeline=$setting" \
          "${psql[@]}" -d "$db" -c "CALL stress.run_load_proc('$LOAD_SECONDS seconds', workers => 2, mix => '{\"execute_trade\": 1}')" | cut -d'|' -f1)
    ops=$(sql "SELECT round(ops_per_sec::numeric, 1) FROM stress.results WHERE run_id = $run AND name = 'total'")
    rows=$(sql "SELECT count(*) FROM stress.timeline WHERE run_id = $run")
    if [ "$setting" = on ]; then timeline_on+=("$ops"); else timeline_off+=("$ops"); fi
    echo "   round $i, timeline $setting: $ops ops/s ($rows timeline rows)"
  done
done
timeline_ratio=$(ratio "$(median "${timeline_on[@]}")" "$(median "${timeline_off[@]}")")
echo "   medians: on $(median "${timeline_on[@]}") ops/s, off $(median "${timeline_off[@]}") ops/s  -> RATIO on / off = $timeline_ratio"
goal "run_load timeline on / off (the sampler's cost under 2%)" "$timeline_ratio" ">=" 0.98
echo "== load: open model at 1000 ops/s for 30 s (default mix, 4 workers), and the server's commit count"
commits() { sql "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }
before=$(commits)
run=$(call_run "CALL stress.run_load_proc('30 seconds', workers => 4, rate => 1000)")
sleep 1
after=$(commits)
# (what was offered is a Poisson count of arrivals: 30,000 ± 173, ±0.58%, so "of 1000" moves by
# that alone; the share of the arrivals served is the harness's own figure)
sql "SELECT format('   achieved %s ops/s of 1000 (%s%%), p50 %s ms, p99 %s ms, schedule lag p99 %s ms
   arrivals %s (offered: %s%% of 30,000, Poisson), served %s%% of them',
                   round((details->>'successes')::numeric / seconds::numeric, 1),
                   round(((details->>'successes')::numeric / seconds::numeric - 1000) / 10, 2),
                   round(p50_ms::numeric, 2), round(p99_ms::numeric, 2),
                   round((details->'schedule_lag_ms'->>'p99')::numeric, 2),
                   details->>'arrivals', round(((details->>'arrivals')::numeric / 30000 - 1) * 100, 2),
                   round((details->>'achieved_share')::numeric * 100, 2))
     FROM stress.results WHERE run_id = $run AND name = 'total'"
goal "open model: share of the arrivals served, %" "$(sql "SELECT round((details->>'achieved_share')::numeric * 100, 2) FROM stress.results WHERE run_id = $run AND name = 'total'")" ">=" 99
# Besides the operations, a run commits: the run's row (the first worker, first), per worker its
# preparation and its results, the run's closing, one per sample (its timeline row in the same
# transaction) and the sampler's session setup; and two of this script's sessions (the first count,
# the run_load call) commit in between. Autovacuum's transactions count too (noise).
expected=$(sql "SELECT (details->>'successes')::int8 + 1 + 2 * 4 + 1 + (SELECT count(*) FROM stress.samples WHERE run_id = $run) + 1 + 2
                FROM stress.results WHERE run_id = $run AND name = 'total'")
commit_difference=$(awk -v a="$((after - before))" -v b="$expected" 'BEGIN { printf "%.3f", (a - b) * 100 / b }')
echo "   xact_commit grew by $((after - before)); the run's operations and bookkeeping: $expected  -> difference $commit_difference%"
goal "open model: xact_commit against the run's own count, % difference" "$commit_difference" within 0.1
