//! `stress.report_html(run_id)`: a run as one self-contained HTML page with charts. The records are
//! read as the caller (row-level security: a run the caller may not see does not exist) in one
//! query; `page` draws them, with `svg`'s charts.

mod page;
mod svg;
mod table;

use crate::postgres::catalog::has_stress_table;
use pgrx::JsonB;

/// At most this many points per chart over time: a longer run's seconds are drawn as means of
/// consecutive seconds (a 7-day run has 604,800 samples).
const MAX_POINTS: i64 = 1200;

/// The records a page is drawn from, as one jsonb (see [`page::RunRecords`]). Runs with the
/// function's pinned search_path (pg_catalog, pg_temp). `$3`: whether the run's contention may be
/// read (0.4.0's stress.lock_contention and stress.analyze_deadlocks; see [`CONTENTION`]).
macro_rules! gather {
    ($contention:expr) => {
        concat!(
            "
WITH run AS (SELECT r.* FROM stress.runs r WHERE r.id = $1),
s AS (SELECT s.*, (row_number() OVER (ORDER BY s.ts) - 1) * $2 / count(*) OVER () AS bucket
      FROM stress.samples s WHERE s.run_id = $1),
t AS (SELECT t.ts, t.elapsed_s, t.wait_events,
             (row_number() OVER (ORDER BY t.ts) - 1) * $2 / count(*) OVER () AS bucket
      FROM stress.timeline t WHERE t.run_id = $1),
t_buckets AS (SELECT bucket, avg(elapsed_s) AS elapsed_s, count(*) AS n FROM t GROUP BY bucket),
t_waits AS (SELECT t.bucket, w.key, sum(w.value::float8) AS workers
            FROM t, jsonb_each_text(t.wait_events) w GROUP BY t.bucket, w.key)
SELECT jsonb_build_object(
    'run', (SELECT jsonb_build_object('id', r.id, 'kind', r.kind, 'status', r.status,
                                      'started_at', date_trunc('second', r.started_at)::text,
                                      'finished_at', date_trunc('second', r.finished_at)::text,
                                      'run_as', r.run_as, 'error', r.error, 'parameters', r.parameters,
                                      'peak_connections', r.peak_connections,
                                      'environment', to_jsonb(r) -> 'environment') FROM run r),
    'results', (SELECT coalesce(jsonb_agg(to_jsonb(x) - 'histogram' ORDER BY x.name = 'total', x.id), '[]')
                FROM stress.results x WHERE x.run_id = $1),
    'sample_count', (SELECT count(*) FROM s),
    'samples', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                           'elapsed_s', b.elapsed_s, 'ops_per_sec', b.ops_per_sec, 'p50_ms', b.p50_ms,
                           'p99_ms', b.p99_ms, 'errors', b.errors, 'deadlocks', b.deadlocks)
                       ORDER BY b.bucket), '[]')
                FROM (SELECT bucket, avg(elapsed_s) AS elapsed_s, avg(ops_per_sec) AS ops_per_sec,
                             avg(p50_ms) AS p50_ms, max(p99_ms) AS p99_ms, sum(errors) AS errors,
                             sum(deadlocks) AS deadlocks
                      FROM s GROUP BY bucket) b),
    'timeline', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                            'elapsed_s', b.elapsed_s,
                            'waits', (SELECT coalesce(jsonb_object_agg(w.key, w.workers / b.n), '{}')
                                      FROM t_waits w WHERE w.bucket = b.bucket))
                        ORDER BY b.bucket), '[]')
                 FROM t_buckets b),
    'server', (SELECT jsonb_build_object(
                   'seconds', count(*), 'wal_bytes', sum(t.wal_bytes), 'blks_hit', sum(t.blks_hit),
                   'blks_read', sum(t.blks_read), 'xact_commit', sum(t.xact_commit),
                   'xact_rollback', sum(t.xact_rollback), 'checkpoints', sum(t.checkpoints),
                   'autovacuum_workers', max(t.autovacuum_workers),
                   -- (0.9.0's columns, read so that an older schema's timeline reads too)
                   'wal_syncs', sum((to_jsonb(t) ->> 'wal_syncs')::bigint),
                   'io_reads', sum((to_jsonb(t) ->> 'io_reads')::bigint),
                   'io_writes', sum((to_jsonb(t) ->> 'io_writes')::bigint),
                   'io_backend_writes', sum((to_jsonb(t) ->> 'io_backend_writes')::bigint),
                   'io_extends', sum((to_jsonb(t) ->> 'io_extends')::bigint),
                   'io_evictions', sum((to_jsonb(t) ->> 'io_evictions')::bigint),
                   'io_fsyncs', sum((to_jsonb(t) ->> 'io_fsyncs')::bigint),
                   'lock_wait_seconds', count(*) FILTER (WHERE t.lock_waits > 0),
                   'longest_lock_wait_ms', max(t.longest_lock_wait_ms),
                   'lock_relation', (SELECT l.lock_relation FROM stress.timeline l
                                     WHERE l.run_id = $1 AND l.longest_lock_wait_ms IS NOT NULL
                                     ORDER BY l.longest_lock_wait_ms DESC LIMIT 1))
               FROM stress.timeline t WHERE t.run_id = $1 HAVING count(*) > 0),
    'series', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'run_id', r.id, 'step', (r.parameters->'series'->>'step')::bigint,
                          'workers', (r.parameters->>'workers')::bigint, 'status', r.status,
                          'rate', (r.parameters->>'rate')::float8,
                          'ops_per_sec', x.ops_per_sec, 'p99_ms', x.p99_ms,
                          'error_rate', x.errors::float8 / nullif(x.calls, 0))
                      ORDER BY (r.parameters->'series'->>'step')::bigint, r.id), '[]')
               FROM stress.runs r
               LEFT JOIN stress.results x ON x.run_id = r.id AND x.name = 'total'
               WHERE r.kind = 'run_load'
                 AND r.parameters->'series'->'first_run_id'
                     = (SELECT run.parameters->'series'->'first_run_id' FROM run)),
    'targets', (SELECT stress.report(run.id)->'targets' FROM run
                WHERE run.kind = 'run_load'
                  AND EXISTS (SELECT FROM stress.results x WHERE x.run_id = run.id AND x.name = 'total'))",
            $contention,
            ")"
        )
    };
}

/// The run's lock waits per relation and its deadlock patterns, for a database on 0.4.0 or later.
const CONTENTION: &str = gather!(
    ",
    'contention', (SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') FROM stress.lock_contention($1) c),
    'deadlocks', (SELECT coalesce(jsonb_agg(to_jsonb(d)), '[]') FROM stress.analyze_deadlocks($1) d),
    'replication', (SELECT coalesce(jsonb_agg(jsonb_build_object('standby', s.standby, 'points', s.points)
                                              ORDER BY s.standby), '[]')
                    FROM (SELECT b.standby, jsonb_agg(jsonb_build_array(b.elapsed_s, b.replay, b.flush)
                                                      ORDER BY b.bucket) AS points
                          FROM (SELECT l.standby, l.bucket, avg(l.elapsed_s) AS elapsed_s,
                                       max(l.replay_lag_bytes) AS replay, max(l.flush_lag_bytes) AS flush
                                FROM (SELECT r.*, (row_number() OVER w - 1) * $2 / count(*) OVER w AS bucket
                                      FROM stress.replication_lag r WHERE r.run_id = $1
                                      WINDOW w AS (PARTITION BY r.standby ORDER BY r.ts
                                                   ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) l
                                GROUP BY l.standby, l.bucket) b
                          GROUP BY b.standby) s)"
);
/// The same without them: the extension's SQL is older than this library (before ALTER EXTENSION
/// pg_stress UPDATE).
const GATHER: &str = gather!("");

/// The page of run `run_id` (22023 when there is none the caller may see), compared with run
/// `baseline` when one is given.
pub fn report_html(run_id: Option<i64>, baseline: Option<i64>) -> String {
    // (its ERROR, 22023, is the caller's: no run, or not one of theirs. Read-only SPI throughout:
    // the page of a run replicated to a hot standby is drawn there too.)
    crate::postgres::spi_read::one::<bool>(
        "SELECT stress.check_run_visible($1, 'report_html') IS NULL",
        &[run_id.into()],
    )
    .expect("checking the run id");
    let contention = crate::postgres::spi_read::one::<bool>(
        "SELECT pg_catalog.to_regprocedure('stress.lock_contention(bigint)') IS NOT NULL",
        &[],
    )
    .expect("looking for stress.lock_contention")
    .unwrap_or(false);
    let gather = if contention { CONTENTION } else { GATHER };
    let records =
        crate::postgres::spi_read::one::<JsonB>(gather, &[run_id.into(), MAX_POINTS.into()])
            .expect("reading the run's records")
            .expect("a visible run has records");
    let mut records: page::RunRecords =
        serde_json::from_value(records.0).expect("the records as report_html gathers them");
    records.wait_descriptions = wait_descriptions(&records.timeline);
    records.pool = pool_points(records.run.id);
    if let Some(baseline) = baseline {
        let (baseline, candidate) = (
            crate::compare::visible("report_html", &[Some(baseline)])[0],
            records.run.id,
        );
        records.comparison = Some(page::Comparison {
            baseline,
            differences: crate::compare::environment_differences(&[baseline], candidate),
            rows: crate::compare::judge(&[baseline], candidate, 0.10, 0.95),
        });
    }
    page::render(&records)
}

/// A run through PgBouncer's pools, each second (or bucket of seconds), summed over its pools:
/// `[elapsed_s, clients waiting, clients active, server connections active, idle]` (0.9.0's
/// stress.pool_samples; none before, or for a run without a monitored pool).
fn pool_points(run_id: i64) -> Vec<page::PoolPoint> {
    if !has_stress_table(c"pool_samples") {
        return Vec::new();
    }
    let points = crate::postgres::spi_read::one::<JsonB>(
        "SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(b.elapsed_s, b.waiting, b.clients,
                                                                  b.active, b.idle) ORDER BY b.bucket)
         FROM (SELECT s.bucket, avg(s.elapsed_s) AS elapsed_s, max(s.waiting) AS waiting,
                      avg(s.clients) AS clients, max(s.active) AS active, avg(s.idle) AS idle
               FROM (SELECT p.*, (pg_catalog.row_number() OVER (ORDER BY p.ts) OPERATOR(pg_catalog.-) 1)
                                 OPERATOR(pg_catalog.*) $2 OPERATOR(pg_catalog./) pg_catalog.count(*) OVER () AS bucket
                     FROM (SELECT q.ts, avg(q.elapsed_s) AS elapsed_s, sum(q.cl_waiting) AS waiting,
                                  sum(q.cl_active) AS clients, sum(q.sv_active) AS active,
                                  sum(q.sv_idle OPERATOR(pg_catalog.+) q.sv_used) AS idle
                           FROM stress.pool_samples q WHERE q.run_id OPERATOR(pg_catalog.=) $1
                           GROUP BY q.ts) p) s
               GROUP BY s.bucket) b",
        &[run_id.into(), MAX_POINTS.into()],
    )
    .expect("reading the run's pools");
    points
        .and_then(|p| serde_json::from_value(p.0).ok())
        .unwrap_or_default()
}

/// The server's description of each wait event in `timeline` ("Type:Event", as the sampler names
/// them), from `pg_wait_events` — PostgreSQL 17 and later; none before.
fn wait_descriptions(timeline: &[page::TimelinePoint]) -> Vec<(String, String)> {
    let mut events: Vec<String> = timeline
        .iter()
        .flat_map(|point| point.waits.keys().cloned())
        .collect();
    events.sort_unstable();
    events.dedup();
    if events.is_empty() || !crate::postgres::version::WAIT_EVENTS_VIEW {
        return Vec::new();
    }
    let described = crate::postgres::spi_read::one::<pgrx::JsonB>(
        "SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(e.event, w.description))
         FROM pg_catalog.unnest($1::pg_catalog.text[]) e(event)
         JOIN pg_catalog.pg_wait_events w
           ON w.type OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) w.name
              OPERATOR(pg_catalog.=) e.event",
        &[events.into()],
    )
    .expect("reading pg_wait_events");
    described
        .and_then(|d| serde_json::from_value(d.0).ok())
        .unwrap_or_default()
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// A week-long run's samples are drawn as at most MAX_POINTS means, in order, over the whole
    /// run; its wait events are averaged per bucket in the same way.
    #[pg_test]
    fn a_long_run_is_drawn_in_buckets() {
        Spi::run(
            "WITH run AS (INSERT INTO stress.runs (kind, status, run_as, parameters)
                          VALUES ('run_load', 'completed', current_user, '{\"duration_seconds\": 5000}')
                          RETURNING id),
             samples AS (INSERT INTO stress.samples (run_id, ts, elapsed_s, ops, errors, ops_per_sec,
                                                     p50_ms, p99_ms, active_workers, connections, deadlocks)
                         SELECT run.id, now() + g * interval '1 second', g, 100, 0, 100 + g % 2,
                                1, 2, 1, 1, (g = 4000)::int
                         FROM run, generate_series(1, 5000) g),
             timeline AS (INSERT INTO stress.timeline (run_id, ts, elapsed_s, wait_events, lock_waits, wal_bytes,
                                                      blks_hit, blks_read, xact_commit, xact_rollback, checkpoints,
                                                      autovacuum_workers)
                          SELECT run.id, now() + g * interval '1 second', g,
                                 jsonb_build_object('CPU', 1, 'Lock:tuple', g % 2), 0, 0, 0, 0, 0, 0, 0, 0
                          FROM run, generate_series(1, 5000) g)
             SELECT FROM run",
        )
        .unwrap();
        let id = Spi::get_one::<i64>("SELECT max(id) FROM stress.runs")
            .unwrap()
            .unwrap();
        let page = Spi::get_one::<String>(&format!("SELECT stress.report_html({id})"))
            .unwrap()
            .unwrap();
        let points = |series: &str| {
            let at = page
                .find(&format!("data-series=\"{series}\""))
                .unwrap_or_else(|| panic!("no series {series}"));
            let from = at + page[at..].find("points=\"").unwrap() + 8;
            page[from..from + page[from..].find('"').unwrap()]
                .split_whitespace()
                .count()
        };
        assert!(
            page.contains("5000 samples, drawn as 1200 points"),
            "{page}"
        );
        assert_eq!(points("ops/s"), 1200);
        assert_eq!(points("p99"), 1200);
        // both wait events, each drawn over 1200 buckets (an area: there and back)
        assert_eq!(points("CPU"), 2400);
        assert_eq!(points("Lock:tuple"), 2400);
        // the one second with a deadlock is still marked
        assert_eq!(page.matches("class=\"mark deadlock\"").count(), 1);
        // the x axis ends at the last second
        assert!(page.contains(">5000</text>"), "no tick at 5000 s");
        // each event drawn, in the server's words where it has them (17 and later)
        if crate::postgres::version::WAIT_EVENTS_VIEW {
            let tuple = Spi::get_one::<String>(
                "SELECT description FROM pg_catalog.pg_wait_events
                 WHERE type = 'Lock' AND name = 'tuple'",
            )
            .unwrap()
            .unwrap();
            assert!(
                page.contains(&format!("<dt>Lock:tuple</dt><dd>{tuple}</dd>")),
                "{page}"
            );
        } else {
            assert!(!page.contains("pg_wait_events"), "{page}");
        }
    }
}
