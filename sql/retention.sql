-- Archiving and retention: old rows deleted (or moved to an archive table) in batches, by a
-- timestamp column; retention policies registered per table and applied together. Everything runs
-- with the caller's privileges (SECURITY INVOKER): it deletes only what the caller may delete.

-- The checks archive() and set_retention() share: a clear ERROR for each kind of bad input.
CREATE FUNCTION stress.check_archive_target(rel regclass, ts_column name, older_than interval, batch_size int,
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

-- One batch of archive(): up to $2 rows older than $1, found by physical position (tableoid + ctid,
-- unique in a partitioned table too), deleted and, with archive_to, inserted there in the same
-- statement; returns how many were deleted and how many the archive received.
CREATE FUNCTION stress.archive_batch_sql(rel regclass, ts_column name, archive_to regclass)
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

-- An archive's record: a run of kind archive, and a result row with the rows removed.
CREATE FUNCTION stress.record_archive(rel regclass, ts_column name, older_than interval, cutoff timestamptz,
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

CREATE FUNCTION stress.archive(rel regclass, ts_column name, older_than interval, batch_size int DEFAULT 10000,
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

-- The same, committing after every batch (CALL it outside a transaction block, e.g. from pg_cron):
-- locks and snapshots are held one batch at a time, and what is done stays done if it is stopped.
CREATE PROCEDURE stress.archive_batched(rel regclass, ts_column name, older_than interval,
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

-- Retention policies: which tables keep how much, applied by stress.apply_retention().
CREATE TABLE stress.retention_policies (
    relation    text        PRIMARY KEY,           -- the table, schema-qualified (resolved when applied)
    ts_column   name        NOT NULL,
    keep        interval    NOT NULL CHECK (keep >= interval '0'),
    archive_to  text,                              -- move old rows there instead of deleting them
    batch_size  int         NOT NULL DEFAULT 10000 CHECK (batch_size BETWEEN 1 AND 10000000),
    enabled     boolean     NOT NULL DEFAULT true,
    created_by  name        NOT NULL,               -- the role the policy deletes as, set by pg_stress
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_applied_at timestamptz,
    last_rows   bigint
);
COMMENT ON TABLE stress.retention_policies IS 'Per table: how long rows are kept (by ts_column), and where old ones go.';
SELECT pg_catalog.pg_extension_config_dump('stress.retention_policies', '');
-- Each role sees the policies it may apply (its own and those of roles it has the privileges of);
-- they are written only through stress.set_retention (SECURITY.md).
GRANT SELECT ON stress.retention_policies TO PUBLIC;
ALTER TABLE stress.retention_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY retention_policies_visible ON stress.retention_policies FOR SELECT TO PUBLIC
    USING (created_by OPERATOR(pg_catalog.=) CURRENT_USER
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                      WHERE r.rolname OPERATOR(pg_catalog.=) created_by
                        AND pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'USAGE')));

CREATE FUNCTION stress.set_retention(rel regclass, ts_column name, keep interval, archive_to regclass DEFAULT NULL,
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

CREATE FUNCTION stress.apply_retention()
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
