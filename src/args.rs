//! Arguments every capability takes the same way — row counts, worker counts, seeds, timestamps,
//! durations, isolation levels — checked in one place: a bad one is a 22023 ERROR that names the
//! function and says what to pass instead.

use crate::error::StressError;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Most rows one call may generate: beyond this a single transaction gets unwieldy (hours of work,
/// hundreds of GB of WAL that a cancel would throw away); generate more in several calls.
pub const MAX_ROWS_PER_CALL: i64 = 1_000_000_000;

/// The longest run one call may ask for.
pub const MAX_DURATION_SECONDS: f64 = 7.0 * 86_400.0;

/// Validate a row count argument.
pub fn row_count(function: &'static str, n: Option<i64>) -> Result<u64, StressError> {
    match n {
        None => Err(StressError::invalid(
            function,
            "n must not be NULL",
            "Pass the number of rows to generate, e.g. 1000000.",
        )),
        Some(n) if n < 0 => Err(StressError::invalid(
            function,
            format!("n must not be negative, got {n}"),
            "Pass the number of rows to generate, e.g. 1000000.",
        )),
        Some(n) if n > MAX_ROWS_PER_CALL => Err(StressError::invalid(
            function,
            format!("n = {n} is more than {MAX_ROWS_PER_CALL} rows in one call"),
            "Generate larger sets in several calls; each appends after the highest id.",
        )),
        Some(n) => Ok(n as u64),
    }
}

/// Check a `workers` argument against `stress.max_workers`.
pub fn worker_count(function: &'static str, workers: Option<i32>) -> Result<usize, StressError> {
    let max = crate::gucs::MAX_WORKERS.get();
    match workers {
        None => Ok(1),
        Some(k) if k < 1 => Err(StressError::invalid(
            function,
            format!("workers must be at least 1, got {k}"),
            "Pass workers => 1 to generate in this backend, or more to use background workers.",
        )),
        Some(k) if k > max => Err(StressError::invalid(
            function,
            format!("workers => {k} is more than stress.max_workers = {max}"),
            "Pass fewer workers, or have a superuser raise stress.max_workers.",
        )),
        Some(k) => Ok(k as usize),
    }
}

/// A seed the caller gave, or a fresh one (recorded in `stress.runs` so the data can be made again).
pub fn seed_or_random(seed: Option<i64>) -> i64 {
    seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        (nanos ^ (crate::postgres::backend::pid() as u64).rotate_left(32)) as i64 & i64::MAX
    })
}

/// A timestamp argument, refused (22023) when it is ±infinity: rows need a real instant.
pub fn finite_time(
    function: &'static str,
    name: &str,
    t: Option<TimestampWithTimeZone>,
) -> Option<TimestampWithTimeZone> {
    if let Some(t) = t
        && (t.is_infinity() || t.is_neg_infinity())
    {
        StressError::invalid(
            function,
            format!("{name} must be a finite timestamp, got {t}"),
            "Pass a real instant, e.g. '2025-01-01 00:00:00+00'.",
        )
        .raise();
    }
    t
}

/// An interval in seconds.
pub fn interval_seconds(interval: Interval) -> f64 {
    // (read-only: no transaction id for the caller's transaction, see postgres::spi_read)
    crate::postgres::spi_read::one::<f64>(
        "SELECT extract(epoch FROM $1)::float8",
        &[interval.into()],
    )
    .expect("reading an interval")
    .unwrap_or(0.0)
}

/// A run's duration in seconds: positive and at most [`MAX_DURATION_SECONDS`], else 22023.
pub fn duration_seconds(function: &'static str, duration: Interval, hint: &str) -> f64 {
    let seconds = interval_seconds(duration);
    if !(seconds > 0.0 && seconds <= MAX_DURATION_SECONDS) {
        StressError::invalid(
            function,
            format!("duration must be positive and at most 7 days, got {seconds} s"),
            hint,
        )
        .raise();
    }
    seconds
}

/// The largest weight of an operation or custom transaction. Weights are relative (0.3 and 3 are
/// the same share beside 0.7 and 7); past this their sum could lose the small ones, or overflow.
pub const MAX_WEIGHT: f64 = 1_000_000.0;

/// A weight (of `what`, for the message): a finite number from 0 to [`MAX_WEIGHT`].
pub fn weight(what: &str, value: &serde_json::Value) -> Result<f64, String> {
    value
        .as_f64()
        .filter(|w| w.is_finite() && (0.0..=MAX_WEIGHT).contains(w))
        .ok_or_else(|| format!("{what} must be a number from 0 to {MAX_WEIGHT}, got {value}"))
}

/// A series' step length in seconds: at least 1 second, all `steps` together at most
/// [`MAX_DURATION_SECONDS`] (22023).
pub fn step_seconds(function: &'static str, step: Interval, steps: usize) -> f64 {
    let seconds = interval_seconds(step);
    if !(seconds >= 1.0 && seconds * steps as f64 <= MAX_DURATION_SECONDS) {
        StressError::invalid(
            function,
            format!("step must be at least 1 second and all steps at most 7 days, got {seconds} s"),
            "Pass an interval such as '10 seconds'.",
        )
        .raise();
    }
    seconds
}

/// A share from 0 to 1 (`name` in the message, `hint` what to pass), else 22023.
pub fn fraction(function: &'static str, name: &str, v: f64, hint: &str) -> f64 {
    if !(0.0..=1.0).contains(&v) {
        StressError::invalid(
            function,
            format!("{name} must be between 0 and 1, got {v}"),
            hint,
        )
        .raise();
    }
    v
}

/// A latency target in ms: None, or a positive finite number (22023 otherwise).
pub fn target_ms(function: &'static str, name: &str, v: Option<f64>) -> Option<f64> {
    if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
        StressError::invalid(
            function,
            format!("{name} must be a positive number of milliseconds, got {v}"),
            "e.g. 100 for a p99 of at most 100 ms.",
        )
        .raise();
    }
    v
}

/// An isolation level's name, as SET TRANSACTION takes it (also with _ or -), as its XACT_* code.
pub fn parse_isolation(text: &str) -> Option<i32> {
    let normal = text.trim().to_lowercase().replace(['_', '-'], " ");
    Some(match normal.as_str() {
        "read committed" => pg_sys::XACT_READ_COMMITTED,
        "repeatable read" => pg_sys::XACT_REPEATABLE_READ,
        "serializable" => pg_sys::XACT_SERIALIZABLE,
        _ => return None,
    } as i32)
}
