#!/usr/bin/env bash
# make bench, target (stress.target: load over real connections). Over loopback TCP against this
# same server, the custom transaction of the floor table (bench/custom_txn.pgbench: BEGIN, insert,
# update, select, END, five round trips each) through run_load's workers connected with libpq,
# through pgbench -M prepared with the same clients, and through SPI (no protocol at all).
# Alternating rounds, medians, as ratios. Run alone (BENCH_ONLY=target) or by scripts/bench.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGET_ROUNDS=${TARGET_ROUNDS:-3}
TARGET_SECONDS=${TARGET_SECONDS:-10}
tcp="host=127.0.0.1 port=$PGPORT dbname=$db"
echo "== target: the floor's custom transaction over loopback TCP ($tcp), run_load with stress.target"
echo "   vs pgbench -M prepared -h 127.0.0.1 vs run_load over SPI; ${TARGET_SECONDS} s each, synchronous_commit"
echo "   off (the harnesses are measured, not the WAL flush), $TARGET_ROUNDS rounds"
fresh_items() {
  sql "DROP SCHEMA IF EXISTS floor_t CASCADE; CREATE SCHEMA floor_t;
       CREATE TABLE floor_t.items (id bigint PRIMARY KEY, n bigint NOT NULL);
       INSERT INTO floor_t.items SELECT g, 0 FROM generate_series(1, 100000) g;
       CREATE TABLE floor_t.hits (k bigint NOT NULL, tag text NOT NULL)" >/dev/null
  sql "VACUUM ANALYZE floor_t.items" >/dev/null
  sql "CHECKPOINT" >/dev/null
}
custom='[{"name": "floor", "params": [{"distribution": "uniform", "min": 1, "max": 100000}, {"value": "a"}],
          "sql": ["INSERT INTO floor_t.hits VALUES ($1, $2)",
                  "UPDATE floor_t.items SET n = n + 1 WHERE id = $1",
                  "SELECT n FROM floor_t.items WHERE id = $1"]}]'
# ops/s of a run_load call with these settings (PGOPTIONS-style -c pairs in $1)
run_ops() {
  local run
  run=$(PGOPTIONS="-c client_min_messages=warning -c stress.progress_interval=0 $1" "${psql[@]}" -d "$db" \
          -c "CALL stress.run_load_proc('$TARGET_SECONDS seconds', workers => $2, transactions => '$custom')" | cut -d'|' -f1)
  sql "SELECT round(ops_per_sec::numeric, 1) FROM stress.results WHERE run_id = $run AND name = 'total'"
}
sql "ALTER DATABASE $db SET synchronous_commit = off" >/dev/null
target_rows=()
for conc in 1 2; do
  tg=() pb=() spi=() ex=()
  for ((i = 1; i <= TARGET_ROUNDS; i++)); do
    for variant in $(rotate "$i" target pgbench spi extended); do
      fresh_items
      case $variant in
        target) tg+=("$(run_ops "-c stress.target=${tcp// /\\ }" "$conc")") ;;
        extended) ex+=("$(run_ops "-c stress.target=${tcp// /\\ } -c stress.target_protocol=extended" "$conc")") ;;
        spi) spi+=("$(run_ops "" "$conc")") ;;
        pgbench)
          pb+=("$("$pgbench" -n -M prepared -h 127.0.0.1 -c "$conc" -j "$conc" -T "$TARGET_SECONDS" -f bench/custom_txn.pgbench "$db" 2>&1 \
                 | awk '/^tps = / { printf "%.1f", $3 }')") ;;
      esac
    done
    echo "   $conc client(s), round $i: target ${tg[-1]} ops/s (extended ${ex[-1]}), pgbench ${pb[-1]} tps, SPI ${spi[-1]} ops/s"
  done
  a=$(median "${tg[@]}") b=$(median "${pb[@]}") c=$(median "${spi[@]}") e=$(median "${ex[@]}")
  echo "   medians, $conc client(s): target $a, pgbench $b, SPI $c, extended $e  -> RATIO target / pgbench = $(ratio "$a" "$b"), target / SPI = $(ratio "$a" "$c"), extended / prepared = $(ratio "$e" "$a")"
  target_rows+=("c$conc: target/pgbench=$(ratio "$a" "$b") target/SPI=$(ratio "$a" "$c") extended/prepared=$(ratio "$e" "$a")")
  goal "target / pgbench -M prepared, custom txn over loopback TCP, $conc client(s)" "$(ratio "$a" "$b")" ">=" 1.0
done
sql "ALTER DATABASE $db RESET synchronous_commit" >/dev/null
sql "DROP SCHEMA floor_t CASCADE" >/dev/null
