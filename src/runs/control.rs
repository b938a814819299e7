//! Starting a run, waiting for it, cancelling it, and what it is doing now: the engine's side that
//! runs in the caller's session.

use super::destination::{Destination, Segment};
use super::slots::{self, Phase, RUNS, RunSlot};
use super::standby;
use crate::error::StressError;
use crate::gucs;
use crate::postgres::bgworker::{self, Caller, WorkerSpec};
use crate::postgres::procedure::Call;
use crate::postgres::spi_read;
use crate::records;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// ERROR (55000) unless pg_stress was preloaded: runs live in shared memory.
pub fn require_preload(function: &'static str) {
    if !slots::available() {
        StressError::NeedsPreload(function).raise();
    }
}

/// A validated run, ready to start; its kind's configuration comes from [`start`]'s `configure`.
pub struct RunSpec {
    /// the run's kind in stress.runs (run_load, benchmark), also the label of its NOTICEs
    pub kind: &'static str,
    /// the `extern "C"` function the workers start in (the kind's, which calls `worker::main`)
    pub entry_point: &'static str,
    /// the word in the workers' names and application_name (load, benchmark)
    pub label: &'static str,
    pub workers: usize,
    /// None: the run ends when its work is done
    pub seconds: Option<f64>,
    pub isolation: i32,
    /// a summary NOTICE when the run ends (a benchmark returns rows instead)
    pub summary_notice: bool,
}

/// The kind's configuration (which its workers read) and the parameters recorded in stress.runs.
pub struct Configured {
    pub config: serde_json::Value,
    pub parameters: serde_json::Value,
}

/// Workers are sessions of their own: they cannot see what the caller's open transaction wrote (a
/// dataset generated in the same transaction), and they wait for the row locks it holds. Say so
/// where the call is, rather than leave a run that fails with "does not exist" or only waits.
/// (Rows this transaction wrote, from its statistics: not an assigned xid, which pgrx's SPI takes
/// for any query; and not pg_stress's own records or temp tables, which no worker reads.)
fn warn_if_caller_has_written(function: &str) {
    // A transaction that wrote (or locked rows) has a transaction id. Without one, nothing to warn
    // about — and the statistics below would say otherwise: in PostgreSQL 15 the per-transaction
    // counts still hold the previous, committed transaction's writes until they are flushed.
    // (pgrx's Spi::get_one and Client::update assign one: everything a run-starting function reads
    // before this goes through postgres::spi_read's read-only queries.)
    if !crate::postgres::backend::has_transaction_id() {
        return;
    }
    let wrote = Spi::get_one::<bool>(
        "SELECT EXISTS (
             SELECT 1 FROM pg_catalog.pg_class c
             WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,m}'::pg_catalog.\"char\"[])
               AND c.relpersistence OPERATOR(pg_catalog.<>) 't'
               AND c.relnamespace OPERATOR(pg_catalog.<>) 'stress'::pg_catalog.regnamespace
               AND c.relnamespace OPERATOR(pg_catalog.<>) 'pg_toast'::pg_catalog.regnamespace
               AND pg_catalog.pg_stat_get_xact_tuples_inserted(c.oid)
                   OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated(c.oid)
                   OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted(c.oid)
                   OPERATOR(pg_catalog.>) 0)",
    )
    .expect("reading this transaction's writes")
    .unwrap_or(false);
    if wrote {
        pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "{function}: this transaction has written data its workers cannot see until it commits"
            ),
            "pg_stress",
        )
        .set_hint(
            "Workers run in sessions of their own: they see only committed data, and wait for the \
             row locks this transaction holds. COMMIT first (or call it outside BEGIN ... COMMIT).",
        )
        .report(PgLogLevel::WARNING);
    }
}

/// Start the workers of a run; [`Started::wait`] waits for its end (from a procedure). Who may
/// start workers is checked first, then `configure` (the kind's own checks and configuration) runs.
/// `call` is the procedure that will wait for it (None: the run goes on detached, which a hot
/// standby cannot do: the waiting call records the run on the primary).
pub fn start(
    req: RunSpec,
    call: Option<&Call>,
    configure: impl FnOnce(i64) -> Configured,
) -> Started {
    crate::postgres::privilege::require_worker_grant(req.kind);
    // On a hot standby nothing can be written: the run records itself on the primary.
    let primary = primary_to_record_on(&req, call);
    let run_id = match primary {
        None => records::new_run_id(),
        Some(_) => {
            let mut table = RUNS.exclusive();
            table.standby_runs += 1;
            -table.standby_runs
        }
    };
    let Configured {
        config,
        mut parameters,
    } = configure(run_id);
    if primary.is_some() {
        parameters["standby"] = this_standby(run_id);
    }
    let mut segment = primary.as_ref().map(|_| Segment::create(req.workers));
    let slot = slot_for(&req, run_id, &config, &parameters, segment.as_ref());
    let index = claim_slot(&req, slot);
    // A procedure commits its checks and the run's id now: no transaction id, no snapshot while
    // the workers start (the slot in shared memory is all they read).
    if let Some(call) = call {
        call.commit();
    }
    let handles = start_workers(&req, run_id, index);
    let standby = match (primary, segment.take()) {
        (Some(primary), Some(segment)) => Some(Box::new(StandbyRun {
            primary,
            segment,
            slot,
        })),
        _ => None,
    };
    if standby.is_none() {
        start_sampler(&req, run_id, index);
    }
    Started {
        run_id,
        handles,
        kind: req.kind,
        summary_notice: req.summary_notice,
        standby,
    }
}

/// On a hot standby, the primary the run will be recorded on (checked now, before anything
/// starts); on a primary None, after closing what earlier runs left open.
fn primary_to_record_on(req: &RunSpec, call: Option<&Call>) -> Option<standby::Primary> {
    if !crate::postgres::backend::in_recovery() {
        warn_if_caller_has_written(req.kind);
        // Runs of this database whose workers all died and whose closer could not start, and
        // runs a restart interrupted that no recovery worker closed.
        super::recovery::close_abandoned_runs();
        super::recovery::close_interrupted_runs();
        return None;
    }
    if call.is_none() {
        StressError::NotSupported {
            message: format!(
                "{}: a run on a hot standby cannot go on in the background",
                req.kind
            ),
            hint: "Pass wait => true: the call that waits sends the run's results to the primary."
                .into(),
        }
        .raise();
    }
    Some(standby::Primary::check(req.kind))
}

/// Where a standby's run ran, for its parameters (`local_run_id`: its id here until the primary
/// gives it one).
fn this_standby(run_id: i64) -> serde_json::Value {
    spi_read::one::<pgrx::JsonB>(
        "SELECT pg_catalog.jsonb_build_object('local_run_id', $1::pg_catalog.int8,
                    'cluster_name', pg_catalog.current_setting('cluster_name'),
                    'port', pg_catalog.current_setting('port')::pg_catalog.int4)",
        &[run_id.into()],
    )
    .expect("describing this standby")
    .map(|j| j.0)
    .unwrap_or_default()
}

/// The run's slot: what its workers read (the caller's identity, search_path and isolation, the
/// kind's configuration) and its deadline.
fn slot_for(
    req: &RunSpec,
    run_id: i64,
    config: &serde_json::Value,
    parameters: &serde_json::Value,
    segment: Option<&Segment>,
) -> RunSlot {
    let started_at = crate::postgres::backend::now();
    let search_path =
        spi_read::one::<String>("SELECT pg_catalog.current_setting('search_path')", &[])
            .expect("reading search_path")
            .unwrap_or_default();
    let Some(search_path) = slots::FixedText::new(&search_path) else {
        StressError::invalid(
            req.kind,
            "search_path is longer than 1023 bytes",
            "Shorten it (SET search_path = …) before starting the run: the workers take it on.",
        )
        .raise();
    };
    let text = |value: &serde_json::Value| {
        slots::FixedText::new(&value.to_string()).unwrap_or_else(|| {
            StressError::invalid(
                req.kind,
                format!(
                    "the run's configuration takes more than {} bytes",
                    slots::CONFIG_BYTES
                ),
                "Pass fewer or shorter transactions or queries.",
            )
            .raise()
        })
    };
    RunSlot {
        run_id,
        phase: Phase::Running,
        caller: Caller::current(),
        kind: slots::FixedText::new(req.kind).expect("a short kind"),
        label: slots::FixedText::new(req.label).expect("a short label"),
        workers: req.workers as u32,
        workers_running: req.workers as u32,
        started_at,
        deadline: match req.seconds {
            Some(seconds) => started_at + (seconds * 1e6) as i64,
            None => i64::MAX,
        },
        isolation: req.isolation,
        // (a standby's run has no sampler: nothing can be written there)
        timeline: gucs::TIMELINE.get() && segment.is_none(),
        standby_segment: segment.map_or(0, Segment::handle),
        search_path,
        config: text(config),
        parameters: text(parameters),
        ..RunSlot::default()
    }
}

/// Put `slot` in a free place of the run table; its index. 53000 when every place is taken.
fn claim_slot(req: &RunSpec, slot: RunSlot) -> usize {
    let mut table = RUNS.exclusive();
    let Some(index) = table.slots.iter().position(|s| s.phase == Phase::Free) else {
        drop(table);
        StressError::OutOfWorkerSlots {
            message: format!(
                "{}: {} runs are already running",
                req.kind,
                slots::MAX_RUNS
            ),
            hint: "Wait for one to end, or cancel one: SELECT stress.cancel(run_id) (see stress.runs WHERE status = 'running').".into(),
        }
        .raise();
    };
    slots::live(index).reset();
    table.slots[index] = slot;
    index
}

/// Start the run's workers at the kind's entry point. If the server has too few worker slots, the
/// ones started stop at once and close the run, and the call fails (53000).
fn start_workers(
    req: &RunSpec,
    run_id: i64,
    index: usize,
) -> Vec<*mut pg_sys::BackgroundWorkerHandle> {
    let k = req.workers;
    let mut handles = Vec::with_capacity(k);
    for i in 0..k {
        let name = format!("pg_stress {} run {run_id} worker {}/{k}", req.label, i + 1);
        let extra = slots::WorkerArgs {
            run_id,
            worker: i as u32,
            database: crate::postgres::backend::database(),
        }
        .to_extra();
        let started = bgworker::start(&WorkerSpec {
            name: &name,
            // (every run's workers, benchmarks' too, show as backend_type "pg_stress load")
            kind: "pg_stress load",
            function: req.entry_point,
            argument: pg_sys::Datum::from(index),
            extra: &extra,
            notify: true,
        });
        let Some(handle) = started else {
            {
                // The ones started stop at once and close the run; the rest never come.
                let mut table = RUNS.exclusive();
                let s = &mut table.slots[index];
                slots::live(index).request_cancel();
                s.workers_running -= (k - i) as u32;
                if i == 0 {
                    *s = RunSlot::default();
                }
            }
            for &h in &handles {
                // SAFETY: each h is a handle RegisterDynamicBackgroundWorker gave this backend,
                // which keeps it (palloc'd in a context that lives to the end of the call).
                unsafe { pg_sys::WaitForBackgroundWorkerShutdown(h) };
            }
            bgworker::out_of_slots(req.kind, k, i);
        };
        handles.push(handle);
    }
    handles
}

/// The run's sampler: not one of its workers (a run without it has no per-second rows).
fn start_sampler(req: &RunSpec, run_id: i64, index: usize) {
    let sampler = bgworker::start(&WorkerSpec {
        name: &format!("pg_stress {} run {run_id} sampler", req.label),
        kind: "pg_stress sampler",
        function: super::sampler::ENTRY_POINT,
        argument: pg_sys::Datum::from(index),
        extra: &slots::WorkerArgs {
            run_id,
            worker: 0,
            database: crate::postgres::backend::database(),
        }
        .to_extra(),
        notify: false,
    });
    if sampler.is_none() {
        pgrx::warning!(
            "{}: run {run_id}: no background worker slot was left for its sampler: the run has no rows in stress.samples or stress.timeline",
            req.kind
        );
    }
}

/// A run of a hot standby's: its results come back in the caller's segment, and the caller
/// records them on the primary.
struct StandbyRun {
    primary: standby::Primary,
    segment: Segment,
    slot: RunSlot,
}

/// A run whose workers have started.
pub struct Started {
    pub run_id: i64,
    /// the workers' handles (in the call's memory, which outlives its commits)
    handles: Vec<*mut pg_sys::BackgroundWorkerHandle>,
    kind: &'static str,
    summary_notice: bool,
    standby: Option<Box<StandbyRun>>,
}

impl Started {
    /// Wait for the run's end from a procedure: commit first (the run's start), then wait holding
    /// no snapshot and no transaction id, with progress NOTICEs; on a standby, record the run on
    /// the primary and wait, between commits, until this standby has replayed that record. Returns
    /// the run's id (on a standby, the primary's). Ends committed, with nothing held.
    pub fn wait(self, call: &Call) -> i64 {
        call.commit();
        wait_for(self.run_id, &self.handles, self.kind);
        let recorded = match self.standby {
            None => self.run_id,
            Some(run) => {
                let StandbyRun {
                    primary,
                    segment,
                    slot,
                } = *run;
                let batch = standby::batch(&slot, &segment);
                drop(segment);
                let recorded = primary.record(&batch);
                call.commit();
                if !standby::wait_for_replay(recorded, Duration::from_secs(30), || call.commit()) {
                    pgrx::warning!(
                        "{}: run {} is recorded on the primary as run {recorded}, which this standby has not replayed within 30 s",
                        self.kind,
                        self.run_id
                    );
                }
                recorded
            }
        };
        if self.summary_notice {
            summary_notice(recorded, self.kind);
        }
        call.commit();
        recorded
    }
}

/// ERROR 0A000 for a function asked to wait for its run (0.5.0's `SELECT stress.run_load(…)`): a
/// statement that waits holds its snapshot, and with it the horizon of every row the run kills,
/// for the whole run. The hint shows `procedure`, which waits without one, then `instead`.
pub fn refuse_waiting_select(function: &str, procedure: &str, instead: &str) -> ! {
    StressError::NotSupported {
        message: format!(
            "stress.{function}(…) cannot wait for its run: a SELECT that waits holds a snapshot for the whole run, which keeps every row version the run kills from being pruned and slows what it measures"
        ),
        hint: format!(
            "CALL stress.{procedure}(…) with the same arguments waits without holding one (it commits as it goes), \
             with the same NOTICEs; {instead}"
        ),
    }
    .raise()
}

/// Cancels the run if the waiting caller is cancelled (or fails) while the run goes on: an ERROR
/// unwinds through the drop. A FATAL (pg_terminate_backend, a fast shutdown) exits the process
/// without unwinding: the `before_shmem_exit` callback below cancels the run then.
struct CancelOnDrop(i64, bool);

impl CancelOnDrop {
    fn new(run_id: i64) -> CancelOnDrop {
        static REGISTERED: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        if !REGISTERED.swap(true, Ordering::Relaxed) {
            // SAFETY: registered once per backend, with a callback that only reads a static and
            // cancels through shared memory (which is still attached before shmem exit).
            unsafe {
                pg_sys::before_shmem_exit(Some(cancel_awaited_at_exit), pg_sys::Datum::from(0))
            };
        }
        AWAITED.store(run_id, Ordering::Relaxed);
        CancelOnDrop(run_id, true)
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        AWAITED.store(0, Ordering::Relaxed);
        if self.1 {
            cancel_run(self.0);
        }
    }
}

/// The run this session is waiting for (0: none).
static AWAITED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// `before_shmem_exit` callback: a session that exits while it waits for a run (terminated, or
/// the server shutting down) stops the run, as a cancelled wait does.
#[pg_guard]
unsafe extern "C-unwind" fn cancel_awaited_at_exit(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    let run_id = AWAITED.swap(0, Ordering::Relaxed);
    if run_id != 0 && slots::available() {
        // SAFETY: an exiting process holds no LWLock we need and sleeps on no condition variable
        // once these are released (as the workers' own exit callback does).
        unsafe {
            pg_sys::LWLockReleaseAll();
            pg_sys::ConditionVariableCancelSleep();
        }
        cancel_run(run_id);
    }
}

/// Ask every worker of `run_id` to stop; false if it is not running.
pub fn cancel_run(run_id: i64) -> bool {
    let table = RUNS.share();
    match slots::find_in(&table, run_id) {
        Some(i) => {
            slots::live(i).request_cancel();
            true
        }
        None => false,
    }
}

/// Block until `run_id` ends, with NOTICEs on the way; reads only shared memory (no snapshot).
/// `handles` (the caller's own workers) let it notice workers that died without closing the run.
fn wait_for(run_id: i64, handles: &[*mut pg_sys::BackgroundWorkerHandle], label: &str) {
    let mut guard = CancelOnDrop::new(run_id);
    let interval = Duration::from_millis(gucs::PROGRESS_INTERVAL.get().max(0) as u64);
    let mut last_notice = Instant::now();
    loop {
        let Some(index) = slots::find_in(&RUNS.share(), run_id) else {
            break;
        };
        let live = slots::live(index);
        let stopped = handles
            .iter()
            .filter(|&&h| {
                let mut pid = 0;
                // SAFETY: as above: a handle of a worker this backend registered; pid is written
                // only.
                let status = unsafe { pg_sys::GetBackgroundWorkerPid(h, &mut pid) };
                status == pg_sys::BgwHandleStatus::BGWH_STOPPED
            })
            .count();
        // (Read after the handles: a worker that finished had counted itself out before it exited.
        // Only the counts, not the whole slot with its configuration.)
        let now = {
            let table = RUNS.share();
            slots::find_in(&table, run_id).map(|i| {
                let s = &table.slots[i];
                (s.started_at, s.workers - s.workers_running)
            })
        };
        let Some((started_at, finished)) = now else {
            break;
        };
        if stopped == handles.len() {
            close_abandoned_run(
                run_id,
                "its workers exited without closing the run (see the server log)",
            );
            break;
        }
        // A worker gone without counting itself out (a FATAL as it connected, say) never will:
        // stop the others, so that the run ends (as failed, above) instead of waiting for it.
        if stopped as u32 > finished && !live.cancelled() {
            pgrx::warning!(
                "{label}: run {run_id}: a worker exited without finishing (see the server log); stopping the others"
            );
            cancel_run(run_id);
        }
        if !interval.is_zero() && last_notice.elapsed() >= interval {
            let elapsed = (crate::postgres::backend::now() - started_at) as f64 / 1e6;
            notice!(
                "{label}: run {run_id}, {elapsed:.0} s: {} operations ({:.0} ops/s), {} errors",
                live.ops.load(Ordering::Relaxed),
                live.ops.load(Ordering::Relaxed) as f64 / elapsed.max(1e-9),
                live.errors.load(Ordering::Relaxed)
            );
            last_notice = Instant::now();
        }
        live.sleep(100);
    }
    slots::stop_sleeping();
    guard.1 = false;
}

/// The run's status and figures as a NOTICE, from its records: read under a new snapshot, which
/// sees what its workers (or, on a standby, the primary's replayed record) committed.
fn summary_notice(run_id: i64, label: &str) {
    let summary = spi_read::latest::<Vec<Option<String>>>(
        "SELECT ARRAY[r.status, coalesce(' (' OPERATOR(pg_catalog.||) r.error OPERATOR(pg_catalog.||) ')', ''),
                pg_catalog.format('%s operations in %s s (%s ops/s), p50 %s ms, p99 %s ms, %s errors, %s deadlocks',
                       coalesce(t.calls, 0), pg_catalog.round(coalesce(t.seconds, 0)::pg_catalog.numeric, 1),
                       pg_catalog.round(coalesce(t.ops_per_sec, 0)::pg_catalog.numeric),
                       pg_catalog.round(coalesce(t.p50_ms, 0)::pg_catalog.numeric, 2),
                       pg_catalog.round(coalesce(t.p99_ms, 0)::pg_catalog.numeric, 2), coalesce(t.errors, 0),
                       coalesce(t.details OPERATOR(pg_catalog.->>) 'deadlocks', '0'))]
         FROM stress.runs r
         LEFT JOIN stress.results t ON t.run_id OPERATOR(pg_catalog.=) r.id AND t.name OPERATOR(pg_catalog.=) 'total'
         WHERE r.id OPERATOR(pg_catalog.=) $1",
        &[run_id.into()],
    )
    .expect("reading the run's summary");
    if let Some(fields) = summary {
        let field = |i: usize| fields.get(i).cloned().flatten().unwrap_or_default();
        notice!(
            "{label}: run {run_id} {}{}: {}",
            field(0),
            field(1),
            field(2)
        );
    }
}

/// A run whose workers are all gone without closing it: record it as failed (its row, if no worker
/// wrote one) and free its slot.
fn close_abandoned_run(run_id: i64, why: &str) {
    let slot = {
        let mut table = RUNS.exclusive();
        slots::find_in(&table, run_id).map(|i| std::mem::take(&mut table.slots[i]))
    };
    if let Some(slot) = slot {
        // (a standby's run is recorded, as failed, by the caller that waits for it)
        if Destination::of(&slot).closed_by_closer() {
            super::recovery::record_abandoned(&slot, why);
        }
        pgrx::warning!("{}: run {}: {why}", slot.kind.as_str(), slot.run_id);
    }
}

/// Like [`wait_for`], but cancelling the wait leaves the run going.
pub fn wait_for_without_cancel(run_id: i64) -> String {
    // (shared memory only while the run goes on: no snapshot; the status under a new one)
    loop {
        let Some(index) = slots::find(&RUNS.share(), run_id) else {
            break;
        };
        slots::live(index).sleep(100);
    }
    slots::stop_sleeping();
    spi_read::latest::<String>(
        "SELECT (SELECT status FROM stress.runs WHERE id OPERATOR(pg_catalog.=) $1)",
        &[run_id.into()],
    )
    .expect("reading the run's status")
    .unwrap_or_else(|| "unknown".into())
}

/// A run going on, as `stress.progress` shows it.
pub struct LiveRun {
    pub run_id: i64,
    pub database: pg_sys::Oid,
    pub started_at: pg_sys::TimestampTz,
    pub workers: u32,
    pub active_workers: u32,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
    /// None before the first operation
    pub p99_ms: Option<f64>,
    pub cancel_requested: bool,
}

/// The runs of this server the current user may see (none without preloading).
pub fn live_runs() -> Vec<LiveRun> {
    if !slots::available() {
        return Vec::new();
    }
    let table = RUNS.share();
    table
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.phase == Phase::Running && slots::visible(s))
        .map(|(i, s)| {
            let live = slots::live(i);
            LiveRun {
                run_id: s.run_id,
                database: s.caller.database,
                started_at: s.started_at,
                workers: s.workers,
                active_workers: live.workers_looping.load(Ordering::Relaxed),
                ops: live.ops.load(Ordering::Relaxed),
                ops_per_sec: live.rate(),
                errors: live.errors.load(Ordering::Relaxed),
                p99_ms: crate::metrics::buckets::quantile_ms(
                    &slots::LiveSlot::snapshot(&live.cumulative),
                    0.99,
                ),
                cancel_requested: live.cancelled(),
            }
        })
        .collect()
}

/// The role that started run `run_id`, if it is running in this database.
pub fn run_owner(run_id: i64) -> Option<pg_sys::Oid> {
    let table = RUNS.share();
    slots::find_in(&table, run_id).map(|i| table.slots[i].caller.current_user)
}

/// Whether run `run_id` is going on and visible to the current user.
pub fn is_running(run_id: i64) -> bool {
    slots::find(&RUNS.share(), run_id).is_some()
}
