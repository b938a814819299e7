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
