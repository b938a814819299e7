#!/usr/bin/env bash
# make bench, the cost curve: how time and memory grow with size and workers (README's table).
#   generate_orders at CURVE_SIZES rows (workers 1 and 2): time, rows/s, the backend's memory peak
#   generate_dataset at CURVE_SIZES orders: time, memory peak
#   checksum of those orders: one process and the default parallel settings
#   run_load at 1, 2, 8 and 32 workers, a read-only mix and the trading mix, on the smallest dataset
# Run alone, or by scripts/bench.sh with every area.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CURVE_SIZES=${CURVE_SIZES:-1000000 10000000}
CURVE_SECONDS=${CURVE_SECONDS:-10}
curve_rows=()

echo "== cost curve: generation"
for n in $CURVE_SIZES; do
  for w in 1 2; do
    sql "DROP SCHEMA IF EXISTS stress_data CASCADE" >/dev/null
    sql "CHECKPOINT" >/dev/null
    read -r t mb < <(time_and_peak "SELECT stress.generate_orders($n, seed => 1, workers => $w)")
    rate=$(awk -v n="$n" -v t="$t" 'BEGIN { printf "%.0f", n / t }')
    echo "   generate_orders($(human "$n"), workers => $w): $t s, $rate rows/s, backend memory +$mb MB"
    curve_rows+=("generate_orders $(human "$n") rows, workers $w|$t s|$rate rows/s|+$mb MB")
  done
done
for n in $(printf '%s\n' $CURVE_SIZES | sort -gr); do
  sql "DROP SCHEMA IF EXISTS stress_data CASCADE" >/dev/null
  sql "CHECKPOINT" >/dev/null
  read -r t mb < <(time_and_peak "SELECT count(*) FROM stress.generate_dataset(orders => $n, seed => 1, workers => 2)")
  rows=$(sql "SELECT sum(n) FROM (SELECT count(*) AS n FROM stress_data.accounts UNION ALL SELECT count(*) FROM stress_data.orders
              UNION ALL SELECT count(*) FROM stress_data.trades UNION ALL SELECT count(*) FROM stress_data.positions
              UNION ALL SELECT count(*) FROM stress_data.market_data UNION ALL SELECT count(*) FROM stress_data.audit_log) x")
  rate=$(awk -v n="$rows" -v t="$t" 'BEGIN { printf "%.0f", n / t }')
  echo "   generate_dataset(orders => $(human "$n"), workers => 2): $t s, $rows rows in six tables ($rate rows/s), backend memory +$mb MB"
  curve_rows+=("generate_dataset $(human "$n") orders ($(human "$rows") rows), workers 2|$t s|$rate rows/s|+$mb MB")
  sql "VACUUM ANALYZE stress_data.orders" >/dev/null
  for workers in 0 "$(sql "SHOW max_parallel_workers_per_gather")"; do
    ck=()
    for ((i = 1; i <= 3; i++)); do ck+=("$(stmt_ms "$workers" "SELECT stress.checksum('stress_data.orders')")"); done
    m=$(median "${ck[@]}")
    label="one process"; [ "$workers" != 0 ] && label="$workers parallel workers"
    rate=$(awk -v n="$n" -v t="$m" 'BEGIN { printf "%.0f", n / t * 1000 }')
    echo "   checksum of $(human "$n") orders, $label: $m ms ($rate rows/s)"
    curve_rows+=("checksum $(human "$n") orders, $label|$m ms|$rate rows/s|")
  done
done

echo "== cost curve: run_load on $(human "$(printf '%s\n' $CURVE_SIZES | sort -g | head -1)") orders, ${CURVE_SECONDS} s per point"
sql "VACUUM ANALYZE" >/dev/null
for mix in '{"select": 1}' default; do
  label="read-only mix {\"select\": 1}"; arg=", mix => '$mix'"
  [ "$mix" = default ] && label="trading mix (the seed's default)" arg=""
  base=""
  for workers in 1 2 8 32; do
    sql "CHECKPOINT" >/dev/null
    run=$(sql "SELECT stress.run_load('$CURVE_SECONDS seconds', workers => $workers$arg, wait => false)")
    await_run "$run"
    read -r ops p50 p99 errors < <(sql "SELECT round(ops_per_sec::numeric), round(p50_ms::numeric, 2), round(p99_ms::numeric, 2), errors
                                        FROM stress.results WHERE run_id = $run AND name = 'total'" | tr '|' ' ')
    [ -z "$base" ] && base=$ops
    echo "   $label, $workers workers: $ops ops/s ($(ratio "$ops" "$base")x one worker), p50 $p50 ms, p99 $p99 ms, $errors errors"
    curve_rows+=("run_load, $label, $workers workers|$ops ops/s|p50 $p50 ms, p99 $p99 ms|$(ratio "$ops" "$base")x 1 worker")
  done
done

echo
echo "COST CURVE ($(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), PostgreSQL $(sql "SHOW server_version"), shared_buffers $(sql "SHOW shared_buffers"))"
for row in "${curve_rows[@]}"; do
  IFS='|' read -r what a b c <<<"$row"
  printf '  %-62s %12s %24s %14s\n' "$what" "$a" "$b" "$c"
done
