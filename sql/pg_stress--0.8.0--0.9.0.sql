-- pg_stress 0.8.0 -> 0.9.0: PostgreSQL 16, 17 and 18. The timeline keeps what newer servers count:
-- WAL flushes each second (pg_stat_wal; pg_stat_io from 18) and relation I/O through shared buffers
-- from pg_stat_io (16 and later; NULL on 15).
ALTER TABLE stress.timeline
    ADD COLUMN wal_syncs         bigint,
    ADD COLUMN io_reads          bigint,
    ADD COLUMN io_writes         bigint,
    ADD COLUMN io_extends        bigint,
    ADD COLUMN io_evictions      bigint,
    ADD COLUMN io_fsyncs         bigint,
    ADD COLUMN io_backend_writes bigint;
COMMENT ON TABLE stress.timeline IS 'Per second of a run, beside stress.samples: wait events of its workers, lock waits, WAL, blocks, commits, checkpoints, autovacuum, WAL flushes and relation I/O (pg_stat_io, PostgreSQL 16 and later).';

-- Load on another server (stress.target): a PgBouncer's pools each second of a run.
-- Per second of a run on a target behind PgBouncer (stress.target_monitor names its admin console):
-- each pool (database and user) as SHOW POOLS showed it. Clients waiting means the pool ran out of
-- server connections (stress.health_alerts says "connection pool exhausted").
CREATE TABLE stress.pool_samples (
    run_id      bigint      NOT NULL REFERENCES stress.runs (id) ON DELETE CASCADE,
    ts          timestamptz NOT NULL,
    elapsed_s   float8      NOT NULL,
    database    text        NOT NULL,  -- the pool's database and user, as PgBouncer names them
    username    text        NOT NULL,
    pool_mode   text,                  -- session, transaction or statement
    cl_active   int         NOT NULL,  -- clients linked to a server connection
    cl_waiting  int         NOT NULL,  -- clients waiting for one
    sv_active   int         NOT NULL,  -- server connections linked to a client
    sv_idle     int         NOT NULL,  -- server connections unused and ready
    sv_used     int         NOT NULL,  -- server connections idle long enough to need a check
    maxwait_ms  float8      NOT NULL   -- how long the oldest waiting client has waited
);
COMMENT ON TABLE stress.pool_samples IS 'Per second of a run through PgBouncer and pool: clients active and waiting, server connections active, idle and used, the longest wait (SHOW POOLS).';
CREATE INDEX pool_samples_run_id_ts_idx ON stress.pool_samples (run_id, ts);
SELECT pg_catalog.pg_extension_config_dump('stress.pool_samples', '');
GRANT SELECT ON stress.pool_samples TO PUBLIC;
ALTER TABLE stress.pool_samples ENABLE ROW LEVEL SECURITY;
CREATE POLICY pool_samples_visible ON stress.pool_samples FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));

-- Per second of a run on a target that is a PostgreSQL server (stress.target_monitor names a
-- connection to it, as a member of pg_monitor there): what the run's connections there wait on,
-- and the target's WAL, commits and blocks in that second — the target's side of stress.timeline.
CREATE TABLE stress.target_timeline (
    run_id        bigint      NOT NULL REFERENCES stress.runs (id) ON DELETE CASCADE,
    ts            timestamptz NOT NULL,
    elapsed_s     float8      NOT NULL,
    wait_events   jsonb       NOT NULL,  -- the run's connections there now, per "type:event" ("CPU": active, not waiting)
    lock_waits    int         NOT NULL,  -- of those, waiting for a lock now
    connections   int         NOT NULL,  -- client connections to the target's database now (anyone's)
    wal_bytes     bigint      NOT NULL,  -- in this second (the target's)
    xact_commit   bigint      NOT NULL,  -- the target's database, in this second (anyone's)
    xact_rollback bigint      NOT NULL,
    blks_hit      bigint      NOT NULL,
    blks_read     bigint      NOT NULL,
    deadlocks     bigint      NOT NULL
);
COMMENT ON TABLE stress.target_timeline IS 'Per second of a run on a PostgreSQL target (stress.target_monitor): wait events and lock waits of the run''s connections there, the target''s connections, WAL, commits, rollbacks, blocks and deadlocks.';
CREATE INDEX target_timeline_run_id_ts_idx ON stress.target_timeline (run_id, ts);
SELECT pg_catalog.pg_extension_config_dump('stress.target_timeline', '');
GRANT SELECT ON stress.target_timeline TO PUBLIC;
ALTER TABLE stress.target_timeline ENABLE ROW LEVEL SECURITY;
CREATE POLICY target_timeline_visible ON stress.target_timeline FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));

-- health_alerts: and the seed's "connection pool exhausted", from stress.pool_samples.
-- The operations guide's alert thresholds, each a parameter. Returns the alerts that fire, with what
-- was measured (every check with show_all). Average query time needs pg_stat_statements in this
-- database; the error rate is rolled-back transactions of all, both since the statistics were reset.
CREATE OR REPLACE FUNCTION stress.health_alerts(
    max_avg_query_ms          float8 DEFAULT 1000,
    max_error_rate_pct        float8 DEFAULT 5,
    max_connection_usage_pct  float8 DEFAULT 80,
    min_index_hit_ratio_pct   float8 DEFAULT 95,
    max_database_gb           float8 DEFAULT 100,
    max_replication_lag_mb    float8 DEFAULT 100,
    show_all                  boolean DEFAULT false)
RETURNS TABLE (alert text, firing boolean, measured numeric, threshold numeric, unit text, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pgss regclass;
    v numeric;
    pool_run bigint;
    pool_wait float8;
BEGIN
    IF least(max_avg_query_ms, max_error_rate_pct, max_connection_usage_pct, min_index_hit_ratio_pct,
             max_database_gb, max_replication_lag_mb) < 0
       OR num_nulls(max_avg_query_ms, max_error_rate_pct, max_connection_usage_pct, min_index_hit_ratio_pct,
                    max_database_gb, max_replication_lag_mb, show_all) > 0 THEN
        RAISE EXCEPTION 'health_alerts: thresholds must be 0 or more and not NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave out the ones you do not want to change, e.g. stress.health_alerts(max_connection_usage_pct => 90).';
    END IF;

    -- average query time, from pg_stat_statements when this database has it
    SELECT to_regclass(quote_ident(e.extnamespace::regnamespace::text) || '.pg_stat_statements') INTO pgss
    FROM pg_extension e WHERE e.extname = 'pg_stat_statements';
    IF pgss IS NOT NULL THEN
        EXECUTE format('SELECT round((sum(total_exec_time) / nullif(sum(calls), 0))::numeric, 3) FROM %s
                        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())', pgss)
            INTO v;
        alert := 'avg_query_time'; measured := v; threshold := max_avg_query_ms; unit := 'ms';
        firing := v > max_avg_query_ms;
        detail := 'mean execution time of this database''s statements in pg_stat_statements';
        IF show_all OR firing THEN RETURN NEXT; END IF;
    ELSIF show_all THEN
        alert := 'avg_query_time'; measured := NULL; threshold := max_avg_query_ms; unit := 'ms'; firing := NULL;
        detail := 'not measured: CREATE EXTENSION pg_stat_statements (and preload it) to check it';
        RETURN NEXT;
    END IF;

    SELECT round(100.0 * d.xact_rollback / nullif(d.xact_commit + d.xact_rollback, 0), 2) INTO v
    FROM pg_stat_database d WHERE d.datname = current_database();
    alert := 'error_rate'; measured := v; threshold := max_error_rate_pct; unit := '%';
    firing := v > max_error_rate_pct;
    detail := 'rolled-back transactions of all in this database (pg_stat_database)';
    IF show_all OR firing THEN RETURN NEXT; END IF;

    SELECT h.connection_usage_pct INTO v FROM stress.database_health h;
    alert := 'connection_usage'; measured := v; threshold := max_connection_usage_pct; unit := '%';
    firing := v > max_connection_usage_pct;
    detail := format('client connections to the server of max_connections = %s', current_setting('max_connections'));
    IF show_all OR firing THEN RETURN NEXT; END IF;

    SELECT r.hit_ratio_pct INTO v FROM stress.index_hit_ratio r;
    alert := 'index_hit_ratio'; measured := v; threshold := min_index_hit_ratio_pct; unit := '%';
    firing := v < min_index_hit_ratio_pct;
    detail := 'index blocks found in shared buffers, of all read (NULL: no index read yet)';
    IF show_all OR firing THEN RETURN NEXT; END IF;

    v := round(pg_database_size(current_database()) / 1073741824.0, 3);
    alert := 'database_size'; measured := v; threshold := max_database_gb; unit := 'GB';
    firing := v > max_database_gb;
    detail := format('%s is %s', current_database(), pg_size_pretty(pg_database_size(current_database())));
    IF show_all OR firing THEN RETURN NEXT; END IF;

    SELECT round(max(r.lag_bytes) / 1048576.0, 3) INTO v FROM stress.replication_status r;
    alert := 'replication_lag'; measured := v; threshold := max_replication_lag_mb; unit := 'MB';
    firing := v > max_replication_lag_mb;
    detail := 'the furthest-behind standby''s replay, behind this server''s WAL (NULL: no standby)';
    IF show_all OR firing THEN RETURN NEXT; END IF;

    -- the seed's "connection pool exhausted": the latest run through a PgBouncer (stress.target_monitor)
    -- whose clients waited for a server connection in some second (SHOW POOLS' cl_waiting)
    SELECT p.run_id, max(p.cl_waiting), max(p.maxwait_ms) INTO pool_run, v, pool_wait
    FROM stress.pool_samples p
    WHERE p.run_id = (SELECT max(q.run_id) FROM stress.pool_samples q)
    GROUP BY p.run_id;
    IF pool_run IS NOT NULL THEN
        alert := 'connection_pool_exhausted'; measured := v; threshold := 0; unit := 'clients waiting';
        firing := v > 0;
        detail := CASE WHEN firing
            THEN format('connection pool exhausted, increase pool size: in run %s up to %s clients waited for a server connection, the longest %s ms (SHOW POOLS)',
                        pool_run, v, round(pool_wait::numeric, 1))
            ELSE format('no client waited for a server connection in run %s (SHOW POOLS)', pool_run) END;
        IF show_all OR firing THEN RETURN NEXT; END IF;
    ELSIF show_all THEN
        alert := 'connection_pool_exhausted'; measured := NULL; threshold := 0; unit := 'clients waiting'; firing := NULL;
        detail := 'not measured: run a load through PgBouncer with stress.target_monitor naming its admin console';
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION stress.health_alerts(float8, float8, float8, float8, float8, float8, boolean) IS
    'The operations guide''s alert thresholds: what fires, with the measured value (every check with show_all).';

-- Several drivers, one target: a run exported from one server, combined on another.
-- One run as a document another server's stress.combine_runs reads (0.9.0): the run, its timed
-- results with their histograms (base64), and its samples. For N driver servers loading one
-- target: each exports its run, one of them combines them into a run of its own. Read as the
-- caller (row-level security: a run the caller may not see does not exist).
CREATE FUNCTION stress.export_run(run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM stress.check_run_visible(run_id, 'export_run');
    RETURN (
        SELECT jsonb_build_object(
            'format', 'pg_stress run export 1',
            'server', jsonb_build_object(
                'system_identifier', (SELECT c.system_identifier::text FROM pg_control_system() c),
                'cluster_name', current_setting('cluster_name'),
                'address', host(inet_server_addr()), 'port', current_setting('port')::int,
                'database', current_database(), 'version', current_setting('server_version_num')::int),
            'run', jsonb_build_object('id', r.id, 'kind', r.kind, 'status', r.status,
                                      'started_at', r.started_at, 'finished_at', r.finished_at,
                                      'run_as', r.run_as, 'error', r.error, 'parameters', r.parameters,
                                      'peak_connections', r.peak_connections),
            'results', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'name', x.name, 'calls', x.calls, 'errors', x.errors, 'seconds', x.seconds,
                                'details', x.details - 'percentiles',
                                'histogram', translate(encode(x.histogram, 'base64'), E'\n', ''))
                            ORDER BY x.id), '[]')
                        FROM stress.results x
                        WHERE x.run_id OPERATOR(pg_catalog.=) r.id AND x.calls IS NOT NULL),
            'samples', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'ts', s.ts, 'ops', s.ops, 'errors', s.errors, 'ops_per_sec', s.ops_per_sec,
                                'p50_ms', s.p50_ms, 'p99_ms', s.p99_ms, 'active_workers', s.active_workers,
                                'connections', s.connections, 'deadlocks', s.deadlocks)
                            ORDER BY s.ts), '[]')
                        FROM stress.samples s WHERE s.run_id OPERATOR(pg_catalog.=) r.id))
        FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id);
END
$$;
COMMENT ON FUNCTION stress.export_run(bigint) IS
    'A run, its results (with histograms) and its samples as one document, for stress.combine_runs on another server.';

CREATE FUNCTION stress."combine_runs"(
	"runs" jsonb[] /* alloc::vec::Vec<core::option::Option<pgrx::datum::json::JsonB>> */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'combine_runs_wrapper';
COMMENT ON FUNCTION stress.combine_runs(jsonb[]) IS
    'Load runs several servers drove at one target at once (each stress.export_run there), as one run here: counts added, histograms merged.';

-- benchmark_proc also benchmarks stress.target, at any concurrency.
COMMENT ON PROCEDURE stress.benchmark_proc IS 'stress.benchmark with concurrency > 1, or of stress.target (any concurrency), its workers waited for without holding a snapshot; each query''s row: stress.benchmark_results(run_id).';
