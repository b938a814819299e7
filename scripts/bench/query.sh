#!/usr/bin/env bash
# make bench, queries (stress.benchmark vs pg_stat_statements and pgbench -S).
# Side by side with the baseline, as ratios; run alone, or by scripts/bench.sh with every area.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

echo "== query benchmark: stress.benchmark's mean vs pg_stat_statements' mean_exec_time, same statement, same calls"
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
echo "== the same lookup on 2 connections: CALL stress.benchmark_proc(concurrency => 2) qps vs pgbench -S -c 2 tps"
conc_run=$(call_run "CALL stress.benchmark_proc(ARRAY['SELECT abalance FROM pgbench_accounts WHERE aid = 424242'],
                                                   iterations => 400000, concurrency => 2)")
conc_qps=$(sql "SELECT round(qps::numeric) FROM stress.benchmark_results($conc_run)")
conc_tps=$($pgbench -n -S -M prepared -c 2 -j 2 -T 10 "$db" 2>&1 | awk '/^tps = / { printf "%d", $3 }')
conc_ratio=$(ratio "$conc_qps" "$conc_tps")
echo "   stress.benchmark $conc_qps qps, pgbench -S $conc_tps tps  -> RATIO $conc_ratio"
