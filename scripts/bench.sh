#!/usr/bin/env bash
# make bench: each pg_stress figure side by side with its baseline, in one run, as ratios.
# Runs against a throwaway cluster (shared_buffers 1GB) with a release build of pg_stress.
# Variants alternate, REPS times each; the best time of each is compared (noise only adds time).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$here"
REPS=${REPS:-3}
ROWS=${ROWS:-1000000}
MEMORY_ROWS=${MEMORY_ROWS:-10000000}
db=pg_stress_bench

echo "== building and installing pg_stress (release)"
scripts/pgcluster.sh stop bench
cargo pgrx install --release --pg-config "$PG_CONFIG" "${pgrx_install_flags[@]}" >/dev/null
eval "$(scripts/pgcluster.sh start bench "shared_buffers = '1GB'" "max_wal_size = '4GB'" "cron.database_name = 'postgres'" \
         "shared_preload_libraries = 'pg_stress, pg_cron, pg_stat_statements'")"
export PGHOST PGPORT PGUSER
psql=("$pg_bindir/psql" -X -q -At -v ON_ERROR_STOP=1)
PGOPTIONS="-c client_min_messages=warning" "${psql[@]}" -d postgres \
  -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
PGOPTIONS="-c client_min_messages=warning" "${psql[@]}" -d "$db" -c "CREATE EXTENSION pg_stress" -c "SET stress.progress_interval = 0"
sql() { PGOPTIONS="-c client_min_messages=warning -c stress.progress_interval=0" "${psql[@]}" -d "$db" -c "$1"; }
now() { date +%s.%N; }
# seconds taken by one SQL statement (after a checkpoint, so no variant pays for another's writes)
timed() { sql "CHECKPOINT" >/dev/null; local s; s=$(now); sql "$1" >/dev/null; awk -v s="$s" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }'; }
min() { printf '%s\n' "$@" | sort -g | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# peak_growth SQL: run SQL in its own session and print by how many MB that backend's private memory
# (RssAnon: not shared buffers) grew at its peak, sampled every 50 ms
peak_growth() {
  PGAPPNAME=stress_bench_memory PGOPTIONS="-c stress.progress_interval=0" "${psql[@]}" -d "$db" \
    -c "SELECT pg_sleep(1)" -c "$1" >/dev/null &
  local client=$! pid="" start_kb peak_kb kb
  while [ -z "$pid" ]; do
    pid=$(sql "SELECT pid FROM pg_stat_activity WHERE application_name = 'stress_bench_memory'")
  done
  start_kb=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status") peak_kb=$start_kb
  while kill -0 "$client" 2>/dev/null; do
    kb=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$kb" ] && [ "$kb" -gt "$peak_kb" ] && peak_kb=$kb
    sleep 0.05
  done
  wait "$client"
  awk -v a="$start_kb" -v b="$peak_kb" 'BEGIN { printf "%.1f", (b - a) / 1024 }'
}

echo "== query benchmark: stress.benchmark's mean vs pg_stat_statements' mean_exec_time, same statement, same calls"
pgbench=$pg_bindir/pgbench
sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
sql "DROP TABLE IF EXISTS public.bench_pk;
     CREATE TABLE public.bench_pk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000000) g;
     ALTER TABLE public.bench_pk ADD PRIMARY KEY (id)" >/dev/null
sql "VACUUM ANALYZE public.bench_pk" >/dev/null
# One session per statement: reset, the measured executions (no warmup, so pg_stat_statements sees
# exactly those: track = all records statements run through SPI), then read both.
versus_pgss() {  # versus_pgss QUERY ITERATIONS (pg_stat_statements shows its constants as parameters)
  sql "SET pg_stat_statements.track = 'all';
       SELECT pg_stat_statements_reset();
       CREATE TEMP TABLE b AS SELECT * FROM stress.benchmark(ARRAY['$1'], iterations => $2, warmup => 0);
       SELECT format('   %s
     stress.benchmark: %s calls, avg %s ms, p50 %s ms, p99 %s ms; pg_stat_statements: %s calls, mean_exec_time %s ms
     -> benchmark mean / pg_stat_statements mean = %s (difference %s%%, %s us per execution)',
                     b.query, b.calls, round(b.avg_ms::numeric, 5), round(b.p50_ms::numeric, 5), round(b.p99_ms::numeric, 5),
                     s.calls, round(s.mean_exec_time::numeric, 5),
                     round((b.avg_ms / s.mean_exec_time)::numeric, 3),
                     round(((b.avg_ms / s.mean_exec_time - 1) * 100)::numeric, 1),
                     round(((b.avg_ms - s.mean_exec_time) * 1000)::numeric, 2))
       FROM b, pg_stat_statements s
       WHERE s.query LIKE split_part(b.query, ' WHERE ', 1) || ' WHERE %' AND s.calls = b.calls AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
}
versus_pgss "SELECT v FROM public.bench_pk WHERE id = 424242" 100000
versus_pgss "SELECT count(*) FROM public.bench_pk WHERE id BETWEEN 100000 AND 102000" 20000
# The harness's own cost per iteration: the whole call's time per execution, less the executions'.
harness=$(sql "CREATE TEMP TABLE h AS SELECT clock_timestamp() AS t0;
              CREATE TEMP TABLE hb AS SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 100000, warmup => 0);
              SELECT round((extract(epoch FROM clock_timestamp() - h.t0) * 1e6 / 100000 - hb.avg_ms * 1000)::numeric, 2)
              FROM h, hb")
echo "   harness overhead per iteration (subtransaction, SPI connection, clock, histogram), outside the measured latency: $harness us"
echo "== SELECT 1: stress.benchmark p50 over 100,000 iterations, next to pgbench -S (1 client, -M prepared, 10 s)"
$pgbench -i -q -s 10 "$db" >/dev/null 2>&1
select1=$(sql "SELECT round(p50_ms::numeric, 4) FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 100000)")
pgbench_s=$(sql "SELECT round(p50_ms::numeric, 4) || ' ms p50, ' || round(qps::numeric) || ' qps'
                 FROM stress.benchmark(ARRAY['SELECT abalance FROM pgbench_accounts WHERE aid = 424242'], iterations => 100000)")
pgbench_lat=$($pgbench -n -S -M prepared -c 1 -T 10 "$db" 2>&1 | awk '/latency average/ { print $4 }')
echo "   stress.benchmark SELECT 1: p50 $select1 ms; pgbench -S's query: $pgbench_s; pgbench -S: latency average $pgbench_lat ms"
echo "   (pgbench's latency includes the client round trip over the socket; stress.benchmark times execution in the server)"
echo "== the same lookup on 2 connections: stress.benchmark(concurrency => 2) qps vs pgbench -S -c 2 tps"
conc_qps=$(sql "SELECT round(qps::numeric) FROM stress.benchmark(ARRAY['SELECT abalance FROM pgbench_accounts WHERE aid = 424242'],
                                                              iterations => 400000, concurrency => 2)")
conc_tps=$($pgbench -n -S -M prepared -c 2 -j 2 -T 10 "$db" 2>&1 | awk '/^tps = / { printf "%d", $3 }')
echo "   stress.benchmark $conc_qps qps, pgbench -S $conc_tps tps  -> RATIO $(ratio "$conc_qps" "$conc_tps")"
if [ "${BENCH_ONLY:-}" = query ]; then exit 0; fi

# The pure-SQL equivalent of generate_orders: the same columns from random(), into an identical table.
baseline_insert="INSERT INTO bench_sql.orders
  SELECT g, 1 + floor(random() * 10000)::bigint,
         (ARRAY['BTC/USDT','ETH/USDT','SOL/USDT','BNB/USDT','XRP/USDT','DOGE/USDT','ADA/USDT','AVAX/USDT',
                'LINK/USDT','DOT/USDT','LTC/USDT','TRX/USDT','ATOM/USDT','UNI/USDT','NEAR/USDT','XLM/USDT',
                'ETC/USDT','FIL/USDT','APT/USDT','ARB/USDT'])[1 + floor(random() * 20)::int],
         CASE WHEN random() < 0.52 THEN 'BUY' ELSE 'SELL' END,
         (ARRAY['LIMIT','MARKET','STOP'])[1 + floor(random() * 3)::int],
         (ARRAY['OPEN','PARTIAL','FILLED','CANCELLED','REJECTED'])[1 + floor(random() * 5)::int],
         round((0.001 + random() * 10)::numeric, 8), round((1 + random() * 65000)::numeric, 2),
         timestamptz '2025-01-01 00:00+00' + random() * interval '30 days'
  FROM generate_series(1, $ROWS) g"
load_then_index="${baseline_insert//bench_sql.orders/bench_sql.orders_noindex};
  ALTER TABLE bench_sql.orders_noindex ADD PRIMARY KEY (id);
  CREATE INDEX ON bench_sql.orders_noindex (status);
  CREATE INDEX ON bench_sql.orders_noindex (symbol, created_at);
  CREATE INDEX ON bench_sql.orders_noindex (account_id)"
fresh_tables() {
  sql "DROP SCHEMA IF EXISTS stress_data CASCADE; DROP SCHEMA IF EXISTS bench_sql CASCADE;
       SELECT stress.generate_orders(0); CREATE SCHEMA bench_sql;
       CREATE TABLE bench_sql.orders (LIKE stress_data.orders INCLUDING ALL);
       CREATE TABLE bench_sql.orders_noindex (LIKE stress_data.orders INCLUDING CONSTRAINTS)" >/dev/null
}

echo "== generate_orders($ROWS) into an empty table with its indexes, vs INSERT … SELECT generate_series ($REPS rounds)"
ours=() base=() lti=()
for ((i = 1; i <= REPS; i++)); do
  fresh_tables
  ours+=("$(timed "SELECT stress.generate_orders($ROWS, seed => $i)")")
  base+=("$(timed "$baseline_insert")")
  # load-then-index: the same SQL into a table without indexes, then build them
  lti+=("$(timed "$load_then_index")")
  echo "   round $i: generate_orders ${ours[-1]} s, SQL insert ${base[-1]} s, SQL load-then-index ${lti[-1]} s"
done
g=$(min "${ours[@]}") b=$(min "${base[@]}") l=$(min "${lti[@]}")
gen_ratio=$(ratio "$g" "$b")
echo "   best: generate_orders $g s ($(awk -v n=$ROWS -v t=$g 'BEGIN{printf "%.0f", n/t}') rows/s), SQL $b s, load-then-index $l s"
echo "   RATIO generate_orders / SQL INSERT … SELECT = $gen_ratio   (must be <= 0.50, aim <= 0.35)"
echo "   ratio generate_orders / SQL load-then-index = $(ratio "$g" "$l")"

echo "== checksum vs md5(string_agg(t::text, '' ORDER BY id)) on $ROWS orders ($REPS rounds)"
ck=() md=()
for ((i = 1; i <= REPS; i++)); do
  ck+=("$(timed "SELECT stress.checksum('stress_data.orders')")")
  md+=("$(timed "SELECT md5(string_agg(t::text, '' ORDER BY id)) FROM stress_data.orders t")")
  echo "   round $i: checksum ${ck[-1]} s, md5(string_agg) ${md[-1]} s"
done
c=$(min "${ck[@]}") m=$(min "${md[@]}")
echo "   RATIO md5(string_agg) / checksum = $(ratio "$m" "$c")x faster   (must be >= 3)"

echo "== memory: generate_orders($MEMORY_ROWS) into an empty table"
sql "DROP SCHEMA IF EXISTS stress_data CASCADE; DROP SCHEMA IF EXISTS bench_sql CASCADE; CHECKPOINT" >/dev/null
grow_mb=$(peak_growth "SELECT stress.generate_orders($MEMORY_ROWS, seed => 1)")
echo "   backend private memory (RssAnon) grew by $grow_mb MB at peak   (must be <= ~100 MB)"
echo "   maintenance_work_mem = $(sql "SHOW maintenance_work_mem") (the index rebuild's sort memory is part of that peak)"


# ---------------------------------------------------------------------------------------------------
echo "== every table: generator vs the equivalent INSERT … SELECT into an identical table (same constraints,"
echo "   indexes and foreign keys), one round each"
symbols="ARRAY['BTC/USDT','ETH/USDT','SOL/USDT','BNB/USDT','XRP/USDT','DOGE/USDT','ADA/USDT','AVAX/USDT',
                'LINK/USDT','DOT/USDT','LTC/USDT','TRX/USDT','ATOM/USDT','UNI/USDT','NEAR/USDT','XLM/USDT',
                'ETC/USDT','FIL/USDT','APT/USDT','ARB/USDT']"
sql "DROP SCHEMA IF EXISTS stress_data CASCADE; DROP SCHEMA IF EXISTS bench_sql CASCADE; CREATE SCHEMA bench_sql" >/dev/null
# like TABLE [REFERENCES …]: an empty bench_sql copy of a generated table, foreign keys pointing where ours do
like() {
  local t=$1; shift
  sql "CREATE TABLE bench_sql.$t (LIKE stress_data.$t INCLUDING ALL)" >/dev/null
  for fk in "$@"; do sql "ALTER TABLE bench_sql.$t ADD FOREIGN KEY $fk" >/dev/null; done
}
summary=()
compare_generator() {  # compare_generator TABLE ROWS OURS_SQL BASELINE_SQL
  local table=$1 rows=$2 o b r
  o=$(timed "$3"); b=$(timed "$4"); r=$(ratio "$o" "$b")
  printf '   %-12s %9s rows: generator %7.2f s (%8.0f rows/s), SQL %7.2f s   RATIO %s\n' \
    "$table" "$rows" "$o" "$(awk -v n="$rows" -v t="$o" 'BEGIN{print n/t}')" "$b" "$r"
  summary+=("$table=$r")
}
sql "SELECT stress.generate_accounts(0)" >/dev/null; like accounts
compare_generator accounts 1000000 "SELECT stress.generate_accounts(1000000, seed => 1)" \
  "INSERT INTO bench_sql.accounts SELECT g, 'user.' || g, (ARRAY['USDT','USD','EUR','BTC'])[1 + floor(random() * 4)::int],
          round((random() * 100000)::numeric, 2), timestamptz '2024-01-01 00:00+00' + random() * interval '365 days'
   FROM generate_series(1, 1000000) g"
sql "SELECT stress.generate_orders(0)" >/dev/null; like orders "(account_id) REFERENCES stress_data.accounts (id)"
compare_generator orders 1000000 "SELECT stress.generate_orders(1000000, seed => 1, accounts => 1000000)" \
  "${baseline_insert//floor(random() * 10000)/floor(random() * 1000000)}"
sql "SELECT stress.generate_trades(0)" >/dev/null
like trades "(order_id) REFERENCES stress_data.orders (id)" "(account_id) REFERENCES stress_data.accounts (id)"
compare_generator trades 2000000 "SELECT stress.generate_trades(2000000, seed => 1)" \
  "INSERT INTO bench_sql.trades
   SELECT row_number() OVER (), o.id, o.account_id, o.symbol, o.side, round(o.quantity / 4, 8), o.price,
          round(o.quantity * o.price * 0.001 / 4, 8), o.created_at + g * random() * interval '10 seconds'
   FROM stress_data.orders o CROSS JOIN generate_series(1, 4) g WHERE o.status IN ('FILLED', 'PARTIAL') LIMIT 2000000"
sql "SELECT stress.generate_positions()" >/dev/null   # creates the table (and fills it once)
like positions "(account_id) REFERENCES stress_data.accounts (id)"
compare_generator positions "$(sql "SELECT count(*) FROM stress_data.positions")" "SELECT stress.generate_positions()" \
  "INSERT INTO bench_sql.positions
   SELECT account_id, symbol, sum(CASE side WHEN 'BUY' THEN quantity ELSE -quantity END),
          round(sum(quantity * price) / sum(quantity), 8), max(executed_at)
   FROM stress_data.trades GROUP BY account_id, symbol"
sql "SELECT stress.generate_market_data('{}')" >/dev/null; like market_data
compare_generator market_data 864000 "SELECT stress.generate_market_data(NULL, '2025-01-01', '2025-01-31', '1 minute', seed => 1)" \
  "INSERT INTO bench_sql.market_data
   SELECT s, ts, p, round(p * 1.001, 8), round(p * 0.999, 8), p, round((random() * 1000)::numeric, 8)
   FROM unnest($symbols) s, generate_series(timestamptz '2025-01-01 00:00+00', '2025-01-30 23:59+00', '1 minute') ts,
        LATERAL (SELECT round((100 * (1 + random() * 0.01) + 0 * extract(epoch FROM ts))::numeric, 8) AS p) x"
sql "SELECT stress.generate_audit_log(0)" >/dev/null; like audit_log
compare_generator audit_log 1000000 "SELECT stress.generate_audit_log(1000000, seed => 1)" \
  "INSERT INTO bench_sql.audit_log
   SELECT g, timestamptz '2025-01-01 00:00+00' + random() * interval '30 days', 'user:' || (1 + floor(random() * 10000)),
          (ARRAY['ORDER_PLACED','ORDER_CANCELLED','TRADE_EXECUTED','LOGIN'])[1 + floor(random() * 4)::int],
          (ARRAY['orders','trades','accounts'])[1 + floor(random() * 3)::int], 1 + floor(random() * 1000000),
          jsonb_build_object('ip', '10.' || floor(random() * 256) || '.' || floor(random() * 256) || '.' || floor(random() * 255),
                             'user_agent', 'web/4.2.1', 'request_id', md5(random()::text))
   FROM generate_series(1, 1000000) g"

echo "== generate_dataset(orders => 1000000): all six tables, workers => 1 and 2 alternately, best of 2"
# per table of the last generate_dataset: rows, seconds, and how much of it was index builds
dataset_tables() {
  sql "SELECT format('   %-12s %9s rows %7s s (indexes %5s s)', split_part(r.name, '.', 2), r.rows,
              round(r.seconds::numeric, 2), round(coalesce((r.details->>'index_build_seconds')::numeric, 0), 2))
       FROM stress.runs d, stress.runs s JOIN stress.results r ON r.run_id = s.id
       WHERE d.id = (SELECT max(id) FROM stress.runs WHERE kind = 'generate_dataset')
         AND s.started_at >= d.started_at AND s.kind <> 'generate_dataset' ORDER BY s.id"
}
dataset_digest() {
  sql "SELECT md5(string_agg(stress.checksum(format('stress_data.%I', t)::regclass), ',' ORDER BY t))
       FROM unnest('{accounts,orders,trades,positions,market_data,audit_log}'::text[]) t"
}
ds1=() ds2=()
for rep in 1 2; do
  for w in 1 2; do
    sql "DROP SCHEMA IF EXISTS stress_data CASCADE; DROP SCHEMA IF EXISTS bench_sql CASCADE" >/dev/null
    t=$(timed "SELECT stress.generate_dataset(orders => 1000000, seed => 1, workers => $w)")
    if [ "$w" = 1 ]; then ds1+=("$t"); else ds2+=("$t"); fi
    if [ "$rep" = 2 ]; then
      echo "  workers => $w, last round:"
      dataset_tables
      eval "digest$w=\$(dataset_digest)"
    fi
  done
done
ds=$(min "${ds1[@]}") ds_par=$(min "${ds2[@]}")
echo "   total: workers => 1 $ds s, workers => 2 $ds_par s  -> ratio $(ratio "$ds_par" "$ds")   (rounds: ${ds1[*]} / ${ds2[*]})"
echo "   same data with 1 and 2 workers: $([ "$digest1" = "$digest2" ] && echo yes || echo "NO ($digest1 vs $digest2)")"

echo "== memory: generate_trades($MEMORY_ROWS) over the dataset's orders"
sql "DROP TABLE stress_data.trades CASCADE; CHECKPOINT" >/dev/null
trade_growth=$(peak_growth "SELECT stress.generate_trades($MEMORY_ROWS, seed => 1)")
echo "   backend private memory (RssAnon) grew by $trade_growth MB at peak   (must be <= ~100 MB)"

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
  run=$(sql "SELECT stress.run_load('$LOAD_SECONDS seconds', workers => $conc, mix => '{\"execute_trade\": 1}')")
  ops=$(sql "SELECT round(ops_per_sec::numeric, 1) FROM stress.results WHERE run_id = $run AND name = 'total'")
  load_ratios+=("c$conc/sync_$sync=$(ratio "$ops" "$tps")")
  echo "   concurrency $conc, synchronous_commit $sync: pgbench $tps tps, run_load $ops ops/s  -> RATIO run_load / pgbench = $(ratio "$ops" "$tps")   (must be >= 1.3)"
}
for conc in 2 8; do compare_load "$conc" on; done
for conc in 2 8; do compare_load "$conc" off; done
sql "ALTER DATABASE $db RESET synchronous_commit" >/dev/null
echo "== load: open model at 1000 ops/s for 30 s (default mix, 4 workers), and the server's commit count"
commits() { sql "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }
before=$(commits)
run=$(sql "SELECT stress.run_load('30 seconds', workers => 4, rate => 1000)")
sleep 1
after=$(commits)
sql "SELECT format('   achieved %s ops/s of 1000 (%s%%), p50 %s ms, p99 %s ms, schedule lag p99 %s ms',
                   round((details->>'successes')::numeric / seconds::numeric, 1),
                   round(((details->>'successes')::numeric / seconds::numeric - 1000) / 10, 2),
                   round(p50_ms::numeric, 2), round(p99_ms::numeric, 2),
                   round((details->'schedule_lag_ms'->>'p99')::numeric, 2))
     FROM stress.results WHERE run_id = $run AND name = 'total'"
# Besides the operations, a run commits: the run's row (the first worker, first), per worker its
# preparation and its results, the run's closing, one per sample; and two of this script's sessions (the
# first count, the run_load call) commit in between. Autovacuum's transactions count too (noise).
expected=$(sql "SELECT (details->>'successes')::int8 + 1 + 2 * 4 + 1 + (SELECT count(*) FROM stress.samples WHERE run_id = $run) + 2
                FROM stress.results WHERE run_id = $run AND name = 'total'")
echo "   xact_commit grew by $((after - before)); the run's operations and bookkeeping: $expected  -> difference $(awk -v a="$((after - before))" -v b="$expected" 'BEGIN { printf "%.3f", (a - b) * 100 / b }')%   (must be within 0.1%)"
echo
echo "SUMMARY generate_orders/SQL=$gen_ratio checksum_speedup=$(ratio "$m" "$c")x orders_memory_mb=$grow_mb"
echo "        per table: ${summary[*]}  dataset=${ds}s dataset_workers2=${ds_par}s trades_memory_mb=$trade_growth"
echo "        load run_load/pgbench: ${load_ratios[*]}"
echo "        query: SELECT 1 p50 ${select1} ms, pgbench -S latency ${pgbench_lat} ms; concurrency 2 benchmark/pgbench -S $(ratio "$conc_qps" "$conc_tps")"
