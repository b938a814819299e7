#!/usr/bin/env bash
# make bench, capacity: stress.find_capacity (open model: the highest arrival rate with p99 within a
# target) for the built-in mix and for pgbench's tpcb-like transaction run as a custom transaction,
# beside pgbench's own closed-loop tps for the same transaction (its throughput with no latency
# target: an upper bound for the capacity, not a baseline it must reach).
# Run alone, or by scripts/bench.sh with every area.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CAPACITY_P99_MS=${CAPACITY_P99_MS:-20}
CAPACITY_STEP=${CAPACITY_STEP:-5}
CAPACITY_WORKERS=${CAPACITY_WORKERS:-8}
SCALE=${SCALE:-10}
echo "== capacity: stress.find_capacity(target_p99_ms => $CAPACITY_P99_MS, step => '$CAPACITY_STEP seconds', workers => $CAPACITY_WORKERS)"
if [ "$(sql "SELECT to_regclass('stress_data.orders') IS NOT NULL")" != t ]; then
  sql "SELECT count(*) FROM stress.generate_dataset(orders => 1000000, seed => 1, workers => 2)" >/dev/null
fi
"$pgbench" -i -q -s "$SCALE" "$db" >/dev/null 2>&1
# (a checkpoint now, not one spread over the first steps: writing the data made gigabytes of WAL)
sql "VACUUM ANALYZE" >/dev/null
sql "CHECKPOINT" >/dev/null
# One search (extra find_capacity arguments in $1): each step (stress.series_steps), then the answer.
capacities=()
capacity() {
  local out
  local series
  series=$(call_run "CALL stress.find_capacity($CAPACITY_P99_MS, step => '$CAPACITY_STEP seconds',
                                               workers => $CAPACITY_WORKERS$1)")
  out=$(sql "SELECT '   step ' || step || ': offered ' || round(offered_rate) || ', achieved ' || round(ops_per_sec)
                    || ' ops/s, p99 ' || coalesce(round(p99_ms::numeric, 2)::text, '-') || ' ms, '
                    || CASE WHEN ok THEN 'ok' ELSE reason END || coalesce(' [' || wait_events || ']', '')
                    || CASE WHEN chosen THEN '  <- CAPACITY ' || round(offered_rate) || ' ops/s' ELSE '' END
             FROM stress.series_steps WHERE series_id = $series ORDER BY step")
  echo "$out"
  capacities+=("$(echo "$out" | awk '/<- CAPACITY/ { print $NF == "ops/s" ? $(NF-1) : $NF }')")
  [ -n "${capacities[-1]}" ] || capacities[-1]=none
}
echo "-- the built-in mix (the seed's default), on 1,000,000 orders"
capacity ""
echo "-- pgbench's tpcb-like transaction as a custom transaction (scale $SCALE)"
tpcb='[{"name": "tpcb_like", "sql": [
  "UPDATE pgbench_accounts SET abalance = abalance + $2 WHERE aid = $1",
  "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
  "UPDATE pgbench_tellers SET tbalance = tbalance + $2 WHERE tid = $3",
  "UPDATE pgbench_branches SET bbalance = bbalance + $2 WHERE bid = $4",
  "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($3, $4, $1, $2, CURRENT_TIMESTAMP)"],
  "params": [{"distribution": "uniform", "min": 1, "max": '$((100000 * SCALE))'},
             {"distribution": "uniform", "min": -5000, "max": 5000},
             {"distribution": "uniform", "min": 1, "max": '$((10 * SCALE))'},
             {"distribution": "uniform", "min": 1, "max": '$SCALE'}]}]'
capacity ", transactions => '$tpcb'"
tps=$("$pgbench" -n -M prepared -c "$CAPACITY_WORKERS" -j 2 -T "$((CAPACITY_STEP * 2))" "$db" 2>&1 | awk '/^tps = / { print $3 }')
printf '   pgbench -b tpcb-like -M prepared -c %s, closed loop (no latency target): %.0f tps\n' "$CAPACITY_WORKERS" "$tps"
capacity_pgbench_tps=$(printf '%.0f' "$tps")
