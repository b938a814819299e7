-- pg_stress 0.2.0 → 0.3.0: runs seen and judged. Statistics over no sample are NULL (a second of
-- a load run without operations has no p50/p99); samples count deadlocks; stress.timeline,
-- stress.compare_runs, stress.assert_targets and stress.report_html are new. Every record is kept.
-- tests/integration/upgrade.rs checks that this ends where a fresh 0.3.0 install does.
\echo Use "ALTER EXTENSION pg_stress UPDATE TO '0.3.0'" to load this file. \quit

ALTER TABLE stress.samples ALTER COLUMN p50_ms DROP NOT NULL, ALTER COLUMN p99_ms DROP NOT NULL,
    ADD COLUMN deadlocks bigint;  -- met in that second, retried or not (NULL: before 0.3.0)
COMMENT ON TABLE stress.samples IS 'Per second of a load run: operations, errors, deadlocks, ops/s, p50/p99, active workers, connections.';

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
    autovacuum_workers   int         NOT NULL   -- running now, in the server
);
COMMENT ON TABLE stress.timeline IS 'Per second of a run, beside stress.samples: wait events of its workers, lock waits, WAL, blocks, commits, checkpoints, autovacuum.';
CREATE INDEX timeline_run_id_ts_idx ON stress.timeline (run_id, ts);
SELECT pg_catalog.pg_extension_config_dump('stress.timeline', '');
GRANT SELECT ON stress.timeline TO PUBLIC;
ALTER TABLE stress.timeline ENABLE ROW LEVEL SECURITY;
CREATE POLICY timeline_visible ON stress.timeline FOR SELECT TO PUBLIC
    USING (EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id));

-- Run against run, and a run against its targets: what a nightly job or a CI step asks. Both read
-- stress.results as the caller (SECURITY INVOKER, row-level security): a run the caller may not see
-- is a run that does not exist.

-- A run the caller can see, or 22023.
CREATE FUNCTION stress.check_run_visible(run_id bigint, fn text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF run_id IS NULL THEN
        RAISE EXCEPTION '%: the run id must not be NULL', fn
            USING ERRCODE = 'invalid_parameter_value', HINT = 'See stress.runs for run ids.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id) THEN
        RAISE EXCEPTION '%: there is no run %', fn, run_id
            USING ERRCODE = 'invalid_parameter_value', HINT = 'See stress.runs for run ids.';
    END IF;
END
$$;

-- Per measured thing (operation, transaction, query, and the run's total) and metric: the two runs'
-- figures, the relative change, and whether the candidate regressed by more than `tolerance`:
--   ops_per_sec          lower than baseline × (1 − tolerance)
--   p50_ms, p99_ms, p999_ms   higher than baseline × (1 + tolerance)
--   error_rate           higher than baseline × (1 + tolerance) + 0.001 (a tenth of a percentage
--                        point, so that 0 errors against 1 in 100,000 calls is not a regression)
-- A figure one of the runs does not have (an operation only one of them ran, a latency over no
-- execution) compares as NULL: not regressed, not passed.
CREATE FUNCTION stress.compare_runs(baseline bigint, candidate bigint, tolerance float8 DEFAULT 0.10)
RETURNS TABLE (name text, metric text, baseline_value float8, candidate_value float8, change float8,
               regressed boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM stress.check_run_visible(baseline, 'compare_runs');
    PERFORM stress.check_run_visible(candidate, 'compare_runs');
    IF tolerance IS NULL OR tolerance::text IN ('NaN', 'Infinity', '-Infinity') OR tolerance < 0 THEN
        RAISE EXCEPTION 'compare_runs: tolerance must be a finite number of at least 0, got %', tolerance
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It is the relative change allowed, e.g. 0.10 for 10%.';
    END IF;
    RETURN QUERY
    WITH figures AS (
        SELECT r.run_id, r.name, m.metric, m.ord, m.value
        FROM stress.results r,
             LATERAL (VALUES (1, 'ops_per_sec', r.ops_per_sec), (2, 'p50_ms', r.p50_ms),
                             (3, 'p99_ms', r.p99_ms), (4, 'p999_ms', r.p999_ms),
                             (5, 'error_rate', r.errors::float8 / NULLIF(r.calls, 0))) m (ord, metric, value)
        WHERE r.run_id IN (baseline, candidate) AND r.calls IS NOT NULL
    ), paired AS (
        SELECT coalesce(b.name, c.name) AS name, coalesce(b.metric, c.metric) AS metric,
               coalesce(b.ord, c.ord) AS ord, b.value AS b, c.value AS c
        FROM (SELECT * FROM figures f WHERE f.run_id = baseline) b
        FULL JOIN (SELECT * FROM figures f WHERE f.run_id = candidate) c USING (name, metric)
    )
    SELECT p.name, p.metric, p.b, p.c,
           CASE WHEN p.b <> 0 THEN p.c / p.b - 1 END,
           CASE p.metric
               WHEN 'ops_per_sec' THEN p.c < p.b * (1 - tolerance)
               WHEN 'error_rate' THEN p.c > p.b * (1 + tolerance) + 0.001
               ELSE p.c > p.b * (1 + tolerance)
           END
    FROM paired p
    ORDER BY p.name = 'total', p.name, p.ord;
END
$$;
COMMENT ON FUNCTION stress.compare_runs(bigint, bigint, float8) IS
    'Per measured thing and metric (ops_per_sec, p50/p99/p999_ms, error_rate): baseline, candidate, change, regressed.';

-- ERROR (P0004, assert_failure) naming every target run `run_id` missed, so that psql fails a CI
-- step; otherwise the judged targets, as jsonb. Targets given as
-- arguments are judged on the run's total; with none, the seed's Key Metrics of stress.report are.
-- With `baseline`, any regression against that run (stress.compare_runs, `tolerance`) fails too. A
-- run that did not complete fails whatever its figures.
CREATE FUNCTION stress.assert_targets(run_id bigint, p50_ms float8 DEFAULT NULL, p99_ms float8 DEFAULT NULL,
                                      p999_ms float8 DEFAULT NULL, min_ops_per_sec float8 DEFAULT NULL,
                                      max_error_rate float8 DEFAULT NULL,
                                      max_deadlocks_per_1000 float8 DEFAULT NULL,
                                      baseline bigint DEFAULT NULL, tolerance float8 DEFAULT 0.10)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run stress.runs;
    total stress.results;
    report jsonb;
    judged jsonb := '{}';
    failures text[] := '{}';
    t record;
    pass boolean;
BEGIN
    PERFORM stress.check_run_visible(run_id, 'assert_targets');
    SELECT * INTO run FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id;
    FOR t IN SELECT * FROM (VALUES ('p50_ms', p50_ms), ('p99_ms', p99_ms), ('p999_ms', p999_ms),
                                   ('min_ops_per_sec', min_ops_per_sec), ('max_error_rate', max_error_rate),
                                   ('max_deadlocks_per_1000', max_deadlocks_per_1000)) v (name, threshold)
             WHERE v.threshold IS NOT NULL LOOP
        IF t.threshold::text IN ('NaN', 'Infinity', '-Infinity') OR t.threshold < 0 THEN
            RAISE EXCEPTION 'assert_targets: % must be a finite number of at least 0, got %', t.name, t.threshold
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'e.g. p99_ms => 100, min_ops_per_sec => 1000, max_error_rate => 0.01.';
        END IF;
    END LOOP;
    IF run.status IS DISTINCT FROM 'completed' THEN
        failures := failures || format('the run is %s%s', coalesce(run.status, 'unknown'),
                                       coalesce(': ' || run.error, ''));
    END IF;
    SELECT * INTO total FROM stress.results r
    WHERE r.run_id OPERATOR(pg_catalog.=) assert_targets.run_id AND r.name = 'total';
    IF num_nonnulls(p50_ms, p99_ms, p999_ms, min_ops_per_sec, max_error_rate, max_deadlocks_per_1000) > 0 THEN
        IF total IS NULL THEN
            RAISE EXCEPTION 'assert_targets: run % has no total to judge (it is a %)', run_id, run.kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Targets are judged on a load run''s total; compare benchmark runs with stress.compare_runs.';
        END IF;
        FOR t IN SELECT * FROM (VALUES
                    ('p50_ms', total.p50_ms, '<=', p50_ms),
                    ('p99_ms', total.p99_ms, '<=', p99_ms),
                    ('p999_ms', total.p999_ms, '<=', p999_ms),
                    ('min_ops_per_sec', total.ops_per_sec, '>=', min_ops_per_sec),
                    ('max_error_rate', total.errors::float8 / NULLIF(total.calls, 0), '<=', max_error_rate),
                    ('max_deadlocks_per_1000',
                     (total.details->>'deadlocks')::float8 * 1000 / NULLIF(total.calls, 0), '<=', max_deadlocks_per_1000)
                 ) v (name, measured, op, threshold)
                 WHERE v.threshold IS NOT NULL LOOP
            -- (a figure the run does not have fails: nothing measured meets no target)
            pass := CASE t.op WHEN '<=' THEN t.measured <= t.threshold ELSE t.measured >= t.threshold END;
            judged := judged || jsonb_build_object(t.name, jsonb_build_object(
                'target', t.op || ' ' || t.threshold, 'value', t.measured, 'pass', coalesce(pass, false)));
            IF NOT coalesce(pass, false) THEN
                failures := failures || format('%s = %s, target %s %s', t.name,
                                               coalesce(round(t.measured::numeric, 3)::text, 'not measured'),
                                               t.op, t.threshold);
            END IF;
        END LOOP;
    ELSE
        report := stress.report(run_id);
        judged := report->'targets';
        FOR t IN SELECT key, value FROM jsonb_each(judged) LOOP
            IF (t.value->>'pass')::boolean IS FALSE THEN
                failures := failures || format('%s = %s, target %s', t.key,
                                               round((t.value->>'value')::numeric, 3), t.value->>'target');
            END IF;
        END LOOP;
    END IF;
    IF baseline IS NOT NULL THEN
        FOR t IN SELECT * FROM stress.compare_runs(baseline, run_id, tolerance) c WHERE c.regressed LOOP
            failures := failures || format('%s %s regressed against run %s: %s -> %s', t.name, t.metric, baseline,
                                           round(t.baseline_value::numeric, 3), round(t.candidate_value::numeric, 3));
        END LOOP;
        judged := judged || jsonb_build_object('regressions_against', baseline);
    END IF;
    IF cardinality(failures) > 0 THEN
        RAISE EXCEPTION 'run % missed % target%: %', run_id, cardinality(failures),
                        CASE WHEN cardinality(failures) = 1 THEN '' ELSE 's' END, array_to_string(failures, '; ')
            USING ERRCODE = 'assert_failure', DETAIL = judged::text,
                  HINT = 'See stress.report(' || run_id || ') and stress.compare_runs for the figures.';
    END IF;
    RETURN judged;
END
$$;
COMMENT ON FUNCTION stress.assert_targets(bigint, float8, float8, float8, float8, float8, float8, bigint, float8) IS
    'ERROR (P0004) naming every target the run missed (and every regression against baseline); else the judged targets.';

-- A run as one self-contained HTML page (src/report_html).
CREATE FUNCTION stress.report_html(run_id bigint) RETURNS text
STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'report_html_wrapper';
COMMENT ON FUNCTION stress.report_html(bigint) IS
    'A run as one self-contained HTML page with charts: psql -Atc "SELECT stress.report_html(42)" > run42.html';
