-- pg_stress 0.1.0 → 0.2.0: trust (SECURITY.md). Records are written only by pg_stress and read under
-- row-level security; starting workers needs a grant; owner-privileged SQL pins its search_path;
-- verify_integrity evaluates only the caller's own tables; retention policies belong to their creator.
-- Every recorded run, capture and policy is kept. tests/integration/upgrade.rs checks that this ends
-- where a fresh 0.2.0 install does (members, definitions, grants, policies, defaults).
\echo Use "ALTER EXTENSION pg_stress UPDATE TO '0.2.0'" to load this file. \quit

-- Functions written in Rust that record on a caller's behalf (src/records/sql_api.rs).
CREATE FUNCTION stress.record_call(
	"kind" TEXT,
	"parameters" jsonb,
	"started_at" timestamp with time zone,
	"results" jsonb DEFAULT '[]'
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'record_call_wrapper';

CREATE FUNCTION stress.record_retention_applied(
	"relation" TEXT,
	"rows" bigint
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'record_retention_applied_wrapper';

CREATE FUNCTION stress.record_retention_policy(
	"rel" oid,
	"ts_column" TEXT,
	"keep" interval,
	"archive_to" oid,
	"batch_size" INT
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'record_retention_policy_wrapper';

CREATE FUNCTION stress.record_state_capture(
	"schema_name" TEXT,
	"label" TEXT,
	"started_at" timestamp with time zone,
	"tables" jsonb
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'record_state_capture_wrapper';

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


-- Run records: nobody but pg_stress writes them (no INSERT, UPDATE, DELETE or sequence use for
-- PUBLIC); ids and run_as are set by the extension, not by defaults a caller could rely on.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON stress.runs, stress.results, stress.samples, stress.slow_queries,
    stress.state_captures, stress.state_tables, stress.retention_policies FROM PUBLIC;
REVOKE ALL ON SEQUENCE stress.runs_id_seq, stress.results_id_seq, stress.slow_queries_id_seq,
    stress.state_captures_id_seq FROM PUBLIC;
ALTER TABLE stress.runs ALTER COLUMN run_as DROP DEFAULT;
ALTER TABLE stress.state_captures ALTER COLUMN captured_by DROP DEFAULT;
ALTER TABLE stress.retention_policies ALTER COLUMN created_by DROP DEFAULT;

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
ALTER TABLE stress.state_captures ENABLE ROW LEVEL SECURITY;
ALTER TABLE stress.state_tables ENABLE ROW LEVEL SECURITY;
CREATE POLICY state_captures_visible ON stress.state_captures FOR SELECT TO PUBLIC
    USING (stress.may_read_records_of(captured_by));
CREATE POLICY state_tables_visible ON stress.state_tables FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.state_captures c WHERE c.id OPERATOR(pg_catalog.=) capture_id));
ALTER TABLE stress.retention_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY retention_policies_visible ON stress.retention_policies FOR SELECT TO PUBLIC
    USING (created_by OPERATOR(pg_catalog.=) CURRENT_USER
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                      WHERE r.rolname OPERATOR(pg_catalog.=) created_by
                        AND pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'USAGE')));

CREATE OR REPLACE FUNCTION stress.record_health_check(schema name DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION stress.schedule_maintenance(
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

-- Whether the current user owns rel. verify_integrity reads a table's rows only then: a query on
-- another role's table can run that role's code (casts of its types, its operators) with the
-- caller's privileges, which for an administrator or the weekly pg_cron check means a superuser's.
CREATE FUNCTION stress.owned_by_caller(rel regclass)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
               WHERE c.oid OPERATOR(pg_catalog.=) rel
                 AND c.relowner OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r
                                                         WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER))
$$;


CREATE OR REPLACE FUNCTION stress.verify_integrity(schema name DEFAULT NULL)
RETURNS TABLE (check_name text, relation text, status text, failures bigint, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target name := stress.target_schema(schema, 'verify_integrity');
    k record;
    n bigint;
    cond text;
BEGIN

    -- Every foreign key path: rows whose key has no parent (possible when the key is NOT VALID,
    -- or its triggers were bypassed, e.g. with session_replication_role = replica).
    FOR k IN
        SELECT c.conname, c.conrelid::regclass AS child, c.confrelid::regclass AS parent, c.convalidated,
               (SELECT array_agg(a.attname ORDER BY u.i) FROM unnest(c.conkey) WITH ORDINALITY u(attnum, i)
                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = u.attnum) AS child_cols,
               (SELECT array_agg(a.attname ORDER BY u.i) FROM unnest(c.confkey) WITH ORDINALITY u(attnum, i)
                JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = u.attnum) AS parent_cols
        FROM pg_constraint c
        WHERE c.contype = 'f' AND c.connamespace = to_regnamespace(quote_ident(target))
        ORDER BY c.conrelid::regclass::text, c.conname
    LOOP
        check_name := 'foreign_key';
        relation := format('%s (%s) -> %s (%s)', k.child, array_to_string(k.child_cols, ', '),
                           k.parent, array_to_string(k.parent_cols, ', '));
        IF NOT (stress.owned_by_caller(k.child) AND stress.owned_by_caller(k.parent)) THEN
            status := 'not checked'; failures := NULL;
            detail := format('constraint %s: only the owner of %s and %s may check it (it reads their rows)',
                             k.conname, k.child, k.parent);
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT string_agg(format('c.%I IS NOT NULL', col), ' AND ') INTO cond FROM unnest(k.child_cols) col;
        EXECUTE format('SELECT count(*) FROM %s c WHERE %s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s)',
                       k.child, cond, k.parent,
                       (SELECT string_agg(format('p.%I = c.%I', pc, cc), ' AND ')
                        FROM unnest(k.parent_cols, k.child_cols) AS x(pc, cc)))
            INTO n;
        check_name := 'foreign_key';
        relation := format('%s (%s) -> %s (%s)', k.child, array_to_string(k.child_cols, ', '),
                           k.parent, array_to_string(k.parent_cols, ', '));
        status := CASE WHEN n > 0 THEN 'failed' ELSE 'ok' END;
        failures := n;
        detail := format('%s orphaned rows; constraint %s%s', n, k.conname,
                         CASE WHEN k.convalidated THEN '' ELSE ' is NOT VALID' END);
        RETURN NEXT;
    END LOOP;

    -- Constraints added NOT VALID: the rows that break them (CHECK) and the command that proves them.
    FOR k IN
        SELECT c.conname, c.contype, c.conrelid::regclass AS rel, pg_get_expr(c.conbin, c.conrelid) AS expr
        FROM pg_constraint c
        WHERE NOT c.convalidated AND c.connamespace = to_regnamespace(quote_ident(target))
        ORDER BY c.conrelid::regclass::text, c.conname
    LOOP
        n := NULL;
        IF NOT stress.owned_by_caller(k.rel) THEN
            check_name := 'not_valid_constraint'; relation := k.rel::text; status := 'not checked'; failures := NULL;
            detail := format('%s is NOT VALID; only the owner of %s may evaluate it', k.conname, k.rel);
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF k.contype = 'c' THEN
            EXECUTE format('SELECT count(*) FROM %s WHERE NOT coalesce((%s), true)', k.rel, k.expr) INTO n;
        END IF;
        check_name := 'not_valid_constraint';
        relation := k.rel::text;
        status := CASE WHEN n > 0 THEN 'failed' ELSE 'warning' END;
        failures := n;
        detail := format('%s is NOT VALID%s; once it holds: ALTER TABLE %s VALIDATE CONSTRAINT %I',
                         k.conname, CASE WHEN n IS NOT NULL THEN format(' (%s rows break it)', n) ELSE '' END,
                         k.rel, k.conname);
        RETURN NEXT;
    END LOOP;

    -- The trading dataset's own rules, where its tables are there.
    IF to_regclass(format('%I.accounts', target)) IS NOT NULL
       AND NOT stress.owned_by_caller(to_regclass(format('%I.accounts', target))) THEN
        check_name := 'negative_balance'; relation := format('%I.accounts', target);
        status := 'not checked'; failures := NULL; detail := 'only the owner of the table may check it';
        RETURN NEXT;
    ELSIF to_regclass(format('%I.accounts', target)) IS NOT NULL THEN
        EXECUTE format('SELECT count(*) FROM %I.accounts WHERE balance < 0', target) INTO n;
        check_name := 'negative_balance'; relation := format('%I.accounts', target);
        status := CASE WHEN n > 0 THEN 'failed' ELSE 'ok' END; failures := n;
        detail := format('%s accounts with balance < 0', n);
        RETURN NEXT;
    END IF;
    IF to_regclass(format('%I.positions', target)) IS NOT NULL AND to_regclass(format('%I.trades', target)) IS NOT NULL
       AND NOT (stress.owned_by_caller(to_regclass(format('%I.positions', target)))
                AND stress.owned_by_caller(to_regclass(format('%I.trades', target)))) THEN
        check_name := 'positions_match_trades'; relation := format('%I.positions', target);
        status := 'not checked'; failures := NULL; detail := 'only the owner of positions and trades may check them';
        RETURN NEXT;
    ELSIF to_regclass(format('%I.positions', target)) IS NOT NULL AND to_regclass(format('%I.trades', target)) IS NOT NULL THEN
        EXECUTE format(
            'SELECT count(*) FROM %1$I.positions p
             FULL JOIN (SELECT account_id, symbol, sum(CASE WHEN side = ''BUY'' THEN quantity ELSE -quantity END) AS net
                        FROM %1$I.trades GROUP BY account_id, symbol) t USING (account_id, symbol)
             WHERE coalesce(p.quantity, 0) <> coalesce(t.net, 0)', target)
            INTO n;
        check_name := 'positions_match_trades'; relation := format('%I.positions', target);
        status := CASE WHEN n > 0 THEN 'failed' ELSE 'ok' END; failures := n;
        detail := format('%s (account, symbol) positions differ from the net of their trades', n);
        RETURN NEXT;
    END IF;

    -- Keys without a unique index to enforce them: duplicated ids.
    FOR k IN
        SELECT c.oid::regclass AS rel,
               EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                         AND i.indnatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL) AS enforced
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'id' AND NOT a.attisdropped
        WHERE c.relnamespace = to_regnamespace(quote_ident(target)) AND c.relkind IN ('r', 'p')
        ORDER BY c.oid::regclass::text
    LOOP
        check_name := 'duplicate_keys'; relation := k.rel::text;
        IF k.enforced THEN
            status := 'ok'; failures := 0; detail := 'id is unique (a unique index enforces it)';
        ELSIF NOT stress.owned_by_caller(k.rel) THEN
            status := 'not checked'; failures := NULL; detail := 'no unique index on id; only the owner of the table may count duplicates';
        ELSE
            EXECUTE format('SELECT count(*) FROM (SELECT id FROM %s WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1) d', k.rel)
                INTO n;
            status := CASE WHEN n > 0 THEN 'failed' ELSE 'warning' END; failures := n;
            detail := format('%s duplicated id values; no unique index on id: CREATE UNIQUE INDEX CONCURRENTLY ON %s (id)',
                             n, k.rel);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION stress.verify_integrity(name) IS
    'One row per check of a schema''s data: foreign key paths, NOT VALID constraints, negative balances, positions vs trades, duplicated ids without a unique index.';

CREATE OR REPLACE FUNCTION stress.capture_state(schema name DEFAULT NULL, label text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target name := stress.target_schema(schema, 'capture_state');
    capture bigint;
    started timestamptz := clock_timestamp();
    t record;
    digest text;
    tables jsonb := '[]';
BEGIN
    -- Tables, partitioned tables (as a whole: not their partitions) and populated materialized views.
    FOR t IN
        SELECT c.oid, c.relname FROM pg_class c
        WHERE c.relnamespace = to_regnamespace(quote_ident(target))
          AND (c.relkind IN ('r', 'p') OR (c.relkind = 'm' AND c.relispopulated))
          AND NOT c.relispartition
        ORDER BY c.relname
    LOOP
        digest := stress.checksum(t.oid::regclass);
        tables := tables || jsonb_build_object('table_name', t.relname, 'rows', split_part(digest, ':', 1)::int8,
                                               'checksum', digest);
    END LOOP;
    capture := stress.record_state_capture(target, label, started, tables);
    RETURN capture;
END
$$;
COMMENT ON FUNCTION stress.capture_state(name, text) IS
    'Store the row count and content checksum of every table of a schema (stress.data_schema when NULL); returns the capture id.';

-- (refuses a table the caller may not empty before anything is locked)
CREATE OR REPLACE FUNCTION stress.check_archive_target(rel regclass, ts_column name, older_than interval, batch_size int,
                                            archive_to regclass, fn text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ts_type regtype;
BEGIN
    IF rel IS NULL OR ts_column IS NULL OR older_than IS NULL OR batch_size IS NULL THEN
        RAISE EXCEPTION '%: rel, ts_column, older_than and batch_size must not be NULL', fn
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('e.g. SELECT stress.%s(''logs'', ''created_at'', ''90 days'');', fn);
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = rel) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '%: % is not a table', fn, rel
            USING ERRCODE = 'wrong_object_type', HINT = 'Pass a table or a partitioned table.';
    END IF;
    SELECT a.atttypid::regtype INTO ts_type FROM pg_attribute a
    WHERE a.attrelid = rel AND a.attname = ts_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF ts_type IS NULL THEN
        RAISE EXCEPTION '%: column "%" of % does not exist', fn, ts_column, rel
            USING ERRCODE = 'undefined_column', HINT = 'Pass the name of the column that dates each row.';
    END IF;
    IF ts_type NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RAISE EXCEPTION '%: column "%" of % is %, not a timestamp', fn, ts_column, rel, ts_type
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'The column must be timestamptz, timestamp or date.';
    END IF;
    -- The caller's rights, before anything is locked: a role must not make archive wait for the
    -- lock of a table it may not empty (queueing that table's other users behind it).
    IF NOT (has_table_privilege(rel, 'SELECT') AND has_table_privilege(rel, 'DELETE')) THEN
        RAISE EXCEPTION '%: permission denied to delete from %', fn, rel
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('It deletes the old rows as the caller: it needs SELECT and DELETE on %s.', rel);
    END IF;
    IF archive_to IS NOT NULL AND NOT has_table_privilege(archive_to, 'INSERT') THEN
        RAISE EXCEPTION '%: permission denied to insert into %', fn, archive_to
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('It moves the old rows as the caller: it needs INSERT on %s.', archive_to);
    END IF;
    IF older_than < interval '0' THEN
        RAISE EXCEPTION '%: older_than must not be negative, got %', fn, older_than
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the age of the rows to remove, e.g. ''90 days''.';
    END IF;
    IF batch_size < 1 OR batch_size > 10000000 THEN
        RAISE EXCEPTION '%: batch_size must be between 1 and 10000000, got %', fn, batch_size
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass e.g. batch_size => 10000.';
    END IF;
    IF archive_to IS NOT NULL THEN
        IF archive_to = rel THEN
            RAISE EXCEPTION '%: archive_to must be another table than %', fn, rel
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Create one: CREATE TABLE archive (LIKE rel);';
        END IF;
        IF (SELECT array_agg((a.attname, a.atttypid) ORDER BY a.attnum) FROM pg_attribute a
            WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped)
           IS DISTINCT FROM
           (SELECT array_agg((a.attname, a.atttypid) ORDER BY a.attnum) FROM pg_attribute a
            WHERE a.attrelid = archive_to AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION '%: archive_to % does not have the columns of % (same names and types, in order)',
                            fn, archive_to, rel
                USING ERRCODE = 'datatype_mismatch',
                      HINT = format('Create it like the table: CREATE TABLE %s_archive (LIKE %s);', rel, rel);
        END IF;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION stress.archive_batch_sql(rel regclass, ts_column name, archive_to regclass)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT format(
    'WITH batch AS (SELECT tableoid AS toid, ctid AS tid FROM %1$s WHERE %2$I OPERATOR(pg_catalog.<) $1 LIMIT $2),
          gone AS (DELETE FROM %1$s t USING batch b
                   WHERE t.tableoid OPERATOR(pg_catalog.=) b.toid AND t.ctid OPERATOR(pg_catalog.=) b.tid
                   RETURNING t.*)
     %3$s',
    rel, ts_column,
    CASE WHEN archive_to IS NULL THEN 'SELECT pg_catalog.count(*), pg_catalog.count(*) FROM gone'
         ELSE format(', moved AS (INSERT INTO %s SELECT * FROM gone RETURNING 1)
                      SELECT (SELECT pg_catalog.count(*) FROM gone), (SELECT pg_catalog.count(*) FROM moved)',
                     archive_to) END)
$$;

CREATE OR REPLACE FUNCTION stress.record_archive(rel regclass, ts_column name, older_than interval, cutoff timestamptz,
                                      batch_size int, archive_to regclass, committed_per_batch boolean,
                                      started timestamptz, removed bigint, batches int)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- (plpgsql, not sql: its body is checked when it runs, after stress.record_call exists)
AS $$
BEGIN
PERFORM stress.record_call(
    'archive',
    jsonb_build_object('rel', rel::text, 'ts_column', ts_column, 'older_than', older_than::text,
                       'cutoff', cutoff, 'batch_size', batch_size, 'archive_to', archive_to::text,
                       'committed_per_batch', committed_per_batch),
    started,
    jsonb_build_array(jsonb_build_object(
        'name', rel::text, 'rows', removed, 'seconds', extract(epoch FROM clock_timestamp() - started),
        'rows_per_sec', removed / greatest(extract(epoch FROM clock_timestamp() - started), 1e-6),
        'details', jsonb_build_object('batches', batches, 'moved_to', archive_to::text))));
END
$$;


CREATE OR REPLACE FUNCTION stress.archive(rel regclass, ts_column name, older_than interval, batch_size int DEFAULT 10000,
                               archive_to regclass DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := now() - older_than;
    started timestamptz := clock_timestamp();
    last_notice timestamptz := clock_timestamp();
    every interval := current_setting('stress.progress_interval')::interval;
    batch_sql text;
    done bigint;
    received bigint;
    total bigint := 0;
    batches int := 0;
BEGIN
    PERFORM stress.check_archive_target(rel, ts_column, older_than, batch_size, archive_to, 'archive');
    batch_sql := stress.archive_batch_sql(rel, ts_column, archive_to);
    LOOP
        EXECUTE batch_sql INTO done, received USING cutoff, batch_size;
        PERFORM stress.check_archive_batch(rel, archive_to, done, received);
        total := total + done;
        batches := batches + 1;
        IF every > interval '0' AND clock_timestamp() - last_notice >= every THEN
            RAISE NOTICE 'archive: % rows of % so far (% batches, % s)', total, rel, batches,
                round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
            last_notice := clock_timestamp();
        END IF;
        EXIT WHEN done < batch_size;
    END LOOP;
    -- In the caller's transaction, like the rows: a rolled-back archive leaves no record.
    PERFORM stress.record_archive(rel, ts_column, older_than, cutoff, batch_size, archive_to, false, started,
                                  total, batches);
    RETURN total;
END
$$;
COMMENT ON FUNCTION stress.archive(regclass, name, interval, int, regclass) IS
    'Delete the rows of rel whose ts_column is older than older_than, batch_size at a time (moving them to archive_to when given); returns how many.';

CREATE OR REPLACE PROCEDURE stress.archive_batched(rel regclass, ts_column name, older_than interval,
                                        batch_size int DEFAULT 10000, archive_to regclass DEFAULT NULL,
                                        INOUT rows_removed bigint DEFAULT NULL)
LANGUAGE plpgsql
-- (No SET search_path: a procedure with SET clauses may not COMMIT. So every function, operator and
-- type below is schema-qualified: the caller's search_path, or a pg_cron job's, can capture nothing.)
AS $$
DECLARE
    cutoff pg_catalog.timestamptz := pg_catalog.now() OPERATOR(pg_catalog.-) older_than;
    started pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    last_notice pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    every pg_catalog.interval := pg_catalog.current_setting('stress.progress_interval')::pg_catalog.interval;
    batch_sql pg_catalog.text;
    done pg_catalog.int8;
    received pg_catalog.int8;
    batches pg_catalog.int4 := 0;
BEGIN
    PERFORM stress.check_archive_target(rel, ts_column, older_than, batch_size, archive_to, 'archive_batched');
    batch_sql := stress.archive_batch_sql(rel, ts_column, archive_to);
    rows_removed := 0;
    LOOP
        EXECUTE batch_sql INTO done, received USING cutoff, batch_size;
        PERFORM stress.check_archive_batch(rel, archive_to, done, received);
        rows_removed := rows_removed OPERATOR(pg_catalog.+) done;
        batches := batches OPERATOR(pg_catalog.+) 1;
        COMMIT;
        IF every OPERATOR(pg_catalog.>) '0'::pg_catalog.interval
           AND pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) last_notice OPERATOR(pg_catalog.>=) every THEN
            RAISE NOTICE 'archive_batched: % rows of % so far (% batches committed, % s)', rows_removed, rel,
                batches, pg_catalog.round(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()
                                                                 OPERATOR(pg_catalog.-) started)::pg_catalog.numeric, 1);
            last_notice := pg_catalog.clock_timestamp();
        END IF;
        EXIT WHEN done OPERATOR(pg_catalog.<) batch_size;
    END LOOP;
    PERFORM stress.record_archive(rel, ts_column, older_than, cutoff, batch_size, archive_to, true, started,
                                  rows_removed, batches);
END
$$;
COMMENT ON PROCEDURE stress.archive_batched(regclass, name, interval, int, regclass, bigint) IS
    'stress.archive, committing after every batch: CALL it outside a transaction block.';

CREATE OR REPLACE FUNCTION stress.set_retention(rel regclass, ts_column name, keep interval, archive_to regclass DEFAULT NULL,
                                     batch_size int DEFAULT 10000)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM stress.check_archive_target(rel, ts_column, keep, batch_size, archive_to, 'set_retention');
    -- (checks the caller's rights on rel and archive_to, and records the policy as the caller's)
    PERFORM stress.record_retention_policy(rel, ts_column, keep, archive_to, batch_size);
END
$$;
COMMENT ON FUNCTION stress.set_retention(regclass, name, interval, regclass, int) IS
    'Register (or change) the caller''s retention policy of a table, after checking it as stress.archive would; it deletes with the caller''s rights.';

CREATE OR REPLACE FUNCTION stress.apply_retention()
RETURNS TABLE (relation text, rows_removed bigint, archived_to text, seconds float8, status text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    p record;
    started timestamptz;
    n bigint;
    caller_role text := current_setting('role');
BEGIN
    -- The policies this role may see: its own and those of roles it has the privileges of. Each is
    -- applied as the role that set it (SET ROLE), so a policy never deletes more than its creator
    -- could by hand, whoever applies it (a superuser's pg_cron job included).
    FOR p IN SELECT * FROM stress.retention_policies WHERE enabled ORDER BY relation LOOP
        relation := p.relation; archived_to := p.archive_to; started := clock_timestamp();
        -- Each policy on its own: one that fails (a table gone, no privilege) does not stop the others.
        BEGIN
            PERFORM set_config('role', p.created_by, true);
            IF to_regclass(p.relation) IS NULL THEN
                RAISE EXCEPTION 'table % does not exist', p.relation USING ERRCODE = 'undefined_table';
            END IF;
            n := stress.archive(to_regclass(p.relation), p.ts_column, p.keep, p.batch_size,
                                to_regclass(p.archive_to));
            PERFORM stress.record_retention_applied(p.relation, n);
            PERFORM set_config('role', caller_role, true);
            rows_removed := n; status := 'ok';
        EXCEPTION WHEN OTHERS THEN
            rows_removed := 0; status := 'failed: ' || SQLERRM;
        END;
        seconds := extract(epoch FROM clock_timestamp() - started);
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION stress.apply_retention() IS
    'Apply every enabled retention policy this role may see, each as the role that set it: one row per table with what was removed, or why not.';

CREATE OR REPLACE FUNCTION stress.bloat_report(schema name DEFAULT NULL, exact boolean DEFAULT true)
RETURNS TABLE (schema_name name, relation name, kind text, table_name name, size_bytes bigint, size text,
               dead_rows bigint, dead_pct numeric, wasted_bytes bigint, wasted_pct numeric, method text,
               action text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM stress.bloat_rows(schema, exact) ORDER BY wasted_bytes DESC NULLS LAST, dead_rows DESC NULLS LAST $$;
COMMENT ON FUNCTION stress.bloat_report(name, boolean) IS
    'Dead rows and wasted space per user table and index, worst first (exact with pgstattuple, else estimated from statistics), with the action to take.';


-- An archive move that lost rows on the way (a trigger on archive_to that skips them, say) deletes
-- nothing: the batch's statement is undone with the error.
CREATE FUNCTION stress.check_archive_batch(rel regclass, archive_to regclass, deleted bigint, received bigint)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF archive_to IS NOT NULL AND deleted IS DISTINCT FROM received THEN
        RAISE EXCEPTION 'archive: % received % of the % rows deleted from %', archive_to, received, deleted, rel
            USING ERRCODE = 'triggered_data_change_violation',
                  HINT = format('A trigger or rule on %s drops rows: disable it (ALTER TABLE %s DISABLE TRIGGER USER) or archive elsewhere. Nothing was deleted.',
                                archive_to, archive_to);
    END IF;
END
$$;


-- Functions that start background workers: only for roles granted EXECUTE (README, SECURITY.md).
REVOKE EXECUTE ON FUNCTION stress.run_load, stress.ramp, stress.deadlock_test, stress.simulate_trading_day
    FROM PUBLIC;
