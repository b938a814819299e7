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

-- stress.compare_runs and stress.environment_diff are pg_stress's own (src/compare: the noise
-- model, the run's recorded environment).

-- The last `runs` completed runs before `candidate` that the caller may see, of the same kind and
-- with the same parameters: a baseline for stress.compare_runs and stress.assert_targets that
-- carries the runs' own spread. Empty when there is none.
CREATE FUNCTION stress.baseline_runs(candidate bigint, runs integer DEFAULT 5)
RETURNS bigint[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c stress.runs;
BEGIN
    PERFORM stress.check_run_visible(candidate, 'baseline_runs');
    IF runs IS NULL OR runs < 1 OR runs > 1000 THEN
        RAISE EXCEPTION 'baseline_runs: runs must be between 1 and 1000, got %', coalesce(runs::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'e.g. stress.baseline_runs(candidate, 5): the last five runs like it.';
    END IF;
    SELECT * INTO c FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) candidate;
    RETURN ARRAY(
        SELECT r.id FROM stress.runs r
        WHERE r.id OPERATOR(pg_catalog.<) candidate
          AND r.kind OPERATOR(pg_catalog.=) c.kind
          AND r.status OPERATOR(pg_catalog.=) 'completed'
          -- (a run's seed, drawn when not given, and its place in a series do not make it another workload)
          AND (r.parameters OPERATOR(pg_catalog.-) '{series,seed}'::pg_catalog.text[]) OPERATOR(pg_catalog.=)
              (c.parameters OPERATOR(pg_catalog.-) '{series,seed}'::pg_catalog.text[])
        ORDER BY r.id DESC
        LIMIT runs);
END
$$;
COMMENT ON FUNCTION stress.baseline_runs(bigint, integer) IS
    'The last N completed runs before a run, of its kind and with its parameters: a baseline for compare_runs.';

-- ERROR (P0004, assert_failure) naming every target run `run_id` missed, so that psql fails a CI
-- step; otherwise the judged targets, as jsonb. Targets given as
-- arguments are judged on the run's total; with none, the seed's Key Metrics of stress.report are.
-- With `baseline` (a run) or `baselines` (several, e.g. stress.baseline_runs(run_id)), a
-- regression of a figure a CI gate judges (stress.compare_runs' `gate`: the total's throughput,
-- p50, p99 and error rate, each operation's p50 and p99) that is both beyond `tolerance` and
-- beyond the noise fails too; a figure with not enough data behind it does not. `confidence` is
-- the gate's as a whole: each of the m figures it judges is held to 1 − (1 − confidence) / m
-- (Bonferroni), so that 0.95 means at most one false alarm in twenty identical pairs, not one per
-- figure. A run that did not complete fails whatever its figures.
CREATE FUNCTION stress.assert_targets(run_id bigint, p50_ms float8 DEFAULT NULL, p99_ms float8 DEFAULT NULL,
                                      p999_ms float8 DEFAULT NULL, min_ops_per_sec float8 DEFAULT NULL,
                                      max_error_rate float8 DEFAULT NULL,
                                      max_deadlocks_per_1000 float8 DEFAULT NULL,
                                      baseline bigint DEFAULT NULL, tolerance float8 DEFAULT 0.10,
                                      baselines bigint[] DEFAULT NULL, confidence float8 DEFAULT 0.95)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- (compare_runs' NOTICE of the environments' differences, twice: they are in the result and the hint)
SET client_min_messages = warning
AS $$
DECLARE
    run stress.runs;
    total stress.results;
    report jsonb;
    judged jsonb := '{}';
    failures text[] := '{}';
    t record;
    pass boolean;
    pool bigint[];
    against text;
    differences text;
    judged_figures bigint;
    per_figure float8;
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
    IF baseline IS NOT NULL OR baselines IS NOT NULL THEN
        pool := coalesce(baselines, '{}') || CASE WHEN baseline IS NULL THEN '{}'::bigint[] ELSE ARRAY[baseline] END;
        against := CASE WHEN cardinality(pool) = 1 THEN 'run ' ELSE 'runs ' END || array_to_string(pool, ', ');
        IF confidence IS NULL OR confidence::text IN ('NaN', 'Infinity', '-Infinity') OR confidence <= 0 OR confidence >= 1 THEN
            RAISE EXCEPTION 'assert_targets: confidence must be between 0 and 1, got %', coalesce(confidence::text, 'NULL')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'It is the gate''s confidence as a whole, e.g. 0.95 (the default).';
        END IF;
        SELECT count(*) INTO judged_figures FROM stress.compare_runs(pool, run_id, tolerance, confidence) c
        WHERE c.gate AND c.verdict <> 'not enough data';
        per_figure := 1 - (1 - confidence) / greatest(judged_figures, 1);
        FOR t IN SELECT * FROM stress.compare_runs(pool, run_id, tolerance, per_figure) c
                 WHERE c.gate AND c.verdict = 'regressed' LOOP
            failures := failures || format('%s %s regressed against %s: %s -> %s (%s%%, interval %s%% to %s%%)',
                                           t.name, t.metric, against,
                                           round(t.baseline_value::numeric, 3), round(t.candidate_value::numeric, 3),
                                           round((t.change * 100)::numeric, 1), round((t.change_low * 100)::numeric, 1),
                                           round((t.change_high * 100)::numeric, 1));
        END LOOP;
        SELECT string_agg(format('%s: %s -> %s', d.item, coalesce(d.baseline, '(none)'),
                                 coalesce(d.candidate, '(none)')), '; ')
        INTO differences FROM stress.environment_diff(pool, run_id) d;
        judged := judged || jsonb_build_object('regressions_against', to_jsonb(pool),
                                               'figures_judged', judged_figures,
                                               'confidence_per_figure', per_figure,
                                               'environment_differences', differences);
    END IF;
    IF cardinality(failures) > 0 THEN
        RAISE EXCEPTION 'run % missed % target%: %', run_id, cardinality(failures),
                        CASE WHEN cardinality(failures) = 1 THEN '' ELSE 's' END, array_to_string(failures, '; ')
            USING ERRCODE = 'assert_failure', DETAIL = judged::text,
                  HINT = CASE WHEN differences IS NOT NULL
                              THEN 'The runs ran on different environments (' || differences || '). ' ELSE '' END
                         || 'See stress.report(' || run_id || ') and stress.compare_runs for the figures.';
    END IF;
    RETURN judged;
END
$$;
COMMENT ON FUNCTION stress.assert_targets(bigint, float8, float8, float8, float8, float8, float8, bigint, float8, bigint[], float8) IS
    'ERROR (P0004) naming every target the run missed (and every regression beyond tolerance and noise against its baseline); else the judged targets.';

-- One run as a document another server's stress.combine_runs reads (0.9.0): the run, its timed
-- results with their histograms (base64), and its samples. For N driver servers loading one
-- target: each exports its run, one of them combines them into a run of its own. Read as the
-- caller (row-level security: a run the caller may not see does not exist).
CREATE FUNCTION stress.export_run(run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM stress.check_run_visible(run_id, 'export_run');
    RETURN (
        SELECT jsonb_build_object(
            'format', 'pg_stress run export 1',
            'server', jsonb_build_object(
                'system_identifier', (SELECT c.system_identifier::text FROM pg_control_system() c),
                'cluster_name', current_setting('cluster_name'),
                'address', host(inet_server_addr()), 'port', current_setting('port')::int,
                'database', current_database(), 'version', current_setting('server_version_num')::int),
            'run', jsonb_build_object('id', r.id, 'kind', r.kind, 'status', r.status,
                                      'started_at', r.started_at, 'finished_at', r.finished_at,
                                      'run_as', r.run_as, 'error', r.error, 'parameters', r.parameters,
                                      'peak_connections', r.peak_connections),
            'results', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'name', x.name, 'calls', x.calls, 'errors', x.errors, 'seconds', x.seconds,
                                'details', x.details - 'percentiles',
                                'histogram', translate(encode(x.histogram, 'base64'), E'\n', ''))
                            ORDER BY x.id), '[]')
                        FROM stress.results x
                        WHERE x.run_id OPERATOR(pg_catalog.=) r.id AND x.calls IS NOT NULL),
            'samples', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'ts', s.ts, 'ops', s.ops, 'errors', s.errors, 'ops_per_sec', s.ops_per_sec,
                                'p50_ms', s.p50_ms, 'p99_ms', s.p99_ms, 'active_workers', s.active_workers,
                                'connections', s.connections, 'deadlocks', s.deadlocks)
                            ORDER BY s.ts), '[]')
                        FROM stress.samples s WHERE s.run_id OPERATOR(pg_catalog.=) r.id))
        FROM stress.runs r WHERE r.id OPERATOR(pg_catalog.=) run_id);
END
$$;
COMMENT ON FUNCTION stress.export_run(bigint) IS
    'A run, its results (with histograms) and its samples as one document, for stress.combine_runs on another server.';
