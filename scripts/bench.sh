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
cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config "${pgrx_install_flags[@]}" >/dev/null
eval "$(scripts/pgcluster.sh start bench "shared_buffers = '1GB'" "max_wal_size = '4GB'" "cron.database_name = 'postgres'")"
export PGHOST PGPORT PGUSER
psql=(/usr/lib/postgresql/15/bin/psql -X -q -At -v ON_ERROR_STOP=1)
PGOPTIONS="-c client_min_messages=warning" "${psql[@]}" -d postgres \
  -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
PGOPTIONS="-c client_min_messages=warning" "${psql[@]}" -d "$db" -c "CREATE EXTENSION pg_stress" -c "SET stress.progress_interval = 0"
sql() { PGOPTIONS="-c client_min_messages=warning -c stress.progress_interval=0" "${psql[@]}" -d "$db" -c "$1"; }
now() { date +%s.%N; }
# seconds taken by one SQL statement (after a checkpoint, so no variant pays for another's writes)
timed() { sql "CHECKPOINT" >/dev/null; local s; s=$(now); sql "$1" >/dev/null; awk -v s="$s" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }'; }
min() { printf '%s\n' "$@" | sort -g | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

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
  CREATE INDEX ON bench_sql.orders_noindex (symbol, created_at)"
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
PGAPPNAME=stress_bench_memory PGOPTIONS="-c stress.progress_interval=0" "${psql[@]}" -d "$db" \
  -c "SELECT pg_sleep(1)" -c "SELECT stress.generate_orders($MEMORY_ROWS, seed => 1)" >/dev/null &
client=$!
pid=""
while [ -z "$pid" ]; do
  pid=$(sql "SELECT pid FROM pg_stat_activity WHERE application_name = 'stress_bench_memory'")
done
rss() { awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true; }
start_kb=$(rss) peak_kb=$start_kb s=$(now)
while kill -0 "$client" 2>/dev/null; do
  kb=$(rss); [ -n "$kb" ] && [ "$kb" -gt "$peak_kb" ] && peak_kb=$kb
  sleep 0.05
done
wait "$client"
secs=$(awk -v s="$s" -v e="$(now)" 'BEGIN { printf "%.1f", e - s - 1 }')
grow_mb=$(awk -v a="$start_kb" -v b="$peak_kb" 'BEGIN { printf "%.1f", (b - a) / 1024 }')
echo "   $MEMORY_ROWS rows in ~$secs s; backend private memory (RssAnon) grew by $grow_mb MB at peak   (must be <= ~100 MB)"
echo "   maintenance_work_mem = $(sql "SHOW maintenance_work_mem") (the index rebuild's sort memory is part of that peak)"

echo
echo "SUMMARY generate_orders/SQL=$gen_ratio checksum_speedup=$(ratio "$m" "$c")x memory_growth_mb=$grow_mb"
