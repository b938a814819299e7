//! What a run measured: `stress.results` rows of timed calls, slow executions into
//! `stress.slow_queries`, deadlocks and serialization failures into `stress.conflicts`.

use super::{as_owner, has_column};
use pgrx::JsonB;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::metrics::histogram::Latency;

/// One `stress.results` row of timed calls (a load run's operation, a benchmarked query): counts,
/// successful calls per second, latency percentiles, and the histogram itself (HdrHistogram V2:
/// what `stress.compare_runs` reads a percentile's confidence interval from).
pub fn latency_result(
    run_id: i64,
    name: &str,
    calls: i64,
    errors: i64,
    seconds: f64,
    histogram: &Latency,
    details: serde_json::Value,
) {
    let latency = &histogram.summary();
    let serialized = (latency.count > 0).then(|| histogram.serialize());
    // Statistics over no sample are NULL, not 0; so is a rate over no time.
    let measured = |v: f64| (latency.count > 0).then_some(v);
    let mut details = details;
    if let (Some(distribution), Some(map)) = (latency.distribution_json(), details.as_object_mut())
    {
        map.insert("percentiles".into(), distribution);
    }
    as_owner(|| {
        // (without the histogram into a stress.results older than 0.8.0's)
        let (column, value) = if has_column(c"results", c"histogram") {
            (", histogram", ", $15")
        } else {
            ("", "")
        };
        let mut args = vec![
            run_id.into(),
            name.into(),
            calls.into(),
            errors.into(),
            seconds.into(),
            (seconds > 0.0)
                .then(|| (calls - errors) as f64 / seconds)
                .into(),
            measured(latency.avg_ms).into(),
            measured(latency.stddev_ms).into(),
            measured(latency.p50_ms).into(),
            measured(latency.p95_ms).into(),
            measured(latency.p99_ms).into(),
            measured(latency.p999_ms).into(),
            measured(latency.max_ms).into(),
            JsonB(details).into(),
        ];
        if !column.is_empty() {
            args.push(serialized.into());
        }
        Spi::run_with_args(
            &format!(
                "INSERT INTO stress.results (run_id, name, calls, errors, seconds, ops_per_sec, avg_ms, stddev_ms,
                                             p50_ms, p95_ms, p99_ms, p999_ms, max_ms, details{column})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14{value})"
            ),
            &args,
        )
        .expect("recording a result in stress.results");
    })
}

/// Slow executions of `query` into `stress.slow_queries` (`worker`: None for the caller).
pub fn slow_executions(
    run_id: i64,
    query: &str,
    worker: Option<i32>,
    durations_ms: Vec<f64>,
    times: Vec<TimestampWithTimeZone>,
    plan: Option<serde_json::Value>,
) {
    if durations_ms.is_empty() {
        return;
    }
    as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO stress.slow_queries (run_id, query, duration_ms, executed_at, worker, plan)
             SELECT $1, $2, e.d, e.t, $5, $6
             FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.float8[]),
                             pg_catalog.unnest($4::pg_catalog.timestamptz[])) AS e(d, t)",
            &[
                run_id.into(),
                query.into(),
                durations_ms.into(),
                times.into(),
                worker.into(),
                plan.map(JsonB).into(),
            ],
        )
        .expect("logging slow executions");
    })
}

/// A deadlock (40P01) or serialization failure (40001) a run's operation met.
pub struct Conflict {
    pub at: pg_sys::TimestampTz,
    pub sqlstate: &'static str,
    pub operation: String,
    /// what the other processes the server named were running: the run's tasks, or None for a
    /// session that is not one of the run's workers
    pub others: Vec<Option<String>>,
    pub message: String,
    /// the server's DETAIL: the processes, the locks they waited for, the tuples
    pub detail: Option<String>,
}

/// A worker's conflicts into `stress.conflicts` in one statement (0.4.0 and later; nothing into an
/// older schema).
pub fn conflicts(run_id: i64, worker: u32, pid: i32, conflicts: &[Conflict]) {
    if conflicts.is_empty() {
        return;
    }
    let rows: Vec<serde_json::Value> = conflicts
        .iter()
        .map(|c| {
            serde_json::json!({
                "at": c.at, "sqlstate": c.sqlstate, "operation": c.operation,
                "others": c.others, "message": c.message, "detail": c.detail,
            })
        })
        .collect();
    as_owner(|| {
        // (the statement names the table: asked first, from the catalog cache, or an older schema
        // fails it at parse time)
        if !crate::postgres::catalog::has_stress_table(c"conflicts") {
            return;
        }
        Spi::run_with_args(
            "INSERT INTO stress.conflicts (run_id, at, sqlstate, worker, pid, operation, others, message, detail)
             SELECT $1, pg_catalog.to_timestamp((c->>'at')::pg_catalog.float8 OPERATOR(pg_catalog./) 1e6
                                                OPERATOR(pg_catalog.+) 946684800),
                    c->>'sqlstate', $2, $3, c->>'operation',
                    ARRAY(SELECT pg_catalog.jsonb_array_elements_text(c->'others')),
                    c->>'message', c->>'detail'
             FROM pg_catalog.jsonb_array_elements($4) c",
            &[
                run_id.into(),
                (worker as i32 + 1).into(),
                pid.into(),
                JsonB(serde_json::Value::Array(rows)).into(),
            ],
        )
        .expect("recording conflicts in stress.conflicts");
    })
}
