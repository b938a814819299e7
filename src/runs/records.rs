//! The one writer of the `stress.*` tables.
//!
//! The tables belong to the extension's owner (a superuser: pg_stress is not a trusted extension);
//! PUBLIC may only read them, and row-level security shows each role its own records (SECURITY.md).
//! Every write goes through [`as_owner`], which does what PostgreSQL does for a SECURITY DEFINER
//! function with `SET search_path = pg_catalog, pg_temp`, and a little more:
//! - the search_path is pinned for the duration, in a GUC nest level of its own, so no schema or
//!   temp object of the caller's can capture a name (every name below is qualified anyway);
//! - the user id is the owner's with `SECURITY_RESTRICTED_OPERATION`, as VACUUM and REFRESH
//!   MATERIALIZED VIEW run a table owner's code: no SET ROLE, no temp objects, no cursors survive it;
//! - only fixed SQL runs, with every value a bound parameter; who a record belongs to (`run_as`) is
//!   the caller's user id, read here, never an argument.
//!
//! The SQL-language parts of pg_stress (archive, health check, state captures, retention) record
//! through the `stress.record_*` functions at the end of this file, which apply the same rules.

use crate::metrics::histogram::Latency;
use pgrx::JsonB;
use pgrx::PgTryBuilder;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Table `stress.<name>`, from the catalog (no SQL, no search_path); InvalidOid when there is none
/// (the extension dropped, or its SQL older than the table). In a transaction.
fn stress_table(name: &std::ffi::CStr) -> pg_sys::Oid {
    // SAFETY: catalog lookups by name, in a transaction; missing_ok, so nothing is raised.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"stress".as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        pg_sys::get_relname_relid(name.as_ptr(), namespace)
    }
}

/// `stress.runs` (see [`stress_table`]).
fn runs_table() -> pg_sys::Oid {
    stress_table(c"runs")
}

/// Whether the extension's tables are there (a DROP EXTENSION during a run removes them).
pub fn installed() -> bool {
    runs_table() != pg_sys::InvalidOid
}

/// The role that owns the `stress` tables, read from the catalog (no SQL, no search_path).
pub fn owner() -> pg_sys::Oid {
    let runs = runs_table();
    if runs == pg_sys::InvalidOid {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "pg_stress: stress.runs does not exist (was the extension dropped?)",
            "pg_stress",
        )
        .set_hint("CREATE EXTENSION pg_stress, or ALTER EXTENSION pg_stress UPDATE.")
        .report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return");
    }
    // SAFETY: a syscache lookup of a relation that exists, released below.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(runs),
        );
        if tuple.is_null() {
            pgrx::error!("pg_stress: cache lookup failed for stress.runs");
        }
        let form = pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_class;
        let owner = (*form).relowner;
        pg_sys::ReleaseSysCache(tuple);
        owner
    }
}

/// The role a record made now belongs to: the current user (after SET ROLE and SECURITY DEFINER).
pub fn caller() -> pg_sys::Oid {
    unsafe { pg_sys::GetUserId() }
}

/// Run `f` as the owner of the `stress` tables, with `search_path = pg_catalog, pg_temp` and in a
/// security-restricted operation; everything is restored when `f` returns or raises.
pub fn as_owner<T>(f: impl FnOnce() -> T) -> T {
    let owner = owner();
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    let nest_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pg_sys::SetUserIdAndSecContext(
            owner,
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        level
    };
    let restore = move |committed: bool| unsafe {
        pg_sys::AtEOXact_GUC(committed, nest_level);
        pg_sys::SetUserIdAndSecContext(user, context);
    };
    PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        let value = f();
        restore(true);
        value
    }))
    .catch_others(|error| {
        restore(false);
        error.rethrow()
    })
    .execute()
}

/// Whether `stress.<table>` has `column`: a database whose SQL is older than this library (before
/// ALTER EXTENSION pg_stress UPDATE) lacks the newer ones, and a statement naming them would fail.
/// From the catalog caches: no SQL, no SPI round trip per row written.
fn has_column(table: &std::ffi::CStr, column: &std::ffi::CStr) -> bool {
    let relation = stress_table(table);
    // SAFETY: a syscache lookup by relation and name, in a transaction; a missing column is
    // InvalidAttrNumber, not an error.
    relation != pg_sys::InvalidOid
        && unsafe { pg_sys::get_attnum(relation, column.as_ptr()) }
            != pg_sys::InvalidAttrNumber as i16
}

/// A new run id from `stress.runs_id_seq` (which only the owner may use).
pub fn new_run_id() -> i64 {
    // (read-only SPI: nextval asks for a transaction id only when it writes the sequence's WAL,
    // once in 32 values; pgrx's Spi::get_one would take one every time)
    as_owner(|| {
        crate::postgres::spi_read::one::<i64>(
            "SELECT pg_catalog.nextval('stress.runs_id_seq'::pg_catalog.regclass)",
            &[],
        )
        .expect("allocating a run id")
        .expect("nextval gives a value")
    })
}

/// One measured thing of an in-transaction call (a generated table, a checksum).
#[derive(Debug, Default, Clone)]
pub struct Measurement {
    pub name: String,
    pub rows: Option<i64>,
    pub seconds: f64,
    pub details: serde_json::Value,
}

impl Measurement {
    pub fn rows_per_sec(&self) -> Option<f64> {
        self.rows.map(|r| {
            if self.seconds > 0.0 {
                r as f64 / self.seconds
            } else {
                0.0
            }
        })
    }
}

/// Record a finished in-transaction call of the caller's: one `stress.runs` row (status
/// completed) and a `stress.results` row per measurement, in one statement. Returns the run id.
///
/// Calls that run inside the caller's transaction record themselves once, at the end, in that same
/// transaction: if the call fails or is cancelled, its rows roll back with the data, so the record
/// never claims work that did not happen.
pub fn completed_call(
    kind: &str,
    parameters: serde_json::Value,
    started_at: TimestampWithTimeZone,
    measurements: &[Measurement],
) -> i64 {
    let run_as = caller();
    // (read in this session, as the caller: the session the call ran in)
    let environment = JsonB(crate::compare::environment::capture(
        parameters.get("schema").and_then(|s| s.as_str()),
        &[],
    ));
    let names: Vec<String> = measurements.iter().map(|m| m.name.clone()).collect();
    let rows: Vec<Option<i64>> = measurements.iter().map(|m| m.rows).collect();
    let seconds: Vec<f64> = measurements.iter().map(|m| m.seconds).collect();
    let rates: Vec<Option<f64>> = measurements.iter().map(Measurement::rows_per_sec).collect();
    let details: Vec<JsonB> = measurements
        .iter()
        .map(|m| JsonB(m.details.clone()))
        .collect();
    as_owner(|| {
        // (the environment in the same row, unless stress.runs is older than 0.8.0's)
        let (environment_column, environment_value) = if has_column(c"runs", c"environment") {
            (", environment", ", $10")
        } else {
            ("", "")
        };
        let mut args = vec![
            kind.into(),
            JsonB(parameters).into(),
            started_at.into(),
            names.into(),
            rows.into(),
            seconds.into(),
            rates.into(),
            details.into(),
            run_as.into(),
        ];
        if !environment_column.is_empty() {
            args.push(environment.into());
        }
        Spi::get_one_with_args::<i64>(
            &format!("WITH run AS (
                 INSERT INTO stress.runs (kind, parameters, status, started_at, finished_at, run_as{environment_column})
                 VALUES ($1, $2, 'completed', $3, pg_catalog.clock_timestamp(), pg_catalog.pg_get_userbyid($9){environment_value})
                 RETURNING id),
             measured AS (
                 INSERT INTO stress.results (run_id, name, rows, seconds, rows_per_sec, details)
                 SELECT run.id, m.name, m.rows, m.seconds, m.rate, m.details
                 FROM run, ROWS FROM (pg_catalog.unnest($4::pg_catalog.text[]),
                                      pg_catalog.unnest($5::pg_catalog.int8[]),
                                      pg_catalog.unnest($6::pg_catalog.float8[]),
                                      pg_catalog.unnest($7::pg_catalog.float8[]),
                                      pg_catalog.unnest($8::pg_catalog.jsonb[]))
                      AS m(name, rows, seconds, rate, details))
             SELECT id FROM run"),
            &args,
        )
        .expect("recording the run in stress.runs")
        .expect("INSERT … RETURNING gives the run id")
    })
}

/// A run's row in `stress.runs`: `id` from [`new_run_id`], belonging to `run_as`. With `finished`
/// the run is closed (its status, error and peak connections set); `ON CONFLICT` makes registering
/// and closing the same run from several workers idempotent.
pub struct RunRow<'a> {
    pub id: i64,
    pub kind: &'a str,
    pub parameters: serde_json::Value,
    pub status: &'a str,
    pub started_at: pg_sys::TimestampTz,
    pub run_as: pg_sys::Oid,
    pub error: Option<&'a str>,
    pub peak_connections: i64,
}

fn timestamp(t: pg_sys::TimestampTz) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(t).expect("a valid time")
}

/// What the series that ran step `run_id` made of it (ok, the reason it was not, whether it is the
/// series' answer, its figures): kept in the run's parameters as `series.verdict`, which the
/// `stress.series_steps` view reads.
pub fn mark_series_step(run_id: i64, verdict: serde_json::Value) {
    as_owner(|| {
        Spi::run_with_args(
            "UPDATE stress.runs
             SET parameters = pg_catalog.jsonb_set(parameters, '{series,verdict}', $2)
             WHERE id = $1 AND parameters ? 'series'",
            &[run_id.into(), JsonB(verdict).into()],
        )
        .expect("recording a series step's verdict");
    })
}

/// Insert the run as `running` (nothing if a worker already did).
pub fn register_run(run: &RunRow) {
    as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO stress.runs (id, kind, parameters, status, started_at, run_as)
             VALUES ($1, $5, $2, 'running', $3, pg_catalog.pg_get_userbyid($4))
             ON CONFLICT (id) DO NOTHING",
            &[
                run.id.into(),
                JsonB(run.parameters.clone()).into(),
                timestamp(run.started_at).into(),
                run.run_as.into(),
                run.kind.into(),
            ],
        )
        .expect("registering the run");
    })
}

/// What run `run_id` ran on (`stress.runs.environment`), as its first worker read it.
pub fn record_environment(run_id: i64, environment: serde_json::Value) {
    as_owner(|| {
        if !has_column(c"runs", c"environment") {
            return;
        }
        Spi::run_with_args(
            "UPDATE stress.runs SET environment = $2 WHERE id OPERATOR(pg_catalog.=) $1",
            &[run_id.into(), JsonB(environment).into()],
        )
        .expect("recording the run's environment");
    })
}

/// Close the run with `run.status` (inserting its row if no worker wrote one).
pub fn close_run(run: &RunRow) {
    as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO stress.runs (id, kind, parameters, status, started_at, finished_at, run_as, error,
                                      peak_connections)
             VALUES ($1, $8, $2, $3, $4, pg_catalog.clock_timestamp(), pg_catalog.pg_get_userbyid($5), $6,
                     NULLIF($7, 0::pg_catalog.int8))
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, finished_at = EXCLUDED.finished_at,
                                             error = EXCLUDED.error, peak_connections = EXCLUDED.peak_connections",
            &[
                run.id.into(),
                JsonB(run.parameters.clone()).into(),
                run.status.into(),
                timestamp(run.started_at).into(),
                run.run_as.into(),
                run.error.into(),
                run.peak_connections.into(),
                run.kind.into(),
            ],
        )
        .expect("closing the run");
    })
}

/// A run whose workers are all gone without closing it: failed with `why` unless something closed
/// it already.
pub fn close_abandoned_run(run: &RunRow) {
    as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO stress.runs (id, kind, status, started_at, finished_at, error, run_as)
             VALUES ($1, $3, 'failed', $4, pg_catalog.clock_timestamp(), $2, pg_catalog.pg_get_userbyid($5))
             ON CONFLICT (id) DO UPDATE SET status = 'failed', finished_at = pg_catalog.clock_timestamp(), error = $2
             WHERE stress.runs.status OPERATOR(pg_catalog.=) 'running'",
            &[
                run.id.into(),
                run.error.into(),
                run.kind.into(),
                timestamp(run.started_at).into(),
                run.run_as.into(),
            ],
        )
        .expect("closing an abandoned run")
    });
}

/// The load runs and benchmarks of this database recorded as `running`, under a new snapshot.
pub fn running_runs() -> Vec<i64> {
    // (as the owner: the caller's row-level security would hide other roles' runs)
    as_owner(|| {
        crate::postgres::spi_read::latest::<Vec<i64>>(
            "SELECT coalesce(pg_catalog.array_agg(id), '{}') FROM stress.runs
         WHERE kind OPERATOR(pg_catalog.=) ANY (ARRAY['run_load', 'benchmark'])
           AND status OPERATOR(pg_catalog.=) 'running'",
            &[],
        )
        .expect("listing running runs")
        .unwrap_or_default()
    })
}

/// Mark runs `ids`, still `running` but held by no process of this server (it restarted, or
/// crashed and reinitialized, while they ran), `interrupted`: ended when their last per-second
/// sample was taken. Returns how many.
pub fn mark_interrupted_runs(ids: &[i64]) -> usize {
    if ids.is_empty() {
        return 0;
    }
    as_owner(|| {
        Spi::connect_mut(|client| {
            client
                .update(
                    "UPDATE stress.runs r
                     SET status = 'interrupted',
                         finished_at = greatest(r.started_at,
                                                (SELECT pg_catalog.max(s.ts) FROM stress.samples s
                                                 WHERE s.run_id OPERATOR(pg_catalog.=) r.id)),
                         error = 'the server stopped (restart or crash) while the run was going on'
                     WHERE r.id OPERATOR(pg_catalog.=) ANY ($1)
                       AND r.status OPERATOR(pg_catalog.=) 'running'",
                    None,
                    &[ids.into()],
                )
                .map(|t| t.len())
        })
        .expect("marking interrupted runs")
    })
}

/// One `stress.results` row of timed calls (a load run's operation, a benchmarked query): counts,
/// successful calls per second, latency percentiles, and the histogram itself (HdrHistogram V2:
/// what `stress.compare_runs` reads a percentile's confidence interval from).
pub fn latency_result(
    run_id: i64,
    name: &str,
    calls: i64,
    errors: i64,
    seconds: f64,
    histogram: &Latency,
    details: serde_json::Value,
) {
    let latency = &histogram.summary();
    let serialized = (latency.count > 0).then(|| histogram.serialize());
    // Statistics over no sample are NULL, not 0; so is a rate over no time.
    let measured = |v: f64| (latency.count > 0).then_some(v);
    let mut details = details;
    if let (Some(distribution), Some(map)) = (latency.distribution_json(), details.as_object_mut())
    {
        map.insert("percentiles".into(), distribution);
    }
    as_owner(|| {
        // (without the histogram into a stress.results older than 0.8.0's)
        let (column, value) = if has_column(c"results", c"histogram") {
            (", histogram", ", $15")
        } else {
            ("", "")
        };
        let mut args = vec![
            run_id.into(),
            name.into(),
            calls.into(),
            errors.into(),
            seconds.into(),
            (seconds > 0.0)
                .then(|| (calls - errors) as f64 / seconds)
                .into(),
            measured(latency.avg_ms).into(),
            measured(latency.stddev_ms).into(),
            measured(latency.p50_ms).into(),
            measured(latency.p95_ms).into(),
            measured(latency.p99_ms).into(),
            measured(latency.p999_ms).into(),
            measured(latency.max_ms).into(),
            JsonB(details).into(),
        ];
        if !column.is_empty() {
            args.push(serialized.into());
        }
        Spi::run_with_args(
            &format!(
                "INSERT INTO stress.results (run_id, name, calls, errors, seconds, ops_per_sec, avg_ms, stddev_ms,
                                             p50_ms, p95_ms, p99_ms, p999_ms, max_ms, details{column})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14{value})"
            ),
            &args,
        )
        .expect("recording a result in stress.results");
    })
}

/// Slow executions of `query` into `stress.slow_queries` (`worker`: None for the caller).
pub fn slow_executions(
    run_id: i64,
    query: &str,
    worker: Option<i32>,
    durations_ms: Vec<f64>,
    times: Vec<TimestampWithTimeZone>,
    plan: Option<serde_json::Value>,
) {
    if durations_ms.is_empty() {
        return;
    }
    as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO stress.slow_queries (run_id, query, duration_ms, executed_at, worker, plan)
             SELECT $1, $2, e.d, e.t, $5, $6
             FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.float8[]),
                             pg_catalog.unnest($4::pg_catalog.timestamptz[])) AS e(d, t)",
            &[
                run_id.into(),
                query.into(),
                durations_ms.into(),
                times.into(),
                worker.into(),
                plan.map(JsonB).into(),
            ],
        )
        .expect("logging slow executions");
    })
}

/// A deadlock (40P01) or serialization failure (40001) a run's operation met.
pub struct Conflict {
    pub at: pg_sys::TimestampTz,
    pub sqlstate: &'static str,
    pub operation: String,
    /// what the other processes the server named were running: the run's tasks, or None for a
    /// session that is not one of the run's workers
    pub others: Vec<Option<String>>,
    pub message: String,
    /// the server's DETAIL: the processes, the locks they waited for, the tuples
    pub detail: Option<String>,
}

/// A worker's conflicts into `stress.conflicts` in one statement (0.4.0 and later; nothing into an
/// older schema).
pub fn conflicts(run_id: i64, worker: u32, pid: i32, conflicts: &[Conflict]) {
    if conflicts.is_empty() {
        return;
    }
    let rows: Vec<serde_json::Value> = conflicts
        .iter()
        .map(|c| {
            serde_json::json!({
                "at": c.at, "sqlstate": c.sqlstate, "operation": c.operation,
                "others": c.others, "message": c.message, "detail": c.detail,
            })
        })
        .collect();
    as_owner(|| {
        // (the statement names the table: asked first, or an older schema fails it at parse time)
        let exists =
            Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('stress.conflicts') IS NOT NULL")
                .expect("looking for stress.conflicts")
                .unwrap_or(false);
        if !exists {
            return;
        }
        Spi::run_with_args(
            "INSERT INTO stress.conflicts (run_id, at, sqlstate, worker, pid, operation, others, message, detail)
             SELECT $1, pg_catalog.to_timestamp((c->>'at')::pg_catalog.float8 OPERATOR(pg_catalog./) 1e6
                                                OPERATOR(pg_catalog.+) 946684800),
                    c->>'sqlstate', $2, $3, c->>'operation',
                    ARRAY(SELECT pg_catalog.jsonb_array_elements_text(c->'others')),
                    c->>'message', c->>'detail'
             FROM pg_catalog.jsonb_array_elements($4) c",
            &[
                run_id.into(),
                (worker as i32 + 1).into(),
                pid.into(),
                JsonB(serde_json::Value::Array(rows)).into(),
            ],
        )
        .expect("recording conflicts in stress.conflicts");
    })
}

/// One second (or so) of a run, as its sampler saw it.
pub struct Sample {
    pub run_id: i64,
    pub at: pg_sys::TimestampTz,
    pub elapsed_s: f64,
    pub ops: i64,
    pub errors: i64,
    /// None: stress.samples has no deadlocks column (older than 0.3.0)
    pub deadlocks: Option<i64>,
    pub ops_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub active_workers: i32,
}

/// One per-second row of `stress.samples`. Returns the database's connections now (counted in the
/// same statement), for the run's peak.
pub fn sample(s: &Sample) -> i64 {
    // (without `deadlocks` into a stress.samples older than 0.3.0's)
    macro_rules! insert_sample {
        ($columns:literal, $values:literal) => {
            concat!(
                "INSERT INTO stress.samples (run_id, ts, elapsed_s, ops, errors, ops_per_sec, p50_ms,
                                             p99_ms, active_workers, connections",
                $columns,
                ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, pg_catalog.count(*)",
                $values,
                " FROM pg_catalog.pg_stat_activity a
                  WHERE a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
                  RETURNING connections"
            )
        };
    }
    const WITH_DEADLOCKS: &str = insert_sample!(", deadlocks", ", $10");
    const WITHOUT: &str = insert_sample!("", "");
    let mut args = vec![
        s.run_id.into(),
        timestamp(s.at).into(),
        s.elapsed_s.into(),
        s.ops.into(),
        s.errors.into(),
        s.ops_per_sec.into(),
        s.p50_ms.into(),
        s.p99_ms.into(),
        s.active_workers.into(),
    ];
    let sql = match s.deadlocks {
        Some(deadlocks) => {
            args.push(deadlocks.into());
            WITH_DEADLOCKS
        }
        None => WITHOUT,
    };
    as_owner(|| {
        Spi::get_one_with_args::<i64>(sql, &args)
            .expect("saving a sample")
            .unwrap_or(0)
    })
}

/// The server's cumulative counters a timeline row is the difference of.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerCounters {
    pub wal_bytes: i64,
    pub blks_hit: i64,
    pub blks_read: i64,
    pub xact_commit: i64,
    pub xact_rollback: i64,
    pub checkpoints: i64,
}

// The server's counters now: the WAL position as bytes, this database's counters, the checkpoints so
// far. (A macro, so that both queries below are fixed strings, built with concat!.)
macro_rules! server_counters_sql {
    () => {
        "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), '0/0')::pg_catalog.int8 AS wal,
                d.blks_hit, d.blks_read, d.xact_commit, d.xact_rollback,
                (SELECT b.checkpoints_timed OPERATOR(pg_catalog.+) b.checkpoints_req
                 FROM pg_catalog.pg_stat_bgwriter b) AS checkpoints
         FROM pg_catalog.pg_stat_database d WHERE d.datid OPERATOR(pg_catalog.=) $1"
    };
}

/// The six counters in columns 1…6 of the current row, in [`ServerCounters`]' order.
fn counters_of(row: &pgrx::spi::SpiTupleTable) -> pgrx::spi::SpiResult<ServerCounters> {
    let n = |i| row.get::<i64>(i).map(Option::unwrap_or_default);
    Ok(ServerCounters {
        wal_bytes: n(1)?,
        blks_hit: n(2)?,
        blks_read: n(3)?,
        xact_commit: n(4)?,
        xact_rollback: n(5)?,
        checkpoints: n(6)?,
    })
}

/// The counters now (a run's first timeline row is the difference from these).
pub fn server_counters() -> ServerCounters {
    as_owner(|| {
        Spi::connect(|client| {
            let row = client
                .select(
                    server_counters_sql!(),
                    Some(1),
                    &[unsafe { pg_sys::MyDatabaseId }.into()],
                )?
                .first();
            counters_of(&row)
        })
        .expect("reading the server's counters")
    })
}

/// A run's timeline row, and (`$lock_waits`: the 0.4.0 statements, or "" for an older schema)
/// its lock waits into `stress.lock_waits`, from one read of the lock table, and each standby's
/// lag into `stress.replication_lag`. A waiting lock's
/// relation: its own (a relation or tuple lock); for a row wait (on the other transaction), that
/// of the tuple lock the waiter holds; or, following an update chain with no tuple lock held, the
/// tables both the waiter and the transaction it waits for are writing or locking rows of.
macro_rules! timeline_sql {
    ($lock_waits:literal) => {
        concat!(
            "WITH workers AS (
                 SELECT a.wait_event_type, a.wait_event FROM pg_catalog.pg_stat_activity a
                 WHERE a.pid OPERATOR(pg_catalog.=) ANY ($4)),
             -- (one read of the lock table, for a consistent picture: the workers' locks, and the
             -- granted ones of the sessions that may hold what they wait for)
             locks AS MATERIALIZED (
                 SELECT l.pid, l.locktype, l.mode, l.relation, l.transactionid, l.granted, l.waitstart
                 FROM pg_catalog.pg_locks l
                 WHERE l.pid OPERATOR(pg_catalog.=) ANY ($4)
                    OR (l.granted AND l.locktype OPERATOR(pg_catalog.=) ANY ('{relation,transactionid}'))),
             waiting AS (
                 SELECT l.*,
                        coalesce(
                            l.relation::pg_catalog.regclass::pg_catalog.text,
                            (SELECT t.relation::pg_catalog.regclass::pg_catalog.text FROM locks t
                             WHERE t.pid OPERATOR(pg_catalog.=) l.pid AND t.granted
                               AND t.locktype OPERATOR(pg_catalog.=) 'tuple' LIMIT 1),
                            (SELECT pg_catalog.string_agg(DISTINCT m.relation::pg_catalog.regclass::pg_catalog.text, ', ')
                             FROM locks m, locks h, locks o
                             WHERE l.locktype OPERATOR(pg_catalog.=) 'transactionid'
                               AND m.pid OPERATOR(pg_catalog.=) l.pid AND m.granted
                               AND m.locktype OPERATOR(pg_catalog.=) 'relation'
                               AND m.mode OPERATOR(pg_catalog.=) ANY ('{RowExclusiveLock,RowShareLock}')
                               AND h.locktype OPERATOR(pg_catalog.=) 'transactionid' AND h.granted
                               AND h.transactionid OPERATOR(pg_catalog.=) l.transactionid
                               AND o.pid OPERATOR(pg_catalog.=) h.pid AND o.granted
                               AND o.locktype OPERATOR(pg_catalog.=) 'relation'
                               AND o.relation OPERATOR(pg_catalog.=) m.relation
                               AND o.mode OPERATOR(pg_catalog.=) ANY ('{RowExclusiveLock,RowShareLock}')
                               AND (SELECT c.relkind FROM pg_catalog.pg_class c
                                    WHERE c.oid OPERATOR(pg_catalog.=) m.relation)
                                   OPERATOR(pg_catalog.=) ANY ('{r,p}'))) AS rel
                 FROM locks l
                 WHERE l.pid OPERATOR(pg_catalog.=) ANY ($4) AND NOT l.granted),
             longest AS (SELECT * FROM waiting w ORDER BY w.waitstart NULLS LAST LIMIT 1),
             counters AS (",
            server_counters_sql!(),
            ")",
            $lock_waits,
            "
             INSERT INTO stress.timeline
                 (run_id, ts, elapsed_s, wait_events, lock_waits, longest_lock_wait_ms, lock_relation,
                  wal_bytes, blks_hit, blks_read, xact_commit, xact_rollback, checkpoints,
                  autovacuum_workers)
             SELECT $2, $3, $5,
                    (SELECT coalesce(pg_catalog.jsonb_object_agg(e.event, e.n), '{}')
                     FROM (SELECT coalesce(w.wait_event_type OPERATOR(pg_catalog.||) ':'
                                           OPERATOR(pg_catalog.||) w.wait_event, 'CPU') AS event,
                                  pg_catalog.count(*) AS n
                           FROM workers w GROUP BY 1) e),
                    (SELECT pg_catalog.count(DISTINCT w.pid) FROM waiting w),
                    (SELECT pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()
                                                OPERATOR(pg_catalog.-) l.waitstart)
                            OPERATOR(pg_catalog.*) 1000 FROM longest l),
                    (SELECT l.rel FROM longest l),
                    c.wal OPERATOR(pg_catalog.-) $6, c.blks_hit OPERATOR(pg_catalog.-) $7,
                    c.blks_read OPERATOR(pg_catalog.-) $8, c.xact_commit OPERATOR(pg_catalog.-) $9,
                    c.xact_rollback OPERATOR(pg_catalog.-) $10, c.checkpoints OPERATOR(pg_catalog.-) $11,
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a
                     WHERE a.backend_type OPERATOR(pg_catalog.=) 'autovacuum worker')
             FROM counters c
             RETURNING wal_bytes OPERATOR(pg_catalog.+) $6, blks_hit OPERATOR(pg_catalog.+) $7,
                       blks_read OPERATOR(pg_catalog.+) $8, xact_commit OPERATOR(pg_catalog.+) $9,
                       xact_rollback OPERATOR(pg_catalog.+) $10, checkpoints OPERATOR(pg_catalog.+) $11"
        )
    };
}

/// One `stress.timeline` row: what the workers `pids` wait on now, their lock waits, and the
/// server's counters since `before`. With `lock_waits` (0.4.0's stress.lock_waits and
/// stress.replication_lag exist), in the same statement:
/// - each wait into stress.lock_waits: one row per wait (process and start), its `waited_ms`
///   growing while it is seen again;
/// - each standby's lag into stress.replication_lag: how far its written, flushed and replayed WAL
///   is behind this server's, in bytes and (as the standby reports it) in time. The lag columns of
///   pg_stat_replication are NULL for a caller without pg_read_all_stats.
///
/// Returns the counters now.
pub fn timeline(
    run_id: i64,
    at: pg_sys::TimestampTz,
    elapsed_s: f64,
    pids: &[i32],
    before: &ServerCounters,
    lock_waits: bool,
) -> ServerCounters {
    const WITH_LOCK_WAITS: &str = timeline_sql!(
        ",
             recorded AS (
                 INSERT INTO stress.lock_waits AS w
                     (run_id, pid, wait_started, last_seen, waited_ms, locktype, mode, relation)
                 SELECT $2, l.pid, l.waitstart, pg_catalog.clock_timestamp(),
                        pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) l.waitstart)
                            OPERATOR(pg_catalog.*) 1000,
                        l.locktype, l.mode, l.rel
                 FROM waiting l WHERE l.waitstart IS NOT NULL
                 ON CONFLICT (run_id, pid, wait_started) DO UPDATE
                     SET last_seen = excluded.last_seen, waited_ms = excluded.waited_ms),
             lagged AS (
                 INSERT INTO stress.replication_lag
                     (run_id, ts, elapsed_s, standby, state, write_lag_bytes, flush_lag_bytes,
                      replay_lag_bytes, write_lag_ms, flush_lag_ms, replay_lag_ms)
                 SELECT $2, $3, $5, coalesce(r.application_name, r.pid::pg_catalog.text), r.state,
                        pg_catalog.pg_wal_lsn_diff(w.lsn, r.write_lsn)::pg_catalog.int8,
                        pg_catalog.pg_wal_lsn_diff(w.lsn, r.flush_lsn)::pg_catalog.int8,
                        pg_catalog.pg_wal_lsn_diff(w.lsn, r.replay_lsn)::pg_catalog.int8,
                        pg_catalog.date_part('epoch', r.write_lag) OPERATOR(pg_catalog.*) 1000,
                        pg_catalog.date_part('epoch', r.flush_lag) OPERATOR(pg_catalog.*) 1000,
                        pg_catalog.date_part('epoch', r.replay_lag) OPERATOR(pg_catalog.*) 1000
                 FROM pg_catalog.pg_stat_replication r,
                      (SELECT pg_catalog.pg_current_wal_lsn() AS lsn) w
                 WHERE NOT pg_catalog.pg_is_in_recovery())"
    );
    const WITHOUT: &str = timeline_sql!("");
    as_owner(|| {
        Spi::connect_mut(|client| {
            let row = client
                .update(
                    if lock_waits { WITH_LOCK_WAITS } else { WITHOUT },
                    None,
                    &[
                        unsafe { pg_sys::MyDatabaseId }.into(),
                        run_id.into(),
                        timestamp(at).into(),
                        pids.to_vec().into(),
                        elapsed_s.into(),
                        before.wal_bytes.into(),
                        before.blks_hit.into(),
                        before.blks_read.into(),
                        before.xact_commit.into(),
                        before.xact_rollback.into(),
                        before.checkpoints.into(),
                    ],
                )?
                .first();
            counters_of(&row)
        })
        .expect("saving a timeline row")
    })
}

/// What one worker measured for one task (an operation, a transaction, a query).
#[derive(Default, Clone)]
pub struct TaskStats {
    pub calls: i64,
    pub successes: i64,
    pub failures: i64,
    pub retries: i64,
    pub deadlocks: i64,
    pub serialization_failures: i64,
    pub latency: Latency,
    /// schedule lag of the open model: intended start to actual start
    pub lag: Latency,
    /// time spent in the task's transactions (for the connection efficiency)
    pub busy_us: i64,
    pub first_error: Option<String>,
}

impl TaskStats {
    /// Add another worker's (or task's) figures to these.
    pub fn add(&mut self, other: &TaskStats) {
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

/// What one worker measured for one task, as it is kept until the run's last worker merges every
/// worker's rows (histograms in HdrHistogram's V2 format).
#[derive(Default, Clone)]
pub struct WorkerResult {
    pub operation: String,
    pub stats: TaskStats,
    pub stop_reason: Option<String>,
}

/// A worker's results, and the window its loop ran in.
pub fn save_worker_results(
    run_id: i64,
    worker: i32,
    window: (pg_sys::TimestampTz, pg_sys::TimestampTz),
    results: &[WorkerResult],
) {
    as_owner(|| {
        for r in results {
            let s = &r.stats;
            Spi::run_with_args(
                "INSERT INTO stress.load_worker_results
                     (run_id, worker, operation, calls, successes, failures, retries, deadlocks,
                      serialization_failures, latency, lag, first_error, stop_reason, loop_started,
                      loop_ended, busy_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                &[
                    run_id.into(),
                    worker.into(),
                    r.operation.as_str().into(),
                    s.calls.into(),
                    s.successes.into(),
                    s.failures.into(),
                    s.retries.into(),
                    s.deadlocks.into(),
                    s.serialization_failures.into(),
                    s.latency.serialize().into(),
                    s.lag.serialize().into(),
                    s.first_error.clone().into(),
                    r.stop_reason.clone().into(),
                    timestamp(window.0).into(),
                    timestamp(window.1).into(),
                    s.busy_us.into(),
                ],
            )
            .expect("saving a worker's results");
        }
    })
}

/// Every worker's results of a run, in worker order; the run's seconds (first loop start to last
/// loop end) and the workers' connected time in µs.
pub struct WorkerResults {
    pub rows: Vec<WorkerResult>,
    pub seconds: f64,
    pub connected_us: f64,
}

/// Read (and delete) what the workers of `run_id` saved.
pub fn take_worker_results(run_id: i64) -> WorkerResults {
    as_owner(|| {
        let rows = Spi::connect(|client| {
            client
                .select(
                    "SELECT operation, calls, successes, failures, retries, deadlocks, serialization_failures,
                            latency, lag, first_error, stop_reason, busy_us
                     FROM stress.load_worker_results WHERE run_id OPERATOR(pg_catalog.=) $1
                     ORDER BY worker, operation",
                    None,
                    &[run_id.into()],
                )
                .map(|rows| {
                    rows.map(|r| {
                        let histogram = |i| {
                            let bytes = r.get::<Vec<u8>>(i).ok().flatten().unwrap_or_default();
                            Latency::deserialize(&bytes).unwrap_or_default()
                        };
                        WorkerResult {
                            operation: r.get(1).ok().flatten().unwrap_or_default(),
                            stats: TaskStats {
                                calls: r.get(2).ok().flatten().unwrap_or(0),
                                successes: r.get(3).ok().flatten().unwrap_or(0),
                                failures: r.get(4).ok().flatten().unwrap_or(0),
                                retries: r.get(5).ok().flatten().unwrap_or(0),
                                deadlocks: r.get(6).ok().flatten().unwrap_or(0),
                                serialization_failures: r.get(7).ok().flatten().unwrap_or(0),
                                latency: histogram(8),
                                lag: histogram(9),
                                first_error: r.get(10).ok().flatten(),
                                busy_us: r.get(12).ok().flatten().unwrap_or(0),
                            },
                            stop_reason: r.get(11).ok().flatten(),
                        }
                    })
                    .collect::<Vec<_>>()
                })
        })
        .expect("reading the workers' results");
        let seconds = Spi::get_one_with_args::<f64>(
            "SELECT pg_catalog.date_part('epoch', pg_catalog.max(loop_ended) OPERATOR(pg_catalog.-) pg_catalog.min(loop_started))
             FROM stress.load_worker_results WHERE run_id OPERATOR(pg_catalog.=) $1",
            &[run_id.into()],
        )
        .expect("reading the run's window")
        .unwrap_or(0.0)
        .max(1e-6);
        let connected_us = Spi::get_one_with_args::<f64>(
            "SELECT pg_catalog.sum(pg_catalog.date_part('epoch', w.loop_ended OPERATOR(pg_catalog.-) w.loop_started)
                                   OPERATOR(pg_catalog.*) 1e6::pg_catalog.float8)
             FROM (SELECT DISTINCT worker, loop_started, loop_ended FROM stress.load_worker_results
                   WHERE run_id OPERATOR(pg_catalog.=) $1) w",
            &[run_id.into()],
        )
        .expect("reading the workers' windows")
        .unwrap_or(0.0);
        Spi::run_with_args(
            "DELETE FROM stress.load_worker_results WHERE run_id OPERATOR(pg_catalog.=) $1",
            &[run_id.into()],
        )
        .expect("clearing the workers' results");
        WorkerResults {
            rows,
            seconds,
            connected_us,
        }
    })
}
