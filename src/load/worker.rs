//! A load run's worker: the run's operation mix, each operation its own transaction, until the
//! deadline or a cancel — the [`RunKind`] of `stress.run_load` and its scenarios. The engine
//! (`runs::worker`) connects it as the caller and records what it measured.

use super::arrivals::Arrivals;
use super::custom::{self, Custom};
use super::ops::{DataInUse, IdSequence, OPS, Plans, Weights};
use super::remote::Remote;
use crate::metrics::blocks::Blocks;
use crate::metrics::task::TaskStats;
use crate::postgres::backend::now;
use crate::postgres::multiplex::{self, Client, Reactor, Slot};
use crate::postgres::signals;
use crate::postgres::transaction::{in_transaction, with_statement_timeout};
use crate::records;
use crate::runs::closing::record_task;
use crate::runs::kind::{FinishedRun, LiveFigures, RunKind, WorkerRun};
use crate::runs::target::Target;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReportWithLevel;
use pgrx::prelude::*;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::Distribution;
use rand_distr::weighted::WeightedIndex;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A load run's configuration, in its slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadConfig {
    /// operations per second over all workers; 0 = closed model
    pub rate: f64,
    pub weights: Weights,
    pub max_retries: u32,
    pub seed: u64,
    pub accounts: i64,
    pub first_order_id: i64,
    pub first_trade_id: i64,
    pub first_audit_id: i64,
    /// transfers only between accounts 1..=hot_accounts (0: all), pausing between debit and credit
    pub hot_accounts: i64,
    pub transfer_pause: f64,
    /// simulate_trading_day: the open model's rate follows a day compressed into the run — hour h
    /// (bit h set) ×4, night hours 0–5 ×¼, others ×1; `rate` is the ×4 rate
    pub day_peaks: Option<u32>,
    /// custom transactions (see load::custom), as given
    pub transactions: Option<serde_json::Value>,
    /// operations slower than this count as slow (the caller's stress.slow_query_threshold_ms)
    pub slow_ms: i32,
    pub schema: String,
    /// block counts of the run's tables when it started (pg_statio)
    pub blocks_start: Blocks,
    /// the server the operations run on, when not this one (`stress.target`)
    pub target: Option<Target>,
}

impl LoadConfig {
    /// The run's custom transactions (validated when the run started).
    pub fn customs(&self) -> Vec<Custom> {
        self.transactions
            .as_ref()
            .and_then(|t| custom::parse(t, &[]).ok())
            .unwrap_or_default()
    }
}

/// `stress.run_load`'s kind of run.
pub struct LoadRun;

/// The library function its workers start in.
pub const ENTRY_POINT: &str = "pg_stress_load_worker_main";

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_load_worker_main(arg: pg_sys::Datum) {
    crate::runs::worker::main::<LoadRun>(arg);
}

/// A load worker's state: its prepared operations, and the conflicts it met (saved at its end).
pub struct LoadWorker {
    plans: Plans,
    /// the connections to the target, when the run has one (its operations then run there): one
    /// per client of the worker (`stress.target_connections_per_worker`)
    remotes: Vec<Remote>,
    conflicts: Vec<records::Conflict>,
    /// conflicts met beyond [`MAX_CONFLICTS`] (counted in the results, not kept one by one)
    conflicts_dropped: u64,
}

/// Conflicts a worker keeps one by one per run (each is a row of stress.conflicts).
const MAX_CONFLICTS: usize = 200;

impl RunKind for LoadRun {
    const KIND: &'static str = "run_load";
    type Config = LoadConfig;
    type Worker = LoadWorker;

    /// The built-in operations, then the custom transactions.
    fn tasks(config: &LoadConfig) -> Vec<String> {
        OPS.iter()
            .map(|o| o.name().to_owned())
            .chain(config.customs().into_iter().map(|c| c.name))
            .collect()
    }

    fn statements(config: &LoadConfig) -> Vec<(String, Vec<pg_sys::Oid>)> {
        config
            .customs()
            .iter()
            .flat_map(|c| {
                let types: Vec<pg_sys::Oid> =
                    c.params.iter().map(|p| p.pg_type().value()).collect();
                c.statements
                    .iter()
                    .map(move |sql| (sql.clone(), types.clone()))
            })
            .collect()
    }

    fn prepare(run: &WorkerRun<LoadConfig>) -> Result<LoadWorker, String> {
        if let Some(target) = &run.config.target {
            return prepare_remote(run, target.clone());
        }
        // The built-in operations are index lookups whose plans do not depend on their
        // parameters: plan them once (generic plans). Custom transactions are planned as
        // pgbench -M prepared would.
        let customs = run.config.customs();
        let plan_cache_mode = if customs.is_empty() {
            "force_generic_plan"
        } else {
            "auto"
        };
        crate::postgres::spi_read::one::<String>(
            "SELECT pg_catalog.set_config('plan_cache_mode', $1, false)",
            &[plan_cache_mode.into()],
        )
        .expect("setting plan_cache_mode");
        // (a run of custom transactions alone needs no trading dataset)
        let builtins = super::ops::uses_builtins(&run.config.weights);
        Spi::connect(|client| Plans::prepare(client, &run.config.schema, customs, builtins, true))
            .map(|plans| LoadWorker {
                plans,
                remotes: Vec::new(),
                conflicts: Vec::new(),
                conflicts_dropped: 0,
            })
            .map_err(|e| e.to_string())
    }

    fn run(
        run: &WorkerRun<LoadConfig>,
        worker: &mut LoadWorker,
        stats: &mut [TaskStats],
    ) -> Option<String> {
        run_loop(run, worker, stats)
    }

    fn save(run: &WorkerRun<LoadConfig>, worker: &LoadWorker) {
        records::conflicts(
            run.run_id,
            run.worker,
            crate::postgres::backend::pid(),
            &worker.conflicts,
        );
        if worker.conflicts_dropped > 0 {
            pgrx::log!(
                "pg_stress run {} worker {}: {} more conflicts than the {MAX_CONFLICTS} kept",
                run.run_id,
                run.worker + 1,
                worker.conflicts_dropped
            );
        }
    }

    fn record(run: &FinishedRun<LoadConfig>, merged: &[TaskStats]) {
        record_load_results(run, &Self::tasks(&run.config), merged);
    }
}

/// A worker of a run on a target: its connections (one per client, `connections_per_worker`), the
/// first made now (an unreachable target fails the run as it starts), and the statements it will
/// prepare there.
fn prepare_remote(run: &WorkerRun<LoadConfig>, target: Target) -> Result<LoadWorker, String> {
    let customs = run.config.customs();
    let builtins = super::ops::uses_builtins(&run.config.weights);
    // SAFETY: this backend's own setting, set from the run's isolation as the worker joined.
    let isolation = unsafe { pg_sys::DefaultXactIsoLevel };
    let clients = target.connections_per_worker.max(1);
    let mut remotes = Vec::new();
    for client in 0..clients {
        let name = target.connection_name("load", run.run_id, run.worker, run.workers, client);
        let mut remote = Remote::new(
            target.clone(),
            &run.config.schema,
            customs.clone(),
            builtins,
            isolation,
            name,
        );
        // (the first connection now: an unreachable target fails the run as it starts; the
        // others as they are first used, so that a worker whose pool — a PgBouncer in session
        // pooling — has room for one runs on it while its other connections wait there)
        if client == 0 {
            remote
                .connect(run.deadline + 10_000_000)
                .map_err(|e| e.to_string())?;
        }
        remotes.push(remote);
    }
    Ok(LoadWorker {
        plans: Plans::for_target(customs),
        remotes,
        conflicts: Vec::new(),
        conflicts_dropped: 0,
    })
}

/// What a worker's clients share while they run: the run, the plans and the choice of task, the
/// live figures they publish together, the conflicts met, and where they wait.
struct Shared<'a> {
    run: &'a WorkerRun<LoadConfig>,
    plans: &'a Plans,
    pick: WeightedIndex<f64>,
    reactor: Rc<Reactor>,
    live: RefCell<LiveFigures>,
    conflicts: &'a RefCell<Vec<records::Conflict>>,
    conflicts_dropped: &'a Cell<u64>,
    /// a client saw the run cancelled as it published: the others stop too
    cancelled: Cell<bool>,
    /// the run's clients: its workers × each worker's connections (one per worker over SPI)
    clients: u32,
}

impl Shared<'_> {
    /// Whether the clients are to stop: a signal told the worker, or the run was cancelled.
    fn stopping(&self) -> bool {
        self.cancelled.get() || stop(self.run)
    }

    /// Publish the live figures if it is time (`force`: now): false when the run is cancelled.
    fn publish(&self, at: pg_sys::TimestampTz, force: bool) -> bool {
        let mut live = self.live.borrow_mut();
        if (force || live.due(at)) && !live.publish(at) {
            self.cancelled.set(true);
        }
        !self.cancelled.get()
    }
}

/// The operations until the deadline, a cancel or SIGTERM: one client over SPI, or one per
/// connection to the target, all waited on at once (`postgres::multiplex`). Returns why it stopped
/// early, if it did because of a problem (a cancel is not one).
fn run_loop(
    run: &WorkerRun<LoadConfig>,
    state: &mut LoadWorker,
    stats: &mut [TaskStats],
) -> Option<String> {
    let LoadWorker {
        plans,
        remotes,
        conflicts,
        conflicts_dropped,
    } = state;
    let clients = remotes.len().max(1);
    let reactor = multiplex::reactor_for(remotes, |remote, slot| remote.share(slot));
    let (kept, dropped) = (
        RefCell::new(std::mem::take(conflicts)),
        Cell::new(*conflicts_dropped),
    );
    let shared = Shared {
        run,
        plans,
        pick: choice(&run.config, plans),
        reactor: Rc::clone(&reactor),
        live: RefCell::new(run.figures()),
        conflicts: &kept,
        conflicts_dropped: &dropped,
        cancelled: Cell::new(false),
        clients: run.workers * clients as u32,
    };
    // (client 0 counts into the worker's figures; the others into their own, added at the end)
    let mut others = vec![vec![TaskStats::default(); stats.len()]; clients - 1];
    let all_stats = std::iter::once(&mut *stats).chain(others.iter_mut().map(Vec::as_mut_slice));
    let futures: Vec<Client<'_>> = multiplex::clients(remotes)
        .into_iter()
        .zip(all_stats)
        .enumerate()
        .map(|(client, (remote, s))| Box::pin(client_loop(&shared, client, remote, s)) as Client)
        .collect();
    run.looping(true);
    multiplex::run_all(&reactor, futures);
    TaskStats::add_each(stats, &others);
    shared.publish(now(), true);
    run.looping(false);
    *conflicts = kept.into_inner();
    *conflicts_dropped = dropped.get();
    signals::terminated().then(|| {
        format!(
            "worker {} was terminated (SIGTERM: pg_terminate_backend or a server shutdown)",
            run.worker + 1
        )
    })
}

/// One client's operations (client `client` of its worker, on `remote` when the run has a
/// target), counted into `stats`.
async fn client_loop(
    shared: &Shared<'_>,
    client: usize,
    mut remote: Option<&mut Remote>,
    stats: &mut [TaskStats],
) {
    let run = shared.run;
    let config = &run.config;
    // (numbered over the run: each client its own ids and random stream; one client per worker
    // over SPI, numbered as its worker)
    let per_worker = shared.clients / run.workers;
    let me = run.worker * per_worker + client as u32;
    let slot = shared.reactor.slot(client);
    let mut work = data_in_use(config, me, shared.clients);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed ^ (0x10AD_0000 + me as u64));
    // Open model: Poisson arrivals at this client's share of the rate, scheduled by intended start
    // (in nanoseconds: see load::arrivals).
    let mut arrivals = (config.rate > 0.0).then(|| {
        Arrivals::new(
            config.rate / shared.clients as f64,
            now() * 1000,
            run.started_at * 1000,
            run.deadline * 1000,
            config.day_peaks,
        )
    });
    let mut intended_ns = now() * 1000;
    loop {
        if let Some(a) = arrivals.as_mut() {
            // (no arrival left before the deadline: the client stays to the end of the run, so
            // that a slow rate's run lasts its duration and its rate is over that duration)
            let due = a.next(&mut rng);
            let until = due.unwrap_or(run.deadline * 1000) / 1000;
            if !sleep_until(shared, &slot, until).await || due.is_none() {
                break;
            }
            intended_ns = a.at();
        }
        let started = now();
        if started >= run.deadline || shared.stopping() {
            break;
        }
        let task = shared.pick.sample(&mut rng);
        if let Some(t) = run.live().tasks.get(run.worker as usize) {
            t.store(task as u32 + 1, std::sync::atomic::Ordering::Relaxed);
        }
        let s = &mut stats[task];
        s.calls += 1;
        let mut operation = Operation {
            shared,
            slot: &slot,
            task,
            work: &mut work,
            rng: &mut rng,
        };
        if !operation.until_done(remote.as_deref_mut(), s).await {
            // (an operation cut short because the run was told to stop counts neither as a
            // success nor as a failure: it was not allowed to finish)
            s.calls -= 1;
            break;
        }
        let intended = arrivals.is_some().then_some(intended_ns / 1000);
        if !timed(shared, s, started, intended) {
            break;
        }
    }
    if let Some(a) = arrivals.as_mut() {
        // The arrivals this client was too far behind to start before the deadline (a run that
        // was stopped offered nothing more).
        if !shared.stopping() && !run.cancelled() {
            a.count_rest(&mut rng);
        }
        run.live()
            .arrivals
            .fetch_add(a.count, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Record an operation that started at `started` and ends now: its latency, its time in the
/// transaction, and in the open model (`intended`: its intended start) its schedule lag. Returns
/// false when the run is cancelled (seen as the live figures are published).
#[inline]
fn timed(
    shared: &Shared<'_>,
    s: &mut TaskStats,
    started: pg_sys::TimestampTz,
    intended: Option<pg_sys::TimestampTz>,
) -> bool {
    let finished = now();
    // Open model: from the intended start when the operation started late (its wait counts, no
    // coordinated omission); from its start when it started early — the latch sleeps whole
    // milliseconds, so a worker may wake up to one before its intended start.
    let from = intended.map_or(started, |i| i.min(started));
    let latency_us = (finished - from).max(1) as u64;
    s.busy_us += finished - started;
    s.latency.record_us(latency_us);
    if let Some(intended) = intended {
        s.lag.record_us((started - intended).max(1) as u64);
    }
    shared.live.borrow_mut().record(latency_us);
    shared.publish(finished, false)
}

/// The weighted choice of each operation: the built-in operations, then the custom transactions.
fn choice(config: &LoadConfig, plans: &Plans) -> WeightedIndex<f64> {
    let weights: Vec<f64> = config
        .weights
        .iter()
        .copied()
        .chain(plans.customs().iter().map(|c| c.weight))
        .collect();
    WeightedIndex::new(&weights).expect("weights were validated")
}

/// What worker `worker` of `workers` writes with: the dataset's size, and the ids it may take (each
/// worker its own residue class, so that no two collide).
fn data_in_use(config: &LoadConfig, worker: u32, workers: u32) -> DataInUse {
    let ids = |first: i64| IdSequence {
        next: first + worker as i64,
        step: workers as i64,
    };
    DataInUse {
        accounts: config.accounts,
        hot_accounts: config.hot_accounts,
        transfer_pause: config.transfer_pause,
        order_ids: ids(config.first_order_id),
        trade_ids: ids(config.first_trade_id),
        audit_ids: ids(config.first_audit_id),
    }
}

/// One operation of the loop: task `task`'s transaction, retried after a deadlock or a
/// serialization failure up to the run's `max_retries`.
struct Operation<'a, 's> {
    shared: &'a Shared<'s>,
    /// where its client waits (a retry's backoff)
    slot: &'a Slot,
    task: usize,
    work: &'a mut DataInUse,
    rng: &'a mut Xoshiro256PlusPlus,
}

impl Operation<'_, '_> {
    /// Run it until it succeeds or fails for good, counting into `s`. False: the run was told to
    /// stop while it went on (it was cut short).
    async fn until_done(&mut self, mut remote: Option<&mut Remote>, s: &mut TaskStats) -> bool {
        let run = self.shared.run;
        let mut attempt = 0;
        loop {
            let outcome = match remote.as_deref_mut() {
                Some(remote) => self.once_on_target(remote).await,
                None => self.once(self.shared.plans),
            };
            let failure = match outcome {
                Ok(()) => {
                    s.successes += 1;
                    return true;
                }
                Err(failure) => failure,
            };
            if failure.sqlstate.is_some() && self.shared.stopping() {
                return false;
            }
            let retryable = self.conflicted(s, &failure);
            if retryable && attempt < run.config.max_retries {
                attempt += 1;
                s.retries += 1;
                // Exponential backoff with jitter: 1, 2, 4 … ms, at most 100 ms (a signal wakes it
                // early).
                let ceiling = (1i64 << attempt.min(7)).min(100);
                let backoff_us = self.rng.random_range(1..=ceiling) * 1000;
                self.slot.sleep_until(now() + backoff_us).await;
                if self.shared.stopping() {
                    return false;
                }
                continue;
            }
            s.failures += 1;
            s.first_error.get_or_insert(failure.message);
            self.shared.live.borrow_mut().errors += 1;
            return true;
        }
    }

    /// One attempt, in its own transaction, with a statement timeout that lets it (retries
    /// included) end up to 10 s after the run's deadline, not later.
    fn once(&mut self, plans: &Plans) -> Result<(), Failure> {
        let timeout_ms = ((self.shared.run.deadline - now()) / 1000).max(0) + 10_000;
        let (task, work, rng) = (self.task, &mut *self.work, &mut *self.rng);
        let outcome = signals::in_operation(|| {
            with_statement_timeout(timeout_ms, || {
                in_transaction(|| {
                    crate::postgres::backend::report_activity(c"pg_stress load operation");
                    Spi::connect_mut(|client| match OPS.get(task) {
                        Some(&op) => plans.execute(client, op, work, rng),
                        None => plans.execute_custom(client, task - OPS.len(), rng),
                    })
                })
            })
        });
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure {
                sqlstate: None,
                message: e.to_string(),
                detail: None,
            }),
            Err(report) => Err(Failure::of_report(&report)),
        }
    }

    /// One attempt on the target, by the same deadline as [`Operation::once`]'s timeout. No
    /// transaction or snapshot here while it waits: the wait is on the socket and the latch, and
    /// a cancel or terminate ends it (the target's statement is cancelled).
    async fn once_on_target(&mut self, remote: &mut Remote) -> Result<(), Failure> {
        let deadline = self.shared.run.deadline + 10_000_000;
        remote
            .once(self.task, self.work, self.rng, deadline)
            .await
            .map_err(|e| Failure {
                sqlstate: Some(e.sqlstate),
                message: e.message,
                detail: e.detail,
            })
    }

    /// Count a failed attempt's deadlock or serialization failure (kept for stress.conflicts, up
    /// to [`MAX_CONFLICTS`]); whether it may be retried.
    fn conflicted(&mut self, s: &mut TaskStats, failure: &Failure) -> bool {
        let deadlock = failure.sqlstate.as_deref() == Some("40P01");
        let serialization = failure.sqlstate.as_deref() == Some("40001");
        if !(deadlock || serialization) {
            return false;
        }
        let shared = self.shared;
        let mut conflicts = shared.conflicts.borrow_mut();
        if conflicts.len() < MAX_CONFLICTS {
            let plans = shared.plans;
            let task_name = |task: usize| match OPS.get(task) {
                Some(op) => op.name().to_owned(),
                None => plans.customs()[task - OPS.len()].name.clone(),
            };
            conflicts.push(conflict(
                shared.run, &task_name, self.task, deadlock, failure,
            ));
        } else {
            shared
                .conflicts_dropped
                .set(shared.conflicts_dropped.get() + 1);
        }
        drop(conflicts);
        if deadlock {
            s.deadlocks += 1;
            shared.live.borrow_mut().deadlocks += 1;
            // Now, not when the retried operation ends: the sample of this second shows the
            // deadlock. (A cancel is seen at the operation's end.)
            shared.publish(now(), false);
        } else {
            s.serialization_failures += 1;
        }
        true
    }
}

/// Whether a signal told the worker to stop (see [`WorkerRun::told_to_stop`]).
fn stop(run: &WorkerRun<LoadConfig>) -> bool {
    run.told_to_stop().is_some()
}

/// A deadlock or serialization failure as the worker met it: its operation, and what the other
/// processes the server's DETAIL names ("Process 123 waits for ShareLock on transaction 456;
/// blocked by process 789.") were running, when they are the run's workers.
fn conflict(
    run: &WorkerRun<LoadConfig>,
    task_name: &dyn Fn(usize) -> String,
    task: usize,
    deadlock: bool,
    failure: &Failure,
) -> records::Conflict {
    let live = run.live();
    let me = crate::postgres::backend::pid();
    let detail = failure.detail.clone();
    let mut others = Vec::new();
    for pid in detail.as_deref().map(process_ids).unwrap_or_default() {
        if pid == me {
            continue;
        }
        let worker = live
            .pids
            .iter()
            .position(|p| p.load(std::sync::atomic::Ordering::Relaxed) == pid);
        others.push(worker.and_then(|w| {
            match live.tasks[w].load(std::sync::atomic::Ordering::Relaxed) {
                0 => None,
                t => Some(task_name(t as usize - 1)),
            }
        }));
    }
    records::Conflict {
        at: now(),
        sqlstate: if deadlock { "40P01" } else { "40001" },
        operation: task_name(task),
        others,
        message: failure.message.clone(),
        detail,
    }
}

/// An attempt that failed: its SQLSTATE (None: an SPI error of the operation itself, never
/// retried), its message and DETAIL.
struct Failure {
    sqlstate: Option<String>,
    message: String,
    detail: Option<String>,
}

impl Failure {
    fn of_report(report: &ErrorReportWithLevel) -> Failure {
        Failure {
            sqlstate: Some(crate::error::sqlstate_text(report.sql_error_code())),
            message: report.message().to_owned(),
            detail: report.detail().map(str::to_owned),
        }
    }
}

/// The process ids a deadlock's DETAIL names, each once, in order.
pub fn process_ids(detail: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for (i, _) in detail.match_indices("rocess ") {
        let digits: String = detail[i + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(pid) = digits.parse::<i32>()
            && !pids.contains(&pid)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Sleep until `at` (µs) in steps of at most 100 ms, publishing the live figures. False when the
/// run was cancelled or the worker told to stop meanwhile.
async fn sleep_until(shared: &Shared<'_>, slot: &Slot, at: pg_sys::TimestampTz) -> bool {
    loop {
        if shared.stopping() {
            return false;
        }
        let t = now();
        if at - t <= 1000 {
            return true;
        }
        slot.sleep_until(at.min(t + 100_000)).await;
        if !shared.publish(now(), false) {
            return false;
        }
    }
}

/// A load run's results: a row per operation it ran, and the `total` row with the run-wide figures
/// (connection efficiency, hit rates over the data schema).
fn record_load_results(run: &FinishedRun<LoadConfig>, names: &[String], merged: &[TaskStats]) {
    let (config, run_id, seconds) = (&run.config, run.run_id, run.seconds);
    let slow_us = config.slow_ms.max(0) as u64 * 1000;
    for (name, m) in names.iter().zip(merged) {
        if m.calls == 0 {
            continue;
        }
        record_task(run_id, name, m, seconds, config.rate > 0.0, slow_us, None);
    }
    let mut total = TaskStats::default();
    for m in merged {
        total.add(m);
    }
    // The run as a whole: how busy its connections were, and how its tables were served.
    // (a hot standby's run is recorded on the primary, whose statistics its workers did not move:
    // no block figures for it)
    // (nor for a run on a target: its tables are not this server's)
    let blocks = (!run.from_standby && config.target.is_none())
        .then(|| crate::metrics::blocks::flushed(Some(&config.schema)).since(&config.blocks_start));
    // (each worker's time connected is that of each of its connections to the target)
    let connections = config
        .target
        .as_ref()
        .map_or(1, |t| t.connections_per_worker.max(1));
    let connected_us = run.connected_us * connections as f64;
    let mut whole = serde_json::json!({
        "connection_efficiency": (connected_us > 0.0).then(|| total.busy_us as f64 / connected_us),
        "slow_threshold_ms": config.slow_ms,
    });
    if config.rate > 0.0 {
        // Open model: what was offered (the arrivals due before the deadline, a Poisson count)
        // and the share of it that succeeded — find_capacity's "achieved / offered".
        whole["arrivals"] = run.arrivals.into();
        whole["achieved_share"] = (run.arrivals > 0)
            .then(|| total.successes as f64 / run.arrivals as f64)
            .into();
    }
    if let Some(blocks) = blocks {
        crate::metrics::merge_json(&mut whole, blocks.to_json());
    }
    record_task(
        run_id,
        "total",
        &total,
        seconds,
        config.rate > 0.0,
        slow_us,
        Some(whole),
    );
}
