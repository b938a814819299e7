-- pg_stress 0.3.0 → 0.4.0: capacity and contention. stress.ramp degrades a step on p99 and on a
-- throughput drop too (and says why); stress.find_optimal_pool_size, stress.find_capacity,
-- stress.lock_waits, stress.conflicts, stress.analyze_deadlocks, stress.lock_contention,
-- stress.replication_lag and stress.wait_for_replicas are new.
-- tests/integration/upgrade.rs checks that this ends where a fresh 0.4.0 install does.
\echo Use "ALTER EXTENSION pg_stress UPDATE TO '0.4.0'" to load this file. \quit

-- (a new signature and a new column: dropped and made again, not replaced)
DROP FUNCTION stress.ramp(int[], interval, float8, jsonb);
CREATE FUNCTION stress.ramp(
	"workers" INT[],
	"step" interval DEFAULT '30 seconds',
	"max_error_rate" double precision DEFAULT 0.01,
	"mix" jsonb DEFAULT NULL,
	"max_p99_ms" double precision DEFAULT NULL,
	"max_throughput_drop" double precision DEFAULT 0.25
) RETURNS TABLE (
	"step" INT,
	"workers" INT,
	"run_id" bigint,
	"ops_per_sec" double precision,
	"p99_ms" double precision,
	"error_rate" double precision,
	"degraded" bool,
	"reason" TEXT
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'ramp_0_4_0_wrapper';

CREATE FUNCTION stress.find_optimal_pool_size(
	"min_workers" INT,
	"max_workers" INT,
	"target_p99_ms" double precision,
	"step" interval DEFAULT '10 seconds',
	"mix" jsonb DEFAULT NULL,
	"transactions" jsonb DEFAULT NULL,
	"max_error_rate" double precision DEFAULT 0.01
) RETURNS TABLE (
	"step" INT,
	"workers" INT,
	"run_id" bigint,
	"ops_per_sec" double precision,
	"p50_ms" double precision,
	"p99_ms" double precision,
	"error_rate" double precision,
	"wait_events" TEXT,
	"meets_target" bool,
	"best" bool
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'find_optimal_pool_size_wrapper';

CREATE FUNCTION stress.find_capacity(
	"target_p99_ms" double precision,
	"max_error_rate" double precision DEFAULT 0.01,
	"workers" INT DEFAULT NULL,
	"step" interval DEFAULT '10 seconds',
	"mix" jsonb DEFAULT NULL,
	"transactions" jsonb DEFAULT NULL,
	"start_rate" double precision DEFAULT 100.0,
	"max_steps" INT DEFAULT 12
) RETURNS TABLE (
	"step" INT,
	"run_id" bigint,
	"offered_rate" double precision,
	"achieved_rate" double precision,
	"p50_ms" double precision,
	"p99_ms" double precision,
	"error_rate" double precision,
	"wait_events" TEXT,
	"ok" bool,
	"reason" TEXT,
	"capacity" bool
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'find_capacity_wrapper';

REVOKE EXECUTE ON FUNCTION stress.ramp, stress.find_optimal_pool_size, stress.find_capacity FROM PUBLIC;

-- sql/contention.sql, as installed by 0.4.0:
-- Contention: what a run's workers waited for, and the deadlocks and serialization failures they
-- met. The run's sampler writes stress.lock_waits each second (as the timeline); the workers write
-- stress.conflicts as they end. Both are read as the caller (row-level security, like the samples).

-- Every lock wait of a run's workers that the run's sampler saw (it looks each second: a wait
-- shorter than a second is seen with a chance of about its length in seconds).
CREATE TABLE stress.lock_waits (
    run_id       bigint      NOT NULL REFERENCES stress.runs (id) ON DELETE CASCADE,
    pid          int         NOT NULL,  -- the waiting worker's process
    wait_started timestamptz NOT NULL,  -- pg_locks.waitstart
    last_seen    timestamptz NOT NULL,
    waited_ms    float8      NOT NULL,  -- from its start to when it was last seen: at least this long
    locktype     text        NOT NULL,  -- what it waited for: transactionid (a row another transaction holds), tuple, relation, …
    mode         text        NOT NULL,  -- in which mode: ShareLock, ExclusiveLock, …
    relation     text,                  -- the relation (a row's: the relation of the tuple lock the waiter holds)
    PRIMARY KEY (run_id, pid, wait_started)
);
COMMENT ON TABLE stress.lock_waits IS 'Lock waits of a run''s workers, as its sampler saw them each second: relation, lock type, mode, how long.';

-- Every deadlock (40P01) and serialization failure (40001) a run's operations met (retried or not;
-- at most 200 per worker and run).
CREATE TABLE stress.conflicts (
    run_id    bigint      NOT NULL REFERENCES stress.runs (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL,
    sqlstate  text        NOT NULL,  -- 40P01: deadlock detected; 40001: serialization failure
    worker    int         NOT NULL,  -- the run's worker that met it (1 …)
    pid       int         NOT NULL,  -- that worker's process
    operation text        NOT NULL,  -- what it was running
    others    text[]      NOT NULL,  -- what the other processes in the server's DETAIL were running (NULL: not the run's)
    message   text        NOT NULL,
    detail    text                   -- the server's DETAIL: processes, the locks they waited for
);
COMMENT ON TABLE stress.conflicts IS 'Deadlocks and serialization failures a run met: the operations involved and the server''s DETAIL.';
CREATE INDEX conflicts_run_id_idx ON stress.conflicts (run_id);

SELECT pg_catalog.pg_extension_config_dump('stress.lock_waits', '');
SELECT pg_catalog.pg_extension_config_dump('stress.conflicts', '');
GRANT SELECT ON stress.lock_waits, stress.conflicts TO PUBLIC;
ALTER TABLE stress.lock_waits ENABLE ROW LEVEL SECURITY;
ALTER TABLE stress.conflicts ENABLE ROW LEVEL SECURITY;
CREATE POLICY lock_waits_visible ON stress.lock_waits FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));
CREATE POLICY conflicts_visible ON stress.conflicts FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));

-- The deadlocks and serialization failures of run `run_id` (of every run the caller may see when
-- NULL), grouped into patterns: the operations involved, the relation, the lock. The relation is
-- the one the failing worker was waiting on when the run's sampler last saw it (a deadlock's
-- loser waited deadlock_timeout first), else the one the DETAIL names.
CREATE FUNCTION stress.analyze_deadlocks(run_id bigint DEFAULT NULL)
RETURNS TABLE (pattern text, kind text, operations text[], relation text, lock text, processes text,
               occurrences bigint, runs bigint, first_seen timestamptz, last_seen timestamptz, example text,
               advice text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF run_id IS NOT NULL THEN
        PERFORM stress.check_run_visible(run_id, 'analyze_deadlocks');
    END IF;
    RETURN QUERY
    WITH c AS (
        SELECT c.*,
               CASE c.sqlstate WHEN '40P01' THEN 'deadlock' ELSE 'serialization failure' END AS kind,
               -- (a cycle of 2, 3 or 4 transfers is one pattern: the operations, each once)
               ARRAY(SELECT DISTINCT coalesce(o, 'another session') FROM unnest(c.operation || c.others) o
                     ORDER BY 1) AS operations,
               1 + cardinality(c.others) AS processes,
               coalesce(
                   (SELECT w.relation FROM stress.lock_waits w
                    WHERE w.run_id = c.run_id AND w.pid = c.pid AND w.wait_started <= c.at
                      AND w.last_seen >= c.at - interval '2 seconds'
                    ORDER BY w.wait_started DESC LIMIT 1),
                   (substring(c.detail FROM 'of relation (\d+) of database'))::oid::regclass::text,
                   'an unknown relation') AS relation,
               coalesce(substring(c.detail FROM 'waits for (\w+ on \w+)'),
                        substring(c.detail FROM 'Reason code: ([^.]*)'),
                        c.message) AS lock
        FROM stress.conflicts c
        WHERE analyze_deadlocks.run_id IS NULL OR c.run_id = analyze_deadlocks.run_id
    )
    SELECT format('%s on %s: %s%s',
                  CASE WHEN cardinality(c.operations) = 1 THEN c.operations[1] || ' × ' || c.operations[1]
                       ELSE array_to_string(c.operations, ' × ') END,
                  -- (several: the waiter held no tuple lock, and these are the tables both it
                  -- and the transaction it waited for were writing)
                  CASE WHEN c.relation LIKE '%, %' THEN 'one of ' || c.relation ELSE c.relation END,
                  c.lock,
                  -- (each waits for a row another one's transaction holds: they took them in
                  -- different orders)
                  CASE WHEN c.kind = 'deadlock' AND c.lock LIKE '% on transaction'
                       THEN ', rows locked in opposite order' ELSE '' END),
           c.kind, c.operations, c.relation, c.lock,
           CASE WHEN min(c.processes) = max(c.processes) THEN min(c.processes)::text
                ELSE min(c.processes) || '–' || max(c.processes) END,
           count(*), count(DISTINCT c.run_id), min(c.at), max(c.at),
           (array_agg(coalesce(c.detail, c.message) ORDER BY c.at))[1],
           CASE c.kind
               WHEN 'deadlock' THEN
                   'Take the rows in one order in every transaction (e.g. lock them first with SELECT … ORDER BY id FOR UPDATE), or change them in one statement; a deadlock costs deadlock_timeout before it is found.'
               ELSE
                   'Retry the transaction (pg_stress does, up to max_retries); keep it short, or run it at a lower isolation level when the anomaly it prevents is acceptable.'
           END
    FROM c
    GROUP BY c.kind, c.operations, c.relation, c.lock
    ORDER BY count(*) DESC, 1;
END
$$;
COMMENT ON FUNCTION stress.analyze_deadlocks(bigint) IS
    'Deadlocks and serialization failures of a run (or every visible run), grouped into patterns: operations, relation, lock, count, example.';

-- The lock waits of run `run_id` per relation, lock type and mode: how many, the longest and the
-- total, and the seed's "lock contention on {table}" when a wait passed
-- stress.slow_query_threshold_ms (default 100).
CREATE FUNCTION stress.lock_contention(run_id bigint)
RETURNS TABLE (relation text, locktype text, mode text, waits bigint, longest_ms float8, total_ms float8,
               contended boolean, finding text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    -- (the setting reads as e.g. '100ms': an interval)
    threshold float8 := extract(epoch FROM current_setting('stress.slow_query_threshold_ms')::interval) * 1000;
BEGIN
    PERFORM stress.check_run_visible(run_id, 'lock_contention');
    RETURN QUERY
    SELECT coalesce(w.relation, '(' || w.locktype || ')'), w.locktype, w.mode, count(*), max(w.waited_ms),
           sum(w.waited_ms), max(w.waited_ms) > threshold,
           CASE WHEN max(w.waited_ms) > threshold THEN
               format('lock contention on %s: %s waits for %s on %s, the longest %s ms (over %s ms)',
                      coalesce(w.relation, w.locktype), count(*), w.mode, w.locktype,
                      round(max(w.waited_ms)::numeric), threshold)
           END
    FROM stress.lock_waits w
    WHERE w.run_id = lock_contention.run_id
    GROUP BY w.relation, w.locktype, w.mode
    ORDER BY sum(w.waited_ms) DESC, 1, 2, 3;
END
$$;
COMMENT ON FUNCTION stress.lock_contention(bigint) IS
    'Lock waits of a run per relation, lock type and mode: count, longest, total; "lock contention on {table}" past stress.slow_query_threshold_ms.';

-- sql/replication.sql, as installed by 0.4.0:
-- A primary and its streaming standbys: how far behind each standby is while a run writes
-- (stress.replication_lag, written by the run's sampler each second beside its sample), and waiting
-- until every standby has replayed what the primary has written (stress.wait_for_replicas).

-- Per second of a run and standby streaming from this server: how far the WAL the standby has
-- written, flushed and replayed is behind this server's, in bytes and in time (pg_stat_replication's
-- *_lag, as the standby last reported). The lag figures are NULL when the run's role may not see them
-- (pg_stat_replication shows them to superusers and members of pg_read_all_stats).
CREATE TABLE stress.replication_lag (
    run_id           bigint      NOT NULL REFERENCES stress.runs (id) ON DELETE CASCADE,
    ts               timestamptz NOT NULL,
    elapsed_s        float8      NOT NULL,
    standby          text        NOT NULL,  -- its application_name (else the walsender's pid)
    state            text,                  -- streaming, catchup, …
    write_lag_bytes  bigint,
    flush_lag_bytes  bigint,
    replay_lag_bytes bigint,
    write_lag_ms     float8,
    flush_lag_ms     float8,
    replay_lag_ms    float8
);
COMMENT ON TABLE stress.replication_lag IS 'Per second of a run and standby: how far its written, flushed and replayed WAL is behind, in bytes and ms.';
CREATE INDEX replication_lag_run_id_ts_idx ON stress.replication_lag (run_id, ts);
SELECT pg_catalog.pg_extension_config_dump('stress.replication_lag', '');
GRANT SELECT ON stress.replication_lag TO PUBLIC;
ALTER TABLE stress.replication_lag ENABLE ROW LEVEL SECURITY;
CREATE POLICY replication_lag_visible ON stress.replication_lag FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));

-- Wait until every standby streaming from this server has replayed the WAL written up to the call,
-- at most `timeout`; then one row per standby. ERROR 57014 naming the standbys still behind when
-- the timeout passes. Then a checksum on a standby sees what it sees on the primary.
CREATE FUNCTION stress.wait_for_replicas(timeout interval DEFAULT '1 minute')
RETURNS TABLE (standby text, state text, replay_lsn pg_lsn, target_lsn pg_lsn, waited_s float8)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    target pg_lsn;
    started timestamptz := clock_timestamp();
    behind text;
BEGIN
    IF timeout IS NULL OR NOT isfinite(timeout) OR timeout < interval '0' THEN
        RAISE EXCEPTION 'wait_for_replicas: timeout must be a finite interval of at least 0, got %', timeout
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. stress.wait_for_replicas(''30 seconds'').';
    END IF;
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'wait_for_replicas: this server is a standby'
            USING ERRCODE = 'read_only_sql_transaction', HINT = 'Call it on the primary the standbys stream from.';
    END IF;
    -- (pg_stat_replication's positions are NULL to whom may not see them: it would wait for ever)
    IF NOT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') THEN
        RAISE EXCEPTION 'wait_for_replicas: the standbys'' positions are visible only to members of pg_read_all_stats'
            USING ERRCODE = 'insufficient_privilege', HINT = 'A superuser can GRANT pg_read_all_stats (or pg_monitor) to you.';
    END IF;
    target := pg_current_wal_lsn();
    LOOP
        SELECT string_agg(format('%s (replayed %s)', coalesce(r.application_name, r.pid::text),
                                 coalesce(r.replay_lsn::text, 'nothing')), ', ')
        INTO behind
        FROM pg_stat_replication r
        WHERE r.replay_lsn IS NULL OR r.replay_lsn < target;
        EXIT WHEN behind IS NULL;
        IF clock_timestamp() - started >= timeout THEN
            RAISE EXCEPTION 'wait_for_replicas: after %, not every standby had replayed %: %', timeout, target, behind
                USING ERRCODE = 'query_canceled',
                      HINT = 'See stress.replication_status; a standby whose replay is paused resumes with SELECT pg_wal_replay_resume() on it.';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN QUERY
    SELECT coalesce(r.application_name, r.pid::text), r.state::text, r.replay_lsn, target,
           extract(epoch FROM clock_timestamp() - started)::float8
    FROM pg_stat_replication r
    ORDER BY 1;
END
$$;
COMMENT ON FUNCTION stress.wait_for_replicas(interval) IS
    'Wait until every standby has replayed the WAL written up to the call (at most timeout; 57014 after).';
