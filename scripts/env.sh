# Sourced by the other scripts: PATH for cargo, PG_CONFIG (scripts/pg_config.sh), and how `cargo pgrx`
# must run as this user.
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

# shared_preload_libraries for a cluster: pg_stress, then those of MODULES this version has (pg_cron
# is Debian's for 15 only; the PyPI build of 16 has no contrib).
preload_libraries() {
  local list=pg_stress m
  for m in "$@"; do
    [ -f "$pkglibdir/$m.so" ] && list="$list, $m"
  done
  printf '%s\n' "$list"
}
# has_extension NAME: whether this version has it (its control file)
has_extension() { [ -f "$extdir/$1.control" ]; }
