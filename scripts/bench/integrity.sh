#!/usr/bin/env bash
# make bench, integrity (stress.checksum vs md5(string_agg)).
# Side by side with the baseline, as ratios; run alone, or by scripts/bench.sh with every area.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The orders to checksum: generate.sh's, or made here when run alone.
if [ "$(sql "SELECT coalesce((SELECT count(*) FROM stress_data.orders WHERE to_regclass('stress_data.orders') IS NOT NULL), 0)" 2>/dev/null || echo 0)" -lt "$ROWS" ]; then
  sql "DROP SCHEMA IF EXISTS stress_data CASCADE" >/dev/null
  sql "SELECT stress.generate_orders($ROWS, seed => 1)" >/dev/null
fi
sql "VACUUM ANALYZE stress_data.orders" >/dev/null
echo "== checksum vs md5(string_agg(t::text, '' ORDER BY id)) on $ROWS orders ($REPS rounds)"
ck=() md=()
for ((i = 1; i <= REPS; i++)); do
  ck+=("$(timed "SELECT stress.checksum('stress_data.orders')")")
  md+=("$(timed "SELECT md5(string_agg(t::text, '' ORDER BY id)) FROM stress_data.orders t")")
  echo "   round $i: checksum ${ck[-1]} s, md5(string_agg) ${md[-1]} s"
done
c=$(min "${ck[@]}") m=$(min "${md[@]}")
ck_speedup=$(ratio "$m" "$c")
echo "   RATIO md5(string_agg) / checksum = ${ck_speedup}x faster"
goal "checksum speed-up over md5(string_agg)" "$ck_speedup" ">=" 3
