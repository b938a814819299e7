#!/usr/bin/env bash
# Every test: unit tests and #[pg_test]s (cargo pgrx test, against a real PostgreSQL 15 it starts),
# then the integration tests in tests/ against a throwaway cluster with pg_stress and pg_cron preloaded.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$here"

# The pgrx test cluster's data directory: owned by whoever runs PostgreSQL.
pgdata_base=$("$here/scripts/pgcluster.sh" root)/pgrx-test-data
mkdir -p "$pgdata_base"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdata_base"
export CARGO_PGRX_TEST_PGDATA=$pgdata_base

echo "== formatting and lints (cargo fmt --check; clippy, warnings denied, every unsafe block documented)"
cargo fmt --check
cargo clippy --all-targets --features "pg_test integration" -- -D warnings
# (and the PostgreSQL 18 build, whose version-specific branches differ: src/postgres/version.rs)
cargo clippy --lib --tests --no-default-features --features "pg18 pg_test" -- -D warnings

echo "== released SQL unchanged; a changed SQL surface is a new version"
scripts/release-check.sh

echo "== module graph (no import cycle at any level of src/)"
python3 scripts/module-deps.py
python3 scripts/function-lengths.py

echo "== unit tests and #[pg_test]s (PostgreSQL 15)"
cargo pgrx test pg15

# The same #[pg_test]s on the other versions of PG_VERSIONS (default "15 18"; 18 from a PyPI
# wheel, scripts/setup.sh): what needs a module the version lacks (pg_cron) skips, saying so.
for v in ${PG_VERSIONS:-15 18}; do
  [ "$v" = 15 ] && continue
  echo "== unit tests and #[pg_test]s (PostgreSQL $v)"
  mkdir -p "$pgdata_base-$v"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdata_base-$v"
  CARGO_PGRX_TEST_PGDATA="$pgdata_base-$v" cargo pgrx test "pg$v"
done

echo "== integration tests (tests/)"
# The upgrade tests install earlier releases and update them: PostgreSQL needs their install scripts
# (pgrx installs only the current version's and the upgrade scripts).
# (every release's frozen script but this version's own, which cargo pgrx test just installed)
version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
for script in sql/released/pg_stress--*.sql; do
  [ "$script" = "sql/released/pg_stress--$version.sql" ] && continue
  if [ -w "$extdir" ]; then cp "$script" "$extdir/"; else sudo cp "$script" "$extdir/"; fi
done
# cargo pgrx test just installed this build into PostgreSQL; start a cluster that preloads it.
"$here/scripts/pgcluster.sh" destroy it
"$here/scripts/pgcluster.sh" destroy it-nopreload
"$here/scripts/pgcluster.sh" destroy it-standby
"$here/scripts/pgcluster.sh" destroy it-standby-reads
trap '"$here/scripts/pgcluster.sh" destroy it-chaos; "$here/scripts/pgcluster.sh" destroy it; "$here/scripts/pgcluster.sh" destroy it-nopreload; "$here/scripts/pgcluster.sh" destroy it-standby; "$here/scripts/pgcluster.sh" destroy it-standby-reads' EXIT
# A second server without shared_preload_libraries: what must (and must not) work without it.
eval "$("$here/scripts/pgcluster.sh" start it-nopreload "shared_preload_libraries = ''")"
export STRESS_NOPRELOAD_PGPORT=$PGPORT STRESS_NOPRELOAD_PGHOST=$PGHOST
# pg_cron runs its jobs in background workers: the cluster listens on no TCP port for it to connect to.
eval "$("$here/scripts/pgcluster.sh" start it "shared_buffers = '256MB'" "cron.database_name = 'postgres'" \
        "cron.use_background_workers = on" "shared_preload_libraries = 'pg_stress, pg_cron, pg_stat_statements'")"
export PGHOST PGPORT PGUSER PG_BINDIR=$pg_bindir
cargo test --features integration --test integration -- --test-threads 2

echo "== no internal error (XX000) and no Rust panic in any test server's log"
# (log_line_prefix puts each line's SQLSTATE after the process id: scripts/pgcluster.sh)
if grep -nE '\] XX000 |panicked at' "$("$here/scripts/pgcluster.sh" root)"/clusters/it*/postgres.log; then
  echo "the lines above are internal errors or panics: each must be a clear ERROR with its own SQLSTATE" >&2
  exit 1
fi
