-- Health of the database: views and functions over PostgreSQL's statistics views, for the operations
-- guide's daily and weekly checks. They read only the system catalogs and statistics views, so they
-- work in any database where pg_stress is installed, with or without pg_stress data, and for any
-- role. A role without pg_monitor (or pg_read_all_stats) sees other roles' sessions as
-- pg_stat_activity shows them to it: no state, no query. The views count those sessions as `hidden`
-- instead of guessing.

-- Client sessions of the server. Of another role's session, a role without pg_read_all_stats sees the
-- database and user but not the type: such a session counts here (hidden) whether it is a client or a
-- background worker connected to a database, like pg_cron's launcher.
CREATE VIEW stress.client_sessions AS
SELECT a.*
FROM pg_stat_activity a
WHERE a.backend_type = 'client backend' OR (a.backend_type IS NULL AND a.datname IS NOT NULL);
COMMENT ON VIEW stress.client_sessions IS
    'pg_stat_activity''s client backends, and the sessions of other roles whose type this role may not see.';

CREATE VIEW stress.database_health AS
SELECT current_database()                                       AS database,
       pg_database_size(current_database())                     AS size_bytes,
       pg_size_pretty(pg_database_size(current_database()))    AS size,
       count(*) FILTER (WHERE a.datname = current_database())  AS connections,
       count(*) FILTER (WHERE a.datname = current_database() AND a.state = 'active') AS active,
       count(*) FILTER (WHERE a.datname = current_database() AND a.state = 'idle') AS idle,
       count(*) FILTER (WHERE a.datname = current_database()
                          AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')) AS idle_in_transaction,
       count(*) FILTER (WHERE a.datname = current_database() AND a.backend_type IS NULL) AS hidden,
       count(*)                                                 AS server_connections,
       current_setting('max_connections')::int                  AS max_connections,
       round(100.0 * count(*) / current_setting('max_connections')::int, 1) AS connection_usage_pct
FROM stress.client_sessions a;
COMMENT ON VIEW stress.database_health IS
    'This database: size, its client connections by state, and the server''s connections against max_connections.';

CREATE VIEW stress.table_stats AS
SELECT s.schemaname                                             AS schema,
       s.relname                                                AS table_name,
       s.n_tup_ins                                              AS inserts,
       s.n_tup_upd                                              AS updates,
       s.n_tup_del                                              AS deletes,
       s.n_tup_hot_upd                                          AS hot_updates,
       s.n_live_tup                                             AS live_rows,
       s.n_dead_tup                                             AS dead_rows,
       round(100.0 * s.n_dead_tup / nullif(s.n_live_tup + s.n_dead_tup, 0), 2) AS dead_pct,
       pg_total_relation_size(s.relid)                          AS total_bytes,
       pg_size_pretty(pg_total_relation_size(s.relid))          AS total_size,
       s.seq_scan,
       s.idx_scan,
       s.last_vacuum,
       s.last_autovacuum,
       s.last_analyze,
       s.last_autoanalyze
FROM pg_stat_user_tables s;
COMMENT ON VIEW stress.table_stats IS
    'Per user table: rows inserted/updated/deleted, live and dead rows, total size (with indexes and TOAST), scans, last (auto)vacuum and analyze.';

CREATE VIEW stress.index_usage AS
SELECT s.schemaname                                             AS schema,
       s.relname                                                AS table_name,
       s.indexrelname                                           AS index_name,
       s.idx_scan                                               AS scans,
       s.idx_tup_read                                           AS tuples_read,
       s.idx_tup_fetch                                          AS tuples_fetched,
       -- heap rows fetched per index entry read: low for index-only scans and for lossy lookups
       round(100.0 * s.idx_tup_fetch / nullif(s.idx_tup_read, 0), 2) AS efficiency_pct,
       pg_relation_size(s.indexrelid)                           AS size_bytes,
       pg_size_pretty(pg_relation_size(s.indexrelid))           AS size,
       i.indisunique                                            AS is_unique,
       i.indisprimary                                           AS is_primary
FROM pg_stat_user_indexes s
JOIN pg_index i ON i.indexrelid = s.indexrelid;
COMMENT ON VIEW stress.index_usage IS
    'Per user index: scans, entries read, rows fetched, efficiency (fetched / read), size.';

CREATE FUNCTION stress.unused_indexes(max_scans bigint DEFAULT 0)
RETURNS TABLE (schema name, table_name name, index_name name, scans bigint, size_bytes bigint, size text,
               counted_since timestamptz, suggestion text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF max_scans IS NULL OR max_scans < 0 THEN
        RAISE EXCEPTION 'unused_indexes: max_scans must be 0 or more, got %', coalesce(max_scans::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the most scans an index may have had and still count as unused, e.g. stress.unused_indexes(100).';
    END IF;
    -- Indexes behind a constraint (primary key, unique, exclusion) enforce something: never "unused".
    RETURN QUERY
    SELECT s.schemaname, s.relname, s.indexrelname, s.idx_scan,
           pg_relation_size(s.indexrelid), pg_size_pretty(pg_relation_size(s.indexrelid)),
           (SELECT d.stats_reset FROM pg_stat_database d WHERE d.datname = current_database()),
           format('DROP INDEX CONCURRENTLY %I.%I;', s.schemaname, s.indexrelname)
    FROM pg_stat_user_indexes s
    JOIN pg_index i ON i.indexrelid = s.indexrelid
    WHERE s.idx_scan <= max_scans
      AND NOT i.indisunique
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
    ORDER BY pg_relation_size(s.indexrelid) DESC, s.schemaname, s.indexrelname;
END
$$;
COMMENT ON FUNCTION stress.unused_indexes(bigint) IS
    'Indexes scanned at most max_scans times since the statistics were reset (counted_since), biggest first, with the DROP to consider; indexes behind constraints are never listed.';

CREATE FUNCTION stress.long_running_queries(threshold interval DEFAULT '30 seconds')
RETURNS TABLE (pid int, database name, usename name, application_name text, state text, duration interval,
               transaction_duration interval, wait_event_type text, wait_event text, query text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF threshold IS NULL OR threshold < interval '0' THEN
        RAISE EXCEPTION 'long_running_queries: threshold must not be negative, got %', coalesce(threshold::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass e.g. stress.long_running_queries(''5 minutes'').';
    END IF;
    -- Running statements, and sessions idle in a transaction (they hold locks and old snapshots),
    -- by how long their statement has run (idle in transaction: since they went idle).
    RETURN QUERY
    SELECT a.pid, a.datname, a.usename, a.application_name, a.state,
           clock_timestamp() - CASE WHEN a.state = 'active' THEN a.query_start ELSE a.state_change END,
           clock_timestamp() - a.xact_start,
           a.wait_event_type, a.wait_event, a.query
    FROM pg_stat_activity a
    WHERE a.backend_type = 'client backend'
      AND a.pid <> pg_backend_pid()
      AND a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
      AND clock_timestamp() - CASE WHEN a.state = 'active' THEN a.query_start ELSE a.state_change END > threshold
    ORDER BY 6 DESC;
END
$$;
COMMENT ON FUNCTION stress.long_running_queries(interval) IS
    'Statements running, or sessions idle in a transaction, for longer than threshold, longest first.';

CREATE VIEW stress.connection_stats AS
SELECT coalesce(a.state, 'hidden')                              AS state,
       count(*)                                                 AS connections,
       count(*) FILTER (WHERE a.wait_event_type = 'Lock')       AS waiting_on_locks,
       max(clock_timestamp() - a.state_change)                  AS longest_in_state
FROM stress.client_sessions a
GROUP BY 1;
COMMENT ON VIEW stress.connection_stats IS
    'The server''s client connections by state (hidden: not visible to this role), how many wait on a lock, and the longest time in that state.';

CREATE VIEW stress.lock_stats AS
SELECT a.pid                                                    AS waiting_pid,
       a.usename                                                AS waiting_user,
       l.locktype,
       l.mode,
       CASE WHEN l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            THEN l.relation::regclass END                       AS relation,
       pg_blocking_pids(a.pid)                                  AS blocking_pids,
       clock_timestamp() - coalesce(l.waitstart, a.state_change) AS wait_time,
       a.query                                                  AS waiting_query
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted;
COMMENT ON VIEW stress.lock_stats IS
    'Every lock some session waits for: who waits, for what, blocked by which pids, since when.';

CREATE VIEW stress.cache_hit_ratio AS
SELECT sum(heap_blks_hit)::int8                                 AS blocks_hit,
       sum(heap_blks_read)::int8                                AS blocks_read,
       round(100.0 * sum(heap_blks_hit) / nullif(sum(heap_blks_hit) + sum(heap_blks_read), 0), 2) AS hit_ratio_pct
FROM pg_statio_user_tables;
COMMENT ON VIEW stress.cache_hit_ratio IS
    'Table blocks of user tables found in shared buffers, of all read, since the statistics were reset.';

CREATE VIEW stress.index_hit_ratio AS
SELECT sum(idx_blks_hit)::int8                                  AS blocks_hit,
       sum(idx_blks_read)::int8                                 AS blocks_read,
       round(100.0 * sum(idx_blks_hit) / nullif(sum(idx_blks_hit) + sum(idx_blks_read), 0), 2) AS hit_ratio_pct
FROM pg_statio_user_indexes;
COMMENT ON VIEW stress.index_hit_ratio IS
    'Index blocks of user indexes found in shared buffers, of all read, since the statistics were reset.';

CREATE VIEW stress.replication_status AS
SELECT r.pid,
       r.application_name,
       r.client_addr,
       r.state,
       r.sync_state,
       r.write_lag,
       r.flush_lag,
       r.replay_lag,
       -- (on a standby, against what it has received: pg_current_wal_lsn() errors during recovery)
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
                       r.replay_lsn)::int8                      AS lag_bytes,
       pg_size_pretty(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                                           ELSE pg_current_wal_lsn() END, r.replay_lsn)) AS lag
FROM pg_stat_replication r;
COMMENT ON VIEW stress.replication_status IS
    'Per standby streaming from this server: state, write/flush/replay lag, and how far behind its replay is, in bytes.';

GRANT SELECT ON stress.client_sessions, stress.database_health, stress.table_stats, stress.index_usage, stress.connection_stats,
                stress.lock_stats, stress.cache_hit_ratio, stress.index_hit_ratio, stress.replication_status
    TO PUBLIC;

-- The operations guide's alert thresholds, each a parameter. Returns the alerts that fire, with what
-- was measured (every check with show_all). Average query time needs pg_stat_statements in this
-- database; the error rate is rolled-back transactions of all, both since the statistics were reset.
CREATE FUNCTION stress.health_alerts(
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

-- The guide's monthly "slow queries": statements called often and slow on average, from
-- pg_stat_statements (the extension in this database, the library preloaded).
CREATE FUNCTION stress.slow_statements(min_calls bigint DEFAULT 100, min_mean_ms float8 DEFAULT 100)
RETURNS TABLE (query text, calls bigint, total_ms numeric, mean_ms numeric, rows bigint, shared_blks_read bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pgss regclass;
BEGIN
    IF min_calls IS NULL OR min_calls < 0 OR min_mean_ms IS NULL OR min_mean_ms < 0 THEN
        RAISE EXCEPTION 'slow_statements: min_calls and min_mean_ms must be 0 or more'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. stress.slow_statements(100, 100).';
    END IF;
    SELECT to_regclass(quote_ident(e.extnamespace::regnamespace::text) || '.pg_stat_statements') INTO pgss
    FROM pg_extension e WHERE e.extname = 'pg_stat_statements';
    IF pgss IS NULL THEN
        RAISE EXCEPTION 'slow_statements: pg_stat_statements is not installed in database %', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add pg_stat_statements to shared_preload_libraries (restart), then CREATE EXTENSION pg_stat_statements.';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT s.query, s.calls, round(s.total_exec_time::numeric, 3), round(s.mean_exec_time::numeric, 3),
                s.rows, s.shared_blks_read
         FROM %s s
         WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND s.calls >= $1 AND s.mean_exec_time >= $2
         ORDER BY s.total_exec_time DESC', pgss)
        USING min_calls, min_mean_ms;
END
$$;
COMMENT ON FUNCTION stress.slow_statements(bigint, float8) IS
    'Statements of this database called at least min_calls times with a mean of at least min_mean_ms, by total time (pg_stat_statements).';
