//! What each worker of a run measured, kept in `stress.load_worker_results` until the run's last
//! worker merges them.

use super::{as_owner, timestamp};
use crate::metrics::histogram::Latency;
use crate::metrics::task::TaskStats;
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

/// What one worker measured for one task, as it is kept until the run's last worker merges every
/// worker's rows (and as a standby's worker sends it).
/// (In JSON, one flat object: `name`, the figures, `stop_reason`.)
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct WorkerResult {
    #[serde(rename = "name")]
    pub operation: String,
    #[serde(flatten)]
    pub stats: TaskStats,
    pub stop_reason: Option<String>,
}

/// A worker's results, and the window its loop ran in.
pub fn save_worker_results(
    run_id: i64,
    worker: i32,
    window: (pg_sys::TimestampTz, pg_sys::TimestampTz),
    results: &[WorkerResult],
) {
    as_owner(|| {
        for r in results {
            let s = &r.stats;
            Spi::run_with_args(
                "INSERT INTO stress.load_worker_results
                     (run_id, worker, operation, calls, successes, failures, retries, deadlocks,
                      serialization_failures, latency, lag, first_error, stop_reason, loop_started,
                      loop_ended, busy_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                &[
                    run_id.into(),
                    worker.into(),
                    r.operation.as_str().into(),
                    s.calls.into(),
                    s.successes.into(),
                    s.failures.into(),
                    s.retries.into(),
                    s.deadlocks.into(),
                    s.serialization_failures.into(),
                    s.latency.serialize().into(),
                    s.lag.serialize().into(),
                    s.first_error.clone().into(),
                    r.stop_reason.clone().into(),
                    timestamp(window.0).into(),
                    timestamp(window.1).into(),
                    s.busy_us.into(),
                ],
            )
            .expect("saving a worker's results");
        }
    })
}

/// Every worker's results of a run, in worker order; the run's seconds (first loop start to last
/// loop end) and the workers' connected time in µs.
pub struct WorkerResults {
    pub rows: Vec<WorkerResult>,
    pub seconds: f64,
    pub connected_us: f64,
}

impl WorkerResults {
    /// `rows`, with the run's window from each worker's loop window (µs; one per worker that kept
    /// results): the primary's path and a standby's compute it the same way.
    pub fn new(rows: Vec<WorkerResult>, windows: &[(i64, i64)]) -> Self {
        let seconds = match (
            windows.iter().map(|w| w.0).min(),
            windows.iter().map(|w| w.1).max(),
        ) {
            (Some(start), Some(end)) => (end - start) as f64 / 1e6,
            _ => 0.0,
        }
        .max(1e-6);
        let connected_us = windows.iter().map(|w| (w.1 - w.0) as f64).sum();
        WorkerResults {
            rows,
            seconds,
            connected_us,
        }
    }
}

/// Read (and delete) what the workers of `run_id` saved. A row that could not be a worker's (a
/// count out of range, a histogram that does not parse) is an ERROR, as it is from a standby: the
/// run then closes as failed with the reason.
pub fn take_worker_results(run_id: i64) -> WorkerResults {
    as_owner(|| {
        let (rows, windows) = Spi::connect(|client| {
            let mut rows = Vec::new();
            let mut windows: Vec<(i32, i64, i64)> = Vec::new();
            let table = client.select(
                "SELECT operation, calls, successes, failures, retries, deadlocks, serialization_failures,
                        latency, lag, first_error, stop_reason, busy_us, worker, loop_started, loop_ended
                 FROM stress.load_worker_results WHERE run_id OPERATOR(pg_catalog.=) $1
                 ORDER BY worker, operation",
                None,
                &[run_id.into()],
            )?;
            for r in table {
                let count = |i| r.get::<i64>(i).map(Option::unwrap_or_default);
                let histogram = |i| -> Result<Latency, String> {
                    Latency::deserialize(&r.get::<Vec<u8>>(i).ok().flatten().unwrap_or_default())
                };
                let operation: String = r.get(1)?.unwrap_or_default();
                let bad = |e: String| -> pgrx::spi::SpiError {
                    pgrx::ereport!(
                        PgLogLevel::ERROR,
                        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                        format!("pg_stress run {run_id}: worker results of \"{operation}\": {e}")
                    );
                    unreachable!("ERROR does not return")
                };
                let stats = TaskStats {
                    calls: count(2)?,
                    successes: count(3)?,
                    failures: count(4)?,
                    retries: count(5)?,
                    deadlocks: count(6)?,
                    serialization_failures: count(7)?,
                    latency: histogram(8).map_err(bad)?,
                    lag: histogram(9).map_err(bad)?,
                    first_error: r.get(10)?,
                    busy_us: count(12)?,
                };
                stats.check().map_err(bad)?;
                let worker: i32 = r.get(13)?.unwrap_or_default();
                if windows.last().is_none_or(|w| w.0 != worker) {
                    // (µs since PostgreSQL's epoch, as a standby's worker sends its window)
                    let at = |i| {
                        r.get::<TimestampWithTimeZone>(i)
                            .map(|t| t.map_or(0, pg_sys::TimestampTz::from))
                    };
                    windows.push((worker, at(14)?, at(15)?));
                }
                rows.push(WorkerResult {
                    operation,
                    stats,
                    stop_reason: r.get(11)?,
                });
            }
            Ok::<_, pgrx::spi::SpiError>((rows, windows))
        })
        .expect("reading the workers' results");
        Spi::run_with_args(
            "DELETE FROM stress.load_worker_results WHERE run_id OPERATOR(pg_catalog.=) $1",
            &[run_id.into()],
        )
        .expect("clearing the workers' results");
        let windows: Vec<(i64, i64)> = windows.iter().map(|w| (w.1, w.2)).collect();
        WorkerResults::new(rows, &windows)
    })
}
