//! Several drivers, one target: the load runs that N servers with pg_stress drove at one target at
//! once, each exported there (`stress.export_run`, SQL), combined here into one run
//! (`stress.combine_runs`). Counts add up, latency histograms merge exactly (so the combined
//! percentiles are those of every call any driver made), the run's seconds are the longest
//! driver's, and the samples of the same second add up.
//!
//! This file is the checking and merging, in plain Rust; [`record`] writes the combined run.

pub mod record;

use crate::error::StressError;
use crate::metrics::histogram::Latency;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

const FUNCTION: &str = "combine_runs";
/// What `stress.export_run` writes in `format`.
pub const FORMAT: &str = "pg_stress run export 1";
/// The most runs one call combines (a driver per export).
pub const MAX_RUNS: usize = 1000;
/// The counters of a result's details that add up across drivers.
const SUMMED_DETAILS: [&str; 6] = [
    "successes",
    "failures",
    "deadlocks",
    "retries",
    "serialization_failures",
    "slow",
];

#[derive(Debug, Deserialize)]
pub struct Export {
    pub format: String,
    pub server: Value,
    pub run: ExportedRun,
    #[serde(default)]
    pub results: Vec<ExportedResult>,
    #[serde(default)]
    pub samples: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub struct ExportedRun {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub parameters: Value,
    #[serde(default)]
    pub peak_connections: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct ExportedResult {
    pub name: String,
    pub calls: i64,
    pub errors: i64,
    pub seconds: f64,
    #[serde(default)]
    pub details: Value,
    pub histogram: Option<String>,
}

/// One measured thing of the combined run.
pub struct CombinedResult {
    pub name: String,
    pub calls: i64,
    pub errors: i64,
    pub seconds: f64,
    pub histogram: Latency,
    pub details: Value,
}

/// The combined run, ready to record.
pub struct Combined {
    pub parameters: Value,
    pub status: String,
    pub error: Option<String>,
    /// each driver's start and end (the combined run is from the first start to the last end:
    /// the SQL that records it compares them as timestamps)
    pub started_at: Vec<String>,
    pub finished_at: Vec<String>,
    pub peak_connections: i64,
    pub results: Vec<CombinedResult>,
    /// every driver's samples, each as exported (`ts`, `ops`, …): the same second adds up
    pub samples: Vec<Value>,
}

fn invalid(message: String) -> StressError {
    StressError::invalid(
        FUNCTION,
        message,
        "Pass what stress.export_run(run_id) returned on each driver server, e.g. \
         stress.combine_runs(ARRAY[stress.export_run(12), <driver 2's export, through dblink>]).",
    )
}

/// Read one export (`at`: its place in the array, from 1), checking what it claims.
pub fn parse(at: usize, export: Value) -> Result<Export, StressError> {
    let export: Export = serde_json::from_value(export)
        .map_err(|e| invalid(format!("runs[{at}] is not a run export: {e}")))?;
    if export.format != FORMAT {
        return Err(invalid(format!(
            "runs[{at}] is in format {:?}; this pg_stress reads {FORMAT:?}",
            export.format
        )));
    }
    let run = &export.run;
    if run.kind != "run_load" {
        return Err(invalid(format!(
            "runs[{at}] is a {} run; only load runs (run_load, ramp steps) combine",
            run.kind
        )));
    }
    if run.status == "running" || run.finished_at.is_none() {
        return Err(invalid(format!(
            "runs[{at}] (run {}) has not finished; wait for it (stress.wait) and export it again",
            run.id
        )));
    }
    for t in std::iter::once(&run.started_at).chain(run.finished_at.as_ref()) {
        if t.trim_start_matches(['+', '-']).starts_with("infinity") {
            return Err(invalid(format!("runs[{at}] has a timestamp of {t}")));
        }
    }
    for r in &export.results {
        if r.calls < 0
            || r.errors < 0
            || r.errors > r.calls
            || !r.seconds.is_finite()
            || r.seconds < 0.0
        {
            return Err(invalid(format!(
                "runs[{at}]'s result {:?} has calls {}, errors {}, seconds {}: counts are 0 or more, errors at most the calls",
                r.name, r.calls, r.errors, r.seconds
            )));
        }
    }
    Ok(export)
}

/// The exports as one run. Each driver's run appears once (the same run of the same server twice
/// is 22023).
pub fn combine(exports: &[Export]) -> Result<Combined, StressError> {
    if exports.is_empty() || exports.len() > MAX_RUNS {
        return Err(invalid(format!(
            "give between 1 and {MAX_RUNS} run exports, not {}",
            exports.len()
        )));
    }
    for (i, a) in exports.iter().enumerate() {
        if let Some(j) = exports[..i]
            .iter()
            .position(|b| b.run.id == a.run.id && b.server == a.server)
        {
            return Err(invalid(format!(
                "runs[{}] and runs[{}] are the same run ({} of {})",
                j + 1,
                i + 1,
                a.run.id,
                a.server
            )));
        }
    }
    let mut results: Vec<CombinedResult> = Vec::new();
    for (at, export) in exports.iter().enumerate() {
        for r in &export.results {
            let histogram = match &r.histogram {
                Some(text) => decode(text)
                    .map_err(|e| invalid(format!("runs[{}]'s result {:?}: {e}", at + 1, r.name)))?,
                None => Latency::default(),
            };
            match results.iter_mut().find(|c| c.name == r.name) {
                Some(c) => {
                    c.calls += r.calls;
                    c.errors += r.errors;
                    c.seconds = c.seconds.max(r.seconds);
                    c.histogram.merge(&histogram);
                    add_details(&mut c.details, &r.details);
                }
                None => {
                    let mut details = json!({});
                    add_details(&mut details, &r.details);
                    results.push(CombinedResult {
                        name: r.name.clone(),
                        calls: r.calls,
                        errors: r.errors,
                        seconds: r.seconds,
                        histogram,
                        details,
                    });
                }
            }
        }
    }
    // (the total last, as a load run records it)
    results.sort_by_key(|r| r.name == "total");
    let (status, error) = status_of(exports);
    Ok(Combined {
        parameters: parameters_of(exports),
        status,
        error,
        started_at: exports.iter().map(|e| e.run.started_at.clone()).collect(),
        finished_at: exports
            .iter()
            .filter_map(|e| e.run.finished_at.clone())
            .collect(),
        peak_connections: exports.iter().filter_map(|e| e.run.peak_connections).sum(),
        results,
        samples: exports.iter().flat_map(|e| e.samples.clone()).collect(),
    })
}

fn decode(text: &str) -> Result<Latency, String> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| format!("its histogram is not base64: {e}"))?;
    Latency::deserialize(&bytes)
}

/// Add `extra`'s counters into `into`; keep the first `first_error`.
fn add_details(into: &mut Value, extra: &Value) {
    for key in SUMMED_DETAILS {
        if let Some(n) = extra.get(key).and_then(Value::as_i64) {
            let sum = into.get(key).and_then(Value::as_i64).unwrap_or(0) + n;
            into[key] = json!(sum);
        }
    }
    if into.get("first_error").is_none_or(Value::is_null)
        && let Some(e) = extra.get("first_error").filter(|e| e.is_string())
    {
        into["first_error"] = e.clone();
    }
}

/// Completed when every driver's run completed; else the first that did not, and why.
fn status_of(exports: &[Export]) -> (String, Option<String>) {
    match exports.iter().find(|e| e.run.status != "completed") {
        None => ("completed".to_owned(), None),
        Some(e) => (
            match e.run.status.as_str() {
                s @ ("cancelled" | "failed" | "interrupted") => s.to_owned(),
                _ => "failed".to_owned(),
            },
            Some(format!(
                "driver run {} on {} ended {}{}",
                e.run.id,
                e.server,
                e.run.status,
                e.run
                    .error
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
        ),
    }
}

/// The first driver's parameters, with the workers of all and where each run came from (`combined`).
fn parameters_of(exports: &[Export]) -> Value {
    let mut parameters = match &exports[0].run.parameters {
        Value::Object(map) => Value::Object(map.clone()),
        _ => json!({}),
    };
    if let Some(map) = parameters.as_object_mut() {
        // (a driver's seed and its place in a series are its own, not the combined run's)
        map.remove("seed");
        map.remove("series");
    }
    let workers: Option<i64> = exports
        .iter()
        .map(|e| e.run.parameters.get("workers").and_then(Value::as_i64))
        .sum();
    parameters["workers"] = json!(workers);
    parameters["combined"] = exports
        .iter()
        .map(|e| {
            json!({
                "server": e.server, "run_id": e.run.id, "status": e.run.status,
                "started_at": e.run.started_at, "finished_at": e.run.finished_at,
                "workers": e.run.parameters.get("workers"),
                "target": e.run.parameters.get("target"),
            })
        })
        .collect();
    parameters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(server: &str, id: i64, calls: i64, latencies_us: &[u64]) -> Value {
        let mut h = Latency::default();
        for &us in latencies_us {
            h.record_us(us);
        }
        json!({
            "format": FORMAT,
            "server": {"port": server},
            "run": {"id": id, "kind": "run_load", "status": "completed",
                    "started_at": "2026-12-02T23:05:18.5+00:00", "finished_at": "2026-12-02T23:05:21+00:00",
                    "parameters": {"workers": 2, "seed": 7}, "peak_connections": 3},
            "results": [{"name": "total", "calls": calls, "errors": 1, "seconds": 2.5,
                         "details": {"successes": calls - 1, "failures": 1},
                         "histogram": base64::engine::general_purpose::STANDARD.encode(h.serialize())}],
            "samples": [{"ts": "2026-12-02T23:05:19.5+00:00", "ops": calls}]
        })
    }

    #[test]
    fn two_drivers_add_up_and_their_histograms_merge() {
        let a = parse(1, export("5432", 1, 3, &[100, 200, 300])).unwrap();
        let b = parse(2, export("5433", 1, 2, &[10_000, 20_000])).unwrap();
        let c = combine(&[a, b]).unwrap();
        assert_eq!(c.status, "completed");
        assert_eq!(c.parameters["workers"], json!(4));
        assert!(c.parameters.get("seed").is_none());
        assert_eq!(c.parameters["combined"].as_array().unwrap().len(), 2);
        assert_eq!(c.peak_connections, 6);
        let total = &c.results[0];
        assert_eq!((total.calls, total.errors), (5, 2));
        assert_eq!(total.histogram.count(), 5);
        assert_eq!(total.details["successes"], json!(3));
        // the slowest call of either driver is the combined run's
        assert!((total.histogram.summary().max_ms - 20.0).abs() < 0.1);
        assert_eq!(c.samples.len(), 2);
    }

    #[test]
    fn the_same_run_twice_or_a_forged_export_is_refused() {
        let twice = [
            parse(1, export("5432", 1, 3, &[100])).unwrap(),
            parse(2, export("5432", 1, 3, &[100])).unwrap(),
        ];
        assert!(
            combine(&twice)
                .err()
                .is_some_and(|e| e.to_string().contains("same run"))
        );
        let mut bad = export("5432", 1, 3, &[100]);
        bad["results"][0]["histogram"] = json!("bm90IGEgaGlzdG9ncmFt");
        assert!(combine(&[parse(1, bad).unwrap()]).is_err());
        let mut bad = export("5432", 1, 3, &[100]);
        bad["results"][0]["errors"] = json!(4);
        assert!(parse(1, bad).is_err());
        let mut bad = export("5432", 1, 3, &[100]);
        bad["run"]["finished_at"] = json!("infinity");
        assert!(parse(1, bad).is_err());
        assert!(parse(1, json!({"format": FORMAT})).is_err());
        assert!(combine(&[]).is_err());
    }
}
