//! Load runs and the scenarios built on them, and their report.

use crate::postgres::json_arg::JsonArg;
use crate::postgres::procedure::{Call, value};
use crate::procedure;
use pgrx::JsonB;
use pgrx::prelude::*;

/// Starts a load run and returns its id at once (see `stress.wait`, `stress.cancel`). 0.5.0's
/// waiting form (`wait => true`, the default) is refused with a hint: a SELECT that waits holds a
/// snapshot for the whole run; `CALL stress.run_load_proc(…)` waits without one.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn run_load(
    duration: Interval,
    workers: default!(i32, 1),
    rate: default!(Option<f64>, "NULL"),
    mix: default!(Option<JsonArg>, "NULL"),
    isolation: default!(String, "'read committed'"),
    max_retries: default!(Option<i32>, "NULL"),
    wait: default!(bool, true),
    seed: default!(Option<i64>, "NULL"),
    transactions: default!(Option<JsonArg>, "NULL"),
) -> i64 {
    crate::load::run_load(
        duration,
        workers,
        rate,
        mix,
        isolation,
        max_retries,
        wait,
        seed,
        transactions,
    )
}

/// Starts the seed's trading day (see the procedure below) and returns its run id at once.
#[pg_extern(volatile, parallel_unsafe)]
fn simulate_trading_day(
    duration: Interval,
    peak_hours: default!(Vec<Option<i32>>, "'{9,10,14,15}'"),
    orders_per_second: default!(f64, 100.0),
    trades_per_second: default!(f64, 50.0),
    workers: default!(i32, 4),
    wait: default!(bool, true),
) -> i64 {
    if wait {
        crate::load::refuse_waiting_select("simulate_trading_day", "simulate_trading_day_proc");
    }
    let req = crate::load::simulate_trading_day(
        duration,
        peak_hours,
        orders_per_second,
        trades_per_second,
        workers,
    );
    crate::load::start_run(req, None).run_id
}

/// The hint of a procedure called where it cannot commit.
const IN_BLOCK: &str = "Run it on its own: not inside BEGIN ... COMMIT, not as one of several statements sent in one query string, not from a function. Inside a transaction, SELECT stress.run_load(..., wait => false) starts a single run and returns its id at once.";

/// A load run's headline figures, as the procedures' row.
fn run_row(call: Call, run_id: i64) -> pg_sys::Datum {
    let s = crate::load::RunSummary::of(run_id);
    call.row(vec![
        value(run_id),
        value(s.status),
        value(s.operations),
        value(s.ops_per_sec),
        value(s.p50_ms),
        value(s.p99_ms),
        value(s.errors),
        value(s.deadlocks),
    ])
}

// CALL stress.run_load_proc(duration, workers, rate, mix, isolation, max_retries, seed, transactions)
procedure!(
    pg_stress_run_load_proc,
    pg_finfo_pg_stress_run_load_proc,
    "run_load_proc",
    IN_BLOCK,
    |call| {
        const F: &str = "run_load";
        let run_id = crate::load::run_load_proc(
            &call,
            call.required(F, 0, "duration"),
            call.required(F, 1, "workers"),
            call.arg(2),
            call.arg(3),
            call.required(F, 4, "isolation"),
            call.arg(5),
            call.arg(6),
            call.arg(7),
        );
        run_row(call, run_id)
    }
);

// CALL stress.simulate_trading_day_proc(duration, peak_hours, orders_per_second, trades_per_second, workers)
procedure!(
    pg_stress_simulate_trading_day_proc,
    pg_finfo_pg_stress_simulate_trading_day_proc,
    "simulate_trading_day_proc",
    IN_BLOCK,
    |call| {
        const F: &str = "simulate_trading_day";
        let req = crate::load::simulate_trading_day(
            call.required(F, 0, "duration"),
            call.required(F, 1, "peak_hours"),
            call.required(F, 2, "orders_per_second"),
            call.required(F, 3, "trades_per_second"),
            call.required(F, 4, "workers"),
        );
        let run_id = crate::load::start_run(req, Some(&call)).wait(&call);
        run_row(call, run_id)
    }
);

// CALL stress.deadlock_test(workers, duration, accounts, pause, max_retries)
procedure!(
    pg_stress_deadlock_test,
    pg_finfo_pg_stress_deadlock_test,
    "deadlock_test",
    IN_BLOCK,
    |call| {
        const F: &str = "deadlock_test";
        let (run_id, transfers, deadlocks, retries, failures, before, after, conserved) =
            crate::load::deadlock_test(
                &call,
                call.required(F, 0, "workers"),
                call.required(F, 1, "duration"),
                call.required(F, 2, "accounts"),
                call.required(F, 3, "pause"),
                call.arg(4),
            );
        call.row(vec![
            value(run_id),
            value(transfers),
            value(deadlocks),
            value(retries),
            value(failures),
            value(before),
            value(after),
            value(conserved),
        ])
    }
);

// CALL stress.ramp(workers, step, max_error_rate, mix, max_p99_ms, max_throughput_drop)
procedure!(
    pg_stress_ramp,
    pg_finfo_pg_stress_ramp,
    "ramp",
    IN_BLOCK,
    |call| {
        const F: &str = "ramp";
        let a = crate::load::series::ramp(
            &call,
            call.required(F, 0, "workers"),
            call.required(F, 1, "step"),
            call.required(F, 2, "max_error_rate"),
            call.arg(3),
            call.arg(4),
            call.arg(5),
        );
        call.row(vec![
            value(a.series_id),
            value(a.steps),
            value(a.sustained_workers),
            value(a.best_ops_per_sec),
            value(a.degraded_workers),
            value(a.reason),
        ])
    }
);

// CALL stress.find_optimal_pool_size(min_workers, max_workers, target_p99_ms, step, mix, transactions, max_error_rate)
procedure!(
    pg_stress_find_optimal_pool_size,
    pg_finfo_pg_stress_find_optimal_pool_size,
    "find_optimal_pool_size",
    IN_BLOCK,
    |call| {
        const F: &str = "find_optimal_pool_size";
        let a = crate::load::series::find_optimal_pool_size(
            &call,
            call.required(F, 0, "min_workers"),
            call.required(F, 1, "max_workers"),
            call.required(F, 2, "target_p99_ms"),
            call.required(F, 3, "step"),
            call.arg(4),
            call.arg(5),
            call.required(F, 6, "max_error_rate"),
        );
        call.row(vec![
            value(a.series_id),
            value(a.steps),
            value(a.best_workers),
            value(a.ops_per_sec),
            value(a.p50_ms),
            value(a.p99_ms),
        ])
    }
);

// CALL stress.find_capacity(target_p99_ms, max_error_rate, workers, step, mix, transactions, start_rate, max_steps)
procedure!(
    pg_stress_find_capacity,
    pg_finfo_pg_stress_find_capacity,
    "find_capacity",
    IN_BLOCK,
    |call| {
        const F: &str = "find_capacity";
        let a = crate::load::series::find_capacity(
            &call,
            call.required(F, 0, "target_p99_ms"),
            call.required(F, 1, "max_error_rate"),
            call.arg(2),
            call.required(F, 3, "step"),
            call.arg(4),
            call.arg(5),
            call.required(F, 6, "start_rate"),
            call.required(F, 7, "max_steps"),
        );
        call.row(vec![
            value(a.series_id),
            value(a.steps),
            value(a.capacity),
            value(a.not_sustained),
            value(a.p99_ms),
        ])
    }
);

// The symbols that SQL of 0.3.0–0.5.0 names for what are procedures now (super::update_first).
#[pg_extern(sql = false)]
fn ramp() -> i64 {
    super::update_first("ramp")
}

#[pg_extern(sql = false)]
fn ramp_0_4_0() -> i64 {
    super::update_first("ramp")
}

#[pg_extern(sql = false)]
fn deadlock_test() -> i64 {
    super::update_first("deadlock_test")
}

#[pg_extern(sql = false)]
fn find_optimal_pool_size() -> i64 {
    super::update_first("find_optimal_pool_size")
}

#[pg_extern(sql = false)]
fn find_capacity() -> i64 {
    super::update_first("find_capacity")
}

/// `stress.report`: [`crate::load::report::report`].
#[pg_extern(stable, parallel_safe)]
fn report(run_id: default!(Option<i64>, "NULL")) -> JsonB {
    crate::load::report::report(run_id)
}

/// On the primary: record a run a hot standby ran (`stress.run_load` there sends it, through dblink
/// and `stress.record_conninfo`), as the calling role's, as the run's last worker would have here.
/// Returns the run id. Needs the workers' grant; not for calling by hand.
#[pg_extern(volatile, parallel_unsafe)]
fn record_standby_run(batch: &str) -> i64 {
    let batch = crate::runs::standby::parse(batch);
    match batch.kind.as_str() {
        "run_load" => crate::load::record_standby_run(batch),
        "benchmark" => crate::benchmark::record_standby_run(batch),
        _ => crate::runs::standby::unknown_kind(&batch),
    }
}

extension_sql!(
    r#"
CREATE PROCEDURE stress.run_load_proc(
    duration interval, workers integer DEFAULT 1, rate double precision DEFAULT NULL,
    mix jsonb DEFAULT NULL, isolation text DEFAULT 'read committed', max_retries integer DEFAULT NULL,
    seed bigint DEFAULT NULL, transactions jsonb DEFAULT NULL,
    INOUT run_id bigint DEFAULT NULL, INOUT status text DEFAULT NULL, INOUT operations bigint DEFAULT NULL,
    INOUT ops_per_sec double precision DEFAULT NULL, INOUT p50_ms double precision DEFAULT NULL,
    INOUT p99_ms double precision DEFAULT NULL, INOUT errors bigint DEFAULT NULL, INOUT deadlocks bigint DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_run_load_proc';
COMMENT ON PROCEDURE stress.run_load_proc IS 'A load run, waited for without holding a snapshot (it commits as it goes): its id and headline figures.';

CREATE PROCEDURE stress.simulate_trading_day_proc(
    duration interval, peak_hours integer[] DEFAULT '{9,10,14,15}', orders_per_second double precision DEFAULT 100,
    trades_per_second double precision DEFAULT 50, workers integer DEFAULT 4,
    INOUT run_id bigint DEFAULT NULL, INOUT status text DEFAULT NULL, INOUT operations bigint DEFAULT NULL,
    INOUT ops_per_sec double precision DEFAULT NULL, INOUT p50_ms double precision DEFAULT NULL,
    INOUT p99_ms double precision DEFAULT NULL, INOUT errors bigint DEFAULT NULL, INOUT deadlocks bigint DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_simulate_trading_day_proc';
COMMENT ON PROCEDURE stress.simulate_trading_day_proc IS 'The seed''s trading day, waited for without holding a snapshot.';

CREATE PROCEDURE stress.deadlock_test(
    workers integer DEFAULT 2, duration interval DEFAULT '5 seconds', accounts integer DEFAULT 2,
    pause interval DEFAULT '10 milliseconds', max_retries integer DEFAULT NULL,
    INOUT run_id bigint DEFAULT NULL, INOUT transfers bigint DEFAULT NULL, INOUT deadlocks bigint DEFAULT NULL,
    INOUT retries bigint DEFAULT NULL, INOUT failures bigint DEFAULT NULL, INOUT balance_before numeric DEFAULT NULL,
    INOUT balance_after numeric DEFAULT NULL, INOUT conserved boolean DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_deadlock_test';
COMMENT ON PROCEDURE stress.deadlock_test IS 'The seed''s deadlock test: transfers that deadlock, retried; the total of the balances must not change.';

CREATE PROCEDURE stress.ramp(
    workers integer[], step interval DEFAULT '30 seconds', max_error_rate double precision DEFAULT 0.01,
    mix jsonb DEFAULT NULL, max_p99_ms double precision DEFAULT NULL,
    max_throughput_drop double precision DEFAULT 0.25,
    INOUT series_id bigint DEFAULT NULL, INOUT steps integer DEFAULT NULL, INOUT sustained_workers integer DEFAULT NULL,
    INOUT best_ops_per_sec double precision DEFAULT NULL, INOUT degraded_workers integer DEFAULT NULL,
    INOUT reason text DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_ramp';
COMMENT ON PROCEDURE stress.ramp IS 'One load run per worker count until a step degrades; each step in stress.series_steps.';

CREATE PROCEDURE stress.find_optimal_pool_size(
    min_workers integer, max_workers integer, target_p99_ms double precision,
    step interval DEFAULT '10 seconds', mix jsonb DEFAULT NULL, transactions jsonb DEFAULT NULL,
    max_error_rate double precision DEFAULT 0.01,
    INOUT series_id bigint DEFAULT NULL, INOUT steps integer DEFAULT NULL, INOUT best_workers integer DEFAULT NULL,
    INOUT ops_per_sec double precision DEFAULT NULL, INOUT p50_ms double precision DEFAULT NULL,
    INOUT p99_ms double precision DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_find_optimal_pool_size';
COMMENT ON PROCEDURE stress.find_optimal_pool_size IS 'Closed-model runs at doubling worker counts: the most throughput whose p99 meets the target; each step in stress.series_steps.';

CREATE PROCEDURE stress.find_capacity(
    target_p99_ms double precision, max_error_rate double precision DEFAULT 0.01, workers integer DEFAULT NULL,
    step interval DEFAULT '10 seconds', mix jsonb DEFAULT NULL, transactions jsonb DEFAULT NULL,
    start_rate double precision DEFAULT 100, max_steps integer DEFAULT 12,
    INOUT series_id bigint DEFAULT NULL, INOUT steps integer DEFAULT NULL, INOUT capacity double precision DEFAULT NULL,
    INOUT not_sustained double precision DEFAULT NULL, INOUT p99_ms double precision DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_find_capacity';
COMMENT ON PROCEDURE stress.find_capacity IS 'The highest arrival rate the server sustains (open model); each step in stress.series_steps.';

-- Each step of a series (ramp, find_optimal_pool_size, find_capacity) and what the series made of
-- it, as the calling role may see them (stress.runs' row-level security applies: security_invoker).
CREATE VIEW stress.series_steps WITH (security_invoker = true) AS
SELECT (r.parameters #>> '{series,first_run_id}')::bigint AS series_id,
       r.parameters #>> '{series,kind}' AS kind,
       (r.parameters #>> '{series,step}')::integer AS step,
       r.id AS run_id,
       (r.parameters ->> 'workers')::integer AS workers,
       (r.parameters ->> 'rate')::double precision AS offered_rate,
       (v ->> 'ops_per_sec')::double precision AS ops_per_sec,
       (v ->> 'p50_ms')::double precision AS p50_ms,
       (v ->> 'p99_ms')::double precision AS p99_ms,
       (v ->> 'error_rate')::double precision AS error_rate,
       v ->> 'wait_events' AS wait_events,
       (v ->> 'ok')::boolean AS ok,
       v ->> 'reason' AS reason,
       (v ->> 'chosen')::boolean AS chosen,
       r.status
FROM stress.runs r
CROSS JOIN LATERAL (SELECT r.parameters #> '{series,verdict}' AS v) verdict
WHERE r.parameters ? 'series';
COMMENT ON VIEW stress.series_steps IS 'Each step of a ramp, find_optimal_pool_size or find_capacity: its run, figures, whether it was ok, why not, and whether it is the answer (chosen).';
GRANT SELECT ON stress.series_steps TO PUBLIC;
"#,
    name = "load_procedures",
    requires = ["schema"]
);

// Starting background workers needs a grant (SECURITY.md); the functions that do nothing else are
// not executable by PUBLIC, and every other path that starts workers checks EXECUTE on run_load.
extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION stress.run_load, stress.simulate_trading_day, stress.record_standby_run FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE stress.run_load_proc, stress.simulate_trading_day_proc, stress.ramp, stress.deadlock_test,
    stress.find_optimal_pool_size, stress.find_capacity FROM PUBLIC;
"#,
    name = "worker_grants",
    requires = [
        record_standby_run,
        run_load,
        simulate_trading_day,
        "load_procedures"
    ]
);
