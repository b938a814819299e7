//! A run's background worker, whatever the run's kind: it connects as the caller, takes on the
//! caller's role, search_path and isolation, lets the kind prepare and run its loop, saves what it
//! measured, and — the last one out — merges every worker's results and closes the run.
//!
//! Bookkeeping (the run's row, each worker's counters and histograms, the merged results) is written
//! as the owner of the `stress` tables, like a SECURITY DEFINER function would (see
//! [`records`](super::records)): the workload itself always runs as the caller's role.

use super::records::{self, RunRow, WorkerResult};
use super::slots::{self, LiveSlot, Phase, RUNS, RunSlot};
use crate::metrics::blocks;
use crate::metrics::buckets::{self, BUCKETS, Buckets};
use crate::postgres::transaction::{in_transaction, now};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

pub use super::records::TaskStats;

/// A kind of run (a load run, a concurrent benchmark): what its workers do between connecting and
/// closing the run. Each kind has its own worker entry point, which calls [`main`] with itself.
pub trait RunKind {
    /// The run's kind in stress.runs (run_load, benchmark).
    const KIND: &'static str;
    /// The kind's configuration, stored in the run's slot as JSON by whoever started it.
    type Config: serde::de::DeserializeOwned;
    /// What one worker prepares before its loop and keeps through it.
    type Worker;
    /// What the run measures, in order: results are kept per name.
    fn tasks(config: &Self::Config) -> Vec<String>;
    /// Prepare the loop (in a transaction, as the caller's role, with its search_path).
    fn prepare(run: &WorkerRun<Self::Config>) -> Result<Self::Worker, String>;
    /// The loop, until the deadline, the end of its work, a cancel or SIGTERM. Returns why it
    /// stopped early if that was a problem (a cancel is not one).
    fn run(
        run: &WorkerRun<Self::Config>,
        worker: &mut Self::Worker,
        stats: &mut [TaskStats],
    ) -> Option<String>;
    /// The statements the run executes that name tables of the caller's choosing (custom
    /// transactions, benchmarked queries), with their parameter types: the run's environment
    /// records those tables' sizes.
    fn statements(_config: &Self::Config) -> Vec<(String, Vec<pg_sys::Oid>)> {
        Vec::new()
    }
    /// Save what the worker kept beside its results (in their transaction, as the caller's role).
    fn save(_run: &WorkerRun<Self::Config>, _worker: &Self::Worker) {}
    /// Record the run's results, every worker's merged per task (by the last worker out).
    fn record(run: &FinishedRun<Self::Config>, merged: &[TaskStats]);
}

/// Why a worker stopped waiting before its work was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// the run was cancelled: not a problem of this worker
    Cancelled,
    Terminated,
}

/// One worker's view of its run.
pub struct WorkerRun<C> {
    pub run_id: i64,
    pub database: pg_sys::Oid,
    /// the run's slot
    pub index: usize,
    /// this worker's number, from 0
    pub worker: u32,
    pub workers: u32,
    pub started_at: pg_sys::TimestampTz,
    pub deadline: pg_sys::TimestampTz,
    pub config: C,
}

impl<C> WorkerRun<C> {
    pub fn live(&self) -> &'static LiveSlot {
        slots::live(self.index)
    }

    pub fn cancelled(&self) -> bool {
        self.live().cancelled()
    }

    /// This worker enters (or leaves) its loop: `stress.progress` counts the workers inside.
    pub fn looping(&self, inside: bool) {
        let n = &self.live().workers_looping;
        if inside {
            n.fetch_add(1, Ordering::Relaxed);
        } else {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Take one unit of task `task`'s shared work, of which there are `limit`: Some(false) when
    /// none is left, None when the run is cancelled.
    pub fn claim(&self, task: usize, limit: u64) -> Option<bool> {
        if self.cancelled() {
            return None;
        }
        Some(self.live().claimed[task].fetch_add(1, Ordering::Relaxed) < limit)
    }

    /// Whether one more slow execution of `task` may be logged (at most `limit` over all workers).
    pub fn may_log(&self, task: usize, limit: u32) -> bool {
        self.live().logged[task].fetch_add(1, Ordering::Relaxed) < limit
    }

    /// Whether a signal told this worker to stop: SIGTERM (pg_terminate_backend, a shutdown)
    /// stops it; SIGINT (pg_cancel_backend of a worker, or stress.cancel) cancels the whole run,
    /// as stress.cancel does. Checks interrupts first.
    pub fn told_to_stop(&self) -> Option<Stopped> {
        pg_sys::check_for_interrupts!();
        if crate::postgres::signals::terminated() {
            return Some(Stopped::Terminated);
        }
        if crate::postgres::signals::interrupted() {
            if !self.cancelled() {
                self.live().request_cancel();
            }
            return Some(Stopped::Cancelled);
        }
        None
    }

    /// What this worker adds to the run's live figures, published about every 100 ms.
    pub fn figures(&self) -> LiveFigures {
        LiveFigures {
            index: self.index,
            ops: 0,
            errors: 0,
            deadlocks: 0,
            buckets: [0; BUCKETS],
            published: now(),
        }
    }

    /// Wait until all the run's workers reach barrier `g`. The last to arrive marks the time and the
    /// server's block counts (after every worker flushed its statistics), then wakes the others.
    pub fn barrier(&self, g: u32) -> Result<(), Stopped> {
        let live = self.live();
        // This worker's block counts reach the server before anyone marks them.
        unsafe { pg_sys::pgstat_report_stat(true) };
        if live.cancelled() {
            return Err(Stopped::Cancelled);
        }
        if live.arrived.fetch_add(1, Ordering::SeqCst) + 1 == self.workers {
            let counts = in_transaction(|| blocks::flushed(None)).unwrap_or_default();
            {
                let mut table = RUNS.exclusive();
                let slot = &mut table.slots[self.index];
                if slot.holds(self.run_id, self.database) {
                    slot.marks[g as usize] = (now(), counts);
                }
            }
            live.arrived.store(0, Ordering::SeqCst);
            live.generation.store(g + 1, Ordering::SeqCst);
            live.wake_all();
            return Ok(());
        }
        let outcome = loop {
            if live.generation.load(Ordering::SeqCst) > g {
                break Ok(());
            }
            if live.cancelled() {
                break Err(Stopped::Cancelled);
            }
            if let Some(why) = self.told_to_stop() {
                break Err(why);
            }
            live.sleep(100);
        };
        slots::stop_sleeping();
        outcome
    }
}

/// A run as its last worker closes it.
pub struct FinishedRun<C> {
    pub run_id: i64,
    pub workers: u32,
    pub config: C,
    /// the slot as the last worker left it (its barrier marks)
    pub slot: RunSlot,
    /// from the first worker's loop start to the last one's end
    pub seconds: f64,
    /// the workers' time connected, µs
    pub connected_us: f64,
    /// open model: the arrivals due before the deadline (LiveSlot::arrivals)
    pub arrivals: u64,
    /// recorded on the primary for a hot standby (runs::standby): this server's statistics are
    /// not the ones the run's workers moved
    pub from_standby: bool,
}

/// What a worker adds to its run's live figures (counts and latencies since it last published).
pub struct LiveFigures {
    index: usize,
    pub ops: u64,
    pub errors: u64,
    pub deadlocks: u64,
    buckets: Buckets,
    pub published: pg_sys::TimestampTz,
}

impl LiveFigures {
    pub fn record(&mut self, latency_us: u64) {
        self.ops += 1;
        self.buckets[buckets::index(latency_us)] += 1;
    }

    /// Whether it is time to publish (every 100 ms).
    pub fn due(&self, at: pg_sys::TimestampTz) -> bool {
        at - self.published >= 100_000
    }

    /// Add what this worker did to the run's live figures (the run's sampler reads them each
    /// second). Returns false when the run is cancelled.
    pub fn publish(&mut self, at: pg_sys::TimestampTz) -> bool {
        let live = slots::live(self.index);
        live.ops.fetch_add(self.ops, Ordering::Relaxed);
        live.errors.fetch_add(self.errors, Ordering::Relaxed);
        live.deadlocks.fetch_add(self.deadlocks, Ordering::Relaxed);
        for (i, &n) in self.buckets.iter().enumerate().filter(|(_, n)| **n > 0) {
            live.interval[i].fetch_add(n, Ordering::Relaxed);
            live.cumulative[i].fetch_add(n, Ordering::Relaxed);
        }
        self.ops = 0;
        self.errors = 0;
        self.deadlocks = 0;
        self.buckets = [0; BUCKETS];
        self.published = at;
        unsafe { pg_sys::pgstat_report_stat(false) };
        !live.cancelled()
    }
}

/// The run this worker belongs to, for [`give_back_slot`].
static EXITING_RUN: AtomicI64 = AtomicI64::new(0);
static EXITING_DATABASE: AtomicU32 = AtomicU32::new(0);
static EXITING_WORKER: AtomicU32 = AtomicU32::new(0);
/// This worker has counted itself out of `workers_running`.
static COUNTED_OUT: AtomicBool = AtomicBool::new(false);
/// This worker is done with the slot (finished normally).
static SLOT_GIVEN_BACK: AtomicBool = AtomicBool::new(false);

fn slot_of(run_id: i64, database: pg_sys::Oid, index: usize) -> Option<RunSlot> {
    let table = RUNS.share();
    let slot = table.slots[index];
    slot.holds(run_id, database).then_some(slot)
}

/// The run's row in `stress.runs`, from its slot.
fn run_row<'a>(slot: &'a RunSlot, status: &'a str) -> RunRow<'a> {
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

/// A worker's whole life; `arg` is its slot, `bgw_extra` "run_id worker database".
pub fn main<K: RunKind>(arg: pg_sys::Datum) {
    crate::postgres::signals::install();
    // SAFETY: the handlers are installed; PostgreSQL's worker start blocked signals until now.
    unsafe { pg_sys::BackgroundWorkerUnblockSignals() };
    let index = arg.value();
    let slots::WorkerArgs {
        run_id,
        worker,
        database,
    } = slots::WorkerArgs::from_extra(BackgroundWorker::get_extra());
    let Some(slot) = slot_of(run_id, database, index) else {
        return; // the run ended before this worker started
    };
    // However this worker ends (an ERROR, a panic, a FATAL as it connects), it gives its place in
    // the run back; see give_back_slot.
    EXITING_RUN.store(run_id, Ordering::Relaxed);
    EXITING_DATABASE.store(u32::from(database), Ordering::Relaxed);
    EXITING_WORKER.store(worker, Ordering::Relaxed);
    unsafe { pg_sys::before_shmem_exit(Some(give_back_slot), pg_sys::Datum::from(index)) };
    slot.caller.connect_as();
    unsafe { pg_sys::DefaultXactIsoLevel = slot.isolation };
    // (The starter serialized it: it parses.)
    let config: K::Config =
        serde_json::from_str(slot.config.as_str()).expect("the run's configuration");
    let run = WorkerRun {
        run_id,
        database,
        index,
        worker,
        workers: slot.workers,
        started_at: slot.started_at,
        deadline: slot.deadline,
        config,
    };
    // (stress.timeline reads what this process waits on)
    if let Some(pid) = run.live().pids.get(worker as usize) {
        pid.store(unsafe { pg_sys::MyProcPid }, Ordering::Relaxed);
    }
    let names = K::tasks(&run.config);
    let mut stats: Vec<TaskStats> = vec![TaskStats::default(); names.len()];
    // When this worker's loop ran: the run's seconds are from the first start to the last end.
    let (mut loop_start, mut loop_end) = (now(), now());

    // A run on a hot standby writes nothing here: its results go to the caller's segment, which
    // records them on the primary (runs::standby).
    let standby = slot.standby_segment != 0;
    // The run's row, committed before anything that could fail: a run whose work cannot even be
    // prepared is recorded with the reason (finish_run inserts it too, should this fail).
    if worker == 0
        && !standby
        && let Err(report) = in_transaction(|| records::register_run(&run_row(&slot, "running")))
    {
        pgrx::log!(
            "pg_stress run {run_id}: could not register the run: {}",
            report.message()
        );
    }
    let prepared = in_transaction(|| {
        // The caller's search_path, so that names resolve as the caller's did (no
        // statement_timeout: a worker arms its statements' timeouts itself), and a name in
        // pg_stat_activity.application_name that says which run this is.
        let name = format!(
            "pg_stress {} run {run_id} worker {}/{}",
            slot.label.as_str(),
            worker + 1,
            slot.workers
        );
        // (read-only SPI: no transaction id, which a hot standby could not give)
        crate::postgres::spi_read::one::<String>(
            "SELECT pg_catalog.set_config('search_path', $1, false), pg_catalog.set_config('application_name', $2, false)",
            &[slot.search_path.as_str().into(), name.into()],
        )
        .expect("setting the worker's session");
        let prepared = K::prepare(&run);
        // What the run runs on, read in a worker's session (the role's and database's settings,
        // the caller's search_path, what preparing set): before this worker's loop, so not inside
        // any measurement.
        if worker == 0 && !standby && prepared.is_ok() {
            let parameters = slot.parameters();
            let schema = parameters.get("schema").and_then(|s| s.as_str());
            let relations: Vec<pg_sys::Oid> = K::statements(&run.config)
                .iter()
                .flat_map(|(sql, types)| {
                    // (a statement that names a table an earlier one creates cannot be analyzed
                    // before the run: its tables are not recorded, and the run goes on)
                    crate::postgres::subxact::run_isolated(|| {
                        crate::postgres::read_only::relations_named(sql, types)
                    })
                    .unwrap_or_default()
                })
                .collect();
            records::record_environment(
                run_id,
                crate::compare::environment::capture(schema, &relations),
            );
        }
        prepared
    });
    let mut kept = None;
    let stop_reason = match prepared {
        Ok(Ok(mut state)) => {
            {
                let mut table = RUNS.exclusive();
                table.slots[index].workers_started += 1;
            }
            loop_start = now();
            let why = K::run(&run, &mut state, &mut stats);
            loop_end = now();
            kept = Some(state);
            why
        }
        Ok(Err(e)) => Some(format!(
            "worker {}: preparing the operations: {e}",
            worker + 1
        )),
        Err(report) => Some(format!(
            "worker {}: preparing the operations: {}",
            worker + 1,
            report.message()
        )),
    };
    if stop_reason.is_some() {
        // Stop the others too: a run either completes or says why it did not.
        run.live().request_cancel();
    }
    let saved = in_transaction(|| {
        if standby {
            let record = super::standby::WorkerRecord::new(
                (loop_start, loop_end),
                &worker_results(&names, &stats, stop_reason.as_deref()),
            );
            if let Err(e) = super::standby::write(slot.standby_segment, worker as usize, &record) {
                pgrx::warning!("pg_stress run {run_id} worker {}: {e}", worker + 1);
                run.live().request_cancel();
            }
            return;
        }
        if let Some(state) = &kept {
            K::save(&run, state);
        }
        save_worker_results(
            &run,
            (loop_start, loop_end),
            &names,
            &stats,
            stop_reason.as_deref(),
        );
    });
    if let Err(report) = saved {
        pgrx::log!(
            "pg_stress run {run_id} worker {worker}: could not save results: {}",
            report.message()
        );
    }
    drop(kept);
    if let Some(pid) = run.live().pids.get(worker as usize) {
        pid.store(0, Ordering::Relaxed);
    }
    // This worker's commits and block counts reach the statistics before the run is closed.
    unsafe { pg_sys::pgstat_report_stat(true) };
    let last = {
        let mut table = RUNS.exclusive();
        let slot = &mut table.slots[index];
        if slot.holds(run_id, database) {
            slot.workers_running -= 1;
            slot.workers_running == 0
        } else {
            false
        }
    };
    COUNTED_OUT.store(true, Ordering::Relaxed);
    if last {
        let now_slot = slot_of(run_id, database, index).unwrap_or(slot);
        if standby {
            // The caller records the run (on the primary) from what its processes left in its
            // segment.
            let closing = super::standby::closing_of(&now_slot, &closing_of(&run));
            let r = slot.workers as usize;
            if let Err(e) = super::standby::write(slot.standby_segment, r, &closing) {
                pgrx::warning!("pg_stress run {run_id}: {e}");
            }
        } else if let Err(report) = in_transaction(|| finish_run::<K>(&run, &now_slot)) {
            pgrx::warning!(
                "pg_stress run {run_id}: could not record its end: {}",
                report.message()
            );
            let why = format!("its end could not be recorded: {}", report.message());
            let _ = in_transaction(|| {
                records::close_abandoned_run(&RunRow {
                    error: Some(&why),
                    ..run_row(&slot, "failed")
                })
            });
        }
        let mut table = RUNS.exclusive();
        if table.slots[index].holds(run_id, database) {
            table.slots[index] = RunSlot::default();
        }
        drop(table);
        // (whoever waits for the run returns now)
        run.live().wake_all();
    }
    SLOT_GIVEN_BACK.store(true, Ordering::Relaxed);
    unsafe { pg_sys::pgstat_report_stat(true) };
}

/// `before_shmem_exit` callback: a worker that exits without finishing (an ERROR or panic becomes
/// FATAL in a background worker) counts itself out as lost and stops the others, so the run fails
/// instead of waiting for it. If it was the last one, the run is left `Abandoned` and a closer
/// worker records it as failed and frees the slot within a second or so (see runs::recovery):
/// no slot is kept until the next restart.
#[pg_guard]
unsafe extern "C-unwind" fn give_back_slot(_code: std::ffi::c_int, arg: pg_sys::Datum) {
    if SLOT_GIVEN_BACK.load(Ordering::Relaxed) {
        return;
    }
    // An exiting process keeps no LWLock, and sleeps on no condition variable: release what the
    // error struck in before we take ours.
    unsafe {
        pg_sys::LWLockReleaseAll();
        pg_sys::ConditionVariableCancelSleep();
    }
    let index = arg.value();
    let run_id = EXITING_RUN.load(Ordering::Relaxed);
    let database = pg_sys::Oid::from(EXITING_DATABASE.load(Ordering::Relaxed));
    let abandoned = {
        let mut table = RUNS.exclusive();
        let slot = &mut table.slots[index];
        if !slot.holds(run_id, database) {
            return;
        }
        // (its process id, which another process may take next, leaves stress.timeline's view)
        if let Some(pid) = slots::live(index)
            .pids
            .get(EXITING_WORKER.load(Ordering::Relaxed) as usize)
        {
            pid.store(0, Ordering::Relaxed);
        }
        if !COUNTED_OUT.load(Ordering::Relaxed) {
            slot.workers_running = slot.workers_running.saturating_sub(1);
            slot.workers_lost += 1;
            slots::live(index).request_cancel();
        }
        if slot.workers_running == 0 && slot.standby_segment != 0 {
            // (a standby's run is recorded by its caller, which sees the slot free and the
            // closing missing: nothing for a closer to write, and nowhere to write it)
            *slot = RunSlot::default();
            drop(table);
            slots::live(index).wake_all();
            return;
        }
        if slot.workers_running == 0 {
            slot.phase = Phase::Abandoned;
            true
        } else {
            false
        }
    };
    if abandoned {
        slots::live(index).wake_all();
        super::recovery::start_closer(database);
    }
}

/// What a worker keeps of its tasks: those it ran (all of them when it stopped on a problem).
fn worker_results(
    names: &[String],
    stats: &[TaskStats],
    stop_reason: Option<&str>,
) -> Vec<WorkerResult> {
    names
        .iter()
        .zip(stats)
        .filter(|(_, s)| s.calls > 0 || stop_reason.is_some())
        .map(|(name, s)| WorkerResult {
            operation: name.clone(),
            stats: s.clone(),
            stop_reason: stop_reason.map(str::to_owned),
        })
        .collect()
}

fn save_worker_results<C>(
    run: &WorkerRun<C>,
    window: (pg_sys::TimestampTz, pg_sys::TimestampTz),
    names: &[String],
    stats: &[TaskStats],
    stop_reason: Option<&str>,
) {
    let results = worker_results(names, stats, stop_reason);
    records::save_worker_results(run.run_id, run.worker as i32, window, &results);
}

/// What the last worker knows of how the run went, beside the workers' results.
#[derive(Debug, Clone, Copy, Default)]
pub struct Closing {
    pub cancelled: bool,
    pub peak_connections: i64,
    /// open model: the arrivals due before the deadline
    pub arrivals: u64,
}

fn closing_of<C>(run: &WorkerRun<C>) -> Closing {
    let live = run.live();
    Closing {
        cancelled: live.cancelled(),
        peak_connections: live.peak_connections.load(Ordering::Relaxed),
        arrivals: live.arrivals.load(Ordering::Relaxed),
    }
}

/// Merge every worker's results, let the kind record them, and close the run's row. `now_slot` is
/// the run's slot as its last worker left it.
fn finish_run<K: RunKind>(run: &WorkerRun<K::Config>, now_slot: &RunSlot) {
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
