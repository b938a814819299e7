#!/usr/bin/env bash
# make demo: build and install pg_stress (release), start a throwaway cluster that preloads it,
# generate 1,000,000 orders, print rows/s and the checksum, run a short load over the trading dataset and
# print its report, and say how to connect and stop.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$here"

db=pg_stress_demo
echo "== building and installing pg_stress (release)"
# The cluster preloads the library: stop it so the new build is what it loads.
scripts/pgcluster.sh stop demo
cargo pgrx install --release --pg-config "$PG_CONFIG" "${pgrx_features[@]}" "${pgrx_install_flags[@]}" >/dev/null

echo "== starting the demo cluster ($("$PG_CONFIG" --version))"
eval "$(scripts/pgcluster.sh start demo "shared_buffers = '1GB'" "cron.database_name = '$db'")"
export PGHOST PGPORT PGUSER
psql=("$pg_bindir/psql" -X -q -v ON_ERROR_STOP=1)
PGOPTIONS="-c client_min_messages=warning" "${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
"${psql[@]}" -d "$db" -c "CREATE EXTENSION pg_stress"
# (pg_cron schedules the maintenance jobs where the version has it: Debian packages it for 15 only)
if has_extension pg_cron; then "${psql[@]}" -d "$db" -c "CREATE EXTENSION pg_cron"; fi

echo "== generating 1,000,000 orders"
"${psql[@]}" -d "$db" -P footer=off <<'SQL'
SELECT stress.generate_orders(1000000, seed => 42) AS orders_generated;
SELECT r.rows, round(r.seconds::numeric, 2) AS seconds, round(r.rows_per_sec) AS rows_per_sec,
       r.details->>'index_mode' AS index_mode
FROM stress.results r JOIN stress.runs s ON s.id = r.run_id
WHERE s.kind = 'generate_orders' ORDER BY s.id DESC LIMIT 1;
\timing on
SELECT stress.checksum('stress_data.orders') AS checksum;
\timing off
SELECT symbol, count(*) AS orders, round(avg(price), 2) AS avg_price
FROM stress_data.orders GROUP BY symbol ORDER BY orders DESC LIMIT 5;
SQL

echo "== a 10-second load run: 2 background workers, the seed's mix, over a 100,000-order dataset"
PGOPTIONS="-c stress.progress_interval=3000" "${psql[@]}" -d "$db" -P footer=off <<'SQL'
SET stress.data_schema = 'trading';   -- beside the million orders above, in schema stress_data
SELECT count(*) AS tables FROM stress.generate_dataset(orders => 100000, seed => 42);
CALL stress.run_load_proc('10 seconds', workers => 2) \gset
SELECT name AS operation, calls, errors, round(ops_per_sec) AS ops_per_sec, round(p50_ms::numeric, 2) AS p50_ms,
       round(p99_ms::numeric, 2) AS p99_ms, round(max_ms::numeric, 1) AS max_ms
FROM stress.results WHERE run_id = :run_id ORDER BY id;
SELECT key AS target, value->>'target' AS wanted, round((value->>'value')::numeric, 3) AS measured,
       value->>'pass' AS pass
FROM jsonb_each(stress.report(:run_id)->'targets') ORDER BY key;
SQL

echo "== the seed's three example queries benchmarked, and what the indexes are worth"
"${psql[@]}" -d "$db" -P footer=off <<'SQL'
SELECT query, calls, round(avg_ms::numeric, 2) AS avg_ms, round(p50_ms::numeric, 2) AS p50_ms,
       round(p99_ms::numeric, 2) AS p99_ms, round(qps::numeric, 1) AS qps
FROM stress.benchmark(ARRAY[
  'SELECT * FROM trading.orders WHERE status = ''OPEN''',
  'SELECT sum(quantity) FROM trading.trades WHERE symbol = ''BTC/USDT''',
  'SELECT o.*, t.* FROM trading.orders o JOIN trading.trades t ON o.id = t.order_id'], iterations => 10, warmup => 1);
SELECT query, indexes_used, round(with_avg_ms::numeric, 2) AS with_ms, round(without_avg_ms::numeric, 2) AS without_ms,
       round(speedup::numeric, 1) AS speedup, round(candidate_avg_ms::numeric, 2) AS candidate_ms,
       round(candidate_speedup::numeric, 1) AS candidate_speedup
FROM stress.compare_indexes(ARRAY['SELECT * FROM trading.orders WHERE status = ''OPEN''',
                                  'SELECT sum(quantity) FROM trading.trades WHERE symbol = ''BTC/USDT'''], 20,
                            candidates => ARRAY['CREATE INDEX ON trading.trades (symbol) INCLUDE (quantity)']);
SQL

# (the same version's cluster: each version's clusters live apart)
stop_with=$([ "$PG_MAJOR" = 15 ] || echo "PG_VERSION=$PG_MAJOR ")
cat <<MSG

The demo cluster is running. Connect with:
  $pg_bindir/psql -h $PGHOST -p $PGPORT -U $PGUSER $db
Stop it with:
  ${stop_with}make demo-stop
MSG
