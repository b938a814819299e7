#!/usr/bin/env bash
# make bench, caller: does the call that waits distort the run it waits for? The blocking forms (the
# procedures that commit: CALL stress.run_load_proc, stress.ramp) against a detached run of the same
# workload (SELECT stress.run_load(…, wait => false), polled from short sessions), variants
# alternating (order rotating), fresh tables before each, medians of CALLER_ROUNDS rounds; each
# figure beside an outside observer (pg_stat_database.xact_commit over the run).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CALLER_ROUNDS=${CALLER_ROUNDS:-3}
CALLER_SECONDS=${CALLER_SECONDS:-8}
caller_rows=()
commits() { sql "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }

# The hot-update transaction of issue 24 (INSERT a row, UPDATE one of 10,000 accounts, SELECT it),
# with synchronous_commit off (bound by CPU: where a held horizon shows), on fresh tables.
hot='[{"name": "hot", "params": [{"distribution": "uniform", "min": 1, "max": 10000}],
       "sql": ["INSERT INTO caller_t.hits VALUES ($1)",
               "UPDATE caller_t.accounts SET n = n + 1 WHERE id = $1",
               "SELECT n FROM caller_t.accounts WHERE id = $1"]}]'
fresh_hot() {
  sql "DROP SCHEMA IF EXISTS caller_t CASCADE; CREATE SCHEMA caller_t;
       CREATE TABLE caller_t.accounts (id int PRIMARY KEY, n bigint NOT NULL);
       INSERT INTO caller_t.accounts SELECT g, 0 FROM generate_series(1, 10000) g;
       CREATE TABLE caller_t.hits (k int NOT NULL)" >/dev/null
  sql "VACUUM ANALYZE caller_t.accounts" >/dev/null
  sql "CHECKPOINT" >/dev/null
}
# The seed's default mix on a fresh 100,000-order dataset.
fresh_mix() {
  sql "DROP SCHEMA IF EXISTS stress_data CASCADE" >/dev/null
  sql "SELECT count(*) FROM stress.generate_dataset(orders => 100000, seed => 1)" >/dev/null
  sql "VACUUM ANALYZE" >/dev/null
  sql "CHECKPOINT" >/dev/null
}
# one variant of workload $1 (hot|mix) at $2 workers: "ops/s outside-commits/s"
measure() {
  local workload=$1 conc=$2 variant=$3 args run c0 c1 ops secs
  args="'$CALLER_SECONDS seconds', workers => $conc"
  [ "$workload" = hot ] && args="$args, transactions => '$hot'"
  "fresh_$workload"
  c0=$(commits)
  if [ "$variant" = detached ]; then
    run=$(sql "SELECT stress.run_load($args, wait => false)")
    await_run "$run"
  else
    run=$(call_run "CALL stress.run_load_proc($args)")
  fi
  c1=$(commits)
  ops=$(sql "SELECT round(ops_per_sec::numeric, 1) FROM stress.results WHERE run_id = $run AND name = 'total'")
  secs=$(sql "SELECT seconds FROM stress.results WHERE run_id = $run AND name = 'total'")
  echo "$ops $(awk -v a="$c0" -v b="$c1" -v s="$secs" 'BEGIN { printf "%.1f", (b - a) / s }')"
}
sql "ALTER DATABASE $db SET synchronous_commit = off" >/dev/null
for workload in hot mix; do
  for conc in 1 2; do
    echo "== caller: $workload workload, $conc worker(s), ${CALLER_SECONDS} s: CALL stress.run_load_proc vs a detached run ($CALLER_ROUNDS rounds)"
    pr=() dr=() po=() dout=()
    for ((i = 1; i <= CALLER_ROUNDS; i++)); do
      for variant in $(rotate "$i" procedure detached); do
        read -r ops outside < <(measure "$workload" "$conc" "$variant")
        if [ "$variant" = procedure ]; then pr+=("$ops") po+=("$outside"); else dr+=("$ops") dout+=("$outside"); fi
      done
      echo "   round $i: CALL ${pr[-1]} ops/s (server commits ${po[-1]}/s), detached ${dr[-1]} ops/s (${dout[-1]}/s)"
    done
    a=$(median "${pr[@]}") b=$(median "${dr[@]}")
    caller_rows+=("$workload, $conc worker(s): CALL / detached|$a|$b|$(ratio "$a" "$b")|>= 0.95")
  done
done
sql "ALTER DATABASE $db RESET synchronous_commit" >/dev/null

echo "== caller: a ramp of four identical steps (2 workers, default mix, 5 s each): last step / first,"
echo "   beside four detached 5-second runs one after another on the same fresh dataset (the workload's own drift)"
ramp_ratios=() seq_ratios=()
for ((i = 1; i <= CALLER_ROUNDS; i++)); do
  for variant in $(rotate "$i" ramp sequence); do
    fresh_mix
    if [ "$variant" = ramp ]; then
      series=$(call_run "CALL stress.ramp('{2,2,2,2}', '5 seconds', max_throughput_drop => NULL)")
      steps=$(sql "SELECT string_agg(round(ops_per_sec)::text, ' ' ORDER BY step) FROM stress.series_steps WHERE series_id = $series")
    else
      steps=""
      for ((k = 1; k <= 4; k++)); do
        run=$(sql "SELECT stress.run_load('5 seconds', workers => 2, wait => false)")
        await_run "$run"
        steps="$steps $(sql "SELECT round(ops_per_sec) FROM stress.results WHERE run_id = $run AND name = 'total'")"
      done
    fi
    r=$(echo "$steps" | awk '{ printf "%.2f", $NF / $1 }')
    if [ "$variant" = ramp ]; then ramp_ratios+=("$r"); else seq_ratios+=("$r"); fi
    echo "   round $i, $variant: steps $steps ops/s, last/first $r"
  done
done
a=$(median "${ramp_ratios[@]}") b=$(median "${seq_ratios[@]}")
caller_rows+=("ramp {2,2,2,2}: step 4 / step 1 (CALL / detached)|$a|$b|$(ratio "$a" "$b")|>= 0.90")

echo "== caller: transaction ids per 10,000 concurrent-benchmark reads (concurrency 2)"
fresh_mix
x0=$(sql "SELECT txid_current()")
call_run "CALL stress.benchmark_proc(ARRAY['SELECT count(*) FROM stress_data.orders WHERE id = 5'], iterations => 10000, concurrency => 2)" >/dev/null
x1=$(sql "SELECT txid_current()")
xids=$((x1 - x0 - 1))
echo "   txid_current() advanced by $xids (0.5.0: about 10,000)"
caller_rows+=("xids per 10,000 benchmark reads|$xids|-|-|<= 10")

echo
echo "caller table (medians of $CALLER_ROUNDS alternating rounds, fresh tables before each variant)"
printf '  %-48s %14s %14s %7s %9s\n' "" "blocking" "detached" "ratio" "goal"
for row in "${caller_rows[@]}"; do
  IFS='|' read -r what a b r goal <<<"$row"
  printf '  %-48s %14s %14s %7s %9s\n' "$what" "$a" "$b" "$r" "$goal"
done
caller_summary=$(for row in "${caller_rows[@]}"; do
  IFS='|' read -r what a b r goal <<<"$row"; [ "$r" = - ] && r=$a; printf '%s=%s ' "${what%%:*}" "$r"; done)
