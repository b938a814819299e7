//! Load runs: `stress.run_load(…)` starts background workers that run a mix of trading transactions
//! against the generated tables and record true latency percentiles; `stress.cancel` and
//! `stress.wait` control a run from any session.

mod custom;
/// Room for custom transactions' JSON in a run's slot.
pub use custom::MAX_BYTES as CUSTOM_MAX_BYTES;
pub mod ops;
mod recovery;
mod report;
pub mod shmem;
mod worker;

use crate::error::{OrRaise, StressError};
use crate::gucs;
use crate::postgres::quote::qualified;
use pgrx::AnyNumeric;
use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::pg_sys;
use pgrx::prelude::*;
use shmem::{Phase, RUNS, RunSlot};
use std::time::{Duration, Instant};

/// From `_PG_init`: when preloaded, shared memory for runs and the worker that closes runs a restart
/// interrupted.
pub fn init() {
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        shmem::init();
        recovery::register();
    }
}

/// The longest run one call may ask for.
const MAX_DURATION_SECONDS: f64 = 7.0 * 86_400.0;

pub fn isolation_name(level: i32) -> &'static str {
    match level as u32 {
        pg_sys::XACT_REPEATABLE_READ => "repeatable read",
        pg_sys::XACT_SERIALIZABLE => "serializable",
        _ => "read committed",
    }
}

fn parse_isolation(text: &str) -> Option<i32> {
    let normal = text.trim().to_lowercase().replace(['_', '-'], " ");
    Some(match normal.as_str() {
        "read committed" => pg_sys::XACT_READ_COMMITTED,
        "repeatable read" => pg_sys::XACT_REPEATABLE_READ,
        "serializable" => pg_sys::XACT_SERIALIZABLE,
        _ => return None,
    } as i32)
}

fn invalid(function: &'static str, message: String, hint: &str) -> ! {
    StressError::invalid(function, message, hint.to_owned()).raise()
}

pub(crate) fn require_preload(function: &'static str) {
    if !shmem::available() {
        StressError::NeedsPreload(function).raise();
    }
}

/// Starts a load run and returns its id. With `wait` (the default) returns when the run has ended,
/// printing progress NOTICEs and a summary; otherwise at once (see `stress.wait`, `stress.cancel`).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn run_load(
    duration: Interval,
    workers: default!(i32, 1),
    rate: default!(Option<f64>, "NULL"),
    mix: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    isolation: default!(String, "'read committed'"),
    max_retries: default!(Option<i32>, "NULL"),
    wait: default!(bool, true),
    seed: default!(Option<i64>, "NULL"),
    transactions: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
) -> i64 {
    const F: &str = "run_load";
    require_preload(F);
    unsafe { pg_sys::PreventCommandDuringRecovery(c"stress.run_load".as_ptr()) };
    let seconds = duration_seconds(
        F,
        duration,
        "Pass an interval such as '30 seconds' or '10 minutes'.",
    );
    let k = crate::generate::parallel::worker_count(F, Some(workers)).or_raise();
    if let Some(r) = rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
        invalid(
            F,
            format!("rate must be a positive number of operations per second, got {r}"),
            "Leave rate NULL for the closed model (each worker back to back).",
        );
    }
    let mix = mix.map(|m| m.parse(F, "mix").or_raise());
    let transactions = transactions.map(|t| t.parse(F, "transactions").or_raise());
    let customs = match &transactions {
        None => Vec::new(),
        Some(t) => {
            let names: Vec<&str> = ops::OPS.iter().map(|o| o.name()).collect();
            custom::parse(t, &names)
                .map_err(|e| StressError::invalid(F, e, "See README.md, \"Custom transactions\"."))
                .or_raise()
        }
    };
    let weights = match (&mix, customs.is_empty()) {
        // Custom transactions alone: no built-in operation unless a mix asks for some.
        (None, false) => [0.0; ops::OPS.len()],
        (mix, _) => mix_weights(F, mix.as_ref()),
    };
    let total_weight = weights.iter().sum::<f64>() + customs.iter().map(|c| c.weight).sum::<f64>();
    if !(total_weight.is_finite() && total_weight > 0.0) {
        invalid(
            F,
            format!("the weights of the mix and the transactions add up to {total_weight}"),
            "Give at least one operation or transaction a weight, and keep their sum a finite number.",
        );
    }
    let custom_json = transactions.map(|t| t.to_string()).unwrap_or_default();
    if custom_json.len() > custom::MAX_BYTES {
        invalid(
            F,
            format!(
                "transactions take {} bytes of JSON, more than {}",
                custom_json.len(),
                custom::MAX_BYTES
            ),
            "Put long SQL in a function and call that from the transaction.",
        );
    }
    // Parse and analyse each statement now, so that a typo or a missing table fails this call
    // rather than every operation of the run.
    if !customs.is_empty() {
        Spi::connect(|client| {
            for c in &customs {
                let types: Vec<pgrx::PgOid> = c.params.iter().map(|p| p.pg_type()).collect();
                for sql in &c.statements {
                    client.prepare_mut(sql.as_str(), &types)?;
                }
            }
            Ok::<_, pgrx::spi::SpiError>(())
        })
        .map_err(|e| {
            StressError::invalid(
                F,
                format!("transactions: {e}"),
                "Check the statements' SQL.",
            )
        })
        .or_raise();
    }
    let Some(isolation_level) = parse_isolation(&isolation) else {
        invalid(
            F,
            format!(
                "isolation must be read committed, repeatable read or serializable, got \"{isolation}\""
            ),
            "Pass e.g. isolation => 'repeatable read'.",
        );
    };
    let max_retries = retries(F, max_retries);
    start_run(RunRequest {
        seconds,
        workers: k,
        rate,
        weights,
        isolation: isolation_level,
        max_retries,
        wait,
        seed,
        hot_accounts: 0,
        transfer_pause: 0.0,
        scenario: Scenario::RunLoad,
        day_peaks: None,
        custom: custom_json,
        bench: None,
    })
}

/// What started a run (recorded in its parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    RunLoad = 0,
    DeadlockTest = 1,
    Ramp = 2,
    TradingDay = 3,
    Benchmark = 4,
}

impl Scenario {
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Scenario::DeadlockTest,
            2 => Scenario::Ramp,
            3 => Scenario::TradingDay,
            4 => Scenario::Benchmark,
            _ => Scenario::RunLoad,
        }
    }

    pub fn name(self) -> Option<&'static str> {
        match self {
            Scenario::RunLoad => None,
            Scenario::DeadlockTest => Some("deadlock_test"),
            Scenario::Ramp => Some("ramp"),
            Scenario::TradingDay => Some("simulate_trading_day"),
            Scenario::Benchmark => None,
        }
    }

    /// The run's kind in `stress.runs`.
    pub fn kind(self) -> &'static str {
        match self {
            Scenario::Benchmark => "benchmark",
            _ => "run_load",
        }
    }
}

/// A validated load run, ready to start.
pub struct RunRequest {
    pub seconds: f64,
    pub workers: usize,
    pub rate: Option<f64>,
    pub weights: ops::Weights,
    pub isolation: i32,
    pub max_retries: i32,
    pub wait: bool,
    pub seed: Option<i64>,
    pub hot_accounts: i64,
    pub transfer_pause: f64,
    pub scenario: Scenario,
    /// simulate_trading_day's peak hours (bit h = hour h), when the rate follows a day
    pub day_peaks: Option<u32>,
    /// custom transactions, as JSON (validated)
    pub custom: String,
    /// a concurrent stress.benchmark (scenario Benchmark): its queries are the custom transactions
    pub bench: Option<shmem::BenchmarkState>,
}

/// Workers are sessions of their own: they cannot see what the caller's open transaction wrote (a
/// dataset generated in the same transaction), and they wait for the row locks it holds. Say so
/// where the call is, rather than leave a run that fails with "does not exist" or only waits.
/// (Rows this transaction wrote, from its statistics: not an assigned xid, which pgrx's SPI takes
/// for any query; and not pg_stress's own records or temp tables, which no worker reads.)
fn warn_if_caller_has_written(function: &str) {
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

/// Start the workers of a run (and with `wait`, wait for its end). Returns the run id.
pub fn start_run(req: RunRequest) -> i64 {
    const F: &str = "run_load";
    let RunRequest {
        seconds,
        workers: k,
        rate,
        weights,
        isolation: isolation_level,
        max_retries,
        wait,
        seed,
        ..
    } = req;
    crate::postgres::privilege::require_worker_grant(F);
    warn_if_caller_has_written(F);
    // Runs of this database whose workers all died and whose closer could not start.
    recovery::close_abandoned_runs();
    let schema = gucs::data_schema();
    let benchmark = req.scenario == Scenario::Benchmark;
    // (A benchmark runs the caller's queries: it needs no trading dataset.)
    let ids = if benchmark {
        DatasetIds::default()
    } else {
        dataset_ids(F, &schema)
    };
    let blocks_start = crate::metrics::blocks::flushed((!benchmark).then_some(schema.as_str()));
    let run_id = crate::records::new_run_id();
    let started_at = unsafe { pg_sys::GetCurrentTimestamp() };
    let (mut user, mut security_context) = (pg_sys::InvalidOid, 0);
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut security_context) };
    let mut slot = RunSlot {
        run_id,
        phase: Phase::Running,
        database: unsafe { pg_sys::MyDatabaseId },
        session_user: unsafe { pg_sys::GetSessionUserId() },
        current_user: user,
        security_context,
        workers: k as u32,
        workers_running: k as u32,
        started_at,
        // (A benchmark ends when its executions are done.)
        deadline: if benchmark {
            i64::MAX
        } else {
            started_at + (seconds * 1e6) as i64
        },
        rate: rate.unwrap_or(0.0),
        isolation: isolation_level,
        max_retries: max_retries as u32,
        weights,
        seed: crate::generate::seed_or_random(seed) as u64,
        accounts: ids.accounts,
        first_order_id: ids.orders + 1,
        first_trade_id: ids.trades + 1,
        first_audit_id: ids.audit + 1,
        hot_accounts: req.hot_accounts,
        transfer_pause: req.transfer_pause,
        scenario: req.scenario as u8,
        day_profile: req.day_peaks.is_some(),
        day_peaks: req.day_peaks.unwrap_or(0),
        custom_len: req.custom.len() as u32,
        slow_ms: gucs::SLOW_QUERY_THRESHOLD_MS.get(),
        blocks_start,
        bench: req.bench.unwrap_or_default(),
        ..RunSlot::default()
    };
    slot.set_schema(&schema);
    let search_path = Spi::get_one::<String>("SELECT current_setting('search_path')")
        .expect("reading search_path")
        .unwrap_or_default();
    if search_path.len() > 1023 {
        invalid(
            F,
            "search_path is longer than 1023 bytes".into(),
            "Shorten it (SET search_path = …) before starting the run: the workers take it on.",
        );
    }
    slot.set_search_path(&search_path);
    slot.custom[..req.custom.len()].copy_from_slice(req.custom.as_bytes());
    let index = {
        let mut table = RUNS.exclusive();
        let Some(index) = table.slots.iter().position(|s| s.phase == Phase::Free) else {
            drop(table);
            StressError::OutOfWorkerSlots {
                message: format!("{F}: {} load runs are already running", shmem::MAX_RUNS),
                hint: "Wait for one to end, or cancel one: SELECT stress.cancel(run_id) (see stress.runs WHERE status = 'running').".into(),
            }
            .raise();
        };
        table.slots[index] = slot;
        index
    };

    let mut handles = Vec::with_capacity(k);
    for i in 0..k {
        let name = format!("pg_stress load run {run_id} worker {}/{k}", i + 1);
        let builder = BackgroundWorkerBuilder::new(&name)
            .set_type("pg_stress load")
            .set_library("pg_stress")
            .set_function("pg_stress_load_worker_main")
            .set_argument(Some(pg_sys::Datum::from(index)))
            .set_extra(&format!(
                "{run_id} {i} {}",
                u32::from(unsafe { pg_sys::MyDatabaseId })
            ))
            .enable_spi_access()
            .set_notify_pid(unsafe { pg_sys::MyProcPid });
        let mut bgw: pg_sys::BackgroundWorker = (&builder).into();
        let mut handle = std::ptr::null_mut();
        if !unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut bgw, &mut handle) } {
            {
                // The ones started stop at once and close the run; the rest never come.
                let mut table = RUNS.exclusive();
                let s = &mut table.slots[index];
                s.cancel = true;
                s.workers_running -= (k - i) as u32;
                if i == 0 {
                    *s = RunSlot::default();
                }
            }
            for &h in &handles {
                unsafe { pg_sys::WaitForBackgroundWorkerShutdown(h) };
            }
            let max = unsafe { pg_sys::max_worker_processes };
            StressError::OutOfWorkerSlots {
                message: format!(
                    "{F}: could not start {k} background workers: only {i} background worker slots were free (max_worker_processes = {max})"
                ),
                hint: format!(
                    "Pass workers => {} or fewer, or raise max_worker_processes (needs a server restart).",
                    i.max(1)
                ),
            }
            .raise();
        }
        handles.push(handle);
    }
    if wait {
        wait_for(run_id, Some(&handles), req.scenario);
    }
    run_id
}

/// The highest ids of the trading dataset (load runs append after them).
#[derive(Default)]
struct DatasetIds {
    accounts: i64,
    orders: i64,
    trades: i64,
    audit: i64,
}

/// Check that `schema` holds the trading dataset, and read its highest ids.
fn dataset_ids(function: &'static str, schema: &str) -> DatasetIds {
    let max_id = |table: &str| -> i64 {
        let name = qualified(schema, table);
        let exists = Spi::get_one_with_args::<bool>(
            "SELECT to_regclass($1) IS NOT NULL",
            &[name.as_str().into()],
        )
        .unwrap()
        .unwrap_or(false);
        if !exists {
            invalid(
                function,
                format!("{schema}.{table} does not exist"),
                "Generate the trading dataset first: SELECT * FROM stress.generate_dataset(orders => 100000);",
            );
        }
        Spi::get_one::<i64>(&format!("SELECT coalesce(max(id), 0) FROM {name}"))
            .expect("reading the highest id")
            .unwrap_or(0)
    };
    let accounts = max_id("accounts");
    let (orders, trades, audit) = (max_id("orders"), max_id("trades"), max_id("audit_log"));
    if Spi::get_one_with_args::<bool>(
        "SELECT to_regclass($1) IS NULL",
        &[qualified(schema, "positions").as_str().into()],
    )
    .unwrap()
        == Some(true)
    {
        invalid(
            function,
            format!("{schema}.positions does not exist"),
            "Generate the trading dataset first: SELECT * FROM stress.generate_dataset(orders => 100000);",
        );
    }
    if accounts < 2 {
        invalid(
            function,
            format!("{schema}.accounts has {accounts} accounts; trades need at least 2"),
            "Generate the trading dataset first: SELECT * FROM stress.generate_dataset(orders => 100000);",
        );
    }
    if schema.len() > 63 {
        invalid(
            function,
            "the data schema's name is too long".into(),
            "Use a name of at most 63 bytes.",
        );
    }
    DatasetIds {
        accounts,
        orders,
        trades,
        audit,
    }
}

/// Cancels the run if the waiting caller is cancelled (or fails) while the run goes on.
struct CancelOnDrop(i64, bool);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.1 {
            cancel_run(self.0);
        }
    }
}

fn cancel_run(run_id: i64) -> bool {
    let mut table = RUNS.exclusive();
    match shmem::find_in(&table, run_id) {
        Some(i) => {
            table.slots[i].cancel = true;
            true
        }
        None => false,
    }
}

/// Block until `run_id` ends; NOTICEs on the way and a summary at the end. `handles` (the caller's
/// own workers) let it notice workers that died without closing the run.
fn wait_for(
    run_id: i64,
    handles: Option<&[*mut pg_sys::BackgroundWorkerHandle]>,
    scenario: Scenario,
) -> String {
    let label = scenario.kind();
    let mut guard = CancelOnDrop(run_id, true);
    let interval = Duration::from_millis(gucs::PROGRESS_INTERVAL.get().max(0) as u64);
    let mut last_notice = Instant::now();
    loop {
        let live = {
            let table = RUNS.share();
            shmem::find_in(&table, run_id).map(|i| table.slots[i])
        };
        let Some(slot) = live else { break };
        if let Some(handles) = handles {
            let stopped = handles
                .iter()
                .filter(|&&h| {
                    let mut pid = 0;
                    let status = unsafe { pg_sys::GetBackgroundWorkerPid(h, &mut pid) };
                    status == pg_sys::BgwHandleStatus::BGWH_STOPPED
                })
                .count();
            // (Read after the handles: a worker that finished had counted itself out before it exited.)
            let now = {
                let table = RUNS.share();
                shmem::find_in(&table, run_id).map(|i| table.slots[i])
            };
            let Some(now) = now else { break };
            if stopped == handles.len() {
                close_abandoned_run(
                    run_id,
                    scenario,
                    (now.started_at, now.current_user),
                    "its workers exited without closing the run (see the server log)",
                );
                break;
            }
            // A worker gone without counting itself out (a FATAL as it connected, say) never will:
            // stop the others, so that the run ends (as failed, above) instead of waiting for it.
            if stopped as u32 > now.workers - now.workers_running && !now.cancel {
                pgrx::warning!(
                    "{label}: run {run_id}: a worker exited without finishing (see the server log); stopping the others"
                );
                cancel_run(run_id);
            }
        }
        if !interval.is_zero() && last_notice.elapsed() >= interval {
            let elapsed = (unsafe { pg_sys::GetCurrentTimestamp() } - slot.started_at) as f64 / 1e6;
            notice!(
                "{label}: run {run_id}, {elapsed:.0} s: {} operations ({:.0} ops/s), {} errors",
                slot.ops,
                slot.ops as f64 / elapsed.max(1e-9),
                slot.errors
            );
            last_notice = Instant::now();
        }
        worker::sleep_ms(100);
    }
    guard.1 = false;
    let summary = Spi::connect(|client| {
        let rows = client.select(
            "SELECT r.status, coalesce(' (' || r.error || ')', ''),
                    format('%s operations in %s s (%s ops/s), p50 %s ms, p99 %s ms, %s errors, %s deadlocks',
                           coalesce(t.calls, 0), round(coalesce(t.seconds, 0)::numeric, 1),
                           round(coalesce(t.ops_per_sec, 0)::numeric), round(coalesce(t.p50_ms, 0)::numeric, 2),
                           round(coalesce(t.p99_ms, 0)::numeric, 2), coalesce(t.errors, 0),
                           coalesce(t.details->>'deadlocks', '0'))
             FROM stress.runs r LEFT JOIN stress.results t ON t.run_id = r.id AND t.name = 'total'
             WHERE r.id = $1",
            None,
            &[run_id.into()],
        )?;
        let mut out = None;
        for row in rows {
            out = Some((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
                row.get::<String>(3)?.unwrap_or_default(),
            ));
        }
        Ok::<_, pgrx::spi::SpiError>(out)
    })
    .expect("reading the run's summary");
    match summary {
        Some((status, error, figures)) => {
            // (A benchmark returns its figures as rows.)
            if scenario != Scenario::Benchmark {
                notice!("{label}: run {run_id} {status}{error}: {figures}");
            }
            status
        }
        None => "unknown".into(),
    }
}

/// A run whose workers are all gone without closing it: record it as failed (its row, if no worker
/// wrote one) and free its slot.
fn close_abandoned_run(
    run_id: i64,
    scenario: Scenario,
    (started_at, run_as): (pg_sys::TimestampTz, pg_sys::Oid),
    why: &str,
) {
    {
        let mut table = RUNS.exclusive();
        if let Some(i) = shmem::find_in(&table, run_id) {
            table.slots[i] = RunSlot::default();
        }
    }
    crate::records::close_abandoned_run(&crate::records::RunRow {
        id: run_id,
        kind: scenario.kind(),
        parameters: serde_json::Value::Null,
        status: "failed",
        started_at,
        run_as,
        error: Some(why),
        peak_connections: 0,
    });
    pgrx::warning!("{}: run {run_id}: {why}", scenario.kind());
}

/// Asks every worker of a running load run to stop (within about one operation); true if the run
/// was running. The run ends with status cancelled, its measurements so far kept.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn cancel(run_id: i64) -> bool {
    require_preload("cancel");
    let owner = {
        let table = RUNS.share();
        shmem::find_in(&table, run_id).map(|i| table.slots[i].current_user)
    };
    match owner {
        None => false,
        Some(role) => {
            if !unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), role) } {
                StressError::PermissionDenied {
                    message: format!("permission denied to cancel load run {run_id}"),
                    hint: "Only the role that started a run (or a member of it, or a superuser) may cancel it.".into(),
                }
                .raise();
            }
            cancel_run(run_id)
        }
    }
}

/// Blocks until the run ends and returns its status (completed, cancelled, failed, …).
#[pg_extern(volatile, parallel_unsafe, strict)]
fn wait(run_id: i64) -> String {
    require_preload("wait");
    let known = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM stress.runs WHERE id = $1)",
        &[run_id.into()],
    )
    .unwrap()
    .unwrap_or(false)
        || shmem::find(&RUNS.share(), run_id).is_some();
    if !known {
        StressError::invalid(
            "wait",
            format!("there is no run {run_id}"),
            "See stress.runs for run ids.",
        )
        .raise();
    }
    wait_for_without_cancel(run_id)
}

/// Like [`wait_for`], but cancelling the wait leaves the run going.
fn wait_for_without_cancel(run_id: i64) -> String {
    while shmem::find(&RUNS.share(), run_id).is_some() {
        worker::sleep_ms(100);
    }
    Spi::get_one_with_args::<String>(
        "SELECT (SELECT status FROM stress.runs WHERE id = $1)",
        &[run_id.into()],
    )
    .unwrap()
    .unwrap_or_else(|| "unknown".into())
}

/// The load runs going on in this server, from shared memory (see the `stress.progress` view).
// (pgrx reads the column names from this very signature: it cannot be a type alias.)
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn live_runs() -> TableIterator<
    'static,
    (
        name!(run_id, i64),
        name!(database, Option<String>),
        name!(started_at, TimestampWithTimeZone),
        name!(elapsed_s, f64),
        name!(workers, i32),
        name!(active_workers, i32),
        name!(ops, i64),
        name!(ops_per_sec, f64),
        name!(errors, i64),
        name!(p99_ms, f64),
        name!(cancel_requested, bool),
    ),
> {
    if !shmem::available() {
        return TableIterator::new(Vec::new());
    }
    let slots: Vec<RunSlot> = {
        let table = RUNS.share();
        table
            .slots
            .iter()
            .filter(|s| s.phase == Phase::Running && shmem::visible(s))
            .copied()
            .collect()
    };
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let rows: Vec<_> = slots
        .into_iter()
        .map(|s| {
            let database = unsafe {
                let name = pg_sys::get_database_name(s.database);
                (!name.is_null()).then(|| {
                    std::ffi::CStr::from_ptr(name)
                        .to_string_lossy()
                        .into_owned()
                })
            };
            (
                s.run_id,
                database,
                TimestampWithTimeZone::try_from(s.started_at).expect("valid start"),
                (now - s.started_at) as f64 / 1e6,
                s.workers as i32,
                s.workers_looping as i32,
                s.ops as i64,
                s.last_rate,
                s.errors as i64,
                crate::metrics::buckets::quantile_ms(&s.cumulative, 0.99),
                s.cancel,
            )
        })
        .collect();
    TableIterator::new(rows)
}

extension_sql!(
    r#"
CREATE VIEW stress.progress AS SELECT * FROM stress.live_runs();
COMMENT ON VIEW stress.progress IS 'Load runs going on now: elapsed, operations, ops/s over the last second, errors, p99 so far.';
GRANT SELECT ON stress.progress TO PUBLIC;
"#,
    name = "progress_view",
    requires = [live_runs]
);

// Starting background workers needs a grant (SECURITY.md); the functions that do nothing else are
// not executable by PUBLIC, and every other path that starts workers checks EXECUTE on run_load.
extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION stress.run_load, stress.ramp, stress.deadlock_test, stress.simulate_trading_day
    FROM PUBLIC;
"#,
    name = "worker_grants",
    requires = [run_load, ramp, deadlock_test, simulate_trading_day]
);

/// The seed's deadlock test: `workers` workers transfer money back and forth between the first
/// `accounts` accounts, each debiting one account and then crediting the other, so transfers in
/// opposite directions deadlock. PostgreSQL detects each deadlock, the losing transfer is retried,
/// and the total of all balances must not change by a cent.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn deadlock_test(
    workers: default!(i32, 2),
    duration: default!(Interval, "'5 seconds'"),
    accounts: default!(i32, 2),
    pause: default!(Interval, "'10 milliseconds'"),
    max_retries: default!(Option<i32>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(run_id, i64),
        name!(transfers, i64),
        name!(deadlocks, i64),
        name!(retries, i64),
        name!(failures, i64),
        name!(balance_before, AnyNumeric),
        name!(balance_after, AnyNumeric),
        name!(conserved, bool),
    ),
> {
    const F: &str = "deadlock_test";
    require_preload(F);
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        StressError::NotSupported {
            message: "stress.deadlock_test compares balances before and after the run, which one snapshot cannot see".into(),
            hint: "Run it in a READ COMMITTED transaction (the default), e.g. on its own.".into(),
        }
        .raise();
    }
    if workers < 2 {
        invalid(
            F,
            format!("workers must be at least 2 for a deadlock, got {workers}"),
            "Two workers transferring in opposite directions are enough: workers => 2.",
        );
    }
    if accounts < 2 {
        invalid(
            F,
            format!("accounts must be at least 2, got {accounts}"),
            "Transfers need two accounts; fewer accounts make deadlocks more likely.",
        );
    }
    let seconds = duration_seconds(F, duration, "Pass an interval such as '5 seconds'.");
    let pause = interval_seconds(pause);
    if !(0.0..=10.0).contains(&pause) {
        invalid(
            F,
            format!("pause must be between 0 and 10 seconds, got {pause} s"),
            "It is how long a transfer holds its first lock before taking the second, e.g. '10 milliseconds'.",
        );
    }
    let k = crate::generate::parallel::worker_count(F, Some(workers)).or_raise();
    let max_retries = retries(F, max_retries);
    let total_sql = format!(
        "SELECT coalesce(sum(balance), 0) FROM {}",
        qualified(&gucs::data_schema(), "accounts")
    );
    let total = || -> AnyNumeric {
        Spi::get_one::<AnyNumeric>(&total_sql)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let available = Spi::get_one_with_args::<bool>(
        "SELECT to_regclass($1) IS NOT NULL",
        &[qualified(&gucs::data_schema(), "accounts").as_str().into()],
    )
    .unwrap()
    .unwrap_or(false);
    if !available {
        invalid(
            F,
            format!("{}.accounts does not exist", gucs::data_schema()),
            "Generate the trading dataset first: SELECT * FROM stress.generate_dataset(orders => 100000);",
        );
    }
    let before = total();
    let mut weights = [0.0; ops::OPS.len()];
    weights[ops::Op::Transfer.index()] = 1.0;
    let run_id = start_run(RunRequest {
        seconds,
        workers: k,
        rate: None,
        weights,
        isolation: pg_sys::XACT_READ_COMMITTED as i32,
        max_retries,
        wait: true,
        seed: None,
        hot_accounts: accounts as i64,
        transfer_pause: pause,
        scenario: Scenario::DeadlockTest,
        day_peaks: None,
        custom: String::new(),
        bench: None,
    });
    let after = total();
    let figure = |expr: &str| result_figure(run_id, "transfer", expr) as i64;
    let figures = (
        figure("calls"),
        figure("details->>'deadlocks'"),
        figure("details->>'retries'"),
        figure("details->>'failures'"),
    );
    let conserved = before == after;
    TableIterator::once((
        run_id, figures.0, figures.1, figures.2, figures.3, before, after, conserved,
    ))
}

fn interval_seconds(interval: Interval) -> f64 {
    Spi::get_one_with_args::<f64>("SELECT extract(epoch FROM $1)::float8", &[interval.into()])
        .expect("reading an interval")
        .unwrap_or(0.0)
}

/// A run's duration in seconds: positive and at most [`MAX_DURATION_SECONDS`], else 22023.
fn duration_seconds(function: &'static str, duration: Interval, hint: &str) -> f64 {
    let seconds = interval_seconds(duration);
    if !(seconds > 0.0 && seconds <= MAX_DURATION_SECONDS) {
        invalid(
            function,
            format!("duration must be positive and at most 7 days, got {seconds} s"),
            hint,
        );
    }
    seconds
}

/// `max_retries`, or `stress.deadlock_retry_attempts` when NULL; 0…1000, else 22023.
fn retries(function: &'static str, max_retries: Option<i32>) -> i32 {
    let max_retries = max_retries.unwrap_or_else(|| gucs::DEADLOCK_RETRY_ATTEMPTS.get());
    if !(0..=1000).contains(&max_retries) {
        invalid(
            function,
            format!("max_retries must be between 0 and 1000, got {max_retries}"),
            "It is how often a deadlocked or serialization-failed transaction is retried.",
        );
    }
    max_retries
}

/// The weights of a `mix` argument (the seed's default mix when NULL); a bad mix is 22023.
fn mix_weights(function: &'static str, mix: Option<&serde_json::Value>) -> ops::Weights {
    let weights = match mix {
        None => ops::default_mix(),
        Some(m) => ops::parse_mix(m)
            .map_err(|e| {
                StressError::invalid(
                    function,
                    e,
                    "See README.md, \"Load runs\", for the operations.",
                )
            })
            .or_raise(),
    };
    let sum: f64 = weights.iter().sum();
    if !sum.is_finite() {
        invalid(
            function,
            format!("the weights of the mix add up to {sum}"),
            "Keep each weight, and their sum, a finite number, e.g. {\"place_order\": 3, \"execute_trade\": 1}.",
        );
    }
    weights
}

/// One figure of a finished run's `stress.results` row `name` (`expr` over its columns), 0 if none.
fn result_figure(run_id: i64, name: &str, expr: &str) -> f64 {
    Spi::get_one_with_args::<f64>(
        &format!(
            "SELECT coalesce((SELECT ({expr})::float8 FROM stress.results WHERE run_id = $1 AND name = $2), 0)"
        ),
        &[run_id.into(), name.into()],
    )
    .expect("reading a run's figures")
    .unwrap_or(0.0)
}

/// The seed's incremental load test: one run of `step` per entry of `workers`, in order, until the
/// error rate goes over `max_error_rate` (that step is marked `degraded` and the ramp stops there).
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn ramp(
    workers: Vec<Option<i32>>,
    step: default!(Interval, "'30 seconds'"),
    max_error_rate: default!(f64, 0.01),
    mix: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(workers, i32),
        name!(run_id, i64),
        name!(ops_per_sec, f64),
        name!(p99_ms, f64),
        name!(error_rate, f64),
        name!(degraded, bool),
    ),
> {
    const F: &str = "ramp";
    require_preload(F);
    if workers.is_empty() {
        invalid(
            F,
            "workers must list at least one worker count".into(),
            "Pass the steps, e.g. workers => '{1,2,4,8}'.",
        );
    }
    let counts: Vec<usize> = workers
        .iter()
        .map(|w| match w {
            None => invalid(
                F,
                "workers must not contain NULL".into(),
                "Pass the steps, e.g. workers => '{1,2,4,8}'.",
            ),
            Some(k) => crate::generate::parallel::worker_count(F, Some(*k)).or_raise(),
        })
        .collect();
    let seconds = interval_seconds(step);
    if !(seconds > 0.0 && seconds * counts.len() as f64 <= MAX_DURATION_SECONDS) {
        invalid(
            F,
            format!("step must be positive and all steps at most 7 days, got {seconds} s"),
            "Pass an interval such as '30 seconds'.",
        );
    }
    if !(0.0..=1.0).contains(&max_error_rate) {
        invalid(
            F,
            format!("max_error_rate must be between 0 and 1, got {max_error_rate}"),
            "The seed degrades at 1% errors: max_error_rate => 0.01.",
        );
    }
    let mix = mix.map(|m| m.parse(F, "mix").or_raise());
    let weights = mix_weights(F, mix.as_ref());
    let mut rows = Vec::new();
    for (i, &k) in counts.iter().enumerate() {
        let run_id = start_run(RunRequest {
            seconds,
            workers: k,
            rate: None,
            weights,
            isolation: pg_sys::XACT_READ_COMMITTED as i32,
            max_retries: retries(F, None),
            wait: true,
            seed: None,
            hot_accounts: 0,
            transfer_pause: 0.0,
            scenario: Scenario::Ramp,
            day_peaks: None,
            custom: String::new(),
            bench: None,
        });
        let figure = |expr: &str| result_figure(run_id, "total", expr);
        let ops = figure("ops_per_sec");
        let p99 = figure("p99_ms");
        let error_rate = figure("errors::float8 / greatest(calls, 1)");
        let degraded = error_rate > max_error_rate;
        rows.push((
            i as i32 + 1,
            k as i32,
            run_id,
            ops,
            p99,
            error_rate,
            degraded,
        ));
        if degraded {
            break;
        }
    }
    TableIterator::new(rows)
}

/// The seed's production simulation: a trading day compressed into `duration`, orders and trades
/// arriving (open model) at `orders_per_second` and `trades_per_second` in an ordinary hour, four
/// times that in `peak_hours`, a quarter of it at night (hours 0–5).
#[pg_extern(volatile, parallel_unsafe)]
fn simulate_trading_day(
    duration: Interval,
    peak_hours: default!(Vec<Option<i32>>, "'{9,10,14,15}'"),
    orders_per_second: default!(f64, 100.0),
    trades_per_second: default!(f64, 50.0),
    workers: default!(i32, 4),
    wait: default!(bool, true),
) -> i64 {
    const F: &str = "simulate_trading_day";
    require_preload(F);
    let seconds = duration_seconds(
        F,
        duration,
        "A day compressed into e.g. '24 minutes' (an hour a minute).",
    );
    let mut peaks = 0u32;
    for hour in &peak_hours {
        match hour {
            Some(h) if (0..24).contains(h) => peaks |= 1 << h,
            other => invalid(
                F,
                format!("peak_hours must be hours 0–23, got {other:?}"),
                "Pass e.g. '{9,10,14,15}' (market open and close).",
            ),
        }
    }
    for (name, rate) in [
        ("orders_per_second", orders_per_second),
        ("trades_per_second", trades_per_second),
    ] {
        if !(rate.is_finite() && rate >= 0.0) {
            invalid(
                F,
                format!("{name} must be a non-negative number, got {rate}"),
                "They are the rates of an ordinary hour; peak hours get four times as many.",
            );
        }
    }
    if !((orders_per_second + trades_per_second) * 4.0).is_finite() {
        invalid(
            F,
            "orders_per_second + trades_per_second is too large".into(),
            "Pass rates of operations per second a server can run, e.g. orders_per_second => 100.",
        );
    }
    if orders_per_second + trades_per_second <= 0.0 {
        invalid(
            F,
            "orders_per_second and trades_per_second are both zero".into(),
            "Give the day some activity, e.g. orders_per_second => 100.",
        );
    }
    let k = crate::generate::parallel::worker_count(F, Some(workers)).or_raise();
    let mut weights = [0.0; ops::OPS.len()];
    let total = orders_per_second + trades_per_second;
    weights[ops::Op::PlaceOrder.index()] = orders_per_second / total;
    weights[ops::Op::ExecuteTrade.index()] = trades_per_second / total;
    start_run(RunRequest {
        seconds,
        workers: k,
        // the peak rate: a day's profile keeps each arrival with probability weight / 4
        rate: Some(total * 4.0),
        weights,
        isolation: pg_sys::XACT_READ_COMMITTED as i32,
        max_retries: retries(F, None),
        wait,
        seed: None,
        hot_accounts: 0,
        transfer_pause: 0.0,
        scenario: Scenario::TradingDay,
        day_peaks: Some(peaks),
        custom: String::new(),
        bench: None,
    })
}
