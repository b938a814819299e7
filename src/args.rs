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
        (nanos ^ (unsafe { pg_sys::MyProcPid } as u64).rotate_left(32)) as i64 & i64::MAX
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
