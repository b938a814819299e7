//! A run's sampler: a background worker of its own that writes the run's per-second row of
//! `stress.samples` — operations, errors, ops/s, p50/p99 from the workers' live figures — and, with
//! `stress.timeline`, what the server did in that second (`stress.timeline`). It is not one of the
//! run's workers: a second in which every worker waits for a lock is sampled like any other, and
//! those are the seconds worth seeing. It connects as the caller, reads only the run's shared
//! memory and the server's statistics, and writes through `records` as the tables' owner.

use super::monitor::Reading;
use super::slots::{self, LiveSlot, RUNS, RunSlot, WorkerArgs};
use crate::metrics::buckets::{self, Buckets};
use crate::postgres::backend::now;
use crate::postgres::catalog::has_stress_table;
use crate::postgres::transaction::in_transaction;
use crate::records;
use crate::records::ServerCounters;
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::atomic::Ordering;

/// The library function a run's sampler starts in.
pub const ENTRY_POINT: &str = "pg_stress_sampler_main";

/// `bgw_main_arg` is the run's slot, `bgw_extra` its [`WorkerArgs`].
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_sampler_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    // SAFETY: the handlers are attached just above; unblocking signals is what a worker does next.
    unsafe { pg_sys::BackgroundWorkerUnblockSignals() };
    let index = arg.value();
    let WorkerArgs {
        run_id, database, ..
    } = WorkerArgs::from_extra(BackgroundWorker::get_extra());
    let holds = || RUNS.share().slots[index].holds(run_id, database);
    let Some(slot) = holds().then(|| RUNS.share().slots[index]) else {
        return; // the run ended before its sampler started
    };
    slot.caller.connect_as();
    let mut sampler = Sampler::start(slot, slots::live(index));
    // Seconds counted from the run's start; a late second is taken late, not twice.
    let mut due = slot.started_at + 1_000_000;
    loop {
        loop {
            let wait_us = due - now();
            if wait_us <= 0 {
                break;
            }
            if !holds() || BackgroundWorker::sigterm_received() {
                slots::stop_sleeping();
                return;
            }
            sampler.live.sleep((wait_us / 1000).clamp(1, 100));
        }
        slots::stop_sleeping();
        if !holds() {
            return;
        }
        let at = now();
        sampler.sample(at);
        due = (due + 1_000_000).max(at + 500_000);
    }
}

/// A run's sampler: the run, what the extension's tables here take, and where the last sample left
/// off.
struct Sampler {
    slot: RunSlot,
    live: &'static LiveSlot,
    /// stress.timeline exists (0.3.0 and later) and the run asked for it
    timeline: bool,
    /// stress.samples' percentiles may be NULL (0.3.0 and later; before, a second without
    /// operations was written as 0)
    nullable_percentiles: bool,
    /// stress.samples has a deadlocks column (0.3.0 and later)
    deadlock_column: bool,
    /// what the timeline tables take (when the run keeps a timeline)
    timeline_columns: records::TimelineColumns,
    /// at the last sample: when, the run's totals, and the server's counters
    at: pg_sys::TimestampTz,
    ops: u64,
    errors: u64,
    deadlocks: u64,
    counters: ServerCounters,
    /// the target's monitor (a PgBouncer console, or the target itself), when the run has one and
    /// stress.pool_samples and stress.target_timeline exist
    monitor: Option<super::monitor::TargetMonitor>,
}

impl Sampler {
    /// Name the session, see what the tables take — the extension's objects may be older than this
    /// library (installed, the database not yet updated with ALTER EXTENSION pg_stress UPDATE) —
    /// and read the server's counters the first timeline row starts from.
    fn start(slot: RunSlot, live: &'static LiveSlot) -> Self {
        let run_id = slot.run_id;
        let setup = in_transaction(|| {
            Spi::run_with_args(
                "SELECT pg_catalog.set_config('application_name', $1, false)",
                &[format!("pg_stress sampler run {run_id}").into()],
            )?;
            let tables = Spi::get_three::<bool, bool, bool>(
                "SELECT pg_catalog.to_regclass('stress.timeline') IS NOT NULL,
                        (SELECT NOT a.attnotnull FROM pg_catalog.pg_attribute a
                         WHERE a.attrelid OPERATOR(pg_catalog.=) 'stress.samples'::pg_catalog.regclass
                           AND a.attname OPERATOR(pg_catalog.=) 'p50_ms'),
                        EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                WHERE a.attrelid OPERATOR(pg_catalog.=) 'stress.samples'::pg_catalog.regclass
                                  AND a.attname OPERATOR(pg_catalog.=) 'deadlocks' AND NOT a.attisdropped)",
            )?;
            let timeline = slot.timeline && tables.0 == Some(true);
            let counters = if timeline {
                records::server_counters()
            } else {
                ServerCounters::default()
            };
            Ok::<_, pgrx::spi::SpiError>((
                timeline,
                tables.1 == Some(true),
                tables.2 == Some(true),
                records::TimelineColumns::of_database(),
                counters,
                has_stress_table(c"pool_samples") && has_stress_table(c"target_timeline"),
            ))
        });
        let (
            timeline,
            nullable_percentiles,
            deadlock_column,
            timeline_columns,
            counters,
            monitored,
        ) = match setup {
            Ok(Ok(found)) => found,
            other => {
                if let Err(report) = other {
                    pgrx::log!("pg_stress run {run_id}: sampler: {}", report.message());
                }
                (
                    false,
                    false,
                    false,
                    records::TimelineColumns::Base,
                    ServerCounters::default(),
                    false,
                )
            }
        };
        // (the run's configuration is its kind's JSON; a load run on a target may name a monitor)
        let mut monitor = monitored
            .then(|| serde_json::from_str::<serde_json::Value>(slot.config.as_str()).ok())
            .flatten()
            .and_then(|config| super::monitor::TargetMonitor::of_config(run_id, &config));
        // (a first read: it tells what the monitor is, and where a target's first second starts)
        let _ = monitor.as_mut().map(super::monitor::TargetMonitor::read);
        Sampler {
            slot,
            live,
            timeline,
            nullable_percentiles,
            deadlock_column,
            timeline_columns,
            at: slot.started_at,
            ops: 0,
            errors: 0,
            deadlocks: 0,
            counters,
            monitor,
        }
    }

    /// Write the run's sample for the second (or so) since the last one, and its timeline row.
    fn sample(&mut self, at: pg_sys::TimestampTz) {
        let (slot, live) = (&self.slot, self.live);
        let interval: Buckets =
            std::array::from_fn(|i| live.interval[i].swap(0, Ordering::Relaxed));
        let (ops, errors, deadlocks) = (
            live.ops.load(Ordering::Relaxed),
            live.errors.load(Ordering::Relaxed),
            live.deadlocks.load(Ordering::Relaxed),
        );
        let (done, failed, deadlocked) = (
            ops - self.ops,
            errors - self.errors,
            deadlocks - self.deadlocks,
        );
        let rate = done as f64 / ((at - self.at) as f64 / 1e6).max(1e-9);
        (self.at, self.ops, self.errors, self.deadlocks) = (at, ops, errors, deadlocks);
        live.last_rate.store(rate.to_bits(), Ordering::Relaxed);
        let elapsed = (at - slot.started_at) as f64 / 1e6;
        let percentile = |q: f64| {
            buckets::quantile_ms(&interval, q).or((!self.nullable_percentiles).then_some(0.0))
        };
        let before = self.counters;
        // (the monitor first, outside the transaction: the wait is on its socket)
        let monitored = self
            .monitor
            .as_mut()
            .and_then(super::monitor::TargetMonitor::read);
        let saved = in_transaction(|| {
            if let Some(reading) = &monitored {
                record_monitored(slot.run_id, at, elapsed, reading);
            }
            let counters = self.timeline.then(|| {
                let pids: Vec<i32> = live
                    .pids
                    .iter()
                    .map(|p| p.load(Ordering::Relaxed))
                    .filter(|&p| p != 0)
                    .collect();
                records::timeline(
                    slot.run_id,
                    at,
                    elapsed,
                    &pids,
                    &before,
                    self.timeline_columns,
                )
            });
            let connections = records::sample(&records::SampleRow {
                run_id: slot.run_id,
                at,
                elapsed_s: elapsed,
                ops: done as i64,
                errors: failed as i64,
                deadlocks: self.deadlock_column.then_some(deadlocked as i64),
                ops_per_sec: rate,
                p50_ms: percentile(0.50),
                p99_ms: percentile(0.99),
                active_workers: live.workers_looping.load(Ordering::Relaxed) as i32,
            });
            (connections, counters)
        });
        match saved {
            Ok((connections, counters)) => {
                live.peak_connections
                    .fetch_max(connections, Ordering::Relaxed);
                if let Some(counters) = counters {
                    self.counters = counters;
                }
            }
            Err(report) => {
                pgrx::log!(
                    "pg_stress run {}: could not save a sample: {}",
                    slot.run_id,
                    report.message()
                );
                // DROP EXTENSION during the run: nothing can record it any more, so it stops
                // (its workers, told as stress.cancel tells them, within a moment).
                if !in_transaction(records::installed).unwrap_or(true) {
                    pgrx::log!(
                        "pg_stress run {}: the extension was dropped; stopping the run",
                        slot.run_id
                    );
                    live.request_cancel();
                }
            }
        }
    }
}

/// What the run's monitor read this second, into its table (in the sample's transaction).
fn record_monitored(run_id: i64, at: pg_sys::TimestampTz, elapsed: f64, reading: &Reading) {
    match reading {
        Reading::Pools(rows) => records::pool_samples(run_id, at, elapsed, rows),
        Reading::Server(row) => records::target_timeline(run_id, at, elapsed, row),
    }
}
