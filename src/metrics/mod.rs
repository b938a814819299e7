//! Writing `stress.runs` and `stress.results`.
//!
//! Calls that run inside the caller's transaction (generators, checksum) record themselves once, at
//! the end, in that same transaction: if the call fails or is cancelled, its rows roll back with the
//! data, so the record never claims work that did not happen.

pub mod blocks;
pub mod buckets;
pub mod histogram;

use pgrx::JsonB;
use pgrx::prelude::*;

/// One measured thing of a run (a generated table, a query, an operation).
#[derive(Debug, Default, Clone)]
pub struct Measurement {
    pub name: String,
    pub rows: Option<i64>,
    pub seconds: f64,
    pub details: serde_json::Value,
}

impl Measurement {
    pub fn rows_per_sec(&self) -> Option<f64> {
        self.rows.map(|r| {
            if self.seconds > 0.0 {
                r as f64 / self.seconds
            } else {
                0.0
            }
        })
    }
}

/// Record a finished in-transaction call: one `stress.runs` row (status completed) with its
/// measurements, in one statement. Returns the run id.
pub fn record_completed_call(
    kind: &str,
    parameters: serde_json::Value,
    started_at: TimestampWithTimeZone,
    measurements: &[Measurement],
) -> i64 {
    let names: Vec<String> = measurements.iter().map(|m| m.name.clone()).collect();
    let rows: Vec<Option<i64>> = measurements.iter().map(|m| m.rows).collect();
    let seconds: Vec<f64> = measurements.iter().map(|m| m.seconds).collect();
    let rates: Vec<Option<f64>> = measurements.iter().map(Measurement::rows_per_sec).collect();
    let details: Vec<JsonB> = measurements
        .iter()
        .map(|m| JsonB(m.details.clone()))
        .collect();
    Spi::get_one_with_args::<i64>(
        "WITH run AS (
             INSERT INTO stress.runs (kind, parameters, status, started_at, finished_at)
             VALUES ($1, $2, 'completed', $3, clock_timestamp())
             RETURNING id),
         measured AS (
             INSERT INTO stress.results (run_id, name, rows, seconds, rows_per_sec, details)
             SELECT run.id, m.name, m.rows, m.seconds, m.rate, m.details
             FROM run, unnest($4::text[], $5::int8[], $6::float8[], $7::float8[], $8::jsonb[])
                  AS m(name, rows, seconds, rate, details))
         SELECT id FROM run",
        &[
            kind.into(),
            JsonB(parameters).into(),
            started_at.into(),
            names.into(),
            rows.into(),
            seconds.into(),
            rates.into(),
            details.into(),
        ],
    )
    .expect("recording the run in stress.runs")
    .expect("INSERT … RETURNING gives the run id")
}

/// One `stress.results` row of timed calls (a load run's operation, a benchmarked query): counts,
/// successful calls per second, and latency percentiles from a histogram summary.
pub fn record_latency_result(
    run_id: i64,
    name: &str,
    calls: i64,
    errors: i64,
    seconds: f64,
    latency: &histogram::LatencySummary,
    details: serde_json::Value,
) {
    Spi::run_with_args(
        "INSERT INTO stress.results (run_id, name, calls, errors, seconds, ops_per_sec, avg_ms, stddev_ms,
                                     p50_ms, p95_ms, p99_ms, p999_ms, max_ms, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        &[
            run_id.into(),
            name.into(),
            calls.into(),
            errors.into(),
            seconds.into(),
            ((calls - errors) as f64 / seconds.max(1e-9)).into(),
            latency.avg_ms.into(),
            latency.stddev_ms.into(),
            latency.p50_ms.into(),
            latency.p95_ms.into(),
            latency.p99_ms.into(),
            latency.p999_ms.into(),
            latency.max_ms.into(),
            JsonB(details).into(),
        ],
    )
    .expect("recording a result in stress.results");
}

/// Add `extra`'s keys to the JSON object `into` (for a result's `details`).
pub fn merge_json(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (serde_json::Value::Object(extra), Some(into)) = (extra, into.as_object_mut()) {
        into.extend(extra);
    }
}
