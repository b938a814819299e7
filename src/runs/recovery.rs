//! After a restart or a crash, runs that were going on are marked `interrupted`.
//!
//! A static background worker (registered when pg_stress is preloaded) starts once recovery is over,
//! lists the databases that accept connections, and starts one short worker per database. That one
//! closes every load run or benchmark still `running` that no process of this server holds: runs
//! live in this server's shared memory, which a restart — or a crash and reinitialization, when
//! the OOM killer takes a backend — starts empty.
//!
//! The static worker then stays, idle on its latch, until the server stops: PostgreSQL forgets a
//! worker that exited (or was registered never to restart) when it reinitializes after a crash,
//! and only one that is still registered starts again afterwards — which is exactly when it is
//! needed.

use super::slots::{self, Phase, RUNS, RunSlot};
use crate::postgres::bgworker::{self, WorkerSpec};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// From `_PG_init`, when preloaded.
pub fn register() {
    BackgroundWorkerBuilder::new("pg_stress run recovery")
        .set_type("pg_stress recovery")
        .set_library("pg_stress")
        .set_function("pg_stress_recovery_main")
        .enable_spi_access() // a connection (to no database), once recovery has finished
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        // (started again after a crash-and-reinitialize cycle; see the module's doc)
        .set_restart_time(Some(std::time::Duration::from_secs(10)))
        .load();
}

/// The databases one may connect to (template0 is not one).
fn databases() -> Vec<pg_sys::Oid> {
    let mut found = Vec::new();
    // SAFETY: this worker is connected to no database yet and in no transaction; the one started
    // here reads pg_database through a catalog scan that is ended, the table closed and the
    // transaction committed before returning.
    unsafe {
        pg_sys::StartTransactionCommand();
        let rel = pg_sys::table_open(
            pg_sys::DatabaseRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let database = &*((*tuple).t_data as *const u8)
                .add((*(*tuple).t_data).t_hoff as usize)
                .cast::<pg_sys::FormData_pg_database>();
            if database.datallowconn {
                found.push(database.oid);
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        pg_sys::CommitTransactionCommand();
    }
    found
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_recovery_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    // SAFETY: the handler is installed; the worker's start blocked signals until now.
    unsafe { pg_sys::BackgroundWorkerUnblockSignals() };
    // No database: only the shared catalogs (pg_database) are needed here.
    BackgroundWorker::connect_worker_to_spi(None, None);
    for database in databases() {
        // Without a free slot the rows stay `running` until the next run in that database starts
        // (which closes them too): say so in the log.
        if !start_database_worker("pg_stress run recovery (database)", database) {
            pgrx::log!("pg_stress: no background worker slot to mark interrupted load runs");
        }
    }
    // Stay registered until the server stops (false: SIGTERM, a shutdown).
    while BackgroundWorker::wait_latch(Some(std::time::Duration::from_secs(3600))) {}
}

/// Start the per-database worker (`pg_stress_recovery_database_main`) for `database`; false if no
/// background worker slot was free.
fn start_database_worker(name: &str, database: pg_sys::Oid) -> bool {
    bgworker::start(&WorkerSpec {
        name,
        kind: "pg_stress recovery",
        function: "pg_stress_recovery_database_main",
        argument: pg_sys::Datum::from(database),
        extra: "",
        notify: false,
    })
    .is_some()
}

/// Start a worker that closes `database`'s abandoned runs (see [`close_abandoned_runs`]); false if
/// no background worker slot was free (a run that waits notices on its own; stress.wait and the
/// next start of a run in that database close it too).
pub fn start_closer(database: pg_sys::Oid) -> bool {
    start_database_worker("pg_stress run closer", database)
}

/// Record the run in `slot`, whose workers are all gone without closing it, as failed with `why`
/// (inserting its row if no worker wrote one).
pub fn record_abandoned(slot: &RunSlot, why: &str) {
    crate::records::close_abandoned_run(&crate::records::RunRow {
        id: slot.run_id,
        kind: slot.kind.as_str(),
        parameters: serde_json::Value::Null,
        status: "failed",
        started_at: slot.started_at,
        run_as: slot.caller.current_user,
        error: Some(why),
        peak_connections: 0,
    });
}

/// Record every run of this database whose workers all died as failed, and free its slot.
pub fn close_abandoned_runs() {
    if !slots::available() {
        return;
    }
    let database = crate::postgres::backend::database();
    let abandoned: Vec<RunSlot> = RUNS
        .share()
        .slots
        .iter()
        .filter(|s| s.phase == Phase::Abandoned && s.caller.database == database)
        .copied()
        .collect();
    for slot in &abandoned {
        record_abandoned(
            slot,
            "its workers exited without finishing (see the server log)",
        );
        let mut table = RUNS.exclusive();
        if let Some(s) = table.slots.iter_mut().find(|s| {
            s.phase == Phase::Abandoned && s.caller.database == database && s.run_id == slot.run_id
        }) {
            *s = RunSlot::default();
        }
    }
}

/// Mark this database's runs that are recorded as `running` but that no process of this server
/// holds — the server restarted, or crashed and reinitialized its shared memory, while they ran —
/// `interrupted`. By the recovery worker after every start, and before every new run.
pub fn close_interrupted_runs() {
    // The rows first, then the slots: a run whose row is listed held its slot when the list was
    // read, so a slot missing now means it ended — closed (the UPDATE skips it) or lost.
    let listed = crate::records::running_runs();
    if listed.is_empty() {
        return;
    }
    // SAFETY: MyDatabaseId is this session's database, set once it connected.
    let database = crate::postgres::backend::database();
    let held: Vec<i64> = if slots::available() {
        RUNS.share()
            .slots
            .iter()
            .filter(|s| s.phase != Phase::Free && s.caller.database == database)
            .map(|s| s.run_id)
            .collect()
    } else {
        Vec::new()
    };
    let lost: Vec<i64> = listed.into_iter().filter(|id| !held.contains(id)).collect();
    let closed = crate::records::mark_interrupted_runs(&lost);
    if closed > 0 {
        pgrx::log!(
            "pg_stress: marked {closed} runs interrupted (the server restarted while they ran)"
        );
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_recovery_database_main(arg: pg_sys::Datum) {
    // SAFETY: the first thing a background worker does, once its signal handlers are set (the
    // default ones here).
    unsafe { pg_sys::BackgroundWorkerUnblockSignals() };
    let database = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    BackgroundWorker::transaction(|| {
        // Before anything else: this session took the database's settings (ALTER DATABASE … SET),
        // which its owner chooses, and runs as the bootstrap superuser.
        Spi::run("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)")
            .expect("pinning search_path");
        let installed = Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                            WHERE e.extname OPERATOR(pg_catalog.=) 'pg_stress')",
        )
        .expect("looking for pg_stress")
        .unwrap_or(false);
        if !installed {
            return;
        }
        close_abandoned_runs();
        close_interrupted_runs();
    });
}
