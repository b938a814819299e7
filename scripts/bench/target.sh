#!/usr/bin/env bash
# make bench, target (stress.target: load over real connections). Over loopback TCP against this
# same server, the custom transaction of the floor table (bench/custom_txn.pgbench: BEGIN, insert,
# update, select, END, five round trips each) through run_load's workers connected with libpq,
# through pgbench -M prepared with the same clients, and through SPI (no protocol at all).
# Alternating rounds, medians, as ratios. Run alone (BENCH_ONLY=target) or by scripts/bench.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGET_ROUNDS=${TARGET_ROUNDS:-5}
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
  # (the goal on the round-by-round ratios, as farm-bench pairs them: the machine's drift between
  # rounds, larger than the difference measured, cancels within a round)
  paired=()
  for ((i = 0; i < TARGET_ROUNDS; i++)); do paired+=("$(ratio "${tg[$i]}" "${pb[$i]}")"); done
  p=$(median "${paired[@]}")
  echo "   medians, $conc client(s): target $a, pgbench $b, SPI $c, extended $e  -> RATIO target / pgbench = $p (round by round: ${paired[*]}; of the medians $(ratio "$a" "$b")), target / SPI = $(ratio "$a" "$c"), extended / prepared = $(ratio "$e" "$a")"
  target_rows+=("c$conc: target/pgbench=$p target/SPI=$(ratio "$a" "$c") extended/prepared=$(ratio "$e" "$a")")
  goal "target / pgbench -M prepared, custom txn over loopback TCP, $conc client(s)" "$p" ">=" 1.0
done

# Connections per worker, as pgbench -c 4 -j 1: one worker keeps 4 connections busy
# (stress.target_connections_per_worker = 4), against pgbench's one thread over 4 clients, and
# against 4 workers of one connection each (a process per connection, as before).
mx=() pj=() w4=()
for ((i = 1; i <= TARGET_ROUNDS; i++)); do
  for variant in $(rotate "$i" multiplexed pgbench workers); do
    fresh_items
    case $variant in
      multiplexed) mx+=("$(run_ops "-c stress.target=${tcp// /\\ } -c stress.target_connections_per_worker=4" 1)") ;;
      workers) w4+=("$(run_ops "-c stress.target=${tcp// /\\ }" 4)") ;;
      pgbench)
        pj+=("$("$pgbench" -n -M prepared -h 127.0.0.1 -c 4 -j 1 -T "$TARGET_SECONDS" -f bench/custom_txn.pgbench "$db" 2>&1 \
               | awk '/^tps = / { printf "%.1f", $3 }')") ;;
    esac
  done
  echo "   4 connections, round $i: 1 worker × 4 ${mx[-1]} ops/s, pgbench -c 4 -j 1 ${pj[-1]} tps, 4 workers × 1 ${w4[-1]} ops/s"
done
paired=()
for ((i = 0; i < TARGET_ROUNDS; i++)); do paired+=("$(ratio "${mx[$i]}" "${pj[$i]}")"); done
p=$(median "${paired[@]}")
a=$(median "${mx[@]}") b=$(median "${pj[@]}") c=$(median "${w4[@]}")
echo "   medians, 4 connections: 1 worker × 4 $a, pgbench -j 1 $b, 4 workers $c  -> RATIO multiplexed / pgbench -j 1 = $p (round by round: ${paired[*]}), multiplexed / 4 workers = $(ratio "$a" "$c")"
target_rows+=("c4 j1: multiplexed/pgbench=$p multiplexed/4-workers=$(ratio "$a" "$c")")
goal "1 worker × 4 connections / pgbench -c 4 -j 1, custom txn over loopback TCP" "$p" ">=" 1.0

# A concurrent benchmark of the target: CALL stress.benchmark_proc's workers (2, prepared, over
# loopback TCP) on one primary-key lookup vs pgbench -M prepared -c 2 with the same SELECT
# (bench/lookup.pgbench). Its qps is over its measured executions only, as pgbench's tps over -T.
lookup_iterations=${TARGET_LOOKUPS:-100000}
bq=() bp=() bl=() pl=()
for ((i = 1; i <= TARGET_ROUNDS; i++)); do
  for variant in $(rotate "$i" benchmark pgbench); do
    case $variant in
      benchmark)
        run=$(PGOPTIONS="-c client_min_messages=warning -c stress.target=${tcp// /\\ }" "${psql[@]}" -d "$db" \
                -c "CALL stress.benchmark_proc(ARRAY['SELECT n FROM floor_t.items WHERE id = 4242'], iterations => $lookup_iterations, concurrency => 2)" | cut -d'|' -f1)
        bq+=("$(sql "SELECT round(qps::numeric, 1) FROM stress.benchmark_results($run)")")
        bl+=("$(sql "SELECT round(avg_ms::numeric, 4) FROM stress.benchmark_results($run)")") ;;
      pgbench)
        out=$("$pgbench" -n -M prepared -h 127.0.0.1 -c 2 -j 2 -T "$TARGET_SECONDS" -f bench/lookup.pgbench "$db" 2>&1)
        bp+=("$(awk '/^tps = / { printf "%.1f", $3 }' <<<"$out")")
        pl+=("$(awk '/latency average/ { print $4 }' <<<"$out")") ;;
    esac
  done
  echo "   2 clients, one lookup, round $i: benchmark_proc on the target ${bq[-1]} qps (mean ${bl[-1]} ms), pgbench ${bp[-1]} tps (mean ${pl[-1]} ms)"
done
paired=()
for ((i = 0; i < TARGET_ROUNDS; i++)); do paired+=("$(ratio "${bq[$i]}" "${bp[$i]}")"); done
p=$(median "${paired[@]}")
echo "   medians: benchmark_proc $(median "${bq[@]}") qps, pgbench $(median "${bp[@]}") tps  -> RATIO benchmark / pgbench = $p (round by round: ${paired[*]})"
target_rows+=("c2: benchmark_proc/pgbench=$p")

# Through PgBouncer (session pooling, prepared statements, a server connection per client: the
# pooler's own cost, not a wait for the pool) vs straight to the server, the same run both ways.
if [ -x /usr/sbin/pgbouncer ]; then
  bouncer_dir=$(scripts/pgcluster.sh root)/pgbouncer-bench
  rm -rf "$bouncer_dir" && mkdir -p "$bouncer_dir"
  bouncer_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf '"%s" ""\n' "$PGUSER" > "$bouncer_dir/userlist.txt"
  cat > "$bouncer_dir/pgbouncer.ini" <<INI
[databases]
$db = host=127.0.0.1 port=$PGPORT dbname=$db
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $bouncer_dir/userlist.txt
pool_mode = session
default_pool_size = 4
logfile = $bouncer_dir/pgbouncer.log
pidfile = $bouncer_dir/pgbouncer.pid
INI
  # (PgBouncer will not run as root: as root, as the clusters' postgres user)
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres:postgres "$bouncer_dir"
    runuser -u postgres -- /usr/sbin/pgbouncer -d "$bouncer_dir/pgbouncer.ini"
  else
    /usr/sbin/pgbouncer -d "$bouncer_dir/pgbouncer.ini"
  fi
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$bouncer_port") 2>/dev/null && break; sleep 0.1; done
  via="host=127.0.0.1 port=$bouncer_port dbname=$db"
  bo=() di=()
  for ((i = 1; i <= TARGET_ROUNDS; i++)); do
    for variant in $(rotate "$i" bouncer direct); do
      fresh_items
      case $variant in
        bouncer) bo+=("$(run_ops "-c stress.target=${via// /\\ }" 2)") ;;
        direct) di+=("$(run_ops "-c stress.target=${tcp// /\\ }" 2)") ;;
      esac
    done
    echo "   2 clients, round $i: through PgBouncer ${bo[-1]} ops/s, direct ${di[-1]} ops/s"
  done
  kill "$(cat "$bouncer_dir/pgbouncer.pid")" 2>/dev/null || true
  a=$(median "${bo[@]}") b=$(median "${di[@]}")
  echo "   medians, 2 clients: through PgBouncer $a, direct $b  -> RATIO PgBouncer / direct = $(ratio "$a" "$b")"
  target_rows+=("c2: PgBouncer/direct=$(ratio "$a" "$b")")
else
  echo "   (no /usr/sbin/pgbouncer: make setup installs it; no PgBouncer comparison)"
fi
sql "ALTER DATABASE $db RESET synchronous_commit" >/dev/null
sql "DROP SCHEMA floor_t CASCADE" >/dev/null
