# Sourced: sets PG_CONFIG, the PostgreSQL 15 that pg_stress builds against, tests and benchmarks with.
# PG_CONFIG if given; else the `pg_config` on PATH when it is PostgreSQL 15 (resolved to its own
# bindir, so that installing a newer server later does not move it); else Debian's PostgreSQL 15.
# Nothing here runs before the packages are installed: the path may not exist yet.
if [ -z "${PG_CONFIG:-}" ]; then
  if command -v pg_config >/dev/null 2>&1 && pg_config --version 2>/dev/null | grep -q '^PostgreSQL 15\.'; then
    PG_CONFIG=$(pg_config --bindir)/pg_config
  else
    PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
  fi
fi
export PG_CONFIG
