//! Closing a run: every worker's results merged per task, the kind's rows recorded, the run's row
//! closed with its status — by the run's last worker here, or on the primary for a hot standby's
//! run (runs::standby). The same [`record_run`] either way.

use super::kind::{FinishedRun, RunKind, WorkerRun};
use super::slots::RunSlot;
use crate::metrics::task::TaskStats;
use crate::records::{self, RunRow};
use std::sync::atomic::Ordering;

/// The run's row in `stress.runs`, from its slot.
pub fn run_row<'a>(slot: &'a RunSlot, status: &'a str) -> RunRow<'a> {
    RunRow {
        id: slot.run_id,
        kind: slot.kind.as_str(),
        parameters: slot.parameters(),
        status,
        started_at: slot.started_at,
        run_as: slot.caller.current_user,
        error: None,
        peak_connections: 0,
    }
}

/// What the last worker knows of how the run went, beside the workers' results.
#[derive(Debug, Clone, Copy, Default)]
pub struct Closing {
    pub cancelled: bool,
    pub peak_connections: i64,
    /// open model: the arrivals due before the deadline
    pub arrivals: u64,
}

pub fn closing_of<C>(run: &WorkerRun<C>) -> Closing {
    let live = run.live();
    Closing {
        cancelled: live.cancelled(),
        peak_connections: live.peak_connections.load(Ordering::Relaxed),
        arrivals: live.arrivals.load(Ordering::Relaxed),
    }
}

/// Merge every worker's results, let the kind record them, and close the run's row. `now_slot` is
/// the run's slot as its last worker left it.
pub fn finish_run<K: RunKind>(run: &WorkerRun<K::Config>, now_slot: &RunSlot) {
    let closing = closing_of(run);
    let saved = records::take_worker_results(run.run_id);
    // (the configuration is the workers' own copy; a FinishedRun owns one too)
    let config: K::Config =
        serde_json::from_str(now_slot.config.as_str()).expect("the run's configuration");
    record_run::<K>(now_slot, config, saved, &closing, false);
}

/// Record run `slot` from its workers' `saved` results: merged per task, the kind's rows, the
/// run's row closed. By the last worker, or on the primary for a standby's run (runs::standby:
/// `from_standby`).
pub fn record_run<K: RunKind>(
    slot: &RunSlot,
    config: K::Config,
    saved: records::WorkerResults,
    closing: &Closing,
    from_standby: bool,
) {
    // (its results refer to the run's row: there must be one, even if worker 0 could not write it)
    records::register_run(&run_row(slot, "running"));
    let names = K::tasks(&config);
    let mut merged: Vec<TaskStats> = vec![TaskStats::default(); names.len()];
    let mut stop_reason = None;
    for r in saved.rows {
        if r.stop_reason.is_some() && stop_reason.is_none() {
            stop_reason.clone_from(&r.stop_reason);
        }
        let Some(task) = names.iter().position(|n| *n == r.operation) else {
            continue;
        };
        merged[task].add(&r.stats);
    }
    K::record(
        &FinishedRun {
            run_id: slot.run_id,
            workers: slot.workers,
            config,
            slot: *slot,
            seconds: saved.seconds,
            connected_us: saved.connected_us,
            arrivals: closing.arrivals,
            from_standby,
        },
        &merged,
    );
    if slot.workers_lost > 0 && stop_reason.is_none() {
        stop_reason = Some(format!(
            "{} of {} workers exited without finishing (see the server log)",
            slot.workers_lost, slot.workers
        ));
    }
    let status = match (&stop_reason, closing.cancelled) {
        (Some(_), _) => "failed",
        (None, true) => "cancelled",
        (None, false) => "completed",
    };
    records::close_run(&RunRow {
        error: stop_reason.as_deref(),
        peak_connections: closing.peak_connections,
        ..run_row(slot, status)
    });
}

/// One task's row of `stress.results`: its counts and latency percentiles over `seconds`, the
/// slow executions over `slow_us`, and `extra` figures in `details`.
pub fn record_task(
    run_id: i64,
    name: &str,
    m: &TaskStats,
    seconds: f64,
    open_model: bool,
    slow_us: u64,
    extra: Option<serde_json::Value>,
) {
    let mut details = serde_json::json!({
        "successes": m.successes,
        "failures": m.failures,
        "retries": m.retries,
        "deadlocks": m.deadlocks,
        "serialization_failures": m.serialization_failures,
        "slow": m.latency.count_above(slow_us),
    });
    if let Some(extra) = extra {
        crate::metrics::merge_json(&mut details, extra);
    }
    if let Some(e) = &m.first_error {
        details["first_error"] = e.clone().into();
    }
    if open_model {
        let lag = m.lag.summary();
        details["schedule_lag_ms"] =
            serde_json::json!({"avg": lag.avg_ms, "p99": lag.p99_ms, "max": lag.max_ms});
    }
    records::latency_result(
        run_id, name, m.calls, m.failures, seconds, &m.latency, details,
    );
}
