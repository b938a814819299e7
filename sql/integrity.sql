-- Data integrity: checks of a schema's data (stress.verify_integrity), and captured states — row counts
-- and content checksums of every table — to compare before and after a backup and restore, a
-- migration, a load run (stress.capture_state, stress.compare_state).

-- The schema a check works on: `schema`, or stress.data_schema when NULL; an ERROR if it is missing.
CREATE FUNCTION stress.target_schema(schema name, fn text)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target name := coalesce(schema, current_setting('stress.data_schema'));
BEGIN
    IF to_regnamespace(quote_ident(target)) IS NULL THEN
        RAISE EXCEPTION '%: schema "%" does not exist', fn, target
            USING ERRCODE = 'invalid_schema_name',
                  HINT = format('Pass an existing schema, e.g. stress.%s(''stress_data'').', fn);
    END IF;
    RETURN target;
END
$$;

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

CREATE FUNCTION stress.verify_integrity(schema name DEFAULT NULL)
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

-- Captured states: per capture, each table's row count and content checksum (stress.checksum).
CREATE TABLE stress.state_captures (
    id          bigserial PRIMARY KEY,
    schema_name name        NOT NULL,
    label       text,
    captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    captured_by name        NOT NULL,
    seconds     float8
);
COMMENT ON TABLE stress.state_captures IS 'One row per stress.capture_state(): which schema, when, by whom.';

CREATE TABLE stress.state_tables (
    capture_id  bigint NOT NULL REFERENCES stress.state_captures (id) ON DELETE CASCADE,
    table_name  name   NOT NULL,
    rows        bigint NOT NULL,
    checksum    text   NOT NULL,
    PRIMARY KEY (capture_id, table_name)
);
COMMENT ON TABLE stress.state_tables IS 'Per capture and table: row count and stress.checksum() of the content.';

SELECT pg_catalog.pg_extension_config_dump('stress.state_captures', '');
SELECT pg_catalog.pg_extension_config_dump('stress.state_captures_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('stress.state_tables', '');
-- Readable by their creator (and roles with its privileges, and pg_read_all_stats); written only by
-- stress.record_state_capture (SECURITY.md).
GRANT SELECT ON stress.state_captures, stress.state_tables TO PUBLIC;
ALTER TABLE stress.state_captures ENABLE ROW LEVEL SECURITY;
ALTER TABLE stress.state_tables ENABLE ROW LEVEL SECURITY;
CREATE POLICY state_captures_visible ON stress.state_captures FOR SELECT TO PUBLIC
    USING (stress.may_read_records_of(captured_by));
CREATE POLICY state_tables_visible ON stress.state_tables FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.state_captures c WHERE c.id OPERATOR(pg_catalog.=) capture_id));

CREATE FUNCTION stress.capture_state(schema name DEFAULT NULL, label text DEFAULT NULL)
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

CREATE FUNCTION stress.compare_state(a bigint, b bigint)
RETURNS TABLE (table_name name, rows_a bigint, rows_b bigint, row_difference bigint, checksum_a text,
               checksum_b text, status text, between_captures interval)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF a IS NULL OR b IS NULL OR (SELECT count(*) FROM stress.state_captures WHERE id IN (a, b)) < (CASE WHEN a = b THEN 1 ELSE 2 END) THEN
        RAISE EXCEPTION 'compare_state: no capture % or %', coalesce(a::text, 'NULL'), coalesce(b::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass two ids from stress.state_captures (stress.capture_state() returns them).';
    END IF;
    RETURN QUERY
    SELECT coalesce(x.table_name, y.table_name), x.rows, y.rows, y.rows - x.rows, x.checksum, y.checksum,
           CASE WHEN x.table_name IS NULL THEN 'only in ' || b
                WHEN y.table_name IS NULL THEN 'only in ' || a
                WHEN x.checksum = y.checksum THEN 'identical'
                ELSE 'different' END,
           -- from the end of capture a to the start of capture b: what happened in between (a
           -- migration, a restore) took this long
           (SELECT cb.captured_at - (ca.captured_at + make_interval(secs => coalesce(ca.seconds, 0)))
            FROM stress.state_captures ca, stress.state_captures cb WHERE ca.id = a AND cb.id = b)
    FROM (SELECT * FROM stress.state_tables WHERE capture_id = a) x
    FULL JOIN (SELECT * FROM stress.state_tables WHERE capture_id = b) y USING (table_name)
    ORDER BY 1;
END
$$;
COMMENT ON FUNCTION stress.compare_state(bigint, bigint) IS
    'Each table of two captures: rows in each, the difference, checksums, identical / different / only in one, and the time between the captures.';
