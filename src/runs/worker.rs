//! A run's background worker, whatever the run's kind: it connects as the caller, takes on the
//! caller's role, search_path and isolation, lets the kind prepare and run its loop, hands what it
//! measured to the run's [`Destination`], and — the last one out — has the destination close the
//! run.
//!
//! Bookkeeping (the run's row, each worker's counters and histograms, the merged results) is written
//! as the owner of the `stress` tables, like a SECURITY DEFINER function would (see
//! [`crate::records`]): the workload itself always runs as the caller's role.

use super::closing::run_row;
use super::destination::{self, Destination};
use super::kind::{RunKind, WorkerRun};
use super::slots::{self, Phase, RUNS, RunSlot};
use crate::metrics::task::TaskStats;
use crate::postgres::backend::now;
use crate::postgres::transaction::in_transaction;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

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

/// A worker's whole life; `arg` is its slot, `bgw_extra` "run_id worker database".
pub fn main<K: RunKind>(arg: pg_sys::Datum) {
    crate::postgres::signals::install();
    // SAFETY: the handlers are installed; PostgreSQL's worker start blocked signals until now.
    unsafe { pg_sys::BackgroundWorkerUnblockSignals() };
    let Some((run, slot)) = join::<K>(arg.value()) else {
        return; // the run ended before this worker started
    };
    let destination = Destination::of(&slot);
    if run.worker == 0 {
        destination.register(&run_row(&slot, "running"));
    }
    let names = K::tasks(&run.config);
    let mut stats: Vec<TaskStats> = vec![TaskStats::default(); names.len()];
    let (stop_reason, kept, window) = work::<K>(&run, &slot, destination, &mut stats);
    if stop_reason.is_some() {
        // Stop the others too: a run either completes or says why it did not.
        run.live().request_cancel();
    }
    let results = destination::results_of(&names, &stats, stop_reason.as_deref());
    let saved = in_transaction(|| destination.save::<K>(&run, kept.as_ref(), window, results));
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            pgrx::warning!(
                "pg_stress run {} worker {}: {e}",
                run.run_id,
                run.worker + 1
            );
            run.live().request_cancel();
        }
        Err(report) => pgrx::log!(
            "pg_stress run {} worker {}: could not save results: {}",
            run.run_id,
            run.worker,
            report.message()
        ),
    }
    drop(kept);
    if let Some(pid) = run.live().pids.get(run.worker as usize) {
        pid.store(0, Ordering::Relaxed);
    }
    // This worker's commits and block counts reach the statistics before the run is closed.
    crate::postgres::backend::report_stats(true);
    if count_out(&run) {
        let now_slot = slot_of(run.run_id, run.database, run.index).unwrap_or(slot);
        destination.close::<K>(&run, &slot, &now_slot);
        let mut table = RUNS.exclusive();
        if table.slots[run.index].holds(run.run_id, run.database) {
            table.slots[run.index] = RunSlot::default();
        }
        drop(table);
        // (whoever waits for the run returns now)
        run.live().wake_all();
    }
    SLOT_GIVEN_BACK.store(true, Ordering::Relaxed);
    crate::postgres::backend::report_stats(true);
}

/// Take this worker's place in the run of slot `index`: from here on, however it ends (an ERROR, a
/// panic, a FATAL as it connects), it gives the place back (see [`give_back_slot`]). Then connect as
/// the caller and read the run's configuration. None: the run ended before this worker started.
fn join<K: RunKind>(index: usize) -> Option<(WorkerRun<K::Config>, RunSlot)> {
    let slots::WorkerArgs {
        run_id,
        worker,
        database,
    } = slots::WorkerArgs::from_extra(BackgroundWorker::get_extra());
    let slot = slot_of(run_id, database, index)?;
    EXITING_RUN.store(run_id, Ordering::Relaxed);
    EXITING_DATABASE.store(u32::from(database), Ordering::Relaxed);
    EXITING_WORKER.store(worker, Ordering::Relaxed);
    // SAFETY: give_back_slot is an extern "C-unwind" function of this library, which stays loaded
    // until exit; index is a plain integer datum.
    unsafe { pg_sys::before_shmem_exit(Some(give_back_slot), pg_sys::Datum::from(index)) };
    slot.caller.connect_as();
    crate::postgres::backend::set_default_isolation(slot.isolation);
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
        pid.store(crate::postgres::backend::pid(), Ordering::Relaxed);
    }
    Some((run, slot))
}

/// Prepare and run the kind's loop into `stats`: why it stopped if that was a problem, what the
/// kind kept, and when the loop ran (the run's seconds are from the first start to the last end).
fn work<K: RunKind>(
    run: &WorkerRun<K::Config>,
    slot: &RunSlot,
    destination: Destination,
    stats: &mut [TaskStats],
) -> (
    Option<String>,
    Option<K::Worker>,
    (pg_sys::TimestampTz, pg_sys::TimestampTz),
) {
    let worker = run.worker;
    let prepared = in_transaction(|| {
        set_session(run, slot);
        let prepared = K::prepare(run);
        // What the run runs on, read in a worker's session (the role's and database's settings,
        // the caller's search_path, what preparing set): before this worker's loop, so not inside
        // any measurement.
        if worker == 0 && prepared.is_ok() {
            destination.record_environment(run.run_id, || environment_of::<K>(run, slot));
        }
        prepared
    });
    let failed = |why: &str| {
        let now = now();
        (
            Some(format!(
                "worker {}: preparing the operations: {why}",
                worker + 1
            )),
            None,
            (now, now),
        )
    };
    match prepared {
        Ok(Ok(mut state)) => {
            RUNS.exclusive().slots[run.index].workers_started += 1;
            let loop_start = now();
            let why = K::run(run, &mut state, stats);
            (why, Some(state), (loop_start, now()))
        }
        Ok(Err(e)) => failed(&e),
        Err(report) => failed(report.message()),
    }
}

/// The caller's search_path, so that names resolve as the caller's did (no statement_timeout: a
/// worker arms its statements' timeouts itself), and a name in pg_stat_activity.application_name
/// that says which run this is.
fn set_session<C>(run: &WorkerRun<C>, slot: &RunSlot) {
    let name = format!(
        "pg_stress {} run {} worker {}/{}",
        slot.label.as_str(),
        run.run_id,
        run.worker + 1,
        slot.workers
    );
    // (read-only SPI: no transaction id, which a hot standby could not give)
    crate::postgres::spi_read::one::<String>(
        "SELECT pg_catalog.set_config('search_path', $1, false), pg_catalog.set_config('application_name', $2, false)",
        &[slot.search_path.as_str().into(), name.into()],
    )
    .expect("setting the worker's session");
}

/// The run's environment: the data schema's tables and those the kind's statements name.
fn environment_of<K: RunKind>(run: &WorkerRun<K::Config>, slot: &RunSlot) -> serde_json::Value {
    let parameters = slot.parameters();
    let schema = parameters.get("schema").and_then(|s| s.as_str());
    let relations: Vec<pg_sys::Oid> = K::statements(&run.config)
        .iter()
        .flat_map(|(sql, types)| {
            // (a statement that names a table an earlier one creates cannot be analyzed before
            // the run: its tables are not recorded, and the run goes on)
            crate::postgres::subxact::run_isolated(|| {
                crate::postgres::read_only::relations_named(sql, types)
            })
            .unwrap_or_default()
        })
        .collect();
    crate::compare::environment::capture(schema, &relations)
}

/// Count this worker out of the run; whether it was the last one.
fn count_out<C>(run: &WorkerRun<C>) -> bool {
    let last = {
        let mut table = RUNS.exclusive();
        let slot = &mut table.slots[run.index];
        if slot.holds(run.run_id, run.database) {
            slot.workers_running -= 1;
            slot.workers_running == 0
        } else {
            false
        }
    };
    COUNTED_OUT.store(true, Ordering::Relaxed);
    last
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
    // SAFETY: releasing every LWLock and cancelling this process's condition-variable sleep are
    // what PostgreSQL's own error recovery does; nothing of ours holds one across this call.
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
        if slot.workers_running == 0 && !Destination::of(slot).closed_by_closer() {
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
