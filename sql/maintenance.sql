-- Routine maintenance with pg_cron: the operations guide's daily and weekly jobs, scheduled by name
-- (calling it again updates them, never duplicates), and a weekly health check whose findings are
-- kept in stress.runs / stress.results.

-- The weekly check: what health_alerts, bloat_report, verify_integrity and unused_indexes find,
-- recorded as one run (kind health_check) with a result row per finding. Returns the run id.
CREATE FUNCTION stress.record_health_check(schema name DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    started timestamptz := clock_timestamp();
    target name := coalesce(schema, current_setting('stress.data_schema'));
    findings jsonb;
    integrity jsonb := '[]';
BEGIN
    -- (verify_integrity checks only tables this role owns: others come out 'not checked')
    IF to_regnamespace(quote_ident(target)) IS NOT NULL THEN
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'name', 'integrity: ' || v.check_name || ' ' || v.relation, 'rows', v.failures,
                   'details', jsonb_build_object('status', v.status, 'detail', v.detail))), '[]')
        INTO integrity
        FROM stress.verify_integrity(target) v WHERE v.status <> 'ok';
    END IF;
    SELECT coalesce(jsonb_agg(f), '[]') || integrity INTO findings FROM (
        SELECT 'alert: ' || a.alert AS name, NULL::int8 AS rows,
               jsonb_build_object('measured', a.measured, 'threshold', a.threshold, 'unit', a.unit,
                                  'detail', a.detail) AS details
        FROM stress.health_alerts() a
        UNION ALL
        SELECT 'bloat: ' || b.schema_name || '.' || b.relation, NULL,
               jsonb_build_object('kind', b.kind, 'wasted_bytes', b.wasted_bytes, 'wasted_pct', b.wasted_pct,
                                  'dead_pct', b.dead_pct, 'method', b.method, 'action', b.action)
        FROM stress.bloat_report() b WHERE b.action <> 'none'

        UNION ALL
        SELECT 'unused index: ' || u.schema || '.' || u.index_name, NULL,
               jsonb_build_object('size_bytes', u.size_bytes, 'suggestion', u.suggestion)
        FROM stress.unused_indexes(0) u) f;
    RETURN stress.record_call('health_check', jsonb_build_object('schema', target), started, findings);
END
$$;
COMMENT ON FUNCTION stress.record_health_check(name) IS
    'Record what the health checks find now as a run of kind health_check (one stress.results row per finding); returns its id.';

-- pg_cron's schema (its objects are always in schema cron, whatever the extension's own schema is),
-- or an ERROR that says where pg_cron is.
CREATE FUNCTION stress.cron_schema(fn text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ns text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'pg_cron') AND to_regclass('cron.job') IS NOT NULL THEN
        ns := 'cron';
    END IF;
    IF ns IS NULL THEN
        RAISE EXCEPTION '%: pg_cron is not installed in database %', fn, current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('pg_cron must be in shared_preload_libraries, and CREATE EXTENSION pg_cron run in its database (cron.database_name = %s); call stress.%s there, with database => the database to maintain.',
                                coalesce(current_setting('cron.database_name', true), 'postgres'), fn);
    END IF;
    RETURN ns;
END
$$;

CREATE FUNCTION stress.schedule_maintenance(
    daily          text      DEFAULT '0 2 * * *',
    weekly         text      DEFAULT '0 3 * * 0',
    busiest_tables int       DEFAULT 3,
    refresh_views  regclass[] DEFAULT NULL,
    database       name      DEFAULT NULL)
RETURNS TABLE (jobid bigint, job_name text, schedule text, command text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    cron text := stress.cron_schema('schedule_maintenance');
    target name := coalesce(database, current_database());
    here boolean := coalesce(database, current_database()) = current_database();
    busiest text;
    refresh text;
    v regclass;
    j record;
BEGIN
    IF daily IS NULL OR weekly IS NULL OR busiest_tables IS NULL OR busiest_tables < 0 THEN
        RAISE EXCEPTION 'schedule_maintenance: daily and weekly must be schedules and busiest_tables 0 or more'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Schedules are pg_cron''s: ''0 2 * * *'' (02:00 daily), ''30 seconds'' (every 30 s).';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = target) THEN
        RAISE EXCEPTION 'schedule_maintenance: database "%" does not exist', target
            USING ERRCODE = 'invalid_catalog_name', HINT = 'Pass the name of the database to maintain.';
    END IF;
    -- The busiest tables by rows written (not pg_stress's or pg_cron's own), known only for this
    -- database; another one gets a database-wide VACUUM (ANALYZE).
    IF here THEN
        SELECT string_agg(format('%I.%I', s.schemaname, s.relname), ', ' ORDER BY s.n_tup_ins + s.n_tup_upd + s.n_tup_del DESC)
        INTO busiest
        FROM (SELECT * FROM pg_stat_user_tables WHERE schemaname NOT IN ('stress', 'cron')
              ORDER BY n_tup_ins + n_tup_upd + n_tup_del DESC, relid LIMIT busiest_tables) s;
    END IF;
    FOREACH v IN ARRAY coalesce(refresh_views, '{}') LOOP
        IF here AND (SELECT relkind FROM pg_class WHERE oid = v) <> 'm' THEN
            RAISE EXCEPTION 'schedule_maintenance: % is not a materialized view', v
                USING ERRCODE = 'wrong_object_type', HINT = 'refresh_views lists materialized views.';
        END IF;
        IF here AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = v AND i.indisunique AND i.indpred IS NULL) THEN
            RAISE EXCEPTION 'schedule_maintenance: % has no unique index, so it cannot be refreshed concurrently', v
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = format('CREATE UNIQUE INDEX ON %s (…) first.', v);
        END IF;
        refresh := concat_ws('; ', refresh, format('REFRESH MATERIALIZED VIEW CONCURRENTLY %s', v));
    END LOOP;

    FOR j IN
        SELECT * FROM (VALUES
            ('stress: analyze', daily, 'ANALYZE'),
            ('stress: vacuum analyze busiest tables', daily,
             CASE WHEN busiest_tables = 0 THEN NULL
                  WHEN busiest IS NULL THEN 'VACUUM (ANALYZE)' ELSE 'VACUUM (ANALYZE) ' || busiest END),
            ('stress: refresh materialized views', daily, refresh),
            ('stress: apply retention', daily, 'SELECT pg_catalog.count(*) FROM stress.apply_retention()'),
            ('stress: weekly health check', weekly, 'SELECT stress.record_health_check()')
        ) AS x(name, sched, cmd)
    LOOP
        IF j.cmd IS NULL THEN
            -- (nothing to do: a job of that name from an earlier call goes)
            EXECUTE format('SELECT %I.unschedule(jobid) FROM %I.job WHERE jobname = $1 AND username = current_user', cron, cron)
                USING j.name;
            CONTINUE;
        END IF;
        IF here THEN
            EXECUTE format('SELECT %I.schedule($1, $2, $3)', cron) INTO jobid USING j.name, j.sched, j.cmd;
        ELSE
            EXECUTE format('SELECT %I.schedule_in_database($1, $2, $3, $4)', cron) INTO jobid
                USING j.name, j.sched, j.cmd, target;
        END IF;
        job_name := j.name; schedule := j.sched; command := j.cmd;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION stress.schedule_maintenance(text, text, int, regclass[], name) IS
    'Schedule the operations guide''s daily and weekly jobs with pg_cron, by name (again: updated, not duplicated).';

CREATE FUNCTION stress.unschedule_maintenance()
RETURNS int
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron text := stress.cron_schema('unschedule_maintenance');
    n int;
BEGIN
    EXECUTE format('SELECT count(%I.unschedule(jobid)) FROM %I.job WHERE jobname LIKE ''stress: %%'' AND username = current_user',
                   cron, cron)
        INTO n;
    RETURN n;
END
$$;
COMMENT ON FUNCTION stress.unschedule_maintenance() IS
    'Remove the jobs stress.schedule_maintenance() scheduled for this role; returns how many.';
