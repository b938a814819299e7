# Sourced by scripts/bench.sh and each scripts/bench/AREA.sh: a release build of pg_stress installed
# into a throwaway cluster (shared_buffers 1GB) with a fresh database, and the helpers every area's
# comparisons use. Variants alternate, REPS times each; the best time of each is compared (noise only
# adds time).
[ -n "${BENCH_LIB_LOADED:-}" ] && return 0
BENCH_LIB_LOADED=1
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
cd "$here"
db=pg_stress_bench
REPS=${REPS:-3}
ROWS=${ROWS:-1000000}
MEMORY_ROWS=${MEMORY_ROWS:-10000000}

scripts/pgcluster.sh stop bench
# BENCH_NO_INSTALL=1 measures the build already installed (to compare two builds, A/B).
if [ -z "${BENCH_NO_INSTALL:-}" ]; then
  echo "== building and installing pg_stress (release)"
  cargo pgrx install --release --pg-config "$PG_CONFIG" "${pgrx_features[@]}" "${pgrx_install_flags[@]}" >/dev/null
fi
# (listening on loopback TCP too, for the target area's connections; initdb's trust applies there)
eval "$(scripts/pgcluster.sh start bench "shared_buffers = '1GB'" "max_wal_size = '4GB'" "cron.database_name = 'postgres'" \
         "listen_addresses = '127.0.0.1'" \
         "max_worker_processes = 64" "stress.max_workers = 64" \
         "shared_preload_libraries = '$(preload_libraries pg_cron pg_stat_statements)'")"
export PGHOST PGPORT PGUSER
bench_tmp=$(mktemp -d)
trap 'rm -rf "$bench_tmp"' EXIT
psql=("$pg_bindir/psql" -X -q -At -v ON_ERROR_STOP=1)
pgbench=$pg_bindir/pgbench
PGOPTIONS="-c client_min_messages=warning" "${psql[@]}" -d postgres \
  -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
PGOPTIONS="-c client_min_messages=warning" "${psql[@]}" -d "$db" -c "CREATE EXTENSION pg_stress" -c "SET stress.progress_interval = 0"
sql() { PGOPTIONS="-c client_min_messages=warning -c stress.progress_interval=0" "${psql[@]}" -d "$db" -c "$1"; }
now() { date +%s.%N; }
# seconds taken by one SQL statement (after a checkpoint, so no variant pays for another's writes)
timed() { sql "CHECKPOINT" >/dev/null; local s; s=$(now); sql "$1" >/dev/null; awk -v s="$s" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }'; }
min() { printf '%s\n' "$@" | sort -g | head -1; }
# await_run ID: wait for a run started with wait => false to end, polling from short sessions (a
# session that waits inside stress.wait holds a snapshot, and with it the run's dead rows)
await_run() {
  local status=""
  # (its row appears when its first worker has started)
  while [ -z "$status" ] || [ "$status" = running ]; do
    sleep 0.5
    status=$(sql "SELECT status FROM stress.runs WHERE id = $1")
  done
}
# call_run SQL: the run id (first column) of a CALL of a pg_stress procedure
call_run() { sql "$1" | cut -d'|' -f1; }
# the variants of a round in rotating order: rotate ROUND A B C → round 1: A B C, 2: B C A, …
rotate() { local r=$1; shift; local v=("$@") n=$#; for ((j = 0; j < n; j++)); do echo "${v[$(((j + r - 1) % n))]}"; done; }
# 1000000 → 1M
human() { awk -v n="$1" 'BEGIN { if (n >= 1e6) printf "%gM", n / 1e6; else if (n >= 1e3) printf "%gk", n / 1e3; else print n }'; }
# milliseconds one statement takes, timed by psql in a session with max_parallel_workers_per_gather $1
stmt_ms() {
  "${psql[@]}" -d "$db" -c "SET max_parallel_workers_per_gather = $1" -c '\timing on' -c "$2" \
    | awk '/^Time:/ { t = $2 } END { print t }'
}
# goal WHAT VALUE OP LIMIT: one of make bench's goals (OP >=, <= or "within": |VALUE| <= LIMIT).
# Prints whether it was met; a miss (or no figure at all) is kept in goals_missed, and bench.sh exits
# non-zero naming every one. (A statement, never in $(…): the array must be this shell's.)
goals_missed=()
goal() {
  local what=$1 value=$2 op=$3 limit=$4 met
  met=$(awk -v v="$value" -v l="$limit" -v op="$op" 'BEGIN {
          if (v !~ /^-?[0-9.]+$/) { print 0; exit }
          v += 0; if (op == ">=") print (v >= l); else if (op == "<=") print (v <= l); else print ((v < 0 ? -v : v) <= l) }')
  if [ "$met" = 1 ]; then
    echo "   goal met: $what = $value ($op $limit)"
  else
    echo "   GOAL MISSED: $what = ${value:-no figure} (must be $op $limit)"
    goals_missed+=("$what = ${value:-no figure} (must be $op $limit)")
  fi
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# time_and_peak SQL: run SQL in its own session and print "seconds MB": its time, and by how many MB
# that backend's private memory (RssAnon: not shared buffers) grew at its peak, sampled every 50 ms
time_and_peak() {
  local out=$bench_tmp/timed client pid="" start_kb peak_kb kb
  PGAPPNAME=stress_bench_memory PGOPTIONS="-c stress.progress_interval=0 -c client_min_messages=warning" "${psql[@]}" -d "$db" \
    -c "SELECT pg_sleep(1)" -c '\timing on' -c "$1" >"$out" &
  client=$!
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
  awk -v a="$start_kb" -v b="$peak_kb" '/^Time:/ { t = $2 } END { printf "%.2f %.1f\n", t / 1000, (b - a) / 1024 }' "$out"
}
# peak_growth SQL: only the MB of time_and_peak
peak_growth() { time_and_peak "$1" | awk '{ print $2 }'; }
