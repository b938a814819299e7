//! `stress.runs`: a finished in-transaction call's row (with its results), and a run's row from
//! registration to closing (or to `interrupted`, after a restart).

use super::{as_owner, caller, has_column, timestamp};
use pgrx::JsonB;
use pgrx::pg_sys;
use pgrx::prelude::*;

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

/// A run combined from several servers' exported runs (`stress.combine_runs`): its row, from the
/// first driver's start to the last one's end (`started_at`, `finished_at`: their timestamps as
/// text), and its samples, the same second of every driver added up (`samples`: as
/// `stress.export_run` writes them). Its results are written with [`super::latency_result`].
/// Returns the run id. A timestamp that is not one is PostgreSQL's 22007; an infinite one 22023.
pub struct CombinedRun<'a> {
    pub parameters: serde_json::Value,
    pub status: &'a str,
    pub error: Option<&'a str>,
    pub started_at: Vec<String>,
    pub finished_at: Vec<String>,
    pub peak_connections: i64,
    pub samples: Vec<serde_json::Value>,
}

pub fn combined_run(run: CombinedRun) -> i64 {
    let run_as = caller();
    let finite = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.bool_and(pg_catalog.isfinite(t::pg_catalog.timestamptz))
         FROM pg_catalog.unnest($1::pg_catalog.text[] OPERATOR(pg_catalog.||) $2::pg_catalog.text[]) t",
        &[run.started_at.clone().into(), run.finished_at.clone().into()],
    )
    .expect("reading the runs' times");
    if finite != Some(true) {
        crate::error::StressError::invalid(
            "combine_runs",
            "a run's start or end is infinite",
            "Pass what stress.export_run(run_id) returned on each driver server.",
        )
        .raise();
    }
    let samples = JsonB(serde_json::Value::Array(run.samples));
    as_owner(|| {
        Spi::get_one_with_args::<i64>(
            "WITH run AS (
                 INSERT INTO stress.runs (kind, parameters, status, started_at, finished_at, run_as, error,
                                          peak_connections)
                 SELECT 'run_load', $1, $2,
                        (SELECT pg_catalog.min(t::pg_catalog.timestamptz) FROM pg_catalog.unnest($3::pg_catalog.text[]) t),
                        (SELECT pg_catalog.max(t::pg_catalog.timestamptz) FROM pg_catalog.unnest($4::pg_catalog.text[]) t),
                        pg_catalog.pg_get_userbyid($5), $6, NULLIF($7, 0::pg_catalog.int8)
                 RETURNING id, started_at),
             each AS (
                 SELECT pg_catalog.date_trunc('second', (s->>'ts')::pg_catalog.timestamptz) AS ts,
                        (s->>'ops')::pg_catalog.int8 AS ops, (s->>'errors')::pg_catalog.int8 AS errors,
                        (s->>'ops_per_sec')::pg_catalog.float8 AS ops_per_sec,
                        (s->>'p50_ms')::pg_catalog.float8 AS p50_ms, (s->>'p99_ms')::pg_catalog.float8 AS p99_ms,
                        (s->>'active_workers')::pg_catalog.int4 AS active_workers,
                        (s->>'connections')::pg_catalog.int8 AS connections,
                        (s->>'deadlocks')::pg_catalog.int8 AS deadlocks
                 FROM pg_catalog.jsonb_array_elements($8) s),
             sampled AS (
                 INSERT INTO stress.samples (run_id, ts, elapsed_s, ops, errors, ops_per_sec, p50_ms, p99_ms,
                                             active_workers, connections, deadlocks)
                 SELECT run.id, e.ts,
                        pg_catalog.date_part('epoch', e.ts OPERATOR(pg_catalog.-) run.started_at),
                        coalesce(pg_catalog.sum(e.ops), 0), coalesce(pg_catalog.sum(e.errors), 0),
                        coalesce(pg_catalog.sum(e.ops_per_sec), 0),
                        -- (a second's median across drivers is not theirs to give: their
                        -- calls-weighted mean, and the highest p99)
                        pg_catalog.sum(e.p50_ms OPERATOR(pg_catalog.*) e.ops)
                            OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(e.ops) FILTER (WHERE e.p50_ms IS NOT NULL), 0),
                        pg_catalog.max(e.p99_ms), coalesce(pg_catalog.sum(e.active_workers), 0),
                        coalesce(pg_catalog.sum(e.connections), 0), pg_catalog.sum(e.deadlocks)
                 FROM run, each e GROUP BY run.id, run.started_at, e.ts)
             SELECT id FROM run",
            &[
                JsonB(run.parameters).into(),
                run.status.into(),
                run.started_at.into(),
                run.finished_at.into(),
                run_as.into(),
                run.error.into(),
                run.peak_connections.into(),
                samples.into(),
            ],
        )
        .expect("recording the combined run")
        .expect("INSERT … RETURNING gives the run id")
    })
}
