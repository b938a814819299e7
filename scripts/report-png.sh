#!/usr/bin/env bash
# A PNG of stress.report_html(RUN_ID) as headless Chromium draws it (docs/report.png is one).
#
#   scripts/report-png.sh RUN_ID OUT.png [HEIGHT]
#
# Connects with psql as the PG* variables say (e.g. eval "$(scripts/pgcluster.sh env demo)").
# HEIGHT is the window's, in pixels (default 2600); the page is 1000 pixels wide.
set -euo pipefail
usage="usage: scripts/report-png.sh RUN_ID OUT.png [HEIGHT]"
run_id=${1:?$usage}
out=${2:?$usage}
height=${3:-2600}
[[ $run_id =~ ^[0-9]+$ && $height =~ ^[0-9]+$ ]] || { echo "$usage" >&2; exit 2; }
source "$(dirname "$0")/env.sh"
command -v chromium >/dev/null || "$here/scripts/setup.sh"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$pg_bindir/psql" -X -Atq -v ON_ERROR_STOP=1 -c "SELECT stress.report_html($run_id)" > "$dir/report.html"
# (--no-sandbox: as root, Chromium's sandbox refuses to start)
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="1000,$height" \
  --screenshot="$dir/report.png" "file://$dir/report.html" 2>/dev/null >&2
cp "$dir/report.png" "$out"
echo "$out: run $run_id"
