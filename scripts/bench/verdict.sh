#!/usr/bin/env bash
# make bench, verdict: does the CI gate cry wolf, and does it see a real regression? 21
# consecutive identical runs (20 A/A pairs, each run against the one before), then 20 pairs of a
# run and a really slower one (the same transaction with a fourth read added to its three: about a
# fifth fewer operations per second). A pair alarms when `stress.assert_targets(candidate,
# baseline => previous)` fails: a figure a CI gate judges, regressed beyond the tolerance (10%) and
# the noise (95% for the gate as a whole). Beside each rate, what 0.7.0's rule (a 10% change of any
# of the 40 figures) made of the same pairs, and the gate against a baseline of the last 5 runs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERDICT_PAIRS=${VERDICT_PAIRS:-20}
VERDICT_SECONDS=${VERDICT_SECONDS:-5}
# A read-only transaction (no WAL, no dead rows, no autovacuum: consecutive runs find the server as
# the last one left it) of three range reads; the slowed one does a fourth: a quarter more work.
base='[{"name": "account", "params": [{"distribution": "uniform", "min": 1, "max": 9900}],
        "sql": ["SELECT sum(n) FROM verdict_t.accounts WHERE id BETWEEN $1 AND $1 + 100", "SELECT sum(n) FROM verdict_t.accounts WHERE id BETWEEN $1 AND $1 + 100", "SELECT sum(n) FROM verdict_t.accounts WHERE id BETWEEN $1 AND $1 + 100"]}]'
slow='[{"name": "account", "params": [{"distribution": "uniform", "min": 1, "max": 9900}],
        "sql": ["SELECT sum(n) FROM verdict_t.accounts WHERE id BETWEEN $1 AND $1 + 100", "SELECT sum(n) FROM verdict_t.accounts WHERE id BETWEEN $1 AND $1 + 100", "SELECT sum(n) FROM verdict_t.accounts WHERE id BETWEEN $1 AND $1 + 100", "SELECT sum(n) FROM verdict_t.accounts WHERE id BETWEEN $1 AND $1 + 100"]}]'
sql "DROP SCHEMA IF EXISTS verdict_t CASCADE; CREATE SCHEMA verdict_t;
     CREATE TABLE verdict_t.accounts (id int PRIMARY KEY, n bigint NOT NULL);
     INSERT INTO verdict_t.accounts SELECT g, g % 100 FROM generate_series(1, 10000) g" >/dev/null
sql "VACUUM ANALYZE verdict_t.accounts" >/dev/null
sql "CHECKPOINT" >/dev/null
run_of() { call_run "CALL stress.run_load_proc('$VERDICT_SECONDS seconds', workers => 2, transactions => '$1')"; }
# "1" when the CI gate fails the candidate $2 against baseline $1 (a run id, or an array for
# baselines =>), else "0": stress.assert_targets itself, with a target every run meets, so that only
# regressions decide
alarm() {
  local against="baseline => $1"
  case "$1" in ARRAY*) against="baselines => $1" ;; esac
  if sql "SELECT stress.assert_targets($2, min_ops_per_sec => 0, $against)" >/dev/null 2>&1; then echo 0; else echo 1; fi
}
# 0.7.0's rule: any of the figures 10% worse, whatever the noise
old_alarm() {
  sql "SELECT (count(*) > 0)::int FROM stress.compare_runs($1, $2)
       WHERE CASE metric WHEN 'ops_per_sec' THEN candidate_value < baseline_value * 0.9
                         WHEN 'error_rate' THEN candidate_value > baseline_value * 1.1 + 0.001
                         ELSE candidate_value > baseline_value * 1.1 END"
}
echo "== verdict: $VERDICT_PAIRS A/A pairs and $VERDICT_PAIRS slowed pairs, ${VERDICT_SECONDS} s runs, 2 workers"
aa=() prev=$(run_of "$base")
ids=("$prev")
false_alarms=0 old_false=0 pooled_false=0 pooled_n=0
for ((i = 1; i <= VERDICT_PAIRS; i++)); do
  run=$(run_of "$base")
  a=$(alarm "$prev" "$run") o=$(old_alarm "$prev" "$run")
  false_alarms=$((false_alarms + a)) old_false=$((old_false + o))
  if [ "${#ids[@]}" -ge 5 ]; then
    set5=$(IFS=,; echo "${ids[*]: -5}")
    p=$(alarm "ARRAY[$set5]::bigint[]" "$run")
    pooled_false=$((pooled_false + p)) pooled_n=$((pooled_n + 1))
  fi
  ids+=("$run") prev=$run
done
echo "A/A: $false_alarms false alarms of $VERDICT_PAIRS pairs (0.7.0's rule: $old_false); against the last 5 runs: $pooled_false of $pooled_n"
detected=0 old_detected=0 pooled_detected=0 drops=()
for ((i = 1; i <= VERDICT_PAIRS; i++)); do
  a_run=$(run_of "$base")
  ids+=("$a_run")
  b_run=$(run_of "$slow")
  detected=$((detected + $(alarm "$a_run" "$b_run")))
  old_detected=$((old_detected + $(old_alarm "$a_run" "$b_run")))
  set5=$(IFS=,; echo "${ids[*]: -5}")
  pooled_detected=$((pooled_detected + $(alarm "ARRAY[$set5]::bigint[]" "$b_run")))
  drops+=("$(sql "SELECT round((change * 100)::numeric, 1) FROM stress.compare_runs($a_run, $b_run) WHERE name = 'total' AND metric = 'ops_per_sec'")")
done
echo "slowed: $detected detected of $VERDICT_PAIRS pairs (0.7.0's rule: $old_detected); against the last 5 runs: $pooled_detected of $VERDICT_PAIRS; median throughput change $(median "${drops[@]}")%"
verdict_summary="false alarms $false_alarms/$VERDICT_PAIRS (0.7.0: $old_false), detected $detected/$VERDICT_PAIRS (0.7.0: $old_detected), 5-run baseline: $pooled_false/$pooled_n false, $pooled_detected/$VERDICT_PAIRS detected"
echo "one slowed pair, as stress.compare_runs gives it (the gate's figures):"
"${psql[@]}" -d "$db" -P pager=off -c "SELECT name, metric, round(baseline_value::numeric, 3) AS baseline, round(candidate_value::numeric, 3) AS candidate,
       round((change * 100)::numeric, 1) AS change_pct, round((change_low * 100)::numeric, 1) AS low_pct,
       round((change_high * 100)::numeric, 1) AS high_pct, verdict
FROM stress.compare_runs($a_run, $b_run) WHERE gate"
