//! `stress.report(run_id)`: a load run as the seed's report file, with its Key Metrics judged.

use crate::error::StressError;
use crate::postgres::catalog::has_stress_table;
use pgrx::JsonB;
use serde_json::{Value, json};

/// The seed's Key Metrics: (name in `targets`, what it measures, comparison, threshold).
const TARGETS: &[(&str, &str, &str, f64)] = &[
    ("p50_latency_ms", "median operation latency, ms", "<", 10.0),
    (
        "p99_latency_ms",
        "99th percentile operation latency, ms",
        "<",
        100.0,
    ),
    (
        "throughput",
        "successful operations per second",
        ">",
        1000.0,
    ),
    (
        "connection_efficiency",
        "share of the workers' time spent inside transactions",
        ">",
        0.7,
    ),
    (
        "deadlocks_per_1000",
        "deadlocks per 1000 transactions",
        "<",
        1.0,
    ),
    (
        "index_hit_rate",
        "index blocks found in shared buffers, of all read",
        ">",
        0.95,
    ),
    (
        "cache_hit_rate",
        "table and index blocks found in shared buffers, of all read",
        ">",
        0.95,
    ),
];

/// Judge `metrics` against the seed's targets.
pub fn targets(metrics: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for &(name, meaning, op, threshold) in TARGETS {
        let value = metrics.get(name).and_then(Value::as_f64);
        let pass = value.map(|v| {
            if op == "<" {
                v < threshold
            } else {
                v > threshold
            }
        });
        out.insert(
            name.into(),
            json!({"target": format!("{op} {threshold}"), "value": value, "pass": pass, "meaning": meaning}),
        );
    }
    Value::Object(out)
}

/// The report of load run `run_id` (the latest load run when NULL), as jsonb: the seed's keys
/// (total_operations, …, slow_query_count), each operation's figures, and `targets`.
pub fn report(run_id: Option<i64>) -> JsonB {
    // (read-only SPI: a report reads, and on a hot standby a transaction id cannot be had)
    let run = crate::postgres::spi_read::one::<JsonB>(
        "SELECT (SELECT jsonb_build_object(
                    'run_id', r.id, 'kind', r.kind, 'status', r.status, 'started_at', r.started_at,
                    'finished_at', r.finished_at, 'run_as', r.run_as, 'error', r.error,
                    'parameters', r.parameters, 'peak_connections', r.peak_connections,
                    'total', (SELECT to_jsonb(t) FROM stress.results t WHERE t.run_id = r.id AND t.name = 'total'),
                    'operations', (SELECT jsonb_object_agg(o.name, jsonb_build_object(
                                       'calls', o.calls, 'errors', o.errors, 'ops_per_sec', o.ops_per_sec,
                                       'avg_ms', o.avg_ms, 'p50_ms', o.p50_ms, 'p95_ms', o.p95_ms,
                                       'p99_ms', o.p99_ms, 'p999_ms', o.p999_ms, 'max_ms', o.max_ms) || o.details)
                                   FROM stress.results o WHERE o.run_id = r.id AND o.name <> 'total'))
         FROM stress.runs r
         WHERE r.kind = 'run_load' AND ($1 IS NULL OR r.id = $1)
         ORDER BY r.id DESC LIMIT 1)",
        &[run_id.into()],
    )
    .expect("reading the run");
    let Some(JsonB(run)) = run else {
        let message = match run_id {
            Some(id) => format!("there is no load run {id}"),
            None => "there is no load run yet".into(),
        };
        StressError::invalid(
            "report",
            message,
            "Start one: SELECT stress.run_load('1 minute', workers => 4); see stress.runs for run ids.",
        )
        .raise();
    };
    let run_id = run["run_id"].as_i64().unwrap_or(0);
    let mut report = build(&run);
    report["replication"] = replication(run_id);
    report["connection_pool"] = connection_pool(run_id);
    report["target_server"] = target_server(run_id);
    JsonB(report)
}

/// The seed's pool statistics of a run through PgBouncer (stress.pool_samples, 0.9.0 and later;
/// null without a monitored pool): per second, server connections active and idle (idle and used)
/// and clients waiting, summed over the pools, then averaged over the run; `efficiency` is the
/// share of server connections that were active; `exhausted`: clients waited in some second.
fn connection_pool(run_id: i64) -> Value {
    if !has_stress_table(c"pool_samples") {
        return Value::Null;
    }
    crate::postgres::spi_read::one::<JsonB>(
        "SELECT CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 THEN pg_catalog.jsonb_build_object(
                    'samples', pg_catalog.count(*),
                    'active', round(avg(s.active)::numeric, 2),
                    'idle', round(avg(s.idle)::numeric, 2),
                    'waiting', round(avg(s.waiting)::numeric, 2),
                    'max_waiting', max(s.waiting),
                    'clients_active', round(avg(s.clients)::numeric, 2),
                    'efficiency', round((sum(s.active)::numeric OPERATOR(pg_catalog./)
                                         NULLIF(sum(s.active OPERATOR(pg_catalog.+) s.idle), 0)), 4),
                    'max_wait_ms', round(max(s.maxwait)::numeric, 3),
                    'pool_modes', (SELECT pg_catalog.jsonb_agg(DISTINCT p.pool_mode) FROM stress.pool_samples p
                                   WHERE p.run_id OPERATOR(pg_catalog.=) $1),
                    'exhausted', max(s.waiting) OPERATOR(pg_catalog.>) 0) END
         FROM (SELECT p.ts, sum(p.sv_active) AS active,
                      sum(p.sv_idle OPERATOR(pg_catalog.+) p.sv_used) AS idle,
                      sum(p.cl_waiting) AS waiting, sum(p.cl_active) AS clients,
                      max(p.maxwait_ms) AS maxwait
               FROM stress.pool_samples p WHERE p.run_id OPERATOR(pg_catalog.=) $1
               GROUP BY p.ts) s",
        &[run_id.into()],
    )
    .expect("reading the run's pools")
    .map_or(Value::Null, |j| j.0)
}

/// The target's side of a run on a PostgreSQL target (stress.target_timeline, 0.9.0 and later;
/// null without a monitored target): its commits, rollbacks and WAL per second over the run's
/// seconds (average and highest), deadlocks, the most of the run's connections waiting for a lock
/// at once, the most client connections, and the run's connections' wait events there, as
/// connection-seconds per event.
fn target_server(run_id: i64) -> Value {
    if !has_stress_table(c"target_timeline") {
        return Value::Null;
    }
    crate::postgres::spi_read::one::<JsonB>(
        "SELECT CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 THEN pg_catalog.jsonb_build_object(
                    'samples', pg_catalog.count(*),
                    'commits_per_sec', round(avg(t.xact_commit)::numeric, 1),
                    'max_commits_per_sec', max(t.xact_commit),
                    'rollbacks', sum(t.xact_rollback),
                    'wal_bytes_per_sec', round(avg(t.wal_bytes)::numeric),
                    'max_wal_bytes_per_sec', max(t.wal_bytes),
                    'hit_ratio', round(sum(t.blks_hit)::numeric OPERATOR(pg_catalog./)
                                       NULLIF(sum(t.blks_hit OPERATOR(pg_catalog.+) t.blks_read), 0), 4),
                    'deadlocks', sum(t.deadlocks),
                    'max_lock_waits', max(t.lock_waits),
                    'max_connections', max(t.connections),
                    'wait_events', (SELECT pg_catalog.jsonb_object_agg(w.event, w.seconds)
                                    FROM (SELECT e.key AS event, sum(e.value::pg_catalog.int8) AS seconds
                                          FROM stress.target_timeline u, pg_catalog.jsonb_each_text(u.wait_events) e
                                          WHERE u.run_id OPERATOR(pg_catalog.=) $1 GROUP BY e.key) w)) END
         FROM stress.target_timeline t WHERE t.run_id OPERATOR(pg_catalog.=) $1",
        &[run_id.into()],
    )
    .expect("reading the target's timeline")
    .map_or(Value::Null, |j| j.0)
}

/// Per standby, the most its written, flushed and replayed WAL was behind during the run (bytes,
/// ms), from stress.replication_lag (0.4.0 and later; null before, or without a standby).
fn replication(run_id: i64) -> Value {
    if !has_stress_table(c"replication_lag") {
        return Value::Null;
    }
    crate::postgres::spi_read::one::<JsonB>(
        "SELECT pg_catalog.jsonb_object_agg(l.standby, pg_catalog.jsonb_build_object(
                    'samples', l.n, 'max_write_lag_bytes', l.wb, 'max_flush_lag_bytes', l.fb,
                    'max_replay_lag_bytes', l.rb, 'max_write_lag_ms', l.wm, 'max_flush_lag_ms', l.fm,
                    'max_replay_lag_ms', l.rm))
         FROM (SELECT r.standby, pg_catalog.count(*) AS n, max(r.write_lag_bytes) AS wb,
                      max(r.flush_lag_bytes) AS fb, max(r.replay_lag_bytes) AS rb,
                      max(r.write_lag_ms) AS wm, max(r.flush_lag_ms) AS fm, max(r.replay_lag_ms) AS rm
               FROM stress.replication_lag r WHERE r.run_id OPERATOR(pg_catalog.=) $1
               GROUP BY r.standby) l",
        &[run_id.into()],
    )
    .expect("reading the run's replication lag")
    .map_or(Value::Null, |j| j.0)
}

/// The report from the run's row and results (as `report`'s query gathers them).
pub fn build(run: &Value) -> Value {
    let total = &run["total"];
    let details = &total["details"];
    // Counts are JSON integers (`(report->>'total_operations')::bigint` works).
    let count = |v: &Value| v.as_i64();
    let calls = count(&total["calls"]).unwrap_or(0);
    let failures = count(&details["failures"]).unwrap_or(0);
    let deadlocks = count(&details["deadlocks"]).unwrap_or(0);
    let mut report = json!({
        "run_id": run["run_id"],
        "status": run["status"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "run_as": run["run_as"],
        "parameters": run["parameters"],
        "total_operations": calls,
        "successful_operations": details["successes"],
        "failed_operations": failures,
        "deadlock_count": deadlocks,
        "retries": details["retries"],
        "serialization_failures": details["serialization_failures"],
        "error_rate": (calls > 0).then(|| failures as f64 / calls as f64),
        "avg_latency_ms": total["avg_ms"],
        "p50_latency_ms": total["p50_ms"],
        "p95_latency_ms": total["p95_ms"],
        "p99_latency_ms": total["p99_ms"],
        "p999_latency_ms": total["p999_ms"],
        "max_latency_ms": total["max_ms"],
        "throughput": total["ops_per_sec"],
        "duration_s": total["seconds"],
        "peak_connections": run["peak_connections"],
        "slow_query_count": details["slow"],
        "slow_threshold_ms": details["slow_threshold_ms"],
        "connection_efficiency": details["connection_efficiency"],
        "index_hit_rate": details["index_hit_rate"],
        "cache_hit_rate": details["cache_hit_rate"],
        "deadlocks_per_1000": (calls > 0).then(|| deadlocks as f64 * 1000.0 / calls as f64),
        "operations": run["operations"],
    });
    if !run["error"].is_null() {
        report["error"] = run["error"].clone();
    }
    report["targets"] = targets(&report);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_pass_and_fail_on_the_right_side() {
        let t = targets(&json!({
            "p50_latency_ms": 2.0, "p99_latency_ms": 150.0, "throughput": 1500.0,
            "connection_efficiency": 0.5, "deadlocks_per_1000": 0.0
        }));
        assert_eq!(t["p50_latency_ms"]["pass"], true);
        assert_eq!(t["p99_latency_ms"]["pass"], false);
        assert_eq!(t["throughput"]["pass"], true);
        assert_eq!(t["connection_efficiency"]["pass"], false);
        assert_eq!(t["deadlocks_per_1000"]["pass"], true);
        assert_eq!(t["index_hit_rate"]["pass"], Value::Null);
        assert_eq!(t["p99_latency_ms"]["target"], "< 100");
    }

    #[test]
    fn the_seeds_keys_come_from_the_total() {
        let r = build(&json!({
            "run_id": 3, "status": "completed", "peak_connections": 5,
            "total": {"calls": 2000, "p50_ms": 1.5, "p99_ms": 9.0, "ops_per_sec": 990.0,
                      "details": {"successes": 1990, "failures": 10, "deadlocks": 1, "slow": 4}}
        }));
        assert_eq!(r["total_operations"], 2000.0);
        assert_eq!(r["failed_operations"], 10.0);
        assert_eq!(r["error_rate"], 0.005);
        assert_eq!(r["deadlocks_per_1000"], 0.5);
        assert_eq!(r["slow_query_count"], 4);
        assert_eq!(r["targets"]["throughput"]["pass"], false);
    }
}
