//! The combined run into this server's `stress.*`, as the caller's.

use super::{Combined, Export};
use crate::records::{CombinedRun, combined_run, latency_result};

/// Check, merge and record `exports` (NULL elements are 22023); the new run's id.
pub fn combine_runs(exports: Vec<Option<serde_json::Value>>) -> i64 {
    let parsed: Vec<Export> = exports
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.unwrap_or(serde_json::Value::Null);
            super::parse(i + 1, e)
        })
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| e.raise());
    let Combined {
        parameters,
        status,
        error,
        started_at,
        finished_at,
        peak_connections,
        results,
        samples,
    } = super::combine(&parsed).unwrap_or_else(|e| e.raise());
    let run_id = combined_run(CombinedRun {
        parameters,
        status: &status,
        error: error.as_deref(),
        started_at,
        finished_at,
        peak_connections,
        samples,
    });
    for r in results {
        latency_result(
            run_id,
            &r.name,
            r.calls,
            r.errors,
            r.seconds,
            &r.histogram,
            r.details,
        );
    }
    run_id
}
