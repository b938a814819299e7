-- Metric tables owned by the extension. Every call or run is one row in stress.runs; each measured
-- thing of a run (a table generated, a query benchmarked, an operation of a load run) is one row in
-- stress.results. Both are marked with pg_extension_config_dump so that pg_dump keeps the history.

CREATE TABLE stress.runs (
    id          bigserial PRIMARY KEY,
    kind        text        NOT NULL,
    parameters  jsonb       NOT NULL DEFAULT '{}',
    status      text        NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'completed', 'cancelled', 'failed', 'interrupted')),
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    run_as      name        NOT NULL,   -- the role the run belongs to, set by pg_stress
    error       text,
    peak_connections bigint,            -- load runs: most connections to the database in a sample
    environment jsonb,                  -- what it ran on (stress.environment_diff); NULL before 0.8.0
    CHECK (finished_at IS NULL OR finished_at >= started_at)
);
COMMENT ON TABLE stress.runs IS 'One row per pg_stress call or run: what, with which parameters, how it ended.';
CREATE INDEX runs_kind_started_at_idx ON stress.runs (kind, started_at);

CREATE TABLE stress.results (
    id           bigserial PRIMARY KEY,
    run_id       bigint NOT NULL REFERENCES stress.runs (id) ON DELETE CASCADE,
    name         text   NOT NULL,          -- what was measured: a table, a query, an operation
    rows         bigint,                   -- rows written or read
    calls        bigint,                   -- operations attempted
    errors       bigint,
    seconds      float8,
    rows_per_sec float8,
    ops_per_sec  float8,
    avg_ms       float8,
    stddev_ms    float8,
    p50_ms       float8,
    p95_ms       float8,
    p99_ms       float8,
    p999_ms      float8,
    max_ms       float8,
    details      jsonb NOT NULL DEFAULT '{}',
    histogram    bytea                     -- the latencies (HdrHistogram V2, ns); NULL before 0.8.0
);
COMMENT ON TABLE stress.results IS 'Per run and per measured thing: counts, durations, rates and latency percentiles.';
CREATE INDEX results_run_id_idx ON stress.results (run_id);

-- One row per second (or so) of a load run while it goes on: what happened in that second.
-- Percentiles come from log-linear buckets shared by the workers (within about 6%); the run's final
-- percentiles in stress.results are exact (HdrHistogram).
CREATE TABLE stress.samples (
    run_id         bigint      NOT NULL REFERENCES stress.runs (id) ON DELETE CASCADE,
    ts             timestamptz NOT NULL,
    elapsed_s      float8      NOT NULL,
    ops            bigint      NOT NULL,
    errors         bigint      NOT NULL,
    ops_per_sec    float8      NOT NULL,
    p50_ms         float8,                 -- NULL in a second without operations
    p99_ms         float8,
    active_workers int         NOT NULL,
    connections    bigint      NOT NULL,
    deadlocks      bigint                  -- met in that second, retried or not (NULL: before 0.3.0)
);
COMMENT ON TABLE stress.samples IS 'Per second of a load run: operations, errors, deadlocks, ops/s, p50/p99, active workers, connections.';
CREATE INDEX samples_run_id_ts_idx ON stress.samples (run_id, ts);

-- The first few executions of each benchmarked query slower than stress.slow_query_threshold_ms
-- (stress.slow_query_log_limit per query and run), with the plan the query had.
CREATE TABLE stress.slow_queries (
    id          bigserial PRIMARY KEY,
    run_id      bigint      NOT NULL REFERENCES stress.runs (id) ON DELETE CASCADE,
    query       text        NOT NULL,
    duration_ms float8      NOT NULL,
    executed_at timestamptz NOT NULL,
    worker      int,                      -- which background worker ran it; NULL: the calling session
    plan        jsonb                     -- EXPLAIN (FORMAT JSON, VERBOSE); NULL for utility statements
);
COMMENT ON TABLE stress.slow_queries IS 'Slow executions of benchmarked queries, with their plans.';
CREATE INDEX slow_queries_run_id_idx ON stress.slow_queries (run_id);

-- What each worker of a load run measured, until the run's last worker merges it into stress.results
-- (histograms in HdrHistogram's V2 format). Written by pg_stress as the owner of these tables.
CREATE TABLE stress.load_worker_results (
    run_id                 bigint NOT NULL,
    worker                 int    NOT NULL,
    operation              text   NOT NULL,
    calls                  bigint NOT NULL,
    successes              bigint NOT NULL,
    failures               bigint NOT NULL,
    retries                bigint NOT NULL,
    deadlocks              bigint NOT NULL,
    serialization_failures bigint NOT NULL,
    latency                bytea  NOT NULL,
    lag                    bytea  NOT NULL,
    first_error            text,
    stop_reason            text,
    loop_started           timestamptz NOT NULL,
    loop_ended             timestamptz NOT NULL,
    busy_us                bigint NOT NULL            -- time inside this operation's transactions
);

SELECT pg_catalog.pg_extension_config_dump('stress.runs', '');
SELECT pg_catalog.pg_extension_config_dump('stress.runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('stress.results', '');
SELECT pg_catalog.pg_extension_config_dump('stress.samples', '');
SELECT pg_catalog.pg_extension_config_dump('stress.results_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('stress.slow_queries', '');
SELECT pg_catalog.pg_extension_config_dump('stress.slow_queries_id_seq', '');

-- Who may read a record of role `owner_role`: that role, roles with its privileges, and members of
-- pg_read_all_stats (as pg_stat_statements shows query texts). Used by the row-level security
-- policies below. (Every name qualified, no SET clause: it is inlined into the policies.)
CREATE FUNCTION stress.may_read_records_of(owner_role name)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
SELECT owner_role OPERATOR(pg_catalog.=) CURRENT_USER
    OR pg_catalog.pg_has_role(CURRENT_USER, 'pg_read_all_stats', 'USAGE')
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
               WHERE r.rolname OPERATOR(pg_catalog.=) owner_role
                 AND pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'USAGE'))
$$;

-- Any role may run pg_stress's functions and read its own records; nobody but the extension writes
-- them (src/records: as the tables' owner, with a pinned search_path; see SECURITY.md).
GRANT USAGE ON SCHEMA stress TO PUBLIC;
GRANT SELECT ON stress.runs, stress.results, stress.samples, stress.slow_queries TO PUBLIC;
ALTER TABLE stress.runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE stress.results ENABLE ROW LEVEL SECURITY;
ALTER TABLE stress.samples ENABLE ROW LEVEL SECURITY;
ALTER TABLE stress.slow_queries ENABLE ROW LEVEL SECURITY;
ALTER TABLE stress.load_worker_results ENABLE ROW LEVEL SECURITY;
CREATE POLICY runs_visible ON stress.runs FOR SELECT TO PUBLIC
    USING (stress.may_read_records_of(run_as));
CREATE POLICY results_visible ON stress.results FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));
CREATE POLICY samples_visible ON stress.samples FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));
CREATE POLICY slow_queries_visible ON stress.slow_queries FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));

-- The server beside each sample of a run: what the run's workers waited on, the lock waits among
-- them, and the server's work in that second (WAL, blocks, commits, checkpoints, autovacuum).
-- Counters are this database's (WAL and checkpoints: the server's), as the statistics had them.
CREATE TABLE stress.timeline (
    run_id               bigint      NOT NULL REFERENCES stress.runs (id) ON DELETE CASCADE,
    ts                   timestamptz NOT NULL,
    elapsed_s            float8      NOT NULL,
    wait_events          jsonb       NOT NULL,  -- the run's workers now, per "type:event" ("CPU": not waiting)
    lock_waits           int         NOT NULL,  -- the run's workers waiting for a lock now
    longest_lock_wait_ms float8,                -- the longest of those waits so far (NULL: none)
    lock_relation        text,                  -- the relation that longest wait is on, when it is one
    wal_bytes            bigint      NOT NULL,  -- in this second (the server's)
    blks_hit             bigint      NOT NULL,  -- this database, in this second
    blks_read            bigint      NOT NULL,
    xact_commit          bigint      NOT NULL,
    xact_rollback        bigint      NOT NULL,
    checkpoints          bigint      NOT NULL,  -- finished in this second, timed or requested
    autovacuum_workers   int         NOT NULL,  -- running now, in the server
    -- (0.9.0: the server's WAL flushes, and its relation I/O through shared buffers from pg_stat_io,
    -- in this second: NULL before PostgreSQL 16, and in rows written before 0.9.0)
    wal_syncs            bigint,                -- WAL flushed to disk (pg_stat_wal; pg_stat_io from 18)
    io_reads             bigint,                -- blocks read into shared buffers, every process
    io_writes            bigint,                -- dirty blocks written out, every process
    io_extends           bigint,                -- relation extensions
    io_evictions         bigint,                -- buffers evicted to make room
    io_fsyncs            bigint,                -- data-file fsyncs
    io_backend_writes    bigint                 -- of io_writes, by client backends and workers themselves
);
COMMENT ON TABLE stress.timeline IS 'Per second of a run, beside stress.samples: wait events of its workers, lock waits, WAL, blocks, commits, checkpoints, autovacuum, WAL flushes and relation I/O (pg_stat_io, PostgreSQL 16 and later).';
CREATE INDEX timeline_run_id_ts_idx ON stress.timeline (run_id, ts);
SELECT pg_catalog.pg_extension_config_dump('stress.timeline', '');
GRANT SELECT ON stress.timeline TO PUBLIC;
ALTER TABLE stress.timeline ENABLE ROW LEVEL SECURITY;
CREATE POLICY timeline_visible ON stress.timeline FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));

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
