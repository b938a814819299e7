//! `stress.report_html(run_id)`.

use pgrx::prelude::*;

/// Run `run_id` as one self-contained HTML page (inline CSS and SVG, no script, nothing fetched):
/// results, targets, throughput and latency over time with error and deadlock marks, wait events,
/// latency percentiles, the ramp it is a step of, parameters, environment. With `baseline`, the
/// page opens with what differs between the two runs' environments and each figure's verdict
/// (stress.compare_runs).
/// `psql -Atc "SELECT stress.report_html(42)" > run42.html`
#[pg_extern(stable, parallel_safe, name = "report_html")]
#[search_path(pg_catalog, pg_temp)]
fn report_html_compared(run_id: Option<i64>, baseline: default!(Option<i64>, "NULL")) -> String {
    crate::report_html::report_html(run_id, baseline)
}

/// The symbol 0.7.0's and earlier releases' `stress.report_html(bigint)` names, for a database whose
/// SQL is older than this library (before ALTER EXTENSION pg_stress UPDATE).
#[pg_extern(sql = false, stable, parallel_safe)]
fn report_html(run_id: Option<i64>) -> String {
    crate::report_html::report_html(run_id, None)
}

extension_sql!(
    r#"
COMMENT ON FUNCTION stress.report_html(bigint, bigint) IS
    'A run as one self-contained HTML page with charts (and, with a baseline, what differs and each verdict): psql -Atc "SELECT stress.report_html(42)" > run42.html';
"#,
    name = "report_html_comment",
    requires = [report_html_compared]
);
