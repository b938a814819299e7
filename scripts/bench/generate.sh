#!/usr/bin/env bash
# make bench, generation (the generators vs INSERT … SELECT, memory, generate_dataset).
# Side by side with the baseline, as ratios; run alone, or by scripts/bench.sh with every area.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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
  CREATE INDEX ON bench_sql.orders_noindex (account_id, id)"
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
echo "   RATIO generate_orders / SQL INSERT … SELECT = $gen_ratio   (aim <= 0.35)"
goal "generate_orders / SQL INSERT … SELECT" "$gen_ratio" "<=" 0.50
echo "   ratio generate_orders / SQL load-then-index = $(ratio "$g" "$l")"

echo "== memory: generate_orders($MEMORY_ROWS) into an empty table"
sql "DROP SCHEMA IF EXISTS stress_data CASCADE; DROP SCHEMA IF EXISTS bench_sql CASCADE; CHECKPOINT" >/dev/null
grow_mb=$(peak_growth "SELECT stress.generate_orders($MEMORY_ROWS, seed => 1)")
echo "   backend private memory (RssAnon) grew by $grow_mb MB at peak"
goal "generate_orders($MEMORY_ROWS) memory growth, MB" "$grow_mb" "<=" 100
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
echo "   backend private memory (RssAnon) grew by $trade_growth MB at peak"
goal "generate_trades($MEMORY_ROWS) memory growth, MB" "$trade_growth" "<=" 100
