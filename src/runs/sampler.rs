//! A run's sampler: a background worker of its own that writes the run's per-second row of
//! `stress.samples` — operations, errors, ops/s, p50/p99 from the workers' live figures — and, with
//! `stress.timeline`, what the server did in that second (`stress.timeline`). It is not one of the
//! run's workers: a second in which every worker waits for a lock is sampled like any other, and
//! those are the seconds worth seeing. It connects as the caller, reads only the run's shared
//! memory and the server's statistics, and writes through `records` as the tables' owner.

use super::records;
use super::slots::{self, LiveSlot, RUNS, RunSlot};
use crate::metrics::buckets::{self, Buckets};
use crate::postgres::transaction::{in_transaction, now};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::atomic::Ordering;

/// The library function a run's sampler starts in.
pub const ENTRY_POINT: &str = "pg_stress_sampler_main";

/// `bgw_main_arg` is the run's slot, `bgw_extra` "run_id database".
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_sampler_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    unsafe { pg_sys::BackgroundWorkerUnblockSignals() };
    let index = arg.value();
    let mut extra = BackgroundWorker::get_extra().split_whitespace();
    let run_id: i64 = extra.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let database = pg_sys::Oid::from(
        extra
            .next()
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0),
    );
    let holds = || RUNS.share().slots[index].holds(run_id, database);
    let Some(slot) = holds().then(|| RUNS.share().slots[index]) else {
        return; // the run ended before its sampler started
    };
    slot.caller.connect_as();
    // The extension's objects may be older than this library (it is installed, the database not
    // yet updated with ALTER EXTENSION pg_stress UPDATE): write what they can take.
    let tables = in_transaction(|| {
        Spi::run_with_args(
            "SELECT pg_catalog.set_config('application_name', $1, false)",
            &[format!("pg_stress sampler run {run_id}").into()],
        )?;
        Spi::get_two::<bool, bool>(
            "SELECT pg_catalog.to_regclass('stress.timeline') IS NOT NULL,
                    (SELECT NOT a.attnotnull FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid OPERATOR(pg_catalog.=) 'stress.samples'::pg_catalog.regclass
                       AND a.attname OPERATOR(pg_catalog.=) 'p50_ms')",
        )
    });
    let tables = match tables {
        Ok(Ok((timeline, nullable))) => Tables {
            timeline: timeline == Some(true),
            nullable_percentiles: nullable == Some(true),
        },
        other => {
            if let Err(report) = other {
                pgrx::log!("pg_stress run {run_id}: sampler: {}", report.message());
            }
            Tables::default()
        }
    };
    let live = slots::live(index);
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
            live.sleep((wait_us / 1000).clamp(1, 100));
        }
        slots::stop_sleeping();
        if !holds() {
            return;
        }
        let at = now();
        let since = live.sampled_at.load(Ordering::Relaxed).max(slot.started_at);
        sample(&slot, &tables, live, at, since);
        due = (due + 1_000_000).max(at + 500_000);
    }
}

/// What the extension's tables in this database take.
#[derive(Default)]
struct Tables {
    /// stress.timeline exists (0.3.0 and later)
    timeline: bool,
    /// stress.samples' percentiles may be NULL (0.3.0 and later; before, a second without
    /// operations was written as 0)
    nullable_percentiles: bool,
}

/// Write the run's sample for the second (or so) from `since` to `at`, and its timeline row.
fn sample(
    slot: &RunSlot,
    tables: &Tables,
    live: &LiveSlot,
    at: pg_sys::TimestampTz,
    since: pg_sys::TimestampTz,
) {
    let interval: Buckets = std::array::from_fn(|i| live.interval[i].swap(0, Ordering::Relaxed));
    let (ops, errors) = (
        live.ops.load(Ordering::Relaxed),
        live.errors.load(Ordering::Relaxed),
    );
    let seconds = (at - since) as f64 / 1e6;
    let done = ops - live.sampled_ops.swap(ops, Ordering::Relaxed);
    let failed = errors - live.sampled_errors.swap(errors, Ordering::Relaxed);
    let rate = done as f64 / seconds.max(1e-9);
    live.sampled_at.store(at, Ordering::Relaxed);
    live.last_rate.store(rate.to_bits(), Ordering::Relaxed);
    let elapsed = (at - slot.started_at) as f64 / 1e6;
    let percentile = |q: f64| {
        buckets::quantile_ms(&interval, q).or((!tables.nullable_percentiles).then_some(0.0))
    };
    let saved = in_transaction(|| {
        if slot.timeline && tables.timeline {
            let pids: Vec<i32> = live
                .pids
                .iter()
                .map(|p| p.load(Ordering::Relaxed))
                .filter(|&p| p != 0)
                .collect();
            let before = live.server_counters();
            let after = records::timeline(slot.run_id, at, elapsed, &pids, &before);
            live.set_server_counters(&after);
        }
        records::sample(
            slot.run_id,
            at,
            elapsed,
            done as i64,
            failed as i64,
            rate,
            percentile(0.50),
            percentile(0.99),
            live.workers_looping.load(Ordering::Relaxed) as i32,
        )
    });
    match saved {
        Ok(connections) => {
            live.peak_connections
                .fetch_max(connections, Ordering::Relaxed);
        }
        Err(report) => pgrx::log!(
            "pg_stress run {}: could not save a sample: {}",
            slot.run_id,
            report.message()
        ),
    }
}
