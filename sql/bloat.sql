-- stress.bloat_report(): how much of each user table and index is dead rows or wasted space, worst
-- first, with what to do about it.
--
-- Two methods, and each row says which it used:
--   pgstattuple  exact: reads every page (pgstattuple for tables, pgstatindex for btree indexes).
--                Used when the extension is installed and the caller may run it (superuser or
--                pg_stat_scan_tables).
--   estimate     from the statistics: dead rows from pg_stat_user_tables; wasted bytes = pages
--                beyond what reltuples rows of pg_stats' average width need at the fillfactor.
--                Needs ANALYZE, and SELECT on the table (pg_stats shows only readable columns);
--                without them wasted_bytes is NULL and method says why.
CREATE FUNCTION stress.bloat_rows(schema name, exact boolean)
RETURNS TABLE (schema_name name, relation name, kind text, table_name name, size_bytes bigint, size text,
               dead_rows bigint, dead_pct numeric, wasted_bytes bigint, wasted_pct numeric, method text,
               action text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bs constant int := current_setting('block_size')::int;
    tuple_ns text;
    use_pgstattuple boolean;
    r record;
    st record;
    ix record;
BEGIN
    IF schema IS NOT NULL AND to_regnamespace(quote_ident(schema)) IS NULL THEN
        RAISE EXCEPTION 'bloat_report: schema "%" does not exist', schema
            USING ERRCODE = 'invalid_schema_name',
                  HINT = 'Pass an existing schema, or NULL for every schema.';
    END IF;
    SELECT e.extnamespace::regnamespace::text INTO tuple_ns FROM pg_extension e WHERE e.extname = 'pgstattuple';
    use_pgstattuple := exact AND tuple_ns IS NOT NULL
        AND has_function_privilege(format('%s.pgstattuple(regclass)', tuple_ns), 'EXECUTE')
        AND (pg_has_role('pg_stat_scan_tables', 'USAGE')
             OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));

    FOR r IN
        SELECT c.oid, n.nspname, c.relname, c.relpages::int8 AS relpages, c.reltuples::float8 AS reltuples,
               pg_relation_size(c.oid) AS bytes, s.n_live_tup, s.n_dead_tup,
               coalesce((SELECT o.option_value::int FROM pg_options_to_table(c.reloptions) o
                         WHERE o.option_name = 'fillfactor'), 100) AS fillfactor,
               (SELECT sum((1 - ps.null_frac) * ps.avg_width) FROM pg_stats ps
                WHERE ps.schemaname = n.nspname AND ps.tablename = c.relname) AS row_width
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE c.relkind IN ('r', 'm')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
          AND (schema IS NULL OR n.nspname = schema)
    LOOP
        schema_name := r.nspname; relation := r.relname; kind := 'table'; table_name := r.relname;
        size_bytes := r.bytes; size := pg_size_pretty(r.bytes);
        IF use_pgstattuple THEN
            EXECUTE format('SELECT * FROM %I.pgstattuple(%s::oid::regclass)', tuple_ns, r.oid) INTO st;
            dead_rows := st.dead_tuple_count;
            dead_pct := round(100.0 * st.dead_tuple_count / nullif(st.tuple_count + st.dead_tuple_count, 0), 2);
            wasted_bytes := st.dead_tuple_len + st.free_space;
            method := 'pgstattuple';
        ELSE
            dead_rows := r.n_dead_tup;
            dead_pct := round(100.0 * r.n_dead_tup / nullif(r.n_live_tup + r.n_dead_tup, 0), 2);
            -- rows of row_width bytes plus their 24-byte header and 4-byte line pointer, on pages of
            -- block_size less the 24-byte page header, filled to the fillfactor
            wasted_bytes := CASE WHEN r.reltuples >= 0 AND r.row_width IS NOT NULL THEN
                greatest(0, r.relpages - ceil(r.reltuples * (24 + 4 + r.row_width)
                                              / ((bs - 24) * r.fillfactor / 100.0)))::int8 * bs END;
            method := CASE WHEN wasted_bytes IS NOT NULL THEN 'estimate'
                           WHEN NOT has_table_privilege(r.oid, 'SELECT')
                               THEN 'estimate (no statistics visible: needs SELECT on the table)'
                           ELSE 'estimate (not analyzed: run ANALYZE)' END;
        END IF;
        wasted_pct := round(100.0 * wasted_bytes / nullif(r.bytes, 0), 2);
        action := CASE
            WHEN wasted_pct >= 50 AND r.bytes >= 8 * bs
                THEN format('VACUUM FULL %I.%I (takes an exclusive lock; pg_repack does it online)', r.nspname, r.relname)
            WHEN dead_pct >= 10 OR wasted_pct >= 20
                THEN format('VACUUM ANALYZE %I.%I', r.nspname, r.relname)
            ELSE 'none' END;
        RETURN NEXT;

        FOR ix IN
            SELECT i.indexrelid, ic.relname, ic.relpages::int8 AS relpages, ic.reltuples::float8 AS reltuples,
                   pg_relation_size(i.indexrelid) AS bytes, am.amname,
                   coalesce((SELECT o.option_value::int FROM pg_options_to_table(ic.reloptions) o
                             WHERE o.option_name = 'fillfactor'), 90) AS fillfactor,
                   -- the key's width, when every key column has statistics (not for expressions)
                   CASE WHEN 0 <> ALL (i.indkey::int2[]) THEN
                       (SELECT CASE WHEN count(*) = i.indnatts THEN sum(ps.avg_width) END
                        FROM pg_attribute a
                        JOIN pg_stats ps ON ps.schemaname = r.nspname AND ps.tablename = r.relname
                                        AND ps.attname = a.attname
                        WHERE a.attrelid = r.oid AND a.attnum = ANY (i.indkey::int2[])) END AS key_width
                   , 0 = ANY (i.indkey::int2[]) AS has_expressions
            FROM pg_index i
            JOIN pg_class ic ON ic.oid = i.indexrelid
            JOIN pg_am am ON am.oid = ic.relam
            WHERE i.indrelid = r.oid
        LOOP
            schema_name := r.nspname; relation := ix.relname; kind := 'index'; table_name := r.relname;
            size_bytes := ix.bytes; size := pg_size_pretty(ix.bytes);
            dead_rows := NULL; dead_pct := NULL;
            IF use_pgstattuple AND ix.amname = 'btree' AND ix.relpages > 1 THEN
                EXECUTE format('SELECT * FROM %I.pgstatindex(%s::oid::regclass)', tuple_ns, ix.indexrelid) INTO st;
                -- leaves fuller than the fillfactor waste nothing; emptier ones waste the difference
                wasted_bytes := greatest(0, st.leaf_pages * bs * (1 - st.avg_leaf_density / ix.fillfactor))::int8
                                + st.deleted_pages * bs;
                method := 'pgstattuple';
            ELSIF ix.amname = 'btree' AND ix.reltuples >= 0 AND ix.key_width IS NOT NULL THEN
                -- entries of the key plus an 8-byte index tuple header and a 4-byte line pointer,
                -- on pages filled to the fillfactor, plus the metapage
                wasted_bytes := greatest(0, ix.relpages - 1 - ceil(ix.reltuples * (8 + 4 + ix.key_width)
                                                                 / ((bs - 24 - 16) * ix.fillfactor / 100.0)))::int8 * bs;
                method := 'estimate';
            ELSE
                wasted_bytes := NULL;
                method := CASE WHEN ix.amname <> 'btree' THEN format('not measured (%s index)', ix.amname)
                               WHEN ix.has_expressions THEN 'not measured (expression index)'
                               WHEN NOT has_table_privilege(r.oid, 'SELECT')
                                   THEN 'estimate (no statistics visible: needs SELECT on the table)'
                               ELSE 'estimate (not analyzed: run ANALYZE)' END;
            END IF;
            wasted_pct := round(100.0 * wasted_bytes / nullif(ix.bytes, 0), 2);
            action := CASE WHEN wasted_pct >= 30 AND ix.bytes >= 8 * bs
                           THEN format('REINDEX INDEX CONCURRENTLY %I.%I', r.nspname, ix.relname)
                           ELSE 'none' END;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION stress.bloat_rows(name, boolean) IS 'The rows of stress.bloat_report(), unsorted.';

CREATE FUNCTION stress.bloat_report(schema name DEFAULT NULL, exact boolean DEFAULT true)
RETURNS TABLE (schema_name name, relation name, kind text, table_name name, size_bytes bigint, size text,
               dead_rows bigint, dead_pct numeric, wasted_bytes bigint, wasted_pct numeric, method text,
               action text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM stress.bloat_rows(schema, exact) ORDER BY wasted_bytes DESC NULLS LAST, dead_rows DESC NULLS LAST $$;
COMMENT ON FUNCTION stress.bloat_report(name, boolean) IS
    'Dead rows and wasted space per user table and index, worst first (exact with pgstattuple, else estimated from statistics), with the action to take.';
