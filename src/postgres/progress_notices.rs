//! ProgressNotices NOTICEs for long calls, every `stress.progress_interval` seconds.

use crate::gucs;
use pgrx::prelude::*;
use std::time::{Duration, Instant};

pub struct ProgressNotices {
    label: &'static str,
    total: u64,
    started: Instant,
    last_report: Instant,
    interval: Option<Duration>,
}

impl ProgressNotices {
    pub fn new(label: &'static str, total: u64) -> Self {
        let now = Instant::now();
        let ms = gucs::PROGRESS_INTERVAL.get();
        ProgressNotices {
            label,
            total,
            started: now,
            last_report: now,
            interval: (ms > 0).then(|| Duration::from_millis(ms as u64)),
        }
    }

    /// Cheap enough to call per batch: reads the clock, prints only when the interval has passed.
    pub fn tick(&mut self, done: u64) {
        let Some(interval) = self.interval else {
            return;
        };
        if self.last_report.elapsed() < interval {
            return;
        }
        self.last_report = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        let pct = if self.total > 0 {
            100.0 * done as f64 / self.total as f64
        } else {
            100.0
        };
        notice!(
            "{}: {done} of {} rows ({pct:.0}%), {:.0} rows/s",
            self.label,
            self.total,
            done as f64 / secs.max(1e-9)
        );
    }

    /// Whether the call has lasted at least one progress interval: long enough for a summary NOTICE.
    pub fn was_long(&self) -> bool {
        self.interval.is_some_and(|i| self.started.elapsed() >= i)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
