//! Load runs: `stress.run_load` / `CALL stress.run_load_proc` start background workers that run a
//! mix of trading operations and custom transactions against the generated tables, in a closed or an
//! open model, and record true latency percentiles; the scenarios (`deadlock_test`,
//! `simulate_trading_day`) are load runs with their own mix. `series` runs several of them in turn
//! (ramp, find_optimal_pool_size, find_capacity); `report` reads one back. `stress.cancel` and
//! `stress.wait` (runs::control) control a run from any session.
//!
//! - `ops`: the built-in operations, their SQL and the data they need ([`ops::DataInUse`]);
//! - `custom`: custom transactions, parsed and prepared;
//! - `arrivals`: the open model's Poisson schedule;
//! - `worker`: load's [`RunKind`](crate::runs::kind::RunKind): a worker's loop.

mod arrivals;
mod custom;
pub mod ops;
mod remote;
pub mod report;
pub mod series;
mod worker;

use crate::error::{OrRaise, StressError};
use crate::gucs;
use crate::postgres::procedure::Call;
use crate::postgres::quote::qualified;
use crate::postgres::spi_read;
use crate::runs::control::{self, Configured, require_preload};
use pgrx::AnyNumeric;
use pgrx::pg_sys;
use pgrx::prelude::*;

pub fn isolation_name(level: i32) -> &'static str {
    match level as u32 {
        pg_sys::XACT_REPEATABLE_READ => "repeatable read",
        pg_sys::XACT_SERIALIZABLE => "serializable",
        _ => "read committed",
    }
}

fn invalid(function: &'static str, message: String, hint: &str) -> ! {
    StressError::invalid(function, message, hint.to_owned()).raise()
}

/// An open-model rate a run's workers can honour: positive and finite, at most
/// [`arrivals::MAX_RATE`] over the run and [`arrivals::MAX_RATE_PER_WORKER`] per worker (22023).
pub fn check_rate(
    function: &'static str,
    what: &str,
    rate: f64,
    workers: usize,
) -> Result<(), StressError> {
    let bad =
        |message: String, hint: &str| Err(StressError::invalid(function, message, hint.to_owned()));
    // (1e300 in a message, not three hundred digits)
    let rate_text = if rate.abs() < 1e15 {
        rate.to_string()
    } else {
        format!("{rate:e}")
    };
    if !(rate.is_finite() && rate > 0.0) {
        return bad(
            format!("{what} must be a positive number of operations per second, got {rate_text}"),
            "Leave rate NULL for the closed model (each worker back to back).",
        );
    }
    if rate > arrivals::MAX_RATE {
        return bad(
            format!(
                "{what} = {rate} ops/s is more than the {} ops/s a run can schedule",
                arrivals::MAX_RATE
            ),
            "Leave rate NULL for the closed model: each worker then runs back to back, as fast as the server allows.",
        );
    }
    if rate / workers as f64 > arrivals::MAX_RATE_PER_WORKER {
        return bad(
            format!(
                "{what} = {rate_text} ops/s is more than {} ops/s for each of {workers} workers",
                arrivals::MAX_RATE_PER_WORKER
            ),
            "Pass more workers, or leave rate NULL for the closed model (each worker back to back).",
        );
    }
    Ok(())
}

/// `stress.run_load(…)`: starts a load run and returns its id at once (`wait => true`, 0.5.0's
/// waiting form, is refused: see [`refuse_waiting_select`]).
#[allow(clippy::too_many_arguments)]
pub fn run_load(
    duration: Interval,
    workers: i32,
    rate: Option<f64>,
    mix: Option<crate::postgres::json_arg::JsonArg>,
    isolation: String,
    max_retries: Option<i32>,
    wait: bool,
    seed: Option<i64>,
    transactions: Option<crate::postgres::json_arg::JsonArg>,
) -> i64 {
    if wait {
        refuse_waiting_select("run_load", "run_load_proc");
    }
    let req = run_load_request(
        duration,
        workers,
        rate,
        mix,
        isolation,
        max_retries,
        seed,
        transactions,
    );
    start_run(req, None).run_id
}

/// `CALL stress.run_load_proc(…)`: the run, waited for without a snapshot; its id.
#[allow(clippy::too_many_arguments)]
pub fn run_load_proc(
    call: &Call,
    duration: Interval,
    workers: i32,
    rate: Option<f64>,
    mix: Option<crate::postgres::json_arg::JsonArg>,
    isolation: String,
    max_retries: Option<i32>,
    seed: Option<i64>,
    transactions: Option<crate::postgres::json_arg::JsonArg>,
) -> i64 {
    start_run(
        run_load_request(
            duration,
            workers,
            rate,
            mix,
            isolation,
            max_retries,
            seed,
            transactions,
        ),
        Some(call),
    )
    .wait(call)
}

/// A load run's arguments, checked.
#[allow(clippy::too_many_arguments)]
fn run_load_request(
    duration: Interval,
    workers: i32,
    rate: Option<f64>,
    mix: Option<crate::postgres::json_arg::JsonArg>,
    isolation: String,
    max_retries: Option<i32>,
    seed: Option<i64>,
    transactions: Option<crate::postgres::json_arg::JsonArg>,
) -> LoadRequest {
    const F: &str = "run_load";
    require_preload(F);
    let seconds = crate::args::duration_seconds(
        F,
        duration,
        "Pass an interval such as '30 seconds' or '10 minutes'.",
    );
    let k = crate::args::worker_count(F, Some(workers)).or_raise();
    if let Some(r) = rate {
        check_rate(F, "rate", r, k).or_raise();
    }
    let w = workload(F, mix, transactions, &isolation, max_retries);
    LoadRequest::new(seconds, k, w).rate(rate).seed(seed)
}

/// The refusal of a load-run function asked to wait (see [`control::refuse_waiting_select`]).
pub fn refuse_waiting_select(function: &str, procedure: &str) -> ! {
    control::refuse_waiting_select(
        function,
        procedure,
        "it returns the run's figures. Or pass wait => false to get the run id at once (then CALL stress.wait(run_id)).",
    )
}

/// A finished load run's headline figures (from its records, under a new snapshot).
pub struct RunSummary {
    pub status: String,
    pub operations: i64,
    pub ops_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: i64,
    pub deadlocks: i64,
}

impl RunSummary {
    pub fn of(run_id: i64) -> RunSummary {
        let row = spi_read::latest::<pgrx::JsonB>(
            "SELECT pg_catalog.jsonb_build_object('status', r.status, 'calls', t.calls,
                        'ops', t.ops_per_sec, 'p50', t.p50_ms, 'p99', t.p99_ms, 'errors', t.errors,
                        'deadlocks', (t.details OPERATOR(pg_catalog.->>) 'deadlocks')::pg_catalog.int8)
             FROM stress.runs r
             LEFT JOIN stress.results t ON t.run_id OPERATOR(pg_catalog.=) r.id
                                       AND t.name OPERATOR(pg_catalog.=) 'total'
             WHERE r.id OPERATOR(pg_catalog.=) $1",
            &[run_id.into()],
        )
        .expect("reading the run's figures")
        .map(|j| j.0)
        .unwrap_or_default();
        RunSummary {
            status: row["status"].as_str().unwrap_or("unknown").to_owned(),
            operations: row["calls"].as_i64().unwrap_or(0),
            ops_per_sec: row["ops"].as_f64().unwrap_or(0.0),
            p50_ms: row["p50"].as_f64(),
            p99_ms: row["p99"].as_f64(),
            errors: row["errors"].as_i64().unwrap_or(0),
            deadlocks: row["deadlocks"].as_i64().unwrap_or(0),
        }
    }
}

/// On the primary: record a load run a hot standby ran (runs::standby).
pub fn record_standby_run(batch: crate::runs::standby::Batch) -> i64 {
    crate::runs::standby::record::<worker::LoadRun>(batch)
}

/// What a load run does, checked: the weights of its mix and custom transactions (parsed and each
/// statement prepared, so that a typo fails the call, not every operation), isolation, retries.
pub struct Workload {
    pub weights: ops::Weights,
    pub transactions: Option<serde_json::Value>,
    pub isolation: i32,
    pub max_retries: i32,
}

impl Workload {
    /// Built-in operations only, at `weights`, read committed (a scenario's own mix).
    pub fn builtin(weights: ops::Weights, max_retries: i32) -> Workload {
        Workload {
            weights,
            transactions: None,
            isolation: pg_sys::XACT_READ_COMMITTED as i32,
            max_retries,
        }
    }
}

/// Parse and analyse each statement of the custom transactions now, so that a typo or a missing
/// table fails the call rather than every operation of the run (22023).
fn prepare_customs(function: &'static str, customs: &[custom::Custom]) {
    if customs.is_empty() {
        return;
    }
    Spi::connect(|client| {
        for c in customs {
            let types: Vec<pgrx::PgOid> = c.params.iter().map(|p| p.pg_type()).collect();
            for sql in &c.statements {
                client.prepare_mut(sql.as_str(), &types)?;
            }
        }
        Ok::<_, pgrx::spi::SpiError>(())
    })
    .map_err(|e| {
        StressError::invalid(
            function,
            format!("transactions: {e}"),
            "Check the statements' SQL.",
        )
    })
    .or_raise();
}

pub fn workload(
    function: &'static str,
    mix: Option<crate::postgres::json_arg::JsonArg>,
    transactions: Option<crate::postgres::json_arg::JsonArg>,
    isolation: &str,
    max_retries: Option<i32>,
) -> Workload {
    let mix = mix.map(|m| m.parse(function, "mix").or_raise());
    let transactions = transactions.map(|t| t.parse(function, "transactions").or_raise());
    let customs = match &transactions {
        None => Vec::new(),
        Some(t) => {
            let names: Vec<&str> = ops::OPS.iter().map(|o| o.name()).collect();
            custom::parse(t, &names)
                .map_err(|e| {
                    StressError::invalid(function, e, "See docs/load.md, \"Custom transactions\".")
                })
                .or_raise()
        }
    };
    let weights = match (&mix, customs.is_empty()) {
        // Custom transactions alone: no built-in operation unless a mix asks for some.
        (None, false) => [0.0; ops::OPS.len()],
        (mix, _) => mix_weights(function, mix.as_ref()),
    };
    let total_weight = weights.iter().sum::<f64>() + customs.iter().map(|c| c.weight).sum::<f64>();
    if !(total_weight.is_finite() && total_weight > 0.0) {
        invalid(
            function,
            format!("the weights of the mix and the transactions add up to {total_weight}"),
            "Give at least one operation or transaction a weight, and keep their sum a finite number.",
        );
    }
    let custom_json = transactions
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_default();
    if custom_json.len() > custom::MAX_BYTES {
        invalid(
            function,
            format!(
                "transactions take {} bytes of JSON, more than {}",
                custom_json.len(),
                custom::MAX_BYTES
            ),
            "Put long SQL in a function and call that from the transaction.",
        );
    }
    // (on a target, they are prepared there as the run starts: remote::probe)
    if crate::gucs::target().is_none() {
        prepare_customs(function, &customs);
    }
    let Some(isolation_level) = crate::args::parse_isolation(isolation) else {
        invalid(
            function,
            format!(
                "isolation must be read committed, repeatable read or serializable, got \"{isolation}\""
            ),
            "Pass e.g. isolation => 'repeatable read'.",
        );
    };
    Workload {
        weights,
        transactions,
        isolation: isolation_level,
        max_retries: retries(function, max_retries),
    }
}

/// What started a load run (recorded in its parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    RunLoad,
    DeadlockTest,
    /// step `step` of a series of runs (`steps` of them when known ahead), named by its first
    /// step's run id (None: this is it); `kind` is the function that runs the series
    Series {
        kind: &'static str,
        step: usize,
        steps: Option<usize>,
        first_run_id: Option<i64>,
    },
    TradingDay,
}

impl Scenario {
    pub fn name(self) -> Option<&'static str> {
        match self {
            Scenario::RunLoad => None,
            Scenario::DeadlockTest => Some("deadlock_test"),
            Scenario::Series { kind, .. } => Some(kind),
            Scenario::TradingDay => Some("simulate_trading_day"),
        }
    }
}

/// A validated load run, ready to start: made by [`LoadRequest::new`] and its setters.
#[derive(Clone)]
pub struct LoadRequest {
    pub seconds: f64,
    pub workers: usize,
    pub rate: Option<f64>,
    pub weights: ops::Weights,
    pub isolation: i32,
    pub max_retries: i32,
    pub seed: Option<i64>,
    pub hot_accounts: i64,
    pub transfer_pause: f64,
    pub scenario: Scenario,
    /// simulate_trading_day's peak hours (bit h = hour h), when the rate follows a day
    pub day_peaks: Option<u32>,
    /// custom transactions (validated)
    pub transactions: Option<serde_json::Value>,
}

impl LoadRequest {
    /// `workload` for `seconds` with `workers`: a closed model (no rate), a fresh seed, transfers
    /// between any accounts, recorded as a run_load run.
    pub fn new(seconds: f64, workers: usize, workload: Workload) -> LoadRequest {
        LoadRequest {
            seconds,
            workers,
            rate: None,
            weights: workload.weights,
            isolation: workload.isolation,
            max_retries: workload.max_retries,
            seed: None,
            hot_accounts: 0,
            transfer_pause: 0.0,
            scenario: Scenario::RunLoad,
            day_peaks: None,
            transactions: workload.transactions,
        }
    }

    pub fn workers(mut self, workers: usize) -> LoadRequest {
        self.workers = workers;
        self
    }

    /// The open model's rate (None: closed).
    pub fn rate(mut self, rate: Option<f64>) -> LoadRequest {
        self.rate = rate;
        self
    }

    /// The run's seed (None: a fresh one).
    pub fn seed(mut self, seed: Option<i64>) -> LoadRequest {
        self.seed = seed;
        self
    }

    pub fn scenario(mut self, scenario: Scenario) -> LoadRequest {
        self.scenario = scenario;
        self
    }

    /// Transfers only between accounts 1..=`accounts`, pausing `pause` s between debit and credit.
    pub fn hot_transfers(mut self, accounts: i64, pause: f64) -> LoadRequest {
        self.hot_accounts = accounts;
        self.transfer_pause = pause;
        self
    }

    /// A day's peak hours (bit h = hour h): the rate follows the day.
    pub fn day_peaks(mut self, peaks: u32) -> LoadRequest {
        self.day_peaks = Some(peaks);
        self
    }
}

/// Start the workers of a load run; a procedure then waits for it with [`control::Started::wait`].
pub fn start_run(req: LoadRequest, call: Option<&Call>) -> control::Started {
    const F: &str = "run_load";
    if crate::postgres::backend::in_recovery() {
        refuse_writes_on_standby(req.scenario.name().unwrap_or(F), &req);
    }
    // (every caller checked its own; a series' next step is checked here)
    if let Some(rate) = req.rate {
        check_rate(req.scenario.name().unwrap_or(F), "rate", rate, req.workers).or_raise();
    }
    let run = control::RunSpec {
        kind: <worker::LoadRun as crate::runs::kind::RunKind>::KIND,
        entry_point: worker::ENTRY_POINT,
        label: "load",
        workers: req.workers,
        seconds: Some(req.seconds),
        isolation: req.isolation,
        summary_notice: true,
    };
    // (read before any worker starts: a bad connection string or a missing password fails the
    // call, 22023 or 2F003)
    let target = crate::runs::target::from_settings();
    control::start(run, call, |run_id| {
        let schema = gucs::data_schema();
        // Custom transactions alone need no trading dataset (as pgbench -f needs no pgbench -i).
        let builtins = ops::uses_builtins(&req.weights);
        let function = req.scenario.name().unwrap_or(F);
        let mut target_version = None;
        let ids = match &target {
            Some(target) => {
                let names: Vec<&str> = ops::OPS.iter().map(|o| o.name()).collect();
                let customs = req
                    .transactions
                    .as_ref()
                    .and_then(|t| custom::parse(t, &names).ok())
                    .unwrap_or_default();
                let found = remote::probe(function, target, &schema, builtins, &customs);
                target_version = Some(found.server_version);
                let ids = DatasetIds {
                    accounts: found.accounts,
                    orders: found.orders,
                    trades: found.trades,
                    audit: found.audit,
                };
                if builtins {
                    check_accounts(function, &schema, ids.accounts);
                }
                ids
            }
            None if builtins => dataset_ids(F, &schema),
            None => DatasetIds::default(),
        };
        let config = worker::LoadConfig {
            rate: req.rate.unwrap_or(0.0),
            weights: req.weights,
            max_retries: req.max_retries as u32,
            seed: crate::args::seed_or_random(req.seed) as u64,
            accounts: ids.accounts,
            first_order_id: ids.orders + 1,
            first_trade_id: ids.trades + 1,
            first_audit_id: ids.audit + 1,
            hot_accounts: req.hot_accounts,
            transfer_pause: req.transfer_pause,
            day_peaks: req.day_peaks,
            transactions: req.transactions.clone(),
            slow_ms: gucs::SLOW_QUERY_THRESHOLD_MS.get(),
            // (a target's tables are not this server's: no block figures)
            blocks_start: if target.is_some() {
                Default::default()
            } else {
                crate::metrics::blocks::flushed(Some(&schema))
            },
            schema,
            target: target.clone(),
        };
        let mut parameters = parameters(&req, &config, run_id);
        if let Some(version) = target_version {
            parameters["target"]["server_version_num"] = version.into();
        }
        Configured {
            config: serde_json::to_value(&config).expect("a load run's configuration"),
            parameters,
        }
    })
}

/// On a hot standby a run may only read: 25006 up front, naming what would write, rather than a
/// run whose every operation fails.
fn refuse_writes_on_standby(function: &str, req: &LoadRequest) {
    let mut writers: Vec<String> = ops::OPS
        .iter()
        .zip(req.weights)
        .filter(|(op, w)| *w > 0.0 && !op.reads_only())
        .map(|(op, _)| op.name().to_owned())
        .collect();
    if let Some(t) = &req.transactions {
        let names: Vec<&str> = ops::OPS.iter().map(|o| o.name()).collect();
        let customs = custom::parse(t, &names).unwrap_or_default();
        let reads_only = ops::custom_reads_only(&customs);
        writers.extend(
            customs
                .iter()
                .zip(reads_only)
                .filter(|(_, reads)| reads.contains(&false))
                .map(|(c, _)| format!("transaction \"{}\"", c.name)),
        );
    }
    if !writers.is_empty() {
        StressError::ReadOnly {
            message: format!(
                "{function}: this server is a hot standby, and {} would write",
                writers.join(", ")
            ),
            hint: "On a standby, run only reads: mix => '{\"open_orders\": 1, \"recent_trades\": 1, \"position\": 1}' \
                   (or '{\"select\": 1}'), or custom transactions of plain SELECTs (no FOR UPDATE, no \
                   data-modifying WITH). Run writes on the primary."
                .into(),
        }
        .raise();
    }
}

/// The run's parameters as recorded in `stress.runs`.
fn parameters(req: &LoadRequest, config: &worker::LoadConfig, run_id: i64) -> serde_json::Value {
    let mix: serde_json::Map<String, serde_json::Value> = ops::OPS
        .iter()
        .zip(config.weights)
        .filter(|(_, w)| *w > 0.0)
        .map(|(op, w)| (op.name().to_owned(), w.into()))
        .collect();
    let mut parameters = serde_json::json!({
        // (in whole µs, as the run's deadline is kept)
        "duration_seconds": ((req.seconds * 1e6) as i64) as f64 / 1e6,
        "workers": req.workers,
        "rate": (config.rate > 0.0).then_some(config.rate),
        "mix": mix,
        "isolation": isolation_name(req.isolation),
        "max_retries": config.max_retries,
        "seed": config.seed,
        "schema": config.schema,
        "scenario": req.scenario.name(),
        "transactions": config.transactions,
        "peak_hours": config.day_peaks.map(|p| (0..24).filter(|h| p & (1 << h) != 0).collect::<Vec<u32>>()),
    });
    // (the connection string without its password: stress.runs is readable by the run's role)
    if let Some(target) = &config.target {
        parameters["target"] = target.shown();
    }
    // The runs of one series: its first step's run id names them (report_html charts them).
    if let Scenario::Series {
        kind,
        step,
        steps,
        first_run_id,
    } = req.scenario
    {
        parameters["series"] = serde_json::json!({
            "kind": kind, "first_run_id": first_run_id.unwrap_or(run_id),
            "step": step, "steps": steps,
        });
    }
    parameters
}

/// The highest ids of the trading dataset (load runs append after them).
#[derive(Default)]
struct DatasetIds {
    accounts: i64,
    orders: i64,
    trades: i64,
    audit: i64,
}

/// Trades need two accounts (22023 when the dataset has fewer).
fn check_accounts(function: &'static str, schema: &str, accounts: i64) {
    if accounts < 2 {
        invalid(
            function,
            format!("{schema}.accounts has {accounts} accounts; trades need at least 2"),
            "Generate the trading dataset first: SELECT * FROM stress.generate_dataset(orders => 100000);",
        );
    }
}

/// Check that `schema` holds the trading dataset, and read its highest ids.
fn dataset_ids(function: &'static str, schema: &str) -> DatasetIds {
    let max_id = |table: &str| -> i64 {
        let name = qualified(schema, table);
        let exists = spi_read::one::<bool>(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
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
        spi_read::one::<i64>(
            &format!("SELECT coalesce(pg_catalog.max(id), 0) FROM {name}"),
            &[],
        )
        .expect("reading the highest id")
        .unwrap_or(0)
    };
    let accounts = max_id("accounts");
    let (orders, trades, audit) = (max_id("orders"), max_id("trades"), max_id("audit_log"));
    if spi_read::one::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NULL",
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
    check_accounts(function, schema, accounts);
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

/// One row of `stress.deadlock_test`.
pub type DeadlockTestRow = (i64, i64, i64, i64, i64, AnyNumeric, AnyNumeric, bool);

/// The seed's deadlock test: `workers` workers transfer money back and forth between the first
/// `accounts` accounts, each debiting one account and then crediting the other, so transfers in
/// opposite directions deadlock. PostgreSQL detects each deadlock, the losing transfer is retried,
/// and the total of all balances must not change by a cent.
pub fn deadlock_test(
    call: &Call,
    workers: i32,
    duration: Interval,
    accounts: i32,
    pause: Interval,
    max_retries: Option<i32>,
) -> DeadlockTestRow {
    const F: &str = "deadlock_test";
    require_preload(F);
    let request = deadlock_test_request(workers, duration, accounts, pause, max_retries);
    let total_sql = format!(
        "SELECT coalesce(sum(balance), 0) FROM {}",
        qualified(&gucs::data_schema(), "accounts")
    );
    // (each total under a snapshot of its own, then committed: the call holds none while the
    // run goes on, and the second total sees every transfer whatever the isolation level)
    let total = || -> AnyNumeric {
        let sum = spi_read::latest::<AnyNumeric>(&total_sql, &[])
            .ok()
            .flatten()
            .unwrap_or_default();
        call.commit();
        sum
    };
    let available = spi_read::one::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
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
    let run_id = start_run(request, Some(call)).wait(call);
    let after = total();
    let figure = |expr: &str| result_figure(run_id, "transfer", expr) as i64;
    let conserved = before == after;
    (
        run_id,
        figure("calls"),
        figure("details->>'deadlocks'"),
        figure("details->>'retries'"),
        figure("details->>'failures'"),
        before,
        after,
        conserved,
    )
}

/// deadlock_test's run, checked: transfers only, between the first `accounts` accounts, each
/// holding its first lock for `pause` (22023 for too few workers or accounts, or a pause out of
/// range).
fn deadlock_test_request(
    workers: i32,
    duration: Interval,
    accounts: i32,
    pause: Interval,
    max_retries: Option<i32>,
) -> LoadRequest {
    const F: &str = "deadlock_test";
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
    let seconds =
        crate::args::duration_seconds(F, duration, "Pass an interval such as '5 seconds'.");
    let pause = crate::args::interval_seconds(pause);
    if !(0.0..=10.0).contains(&pause) {
        invalid(
            F,
            format!("pause must be between 0 and 10 seconds, got {pause} s"),
            "It is how long a transfer holds its first lock before taking the second, e.g. '10 milliseconds'.",
        );
    }
    let k = crate::args::worker_count(F, Some(workers)).or_raise();
    let max_retries = retries(F, max_retries);
    let mut weights = [0.0; ops::OPS.len()];
    weights[ops::Op::Transfer.index()] = 1.0;
    LoadRequest::new(seconds, k, Workload::builtin(weights, max_retries))
        .scenario(Scenario::DeadlockTest)
        .hot_transfers(accounts as i64, pause)
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
                    "See docs/load.md, \"Load runs\", for the operations.",
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
    spi_read::latest::<f64>(
        &format!(
            "SELECT coalesce((SELECT ({expr})::float8 FROM stress.results WHERE run_id = $1 AND name = $2), 0)"
        ),
        &[run_id.into(), name.into()],
    )
    .expect("reading a run's figures")
    .unwrap_or(0.0)
}

/// The seed's production simulation: a trading day compressed into `duration`, orders and trades
/// arriving (open model) at `orders_per_second` and `trades_per_second` in an ordinary hour, four
/// times that in `peak_hours`, a quarter of it at night (hours 0–5). The run, checked, to start.
pub fn simulate_trading_day(
    duration: Interval,
    peak_hours: Vec<Option<i32>>,
    orders_per_second: f64,
    trades_per_second: f64,
    workers: i32,
) -> LoadRequest {
    const F: &str = "simulate_trading_day";
    require_preload(F);
    let seconds = crate::args::duration_seconds(
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
    let k = crate::args::worker_count(F, Some(workers)).or_raise();
    let total = orders_per_second + trades_per_second;
    check_rate(
        F,
        "4 × (orders_per_second + trades_per_second), the peak rate,",
        total * 4.0,
        k,
    )
    .or_raise();
    let mut weights = [0.0; ops::OPS.len()];
    weights[ops::Op::PlaceOrder.index()] = orders_per_second / total;
    weights[ops::Op::ExecuteTrade.index()] = trades_per_second / total;
    LoadRequest::new(seconds, k, Workload::builtin(weights, retries(F, None)))
        // the peak rate: a day's profile keeps each arrival with probability weight / 4
        .rate(Some(total * 4.0))
        .scenario(Scenario::TradingDay)
        .day_peaks(peaks)
}
