#!/usr/bin/env bash
# make bench, floors: pg_stress against what the server itself cannot beat, side by side, variants
# alternating (the order rotates each round), fresh tables before every variant, medians of
# FLOOR_ROUNDS rounds; one table of ratios at the end, each with what limits it.
#   generation   generate_orders vs copying the same rows from an existing table and building the
#                same four indexes (INSERT … SELECT, then the primary key and three CREATE INDEX)
#   checksum     stress.checksum vs SELECT count(created_at): a scan that deforms every row, at the
#                same parallel settings (one process; then the defaults, parallel for both)
#   run_load     a custom transaction (insert, update, select) vs the same statements and COMMITs in
#                a PL/pgSQL loop inside one backend per worker, and vs pgbench with the same script
#   benchmark    stress.benchmark's p50 vs pg_stat_statements' mean execution time, same statement
# Run alone, or by scripts/bench.sh with every area.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FLOOR_SIZES=${FLOOR_SIZES:-1000000 10000000}
FLOOR_ROUNDS=${FLOOR_ROUNDS:-3}
FLOOR_SECONDS=${FLOOR_SECONDS:-10}
floor_rows=()
tmp=$bench_tmp
# floor_row WHAT OURS FLOOR RATIO GOAL LIMIT
floor_row() { floor_rows+=("$1|$2|$3|$4|$5|$6"); }

# ---------------------------------------------------------------------------------------------------
copy_floor="INSERT INTO floor_copy.orders SELECT * FROM floor_src.orders;
  ALTER TABLE floor_copy.orders ADD PRIMARY KEY (id);
  CREATE INDEX ON floor_copy.orders (status);
  CREATE INDEX ON floor_copy.orders (symbol, created_at);
  CREATE INDEX ON floor_copy.orders (account_id, id)"
for n in $FLOOR_SIZES; do
  echo "== floor: generate_orders($n) into an empty table with its four indexes, workers => 1 and 2, vs copying"
  echo "   the same rows from an existing table and building the same indexes ($FLOOR_ROUNDS rounds)"
  sql "DROP SCHEMA IF EXISTS floor_src CASCADE; DROP SCHEMA IF EXISTS floor_copy CASCADE" >/dev/null
  PGOPTIONS="-c client_min_messages=warning -c stress.progress_interval=0 -c stress.data_schema=floor_src" \
    "${psql[@]}" -d "$db" -c "SELECT stress.generate_orders($n, seed => 1, workers => 2)" >/dev/null
  sql "VACUUM ANALYZE floor_src.orders" >/dev/null
  w1=() w2=() cp=()
  for ((i = 1; i <= FLOOR_ROUNDS; i++)); do
    for variant in $(rotate "$i" w1 w2 copy); do
      sql "DROP SCHEMA IF EXISTS stress_data CASCADE; DROP SCHEMA IF EXISTS floor_copy CASCADE;
           SELECT stress.generate_orders(0); CREATE SCHEMA floor_copy;
           CREATE TABLE floor_copy.orders (LIKE stress_data.orders INCLUDING CONSTRAINTS)" >/dev/null
      case $variant in
        w1) w1+=("$(timed "SELECT stress.generate_orders($n, seed => $i, workers => 1)")") ;;
        w2) w2+=("$(timed "SELECT stress.generate_orders($n, seed => $i, workers => 2)")") ;;
        copy) cp+=("$(timed "$copy_floor")") ;;
      esac
    done
    echo "   round $i: workers 1 ${w1[-1]} s, workers 2 ${w2[-1]} s, copy + index ${cp[-1]} s"
  done
  a=$(median "${w1[@]}") b=$(median "${w2[@]}") c=$(median "${cp[@]}")
  rate() { awk -v n="$n" -v t="$1" 'BEGIN { printf "%.0f", n / t }'; }
  echo "   medians: workers 1 $a s ($(rate "$a") rows/s), workers 2 $b s ($(rate "$b") rows/s), copy + index $c s"
  floor_row "generate_orders $(human "$n"), workers 1" "$a s" "$c s" "$(ratio "$a" "$c")" "<= 1.00" \
    "the same heap, WAL and index builds as the copy, plus computing every row in this backend"
  floor_row "generate_orders $(human "$n"), workers 2" "$b s" "$c s" "$(ratio "$b" "$c")" "<= 1.00" \
    "rows computed by a worker while this backend writes; left: the copy's own writing and index builds"
  sql "DROP SCHEMA IF EXISTS stress_data CASCADE; DROP SCHEMA IF EXISTS floor_copy CASCADE" >/dev/null

  echo "== floor: checksum vs SELECT count(created_at) on the same $n orders, one process and then the"
  echo "   default parallel settings for both (5 alternations each, median)"
  for workers in 0 "$(sql "SHOW max_parallel_workers_per_gather")"; do
    ck=() sc=()
    for ((i = 1; i <= 5; i++)); do
      for variant in $(rotate "$i" ck scan); do
        if [ "$variant" = ck ]; then ck+=("$(stmt_ms "$workers" "SELECT stress.checksum('floor_src.orders')")")
        else sc+=("$(stmt_ms "$workers" "SELECT count(created_at) FROM floor_src.orders")"); fi
      done
    done
    a=$(median "${ck[@]}") c=$(median "${sc[@]}")
    label="one process"; [ "$workers" != 0 ] && label="max_parallel_workers_per_gather $workers"
    echo "   $label: checksum $a ms, count(created_at) $c ms  (rounds: ${ck[*]} / ${sc[*]})"
    floor_row "checksum $(human "$n"), $label" "$a ms" "$c ms" "$(ratio "$a" "$c")" "<= 1.50" \
      "encoding and hashing each row (XXH3-128 of ~110 bytes) beside the same deforming scan"
  done
  sql "DROP SCHEMA floor_src CASCADE" >/dev/null
done

# ---------------------------------------------------------------------------------------------------
echo "== floor: a custom transaction (insert, update, select; bench/custom_txn.pgbench) through run_load,"
echo "   through a PL/pgSQL loop inside one backend per worker (the same statements and a COMMIT each),"
echo "   and through pgbench -M prepared; ${FLOOR_SECONDS} s each, synchronous_commit off (so the harnesses"
echo "   are measured, not the WAL flush), $FLOOR_ROUNDS rounds"
sql "CREATE OR REPLACE PROCEDURE public.floor_loop(seconds float8, INOUT txns bigint DEFAULT 0)
     LANGUAGE plpgsql AS \$\$
     DECLARE k bigint; v bigint; stop timestamptz := clock_timestamp() + seconds * interval '1 second';
     BEGIN
       WHILE clock_timestamp() < stop LOOP
         k := 1 + floor(random() * 100000)::bigint;
         INSERT INTO floor_t.hits VALUES (k, 'a');
         UPDATE floor_t.items SET n = n + 1 WHERE id = k;
         SELECT i.n INTO v FROM floor_t.items i WHERE i.id = k;
         COMMIT;
         txns := txns + 1;
       END LOOP;
     END \$\$" >/dev/null
fresh_custom() {
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
sql "ALTER DATABASE $db SET synchronous_commit = off" >/dev/null
for conc in 1 2; do
  rl=() rw=() pl=() pb=()
  for ((i = 1; i <= FLOOR_ROUNDS; i++)); do
    for variant in $(rotate "$i" run_load plpgsql pgbench run_load_waiting); do
      fresh_custom
      case $variant in
        run_load)
          # (wait => false, then polled from short sessions: the detached run, which the procedure
          # that waits, the run_load_waiting variant, must equal)
          run=$(sql "SELECT stress.run_load('$FLOOR_SECONDS seconds', workers => $conc, transactions => '$custom', wait => false)")
          await_run "$run"
          rl+=("$(sql "SELECT round(ops_per_sec::numeric, 1) FROM stress.results WHERE run_id = $run AND name = 'total'")") ;;
        run_load_waiting)
          run=$(call_run "CALL stress.run_load_proc('$FLOOR_SECONDS seconds', workers => $conc, transactions => '$custom')")
          rw+=("$(sql "SELECT round(ops_per_sec::numeric, 1) FROM stress.results WHERE run_id = $run AND name = 'total'")") ;;
        plpgsql)
          for ((s = 1; s <= conc; s++)); do sql "CALL public.floor_loop($FLOOR_SECONDS)" >"$tmp/loop.$s" & done
          wait
          pl+=("$(cat "$tmp"/loop.* | awk -v t="$FLOOR_SECONDS" '{ s += $1 } END { printf "%.1f", s / t }')")
          rm -f "$tmp"/loop.* ;;
        pgbench)
          pb+=("$("$pgbench" -n -M prepared -c "$conc" -j "$conc" -T "$FLOOR_SECONDS" -f bench/custom_txn.pgbench "$db" 2>&1 \
                 | awk '/^tps = / { printf "%.1f", $3 }')") ;;
      esac
    done
    echo "   $conc worker(s), round $i: run_load ${rl[-1]} ops/s (waiting caller ${rw[-1]}), PL/pgSQL loop ${pl[-1]} txn/s, pgbench ${pb[-1]} tps"
  done
  a=$(median "${rl[@]}") b=$(median "${pl[@]}") c=$(median "${pb[@]}") d=$(median "${rw[@]}")
  floor_row "run_load custom txn, $conc worker(s), vs PL/pgSQL loop" "$a ops/s" "$b txn/s" "$(ratio "$a" "$b")" ">= 0.95" \
    "its own transaction per operation through SPI, a statement timeout and live counters per operation"
  floor_row "  the same, waited for by CALL stress.run_load_proc" "$d ops/s" "$b txn/s" "$(ratio "$d" "$b")" "-" \
    "the procedure commits before it waits: no snapshot, no xid held (0.5.0's waiting SELECT read 0.76 here)"
  floor_row "run_load custom txn, $conc worker(s), vs pgbench" "$a ops/s" "$c tps" "$(ratio "$a" "$c")" ">= 1.00" \
    "pgbench pays a client round trip per statement (5 a transaction); run_load none"
done
sql "ALTER DATABASE $db RESET synchronous_commit" >/dev/null
sql "DROP SCHEMA floor_t CASCADE; DROP PROCEDURE public.floor_loop" >/dev/null

# ---------------------------------------------------------------------------------------------------
if has_extension pg_stat_statements; then
  echo "== floor: stress.benchmark's p50 vs pg_stat_statements' mean execution time, a primary-key lookup,"
  echo "   50,000 executions, $FLOOR_ROUNDS rounds"
  sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  if [ "$(sql "SELECT to_regclass('public.bench_pk') IS NOT NULL")" != t ]; then
    sql "CREATE TABLE public.bench_pk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000000) g;
         ALTER TABLE public.bench_pk ADD PRIMARY KEY (id)" >/dev/null
    sql "VACUUM ANALYZE public.bench_pk" >/dev/null
  fi
  bp=() ss=()
  for ((i = 1; i <= FLOOR_ROUNDS; i++)); do
    read -r p m < <(sql "SET pg_stat_statements.track = 'all';
         SELECT pg_stat_statements_reset();
         CREATE TEMP TABLE b AS SELECT * FROM stress.benchmark(ARRAY['SELECT v FROM public.bench_pk WHERE id = 424242'],
                                                              iterations => 50000, warmup => 0);
         SELECT round((b.p50_ms * 1000)::numeric, 3) || ' ' || round((s.mean_exec_time * 1000)::numeric, 3)
         FROM b, pg_stat_statements s
         WHERE s.query LIKE 'SELECT v FROM public.bench_pk WHERE %' AND s.calls = b.calls
           AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())" | tail -1)
    bp+=("$p") ss+=("$m")
    echo "   round $i: benchmark p50 $p us, pg_stat_statements mean $m us"
  done
  a=$(median "${bp[@]}") c=$(median "${ss[@]}")
  floor_row "benchmark p50, PK lookup, vs pg_stat_statements" "$a us" "$c us" "$(ratio "$a" "$c")" "-" \
    "SPI's portal and snapshot per execution inside the timed interval; pg_stat_statements times the executor only"

else
  echo "== floor: stress.benchmark vs pg_stat_statements: skipped, $("$PG_CONFIG" --version) has no pg_stat_statements"
fi

# ---------------------------------------------------------------------------------------------------
print_floor_table() {
  echo
  echo "FLOOR TABLE: pg_stress against what the server itself cannot beat (medians of $FLOOR_ROUNDS rounds or more,"
  echo "alternating, fresh tables each round; ratio = pg_stress / floor: for times lower is better, for rates higher)"
  printf '  %-58s %14s %14s %6s %8s\n' "" "pg_stress" "floor" "ratio" "goal"
  local row what ours fl r goal limit
  for row in "${floor_rows[@]}"; do
    IFS='|' read -r what ours fl r goal limit <<<"$row"
    printf '  %-58s %14s %14s %6s %8s\n' "$what" "$ours" "$fl" "$r" "$goal"
    printf '      limited by: %s\n' "$limit"
  done
}
print_floor_table
