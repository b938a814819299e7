//! A load worker: a background worker that runs the run's operation mix, each operation its own
//! transaction, until the deadline or a cancel, and records what it measured.
//!
//! Bookkeeping (the run's row, each worker's counters and histograms, the merged results) is written
//! as the owner of the `stress` tables, like a SECURITY DEFINER function would: the workload itself
//! always runs as the caller's role.

use super::custom::Custom;
use super::ops::{IdSequence, OPS, Plans, Workload};
use super::shmem::{Phase, RUNS, RunSlot};
use crate::benchmark::SlowExecution;
use crate::metrics::blocks;
use crate::metrics::buckets::{self, BUCKETS, Buckets};
use crate::metrics::histogram::Latency;
use crate::records::{RunRow, WorkerResult};
use pgrx::PgTryBuilder;
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use pgrx::prelude::*;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::weighted::WeightedIndex;
use rand_distr::{Distribution, Exp};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

/// What one worker measured for one operation.
#[derive(Default, Clone)]
pub struct OpStats {
    pub calls: i64,
    pub successes: i64,
    pub failures: i64,
    pub retries: i64,
    pub deadlocks: i64,
    pub serialization_failures: i64,
    pub latency: Latency,
    /// schedule lag of the open model: intended start to actual start
    pub lag: Latency,
    /// time spent in the operation's transactions (for the connection efficiency)
    pub busy_us: i64,
    pub first_error: Option<String>,
}

impl OpStats {
    /// Add another worker's (or operation's) figures to these.
    fn add(&mut self, other: &OpStats) {
        self.calls += other.calls;
        self.successes += other.successes;
        self.failures += other.failures;
        self.retries += other.retries;
        self.deadlocks += other.deadlocks;
        self.serialization_failures += other.serialization_failures;
        self.busy_us += other.busy_us;
        self.latency.merge(&other.latency);
        self.lag.merge(&other.lag);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// Run `f` as one transaction: commit if it returns, roll back and return the error if it raises.
fn in_transaction<T>(f: impl FnOnce() -> T) -> Result<T, Box<ErrorReportWithLevel>> {
    in_transaction_ending(false, f)
}

/// Run `f` as one transaction, rolled back even when it returns if `roll_back`.
fn in_transaction_ending<T>(
    roll_back: bool,
    f: impl FnOnce() -> T,
) -> Result<T, Box<ErrorReportWithLevel>> {
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        let value = f();
        unsafe {
            pg_sys::PopActiveSnapshot();
            if roll_back {
                pg_sys::AbortCurrentTransaction();
            } else {
                pg_sys::CommitTransactionCommand();
            }
        }
        Ok(value)
    }))
    .catch_others(|error| match error {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
            Err(Box::new(report))
        }
        panic @ CaughtError::RustPanic { .. } => panic.rethrow(),
    })
    .execute();
    if outcome.is_err() {
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    outcome
}

// utils/timeout.h, which pgrx does not bind. (TimeoutId is an enum: STATEMENT_TIMEOUT is its 4th.)
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;
unsafe extern "C-unwind" {
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
    fn get_timeout_indicator(id: std::ffi::c_int, reset_indicator: bool) -> bool;
}

/// Run `f` (one operation's transaction) with a statement timeout of `ms` (none when 0). The
/// `statement_timeout` setting is armed by the client protocol loop, which a background worker does
/// not run: without this an operation waiting on a lock held by the caller's open transaction, say,
/// would wait past the end of its run for ever. A timeout that fires is the operation's 57014 ERROR.
fn with_statement_timeout<T>(ms: i64, f: impl FnOnce() -> T) -> T {
    struct Armed;
    impl Drop for Armed {
        fn drop(&mut self) {
            unsafe {
                disable_timeout(STATEMENT_TIMEOUT, false);
                // (fired after the operation ended, before it was disarmed: cancels nothing)
                if get_timeout_indicator(STATEMENT_TIMEOUT, true) {
                    pg_sys::QueryCancelPending = 0;
                }
            }
        }
    }
    if ms <= 0 {
        return f();
    }
    unsafe {
        enable_timeout_after(
            STATEMENT_TIMEOUT,
            ms.min(i32::MAX as i64) as std::ffi::c_int,
        )
    };
    let _armed = Armed;
    f()
}

/// Sleep on the latch (woken early by a signal), then honour interrupts.
pub(super) fn sleep_ms(ms: i64) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms.max(0) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}

fn now() -> pg_sys::TimestampTz {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Whether `slot` still holds run `run_id` of `database` (slots are reused, and run ids are only
/// unique within a database).
fn holds(slot: &RunSlot, run_id: i64, database: pg_sys::Oid) -> bool {
    slot.phase == Phase::Running && slot.run_id == run_id && slot.database == database
}

fn slot_of(run_id: i64, database: pg_sys::Oid, index: usize) -> Option<RunSlot> {
    let table = RUNS.share();
    let slot = table.slots[index];
    holds(&slot, run_id, database).then_some(slot)
}

/// What a run measures, in order: the built-in operations, then its custom transactions.
fn task_names(customs: &[Custom]) -> Vec<String> {
    OPS.iter()
        .map(|o| o.name().to_owned())
        .chain(customs.iter().map(|c| c.name.clone()))
        .collect()
}

/// The run's parameters as recorded in `stress.runs`, rebuilt from its slot.
pub fn parameters(slot: &RunSlot) -> serde_json::Value {
    if is_benchmark(slot) {
        let b = &slot.bench;
        let queries: Vec<String> = slot
            .customs()
            .into_iter()
            .map(|c| c.statements.concat())
            .collect();
        return serde_json::json!({
            "queries": queries, "iterations": b.iterations, "warmup": b.warmup,
            "concurrency": slot.workers, "prepared": b.prepared, "rollback": b.rollback,
        });
    }
    let mix: serde_json::Map<String, serde_json::Value> = OPS
        .iter()
        .zip(slot.weights)
        .filter(|(_, w)| *w > 0.0)
        .map(|(op, w)| (op.name().to_owned(), w.into()))
        .collect();
    serde_json::json!({
        "duration_seconds": (slot.deadline - slot.started_at) as f64 / 1e6,
        "workers": slot.workers,
        "rate": (slot.rate > 0.0).then_some(slot.rate),
        "mix": mix,
        "isolation": super::isolation_name(slot.isolation),
        "max_retries": slot.max_retries,
        "seed": slot.seed,
        "schema": slot.schema(),
        "scenario": super::Scenario::from_code(slot.scenario).name(),
        "transactions": (slot.custom_len > 0).then(|| {
            serde_json::from_slice::<serde_json::Value>(&slot.custom[..slot.custom_len as usize]).ok()
        }),
        "peak_hours": slot.day_profile.then(|| (0..24).filter(|h| slot.day_peaks & (1 << h) != 0).collect::<Vec<u32>>()),
    })
}

fn is_benchmark(slot: &RunSlot) -> bool {
    super::Scenario::from_code(slot.scenario) == super::Scenario::Benchmark
}

/// Entry point of a load worker: `bgw_main_arg` is its slot, `bgw_extra` "run_id worker".
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_load_worker_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    unsafe { pg_sys::BackgroundWorkerUnblockSignals() };
    let index = arg.value();
    let mut extra = BackgroundWorker::get_extra().split_whitespace();
    let run_id: i64 = extra.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let worker: u32 = extra.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let database = pg_sys::Oid::from(
        extra
            .next()
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0),
    );
    let Some(config) = slot_of(run_id, database, index) else {
        return; // the run ended before this worker started
    };
    // However this worker ends (an ERROR, a panic, a FATAL as it connects), it gives its place in
    // the run back; see give_back_slot.
    EXITING_RUN.store(run_id, Ordering::Relaxed);
    EXITING_DATABASE.store(u32::from(database), Ordering::Relaxed);
    unsafe { pg_sys::before_shmem_exit(Some(give_back_slot), pg_sys::Datum::from(index)) };
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnectionByOid(config.database, config.session_user, 0);
        pg_sys::SetUserIdAndSecContext(config.current_user, config.security_context);
        pg_sys::DefaultXactIsoLevel = config.isolation;
    }
    let customs = config.customs();
    let names = task_names(&customs);
    let mut stats: Vec<OpStats> = vec![OpStats::default(); names.len()];
    // A benchmark's slow executions logged by this worker, per query.
    let mut slow: Vec<Vec<SlowExecution>> = vec![Vec::new(); customs.len()];
    // When this worker's loop ran: the run's seconds are from the first start to the last end.
    let (mut loop_start, mut loop_end) = (now(), now());

    // The run's row, committed before anything that could fail: a run whose operations cannot even
    // be prepared is recorded with the reason (finish_run inserts it too, should this fail).
    if worker == 0
        && let Err(report) = in_transaction(|| register_run(&config))
    {
        pgrx::log!(
            "pg_stress load run {run_id}: could not register the run: {}",
            report.message()
        );
    }
    let plans = in_transaction(|| {
        // The caller's search_path, so custom transactions resolve names as the caller's did. (No
        // statement_timeout: a worker arms its operations' timeouts itself, with_statement_timeout.)
        // And a name in pg_stat_activity.application_name that says which run this is. The
        // built-in operations are index lookups whose plans do not depend on their parameters: plan
        // them once (generic plans). Custom transactions are planned as pgbench -M prepared would.
        let name = format!(
            "pg_stress {} run {} worker {}/{}",
            if is_benchmark(&config) {
                "benchmark"
            } else {
                "load"
            },
            config.run_id,
            worker + 1,
            config.workers
        );
        let plan_cache_mode = if customs.is_empty() {
            "force_generic_plan"
        } else {
            "auto"
        };
        Spi::run_with_args(
            "SELECT set_config('search_path', $1, false), set_config('application_name', $2, false),
                    set_config('plan_cache_mode', $3, false)",
            &[
                config.search_path().into(),
                name.into(),
                plan_cache_mode.into(),
            ],
        )
        .expect("setting the worker's session");
        Spi::connect(|client| {
            let benchmark = is_benchmark(&config);
            let prepared = !benchmark || config.bench.prepared;
            Plans::prepare(
                client,
                &config.schema(),
                customs.clone(),
                !benchmark,
                prepared,
            )
        })
    });
    let stop_reason = match plans {
        Ok(Ok(plans)) => {
            {
                let mut table = RUNS.exclusive();
                table.slots[index].workers_started += 1;
            }
            loop_start = now();
            let why = if is_benchmark(&config) {
                benchmark_loop(&config, index, worker, &plans, &mut stats, &mut slow)
            } else {
                run_loop(&config, index, worker, &plans, &mut stats)
            };
            loop_end = now();
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
        let mut table = RUNS.exclusive();
        if holds(&table.slots[index], run_id, database) {
            table.slots[index].cancel = true;
        }
    }
    let window = (loop_start, loop_end);
    let saved = in_transaction(|| {
        // The plans of slow queries, as the caller's role sees them.
        let plans: Vec<_> = customs
            .iter()
            .zip(&slow)
            .map(|(c, s)| {
                (!s.is_empty())
                    .then(|| crate::benchmark::plan_of(&c.statements.concat()))
                    .flatten()
            })
            .collect();
        save_worker_results(
            run_id,
            worker,
            window,
            &names,
            &stats,
            stop_reason.as_deref(),
        );
        for ((custom, executions), plan) in customs.iter().zip(&slow).zip(plans) {
            crate::benchmark::save_slow_executions(
                run_id,
                &custom.statements.concat(),
                Some(worker as i32 + 1),
                executions,
                plan,
            );
        }
    });
    if let Err(report) = saved {
        pgrx::log!(
            "pg_stress load run {run_id} worker {worker}: could not save results: {}",
            report.message()
        );
    }
    // This worker's commits and block counts reach the statistics before the run is closed.
    unsafe { pg_sys::pgstat_report_stat(true) };
    let last = {
        let mut table = RUNS.exclusive();
        let slot = &mut table.slots[index];
        if holds(slot, run_id, database) {
            slot.workers_running -= 1;
            slot.workers_running == 0
        } else {
            false
        }
    };
    COUNTED_OUT.store(true, Ordering::Relaxed);
    if last {
        let live = slot_of(run_id, database, index).unwrap_or(config);
        let closed = in_transaction(|| finish_run(&config, &live));
        if let Err(report) = closed {
            pgrx::warning!(
                "pg_stress load run {run_id}: could not record its end: {}",
                report.message()
            );
            let why = format!("its end could not be recorded: {}", report.message());
            let _ = in_transaction(|| {
                crate::records::close_abandoned_run(&RunRow {
                    error: Some(&why),
                    ..run_row(&config, "failed")
                })
            });
        }
        let mut table = RUNS.exclusive();
        if holds(&table.slots[index], run_id, database) {
            table.slots[index] = RunSlot::default();
        }
    }
    SLOT_GIVEN_BACK.store(true, Ordering::Relaxed);
    unsafe { pg_sys::pgstat_report_stat(true) };
}

/// The run this worker belongs to, for [`give_back_slot`].
static EXITING_RUN: AtomicI64 = AtomicI64::new(0);
static EXITING_DATABASE: AtomicU32 = AtomicU32::new(0);
/// This worker has counted itself out of `workers_running`.
static COUNTED_OUT: AtomicBool = AtomicBool::new(false);
/// This worker is done with the slot (finished normally).
static SLOT_GIVEN_BACK: AtomicBool = AtomicBool::new(false);

/// `before_shmem_exit` callback: a worker that exits without finishing (an ERROR or panic becomes
/// FATAL in a background worker) counts itself out as lost and stops the others, so the run fails
/// instead of waiting for it. If it was the last one, the run is left `Abandoned` and a closer
/// worker records it as failed and frees the slot within a second or so (see load::recovery):
/// no slot is kept until the next restart.
#[pg_guard]
unsafe extern "C-unwind" fn give_back_slot(_code: std::ffi::c_int, arg: pg_sys::Datum) {
    if SLOT_GIVEN_BACK.load(Ordering::Relaxed) {
        return;
    }
    // An exiting process keeps no LWLock: release any held when the error struck before we take ours.
    unsafe { pg_sys::LWLockReleaseAll() };
    let index = arg.value();
    let run_id = EXITING_RUN.load(Ordering::Relaxed);
    let database = pg_sys::Oid::from(EXITING_DATABASE.load(Ordering::Relaxed));
    let abandoned = {
        let mut table = RUNS.exclusive();
        let slot = &mut table.slots[index];
        if !holds(slot, run_id, database) {
            return;
        }
        if !COUNTED_OUT.load(Ordering::Relaxed) {
            slot.workers_running = slot.workers_running.saturating_sub(1);
            slot.workers_lost += 1;
            slot.cancel = true;
        }
        if slot.workers_running == 0 {
            slot.phase = Phase::Abandoned;
            true
        } else {
            false
        }
    };
    if abandoned {
        super::recovery::start_closer(database);
    }
}

/// The operations until the deadline, a cancel or SIGTERM. Returns why it stopped early, if it did
/// because of a problem (a cancel is not one).
fn run_loop(
    config: &RunSlot,
    index: usize,
    worker: u32,
    plans: &Plans,
    stats: &mut [OpStats],
) -> Option<String> {
    let workers = config.workers as i64;
    let mut work = Workload {
        accounts: config.accounts,
        hot_accounts: config.hot_accounts,
        transfer_pause: config.transfer_pause,
        order_ids: IdSequence {
            next: config.first_order_id + worker as i64,
            step: workers,
        },
        trade_ids: IdSequence {
            next: config.first_trade_id + worker as i64,
            step: workers,
        },
        audit_ids: IdSequence {
            next: config.first_audit_id + worker as i64,
            step: workers,
        },
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed ^ (0x10AD_0000 + worker as u64));
    // Built-in operations, then the custom transactions: one weighted choice over all of them.
    let weights: Vec<f64> = config
        .weights
        .iter()
        .copied()
        .chain(plans.customs().iter().map(|c| c.weight))
        .collect();
    let pick = WeightedIndex::new(&weights).expect("weights were validated");
    // Open model: Poisson arrivals at this worker's share of the rate, scheduled by intended start.
    let gaps = (config.rate > 0.0)
        .then(|| Exp::new(config.rate / workers as f64 / 1e6).expect("positive rate"));
    let mut intended = now() as f64;
    let mut live = LiveFigures::new(config.run_id, config.database, index);
    // (sigterm_received() clears the flag as it reads it: remember it.)
    let mut terminated = false;
    {
        let mut table = RUNS.exclusive();
        table.slots[index].workers_looping += 1;
    }
    loop {
        if let Some(gaps) = &gaps {
            intended += gaps.sample(&mut rng);
            if intended as i64 >= config.deadline {
                break;
            }
            // A day's profile: arrivals come at the peak rate and are kept with probability
            // (this hour's weight / the peak weight), a Poisson process of the varying rate.
            if config.day_profile {
                let share = (intended - config.started_at as f64)
                    / (config.deadline - config.started_at) as f64;
                let weight = day_weight(config.day_peaks, (share * 24.0) as u32);
                if rng.random::<f64>() * 4.0 >= weight {
                    continue;
                }
            }
            let wait_us = intended as i64 - now();
            if wait_us > 1000 {
                sleep_ms(wait_us / 1000);
            }
        }
        let started = now();
        terminated = BackgroundWorker::sigterm_received();
        if started >= config.deadline || terminated {
            break;
        }
        let task = pick.sample(&mut rng);
        let s = &mut stats[task];
        s.calls += 1;
        let mut attempt = 0;
        loop {
            // (an operation, retries included, may end up to 10 s after the run's deadline, not later)
            let timeout_ms = ((config.deadline - now()) / 1000).max(0) + 10_000;
            let outcome = with_statement_timeout(timeout_ms, || {
                in_transaction(|| {
                    unsafe {
                        pg_sys::pgstat_report_activity(
                            pg_sys::BackendState::STATE_RUNNING,
                            c"pg_stress load operation".as_ptr(),
                        )
                    };
                    Spi::connect_mut(|client| match OPS.get(task) {
                        Some(&op) => plans.execute(client, op, &mut work, &mut rng),
                        None => plans.execute_custom(client, task - OPS.len(), &mut rng),
                    })
                })
            });
            match outcome {
                Ok(Ok(())) => {
                    s.successes += 1;
                    break;
                }
                Ok(Err(e)) => {
                    s.failures += 1;
                    s.first_error.get_or_insert_with(|| e.to_string());
                    live.errors += 1;
                    break;
                }
                Err(report) => {
                    let code = report.sql_error_code();
                    let retryable = matches!(
                        code,
                        PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED
                            | PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE
                    );
                    if code == PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED {
                        s.deadlocks += 1;
                    } else if code == PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE {
                        s.serialization_failures += 1;
                    }
                    if retryable && attempt < config.max_retries {
                        attempt += 1;
                        s.retries += 1;
                        // Exponential backoff with jitter: 1, 2, 4 … ms, at most 100 ms.
                        let ceiling = (1i64 << attempt.min(7)).min(100);
                        sleep_ms(rng.random_range(1..=ceiling));
                        continue;
                    }
                    s.failures += 1;
                    s.first_error
                        .get_or_insert_with(|| report.message().to_owned());
                    live.errors += 1;
                    break;
                }
            }
        }
        let finished = now();
        let from = if gaps.is_some() {
            intended as i64
        } else {
            started
        };
        let latency_us = (finished - from).max(1) as u64;
        s.busy_us += finished - started;
        s.latency.record_us(latency_us);
        if gaps.is_some() {
            s.lag.record_us((started - intended as i64).max(1) as u64);
        }
        live.record(latency_us);
        if finished - live.published >= 100_000 && !live.publish(finished, worker == 0) {
            break;
        }
    }
    live.publish(now(), false);
    {
        let mut table = RUNS.exclusive();
        let slot = &mut table.slots[index];
        if holds(slot, config.run_id, config.database) {
            slot.workers_looping -= 1;
        }
    }
    (terminated || BackgroundWorker::sigterm_received())
        .then(|| format!("worker {} was terminated (SIGTERM)", worker + 1))
}

/// Why a benchmark worker stopped before its queries were done.
enum Stopped {
    /// the run was cancelled (or is gone): not a problem of this worker
    Cancelled,
    Terminated,
}

/// A concurrent `stress.benchmark`: every query in turn, all workers on the same one. Each worker
/// warms up, waits for the others, then takes measured executions from the query's shared count
/// until none is left, and waits for the others again (see [`BenchmarkState`](super::shmem::BenchmarkState)).
fn benchmark_loop(
    config: &RunSlot,
    index: usize,
    worker: u32,
    plans: &Plans,
    stats: &mut [OpStats],
    slow: &mut [Vec<SlowExecution>],
) -> Option<String> {
    let (run_id, database) = (config.run_id, config.database);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed ^ (0xBE7C_0000 + worker as u64));
    let mut live = LiveFigures::new(run_id, database, index);
    let slow_us = config.slow_ms.max(0) as u64 * 1000;
    // (each execution bounded by the caller's statement_timeout, as its own were)
    let timeout_ms = config.bench.statement_timeout_ms as i64;
    let execute = |j: usize, rng: &mut Xoshiro256PlusPlus| {
        with_statement_timeout(timeout_ms, || {
            in_transaction_ending(config.bench.rollback, || {
                unsafe {
                    pg_sys::pgstat_report_activity(
                        pg_sys::BackendState::STATE_RUNNING,
                        c"pg_stress benchmark query".as_ptr(),
                    )
                };
                Spi::connect_mut(|client| plans.execute_custom(client, j, rng))
            })
        })
    };
    {
        let mut table = RUNS.exclusive();
        table.slots[index].workers_looping += 1;
    }
    let mut outcome = Ok(());
    'queries: for j in 0..plans.customs().len() {
        for _ in 0..config.bench.warmup {
            if BackgroundWorker::sigterm_received() {
                outcome = Err(Stopped::Terminated);
                break 'queries;
            }
            let _ = execute(j, &mut rng);
        }
        if let Err(stop) = barrier(config, index, 2 * j as u32) {
            outcome = Err(stop);
            break;
        }
        let s = &mut stats[OPS.len() + j];
        loop {
            let claimed = {
                let mut table = RUNS.exclusive();
                let slot = &mut table.slots[index];
                if !holds(slot, run_id, database) || slot.cancel {
                    None
                } else if slot.bench.claimed[j] >= slot.bench.iterations {
                    Some(false)
                } else {
                    slot.bench.claimed[j] += 1;
                    Some(true)
                }
            };
            match claimed {
                None => {
                    outcome = Err(Stopped::Cancelled);
                    break 'queries;
                }
                Some(false) => break,
                Some(true) => {}
            }
            if BackgroundWorker::sigterm_received() {
                outcome = Err(Stopped::Terminated);
                break 'queries;
            }
            // (Each execution is its own transaction here: its latency includes the commit.)
            let clock = std::time::Instant::now();
            let result = execute(j, &mut rng);
            let took = clock.elapsed();
            let finished = now();
            let latency_us = (took.as_micros() as u64).max(1);
            s.calls += 1;
            s.busy_us += latency_us as i64;
            s.latency.record_ns(took.as_nanos() as u64);
            match crate::postgres::subxact::failure_message(&result) {
                None => s.successes += 1,
                Some(message) => {
                    s.failures += 1;
                    s.first_error.get_or_insert(message);
                    live.errors += 1;
                }
            }
            if latency_us > slow_us {
                let log = {
                    let mut table = RUNS.exclusive();
                    let b = &mut table.slots[index].bench;
                    let log = b.slow_logged[j] < b.slow_log_limit;
                    b.slow_logged[j] += log as u32;
                    log
                };
                if log {
                    slow[j].push(SlowExecution {
                        duration_ms: latency_us as f64 / 1000.0,
                        at: finished,
                    });
                }
            }
            live.record(latency_us);
            if finished - live.published >= 100_000 && !live.publish(finished, worker == 0) {
                outcome = Err(Stopped::Cancelled);
                break 'queries;
            }
        }
        if let Err(stop) = barrier(config, index, 2 * j as u32 + 1) {
            outcome = Err(stop);
            break;
        }
    }
    live.publish(now(), false);
    {
        let mut table = RUNS.exclusive();
        let slot = &mut table.slots[index];
        if holds(slot, run_id, database) {
            slot.workers_looping -= 1;
        }
    }
    match outcome {
        Err(Stopped::Terminated) => Some(format!("worker {} was terminated (SIGTERM)", worker + 1)),
        _ => None,
    }
}

/// Wait until all the run's workers reach barrier `g`. The last to arrive marks the time and the
/// server's block counts (after every worker flushed its statistics) and lets the others go on.
fn barrier(config: &RunSlot, index: usize, g: u32) -> Result<(), Stopped> {
    let (run_id, database) = (config.run_id, config.database);
    // This worker's block counts reach the server before anyone marks them.
    unsafe { pg_sys::pgstat_report_stat(true) };
    let last = {
        let mut table = RUNS.exclusive();
        let slot = &mut table.slots[index];
        if !holds(slot, run_id, database) || slot.cancel {
            return Err(Stopped::Cancelled);
        }
        slot.bench.arrived += 1;
        slot.bench.arrived == slot.workers
    };
    if last {
        let counts = in_transaction(|| blocks::flushed(None)).unwrap_or_default();
        let mut table = RUNS.exclusive();
        let slot = &mut table.slots[index];
        if holds(slot, run_id, database) {
            slot.bench.marks[g as usize] = (now(), counts);
            slot.bench.arrived = 0;
            slot.bench.generation = g + 1;
        }
        return Ok(());
    }
    loop {
        {
            let table = RUNS.share();
            let slot = &table.slots[index];
            if !holds(slot, run_id, database) || slot.cancel {
                return Err(Stopped::Cancelled);
            }
            if slot.bench.generation > g {
                return Ok(());
            }
        }
        if BackgroundWorker::sigterm_received() {
            return Err(Stopped::Terminated);
        }
        sleep_ms(1);
    }
}

/// How busy hour `hour` of a simulated trading day is: peak hours ×4, night (0–5) ×¼, others ×1.
pub fn day_weight(peaks: u32, hour: u32) -> f64 {
    if peaks & (1 << hour.min(23)) != 0 {
        4.0
    } else if hour < 6 {
        0.25
    } else {
        1.0
    }
}

/// What a worker adds to its run's live figures (counts and latencies since it last published).
struct LiveFigures {
    run_id: i64,
    database: pg_sys::Oid,
    index: usize,
    ops: u64,
    errors: u64,
    buckets: Buckets,
    published: pg_sys::TimestampTz,
}

impl LiveFigures {
    fn new(run_id: i64, database: pg_sys::Oid, index: usize) -> Self {
        LiveFigures {
            run_id,
            database,
            index,
            ops: 0,
            errors: 0,
            buckets: [0; BUCKETS],
            published: now(),
        }
    }

    fn record(&mut self, latency_us: u64) {
        self.ops += 1;
        self.buckets[buckets::index(latency_us)] += 1;
    }

    /// Add what this worker did to the run's slot (and, for the sampling worker, write a per-second
    /// sample when one is due). Returns false when the run is over: cancelled, or gone.
    fn publish(&mut self, at: pg_sys::TimestampTz, sampler: bool) -> bool {
        let sample = {
            let mut table = RUNS.exclusive();
            let slot = &mut table.slots[self.index];
            if !holds(slot, self.run_id, self.database) {
                return false;
            }
            slot.ops += self.ops;
            slot.errors += self.errors;
            buckets::add(&mut slot.interval, &self.buckets);
            buckets::add(&mut slot.cumulative, &self.buckets);
            let due = sampler && at - slot.sampled_at.max(slot.started_at) >= 1_000_000;
            let sample = due.then(|| {
                let seconds = (at - slot.sampled_at.max(slot.started_at)) as f64 / 1e6;
                let taken = Sample {
                    at,
                    elapsed: (at - slot.started_at) as f64 / 1e6,
                    ops: slot.ops - slot.sampled_ops,
                    errors: slot.errors - slot.sampled_errors,
                    seconds,
                    p50_ms: buckets::quantile_ms(&slot.interval, 0.50),
                    p99_ms: buckets::quantile_ms(&slot.interval, 0.99),
                    workers: slot.workers_looping,
                };
                slot.interval = [0; BUCKETS];
                slot.sampled_at = at;
                slot.sampled_ops = slot.ops;
                slot.sampled_errors = slot.errors;
                slot.last_rate = taken.ops as f64 / seconds.max(1e-9);
                taken
            });
            let going = !slot.cancel;
            (sample, going)
        };
        self.ops = 0;
        self.errors = 0;
        self.buckets = [0; BUCKETS];
        self.published = at;
        unsafe { pg_sys::pgstat_report_stat(false) };
        let (sample, going) = sample;
        if let Some(sample) = sample {
            let connections = in_transaction(|| sample.save(self.run_id));
            match connections {
                Ok(n) => {
                    let mut table = RUNS.exclusive();
                    let slot = &mut table.slots[self.index];
                    if holds(slot, self.run_id, self.database) {
                        slot.peak_connections = slot.peak_connections.max(n);
                    }
                }
                Err(report) => pgrx::log!(
                    "pg_stress load run {}: could not save a sample: {}",
                    self.run_id,
                    report.message()
                ),
            }
        }
        going
    }
}

/// One row of `stress.samples`: the second (or so) before `at`.
struct Sample {
    at: pg_sys::TimestampTz,
    elapsed: f64,
    ops: u64,
    errors: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    workers: u32,
}

impl Sample {
    /// Write it; returns the database's connections now (for the run's peak).
    fn save(&self, run_id: i64) -> i64 {
        crate::records::sample(
            run_id,
            self.at,
            self.elapsed,
            self.ops as i64,
            self.errors as i64,
            self.ops as f64 / self.seconds.max(1e-9),
            self.p50_ms,
            self.p99_ms,
            self.workers as i32,
        )
    }
}

/// The run's row in `stress.runs`, from its slot.
fn run_row<'a>(config: &'a RunSlot, status: &'a str) -> RunRow<'a> {
    RunRow {
        id: config.run_id,
        kind: super::Scenario::from_code(config.scenario).kind(),
        parameters: parameters(config),
        status,
        started_at: config.started_at,
        run_as: config.current_user,
        error: None,
        peak_connections: 0,
    }
}

/// The run's row, status running, so that it shows while the run goes on.
fn register_run(config: &RunSlot) {
    crate::records::register_run(&run_row(config, "running"));
}

fn save_worker_results(
    run_id: i64,
    worker: u32,
    window: (pg_sys::TimestampTz, pg_sys::TimestampTz),
    names: &[String],
    stats: &[OpStats],
    stop_reason: Option<&str>,
) {
    let results: Vec<WorkerResult> = names
        .iter()
        .zip(stats)
        .filter(|(_, s)| s.calls > 0 || stop_reason.is_some())
        .map(|(name, s)| WorkerResult {
            operation: name.clone(),
            calls: s.calls,
            successes: s.successes,
            failures: s.failures,
            retries: s.retries,
            deadlocks: s.deadlocks,
            serialization_failures: s.serialization_failures,
            latency: s.latency.serialize(),
            lag: s.lag.serialize(),
            first_error: s.first_error.clone(),
            stop_reason: stop_reason.map(str::to_owned),
            busy_us: s.busy_us,
        })
        .collect();
    crate::records::save_worker_results(run_id, worker as i32, window, &results);
}

/// Merge every worker's results into `stress.results` and close the run's row. `live` is the run's
/// slot as its last worker left it.
fn finish_run(config: &RunSlot, live: &RunSlot) {
    // (its results refer to the run's row: there must be one, even if worker 0 could not write it)
    register_run(config);
    let (cancelled, peak_connections) = (live.cancel, live.peak_connections);
    let saved = crate::records::take_worker_results(config.run_id);
    let rows = saved.rows.into_iter().map(|r| {
        let s = OpStats {
            calls: r.calls,
            successes: r.successes,
            failures: r.failures,
            retries: r.retries,
            deadlocks: r.deadlocks,
            serialization_failures: r.serialization_failures,
            first_error: r.first_error,
            busy_us: r.busy_us,
            latency: Latency::deserialize(&r.latency).unwrap_or_default(),
            lag: Latency::deserialize(&r.lag).unwrap_or_default(),
        };
        (r.operation, s, r.stop_reason)
    });
    let names = task_names(&config.customs());
    let mut merged: Vec<OpStats> = vec![OpStats::default(); names.len()];
    let mut stop_reason = None;
    for (name, s, stop) in rows {
        if stop.is_some() && stop_reason.is_none() {
            stop_reason = stop;
        }
        let Some(op) = names.iter().position(|n| *n == name) else {
            continue;
        };
        merged[op].add(&s);
    }
    // From the first worker's start to the last one's end.
    let seconds = saved.seconds;
    if is_benchmark(config) {
        finish_benchmark(config, live, &merged[OPS.len()..], seconds);
    } else {
        record_load_results(config, &names, &merged, seconds, saved.connected_us);
    }
    if live.workers_lost > 0 && stop_reason.is_none() {
        stop_reason = Some(format!(
            "{} of {} workers exited without finishing (see the server log)",
            live.workers_lost, config.workers
        ));
    }
    let status = match (&stop_reason, cancelled) {
        (Some(_), _) => "failed",
        (None, true) => "cancelled",
        (None, false) => "completed",
    };
    crate::records::close_run(&RunRow {
        error: stop_reason.as_deref(),
        peak_connections,
        ..run_row(config, status)
    });
}

/// A load run's results: a row per operation it ran, and the `total` row with the run-wide figures
/// (connection efficiency, hit rates over the data schema).
fn record_load_results(
    config: &RunSlot,
    names: &[String],
    merged: &[OpStats],
    seconds: f64,
    connected_us: f64,
) {
    let run_id = config.run_id;
    let slow_us = config.slow_ms.max(0) as u64 * 1000;
    for (name, m) in names.iter().zip(merged) {
        if m.calls == 0 {
            continue;
        }
        insert_result(run_id, name, m, seconds, config.rate > 0.0, slow_us, None);
    }
    let mut total = OpStats::default();
    for m in merged {
        total.add(m);
    }
    // The run as a whole: how busy its connections were, and how its tables were served.
    let blocks =
        crate::metrics::blocks::flushed(Some(&config.schema())).since(&config.blocks_start);
    let mut whole = serde_json::json!({
        "connection_efficiency": (connected_us > 0.0).then(|| total.busy_us as f64 / connected_us),
        "slow_threshold_ms": config.slow_ms,
    });
    crate::metrics::merge_json(&mut whole, blocks.to_json());
    insert_result(
        run_id,
        "total",
        &total,
        seconds,
        config.rate > 0.0,
        slow_us,
        Some(whole),
    );
}

/// A benchmark's results: one row per query, named by its text, each over its own measured window
/// (from the barrier before its measured executions to the one after), with its block counts.
fn finish_benchmark(config: &RunSlot, live: &RunSlot, merged: &[OpStats], run_seconds: f64) {
    let slow_us = config.slow_ms.max(0) as u64 * 1000;
    for (j, (custom, m)) in config.customs().iter().zip(merged).enumerate() {
        let ((t0, b0), (t1, b1)) = (live.bench.marks[2 * j], live.bench.marks[2 * j + 1]);
        let (seconds, mut extra) = if t0 > 0 && t1 >= t0 {
            ((t1 - t0) as f64 / 1e6, b1.since(&b0).to_json())
        } else {
            (run_seconds, serde_json::json!({}))
        };
        crate::metrics::merge_json(
            &mut extra,
            serde_json::json!({"slow_threshold_ms": config.slow_ms, "concurrency": config.workers}),
        );
        insert_result(
            config.run_id,
            &custom.statements.concat(),
            m,
            seconds.max(1e-6),
            false,
            slow_us,
            Some(extra),
        );
    }
}

fn insert_result(
    run_id: i64,
    name: &str,
    m: &OpStats,
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
    crate::records::latency_result(
        run_id,
        name,
        m.calls,
        m.failures,
        seconds,
        &m.latency.summary(),
        details,
    );
}
