//! Runs compared with their noise: `stress.compare_runs` (against one run or a set of runs) and
//! `stress.environment_diff` (what the runs ran on). `stress.assert_targets` and
//! `stress.baseline_runs` are SQL, in sql/compare.sql.

use crate::compare::{self, Compared};
use pgrx::prelude::*;

type ComparedRow = (
    name!(name, String),
    name!(metric, String),
    name!(baseline_value, Option<f64>),
    name!(candidate_value, Option<f64>),
    name!(change, Option<f64>),
    name!(change_low, Option<f64>),
    name!(change_high, Option<f64>),
    name!(verdict, String),
    name!(regressed, Option<bool>),
    name!(gate, bool),
    name!(note, String),
);

fn rows(compared: Vec<Compared>) -> TableIterator<'static, ComparedRow> {
    TableIterator::new(compared.into_iter().map(|c| {
        (
            c.name.clone(),
            c.metric.to_owned(),
            c.judged.baseline,
            c.judged.candidate,
            c.judged.change,
            c.judged.low,
            c.judged.high,
            c.verdict().to_owned(),
            c.regressed(),
            c.gate,
            c.judged.note.clone(),
        )
    }))
}

/// Per measured thing and metric (ops_per_sec, p50/p99/p999_ms, error_rate): the baseline's and
/// the candidate's figures, the change and its interval at `confidence`, and a verdict —
/// regressed, improved, unchanged, or not enough data (the note says how much would be). A change
/// is regressed only when it is both beyond `tolerance` and beyond the noise. `gate`: one of the
/// figures `stress.assert_targets` judges by default. The runs' environments, when they differ,
/// come first as a NOTICE.
#[allow(clippy::type_complexity)]
#[pg_extern(stable, parallel_safe, name = "compare_runs")]
fn compare_runs_with(
    baseline: Option<i64>,
    candidate: Option<i64>,
    tolerance: default!(f64, 0.10),
    confidence: default!(f64, 0.95),
) -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(metric, String),
        name!(baseline_value, Option<f64>),
        name!(candidate_value, Option<f64>),
        name!(change, Option<f64>),
        name!(change_low, Option<f64>),
        name!(change_high, Option<f64>),
        name!(verdict, String),
        name!(regressed, Option<bool>),
        name!(gate, bool),
        name!(note, String),
    ),
> {
    rows(compare::compare_runs(
        &[baseline],
        candidate,
        tolerance,
        confidence,
    ))
}

/// `stress.compare_runs` against a baseline of several runs (for example
/// `stress.baseline_runs(candidate)`): their figures pooled, their spread as the noise.
#[allow(clippy::type_complexity)]
#[pg_extern(stable, parallel_safe, name = "compare_runs")]
fn compare_runs_with_set(
    baseline: Option<Vec<Option<i64>>>,
    candidate: Option<i64>,
    tolerance: default!(f64, 0.10),
    confidence: default!(f64, 0.95),
) -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(metric, String),
        name!(baseline_value, Option<f64>),
        name!(candidate_value, Option<f64>),
        name!(change, Option<f64>),
        name!(change_low, Option<f64>),
        name!(change_high, Option<f64>),
        name!(verdict, String),
        name!(regressed, Option<bool>),
        name!(gate, bool),
        name!(note, String),
    ),
> {
    rows(compare::compare_runs(
        &baseline.unwrap_or_default(),
        candidate,
        tolerance,
        confidence,
    ))
}

type DifferenceRow = (
    name!(item, String),
    name!(baseline, Option<String>),
    name!(candidate, Option<String>),
);

fn differences(
    baseline: &[Option<i64>],
    candidate: Option<i64>,
) -> TableIterator<'static, DifferenceRow> {
    TableIterator::new(
        compare::environment_diff(baseline, candidate)
            .into_iter()
            .map(|d| (d.item, d.baseline, d.candidate)),
    )
}

/// What differs between the environments two runs recorded: server and pg_stress versions,
/// settings, CPUs, memory, extensions, the data's size (sizes when they moved by more than 10%).
#[pg_extern(stable, parallel_safe, name = "environment_diff")]
fn environment_diff_with(
    baseline: Option<i64>,
    candidate: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(item, String),
        name!(baseline, Option<String>),
        name!(candidate, Option<String>),
    ),
> {
    differences(&[baseline], candidate)
}

/// `stress.environment_diff` against each run of a baseline set.
#[pg_extern(stable, parallel_safe, name = "environment_diff")]
fn environment_diff_with_set(
    baseline: Option<Vec<Option<i64>>>,
    candidate: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(item, String),
        name!(baseline, Option<String>),
        name!(candidate, Option<String>),
    ),
> {
    differences(&baseline.unwrap_or_default(), candidate)
}

extension_sql!(
    r#"
COMMENT ON FUNCTION stress.compare_runs(bigint, bigint, float8, float8) IS
    'Per measured thing and metric: baseline, candidate, change and its interval, verdict (regressed, improved, unchanged, not enough data) weighed against the noise.';
COMMENT ON FUNCTION stress.compare_runs(bigint[], bigint, float8, float8) IS
    'stress.compare_runs against a baseline of several runs (e.g. stress.baseline_runs(candidate)), their spread as the noise.';
COMMENT ON FUNCTION stress.environment_diff(bigint, bigint) IS
    'What differs between two runs'' recorded environments: versions, settings, CPUs, memory, extensions, data size.';
COMMENT ON FUNCTION stress.environment_diff(bigint[], bigint) IS
    'stress.environment_diff against each run of a baseline set.';
"#,
    name = "compare_comments",
    requires = [
        compare_runs_with,
        compare_runs_with_set,
        environment_diff_with,
        environment_diff_with_set
    ]
);
